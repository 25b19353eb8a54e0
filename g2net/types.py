"""Tensor shape aliases, declared once (ml4gw's ``types.py`` style) and used in signatures.

``batch`` examples, ``ifo`` detector rows (H1, L1, V1 or a subset), ``time`` samples; a front-end
turns ``Strain`` into an ``Image`` of ``channel`` x ``freq`` x ``time``.
"""
from __future__ import annotations

from jaxtyping import Complex, Float
from torch import Tensor

Strain = Float[Tensor, "batch ifo time"]  # detector strain: raw, normalised or whitened
Image = Float[Tensor, "batch channel freq time"]  # a front-end's time-frequency image
Features = Float[Tensor, "batch features"]  # pooled backbone features
Logits = Float[Tensor, "batch num_classes"]  # a model's output
PerExample = Float[Tensor, " batch"]  # one number per example
Series = Float[Tensor, "rows time"]  # rows of a batch flattened for a 1-D filter bank
RowImage = Float[Tensor, "rows freq time"]  # the image of each such row
PerDetector = Float[Tensor, "batch ifo"]  # one number per example and detector
Waveform = Float[Tensor, "batch time"]  # one polarisation per example
Spectrum = Complex[Tensor, "ifo freq"]  # a per-detector frequency-domain gain
