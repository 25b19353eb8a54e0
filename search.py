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
from typing import Any, Callable, Sequence

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


def search_strain(strain: StrainFile, scorer: Scorer, options: SearchOptions, progress: bool = True
                  ) -> dict[str, Any]:
    """Triggers ``time, stat, var`` of every segment and slide of ``strain``, and the analysed
    duration (seconds of slid data long enough for a window)."""
    rate = strain.sample_rate
    n_det = len(strain.detectors)
    options.validate(strain.detectors, rate)
    stride = int(round(options.stride * rate))
    block = max(stride, int(round(options.psd_duration * rate)) - options.window)
    block -= block % stride
    psd_span = int(round(options.psd_duration * rate))
    times, stats, duration, n_windows = [], [], 0.0, 0
    jobs = [(seg, k) for seg in strain.segments for k in options.slides.lags()
            if options.slides.usable(seg.n_samples, k, n_det, rate) >= options.window]
    total = sum(options.slides.usable(seg.n_samples, k, n_det, rate) for seg, k in jobs) / rate
    with tqdm(total=total, unit="s", desc="search", disable=not progress) as bar:
        for seg, k in jobs:
            usable = options.slides.usable(seg.n_samples, k, n_det, rate)
            offsets = options.slides.offsets(k, n_det, rate)
            duration += usable / rate
            last_start = usable - options.window
            kept_t, kept_s = [], []
            for b0 in range(0, last_start + 1, block):
                starts = np.arange(b0, min(b0 + block, last_start + 1), stride)
                lo = starts[0]
                hi = starts[-1] + options.window
                p0 = int(min(max(0, (lo + hi) // 2 - psd_span // 2), max(0, usable - psd_span)))
                p1 = min(usable, p0 + psd_span)
                r0, r1 = min(lo, p0), max(hi, p1)
                data = np.stack([strain.read(seg, r0 + o, r1 + o, detector=j)
                                 for j, o in enumerate(offsets)])
                psd = welch_psd(data[:, p0 - r0:p1 - r0], PSD_PIECE, rate)
                views = np.lib.stride_tricks.sliding_window_view(data, options.window, axis=-1)
                block_t, block_s = [], []
                for i in range(0, len(starts), options.batch_size):
                    chosen = starts[i:i + options.batch_size]
                    batch = np.ascontiguousarray(views[:, chosen - r0].transpose(1, 0, 2))
                    scored = scorer(batch, psd)
                    stat, offset = scored if isinstance(scored, tuple) else \
                        (scored, np.full(len(chosen), options.merger_offset))
                    stat = np.asarray(stat, dtype=np.float64).reshape(len(chosen), -1)
                    offset = np.broadcast_to(np.asarray(offset, dtype=np.float64).reshape(
                        len(chosen), -1), stat.shape)
                    block_t.append((seg.start_time + chosen[:, None] / rate + offset).ravel())
                    block_s.append(stat.ravel())
                n_windows += len(starts)
                t, s = np.concatenate(block_t), np.concatenate(block_s)
                if options.threshold is not None:
                    t, s = t[s >= options.threshold], s[s >= options.threshold]
                keep = cluster_triggers(t, s, options.cluster)
                kept_t.append(t[keep])
                kept_s.append(s[keep])
                bar.update((starts[-1] + stride - lo) / rate)
            t, s = np.concatenate(kept_t), np.concatenate(kept_s)
            keep = cluster_triggers(t, s, options.cluster)  # across block edges
            times.append(t[keep])
            stats.append(s[keep])
    if not jobs:
        raise G2NetError(f"{strain.path}: no segment is longer than the {options.window / rate:g} s "
                         "window (after the time slides' shifts); nothing to search")
    time = np.concatenate(times)
    stat = np.concatenate(stats)
    return {"time": time, "stat": stat, "var": np.full(len(time), options.var),
            "duration": duration, "windows": n_windows}


def trigger_attrs(strain: StrainFile, options: SearchOptions, result: dict[str, Any],
                  **extra: Any) -> dict[str, Any]:
    return {"duration": result["duration"], "input": str(strain.path),
            "detectors": ",".join(strain.detectors), "slides": options.slides.n_slides,
            "slide_step": options.slides.step, "stride": options.stride,
            "cluster": options.cluster, "psd_duration": options.psd_duration, **extra}


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by search.py and matched_filter.py --strain."""
    parser.add_argument("--output", required=True, help="trigger file to write (HDF5)")
    parser.add_argument("--stride", type=float, default=DEFAULT_STRIDE, help="s between windows")
    parser.add_argument("--slides", type=int, default=0,
                        help="time slides besides the zero lag (background only: shifts detectors)")
    parser.add_argument("--slide-step", type=float, default=DEFAULT_SLIDE_STEP,
                        help="s between slides; must exceed the window plus the light travel time")
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
                  slides=TimeSlides(args.slides, args.slide_step))
    if getattr(args, "merger_offset", None) is not None:
        values["merger_offset"] = args.merger_offset
    values.update(overrides)
    return SearchOptions(**values)


def check_output(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix not in (".hdf", ".h5", ".hdf5"):
        raise G2NetError(f"--output {path}: give an HDF5 file name ending in .hdf")
    return path


def config_scorer(cfg: type, debug: bool = False, gpu: Sequence[int] | None = None,
                  device_preprocess: bool | None = None) -> tuple[Scorer, int]:
    """``(scorer, window samples)`` of a trained experiment: the config's test preprocessing with
    ``Whiten`` using the data's PSD, every fold checkpoint (loaded as predict.py loads them),
    fold-mean logits.

    ``device_preprocess`` (default: on CUDA) runs the preprocessing as batched torch modules on the
    model's device (``spectral.whiten_torch``, ``transforms.torch_equivalent``), so that a GPU is
    not fed by numpy filters on the CPU; otherwise the numpy transforms run as in training.
    """
    import torch

    import spectral
    from predict import fold_checkpoints
    from runner import checkpoint_trainer, experiment_dir
    from runtime import setup_runtime
    from transforms import Compose, SelectDetectors, Whiten, torch_equivalent

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
    modules = [None if isinstance(step, Whiten) else
               torch_equivalent(step, N_SAMPLES).to(runtime.device) for step in steps] \
        if on_device else []
    window = torch.from_numpy(spectral.tukey_window(N_SAMPLES)).to(runtime.device)

    def preprocess(batch: np.ndarray, psd: np.ndarray) -> torch.Tensor:
        if not on_device:
            x = batch
            for step in steps:
                x = whiten(x, psd, step.sample_rate) if isinstance(step, Whiten) else step(x)
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        x = torch.from_numpy(batch).to(runtime.device, torch.float64)
        for step, module in zip(steps, modules):
            if module is None:
                gain = torch.from_numpy(spectral.inverse_asd(psd, step.sample_rate)).to(runtime.device)
                x = spectral.whiten_torch(x, window, gain.to(torch.complex128))
            else:
                x = module(x)
        return x.float()

    def scorer(batch: np.ndarray, psd: np.ndarray) -> np.ndarray:
        inputs = preprocess(batch, psd)
        return np.mean([t.predict([inputs])[:, 0] for t in trainers], axis=0)

    return scorer, N_SAMPLES


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
