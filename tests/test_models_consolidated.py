"""Issue 11 consolidation: one AUC, one mixing module, shared heads, timm pooling, scipy FFT sizes,
timm/nnAudio-style names. Each check compares with the code it replaced, kept here verbatim."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

import evaluate
import stacking
from metrics import roc_auc


# ----------------------------------------------------------------------------------------------
# the AUC implementations that metrics.roc_auc replaced
# ----------------------------------------------------------------------------------------------
def old_rank_auc(labels, scores):
    labels, scores = np.asarray(labels, float), np.asarray(scores, float)
    positive = labels == 1
    n_pos = int(positive.sum())
    n_neg = labels.size - n_pos
    ranks = rankdata(scores, method="average")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def old_bootstrap(target, scores, n_resamples, seed=0):
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


def test_roc_auc_equals_the_old_rank_statistic_with_ties(tied_scores):
    target, scores = tied_scores
    assert len(np.unique(scores)) < 100  # ties really are there
    assert roc_auc(target, scores) == pytest.approx(old_rank_auc(target, scores), abs=1e-12)
    assert stacking.auc(target, scores) == pytest.approx(old_rank_auc(target, scores), abs=1e-12)
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_roc_auc_keeps_the_one_class_and_nan_handling(tied_scores):
    from utils import G2NetError

    target, scores = tied_scores
    with pytest.raises(G2NetError, match="only negatives"):
        roc_auc(np.zeros(5), np.arange(5.0))
    with pytest.raises(G2NetError, match="NaN or infinite"):
        roc_auc(target, np.where(target == 1, np.nan, scores))
    # stacking's reports want NaN where undefined, as before
    assert np.isnan(stacking.auc(np.ones(5), np.arange(5.0)))
    assert np.isnan(stacking.auc(target, np.full_like(scores, np.nan)))


def test_weighted_auc_is_the_auc_of_the_repeated_examples(tied_scores):
    target, scores = tied_scores
    weights = np.random.default_rng(0).integers(0, 4, size=len(target))
    repeated = np.repeat(np.arange(len(target)), weights)
    assert roc_auc(target, scores, sample_weight=weights) == pytest.approx(
        old_rank_auc(target[repeated], scores[repeated]), abs=1e-12)


def test_bootstrap_interval_equals_the_old_vectorised_one(tied_scores):
    target, scores = tied_scores
    point, low, high = evaluate.bootstrap_auc(target, scores, n_resamples=150, seed=3)
    assert point == pytest.approx(old_rank_auc(target, scores), abs=1e-12)
    assert (low, high) == pytest.approx(old_bootstrap(target, scores, 150, seed=3), abs=1e-12)
