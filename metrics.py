"""Evaluation metrics: callables ``metric(target, approx) -> float`` with a ``name``.

The argument order is scikit-learn's (``roc_auc_score(y_true, y_score)``), as the trainer calls
them. ``target`` are the labels and ``approx`` the model's outputs (logits or probabilities: AUC
only depends on their order); both may be torch tensors (any device, any float dtype) or numpy
arrays of shape ``(N,)`` or ``(N, 1)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

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


def roc_auc(target: Any, approx: Any) -> float:
    """Area under the ROC curve, ties counted one half (the Mann-Whitney statistic).

    Equals ``sklearn.metrics.roc_auc_score`` (its trapezoids over tied scores give the same half
    credit) in O(N log N) without building the curve.
    """
    scores, labels = to_numpy(approx), to_numpy(target)
    if scores.shape != labels.shape:
        raise G2NetError(f"AUC: {scores.size} predictions for {labels.size} targets")
    if not np.all(np.isfinite(scores)):
        raise G2NetError(f"AUC: {int((~np.isfinite(scores)).sum())} predictions are NaN or "
                         f"infinite; the model diverged (lower the learning rate)")
    if not np.all((labels == 0) | (labels == 1)):
        raise G2NetError("AUC: targets must be 0 or 1; evaluate on the hard labels, not on soft "
                         "(mixup or pseudo) targets")
    positive = labels == 1
    n_pos = int(positive.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise G2NetError(f"AUC: the targets hold only {'positives' if n_neg == 0 else 'negatives'} "
                         f"({labels.size} examples); it needs both classes (use a stratified split "
                         f"or more examples)")
    ranks = rankdata(scores, method="average")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class AUC:
    """ROC AUC as a metric object: ``AUC()(target, approx) -> float``; higher is better."""

    name = "AUC"
    maximize = True

    def __call__(self, target: Any, approx: Any) -> float:
        return roc_auc(target, approx)

    def __repr__(self) -> str:
        return "AUC()"
