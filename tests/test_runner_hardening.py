"""Runtime, config checking and the run's artefacts: locks, checkpoint identity, corrupt and unsafe
files, failed runs."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch
from torch.utils.data import Sampler

import runtime


class OldShardSampler(Sampler[int]):
    """The hand-written sampler runtime.shard_sampler replaced, verbatim: the reference."""

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        self.size, self.shuffle, self.seed, self.rank, self.world = size, shuffle, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = len(self) * self.world
        order += order[: total - len(order)]
        return iter(order[self.rank::self.world])

    def __len__(self) -> int:
        return -(-self.size // self.world)


@pytest.mark.parametrize("size,world", [(10, 1), (10, 3), (7, 2), (159, 2), (47, 4), (0, 1)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_distributed_sampler_yields_the_old_shards(size, world, shuffle):
    for rank in range(world):
        old = OldShardSampler(size, shuffle, seed=2021 + 3, rank=rank, world=world)
        new = runtime.shard_sampler(range(size), shuffle, seed=2021 + 3, rank=rank, world=world)
        assert isinstance(new, torch.utils.data.DistributedSampler)
        for epoch in (0, 1, 5):
            old.set_epoch(epoch)
            new.set_epoch(epoch)
            assert list(new) == list(old) and len(new) == len(old)
