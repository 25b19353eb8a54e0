"""--trigger-time plateau: a trigger timed at the middle of the windows that score like its loudest
(issue 18), against a hand-made scorer whose plateaus are known; the loudest timing unchanged; the
options checked; the matched filter refusing them; the timing calibration carrying them."""
from __future__ import annotations

import types

import h5py
import numpy as np
import pytest

import calibrate_search_timing as cal
import matched_filter as mf_cli
import search
from g2net.search import engine, network
from g2net.search import matched_filter as strain_mf
from g2net.search import options as search_options
from g2net.search.strain_io import StrainFile, StrainWriter
from g2net.search.timeslides import TimeSlides
from g2net.search.triggers import adjacent_mean, cluster_triggers, plateau_times, read_triggers
from utils import G2NetError

RATE = 2048
START = 1000.0  # GPS s of the segment
DURATION = 400  # s: 13 blocks of 30 s of window starts (default --psd-duration 32)
STRIDE = 0.25
OFFSET = 1.5  # --merger-offset: trigger times on the quarter seconds
N_PLATEAUS = 12
WIDTH = 1.5  # s from the first to the last window of a plateau: 7 windows
SHIFT = 0.3  # s: a plateau's middle lies this far after the merger (what calibration finds)


def plateau_edges() -> np.ndarray:
    """``(N_PLATEAUS, 2)`` trigger times of each plateau's first and last window: 10 s into every
    30 s block of window starts, so that no plateau straddles two blocks."""
    first = START + OFFSET + 10.0 + 30.0 * np.arange(N_PLATEAUS)
    return np.stack([first, first + WIDTH], axis=1)


class PlateauScorer:
    """Reads a window's start from the strain (a ramp: every sample holds its seconds since the
    segment start) and scores it as a loud signal would: 5 + U(0, 0.4) on a plateau, whose
    loudest window (5.45) sits at its first (even plateaus) or last (odd) window; U(-3, 0) off it.
    Every window's noise is seeded by its start, so batching changes nothing."""

    def __call__(self, batch: np.ndarray, psd: np.ndarray) -> np.ndarray:
        return self.stat(np.rint(batch[:, 0, 0] * RATE).astype(np.int64))

    @staticmethod
    def stat(starts: np.ndarray) -> np.ndarray:
        time = START + starts / RATE + OFFSET
        out = np.empty(len(starts))
        for i, (sample, t) in enumerate(zip(starts, time)):
            rng = np.random.default_rng(int(sample))
            out[i] = rng.uniform(-3.0, 0.0)
            for k, (lo, hi) in enumerate(plateau_edges()):
                if lo <= t <= hi:
                    out[i] = 5.45 if t == (lo if k % 2 == 0 else hi) else 5.0 + rng.uniform(0.0, 0.4)
        return out


@pytest.fixture(scope="module")
def ramp(tmp_path_factory):
    path = tmp_path_factory.mktemp("plateau") / "ramp.hdf"
    writer = StrainWriter(path, ("H1", "L1"))
    n = DURATION * RATE
    key = writer.create_segment(START, n, 1 / RATE)
    writer.write(key, 0, np.tile(np.arange(n) / RATE, (2, 1)))
    writer.close()
    return path


def _search(path, scorer=None, **options):
    with StrainFile(path, ("H1", "L1"), RATE) as strain:
        return engine.search_strain(strain, scorer or PlateauScorer(), search_options.SearchOptions(
            stride=STRIDE, merger_offset=OFFSET, **options), progress=False)


def _loud(result):
    loud = result["stat"] > 4.0
    return result["time"][loud], result["stat"][loud]


def test_plateau_times_run_while_consecutive_and_within_the_drop():
    """The run stops at an output below loudest - drop, at a gap in time (not one step), and at
    the ends of the outputs; louder outputs belong to it."""
    time = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 2.0, 2.25, 2.5])
    stat = np.array([9.0, 4.0, 9.5, 10.0, 9.2, 11.0, 9.9, 9.9, 4.0])
    # 3 (10.0): 2..5 (0.5-1.25; 1 is below 9, 11.0 is louder); 6 (9.9): 6..7 (the gap before 2.0)
    # 0 (9.0): alone (4.0 next to it); with a drop of 6 the run of 0 reaches 5 (the gap), of 7 the end
    np.testing.assert_array_equal(plateau_times(time, stat, np.array([3, 6, 0]), 1.0, 0.25),
                                  [0.875, 2.125, 0.0])
    np.testing.assert_array_equal(plateau_times(time, stat, np.array([0, 7]), 6.0, 0.25), [0.625, 2.25])
    assert plateau_times(time, stat, np.array([], dtype=np.int64), 1.0, 0.25).shape == (0,)


def test_plateau_time_is_the_middle_where_the_loudest_window_is_an_edge(ramp):
    """Every plateau's trigger lands on its middle (exactly: the grid is on quarter seconds) with
    the loudest statistic; the loudest window lands on an edge, 0.75 s away, and the plateau's
    other end (over --cluster away) makes a second trigger, which the plateau timing merges."""
    edges = plateau_edges()
    middle = edges.mean(axis=1)
    loudest_window = np.where(np.arange(N_PLATEAUS) % 2 == 0, edges[:, 0], edges[:, 1])
    plateau = _search(ramp, timing="plateau")
    loudest = _search(ramp)
    time, stat = _loud(plateau)
    np.testing.assert_allclose(time, middle, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(stat, np.full(N_PLATEAUS, 5.45))  # the loudest output's
    assert np.all(np.abs(time - middle) < STRIDE)
    time, stat = _loud(loudest)
    np.testing.assert_allclose(time[stat == 5.45], loudest_window, rtol=0, atol=1e-9)
    assert np.all(np.abs(time[stat == 5.45] - middle) == WIDTH / 2)
    far = np.where(np.arange(N_PLATEAUS) % 2 == 0, edges[:, 1], edges[:, 0])  # the other end
    assert len(time) == 2 * N_PLATEAUS and np.all(np.min(np.abs(time[stat < 5.45, None] - far), axis=1) <= 0.25)
    # the same windows scored; noise triggers are timed by their own (short) plateaus too
    assert plateau["windows"] == loudest["windows"] == (DURATION - 2) / STRIDE + 1
    # a drop below the plateau's jitter (0.4) leaves the loudest window alone on its "plateau"
    time, stat = _loud(_search(ramp, timing="plateau", plateau_drop=0.05))
    np.testing.assert_allclose(time[stat == 5.45], loudest_window, rtol=0, atol=1e-9)


def test_threshold_does_not_shorten_a_plateau(ramp):
    """A threshold that keeps only the loudest window of each plateau leaves its time unchanged."""
    full = _loud(_search(ramp, timing="plateau"))
    cut = _search(ramp, timing="plateau", threshold=5.42)
    assert len(cut["time"]) == N_PLATEAUS  # every other output is below it
    np.testing.assert_array_equal(cut["time"], full[0])
    np.testing.assert_array_equal(cut["stat"], full[1])


def _reduce_block_before(time, stat, options):
    """engine._reduce_block as it was before plateau timing: the reference of the loudest timing."""
    if options.threshold is not None:
        time, stat = time[stat >= options.threshold], stat[stat >= options.threshold]
    keep = cluster_triggers(time, stat, options.cluster)
    return time[keep], stat[keep]


@pytest.mark.parametrize("options", [{}, dict(threshold=-0.5), dict(threshold=-0.5, slides=TimeSlides(2, 5.0)),
                                     dict(timing="loudest", cluster=0.3, batch_size=37)])
def test_loudest_timing_gives_the_triggers_it_gave_before(options, ramp, monkeypatch):
    """Byte for byte the triggers of the engine before plateau timing (its block reduction kept
    here), with and without threshold, slides and odd batches."""
    now = _search(ramp, **options)
    monkeypatch.setattr(engine, "_reduce_block", _reduce_block_before)
    before = _search(ramp, **options)
    for key in ("time", "stat", "var"):
        assert now[key].tobytes() == before[key].tobytes()
    assert len(now["time"]) > N_PLATEAUS


def test_plateau_timing_refuses_scorers_that_time_their_own_outputs(ramp):
    def timed(batch, psd):
        stat = PlateauScorer()(batch, psd)
        return stat, np.full(len(stat), 1.0)

    with StrainFile(ramp, ("H1", "L1"), RATE) as strain:
        with pytest.raises(G2NetError, match="--trigger-time plateau needs one output per window"):
            engine.search_strain(strain, timed, search_options.SearchOptions(timing="plateau"),
                                 progress=False)
        engine.search_strain(strain, timed, search_options.SearchOptions(), progress=False)  # loudest: fine
    with pytest.raises(G2NetError, match="--trigger-time middle: must be one of loudest, plateau"):
        search_options.SearchOptions(timing="middle").validate(("H1", "L1"), RATE)
    with pytest.raises(G2NetError, match="--plateau-drop 0: must be > 0"):
        search_options.SearchOptions(plateau_drop=0.0).validate(("H1", "L1"), RATE)


@pytest.mark.parametrize("option,value,message", [
    ("--plateau-drop", "nan", "not a finite number"), ("--plateau-drop", "inf", "not a finite number"),
    ("--plateau-drop", "0", "must be > 0"), ("--plateau-drop", "-1", "must be > 0"),
    ("--plateau-drop", "big", "not a number"), ("--trigger-time", "middle", "invalid choice")])
def test_bad_timing_options_are_refused_by_argparse(option, value, message, tmp_path, capsys):
    for main, args in ((search.main, ["--config", "Debug", "--input"]), (mf_cli.main, ["--strain"])):
        with pytest.raises(SystemExit) as done:
            main([*args, str(tmp_path / "in.hdf"), "--output", str(tmp_path / "out.hdf"), option, value])
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert f"error: argument {option}: " in err and message in err and value in err
    assert not (tmp_path / "out.hdf").exists()


def _toy_network(monkeypatch):
    """search.py with PlateauScorer as its trained experiment."""
    monkeypatch.setattr(network, "get_config", lambda name: types.SimpleNamespace(name=name, detectors=("H1", "L1")))
    monkeypatch.setattr(network, "config_scorer", lambda cfg, debug, gpu, **kwargs: (PlateauScorer(), 4096))
    monkeypatch.setattr(network, "fold_checkpoints", lambda cfg, debug: [])  # no model files to fingerprint


def test_search_cli_times_at_the_plateau_and_records_it(ramp, tmp_path, monkeypatch):
    _toy_network(monkeypatch)
    common = ["--config", "Toy", "--input", str(ramp), "--stride", str(STRIDE), "--merger-offset",
              str(OFFSET), "--no-progress"]
    search.main([*common, "--output", str(tmp_path / "p.hdf"), "--trigger-time", "plateau",
                 "--plateau-drop", "0.5"])
    search.main([*common, "--output", str(tmp_path / "l.hdf")])
    time, stat, _, attrs = read_triggers(tmp_path / "p.hdf")
    assert attrs["timing"] == "plateau" and attrs["plateau_drop"] == 0.5 and attrs["merger_offset"] == OFFSET
    np.testing.assert_allclose(time[stat > 4], plateau_edges().mean(axis=1), rtol=0, atol=1e-9)
    attrs = read_triggers(tmp_path / "l.hdf")[3]
    assert attrs["timing"] == "loudest" and attrs["plateau_drop"] == search_options.DEFAULT_PLATEAU_DROP
    # a plateau drop without plateau timing would be ignored: refused, nothing written
    with pytest.raises(G2NetError, match="--plateau-drop 0.5: only used with --trigger-time plateau"):
        search.main([*common, "--output", str(tmp_path / "x.hdf"), "--plateau-drop", "0.5"])
    assert not (tmp_path / "x.hdf").exists()


@pytest.mark.parametrize("extra,shown", [(["--trigger-time", "plateau"], "--trigger-time plateau"),
                                         (["--trigger-time", "loudest"], "--trigger-time loudest"),
                                         (["--plateau-drop", "0.5"], "--plateau-drop 0.5"),
                                         (["--trigger-time", "plateau", "--plateau-drop", "2"],
                                          "--trigger-time plateau")])
def test_matched_filter_refuses_timing_options_before_any_work(extra, shown, ramp, tmp_path, monkeypatch,
                                                               capsys):
    monkeypatch.setattr(strain_mf, "load_bank", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as done:
        mf_cli.main(["--strain", str(ramp), "--output", str(tmp_path / "t.hdf"), "--no-progress", *extra])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {shown}: not used by matched_filter.py --strain "
                                               "(the matched filter reports each trigger at its SNR peak")
    assert "drop it" in err[0] and not (tmp_path / "t.hdf").exists()


def test_timing_calibration_reads_plateau_files_and_repeats_their_timing(ramp, tmp_path, monkeypatch, capsys):
    """calibrate_search_timing.py on both timings of the same search: the plateau's errors are the
    mergers' scatter around the plateau (+-0.05 s), the loudest window's the plateau's width; the
    printed options carry --trigger-time plateau only for the plateau file."""
    _toy_network(monkeypatch)
    rng = np.random.default_rng(1)
    tc = plateau_edges().mean(axis=1) - SHIFT + rng.uniform(-0.05, 0.05, N_PLATEAUS)
    with h5py.File(tmp_path / "injections.hdf", "w") as f:
        for key, values in (("tc", tc), ("distance", np.full(N_PLATEAUS, 100.0)),
                            ("mass1", np.full(N_PLATEAUS, 30.0)), ("mass2", np.full(N_PLATEAUS, 25.0)),
                            ("snr_network", np.full(N_PLATEAUS, 30.0))):
            f[key] = values
    common = ["--config", "Toy", "--input", str(ramp), "--stride", str(STRIDE), "--merger-offset",
              str(OFFSET), "--no-progress"]
    results, lines = {}, {}
    for timing in ("plateau", "loudest"):
        search.main([*common, "--output", str(tmp_path / f"{timing}.hdf"), "--trigger-time", timing])
        capsys.readouterr()
        results[timing] = cal.main(["--injections", str(tmp_path / "injections.hdf"),
                                    "--events", str(tmp_path / f"{timing}.hdf")])
        lines[timing] = capsys.readouterr().out.strip().splitlines()[-1]
    plateau, loudest = results["plateau"], results["loudest"]
    assert plateau["injections"] == loudest["injections"] == N_PLATEAUS
    edges = plateau_edges()
    for result, times in ((plateau, edges.mean(axis=1)),
                          (loudest, np.where(np.arange(N_PLATEAUS) % 2 == 0, edges[:, 0], edges[:, 1]))):
        errors = times - tc
        assert result["median_error"] == pytest.approx(np.median(errors), abs=1e-9)
        assert result["merger_offset"] == pytest.approx(OFFSET - np.median(errors), abs=1e-9)
        assert result["var"] == pytest.approx(np.quantile(np.abs(errors - np.median(errors)), 0.99), abs=1e-9)
    assert plateau["merger_offset"] == pytest.approx(OFFSET - SHIFT, abs=0.05)
    assert plateau["var"] < 0.1 < 0.7 < loudest["var"]  # the plateau's middle, or an edge 0.75 s off
    assert plateau["p95"] - plateau["p05"] < 0.1 < 1.4 < loudest["p95"] - loudest["p05"]
    assert lines["plateau"] == (f"search with --trigger-time plateau --plateau-drop 3 --merger-offset "
                                f"{plateau['merger_offset']:.3f} --var {plateau['var']:.3f}")
    assert lines["loudest"] == (f"search with --merger-offset {loudest['merger_offset']:.3f} "
                                f"--var {loudest['var']:.3f}")
    # a file with a timing search.py does not know is refused in one line
    with h5py.File(tmp_path / "plateau.hdf", "a") as f:
        f.attrs["timing"] = "centroid"
    with pytest.raises(SystemExit) as done:
        cal.main(["--injections", str(tmp_path / "injections.hdf"), "--events", str(tmp_path / "plateau.hdf")])
    assert done.value.code == 2 and "trigger timing 'centroid'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- --statistic mean3
def test_adjacent_mean_averages_each_output_with_its_neighbours_within_a_run():
    time = np.array([0.0, 0.5, 1.0, 2.0, 2.5, 4.0])  # runs of adjacent windows: 3, 2 and 1
    stat = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 7.0])
    np.testing.assert_allclose(adjacent_mean(time, stat, 0.5), [1.5, 2.0, 2.5, 15.0, 15.0, 7.0])


SPIKES = START + OFFSET + 25.0 + 30.0 * np.arange(0, N_PLATEAUS, 2)  # lone loud windows, off the plateaus


class SpikeScorer(PlateauScorer):
    """PlateauScorer with a lone window of 6 (louder than any plateau's 5.45) in every other block."""

    @staticmethod
    def stat(starts: np.ndarray) -> np.ndarray:
        out = PlateauScorer.stat(starts)
        out[np.isin(np.round(START + starts / RATE + OFFSET, 6), np.round(SPIKES, 6))] = 6.0
        return out


def test_mean3_ranks_a_signal_plateau_above_a_lone_loud_window(ramp):
    """The loudest window ranks the 6 lone spikes above all 12 plateaus; the mean of three adjacent
    windows ranks every plateau (about 5.2) above every spike (below 2), keeps each plateau's
    middle as its time, and each trigger's stat is that mean of the scorer's outputs."""
    loudest = _search(ramp, SpikeScorer(), timing="plateau", plateau_drop=0.5)
    top = np.argsort(loudest["stat"])[::-1]
    assert np.allclose(np.sort(loudest["time"][top[:len(SPIKES)]]), SPIKES)  # spikes time themselves
    mean3 = _search(ramp, SpikeScorer(), timing="plateau", plateau_drop=0.5, statistic="mean3")
    top = np.sort(np.argsort(mean3["stat"])[::-1][:N_PLATEAUS])
    np.testing.assert_allclose(mean3["time"][top], plateau_edges().mean(axis=1), rtol=0, atol=1e-9)
    assert mean3["stat"][top].min() > 5.0
    plain = _search(ramp, SpikeScorer(), statistic="mean3")  # timed at the kept window: the spike or a neighbour
    near = np.abs(plain["time"][:, None] - SPIKES[None, :]) < 1.5 * STRIDE
    assert near.sum(axis=0).tolist() == [1] * len(SPIKES) and plain["stat"][near.any(axis=1)].max() < 2.0
    # each stat is the mean of the kept window's output and its neighbours', by hand
    starts = np.rint((plain["time"] - START - OFFSET) * RATE).astype(np.int64)
    step = int(STRIDE * RATE)
    by_hand = (SpikeScorer.stat(starts - step) + SpikeScorer.stat(starts) + SpikeScorer.stat(starts + step)) / 3
    inner = (plain["time"] - START - OFFSET) % 30.0 > 0.1  # not a block's first or last window
    inner &= (plain["time"] - START - OFFSET) % 30.0 < 29.7
    assert inner.sum() > 0.8 * len(inner)
    np.testing.assert_allclose(plain["stat"][inner], by_hand[inner], rtol=1e-12)


def test_statistic_option_is_recorded_checked_and_refused_where_it_has_no_meaning(ramp, tmp_path, monkeypatch,
                                                                                   capsys):
    _toy_network(monkeypatch)
    common = ["--config", "Toy", "--input", str(ramp), "--stride", str(STRIDE), "--merger-offset",
              str(OFFSET), "--no-progress"]
    search.main([*common, "--output", str(tmp_path / "m.hdf"), "--statistic", "mean3"])
    search.main([*common, "--output", str(tmp_path / "l.hdf")])
    assert read_triggers(tmp_path / "m.hdf")[3]["statistic"] == "mean3"
    assert read_triggers(tmp_path / "l.hdf")[3]["statistic"] == "loudest"
    assert read_triggers(tmp_path / "m.hdf")[1].max() < read_triggers(tmp_path / "l.hdf")[1].max()
    with pytest.raises(SystemExit) as done:
        search.main([*common, "--output", str(tmp_path / "x.hdf"), "--statistic", "median"])
    assert done.value.code == 2 and "invalid choice: 'median'" in capsys.readouterr().err
    monkeypatch.setattr(strain_mf, "load_bank", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as done:
        mf_cli.main(["--strain", str(ramp), "--output", str(tmp_path / "t.hdf"), "--statistic", "mean3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: --statistic mean3: not used by matched_filter.py --strain")
    assert not (tmp_path / "x.hdf").exists() and not (tmp_path / "t.hdf").exists()
    with pytest.raises(G2NetError, match="--statistic median: must be one of loudest, mean3"):
        search_options.SearchOptions(statistic="median").validate(("H1", "L1"), RATE)

    def timed(batch, psd):
        stat = PlateauScorer()(batch, psd)
        return stat, np.full(len(stat), 1.0)
    with StrainFile(ramp, ("H1", "L1"), RATE) as strain:
        with pytest.raises(G2NetError, match="--statistic mean3 needs one output per window"):
            engine.search_strain(strain, timed, search_options.SearchOptions(statistic="mean3"), progress=False)


def test_checkpoints_of_searches_from_before_the_statistic_option_still_resume():
    """The default leaves the fingerprint as it was (a day of filtering is not started over after
    an update); mean3 changes it, so neither resumes the other's checkpoint."""
    default = search_options.SearchOptions()
    before = {k: v for k, v in default.__dict__.items() if k != "statistic"}
    assert default.fingerprint() == before
    assert search_options.SearchOptions(statistic="mean3").fingerprint() == {**before, "statistic": "mean3"}
