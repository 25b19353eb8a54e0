"""Image classifiers on a front-end's time-frequency image: :class:`SpectroCNN` and
:class:`MultiInstanceSCNN`, with their heads (GeM, concat pooling, positional encoding), triplet
attention and in-batch mixup/cutmix (input or manifold).

Both map ``(B, 3, 4096)`` waveforms to ``(B, num_classes)`` logits; ``forward(x, lam, idx)`` mixes
examples ``i`` and ``idx[i]`` with weight ``lam`` inside the model (what
``training_extras.MixupTrain2`` calls). Any timm backbone works; transformers such as XCiT use their
own token pooling.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Callable

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from torch import Tensor

from g2net.frontends import Frontend, create_frontend
from g2net.mixing import MIX_MODES, check_choice, cutmix, mix_batch
from g2net.types import Image, Logits, Strain

PREPROCESSES = ("none", "positional-add", "positional-cat")
CLASSIFIERS = ("none", "avg", "max", "concat", "gem", "positional", "mixup")
ATTENTIONS = ("none", "triplet", "mixup")


class ManifoldMixup(nn.Module):
    """Mixes hidden features in-batch when armed with :meth:`arm`; identity otherwise.

    Arming lasts for one forward pass, so validation and inference are never mixed.
    """

    def __init__(self):
        super().__init__()
        self.lam: torch.Tensor | float | None = None
        self.idx: torch.Tensor | None = None

    def arm(self, lam: torch.Tensor | float, idx: torch.Tensor) -> None:
        self.lam, self.idx = lam, idx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lam is None:
            return x
        x, _ = mix_batch(x, self.lam, self.idx)
        self.lam = self.idx = None
        return x


# ----------------------------------------------------------------------------------------------
# pooling, positional encoding, attention
# ----------------------------------------------------------------------------------------------
class GeM(nn.Module):
    """Generalised-mean pooling ``mean(x^p)^(1/p)`` over the last two axes, learnable ``p``.

    Computed in float32 (x^3 overflows fp16 on large activations).
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, trainable: bool = True,
                 output_size: tuple[int | None, int | None] = (1, 1)):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=trainable)
        self.eps, self.output_size = eps, output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.float()
        pooled = F.adaptive_avg_pool2d(x.float().clamp(min=self.eps).pow(p), self.output_size)
        return pooled.pow(1.0 / p)


def sinusoid_table(n_features: int, n_positions: int) -> torch.Tensor:
    """Transformer sinusoidal encoding, ``(n_features, n_positions)``: feature ``2k`` is
    ``sin(pos / 10000^(2k/n_features))``, feature ``2k+1`` the matching cosine."""
    position = torch.arange(n_positions, dtype=torch.float32)
    rate = torch.exp(-math.log(10000.0) * torch.arange(0, n_features, 2, dtype=torch.float32)
                     / n_features)
    table = torch.zeros(n_features, n_positions)
    angles = rate[:, None] * position[None, :]
    table[0::2] = torch.sin(angles)
    table[1::2] = torch.cos(angles[: n_features // 2])
    return table


class PositionalEncoding(nn.Module):
    """Tells a translation-invariant CNN where along time (the last axis) each column is.

    ``layout='image'``: the rows of a ``(B, C, H, W)`` image are the encoding's features (one
    ``(H, W)`` table shared by all channels); ``layout='channels'``: the channels of a
    ``(B, C, 1, W)`` feature row are. ``mode='add'`` adds it, ``'concat'`` appends it as one extra
    channel (image layout only). Tables are computed for the input's size.
    """

    def __init__(self, mode: str = "add", layout: str = "image", dropout: float = 0.0):
        super().__init__()
        if mode not in ("add", "concat") or layout not in ("image", "channels"):
            raise ValueError(f"PositionalEncoding: mode must be 'add' or 'concat' and layout 'image' or "
                             f"'channels', got {mode!r}, {layout!r}")
        if mode == "concat" and layout == "channels":
            raise ValueError("PositionalEncoding: mode='concat' works with layout='image' only")
        self.mode, self.layout = mode, layout
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "image":
            pe = sinusoid_table(x.shape[-2], x.shape[-1]).to(x)[None, None]
        else:
            pe = sinusoid_table(x.shape[1], x.shape[-1]).to(x)[None, :, None, :]
        if self.mode == "add":
            return self.dropout(x + pe)
        return self.dropout(torch.cat([x, pe.expand(x.shape[0], 1, -1, -1)], dim=1))


class _AttentionGate(nn.Module):
    """Channel max and mean -> 7x7 conv -> BN -> sigmoid, multiplied onto the input."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class TripletAttention(nn.Module):
    """Triplet attention (Misra et al. 2021): gates computed on the (C, W), (H, C) and (H, W) planes
    of a feature map, averaged."""

    def __init__(self, kernel_size: int = 7, no_spatial: bool = False):
        super().__init__()
        self.channel_width = _AttentionGate(kernel_size)
        self.height_channel = _AttentionGate(kernel_size)
        self.spatial = None if no_spatial else _AttentionGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.channel_width(x.transpose(1, 2)).transpose(1, 2),
                self.height_channel(x.transpose(1, 3)).transpose(1, 3)]
        if self.spatial is not None:
            outs.append(self.spatial(x))
        return sum(outs) / len(outs)


# ----------------------------------------------------------------------------------------------
# backbones
# ----------------------------------------------------------------------------------------------
def is_transformer(model: nn.Module) -> bool:
    """Token models (XCiT, ViT, ...) pool their own tokens; CNN feature maps are pooled by our head."""
    name = type(model).__name__
    return hasattr(model, "patch_embed") or name.endswith("Transformer") or name in ("Xcit", "XCiT")


def pretrained_help(model_name: str) -> str:
    """How to provide pretrained weights when they cannot be downloaded."""
    return (f"provide the weights for '{model_name}': run once with internet access so timm stores "
            "them in the Hugging Face cache (HF_HOME, default ~/.cache/huggingface; torch hub "
            "downloads go to TORCH_HOME), copy that cache here and set HF_HUB_OFFLINE=1 to use it "
            "offline; or pass timm_params=dict(pretrained_cfg_overlay=dict(file='/path/to/"
            "weights.safetensors')); or train from scratch with pretrained=False (load your own "
            "checkpoint with the config's weight_path)")


class PretrainedWeightsUnavailable(RuntimeError):
    """timm could not load the pretrained weights (offline, no cache); the message says how to
    provide them. The runner turns it into a one-line error at the command line."""


def create_backbone(model_name: str, pretrained: bool, **timm_params: Any) -> nn.Module:
    """``timm.create_model`` with one clear message for an unknown name (ValueError) or for
    pretrained weights that cannot be had (offline, no cache: RuntimeError)."""
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown timm model {model_name!r}{hint}")
    if not pretrained:
        return timm.create_model(model_name, pretrained=False, **timm_params)
    try:
        return timm.create_model(model_name, pretrained=True, **timm_params)
    except Exception as exc:  # noqa: BLE001 - any download/cache failure ends the same way
        # a mistake in timm_params fails without weights too: report that one as it is
        timm.create_model(model_name, pretrained=False, **timm_params)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise PretrainedWeightsUnavailable(f"cannot load pretrained weights for timm model '{model_name}' "
                           f"({reason}); {pretrained_help(model_name)}") from exc


def _build_pool(custom_classifier: str, feature_dim: int) -> tuple[nn.Module, int]:
    """The pooling part of the custom head and the number of features it hands to the MLP."""
    if custom_classifier in ("avg", "none"):
        return SelectAdaptivePool2d(pool_type="avg"), feature_dim
    if custom_classifier == "max":
        return SelectAdaptivePool2d(pool_type="max"), feature_dim
    if custom_classifier == "concat":  # average and max side by side: twice the features
        return SelectAdaptivePool2d(pool_type="catavgmax"), 2 * feature_dim
    if custom_classifier == "gem":
        return GeM(p=3, eps=1e-4), feature_dim
    if custom_classifier == "positional":
        # pool frequency away, mark each time column's position, then average over time
        return nn.Sequential(GeM(p=3, eps=1e-4, output_size=(1, None)),
                             PositionalEncoding(mode="add", layout="channels"),
                             SelectAdaptivePool2d(pool_type="avg")), feature_dim
    if custom_classifier == "mixup":
        return nn.Sequential(GeM(p=3, eps=1e-4), ManifoldMixup()), feature_dim
    raise AssertionError(custom_classifier)


def _build_preprocess(custom_preprocess: str) -> nn.Module:
    if custom_preprocess == "none":
        return nn.Identity()
    return PositionalEncoding(mode={"positional-add": "add", "positional-cat": "concat"}[custom_preprocess])


def _mlp_head(in_features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, 512), nn.ReLU(inplace=True),
                         nn.Linear(512, num_classes))


def build_head(backbone: nn.Module, model_name: str, custom_classifier: str, custom_attention: str,
               num_classes: int, n_instances: int = 1) -> tuple[nn.Module, nn.Module, nn.Module]:
    """``(attention, pool, head)`` of the custom head on a timm backbone built with
    ``num_classes=0``: CNNs keep their ``(B, F, h, w)`` map (attention, then ``custom_classifier``
    pooling), token models their pooled tokens. The MLP sees ``n_instances`` pooled vectors side
    by side (the windows of :class:`MultiInstanceSCNN`)."""
    token_model = is_transformer(backbone)
    if not token_model:
        backbone.reset_classifier(0, "")  # keep the (B, F, h, w) feature map
    feature_dim = backbone.num_features
    if custom_attention == "triplet":
        if token_model:
            raise ValueError(f"custom_attention='triplet' needs a CNN feature map; {model_name} is "
                             "a token model: use custom_attention='none'")
        attention: nn.Module = TripletAttention()
    elif custom_attention == "mixup":
        attention = ManifoldMixup()
    else:
        attention = nn.Identity()
    if token_model:
        pool, out_dim = (ManifoldMixup() if custom_classifier == "mixup" else nn.Identity()), feature_dim
    else:
        pool, out_dim = _build_pool(custom_classifier, feature_dim)
    return attention, pool, _mlp_head(out_dim * n_instances, num_classes)


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
class _ImageModel(nn.Module):
    """Front-end, in-batch mixing, augmentation, resize and normalisation shared by the models."""

    def __init__(self, spectrogram: Any, spec_params: dict | None, augmentations: Callable | None,
                 augmentations_test: Callable | None, resize_img: int | tuple[int, int] | None,
                 upsample: str, mixup_mode: str, norm_spec: bool, return_spec: bool):
        super().__init__()
        check_choice("mixup_mode", mixup_mode, MIX_MODES)
        self.spectrogram = create_frontend(spectrogram, **(spec_params or {}))
        self.augmentations = augmentations
        self.augmentations_test = augmentations_test
        self.resize_img = (resize_img, resize_img) if isinstance(resize_img, int) else (
            tuple(resize_img) if resize_img is not None else None)
        self.upsample, self.mixup_mode, self.return_spec = upsample, mixup_mode, return_spec
        self.image_channels = (self.spectrogram.image_channels(3)
                               if isinstance(self.spectrogram, Frontend) else 3)
        self.norm = nn.BatchNorm2d(self.image_channels) if norm_spec else None
        self.manifold: ManifoldMixup | None = None
        self._probe: str | None = None

    def _find_probe(self) -> None:
        """Remember the first 4D weight of the backbone, to follow the model's memory format."""
        self._probe = next((n for n, p in self.named_parameters()
                            if p.dim() == 4 and not n.startswith("spectrogram.")), None)

    def _channels_last(self) -> bool:
        if self._probe is None:
            return False
        weight = self.get_parameter(self._probe)
        return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()

    def make_image(self, x: Strain,
                   lam: torch.Tensor | float | None = None, idx: torch.Tensor | None = None
                   ) -> Image:
        """Waveforms ``(B, C, T)`` -> the image the backbone sees (mixed when ``lam`` is given)."""
        image = self.spectrogram(x)
        if lam is not None:
            if self.manifold is not None:
                self.manifold.arm(lam, idx)
            elif self.mixup_mode == "cutmix":
                image, _ = cutmix(image, lam, idx)
            else:
                image, _ = mix_batch(image, lam, idx)
        augment = self.augmentations if self.training else self.augmentations_test
        if augment is not None:
            image = augment(image)
        if self.resize_img is not None and tuple(image.shape[-2:]) != self.resize_img:
            image = F.interpolate(image, size=self.resize_img, mode=self.upsample)
        if self.norm is not None:
            image = self.norm(image)
        if self._channels_last():
            image = image.contiguous(memory_format=torch.channels_last)
        return image


class SpectroCNN(_ImageModel):
    """Front-end -> optional resize -> timm backbone -> head; ``(B, 3, T)`` -> ``(B, num_classes)``.

    * ``spectrogram``: a front-end class, registry name (see ``frontends.FRONTENDS``) or module,
      built with ``spec_params``.
    * ``resize_img``: ``(H, W)`` (or one int for a square) the image is interpolated to with mode
      ``upsample`` ('nearest', 'bilinear', 'bicubic', ...).
    * ``custom_classifier`` / ``custom_attention`` other than 'none' replace timm's head with
      ``attention -> pool -> Linear(features, 512) -> ReLU -> Linear(512, num_classes)``; pools:
      'avg', 'max', 'concat' (avg+max), 'gem', 'positional' (GeM over frequency, positional encoding
      over time, average), 'mixup' (GeM then manifold mixup of the pooled features); attention:
      'triplet' or 'mixup' (manifold mixup of the feature map). Token models skip the pool.
    * ``custom_preprocess``: 'positional-add' / 'positional-cat' put a positional encoding on the
      image before the backbone (cat adds one input channel).
    * ``forward(x, lam, idx)``: in-batch mixing of the images, ``mixup_mode`` 'mixup' or 'cutmix'
      (manifold mixup when the head has a mixup stage); returns logits, plus the image when ``return_spec``.
    * ``augmentations`` / ``augmentations_test``: callables on the image batch, used in training /
      evaluation mode.
    * ``norm_spec``: batch-normalise the image channels before the backbone.
    """

    def __init__(self, model_name: str = "tf_efficientnet_b2", pretrained: bool = False,
                 num_classes: int = 1, timm_params: dict | None = None, spectrogram: Any = "cqt",
                 spec_params: dict | None = None, custom_preprocess: str = "none",
                 custom_classifier: str = "none", custom_attention: str = "none",
                 augmentations: Callable | None = None, augmentations_test: Callable | None = None,
                 resize_img: int | tuple[int, int] | None = None, upsample: str = "nearest",
                 mixup_mode: str = "mixup", norm_spec: bool = False, return_spec: bool = False):
        super().__init__(spectrogram, spec_params, augmentations, augmentations_test, resize_img,
                         upsample, mixup_mode, norm_spec, return_spec)
        check_choice("custom_preprocess", custom_preprocess, PREPROCESSES)
        check_choice("custom_classifier", custom_classifier, CLASSIFIERS)
        check_choice("custom_attention", custom_attention, ATTENTIONS)
        timm_params = dict(timm_params or {})
        in_chans = self.image_channels + (custom_preprocess == "positional-cat")
        timm_params.setdefault("in_chans", in_chans)
        self.preprocess = _build_preprocess(custom_preprocess)
        self.custom_head = custom_classifier != "none" or custom_attention != "none"
        if not self.custom_head:
            self.backbone = create_backbone(model_name, pretrained, num_classes=num_classes,
                                            **timm_params)
            self.attention, self.pool, self.head = nn.Identity(), nn.Identity(), nn.Identity()
        else:
            self.backbone = create_backbone(model_name, pretrained, num_classes=0, **timm_params)
            self.attention, self.pool, self.head = build_head(
                self.backbone, model_name, custom_classifier, custom_attention, num_classes)
        self.manifold = next((m for m in self.modules() if isinstance(m, ManifoldMixup)), None)
        self._find_probe()

    def forward_image(self, image: Image) -> Logits:
        """Backbone and head on an already made image: ``(B, C, H, W)`` -> logits."""
        features = self.attention(self.backbone(self.preprocess(image)))
        return self.head(torch.flatten(self.pool(features), 1))

    def forward(self, x: Strain,
                lam: torch.Tensor | float | None = None, idx: torch.Tensor | None = None
                ) -> Logits | tuple[Tensor, Tensor]:
        image = self.make_image(x, lam, idx)
        logits = self.forward_image(image)
        return (logits, image) if self.return_spec else logits


class MultiInstanceSCNN(_ImageModel):
    """The image is cut into ``n_patch`` windows along time, each goes through the same backbone and
    pooling, and the per-window features are concatenated for the MLP head.

    Windows are ``patch_width`` columns wide (default: the image height, i.e. square patches) and
    evenly spaced from the first to the last column (overlapping when ``n_patch * patch_width``
    exceeds the width). Other arguments as :class:`SpectroCNN` (the head is always custom; 'none'
    means average pooling).
    """

    def __init__(self, model_name: str = "tf_efficientnet_b2", pretrained: bool = False,
                 num_classes: int = 1, timm_params: dict | None = None, spectrogram: Any = "cqt",
                 spec_params: dict | None = None, custom_preprocess: str = "none",
                 custom_classifier: str = "gem", custom_attention: str = "none",
                 augmentations: Callable | None = None, augmentations_test: Callable | None = None,
                 resize_img: int | tuple[int, int] | None = None, upsample: str = "nearest",
                 n_patch: int = 2, patch_width: int | None = None, mixup_mode: str = "mixup",
                 norm_spec: bool = False, return_spec: bool = False):
        super().__init__(spectrogram, spec_params, augmentations, augmentations_test, resize_img,
                         upsample, mixup_mode, norm_spec, return_spec)
        check_choice("custom_preprocess", custom_preprocess, PREPROCESSES)
        # manifold mixup would mix patches of different examples: not offered here
        check_choice("custom_classifier", custom_classifier, CLASSIFIERS[:-1])
        check_choice("custom_attention", custom_attention, ("none", "triplet"))
        if n_patch < 1:
            raise ValueError(f"MultiInstanceSCNN: n_patch must be >= 1, got {n_patch}")
        self.n_patch, self.patch_width = n_patch, patch_width
        timm_params = dict(timm_params or {})
        timm_params.setdefault("in_chans",
                               self.image_channels + (custom_preprocess == "positional-cat"))
        self.preprocess = _build_preprocess(custom_preprocess)
        self.backbone = create_backbone(model_name, pretrained, num_classes=0, **timm_params)
        self.attention, self.pool, self.head = build_head(
            self.backbone, model_name, custom_classifier, custom_attention, num_classes, n_patch)
        self._find_probe()

    def patch_starts(self, height: int, width: int) -> list[int]:
        """First column of every window."""
        patch = self.patch_width or height
        if patch > width:
            raise ValueError(f"MultiInstanceSCNN: patches of {patch} columns do not fit an image "
                             f"{width} columns wide; lower patch_width or widen resize_img")
        if self.n_patch == 1:
            return [(width - patch) // 2]
        return [round(i * (width - patch) / (self.n_patch - 1)) for i in range(self.n_patch)]

    def forward(self, x: Strain,
                lam: torch.Tensor | float | None = None, idx: torch.Tensor | None = None
                ) -> Logits | tuple[Tensor, Tensor]:
        image = self.make_image(x, lam, idx)
        batch, channels, height, width = image.shape
        patch = self.patch_width or height
        patches = torch.stack([image[..., s:s + patch] for s in self.patch_starts(height, width)],
                              dim=1).reshape(batch * self.n_patch, channels, height, patch)
        if self._channels_last():
            patches = patches.contiguous(memory_format=torch.channels_last)
        features = self.attention(self.backbone(self.preprocess(patches)))
        features = torch.flatten(self.pool(features), 1).reshape(batch, -1)
        logits = self.head(features)
        return (logits, image) if self.return_spec else logits
