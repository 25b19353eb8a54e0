"""Pseudo-label targets: exactly the sigmoid of the parent's fold predictions, for every option."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from g2net.training.pseudo import load_parent_predictions, pseudo_targets, sigmoid, validate_pseudo_labels
from utils import G2NetError
import g2net.stacking
from g2net.training import pseudo
from g2net.experiments import runner

N_TEST = 200
CV = 4


@pytest.fixture
def parent_logits() -> np.ndarray:
    rng = np.random.default_rng(0)
    shared = rng.normal(0.0, 2.0, size=(1, N_TEST, 1))
    return (shared + rng.normal(0.0, 0.5, size=(CV, N_TEST, 1))).astype(np.float32)


def expected_soft(logits: np.ndarray, fold: int) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits[fold, :, 0].astype(np.float64))))


def confident_mask(logits: np.ndarray, lower: float, upper: float) -> np.ndarray:
    fold_mean = (1.0 / (1.0 + np.exp(-logits[..., 0].astype(np.float64)))).mean(axis=0)
    low, high = np.quantile(fold_mean, [lower, upper])
    return (fold_mean < low) | (fold_mean > high)


def test_sigmoid_is_stable_at_extremes():
    np.testing.assert_allclose(sigmoid(np.array([-800.0, -1.0, 0.0, 1.0, 800.0])),
                               [0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1)), 1.0])


@pytest.mark.parametrize("fold", [0, 3])
def test_soft_labels_are_sigmoid_of_fold_predictions(parent_logits, fold):
    indices, targets = pseudo_targets(parent_logits, fold)
    np.testing.assert_array_equal(indices, np.arange(N_TEST))
    assert targets.dtype == np.float32 and targets.shape == (N_TEST, 1)
    np.testing.assert_allclose(targets[:, 0], expected_soft(parent_logits, fold), rtol=1e-6)
    # the fold matters: another fold's predictions give other targets
    other = pseudo_targets(parent_logits, (fold + 1) % CV)[1]
    assert np.abs(other - targets).max() > 0.01


def test_confident_samples_keep_the_tails_of_the_fold_mean(parent_logits):
    indices, targets = pseudo_targets(parent_logits, 1, confident_samples=(0.3, 0.8))
    expected = np.flatnonzero(confident_mask(parent_logits, 0.3, 0.8))
    np.testing.assert_array_equal(indices, expected)
    assert len(indices) == 100  # 30 % below + 20 % above of 200 distinct values
    np.testing.assert_allclose(targets[:, 0], expected_soft(parent_logits, 1)[expected], rtol=1e-6)


def test_hard_labels_round_all_or_the_confident_subset(parent_logits):
    indices, targets = pseudo_targets(parent_logits, 2, hard_label=True)
    np.testing.assert_array_equal(indices, np.arange(N_TEST))
    np.testing.assert_array_equal(targets[:, 0], np.round(expected_soft(parent_logits, 2)))

    indices, targets = pseudo_targets(parent_logits, 2, confident_samples=(0.4, 0.6), hard_label=True)
    keep = np.flatnonzero(confident_mask(parent_logits, 0.4, 0.6))
    np.testing.assert_array_equal(indices, keep)
    assert set(np.unique(targets)) <= {0.0, 1.0}
    np.testing.assert_array_equal(targets[:, 0], np.round(expected_soft(parent_logits, 2)[keep]))


def test_mix_keeps_everything_and_rounds_only_the_confident(parent_logits):
    indices, targets = pseudo_targets(parent_logits, 0, confident_samples=(0.25, 0.75),
                                      hard_label="mix")
    np.testing.assert_array_equal(indices, np.arange(N_TEST))
    soft = expected_soft(parent_logits, 0)
    confident = confident_mask(parent_logits, 0.25, 0.75)
    np.testing.assert_array_equal(targets[confident, 0], np.round(soft[confident]).astype(np.float32))
    np.testing.assert_allclose(targets[~confident, 0], soft[~confident], rtol=1e-6)
    assert 0 < (~confident).sum() < N_TEST and np.any((targets[:, 0] > 0) & (targets[:, 0] < 1))


def test_single_row_parent_serves_every_fold_and_bad_fold_is_refused(parent_logits):
    single = parent_logits[:1]
    for fold in range(3):
        np.testing.assert_allclose(pseudo_targets(single, fold)[1][:, 0], expected_soft(single, 0),
                                   rtol=1e-6)
    with pytest.raises(G2NetError, match="fold 4 .* 4 folds"):
        pseudo_targets(parent_logits, 4)


@pytest.mark.parametrize("spec, message", [
    (dict(path="P", hard_label="mix"), "needs confident_samples"),
    (dict(path="P", confident_samples=(0.7, 0.3)), "out of order"),
    (dict(path="P", confident_samples=0.5), "pair of quantiles"),
    (dict(path="P", hard_label="yes"), "not one of"),
    (dict(path="P", confident_sample=(0.1, 0.9)), "unknown keys"),
    (dict(confident_samples=None), "must be a dict with at least 'path'"),
])
def test_bad_pseudo_label_specs_are_refused(spec, message):
    with pytest.raises(G2NetError, match=message):
        validate_pseudo_labels(spec)


def test_validate_fills_defaults():
    assert validate_pseudo_labels(dict(path="Parent")) == dict(
        path="Parent", confident_samples=None, hard_label=False)
    assert validate_pseudo_labels(dict(path="P", confident_samples=[0.1, 0.9], hard_label=np.True_)) \
        == dict(path="P", confident_samples=(0.1, 0.9), hard_label=True)


def test_load_parent_predictions(tmp_path, monkeypatch, parent_logits):
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path))
    (tmp_path / "Parent").mkdir()
    np.save(tmp_path / "Parent" / "predictions.npy", parent_logits)
    loaded = load_parent_predictions("Parent", N_TEST)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, parent_logits)
    # a folder path works as well as a name
    np.testing.assert_array_equal(load_parent_predictions(tmp_path / "Parent", N_TEST), parent_logits)
    # a --debug parent lives in <parent>_debug
    (tmp_path / "Parent_debug").mkdir()
    np.save(tmp_path / "Parent_debug" / "predictions.npy", parent_logits[:, :50])
    assert load_parent_predictions("Parent", 50, debug=True).shape == (CV, 50, 1)


def test_missing_parent_names_config_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path))
    with pytest.raises(G2NetError, match=r"'Debug' has no test predictions .*"
                                         r"`python train\.py --config Debug`"):
        load_parent_predictions("Debug", N_TEST)
    with pytest.raises(G2NetError, match=r"`python train_pseudo\.py --config PseudoDebug`"):
        load_parent_predictions("PseudoDebug", N_TEST, parent_is_pseudo=True)
    with pytest.raises(G2NetError, match=r"Debug_debug/predictions\.npy is missing.*"
                                         r"`python train\.py --config Debug --debug`"):
        load_parent_predictions("Debug", N_TEST, debug=True)


def test_parent_made_on_another_test_set_is_refused(tmp_path, monkeypatch, parent_logits):
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path))
    (tmp_path / "Debug").mkdir()
    np.save(tmp_path / "Debug" / "predictions.npy", parent_logits)
    with pytest.raises(G2NetError, match=r"'Debug' predicted 200 test examples but the current test "
                                         r"set has 150 .*`python train\.py --config Debug`"):
        load_parent_predictions("Debug", 150)
    np.save(tmp_path / "Debug" / "predictions.npy", np.full((CV, N_TEST, 1), np.nan, np.float32))
    with pytest.raises(G2NetError, match="NaN"):
        load_parent_predictions("Debug", N_TEST)


# ----------------------------------------------------------------------------- end to end
@pytest.fixture
def restore_torch_determinism(monkeypatch):
    """The Debug configs switch on deterministic algorithms process-wide: switch them back after."""
    import torch

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    state = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(state[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state[1:]


def test_debug_parent_and_pseudo_child_train_end_to_end_and_stack(experiment_env, monkeypatch,
                                                                   restore_torch_determinism):
    """Debug, then DebugPseudo (spying on its pseudo targets), then stacking; all in-process."""
    import pandas as pd

    import configs
    from conftest import SIM_TEST, SIM_TRAIN

    results = Path(experiment_env["G2NET_RESULTS_DIR"])
    runner.main(["--config", "Debug", "--num_workers", "0", "--silent"], pseudo=False)
    parent = np.load(results / "Debug" / "predictions.npy")
    assert parent.shape == (configs.Debug.cv, SIM_TEST, 1)

    calls = []

    def spy(*args, **kwargs):
        out = real_pseudo_targets(*args, **kwargs)
        calls.append((args[1] if len(args) > 1 else kwargs["fold"], *out))
        return out

    real_pseudo_targets = pseudo.pseudo_targets
    monkeypatch.setattr(runner, "pseudo_targets", spy)
    summary = runner.main(["--config", "DebugPseudo", "--num_workers", "0", "--silent"], pseudo=True)

    assert sorted(call[0] for call in calls) == list(range(configs.DebugPseudo.cv))
    for fold, indices, targets in calls:
        np.testing.assert_array_equal(indices, np.arange(SIM_TEST))  # soft labels: every example
        np.testing.assert_allclose(targets[:, 0], 1 / (1 + np.exp(-parent[fold, :, 0].astype(float))),
                                   rtol=1e-5)
    child = results / "DebugPseudo"
    assert np.load(child / "outoffolds.npy").shape == (SIM_TRAIN, 1)  # validation: real rows only
    assert np.isfinite(np.load(child / "predictions.npy")).all()
    log = next(child.glob("DebugPseudo_*.log")).read_text()
    assert log.count(f"+ {SIM_TEST} pseudo-labelled test") == configs.DebugPseudo.cv
    assert summary["oof_auc"] is not None

    outcome = g2net.stacking.run_stacking(printer=lambda line: None)
    report = outcome.report.set_index("name")
    assert {"Debug", "DebugPseudo", "ridge_stack", "mean", "rank_mean"} <= set(report.index)
    assert report["oof_auc"].between(0, 1).all() and report["test_auc"].between(0, 1).all()
    submission = pd.read_csv(results / "submission.csv", dtype={"id": str})
    sample = pd.read_csv(Path(experiment_env["G2NET_INPUT_DIR"]) / "sample_submission.csv",
                         dtype={"id": str})
    assert list(submission["id"]) == list(sample["id"])
    assert submission["target"].between(0, 1).all()

    # a parent predicted on another test set stops the child before any training
    np.save(results / "Debug" / "predictions.npy", parent[:, :-1])
    with pytest.raises(G2NetError, match=rf"'Debug' predicted {SIM_TEST - 1} test examples but the "
                                         rf"current test set has {SIM_TEST}"):
        runner.main(["--config", "DebugPseudo", "--num_workers", "0", "--silent"], pseudo=True)
