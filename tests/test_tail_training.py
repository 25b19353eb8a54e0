"""Training for the tail (issue 18): the ranking loss aimed at the low false-alarm region and
Aframe's coherence negatives (detector swap / mute) of the online source. Hand-made tensors,
fixed seeds."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import configs
from g2net.experiments import online as online_source
from g2net.experiments import runner
from g2net.simulation.ml4gw_engine import Batch
from loss_functions import TailRankingLoss
from utils import G2NetError


def test_tail_ranking_loss_by_hand():
    logits = torch.tensor([2.0, 0.5, -1.0, 1.5, -3.0, 0.0, -2.0, -0.5])
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    loss = TailRankingLoss(weight=0.5, top_fraction=0.3)(logits, target)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    # 6 negatives, top 30% -> 2 hardest: 1.5 and 0.0; pairs with positives 2.0 and 0.5
    pairs = [1.5 - 2.0, 0.0 - 2.0, 1.5 - 0.5, 0.0 - 0.5]
    rank = sum(math.log1p(math.exp(d)) for d in pairs) / 4
    assert loss.item() == pytest.approx(bce.item() + 0.5 * rank, rel=1e-6)


def test_tail_ranking_loss_only_moves_the_hardest_negatives_beyond_bce():
    logits = torch.tensor([1.0, -0.5, 0.8, -2.0, -1.0, -3.0], requires_grad=True)
    target = torch.tensor([[1.0], [1.0], [0.0], [0.0], [0.0], [0.0]])
    TailRankingLoss(weight=1.0, top_fraction=0.25)(logits[:, None], target).backward()
    tail_grad = logits.grad.clone()
    logits.grad = None
    F.binary_cross_entropy_with_logits(logits[:, None], target).backward()
    extra = tail_grad - logits.grad
    assert extra[2] > 0  # the loudest negative is pushed down ...
    assert torch.all(extra[:2] < 0)  # ... the positives up ...
    assert torch.all(extra[3:] == 0)  # ... and the quiet negatives feel only BCE


def test_tail_ranking_loss_is_bce_without_both_classes_or_weight():
    logits = torch.tensor([0.3, -0.2, 1.0])
    for target in (torch.ones(3), torch.zeros(3)):
        assert TailRankingLoss()(logits, target).item() == pytest.approx(
            F.binary_cross_entropy_with_logits(logits, target).item())
    target = torch.tensor([1.0, 0.0, 0.0])
    assert TailRankingLoss(weight=0.0)(logits, target).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, target).item())


@pytest.mark.parametrize("kwargs, message", [(dict(weight=-1.0), "weight"),
                                             (dict(weight=math.nan), "weight"),
                                             (dict(top_fraction=0.0), "top_fraction"),
                                             (dict(smooth_eps=1.0), "smooth_eps")])
def test_tail_ranking_loss_refuses_bad_settings(kwargs, message):
    with pytest.raises(G2NetError, match=message):
        TailRankingLoss(**kwargs)


def _batch(n: int = 20, positives: int = 10, seed: int = 0) -> tuple[Batch, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 3, 64, generator=g, dtype=torch.float64)
    signal = torch.randn(n, 3, 64, generator=g, dtype=torch.float64) * 5
    target = torch.zeros(n, dtype=torch.float64)
    target[:positives] = 1.0
    signal[positives:] = 0.0
    noise[:, 2] = signal[:, 2] = 0.0  # V1 absent, as in a two-detector source
    return Batch(noise + signal, target, signal.clone(), {}), noise


def test_swap_and_mute_make_incoherent_negatives_and_keep_the_noise():
    batch, noise = _batch()
    original = batch.signal.clone()
    online_source.incoherent_negatives(batch, torch.Generator().manual_seed(1), 0.3, 0.2, [0, 1])
    changed = torch.nonzero((batch.target == 0) & (original.abs().sum((1, 2)) > 0)).flatten()
    assert len(changed) == 3 + 2  # round(0.3 * 10) swapped, round(0.2 * 10) muted
    torch.testing.assert_close(batch.data - batch.signal, noise)  # the noise is untouched
    assert torch.all(batch.data[:, 2] == 0)  # the absent detector stays empty
    muted = swapped = 0
    for i in changed.tolist():
        rows = [d for d in (0, 1) if not torch.equal(batch.signal[i, d], original[i, d])]
        assert len(rows) == 1  # exactly one detector changed, the other keeps its own signal
        d = rows[0]
        if torch.all(batch.signal[i, d] == 0):
            muted += 1
        else:  # another positive's signal in that detector
            donors = [j for j in range(10) if j != i and torch.equal(batch.signal[i, d], original[j, d])]
            assert donors
            swapped += 1
    assert (swapped, muted) == (3, 2)
    unchanged = [i for i in range(10) if i not in changed.tolist()]
    assert torch.all(batch.target[unchanged] == 1) and torch.equal(batch.signal[unchanged], original[unchanged])


def test_swap_and_mute_are_reproducible_from_the_generator():
    first, _ = _batch()
    second, _ = _batch()
    for batch in (first, second):
        online_source.incoherent_negatives(batch, torch.Generator().manual_seed(7), 0.5, 0.5, [0, 1])
    assert torch.equal(first.data, second.data) and torch.equal(first.target, second.target)
    assert int(first.target.sum()) == 0  # every positive made incoherent


def test_coherence_fractions_are_checked_from_the_config():
    class TooMuch(configs.Demo2detOnline):
        online = dict(configs.Demo2detOnline.online, swap_fraction=0.6, mute_fraction=0.6)

    class OneDetector(configs.Demo2detOnline):
        detectors = ("H1",)
        online = dict(configs.Demo2detOnline.online, mute_fraction=0.1)

    with pytest.raises(G2NetError, match="together at most 1"):
        online_source.online_settings(TooMuch)
    with pytest.raises(G2NetError, match="1 detector"):
        online_source.online_settings(OneDetector)


def test_the_swap_mute_config_trains_on_fewer_positives():
    cfg = runner.get_config("Demo2detOnlineSwapMute")
    source = online_source.make_source(cfg, torch.device("cpu"), seed=0, max_steps=1)
    assert (source.swap_fraction, source.mute_fraction) == (0.1, 0.1)
    _, y = next(iter(source))
    # 16 positives of 32, round(1.6) = 2 swapped and 2 muted -> 12 left
    assert int(y.sum()) == 12
