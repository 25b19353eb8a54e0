"""Background by time slides: detectors shifted against each other by multiples of a slide step.

Slide ``k`` (``k = 0`` is the unshifted "zero lag") delays detector number ``j`` (in the file's
order) by ``j * k * step`` seconds and keeps the stretch all detectors share: a segment of ``T``
seconds gives ``T - (n_detectors - 1) * k * step`` seconds of slid data, nothing is wrapped round.
With ``step`` longer than the light travel time between the detectors plus the analysis window, no
astrophysical signal is coincident in a shifted slide, and no two slides pair the same stretches of
two detectors, so K slides of noise give about K times its duration of independent-looking
background (as PyCBC and Aframe measure their false-alarm rates).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from utils import G2NetError


@functools.lru_cache(maxsize=None)
def light_travel_time(detectors: tuple[str, ...]) -> float:
    """Largest light travel time (s) between any two of the detectors (LAL positions)."""
    from pycbc.detector import Detector

    return max((Detector(a).light_travel_time_to_detector(Detector(b))
                for i, a in enumerate(detectors) for b in detectors[i + 1:]), default=0.0)


@dataclass(frozen=True)
class TimeSlides:
    """``n_slides`` shifted slides besides the zero lag, ``step`` seconds apart."""
    n_slides: int = 0
    step: float = 0.0

    def validate(self, detectors: Sequence[str], window: float) -> None:
        """Refuse a step that could pair a signal with itself (``window``: the seconds of data one
        output depends on), or slides with fewer than 2 detectors."""
        if self.n_slides < 0:
            raise G2NetError(f"--slides {self.n_slides}: must be >= 0")
        if self.n_slides == 0:
            return
        if len(detectors) < 2:
            raise G2NetError("--slides needs at least two detectors to shift against each other")
        least = light_travel_time(tuple(detectors)) + window
        if not self.step > least:
            raise G2NetError(f"--slide-step {self.step:g} s: must exceed the light travel time between "
                             f"{','.join(detectors)} plus the {window:g} s of data one output depends on ({least:.3f} s)")

    def lags(self) -> range:
        return range(self.n_slides + 1)

    def offsets(self, k: int, n_detectors: int, sample_rate: float) -> np.ndarray:
        """Sample offset of each detector in slide ``k``: detector ``j`` is read ``j * k * step`` later."""
        step = int(round(self.step * sample_rate))
        return np.arange(n_detectors) * k * step

    def usable(self, n_samples: int, k: int, n_detectors: int, sample_rate: float) -> int:
        """Samples of a segment of ``n_samples`` that slide ``k`` keeps (0 if the shift is too long)."""
        return max(0, n_samples - int(self.offsets(k, n_detectors, sample_rate)[-1]))

    def effective_duration(self, segment_samples: Sequence[int], n_detectors: int,
                           sample_rate: float) -> float:
        """Seconds of background all slides (zero lag included) give from segments of these lengths."""
        total = sum(self.usable(n, k, n_detectors, sample_rate)
                    for n in segment_samples for k in self.lags())
        return total / sample_rate

    def views(self, data: np.ndarray, sample_rate: float) -> Iterator[tuple[int, np.ndarray]]:
        """``(k, slid)`` for every slide of one segment ``data`` (n_detectors, T): ``slid[j]`` is
        ``data[j]`` read ``offsets[j]`` samples later, cut to the common length (a copy of that stretch).
        Sample ``i`` of a slide sits at the time of sample ``i`` of the first detector."""
        n_det, n_samples = data.shape
        for k in self.lags():
            length = self.usable(n_samples, k, n_det, sample_rate)
            if length == 0:
                continue
            offsets = self.offsets(k, n_det, sample_rate)
            yield k, np.stack([data[j, o:o + length] for j, o in enumerate(offsets)])
