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
the background measures). Every figure carries its uncertainty and its basis (``INTERVALS``): at
each rate the background length, the number of background triggers louder than the threshold and
the Poisson interval on the rate they measure; the sensitive volume and distance with one standard
error; found fractions (overall and in bins of optimal SNR up to and above 30) with Clopper-Pearson
intervals; and, for two or more searches, :func:`compare_searches`: each pair's distance ratio with
a paired bootstrap interval over the injections. The optimal SNRs are the injection file's ``snr_network`` when it records
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

from g2net.search.injection_snr import InjectionSNR, injection_snr, reuse_snrs
from g2net.search.strain_io import StrainFile, attr_text, check_same_run, run_id_of, strain_kind_of
from g2net.search.triggers import read_triggers
from utils import (G2NetError, atomic_write, commit_staged, output_file, output_folder, plain_name,
                   stage_file)

SECONDS_PER_MONTH = 30 * 24 * 3600


TABLE_FARS = (1.0, 10.0, 100.0, 1000.0)  # false alarms per month


CURVE_FARS = np.logspace(0, 4, 81)  # 1 to 1e4 per month


MCHIRP_POWER = 5.0 / 2.0  # chirp-mass weight of an injection uniform in chirp-distance volume


DEFAULT_PADDING = 30.0  # s at each segment end without counted injections (MLGWSC-1)


SNR_BINS = (0.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0, math.inf)


SECONDS_PER_DAY = 24 * 3600


INTERVAL_LEVEL = 0.90  # every interval reported: false-alarm rate, found fraction, paired comparison


BOOTSTRAP_RESAMPLES = 2000  # resamples of the injections behind a paired comparison


BOOTSTRAP_SEED = 0  # fixed: the same inputs give the same comparison interval


SNR50_RESAMPLES = 400  # bootstrap resamples behind the interval of the SNR of half found (a fit each)


INTERVALS = {  # what each reported uncertainty is (summary.json "intervals")
    "level": INTERVAL_LEVEL,
    "far": "central interval on the Poisson rate of the background triggers louder than the threshold "
           "(Garwood's exact interval from chi-squared quantiles), per month",
    "found_fraction": "Clopper-Pearson (exact binomial) interval on found / injections",
    "volume_error": "one standard error of the Monte Carlo sensitive volume (MLGWSC-1's binomial formula)",
    "distance_error": "one standard error propagated from the volume: d * volume_error / (3 V)",
    "comparison": f"percentile bootstrap over injections ({BOOTSTRAP_RESAMPLES} resamples with "
                  f"replacement, seed {BOOTSTRAP_SEED}), each search at its own fixed threshold",
}


INJECTION_KEYS_NEEDED = ("tc", "distance", "mass1", "mass2")


def poisson_interval(count: int | np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[Any, Any]:
    """Central ``level`` interval on the mean of a Poisson count (Garwood 1936: chi-squared
    quantiles; the lower end is 0 for no events). 90%: 1 event gives [0.0513, 4.744]. Floats for
    one count, arrays for an array of counts."""
    from scipy.stats import chi2

    counts = np.asarray(count, dtype=np.float64)
    tail = (1.0 - level) / 2.0
    lower = np.where(counts > 0, chi2.ppf(tail, 2 * np.maximum(counts, 1.0)) / 2.0, 0.0)
    upper = chi2.ppf(1.0 - tail, 2 * counts + 2) / 2.0
    if counts.ndim == 0:
        return float(lower), float(upper)
    return lower, upper


def binomial_interval(found: int, n: int, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """Clopper-Pearson interval on a fraction ``found / n`` (NaN for n = 0): exact, never narrower
    than the coverage asks; at ``found == n`` the lower end is ``((1 - level) / 2)^(1/n)``."""
    from scipy.stats import beta

    if n <= 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    lower = 0.0 if found <= 0 else float(beta.ppf(tail, found, n - found + 1))
    upper = 1.0 if found >= n else float(beta.ppf(1.0 - tail, found + 1, n - found))
    return lower, upper


def distance_error(distance: np.ndarray | float, volume: np.ndarray | float,
                   volume_error: np.ndarray | float) -> np.ndarray:
    """Standard error of the sensitive distance propagated from its volume's:
    ``d = (3 V / 4 pi)^(1/3)`` gives ``sigma_d = d sigma_V / (3 V)``; NaN where V = 0."""
    distance, volume, volume_error = (np.asarray(a, dtype=np.float64) for a in (distance, volume, volume_error))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(volume > 0, distance * volume_error / (3.0 * volume), math.nan)


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
    weight: np.ndarray | None = None  # per injection: its weight in the sensitive volume
    norm: float = 1.0  # N w_max
    v_total: float = math.nan  # 4/3 pi d_max^3

    @property
    def distance_error(self) -> np.ndarray:
        return distance_error(self.distance, self.volume, self.volume_error)

    @property
    def lowest_reachable_per_month(self) -> float:
        """The lowest false-alarm rate the background measures: one background trigger expected
        over its length (NaN without background triggers)."""
        if len(self.thresholds) == 0:
            return math.nan
        return SECONDS_PER_MONTH / self.background_duration

    def threshold_index(self, per_month: float) -> int | None:
        """Index of the lowest background threshold whose rate is at most ``per_month``; None
        when the background is too short to measure the rate (fewer than one background trigger
        expected at it)."""
        allowed = per_month * self.background_duration / SECONDS_PER_MONTH * (1 + 1e-12)
        if allowed < 1 or len(self.thresholds) == 0:
            return None
        louder = len(self.thresholds) - 1 - np.arange(len(self.thresholds))  # triggers above each
        return int(np.flatnonzero(louder <= allowed)[0])

    def at_far(self, per_month: float) -> dict[str, Any]:
        """Sensitive distance, volume and found fraction at a false-alarm rate (per month): the
        lowest background threshold whose rate is at most that; with their errors and what the
        rate rests on: the background length, the number of background triggers louder than the
        threshold and the Poisson interval on the rate they measure. NaN (and ``reached``
        False) when the background is too short to measure the rate."""
        basis = {"reached": False, "background_seconds": float(self.background_duration),
                 "background_days": float(self.background_duration) / SECONDS_PER_DAY,
                 "lowest_reachable_per_month": self.lowest_reachable_per_month}
        i = self.threshold_index(per_month)
        if i is None:
            return {"distance": math.nan, "volume": math.nan, "volume_error": math.nan,
                    "fraction": math.nan, "threshold": math.nan, "distance_error": math.nan,
                    "found": math.nan, "injections": self.n_injections,
                    "fraction_interval": [math.nan, math.nan], "louder_background": math.nan,
                    "measured_far_per_month": math.nan, "far_interval_per_month": [math.nan, math.nan],
                    **basis}
        louder = len(self.thresholds) - 1 - i
        months = self.background_duration / SECONDS_PER_MONTH
        found = int(np.sum(self.found_stat > self.thresholds[i]))
        return {"distance": float(self.distance[i]), "volume": float(self.volume[i]),
                "volume_error": float(self.volume_error[i]), "fraction": float(self.fraction[i]),
                "threshold": float(self.thresholds[i]),
                "distance_error": float(distance_error(self.distance[i], self.volume[i],
                                                       self.volume_error[i])), "found": found,
                "injections": self.n_injections,
                "fraction_interval": list(binomial_interval(found, self.n_injections)),
                "louder_background": louder, "measured_far_per_month": louder / months,
                "far_interval_per_month": [v / months for v in poisson_interval(louder)],
                **basis, "reached": True}


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


def injection_weights(distance: np.ndarray, mchirp: np.ndarray | None = None
                      ) -> tuple[np.ndarray, float, float]:
    """``(w per injection, N w_max, 4/3 pi d_max^3)``: what turns the weights of the found
    injections into a sensitive volume (:func:`volume_of`)."""
    n = len(distance)
    v_total = 4.0 / 3.0 * math.pi * float(np.max(distance)) ** 3
    weight = np.ones(n) if mchirp is None else mchirp ** MCHIRP_POWER
    norm = n * (1.0 if mchirp is None else float(np.max(mchirp)) ** MCHIRP_POWER)
    return weight, norm, v_total


def volume_of(weight_sum: np.ndarray | float, norm: float, v_total: float) -> np.ndarray:
    """Sensitive volume ``V_total sum_found w / (N w_max)`` from the found injections' weights."""
    return v_total * np.asarray(weight_sum, dtype=np.float64) / norm


def distance_of(volume: np.ndarray | float) -> np.ndarray:
    """Sensitive distance ``(3 V / 4 pi)^(1/3)``."""
    return (3.0 * np.asarray(volume, dtype=np.float64) / (4.0 * math.pi)) ** (1.0 / 3.0)


def sensitivity(found_stat: np.ndarray, thresholds: np.ndarray, distance: np.ndarray,
                mchirp: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Sensitive volume, its standard error, distance (and its error propagated from the volume's)
    and found fraction at each threshold (an injection counts when its found stat is strictly
    louder)."""
    n = len(distance)
    weight, norm, v_total = injection_weights(distance, mchirp)
    order = np.argsort(found_stat, kind="stable")
    stats_sorted = found_stat[order]
    first_louder = np.searchsorted(stats_sorted, thresholds, side="right")
    tail = lambda values: np.concatenate([np.cumsum(values[order][::-1])[::-1], [0.0]])  # noqa: E731
    weight_sum = tail(weight)[first_louder]
    count = tail(np.ones(n))[first_louder]
    volume = volume_of(weight_sum, norm, v_total)
    if mchirp is None:
        variance_sum = n * (count / n - (count / n) ** 2)
    else:
        effective_n = float(np.sum((np.max(mchirp) / mchirp) ** MCHIRP_POWER))
        variance = tail(weight ** 2)[first_louder] / effective_n - (weight_sum / effective_n) ** 2
        variance_sum = effective_n * variance
    volume_error = v_total / norm * np.sqrt(np.maximum(variance_sum, 0.0))
    distance = distance_of(volume)
    return {"volume": volume, "volume_error": volume_error, "distance": distance,
            "distance_error": distance_error(distance, volume, volume_error), "fraction": count / n}


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
    weight, norm, v_total = injection_weights(distance, mchirp)
    far_lower, far_upper = poisson_interval(len(thresholds) - np.arange(len(thresholds)) - 1)
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
        "sensitive-distance-error": numbers["distance_error"],
        "far-lower": far_lower / duration, "far-upper": far_upper / duration,  # Poisson, INTERVAL_LEVEL
    }
    return SearchResult(label, len(tc), foreground_duration, duration, found_stat, far, thresholds,
                        numbers["volume"], numbers["volume_error"], numbers["distance"],
                        numbers["fraction"], extra, weight, norm, v_total)


def found_fraction_by_snr(result: SearchResult, snr: np.ndarray, per_month: float | None
                          ) -> list[dict[str, Any]]:
    """Found fraction in bins of optimal network SNR (``SNR_BINS``: up to and above 30), at a
    false-alarm rate (None: any trigger); each non-empty bin with its injections ``n``, ``found``
    and the Clopper-Pearson interval on the fraction."""
    if per_month is None:
        found = np.isfinite(result.found_stat)
    else:
        i = result.threshold_index(per_month)
        found = result.found_stat > result.thresholds[i] if i is not None else np.zeros(len(snr), bool)
    rows = []
    for low, high in zip(SNR_BINS[:-1], SNR_BINS[1:]):
        in_bin = (snr >= low) & (snr < high)
        if in_bin.any():
            n, k = int(in_bin.sum()), int(found[in_bin].sum())
            rows.append({"snr_low": low, "snr_high": high, "n": n, "found_fraction": k / n,
                         "found": k, "found_fraction_interval": list(binomial_interval(k, n))})
    return rows


def _logistic_fits(x: np.ndarray, y: np.ndarray, counts: np.ndarray, iterations: int = 100
                   ) -> np.ndarray:
    """Maximum-likelihood ``(b0, b1)`` of ``P(found) = 1 / (1 + exp(-(b0 + b1 x)))``, one fit per
    row of ``counts`` (how often each injection is drawn): Newton's method, vectorised over rows
    (the log-likelihood is concave; separable data diverge and give non-finite values)."""
    from scipy.special import expit

    b = np.zeros((counts.shape[0], 2))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(iterations):
            p = expit(b[:, :1] + b[:, 1:] * x)
            w = counts * p * (1.0 - p)
            r = counts * (y - p)
            g0, g1 = r.sum(1), (r * x).sum(1)
            h00, h01, h11 = w.sum(1), (w * x).sum(1), (w * x * x).sum(1)
            det = h00 * h11 - h01 ** 2
            step = np.stack([(h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det], axis=1)
            b = b + step
            if np.all(np.abs(step[np.isfinite(step)]) < 1e-10):
                break
    return b


def _snr50_of(fits: np.ndarray) -> np.ndarray:
    """``exp(-b0 / b1)``: where the fitted found fraction crosses one half (NaN unless rising)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        value = np.exp(-fits[:, 0] / fits[:, 1])
    return np.where(np.isfinite(value) & (fits[:, 1] > 0), value, np.nan)


def snr50(snr: np.ndarray, found: Sequence[np.ndarray], resamples: int = SNR50_RESAMPLES,
          seed: int = BOOTSTRAP_SEED, level: float = INTERVAL_LEVEL) -> dict[str, Any]:
    """The optimal network SNR at which each search finds half the injections, from a logistic
    fit of found against ln SNR: where two searches differ "in SNR units". ``found`` holds one
    boolean mask per search over the same injections; the interval is a percentile bootstrap over
    the injections, the same resamples for every search, so the difference of two is paired too.
    Injections without a finite positive SNR are left out; NaN where a fit has no crossing (all
    found, none found, or perfectly separated)."""
    keep = np.isfinite(snr) & (snr > 0)
    x = np.log(snr[keep])
    masks = [np.asarray(f, dtype=bool)[keep].astype(np.float64) for f in found]
    n = len(x)
    if n == 0:
        nan = {"snr50": math.nan, "interval": [math.nan, math.nan]}
        return {"injections": 0, "searches": [dict(nan) for _ in masks],
                "difference": math.nan, "difference_interval": [math.nan, math.nan]}
    rng = np.random.default_rng(seed)
    counts = np.vstack([np.ones(n)] + [np.bincount(rng.integers(0, n, n), minlength=n)
                                       for _ in range(resamples)]).astype(np.float64)
    values = [_snr50_of(_logistic_fits(x, y, counts)) for y in masks]
    tails = [(1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0]

    def interval(v: np.ndarray) -> list[float]:
        v = v[np.isfinite(v)]
        return [float(q) for q in np.quantile(v, tails)] if len(v) > resamples // 2 else [math.nan, math.nan]

    out: dict[str, Any] = {"injections": int(n), "resamples": int(resamples), "level": level,
                           "searches": [{"snr50": float(v[0]), "interval": interval(v[1:])} for v in values]}
    if len(values) == 2:
        diff = values[1] - values[0]
        out.update(difference=float(diff[0]), difference_interval=interval(diff[1:]))
    return out


def compare_searches(reference: SearchResult, other: SearchResult, per_month: float,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     level: float = INTERVAL_LEVEL, snr: np.ndarray | None = None) -> dict[str, Any]:
    """Does ``other`` beat ``reference`` at ``per_month`` false alarms per month: the ratio
    ``d_other / d_reference`` and difference ``d_other - d_reference`` of their sensitive
    distances, each with a paired percentile-bootstrap interval over the injections (resampled
    with replacement, the same resample for both searches; each search keeps its own threshold at
    that rate, so the interval holds the background fixed: it is the injections' part of the
    uncertainty). Both must be evaluated on the same injections. A resample in which neither search
    finds anything has no ratio and is left out (counted in ``undefined_resamples``). With the
    injections' optimal ``snr``, also the gap in SNR units: each search's :func:`snr50` and their
    difference (``other`` minus ``reference``) with a paired interval."""
    same = (reference.n_injections == other.n_injections
            and np.array_equal(reference.extra.get("injection-indices"), other.extra.get("injection-indices"))
            and np.array_equal(reference.weight, other.weight) and reference.v_total == other.v_total)
    if not same:
        raise G2NetError(f"{other.label} and {reference.label} were not evaluated on the same "
                         "injections; a paired comparison needs one injection set")
    entry: dict[str, Any] = {
        "reference": reference.label, "search": other.label, "per_month": float(per_month),
        "reached": False, "injections": reference.n_injections, "level": level,
        "resamples": int(resamples), "seed": int(seed),
        "reference_background_seconds": float(reference.background_duration),
        "search_background_seconds": float(other.background_duration),
        "distance_reference": math.nan, "distance_search": math.nan,
        "distance_ratio": math.nan, "distance_ratio_interval": [math.nan, math.nan],
        "distance_difference": math.nan, "distance_difference_interval": [math.nan, math.nan],
        "undefined_resamples": 0}
    i, j = reference.threshold_index(per_month), other.threshold_index(per_month)
    if i is None or j is None:
        return entry
    weight_ref = reference.weight * (reference.found_stat > reference.thresholds[i])
    weight_other = other.weight * (other.found_stat > other.thresholds[j])

    def distances(sum_ref, sum_other):
        return (distance_of(volume_of(sum_ref, reference.norm, reference.v_total)),
                distance_of(volume_of(sum_other, other.norm, other.v_total)))

    d_ref, d_other = distances(weight_ref.sum(), weight_other.sum())
    rng = np.random.default_rng(seed)
    n = reference.n_injections
    sums_ref, sums_other = np.empty(resamples), np.empty(resamples)
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, resamples, chunk):
        take = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        sums_ref[start:start + len(take)] = weight_ref[take].sum(axis=1)
        sums_other[start:start + len(take)] = weight_other[take].sum(axis=1)
    boot_ref, boot_other = distances(sums_ref, sums_other)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = boot_other / boot_ref
        ratio = float(d_other / d_ref) if d_ref > 0 or d_other > 0 else math.nan
    tails = [(1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0]
    defined = ~np.isnan(ratios)
    # order statistics of the resamples (no interpolation: a search against itself gives exactly 1)
    quantile = lambda values: [float(v) for v in np.quantile(values, tails, method="inverted_cdf")]  # noqa: E731
    entry.update({
        "reached": True, "distance_reference": float(d_ref), "distance_search": float(d_other),
        "distance_ratio": ratio,
        "distance_ratio_interval": quantile(ratios[defined]) if defined.any() else [math.nan, math.nan],
        "distance_difference": float(d_other - d_ref),
        "distance_difference_interval": quantile(boot_other - boot_ref),
        "undefined_resamples": int((~defined).sum())})
    if snr is not None:
        gap = snr50(snr, [reference.found_stat > reference.thresholds[i],
                          other.found_stat > other.thresholds[j]], seed=seed, level=level)
        entry.update(snr50_reference=gap["searches"][0]["snr50"], snr50_search=gap["searches"][1]["snr50"],
                     snr50_difference=gap["difference"],
                     snr50_difference_interval=gap["difference_interval"])
    return entry


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
                if snr.inputs is not None:  # what --optimal-snr-from checks before reusing them
                    f.attrs["optimal_snr_inputs"] = snr.inputs
            f.attrs["label"] = result.label
            f.attrs["interval_level"] = INTERVAL_LEVEL  # far-lower/far-upper: Poisson (Garwood)
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

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    level = f"{INTERVAL_LEVEL:.0%}"
    for result in results:
        rows = [result.at_far(f) for f in CURVE_FARS]
        distance = np.array([r["distance"] for r in rows])
        error = np.array([r["distance_error"] for r in rows])
        line, = left.plot(CURVE_FARS, distance, label=f"{result.label} (background "
                          f"{result.background_duration / SECONDS_PER_DAY:.3g} days)")
        color = line.get_color()
        left.fill_between(CURVE_FARS, distance - error, distance + error, color=color, alpha=0.2,
                          linewidth=0)
        drawn = set()
        for f in TABLE_FARS:  # the table's rates: distance +- 1 s.e., rate with its Poisson interval
            row = result.at_far(f)
            if not row["reached"] or row["threshold"] in drawn:
                continue
            drawn.add(row["threshold"])
            x = row["measured_far_per_month"] if row["measured_far_per_month"] > 0 else f
            low, high = row["far_interval_per_month"]
            left.errorbar([x], [row["distance"]], yerr=[[row["distance_error"]], [row["distance_error"]]],
                          xerr=[[max(x - max(low, x / 100), 0.0)], [max(high - x, 0.0)]], color=color, marker="o",
                          markersize=4, capsize=2, linewidth=1)
            left.annotate(f"{row['louder_background']}", (x, row["distance"]), textcoords="offset points",
                          xytext=(3, -10), fontsize=6, color=color)
        lowest = result.lowest_reachable_per_month
        if math.isfinite(lowest):
            left.axvline(lowest, color=color, linestyle=":", linewidth=1)
    left.set(xscale="log", xlabel="false alarms per month", ylabel="sensitive distance [Mpc]",
             title="sensitive distance (MLGWSC-1 definition)")
    fig.text(0.01, 0.01, fill("left: band, sensitive distance +- 1 standard error (propagated from the "
                              "volume's); points, the thresholds of 1, 10, 100, 1000/month at the rate "
                              f"they measure with its {level} Poisson interval, labelled with the number "
                              "of background triggers louder; dotted, the lowest rate each background "
                              "measures. right: found/n per bin of optimal SNR with its "
                              f"{level} Clopper-Pearson interval.", 200), fontsize=7, va="bottom")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    for k, (label, rows) in enumerate(snr_tables.items()):  # searches side by side in each bin
        dodge = 0.4 * (k - (len(snr_tables) - 1) / 2)
        centres = np.array([(r["snr_low"] + min(r["snr_high"], 60.0)) / 2 + dodge for r in rows])
        fractions = np.array([r["found_fraction"] for r in rows])
        bounds = np.array([r["found_fraction_interval"] for r in rows]).reshape(-1, 2)
        # yerr as one (2, n) array: a list of two length-1 arrays is deprecated in numpy (one SNR bin)
        yerr = np.vstack([fractions - bounds[:, 0], bounds[:, 1] - fractions])
        bars = right.errorbar(centres, fractions, yerr=yerr, marker="o", capsize=2, label=label)
        for x, y, r in zip(centres, fractions, rows):
            right.annotate(f"{r['found']}/{r['n']}", (x, y), textcoords="offset points", xytext=(3, 4),
                           fontsize=6, color=bars[0].get_color())
    edges = [edge for edge in SNR_BINS if math.isfinite(edge)]
    right.set_xticks(edges)
    right.set_xlim(0.0, 60.0)  # the bin above the last edge is drawn at (edge + 60) / 2
    right.tick_params(axis="x", labelsize=7)
    where = "" if snr is None else f" ({snr.label})"
    right.set(xlabel=f"optimal network SNR{where}", ylabel="found fraction", ylim=(-0.02, 1.02),
              title=f"found at the lowest false-alarm rate measured ({level} Clopper-Pearson)")
    right.grid(alpha=0.3)
    if snr_tables:
        right.legend()
    if snr is not None and (snr.network is None or not np.isfinite(snr.network).any()):
        right.text(0.5, 0.5, fill(f"no optimal SNRs: {snr.detail}", 50), transform=right.transAxes,
                   ha="center", va="center", fontsize=9)
    elif snr is not None and not np.isfinite(snr.network).all():
        right.text(0.02, 0.02, fill(f"optimal SNRs {snr.detail.split(': ')[0]} ({snr.detail.split('; ')[-1]})", 70),
                   transform=right.transAxes, ha="left", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0.0, 0.05, 1.0, 1.0))
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
                fg_files: Sequence[str], fg_attrs: Sequence[dict],
                bg_files: Sequence[str], bg_attrs: Sequence[dict]) -> list[str]:
    """Injections, foreground strain and the strain each foreground trigger file searched (its
    ``strain_run_id``, when it records one) must come from one simulate_strain.py run. A background
    may come from another run (other noise of the same simulator: a longer background than the
    foreground's own), but only from noise: a searched foreground would count its injections as
    false alarms. Returns the other runs the background came from."""
    reference = run_id_of(injection_file)
    check_same_run([(injection_file, reference), *strains])
    if reference is None:
        return []

    def other_run(path: str, searched: str, hint: str = "") -> G2NetError:
        return G2NetError(f"{path} is a search of strain from simulate_strain.py run {searched}, but "
                          f"{injection_file} is from run {reference}; search the strain that goes "
                          f"with these injections{hint}")

    for path, attrs in zip(fg_files, fg_attrs):
        searched = attr_text(attrs.get("strain_run_id"))
        if searched is not None and searched != reference:
            raise other_run(path, searched)
    other_runs = set()
    for path, attrs in zip(bg_files, bg_attrs):
        searched = attr_text(attrs.get("strain_run_id"))
        kind = _searched_kind(attrs, searched)
        if kind == "foreground":
            raise G2NetError(f"{path} is a search of a foreground ({attrs.get('input')}), whose injections "
                             "would count as false alarms; search the background.hdf of a "
                             "simulate_strain.py run for --background-events")
        if searched is None or searched == reference:
            continue
        if kind != "background":
            raise other_run(path, searched, " (or, for a background, the noise-only background.hdf "
                                            "of another run)")
        other_runs.add(searched)
    return sorted(other_runs)


def _searched_kind(attrs: dict, searched: str | None) -> str | None:
    """The kind of strain a trigger file searched: recorded (``strain_kind``), or read from the
    strain file it names (``input``) while that file is still the one searched (same run)."""
    kind = attr_text(attrs.get("strain_kind"))
    if kind is not None or searched is None:
        return kind
    source = Path(attr_text(attrs.get("input")) or "")
    try:
        if source.is_file() and run_id_of(source) == searched:
            return strain_kind_of(source)
    except OSError:
        return None
    return None


def run(injection_file: str, foreground_files: Sequence[str], foreground_events: Sequence[Sequence[str]],
        background_events: Sequence[Sequence[str]], labels: Sequence[str] | None = None,
        out: str | Path = "search_evaluation", padding: float = DEFAULT_PADDING,
        compute_snr: bool = True, snr_from: str | Path | None = None) -> dict[str, Any]:
    """Evaluate one or more searches; write the outputs under ``out``; return the summary.
    ``snr_from``: a ``<label>.hdf`` of an earlier evaluation whose computed optimal SNRs to reuse.

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
              *(p for files in background_events for p in files), *([snr_from] if snr_from else [])]
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
    if snr_from is None:
        snr_info = injection_snr(injection_file, injections, foreground_files, inside, compute_snr)
    elif "snr_network" in injections:
        raise G2NetError(f"--optimal-snr-from: {injection_file} records its own optimal SNRs "
                         "(snr_network); leave the option out")
    else:
        snr_info = reuse_snrs(snr_from, injection_file, foreground_files, inside)
    snr = snr_info.network
    results, snr_tables = [], {}
    summary: dict[str, Any] = {"optimal_snr": {
        "source": snr_info.source, "detail": snr_info.detail,
        "injections_with_snr": 0 if snr is None else int(np.isfinite(snr).sum())}, "searches": {},
        "intervals": dict(INTERVALS)}
    for label, fg_files, bg_files in zip(labels, foreground_events, background_events):
        foreground, fg_attrs = _concat(fg_files)
        background, bg_attrs = _concat(bg_files)
        other_runs = _check_runs(injection_file, strains, fg_files, fg_attrs, bg_files, bg_attrs)
        result = evaluate(label, injections, inside, foreground_duration, foreground, background,
                          background_duration_of(bg_files, bg_attrs))
        results.append(result)
        entry: dict[str, Any] = {
            "injections": result.n_injections, "found_any": int(np.isfinite(result.found_stat).sum()),
            "foreground_seconds": foreground_duration, "background_seconds": result.background_duration,
            "background_triggers": len(result.thresholds),
            "at_far_per_month": {f"{f:g}": result.at_far(f) for f in TABLE_FARS},
            "background_days": result.background_duration / SECONDS_PER_DAY,
            "lowest_reachable_per_month": result.lowest_reachable_per_month,
            # noise of other simulate_strain.py runs than the foreground's (none: its own run)
            "background_other_runs": other_runs}
        if snr is not None:
            reached = [f for f in TABLE_FARS if math.isfinite(result.at_far(f)["threshold"])]
            for f in reached:
                entry[f"found_fraction_by_snr_at_{f:g}_per_month"] = found_fraction_by_snr(result, snr, f)
                half = snr50(snr, [result.found_stat > result.at_far(f)["threshold"]])
                entry[f"snr50_at_{f:g}_per_month"] = half["searches"][0]
            entry["found_fraction_by_snr_any"] = found_fraction_by_snr(result, snr, None)
            # the plot shows the lowest false-alarm rate the background measures
            far = reached[0] if reached else None
            snr_tables[f"{label} ({f'{far:g}/month' if far else 'any trigger'})"] = \
                found_fraction_by_snr(result, snr, far)
        summary["searches"][label] = entry
    comparisons = [compare_searches(a, b, f, snr=snr) for k, a in enumerate(results)
                   for b in results[k + 1:] for f in TABLE_FARS]
    if comparisons:
        summary["comparisons"] = comparisons
    entries = summary["searches"]
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
    print_table(results, snr_info, snr_tables, comparisons, entries)
    return summary


def _interval(bounds: Sequence[float], digits: int = 2) -> str:
    return f"[{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"


def print_table(results: Sequence[SearchResult], snr: InjectionSNR | None = None,
                snr_tables: dict[str, list] | None = None,
                comparisons: Sequence[dict[str, Any]] = (),
                entries: dict[str, dict[str, Any]] | None = None) -> None:
    level = f"{INTERVAL_LEVEL:.0%}"
    header = "search".ljust(20) + "".join(f"{f'{f:g}/month':>20}" for f in TABLE_FARS)
    print("sensitive distance [Mpc] +- 1 s.e. (found fraction) at a false-alarm rate")
    print(header)
    for result in results:
        cells = []
        for f in TABLE_FARS:
            row = result.at_far(f)
            cells.append("not reached".rjust(20) if not row["reached"] else
                         f"{row['distance']:.0f} +- {row['distance_error']:.0f} ({row['fraction']:.2f})".rjust(20))
        print(result.label[:20].ljust(20) + "".join(cells))
    for result in results:
        days = result.background_duration / SECONDS_PER_DAY
        print(f"{result.label}: {result.n_injections} injections, "
              f"{int(np.isfinite(result.found_stat).sum())} found by any trigger; background "
              f"{result.background_duration:.0f} s = {days:.4g} days = "
              f"{result.background_duration / SECONDS_PER_MONTH:.3g} months ({len(result.thresholds)} "
              f"triggers); lowest rate it measures {result.lowest_reachable_per_month:.3g}/month "
              "('not reached' below)")
        others = (entries or {}).get(result.label, {}).get("background_other_runs")
        if others:
            print(f"  its background is noise of simulate_strain.py run {', '.join(others)}, "
                  "not of the foreground's run (same simulator, other noise)")
        columns = ["rate/month", "bg louder", f"measured rate/month [{level} Poisson]",
                   "distance +- s.e. [Mpc]", "volume +- s.e. [Mpc^3]", "found/n",
                   f"fraction [{level} Clopper-Pearson]"]
        lines = []
        for f in TABLE_FARS:
            row = result.at_far(f)
            if not row["reached"]:
                lines.append([f"{f:g}", "not reached: fewer than 1 background trigger expected (lowest "
                                        f"rate measured {row['lowest_reachable_per_month']:.3g}/month)"])
                continue
            lines.append([f"{f:g}", f"{row['louder_background']}",
                          f"{row['measured_far_per_month']:.4g} {_interval(row['far_interval_per_month'], 3)}",
                          f"{row['distance']:.0f} +- {row['distance_error']:.0f}",
                          f"{row['volume']:.3g} +- {row['volume_error']:.2g}",
                          f"{row['found']}/{row['injections']}",
                          f"{row['fraction']:.3f} {_interval(row['fraction_interval'], 3)}"])
        widths = [max([len(c)] + [len(line[k]) for line in lines if len(line) == len(columns)])
                  for k, c in enumerate(columns)]
        print("  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths)))
        for line in lines:
            print("  " + "  ".join(c.rjust(w) if len(line) == len(columns) or k == 0 else c
                                   for k, (c, w) in enumerate(zip(line, widths))))
    for c in comparisons:
        if not c["reached"]:
            print(f"{c['search']}/{c['reference']} distance ratio at {c['per_month']:g}/month: not "
                  "measured by both backgrounds")
            continue
        print(f"{c['search']}/{c['reference']} distance ratio {c['distance_ratio']:.3f} "
              f"{_interval(c['distance_ratio_interval'], 3)} at {c['per_month']:g}/month; difference "
              f"{c['distance_difference']:+.0f} {_interval(c['distance_difference_interval'], 0)} Mpc "
              f"({level} paired bootstrap over {c['injections']} injections, {c['resamples']} resamples, "
              "thresholds fixed)" + ("" if c["reference_background_seconds"] == c["search_background_seconds"]
                                     else f"; backgrounds differ: {c['reference_background_seconds'] / SECONDS_PER_DAY:.4g}"
                                          f" and {c['search_background_seconds'] / SECONDS_PER_DAY:.4g} days"))
        if "snr50_difference" in c:
            print(f"  SNR of half found: {c['search']} {c['snr50_search']:.2f}, {c['reference']} "
                  f"{c['snr50_reference']:.2f}, difference {c['snr50_difference']:+.2f} "
                  f"{_interval(c['snr50_difference_interval'])} (paired bootstrap)")
    for label, entry in (entries or {}).items():
        halves = [(key.split("_")[2], value) for key, value in entry.items() if key.startswith("snr50_at_")]
        if halves:
            print(f"{label}: optimal SNR at which half are found (logistic fit, {level} bootstrap): " +
                  ", ".join(f"{v['snr50']:.2f} {_interval(v['interval'])} at {f}/month" for f, v in halves))
    if snr is None:
        return
    if not any(snr_tables.values()):
        print(f"found fraction by optimal network SNR: none ({snr.detail})")
        return
    present = {(r["snr_low"], r["snr_high"]) for rows in snr_tables.values() for r in rows}
    bins = [b for b in zip(SNR_BINS[:-1], SNR_BINS[1:]) if b in present or b[0] >= 30.0]
    print(f"found fraction by optimal network SNR, {snr.label} (found/n fraction "
          f"[{level} Clopper-Pearson]):\n  {snr.detail}")
    width = max(26, *(len(label) + 2 for label in snr_tables))
    print("SNR".ljust(8) + "".join(label.rjust(width) for label in snr_tables))
    for low, high in bins:
        cells = []
        for rows in snr_tables.values():
            row = next((r for r in rows if (r["snr_low"], r["snr_high"]) == (low, high)), None)
            cells.append(("none" if row is None else
                          f"{row['found']}/{row['n']} {row['found_fraction']:.2f} "
                          f"{_interval(row['found_fraction_interval'])}").rjust(width))
        name = f"{low:g}-{high:g}" if math.isfinite(high) else f">{low:g}"
        print(name.ljust(8) + "".join(cells))
