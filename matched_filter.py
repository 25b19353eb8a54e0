"""Matched filtering, the optimal detector for known signals: the baseline every network is held to.

``python matched_filter.py --input DIR --split test|train [--bank-size N] [--batch-size B]`` scores
the 2 s examples of a prepared folder and writes them in the experiment layout under
``results/matched_filter/`` (g2net.filtering.baseline; evaluate.py and stacking.py read it);
``--check-bank N`` measures the template bank on N injections instead.

``python matched_filter.py --build-reference-bank [--minimal-match 0.97] [--bank-file FILE]`` places
the strain search's reference bank with PyCBC's pycbc_brute_bank (g2net.filtering.reference_bank;
default file data/reference_bank.hdf); ``--check-reference-bank N --prior search|mlgwsc1`` reports
its fitting factor on N injections of that prior.

``python matched_filter.py --strain FILE --output FILE [--slides K] [--bank-file FILE | --bank-size N]``
searches continuous strain instead (g2net.search.matched_filter, docs/search.md); a killed search
resumes when the same command is run again.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from g2net.filtering.bank import (DEFAULT_BANK_SIZE, DEFAULT_CANDIDATES, coverage_report,
                                  default_bank_spec, load_or_build_bank)
from g2net.filtering import reference_bank
from g2net.filtering.baseline import run_split
from g2net.search import matched_filter as strain_filter
from g2net.search.options import add_search_options, options_from_args
from utils import G2NetError, cli_errors, input_dir, nonnegative_int, output_file, path_arg, positive_int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=None,
                        help="folder with train.csv / test.csv from prep_data.py "
                             "(default: G2NET_INPUT_DIR or input/)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--bank-size", type=int, default=DEFAULT_BANK_SIZE)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--step", type=int, choices=(1, 2), default=1,
                        help="SNR time series every sample (1) or every other sample (2: twice "
                             "as fast, peaks about 1%% lower)")
    parser.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES,
                        help="candidate pool the bank is selected from")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch CPU threads; one is the robust choice: on cores shared with "
                             "other jobs two intra-op threads stall each other")
    parser.add_argument("--check-bank", type=int, default=0, metavar="N",
                        help="only measure the bank: best match of N default-prior injections")
    parser.add_argument("--check-seed", type=int, default=1,
                        help="seed of the --check-bank injections")
    bank = parser.add_argument_group("the strain search's reference bank")
    bank.add_argument("--build-reference-bank", action="store_true",
                      help="place it with pycbc_brute_bank (whole IMRPhenomD inspirals from 20 Hz "
                           "over the simulator's masses and aligned spins) and write --bank-file")
    bank.add_argument("--check-reference-bank", type=nonnegative_int, default=0, metavar="N",
                      help="report the fitting factor of --bank-file on N injections of --prior")
    bank.add_argument("--bank-file", type=path_arg, default=reference_bank.REFERENCE_BANK_FILE,
                      help="reference bank file (default data/reference_bank.hdf)")
    bank.add_argument("--minimal-match", type=float, default=reference_bank.BankRecipe.minimal_match)
    bank.add_argument("--prior", choices=("search", "mlgwsc1"), default="search",
                      help="search: the simulator's prior and PSD; mlgwsc1: MLGWSC-1 dataset 1's "
                           "(non-spinning IMRPhenomXPHM (2,2), aLIGOZeroDetHighPower)")
    bank.add_argument("--workers", type=positive_int, default=1, help="processes of pycbc_brute_bank")
    return parser


def reference_bank_command(args: argparse.Namespace) -> dict[str, Any]:
    """--build-reference-bank / --check-reference-bank."""
    if args.build_reference_bank:
        # only a bank file is ever replaced: any other existing file is someone's input
        replaceable = Path(args.bank_file).is_file() and _is_bank(args.bank_file)
        output_file(args.bank_file, "--bank-file", overwrite=replaceable, suffixes=(".hdf", ".h5"))
        bank = reference_bank.build(args.bank_file,
                                    reference_bank.BankRecipe(minimal_match=args.minimal_match),
                                    workers=args.workers)
        print(f"placed {len(bank)} templates (minimal match {args.minimal_match:g}) -> {args.bank_file}")
    if args.check_reference_bank < 1:
        return {}
    bank = reference_bank.load(args.bank_file)
    if args.prior == "search":
        injections, psd, approximant = reference_bank.search_prior_injections(
            args.check_reference_bank, args.check_seed), "simulator", None
    else:
        injections, psd, approximant = reference_bank.mlgwsc1_dataset1_injections(
            args.check_reference_bank, args.check_seed), "aLIGOZeroDetHighPower", None
    factors = reference_bank.fitting_factors(bank, injections, psd, approximant)
    summary = reference_bank.summarize(factors, args.minimal_match)
    print(f"{args.bank_file} ({len(bank)} templates) on {summary['n']} injections of the {args.prior} "
          f"prior: fitting factor median {summary['median']:.4f}, 5th percentile {summary['p5']:.4f}, "
          f"minimum {summary['min']:.4f}, {summary[f'fraction_at_least_{args.minimal_match:g}']:.1%} "
          f">= {args.minimal_match:g}")
    return summary


def _is_bank(path: Path) -> bool:
    try:
        reference_bank.load(path)
    except G2NetError:
        return False
    return True


def build_strain_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="The matched filter as a search of continuous strain "
                                                 "(docs/search.md).")
    parser.add_argument("--strain", required=True, help="strain file in the MLGWSC-1 layout")
    add_search_options(parser)
    bank = parser.add_mutually_exclusive_group()
    bank.add_argument("--bank-size", type=positive_int, default=None,
                      help=f"templates of the baseline's farthest-point bank (default {DEFAULT_BANK_SIZE})")
    bank.add_argument("--bank-file", type=Path, default=None,
                      help="a template bank file instead (the reference bank: "
                           "--build-reference-bank writes data/reference_bank.hdf)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="PyTorch CPU threads (default: torch's, one per core)")
    parser.add_argument("--templates-per-pass", type=positive_int, default=None,
                        help="templates filtered together; each pass holds their SNR series for "
                             "the time slides (default: as many as fit a quarter of the memory available, "
                             "at least 1 GiB; fewer a pass means more passes, each paying the slides' "
                             "combination again)")
    parser.add_argument("--restart", action="store_true",
                        help="discard the checkpoint beside --output instead of resuming from it")
    return parser


def strain_search(args: argparse.Namespace) -> Any:
    """--strain: refuse the shared search options a matched filter has no use for, run the rest."""
    peak = "the matched filter reports each trigger at its SNR peak, the merger sample"
    for option, value, why in (
            ("--stride", args.stride, "the matched filter lays its windows to tile time by itself "
                                      "and computes the SNR at every sample"),
            ("--merger-offset", args.merger_offset, peak), ("--trigger-time", args.trigger_time, peak),
            ("--plateau-drop", args.plateau_drop, peak),
            ("--statistic", args.statistic, "its statistic is the network SNR of each coincidence")):
        if value is not None:
            shown = f"{value:g}" if isinstance(value, float) else value
            raise G2NetError(f"{option} {shown}: not used by matched_filter.py --strain ({why}); drop it")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return strain_filter.run(args.strain, args.output, options_from_args(args), args.bank_size,
                             not args.no_progress, args.slide_step, args.overwrite,
                             bank_file=args.bank_file, psd_duration=args.psd_duration,
                             templates_per_pass=args.templates_per_pass, resume=not args.restart)


@cli_errors
def main(argv: Sequence[str] | None = None) -> Any:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--strain" or a.startswith("--strain=") for a in arguments):
        return strain_search(build_strain_parser().parse_args(arguments))
    args = build_parser().parse_args(arguments)
    if args.build_reference_bank or args.check_reference_bank:
        return reference_bank_command(args)
    if args.batch_size < 1:
        raise G2NetError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads < 1:
        raise G2NetError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    if args.check_bank:
        bank = load_or_build_bank(default_bank_spec(args.bank_size, args.candidates))
        print(coverage_report(bank, args.check_bank, args.check_seed))
        return None
    root = args.input if args.input is not None else input_dir()
    if not root.is_dir():
        raise G2NetError(f"input folder {root} does not exist; pass --input or set G2NET_INPUT_DIR")
    return run_split(root, args.split, args.bank_size, args.batch_size, args.device, args.candidates,
                     args.step)


if __name__ == "__main__":
    main()
