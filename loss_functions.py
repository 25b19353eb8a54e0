"""Training losses on logits: binary cross-entropy with label smoothing, focal loss, and a
ranking loss aimed at the low false-alarm region.

Both take logits ``(B, 1)`` (any shape) and targets of the same number of elements (``(B,)`` or
``(B, 1)``; soft targets from mixup or pseudo-labels are fine) and compute in float32 even under
autocast, where half-precision logs would lose the small differences training depends on.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from utils import G2NetError

REDUCTIONS = ("mean", "sum", "none")


def _prepare(input: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 logits and targets of the logits' shape."""
    if target.numel() != input.numel():
        raise G2NetError(f"loss: {target.numel()} targets for {input.numel()} logits (shapes "
                         f"{tuple(target.shape)} and {tuple(input.shape)}); the model must return "
                         f"one logit per example")
    return input.float(), target.reshape(input.shape).to(device=input.device, dtype=torch.float32)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_reduction(name: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise G2NetError(f"{name}: reduction must be one of {', '.join(REDUCTIONS)}, "
                         f"got {reduction!r}")


def smooth_targets(target: torch.Tensor, smooth_eps: float) -> torch.Tensor:
    """Label smoothing: ``t * (1 - eps) + eps / 2`` keeps the network from chasing 0 and 1."""
    return target * (1.0 - smooth_eps) + smooth_eps / 2.0


class BCEWithLogitsLoss(nn.Module):
    """``torch.nn.BCEWithLogitsLoss`` with label smoothing ``smooth_eps`` (0 = none)."""

    def __init__(self, smooth_eps: float = 0.0, weight: torch.Tensor | None = None,
                 reduction: str = "mean", pos_weight: torch.Tensor | None = None):
        super().__init__()
        if not 0.0 <= smooth_eps < 1.0:
            raise G2NetError(f"BCEWithLogitsLoss: smooth_eps must lie in [0, 1), got {smooth_eps}")
        _check_reduction("BCEWithLogitsLoss", reduction)
        self.smooth_eps = smooth_eps
        self.reduction = reduction
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _prepare(input, target)
        return F.binary_cross_entropy_with_logits(
            logits, smooth_targets(target, self.smooth_eps), weight=self.weight,
            pos_weight=self.pos_weight, reduction=self.reduction)


class FocalLoss(nn.Module):
    """Focal loss on logits: BCE times ``(1 - p_t) ** gamma``, which down-weights easy examples.

    ``p_t = p t + (1 - p)(1 - t)`` is the probability given to the target (soft targets allowed);
    ``alpha`` (None = off) weights positives by ``alpha`` and negatives by ``1 - alpha``. With
    ``gamma = 0`` and ``alpha = None`` it equals ``BCEWithLogitsLoss``. G2Net classes are balanced,
    hence no class weighting by default.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None, reduction: str = "mean",
                 smooth_eps: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise G2NetError(f"FocalLoss: gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise G2NetError(f"FocalLoss: alpha must lie in [0, 1] or be None, got {alpha}")
        if not 0.0 <= smooth_eps < 1.0:
            raise G2NetError(f"FocalLoss: smooth_eps must lie in [0, 1), got {smooth_eps}")
        _check_reduction("FocalLoss", reduction)
        self.gamma, self.alpha, self.reduction, self.smooth_eps = gamma, alpha, reduction, smooth_eps

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _prepare(input, target)
        target = smooth_targets(target, self.smooth_eps)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        loss = bce * (1 - p_t).clamp_min(0) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * target + (1 - self.alpha) * (1 - target))
        return _reduce(loss, self.reduction)


class TailRankingLoss(nn.Module):
    """BCE plus a ranking term aimed at the low false-alarm region, where searches are judged.

    BCE weighs every negative alike, but a search's threshold at one false alarm per month sits
    above all but the very loudest noise. The added term pushes every positive's logit above the
    batch's ``top_fraction`` highest-scoring negatives: ``weight * mean softplus(neg - pos)`` over
    those pairs, a smooth surrogate of the partial AUC over false-positive rates up to
    ``top_fraction``. Examples count as positive when their (soft) target is >= 0.5; a batch
    without both classes gets BCE alone.
    """

    def __init__(self, weight: float = 1.0, top_fraction: float = 0.125, smooth_eps: float = 0.0):
        super().__init__()
        if not (math.isfinite(weight) and weight >= 0):
            raise G2NetError(f"TailRankingLoss: weight must be a finite number >= 0, got {weight}")
        if not 0.0 < top_fraction <= 1.0:
            raise G2NetError(f"TailRankingLoss: top_fraction must lie in (0, 1], got {top_fraction}")
        if not 0.0 <= smooth_eps < 1.0:
            raise G2NetError(f"TailRankingLoss: smooth_eps must lie in [0, 1), got {smooth_eps}")
        self.weight, self.top_fraction, self.smooth_eps = weight, top_fraction, smooth_eps

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _prepare(input, target)
        bce = F.binary_cross_entropy_with_logits(logits, smooth_targets(target, self.smooth_eps))
        logits, positive = logits.flatten(), target.flatten() >= 0.5
        negatives, positives = logits[~positive], logits[positive]
        if not len(negatives) or not len(positives) or self.weight == 0:
            return bce
        hardest = negatives.topk(max(1, math.ceil(self.top_fraction * len(negatives)))).values
        return bce + self.weight * F.softplus(hardest[None, :] - positives[:, None]).mean()
