"""Mixup and cutmix: the one owner of the mixing arithmetic (weights, partners, inputs, targets).

Three paths use it, with the same option names:

* the dataset (``G2NetDataset(mixup=True, mixup_alpha, pairing, lor_label)``) mixes two examples
  before batching;
* the train hooks (``training_extras.MixupTrain(mixup_alpha, p, pairing, lor_label)``) mix a batch of
  waveforms, or hand ``lam, idx`` to the model (``MixupTrain2``);
* the models (``SpectroCNN(mixup_mode='mixup' | 'cutmix')``, the 1D networks) mix inside
  ``forward(x, lam, idx)``: waveforms, images or hidden features.

``pairing``: ``'random'`` partners, or ``'pos_neg'``: every example is mixed with a negative and its
own weight is at least one half, so a positive keeps its signal and a negative stays noise only.
``lor_label``: the mixed target is ``a OR b`` instead of the ``lam``-weighted mean.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from g2net.types import PerExample

PAIRINGS = ("random", "pos_neg")
MIX_MODES = ("mixup", "cutmix")


def check_choice(kind: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; use one of {', '.join(choices)}")


def sample_lam(mixup_alpha: float, pairing: str = "random") -> float:
    """``lam ~ Beta(alpha, alpha)`` from numpy's global generator; with ``pos_neg``, ``max(lam, 1 - lam)``."""
    check_choice("pairing", pairing, PAIRINGS)
    lam = float(np.random.beta(mixup_alpha, mixup_alpha))
    if pairing == "pos_neg":
        lam = max(lam, 1.0 - lam)  # the example's own side keeps at least half the weight
    return lam


def partner_index(targets: np.ndarray, pairing: str = "random") -> int:
    """One partner for a dataset example: any example, or (``pos_neg``) any negative."""
    check_choice("pairing", pairing, PAIRINGS)
    if pairing == "pos_neg":
        return int(np.random.choice(np.flatnonzero(targets < 0.5)))
    return int(np.random.randint(len(targets)))


def pair_indices(target: Float[Tensor, "batch 1"], pairing: str = "random") -> Tensor:
    """Partners for in-batch mixing: a permutation of the batch, or (``pos_neg``) a random negative
    for every example (itself when the batch holds no negative)."""
    check_choice("pairing", pairing, PAIRINGS)
    n = target.shape[0]
    if pairing == "random":
        return torch.from_numpy(np.random.permutation(n)).to(target.device)
    negatives = torch.nonzero(target.reshape(-1) < 0.5).reshape(-1).cpu().numpy()
    if len(negatives) == 0:
        return torch.arange(n, device=target.device)
    return torch.from_numpy(np.random.choice(negatives, size=n)).to(target.device)


def mix(a: Any, b: Any, lam: float | Tensor) -> Any:
    """``a * lam + b * (1 - lam)``: numpy arrays or tensors; a tensor ``lam`` holds one weight per
    example (leading axis)."""
    if isinstance(lam, Tensor):
        lam = lam.to(a.dtype).view(-1, *([1] * (a.dim() - 1)))
    return a * lam + b * (1 - lam)


def as_lambda(lam: Tensor | float, batch_size: int, like: Tensor) -> PerExample:
    """Mixing weights as a float tensor of shape ``(batch_size,)`` on ``like``'s device."""
    lam = torch.as_tensor(lam, dtype=torch.float32, device=like.device)
    if lam.dim() == 0:
        lam = lam.expand(batch_size)
    return lam


def mix_batch(x: Float[Tensor, "batch *rest"], lam: Tensor | float, idx: Tensor
              ) -> tuple[Float[Tensor, "batch *rest"], PerExample]:
    """In-batch mixup of ``x`` with ``x[idx]``; returns the mixed batch and the per-example weights
    used (what the targets must be mixed with)."""
    lam = as_lambda(lam, x.shape[0], x)
    return mix(x, x.index_select(0, idx), lam), lam


def cutmix(image: Float[Tensor, "batch channel height width"], lam: Tensor | float, idx: Tensor
           ) -> tuple[Float[Tensor, "batch channel height width"], PerExample]:
    """Paste a box of ``image[idx[i]]`` into ``image[i]`` covering a fraction ``1 - lam[i]``.

    The box has the image's aspect ratio, lies wholly inside it (random position, torch's
    generator) and its sides are rounded to pixels; the returned weights are the area fractions kept.
    """
    batch, _, height, width = image.shape
    lam = as_lambda(lam, batch, image).clamp(0, 1)
    side = torch.sqrt(1 - lam)
    box_h = torch.round(side * height).long()
    box_w = torch.round(side * width).long()
    top = (torch.rand(batch, device=image.device) * (height - box_h + 1)).long()
    left = (torch.rand(batch, device=image.device) * (width - box_w + 1)).long()
    rows = torch.arange(height, device=image.device)[None, :]
    cols = torch.arange(width, device=image.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (B, 1, H, W)
    mixed = torch.where(mask, image.index_select(0, idx), image)
    kept = 1 - (box_h * box_w).float() / (height * width)
    return mixed, kept


def mix_targets(y: Any, y_other: Any, lam: float, lor_label: bool = False) -> Any:
    """The target of a mixed example: ``max(y, y_other)`` with ``lor_label``, else the weighted mean."""
    if lor_label:
        return torch.maximum(y, y_other) if isinstance(y, Tensor) else np.maximum(y, y_other)
    return lam * y + (1.0 - lam) * y_other


def mixed_loss(criterion: Callable[[Tensor, Tensor], Tensor], output: Tensor, target: Tensor,
               lam: float, idx: Tensor, lor_label: bool = False) -> Tensor:
    """Loss of a batch mixed with ``lam, idx``: against ``a OR b`` with ``lor_label``, else the
    ``lam``-weighted loss against both targets."""
    if lor_label:
        return criterion(output, mix_targets(target, target[idx], lam, lor_label=True))
    return lam * criterion(output, target) + (1 - lam) * criterion(output, target[idx])
