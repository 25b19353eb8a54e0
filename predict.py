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
from utils import G2NetError, atomic_write, cli_errors, example_path, format_ids


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--input", type=Path, help="folder in the competition layout")
    parser.add_argument("--split", default="test", help="subfolder holding the .npy files (default test)")
    parser.add_argument("--files", nargs="+", help=".npy files to score instead of --input")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--debug", action="store_true", help="use the --debug run's checkpoints")
    parser.add_argument("--gpu", type=int, nargs="+")
    parser.add_argument("--progress_bar", action="store_true")
    args = parser.parse_args(argv)
    cfg = get_config(args.config)
    if args.files:
        paths = list(args.files)
        ids = [Path(p).stem for p in paths]
        repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
        if repeated:
            raise G2NetError(f"--files names {len(repeated)} ids more than once ({format_ids(repeated)}); "
                             "give each example once")
        check_files(paths)
        default_name = "predict_files.csv"
    elif args.input is not None:
        listing = args.input / "sample_submission.csv"
        if not listing.exists():
            raise G2NetError(f"{listing} not found: --input needs a folder in the competition layout "
                             "with sample_submission.csv listing the ids (or use --files)")
        ids = check_split(args.input, args.split, listing, rerun="predict.py").ids
        paths = [str(example_path(args.input, args.split, i)) for i in ids]
        default_name = f"predict_{args.input.resolve().name}.csv"
    else:
        raise G2NetError("give --input DIR (competition layout) or --files a.npy b.npy ...")
    logits = predict_paths(cfg, paths, args.tta, args.debug, args.gpu, progress_bar=args.progress_bar)
    probabilities = 1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64)))
    out = args.out or experiment_dir(cfg, args.debug) / default_name
    table = pd.DataFrame({"id": ids, "target": probabilities})
    atomic_write(out, lambda f: table.to_csv(f, index=False), mode="w")
    print(f"wrote {len(table)} predictions to {out}")
    return out


if __name__ == "__main__":
    cli_errors(main)()
