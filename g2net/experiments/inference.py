"""Scoring examples with a trained experiment: every fold checkpoint, the folds' mean logit
(``predict.py``; the search's network statistic uses the same checkpoints)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from g2net.experiments.runner import checkpoint_trainer, experiment_dir, tta_predict, unfinished_warning
from g2net.training.runtime import make_loader, setup_runtime
from utils import G2NetError, format_ids


def fold_checkpoints(cfg: type, debug: bool = False) -> list[Path]:
    """The finished fold checkpoints ``fold<k>.pt`` of ``cfg``'s results folder (its ``--debug``
    run's with ``debug``); none is one G2NetError naming the run that is missing and its command."""
    out_dir = experiment_dir(cfg, debug)
    checkpoints = sorted(out_dir.glob("fold[0-9]*.pt"), key=lambda p: p.name)
    checkpoints = [p for p in checkpoints if p.stem[4:].isdigit()]
    if not checkpoints:
        script = "train_pseudo.py" if cfg.pseudo_labels else "train.py"
        run = f"the --debug run of {cfg.name}" if debug else f"experiment {cfg.name}"
        raise G2NetError(f"no fold checkpoints (fold<k>.pt) in {out_dir}: {run} has not been trained "
                         f"yet; train it first (python {script} --config {cfg.name}"
                         f"{' --debug' if debug else ''})")
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
    for checkpoint in fold_checkpoints(cfg, debug):
        trainer = checkpoint_trainer(cfg, checkpoint, runtime, lambda m: None, progress_bar)
        warning = unfinished_warning(checkpoint, trainer.state)
        if warning:
            print(warning, file=sys.stderr)
        fold_logits = trainer.predict(loader, desc=checkpoint.stem)
        if tta:
            fold_logits = (fold_logits + tta_predict(cfg, trainer, loader, checkpoint.stem + " tta")) / 2
        logits.append(fold_logits)
    return np.mean(logits, axis=0)
