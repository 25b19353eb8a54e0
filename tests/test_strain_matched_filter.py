"""matched_filter.py --strain: the options it honours or refuses, banks from a file (spins
included, whole inspirals), templates in passes, and a killed search that resumes."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import matched_filter as mf_cli
import simulate_strain
from g2net.filtering import reference_bank
from g2net.filtering.templates import template_waveform, whitened_unit_templates
from g2net.search import checkpoint as search_checkpoint
from g2net.search import matched_filter as strain_mf
from g2net.search.triggers import read_triggers
from utils import G2NetError

# three aligned-spin templates near the loud injections' masses (unequal spins on purpose)
TEMPLATES = {"mass1": [34.0, 30.0, 45.0], "mass2": [31.0, 29.0, 20.0],
             "spin1z": [0.3, 0.0, -0.4], "spin2z": [-0.2, 0.0, 0.1]}


@pytest.fixture(scope="module")
def loud_strain(tmp_path_factory):
    """200 s of H1+L1 strain with seven loud injections (network SNR ~50-160), and its background."""
    out = tmp_path_factory.mktemp("loud")
    simulate_strain.main(["--out", str(out), "--duration", "200", "--padding", "20",
                          "--chirp-distance-range", "15", "20", "--seed", "0", "--no-progress"])
    return out


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory):
    """A bank file as pycbc_brute_bank writes it (its four datasets)."""
    path = tmp_path_factory.mktemp("bank") / "bank.hdf"
    with h5py.File(path, "w") as f:
        for key, values in TEMPLATES.items():
            f.create_dataset(key, data=np.asarray(values))
    return path


def _search(strain, output, *extra):
    return mf_cli.main(["--strain", str(strain), "--output", str(output), "--no-progress", *extra])


@pytest.mark.parametrize("option,value", [("--stride", "0.5"), ("--merger-offset", "1.2"),
                                          ("--stride", "0.25")])
def test_options_the_filter_has_no_use_for_are_refused_in_one_line(option, value, loud_strain, tmp_path,
                                                                   monkeypatch, capsys):
    monkeypatch.setattr(strain_mf, "load_bank", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as done:
        _search(loud_strain / "foreground.hdf", tmp_path / "t.hdf", option, value)
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {option} {float(value):g}: not used by "
                                               "matched_filter.py --strain") and "drop it" in err[0]
    assert not (tmp_path / "t.hdf").exists()


def test_psd_duration_is_honoured_and_checked(loud_strain, bank_file, tmp_path, capsys):
    result = _search(loud_strain / "foreground.hdf", tmp_path / "a.hdf", "--bank-file", str(bank_file),
                     "--psd-duration", "40")
    attrs = read_triggers(tmp_path / "a.hdf")[3]
    assert attrs["psd_duration"] == 40.0 and attrs["window_seconds"] == 16  # not replaced by 4 windows
    default = _search(loud_strain / "foreground.hdf", tmp_path / "b.hdf", "--bank-file", str(bank_file))
    assert read_triggers(tmp_path / "b.hdf")[3]["psd_duration"] == 64.0
    assert not np.array_equal(result["stat"], default["stat"])  # another PSD estimate, other SNRs
    with pytest.raises(SystemExit):  # shorter than the filter's 16 s window
        _search(loud_strain / "foreground.hdf", tmp_path / "c.hdf", "--bank-file", str(bank_file),
                "--psd-duration", "12")
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: --psd-duration 12: need at least 16 s (a window, and several 2 s periodograms to average)"
    with pytest.raises(SystemExit):
        _search(loud_strain / "foreground.hdf", tmp_path / "c.hdf", "--bank-file", str(bank_file),
                "--bank-size", "8")
    assert "not allowed with argument" in capsys.readouterr().err


def test_bank_file_templates_keep_their_spins_and_whole_inspirals(bank_file):
    bank = reference_bank.load(bank_file)
    scorer = strain_mf.StrainMatchedFilter(bank, ("H1", "L1"), device="cpu")
    assert scorer.window_seconds == 16 and scorer.waveforms.shape == (3, 16 * 2048 // 2 + 1)
    expected = template_waveform(45.0, 20.0, -0.4, 0.1, f_lower=20.0, duration=scorer.template_seconds,
                                 n_samples=scorer.n, approximant="IMRPhenomD")
    np.testing.assert_array_equal(scorer.waveforms[2], expected)
    # the longest template is the lightest binary with the largest aligned spins: PyCBC's
    # IMRPhenomD chirp time from 20 Hz (6.58 s at zero spin, 6.88 s at 0.5) fits the window
    light = reference_bank.ReferenceBank(bank_file, np.array([10.0, 10.0]), np.array([10.0, 10.0]),
                                         np.array([0.0, 0.5]), np.array([0.0, 0.5]), "IMRPhenomD", 20.0)
    seconds = strain_mf.template_seconds(light)
    assert 6.88 + 0.1 < seconds < 6.88 + 0.3
    lean = strain_mf.StrainMatchedFilter(light, ("H1", "L1"), device="cpu")
    assert lean.window_seconds == 32 and lean.first / 2048 > seconds  # merger times after a whole template
    assert lean.stride / lean.window_seconds >= strain_mf.MIN_USABLE


def test_prepare_is_the_plain_matched_filter_in_any_chunking(bank_file):
    """prepare's rows (templates in chunks through reused work arrays, the later detector's
    maximum within the light travel time) are 4 |IFFT(d~ h~*)|^2 computed plainly in float64 with
    the whitened unit templates of ``whitened_unit_templates``,
    however many templates a chunk holds (the last chunk partly filled)."""
    from g2net.whitening import whiten_with_psd

    bank = reference_bank.load(bank_file)
    psd = np.full((2, 2049), 2 * 1e-42 / 2048)  # one-sided PSD of the white noise below
    results = {}
    for chunk in (32, 2, 1):  # one chunk; a full and a partial one; one template a chunk
        scorer = strain_mf.StrainMatchedFilter(bank, ("H1", "L1"), template_seconds=6.0, device="cpu",
                                               template_chunk=chunk)
        windows = np.random.default_rng(5).normal(size=(2, 2, scorer.n)) * 1e-21
        results[chunk] = [scorer.prepare(windows[:, j], psd[j], j).numpy() for j in range(2)]
    for chunk in (2, 1):  # float32 transforms batched differently: equal to rounding
        for got, want in zip(results[chunk], results[32]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * want.max())
    freqs = np.fft.rfftfreq(scorer.n, 1 / 2048.0)
    for j, got in enumerate(results[32]):
        fine = np.interp(freqs, np.fft.rfftfreq(2 * 2048, 1 / 2048.0), psd[j])  # the PSD on the window's grid
        templates = np.conj(whitened_unit_templates(scorer.waveforms, fine[None], 20.0, scorer.n, 2048.0))
        white = whiten_with_psd(windows[:, j, None], fine[None], 2048.0)[:, 0]
        spectrum = np.fft.rfft(white, axis=-1)[:, :scorer.n_bins]
        full = np.zeros((2, len(bank), scorer.n), dtype=np.complex128)
        full[..., :scorer.n_bins] = spectrum[:, None] * templates[None, :, :scorer.n_bins]
        snr2 = 4 * np.abs(np.fft.ifft(full, axis=-1)) ** 2
        radius = scorer.radius[0] if j else 0
        assert radius == (20 if j else 0)  # H1-L1: 10 ms at 2048 Hz
        series = snr2[..., scorer.first - radius:scorer.last + radius]
        want = np.lib.stride_tricks.sliding_window_view(series, 2 * radius + 1, axis=-1).max(-1)
        np.testing.assert_allclose(got[:, :-2], want, rtol=2e-4, atol=2e-4 * want.max())
        np.testing.assert_array_equal(got[:, -2], got[:, :-2].max(axis=1))  # the bound row
        np.testing.assert_array_equal(got[:, -1], coarse_row(got[:, -2]))  # and its coarse maxima


def coarse_row(loudest: np.ndarray) -> np.ndarray:
    """prepare's last row, plainly: the largest of each COARSE samples of the bound row, then 0."""
    cells = [loudest[:, k:k + strain_mf.COARSE].max(axis=1) for k in range(0, loudest.shape[1], strain_mf.COARSE)]
    row = np.zeros_like(loudest)
    row[:, :len(cells)] = np.stack(cells, axis=1)
    return row


def dense_combine_above(scorer, prepared):
    """The bounded combination read at every sample (the filter's before the coarse test)."""
    import torch

    floor = (scorer.threshold * (1 - 1e-6)) ** 2
    bound = prepared[0][:, -2] + prepared[1][:, -2]
    for part in prepared[2:]:
        bound = bound + part[:, -2]
    rows, samples = torch.nonzero(bound >= floor, as_tuple=True)
    network = prepared[0][rows, :-2, samples] + prepared[1][rows, :-2, samples]
    for part in prepared[2:]:
        network = network + part[rows, :-2, samples]
    bound = torch.zeros_like(bound)
    bound[rows, samples] = network.amax(dim=1)
    return scorer._binned_max(bound)


@pytest.mark.parametrize("detectors", [("H1", "L1"), ("H1", "L1", "V1")])
def test_coarse_bound_gives_the_dense_combination(bank_file, detectors):
    """A slide tests the bound per COARSE samples first, then reads only the cells that may reach
    the threshold: the same binned values and merger samples as testing every sample, with loud
    coincidences planted at a cell's edge, a bin's edge, in the short last cell and two in one bin."""
    import torch

    scorer = strain_mf.StrainMatchedFilter(reference_bank.load(bank_file), detectors, template_seconds=6.0,
                                           threshold=6.5)
    samples, templates = scorer.last - scorer.first, 6
    assert samples % strain_mf.COARSE and samples % scorer.bin_width  # short last cell and bin
    rng = np.random.default_rng(11)
    prepared = []
    for _ in detectors:
        series = rng.exponential(2.0, size=(3, templates, samples)).astype(np.float32)  # chi^2_2 noise
        for row, sample, template in ((0, 63, 1), (0, 64, 2), (1, 2047, 0), (1, 2048, 5),
                                      (2, samples - 1, 3), (2, 4100, 4), (2, 4105, 4)):
            series[row, template, sample] = rng.uniform(22.0, 30.0)  # 6.5^2 = 42.25 needs two
        loudest = series.max(axis=1)
        prepared.append(torch.from_numpy(np.concatenate([series, loudest[:, None], coarse_row(loudest)[:, None]],
                                                        axis=1)))
    value, index = scorer._combine_above(prepared)
    want_value, want_index = dense_combine_above(scorer, prepared)
    assert int((want_value > 0).sum()) == 5  # the planted coincidences' bins (two bins hold two)
    torch.testing.assert_close(value, want_value, rtol=0, atol=0)
    torch.testing.assert_close(index, want_index, rtol=0, atol=0)
    scorer.threshold = 3.0  # every cell reaches it: the same again
    value, index = scorer._combine_above(prepared)
    want_value, want_index = dense_combine_above(scorer, prepared)
    assert bool((want_value > 0).all())
    torch.testing.assert_close(value, want_value, rtol=0, atol=0)
    torch.testing.assert_close(index, want_index, rtol=0, atol=0)


def test_a_psd_that_leaves_a_template_no_band_is_refused(bank_file):
    """Whitening by a PSD that is infinite everywhere gives every template a zero norm: refused in
    one line (as whitened_unit_templates refuses it) instead of dividing by zero."""
    scorer = strain_mf.StrainMatchedFilter(reference_bank.load(bank_file), ("H1", "L1"), template_seconds=6.0,
                                           device="cpu")
    with pytest.raises(G2NetError, match="a template has no power above f_lower in the PSD's band"):
        scorer._whitening(np.full(2049, np.inf), 0)


def test_zero_lag_call_is_combine_of_prepare_without_holding_series(bank_file):
    """At zero lag the scorer adds each chunk over detectors as it is filtered: the same values and
    merger times as combining every detector's prepared series (and, with a threshold, the same
    outputs wherever they reach it); one chunk or several."""
    bank = reference_bank.load(bank_file)
    psd = np.full((2, 2049), 2 * 1e-42 / 2048)
    for chunk in (32, 2):
        scorer = strain_mf.StrainMatchedFilter(bank, ("H1", "L1"), template_seconds=6.0, device="cpu",
                                               template_chunk=chunk)
        windows = np.random.default_rng(7).normal(size=(2, 2, scorer.n)) * 1e-21
        windows[1, :, 20000:20100] += 3e-20  # a loud coincident burst, so that a bin is far above the rest
        stat, offset = scorer(windows, psd)
        want, want_offset = scorer.combine([scorer.prepare(windows[:, j], psd[j], j) for j in range(2)])
        np.testing.assert_array_equal(stat, want)
        np.testing.assert_array_equal(offset, want_offset)
        scorer.threshold = threshold = np.sort(stat.ravel())[-3]  # the loudest three bins reach it
        bounded, bounded_offset = scorer.combine([scorer.prepare(windows[:, j], psd[j], j) for j in range(2)])
        above = stat >= threshold
        assert above.sum() == 3 and np.all(bounded[~above] < threshold)
        np.testing.assert_array_equal(bounded[above], stat[above])
        np.testing.assert_array_equal(np.broadcast_to(bounded_offset, stat.shape)[above],
                                      np.broadcast_to(offset, stat.shape)[above])


def test_bank_file_search_finds_the_loud_injections(loud_strain, bank_file, tmp_path):
    result = _search(loud_strain / "foreground.hdf", tmp_path / "t.hdf", "--bank-file", str(bank_file))
    with h5py.File(loud_strain / "injections.hdf") as f:
        tc = f["tc"][()]
    distance = np.abs(result["time"][:, None] - tc[None, :])
    found = distance.min(axis=1) < 0.1  # triggers at an injection's merger
    assert len(tc) == 7 and np.all(distance.min(axis=0) < 0.1)  # every injection has one
    assert result["stat"][found].min() > 10 > 8 > result["stat"][~found].max()
    assert read_triggers(tmp_path / "t.hdf")[3]["bank"] == str(bank_file)


def test_templates_in_passes_give_the_same_triggers(loud_strain, bank_file, tmp_path):
    one = _search(loud_strain / "background.hdf", tmp_path / "one.hdf", "--bank-file", str(bank_file),
                  "--slides", "2")
    three = _search(loud_strain / "background.hdf", tmp_path / "three.hdf", "--bank-file", str(bank_file),
                    "--slides", "2", "--templates-per-pass", "1")
    assert one["passes"] == 1 and three["passes"] == 3
    np.testing.assert_array_equal(three["time"], one["time"])
    np.testing.assert_allclose(three["stat"], one["stat"], rtol=1e-6)


def test_templates_a_pass_follow_the_memory_available(loud_strain, bank_file, tmp_path, monkeypatch, capsys,
                                                         killed_at_save):
    """The default pass holds a quarter of the memory available, never less than 1 GiB (few
    templates a pass make a long slid background several times slower), and the search uses it."""
    assert strain_mf.available_memory() > 0  # read on this machine
    monkeypatch.setattr(strain_mf, "available_memory", lambda: 100 << 30)
    assert strain_mf.memory_budget() == 25 << 30
    monkeypatch.setattr(strain_mf, "available_memory", lambda: 1 << 20)
    assert strain_mf.memory_budget() == strain_mf.MEMORY_BUDGET == 1 << 30
    monkeypatch.setattr(strain_mf, "available_memory", lambda: None)
    assert strain_mf.memory_budget() == 1 << 30
    # room for none: one template a pass; killed in the first pass
    monkeypatch.setattr(strain_mf, "memory_budget", lambda: 0)
    monkeypatch.setattr(strain_mf, "CHECKPOINT_EVERY", 0.0)
    out = tmp_path / "killed.hdf"
    with killed_at_save(4):
        _search(loud_strain / "background.hdf", out, "--bank-file", str(bank_file), "--slides", "2")
    # more memory free now: a fresh search takes one pass, the killed one resumes in passes of one
    monkeypatch.setattr(strain_mf, "memory_budget", lambda: 1 << 40)
    capsys.readouterr()
    resumed = _search(loud_strain / "background.hdf", out, "--bank-file", str(bank_file), "--slides", "2")
    assert "resuming from" in capsys.readouterr().err and resumed["passes"] == 3
    roomy = _search(loud_strain / "background.hdf", tmp_path / "roomy.hdf", "--bank-file", str(bank_file),
                    "--slides", "2")
    assert roomy["passes"] == 1
    np.testing.assert_array_equal(resumed["time"], roomy["time"])


def test_a_killed_search_resumes_to_the_same_triggers(loud_strain, bank_file, tmp_path, monkeypatch, capsys,
                                                      killed_at_save):
    args = ["--bank-file", str(bank_file), "--slides", "2", "--templates-per-pass", "2",
            "--psd-duration", "32"]  # 2 passes x 15 blocks of 16 s windows
    whole = _search(loud_strain / "background.hdf", tmp_path / "whole.hdf", *args)
    monkeypatch.setattr(strain_mf, "CHECKPOINT_EVERY", 0.0)  # save after every block
    out = tmp_path / "killed.hdf"
    with killed_at_save(20):  # killed in the second pass
        _search(loud_strain / "background.hdf", out, *args)
    kept = search_checkpoint.checkpoint_path(out)
    assert kept.is_file() and not out.exists()
    capsys.readouterr()
    again = _search(loud_strain / "background.hdf", out, *args)
    assert f"resuming from {kept}: 20 of 30 work units done" in capsys.readouterr().err
    np.testing.assert_array_equal(again["time"], whole["time"])
    np.testing.assert_array_equal(again["stat"], whole["stat"])
    assert not kept.exists()  # finished: the checkpoint goes
    # a checkpoint of another search (here another --cluster) is not mixed in: it starts over
    with killed_at_save(5):
        _search(loud_strain / "background.hdf", tmp_path / "other.hdf", *args, "--cluster", "2")
    capsys.readouterr()
    changed = _search(loud_strain / "background.hdf", tmp_path / "other.hdf", *args)
    assert "written by a different search (differs in: options); starting over" in capsys.readouterr().err
    np.testing.assert_array_equal(changed["time"], whole["time"])
    # --restart discards a matching checkpoint
    with killed_at_save(5):
        _search(loud_strain / "background.hdf", tmp_path / "r.hdf", *args)
    capsys.readouterr()
    fresh = _search(loud_strain / "background.hdf", tmp_path / "r.hdf", *args, "--restart")
    assert "resuming" not in capsys.readouterr().err
    np.testing.assert_array_equal(fresh["stat"], whole["stat"])


@pytest.mark.parametrize("option", ["--bank-size", "--templates-per-pass", "--threads"])
def test_strain_counts_are_refused_by_the_shared_argparse_types(option, capsys):


    for value in ("0", "-2", "1.5"):
        with pytest.raises(SystemExit) as exit_info:
            mf_cli.build_strain_parser().parse_args(
                ["--strain", "s.hdf", "--output", "o.hdf", option, value])
        assert exit_info.value.code == 2
        assert f"argument {option}" in capsys.readouterr().err
    assert mf_cli.build_strain_parser().parse_args(
        ["--strain", "s.hdf", "--output", "o.hdf", option, "3"]).__dict__[option[2:].replace("-", "_")] == 3


def test_threshold_skips_only_combinations_that_cannot_reach_it(loud_strain, bank_file, tmp_path, monkeypatch):
    """With --threshold the slides add templates' series only in bins whose bound reaches it, and
    the triggers are exactly those of the full combination cut at the same threshold (at zero lag,
    where every chunk is combined as it is filtered, the same triggers without the bound)."""
    threshold = 5.0  # low enough that the background keeps noise triggers to compare
    added = []
    real = strain_mf.StrainMatchedFilter._combine_above

    def counting(self, prepared):
        value, index = real(self, prepared)
        added.append((int((value > 0).sum()), value.numel()))
        return value, index

    monkeypatch.setattr(strain_mf.StrainMatchedFilter, "_combine_above", counting)
    for kind, slides in (("foreground", "0"), ("background", "3")):
        args = ["--bank-file", str(bank_file), "--slides", slides, "--threshold", str(threshold)]
        added.clear()
        bounded = _search(loud_strain / f"{kind}.hdf", tmp_path / f"{kind}_bounded.hdf", *args)
        computed, bins = map(sum, zip(*added)) if added else (0, 0)
        assert (computed == 0) == (slides == "0")  # zero lag combines as it filters: no bound needed
        # the full combination with the same threshold: the filter told that every output is needed
        monkeypatch.setattr(strain_mf.StrainMatchedFilter, "_combine_above",
                            lambda *a: pytest.fail("the bound was used"))
        original = strain_mf.StrainMatchedFilter.__init__
        monkeypatch.setattr(strain_mf.StrainMatchedFilter, "__init__",
                            lambda self, *a, **k: original(self, *a, **{**k, "threshold": None}))
        full = _search(loud_strain / f"{kind}.hdf", tmp_path / f"{kind}_full.hdf", *args)
        monkeypatch.setattr(strain_mf.StrainMatchedFilter, "__init__", original)
        monkeypatch.setattr(strain_mf.StrainMatchedFilter, "_combine_above", counting)
        assert len(full["time"]) > 3 and full["stat"].min() >= threshold
        np.testing.assert_array_equal(bounded["time"], full["time"])
        np.testing.assert_array_equal(bounded["stat"], full["stat"])
        assert computed < 0.5 * bins or slides == "0"  # most bins were skipped, yet nothing was lost


def test_bound_row_bounds_every_template_sum(bank_file):
    """The last row of prepare's output: each bin's loudest template, whose sum over detectors is
    never below the network statistic of any template (float32 sums are monotonic)."""
    import torch

    bank = reference_bank.load(bank_file)
    scorer = strain_mf.StrainMatchedFilter(bank, ("H1", "L1"), template_seconds=6.0, threshold=8.0)
    rng = np.random.default_rng(3)
    windows = rng.normal(size=(2, 2, scorer.n)) * 1e-21
    psd = np.full((2, 2049), 2 * 1e-42 / 2048)  # one-sided PSD of that white noise
    prepared = [scorer.prepare(windows[:, j], psd[j], j) for j in range(2)]
    # plant one loud coincidence so that one sample must be computed exactly
    for p in prepared:
        p[1, 0, 5000] = 40.0
        p[1, -2, 5000] = p[1, :-2, 5000].max()
        p[1, -1, 5000 // strain_mf.COARSE] = max(float(p[1, -1, 5000 // strain_mf.COARSE]), 40.0)
    sums = (prepared[0][:, :-2] + prepared[1][:, :-2]).amax(dim=1)
    assert torch.all(prepared[0][:, -2] + prepared[1][:, -2] >= sums)
    stat, offset = scorer.combine(prepared)
    k = 5000 // scorer.bin_width
    assert stat[1, k] == pytest.approx(np.sqrt(80.0))
    assert offset[1, k] == pytest.approx((scorer.first + 5000) / 2048)
    assert np.count_nonzero(stat) == 1  # nothing else reaches SNR 8 in white noise
    # without the threshold every bin has its value, the planted one the same
    scorer.threshold = None
    full, _ = scorer.combine(prepared)
    assert full[1, k] == stat[1, k] and np.count_nonzero(full) == full.size and full.max() == stat.max()
