"""loss_functions.py and metrics.py: values checked against hand computations and scikit-learn;
metrics.roc_auc, the AUC of g2net.stacking and g2net.evaluation's bootstrap interval against a
reference rank statistic and a reference bootstrap, with tied scores and sample weights."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

import g2net.evaluation
import g2net.stacking
from loss_functions import BCEWithLogitsLoss, FocalLoss, smooth_targets
from metrics import AUC, roc_auc
from utils import G2NetError


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce(logit: float, target: float) -> float:
    p = sigmoid(logit)
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


# ------------------------------------------------------------------------------------------------
# losses
# ------------------------------------------------------------------------------------------------
def test_label_smoothing_by_hand():
    logits = torch.tensor([[2.0], [-1.0], [0.5]])
    targets = torch.tensor([1.0, 0.0, 1.0])  # (B,) targets against (B, 1) logits
    # eps = 0.1: 1 -> 0.95, 0 -> 0.05
    expected = (bce(2.0, 0.95) + bce(-1.0, 0.05) + bce(0.5, 0.95)) / 3
    assert BCEWithLogitsLoss(smooth_eps=0.1)(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx((0.226928 + 0.363262 + 0.499077) / 3, rel=1e-5)  # by hand
    summed = BCEWithLogitsLoss(smooth_eps=0.1, reduction="sum")(logits, targets).item()
    assert summed == pytest.approx(3 * expected, rel=1e-6)
    np.testing.assert_allclose(smooth_targets(torch.tensor([0.0, 0.5, 1.0]), 0.2).numpy(),
                               [0.1, 0.5, 0.9], rtol=1e-7)


def test_bce_without_smoothing_equals_torch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 1, generator=generator) * 3
    targets = torch.rand(32, 1, generator=generator)  # soft (mixup) targets
    ours = BCEWithLogitsLoss()(logits, targets)
    theirs = torch.nn.BCEWithLogitsLoss()(logits, targets)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    weight = torch.tensor([2.0])
    assert BCEWithLogitsLoss(pos_weight=weight)(logits, targets).item() == pytest.approx(
        torch.nn.BCEWithLogitsLoss(pos_weight=weight)(logits, targets).item(), rel=1e-6)


def test_bce_is_float32_and_differentiable_from_half_logits():
    logits = torch.tensor([[3.0], [-2.0]], dtype=torch.bfloat16, requires_grad=True)
    loss = BCEWithLogitsLoss(smooth_eps=0.05)(logits, torch.tensor([[1.0], [0.0]]))
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.all(torch.isfinite(logits.grad.float()))


def test_focal_loss_by_hand():
    logits = torch.tensor([[0.5], [-1.5], [3.0]])
    targets = torch.tensor([[1.0], [1.0], [0.0]])
    rows = [(0.5, 1.0), (-1.5, 1.0), (3.0, 0.0)]

    def p_t(x, t):
        return sigmoid(x) if t == 1 else 1 - sigmoid(x)

    expected = sum(bce(x, t) * (1 - p_t(x, t)) ** 2 for x, t in rows) / 3
    assert FocalLoss(gamma=2.0)(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    # first row alone: -(1 - 0.6225)^2 * log(0.6225)
    assert FocalLoss(gamma=2.0, reduction="none")(logits, targets)[0, 0].item() == pytest.approx(
        (1 - 0.62245933) ** 2 * -math.log(0.62245933), rel=1e-6)
    weighted = sum(bce(x, t) * (1 - p_t(x, t)) ** 2 * (0.25 if t == 1 else 0.75) for x, t in rows) / 3
    assert FocalLoss(gamma=2.0, alpha=0.25)(logits, targets).item() == pytest.approx(weighted, rel=1e-6)


def test_focal_loss_with_gamma_zero_is_bce_and_down_weights_easy_examples():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 1, generator=generator) * 2
    targets = (torch.rand(64, 1, generator=generator) > 0.5).float()
    assert FocalLoss(gamma=0.0)(logits, targets).item() == pytest.approx(
        BCEWithLogitsLoss()(logits, targets).item(), rel=1e-6)
    easy, hard = torch.tensor([[4.0]]), torch.tensor([[-4.0]])
    one = torch.tensor([[1.0]])
    ratio_easy = FocalLoss(gamma=2.0)(easy, one) / BCEWithLogitsLoss()(easy, one)
    ratio_hard = FocalLoss(gamma=2.0)(hard, one) / BCEWithLogitsLoss()(hard, one)
    assert ratio_easy.item() < 1e-3 and ratio_hard.item() > 0.9


def test_loss_errors_are_clear():
    with pytest.raises(G2NetError, match="smooth_eps"):
        BCEWithLogitsLoss(smooth_eps=1.0)
    with pytest.raises(G2NetError, match="one logit per example"):
        BCEWithLogitsLoss()(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(G2NetError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(G2NetError, match="reduction"):
        FocalLoss(reduction="average")


# ------------------------------------------------------------------------------------------------
# AUC
# ------------------------------------------------------------------------------------------------
def test_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    metric = AUC()
    assert metric.name == "AUC" and metric.maximize
    for trial in range(20):
        n = int(rng.integers(5, 400))
        target = rng.integers(0, 2, n)
        target[:2] = [0, 1]
        score = np.round(rng.standard_normal(n) + 0.8 * target, int(rng.integers(0, 3)))  # ties
        assert metric(target, score) == pytest.approx(roc_auc_score(target, score), abs=1e-12)


def test_auc_accepts_tensors_arrays_logits_and_column_shapes():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, 200).astype(np.float32)
    logits = rng.standard_normal(200) * 4 + target
    expected = roc_auc_score(target, logits)
    metric = AUC()
    assert isinstance(metric(target, logits), float)
    assert metric(target[:, None], logits[:, None]) == pytest.approx(expected, abs=1e-12)
    assert metric(torch.from_numpy(target)[:, None], torch.from_numpy(logits)[:, None]) == \
        pytest.approx(expected, abs=1e-12)
    assert metric(target, 1 / (1 + np.exp(-logits))) == pytest.approx(expected, abs=1e-12)
    half = torch.from_numpy(logits).bfloat16()
    assert metric(torch.from_numpy(target), half) == pytest.approx(
        roc_auc_score(target, half.float().numpy()), abs=1e-12)
    assert metric(torch.from_numpy(target), torch.from_numpy(logits).requires_grad_()) == \
        pytest.approx(expected, abs=1e-12)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)


def test_auc_errors_are_clear():
    metric = AUC()
    with pytest.raises(G2NetError, match="both classes"):
        metric(np.ones(10), np.arange(10.0))
    with pytest.raises(G2NetError, match="0 or 1"):
        metric(np.array([0.2, 0.8, 1.0]), np.arange(3.0))
    with pytest.raises(G2NetError, match="NaN"):
        metric(np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3]))
    with pytest.raises(G2NetError, match="3 predictions for 4 targets"):
        metric(np.array([0, 1, 1, 0]), np.array([0.1, 0.2, 0.3]))


# ------------------------------------------------------------------------------------------------
# AUC against reference implementations: the Mann-Whitney rank statistic and a vectorised bootstrap
# ------------------------------------------------------------------------------------------------
def reference_rank_auc(labels, scores):
    labels, scores = np.asarray(labels, float), np.asarray(scores, float)
    positive = labels == 1
    n_pos = int(positive.sum())
    n_neg = labels.size - n_pos
    ranks = rankdata(scores, method="average")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reference_bootstrap(target, scores, n_resamples, seed=0):
    order = np.argsort(scores, kind="stable")
    ordered, positive = scores[order], target[order] == 1
    starts = np.flatnonzero(np.r_[True, np.diff(ordered) != 0])
    n = len(scores)
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, n_resamples, 100):
        size = min(100, n_resamples - start)
        drawn = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n)[:, order]
        pos = np.add.reduceat(counts * positive, starts, axis=1)
        neg = np.add.reduceat(counts * ~positive, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        values.append(auc[(n_pos > 0) & (n_neg > 0)])
    low, high = np.percentile(np.concatenate(values), [2.5, 97.5])
    return float(low), float(high)


@pytest.fixture
def tied_scores():
    rng = np.random.default_rng(11)
    target = (rng.random(300) < 0.4).astype(float)
    # rounded to one decimal: many ties, within and across the classes
    scores = np.round(rng.normal(size=300) + target, 1)
    return target, scores


def test_roc_auc_equals_the_rank_statistic_with_ties(tied_scores):
    target, scores = tied_scores
    assert len(np.unique(scores)) < 100  # ties really are there
    assert roc_auc(target, scores) == pytest.approx(reference_rank_auc(target, scores), abs=1e-12)
    assert g2net.stacking.auc(target, scores) == pytest.approx(reference_rank_auc(target, scores), abs=1e-12)
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_roc_auc_keeps_the_one_class_and_nan_handling(tied_scores):
    target, scores = tied_scores
    with pytest.raises(G2NetError, match="only negatives"):
        roc_auc(np.zeros(5), np.arange(5.0))
    with pytest.raises(G2NetError, match="NaN or infinite"):
        roc_auc(target, np.where(target == 1, np.nan, scores))
    # stacking's reports want NaN where undefined
    assert np.isnan(g2net.stacking.auc(np.ones(5), np.arange(5.0)))
    assert np.isnan(g2net.stacking.auc(target, np.full_like(scores, np.nan)))


def test_weighted_auc_is_the_auc_of_the_repeated_examples(tied_scores):
    target, scores = tied_scores
    weights = np.random.default_rng(0).integers(0, 4, size=len(target))
    repeated = np.repeat(np.arange(len(target)), weights)
    assert roc_auc(target, scores, sample_weight=weights) == pytest.approx(
        reference_rank_auc(target[repeated], scores[repeated]), abs=1e-12)


def test_bootstrap_interval_equals_the_reference_vectorised_one(tied_scores):
    target, scores = tied_scores
    point, low, high = g2net.evaluation.bootstrap_auc(target, scores, n_resamples=150, seed=3)
    assert point == pytest.approx(reference_rank_auc(target, scores), abs=1e-12)
    assert (low, high) == pytest.approx(reference_bootstrap(target, scores, 150, seed=3), abs=1e-12)
