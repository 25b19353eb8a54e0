"""Physics-grade evaluation of experiments on a simulated test set.

``python evaluate.py --experiments NAME [NAME ...] [--submission FILE] [--out DIR]``

Reads the simulated input folder (``utils.input_dir()``: ``test.csv`` or ``sample_submission.csv``
for the row order, ``test_labels.csv`` and ``injections.csv`` from ``simulate.py``) and each
experiment's ``results/<name>/predictions.npy`` ``(cv, N_test, 1)`` (fold mean of the logits; only
the order of the scores matters). The matched filter (``results/matched_filter/``) joins
automatically when it has been run. Writes to ``--out`` (default ``results/evaluation/``):

- ``auc.csv``: AUC with a bootstrap 95% interval;
- ``efficiency.csv`` / ``efficiency.png``: detection efficiency versus the injected network SNR
  at false-alarm probabilities 1% and 0.1%, the threshold set on the test negatives;
- ``roc.png``: ROC curves; ``auc_by_mchirp.csv``: AUC of each chirp-mass bin of the positives
  against all negatives;
- ``report.md``: the tables, linking the figures.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from g2net.evaluation import MAX_BOOTSTRAP, N_BOOTSTRAP, OUT_NAME, evaluate
from utils import cli_errors, int_in, path_arg


@cli_errors
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=[], metavar="NAME",
                        help="experiment folders under the results folder")
    parser.add_argument("--submission", type=path_arg, default=None,
                        help="also evaluate a submission csv (id,target)")
    parser.add_argument("--out", type=path_arg, default=None,
                        help=f"output folder (default: <results>/{OUT_NAME})")
    parser.add_argument("--bootstrap", default=N_BOOTSTRAP,
                        type=int_in(10, MAX_BOOTSTRAP, " (more resamples no longer move the 95% "
                                                        "interval; they only take longer)"),
                        help=f"bootstrap resamples of the AUC interval (10 to {MAX_BOOTSTRAP})")
    args = parser.parse_args(argv)
    evaluate(args.experiments, args.submission, args.out, args.bootstrap)


if __name__ == "__main__":
    main()
