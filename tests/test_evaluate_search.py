"""evaluate_search.py: found/missed, false-alarm rates and the MLGWSC-1 sensitive distance against
hand computations on a constructed case."""
from __future__ import annotations

import hashlib
import json
import math
import re

import h5py
import numpy as np
import pytest

import evaluate_search as ev
import g2net.search.evaluation
import simulate_strain
from g2net.search import injection_snr
from g2net.search.strain_io import StrainFile, StrainWriter
from g2net.search.triggers import write_triggers
from utils import G2NetError

MONTH = g2net.search.evaluation.SECONDS_PER_MONTH
MLGWSC1_KEYS = {"fg-events", "found-indices", "missed-indices", "true-positive-event-indices",
                "false-positive-event-indices", "sorting-indices", "true-positive-diffs",
                "false-positive-diffs", "true-positives", "false-positives", "fg-far", "far",
                "sensitive-volume", "sensitive-distance", "sensitive-volume-error", "sensitive-fraction"}


@pytest.fixture
def case(tmp_path):
    """Four injections at 100..400 s, distances 100..400 Mpc, equal masses 10..40 Msun, in one
    500 s segment; foreground: three true positives (stats 5, 7, 2), two false ones (3, 9); the
    background has stats 1, 4, 6, 8 over four months."""
    writer = StrainWriter(tmp_path / "fg.hdf", ("H1", "L1"))
    key = writer.create_segment(0.0, 500 * 16, 1.0 / 16)
    writer.write(key, 0, np.random.default_rng(0).standard_normal((2, 500 * 16)))
    writer.close()
    with h5py.File(tmp_path / "inj.hdf", "w") as f:
        f["tc"] = [100.0, 200.0, 300.0, 400.0]
        f["distance"] = [100.0, 200.0, 300.0, 400.0]
        f["mass1"] = f["mass2"] = [10.0, 20.0, 30.0, 40.0]
        f["snr_network"] = [20.0, 11.0, 9.0, 5.0]
    write_triggers(tmp_path / "fg_events.hdf", [100.1, 199.5, 300.2, 400.0, 250.0],
                   [5.0, 3.0, 7.0, 2.0, 9.0], 0.3)
    write_triggers(tmp_path / "bg_events.hdf", [10.0, 20.0, 30.0, 40.0], [1.0, 4.0, 6.0, 8.0], 0.3,
                   attrs={"duration": 4 * MONTH})
    return tmp_path


def test_sensitive_distance_equals_hand_computation(case, capsys):
    summary = g2net.search.evaluation.run(str(case / "inj.hdf"), [str(case / "fg.hdf")], [[str(case / "fg_events.hdf")]],
                     [[str(case / "bg_events.hdf")]], ["cnn"], case / "out", padding=0.0)
    with h5py.File(case / "out" / "cnn.hdf") as f:
        assert MLGWSC1_KEYS <= set(f.keys())
        np.testing.assert_allclose(f["far"][()], np.array([3, 2, 1, 0]) / (4 * MONTH))
        assert f["found-indices"][()].tolist() == [0, 2, 3]
        assert f["missed-indices"][()].tolist() == [1]
        assert f["false-positive-event-indices"][()].tolist() == [1, 2]  # 199.5 and 250.0, sorted
        np.testing.assert_allclose(f["fg-far"][()], np.array([1, 0]) / 500.0)
        # thresholds 1, 4, 6, 8: found stats louder: {5, 7, 2}, {5, 7}, {7}, {}
        np.testing.assert_allclose(f["sensitive-fraction"][()], [0.75, 0.5, 0.25, 0.0])
        v_total = 4 / 3 * math.pi * 400.0 ** 3
        np.testing.assert_allclose(f["sensitive-volume"][()], v_total * np.array([0.75, 0.5, 0.25, 0]))
        np.testing.assert_allclose(f["sensitive-volume-error"][()][1], v_total / 4 * math.sqrt(4 * 0.25))
        # each foreground trigger's FAR (time order: stats 5, 3, 9, 7, 2): background at least as loud
        np.testing.assert_allclose(f["fg-events-far"][()], np.array([2, 3, 0, 1, 3]) / (4 * MONTH))
    table = summary["searches"]["cnn"]["at_far_per_month"]
    assert table["1"]["distance"] == pytest.approx(400 * 0.75 ** (1 / 3))
    result = g2net.search.evaluation.evaluate("x", g2net.search.evaluation.read_injections(case / "inj.hdf"), np.ones(4, bool), 500.0,
                         ([100.1, 199.5, 300.2, 400.0, 250.0], [5.0, 3.0, 7.0, 2.0, 9.0], [0.3] * 5),
                         (np.zeros(4), [1.0, 4.0, 6.0, 8.0], np.zeros(4)), 4 * MONTH)
    assert result.at_far(0.5)["distance"] == pytest.approx(400 * 0.5 ** (1 / 3))
    assert result.at_far(0.25)["distance"] == pytest.approx(400 * 0.25 ** (1 / 3))
    assert math.isnan(result.at_far(0.1)["distance"])  # 0.4 background events: not measurable
    assert (case / "out" / "sensitivity.png").stat().st_size > 10_000
    assert "found_fraction_by_snr_at_0.1_per_month" not in summary["searches"]["cnn"]
    snr_rows = summary["searches"]["cnn"]["found_fraction_by_snr_at_1_per_month"]
    assert {(r["snr_low"], r["found_fraction"]) for r in snr_rows} == {(4.0, 1.0), (8.0, 1.0),
                                                                       (10.0, 0.0), (20.0, 1.0)}
    # sigma_d = d sigma_V / (3 V), sigma_V = V_total / 4 sqrt(4 * 0.75 * 0.25), V = 0.75 V_total
    assert table["1"]["distance_error"] == pytest.approx(400 * 0.75 ** (1 / 3) * math.sqrt(0.75) / 4 / 2.25)
    assert "363 +- 35 (0.75)" in capsys.readouterr().out


def test_chirp_distance_weighting_equals_hand_computation(case):
    with h5py.File(case / "inj.hdf", "a") as f:
        f["chirp_distance"] = [1.0, 2.0, 3.0, 4.0]  # its presence switches on the mchirp weights
    injections = g2net.search.evaluation.read_injections(case / "inj.hdf")
    result = g2net.search.evaluation.evaluate("x", injections, np.ones(4, bool), 500.0,
                         ([100.1, 199.5, 300.2, 400.0, 250.0], [5.0, 3.0, 7.0, 2.0, 9.0], [0.3] * 5),
                         (np.zeros(4), [1.0, 4.0, 6.0, 8.0], np.zeros(4)), 4 * MONTH)
    v_total = 4 / 3 * math.pi * 400.0 ** 3
    # equal masses: mchirp = m 2^(-1/5); the factor cancels in the ratio
    expected = v_total * (10 ** 2.5 + 30 ** 2.5) / (4 * 40 ** 2.5)
    assert result.volume[1] == pytest.approx(expected)
    assert result.distance[1] == pytest.approx((3 * expected / (4 * math.pi)) ** (1 / 3))


def test_padding_and_segments_choose_the_injections(case):
    inside = g2net.search.evaluation.injections_inside([(0.0, 500.0)], np.array([100.0, 200.0, 300.0, 480.0]), padding=30.0)
    assert inside.tolist() == [True, True, True, False]
    assert g2net.search.evaluation.injections_inside([(0.0, 50.0)], np.array([25.0]), padding=30.0).tolist() == [False]


def test_wrong_inputs_are_refused_with_one_line(case, tmp_path):
    with h5py.File(tmp_path / "bad_events.hdf", "w") as f:
        f["time"] = [1.0]
        f["stat"] = [1.0]
    with pytest.raises(G2NetError, match="lacks dataset.*var") as err:
        g2net.search.evaluation.run(str(case / "inj.hdf"), [str(case / "fg.hdf")], [[str(tmp_path / "bad_events.hdf")]],
               [[str(case / "bg_events.hdf")]], None, tmp_path / "o", padding=0.0)
    assert "\n" not in str(err.value)
    with pytest.raises(G2NetError, match="one of each per search"):
        g2net.search.evaluation.run(str(case / "inj.hdf"), [str(case / "fg.hdf")], [[str(case / "fg_events.hdf")]], [],
               None, tmp_path / "o", padding=0.0)
    with h5py.File(tmp_path / "inj_bad.hdf", "w") as f:
        f["tc"] = [1.0]
    with pytest.raises(G2NetError, match="lacks dataset"):
        g2net.search.evaluation.read_injections(tmp_path / "inj_bad.hdf")
    with pytest.raises(G2NetError, match="no injections"):
        g2net.search.evaluation.run(str(case / "inj.hdf"), [str(case / "fg.hdf")], [[str(case / "fg_events.hdf")]],
               [[str(case / "bg_events.hdf")]], None, tmp_path / "o", padding=240.0)


def test_cli_compares_two_labelled_searches(case, capsys):
    summary = ev.main(["--injections", str(case / "inj.hdf"), "--foreground-files", str(case / "fg.hdf"),
                       "--foreground-events", str(case / "fg_events.hdf"),
                       "--background-events", str(case / "bg_events.hdf"),
                       "--foreground-events", str(case / "fg_events.hdf"),
                       "--background-events", str(case / "fg_events.hdf"),
                       "--label", "a", "--label", "b", "--out", str(case / "cmp"), "--padding", "0"])
    assert set(summary["searches"]) == {"a", "b"}
    # b's background file has no duration attribute: the foreground's 500 s is used (MLGWSC-1)
    assert summary["searches"]["b"]["background_seconds"] == 500.0
    assert (case / "cmp" / "a.hdf").is_file() and (case / "cmp" / "b.hdf").is_file()
    out = capsys.readouterr().out
    assert out.count("\na ") + out.startswith("a ") >= 1 and "b " in out


def _result(label, distance, found_stat, background_stats, background_months, chirp=None):
    """An evaluated search: injection i at tc = 100 (i + 1) s found at ``found_stat[i]`` (NaN:
    no trigger), the background's stats over ``background_months``."""
    n = len(distance)
    tc = 100.0 * (np.arange(n) + 1)
    injections = {"tc": tc, "distance": np.asarray(distance, float), "mass1": np.full(n, 30.0),
                  "mass2": np.full(n, 30.0)}
    if chirp is not None:
        injections["mass1"] = injections["mass2"] = np.asarray(chirp, float)
        injections["chirp_distance"] = np.ones(n)
    hit = ~np.isnan(found_stat)
    return g2net.search.evaluation.evaluate(
        label, injections, np.ones(n, bool), 100.0 * (n + 1),
        (tc[hit], np.asarray(found_stat)[hit], np.full(hit.sum(), 0.3)),
        (np.zeros(len(background_stats)), np.asarray(background_stats, float), np.zeros(len(background_stats))),
        background_months * MONTH)


def test_each_rate_says_the_background_count_it_rests_on_with_its_poisson_interval(tmp_path):
    """Ten background triggers (stats 1..10) over two months: 1/month allows 2 louder triggers, so
    the threshold is 8 (9 and 10 louder); 0.4/month (0.8 expected) is out of reach."""
    from scipy.stats import poisson

    result = _result("x", [100.0, 200.0, 300.0, 400.0], np.array([8.5, 5.0, 9.5, np.nan]),
                     np.arange(1.0, 11.0), 2.0)
    row = result.at_far(1.0)
    assert (row["threshold"], row["louder_background"], row["found"], row["reached"]) == (8.0, 2, 2, True)
    assert (row["background_seconds"], row["background_days"]) == (2 * MONTH, 60.0)
    assert row["measured_far_per_month"] == 1.0 and row["lowest_reachable_per_month"] == 0.5
    low, high = row["far_interval_per_month"]
    # Garwood's 90% interval for 2 events, per two months: P(N >= 2 | low) = P(N <= 2 | high) = 5%
    assert poisson.sf(1, 2 * low) == pytest.approx(0.05) and poisson.cdf(2, 2 * high) == pytest.approx(0.05)
    assert (2 * low, 2 * high) == pytest.approx((0.3554, 6.2958), abs=1e-4)
    # closed forms: 1 event, lower -ln(0.95); no event, upper -ln(0.05)
    assert g2net.search.evaluation.poisson_interval(1)[0] == pytest.approx(-math.log(0.95))
    assert g2net.search.evaluation.poisson_interval(0) == pytest.approx((0.0, -math.log(0.05)))
    assert result.at_far(10.0)["louder_background"] == 9  # 20 allowed, the quietest trigger: 9 louder
    unreachable = result.at_far(0.4)
    assert unreachable["reached"] is False and math.isnan(unreachable["louder_background"])
    assert unreachable["lowest_reachable_per_month"] == 0.5
    # the curve in <label>.hdf: far-lower/far-upper of every background threshold's count
    lower, upper = g2net.search.evaluation.poisson_interval(np.arange(9, -1, -1))
    np.testing.assert_allclose(result.extra["far-lower"], lower / (2 * MONTH))
    np.testing.assert_allclose(result.extra["far-upper"], upper / (2 * MONTH))
    assert result.extra["far-upper"][-1] == pytest.approx(-math.log(0.05) / (2 * MONTH))


def test_distance_error_is_propagated_from_the_volume_error():
    """Four injections, 2 found at threshold 4: V = V_tot / 2, sigma_V = V_tot / 4 sqrt(4 * 0.25)
    = V_tot / 4, so sigma_d = d sigma_V / (3 V) = d / 6; none found: no error (NaN)."""
    result = _result("x", [100.0, 200.0, 300.0, 400.0], np.array([5.0, 3.0, 7.0, 2.0]),
                     [1.0, 4.0, 6.0, 8.0], 4.0)
    row = result.at_far(0.5)  # 2 louder allowed: threshold 4
    assert row["threshold"] == 4.0
    assert row["distance_error"] == pytest.approx(400 * 0.5 ** (1 / 3) / 6)
    np.testing.assert_allclose(result.extra["sensitive-distance-error"][:3],
                               result.distance[:3] * result.volume_error[:3] / (3 * result.volume[:3]))
    assert math.isnan(result.distance_error[3])  # threshold 8: nothing found
    # found 2 of 4: Clopper-Pearson 90%, symmetric about 1/2; all found: lower (0.05)^(1/n)
    low, high = row["fraction_interval"]
    assert low == pytest.approx(1 - high) and low == pytest.approx(0.0976, abs=1e-4)
    assert g2net.search.evaluation.binomial_interval(3, 3) == pytest.approx((0.05 ** (1 / 3), 1.0))
    assert g2net.search.evaluation.binomial_interval(0, 1) == pytest.approx((0.0, 0.95))
    # with chirp-mass weights the same propagation holds
    weighted = _result("w", [100.0, 200.0, 300.0, 400.0], np.array([5.0, 3.0, 7.0, 2.0]),
                       [1.0, 4.0, 6.0, 8.0], 4.0, chirp=[10.0, 20.0, 30.0, 40.0])
    np.testing.assert_allclose(weighted.distance_error[:3],
                               weighted.distance[:3] * weighted.volume_error[:3] / (3 * weighted.volume[:3]))


def test_found_fraction_by_snr_reaches_above_30_with_binomial_intervals():
    from scipy.stats import binom

    snr = np.array([5.0, 25.0, 28.0, 31.0, 35.0, 45.0, 49.0, 60.0, 80.0, 100.0])
    stats = np.array([0.2, 3.0, np.nan, 3.0, 3.0, 3.0, 0.3, 3.0, 3.0, 3.0])  # 0.2, 0.3 below threshold
    result = _result("x", np.full(10, 100.0), stats, [0.5], 1.0)  # 1/month: threshold 0.5
    rows = g2net.search.evaluation.found_fraction_by_snr(result, snr, 1.0)
    table = {(r["snr_low"], r["snr_high"]): (r["found"], r["n"], r["found_fraction"]) for r in rows}
    assert table == {(4.0, 6.0): (0, 1, 0.0), (20.0, 30.0): (1, 2, 0.5), (30.0, 50.0): (3, 4, 0.75),
                     (50.0, math.inf): (3, 3, 1.0)}
    intervals = {r["snr_low"]: r["found_fraction_interval"] for r in rows}
    assert intervals[4.0] == pytest.approx([0.0, 0.95])
    assert intervals[20.0] == pytest.approx([1 - math.sqrt(0.95), math.sqrt(0.95)])
    low, high = intervals[30.0]  # 3 of 4: P(X >= 3 | low) = P(X <= 3 | high) = 5%
    assert binom.sf(2, 4, low) == pytest.approx(0.05) and binom.cdf(3, 4, high) == pytest.approx(0.05)
    assert intervals[50.0] == pytest.approx([0.05 ** (1 / 3), 1.0])
    anything = g2net.search.evaluation.found_fraction_by_snr(result, snr, None)
    assert {r["snr_low"]: r["found"] for r in anything}[20.0] == 1  # 28 has no trigger at all


def test_paired_comparison_of_a_search_with_itself_is_exactly_one():
    rng = np.random.default_rng(1)
    distance = rng.uniform(10.0, 400.0, 300)
    stats = np.where(distance < 250.0, 10.0, 0.5)  # found at 1/month (threshold 1) below 250 Mpc
    a = _result("a", distance, stats, [1.0], 1.0)
    same = g2net.search.evaluation.compare_searches(a, _result("b", distance, stats, [1.0], 1.0), 1.0)
    assert same["distance_ratio"] == 1.0 and same["distance_ratio_interval"] == [1.0, 1.0]
    assert same["distance_difference_interval"] == [0.0, 0.0]
    # b also finds 250-300 Mpc: ratio (sum found_b / sum found_a)^(1/3), interval above 1
    better = _result("b", distance, np.where(distance < 300.0, 10.0, 0.5), [1.0], 1.0)
    c = g2net.search.evaluation.compare_searches(a, better, 1.0)
    assert c["distance_ratio"] == pytest.approx(((distance < 300).sum() / (distance < 250).sum()) ** (1 / 3))
    low, high = c["distance_ratio_interval"]
    assert 1.0 < low < c["distance_ratio"] < high
    assert c["distance_difference_interval"][0] > 0
    assert (c["resamples"], c["seed"], c["level"]) == (2000, 0, 0.9)
    assert g2net.search.evaluation.compare_searches(a, better, 1.0) == c  # fixed seed: reproducible
    assert g2net.search.evaluation.compare_searches(a, better, 0.5)["reached"] is False
    with pytest.raises(G2NetError, match="not evaluated on the same injections"):
        g2net.search.evaluation.compare_searches(a, _result("c", distance[:-1], stats[:-1], [1.0], 1.0), 1.0)


def test_two_searches_print_their_paired_ratio_and_the_snr_bins_above_30(case, capsys):
    with h5py.File(case / "inj.hdf", "a") as f:
        f["snr_network"][...] = [20.0, 11.0, 35.0, 55.0]
    summary = ev.main(["--injections", str(case / "inj.hdf"), "--foreground-files", str(case / "fg.hdf"),
                       "--foreground-events", str(case / "fg_events.hdf"),
                       "--background-events", str(case / "bg_events.hdf"),
                       "--foreground-events", str(case / "fg_events.hdf"),
                       "--background-events", str(case / "bg_events.hdf"),
                       "--label", "a", "--label", "b", "--out", str(case / "cmp"), "--padding", "0"])
    out = capsys.readouterr().out
    assert "b/a distance ratio 1.000 [1.000, 1.000] at 1/month" in out
    assert [c["per_month"] for c in summary["comparisons"]] == [1.0, 10.0, 100.0, 1000.0]
    assert summary["intervals"]["level"] == 0.9 and "Clopper-Pearson" in summary["intervals"]["found_fraction"]
    entry = summary["searches"]["a"]
    assert (entry["background_days"], entry["lowest_reachable_per_month"]) == (120.0, 0.25)
    row = entry["at_far_per_month"]["1"]  # 4 months: 4 allowed, the quietest threshold, 3 louder
    assert (row["louder_background"], row["measured_far_per_month"], row["found"]) == (3, 0.75, 3)
    rows = {r["snr_low"]: r for r in entry["found_fraction_by_snr_at_1_per_month"]}
    assert (rows[30.0]["snr_high"], rows[30.0]["found"], rows[30.0]["n"]) == (50.0, 1, 1)  # stat 7
    assert (rows[50.0]["snr_high"], rows[50.0]["found"], rows[50.0]["n"]) == (None, 1, 1)  # stat 2 > 1
    assert rows[50.0]["found_fraction_interval"] == pytest.approx([0.05, 1.0])
    assert re.search(r"\n30-50 +1/1 1\.00 \[0\.05, 1\.00\]", out) and re.search(r"\n>50 +1/1", out)
    assert re.search(r"\n +1 +3 +0\.75 \[0\.204, 1\.938\] +363 \+- 35 ", out)
    with h5py.File(case / "cmp" / "a.hdf") as f:
        assert f.attrs["interval_level"] == 0.9 and f["sensitive-distance-error"].shape == (4,)


def test_timing_calibration_centres_and_covers_the_errors(tmp_path):
    """scripts/calibrate_search_timing.py: loudest trigger near each tc, its error's median gives
    the merger offset, the 90% half-width around it the var; too few injections are refused."""

    import calibrate_search_timing as cal

    rng = np.random.default_rng(0)
    tc = np.arange(100.0, 2100.0, 20.0)  # 100 injections
    error = 0.8 + rng.uniform(-0.5, 0.5, len(tc))  # the search reports 0.8 s late
    time = np.concatenate([tc + error, tc - 1.0])  # and a quieter trigger 1 s early
    stat = np.concatenate([np.full(len(tc), 5.0), np.full(len(tc), 3.0)])
    errors = cal.timing_errors(tc, time, stat, window=2.0)
    np.testing.assert_allclose(errors, error)
    assert np.isnan(cal.timing_errors(np.array([5000.0]), time, stat, 2.0)[0])
    result = cal.calibrate(errors, used_offset=1.7, coverage=0.9)
    assert result["merger_offset"] == pytest.approx(1.7 - np.median(error))
    assert result["var"] == pytest.approx(np.quantile(np.abs(error - np.median(error)), 0.9))
    assert 0.40 < result["var"] < 0.5  # uniform +-0.5: 90% within 0.45
    with pytest.raises(G2NetError, match="only 3 injections"):
        cal.calibrate(errors[:3], 1.7, 0.9)


def _run(case, out, labels=None, fg="fg_events.hdf", bg="bg_events.hdf", injections="inj.hdf"):
    return g2net.search.evaluation.run(str(case / injections), [str(case / "fg.hdf")], [[str(case / fg)]],
                                       [[str(case / bg)]], labels, out, padding=0.0)


@pytest.mark.parametrize("label", ["../../x", "a/b", "", "..", ".", "a\\b"])
def test_labels_are_names_not_paths(case, label, capsys):
    out = case / "deep" / "out"
    with pytest.raises(SystemExit) as done:
        ev.main(["--injections", str(case / "inj.hdf"), "--foreground-files", str(case / "fg.hdf"),
                 "--foreground-events", str(case / "fg_events.hdf"),
                 "--background-events", str(case / "bg_events.hdf"), "--label", label,
                 "--out", str(out), "--padding", "0"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"error: --label {label!r} is not a plain name; give a file/folder name without "
                    "path separators or '..' (letters, digits, '-', '_', '.')")]
    assert not (case / "deep").exists() and not (case / "x.hdf").exists()


def test_an_output_that_is_an_input_is_refused(case):
    """--out beside the trigger files: the default label (the file's stem) would overwrite them."""
    before = (case / "fg_events.hdf").read_bytes()
    with pytest.raises(G2NetError, match="fg_events.hdf is also an input"):
        _run(case, case)
    assert (case / "fg_events.hdf").read_bytes() == before
    assert not (case / "summary.json").exists()


def _edit(path, dataset=None, index=0, value=np.nan, attr=None):
    with h5py.File(path, "a") as f:
        if dataset is not None:
            values = f[dataset][()]
            values[index] = value
            f[dataset][...] = values
        if attr is not None:
            f.attrs[attr[0]] = attr[1]


@pytest.mark.parametrize("file,dataset", [("fg_events.hdf", "stat"), ("bg_events.hdf", "stat"),
                                          ("fg_events.hdf", "time"), ("bg_events.hdf", "var")])
def test_nan_in_trigger_files_is_refused_naming_file_and_dataset(case, file, dataset):
    _run(case, case / "clean", ["x"])  # the same files evaluate before the edit
    _edit(case / file, dataset, index=1)
    with pytest.raises(G2NetError, match=f"{case / file}: dataset {dataset} holds 1 NaN/inf value\\(s\\) "
                                         "\\(first at index 1\\)") as err:
        _run(case, case / "out", ["x"])
    assert "\n" not in str(err.value)
    assert not (case / "out").exists()  # nothing to write: no folder


def test_attributes_and_columns_of_the_wrong_kind_are_one_line(case):
    _edit(case / "bg_events.hdf", attr=("duration", "four months"))
    with pytest.raises(G2NetError, match="bg_events.hdf: attribute duration is 'four months', not a number"):
        _run(case, case / "out")
    _edit(case / "bg_events.hdf", attr=("duration", 4 * MONTH))
    with h5py.File(case / "inj.hdf", "a") as f:
        del f["snr_network"]
        f["snr_network"] = [20.0, 11.0, 9.0]  # one entry short
    with pytest.raises(G2NetError, match="tc has 4 entries but snr_network \\(3\\)"):
        _run(case, case / "out")
    assert not (case / "out").exists()


def test_triggers_of_strain_from_another_simulation_run_are_refused(case):
    with h5py.File(case / "inj.hdf", "a") as f:
        f.attrs["run_id"] = "run-a"
    with h5py.File(case / "fg.hdf", "a") as f:
        f.attrs["run_id"] = "run-a"
    write_triggers(case / "old_bg.hdf", [10.0], [1.0], 0.3, attrs={"duration": MONTH, "strain_run_id": "run-b"})
    with pytest.raises(G2NetError, match="old_bg.hdf is a search of strain from simulate_strain.py run "
                                         "run-b, but .*inj.hdf is from run run-a"):
        _run(case, case / "out", bg="old_bg.hdf")
    assert not (case / "out").exists()
    with h5py.File(case / "fg.hdf", "a") as f:
        f.attrs["run_id"] = "run-b"
    with pytest.raises(G2NetError, match="not from the same simulate_strain.py run"):
        _run(case, case / "out")


def test_background_of_another_run_is_accepted_only_when_it_searched_noise(case, tmp_path, capsys):
    """A month of slid noise from another run of the simulator is a fair background for a day of
    foreground; a searched foreground is not (its injections would be counted as false alarms)."""
    with h5py.File(case / "inj.hdf", "a") as f:
        f.attrs["run_id"] = "run-a"
    with h5py.File(case / "fg.hdf", "a") as f:
        f.attrs["run_id"] = "run-a"
    reference = _run(case, case / "same", ["x"])["searches"]["x"]
    assert reference["background_other_runs"] == []
    with h5py.File(case / "bg_events.hdf", "r") as f:
        time, stat, var, attrs = f["time"][()], f["stat"][()], f["var"][()], dict(f.attrs)
    write_triggers(case / "noise_b.hdf", time, stat, var, attrs={**attrs, "strain_run_id": "run-b",
                                                                  "strain_kind": "background"})
    other = _run(case, case / "other", ["x"], bg="noise_b.hdf")["searches"]["x"]
    assert other["background_other_runs"] == ["run-b"]
    assert other["at_far_per_month"] == reference["at_far_per_month"]  # the same triggers
    assert "noise of simulate_strain.py run run-b" in capsys.readouterr().out
    # an older trigger file records no kind: read from the strain file it names, if still that run
    strain = tmp_path / "background.hdf"
    with h5py.File(strain, "w") as f:
        f.attrs.update({"run_id": "run-b", "kind": "background"})
    write_triggers(case / "old_noise.hdf", time, stat, var,
                   attrs={**attrs, "strain_run_id": "run-b", "input": str(strain)})
    assert _run(case, case / "old", ["x"], bg="old_noise.hdf")["searches"]["x"]["background_other_runs"] == ["run-b"]
    with h5py.File(strain, "a") as f:
        f.attrs["run_id"] = "run-c"  # the file was simulated again since: its kind says nothing
    with pytest.raises(G2NetError, match="old_noise.hdf is a search of strain from simulate_strain.py "
                                         "run run-b.*background.hdf of another run"):
        _run(case, case / "old2", bg="old_noise.hdf")
    for run in ("run-a", "run-b"):
        write_triggers(case / "fg_as_bg.hdf", time, stat, var,
                       attrs={**attrs, "strain_run_id": run, "strain_kind": "foreground"})
        with pytest.raises(G2NetError, match="fg_as_bg.hdf is a search of a foreground"):
            _run(case, case / "bad", bg="fg_as_bg.hdf")
    assert not any((case / name).exists() for name in ("old2", "bad"))


def test_summary_is_strict_json_with_null_for_rates_the_background_cannot_reach(case):
    """Half a month of background cannot measure 1 false alarm per month: null, not NaN."""
    write_triggers(case / "short_bg.hdf", [10.0, 20.0], [1.0, 4.0], 0.3, attrs={"duration": MONTH / 2})
    summary = _run(case, case / "out", ["x"], bg="short_bg.hdf")

    def refuse(constant):
        raise ValueError(f"{constant} in summary.json")

    written = json.loads((case / "out" / "summary.json").read_text(), parse_constant=refuse)
    assert written == summary
    at_far = written["searches"]["x"]["at_far_per_month"]
    # the keys MLGWSC-1-style readers know stay; the added ones say why and what is reachable
    assert {key: at_far["1"][key] for key in ("distance", "volume", "volume_error", "fraction",
                                              "threshold")} == dict.fromkeys(
        ("distance", "volume", "volume_error", "fraction", "threshold"))
    assert at_far["1"]["reached"] is False and at_far["1"]["lowest_reachable_per_month"] == 2.0
    assert at_far["1"]["louder_background"] is None and at_far["1"]["far_interval_per_month"] == [None, None]
    assert at_far["1"]["background_days"] == 15.0
    assert at_far["10"]["distance"] == pytest.approx(400 * 0.75 ** (1 / 3))


def test_a_failed_write_removes_only_the_folder_the_run_created(case, monkeypatch):
    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(g2net.search.evaluation, "plot", full_disk)
    with pytest.raises(OSError, match="No space"):
        _run(case, case / "new" / "out", ["x"])
    assert not (case / "new").exists()
    (case / "mine").mkdir()
    (case / "mine" / "notes.txt").write_text("kept")
    with pytest.raises(OSError, match="No space"):
        _run(case, case / "mine", ["x"])
    assert sorted(p.name for p in (case / "mine").iterdir()) == ["notes.txt", "x.hdf"]


# MLGWSC-1's own files. Their layout, as the challenge's generate_data.py writes it (read from its
# repository, not copied): strain saved by PyCBC's TimeSeries.save (group <det>/<int GPS start>,
# float64, gzip, attributes start_time and delta_t; root attributes dataset, detectors, duration,
# seed, ...), injections by pycbc_create_injections (PyCBC's InjectionSet.write: one dataset per
# varied parameter, the static ones in the root attributes named by static_args, no SNR). The files
# below are made by this project's simulator and rewritten in that layout with PyCBC's writers.
CHALLENGE_STATIC = {"f_ref": 20.0, "f_lower": 20.0, "taper": "start", "spin1x": 0.0, "spin1y": 0.0,
                    "spin2x": 0.0, "spin2y": 0.0}
CHALLENGE_VARIED = ("tc", "mass1", "mass2", "spin1z", "spin2z", "ra", "dec", "inclination", "coa_phase",
                    "polarization", "distance", "chirp_distance")


def _challenge_strain(source, path, duration):
    from pycbc.types import TimeSeries

    with h5py.File(source, "r") as f:
        for det in f:
            for key in f[det]:
                ds = f[det][key]
                TimeSeries(ds[()].astype(np.float64), delta_t=float(ds.attrs["delta_t"]),
                           epoch=float(ds.attrs["start_time"])).save(
                    str(path), group=f"{det}/{int(ds.attrs['start_time'])}")
    with h5py.File(path, "a") as f:
        for key, value in {"dataset": 1, "start_offset": 0, "duration": duration, "seed": 5,
                           "low_frequency_cutoff": 15, "sample_rate": 2048, "filter_duration": 128,
                           "min_segment_duration": 7200, "real_noise_path": "None",
                           "slide_buffer": 240, "segment_path": "None"}.items():
            f.attrs[key] = value
        f.attrs["detectors"] = np.array(["H1", "L1"], dtype=object)


@pytest.fixture(scope="module")
def challenge_files(tmp_path_factory):
    """300 s of our H1+L1 strain with 10 injections (seed 5), rewritten in MLGWSC-1's layout."""
    from pycbc.conversions import mchirp_from_mass1_mass2, q_from_mass1_mass2
    from pycbc.inject import InjectionSet
    from pycbc.io import FieldArray

    out = tmp_path_factory.mktemp("mlgwsc1")
    simulate_strain.main(["--out", str(out / "sim"), "--duration", "300", "--seed", "5", "--no-progress"])
    for name in ("foreground", "background"):
        _challenge_strain(out / "sim" / f"{name}.hdf", out / f"{name}.hdf", 300)
    ours = g2net.search.evaluation.read_injections(out / "sim" / "injections.hdf")
    columns = {key: ours[key] for key in CHALLENGE_VARIED}
    columns.update(mchirp=mchirp_from_mass1_mass2(ours["mass1"], ours["mass2"]),
                   q=q_from_mass1_mass2(ours["mass1"], ours["mass2"]))
    InjectionSet.write(str(out / "injections.hdf"), FieldArray.from_kwargs(**columns),
                       static_args={"approximant": ours["approximant"][0].decode(), **CHALLENGE_STATIC},
                       cmd="pycbc_create_injections --config-files ds1.ini ...")
    return out, ours


def test_challenge_layout_is_what_our_readers_get(challenge_files):
    out, ours = challenge_files
    with h5py.File(out / "injections.hdf") as f:  # the layout pycbc_create_injections writes
        assert f.attrs["injtype"] == "cbc"
        assert set(f.attrs["static_args"]) == {"approximant", *CHALLENGE_STATIC}
        assert not any(key.startswith("snr") for key in f.keys())
        assert f["tc"].shape == (10,) and "approximant" not in f
    with h5py.File(out / "foreground.hdf") as f:
        ds = f["H1/1238166018"]
        assert ds.compression == "gzip" and ds.dtype == np.float64
        assert set(ds.attrs) == {"start_time", "delta_t"}
    for name in ("foreground", "background"):
        with StrainFile(out / f"{name}.hdf", ("H1", "L1"), 2048.0) as strain:
            assert strain.duration == 300.0 and strain.run_id is None
            with StrainFile(out / "sim" / f"{name}.hdf") as original:
                np.testing.assert_allclose(strain.read(strain.segments[0], 1000, 5000),
                                           original.read(original.segments[0], 1000, 5000))
    injections = g2net.search.evaluation.read_injections(out / "injections.hdf")
    np.testing.assert_array_equal(injections["tc"], ours["tc"])


def test_optimal_snrs_of_challenge_injections_agree_with_the_simulators(challenge_files, monkeypatch):
    """Computed from the parameters (static args included) against the data's Welch PSD: within
    4% of the SNRs simulate_strain.py recorded against the noise model's table, all offset alike (the
    table is the 2 s Tukey estimate, whose leakage raises it below 40 Hz); against that table, the
    same signals give the recorded SNRs to 0.1%."""
    out, ours = challenge_files
    injections = g2net.search.evaluation.read_injections(out / "injections.hdf")
    inside = g2net.search.evaluation.injections_inside([(1238166018.0, 1238166318.0)], injections["tc"])
    snr = injection_snr.injection_snr(out / "injections.hdf", injections, [out / "foreground.hdf"], inside)
    assert snr.source == injection_snr.COMPUTED and inside.sum() == 10
    ratio = snr.network / ours["snr_network"][inside]
    assert np.all(np.abs(ratio - 1) < 0.04), ratio
    assert ratio.max() - ratio.min() < 0.01, ratio
    for det in ("H1", "L1"):
        np.testing.assert_allclose(snr.per_detector[det], ours[f"snr_{det}"][inside], rtol=0.04)
    from g2net.simulation.noise import detector_psd

    monkeypatch.setattr(injection_snr, "data_psd", lambda strain, segment, tc, d, cache=None:
                        detector_psd(strain.detectors[d], 0.25, 4097, low_frequency_cutoff=20.0))
    table = injection_snr.injection_snr(out / "injections.hdf", injections, [out / "foreground.hdf"], inside)
    np.testing.assert_allclose(table.network, ours["snr_network"][inside], rtol=1e-3)


def test_evaluation_of_challenge_files_says_where_the_snrs_come_from(challenge_files, tmp_path, capsys):
    out, ours = challenge_files
    tc = ours["tc"]
    write_triggers(tmp_path / "fg.hdf", np.sort(tc + 0.05), ours["snr_network"][np.argsort(tc)], 0.3)
    write_triggers(tmp_path / "bg.hdf", 1238166018.0 + np.arange(1.0, 300.0, 3.0),
                   np.linspace(0.0, 6.0, 100), 0.3, attrs={"duration": 100 * 300.0})
    args = ["--injections", str(out / "injections.hdf"), "--foreground-files", str(out / "foreground.hdf"),
            "--foreground-events", str(tmp_path / "fg.hdf"), "--background-events", str(tmp_path / "bg.hdf"),
            "--label", "mf"]
    summary = ev.main([*args, "--out", str(tmp_path / "computed")])
    assert summary["optimal_snr"]["source"] == "computed"
    assert summary["optimal_snr"]["injections_with_snr"] == 10
    rows = summary["searches"]["mf"]["found_fraction_by_snr_any"]
    assert sum(r["n"] for r in rows) == 10
    printed = capsys.readouterr().out
    assert "found fraction by optimal network SNR, computed: PyCBC waveform, PSD of the data" in printed
    with h5py.File(tmp_path / "computed" / "mf.hdf") as f:
        assert f.attrs["optimal_snr_source"] == "computed" and f["optimal-snr"].shape == (10,)
    summary = ev.main([*args, "--out", str(tmp_path / "skipped"), "--no-compute-snr"])
    assert summary["optimal_snr"]["source"] == "missing"
    assert "found_fraction_by_snr_any" not in summary["searches"]["mf"]
    assert "found fraction by optimal network SNR: none (" in capsys.readouterr().out
    assert (tmp_path / "skipped" / "sensitivity.png").stat().st_size > 10_000


def test_recorded_snrs_are_used_and_missing_ones_explained(case, challenge_files):
    out, ours = challenge_files
    recorded = injection_snr.injection_snr(out / "sim" / "injections.hdf", ours, [out / "foreground.hdf"],
                                           np.ones(len(ours["tc"]), bool))
    assert recorded.source == injection_snr.RECORDED
    np.testing.assert_array_equal(recorded.network, ours["snr_network"])
    with h5py.File(case / "inj.hdf", "a") as f:
        del f["snr_network"]
    summary = _run(case, case / "out")
    assert summary["optimal_snr"]["source"] == "missing"
    assert "lacks ra, dec, polarization, inclination, coa_phase, approximant" in summary["optimal_snr"]["detail"]


# ----------------------------------------------------------------------------- MLGWSC-1 dataset 1
# Made here as the challenge's generate_data.py makes it, with the same PyCBC calls (no mirror of its
# repository needed): colored_noise of aLIGOZeroDetHighPower from 15 Hz, injections in
# pycbc_create_injections' layout with ds1.ini's static args, added by InjectionSet.apply from 20 Hz.
DS1_STATIC = {"f_ref": 20.0, "f_lower": 20.0, "approximant": "IMRPhenomXPHM", "taper": "start",
              "spin1x": 0.0, "spin1y": 0.0, "spin1z": 0.0, "spin2x": 0.0, "spin2y": 0.0, "spin2z": 0.0,
              "mode_array": 22.0}
DS1_START, DS1_SECONDS = 1238166018, 300


def _save_strain(path, series, attrs):
    for det, ts in series.items():
        ts.save(str(path), group=f"{det}/{int(ts.start_time)}")
    with h5py.File(path, "a") as f:
        for key, value in attrs.items():
            f.attrs[key] = value


@pytest.fixture(scope="module")
def ds1(tmp_path_factory):
    """300 s of dataset-1 noise in H1 and L1 and three injections at SNR about 8-30."""
    from pycbc.inject import InjectionSet
    from pycbc.io import FieldArray
    from pycbc.noise.reproduceable import colored_noise
    from pycbc.psd import aLIGOZeroDetHighPower

    out = tmp_path_factory.mktemp("ds1")
    psd = aLIGOZeroDetHighPower(2048 * 128 // 2 + 1, 1.0 / 128, 15.0)
    background = {det: colored_noise(psd, DS1_START, DS1_START + DS1_SECONDS, seed=seed,
                                     sample_rate=2048, low_frequency_cutoff=15.0)
                  for det, seed in (("H1", 11), ("L1", 12))}
    _save_strain(out / "background.hdf", background, {"dataset": 1, "seed": 11})
    params = FieldArray.from_kwargs(
        tc=DS1_START + np.array([60.3, 150.7, 241.1]), mass1=[35.0, 20.0, 48.0], mass2=[30.0, 15.0, 12.0],
        distance=[1800.0, 900.0, 2500.0], ra=[0.4, 2.5, 5.1], dec=[-0.3, 0.9, 0.1],
        inclination=[0.3, 1.2, 2.6], polarization=[0.2, 1.9, 2.8], coa_phase=[1.0, 4.0, 5.5])
    InjectionSet.write(str(out / "injections.hdf"), params, static_args=DS1_STATIC,
                       cmd="pycbc_create_injections --config-files ds1.ini ...")
    injector = InjectionSet(str(out / "injections.hdf"))
    foreground = {}
    for det, ts in background.items():  # generate_data.py's make_injections
        foreground[det] = ts.copy()
        injector.apply(foreground[det], det, f_lower=20, simulation_ids=[0, 1, 2])
    _save_strain(out / "foreground.hdf", foreground, {"dataset": 1, "f_lower": 20.0})
    return out, psd, params


def _independent_snrs(params, psd, f_lower=20.0):
    """sigma of each injection's signal made without InjectionSet: get_td_waveform with the file's
    static args, the start taper, Detector.project_wave; against the PSD the noise was drawn from."""
    from pycbc.detector import Detector
    from pycbc.filter import sigma
    from pycbc.psd import interpolate
    from pycbc.waveform import get_td_waveform

    snrs = {"H1": [], "L1": []}
    for row in params:
        hp, hc = get_td_waveform(approximant="IMRPhenomXPHM", mass1=row["mass1"], mass2=row["mass2"],
                                 distance=row["distance"], inclination=row["inclination"],
                                 coa_phase=row["coa_phase"], f_lower=f_lower, f_ref=20.0,
                                 mode_array=[(2, 2)], delta_t=1.0 / 2048)
        hp.start_time += row["tc"]
        hc.start_time += row["tc"]
        hp, hc = hp.taper_timeseries("start"), hc.taper_timeseries("start")
        for det in snrs:
            signal = Detector(det).project_wave(hp, hc, row["ra"], row["dec"], row["polarization"])
            signal.resize(16 * 2048)
            htilde = signal.to_frequencyseries()
            snrs[det].append(sigma(htilde, psd=interpolate(psd, htilde.delta_f, length=len(htilde)),
                                   low_frequency_cutoff=f_lower))
    return {det: np.array(values) for det, values in snrs.items()}


def test_computed_snr_is_pycbc_sigma_of_the_projected_waveform(ds1):
    """The Welch PSD of 300 s of the data and the injection file's own waveform give, per detector,
    PyCBC's sigma of the same signal projected by Detector against the generating PSD within 2%."""
    out, psd, params = ds1
    injections = g2net.search.evaluation.read_injections(out / "injections.hdf")
    inside = g2net.search.evaluation.injections_inside([(DS1_START, DS1_START + DS1_SECONDS)],
                                                       injections["tc"])
    snr = injection_snr.injection_snr(out / "injections.hdf", injections, [out / "foreground.hdf"], inside)
    assert snr.source == injection_snr.COMPUTED and inside.tolist() == [True, True, True]
    expected = _independent_snrs(params, psd)
    for det in ("H1", "L1"):
        np.testing.assert_allclose(snr.per_detector[det], expected[det], rtol=0.02)
    network = np.hypot(expected["H1"], expected["L1"])
    np.testing.assert_allclose(snr.network, network, rtol=0.02)
    assert 6 < network.min() and network.max() < 60  # a range where a wrong scale would show
    # the signal starts at the foreground's f_lower (generate_data.py's 20 Hz): from 30 Hz it loses SNR
    low = _independent_snrs(params[:1], psd, f_lower=30.0)
    assert np.hypot(low["H1"], low["L1"])[0] < 0.97 * snr.network[0]


def test_evaluation_of_dataset1_fills_the_snr_table_for_every_injection(ds1, tmp_path, capsys):
    out, psd, params = ds1
    write_triggers(tmp_path / "fg.hdf", np.asarray(params["tc"]) + 0.05, [12.0, 3.0, 9.0], 0.3)
    write_triggers(tmp_path / "bg.hdf", DS1_START + np.arange(1.0, 300.0, 3.0), np.linspace(0.0, 6.0, 100),
                   0.3, attrs={"duration": 100 * 300.0})
    summary = ev.main(["--injections", str(out / "injections.hdf"), "--foreground-files",
                       str(out / "foreground.hdf"), "--foreground-events", str(tmp_path / "fg.hdf"),
                       "--background-events", str(tmp_path / "bg.hdf"), "--label", "mf",
                       "--out", str(tmp_path / "eval")])
    assert summary["optimal_snr"]["source"] == "computed"
    assert summary["optimal_snr"]["injections_with_snr"] == 3
    assert summary["optimal_snr"]["detail"].startswith("computed for 3 of 3 injections")
    expected = _independent_snrs(params, psd)
    network = np.hypot(expected["H1"], expected["L1"])
    # the lowest rate the 30,000 s of background measures is 100/month: threshold 5.94, so the
    # injections with stats 12 and 9 are found, the one with 3 is missed
    found = np.array([True, False, True])
    bins = np.digitize(network, g2net.search.evaluation.SNR_BINS) - 1
    rows = {(g2net.search.evaluation.SNR_BINS[b], int((bins == b).sum()), float(found[bins == b].mean()))
            for b in set(bins)}
    table = summary["searches"]["mf"]["found_fraction_by_snr_at_100_per_month"]
    assert {(r["snr_low"], r["n"], r["found_fraction"]) for r in table} == rows
    assert sum(r["n"] for r in summary["searches"]["mf"]["found_fraction_by_snr_any"]) == 3
    with h5py.File(tmp_path / "eval" / "mf.hdf") as f:
        assert f["optimal-snr"].shape == (3,)
        np.testing.assert_allclose(f["optimal-snr"][()], network, rtol=0.02)
        np.testing.assert_allclose(f["optimal-snr-L1"][()], expected["L1"], rtol=0.02)
    printed = capsys.readouterr().out
    assert "found fraction by optimal network SNR, computed: PyCBC waveform, PSD of the data" in printed
    assert "mf (100/month)" in printed


@pytest.mark.filterwarnings("error:Conversion of an array with ndim > 0:DeprecationWarning")  # one SNR bin
def test_optimal_snrs_computed_once_are_reused_only_for_the_same_files(ds1, case, tmp_path, monkeypatch, capsys):
    """--optimal-snr-from takes an earlier evaluation's computed SNRs (a day of MLGWSC-1 injections
    costs minutes) without computing anything: the same tables, and a subset for a larger
    --padding; SNRs of another injection file, other foreground files, too few injections, a
    simulator's file (which records its own) or an older file without the record are refused with
    one line, before anything is written."""
    import shutil

    out, _, params = ds1
    work = tmp_path / "reuse"  # tmp_path also holds the case fixture's files
    work.mkdir()
    write_triggers(work / "fg.hdf", np.asarray(params["tc"]) + 0.05, [12.0, 3.0, 9.0], 0.3)
    write_triggers(work / "bg.hdf", DS1_START + np.arange(1.0, 300.0, 3.0), np.linspace(0.0, 6.0, 100),
                   0.3, attrs={"duration": 100 * 300.0})

    def evaluate(folder, *extra, injections=out / "injections.hdf", foreground=out / "foreground.hdf"):
        return ev.main(["--injections", str(injections), "--foreground-files", str(foreground),
                        "--foreground-events", str(work / "fg.hdf"), "--background-events",
                        str(work / "bg.hdf"), "--label", "mf", "--out", str(work / folder), *extra])

    first = evaluate("first")
    previous = work / "first" / "mf.hdf"

    def never(*args, **kwargs):
        raise AssertionError("computed the SNRs again")
    monkeypatch.setattr(injection_snr, "compute_snrs", never)
    again = evaluate("again", "--optimal-snr-from", str(previous))
    for key in ("found_fraction_by_snr_at_100_per_month", "snr50_at_100_per_month", "at_far_per_month"):
        assert again["searches"]["mf"][key] == first["searches"]["mf"][key]
    assert again["optimal_snr"]["detail"].startswith("computed for 3 of 3 injections (by the evaluation that "
                                                     "wrote mf.hdf): injections.hdf's parameters")
    with h5py.File(previous) as a, h5py.File(work / "again" / "mf.hdf") as b:
        for key in ("optimal-snr", "optimal-snr-H1", "optimal-snr-L1"):
            assert np.array_equal(a[key][()], b[key][()])
        assert a.attrs["optimal_snr_inputs"] == b.attrs["optimal_snr_inputs"]
        all_three = a["optimal-snr"][()]
    evaluate("middle", "--optimal-snr-from", str(previous), "--padding", "100")  # only the injection at 150.7 s
    with h5py.File(work / "middle" / "mf.hdf") as f:
        assert f["injection-indices"][()].tolist() == [1]
        assert f["optimal-snr"][()].tolist() == [all_three[1]]
    capsys.readouterr()

    shutil.copy(out / "injections.hdf", work / "other.hdf")
    with h5py.File(work / "other.hdf", "a") as f:
        f["distance"][0] = 1000.0
    shutil.copy(out / "foreground.hdf", work / "foreground.hdf")
    with h5py.File(work / "foreground.hdf", "a") as f:
        f.attrs["note"] = "x" * 4096  # another file of another size
    with h5py.File(work / "first" / "mf.hdf") as f, h5py.File(work / "old.hdf", "w") as g:
        for key in f:
            g[key] = f[key][()]
        for key, value in f.attrs.items():
            if key != "optimal_snr_inputs":
                g.attrs[key] = value
    refusals = [
        ({"injections": work / "other.hdf"}, [], "its SNRs belong to another injection file"),
        ({"foreground": work / "foreground.hdf"}, [], "its SNRs belong to other foreground files"),
        ({}, ["--padding", "0", "--optimal-snr-from", str(work / "middle" / "mf.hdf")],
         "lacks 2 of the 3 injections counted here"),
        ({}, ["--optimal-snr-from", str(work / "old.hdf")], "written before evaluations recorded"),
        ({}, ["--optimal-snr-from", str(work / "fg.hdf")], "not a per-search file of evaluate_search.py"),
        ({}, ["--optimal-snr-from", str(work / "none.hdf")], "none.hdf: no such file"),
    ]
    for files, extra, message in refusals:
        with pytest.raises(SystemExit) as exc:
            evaluate("refused", *(extra or ["--optimal-snr-from", str(previous)]), **files)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err
        assert "evaluate once without --optimal-snr-from" in err
        assert not (work / "refused").exists()
    with pytest.raises(G2NetError, match="records its own optimal SNRs"):
        g2net.search.evaluation.run(str(case / "inj.hdf"), [str(case / "fg.hdf")], [[str(case / "fg_events.hdf")]],
                                    [[str(case / "bg_events.hdf")]], ["s"], work / "sim", snr_from=previous)
    assert not (work / "sim").exists()


def test_injections_without_a_psd_are_counted_and_said(ds1, tmp_path, capsys):
    """A foreground segment too short for a Welch PSD: the injection in it gets no SNR, and the
    summary, table and figure say how many and why."""
    from pycbc.types import load_timeseries

    out, _, params = ds1
    short = {det: load_timeseries(str(out / "foreground.hdf"), group=f"{det}/{DS1_START}")
             .time_slice(DS1_START + 50, DS1_START + 70) for det in ("H1", "L1")}
    _save_strain(tmp_path / "short.hdf", short, {"f_lower": 20.0})
    write_triggers(tmp_path / "fg.hdf", [float(params["tc"][0])], [12.0], 0.3)
    write_triggers(tmp_path / "bg.hdf", [DS1_START + 1.0], [1.0], 0.3, attrs={"duration": 1000.0})
    summary = ev.main(["--injections", str(out / "injections.hdf"), "--foreground-files",
                       str(tmp_path / "short.hdf"), "--foreground-events", str(tmp_path / "fg.hdf"),
                       "--background-events", str(tmp_path / "bg.hdf"), "--label", "mf", "--padding", "0",
                       "--out", str(tmp_path / "eval")])
    detail = summary["optimal_snr"]["detail"]
    assert summary["optimal_snr"]["injections_with_snr"] == 0
    assert detail.startswith("computed for 0 of 1 injections")
    assert detail.endswith("none for 1 (no PSD: foreground segment shorter than 32 s)")
    assert f"found fraction by optimal network SNR: none ({detail})" in capsys.readouterr().out


@pytest.mark.parametrize("edit,message", [
    (lambda f: f.attrs.__setitem__("approximant", "NoSuchApproximant"),
     r"injections.hdf: injection 0 \(tc 1238166078.300\): PyCBC cannot make its H1 signal "
     r"\(ValueError: Approximant NoSuchApproximant not available\)"),
    (lambda f: f.attrs.__setitem__("injtype", "nonsense"), "PyCBC cannot read it as an injection file"),
])
def test_injection_files_pycbc_cannot_use_are_refused_with_one_line(ds1, tmp_path, edit, message, capsys):
    import shutil

    out, _, params = ds1
    shutil.copy(out / "injections.hdf", tmp_path / "injections.hdf")
    with h5py.File(tmp_path / "injections.hdf", "a") as f:
        edit(f)
    write_triggers(tmp_path / "fg.hdf", np.asarray(params["tc"]), [1.0, 2.0, 3.0], 0.3)
    with pytest.raises(SystemExit) as exc:
        ev.main(["--injections", str(tmp_path / "injections.hdf"), "--foreground-files",
                 str(out / "foreground.hdf"), "--foreground-events", str(tmp_path / "fg.hdf"),
                 "--background-events", str(tmp_path / "fg.hdf"), "--out", str(tmp_path / "eval")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "eval").exists()


# ----------------------------------------------------------------------------- scripts/mlgwsc1_dataset.py
FAKE_GENERATE_DATA = """
import argparse, csv, os, sys
import h5py, numpy as np
import ligo.segments  # generate_data.py imports it: found on --deps
parser = argparse.ArgumentParser()
for flag in ("-d", "-s", "--duration", "-f", "-b", "-i"):
    parser.add_argument(flag)
parser.add_argument("--verbose", action="store_true")
args = parser.parse_args()
assert os.environ["HTTPS_PROXY"] == "http://127.0.0.1:9"
if os.environ.get("FAKE_FAIL"):
    open(args.f, "w").close()
    sys.exit(3)
rows = list(csv.reader(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "segments.csv"))))
start, end = int(rows[1][1]), int(rows[1][2])
n = int(args.duration) * 2048
rng = np.random.default_rng(int(args.s))
for path in (args.f, args.b):
    with h5py.File(path, "w") as f:
        for det in ("H1", "L1"):
            ds = f.create_dataset(f"{det}/{start}", data=rng.standard_normal(n) * 1e-21)
            ds.attrs["start_time"], ds.attrs["delta_t"] = float(start), 1 / 2048
with h5py.File(args.i, "w") as f:
    f["tc"] = np.arange(start + 24.0, end, 24.0)
"""


@pytest.fixture
def fake_checkout(tmp_path):
    """A folder shaped like the challenge's repository whose generate_data.py writes files of its
    layout (noise, injection times every 24 s over the whole segments.csv segment), and a --deps
    folder holding a stand-in ligo.segments."""
    checkout = tmp_path / "mlgwsc1"
    checkout.mkdir()
    (checkout / "generate_data.py").write_text(FAKE_GENERATE_DATA)
    (checkout / "segments.py").write_text("")
    (checkout / "ds1.ini").write_text("[variable_params]\n")
    for folder in ("ligo", "ligo/segments"):
        (tmp_path / "deps" / folder).mkdir(parents=True)
        (tmp_path / "deps" / folder / "__init__.py").write_text("")
    return checkout


def test_dataset_script_runs_generate_data_on_a_private_copy_with_its_segments(fake_checkout, tmp_path):
    import mlgwsc1_dataset as ds

    before = sorted(p.name for p in fake_checkout.iterdir())
    record = ds.make_dataset(fake_checkout, 120, tmp_path / "out", seed=3, start=1000000000,
                             deps=tmp_path / "deps", install=False)
    assert sorted(p.name for p in fake_checkout.iterdir()) == before  # nothing written into it
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "background.hdf", "foreground.hdf", "injections.hdf", "mlgwsc1_dataset.json"]
    # generate_data.py skips segments under 7200 s: the one it is given is 7200 s, cut to 120 s
    assert record["segments_csv"] == "index,start,end\n0,1000000000,1000007200\n"
    assert record["strain_seconds"] == 120.0 and record["segments"] == [[1e9, 1e9 + 120]]
    # injections every 24 s over 7200 s; 5 in the data (24..120 s, ends included), 2 (48, 72 s) more
    # than 30 s from its ends
    assert (record["injections_in_file"], record["injections_in_data"], record["injections_counted"]) == (299, 5, 2)
    assert record["generate_data_sha256"] == hashlib.sha256(FAKE_GENERATE_DATA.encode()).hexdigest()
    assert json.loads((tmp_path / "out" / "mlgwsc1_dataset.json").read_text())["seed"] == 3
    with h5py.File(tmp_path / "out" / "foreground.hdf") as f:
        assert f.attrs["injection-file"] == str(tmp_path / "out" / "injections.hdf")
    with pytest.raises(G2NetError, match="exist; give --overwrite"):
        ds.make_dataset(fake_checkout, 120, tmp_path / "out", 3, deps=tmp_path / "deps", install=False)


def test_dataset_script_reads_a_mirror_and_refuses_with_one_line(fake_checkout, tmp_path, monkeypatch):
    import shutil
    import subprocess

    import mlgwsc1_dataset as ds

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(fake_checkout)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    subprocess.run(["git", "clone", "-q", "--mirror", str(fake_checkout), str(tmp_path / "mirror")], check=True)
    files, commit = ds.challenge_files(tmp_path / "mirror")
    assert files["generate_data.py"].decode() == FAKE_GENERATE_DATA and len(commit) == 40
    assert ds.challenge_files(fake_checkout)[1] == commit
    (fake_checkout / "ds1.ini").unlink()
    with pytest.raises(G2NetError, match="lacks ds1.ini"):
        ds.challenge_files(fake_checkout)
    with pytest.raises(G2NetError, match="no generate_data.py and is no git directory"):
        ds.challenge_files(tmp_path / "deps")
    with pytest.raises(G2NetError, match="lacks ligo.segments .* pip install ligo-segments"):
        monkeypatch.setattr(ds, "_has_ligo_segments", lambda: False)
        ds.make_dataset(tmp_path / "mirror", 120, tmp_path / "out", 3, deps=tmp_path / "none", install=False)
    monkeypatch.setenv("FAKE_FAIL", "1")  # generate_data.py fails after writing part of a file
    with pytest.raises(G2NetError, match=r"generate_data.py failed \(exit status 3\)"):
        ds.make_dataset(tmp_path / "mirror", 120, tmp_path / "out", 3, deps=tmp_path / "deps", install=False)
    assert list((tmp_path / "out").iterdir()) == []  # nothing that looks complete, no .partial
    for duration, seed, match in ((60, 1, "give more than 60 s"), (120, -1, "seed >= 0")):
        with pytest.raises(G2NetError, match=match):
            ds.make_dataset(tmp_path / "mirror", duration, tmp_path / "o2", seed, deps=tmp_path / "deps")


def _logistic_found(snr: np.ndarray, half: float, slope: float, rng: np.random.Generator) -> np.ndarray:
    return rng.random(len(snr)) < 1.0 / (1.0 + np.exp(-slope * (np.log(snr) - np.log(half))))


def test_snr50_recovers_the_snr_of_half_found_and_the_paired_gap():
    rng = np.random.default_rng(3)
    snr = rng.uniform(2.0, 30.0, 4000)
    a = _logistic_found(snr, 9.0, 8.0, rng)
    b = _logistic_found(snr, 10.5, 8.0, rng)
    out = g2net.search.evaluation.snr50(snr, [a, b], resamples=200)
    first, second = out["searches"]
    assert first["snr50"] == pytest.approx(9.0, abs=0.25) and second["snr50"] == pytest.approx(10.5, abs=0.25)
    assert first["interval"][0] < first["snr50"] < first["interval"][1]
    assert first["interval"][1] - first["interval"][0] < 0.6
    assert out["difference"] == pytest.approx(1.5, abs=0.35)
    assert out["difference_interval"][0] > 0.5  # paired: the gap is resolved
    same = g2net.search.evaluation.snr50(snr, [a, a], resamples=50)
    assert same["difference"] == 0 and same["difference_interval"] == [0.0, 0.0]


def test_snr50_is_nan_without_a_crossing_and_ignores_missing_snrs():
    snr = np.array([5.0, 8.0, 12.0, np.nan, 20.0, 0.0])
    found = np.ones(6, dtype=bool)
    out = g2net.search.evaluation.snr50(snr, [found], resamples=20)
    assert out["injections"] == 4 and math.isnan(out["searches"][0]["snr50"])
    assert all(math.isnan(v) for v in out["searches"][0]["interval"])
    none = g2net.search.evaluation.snr50(np.full(3, np.nan), [np.zeros(3, bool)], resamples=5)
    assert none["injections"] == 0 and math.isnan(none["searches"][0]["snr50"])


def test_timing_calibration_on_challenge_files_computes_their_snrs(challenge_files, tmp_path, capsys):
    """MLGWSC-1's injection files record no SNRs: calibrate_search_timing.py computes them against
    the searched foreground (named by the events' input attribute, or --foreground) instead of
    failing; without a foreground to compute them from it says so in one line."""
    import calibrate_search_timing as cal

    out, ours = challenge_files
    tc = ours["tc"]
    attrs = {"merger_offset": 1.7, "timing": "loudest", "input": str(out / "foreground.hdf")}
    write_triggers(tmp_path / "events.hdf", tc + 0.5 + 0.01 * np.arange(len(tc)), np.full(len(tc), 9.0),
                   0.3, attrs)
    result = cal.main(["--injections", str(out / "injections.hdf"), "--events", str(tmp_path / "events.hdf"),
                       "--min-snr", "0", "--coverage", "0.9"])
    assert "optimal SNRs computed" in capsys.readouterr().out
    assert result["injections"] == 10  # every injection has a computed SNR > 0 and a trigger
    assert result["median_error"] == pytest.approx(0.545) and result["merger_offset"] == pytest.approx(1.155)
    del attrs["input"]
    write_triggers(tmp_path / "bare.hdf", tc + 0.5, np.full(len(tc), 9.0), 0.3, attrs)
    with pytest.raises(SystemExit) as exit_info:
        cal.main(["--injections", str(out / "injections.hdf"), "--events", str(tmp_path / "bare.hdf")])
    assert exit_info.value.code == 2
    assert "records no optimal SNRs" in capsys.readouterr().err
    assert cal.main(["--injections", str(out / "injections.hdf"), "--events", str(tmp_path / "bare.hdf"),
                     "--foreground", str(out / "foreground.hdf"), "--min-snr", "0"])["injections"] == 10
