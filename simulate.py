"""Simulated G2Net data in the competition layout: PyCBC/LALSuite injections into calibrated noise.

``python simulate.py --out DIR --n-train N --n-test M --seed S [--workers W] [--approximant NAME]``
plus one option per prior (``--help``). Writes the competition layout (``training_labels.csv``,
``sample_submission.csv``, ``train/`` and ``test/`` with ``<id[0]>/<id[1]>/<id[2]>/<id>.npy``
float64 arrays (3, 4096)) and the ground truth (``test_labels.csv``, ``injections.csv``); the same
seed gives the same bytes whatever ``--workers`` (g2net.simulation.pycbc_engine).

``--engine ml4gw`` makes the examples with the online-training generator instead
(g2net.simulation.ml4gw_engine). Banks, for machines without PyCBC (docs/simulator.md,
docs/online.md): ``--write-signal-bank BANK.npz --n-signals K --seed S`` stores K signals,
``--signal-bank BANK.npz`` injects them; ``--write-polarization-bank BANK.npz --n-signals K --seed S
[--approximant IMRPhenomXPHM]`` stores h+/hx for a ``train_source = 'bank'`` config.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from g2net.simulation.physics import DEFAULT_APPROXIMANT
from g2net.simulation.priors import SNR_DISTRIBUTIONS, Priors
from g2net.simulation.pycbc_engine import draw_signal_bank, simulate, write_polarization_bank
from utils import (DETECTORS, EXAMPLE_SHAPE, G2NetError, cap_workers, check_room, cli_errors, cpu_count,
                   finite_float, nonnegative_int, path_arg, positive_int, whole_number)

POLARIZATION_BANK_APPROXIMANT = "IMRPhenomXPHM"  # --write-polarization-bank's default

# Rough sizes behind the refusal of a request the machine cannot hold (check_request): generous, so
# that a refused request would surely have failed, and an accepted one has some margin.
EXAMPLE_FILE_BYTES = 8 * EXAMPLE_SHAPE[0] * EXAMPLE_SHAPE[1] + 128  # one float64 .npy: 98 KB
BANK_SIGNAL_BYTES = 25_000  # one float16 signal or h+/hx pair with its scale and parameters
ROW_BYTES = 4_000  # the injection row each example keeps in memory until the tables are written
WORKER_BYTES = 150_000_000  # one forked worker's own pages (PyCBC/LAL buffers, its results)


def build_parser() -> argparse.ArgumentParser:
    defaults = Priors()

    def default(name: str) -> str:
        value = getattr(defaults, name)
        return "(" + (" ".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"
                      if isinstance(value, float) else str(value)) + ")"

    parser = argparse.ArgumentParser(
        description="Simulate G2Net-format data: BBH injections (PyCBC/LALSuite) into calibrated "
                    "noise; priors documented in docs/simulator.md. Signal banks: "
                    "--write-signal-bank BANK.npz --n-signals K --seed S stores K signals; "
                    "--out DIR --n-train N --n-test M --seed S --signal-bank BANK.npz injects them "
                    "into fresh noise without PyCBC.")
    parser.add_argument("--out", type=path_arg, help="output folder (the competition layout)")
    parser.add_argument("--n-train", type=nonnegative_int, help="training examples")
    parser.add_argument("--n-test", type=nonnegative_int, help="test examples")
    parser.add_argument("--seed", type=nonnegative_int, required=True, help="master seed: same seed, same bytes")
    parser.add_argument("--workers", type=positive_int, default=min(cpu_count(), 8),
                        help="processes, at most the machine's CPUs (the output does not depend on it)")
    parser.add_argument("--detectors", default=",".join(DETECTORS),
                        help="the detector network, comma-separated (H1,L1 as in MLGWSC-1); rows of "
                             "other detectors are zero and the SNR prior is over the network")
    parser.add_argument("--approximant", default=None,
                        help=f"any LAL time-domain approximant PyCBC knows ({DEFAULT_APPROXIMANT})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace competition files in --out that simulate.py did not write "
                             "(an earlier simulation is always replaced)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--engine", choices=("pycbc", "ml4gw"), default="pycbc",
                        help="pycbc (default): PyCBC/LALSuite per example on --workers processes; "
                             "ml4gw: the online training generator (g2net.simulation.ml4gw_engine), "
                             "batched in torch "
                             "on --device (IMRPhenomD or IMRPhenomPv2; docs/online.md)")
    parser.add_argument("--device", default="cpu", help="torch device of --engine ml4gw (cpu, cuda)")
    parser.add_argument("--write-signal-bank", type=path_arg, metavar="BANK.npz",
                        help="instead of a data set, write a bank of --n-signals signals drawn from "
                             "the priors (needs PyCBC; ~24.6 KB a signal)")
    parser.add_argument("--write-polarization-bank", type=path_arg, metavar="BANK.npz",
                        help="instead of a data set, write h+/hx of --n-signals sources of any "
                             f"LALSimulation approximant (default {POLARIZATION_BANK_APPROXIMANT}) for "
                             "a train_source = 'bank' config (needs PyCBC; ~25 KB a waveform)")
    parser.add_argument("--n-signals", type=positive_int, metavar="K",
                        help="signals in --write-signal-bank / --write-polarization-bank")
    parser.add_argument("--signal-bank", type=path_arg, metavar="BANK.npz",
                        help="take the positives' signals from this bank (no PyCBC/LALSuite needed; "
                             "the bank fixes the priors and the approximant)")
    pair = {"nargs": 2, "type": finite_float, "metavar": ("MIN", "MAX")}
    parser.add_argument("--mass-range", **pair,
                        help=f"component masses, detector-frame Msun, each uniform {default('mass_range')}")
    parser.add_argument("--spin-range", **pair,
                        help=f"aligned spins spin1z, spin2z, each uniform {default('spin_range')}")
    parser.add_argument("--ra-range", **pair, help="right ascension, uniform")
    parser.add_argument("--dec-range", **pair, help="declination, uniform in sin(dec) (isotropic sky)")
    parser.add_argument("--inclination-range", **pair,
                        help="inclination, uniform in cos (isotropic orientation)")
    parser.add_argument("--polarization-range", **pair, help="polarization angle, uniform")
    parser.add_argument("--coa-phase-range", **pair, help="coalescence phase, uniform")
    parser.add_argument("--tc-range", **pair,
                        help=f"geocentric merger time, s after the window start, uniform {default('tc_range')}")
    parser.add_argument("--gps-range", nargs=2, type=whole_number, metavar=("MIN", "MAX"),
                        help="GPS second of the window start, uniform integer")
    parser.add_argument("--snr-range", **pair,
                        help=f"optimal network SNR, 20-1000 Hz {default('snr_range')}")
    parser.add_argument("--snr-distribution",
                        help=f"{' | '.join(SNR_DISTRIBUTIONS)} (powerlaw: p ~ snr^-4) {default('snr_distribution')}")
    parser.add_argument("--positive-fraction", type=finite_float,
                        help=f"share of examples with a signal, per split {default('positive_fraction')}")
    return parser


SIGNAL_PRIORS = [f.name for f in fields(Priors) if f.name != "positive_fraction"]


def priors_from_args(args: argparse.Namespace) -> Priors:
    """The priors of the command line; options not given keep the :class:`Priors` defaults."""
    values = {f.name: getattr(args, f.name) for f in fields(Priors) if getattr(args, f.name) is not None}
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return Priors(**values)


def _given(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    """The options among ``names`` (argparse destinations) that the command line set."""
    return ["--" + name.replace("_", "-") for name in names
            if getattr(args, name) not in (None, False)]


def _refuse(options: list[str], why: str) -> None:
    if options:
        raise G2NetError(f"{', '.join(options)}: {why}")


def _existing_examples(out: Path) -> int:
    """Bytes of the example files already under ``out`` (an interrupted run being finished, or the
    run being replaced): they are rewritten in place, so they need no new room."""
    total = 0
    for split in ("train", "test"):
        for folder, _, names in os.walk(out / split):
            total += sum(os.path.getsize(os.path.join(folder, n)) for n in names if n.endswith(".npy"))
    return total


def check_request(args: argparse.Namespace) -> None:
    """Refuse, in one line and before anything is written, a request this machine cannot hold:
    the disk its files need under their folder, the memory of its rows and workers."""
    workers = 1 if args.engine == "ml4gw" and args.write_signal_bank is None \
        and args.write_polarization_bank is None else args.workers
    bank = args.write_signal_bank or args.write_polarization_bank
    if bank is not None:
        n, option = args.n_signals or 0, f"--n-signals {args.n_signals}"
        disk, folder = n * BANK_SIGNAL_BYTES, Path(bank).parent
        memory = n * (2 * BANK_SIGNAL_BYTES + ROW_BYTES) + workers * WORKER_BYTES
        fewer = "ask for fewer signals (several smaller banks)"
    else:
        n = args.n_train + args.n_test
        option = f"--n-train {args.n_train} --n-test {args.n_test}"
        folder = Path(args.out)
        disk = n * EXAMPLE_FILE_BYTES - (_existing_examples(folder) if folder.is_dir() else 0)
        memory = n * ROW_BYTES + workers * WORKER_BYTES
        fewer = "ask for fewer examples (several runs into separate folders)"
    check_room(f"{option} with {workers} worker(s)", folder, disk, memory, f"{fewer} or free some room")


@cli_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    # more processes than CPUs only cost memory (a million of them gets the command killed)
    args.workers = cap_workers(args.workers, "--workers")
    priors = priors_from_args(args)
    approximant = args.approximant or DEFAULT_APPROXIMANT
    if args.write_signal_bank is not None and args.write_polarization_bank is not None:
        raise G2NetError("--write-signal-bank and --write-polarization-bank: give one")
    if args.write_polarization_bank is not None:
        _refuse(_given(args, ["out", "n_train", "n_test", "overwrite", "signal_bank", "positive_fraction"]),
                "--write-polarization-bank writes only the bank (a training config names it in "
                "online['signal_bank'])")
        if args.n_signals is None:
            raise G2NetError("--write-polarization-bank needs --n-signals K (the number of waveforms)")
        check_request(args)
        summary = write_polarization_bank(args.write_polarization_bank, args.n_signals, args.seed, priors,
                                          args.approximant or POLARIZATION_BANK_APPROXIMANT, args.workers,
                                          progress=not args.no_progress)
        print(f"wrote {summary['n_signals']} waveforms ({summary['bytes'] / 1e3:.0f} KB) to "
              f"{summary['path']} in {summary['seconds']:.1f} s")
        return summary
    if args.write_signal_bank is not None:
        _refuse(_given(args, ["out", "n_train", "n_test", "overwrite", "signal_bank"]),
                "--write-signal-bank writes only the bank; build the data set from it in a second "
                "run (--out DIR --n-train N --n-test M --seed S --signal-bank BANK)")
        _refuse(_given(args, ["positive_fraction"]), "a bank holds only signals; give it to the run "
                "that reads the bank (--signal-bank)")
        if args.n_signals is None:
            raise G2NetError("--write-signal-bank needs --n-signals K (the number of signals to store)")
        check_request(args)
        summary = draw_signal_bank(args.write_signal_bank, args.n_signals, args.seed, priors,
                                    approximant, args.workers, progress=not args.no_progress)
        print(f"wrote {summary['n_signals']} signals ({summary['bytes'] / 1e6:.1f} MB) to "
              f"{summary['path']}")
        print(f"rate: {summary['rate']:.1f} signals/s with {args.workers} worker(s) "
              f"({summary['seconds']:.1f} s)")
        return summary
    _refuse(_given(args, ["n_signals"]), "goes with --write-signal-bank or --write-polarization-bank")
    missing = [option for option, value in (("--out", args.out), ("--n-train", args.n_train),
                                            ("--n-test", args.n_test)) if value is None]
    _refuse(missing, "required to write a data set (or write a bank with --write-signal-bank "
            "BANK.npz --n-signals K --seed S)")
    check_request(args)
    if args.engine == "ml4gw":
        return _simulate_ml4gw(args, priors)
    if args.signal_bank is not None:
        _refuse(_given(args, [*SIGNAL_PRIORS, "approximant"]), "the signal bank fixes the priors and "
                "the approximant (they were chosen when it was written); drop these options, or "
                "write a new bank with them")
    summary = simulate(args.out, args.n_train, args.n_test, args.seed, priors, approximant,
                       args.workers, args.overwrite, progress=not args.no_progress,
                       signal_bank=args.signal_bank,
                       detectors=tuple(d.strip() for d in args.detectors.split(",") if d.strip()))
    source = f" from the {summary['bank_signals']} signals of {summary['signal_bank']}" \
        if args.signal_bank is not None else ""
    print(f"wrote {summary['n_train']} train + {summary['n_test']} test examples "
          f"({summary['positives']} with a signal{source}) to {args.out}")
    print(f"rate: {summary['rate']:.1f} examples/s with {args.workers} worker(s) "
          f"({summary['seconds']:.1f} s; {summary['rate_per_cpu']:.1f} examples per CPU-second)")
    return summary


def _simulate_ml4gw(args: argparse.Namespace, priors: Priors) -> dict[str, Any]:
    """``--engine ml4gw``: the data set written by the generator online training uses."""
    from g2net.simulation import ml4gw_engine  # deferred: torch and ml4gw, for this engine only

    _refuse(_given(args, ["signal_bank"]), "goes with the pycbc engine (a polarisation bank for "
            "training is --write-polarization-bank)")
    summary = ml4gw_engine.simulate_files(args.out, args.n_train, args.n_test, args.seed, priors,
                                    args.approximant or "IMRPhenomD", device=args.device,
                                    overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {summary['n_train']} train + {summary['n_test']} test examples "
          f"({summary['positives']} with a signal, ml4gw on {summary['device']}) to {args.out}")
    print(f"rate: {summary['rate']:.1f} examples/s ({summary['seconds']:.1f} s)")
    return summary


if __name__ == "__main__":
    main()
