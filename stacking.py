"""Stack trained experiments into ``results/submission.csv``.

The competition solution's last step: a ridge regression without intercept over the models'
out-of-fold probabilities, fitted per fold on that fold's out-of-fold rows, applied to the test
predictions of the same fold's models, MinMax-scaled and averaged over folds. Plain mean and
rank-mean blends are computed next to it for comparison.

The stacked out-of-fold AUC that is reported is cross-fitted: the rows of fold k are scored by the
ridges fitted on the other folds (MinMax-scaled and averaged the same way as the test set), so
it never includes rows a ridge was fitted on and is comparable with the single-model AUCs.

``g2net-submission.ipynb`` walks through these functions step by step;
``python stacking.py [--models a b c]`` runs them all.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from g2net.stacking import BLEND_CHOICES, STACK_NAME, run_stacking
from utils import cli_errors, positive_float


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help="experiment names under the results folder (default: every one with "
                             "out-of-fold and test predictions)")
    parser.add_argument("--alpha", type=positive_float, default=1.0, help="ridge regularisation (> 0)")
    parser.add_argument("--submit", choices=BLEND_CHOICES, default=STACK_NAME,
                        help="which blend goes into submission.csv")
    return parser.parse_args(argv)


@cli_errors
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run_stacking(args.models, alpha=args.alpha, submit=args.submit)


if __name__ == "__main__":
    main()
