"""The search engine: strided windows over every segment and time slide, scored, clustered.

For every segment (and every time slide, :mod:`g2net.search.timeslides`) of a strain file the
engine estimates the PSD from the data itself (Welch average of Tukey-windowed 2 s periodograms,
``g2net.spectral.welch_psd``) over ``psd_duration`` seconds around each block of windows, cuts
windows every ``stride`` seconds, has a scorer turn each batch into a statistic, keeps the loudest
output within ``cluster`` seconds and returns the triggers. A :class:`DetectorSplitScorer` has
each detector's windows prepared once and re-paired in every slide; a :class:`MultiPassScorer`
(the matched filter's templates, a memory's worth at a time) is searched pass by pass, every
output keeping the loudest; a :class:`g2net.search.checkpoint.SearchCheckpoint` lets a killed
search resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from tqdm import tqdm

from g2net.search.checkpoint import SearchCheckpoint
from g2net.search.options import PSD_PIECE, SearchOptions
from g2net.search.strain_io import StrainFile
from g2net.search.triggers import adjacent_mean, cluster_triggers, plateau_times
from g2net.spectral import welch_psd
from utils import G2NetError

# scores (batch, detectors, samples) raw windows with the PSD (detectors, PSD_PIECE // 2 + 1) of
# their stretch;
# returns the statistic per window, or (statistic, merger time in s after the window start), either
# per window (B,) or several candidates per window (B, M)
Scorer = Callable[[np.ndarray, np.ndarray], "np.ndarray | tuple[np.ndarray, np.ndarray]"]


@runtime_checkable
class DetectorSplitScorer(Protocol):
    """A scorer whose costly work is per detector: ``prepare`` one detector's raw windows
    ``(B, samples)`` with that detector's PSD ``(PSD_PIECE // 2 + 1,)`` (whitening, filtering,
    template correlation), ``combine`` one prepared batch per detector into the statistic (as a
    :data:`Scorer` returns it). Time slides then pair windows that were prepared once, instead
    of preparing every detector again in every slide. Calling it scores as a :data:`Scorer`."""

    def prepare(self, windows: np.ndarray, psd: np.ndarray, detector: int) -> Any: ...

    def combine(self, prepared: Sequence[Any]) -> "np.ndarray | tuple[np.ndarray, np.ndarray]": ...

    def __call__(self, batch: np.ndarray, psd: np.ndarray) -> "np.ndarray | tuple[np.ndarray, np.ndarray]": ...


@runtime_checkable
class MultiPassScorer(Protocol):
    """A scorer searched in ``n_passes`` passes (e.g. its templates a part at a time, so that one
    part's prepared windows fit memory): ``for_pass(p)`` is the scorer of pass ``p``. Every pass
    must give its outputs at the same times (same windows, same outputs per window); the search
    keeps, output by output, the loudest pass."""

    n_passes: int

    def for_pass(self, index: int) -> Scorer: ...


@dataclass(frozen=True)
class _Blocks:
    """How a segment is cut: windows every ``stride`` samples, grouped in blocks of ``block``
    samples of window starts that share one PSD estimate of ``psd_span`` samples around them."""
    window: int
    stride: int
    block: int
    psd_span: int

    @classmethod
    def of(cls, options: SearchOptions, rate: float) -> "_Blocks":
        stride = int(round(options.stride * rate))
        psd_span = int(round(options.psd_duration * rate))
        block = max(stride, psd_span - options.window)
        return cls(options.window, stride, block - block % stride, psd_span)

    def starts(self, b0: int, usable: int) -> np.ndarray:
        """Window starts of the block beginning at ``b0`` in ``usable`` samples."""
        return np.arange(b0, min(b0 + self.block, usable - self.window + 1), self.stride)

    def psd_range(self, starts: np.ndarray, usable: int) -> tuple[int, int]:
        """Samples ``[p0, p1)`` the PSD of these windows is estimated from: centred on them."""
        lo, hi = int(starts[0]), int(starts[-1]) + self.window
        p0 = int(min(max(0, (lo + hi) // 2 - self.psd_span // 2), max(0, usable - self.psd_span)))
        return p0, min(usable, p0 + self.psd_span)

    def read(self, strain: StrainFile, seg: Any, starts: np.ndarray, usable: int,
             offsets: dict[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
        """``(data, psd, r0)``: the samples of detectors ``j`` (each read ``offsets[j]`` later)
        covering the windows and their PSD stretch, from sample ``r0``; the PSD of that stretch."""
        p0, p1 = self.psd_range(starts, usable)
        r0, r1 = min(int(starts[0]), p0), max(int(starts[-1]) + self.window, p1)
        data = np.stack([strain.read(seg, r0 + o, r1 + o, detector=j) for j, o in offsets.items()])
        return data, welch_psd(data[:, p0 - r0:p1 - r0], PSD_PIECE, strain.sample_rate), r0


def _triggers(scored: Any, starts: np.ndarray, seg_start: float, rate: float,
              options: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
    """``(time, stat)`` of a scored batch of windows starting at samples ``starts``."""
    stat, offset = scored if isinstance(scored, tuple) else \
        (scored, np.full(len(starts), options.merger_offset))
    stat = np.asarray(stat, dtype=np.float64).reshape(len(starts), -1)
    if options.timing == "plateau" and (isinstance(scored, tuple) or stat.shape[1] != 1):
        raise G2NetError("--trigger-time plateau needs one output per window, timed by "
                         "--merger-offset; this scorer reports its own merger times")
    if options.statistic == "mean3" and (isinstance(scored, tuple) or stat.shape[1] != 1):
        raise G2NetError("--statistic mean3 needs one output per window, the windows --stride apart; "
                         "this scorer reports its own merger times")
    offset = np.broadcast_to(np.asarray(offset, dtype=np.float64).reshape(len(starts), -1), stat.shape)
    return (seg_start + starts[:, None] / rate + offset).ravel(), stat.ravel()


def _raw_block(starts: np.ndarray, score: Callable[[np.ndarray], Any], seg_start: float, rate: float,
               options: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
    """Every output ``(time, stat)`` of one block of windows: ``score`` each batch of window starts."""
    block_t, block_s = [], []
    for i in range(0, len(starts), options.batch_size):
        chosen = starts[i:i + options.batch_size]
        t, s = _triggers(score(chosen), chosen, seg_start, rate, options)
        block_t.append(t)
        block_s.append(s)
    return np.concatenate(block_t), np.concatenate(block_s)


def _reduce_block(time: np.ndarray, stat: np.ndarray, options: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
    """Triggers of one block's outputs (in window order): with ``statistic`` "mean3" each output
    becomes its mean with its neighbours (:func:`adjacent_mean`); drop those below the threshold,
    cluster; with ``timing`` "plateau" each trigger is timed at the middle of its plateau of raw
    outputs among all the block's, so that the threshold does not shorten it."""
    ranked = adjacent_mean(time, stat, options.stride) if options.statistic == "mean3" else stat
    chosen = np.arange(len(time)) if options.threshold is None else np.flatnonzero(ranked >= options.threshold)
    keep = chosen[cluster_triggers(time[chosen], ranked[chosen], options.cluster)]
    if options.timing == "plateau":
        return plateau_times(time, stat, keep, options.plateau_drop, options.stride), ranked[keep]
    return time[keep], ranked[keep]


def _louder(old: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Output by output, the louder of two passes over the same windows (the earlier on ties)."""
    take = new[1] > old[1]
    return np.where(take, new[0], old[0]), np.where(take, new[1], old[1])


class _PreparedWindows:
    """One detector's prepared windows of a segment, made block by block when first asked for
    and dropped once the search has passed them: the PSD of a window depends only on the
    detector's own data around it, so every time slide reuses them."""

    def __init__(self, strain: StrainFile, seg: Any, detector: int, scorer: DetectorSplitScorer,
                 blocks: _Blocks, batch_size: int):
        self.strain, self.seg, self.detector, self.scorer = strain, seg, detector, scorer
        self.blocks, self.batch_size = blocks, batch_size
        self.cache: dict[int, Any] = {}

    def _block(self, index: int) -> Any:
        if index not in self.cache:
            starts = self.blocks.starts(index * self.blocks.block, self.seg.n_samples)
            data, psd, r0 = self.blocks.read(self.strain, self.seg, starts, self.seg.n_samples,
                                             {self.detector: 0})
            views = np.lib.stride_tricks.sliding_window_view(data[0], self.blocks.window)
            parts = [self.scorer.prepare(np.ascontiguousarray(views[starts[i:i + self.batch_size] - r0]),
                                         psd[0], self.detector)
                     for i in range(0, len(starts), self.batch_size)]
            self.cache[index] = _concatenate(parts)
        return self.cache[index]

    def take(self, starts: np.ndarray) -> Any:
        """Prepared windows starting at these samples (multiples of the stride, ascending)."""
        index = starts // self.blocks.block
        parts = []
        for b in np.unique(index):
            rows = (starts[index == b] - b * self.blocks.block) // self.blocks.stride
            block = self._block(int(b))
            consecutive = len(rows) > 0 and rows[-1] - rows[0] == len(rows) - 1
            parts.append(block[int(rows[0]):int(rows[-1]) + 1] if consecutive  # a view, no copy
                         else block[_index_like(block, rows)])
        return _concatenate(parts)

    def forget_before(self, sample: int) -> None:
        for b in [b for b in self.cache if (b + 1) * self.blocks.block <= sample]:
            del self.cache[b]


def _concatenate(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)

    return torch.cat(parts)


def _index_like(block: Any, rows: np.ndarray) -> Any:
    if isinstance(block, np.ndarray):
        return rows

    return torch.as_tensor(rows, device=block.device)


def _combine_prepared(scorer: DetectorSplitScorer, prepared: list[_PreparedWindows], chosen: np.ndarray,
                      offsets: np.ndarray) -> Any:
    """``scorer.combine`` of windows ``chosen`` (each detector's ``offsets`` later), in runs that
    lie in one prepared block of every detector, so that each run takes views, not copies."""
    keys = np.stack([(chosen + offsets[j]) // p.blocks.block for j, p in enumerate(prepared)], axis=1)
    cuts = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
    outs = [scorer.combine([p.take(run + offsets[j]) for j, p in enumerate(prepared)])
            for run in np.split(chosen, cuts)]
    if len(outs) == 1:
        return outs[0]
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate(part) for part in zip(*outs))
    return np.concatenate(outs)


def reuses_detectors(scorer: Scorer, options: SearchOptions, sample_rate: float) -> bool:
    """Whether the search prepares each detector's windows once for all slides: the scorer
    splits by detector and every slide shifts by whole strides."""
    stride = int(round(options.stride * sample_rate))
    step = int(round(options.slides.step * sample_rate))
    return (options.reuse_detectors and isinstance(scorer, DetectorSplitScorer)
            and (options.slides.n_slides == 0 or step % stride == 0))


def search_strain(strain: StrainFile, scorer: Scorer, options: SearchOptions, progress: bool = True,
                  checkpoint: SearchCheckpoint | None = None) -> dict[str, Any]:
    """Triggers ``time, stat, var`` of every segment and slide of ``strain``, the slide each came
    from (``slide``), and the analysed duration (seconds of slid data long enough for a window),
    in all (``duration``) and per slide (``slide_duration``).

    A :class:`DetectorSplitScorer` has each detector's windows prepared once and re-paired in
    every slide when the slide step is a whole number of strides; otherwise every slide
    prepares its windows again (same triggers at zero lag either way). A :class:`MultiPassScorer`
    (templates in passes, so that one pass's prepared windows fit memory) is searched pass by
    pass and every output keeps the loudest pass. The work goes block of windows by block of
    windows (all slides of a block together); ``checkpoint`` saves the blocks done, and a rerun
    with the same checkpoint skips them (identical triggers: each block's outputs depend only on
    its own data)."""
    rate = strain.sample_rate
    n_det = len(strain.detectors)
    options.validate(strain.detectors, rate)
    blocks = _Blocks.of(options, rate)
    n_passes = scorer.n_passes if isinstance(scorer, MultiPassScorer) else 1
    first = scorer.for_pass(0) if isinstance(scorer, MultiPassScorer) else scorer
    reuse = reuses_detectors(first, options, rate)
    jobs = [(seg, [k for k in options.slides.lags()
                   if options.slides.usable(seg.n_samples, k, n_det, rate) >= options.window])
            for seg in strain.segments]
    jobs = [(seg, lags) for seg, lags in jobs if lags]
    if not jobs:
        raise G2NetError(f"{strain.path}: no segment is longer than the {options.window / rate:g} s "
                         "window (after the time slides' shifts); nothing to search")
    units = [(p, s, b0) for p in range(n_passes) for s, (seg, _) in enumerate(jobs)
             for b0 in range(0, seg.n_samples - blocks.window + 1, blocks.block)]
    done, state = checkpoint.resume(len(units)) if checkpoint is not None else (0, {})

    def lag_blocks(s: int, b0: int) -> list[tuple[int, int, np.ndarray]]:
        """``(lag, usable samples, window starts)`` of block ``b0`` of job ``s`` in every slide."""
        seg, lags = jobs[s]
        out = []
        for k in lags:
            usable = options.slides.usable(seg.n_samples, k, n_det, rate)
            if b0 <= usable - blocks.window:
                out.append((k, usable, blocks.starts(b0, usable)))
        return out

    def seconds(unit: int) -> float:
        _, s, b0 = units[unit]
        return sum((st[-1] + blocks.stride - st[0]) / rate for _, _, st in lag_blocks(s, b0))

    unit_seconds = [seconds(u) for u in range(len(units))]
    current: tuple[int, int] | None = None
    pass_scorer: Any = first
    prepared: list[_PreparedWindows] = []
    # smoothing=0: the rate is the mean since start, because a pass's combining of the slides
    # makes the recent rate swing far from it and the remaining time with it (30 h shown for 1 h).
    with tqdm(total=sum(unit_seconds), initial=sum(unit_seconds[:done]), unit="s", unit_scale=True,
              smoothing=0, desc="search (s of strain)", disable=not progress) as bar:
        for u in range(done, len(units)):
            p, s, b0 = units[u]
            seg = jobs[s][0]
            if current is None or current[0] != p:
                pass_scorer = scorer.for_pass(p) if isinstance(scorer, MultiPassScorer) else scorer
            if reuse and current != (p, s):
                prepared = [_PreparedWindows(strain, seg, j, pass_scorer, blocks, options.batch_size)
                            for j in range(n_det)]
            current = (p, s)
            for k, usable, starts in lag_blocks(s, b0):
                offsets = options.slides.offsets(k, n_det, rate)
                if reuse:
                    raw = _raw_block(starts, lambda chosen: _combine_prepared(
                        pass_scorer, prepared, chosen, offsets), seg.start_time, rate, options)
                else:
                    data, psd, r0 = blocks.read(strain, seg, starts, usable, dict(enumerate(offsets)))
                    views = np.lib.stride_tricks.sliding_window_view(data, blocks.window, axis=-1)
                    raw = _raw_block(starts, lambda chosen: pass_scorer(
                        np.ascontiguousarray(views[:, chosen - r0].transpose(1, 0, 2)), psd),
                        seg.start_time, rate, options)
                key = (s, k, b0)
                if n_passes == 1:  # nothing to merge: keep only the block's triggers
                    state[key] = _reduce_block(*raw, options)
                else:
                    state[key] = raw if p == 0 else _louder(state[key], raw)
                bar.update((starts[-1] + blocks.stride - starts[0]) / rate)
            if reuse:
                for w in prepared:
                    w.forget_before(b0 + blocks.block)
            if checkpoint is not None:
                end_of_pass = u + 1 == len(units) or units[u + 1][0] != p
                checkpoint.save(u + 1, state, force=end_of_pass)
    times, stats, slides, duration, n_windows = [], [], [], 0.0, 0
    slide_duration = np.zeros(options.slides.n_slides + 1)
    for s, (seg, lags) in enumerate(jobs):
        for k in lags:
            usable = options.slides.usable(seg.n_samples, k, n_det, rate)
            kept_t, kept_s = [], []
            for b0 in range(0, usable - blocks.window + 1, blocks.block):
                t, st = state[(s, k, b0)]
                if n_passes > 1:
                    t, st = _reduce_block(t, st, options)
                kept_t.append(t)
                kept_s.append(st)
                n_windows += len(blocks.starts(b0, usable))
            t, st = np.concatenate(kept_t), np.concatenate(kept_s)
            keep = cluster_triggers(t, st, options.cluster)  # across block edges
            times.append(t[keep])
            stats.append(st[keep])
            slides.append(np.full(len(keep), k, dtype=np.int64))
            slide_duration[k] += usable / rate
            duration += usable / rate
    time = np.concatenate(times)
    stat = np.concatenate(stats)
    return {"time": time, "stat": stat, "var": np.full(len(time), options.var),
            "slide": np.concatenate(slides), "slide_duration": slide_duration,
            "duration": duration, "windows": n_windows, "reused_detectors": reuse,
            "passes": n_passes}
