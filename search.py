"""Search continuous strain with a trained experiment: sliding windows, triggers, time slides.

``python search.py --config NAME --input FILE --output FILE [--stride S] [--slides K]
[--slide-step S] [--debug]`` reads strain in the MLGWSC-1 layout (strain_io.py), and for every
segment (and every time slide, timeslides.py):
- estimates the PSD from the data itself: Welch average of Tukey-windowed 2 s periodograms
  (``spectral.estimate_psd``, the convention the whitening PSD follows) over ``--psd-duration``
  seconds around each block of windows;
- cuts windows of the model's length every ``--stride`` seconds, preprocesses them as the
  config's test transforms do, with ``Whiten`` dividing by that estimated PSD instead of the
  simulator's, and scores them in batches on the GPU (or CPU) with every trained fold, averaging
  the folds' logits;
- keeps the loudest output within ``--cluster`` seconds; a trigger's ``time`` is the window start
  plus the merger time the simulator trains for (``--merger-offset``, the middle of
  ``simulate.Priors.tc_range``), its ``stat`` the fold-mean logit, its ``var`` ``--var`` seconds.
The trigger file (``time``, ``stat``, ``var``, float64, sorted in time) is what MLGWSC-1's
``evaluate.py`` and ``evaluate_search.py`` read; its attribute ``duration`` is the analysed
duration, time slides included.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np
from tqdm import tqdm

from strain_io import StrainFile, cluster_triggers, write_triggers
from timeslides import TimeSlides
from utils import N_SAMPLES, G2NetError

DEFAULT_STRIDE = 0.25  # s between window starts
DEFAULT_PSD_DURATION = 32.0  # s of data each PSD estimate averages
DEFAULT_CLUSTER = 1.0  # s: only the loudest output within this survives
DEFAULT_VAR = 0.3  # s: how far from a trigger an injection still counts as found
DEFAULT_SLIDE_STEP = 5.0  # s between time slides (> window + light travel time)
DEFAULT_BATCH = 256
PSD_PIECE = N_SAMPLES  # samples per periodogram of the PSD estimate (2 s: the whitening convention)

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


def default_merger_offset() -> float:
    import simulate

    low, high = simulate.Priors().tc_range
    return 0.5 * (low + high)


@dataclass(frozen=True)
class SearchOptions:
    window: int = N_SAMPLES  # samples per window (the model's input length)
    stride: float = DEFAULT_STRIDE
    psd_duration: float = DEFAULT_PSD_DURATION
    cluster: float = DEFAULT_CLUSTER
    var: float = DEFAULT_VAR
    merger_offset: float = field(default_factory=default_merger_offset)
    batch_size: int = DEFAULT_BATCH
    threshold: float | None = None  # outputs below are dropped before clustering
    slides: TimeSlides = TimeSlides()
    reuse_detectors: bool = True  # prepare each detector's windows once for all slides (if it can)

    def validate(self, detectors: Sequence[str], sample_rate: float) -> None:
        window_s = self.window / sample_rate
        stride = self.stride * sample_rate
        if not self.stride > 0 or abs(stride - round(stride)) > 1e-6:
            raise G2NetError(f"--stride {self.stride:g}: need a positive multiple of the sample "
                             f"spacing (1/{sample_rate:g} s)")
        least = max(window_s, 4 * PSD_PIECE / sample_rate)
        if self.psd_duration < least:
            raise G2NetError(f"--psd-duration {self.psd_duration:g}: need at least {least:g} s (a "
                             "window, and several 2 s periodograms to average)")
        if not self.cluster > 0 or not self.var > 0:
            raise G2NetError(f"--cluster {self.cluster:g} and --var {self.var:g} must be > 0")
        if self.batch_size < 1:
            raise G2NetError(f"--batch-size {self.batch_size}: must be >= 1")
        self.slides.validate(detectors, window_s)


def welch_psd(data: np.ndarray, window: int, sample_rate: float) -> np.ndarray:
    """PSD (detectors, window // 2 + 1) of a stretch: Tukey-windowed periodograms of ``window``
    samples overlapping by half, averaged (``spectral.estimate_psd``'s convention: for
    ``window`` = 2 s it is what ``transforms.Whiten`` divides by)."""
    from spectral import estimate_psd

    starts = range(0, data.shape[-1] - window + 1, window // 2)
    pieces = np.stack([data[:, s:s + window] for s in starts])
    return estimate_psd(pieces, sample_rate)


def whiten(x: np.ndarray, psd: np.ndarray, sample_rate: float) -> np.ndarray:
    """``transforms.Whiten`` with a given PSD (``spectral.whiten``), on a batch ``(B, detectors, T)``."""
    import spectral

    return spectral.whiten(x, spectral.tukey_window(x.shape[-1]), spectral.inverse_asd(psd, sample_rate))


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
    offset = np.broadcast_to(np.asarray(offset, dtype=np.float64).reshape(len(starts), -1), stat.shape)
    return (seg_start + starts[:, None] / rate + offset).ravel(), stat.ravel()


def _score_block(starts: np.ndarray, score: Callable[[np.ndarray], Any], seg_start: float, rate: float,
                 options: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
    """Triggers of one block of windows: ``score`` each batch of window starts, drop outputs
    below the threshold, cluster."""
    block_t, block_s = [], []
    for i in range(0, len(starts), options.batch_size):
        chosen = starts[i:i + options.batch_size]
        t, s = _triggers(score(chosen), chosen, seg_start, rate, options)
        block_t.append(t)
        block_s.append(s)
    time, stat = np.concatenate(block_t), np.concatenate(block_s)
    if options.threshold is not None:
        time, stat = time[stat >= options.threshold], stat[stat >= options.threshold]
    keep = cluster_triggers(time, stat, options.cluster)
    return time[keep], stat[keep]


def _search_lag(strain: StrainFile, seg: Any, k: int, scorer: Scorer, options: SearchOptions,
                blocks: _Blocks, bar: tqdm) -> tuple[list, list, int]:
    """Triggers of slide ``k`` of one segment, every detector's windows prepared for this slide."""
    n_det, rate = len(strain.detectors), strain.sample_rate
    usable = options.slides.usable(seg.n_samples, k, n_det, rate)
    offsets = options.slides.offsets(k, n_det, rate)
    kept_t, kept_s, n_windows = [], [], 0
    for b0 in range(0, usable - blocks.window + 1, blocks.block):
        starts = blocks.starts(b0, usable)
        data, psd, r0 = blocks.read(strain, seg, starts, usable, dict(enumerate(offsets)))
        views = np.lib.stride_tricks.sliding_window_view(data, blocks.window, axis=-1)

        def score(chosen: np.ndarray) -> Any:
            return scorer(np.ascontiguousarray(views[:, chosen - r0].transpose(1, 0, 2)), psd)

        t, s = _score_block(starts, score, seg.start_time, rate, options)
        n_windows += len(starts)
        kept_t.append(t)
        kept_s.append(s)
        bar.update((starts[-1] + blocks.stride - starts[0]) / rate)
    return kept_t, kept_s, n_windows


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
            parts.append(block[_index_like(block, rows)])
        return _concatenate(parts)

    def forget_before(self, sample: int) -> None:
        for b in [b for b in self.cache if (b + 1) * self.blocks.block <= sample]:
            del self.cache[b]


def _concatenate(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch

    return torch.cat(parts)


def _index_like(block: Any, rows: np.ndarray) -> Any:
    if isinstance(block, np.ndarray):
        return rows
    import torch

    return torch.as_tensor(rows, device=block.device)


def _search_lags_reusing(strain: StrainFile, seg: Any, lags: list[int], scorer: DetectorSplitScorer,
                         options: SearchOptions, blocks: _Blocks, bar: tqdm
                         ) -> dict[int, tuple[list, list, int]]:
    """Triggers of every slide of one segment, block by block of the first detector's time,
    pairing each detector's windows prepared once (slide offsets are whole strides)."""
    n_det, rate = len(strain.detectors), strain.sample_rate
    prepared = [_PreparedWindows(strain, seg, j, scorer, blocks, options.batch_size) for j in range(n_det)]
    results: dict[int, tuple[list, list, int]] = {k: ([], [], 0) for k in lags}
    for b0 in range(0, seg.n_samples - blocks.window + 1, blocks.block):
        for k in lags:
            usable = options.slides.usable(seg.n_samples, k, n_det, rate)
            if b0 > usable - blocks.window:
                continue
            offsets = options.slides.offsets(k, n_det, rate)
            starts = blocks.starts(b0, usable)
            t, s = _score_block(starts, lambda chosen: scorer.combine(
                [prepared[j].take(chosen + offsets[j]) for j in range(n_det)]), seg.start_time, rate, options)
            kept_t, kept_s, n_windows = results[k]
            kept_t.append(t)
            kept_s.append(s)
            results[k] = (kept_t, kept_s, n_windows + len(starts))
            bar.update((starts[-1] + blocks.stride - starts[0]) / rate)
        for p in prepared:
            p.forget_before(b0 + blocks.block)
    return results


def reuses_detectors(scorer: Scorer, options: SearchOptions, sample_rate: float) -> bool:
    """Whether the search prepares each detector's windows once for all slides: the scorer
    splits by detector and every slide shifts by whole strides."""
    stride = int(round(options.stride * sample_rate))
    step = int(round(options.slides.step * sample_rate))
    return (options.reuse_detectors and isinstance(scorer, DetectorSplitScorer)
            and (options.slides.n_slides == 0 or step % stride == 0))


def search_strain(strain: StrainFile, scorer: Scorer, options: SearchOptions, progress: bool = True
                  ) -> dict[str, Any]:
    """Triggers ``time, stat, var`` of every segment and slide of ``strain``, and the analysed
    duration (seconds of slid data long enough for a window).

    A :class:`DetectorSplitScorer` has each detector's windows prepared once and re-paired in
    every slide when the slide step is a whole number of strides; otherwise every slide
    prepares its windows again (same triggers at zero lag either way)."""
    rate = strain.sample_rate
    n_det = len(strain.detectors)
    options.validate(strain.detectors, rate)
    blocks = _Blocks.of(options, rate)
    reuse = reuses_detectors(scorer, options, rate)
    jobs = [(seg, [k for k in options.slides.lags()
                   if options.slides.usable(seg.n_samples, k, n_det, rate) >= options.window])
            for seg in strain.segments]
    jobs = [(seg, lags) for seg, lags in jobs if lags]
    if not jobs:
        raise G2NetError(f"{strain.path}: no segment is longer than the {options.window / rate:g} s "
                         "window (after the time slides' shifts); nothing to search")
    total = sum(options.slides.usable(seg.n_samples, k, n_det, rate) for seg, lags in jobs for k in lags)
    times, stats, duration, n_windows = [], [], 0.0, 0
    with tqdm(total=total / rate, unit="s", desc="search", disable=not progress) as bar:
        for seg, lags in jobs:
            per_lag = _search_lags_reusing(strain, seg, lags, scorer, options, blocks, bar) if reuse \
                else {k: _search_lag(strain, seg, k, scorer, options, blocks, bar) for k in lags}
            for k in lags:
                kept_t, kept_s, windows = per_lag[k]
                t, s = np.concatenate(kept_t), np.concatenate(kept_s)
                keep = cluster_triggers(t, s, options.cluster)  # across block edges
                times.append(t[keep])
                stats.append(s[keep])
                duration += options.slides.usable(seg.n_samples, k, n_det, rate) / rate
                n_windows += windows
    time = np.concatenate(times)
    stat = np.concatenate(stats)
    return {"time": time, "stat": stat, "var": np.full(len(time), options.var),
            "duration": duration, "windows": n_windows, "reused_detectors": reuse}


def trigger_attrs(strain: StrainFile, options: SearchOptions, result: dict[str, Any],
                  **extra: Any) -> dict[str, Any]:
    return {"duration": result["duration"], "input": str(strain.path),
            "detectors": ",".join(strain.detectors), "slides": options.slides.n_slides,
            "slide_step": options.slides.step, "stride": options.stride,
            "cluster": options.cluster, "psd_duration": options.psd_duration,
            "merger_offset": options.merger_offset, "var": options.var, **extra}


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by search.py and matched_filter.py --strain."""
    parser.add_argument("--output", required=True, help="trigger file to write (HDF5)")
    parser.add_argument("--stride", type=float, default=DEFAULT_STRIDE, help="s between windows")
    parser.add_argument("--slides", type=int, default=0,
                        help="time slides besides the zero lag (background only: shifts detectors)")
    parser.add_argument("--slide-step", type=float, default=None,
                        help="s between slides; must exceed the window plus the light travel time "
                             f"(default: {DEFAULT_SLIDE_STEP:g} s for search.py; for the matched "
                             "filter the shortest whole number of its strides that does)")
    parser.add_argument("--psd-duration", type=float, default=DEFAULT_PSD_DURATION,
                        help="s of data around each block of windows that its PSD is estimated from")
    parser.add_argument("--cluster", type=float, default=DEFAULT_CLUSTER,
                        help="s: keep the loudest output within this")
    parser.add_argument("--var", type=float, default=DEFAULT_VAR,
                        help="s: an injection this close to a trigger counts as found")
    parser.add_argument("--merger-offset", type=float, default=None,
                        help="s from a window's start to the merger time a trigger reports "
                             "(default: the middle of the simulator's tc range, 1.7)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="drop outputs below this before clustering (smaller files)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="windows per batch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace, **overrides: Any) -> SearchOptions:
    values = dict(stride=args.stride, psd_duration=args.psd_duration, cluster=args.cluster,
                  var=args.var, threshold=args.threshold, batch_size=args.batch_size,
                  slides=TimeSlides(args.slides, DEFAULT_SLIDE_STEP if args.slide_step is None
                                    else args.slide_step))
    if getattr(args, "merger_offset", None) is not None:
        values["merger_offset"] = args.merger_offset
    values.update(overrides)
    return SearchOptions(**values)


def check_output(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix not in (".hdf", ".h5", ".hdf5"):
        raise G2NetError(f"--output {path}: give an HDF5 file name ending in .hdf")
    return path


class ModelScorer:
    """A trained experiment as a :class:`DetectorSplitScorer`: the config's test preprocessing
    (per detector, with ``Whiten`` dividing by the data's PSD) prepares windows, the folds'
    mean logit combines them."""

    def __init__(self, steps: list, trainers: list, device: Any, on_device: bool):
        import torch

        import spectral
        from transforms import Whiten, torch_equivalent

        self.steps, self.trainers, self.device, self.on_device = steps, trainers, device, on_device
        self.modules = [None if isinstance(step, Whiten) else
                        torch_equivalent(step, N_SAMPLES).to(device) for step in steps] \
            if on_device else []
        self.window = torch.from_numpy(spectral.tukey_window(N_SAMPLES)).to(device)

    def preprocess(self, batch: np.ndarray, psd: np.ndarray) -> "torch.Tensor":
        """``(B, detectors, T)`` raw windows and ``(detectors, F)`` PSD -> the model's input."""
        import torch

        import spectral
        from transforms import Whiten

        if not self.on_device:
            x = batch
            for step in self.steps:
                x = whiten(x, psd, step.sample_rate) if isinstance(step, Whiten) else step(x)
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        x = torch.from_numpy(batch).to(self.device, torch.float64)
        for step, module in zip(self.steps, self.modules):
            if module is None:
                gain = torch.from_numpy(spectral.inverse_asd(psd, step.sample_rate)).to(self.device)
                x = spectral.whiten_torch(x, self.window, gain.to(torch.complex128))
            else:
                x = module(x)
        return x.float()

    def predict(self, inputs: "torch.Tensor") -> np.ndarray:
        return np.mean([t.predict([inputs])[:, 0] for t in self.trainers], axis=0)

    def prepare(self, windows: np.ndarray, psd: np.ndarray, detector: int) -> "torch.Tensor":
        return self.preprocess(windows[:, None, :], psd[None])

    def combine(self, prepared: Sequence["torch.Tensor"]) -> np.ndarray:
        import torch

        return self.predict(torch.cat(list(prepared), dim=1))

    def __call__(self, batch: np.ndarray, psd: np.ndarray) -> np.ndarray:
        return self.predict(self.preprocess(batch, psd))


def config_scorer(cfg: type, debug: bool = False, gpu: Sequence[int] | None = None,
                  device_preprocess: bool | None = None) -> tuple[Scorer, int]:
    """``(scorer, window samples)`` of a trained experiment: the config's test preprocessing with
    ``Whiten`` using the data's PSD, every fold checkpoint (loaded as predict.py loads them),
    fold-mean logits. When every step acts on each detector alone (``Whiten``, ``BandPass``) the
    scorer is a :class:`DetectorSplitScorer`, so time slides reuse each detector's windows.

    ``device_preprocess`` (default: on CUDA) runs the preprocessing as batched torch modules on the
    model's device (``spectral.whiten_torch``, ``transforms.torch_equivalent``), so that a GPU is
    not fed by numpy filters on the CPU; otherwise the numpy transforms run as in training.
    """
    from predict import fold_checkpoints
    from runner import checkpoint_trainer, experiment_dir
    from runtime import setup_runtime
    from transforms import BandPass, Compose, SelectDetectors, Whiten

    chain = cfg.transforms.get("test")
    steps = list(chain.transforms) if isinstance(chain, Compose) else ([] if chain is None else [chain])
    # the strain file holds exactly the config's detectors: no rows to select
    steps = [step for step in steps if not isinstance(step, SelectDetectors)]
    if cfg.transforms.get("gpu") is not None:
        raise G2NetError(f"config {cfg.name} preprocesses on the GPU (transforms['gpu']); search.py "
                         "applies the numpy test transforms with the data's PSD: use a config "
                         "without gpu_transforms")
    runtime = setup_runtime(gpu, 0, deterministic=False)
    trainers = [checkpoint_trainer(cfg, path, runtime, lambda message: None, False)
                for path in fold_checkpoints(experiment_dir(cfg, debug))]
    on_device = runtime.device.type == "cuda" if device_preprocess is None else device_preprocess
    scorer = ModelScorer(steps, trainers, runtime.device, on_device)
    per_detector = all(isinstance(step, (Whiten, BandPass)) for step in steps)
    return (scorer if per_detector else scorer.__call__), N_SAMPLES


def run(config: str, input_path: str | Path, output: str | Path, options: SearchOptions,
        debug: bool = False, gpu: Sequence[int] | None = None, progress: bool = True) -> dict[str, Any]:
    from runner import get_config
    from utils import SAMPLE_RATE

    output = check_output(output)
    cfg = get_config(config)
    detectors = config_detectors(cfg)
    with StrainFile(input_path, detectors, SAMPLE_RATE) as strain:
        scorer, window = config_scorer(cfg, debug, gpu)
        options = SearchOptions(**{**options.__dict__, "window": window})
        result = search_strain(strain, scorer, options, progress)
        write_triggers(output, result["time"], result["stat"], result["var"],
                       trigger_attrs(strain, options, result, config=cfg.name, search="search.py"))
    print(f"{len(result['time'])} triggers from {result['windows']} windows over "
          f"{result['duration']:g} s of {'slid ' if options.slides.n_slides else ''}strain -> {output}")
    return result


def config_detectors(cfg: type) -> tuple[str, ...]:
    """The detectors a config's model was trained on (``detectors`` field; H1,L1,V1 by default)."""
    from utils import DETECTORS

    return tuple(getattr(cfg, "detectors", DETECTORS))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="trained experiment (results/NAME/fold*.pt)")
    parser.add_argument("--input", required=True, help="strain file in the MLGWSC-1 layout")
    add_search_options(parser)
    parser.add_argument("--debug", action="store_true", help="use the --debug run's checkpoints")
    parser.add_argument("--gpu", type=int, nargs="+", help="CUDA device ids (default: the first)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    return run(args.config, args.input, args.output, options_from_args(args), args.debug, args.gpu,
               not args.no_progress)


if __name__ == "__main__":
    from utils import cli_errors

    cli_errors(main)()
