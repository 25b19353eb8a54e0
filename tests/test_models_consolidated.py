"""Issue 11 consolidation: one AUC, one mixing module, shared heads, timm pooling, scipy FFT sizes,
timm/nnAudio-style names. Each check compares with the code it replaced, kept here verbatim."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

import g2net.evaluation
from g2net import mixing
import g2net.stacking
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
    assert g2net.stacking.auc(target, scores) == pytest.approx(old_rank_auc(target, scores), abs=1e-12)
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_roc_auc_keeps_the_one_class_and_nan_handling(tied_scores):
    from utils import G2NetError

    target, scores = tied_scores
    with pytest.raises(G2NetError, match="only negatives"):
        roc_auc(np.zeros(5), np.arange(5.0))
    with pytest.raises(G2NetError, match="NaN or infinite"):
        roc_auc(target, np.where(target == 1, np.nan, scores))
    # stacking's reports want NaN where undefined, as before
    assert np.isnan(g2net.stacking.auc(np.ones(5), np.arange(5.0)))
    assert np.isnan(g2net.stacking.auc(target, np.full_like(scores, np.nan)))


def test_weighted_auc_is_the_auc_of_the_repeated_examples(tied_scores):
    target, scores = tied_scores
    weights = np.random.default_rng(0).integers(0, 4, size=len(target))
    repeated = np.repeat(np.arange(len(target)), weights)
    assert roc_auc(target, scores, sample_weight=weights) == pytest.approx(
        old_rank_auc(target[repeated], scores[repeated]), abs=1e-12)


def test_bootstrap_interval_equals_the_old_vectorised_one(tied_scores):
    target, scores = tied_scores
    point, low, high = g2net.evaluation.bootstrap_auc(target, scores, n_resamples=150, seed=3)
    assert point == pytest.approx(old_rank_auc(target, scores), abs=1e-12)
    assert (low, high) == pytest.approx(old_bootstrap(target, scores, 150, seed=3), abs=1e-12)


# ----------------------------------------------------------------------------------------------
# mixing: one module, the same numbers as the three copies it replaced
# ----------------------------------------------------------------------------------------------
import torch  # noqa: E402

from datasets import G2NetDataset  # noqa: E402
from training_extras import MixupTrain, MixupTrain2  # noqa: E402


def old_dataset_item(examples, targets, index, alpha, negative, lor_label):
    """G2NetDataset.__getitem__'s mixup before issue 11 (no transforms)."""
    x, y = examples[index].astype(np.float32), np.float32(targets[index])
    if negative:
        other = int(np.random.choice(np.flatnonzero(targets < 0.5)))
    else:
        other = int(np.random.randint(len(targets)))
    lam = float(np.random.beta(alpha, alpha))
    if negative:
        lam = max(lam, 1.0 - lam)
    x = lam * x + (1.0 - lam) * examples[other].astype(np.float32)
    y_other = targets[other]
    y = np.float32(max(y, y_other) if lor_label else lam * y + (1.0 - lam) * y_other)
    return x, y


@pytest.mark.parametrize("pairing, lor_label", [("random", False), ("pos_neg", True), ("pos_neg", False)])
def test_dataset_mixup_is_the_old_one_for_a_fixed_seed(tmp_path, pairing, lor_label):
    rng = np.random.default_rng(5)
    examples = rng.normal(size=(6, 3, 4096)).astype(np.float32)
    targets = np.array([1, 0, 1, 0, 0, 1], dtype=np.float32)
    paths = []
    for i, example in enumerate(examples):
        paths.append(str(tmp_path / f"{i}.npy"))
        np.save(paths[-1], example)
    dataset = G2NetDataset(paths, targets, mixup=True, mixup_alpha=0.4, pairing=pairing,
                           lor_label=lor_label)
    for index in range(6):
        np.random.seed(100 + index)
        x, y = dataset[index]
        np.random.seed(100 + index)
        old_x, old_y = old_dataset_item(examples, targets, index, 0.4, pairing == "pos_neg", lor_label)
        assert np.array_equal(x.numpy(), old_x)
        assert y.item() == old_y


def old_hook_step(model, criterion, inputs, target, alpha, p, pos_neg, lor_label, in_model):
    """MixupTrain / MixupTrain2.forward_train before issue 11."""
    if np.random.rand() >= p:
        return None
    lam = float(np.random.beta(alpha, alpha))
    if pos_neg:
        lam = max(lam, 1.0 - lam)
        negatives = torch.nonzero(target.reshape(-1) < 0.5).reshape(-1).cpu().numpy()
        idx = torch.from_numpy(np.random.choice(negatives, size=target.shape[0]))
    else:
        idx = torch.from_numpy(np.random.permutation(target.shape[0]))
    if in_model:
        lam_t = torch.as_tensor(lam, dtype=torch.float32).expand(inputs.shape[0])
        weight = lam_t.view(-1, 1, 1)
        output = model(inputs * weight + inputs.index_select(0, idx) * (1 - weight))
    else:
        output = model(lam * inputs + (1 - lam) * inputs[idx])
    if lor_label:
        return criterion(output, torch.maximum(target, target[idx])), output
    return lam * criterion(output, target) + (1 - lam) * criterion(output, target[idx]), output


@pytest.mark.parametrize("hook_cls", [MixupTrain, MixupTrain2])
@pytest.mark.parametrize("pairing, lor_label", [("random", False), ("pos_neg", True)])
def test_hooks_mix_and_score_as_before_for_a_fixed_seed(hook_cls, pairing, lor_label):
    from models1d_pytorch import CNN1d

    torch.manual_seed(0)
    model = CNN1d(in_chans=3, hidden_dims=(4, 4), kernel_size=5, stride=(4, 2)).eval()
    criterion = torch.nn.BCEWithLogitsLoss()
    inputs = torch.randn(6, 3, 256)
    target = torch.tensor([[1.0], [0.0], [1.0], [0.0], [0.0], [1.0]])

    class Trainer:
        pass

    trainer = Trainer()
    trainer.model, trainer.criterion = model, criterion
    hook = hook_cls(mixup_alpha=0.4, p=1.0, pairing=pairing, lor_label=lor_label)
    with torch.no_grad():
        np.random.seed(7)
        loss, output = hook.forward_train(trainer, inputs, target)
        np.random.seed(7)
        old_loss, old_output = old_hook_step(model, criterion, inputs, target, 0.4, 1.0,
                                             pairing == "pos_neg", lor_label, hook_cls is MixupTrain2)
    assert torch.equal(output, old_output)
    assert torch.equal(loss, old_loss)


def old_cutmix(image, lam, idx):
    batch, _, height, width = image.shape
    lam = torch.as_tensor(lam, dtype=torch.float32).expand(batch).clamp(0, 1)
    side = torch.sqrt(1 - lam)
    box_h, box_w = torch.round(side * height).long(), torch.round(side * width).long()
    top = (torch.rand(batch) * (height - box_h + 1)).long()
    left = (torch.rand(batch) * (width - box_w + 1)).long()
    rows, cols = torch.arange(height)[None, :], torch.arange(width)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
    return torch.where(mask, image.index_select(0, idx), image), 1 - (box_h * box_w).float() / (height * width)


def test_in_model_cutmix_and_mixup_are_the_old_arithmetic():
    image = torch.randn(4, 3, 16, 40)
    idx = torch.tensor([2, 3, 0, 1])
    torch.manual_seed(3)
    mixed, kept = mixing.cutmix(image, 0.3, idx)
    torch.manual_seed(3)
    old_mixed, old_kept = old_cutmix(image, 0.3, idx)
    assert torch.equal(mixed, old_mixed) and torch.equal(kept, old_kept)
    lam = torch.tensor([0.2, 0.5, 0.7, 1.0])
    mixed, weights = mixing.mix_batch(image, lam, idx)
    weight = lam.view(-1, 1, 1, 1)
    assert torch.equal(mixed, image * weight + image.index_select(0, idx) * (1 - weight))
    assert torch.equal(weights, lam)


def test_one_set_of_option_names_and_clear_errors():
    with pytest.raises(ValueError, match="unknown pairing 'negative'; use one of random, pos_neg"):
        MixupTrain(pairing="negative")
    with pytest.raises(ValueError, match="pairing"):
        G2NetDataset(["a.npy"], [0.0], mixup=True, pairing="negative")
    np.random.seed(0)
    lams = [mixing.sample_lam(0.4, "pos_neg") for _ in range(50)]
    assert min(lams) >= 0.5
    assert mixing.mix_targets(np.float32(1), np.float32(0), 0.7, lor_label=True) == 1
    assert mixing.mix_targets(1.0, 0.0, 0.7) == pytest.approx(0.7)


# ----------------------------------------------------------------------------------------------
# heads: timm's pooling, one builder for SpectroCNN and MultiInstanceSCNN
# ----------------------------------------------------------------------------------------------
import torch.nn.functional as F  # noqa: E402

from architectures import MultiInstanceSCNN, SpectroCNN, _build_pool  # noqa: E402

SMALL_CWT = dict(sample_rate=2048, fmin=32, fmax=512, n_scales=32, wavelet_width=8, stride=32)
OLD_POOLS = {
    "avg": lambda x: F.adaptive_avg_pool2d(x, 1),
    "none": lambda x: F.adaptive_avg_pool2d(x, 1),
    "max": lambda x: F.adaptive_max_pool2d(x, 1),
    "concat": lambda x: torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=1),
}


@pytest.mark.parametrize("kind", sorted(OLD_POOLS))
def test_timm_pooling_equals_the_old_pooling(kind):
    features = torch.randn(3, 16, 5, 7)
    pool, out_dim = _build_pool(kind, 16)
    assert torch.equal(pool(features), OLD_POOLS[kind](features))
    assert out_dim == pool(features).shape[1]


@pytest.mark.parametrize("kind", ["concat", "max", "positional", "gem"])
def test_spectro_cnn_head_gives_the_old_outputs(kind):
    torch.manual_seed(0)
    model = SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT,
                       custom_classifier=kind).eval()
    x = torch.randn(2, 3, 2048)
    with torch.no_grad():
        features = model.backbone(model.make_image(x))
        if kind in OLD_POOLS:
            pooled = OLD_POOLS[kind](features)
        elif kind == "gem":
            pooled = F.adaptive_avg_pool2d(features.clamp(min=1e-4).pow(3.0), 1).pow(1 / 3.0)
        else:  # GeM over frequency, positional encoding over time, average
            rows = F.adaptive_avg_pool2d(features.clamp(min=1e-4).pow(3.0), (1, None)).pow(1 / 3.0)
            pooled = F.adaptive_avg_pool2d(model.pool[1](rows), 1)
        assert torch.allclose(model(x), model.head(torch.flatten(pooled, 1)), rtol=0, atol=1e-6)


def test_both_models_build_the_same_head_with_the_old_parameter_names():
    torch.manual_seed(0)
    single = SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT,
                        custom_classifier="gem", custom_attention="triplet")
    torch.manual_seed(0)
    multi = MultiInstanceSCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT, n_patch=3,
                              custom_classifier="gem", custom_attention="triplet")
    keys = [k for k in single.state_dict() if k.startswith(("attention.", "pool.", "head."))]
    assert keys == [k for k in multi.state_dict() if k.startswith(("attention.", "pool.", "head."))]
    assert "pool.p" in keys and "head.2.weight" in keys
    assert multi.head[0].in_features == 3 * single.head[0].in_features == 3 * 512
    # the same random draws in the same order: identical attention weights
    assert torch.equal(single.attention.spatial.conv.weight, multi.attention.spatial.conv.weight)


# ----------------------------------------------------------------------------------------------
# FFT sizes from scipy
# ----------------------------------------------------------------------------------------------
def old_fft_size(n):
    best = 1 << max(n - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


def test_fft_size_is_scipys_next_fast_len_and_the_old_value():
    from scipy.fft import next_fast_len

    from g2net.frontends import fft_size

    for n in list(range(1, 3000)) + [4097, 8193, 12289, 65537]:
        assert fft_size(n) == old_fft_size(n) == next_fast_len(n, real=True)
    assert fft_size(0) == old_fft_size(0) == 1
