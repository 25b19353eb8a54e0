"""Long continuous strain with injections, in the MLGWSC-1 layout, for searches (search.py).

``python simulate_strain.py --out DIR --duration SECONDS [--detectors H1,L1] [--seed N]
[--approximant NAME] [--segment-duration S --gap G] [--chirp-distance-range MIN MAX]`` writes
- ``DIR/foreground.hdf``: calibrated noise plus an injection every 24 +- 6 s (MLGWSC-1's spacing);
- ``DIR/background.hdf``: independent noise of the same segments, no injections;
- ``DIR/injections.hdf``: one dataset per parameter, one entry per injection: ``tc`` (GPS of the
  geocentric merger), ``distance``, ``chirp_distance``, ``mass1``, ``mass2`` and the other
  ``injections.csv`` columns (spins, sky position, angles, ``snr_<det>``, ``snr_network``).
Every parameter but the distance comes from the simulator's priors (``simulate.Priors``,
``simulate.draw_parameters``); the distance follows MLGWSC-1: chirp distance uniform in volume
between MIN and MAX Mpc, which is what the volume-weighted sensitive distance of
``evaluate_search.py`` assumes. Signals are the simulator's (``simulate.injection_signal``:
PyCBC waveform, LAL projection), optimal SNRs against the noise model's PSD over 20-1000 Hz.

Noise is the simulator's calibrated noise, drawn as one continuous stream per segment: white
Gaussian noise through a fixed FIR filter whose response is the noise model's generating PSD
(:class:`StreamingNoise`), chunk by chunk with the filter's memory carried over, so memory does
not grow with the duration and there is no seam between chunks.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from g2net.search.strain_io import parse_detectors
from g2net.simulation.physics import DEFAULT_APPROXIMANT
from g2net.simulation.priors import Priors
from g2net.simulation.strain import (DEFAULT_CHIRP_DISTANCE, DEFAULT_PADDING, DEFAULT_START, StrainPlan,
                                     plan_segments, simulate_strain)
from utils import G2NetError, cli_errors, finite_float, nonnegative_float, positive_float


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--duration", type=positive_float, required=True, help="seconds of strain (whole)")
    parser.add_argument("--detectors", default="H1,L1", help="comma-separated (H1,L1 as in MLGWSC-1)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same strain and injections")
    parser.add_argument("--approximant", default=DEFAULT_APPROXIMANT,
                        help="any LAL time-domain approximant PyCBC knows")
    parser.add_argument("--segment-duration", type=positive_float, default=None,
                        help="split the strain into segments of at most this many seconds")
    parser.add_argument("--gap", type=nonnegative_float, default=60.0, help="seconds between segments")
    parser.add_argument("--start-time", type=finite_float, default=DEFAULT_START, help="GPS start")
    parser.add_argument("--chirp-distance-range", nargs=2, type=positive_float, metavar=("MIN", "MAX"),
                        default=DEFAULT_CHIRP_DISTANCE,
                        help="chirp distance uniform in volume between these (Mpc)")
    parser.add_argument("--mass-range", nargs=2, type=positive_float, metavar=("MIN", "MAX"),
                        help="component masses, detector-frame Msun, each uniform (simulator default)")
    parser.add_argument("--padding", type=nonnegative_float, default=DEFAULT_PADDING,
                        help="seconds at each segment end without injections")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="sample type in the strain files")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


@cli_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.seed < 0:
        raise G2NetError(f"--seed {args.seed}: must be >= 0")
    priors = Priors()
    if args.mass_range is not None:
        priors = replace(priors, mass_range=tuple(args.mass_range))
    plan = StrainPlan(parse_detectors(args.detectors),
                      plan_segments(args.duration, args.segment_duration, args.gap, args.start_time),
                      args.seed, args.approximant, tuple(args.chirp_distance_range), args.padding, priors)
    summary = simulate_strain(args.out, plan, args.overwrite, not args.no_progress, np.dtype(args.dtype))
    print(f"wrote {summary['seconds']:g} s of {','.join(plan.detectors)} strain in "
          f"{summary['segments']} segment(s) with {summary['injections']} injections to {args.out}")
    return summary


if __name__ == "__main__":
    main()
