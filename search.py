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
  ``simulate.Priors.tc_range``), its ``stat`` the fold-mean logit, its ``var`` ``--var`` seconds;
  with ``--trigger-time plateau`` the window start is the middle of the run of windows around the
  loudest that score within ``--plateau-drop`` of it, and with ``--statistic mean3`` the ``stat`` is
  the loudest mean of a window's output and its two neighbours' (docs/search.md).
The trigger file (``time``, ``stat``, ``var``, float64, sorted in time) is what MLGWSC-1's
``evaluate.py`` and ``evaluate_search.py`` read; its attribute ``duration`` is the analysed
duration, time slides included. Progress is saved beside ``--output`` (``.checkpoint.npz``), and
rerunning a killed command resumes it (``--restart`` starts over).
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

from g2net.search.network import run
from g2net.search.options import add_search_options, options_from_args
from utils import cli_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="trained experiment (results/NAME/fold*.pt)")
    parser.add_argument("--input", required=True, help="strain file in the MLGWSC-1 layout")
    add_search_options(parser)
    parser.add_argument("--debug", action="store_true", help="use the --debug run's checkpoints")
    parser.add_argument("--checkpoint", nargs="+", default=None, metavar="FILE",
                        help="score with these checkpoints instead of every results/NAME/fold<k>.pt "
                             "(e.g. the per-epoch snapshots fold0_epoch<e>.pt of a config with "
                             "SaveAllSnapshots; scripts/learning_curve.py)")
    parser.add_argument("--gpu", type=int, nargs="+", help="CUDA device ids (default: the first)")
    parser.add_argument("--restart", action="store_true",
                        help="discard the checkpoint beside --output instead of resuming from it")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    return run(args.config, args.input, args.output, options_from_args(args), args.debug, args.gpu,
               not args.no_progress, args.overwrite, args.checkpoint, resume=not args.restart)


if __name__ == "__main__":
    cli_errors(main)()
