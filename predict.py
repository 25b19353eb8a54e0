"""Score new data with a trained experiment.

``python predict.py --config NAME --input DIR [--tta] [--out FILE]`` reads the ids of
``DIR/sample_submission.csv`` (competition layout, files under ``DIR/test/``), or ``--files`` with
``.npy`` paths, runs every fold checkpoint of ``results/NAME/``, averages the folds' logits and writes
``id,target`` probabilities (default ``results/NAME/predict_<folder>.csv``).
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from g2net.experiments.inference import predict_paths
from g2net.experiments.runner import experiment_dir, get_config
from prep_data import check_files, check_split
from utils import (G2NetError, atomic_write, cli_errors, example_path, format_ids, nonnegative_int,
                   output_file, path_arg)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--input", type=path_arg, help="folder in the competition layout")
    parser.add_argument("--split", default=None, help="subfolder holding the .npy files (default test)")
    parser.add_argument("--files", type=path_arg, nargs="+", help=".npy files to score instead of --input")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--out", type=path_arg,
                        help="csv to write (default: results/NAME/predict_<folder>.csv, replaced by a rerun)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--debug", action="store_true", help="use the --debug run's checkpoints")
    parser.add_argument("--gpu", type=nonnegative_int, nargs="+")
    parser.add_argument("--progress_bar", action="store_true")
    args = parser.parse_args(argv)
    if args.files and (args.input is not None or args.split is not None):
        raise G2NetError("--files scores the files given; --input and --split choose a folder of the "
                         "competition layout instead: give one or the other")
    if not args.files and args.input is None:
        raise G2NetError("give --input DIR (competition layout) or --files a.npy b.npy ...")
    cfg = get_config(args.config)
    split = args.split or "test"
    if args.files:
        inputs, input_folders, default_name = list(args.files), [], "predict_files.csv"
    else:
        listing = args.input / "sample_submission.csv"
        inputs, input_folders = [listing], [args.input]
        default_name = f"predict_{args.input.resolve().name}.csv"
    # where the scores go is decided before any work: never an input, never into the folder read
    out = output_file(args.out or experiment_dir(cfg, args.debug) / default_name, "--out",
                      overwrite=args.overwrite or args.out is None, inputs=inputs,
                      input_folders=input_folders, suffixes=(".csv",))
    if args.files:
        paths = [str(p) for p in args.files]
        ids = [Path(p).stem for p in paths]
        repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
        if repeated:
            raise G2NetError(f"--files names {len(repeated)} ids more than once ({format_ids(repeated)}); "
                             "give each example once")
        check_files(paths)
    else:
        listing = args.input / "sample_submission.csv"
        if not listing.exists():
            raise G2NetError(f"{listing} not found: --input needs a folder in the competition layout "
                             "with sample_submission.csv listing the ids (or use --files)")
        ids = check_split(args.input, split, listing, rerun="predict.py").ids
        paths = [str(example_path(args.input, split, i)) for i in ids]
    logits = predict_paths(cfg, paths, args.tta, args.debug, args.gpu, progress_bar=args.progress_bar)
    probabilities = 1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64)))
    table = pd.DataFrame({"id": ids, "target": probabilities})
    atomic_write(out, lambda f: table.to_csv(f, index=False), mode="w")
    print(f"wrote {len(table)} predictions to {out}")
    return out


if __name__ == "__main__":
    cli_errors(main)()
