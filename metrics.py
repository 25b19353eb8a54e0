"""Evaluation metrics: callables ``metric(target, approx) -> float`` with a ``name``.

The argument order is scikit-learn's (``roc_auc_score(y_true, y_score)``), as the trainer calls
them. ``target`` are the labels and ``approx`` the model's outputs (logits or probabilities: AUC
only depends on their order); both may be torch tensors (any device, any float dtype) or numpy
arrays of shape ``(N,)`` or ``(N, 1)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from utils import G2NetError


def to_numpy(values: Any) -> np.ndarray:
    """A flat float64 numpy copy of a tensor (detached, any device/dtype), array or list."""
    try:
        import torch

        if isinstance(values, torch.Tensor):
            values = values.detach().to("cpu", torch.float64).numpy()
    except ImportError:  # pragma: no cover - torch is a project dependency
        pass
    return np.asarray(values, dtype=np.float64).reshape(-1)


def roc_auc(target: Any, approx: Any, sample_weight: Any = None, undefined: str = "raise") -> float:
    """ROC AUC: ``sklearn.metrics.roc_auc_score``, the one AUC of the project (ties count one half).

    Inputs are checked first, so the caller learns why an AUC cannot be had: NaN/infinite
    predictions, non-binary targets, or one class only. ``undefined='raise'`` (the trainer) raises
    :class:`G2NetError` for those; ``undefined='nan'`` (reports over many experiments) returns NaN
    for NaN scores or one class. ``sample_weight``: per-example multiplicities (the bootstrap).
    """
    if undefined not in ("raise", "nan"):
        raise ValueError(f"undefined must be 'raise' or 'nan', not {undefined!r}")
    scores, labels = to_numpy(approx), to_numpy(target)
    weights = None if sample_weight is None else to_numpy(sample_weight)
    if scores.shape != labels.shape:
        raise G2NetError(f"AUC: {scores.size} predictions for {labels.size} targets")
    if not np.all(np.isfinite(scores)):
        if undefined == "nan":
            return float("nan")
        raise G2NetError(f"AUC: {int((~np.isfinite(scores)).sum())} predictions are NaN or "
                         f"infinite; the model diverged (lower the learning rate)")
    if not np.all((labels == 0) | (labels == 1)):
        raise G2NetError("AUC: targets must be 0 or 1; evaluate on the hard labels, not on soft "
                         "(mixup or pseudo) targets")
    counted = labels if weights is None else labels[weights > 0]
    n_pos = int((counted == 1).sum())
    if n_pos == 0 or n_pos == counted.size:
        if undefined == "nan":
            return float("nan")
        raise G2NetError(f"AUC: the targets hold only {'negatives' if n_pos == 0 else 'positives'} "
                         f"({labels.size} examples); it needs both classes (use a stratified split "
                         f"or more examples)")
    return float(roc_auc_score(labels, scores, sample_weight=weights))


class AUC:
    """ROC AUC as a metric object: ``AUC()(target, approx) -> float``; higher is better."""

    name = "AUC"
    maximize = True

    def __call__(self, target: Any, approx: Any) -> float:
        return roc_auc(target, approx)

    def __repr__(self) -> str:
        return "AUC()"
