"""How good is a search of continuous strain: found injections, false-alarm rate, sensitive distance.

Definitions follow MLGWSC-1 (Schäfer et al. 2023, gwastro/ml-mock-data-challenge-1 evaluate.py):
- the injections counted are those with ``tc`` inside a foreground segment, ``padding`` (30 s)
  away from its ends; the foreground duration is the total length of the segments;
- each foreground trigger belongs to the injection nearest in time; it is a true positive when
  ``|time - tc| <= var``, an injection is found at the loudest ``stat`` of its true positives;
- the false-alarm rate at a threshold is the number of background triggers louder than it divided
  by the background duration: the ``duration`` attribute of the background trigger files (their
  effective duration, time slides included) when every file has one, else the foreground duration
  (as MLGWSC-1 assumes equal lengths);
- sensitive volume ``V = 4/3 pi d_max^3 * sum_found w / (N * w_max)`` with ``d_max`` the largest
  injected distance and ``w = 1``, or ``w = mchirp^(5/2)`` when the injection file has
  ``chirp_distance`` (injections uniform in chirp-distance volume); sensitive distance
  ``(3 V / 4 pi)^(1/3)``. A month is 30 days.
:func:`run` writes ``<label>.hdf`` per search with MLGWSC-1's output keys (plus a few of ours),
``summary.json`` and ``sensitivity.png`` (sensitive distance against false alarms per month, and
the found fraction by optimal SNR at the lowest of 1, 10, 100, 1000 false alarms per month that
the background measures). The optimal SNRs are the injection file's ``snr_network`` when it records
them (simulate_strain.py), else computed from its parameters and the foreground's own PSD
(:mod:`g2net.search.injection_snr`: MLGWSC-1's injection files); the table, ``summary.json`` and
the figure say which, or why there are none.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import fill
from typing import Any, Sequence

import h5py
import matplotlib
import numpy as np

from g2net.search.injection_snr import InjectionSNR, injection_snr
from g2net.search.strain_io import StrainFile, check_same_run, run_id_of
from g2net.search.triggers import read_triggers
from utils import (G2NetError, atomic_write, commit_staged, output_file, output_folder, plain_name,
                   stage_file)

SECONDS_PER_MONTH = 30 * 24 * 3600


TABLE_FARS = (1.0, 10.0, 100.0, 1000.0)  # false alarms per month


CURVE_FARS = np.logspace(0, 4, 81)  # 1 to 1e4 per month


MCHIRP_POWER = 5.0 / 2.0  # chirp-mass weight of an injection uniform in chirp-distance volume


DEFAULT_PADDING = 30.0  # s at each segment end without counted injections (MLGWSC-1)


SNR_BINS = (0.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0, math.inf)


INJECTION_KEYS_NEEDED = ("tc", "distance", "mass1", "mass2")


def chirp_mass(mass1: np.ndarray, mass2: np.ndarray) -> np.ndarray:
    from pycbc.conversions import mchirp_from_mass1_mass2

    return np.asarray(mchirp_from_mass1_mass2(mass1, mass2), dtype=np.float64)


def read_injections(path: str | Path) -> dict[str, np.ndarray]:
    """Every 1-D dataset of an injection file (ours or MLGWSC-1's), by name."""

    path = Path(path)
    if not path.is_file():
        raise G2NetError(f"injection file {path} not found; simulate_strain.py writes injections.hdf")
    try:
        with h5py.File(path, "r") as f:
            table = {key: f[key][()] for key in f.keys()
                     if isinstance(f[key], h5py.Dataset) and f[key].ndim == 1}
    except OSError as exc:
        raise G2NetError(f"{path} is not an HDF5 injection file ({exc})") from exc
    missing = [key for key in INJECTION_KEYS_NEEDED if key not in table]
    if missing:
        raise G2NetError(f"{path} lacks dataset(s) {', '.join(missing)}; an injection file needs "
                         f"{', '.join(INJECTION_KEYS_NEEDED)} (one entry per injection)")
    n = len(table["tc"])
    uneven = [f"{key} ({len(values)})" for key, values in table.items() if len(values) != n]
    if uneven:
        raise G2NetError(f"{path}: tc has {n} entries but {', '.join(uneven)}; every dataset holds "
                         "one entry per injection (simulate_strain.py writes such a file)")
    for key in INJECTION_KEYS_NEEDED:
        values = table[key]
        if values.dtype.kind not in "fiu" or not np.all(np.isfinite(values)):
            raise G2NetError(f"{path}: dataset {key} holds non-numbers or NaN/inf; every injection "
                             "needs a finite tc, distance, mass1 and mass2")
    return table


def injections_inside(spans: Sequence[tuple[float, float]], tc: np.ndarray,
                      padding: float = DEFAULT_PADDING) -> np.ndarray:
    """Mask of injections whose ``tc`` lies in a segment, ``padding`` s away from its ends."""
    inside = np.zeros(len(tc), dtype=bool)
    for start, end in spans:
        if end - padding > start + padding:
            inside |= (tc >= start + padding) & (tc <= end - padding)
    return inside


def nearest_index(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index into ``sorted_values`` of the element nearest each of ``values`` (ties: the earlier)."""
    right = np.clip(np.searchsorted(sorted_values, values), 0, len(sorted_values) - 1)
    left = np.clip(right - 1, 0, len(sorted_values) - 1)
    take_left = np.abs(sorted_values[left] - values) <= np.abs(sorted_values[right] - values)
    return np.where(take_left, left, right)


@dataclass
class SearchResult:
    """Everything evaluated for one search (arrays in MLGWSC-1's conventions: FAR per second)."""
    label: str
    n_injections: int
    foreground_duration: float
    background_duration: float
    found_stat: np.ndarray  # per injection: loudest true-positive stat, -inf when never found
    far: np.ndarray  # per background trigger (ascending stat): louder background per second
    thresholds: np.ndarray  # the background stats, ascending
    volume: np.ndarray
    volume_error: np.ndarray
    distance: np.ndarray
    fraction: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def at_far(self, per_month: float) -> dict[str, float]:
        """Sensitive distance, volume and found fraction at a false-alarm rate (per month): the
        lowest background threshold whose rate is at most that. NaN when the background is too
        short to measure the rate (fewer than one background event expected at it)."""
        allowed = per_month * self.background_duration / SECONDS_PER_MONTH * (1 + 1e-12)
        if allowed < 1 or len(self.thresholds) == 0:
            return {"distance": math.nan, "volume": math.nan, "volume_error": math.nan,
                    "fraction": math.nan, "threshold": math.nan}
        louder = len(self.thresholds) - 1 - np.arange(len(self.thresholds))  # triggers above each
        ok = np.flatnonzero(louder <= allowed)
        i = int(ok[0])
        return {"distance": float(self.distance[i]), "volume": float(self.volume[i]),
                "volume_error": float(self.volume_error[i]), "fraction": float(self.fraction[i]),
                "threshold": float(self.thresholds[i])}


def match_triggers(tc: np.ndarray, time: np.ndarray, stat: np.ndarray, var: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nearest injection of each trigger, true-positive mask, found stat per injection)``."""
    order = np.argsort(tc, kind="stable")
    nearest = order[nearest_index(tc[order], time)] if len(tc) else np.zeros(len(time), dtype=int)
    diff = np.abs(tc[nearest] - time) if len(tc) else np.full(len(time), np.inf)
    true_positive = diff <= var
    found_stat = np.full(len(tc), -np.inf)
    np.maximum.at(found_stat, nearest[true_positive], stat[true_positive])
    return nearest, true_positive, found_stat


def sensitivity(found_stat: np.ndarray, thresholds: np.ndarray, distance: np.ndarray,
                mchirp: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Sensitive volume, its standard error, distance and found fraction at each threshold
    (an injection counts when its found stat is strictly louder)."""
    n = len(distance)
    v_total = 4.0 / 3.0 * math.pi * float(np.max(distance)) ** 3
    weight = np.ones(n) if mchirp is None else mchirp ** MCHIRP_POWER
    norm = n * (1.0 if mchirp is None else float(np.max(mchirp)) ** MCHIRP_POWER)
    order = np.argsort(found_stat, kind="stable")
    stats_sorted = found_stat[order]
    first_louder = np.searchsorted(stats_sorted, thresholds, side="right")
    tail = lambda values: np.concatenate([np.cumsum(values[order][::-1])[::-1], [0.0]])  # noqa: E731
    weight_sum = tail(weight)[first_louder]
    count = tail(np.ones(n))[first_louder]
    volume = v_total * weight_sum / norm
    if mchirp is None:
        variance_sum = n * (count / n - (count / n) ** 2)
    else:
        effective_n = float(np.sum((np.max(mchirp) / mchirp) ** MCHIRP_POWER))
        variance = tail(weight ** 2)[first_louder] / effective_n - (weight_sum / effective_n) ** 2
        variance_sum = effective_n * variance
    volume_error = v_total / norm * np.sqrt(np.maximum(variance_sum, 0.0))
    return {"volume": volume, "volume_error": volume_error,
            "distance": (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0), "fraction": count / n}


def evaluate(label: str, injections: dict[str, np.ndarray], inside: np.ndarray,
             foreground_duration: float, foreground: tuple, background: tuple,
             background_duration: float | None = None) -> SearchResult:
    """One search against the injections inside the data (``foreground``/``background`` are
    ``(time, stat, var)``)."""
    tc = np.asarray(injections["tc"], dtype=np.float64)[inside]
    distance = np.asarray(injections["distance"], dtype=np.float64)[inside]
    if len(tc) == 0:
        raise G2NetError("the foreground files contain no injections away from the segment ends; "
                         "simulate a longer stretch or lower --padding")
    mchirp = None
    if "chirp_distance" in injections:
        mchirp = chirp_mass(np.asarray(injections["mass1"], dtype=np.float64)[inside],
                            np.asarray(injections["mass2"], dtype=np.float64)[inside])
    duration = foreground_duration if background_duration is None else background_duration
    if not duration > 0:
        raise G2NetError(f"{label}: background duration {duration!r} s; the background trigger "
                         "files must come from a search of a non-empty stretch")
    fg_time, fg_stat, fg_var = (np.asarray(a, dtype=np.float64) for a in foreground)
    sort_fg = np.argsort(fg_time, kind="stable")
    fg_time, fg_stat, fg_var = fg_time[sort_fg], fg_stat[sort_fg], fg_var[sort_fg]
    nearest, true_positive, found_stat = match_triggers(tc, fg_time, fg_stat, fg_var)
    thresholds = np.sort(np.asarray(background[1], dtype=np.float64))
    far = (len(thresholds) - np.arange(len(thresholds)) - 1) / duration
    false_stats = np.sort(fg_stat[~true_positive])
    fg_far = (len(false_stats) - np.arange(len(false_stats)) - 1) / foreground_duration
    numbers = sensitivity(found_stat, thresholds, distance, mchirp)
    # the rate at which the background is at least as loud as each foreground trigger
    event_far = (len(thresholds) - np.searchsorted(thresholds, fg_stat, side="left")) / duration
    diff = np.abs(tc[nearest] - fg_time) if len(fg_time) else np.zeros(0)
    events = np.vstack([fg_time, fg_stat, fg_var])
    found = np.flatnonzero(np.isfinite(found_stat))
    extra = {
        "fg-events": events, "found-indices": found,
        "missed-indices": np.setdiff1d(np.arange(len(tc)), found),
        "true-positive-event-indices": np.flatnonzero(true_positive),
        "false-positive-event-indices": np.flatnonzero(~true_positive),
        "sorting-indices": sort_fg,
        "true-positive-diffs": diff[true_positive], "false-positive-diffs": diff[~true_positive],
        "true-positives": events[:, true_positive], "false-positives": events[:, ~true_positive],
        "fg-far": fg_far, "far": far,
        "sensitive-volume": numbers["volume"], "sensitive-distance": numbers["distance"],
        "sensitive-volume-error": numbers["volume_error"], "sensitive-fraction": numbers["fraction"],
        # ours, beyond MLGWSC-1's keys
        "fg-events-far": event_far, "found-stat": found_stat,
        "injection-indices": np.flatnonzero(inside),
    }
    return SearchResult(label, len(tc), foreground_duration, duration, found_stat, far, thresholds,
                        numbers["volume"], numbers["volume_error"], numbers["distance"],
                        numbers["fraction"], extra)


def found_fraction_by_snr(result: SearchResult, snr: np.ndarray, per_month: float | None
                          ) -> list[dict[str, float]]:
    """Found fraction in bins of optimal network SNR, at a false-alarm rate (None: any trigger)."""
    if per_month is None:
        found = np.isfinite(result.found_stat)
    else:
        threshold = result.at_far(per_month)["threshold"]
        found = result.found_stat > threshold if math.isfinite(threshold) else np.zeros(len(snr), bool)
    rows = []
    for low, high in zip(SNR_BINS[:-1], SNR_BINS[1:]):
        in_bin = (snr >= low) & (snr < high)
        if in_bin.any():
            rows.append({"snr_low": low, "snr_high": high, "n": int(in_bin.sum()),
                         "found_fraction": float(found[in_bin].mean())})
    return rows


def write_result(path: Path, result: SearchResult, snr: InjectionSNR | None = None) -> None:
    tmp = stage_file(path)
    try:
        with h5py.File(tmp, "w") as f:
            for key, value in result.extra.items():
                f.create_dataset(key, data=np.asarray(value))
            if snr is not None and snr.network is not None:  # per counted injection, as found-stat
                f.create_dataset("optimal-snr", data=snr.network)
                for det, values in snr.per_detector.items():
                    f.create_dataset(f"optimal-snr-{det}", data=values)
            if snr is not None:
                f.attrs["optimal_snr_source"] = snr.source
                f.attrs["optimal_snr_detail"] = snr.detail
            f.attrs["label"] = result.label
            f.attrs["foreground_duration"] = result.foreground_duration
            f.attrs["background_duration"] = result.background_duration
        commit_staged(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def plot(results: Sequence[SearchResult], snr_tables: dict[str, list], path: Path,
         snr: InjectionSNR | None = None) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for result in results:
        rows = [result.at_far(f) for f in CURVE_FARS]
        left.plot(CURVE_FARS, [r["distance"] for r in rows], label=result.label)
    left.set(xscale="log", xlabel="false alarms per month", ylabel="sensitive distance [Mpc]",
             title="sensitive distance (MLGWSC-1 definition)")
    left.grid(alpha=0.3)
    left.legend()
    for label, rows in snr_tables.items():
        centres = [(r["snr_low"] + min(r["snr_high"], 40.0)) / 2 for r in rows]
        right.plot(centres, [r["found_fraction"] for r in rows], marker="o", label=label)
    where = "" if snr is None else f" ({snr.label})"
    right.set(xlabel=f"optimal network SNR{where}", ylabel="found fraction", ylim=(-0.02, 1.02),
              title="found at the lowest false-alarm rate measured")
    right.grid(alpha=0.3)
    if snr_tables:
        right.legend()
    if snr is not None and (snr.network is None or not np.isfinite(snr.network).any()):
        right.text(0.5, 0.5, fill(f"no optimal SNRs: {snr.detail}", 50), transform=right.transAxes,
                   ha="center", va="center", fontsize=9)
    elif snr is not None and not np.isfinite(snr.network).all():
        right.text(0.02, 0.02, fill(f"optimal SNRs {snr.detail.split(': ')[0]} ({snr.detail.split('; ')[-1]})", 70),
                   transform=right.transAxes, ha="left", va="bottom", fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=120))
    plt.close(fig)


def background_duration_of(paths: Sequence[str], attrs: Sequence[dict]) -> float | None:
    """Sum of the files' ``duration`` attributes, or None when any lacks one."""
    if all("duration" in a for a in attrs):
        return float(sum(float(a["duration"]) for a in attrs))
    return None


def _concat(paths: Sequence[str]) -> tuple[tuple[np.ndarray, ...], list[dict]]:
    parts = [read_triggers(p) for p in paths]
    arrays = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
    return arrays, [p[3] for p in parts]


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None: strict JSON readers refuse ``NaN``."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _check_runs(injection_file: str | Path, strains: Sequence[tuple[str, str | None]],
                trigger_files: Sequence[str], trigger_attrs: Sequence[dict]) -> None:
    """Injections, foreground strain and the strain each trigger file searched (its
    ``strain_run_id``, when it records one) must come from one simulate_strain.py run."""
    reference = run_id_of(injection_file)
    check_same_run([(injection_file, reference), *strains])
    if reference is None:
        return
    for path, attrs in zip(trigger_files, trigger_attrs):
        searched = attrs.get("strain_run_id")
        if isinstance(searched, bytes):
            searched = searched.decode(errors="replace")
        if searched is not None and str(searched) != reference:
            raise G2NetError(f"{path} is a search of strain from simulate_strain.py run {searched}, but "
                             f"{injection_file} is from run {reference}; search the strain that goes "
                             "with these injections")


def run(injection_file: str, foreground_files: Sequence[str], foreground_events: Sequence[Sequence[str]],
        background_events: Sequence[Sequence[str]], labels: Sequence[str] | None = None,
        out: str | Path = "search_evaluation", padding: float = DEFAULT_PADDING,
        compute_snr: bool = True) -> dict[str, Any]:
    """Evaluate one or more searches; write the outputs under ``out``; return the summary.

    Everything is read and evaluated before ``out`` is made, so a refused input leaves nothing."""
    if len(foreground_events) != len(background_events):
        raise G2NetError(f"{len(foreground_events)} --foreground-events but {len(background_events)} "
                         "--background-events; give one of each per search")
    labels = list(labels or [])
    if labels and len(labels) != len(foreground_events):
        raise G2NetError(f"{len(labels)} --label for {len(foreground_events)} searches; give one per "
                         "search or none")
    if not labels:
        labels = [Path(files[0]).stem for files in foreground_events]
    for label in labels:
        plain_name(label, "--label")
    if len(set(labels)) != len(labels):
        raise G2NetError(f"labels {labels} repeat; give each search its own --label")
    if not (math.isfinite(padding) and padding >= 0):
        raise G2NetError(f"--padding {padding}: must be a finite number of seconds >= 0")
    inputs = [injection_file, *foreground_files, *(p for files in foreground_events for p in files),
              *(p for files in background_events for p in files)]
    out = output_folder(out, "--out")
    outputs = [out / f"{label}.hdf" for label in labels] + [out / "summary.json", out / "sensitivity.png"]
    for path in outputs:
        output_file(path, "--out", overwrite=True, inputs=inputs)
    injections = read_injections(injection_file)
    spans, strains = [], []
    for path in foreground_files:
        with StrainFile(path) as strain:
            spans.extend((s.start_time, s.end_time) for s in strain.segments)
            strains.append((path, strain.run_id))
    foreground_duration = float(sum(end - start for start, end in spans))
    inside = injections_inside(spans, np.asarray(injections["tc"], dtype=np.float64), padding)
    if not inside.any():
        raise G2NetError("the foreground files contain no injections away from the segment ends; "
                         "simulate a longer stretch or lower --padding")
    for files in (*foreground_events, *background_events):
        _concat(files)  # refuse a bad trigger file before the optimal SNRs are computed
    snr_info = injection_snr(injection_file, injections, foreground_files, inside, compute_snr)
    snr = snr_info.network
    results, snr_tables = [], {}
    summary: dict[str, Any] = {"optimal_snr": {
        "source": snr_info.source, "detail": snr_info.detail,
        "injections_with_snr": 0 if snr is None else int(np.isfinite(snr).sum())}, "searches": {}}
    for label, fg_files, bg_files in zip(labels, foreground_events, background_events):
        foreground, fg_attrs = _concat(fg_files)
        background, bg_attrs = _concat(bg_files)
        _check_runs(injection_file, strains, [*fg_files, *bg_files], [*fg_attrs, *bg_attrs])
        result = evaluate(label, injections, inside, foreground_duration, foreground, background,
                          background_duration_of(bg_files, bg_attrs))
        results.append(result)
        entry: dict[str, Any] = {
            "injections": result.n_injections, "found_any": int(np.isfinite(result.found_stat).sum()),
            "foreground_seconds": foreground_duration, "background_seconds": result.background_duration,
            "background_triggers": len(result.thresholds),
            "at_far_per_month": {f"{f:g}": result.at_far(f) for f in TABLE_FARS}}
        if snr is not None:
            reached = [f for f in TABLE_FARS if math.isfinite(result.at_far(f)["threshold"])]
            for f in reached:
                entry[f"found_fraction_by_snr_at_{f:g}_per_month"] = found_fraction_by_snr(result, snr, f)
            entry["found_fraction_by_snr_any"] = found_fraction_by_snr(result, snr, None)
            # the plot shows the lowest false-alarm rate the background measures
            far = reached[0] if reached else None
            snr_tables[f"{label} ({f'{far:g}/month' if far else 'any trigger'})"] = \
                found_fraction_by_snr(result, snr, far)
        summary["searches"][label] = entry
    # rates the background cannot reach are null (not NaN, which strict JSON readers refuse)
    summary = _json_safe(summary)
    text = json.dumps(summary, indent=2, allow_nan=False)
    created = None  # the highest folder this run makes, removed again if writing fails
    for folder in (out, *out.parents):
        if folder.exists():
            break
        created = folder
    out.mkdir(parents=True, exist_ok=True)
    try:
        for result in results:
            write_result(out / f"{result.label}.hdf", result, snr_info)
        plot(results, snr_tables, out / "sensitivity.png", snr_info)
        atomic_write(out / "summary.json", lambda handle: handle.write(text), mode="w")
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    print_table(results, snr_info, snr_tables)
    return summary


def print_table(results: Sequence[SearchResult], snr: InjectionSNR | None = None,
                snr_tables: dict[str, list] | None = None) -> None:
    header = "search".ljust(20) + "".join(f"{f'{f:g}/month':>14}" for f in TABLE_FARS)
    print("sensitive distance [Mpc] (found fraction) at a false-alarm rate")
    print(header)
    for result in results:
        cells = []
        for f in TABLE_FARS:
            row = result.at_far(f)
            cells.append("not reached".rjust(14) if math.isnan(row["distance"]) else
                         f"{row['distance']:8.0f} ({row['fraction']:.2f})".rjust(14))
        print(result.label[:20].ljust(20) + "".join(cells))
    for result in results:
        print(f"{result.label}: {result.n_injections} injections, "
              f"{int(np.isfinite(result.found_stat).sum())} found by any trigger; background "
              f"{result.background_duration / SECONDS_PER_MONTH:.3g} months "
              f"({len(result.thresholds)} triggers); 'not reached': background too short")
    if snr is None:
        return
    if not any(snr_tables.values()):
        print(f"found fraction by optimal network SNR: none ({snr.detail})")
        return
    bins = [(r["snr_low"], r["snr_high"]) for r in max(snr_tables.values(), key=len)]
    print(f"found fraction by optimal network SNR, {snr.label}:\n  {snr.detail}")
    print("search".ljust(32) + "".join(f"{f'{lo:g}-{hi:g}':>9}" for lo, hi in bins))
    for label, rows in snr_tables.items():
        by_bin = {(r["snr_low"], r["snr_high"]): r["found_fraction"] for r in rows}
        print(label[:32].ljust(32) + "".join(
            (f"{by_bin[b]:9.2f}" if b in by_bin else " " * 9) for b in bins))
