"""What a search is asked to do: its options, checked, and the command-line options that set them
(shared by ``search.py`` and ``matched_filter.py --strain``)."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from g2net.search.strain_io import StrainFile
from g2net.search.timeslides import TimeSlides
from g2net.search.triggers import SLIDE_DURATION
from g2net.simulation.priors import Priors
from utils import N_SAMPLES, G2NetError, finite_float, output_file, positive_float

DEFAULT_STRIDE = 0.25  # s between window starts


DEFAULT_PSD_DURATION = 32.0  # s of data each PSD estimate averages


DEFAULT_CLUSTER = 1.0  # s: only the loudest output within this survives


DEFAULT_VAR = 0.3  # s: how far from a trigger an injection still counts as found


DEFAULT_SLIDE_STEP = 5.0  # s between time slides (> window + light travel time)


DEFAULT_BATCH = 256


TRIGGER_TIMINGS = ("loudest", "plateau")  # how a kept trigger's window becomes its time


# what a trigger's stat is: its loudest window's output, or the loudest mean of an output and its two
# neighbouring windows' (a signal scores in consecutive windows, a noise fluctuation often in one)
TRIGGER_STATISTICS = ("loudest", "mean3")


# logit units (odds e-fold): meant to exceed the window-to-window jitter of a loud signal's scores and
# stay below their rise over the noise's; not yet tuned (calibrate_search_timing.py measures the spread)
DEFAULT_PLATEAU_DROP = 3.0  # logit; measured on a calibration hour (docs/search.md)


PSD_PIECE = N_SAMPLES  # samples per periodogram of the PSD estimate (2 s: the whitening convention)


def default_merger_offset() -> float:
    low, high = Priors().tc_range
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
    timing: str = "loudest"  # a trigger's time: its loudest window, or the middle of its plateau
    statistic: str = "loudest"  # a trigger's stat: one of TRIGGER_STATISTICS
    plateau_drop: float = DEFAULT_PLATEAU_DROP  # below the loudest output, still the plateau
    slides: TimeSlides = TimeSlides()
    reuse_detectors: bool = True  # prepare each detector's windows once for all slides (if it can)
    slide_span: float | None = None  # s of data one output depends on (None: the window); slides exceed it

    def validate(self, detectors: Sequence[str], sample_rate: float) -> None:
        for f in fields(self):  # the command line refuses these already (utils.finite_float)
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise G2NetError(f"--{f.name.replace('_', '-')} {value}: must be a finite number")
        if not math.isfinite(self.slides.step):
            raise G2NetError(f"--slide-step {self.slides.step}: must be a finite number")
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
        if self.timing not in TRIGGER_TIMINGS:
            raise G2NetError(f"--trigger-time {self.timing}: must be one of {', '.join(TRIGGER_TIMINGS)}")
        if self.statistic not in TRIGGER_STATISTICS:
            raise G2NetError(f"--statistic {self.statistic}: must be one of {', '.join(TRIGGER_STATISTICS)}")
        if not self.plateau_drop > 0:
            raise G2NetError(f"--plateau-drop {self.plateau_drop:g}: must be > 0")
        if self.batch_size < 1:
            raise G2NetError(f"--batch-size {self.batch_size}: must be >= 1")
        self.slides.validate(detectors, window_s if self.slide_span is None else self.slide_span)

    def fingerprint(self) -> dict[str, Any]:
        """The options as a checkpoint's fingerprint records them. An option added after checkpoints
        existed appears only when it changes what the search does, so that a search started before
        it resumes instead of starting over."""
        values = dict(self.__dict__)
        if values["statistic"] == "loudest":
            del values["statistic"]
        return values


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by search.py and matched_filter.py --strain."""
    parser.add_argument("--output", required=True, help="trigger file to write (HDF5)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument("--stride", type=positive_float, default=None,
                        help=f"s between windows (default {DEFAULT_STRIDE:g}; the matched filter lays "
                             "its own windows and refuses it)")
    parser.add_argument("--slides", type=int, default=0,
                        help="time slides besides the zero lag (background only: shifts detectors)")
    parser.add_argument("--slide-step", type=positive_float, default=None,
                        help="s between slides; must exceed the light travel time plus the data one "
                             "output depends on (search.py: the window; the matched filter: its longest "
                             f"template) (default: {DEFAULT_SLIDE_STEP:g} s for search.py; for the matched "
                             "filter the shortest whole number of its strides that does)")
    parser.add_argument("--psd-duration", type=positive_float, default=None,
                        help="s of data around each block of windows that its PSD is estimated from "
                             f"(default {DEFAULT_PSD_DURATION:g}; the matched filter's: four of its windows)")
    parser.add_argument("--cluster", type=positive_float, default=DEFAULT_CLUSTER,
                        help="s: keep the loudest output within this")
    parser.add_argument("--var", type=positive_float, default=DEFAULT_VAR,
                        help="s: an injection this close to a trigger counts as found")
    parser.add_argument("--merger-offset", type=finite_float, default=None,
                        help="s from a window's start to the merger time a trigger reports "
                             "(default: the middle of the simulator's tc range, 1.7; the matched "
                             "filter reports its SNR peak and refuses it)")
    parser.add_argument("--threshold", type=finite_float, default=None,
                        help="drop outputs below this before clustering (smaller files; the matched "
                             "filter then skips the time slides' combinations that cannot reach it)")
    parser.add_argument("--trigger-time", choices=TRIGGER_TIMINGS, default=None,
                        help="loudest (default): a trigger's time is its loudest window's start plus "
                             "--merger-offset; plateau: the middle of the run of consecutive windows "
                             "around it within --plateau-drop of the loudest (a loud signal scores "
                             "alike in every window that holds its merger, so the loudest of them is "
                             "nearly random; the middle is not). The matched filter reports its SNR "
                             "peak and refuses it")
    parser.add_argument("--plateau-drop", type=positive_float, default=None,
                        help="how far below the loudest output (in the statistic's units: search.py's "
                             "logit, so 1 = the odds fall e-fold) a window still belongs to the "
                             f"plateau (default {DEFAULT_PLATEAU_DROP:g}: meant to exceed the "
                             "window-to-window jitter of a loud signal's scores and stay below their "
                             "rise over the noise's); only with --trigger-time plateau")
    parser.add_argument("--statistic", choices=TRIGGER_STATISTICS, default=None,
                        help="loudest (default): a trigger's stat is its loudest window's output; mean3: "
                             "the loudest mean of a window's output and its two neighbours' (a signal "
                             "scores in consecutive windows, a noise fluctuation often in one; at the "
                             "ends of each block of windows the mean of the two there). The matched "
                             "filter's statistic is its SNR and refuses it")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="windows per batch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace, **overrides: Any) -> SearchOptions:
    values = dict(stride=DEFAULT_STRIDE if args.stride is None else args.stride,
                  psd_duration=DEFAULT_PSD_DURATION if args.psd_duration is None else args.psd_duration,
                  cluster=args.cluster,
                  var=args.var, threshold=args.threshold, batch_size=args.batch_size,
                  slides=TimeSlides(args.slides, DEFAULT_SLIDE_STEP if args.slide_step is None
                                    else args.slide_step))
    if args.merger_offset is not None:
        values["merger_offset"] = args.merger_offset
    if args.plateau_drop is not None and args.trigger_time != "plateau":
        raise G2NetError(f"--plateau-drop {args.plateau_drop:g}: only used with --trigger-time plateau; "
                         "add that or drop it")
    if args.trigger_time is not None:
        values["timing"] = args.trigger_time
    if args.statistic is not None:
        values["statistic"] = args.statistic
    if args.plateau_drop is not None:
        values["plateau_drop"] = args.plateau_drop
    values.update(overrides)
    return SearchOptions(**values)


TRIGGER_SUFFIXES = (".hdf", ".h5", ".hdf5")


def check_output(path: str | Path, strain: str | Path, overwrite: bool = False) -> Path:
    """The trigger file a search may write (:func:`utils.output_file`): an HDF5 name, not the
    strain it searches, not a folder, not an existing file unless ``overwrite``."""
    return output_file(path, "--output", overwrite=overwrite, inputs=[strain], suffixes=TRIGGER_SUFFIXES)


def trigger_attrs(strain: StrainFile, options: SearchOptions, result: dict[str, Any],
                  **extra: Any) -> dict[str, Any]:
    return {"duration": result["duration"], SLIDE_DURATION: result["slide_duration"],
            "input": str(strain.path),
            "detectors": ",".join(strain.detectors), "slides": options.slides.n_slides,
            "slide_step": options.slides.step, "stride": options.stride,
            "cluster": options.cluster, "psd_duration": options.psd_duration,
            "merger_offset": options.merger_offset, "var": options.var,
            "timing": options.timing, "plateau_drop": options.plateau_drop, "statistic": options.statistic,
            **({} if strain.run_id is None else {"strain_run_id": strain.run_id}),
            **({} if strain.kind is None else {"strain_kind": strain.kind}), **extra}
