"""Train-step hooks (mixup, cutmix) and test-time-augmentation loaders."""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from g2net.mixing import PAIRINGS, check_choice, mix, mixed_loss, pair_indices, sample_lam
from g2net.training.trainer import Trainer, TrainHook


class MixupTrain(TrainHook):
    """Input mixup of waveforms within the batch with probability ``p`` (arithmetic in :mod:`mixing`).

    The loss is the ``lam``-weighted loss against both targets, or against ``a OR b`` with
    ``lor_label``. With ``pairing='pos_neg'`` every example is mixed with a negative and keeps
    weight >= 0.5.
    """

    def __init__(self, mixup_alpha: float = 0.4, p: float = 0.5, pairing: str = "random",
                 lor_label: bool = False):
        check_choice("pairing", pairing, PAIRINGS)
        self.mixup_alpha, self.p, self.pairing, self.lor_label = mixup_alpha, p, pairing, lor_label

    def _draw(self, target: torch.Tensor) -> tuple[float, torch.Tensor] | None:
        if np.random.rand() >= self.p:
            return None
        lam = sample_lam(self.mixup_alpha, self.pairing)
        return lam, pair_indices(target, self.pairing)

    def mix(self, trainer: Trainer, inputs: torch.Tensor, lam: float, idx: torch.Tensor) -> torch.Tensor:
        return trainer.model(mix(inputs, inputs[idx], lam))

    def forward_train(self, trainer: Trainer, inputs: torch.Tensor, target: torch.Tensor):
        drawn = self._draw(target)
        if drawn is None:
            return super().forward_train(trainer, inputs, target)
        lam, idx = drawn
        output = self.mix(trainer, inputs, lam, idx)
        return mixed_loss(trainer.criterion, output, target, lam, idx, self.lor_label), output


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
