"""g2net.mixing and its callers: G2NetDataset's mixup, the MixupTrain / MixupTrain2 hooks and the
in-model cutmix / mixup give, for a fixed seed, the numbers of reference implementations written out
here; one set of option names with clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets import G2NetDataset
from g2net import mixing
from training_extras import MixupTrain, MixupTrain2


def reference_dataset_item(examples, targets, index, alpha, negative, lor_label):
    """Reference: G2NetDataset.__getitem__'s mixup written out (no transforms)."""
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
def test_dataset_mixup_equals_the_reference_for_a_fixed_seed(tmp_path, pairing, lor_label):
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
        ref_x, ref_y = reference_dataset_item(examples, targets, index, 0.4, pairing == "pos_neg",
                                              lor_label)
        assert np.array_equal(x.numpy(), ref_x)
        assert y.item() == ref_y


def reference_hook_step(model, criterion, inputs, target, alpha, p, pos_neg, lor_label, in_model):
    """Reference: MixupTrain / MixupTrain2.forward_train written out."""
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
def test_hooks_mix_and_score_as_the_reference_for_a_fixed_seed(hook_cls, pairing, lor_label):
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
        ref_loss, ref_output = reference_hook_step(model, criterion, inputs, target, 0.4, 1.0,
                                                   pairing == "pos_neg", lor_label,
                                                   hook_cls is MixupTrain2)
    assert torch.equal(output, ref_output)
    assert torch.equal(loss, ref_loss)


def reference_cutmix(image, lam, idx):
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


def test_in_model_cutmix_and_mixup_equal_the_reference_arithmetic():
    image = torch.randn(4, 3, 16, 40)
    idx = torch.tensor([2, 3, 0, 1])
    torch.manual_seed(3)
    mixed, kept = mixing.cutmix(image, 0.3, idx)
    torch.manual_seed(3)
    ref_mixed, ref_kept = reference_cutmix(image, 0.3, idx)
    assert torch.equal(mixed, ref_mixed) and torch.equal(kept, ref_kept)
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
