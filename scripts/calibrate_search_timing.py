"""Calibrate where a search puts its triggers, on strain it will not be judged on.

``python scripts/calibrate_search_timing.py --injections CAL/injections.hdf --events CAL_EVENTS.hdf
[--min-snr 12] [--window 2.5] [--coverage 0.99]``

A network that ends in a global pool reports a window, not a merger time: ``search.py`` turns a
window into ``time`` with ``--merger-offset`` and states its uncertainty with ``--var``. Run the
search once over a calibration stretch (its own seed) with injections, then this script: for
every injection above ``--min-snr`` it takes the loudest trigger within ``--window`` s of ``tc``
and prints the median error (time - tc), the half-width around it holding ``--coverage`` of the
errors, and the ``--merger-offset`` and ``--var`` that centre and cover them. Tuning on the
strain a search is evaluated on would flatter it; this is why the stretch is separate. The offset
holds for the trigger timing the calibration search used (``--trigger-time``, recorded in the
trigger file): the printed options repeat it, so that the measured searches time triggers alike.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g2net.search.evaluation import read_injections  # noqa: E402
from g2net.search.injection_snr import injection_snr  # noqa: E402
from g2net.search.triggers import read_triggers  # noqa: E402
from utils import G2NetError, cli_errors, finite_float, float_in, positive_float  # noqa: E402


def timing_errors(tc: np.ndarray, time: np.ndarray, stat: np.ndarray, window: float) -> np.ndarray:
    """``time - tc`` of the loudest trigger within ``window`` s of each ``tc`` (NaN: none)."""
    order = np.argsort(time)
    time, stat = time[order], stat[order]
    errors = np.full(len(tc), np.nan)
    for i, t in enumerate(tc):
        lo, hi = np.searchsorted(time, [t - window, t + window])
        if hi > lo:
            errors[i] = time[lo + int(np.argmax(stat[lo:hi]))] - t
    return errors


def calibrate(errors: np.ndarray, used_offset: float, coverage: float) -> dict[str, float]:
    """The merger offset that centres the errors and the var that covers ``coverage`` of them."""
    errors = errors[np.isfinite(errors)]
    if len(errors) < 10:
        raise G2NetError(f"only {len(errors)} injections have a trigger nearby; calibrate on a "
                         "longer stretch or with a lower --min-snr")
    median = float(np.median(errors))
    return {"injections": len(errors), "median_error": median,
            "p05": float(np.quantile(errors, 0.05)), "p95": float(np.quantile(errors, 0.95)),
            "merger_offset": used_offset - median,
            "var": float(np.quantile(np.abs(errors - median), coverage))}


@cli_errors
def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--injections", required=True, help="injections.hdf of the calibration strain")
    parser.add_argument("--events", required=True, help="the search's triggers on that strain")
    parser.add_argument("--min-snr", type=finite_float, default=12.0, help="optimal network SNR above which "
                                                                   "injections are used")
    parser.add_argument("--window", type=positive_float, default=2.5, help="s around tc to look for a trigger")
    parser.add_argument("--coverage", type=float_in(0.0, 1.0), default=0.99,
                        help="fraction of errors var covers (0.99: an injection the search finds is "
                             "hardly ever lost to its timing; noise triggers are too rare near the "
                             "thresholds that matter for a wider var to count them)")
    parser.add_argument("--foreground", default=None, help="the strain the events searched, for "
                        "injection files without optimal SNRs (MLGWSC-1's); default: the events' "
                        "input attribute")
    args = parser.parse_args(argv)
    injections = read_injections(args.injections)
    time, stat, _, attrs = read_triggers(args.events)
    if "merger_offset" not in attrs:
        raise G2NetError(f"{args.events} does not record the merger offset it was searched with; "
                         "search it again with this version of search.py")
    loud = np.asarray(calibration_snrs(args.injections, injections, args.foreground or attrs.get("input")),
                      dtype=np.float64) > args.min_snr  # NaN (no SNR: outside the strain) is not loud
    errors = timing_errors(injections["tc"][loud], time, stat, args.window)
    result = calibrate(errors, float(attrs["merger_offset"]), args.coverage)
    print(f"{result['injections']} injections above SNR {args.min_snr:g}: trigger - tc median "
          f"{result['median_error']:+.3f} s (5-95%: {result['p05']:+.3f} to {result['p95']:+.3f} s)")
    print(f"search with {timing_options(attrs)}--merger-offset {result['merger_offset']:.3f} "
          f"--var {result['var']:.3f}")
    return result


def calibration_snrs(injection_file: str, injections: dict, foreground: str | None) -> np.ndarray:
    """Each injection's optimal network SNR: the file's ``snr_network`` (simulate_strain.py), else,
    as for MLGWSC-1's injection files, computed from its parameters against the foreground's PSD
    (:mod:`g2net.search.injection_snr`, as evaluate_search.py does); NaN where none can be had."""
    if "snr_network" in injections:
        return injections["snr_network"]
    if not foreground:
        raise G2NetError(f"{injection_file} records no optimal SNRs (snr_network) and the events do "
                         "not name the strain they searched; give it with --foreground")
    snr = injection_snr(injection_file, injections, [foreground], np.ones(len(injections["tc"]), bool))
    if snr.network is None:
        raise G2NetError(f"{injection_file}: no optimal SNRs to choose the loud injections by ({snr.detail})")
    print(f"optimal SNRs {snr.label} ({snr.detail})")
    return snr.network


def timing_options(attrs: dict) -> str:
    """The ``--trigger-time``/``--plateau-drop`` options the events were searched with (none:
    the default, loudest), which the calibrated offset holds for."""
    if attrs.get("timing", "loudest") == "loudest":
        return ""
    if attrs["timing"] != "plateau":
        raise G2NetError(f"trigger timing {attrs['timing']!r} is not one search.py knows (loudest, "
                         "plateau)")
    return f"--trigger-time plateau --plateau-drop {float(attrs['plateau_drop']):g} "


if __name__ == "__main__":
    main()
