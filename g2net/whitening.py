"""What whitening divides by, and whitening itself (numpy and torch): one owner.

``white = irfft(rfft(x * tukey(T, 0.1)) * inverse_asd(psd), n=T)`` turns noise of PSD ``psd`` into
noise of unit variance per sample. The PSD is chosen by :func:`load_psd`: ``'simulator'`` (the
expected Tukey estimate of the simulator's noise, :mod:`g2net.simulation.noise`), a ``.npy`` file
(``prep_data.py --psd``) or an array. ``transforms.Whiten`` / ``TorchWhiten``, the matched filters
and the search all whiten through here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from g2net.simulation import noise
from g2net.spectral import TUKEY_ALPHA, expected_estimate_psd, inverse_asd, tukey_window
from g2net.types import Spectrum, Strain
from utils import N_SAMPLES, SAMPLE_RATE, G2NetError, input_dir

PsdSpec = Union[str, os.PathLike, np.ndarray]


# ---------------------------------------------------------------------------------------------
# The PSD whitening divides by
# ---------------------------------------------------------------------------------------------
def _resolve_psd_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.exists():
        return path
    in_input = input_dir() / path
    if not path.is_absolute() and in_input.exists():
        return in_input
    raise G2NetError(f"Whiten: PSD file {path} not found (also looked for {in_input}); "
                     f"write it with `python prep_data.py --psd` or use psd='simulator'")


def load_psd(psd: PsdSpec, n_samples: int = N_SAMPLES, sample_rate: float = SAMPLE_RATE,
             tukey_alpha: float = TUKEY_ALPHA) -> np.ndarray:
    """The PSD ``(3, n_samples // 2 + 1)`` that whitening divides by.

    ``'simulator'``: the expected Tukey-windowed estimate (:func:`expected_estimate_psd`) of the
    simulator's noise, from the PSD ``noise_model.colored_noise`` draws with
    (``noise_model.generation_psd``, on its oversampled grid); it is what ``prep_data.py --psd``
    measures on negatives, and dividing by the raw calibrated table instead would amplify window
    leakage by orders of magnitude in its near-empty bins. A ``.npy`` path or an array is used as
    given (an estimate such as the average of the negatives). Relative paths that do not exist as
    given are looked up in ``utils.input_dir()``.

    A missing, unreadable or wrongly shaped PSD *file* is the user's data: :class:`G2NetError`
    saying how to rewrite it. A wrongly shaped array passed in code is a ``ValueError``.
    """
    n_freq = n_samples // 2 + 1
    if isinstance(psd, str) and psd == "simulator":
        fine = noise.generation_psd(n_samples * noise.NOISE_OVERSAMPLING, sample_rate)
        array = expected_estimate_psd(fine, n_samples, sample_rate, tukey_alpha)
        source, error = "g2net.simulation.noise.generation_psd", ValueError
    elif isinstance(psd, (str, os.PathLike)):
        path = _resolve_psd_path(psd)
        try:
            array = np.load(path)
        except (OSError, ValueError) as exc:
            raise G2NetError(f"Whiten: cannot read PSD file {path} ({exc}); "
                             f"rewrite it with `python prep_data.py --psd`") from exc
        source, error = str(path), G2NetError
    else:
        array = psd.detach().cpu().numpy() if isinstance(psd, torch.Tensor) else np.asarray(psd)
        source, error = "the given array", ValueError
    array = np.asarray(array, dtype=np.float64)
    if array.shape != (3, n_freq):
        raise error(f"Whiten: PSD from {source} has shape {array.shape}, examples of "
                    f"{n_samples} samples need (3, {n_freq}); estimate it from examples "
                    f"of that length")
    return array


def whitening_kernel(psd: PsdSpec, n_samples: int = N_SAMPLES, sample_rate: float = SAMPLE_RATE,
                     tukey_alpha: float = TUKEY_ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """``(window (n_samples,), gain (3, n_samples // 2 + 1))`` that :func:`whiten` applies."""
    gain = inverse_asd(load_psd(psd, n_samples, sample_rate, tukey_alpha), sample_rate)
    return tukey_window(n_samples, tukey_alpha), gain


def whiten(x: np.ndarray, window: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Whitened ``x`` (..., 3, T) float64: ``irfft(rfft(x * window) * gain)``.

    ``window`` (T,) and ``gain`` (3, T // 2 + 1) come from :func:`whitening_kernel`.
    """
    n = x.shape[-1]
    spectrum = np.fft.rfft(x.astype(np.float64) * window, axis=-1) * gain
    return np.fft.irfft(spectrum, n=n, axis=-1)


def whiten_with_psd(x: np.ndarray, psd: np.ndarray, sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """:func:`whiten` of a batch ``(B, detectors, T)`` by a given PSD ``(detectors, T // 2 + 1)``
    (``transforms.Whiten`` with that PSD): what the searches do with the data's own estimate."""
    return whiten(x, tukey_window(x.shape[-1]), inverse_asd(psd, sample_rate))


def whiten_torch(x: Strain, window: Float[Tensor, " time"],
                 gain: Spectrum) -> Strain:
    """:func:`whiten` on tensors, in the dtype of ``x`` (``window`` in that dtype, ``gain`` in the
    matching complex dtype)."""
    spectrum = torch.fft.rfft(x * window, dim=-1) * gain
    return torch.fft.irfft(spectrum, n=x.shape[-1], dim=-1)
