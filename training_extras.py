"""Train-step hooks (mixup, cutmix) and test-time-augmentation loaders."""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from trainer import TrainHook, Trainer
from utils import G2NetError


def pair_indices(target: torch.Tensor, pairing: str) -> torch.Tensor:
    """Partners for in-batch mixing.

    ``random``: a permutation of the batch. ``pos_neg``: every example is mixed with a negative
    (a random one), so a positive keeps its signal and a negative stays noise only.
    """
    n = target.shape[0]
    if pairing == "random":
        return torch.from_numpy(np.random.permutation(n)).to(target.device)
    if pairing == "pos_neg":
        negatives = torch.nonzero(target.reshape(-1) < 0.5).reshape(-1).cpu().numpy()
        if len(negatives) == 0:
            return torch.arange(n, device=target.device)
        return torch.from_numpy(np.random.choice(negatives, size=n)).to(target.device)
    raise G2NetError(f"mixup pairing must be 'random' or 'pos_neg', not {pairing!r}")


class MixupTrain(TrainHook):
    """Input mixup of waveforms within the batch with probability ``p``.

    The loss is the ``lam``-weighted BCE against both targets, or against ``a OR b`` with
    ``lor_label``. With ``pairing='pos_neg'`` the signal side keeps weight >= 0.5.
    """

    def __init__(self, alpha: float = 0.4, p: float = 0.5, pairing: str = "random",
                 lor_label: bool = False):
        self.alpha, self.p, self.pairing, self.lor_label = alpha, p, pairing, lor_label

    def _draw(self, target: torch.Tensor) -> tuple[float, torch.Tensor] | None:
        if np.random.rand() >= self.p:
            return None
        lam = float(np.random.beta(self.alpha, self.alpha))
        if self.pairing == "pos_neg":
            lam = max(lam, 1.0 - lam)
        return lam, pair_indices(target, self.pairing)

    def _loss(self, trainer: Trainer, output: torch.Tensor, target: torch.Tensor, lam: float,
              idx: torch.Tensor) -> torch.Tensor:
        if self.lor_label:
            return trainer.criterion(output, torch.maximum(target, target[idx]))
        return lam * trainer.criterion(output, target) + (1 - lam) * trainer.criterion(output, target[idx])

    def mix(self, trainer: Trainer, inputs: torch.Tensor, lam: float, idx: torch.Tensor) -> torch.Tensor:
        return trainer.model(lam * inputs + (1 - lam) * inputs[idx])

    def forward_train(self, trainer: Trainer, inputs: torch.Tensor, target: torch.Tensor):
        drawn = self._draw(target)
        if drawn is None:
            return super().forward_train(trainer, inputs, target)
        lam, idx = drawn
        output = self.mix(trainer, inputs, lam, idx)
        return self._loss(trainer, output, target, lam, idx), output


class MixupTrain2(MixupTrain):
    """Mixup inside the model (spectrogram, cutmix or manifold mixup): calls ``model(x, lam, idx)``."""

    def mix(self, trainer: Trainer, inputs: torch.Tensor, lam: float, idx: torch.Tensor) -> torch.Tensor:
        return trainer.model(inputs, lam=lam, idx=idx)


def make_tta_dataloader(loader: DataLoader, transforms: Callable[[np.ndarray], np.ndarray]) -> DataLoader:
    """The same loader over the same examples, with ``transforms`` in place of the dataset's own."""
    dataset = copy.copy(loader.dataset)
    dataset.transforms = transforms
    return DataLoader(dataset, batch_size=loader.batch_size, shuffle=False,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                      sampler=None if not hasattr(loader.sampler, "set_epoch") else copy.copy(loader.sampler),
                      worker_init_fn=loader.worker_init_fn)
