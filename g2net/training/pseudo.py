"""Pseudo-label targets for the test set, taken from a parent experiment's test predictions.

The competition's last training round retrains each model with the test examples added to the
training set, their targets being the parent model's predictions (soft labels), optionally only the
confident ones and optionally rounded. ``runner.py`` calls :func:`load_parent_predictions` before
any training starts (so a missing parent fails fast) and :func:`pseudo_targets` once per fold.

Config field::

    pseudo_labels = dict(path="<parent experiment name or folder>",
                         confident_samples=None | (lower, upper),
                         hard_label=False | True | "mix")
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from utils import G2NetError, load_predictions, results_dir

PREDICTIONS_FILE = "predictions.npy"


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float64 in, float64 out): ``scipy.special.expit``."""
    return expit(np.asarray(logits, dtype=np.float64))


def _check_confident_samples(confident_samples: Any) -> tuple[float, float] | None:
    if confident_samples is None:
        return None
    try:
        lower, upper = (float(q) for q in confident_samples)
    except (TypeError, ValueError):
        raise G2NetError(
            f"pseudo_labels confident_samples={confident_samples!r} is not a pair of quantiles; "
            "use None or (lower, upper) with 0 <= lower <= upper <= 1, e.g. (0.4, 0.6)") from None
    if not 0.0 <= lower <= upper <= 1.0:
        raise G2NetError(
            f"pseudo_labels confident_samples=({lower}, {upper}) is out of order or outside [0, 1]; "
            "use (lower, upper) with 0 <= lower <= upper <= 1, e.g. (0.4, 0.6)")
    return lower, upper


def _check_hard_label(hard_label: Any, confident_samples: tuple[float, float] | None) -> bool | str:
    if isinstance(hard_label, (bool, np.bool_)):
        hard_label = bool(hard_label)
    elif hard_label != "mix":
        raise G2NetError(f"pseudo_labels hard_label={hard_label!r} is not one of False, True, 'mix'")
    if hard_label == "mix" and confident_samples is None:
        raise G2NetError(
            "pseudo_labels hard_label='mix' rounds only the confident examples, so it needs "
            "confident_samples=(lower, upper); set it, or use hard_label=True to round all")
    return hard_label


def validate_pseudo_labels(spec: Any) -> dict[str, Any]:
    """Check a config's ``pseudo_labels`` dict and return it with every key filled in.

    Unknown keys are refused so that a typo (``confident_sample``) cannot silently train on all
    the soft labels.
    """
    if not isinstance(spec, dict) or "path" not in spec:
        raise G2NetError(
            f"pseudo_labels={spec!r} must be a dict with at least 'path' (the parent experiment), "
            "e.g. dict(path='Baseline', confident_samples=None, hard_label=False)")
    unknown = sorted(set(spec) - {"path", "confident_samples", "hard_label"})
    if unknown:
        raise G2NetError(f"pseudo_labels has unknown keys {unknown}; "
                         "allowed: path, confident_samples, hard_label")
    confident = _check_confident_samples(spec.get("confident_samples"))
    hard_label = _check_hard_label(spec.get("hard_label", False), confident)
    return dict(path=str(spec["path"]), confident_samples=confident, hard_label=hard_label)


def parent_folder(parent: str | os.PathLike) -> Path:
    """A parent given as an experiment name lives under the results folder; a path is used as is."""
    parent = Path(parent)
    if parent.is_absolute() or len(parent.parts) > 1:
        return parent
    return results_dir() / parent


def load_parent_predictions(parent_name: str | os.PathLike, n_test: int,
                            parent_is_pseudo: bool = False, debug: bool = False) -> np.ndarray:
    """The parent's test logits ``(cv, n_test, 1)`` as float32, checked against the test set size.

    ``parent_is_pseudo`` only changes the advice in the error message: a pseudo parent is made by
    ``train_pseudo.py``, a plain one by ``train.py``. ``debug`` reads the parent's ``--debug`` run
    (``<parent>_debug``).
    """
    folder = parent_folder(parent_name)
    config_name = folder.name
    if debug:
        folder = folder.with_name(f"{config_name}_debug")
    script = "train_pseudo.py" if parent_is_pseudo else "train.py"
    remedy = f"run `python {script} --config {config_name}{' --debug' if debug else ''}` first"
    path = folder / PREDICTIONS_FILE
    if not path.is_file():
        raise G2NetError(f"pseudo-label parent '{config_name}' has no test predictions "
                         f"({path} is missing); {remedy}")
    predictions = load_predictions(path, f"rerun `python {script} --config {config_name}"
                                         f"{' --debug' if debug else ''} --inference` to write it again")
    if predictions.ndim == 2:
        predictions = predictions[..., None]
    if predictions.ndim != 3 or predictions.shape[-1] != 1:
        raise G2NetError(f"pseudo-label parent '{config_name}': {path} has shape "
                         f"{predictions.shape}, expected (cv, n_test, 1); {remedy}")
    if predictions.shape[1] != n_test:
        raise G2NetError(
            f"pseudo-label parent '{config_name}' predicted {predictions.shape[1]} test examples but "
            f"the current test set has {n_test} (made on a different test.csv); "
            f"{remedy.replace('first', 'again on this test set')}")
    if not np.all(np.isfinite(predictions)):
        raise G2NetError(f"pseudo-label parent '{config_name}': {path} holds NaN/inf predictions "
                         f"(an unfinished or diverged run); {remedy}")
    return predictions.astype(np.float32)


def pseudo_targets(parent_predictions: np.ndarray, fold: int,
                   confident_samples: tuple[float, float] | None = None,
                   hard_label: bool | str = False) -> tuple[np.ndarray, np.ndarray]:
    """Test examples and targets that join fold ``fold``'s training set.

    Targets are ``sigmoid(parent_predictions[fold])`` (a parent with a single prediction row, e.g.
    trained on all data, serves every fold). ``confident_samples=(lower, upper)`` keeps the examples
    whose fold-mean probability lies below the ``lower`` or above the ``upper`` quantile;
    ``hard_label=True`` rounds the kept targets; ``'mix'`` keeps every example and rounds only
    those confident ones.

    Returns ``(test_indices int64 (n,), targets float32 (n, 1))``, indices in increasing order.
    """
    predictions = np.asarray(parent_predictions)
    if predictions.ndim == 2:
        predictions = predictions[..., None]
    if predictions.ndim != 3 or predictions.shape[-1] != 1:
        raise G2NetError(f"parent predictions have shape {predictions.shape}, "
                         "expected (cv, n_test, 1) logits")
    n_folds = predictions.shape[0]
    if n_folds == 1:
        fold_row = 0
    elif 0 <= fold < n_folds:
        fold_row = fold
    else:
        raise G2NetError(f"fold {fold} has no parent predictions: the parent was trained with "
                         f"{n_folds} folds; give the pseudo config the parent's number of folds")
    confident_samples = _check_confident_samples(confident_samples)
    hard_label = _check_hard_label(hard_label, confident_samples)

    probabilities = sigmoid(predictions[..., 0])  # (cv, n_test)
    soft = probabilities[fold_row]
    n_test = soft.shape[0]
    if confident_samples is None:
        confident = np.ones(n_test, dtype=bool)
    else:
        fold_mean = probabilities.mean(axis=0)
        lower_value, upper_value = np.quantile(fold_mean, confident_samples)
        confident = (fold_mean < lower_value) | (fold_mean > upper_value)

    if hard_label == "mix":
        keep = np.ones(n_test, dtype=bool)
        targets = np.where(confident, np.round(soft), soft)
    else:
        keep = confident
        targets = np.round(soft) if hard_label is True else soft
    indices = np.flatnonzero(keep).astype(np.int64)
    return indices, targets[keep].astype(np.float32)[:, None]
