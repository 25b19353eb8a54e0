"""Stacking into a submission: fake experiment folders with synthetic logits, no training; the
min-max scaling of g2net.stacking and the sigmoid of pseudo-labelling against reference code."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient
from sklearn.metrics import roc_auc_score

import g2net.stacking
import stacking
import utils
from conftest import assert_untouched, file_digests
from g2net.training import pseudo
from utils import G2NetError

REPO = Path(__file__).resolve().parents[1]
CV = 5


def logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


class FakeWorld:
    """An input folder (train/test/sample/test_labels csv) and a results folder to fill."""

    def __init__(self, root: Path, n_train: int = 600, n_test: int = 400, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.input, self.results = root / "input", root / "results"
        self.input.mkdir(parents=True)
        self.results.mkdir()
        self.y = self.rng.integers(0, 2, n_train)
        self.y_test = self.rng.integers(0, 2, n_test)
        ids = [f"{i:010x}" for i in self.rng.choice(16 ** 9, n_train + n_test, replace=False)]
        self.train_ids, self.test_ids = ids[:n_train], ids[n_train:]
        pd.DataFrame(dict(id=self.train_ids, target=self.y, path="unused")).to_csv(
            self.input / "train.csv", index=False)
        pd.DataFrame(dict(id=self.test_ids, path="unused")).to_csv(self.input / "test.csv", index=False)
        self.sample_ids = list(np.array(self.test_ids)[self.rng.permutation(n_test)])
        pd.DataFrame(dict(id=self.sample_ids, target=0.5)).to_csv(
            self.input / "sample_submission.csv", index=False)
        pd.DataFrame(dict(id=self.test_ids, target=self.y_test)).to_csv(
            self.input / "test_labels.csv", index=False)
        self.folds = self.rng.permutation(np.arange(n_train) % CV)

    def logits(self, informative: np.ndarray, labels: np.ndarray, strength: float) -> np.ndarray:
        """Separating logits on the ``informative`` rows, noise everywhere."""
        return (np.where(informative, strength * (2 * labels - 1), 0.0)
                + self.rng.normal(0.0, 1.5, len(labels)))

    def add(self, name: str, oof: np.ndarray | None, test: np.ndarray, folds: bool = True,
            suffix: str = "") -> Path:
        folder = self.results / name
        folder.mkdir(exist_ok=True)
        if oof is not None:
            np.save(folder / f"outoffolds{suffix}.npy", oof[:, None].astype(np.float32))
        np.save(folder / f"predictions{suffix}.npy", test[..., None].astype(np.float32))
        if folds:
            np.save(folder / "folds.npy", self.folds)
        return folder

    def add_model(self, name: str, informative_train: np.ndarray, informative_test: np.ndarray,
                  strength: float = 3.0, **kwargs) -> Path:
        oof = self.logits(informative_train, self.y, strength)
        shared = self.logits(informative_test, self.y_test, strength)
        test = shared[None] + self.rng.normal(0.0, 0.3, (CV, len(shared)))
        return self.add(name, oof, test, **kwargs)

    def add_disagreeing_pair(self) -> None:
        """model_a sees the signal in one half of the rows, model_b in the other half."""
        half = self.rng.random(len(self.y)) < 0.5
        half_test = self.rng.random(len(self.y_test)) < 0.5
        self.add_model("model_a", half, half_test)
        self.add_model("model_b", ~half, ~half_test)


@pytest.fixture
def world(tmp_path, monkeypatch) -> FakeWorld:
    fake = FakeWorld(tmp_path)
    monkeypatch.setenv("G2NET_INPUT_DIR", str(fake.input))
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(fake.results))
    return fake


def check_submission(path: Path, world: FakeWorld) -> pd.DataFrame:
    submission = pd.read_csv(path, dtype={"id": str})
    assert list(submission.columns) == ["id", "target"]
    assert list(submission["id"]) == world.sample_ids
    assert submission["target"].notna().all() and submission["target"].between(0, 1).all()
    return submission


def test_stack_matches_best_single_model_when_models_disagree(world):
    world.add_disagreeing_pair()
    outcome = g2net.stacking.run_stacking(printer=lambda line: None)
    report = outcome.report.set_index("name")
    best_single = report.loc[["model_a", "model_b"], "oof_auc"].max()
    assert 0.75 < best_single < 0.9
    assert report.loc["ridge_stack", "oof_auc"] >= best_single - 0.005
    # each model covers what the other misses, so any sensible blend is far better than either
    assert report.loc["ridge_stack", "oof_auc"] > best_single + 0.1
    assert report.loc["ridge_stack", "test_auc"] > report.loc[["model_a", "model_b"], "test_auc"].max()
    coefficients = outcome.blends[0].coefficients
    assert coefficients.shape == (CV, 2) and (coefficients.to_numpy() > 0).all()
    check_submission(outcome.paths["submission"], world)


def test_stacked_oof_auc_is_cross_fitted_not_in_sample(world):
    """Ten pure-noise models: fitting and scoring the same fold rows would look skilful."""
    nowhere = np.zeros(len(world.y), bool)
    for i in range(10):
        world.add_model(f"noise_{i}", nowhere, np.zeros(len(world.y_test), bool))
    inputs = g2net.stacking.load_inputs()
    experiments, _ = g2net.stacking.load_experiments(None, inputs, printer=lambda line: None)
    stack = g2net.stacking.ridge_stack(experiments, inputs, world.folds)
    oof_matrix = np.stack([exp.oof for exp in experiments], axis=1)
    in_sample = np.empty(len(world.y))
    for k in range(CV):
        rows = world.folds == k
        in_sample[rows] = g2net.stacking.minmax(oof_matrix[rows] @ stack.coefficients.loc[k].to_numpy())
    honest = roc_auc_score(world.y, stack.oof)
    assert abs(honest - 0.5) < 0.07
    assert roc_auc_score(world.y, in_sample) > honest + 0.05


def test_single_model_stack_is_mean_of_minmax_scaled_fold_predictions(world):
    world.add_model("solo", np.ones(len(world.y), bool), np.ones(len(world.y_test), bool))
    inputs = g2net.stacking.load_inputs()
    experiments, _ = g2net.stacking.load_experiments(["solo"], inputs, printer=lambda line: None)
    stack = g2net.stacking.ridge_stack(experiments, inputs, world.folds)
    probabilities = logistic(np.load(world.results / "solo" / "predictions.npy")[..., 0])
    scaled = [(p - p.min()) / (p.max() - p.min()) for p in probabilities]
    np.testing.assert_allclose(stack.test, np.mean(scaled, axis=0), atol=1e-6)


def test_cli_report_missing_names_and_models_without_oof(world, capsys):
    world.add_disagreeing_pair()
    # the matched filter: one row of test scores, no out-of-fold predictions, no folds
    filter_scores = world.logits(np.ones(len(world.y_test), bool), world.y_test, 1.0)
    world.add("matched_filter", None, filter_scores[None], folds=False)
    stacking.main(["--models", "model_a", "ghost", "model_b", "matched_filter"])
    out = capsys.readouterr().out
    assert "not found (no predictions under" in out and "ghost" in out
    assert "skipping matched_filter in the blends: no out-of-fold predictions" in out
    assert "stacked OOF AUC" in out and "vs best single model model_a" in out

    report = pd.read_csv(world.results / "stacking_report.csv").set_index("name")
    assert list(report.index) == ["model_a", "model_b", "matched_filter",
                                  "ridge_stack", "mean", "rank_mean"]
    assert list(report["kind"]) == ["model"] * 3 + ["blend"] * 3
    oof = {name: logistic(np.load(world.results / name / "outoffolds.npy")[:, 0])
           for name in ("model_a", "model_b")}
    test = {name: logistic(np.load(world.results / name / "predictions.npy")[..., 0]).mean(0)
            for name in ("model_a", "model_b", "matched_filter")}
    for name in oof:
        assert report.loc[name, "oof_auc"] == pytest.approx(roc_auc_score(world.y, oof[name]))
    for name in test:
        assert report.loc[name, "test_auc"] == pytest.approx(roc_auc_score(world.y_test, test[name]))
    assert np.isnan(report.loc["matched_filter", "oof_auc"])
    # the blends use only the two models with out-of-fold predictions
    assert report.loc["mean", "oof_auc"] == pytest.approx(
        roc_auc_score(world.y, (oof["model_a"] + oof["model_b"]) / 2))
    assert report.loc["mean", "test_auc"] == pytest.approx(
        roc_auc_score(world.y_test, (test["model_a"] + test["model_b"]) / 2))
    assert report.loc["ridge_stack", "oof_auc"] > report.loc["model_a", "oof_auc"]
    assert (world.results / "stacking_correlation.png").stat().st_size > 1000
    check_submission(world.results / "submission.csv", world)


def test_default_models_prefer_tta_and_skip_incomplete_folders(world):
    world.add_disagreeing_pair()
    informative = np.ones(len(world.y), bool)
    world.add_model("model_a", informative, np.ones(len(world.y_test), bool), strength=6.0,
                    suffix="_tta")
    world.add("only_test", None, np.zeros((1, len(world.y_test))), folds=False)
    (world.results / "empty").mkdir()
    assert g2net.stacking.discover_experiments() == ["model_a", "model_b"]
    outcome = g2net.stacking.run_stacking(printer=lambda line: None)
    report = outcome.report.set_index("name")
    assert report.loc["model_a", "source"] == "outoffolds_tta.npy / predictions_tta.npy"
    assert report.loc["model_b", "source"] == "outoffolds.npy / predictions.npy"
    assert report.loc["model_a", "oof_auc"] > 0.95  # the stronger TTA predictions were used


def test_default_skips_debug_runs_and_blends_only_complete_experiments(world, capsys):
    world.add_disagreeing_pair()
    # a --debug run predicted a 128-row subset of the test set: not stackable with the rest
    world.add("model_a_debug", np.zeros(len(world.y)), np.zeros((2, 128)))
    # a run with fold 3 still untrained: NaN out-of-fold rows and NaN test row
    partial = world.add_model("partial", np.ones(len(world.y), bool), np.ones(len(world.y_test), bool))
    oof = np.load(partial / "outoffolds.npy")
    oof[world.folds == 3] = np.nan
    np.save(partial / "outoffolds.npy", oof)
    test = np.load(partial / "predictions.npy")
    test[3] = np.nan
    np.save(partial / "predictions.npy", test)

    outcome = g2net.stacking.run_stacking()
    out = capsys.readouterr().out
    assert "skipping model_a_debug: experiment 'model_a_debug': predictions.npy has shape (2, 128, 1)" in out
    assert "skipping partial in the blends: test predictions of folds [3] are NaN" in out
    report = outcome.report.set_index("name")
    assert "model_a_debug" not in report.index
    assert np.isnan(report.loc["partial", "oof_auc"])
    finite_folds = logistic(test[[0, 1, 2, 4], :, 0]).mean(0)
    assert report.loc["partial", "test_auc"] == pytest.approx(roc_auc_score(world.y_test, finite_folds))
    assert list(outcome.blends[0].coefficients.columns) == ["model_a", "model_b"]
    check_submission(outcome.paths["submission"], world)


def test_matched_filter_layout_joins_the_stack_with_the_others_folds(world):
    """One row of test logits, out-of-fold scores from an unfitted statistic, no folds.npy."""
    world.add_disagreeing_pair()
    everywhere = np.ones(len(world.y), bool)
    scores = world.logits(everywhere, world.y, 1.0)
    world.add("matched_filter", scores, world.logits(np.ones(len(world.y_test), bool),
                                                     world.y_test, 1.0)[None], folds=False)
    outcome = g2net.stacking.run_stacking(printer=lambda line: None)
    stack = outcome.blends[0]
    assert list(stack.coefficients.columns) == ["matched_filter", "model_a", "model_b"]
    assert (stack.coefficients["matched_filter"] > 0).all()
    report = outcome.report.set_index("name")
    assert report.loc["matched_filter", "oof_auc"] == pytest.approx(roc_auc_score(world.y, scores))
    assert report.loc["ridge_stack", "oof_auc"] >= report.loc["model_a", "oof_auc"] - 0.005
    # alone it has no folds to fit the ridge per fold on
    with pytest.raises(G2NetError, match="no stacked experiment has folds.npy.*matched_filter"):
        g2net.stacking.run_stacking(["matched_filter"], printer=lambda line: None)


def test_submit_another_blend(world):
    world.add_disagreeing_pair()
    outcome = g2net.stacking.run_stacking(submit="rank_mean", printer=lambda line: None)
    rank_mean = outcome.blends[2]
    submission = check_submission(outcome.paths["submission"], world)
    expected = pd.Series(rank_mean.test, index=world.test_ids).reindex(world.sample_ids)
    np.testing.assert_allclose(submission["target"], expected.to_numpy(), atol=1e-12)


def test_errors_are_clear(world, capsys):
    with pytest.raises(SystemExit) as exit_info:
        stacking.main([])
    assert exit_info.value.code == 2
    assert "no experiment folder under" in capsys.readouterr().err

    world.add_model("no_folds", np.ones(len(world.y), bool), np.ones(len(world.y_test), bool),
                    folds=False)
    with pytest.raises(G2NetError, match="no stacked experiment has folds.npy.*no_folds"):
        g2net.stacking.run_stacking(printer=lambda line: None)

    world.add("short", np.zeros(len(world.y)), np.zeros((CV, 10)))
    with pytest.raises(G2NetError, match=r"'short'.*expected \(cv, 400, 1\)"):
        g2net.stacking.run_stacking(["short"], printer=lambda line: None)

    with pytest.raises(G2NetError, match="none of the experiments has usable predictions.*not found: ghost"):
        g2net.stacking.run_stacking(["ghost"], printer=lambda line: None)


def test_other_folds_are_refused(world):
    world.add_disagreeing_pair()
    np.save(world.results / "model_b" / "folds.npy", np.roll(world.folds, 1))
    with pytest.raises(G2NetError, match="model_b used other folds than model_a"):
        g2net.stacking.run_stacking(printer=lambda line: None)


def test_notebook_runs_headless_and_writes_a_valid_submission(world):
    world.add_disagreeing_pair()
    notebook = nbformat.read(REPO / "g2net-submission.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    check_submission(world.results / "submission.csv", world)
    report = pd.read_csv(world.results / "stacking_report.csv").set_index("name")
    assert report.loc["ridge_stack", "oof_auc"] > report.loc["model_a", "oof_auc"]
    outputs = "".join(output.get("text", "") for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.outputs)
    assert "stacked OOF AUC" in outputs and "wrote" in outputs


# -- min-max scaling and the pseudo-label sigmoid against reference code -------------------------

def reference_minmax(values):
    low, high = float(np.min(values)), float(np.max(values))
    if high - low <= 0.0:
        return np.full_like(values, 0.5, dtype=np.float64)
    return (values - low) / (high - low)


def reference_sigmoid(logits):
    logits = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(logits)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp_x = np.exp(logits[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out


def test_minmax_and_sigmoid_equal_the_reference_code():
    values = np.random.default_rng(5).normal(size=200) * 3 + 1
    np.testing.assert_allclose(g2net.stacking.minmax(values), reference_minmax(values), rtol=0, atol=1e-15)
    assert g2net.stacking.minmax(values).min() == 0.0 and g2net.stacking.minmax(values).max() == 1.0
    np.testing.assert_array_equal(g2net.stacking.minmax(np.full(4, 2.0)), np.full(4, 0.5))
    logits = np.concatenate([values * 10, [-800.0, -50.0, 0.0, 50.0, 800.0]])
    np.testing.assert_allclose(pseudo.sigmoid(logits), reference_sigmoid(logits), rtol=1e-15, atol=0)
    assert pseudo.sigmoid(np.array([-800.0]))[0] == 0.0 and pseudo.sigmoid(np.array([800.0]))[0] == 1.0


# -- which data the predictions were made from; bad options and inputs --------------------------

def record(world: FakeWorld, name: str, train_ids=None, targets=None, test_ids=None) -> None:
    """The data.json train.py writes beside an experiment's files, for the world's tables or for
    the ones given (another simulation of the same size)."""
    identity = utils.data_identity(world.input, world.train_ids if train_ids is None else train_ids,
                                   world.y if targets is None else targets,
                                   world.test_ids if test_ids is None else test_ids)
    trained = {k: v for k, v in identity.items() if k != "test"}
    utils.write_data_record(world.results / name, {"outoffolds.npy": trained, "folds.npy": trained,
                                                   "predictions.npy": identity})


def stacking_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as caught:
        stacking.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_predictions_made_from_other_data_are_refused_naming_the_experiment(world, tmp_path, capsys):
    world.add_disagreeing_pair()
    record(world, "model_a")
    other_ids = [f"{i:010x}" for i in range(len(world.y))]  # another simulation of the same size
    record(world, "model_b", train_ids=other_ids)
    before = file_digests(tmp_path)
    line = stacking_error(["--models", "model_a", "model_b"], capsys)
    assert line == ("error: experiment 'model_b': predictions.npy was made from other data than the "
                    "input folder holds now (another train.csv (its ids or labels)); retrain it on the "
                    "current data: python train.py --config model_b (train_pseudo.py for a pseudo config)")
    assert_untouched(before, tmp_path)
    record(world, "model_b", test_ids=world.test_ids[::-1])  # the same training set, another test order
    before = file_digests(tmp_path, ("data.json", "simulation.json"))
    assert "another test.csv (its ids)" in stacking_error(["--models", "model_b"], capsys)
    (world.input / "simulation.json").write_text('{"seed": 7, "complete": true}')
    record(world, "model_a")
    (world.input / "simulation.json").write_text('{"seed": 8, "complete": true}')  # simulated again
    assert "another simulation.json (another simulation run)" in stacking_error(["--models", "model_a"], capsys)
    assert_untouched(before, tmp_path, ("data.json", "simulation.json"))


def test_recorded_predictions_of_this_data_stack_and_unrecorded_ones_are_named(world, capsys):
    world.add_disagreeing_pair()
    record(world, "model_a")
    outcome = g2net.stacking.run_stacking(["model_a", "model_b"])
    out = capsys.readouterr().out
    assert "warning: experiment model_b has no record of the data its predictions.npy, " \
           "outoffolds.npy, folds.npy came from" in out
    assert "experiment model_a has no record" not in out
    check_submission(outcome.paths["submission"], world)


@pytest.mark.parametrize("argv, message", [
    (["--models", "model_a", "model_a"], "error: --models names model_a more than once; give each "
                                         "experiment once (a model stacked with itself only shares its own weight)"),
    (["--alpha", "nan"], "error: argument --alpha: 'nan' is not a finite number"),
    (["--alpha", "inf"], "error: argument --alpha: 'inf' is not a finite number"),
    (["--alpha", "-1"], "error: argument --alpha: '-1': must be > 0"),
])
def test_bad_options_are_one_line_and_write_nothing(world, tmp_path, capsys, argv, message):
    world.add_disagreeing_pair()
    before = file_digests(tmp_path)
    assert stacking_error(argv, capsys).endswith(message)
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda w: (w.input / "sample_submission.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256))),
     r"sample_submission\.csv is not a readable csv \('utf-8' codec can't decode"),
    (lambda w: (w.input / "train.csv").write_text(
        (w.input / "train.csv").read_text().replace(",1,unused", ",yes,unused", 1)),
     r"train\.csv: 1 target values are not numbers in \[0, 1\] \(ids [0-9a-f]{10}\); rebuild it with prep_data\.py"),
])
def test_bad_input_tables_are_one_line_and_write_nothing(world, tmp_path, capsys, damage, message):
    world.add_disagreeing_pair()
    damage(world)
    before = file_digests(tmp_path)
    assert re.search(message, stacking_error([], capsys))
    assert_untouched(before, tmp_path)
