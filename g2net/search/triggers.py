"""Trigger files, and the clustering that makes them.

Trigger file (HDF5): 1-D float64 datasets ``time`` (GPS s), ``stat`` (ranking statistic, larger is
more significant) and ``var`` (how far from ``time`` an injection may lie and still count as found),
sorted in time; that is all MLGWSC-1's ``evaluate.py`` reads. The file's attributes record the
analysed duration (``duration``, time slides included) and how it was made.
"""
from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from utils import G2NetError, commit_staged, stage_file

TRIGGER_DATASETS = ("time", "stat", "var")
SLIDE_DATASET = "slide"  # ours, beside MLGWSC-1's three: the time slide of each trigger
SLIDE_DURATION = "slide_duration"  # attribute: analysed seconds of each slide, zero lag first


TRIGGER_DTYPE = np.float64


def write_triggers(path: str | Path, time: np.ndarray, stat: np.ndarray, var: np.ndarray | float,
                   attrs: Mapping[str, Any] | None = None, slide: np.ndarray | None = None) -> None:
    """Trigger file: ``time``, ``stat``, ``var`` (float64, 1-D, sorted by time), and when given
    the time slide of each trigger (``slide``, int64; 0 is the zero lag), written atomically."""
    time = np.asarray(time, dtype=TRIGGER_DTYPE).ravel()
    stat = np.asarray(stat, dtype=TRIGGER_DTYPE).ravel()
    var = np.broadcast_to(np.asarray(var, dtype=TRIGGER_DTYPE), time.shape).copy()
    if not time.shape == stat.shape == var.shape:
        raise ValueError(f"time {time.shape}, stat {stat.shape} and var {var.shape} differ in length")
    columns = dict(zip(TRIGGER_DATASETS, (time, stat, var)))
    if slide is not None:
        columns[SLIDE_DATASET] = np.asarray(slide, dtype=np.int64).ravel()
        if columns[SLIDE_DATASET].shape != time.shape:
            raise ValueError(f"slide {columns[SLIDE_DATASET].shape} and time {time.shape} differ in length")
    order = np.argsort(time, kind="stable")
    tmp = stage_file(path)
    try:
        with h5py.File(tmp, "w") as f:
            for name, values in columns.items():
                f.create_dataset(name, data=values[order])
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
        commit_staged(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_triggers(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """``(time, stat, var, attrs)`` of a trigger file (ours or any MLGWSC-1 submission)."""
    path = Path(path)
    if not path.is_file():
        raise G2NetError(f"trigger file {path} not found; search.py or matched_filter.py --strain "
                         "writes one")
    try:
        with h5py.File(path, "r") as f:
            missing = [name for name in TRIGGER_DATASETS if name not in f]
            if missing:
                raise G2NetError(f"{path} lacks dataset(s) {', '.join(missing)}; a trigger file "
                                 "holds time, stat and var (the MLGWSC-1 format)")
            for name in TRIGGER_DATASETS:
                if not isinstance(f[name], h5py.Dataset) or f[name].dtype.kind not in "fiu":
                    raise G2NetError(f"{path}: {name} is not a dataset of numbers; a trigger file "
                                     "holds time, stat and var as float64 (the MLGWSC-1 format)")
            values = [np.asarray(f[name][()], dtype=np.float64).ravel() for name in TRIGGER_DATASETS]
            attrs = dict(f.attrs)
    except OSError as exc:
        raise G2NetError(f"{path} is not an HDF5 trigger file ({exc})") from exc
    if not values[0].shape == values[1].shape == values[2].shape:
        raise G2NetError(f"{path}: time, stat and var have different lengths")
    for name, array in zip(TRIGGER_DATASETS, values):
        bad = np.flatnonzero(~np.isfinite(array))
        if len(bad):
            raise G2NetError(f"{path}: dataset {name} holds {len(bad)} NaN/inf value(s) (first at "
                             f"index {bad[0]}); a trigger needs a finite time, stat and var: fix or "
                             "rerun the search that wrote it")
    if "duration" in attrs:
        attrs["duration"] = _duration(path, attrs["duration"])
    return values[0], values[1], values[2], attrs


def parse_slides(text: str) -> list[int]:
    """``"0"``, ``"0,3,5"``, ``"0-15"`` or a mix (``"0,4-7"``) as sorted distinct slide numbers."""
    chosen: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
            if first < 0 or last < first:
                raise ValueError
            chosen.update(range(first, last + 1))
    except ValueError:
        raise G2NetError(f"--slides {text!r}: give slide numbers >= 0 as a list and ranges, "
                         "such as 0 (the zero lag), 0,3,5 or 0-15") from None
    return sorted(chosen)


def select_slides(path: str | Path, slides: Sequence[int]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """``(time, stat, var, slide, attrs)`` of the triggers of ``slides`` only, ``attrs['duration']``
    their analysed seconds (``slide_duration`` keeps its length, 0 for the slides left out): the
    zero lag of a slid background (MLGWSC-1's ``evaluate.py`` compares a foreground with an unslid
    background), or a shorter background from a longer one."""
    time, stat, var, attrs = read_triggers(path)
    with h5py.File(path, "r") as f:
        if SLIDE_DATASET not in f or SLIDE_DURATION not in attrs:
            raise G2NetError(f"{path} does not record the slide of each trigger (written before "
                             "2026-12-07, or not by search.py / matched_filter.py --strain); rerun "
                             "the search to select slides")
        slide = np.asarray(f[SLIDE_DATASET][()], dtype=np.int64).ravel()
    per_slide = np.asarray(attrs[SLIDE_DURATION], dtype=np.float64).ravel()
    missing = [k for k in slides if k >= len(per_slide)]
    if missing:
        raise G2NetError(f"{path} holds slides 0-{len(per_slide) - 1}; slide(s) "
                         f"{', '.join(map(str, missing))} are not in it")
    keep = np.isin(slide, slides)
    kept_duration = np.where(np.isin(np.arange(len(per_slide)), slides), per_slide, 0.0)
    selected = {**attrs, "duration": float(kept_duration.sum()), SLIDE_DURATION: kept_duration,
                "selected_slides": np.asarray(slides, dtype=np.int64), "selected_from": str(path)}
    return time[keep], stat[keep], var[keep], slide[keep], selected


def _duration(path: Path, value: Any) -> float:
    """The ``duration`` attribute (analysed seconds) as a finite number >= 0, or one G2NetError."""
    try:
        if isinstance(value, (str, bytes)) or np.ndim(value) != 0:
            raise TypeError
        duration = float(value)
    except (TypeError, ValueError):
        duration = None
    if duration is None or not math.isfinite(duration) or duration < 0:
        raise G2NetError(f"{path}: attribute duration is {value!r}, not a number of seconds >= 0; "
                         "it records the analysed duration (delete the attribute to use the "
                         "foreground's, as MLGWSC-1 does)")
    return duration


def cluster_triggers(time: np.ndarray, stat: np.ndarray, window: float) -> np.ndarray:
    """Indices (sorted by time) of the triggers kept when only the loudest within ``window``
    seconds survives: triggers are taken loudest first and dropped if a kept one lies within
    ``window``; ties go to the earlier trigger. No two kept triggers are ``window`` or closer."""

    time = np.asarray(time, dtype=np.float64)
    stat = np.asarray(stat, dtype=np.float64)
    order = np.lexsort((time, -stat))
    kept_times: list[float] = []
    kept: list[int] = []
    for index in order:
        t = time[index]
        pos = bisect.bisect_left(kept_times, t)
        if pos < len(kept_times) and kept_times[pos] - t <= window:
            continue
        if pos > 0 and t - kept_times[pos - 1] <= window:
            continue
        kept_times.insert(pos, t)
        kept.insert(pos, int(index))
    return np.asarray(kept, dtype=np.int64)


def adjacent_mean(time: np.ndarray, stat: np.ndarray, step: float) -> np.ndarray:
    """Each output's mean with its neighbours (``time`` in window order, one output per window,
    ``step`` s apart): three outputs, or the two there at the ends of a run of consecutive windows
    (one alone stays as it is). A signal scores in every window that holds its merger; a noise
    fluctuation often in one only, which the mean dilutes with its quieter neighbours."""
    time = np.asarray(time, dtype=np.float64)
    stat = np.asarray(stat, dtype=np.float64)
    joined = np.abs(np.diff(time) - step) < 0.5 * step  # output j and j + 1 are adjacent windows
    total, count = stat.copy(), np.ones(len(stat))
    total[1:] += np.where(joined, stat[:-1], 0.0)
    total[:-1] += np.where(joined, stat[1:], 0.0)
    count[1:] += joined
    count[:-1] += joined
    return total / count


def plateau_times(time: np.ndarray, stat: np.ndarray, kept: np.ndarray, drop: float,
                  step: float) -> np.ndarray:
    """The middle of each kept output's plateau: the run of consecutive outputs (``time`` in window
    order, one per window, ``step`` s apart) around output ``kept[i]`` whose ``stat`` stays at least
    its own minus ``drop``. A loud signal scores alike in every window that holds its merger, so
    the loudest of them lands anywhere on that plateau; its middle scatters far less."""

    time = np.asarray(time, dtype=np.float64)
    stat = np.asarray(stat, dtype=np.float64)
    joined = np.abs(np.diff(time) - step) < 0.5 * step  # output j and j + 1 are adjacent windows
    middle = np.empty(len(kept), dtype=np.float64)
    for n, index in enumerate(kept):
        level = stat[index] - drop
        lo = hi = int(index)
        while lo > 0 and joined[lo - 1] and stat[lo - 1] >= level:
            lo -= 1
        while hi < len(time) - 1 and joined[hi] and stat[hi + 1] >= level:
            hi += 1
        middle[n] = 0.5 * (time[lo] + time[hi])
    return middle
