"""How good is a search of continuous strain: found injections, false-alarm rate, sensitive distance.

``python evaluate_search.py --injections INJ.hdf --foreground-files FG.hdf --foreground-events EV.hdf
--background-events BG.hdf [--label NAME] [--out DIR]``; repeat ``--foreground-events`` /
``--background-events`` (and ``--label``) once per search to compare several on one plot.

Definitions follow MLGWSC-1 (Schäfer et al. 2023, gwastro/ml-mock-data-challenge-1 evaluate.py):
- the injections counted are those with ``tc`` inside a foreground segment, ``--padding`` (30 s)
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
Outputs in ``--out``: ``<label>.hdf`` per search with MLGWSC-1's output keys (plus a few of ours),
``summary.json``, ``sensitivity.png`` (sensitive distance against false alarms per month, every
search on one plot, and the found fraction by optimal SNR at the lowest of 1, 10, 100, 1000 false
alarms per month that the background measures). Each rate comes with the background length, the
number of background triggers louder than its threshold and a 90% Poisson interval on the rate; the
distance with one standard error (propagated from the volume's), found fractions with 90%
Clopper-Pearson intervals (also by optimal SNR, bins up to and above 30); with two or more searches,
each pair's distance ratio and difference with a 90% paired bootstrap interval over the injections.
Optimal SNRs: the injection file's ``snr_network`` when it records one (simulate_strain.py); else
(MLGWSC-1's injection files) computed for every counted injection from the file's parameters
(PyCBC, static args included) against a Welch PSD of the foreground around it
(``--no-compute-snr`` skips this; ``--optimal-snr-from`` reuses those an earlier evaluation of the
same injection file and foreground computed); the table, summary.json and the figure say which.
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

from g2net.search.evaluation import DEFAULT_PADDING, run
from utils import cli_errors, nonnegative_float


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--injections", "--injection-file", required=True, help="injection HDF5 file")
    parser.add_argument("--foreground-files", nargs="+", required=True,
                        help="the foreground strain file(s) that were searched")
    parser.add_argument("--foreground-events", nargs="+", action="append", required=True,
                        help="trigger file(s) of one search on the foreground; repeat per search")
    parser.add_argument("--background-events", nargs="+", action="append", required=True,
                        help="trigger file(s) of the same search on the background; repeat per search")
    parser.add_argument("--label", action="append", help="name of each search (in order)")
    parser.add_argument("--out", default="search_evaluation", help="output folder")
    parser.add_argument("--padding", type=nonnegative_float, default=DEFAULT_PADDING,
                        help="s at each segment end whose injections are not counted (MLGWSC-1: 30)")
    parser.add_argument("--no-compute-snr", action="store_true",
                        help="when the injection file records no optimal SNRs, do not compute them "
                             "(the found-fraction-by-SNR table and panel stay empty)")
    parser.add_argument("--optimal-snr-from", metavar="LABEL.hdf",
                        help="reuse the optimal SNRs an earlier evaluation of the same injection file "
                             "and foreground computed (its <label>.hdf) instead of computing them again "
                             "(minutes for a day of MLGWSC-1 data)")
    return parser


@cli_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    return run(args.injections, args.foreground_files, args.foreground_events, args.background_events,
               args.label, args.out, args.padding, not args.no_compute_snr, args.optimal_snr_from)


if __name__ == "__main__":
    main()
