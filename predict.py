"""Score new data with a trained experiment.

``python predict.py --config NAME --input DIR [--tta] [--out FILE]`` reads the ids of
``DIR/sample_submission.csv`` (competition layout, files under ``DIR/test/``), or ``--files`` with
``.npy`` paths, runs every fold checkpoint of ``results/NAME/``, averages the folds' logits and writes
``id,target`` probabilities (default ``results/NAME/predict_<folder>.csv``).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from prep_data import check_files, check_split
from runner import checkpoint_trainer, experiment_dir, get_config, tta_predict, unfinished_warning
from runtime import make_loader, setup_runtime
from utils import G2NetError, atomic_write, cli_errors, example_path, format_ids


def fold_checkpoints(out_dir: Path) -> list[Path]:
    checkpoints = sorted(out_dir.glob("fold[0-9]*.pt"), key=lambda p: p.name)
    checkpoints = [p for p in checkpoints if p.stem[4:].isdigit()]
    if not checkpoints:
        raise G2NetError(f"no fold checkpoints (fold<k>.pt) in {out_dir}; train the experiment first "
                         f"(python train.py --config {out_dir.name})")
    return checkpoints


def predict_paths(cfg: type, paths: Sequence[str], tta: bool = False, debug: bool = False,
                  gpu: Sequence[int] | None = None, num_workers: int | None = None,
                  progress_bar: bool = False) -> np.ndarray:
    """Fold-mean logits ``(N, 1)`` of the experiment's checkpoints on the given ``.npy`` files."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise G2NetError(f"{len(missing)} input files do not exist: {format_ids(missing, 3)}")
    runtime = setup_runtime(gpu, num_workers, deterministic=False)
    dataset = cfg.dataset(paths=list(paths), transforms=cfg.transforms.get("test"), is_test=True)
    loader = make_loader(dataset, cfg.batch_size, runtime, shuffle=False)
    logits = []
    for checkpoint in fold_checkpoints(experiment_dir(cfg, debug)):
        trainer = checkpoint_trainer(cfg, checkpoint, runtime, lambda m: None, progress_bar)
        warning = unfinished_warning(checkpoint, trainer.state)
        if warning:
            print(warning, file=sys.stderr)
        fold_logits = trainer.predict(loader, desc=checkpoint.stem)
        if tta:
            fold_logits = (fold_logits + tta_predict(cfg, trainer, loader, checkpoint.stem + " tta")) / 2
        logits.append(fold_logits)
    return np.mean(logits, axis=0)


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
