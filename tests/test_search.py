"""Searching continuous strain: file layout checks, trigger files, clustering, time slides."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import write_untrained_folds
from g2net.search.strain_io import StrainFile, StrainWriter
from g2net.search.triggers import cluster_triggers, read_triggers, write_triggers
from g2net.search.timeslides import TimeSlides, light_travel_time
from utils import G2NetError
import simulate_strain
from g2net.filtering import bank as template_bank
from g2net.search import engine
import g2net.search.evaluation
import g2net.search.matched_filter
from g2net.search import network
from g2net.search import options as search_options
from g2net.simulation import noise as sim_noise
from g2net import spectral
from g2net import whitening
import search
import matched_filter as mf_cli


def _strain(path, detectors=("H1", "L1"), segments=((100.0, 64),), delta_t=1 / 16):
    writer = StrainWriter(path, detectors)
    for start, n in segments:
        key = writer.create_segment(start, n, delta_t)
        writer.write(key, 0, np.random.default_rng(0).standard_normal((len(detectors), n)))
    writer.close()
    return path


def test_time_slides_are_disjoint_and_counted():
    """Slide k pairs H1 sample i with L1 sample i + k*step; lags differ by at least a step, no pair
    of samples is used twice, and the effective duration counts every kept sample once."""
    rate, step, n = 16.0, 3.0, 400
    data = np.stack([np.arange(n), 10_000 + np.arange(n)]).astype(float)
    slides = TimeSlides(n_slides=5, step=step)
    slides.validate(("H1", "L1"), window=2.0)
    pairs, lags, kept = set(), [], 0
    for k, slid in slides.views(data, rate):
        lag = slid[1] - 10_000 - slid[0]
        assert np.all(lag == k * step * rate)  # one lag per slide
        lags.append(lag[0])
        new = set(zip(slid[0].astype(int), slid[1].astype(int)))
        assert not pairs & new
        pairs |= new
        kept += slid.shape[1]
    assert lags == [0, 48, 96, 144, 192, 240]
    assert np.all(np.diff(lags) >= (light_travel_time(("H1", "L1")) + 2.0) * rate)
    assert slides.effective_duration([n], 2, rate) == kept / rate == sum(n - 48 * k for k in range(6)) / rate
    # three detectors: detector j moves j * k * step; too long a slide drops out of a short segment
    three = TimeSlides(n_slides=3, step=step)
    assert three.offsets(2, 3, rate).tolist() == [0, 96, 192]
    assert three.usable(300, 3, 3, rate) == 12 and three.usable(200, 3, 3, rate) == 0
    assert len(list(three.views(np.zeros((3, 200)), rate))) == 3
    assert three.effective_duration([200, 300], 3, rate) == (200 + 104 + 8 + 300 + 204 + 108 + 12) / rate


def test_time_slide_step_is_checked():
    with pytest.raises(G2NetError, match="light travel"):
        TimeSlides(3, step=2.0).validate(("H1", "L1"), window=2.0)
    with pytest.raises(G2NetError, match="two detectors"):
        TimeSlides(3, step=5.0).validate(("H1",), window=2.0)
    with pytest.raises(G2NetError, match=">= 0"):
        TimeSlides(-1, step=5.0).validate(("H1", "L1"), window=2.0)
    TimeSlides(0).validate(("H1",), window=2.0)  # zero lag alone needs no step
    assert 0.009 < light_travel_time(("H1", "L1")) < 0.011
    assert 0.026 < light_travel_time(("H1", "L1", "V1")) < 0.028


def test_wrong_layouts_are_refused_with_one_line(tmp_path):
    good = _strain(tmp_path / "good.hdf")
    with StrainFile(good, ("H1", "L1"), 16) as strain:
        assert strain.detectors == ("H1", "L1") and strain.duration == 4.0
    cases = {}
    with h5py.File(tmp_path / "flat.hdf", "w") as f:
        f["strain"] = np.zeros(10)
    cases["flat.hdf"] = "no detector groups"
    with h5py.File(tmp_path / "noattrs.hdf", "w") as f:
        f.create_group("H1")["100"] = np.zeros(10)
    cases["noattrs.hdf"] = "lacks the attributes start_time and delta_t"
    with h5py.File(tmp_path / "unknown.hdf", "w") as f:
        f.create_group("X1")
    cases["unknown.hdf"] = "unknown detector"
    _strain(tmp_path / "mismatch.hdf")
    with h5py.File(tmp_path / "mismatch.hdf", "a") as f:
        del f["L1/100"]
        ds = f["L1"].create_dataset("100", data=np.zeros(32))
        ds.attrs.update({"start_time": 100.0, "delta_t": 1 / 16})
    cases["mismatch.hdf"] = "different segments"
    _strain(tmp_path / "overlap.hdf", segments=((100.0, 64), (102.0, 64)))
    cases["overlap.hdf"] = "overlap"
    (tmp_path / "text.hdf").write_text("not hdf5")
    cases["text.hdf"] = "not an HDF5 file"
    cases["missing.hdf"] = "not found"
    for name, message in cases.items():
        with pytest.raises(G2NetError, match=message) as err:
            StrainFile(tmp_path / name)
        assert "\n" not in str(err.value), name
    with pytest.raises(G2NetError, match="H1,L1 but H1,L1,V1 are needed"):
        StrainFile(good, ("H1", "L1", "V1"))
    with pytest.raises(G2NetError, match="sampled at 16 Hz but 2048 Hz"):
        StrainFile(good, sample_rate=2048)
    with h5py.File(good, "a") as f:
        f["H1/100"][5] = np.nan
    with pytest.raises(G2NetError, match="NaN"):  # the first samples of every segment, on opening
        StrainFile(good)


def test_trigger_files_hold_exactly_what_mlgwsc1_reads(tmp_path):
    write_triggers(tmp_path / "t.hdf", [5.0, 1.0, 3.0], [0.1, 0.9, 0.5], 0.3, attrs={"duration": 10.0})
    with h5py.File(tmp_path / "t.hdf") as f:
        assert sorted(f.keys()) == ["stat", "time", "var"]
        for key in ("time", "stat", "var"):
            assert f[key].dtype == np.float64 and f[key].ndim == 1
        assert f["time"][()].tolist() == [1.0, 3.0, 5.0]
        assert f["stat"][()].tolist() == [0.9, 0.5, 0.1]
        assert f["var"][()].tolist() == [0.3] * 3
    time, stat, var, attrs = read_triggers(tmp_path / "t.hdf")
    assert attrs["duration"] == 10.0 and time.tolist() == [1.0, 3.0, 5.0]


def test_clustering_keeps_the_loudest_within_the_window():
    time = np.array([0.0, 0.3, 0.6, 0.9, 5.0, 5.2, 9.0])
    stat = np.array([1.0, 3.0, 2.0, 2.5, 0.5, 0.5, 0.1])
    kept = cluster_triggers(time, stat, window=0.5)
    # 0.3 (3.0) removes 0.0 and 0.6; 0.9 (2.5) is 0.6 s away and stays; 5.0 wins the tie with 5.2
    assert kept.tolist() == [1, 3, 4, 6]
    assert np.all(np.diff(time[kept]) > 0.5)


# ------------------------------------------------------------------ end to end on simulated strain
@pytest.fixture(scope="module")
def loud_strain(tmp_path_factory):
    """200 s of H1+L1 strain with seven loud injections (network SNR ~50-160), and its background."""

    out = tmp_path_factory.mktemp("loud")
    simulate_strain.main(["--out", str(out), "--duration", "200", "--padding", "20",
                          "--chirp-distance-range", "15", "20", "--seed", "0", "--no-progress"])
    return out


def test_matched_filter_finds_every_loud_injection_and_no_background(loud_strain, tmp_path, monkeypatch):

    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path / "results"))
    bank = template_bank.build_bank(template_bank.BankSpec(size=24, n_candidates=300), sim_noise.psd_array(), progress=False)
    results = {}
    for kind, slides in (("foreground", 0), ("background", 2)):
        with StrainFile(loud_strain / f"{kind}.hdf") as strain:
            scorer = g2net.search.matched_filter.StrainMatchedFilter(bank, strain.detectors, g2net.search.matched_filter.template_seconds(bank))
            step = scorer.slide_step(strain.detectors)  # whole strides: filtered windows reused
            window = scorer.n / 2048  # 32 s: whole inspirals of 10+10 Msun from 20 Hz fill most of 16 s
            # the shortest whole number of strides past the longest template and the light travel time
            least = scorer.template_seconds + 0.0101
            assert window == 32 and least < step <= least + scorer.stride and (step / scorer.stride) % 1 < 1e-9
            options = search_options.SearchOptions(window=scorer.n, stride=scorer.stride, psd_duration=64.0,
                                           slide_span=scorer.slide_span,
                                           slides=TimeSlides(slides, step))
            result = engine.search_strain(strain, scorer, options, progress=False)
            assert result["reused_detectors"]
            if kind == "foreground":  # filtering detector by detector changes nothing at zero lag
                again = engine.search_strain(strain, scorer, search_options.SearchOptions(
                    **{**options.__dict__, "reuse_detectors": False}), progress=False)
                np.testing.assert_array_equal(again["time"], result["time"])
                np.testing.assert_allclose(again["stat"], result["stat"], rtol=1e-6)
            write_triggers(tmp_path / f"{kind}_events.hdf", result["time"], result["stat"],
                           result["var"], search_options.trigger_attrs(strain, options, result))
            segment = strain.segments[0]
            # triggers inside the data, sorted once written
            time, _, _, attrs = read_triggers(tmp_path / f"{kind}_events.hdf")
            assert np.all(np.diff(time) >= 0)
            assert segment.start_time <= time.min() and time.max() <= segment.end_time
            results[kind] = result, attrs
    # 200 s zero lag plus two slides of one step each
    assert results["background"][1]["duration"] == pytest.approx(600.0 - 3 * step, abs=1e-3)
    with h5py.File(loud_strain / "injections.hdf") as f:
        tc, snr = f["tc"][()], f["snr_network"][()]
    fg, _ = results["foreground"]
    _, true_positive, found_stat = g2net.search.evaluation.match_triggers(tc, fg["time"], fg["stat"], fg["var"])
    assert len(tc) == 7 and np.all(np.isfinite(found_stat))  # every injection within var
    bg, _ = results["background"]
    assert bg["stat"].max() < 8.0 < found_stat.min()  # none in the background
    assert fg["stat"][~true_positive].max() < 8.0
    assert np.all(snr > 40)


def test_search_cli_scores_with_the_trained_folds(loud_strain, tmp_path, monkeypatch):
    """search.py --config reads fold checkpoints as predict.py does; wrong detector sets are refused."""
    import torch

    import configs

    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path / "results"))
    folder = tmp_path / "results" / "Debug_debug"
    write_untrained_folds(configs.Debug, folder)
    with pytest.raises(G2NetError, match="H1,L1 but H1,L1,V1 are needed"):
        search.main(["--config", "Debug", "--debug", "--input", str(loud_strain / "foreground.hdf"),
                     "--output", str(tmp_path / "x.hdf"), "--no-progress"])
    simulate_strain.main(["--out", str(tmp_path / "three"), "--duration", "40", "--padding", "5",
                          "--detectors", "H1,L1,V1", "--no-progress"])
    result = search.main(["--config", "Debug", "--debug", "--input", str(tmp_path / "three" / "background.hdf"),
                          "--output", str(tmp_path / "bg.hdf"), "--stride", "0.5", "--slides", "1",
                          "--slide-step", "3", "--no-progress"])
    assert result["windows"] == 77 + 65  # (40 - 2) / 0.5 + 1, and 32 / 0.5 + 1 in the slide
    assert result["duration"] == 40 + 34  # V1 is shifted by 2 x 3 s in slide 1
    with h5py.File(tmp_path / "bg.hdf") as f:
        assert sorted(f.keys()) == ["slide", "stat", "time", "var"]  # MLGWSC-1's three, each trigger's slide
        assert all(f[k].dtype == np.float64 and f[k].ndim == 1 for k in ("time", "stat", "var"))
        assert np.all(np.diff(f["time"][()]) >= 0) and f.attrs["duration"] == 74.0
        assert f["slide"].dtype == np.int64 and set(f["slide"][()]) == {0, 1}
        np.testing.assert_array_equal(f.attrs["slide_duration"], [40.0, 34.0])
    # the statistic is the mean of the folds' logits on whitened (data PSD), band-passed windows
    scorer, window = network.config_scorer(configs.Debug, debug=True)
    with StrainFile(tmp_path / "three" / "background.hdf") as strain:
        data = strain.read(strain.segments[0], 0, 32 * 2048)
    psd = spectral.welch_psd(data, 4096, 2048)
    batch = np.stack([data[:, :4096], data[:, 2048:6144]])
    x = configs.Debug.transforms["test"].transforms[1](whitening.whiten_with_psd(batch, psd, 2048))
    expected = []
    for fold in range(2):
        model = configs.Debug.model(**configs.Debug.model_params)
        model.load_state_dict(torch.load(folder / f"fold{fold}.pt", weights_only=True)["model"])
        with torch.no_grad():
            expected.append(model.eval()(torch.from_numpy(x.astype(np.float32)))[:, 0].numpy())
    np.testing.assert_allclose(scorer(batch, psd), np.mean(expected, axis=0), rtol=1e-4, atol=1e-5)
    assert window == 4096
    # prepared detector by detector (as time slides reuse them), the statistic is the same
    assert isinstance(scorer, engine.DetectorSplitScorer) and result["reused_detectors"]
    split = scorer.combine([scorer.prepare(batch[:, j], psd[j], j) for j in range(3)])
    np.testing.assert_allclose(split, scorer(batch, psd), rtol=1e-6, atol=1e-6)


class _PeakScorer:
    """A detector-split toy: each detector's window becomes its largest |strain| (scaled by the
    detector number, so that pairing matters); counts the windows it prepares."""

    def __init__(self):
        self.prepared = [0, 0]

    def prepare(self, windows, psd, detector):
        self.prepared[detector] += len(windows)
        return np.abs(windows).max(axis=-1) * (detector + 1) * 1e21

    def combine(self, prepared):
        return prepared[0] + prepared[1]

    def __call__(self, batch, psd):
        return self.combine([self.prepare(batch[:, j], psd[j], j) for j in range(batch.shape[1])])


def test_time_slides_prepare_each_detector_window_once(loud_strain):
    """With a detector-split scorer every slide re-pairs windows prepared once: the same triggers
    as preparing every slide again, for a fraction of the work."""

    options = dict(stride=0.5, slides=TimeSlides(4, 5.0), cluster=0.2)
    results, scorers = {}, {}
    with StrainFile(loud_strain / "background.hdf") as strain:
        for reuse in (True, False):
            scorers[reuse] = _PeakScorer()
            results[reuse] = engine.search_strain(strain, scorers[reuse], search_options.SearchOptions(
                **options, reuse_detectors=reuse), progress=False)
    assert results[True]["reused_detectors"] and not results[False]["reused_detectors"]
    for key in ("time", "stat", "var"):
        np.testing.assert_array_equal(results[True][key], results[False][key])
    zero_lag = int((200 - 2) / 0.5) + 1
    slid = [int((200 - 5 * k - 2) / 0.5) + 1 for k in range(5)]
    assert results[True]["windows"] == results[False]["windows"] == sum(slid)
    assert results[True]["duration"] == results[False]["duration"] == sum(200 - 5 * k for k in range(5))
    assert scorers[True].prepared == [zero_lag, zero_lag]  # every window of each detector, once
    assert scorers[False].prepared == [sum(slid), sum(slid)]
    # a step that is not a whole number of strides prepares every slide again
    with StrainFile(loud_strain / "background.hdf") as strain:
        odd = engine.search_strain(strain, _PeakScorer(), search_options.SearchOptions(
            stride=0.5, slides=TimeSlides(2, 5.25)), progress=False)
    assert not odd["reused_detectors"]


# ------------------------------------------------------------------ hostile inputs
def _no_bank(*args, **kwargs):
    raise AssertionError("the template bank was built: the refusal came after work had started")


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_search_outputs_are_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """--output equal to the input (however spelt), an existing file without --overwrite, or a
    folder: one line, before the config, the model or the bank is touched; nothing changes."""
    monkeypatch.setattr(g2net.search.matched_filter, "load_or_build_bank", _no_bank)
    data = tmp_path / "data"
    data.mkdir()
    strain = _strain(data / "strain.hdf", segments=((100.0, 4096),), delta_t=1 / 2048)
    (data / "old.hdf").write_bytes(b"earlier triggers")
    (data / "folder.hdf").mkdir()
    before = _files(data)
    cases = {str(strain): "is also an input", str(data / ".." / "data" / "strain.hdf"): "is also an input",
             str(data / "old.hdf"): "already exists; pass --overwrite",
             str(data / "folder.hdf"): "is a folder", str(data / "triggers.txt"): "ending in .hdf",
             str(data / "old.hdf" / "x.hdf"): "is a file, not a folder"}
    for output, message in cases.items():
        # an unknown config would be the error if the output were checked after the config
        with pytest.raises(G2NetError, match=message) as err:
            search.main(["--config", "NoSuchConfig", "--input", str(strain), "--output", output])
        assert "\n" not in str(err.value)
        with pytest.raises(SystemExit) as done:
            mf_cli.main(["--strain", str(strain), "--output", output, "--no-progress"])
        assert done.value.code == 2
        err_lines = capsys.readouterr().err.strip().splitlines()
        assert len(err_lines) == 1 and message in err_lines[0], (output, err_lines)
    assert _files(data) == before and sorted(p.name for p in data.iterdir()) == sorted(
        ["strain.hdf", "old.hdf", "folder.hdf"])  # no .tmp left, nothing replaced
    # --overwrite lets an existing trigger file go (the next refusal is the unknown config)...
    with pytest.raises(G2NetError, match="unknown config"):
        search.main(["--config", "NoSuchConfig", "--input", str(strain), "--output",
                     str(data / "old.hdf"), "--overwrite"])
    # ...but never the input itself
    with pytest.raises(G2NetError, match="is also an input"):
        search.main(["--config", "NoSuchConfig", "--input", str(strain), "--output", str(strain),
                     "--overwrite"])


@pytest.mark.parametrize("option,value,message", [
    ("--merger-offset", "nan", "not a finite number"), ("--stride", "inf", "not a finite number"),
    ("--psd-duration", "nan", "not a finite number"), ("--slide-step", "inf", "not a finite number"),
    ("--threshold", "nan", "not a finite number"), ("--cluster", "0", "must be > 0"),
    ("--var", "-1", "must be > 0"), ("--stride", "fast", "not a number")])
def test_non_finite_search_options_are_refused_by_both_commands(option, value, message, tmp_path, capsys):
    for main, args in ((search.main, ["--config", "Debug", "--input"]), (mf_cli.main, ["--strain"])):
        with pytest.raises(SystemExit) as done:
            main([*args, str(tmp_path / "in.hdf"), "--output", str(tmp_path / "out.hdf"), option, value])
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert f"error: argument {option}: '{value}'" in err and message in err
    assert not (tmp_path / "out.hdf").exists()
    # set through the API, the search refuses them too
    with pytest.raises(G2NetError, match="--merger-offset nan: must be a finite number"):
        search_options.SearchOptions(merger_offset=float("nan")).validate(("H1", "L1"), 2048)


def test_empty_or_underflowed_strain_is_refused(tmp_path, monkeypatch, capsys):
    """Strain stored as float16 rounds to 0 (its smallest number is 6e-8): refused on opening,
    naming the cause, before the matched filter builds its bank; a constant stretch later in a
    segment is refused when it is read."""
    monkeypatch.setattr(g2net.search.matched_filter, "load_or_build_bank", _no_bank)
    noise = np.random.default_rng(0).standard_normal((2, 4096)) * 1e-21
    for name, dtype, data in (("half.hdf", np.float16, noise), ("zeros.hdf", np.float32, 0 * noise)):
        writer = StrainWriter(tmp_path / name, ("H1", "L1"), dtype=dtype)
        writer.write(writer.create_segment(100.0, 4096, 1 / 2048), 0, data)
        writer.close()
        with pytest.raises(G2NetError, match=f"H1/100 is constant \\(0\\).*empty or underflowed, stored as "
                                             f"{np.dtype(dtype).name}"):
            StrainFile(tmp_path / name)
        with pytest.raises(SystemExit):
            mf_cli.main(["--strain", str(tmp_path / name), "--output", str(tmp_path / "t.hdf")])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "empty or underflowed" in err[0]
    assert "smallest number is 6e-08" in str(pytest.raises(G2NetError, StrainFile, tmp_path / "half.hdf").value)
    n = search_options.PSD_PIECE * 6  # noise over the first samples, then a dead detector
    writer = StrainWriter(tmp_path / "dead.hdf", ("H1", "L1"))
    key = writer.create_segment(100.0, n, 1 / 2048)
    live = np.random.default_rng(1).standard_normal((2, n))
    live[1, 20000:] = 0.0
    writer.write(key, 0, live)
    writer.close()
    with StrainFile(tmp_path / "dead.hdf") as strain:
        strain.read(strain.segments[0], 0, 20000)
        with pytest.raises(G2NetError, match="L1/100 is constant \\(0\\) between samples 20000 and"):
            strain.read(strain.segments[0], 20000, n, detector=1)
    assert not (tmp_path / "t.hdf").exists()


def test_strain_attributes_that_are_not_numbers_are_one_line(tmp_path, capsys):
    cases = {"text": ("start_time", "yesterday", "start_time 'yesterday'.*finite GPS time"),
             "nan": ("start_time", np.nan, "start_time nan.*finite GPS time"),
             "delta": ("delta_t", "fast", "delta_t 'fast'.*sample spacing")}
    for name, (attr, value, message) in cases.items():
        path = _strain(tmp_path / f"{name}.hdf")
        with h5py.File(path, "a") as f:
            for det in ("H1", "L1"):  # every detector alike: not a mismatch between them
                f[det]["100"].attrs[attr] = value
        with pytest.raises(G2NetError, match=message) as err:
            StrainFile(path)
        assert "different segments" not in str(err.value)
        with pytest.raises(SystemExit):
            mf_cli.main(["--strain", str(path), "--output", str(tmp_path / "t.hdf")])
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        with pytest.raises(G2NetError, match=message):
            search.main(["--config", "Debug", "--input", str(path), "--output", str(tmp_path / "t.hdf")])


# ------------------------------------------------------------------ detector sets
def test_two_detector_simulation_keeps_the_layout_and_draws_snr_over_the_network(tmp_path):
    import pandas as pd

    from conftest import run_script

    for name, detectors in (("three", "H1,L1,V1"), ("two", "H1,L1")):
        run_script("simulate.py", "--out", str(tmp_path / name), "--n-train", "8", "--n-test", "0",
                   "--seed", "5", "--workers", "1", "--detectors", detectors, "--no-progress")
    three = pd.read_csv(tmp_path / "three" / "injections.csv", dtype={"id": str})
    two = pd.read_csv(tmp_path / "two" / "injections.csv", dtype={"id": str})
    assert list(two["id"]) == list(three["id"]) and list(two["target"]) == list(three["target"])
    positive = two["target"] == 1
    assert positive.sum() == 4 and two.loc[positive, "snr_V1"].isna().all()
    np.testing.assert_allclose(two.loc[positive, "snr_network"],
                               np.hypot(two.loc[positive, "snr_H1"], two.loc[positive, "snr_L1"]))
    assert two.loc[positive, "snr_network"].between(5, 20).all()  # the SNR prior, over H1+L1
    # same source, rescaled: the H1/L1 SNR ratio is the three-detector run's
    np.testing.assert_allclose((two["snr_H1"] / two["snr_L1"])[positive],
                               (three["snr_H1"] / three["snr_L1"])[positive], rtol=1e-9)
    for row in two.itertuples():
        a = np.load(tmp_path / "two" / "train" / row.id[0] / row.id[1] / row.id[2] / f"{row.id}.npy")
        b = np.load(tmp_path / "three" / "train" / row.id[0] / row.id[1] / row.id[2] / f"{row.id}.npy")
        assert a.shape == (3, 4096) and not a[2].any()  # V1 absent: its row records nothing
        if not row.target:
            np.testing.assert_array_equal(a[:2], b[:2])  # the same noise in H1 and L1


def test_two_detector_configs_see_two_channels():
    import torch

    import configs
    from transforms import TorchWhiten, Whiten

    x = np.random.default_rng(1).standard_normal((3, 4096)) * 1e-21
    np.testing.assert_allclose(Whiten(detectors=("H1", "L1"))(x[:2]), Whiten()(x)[:2])
    torch_white = TorchWhiten(detectors=("L1", "V1"))(torch.from_numpy(x[None, 1:]))
    np.testing.assert_allclose(torch_white[0].numpy(), Whiten()(x)[1:], rtol=1e-6, atol=1e-9)
    for cfg in (configs.Demo2det, configs.Seq03w2det):
        configs.check_params(cfg)
        assert cfg.detectors == ("H1", "L1")
        y = cfg.transforms["test"](x)
        np.testing.assert_allclose(y, configs.Demo.transforms["test"](x)[:2])  # H1, L1 rows
        model = cfg.model(**cfg.model_params).eval()
        assert model(torch.from_numpy(y[None].astype(np.float32))).shape == (1, 1)

    class Wrong(configs.Demo):
        detectors = ("H1", "L1")

    with pytest.raises(G2NetError, match="in_chans=3 but the model sees 2 detectors"):
        configs.check_params(Wrong)


def test_device_preprocessing_equals_the_numpy_transforms(tmp_path, monkeypatch):
    """The batched torch preprocessing (what a GPU runs) gives the numpy path's statistic."""
    import torch

    import configs

    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path))
    (tmp_path / "Demo2det_debug").mkdir()
    torch.manual_seed(1)
    model = configs.Demo2det.model(**configs.Demo2det.model_params)
    torch.save({"model": model.state_dict(), "state": {"finished": True}},
               tmp_path / "Demo2det_debug" / "fold0.pt")
    rng = np.random.default_rng(2)

    data = sim_noise.StreamingNoise(("H1", "L1"), rng)(16 * 2048)
    psd = spectral.welch_psd(data, 4096, 2048)
    batch = np.stack([data[:, i * 1024:i * 1024 + 4096] for i in range(5)])
    numpy_scorer, _ = network.config_scorer(configs.Demo2det, debug=True, device_preprocess=False)
    torch_scorer, _ = network.config_scorer(configs.Demo2det, debug=True, device_preprocess=True)
    expected = numpy_scorer(batch, psd)
    np.testing.assert_allclose(torch_scorer(batch, psd), expected, rtol=1e-4, atol=1e-4)
    assert np.ptp(expected) > 1e-3  # the windows differ, so the comparison means something


def test_a_killed_network_search_resumes_to_the_same_triggers(loud_strain, tmp_path, monkeypatch, capsys,
                                                              killed_at_save):
    """search.py saves its progress beside --output: rerun after a kill, it resumes and writes the
    triggers of an uninterrupted run; other models or --restart start over."""
    import configs
    from g2net.search import checkpoint as search_checkpoint

    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path / "results"))
    folder = tmp_path / "results" / "Demo2det"
    write_untrained_folds(configs.Demo2det, folder)
    real = search_checkpoint.SearchCheckpoint
    monkeypatch.setattr(network, "SearchCheckpoint",  # save after every block
                        lambda path, fingerprint, every: real(path, fingerprint, every=0.0))

    def run(out, *extra):
        return search.main(["--config", "Demo2det", "--input", str(loud_strain / "background.hdf"),
                            "--output", str(out), "--stride", "2", "--psd-duration", "16",
                            "--slides", "1", "--no-progress", *extra])

    def killed(out, saves, *extra):
        with killed_at_save(saves):
            run(out, *extra)
        capsys.readouterr()

    whole = run(tmp_path / "whole.hdf")
    out = tmp_path / "killed.hdf"
    killed(out, 5)
    kept = search_checkpoint.checkpoint_path(out)
    assert kept.is_file() and not out.exists()
    again = run(out)
    assert f"resuming from {kept}: 5 of " in capsys.readouterr().err
    np.testing.assert_array_equal(again["time"], whole["time"])
    np.testing.assert_array_equal(again["stat"], whole["stat"])
    assert not kept.exists()  # finished: the checkpoint goes
    # one fold's checkpoint instead of both is another search: it starts over
    killed(out.with_name("models.hdf"), 3)
    alone = run(out.with_name("models.hdf"), "--checkpoint", str(folder / "fold0.pt"))
    assert "written by a different search (differs in: models); starting over" in capsys.readouterr().err
    assert alone["windows"] == whole["windows"]
    # --restart discards a matching checkpoint
    killed(out.with_name("r.hdf"), 3)
    fresh = run(out.with_name("r.hdf"), "--restart")
    assert "resuming" not in capsys.readouterr().err
    np.testing.assert_array_equal(fresh["stat"], whole["stat"])
