"""evaluate.py on a toy simulated input folder: metrics, efficiency curve, report files, errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import evaluate
import g2net.evaluation
import utils
from conftest import assert_untouched, file_digests
from metrics import roc_auc
from utils import G2NetError


def _toy_folder(tmp_path, monkeypatch, n: int = 1200, seed: int = 0):
    """An input folder with labels and injections, and two experiments whose scores track SNR."""
    rng = np.random.default_rng(seed)
    ids = [f"{i:010x}" for i in range(n)]
    target = (np.arange(n) % 2).astype(int)
    snr = np.where(target == 1, rng.uniform(4.0, 20.0, n), np.nan)
    mass1 = np.where(target == 1, rng.uniform(20, 50, n), np.nan)
    mass2 = np.where(target == 1, rng.uniform(10, 20, n), np.nan)
    root, results = tmp_path / "input", tmp_path / "results"
    root.mkdir()
    pd.DataFrame({"id": ids, "path": [f"test/{i}.npy" for i in ids]}).to_csv(root / "test.csv",
                                                                             index=False)
    pd.DataFrame({"id": ids, "target": target}).to_csv(root / "test_labels.csv", index=False)
    pd.DataFrame({"id": ids, "split": "test", "target": target, "mass1": mass1, "mass2": mass2,
                  "snr_network": snr}).to_csv(root / "injections.csv", index=False)
    # Matched-filter-like scores: the SNR (or a quarter of it) plus unit noise.
    strong = np.where(target == 1, np.nan_to_num(snr), 3.0) + rng.normal(0, 1, n)
    weak = 0.25 * np.where(target == 1, np.nan_to_num(snr), 0.0) + rng.normal(0, 1, n)
    for name, score, folds in (("strong", strong, 1), ("weak", weak, 3)):
        (results / name).mkdir(parents=True)
        stacked = np.stack([score + rng.normal(0, 0.01, n) for _ in range(folds)])
        np.save(results / name / "predictions.npy", stacked[..., None].astype(np.float32))
    monkeypatch.setenv("G2NET_INPUT_DIR", str(root))
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(results))
    return root, results, target, strong, snr


def test_efficiency_rises_with_snr(tmp_path, monkeypatch):
    _toy_folder(tmp_path, monkeypatch)
    truth = g2net.evaluation.load_truth()
    scores = {n: g2net.evaluation.load_scores(n, len(truth)) for n in ("strong", "weak")}
    table = g2net.evaluation.efficiency_table(truth, scores, edges=np.arange(4, 22, 2))
    for (name, fap), rows in table.groupby(["experiment", "false_alarm_probability"]):
        eff = rows["efficiency"].to_numpy()
        assert eff[-1] > eff[0] + 0.5, (name, fap, eff)
        assert np.all(np.diff(eff) > -0.15), (name, fap, eff)  # rises, up to binomial noise
    strong = table[(table.experiment == "strong") & (table.false_alarm_probability == 0.01)]
    assert strong["efficiency"].iloc[-1] == 1.0  # SNR 18-20 against a threshold near 5.3
    assert 0.2 < strong["efficiency"].iloc[0] < 0.7  # SNR 4-6 straddles it
    assert strong["n"].sum() == int(truth.target.sum())


def test_snr_bins_hold_what_their_labels_say():
    np.testing.assert_array_equal(g2net.evaluation.snr_bin_edges(np.array([5.2, 19.7, np.nan])),
                                  [5, 6, 8, 10, 12, 14, 16, 18, 20])
    np.testing.assert_array_equal(g2net.evaluation.snr_bin_edges(np.array([4.0, 9.0])), [4, 6, 8, 10])


def test_threshold_sets_false_alarm_probability():
    negatives = np.arange(1000, dtype=float)
    threshold = g2net.evaluation.threshold_at(negatives, 0.01)
    assert np.mean(negatives > threshold) == pytest.approx(0.01)
    assert g2net.evaluation.threshold_at(negatives, 0.001) == 998.0
    assert g2net.evaluation.threshold_at(negatives[:100], 0.001) == 99.0  # unresolved: the loudest one


def test_bootstrap_interval_brackets_the_auc():
    rng = np.random.default_rng(1)
    target = np.repeat([0, 1], 500)
    scores = target * 1.0 + rng.normal(0, 1, 1000)
    auc, low, high = g2net.evaluation.bootstrap_auc(target, scores, n_resamples=200)
    assert low < auc < high
    assert 0.71 < auc < 0.81  # Phi(1 / sqrt 2) = 0.76
    assert 0.02 < high - low < 0.1
    # Ties count one half, in the resamples too: all-equal scores give exactly 0.5.
    assert g2net.evaluation.bootstrap_auc(target, np.zeros(1000), n_resamples=20) == (0.5, 0.5, 0.5)


def test_paired_difference_is_narrower_than_the_intervals():
    """Two models scored on the same examples: the paired interval of their AUC difference
    (shared resamples) is much narrower than either AUC's own interval, and brackets the
    difference; the first experiment's difference to itself is exactly 0."""
    rng = np.random.default_rng(2)
    target = np.repeat([0, 1], 500)
    base = target * 1.0 + rng.normal(0, 1, 1000)
    better = base + target * 0.15 + rng.normal(0, 0.2, 1000)
    values = g2net.evaluation.resampled_aucs(target, [base, better], n_resamples=300)
    assert values.shape == (300, 2)
    own = np.percentile(values[:, 1], [2.5, 97.5])
    paired = np.percentile(values[:, 1] - values[:, 0], [2.5, 97.5])
    point = roc_auc(target, better) - roc_auc(target, base)
    assert paired[0] < point < paired[1] and 0 < paired[0]  # better, and resolved
    assert (paired[1] - paired[0]) < 0.5 * (own[1] - own[0])
    # bootstrap_auc draws the same resamples
    assert g2net.evaluation.bootstrap_auc(target, better, n_resamples=300)[1:] == pytest.approx(tuple(own))


def test_auc_by_mchirp_splits_positives(tmp_path, monkeypatch):
    _toy_folder(tmp_path, monkeypatch)
    truth = g2net.evaluation.load_truth()
    scores = {"strong": g2net.evaluation.load_scores("strong", len(truth))}
    table = g2net.evaluation.auc_by_mchirp(truth, scores)
    assert len(table) == g2net.evaluation.N_MCHIRP_BINS
    assert table["n_positive"].sum() == int(truth.target.sum())
    assert table["auc"].between(0.8, 1.0).all()


def test_report_files_are_written(tmp_path, monkeypatch):
    root, results, target, strong, _ = _toy_folder(tmp_path, monkeypatch)
    submission = tmp_path / "blend.csv"
    pd.DataFrame({"id": [f"{i:010x}" for i in range(len(target))][::-1],
                  "target": strong[::-1]}).to_csv(submission, index=False)
    # A matched-filter folder joins without being named.
    (results / "matched_filter").mkdir()
    np.save(results / "matched_filter" / "predictions.npy", strong[None, :, None].astype(np.float32))
    report = g2net.evaluation.evaluate(["strong", "weak"], submission=submission, n_resamples=50)
    out = results / "evaluation"
    assert report == out / "report.md"
    for name in ("auc.csv", "efficiency.csv", "auc_by_mchirp.csv", "efficiency.png", "roc.png"):
        assert (out / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    aucs = pd.read_csv(out / "auc.csv").set_index("experiment")
    assert list(aucs.index) == ["strong", "weak", "matched_filter", "blend"]
    assert aucs.loc["blend", "auc"] == pytest.approx(aucs.loc["matched_filter", "auc"])
    assert aucs.loc["strong", "auc"] > aucs.loc["weak", "auc"]
    assert aucs.loc["strong", "minus_strong"] == 0 == aucs.loc["strong", "diff_ci95_high"]
    assert aucs.loc["weak", "diff_ci95_low"] <= aucs.loc["weak", "minus_strong"] <= aucs.loc["weak", "diff_ci95_high"] < 0
    text = report.read_text()
    assert "![efficiency](efficiency.png)" in text and "![ROC curves](roc.png)" in text
    assert "| strong |" in text and "False-alarm probability 0.001" in text


def test_not_a_simulated_folder_is_a_clear_error(tmp_path, monkeypatch):
    root, *_ = _toy_folder(tmp_path, monkeypatch)
    (root / "injections.csv").unlink()
    with pytest.raises(G2NetError, match="injections.csv not found.*simulate.py"):
        g2net.evaluation.evaluate(["strong"])


def test_wrong_prediction_shape_is_a_clear_error(tmp_path, monkeypatch):
    _, results, *_ = _toy_folder(tmp_path, monkeypatch)
    np.save(results / "weak" / "predictions.npy", np.zeros((1, 7, 1), np.float32))
    with pytest.raises(G2NetError, match=r"expected \(cv, 1200, 1\)"):
        g2net.evaluation.evaluate(["weak"])
    with pytest.raises(G2NetError, match="no test predictions"):
        g2net.evaluation.evaluate(["absent"])


def test_untrained_folds_are_skipped_and_stray_nan_refused(tmp_path, monkeypatch):
    """A --limit_fold run leaves the other folds' rows NaN: the mean is over the predicted folds."""
    _, results, target, *_ = _toy_folder(tmp_path, monkeypatch)
    path = results / "weak" / "predictions.npy"
    scores = np.load(path)
    partial = scores.copy()
    partial[1:] = np.nan
    np.save(path, partial)
    np.testing.assert_allclose(g2net.evaluation.load_scores("weak", len(target)), scores[0, :, 0], rtol=1e-6)
    partial[0, 5] = np.nan
    np.save(path, partial)
    with pytest.raises(G2NetError, match="NaN or infinite"):
        g2net.evaluation.load_scores("weak", len(target))


# -- which data the predictions were made from; bad options and inputs: one line, nothing written

def evaluate_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as caught:
        evaluate.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    return line[line.index("error: "):]  # argparse puts the program's name before it


def test_predictions_of_another_test_set_or_simulation_are_refused(tmp_path, monkeypatch, capsys):
    root, results, target, *_ = _toy_folder(tmp_path, monkeypatch)
    ids = pd.read_csv(root / "test.csv", dtype={"id": str})["id"]
    other = utils.data_identity(root, test_ids=[f"x{i:09x}" for i in range(len(ids))])  # same size
    utils.write_data_record(results / "strong", {"predictions.npy": other})
    before = file_digests(tmp_path)
    line = evaluate_error(["--experiments", "strong", "weak", "--bootstrap", "20"], capsys)
    assert line == ("error: experiment 'strong': predictions.npy was made from other data than the "
                    "input folder holds now (another test.csv (its ids)); retrain it on the current "
                    "data: python train.py --config strong (train_pseudo.py for a pseudo config)")
    (root / "simulation.json").write_text('{"seed": 1, "complete": true}')
    utils.write_data_record(results / "strong", {"predictions.npy": utils.data_identity(root, test_ids=ids)})
    (root / "simulation.json").write_text('{"seed": 2, "complete": true}')
    before = file_digests(tmp_path)
    assert "(another simulation.json (another simulation run))" in evaluate_error(
        ["--experiments", "strong", "--bootstrap", "20"], capsys)
    assert_untouched(before, tmp_path)
    (root / "simulation.json").write_text('{"seed": 1, "complete": true}')  # the one it was made from
    g2net.evaluation.evaluate(["strong", "weak"], n_resamples=20)
    assert "warning: experiment weak has no record" in capsys.readouterr().out


@pytest.mark.parametrize("damage, argv, message", [
    (None, ["--bootstrap", "1e9"], "error: argument --bootstrap: '1e9': must be at most 100000 (more "
                                   "resamples no longer move the 95% interval; they only take longer)"),
    (lambda root, results, tmp: (tmp / "taken").write_text("mine"), ["--out", "{tmp}/taken"],
     "error: --out {tmp}/taken is a file, not a folder; give a folder to write into"),
    (None, ["--out", "{root}/evaluation"],
     "error: --out {root}/evaluation lies in {root}, the input folder this command reads; write the "
     "output somewhere else"),
    (lambda root, results, tmp: (results / "weak" / "predictions.npy").write_bytes(
        (results / "weak" / "predictions.npy").read_bytes()[:-100]), [],
     "error: {results}/weak/predictions.npy is not a readable predictions array (the file ends after"),
    (lambda root, results, tmp: np.save(results / "weak" / "predictions.npy",
                                        np.array([{"a": 1}], dtype=object), allow_pickle=True), [],
     "error: {results}/weak/predictions.npy is not a readable predictions array (an array of Python "
     "objects (pickles are refused))"),
    (lambda root, results, tmp: (tmp / "sub.csv").write_text(
        "id,target\n" + "".join(f"{i:010x},0.5\n" for i in range(1200)) + "0000000000,0.1\n"),
     ["--submission", "{tmp}/sub.csv"],
     "error: {tmp}/sub.csv: 1 ids appear more than once (0000000000); keep one row per id. Regenerate "
     "the submission"),
    (lambda root, results, tmp: (tmp / "sub.csv").write_bytes(bytes(range(128, 256)) * 8),
     ["--submission", "{tmp}/sub.csv"], "error: {tmp}/sub.csv is not a readable csv ('utf-8' codec"),
])
def test_bad_options_and_files_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, damage,
                                                              argv, message):
    root, results, *_ = _toy_folder(tmp_path, monkeypatch)
    if damage is not None:
        damage(root, results, tmp_path)
    before = file_digests(tmp_path)
    fill = dict(root=root, results=results, tmp=tmp_path)
    line = evaluate_error(["--experiments", "strong", "weak", "--bootstrap", "20",
                           *[a.format(**fill) for a in argv]], capsys)
    assert line.startswith(message.format(**fill))
    assert_untouched(before, tmp_path)
