"""SpectroCNN / MultiInstanceSCNN / 1D models: shapes, gradients, mixing semantics, heads (timm's
pooling against torch's adaptive pooling, one head builder for both 2D models), channels_last, and
the offline pretrained-weights error."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from architectures import (GeM, ManifoldMixup, MultiInstanceSCNN, PositionalEncoding, SpectroCNN,
                           TripletAttention, _build_pool, cutmix, sinusoid_table)
from g2net.frontends import ComplexMorletCWT
from models1d_pytorch import CNN1d, ResNet1d, WaveNet1d, densenet121_1d, densenet201_1d

ROOT = Path(__file__).resolve().parents[1]
# a small CWT keeps the 2D tests fast: 32 rows x 128 columns per detector
SMALL_CWT = dict(sample_rate=2048, fmin=32, fmax=512, n_scales=32, wavelet_width=8, stride=32)


def batch(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(2, 3, 4096)


def forward_backward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.train()
    logits = model(x)
    assert logits.shape == (2, 1) and torch.isfinite(logits).all()
    nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0], [0.0]])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    return logits


@pytest.mark.parametrize("kwargs", [
    dict(model_name="resnet18", custom_classifier="gem", resize_img=(64, 128), upsample="bicubic",
         spec_params=dict(SMALL_CWT, trainable_width=True)),
    dict(model_name="resnet18", custom_classifier="concat", custom_attention="triplet"),
    dict(model_name="resnet18", custom_classifier="positional", custom_preprocess="positional-cat"),
    dict(model_name="resnet18", custom_classifier="max", custom_preprocess="positional-add",
         norm_spec=True),
    dict(model_name="resnet18"),  # timm's own head
    dict(model_name="efficientnet_b0", custom_classifier="avg", spectrogram="cnn",
         spec_params=dict(base_filters=32, kernel_sizes=(32, 16, 4), stride=32)),
], ids=["gem-trainable-width", "concat-triplet", "positional-cat", "max-positional-add-norm",
        "timm-head", "effnet-cnn-frontend"])
def test_spectrocnn_forward_backward(kwargs):
    kwargs = {"spectrogram": ComplexMorletCWT, "spec_params": SMALL_CWT, **kwargs}
    model = SpectroCNN(pretrained=False, num_classes=1, **kwargs)
    forward_backward(model, batch())
    if kwargs["spec_params"].get("trainable_width"):
        assert model.spectrogram.wavelet_width.grad.abs() > 0


def test_token_model_skips_pooling_and_multi_instance_patches():
    x = batch()
    xcit = SpectroCNN("xcit_nano_12_p16_224", pretrained=False, spectrogram="cwt",
                      spec_params=SMALL_CWT, custom_classifier="gem", resize_img=(64, 128))
    assert isinstance(xcit.pool, nn.Identity)
    forward_backward(xcit, x)
    multi = MultiInstanceSCNN("resnet18", pretrained=False, spectrogram="cwt", spec_params=SMALL_CWT,
                              resize_img=(64, 160), n_patch=3, custom_classifier="gem")
    assert multi.patch_starts(64, 160) == [0, 48, 96]
    assert multi.head[0].in_features == 3 * multi.backbone.num_features
    forward_backward(multi, x)
    # the competition's MultiInstance04 layout: 384 x 768 cut into two square halves
    assert MultiInstanceSCNN.patch_starts(multi, 384, 768)[:1] == [0]
    multi.n_patch = 2
    assert multi.patch_starts(384, 768) == [0, 384]
    with pytest.raises(ValueError, match="do not fit"):
        multi.patch_starts(384, 300)


def test_in_chans_follow_the_frontend():
    one = SpectroCNN("resnet18", spectrogram="resnet",
                     spec_params=dict(base_filters=32, n_block=4, downsample_gap=2))
    assert one.backbone.conv1.in_channels == 1
    six = SpectroCNN("resnet18", spectrogram="multi", custom_classifier="gem", spec_params=dict(
        configs=[("cwt", SMALL_CWT), ("cwt", dict(SMALL_CWT, wavelet_width=3))]))
    assert six.backbone.conv1.in_channels == 6
    forward_backward(six, batch())
    cat = SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT,
                     custom_preprocess="positional-cat", custom_classifier="gem")
    assert cat.backbone.conv1.in_channels == 4


def test_input_mixup_and_return_spec():
    model = SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT, custom_classifier="gem",
                       return_spec=True).eval()
    x = batch()
    idx = torch.tensor([1, 0])
    with torch.no_grad():
        _, plain = model(x)
        logits, mixed = model(x, lam=torch.tensor([0.25, 1.0]), idx=idx)
        _, scalar = model(x, lam=0.25, idx=idx)
    assert logits.shape == (2, 1)
    assert torch.allclose(mixed[0], 0.25 * plain[0] + 0.75 * plain[1], atol=1e-6)
    assert torch.allclose(mixed[1], plain[1])
    assert torch.allclose(scalar[1], 0.25 * plain[1] + 0.75 * plain[0], atol=1e-6)


def test_cutmix_pastes_the_requested_area():
    torch.manual_seed(0)
    image = torch.zeros(4, 3, 40, 100)
    image[2:] = 1.0
    idx = torch.tensor([2, 3, 0, 1])
    lam = torch.tensor([0.75, 0.5, 1.0, 0.0])
    mixed, kept = cutmix(image, lam, idx)
    pasted = torch.cat([mixed[:2], 1 - mixed[2:]]).mean(dim=(1, 2, 3))  # fraction from the partner
    assert torch.allclose(pasted, 1 - kept)
    assert torch.allclose(kept, lam, atol=0.02)
    # one box per example, the same rows/columns in every channel
    assert torch.equal(mixed[0, 0], mixed[0, 2])
    model = SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT, custom_classifier="gem",
                       mixup_mode="cutmix", return_spec=True).eval()
    with torch.no_grad():
        _, plain = model(batch())
        _, cut = model(batch(), lam=0.5, idx=torch.tensor([1, 0]))
    from_partner = (cut[0] == plain[1]).float().mean()
    assert 0.45 < float(from_partner) < 0.55
    with pytest.raises(ValueError, match="unknown mixup"):
        SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT, mixup_mode="blend")


def test_manifold_mixup_mixes_features_once():
    gate = ManifoldMixup()
    x = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(gate(x), x)
    gate.arm(0.5, torch.tensor([1, 0]))
    assert torch.allclose(gate(x), x.mean(dim=0, keepdim=True).expand(2, 3))
    assert torch.equal(gate(x), x)  # disarmed after one pass
    model = SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT,
                       custom_classifier="mixup", return_spec=True).eval()
    x = batch()
    with torch.no_grad():
        plain_logits, plain = model(x)
        mixed_logits, image = model(x, lam=0.5, idx=torch.tensor([1, 0]))
    assert torch.equal(image, plain)  # manifold mode leaves the image alone...
    assert torch.allclose(mixed_logits[0], mixed_logits[1], atol=1e-5)  # ...and mixes features
    assert not torch.allclose(plain_logits[0], plain_logits[1])


def test_augmentations_only_in_their_mode():
    model = SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT, custom_classifier="gem",
                       augmentations=lambda im: im * 0, augmentations_test=lambda im: im + 1,
                       return_spec=True)
    x = batch()
    assert float(model.train()(x)[1].abs().max()) == 0.0
    with torch.no_grad():
        assert float(model.eval()(x)[1].min()) >= 1.0


def test_pooling_and_attention_modules():
    x = torch.rand(2, 4, 5, 6) + 0.1
    gem = GeM(p=1.0)
    assert torch.allclose(gem(x), x.mean(dim=(2, 3), keepdim=True), atol=1e-6)
    gem.p.data.fill_(50.0)
    peak = x.amax(dim=(2, 3), keepdim=True)
    # mean(x^p)^(1/p) lies between max * n^(-1/p) and max
    assert (gem(x) <= peak + 1e-5).all() and (gem(x) >= peak * 30 ** (-1 / 50) - 1e-5).all()
    gem.p.data.fill_(3.0)
    assert (gem(x) > x.mean(dim=(2, 3), keepdim=True)).all() and (gem(x) < peak).all()
    assert TripletAttention()(x).shape == x.shape
    table = sinusoid_table(8, 10)
    assert torch.allclose(table[0], torch.sin(torch.arange(10.0)))
    assert torch.allclose(table[1], torch.cos(torch.arange(10.0)))
    assert PositionalEncoding("concat")(x).shape == (2, 5, 5, 6)
    assert torch.allclose(PositionalEncoding("add")(x) - x, sinusoid_table(5, 6), atol=1e-6)


# heads: timm's pooling, one builder for SpectroCNN and MultiInstanceSCNN
REFERENCE_POOLS = {
    "avg": lambda x: F.adaptive_avg_pool2d(x, 1),
    "none": lambda x: F.adaptive_avg_pool2d(x, 1),
    "max": lambda x: F.adaptive_max_pool2d(x, 1),
    "concat": lambda x: torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=1),
}


@pytest.mark.parametrize("kind", sorted(REFERENCE_POOLS))
def test_timm_pooling_equals_torch_adaptive_pooling(kind):
    features = torch.randn(3, 16, 5, 7)
    pool, out_dim = _build_pool(kind, 16)
    assert torch.equal(pool(features), REFERENCE_POOLS[kind](features))
    assert out_dim == pool(features).shape[1]


@pytest.mark.parametrize("kind", ["concat", "max", "positional", "gem"])
def test_spectro_cnn_head_equals_the_pooling_written_out(kind):
    torch.manual_seed(0)
    model = SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT,
                       custom_classifier=kind).eval()
    x = torch.randn(2, 3, 2048)
    with torch.no_grad():
        features = model.backbone(model.make_image(x))
        if kind in REFERENCE_POOLS:
            pooled = REFERENCE_POOLS[kind](features)
        elif kind == "gem":
            pooled = F.adaptive_avg_pool2d(features.clamp(min=1e-4).pow(3.0), 1).pow(1 / 3.0)
        else:  # GeM over frequency, positional encoding over time, average
            rows = F.adaptive_avg_pool2d(features.clamp(min=1e-4).pow(3.0), (1, None)).pow(1 / 3.0)
            pooled = F.adaptive_avg_pool2d(model.pool[1](rows), 1)
        assert torch.allclose(model(x), model.head(torch.flatten(pooled, 1)), rtol=0, atol=1e-6)


def test_both_models_build_the_same_head_with_the_same_parameter_names():
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


def test_channels_last_gives_the_same_logits():
    model = SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT,
                       custom_classifier="gem").eval()
    x = batch()
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        assert model._channels_last()
        assert model.make_image(x).is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(model(x), reference, atol=1e-5)


def test_bad_names_raise_clear_errors():
    with pytest.raises(ValueError, match="did you mean resnet18"):
        SpectroCNN("resnet1b", spectrogram="cwt", spec_params=SMALL_CWT)
    with pytest.raises(ValueError, match="custom_classifier"):
        SpectroCNN("resnet18", spectrogram="cwt", spec_params=SMALL_CWT, custom_classifier="mean")
    with pytest.raises(ValueError, match="triplet"):
        SpectroCNN("xcit_nano_12_p16_224", spectrogram="cwt", spec_params=SMALL_CWT,
                   custom_attention="triplet")


@pytest.mark.parametrize("build", [
    # Seq03aug3 exactly
    lambda: ResNet1d(in_chans=3, base_filters=128, kernel_size=16, stride=2, groups=32,
                     n_block=16, num_classes=1, use_bn=True, dropout=0.0),
    lambda: densenet121_1d(),
    # Seq12arch4's structure, narrowed (the real one has 190 M parameters)
    lambda: WaveNet1d(in_chans=3, hidden_dims=(8, 8, 16, 16), wave_layers=(12, 10, 8, 2),
                      wave_block="simplified", kernel_size=16, num_classes=1, reinit=True,
                      downsample=True),
    lambda: WaveNet1d(hidden_dims=(8, 16), wave_layers=(3, 2), wave_block="none", downsample=4),
    lambda: CNN1d(hidden_dims=(8, 16), pool=4),
], ids=["resnet1d-seq03", "densenet121_1d", "wavenet1d-seq12arch4-narrow", "wavenet1d-gated",
        "cnn1d"])
def test_1d_models(build):
    torch.manual_seed(0)
    model = build()
    x = batch()
    forward_backward(model, x)
    model.eval()
    idx = torch.tensor([1, 0])
    with torch.no_grad():
        mixed = model(x, lam=0.3, idx=idx)
        assert torch.allclose(mixed, model(0.3 * x + 0.7 * x[idx]), atol=1e-5)


def test_1d_shapes_and_layouts():
    resnet = ResNet1d(in_chans=3, base_filters=128, kernel_size=16, stride=2, groups=32,
                      n_block=16, num_classes=1)
    assert resnet.forward_feature_map(torch.randn(1, 3, 4096)).shape == (1, 1024, 16)
    assert sum(p.numel() for p in densenet201_1d().parameters()) > \
        sum(p.numel() for p in densenet121_1d().parameters())
    with pytest.raises(ValueError, match="same length"):
        WaveNet1d(hidden_dims=(8, 16), wave_layers=(3,))


def test_pretrained_offline_without_cache_says_how_to_get_weights(tmp_path):
    """With the hub offline and empty caches, pretrained=True fails with one RuntimeError; a local
    weights file passed through timm's pretrained_cfg_overlay still works offline."""
    weights = tmp_path / "resnet18.pth"
    script = textwrap.dedent(f"""
        import timm, torch
        from architectures import SpectroCNN
        spec = dict(spectrogram='cwt', spec_params={SMALL_CWT!r})
        try:
            SpectroCNN('resnet18', pretrained=True, **spec)
        except RuntimeError as exc:
            print('MESSAGE', exc)
        import configs, utils
        from g2net.experiments import runner
        class OfflineCfg(configs.Baseline):
            model_params = dict(model_name='resnet18', pretrained=True, **spec)
        try:
            runner.make_model(OfflineCfg)
        except utils.G2NetError as exc:
            print('CLI', exc)
        torch.manual_seed(1)
        reference = timm.create_model('resnet18', num_classes=0)
        torch.save(reference.state_dict(), {str(weights)!r})
        model = SpectroCNN('resnet18', pretrained=True, custom_classifier='gem', timm_params=dict(
            pretrained_cfg_overlay=dict(file={str(weights)!r})), **spec)
        print('LOADED', torch.equal(model.backbone.layer1[0].conv1.weight,
                                    reference.layer1[0].conv1.weight))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "TORCH_HOME": str(tmp_path / "torch"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    message = next(line for line in run.stdout.splitlines() if line.startswith("MESSAGE"))
    for hint in ("resnet18", "HF_HOME", "HF_HUB_OFFLINE", "pretrained=False", "weight_path",
                 "pretrained_cfg_overlay"):
        assert hint in message
    assert "LOADED True" in run.stdout
    cli = next(line for line in run.stdout.splitlines() if line.startswith("CLI"))
    assert "config OfflineCfg" in cli and "pretrained=False" in cli  # one line at the CLI boundary


def test_cnn1d_per_layer_kernels_strides_and_pooling():
    model = CNN1d(hidden_dims=(4, 8), kernel_size=(32, 8), stride=(4, 1), pool=(1, 2), global_pool="max")
    x = torch.randn(2, 3, 4096)
    feature_map = model.features(x)
    assert feature_map.shape == (2, 8, 512)  # 4096 / 4 (stride) / 2 (pool)
    assert torch.equal(model.forward_features(x), feature_map.amax(dim=-1))
    assert model(x).shape == (2, 1)
    with pytest.raises(ValueError, match="kernel_size has 3 entries for 2 layers"):
        CNN1d(hidden_dims=(4, 8), kernel_size=(3, 3, 3))
    with pytest.raises(ValueError, match="global_pool"):
        CNN1d(global_pool="sum")
