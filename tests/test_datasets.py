"""G2NetDataset, the shard sampler (a DistributedSampler, equal to a reference sharding) and the
mixup hooks, on small synthetic arrays."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import torch
from torch.utils.data import Sampler

from datasets import CacheView, G2NetDataset
from g2net.mixing import pair_indices
from g2net.training.runtime import shard_sampler
from training_extras import MixupTrain
from utils import G2NetError


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(6, 3, 4096))
    paths = []
    for i, x in enumerate(data):
        paths.append(str(tmp_path / f"{i}.npy"))
        np.save(paths[-1], x)
    return data, paths, np.array([1, 0, 1, 0, 0, 1], dtype=np.float32)


def test_files_and_cache_give_the_same_float32_examples(arrays):
    data, paths, targets = arrays
    from_files = G2NetDataset(paths, targets)
    rows = np.array([4, 1, 5])
    from_cache = G2NetDataset([paths[r] for r in rows], targets[rows],
                              cache=CacheView(data.astype(np.float32), rows))
    for i, r in enumerate(rows):
        x, y = from_cache[i]
        assert x.dtype == torch.float32 and x.shape == (3, 4096) and y.shape == (1,)
        assert torch.equal(x, from_files[int(r)][0]) and float(y) == targets[r]


def test_test_set_returns_inputs_only_and_index_when_asked(arrays):
    _, paths, _ = arrays
    x = G2NetDataset(paths, is_test=True)[2]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 4096)
    x, index = G2NetDataset(paths, is_test=True, return_index=True)[2]
    assert index == 2


def test_pseudo_label_appends_the_test_examples_after_the_training_ones(arrays):
    data, paths, targets = arrays
    dataset = G2NetDataset(paths[:4], targets[:4], pseudo_label=True, test_paths=paths[4:],
                           test_targets=[0.25, 0.75], return_test_index=True)
    assert len(dataset) == 6
    x, y, test_index = dataset[5]
    assert float(y) == 0.75 and test_index == 1
    np.testing.assert_array_equal(x.numpy(), data[5].astype(np.float32))
    assert dataset[0][2] == -1
    with pytest.raises(ValueError, match="test_paths and test_targets"):
        G2NetDataset(paths, targets, pseudo_label=True)


def test_negative_mixup_keeps_the_signal_weight_and_lor_label(tmp_path):
    # positives fill the first half of the window, negatives the second: a mixed positive reads
    # lam in its first half and 1 - lam in its second
    half = np.zeros((3, 4096)); half[:, :2048] = 1.0
    paths = []
    for i, pattern in enumerate([half, half[:, ::-1], half, half[:, ::-1]]):
        paths.append(str(tmp_path / f"{i}.npy"))
        np.save(paths[-1], pattern)
    dataset = G2NetDataset(paths, [1, 0, 1, 0], mixup=True, pairing="pos_neg", lor_label=True)
    np.random.seed(0)
    lams = []
    for _ in range(30):
        x, y = dataset[0]
        assert float(y) == 1.0  # a OR b
        lam = float(x[0, 0])
        assert torch.allclose(x[:, 2048:], torch.full((3, 2048), 1 - lam), atol=1e-6)
        lams.append(lam)
    assert min(lams) >= 0.5 and max(lams) > 0.6


def test_weighted_mixup_targets_and_hard_labels(arrays):
    _, paths, targets = arrays
    np.random.seed(1)
    soft = G2NetDataset(paths, targets, mixup=True)
    values = {round(float(soft[0][1]), 6) for _ in range(20)}
    assert any(0 < v < 1 for v in values)
    hard = G2NetDataset(paths, targets, mixup=True, hard_label=True)
    assert {float(hard[0][1]) for _ in range(20)} <= {0.0, 1.0}


def test_bad_dataset_arguments_are_clear(arrays):
    _, paths, targets = arrays
    with pytest.raises(ValueError, match="6 paths but 5 targets"):
        G2NetDataset(paths, targets[:5])
    with pytest.raises(ValueError, match="pairing"):
        G2NetDataset(paths, targets, pairing="positive")
    with pytest.raises(G2NetError, match="missing"):
        G2NetDataset(paths + ["/nonexistent/x.npy"], np.append(targets, 1))[6]


@pytest.mark.parametrize("size,world", [(10, 1), (10, 3), (7, 2)])
def test_shard_sampler_covers_every_index_and_depends_only_on_seed_and_epoch(size, world):
    shards = [list(shard_sampler(range(size), True, seed=3, rank=r, world=world)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    assert set(sum(shards, [])) == set(range(size))
    again = shard_sampler(range(size), True, seed=3, rank=0, world=world)
    assert list(again) == shards[0]
    again.set_epoch(1)
    assert list(again) != shards[0] or size <= 2
    assert list(shard_sampler(range(size), False)) == list(range(size))


class ReferenceShardSampler(Sampler[int]):
    """A hand-written sharding sampler: the reference for shard_sampler's DistributedSampler."""

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
def test_distributed_sampler_yields_the_reference_shards(size, world, shuffle):
    for rank in range(world):
        reference = ReferenceShardSampler(size, shuffle, seed=2021 + 3, rank=rank, world=world)
        sampler = shard_sampler(range(size), shuffle, seed=2021 + 3, rank=rank, world=world)
        assert isinstance(sampler, torch.utils.data.DistributedSampler)
        for epoch in (0, 1, 5):
            reference.set_epoch(epoch)
            sampler.set_epoch(epoch)
            assert list(sampler) == list(reference) and len(sampler) == len(reference)


def test_pos_neg_pairing_mixes_with_negatives_only():
    np.random.seed(0)
    target = torch.tensor([[1.0], [0.0], [1.0], [0.0], [1.0]])
    idx = pair_indices(target, "pos_neg")
    assert set(idx.tolist()) <= {1, 3}
    with pytest.raises(ValueError, match="pairing"):
        pair_indices(target, "other")


def test_mixup_hook_loss_is_the_lambda_weighted_bce():
    class Trainer:
        model = torch.nn.Identity()
        criterion = torch.nn.BCEWithLogitsLoss()

    hook = MixupTrain(mixup_alpha=0.4, p=1.0)
    inputs = torch.tensor([[2.0], [-1.0], [0.5], [3.0]])
    target = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    np.random.seed(5)
    loss, output = hook.forward_train(Trainer(), inputs, target)
    np.random.seed(5)
    np.random.rand()  # the hook's draw against p
    lam = float(np.random.beta(0.4, 0.4))
    idx = torch.from_numpy(np.random.permutation(4))
    bce = torch.nn.BCEWithLogitsLoss()
    expected = lam * bce(output, target) + (1 - lam) * bce(output, target[idx])
    assert torch.allclose(output, lam * inputs + (1 - lam) * inputs[idx])
    assert torch.allclose(loss, expected)


def test_files_with_a_wrong_shape_or_nan_strain_are_refused_clearly(tmp_path):
    short, bad = tmp_path / "short.npy", tmp_path / "nan.npy"
    np.save(short, np.zeros((3, 2048)))
    x = np.zeros((3, 4096))
    x[1, 7] = np.nan
    np.save(bad, x)
    with pytest.raises(G2NetError, match=r"short.npy has shape \(3, 2048\); expected \(3, 4096\)"):
        G2NetDataset([str(short)], is_test=True)[0]
    with pytest.raises(G2NetError, match="nan.npy holds NaN or infinite strain"):
        G2NetDataset([str(bad)], is_test=True)[0]
