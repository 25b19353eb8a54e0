"""What train.py, train_pseudo.py and predict.py share: config lookup, data, folds and outputs.

``run_experiment`` is the single fold loop driver; the two training scripts differ only in
whether they accept configs with ``pseudo_labels``.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import importlib
import importlib.util
import logging
import os
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

import configs
from architectures import PretrainedWeightsUnavailable
from configs import Baseline, check_params
from datasets import CacheView, load_cache, read_prepared, resolve_path
from g2net.experiments.online import make_source
from g2net.training.history import HistoryWriter
from g2net.training.pseudo import load_parent_predictions, pseudo_targets, validate_pseudo_labels
from g2net.training.runtime import Runtime, for_device, make_loader, setup_runtime, wrap_model
from g2net.training.trainer import Trainer, load_checkpoint
from metrics import roc_auc
from training_extras import make_tta_dataloader
from utils import (EXAMPLE_SHAPE, G2NetError, atomic_save_npy, atomic_write, data_identity, file_digest,
                   describe_differences, float_in, identity_differences, input_dir,
                   nonnegative_int, notify_me, output_folder, plain_name, print_config, results_dir,
                   seed_everything, write_data_record)

DEBUG_TRAIN_SIZE = 512
DEBUG_TEST_SIZE = 128
DEBUG_MAX_EPOCHS = 2
MAX_WAIT = 7 * 24 * 3600  # --wait longer than a week is a typo (and time.sleep overflows on 1e300)


# ----------------------------------------------------------------------------- configs
def _configs_of(module: Any) -> dict[str, type]:
    """The experiment classes defined in ``module`` (not those it imports), by name."""
    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, type) and issubclass(obj, Baseline) and obj.__module__ == module.__name__}


def all_configs() -> dict[str, type]:
    """Every experiment class defined in configs.py, by name."""
    return _configs_of(configs)


def _unknown(name: str, known: Sequence[str], where: str) -> G2NetError:
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return G2NetError(f"unknown config {name!r}{where}.{hint}")


def _load_module(source: str) -> Any:
    """A config module from a file path (``my_experiments.py``) or a module path (``pkg.mod``)."""
    path = Path(source)
    if source.endswith(".py") or os.sep in source:
        if not path.is_file():
            raise G2NetError(f"config file {path} not found (--config FILE.py:CLASS)")
        module_name = f"g2net_user_configs.{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise G2NetError(f"config file {path} is not a Python file; give FILE.py:CLASS")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look classes up here
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            sys.modules.pop(module_name, None)
            where = f"{exc.filename or path}, line {exc.lineno}" if exc.lineno else str(exc.filename or path)
            raise G2NetError(f"config file {path} is not valid Python ({exc.msg}; {where}); give "
                             "FILE.py:CLASS with a config class in FILE.py") from None
        return module
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as exc:
        if exc.name is not None and source.startswith(exc.name):
            raise G2NetError(f"config module {source} not found: give a file path "
                             "(my_experiments.py:MyCfg) or an importable module (package.module:MyCfg)"
                             ) from None
        raise


def get_config(name: str) -> type:
    """The config class called ``name`` in configs.py, or ``FILE.py:CLASS`` / ``package.module:CLASS``.

    Unknown names list the closest ones; a class from elsewhere must subclass ``configs.Baseline``.
    """
    if ":" in name:
        source, _, class_name = name.rpartition(":")
        module = _load_module(source)
        found = getattr(module, class_name, None)
        if found is None:
            raise _unknown(class_name, list(_configs_of(module)), f" in {source}")
        if not (isinstance(found, type) and issubclass(found, Baseline)):
            raise G2NetError(f"{name} is not a config: a config is a class that subclasses "
                             "configs.Baseline (from configs import Baseline)")
        return found
    configs = all_configs()
    if name in configs:
        return configs[name]
    lowered = {n.lower(): n for n in configs}
    if name.lower() in lowered:
        return configs[lowered[name.lower()]]
    error = _unknown(name, list(configs), "")
    raise G2NetError(f"{error} Run python train.py --list to see them all, or give "
                     "FILE.py:CLASS for a config of your own.")


def parameter_count(cfg: type) -> int:
    """Parameters of ``cfg``'s model, built without pretrained weights.

    On the meta device when the model allows it (no memory, no weights); models whose constructor
    computes fixed tensors on the CPU (the non-trainable wavelet bank) are built on the CPU, and
    lazy layers are sized by one forward pass of a dummy example.
    """
    try:
        with torch.device("meta"):
            model = make_model(cfg, offline=True)
    except RuntimeError:  # a constructor that mixes CPU tensors into the meta build
        model = make_model(cfg, offline=True)
    params = list(model.parameters())
    if any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in params):
        model = make_model(cfg, offline=True).eval()
        with torch.no_grad():
            model(torch.zeros(1, *EXAMPLE_SHAPE))
        params = list(model.parameters())
    return sum(p.numel() for p in params)


def describe_configs() -> list[tuple[str, str, int | None]]:
    """(name, backbone, parameter count) for ``train.py --list``; None where the model cannot be built."""
    rows = []
    for name, cfg in all_configs().items():
        backbone = cfg.model_params.get("model_name") or cfg.model.__name__
        try:
            count = parameter_count(cfg)
        except Exception:  # noqa: BLE001 - one broken config must not hide the others' sizes
            count = None
        rows.append((name, backbone, count))
    return rows


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="experiment class in configs.py (e.g. Nspec16), or "
                        "FILE.py:CLASS / package.module:CLASS for your own")
    parser.add_argument("--list", action="store_true", help="list every config with its backbone and size")
    parser.add_argument("--limit_fold", type=nonnegative_int, default=None, help="train only fold K (0-based)")
    parser.add_argument("--inference", action="store_true", help="only predict from existing checkpoints")
    parser.add_argument("--tta", action="store_true", help="also write flipped-waveform TTA predictions")
    parser.add_argument("--progress_bar", action="store_true", help="tqdm bars for every epoch")
    parser.add_argument("--skip_existing", action="store_true", help="skip folds whose checkpoint exists")
    parser.add_argument("--resume", action="store_true", help="continue interrupted folds")
    parser.add_argument("--debug", action="store_true",
                        help=f"small subset ({DEBUG_TRAIN_SIZE} train / {DEBUG_TEST_SIZE} test, "
                             f"{DEBUG_MAX_EPOCHS} epochs) into results/<name>_debug")
    parser.add_argument("--silent", action="store_true", help="log to the file only")
    parser.add_argument("--gpu", type=nonnegative_int, nargs="+", default=None, help="CUDA device ids to use")
    parser.add_argument("--wait", type=float_in(0, MAX_WAIT, " (a week)"), default=0,
                        help="seconds to wait before starting")
    parser.add_argument("--num_workers", type=nonnegative_int, default=None,
                        help="DataLoader workers (default: detected from the CPU count)")
    return parser


# ----------------------------------------------------------------------------- data
@dataclass
class ExperimentData:
    train: pd.DataFrame
    test: pd.DataFrame
    train_cache: np.ndarray | None
    test_cache: np.ndarray | None
    train_rows: np.ndarray  # rows of the full train.csv used (debug subsets)
    test_rows: np.ndarray
    n_test_total: int  # rows of the full test.csv, which a pseudo parent must have predicted
    debug: bool = False
    identity: dict[str, Any] | None = None  # utils.data_identity of the rows used (train, test)

    @property
    def trained_on(self) -> dict[str, Any]:
        """The part of the identity a fold's model depends on: its training rows and labels."""
        return {k: v for k, v in (self.identity or {}).items() if k in ("train", "simulation")}


def load_data(cfg: type, debug: bool = False) -> ExperimentData:
    base = input_dir()
    train = read_prepared(resolve_path(cfg.train_path, base), "training")
    test_path = resolve_path(cfg.test_path, base)
    test = read_prepared(test_path, "test")
    train_rows, test_rows = np.arange(len(train)), np.arange(len(test))
    if debug:
        rng = np.random.default_rng(cfg.seed)
        train_rows = np.sort(rng.permutation(len(train))[:DEBUG_TRAIN_SIZE])
        test_rows = np.sort(rng.permutation(len(test))[:DEBUG_TEST_SIZE])
    caches = []
    for name, table in ((cfg.train_cache, train), (cfg.test_cache, test)):
        path = resolve_path(name, base)
        caches.append(load_cache(path, table) if path is not None and path.exists() else None)
    train, test = train.iloc[train_rows].reset_index(drop=True), test.iloc[test_rows].reset_index(drop=True)
    identity = data_identity(resolve_path(cfg.train_path, base).parent, train["id"], train["target"],
                             test["id"])
    return ExperimentData(train, test, caches[0], caches[1], train_rows, test_rows, len(test), debug,
                          identity)


# ----------------------------------------------------------------------------- run folder and log
LOCK_NAME = ".lock"  # in results/<name>/: holds the pid of the run using the folder


@contextlib.contextmanager
def claim_run_folder(out_dir: Path, is_main: bool = True) -> Iterator[bool]:
    """Hold ``out_dir`` for this run (an exclusive flock); yields whether this run created it.

    A second run on the same folder would delete the first one's checkpoints, so it is refused and
    told which process holds the folder. The kernel drops the lock when the process ends, so a
    killed run leaves no stale lock. Only the main process of a torchrun job takes it.
    """
    if not is_main:
        yield False
        return
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise G2NetError(f"{out_dir} is in use by another run (pid {owner}); wait for it to end or "
                         f"stop it (kill {owner}) before starting this one") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield created
    finally:
        handle.close()


def remove_if_empty_run(out_dir: Path) -> bool:
    """Remove a folder that holds nothing but logs and the lock (a run that failed before it wrote
    anything); returns whether it was removed."""
    if out_dir.is_dir() and all(p.name == LOCK_NAME or p.suffix == ".log" for p in out_dir.iterdir()):
        shutil.rmtree(out_dir)
        return True
    return False


def make_logger(out_dir: Path, name: str, silent: bool, is_main: bool) -> logging.Logger:
    """A logger writing to ``out_dir/<name>_<time>.log`` (and stdout unless ``silent``); rank 0 only."""
    logger = logging.getLogger(f"g2net.{name}.{time.time_ns()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d_%H%M%S")
        handler = logging.FileHandler(out_dir / f"{name}_{stamp}.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        if not silent:
            logger.addHandler(logging.StreamHandler(sys.stdout))
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


# ----------------------------------------------------------------------------- model pieces
def make_model(cfg: type, offline: bool = False) -> torch.nn.Module:
    """``cfg.model(**cfg.model_params)`` after checking the config's keyword dicts (one clear line
    for a typo); ``offline`` builds without pretrained weights (they come from a checkpoint)."""
    check_params(cfg)
    try:
        return cfg.model(**(offline_model_params(cfg) if offline else cfg.model_params))
    except PretrainedWeightsUnavailable as exc:
        raise G2NetError(f"config {cfg.name}: {exc}") from None


def build_model(cfg: type) -> torch.nn.Module:
    """The model a fold starts from: pretrained as configured, then ``weight_path`` if set."""
    model = make_model(cfg)
    if cfg.weight_path is not None:
        path = resolve_path(cfg.weight_path, results_dir())
        if not path.exists():
            raise G2NetError(f"weight_path {path} of config {cfg.name} does not exist; train the "
                             "experiment that makes it first or set weight_path = None")
        saved = load_checkpoint(path, f"Point weight_path of config {cfg.name} at a fold checkpoint "
                                "or state_dict saved by torch.save (tensors only).", keys=())
        try:
            model.load_state_dict(saved.get("model", saved) if isinstance(saved, dict) else saved)
        except RuntimeError as exc:
            raise G2NetError(f"weights in {path} do not fit the model of config {cfg.name}: "
                             f"{str(exc).splitlines()[0]}") from None
    return model


def make_trainer(cfg: type, model: torch.nn.Module, checkpoint: Path, runtime: Runtime,
                 log: Callable[[str], None], progress_bar: bool,
                 generator: torch.Generator | None = None) -> Trainer:
    optimizer = cfg.optimizer(model.parameters(), **cfg.optimizer_params)
    scheduler = cfg.scheduler(optimizer, **cfg.scheduler_params) if cfg.scheduler is not None else None
    return Trainer(model, optimizer, cfg.criterion, checkpoint_path=checkpoint, scheduler=scheduler,
                   scheduler_target=cfg.scheduler_target, batch_scheduler=cfg.batch_scheduler,
                   eval_metric=cfg.eval_metric, monitor_metrics=cfg.monitor_metrics,
                   callbacks=cfg.callbacks, hook=cfg.hook, device=runtime.device, amp=cfg.amp,
                   clip_grad=cfg.clip_grad, max_grad_norm=cfg.max_grad_norm,
                   gpu_transform=cfg.transforms.get("gpu"), channels_last=cfg.channels_last,
                   amp_precision=cfg.amp_precision,
                   log=log, progress_bar=progress_bar, loader_generator=generator,
                   is_main=runtime.is_main)


# ----------------------------------------------------------------------------- the experiment
def experiment_dir(cfg: type, debug: bool) -> Path:
    """``results/<name>`` (``<name>_debug`` for --debug runs); the config's ``name`` must be a
    plain folder name, so that no run writes outside the results folder."""
    plain_name(cfg.name, f"config {cfg.__name__}: name")
    return results_dir() / (f"{cfg.name}_debug" if debug else cfg.name)


def split_folds(cfg: type, targets: np.ndarray, table: str = "train.csv") -> np.ndarray:
    """Fold number of every training row, from the config's splitter; a table the splitter cannot
    split (fewer rows, or fewer of a class, than folds) is one G2NetError."""
    folds = np.full(len(targets), -1, dtype=np.int64)
    try:
        for k, (_, valid) in enumerate(cfg.splitter.split(np.zeros(len(targets)), targets)):
            folds[valid] = k
    except ValueError as exc:
        reason = str(exc).splitlines()[0]
        raise G2NetError(f"{table} ({len(targets)} rows, {int(np.sum(targets > 0.5))} positives) "
                         f"cannot be split into the folds of config {cfg.name} ({reason}); use more "
                         "examples of each class, or a config with fewer folds (cv)") from None
    return folds


def _dataset(cfg: type, data: ExperimentData, rows: np.ndarray, transforms: Any, train: bool,
             extra: dict[str, Any] | None = None) -> Any:
    table = data.train
    params = dict(cfg.dataset_params) if train else {}
    params.update(extra or {})
    cache = CacheView(data.train_cache, data.train_rows[rows]) if data.train_cache is not None else None
    return cfg.dataset(paths=table["path"].values[rows], targets=table["target"].values[rows],
                       transforms=transforms, cache=cache, **params)


def _test_dataset(cfg: type, data: ExperimentData, transforms: Any) -> Any:
    cache = CacheView(data.test_cache, data.test_rows) if data.test_cache is not None else None
    return cfg.dataset(paths=data.test["path"].values, transforms=transforms, cache=cache, is_test=True)


def _parent_predictions(cfg: type, data: ExperimentData) -> np.ndarray:
    """The pseudo-label parent's test logits for this run's test rows (debug runs use its debug run)."""
    parent = str(cfg.pseudo_labels["path"])
    parent_cfg = all_configs().get(parent)
    is_pseudo = bool(parent_cfg is not None and parent_cfg.pseudo_labels)
    if data.debug:
        return load_parent_predictions(parent, len(data.test_rows), is_pseudo, debug=True)
    return load_parent_predictions(parent, data.n_test_total, is_pseudo)[:, data.test_rows]


def _pseudo_extra(cfg: type, data: ExperimentData, fold: int) -> dict[str, Any]:
    """Dataset arguments that append the parent's soft-labelled test examples for this fold."""

    options = {k: v for k, v in validate_pseudo_labels(cfg.pseudo_labels).items() if k != "path"}
    rows, targets = pseudo_targets(_parent_predictions(cfg, data), fold, **options)
    cache = CacheView(data.test_cache, data.test_rows[rows]) if data.test_cache is not None else None
    return dict(pseudo_label=True, test_paths=data.test["path"].values[rows],
                test_targets=np.asarray(targets).reshape(-1), test_cache=cache)


def train_fold(cfg: type, data: ExperimentData, folds: np.ndarray, fold: int, out_dir: Path,
               runtime: Runtime, log: Callable[[str], None], args: argparse.Namespace,
               num_epochs: int) -> None:
    """Train one fold to ``out_dir/fold<k>.pt`` (resuming when asked and possible).

    The fold's previous checkpoint and predictions stay until the new fold has finished: the
    trainer replaces ``fold<k>.pt`` in one rename at the end (see :class:`Trainer`), and the
    predictions, tied to the checkpoint's sha256, are made again then.
    """
    checkpoint = out_dir / f"fold{fold}.pt"
    resume_point = checkpoint.with_name(f"fold{fold}_last.pt")
    if args.resume and not resume_point.exists() and checkpoint.exists():
        state = fold_state(checkpoint, f"Delete it and rerun with --resume: fold {fold} then trains "
                                       "again from its first epoch.")
        if state.get("finished"):
            log(f"fold {fold}: already finished (best epoch {state['best_epoch']}), nothing to resume")
            return
    if runtime.distributed:
        dist.barrier()
    seed_everything(cfg.seed + fold)
    generator = torch.Generator().manual_seed(cfg.seed + fold)
    train_rows, valid_rows = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
    extra = _pseudo_extra(cfg, data, fold) if cfg.pseudo_labels else None
    train_set = _dataset(cfg, data, train_rows, cfg.transforms.get("train"), True, extra)
    valid_set = _dataset(cfg, data, valid_rows, cfg.transforms.get("test"), False)
    n_pseudo = len(train_set) - len(train_rows)
    log(f"fold {fold}: {len(train_rows)} train" + (f" + {n_pseudo} pseudo-labelled test" if n_pseudo else "")
        + f", {len(valid_rows)} valid examples, {num_epochs} epochs on {runtime.device}")
    train_loader = make_loader(train_set, cfg.batch_size, runtime, True, cfg.seed + fold, generator,
                               drop_last=len(train_set) > cfg.batch_size)
    if cfg.train_source != "files":  # fresh batches made on the device
        train_loader = make_source(cfg, runtime.device, cfg.seed + fold, runtime.rank,
                                   max_steps=max(1, DEBUG_TRAIN_SIZE // cfg.batch_size) if data.debug else None)
        log(f"fold {fold}: training on {len(train_loader)} generated batches per epoch "
            f"(train_source {cfg.train_source!r}), validating on the files")
    valid_loader = make_loader(valid_set, cfg.batch_size, runtime, False)
    model = wrap_model(build_model(cfg), runtime, cfg)
    trainer = make_trainer(cfg, model, checkpoint, runtime, log, args.progress_bar, generator)
    trainer.state["data"] = data.trained_on  # which data this fold's model learns from
    trainer.callbacks.append(HistoryWriter(out_dir, fold))  # history.csv, learning_curve.png
    state = trainer.fit(train_loader, valid_loader, num_epochs, resume=args.resume)
    if runtime.distributed:
        dist.barrier()  # rank 0 finishes writing the checkpoint before any rank loads it to predict
    log(f"fold {fold}: best valid AUC {state['best_score']:.5f} at epoch {state['best_epoch']}")


def fold_state(checkpoint: Path, fix: str) -> dict[str, Any]:
    """The ``state`` (epoch, best_epoch, finished, history) of a fold checkpoint."""
    return load_checkpoint(checkpoint, fix, ("model", "state"))["state"]


def checkpoint_trainer(cfg: type, checkpoint: Path, runtime: Runtime, log: Callable[[str], None],
                       progress_bar: bool) -> Trainer:
    """A trainer holding the weights and state of a fold checkpoint, ready to predict."""
    model = wrap_model(make_model(cfg, offline=True), runtime, cfg)
    trainer = make_trainer(cfg, model, checkpoint, runtime, log, progress_bar)
    fold = checkpoint.stem[4:]
    command = f"python train.py --config {cfg.name} --limit_fold {fold}"
    trainer.load_best(f"Delete it and train fold {fold} again ({command}).",
                      f"train fold {fold} again ({command})")
    return trainer


def unfinished_warning(checkpoint: Path, state: dict[str, Any]) -> str | None:
    """What to tell a user who predicts from a fold whose training has not ended."""
    if state.get("finished"):
        return None
    return (f"warning: {checkpoint} is from an unfinished fold (best epoch {state.get('best_epoch')} "
            f"after {state.get('epoch', -1) + 1} epochs): predicting with it anyway; finish the fold "
            "with --resume and the predictions are made again from the final checkpoint")


def predictions_current(predictions: Path, checkpoint: Path,
                        identity: dict[str, Any] | None = None) -> bool:
    """Whether ``predictions`` were made from this very ``checkpoint`` file (its sha256) and, when
    ``identity`` is given, on these data (:func:`utils.data_identity`)."""
    if not (predictions.exists() and checkpoint.exists()):
        return False
    try:
        with np.load(predictions) as saved:
            made_from = str(saved["checkpoint_sha256"]) if "checkpoint_sha256" in saved else None
            recorded = {part: str(saved[f"data_{part}"]) for part in ("train", "test", "simulation")
                        if f"data_{part}" in saved}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # a torn file: make it again
        return False
    if identity is not None and (not {"train", "test"} <= set(recorded) or identity_differences(
            {k: v or None for k, v in recorded.items()}, identity)):
        return False
    return made_from == file_digest(checkpoint)


def trained_on(path: Path) -> dict[str, Any] | None:
    """The data record (``state['data']``) of a fold checkpoint or resume point: what its model
    learnt from; None for an unreadable file or one written before records were kept."""
    try:
        state = load_checkpoint(path, "", ("model", "state"))["state"]
    except G2NetError:
        return None  # the commands that use the file name it with their own fix
    data = state.get("data") if isinstance(state, dict) else None
    return data if isinstance(data, dict) else None


def check_fold_data(cfg: type, data: ExperimentData, out_dir: Path, n_folds: int,
                    selected: Sequence[int], args: argparse.Namespace, script: str) -> None:
    """Refuse, before anything is trained, a run that would leave folds trained on other data
    beside folds of the current data (one out-of-fold table of two data sets), or that would
    predict with, skip or resume a fold trained on other data."""
    retrains = set() if (args.inference or args.skip_existing or args.resume) else set(selected)
    stale = []
    for fold in range(n_folds):
        for path in (out_dir / f"fold{fold}.pt", out_dir / f"fold{fold}_last.pt"):
            record = trained_on(path) if path.exists() else None
            if record is not None and identity_differences(record, data.trained_on):
                stale.append((fold, identity_differences(record, data.trained_on)))
                break
    kept = [(fold, differ) for fold, differ in stale if fold not in retrains]
    if not kept:
        return
    folds_text = ", ".join(str(fold) for fold, _ in kept)
    differ = sorted({part for _, parts in kept for part in parts})
    debug = " --debug" if data.debug else ""
    flags = [flag for flag, on in (("--inference", args.inference), ("--skip_existing", args.skip_existing),
                                   ("--resume", args.resume)) if on]
    why = (f"{' and '.join(flags)} would use them with the current data" if flags else
           f"--limit_fold {args.limit_fold} would mix them with folds of the current data in one "
           "out-of-fold table")
    raise G2NetError(f"{out_dir}: fold{'s' if len(kept) > 1 else ''} {folds_text} of experiment "
                     f"{cfg.name} {'were' if len(kept) > 1 else 'was'} trained on other data than "
                     f"the input folder holds now (another {describe_differences(differ)}); {why}. "
                     f"Retrain experiment {cfg.name} on the current data, every fold in one run "
                     f"(python {script} --config {cfg.name}{debug}), or move {out_dir} away to keep "
                     "the old models")


def tta_predict(cfg: type, trainer: Trainer, loader: DataLoader, desc: str) -> np.ndarray:
    """Logits of ``loader``'s examples under the config's ``tta`` transforms (the sign flip)."""
    return trainer.predict(make_tta_dataloader(loader, cfg.transforms.get("tta")), desc=desc)


def predict_fold(cfg: type, data: ExperimentData, folds: np.ndarray, fold: int, out_dir: Path,
                 runtime: Runtime, log: Callable[[str], None], args: argparse.Namespace) -> None:
    """Out-of-fold and test logits of fold ``k``'s checkpoint into ``fold<k>_predictions.npz``,
    stamped with the checkpoint's sha256 and epochs so that stale predictions are recognised."""
    checkpoint = out_dir / f"fold{fold}.pt"
    digest = file_digest(checkpoint)
    trainer = checkpoint_trainer(cfg, checkpoint, runtime, log, args.progress_bar)
    warning = unfinished_warning(checkpoint, trainer.state)
    if warning:
        log(warning)
    valid_rows = np.flatnonzero(folds == fold)
    loaders = {"oof": make_loader(_dataset(cfg, data, valid_rows, cfg.transforms.get("test"), False),
                                  cfg.batch_size, runtime, False),
               "test": make_loader(_test_dataset(cfg, data, cfg.transforms.get("test")),
                                   cfg.batch_size, runtime, False)}
    result: dict[str, np.ndarray] = {
        "valid_rows": valid_rows, "checkpoint_sha256": np.array(digest),
        "checkpoint_best_epoch": np.array(trainer.state.get("best_epoch", -1)),
        "checkpoint_finished": np.array(bool(trainer.state.get("finished"))),
        # the data these rows belong to: assemble_outputs uses only predictions of the current data
        **{f"data_{part}": np.array(value or "") for part, value in (data.identity or {}).items()}}
    for key, loader in loaders.items():
        result[key] = trainer.predict(loader, desc=f"fold {fold} {key}")
        if args.tta:
            flipped = tta_predict(cfg, trainer, loader, desc=f"fold {fold} {key} tta")
            result[f"{key}_tta"] = (result[key] + flipped) / 2
    if runtime.is_main:
        atomic_write(out_dir / f"fold{fold}_predictions.npz", lambda f: np.savez(f, **result))


def offline_model_params(cfg: type) -> dict[str, Any]:
    """Model arguments for rebuilding a trained model: its weights come from the checkpoint."""
    params = dict(cfg.model_params)
    if "pretrained" in params:
        params["pretrained"] = False
    return params


def assemble_outputs(cfg: type, data: ExperimentData, folds: np.ndarray, out_dir: Path,
                     log: Callable[[str], None]) -> dict[str, np.ndarray]:
    """``outoffolds.npy`` (N_train, 1) and ``predictions.npy`` (cv, N_test, 1) from the fold files.

    Rows of folds without predictions are NaN, and the log says which folds are missing.
    """
    n_folds = int(folds.max()) + 1
    outputs: dict[str, np.ndarray] = {}
    missing = []
    for suffix in ("", "_tta"):
        oof = np.full((len(folds), 1), np.nan, dtype=np.float32)
        test = np.full((n_folds, len(data.test), 1), np.nan, dtype=np.float32)
        found = False
        for fold in range(n_folds):
            path = out_dir / f"fold{fold}_predictions.npz"
            if not predictions_current(path, out_dir / f"fold{fold}.pt", data.identity):
                if suffix == "":
                    missing.append(fold)
                continue
            saved = np.load(path)
            if f"oof{suffix}" not in saved:
                continue
            found = True
            oof[saved["valid_rows"]] = saved[f"oof{suffix}"]
            test[fold] = saved[f"test{suffix}"]
        if found:
            atomic_save_npy(out_dir / f"outoffolds{suffix}.npy", oof)
            atomic_save_npy(out_dir / f"predictions{suffix}.npy", test)
            outputs[suffix] = oof
    atomic_save_npy(out_dir / "folds.npy", folds)
    identity = data.identity or {}
    trained = {k: v for k, v in identity.items() if k in ("train", "simulation")}
    write_data_record(out_dir, {
        **{f"outoffolds{suffix}.npy": trained for suffix in outputs},
        **{f"predictions{suffix}.npy": identity for suffix in outputs},
        "folds.npy": trained})
    if missing:
        log(f"folds {missing} have no predictions from their current checkpoint on the current data: "
            "their rows are NaN. Train them (--limit_fold K), or predict them again (--inference), "
            "to complete the outputs.")
    return outputs


def oof_auc(oof: np.ndarray, targets: np.ndarray) -> float | None:
    """AUC of the predicted out-of-fold rows; None while fewer than both classes are predicted."""
    mask = np.isfinite(oof[:, 0])
    if mask.sum() == 0 or len(np.unique(targets[mask])) < 2:
        return None
    return float(roc_auc(targets[mask], oof[mask]))


def run_experiment(cfg: type, args: argparse.Namespace) -> dict[str, Any]:
    """Train (unless --inference) and predict every requested fold of ``cfg``; write the outputs.

    The run holds its results folder for its whole length (one run per folder); a run that fails
    before writing anything but its log removes the folder it created.
    """
    check_params(cfg)
    debug = bool(args.debug or cfg.debug)
    out_dir = experiment_dir(cfg, debug)
    output_folder(results_dir(), "the results folder (G2NET_RESULTS_DIR)")
    output_folder(out_dir, f"the results folder of {cfg.name}")
    # the input tables and the folds are checked before the results folder is touched
    data = load_data(cfg, debug)
    folds = split_folds(cfg, data.train["target"].values, Path(str(cfg.train_path)).name)
    n_folds = int(folds.max()) + 1
    if args.limit_fold is not None and not 0 <= args.limit_fold < n_folds:
        raise G2NetError(f"--limit_fold {args.limit_fold} is out of range: config {cfg.name} has "
                         f"{n_folds} folds (0 to {n_folds - 1})")
    runtime = setup_runtime(args.gpu, args.num_workers, cfg.deterministic)
    cfg = for_device(cfg, runtime)
    with claim_run_folder(out_dir, runtime.is_main) as created:
        logger = make_logger(out_dir, cfg.name, args.silent, runtime.is_main)
        try:
            return _run_folds(cfg, args, runtime, out_dir, logger.info, debug, data, folds)
        except BaseException:
            close_logger(logger)
            if created and remove_if_empty_run(out_dir):
                print(f"{out_dir} removed: the run failed before writing anything but its log",
                      file=sys.stderr)
            raise
        finally:
            close_logger(logger)


def _run_folds(cfg: type, args: argparse.Namespace, runtime: Runtime, out_dir: Path,
               log: Callable[[str], None], debug: bool, data: ExperimentData,
               folds: np.ndarray) -> dict[str, Any]:
    print_config(cfg, log)
    if cfg.pseudo_labels:
        validate_pseudo_labels(cfg.pseudo_labels)
        _parent_predictions(cfg, data)  # fail before any training when the parent is missing
    targets = data.train["target"].values.astype(np.float32)
    n_folds = int(folds.max()) + 1
    selected = [args.limit_fold] if args.limit_fold is not None else list(range(n_folds))
    # the folder's folds are checked before any is trained: none of another data set is kept
    check_fold_data(cfg, data, out_dir, n_folds, selected, args,
                    "train_pseudo.py" if cfg.pseudo_labels else "train.py")
    num_epochs = min(cfg.num_epochs, DEBUG_MAX_EPOCHS) if debug else cfg.num_epochs
    log(f"{len(data.train)} training and {len(data.test)} test examples, {n_folds} folds, "
        f"device {runtime.device}, {runtime.num_workers} DataLoader workers")
    started = time.time()
    for fold in selected:
        checkpoint = out_dir / f"fold{fold}.pt"
        if args.inference:
            if not checkpoint.exists():
                raise G2NetError(f"--inference needs {checkpoint}; train fold {fold} first "
                                 f"(python train.py --config {cfg.name} --limit_fold {fold})")
        elif args.skip_existing and checkpoint.exists() and fold_state(
                checkpoint, f"Delete it, or rerun without --skip_existing to train fold {fold} "
                            "again.").get("finished"):
            log(f"fold {fold}: checkpoint is finished, skipped (--skip_existing)")
        else:
            train_fold(cfg, data, folds, fold, out_dir, runtime, log, args, num_epochs)
        predictions = out_dir / f"fold{fold}_predictions.npz"
        if args.inference or args.tta or not predictions_current(predictions, checkpoint, data.identity):
            predict_fold(cfg, data, folds, fold, out_dir, runtime, log, args)
        if runtime.distributed:
            dist.barrier()
    summary: dict[str, Any] = {"out_dir": out_dir}
    if runtime.is_main:
        outputs = assemble_outputs(cfg, data, folds, out_dir, log)
        for suffix, oof in outputs.items():
            auc = oof_auc(oof, targets)
            summary[f"oof_auc{suffix}"] = auc
            if auc is not None:
                log(f"out-of-fold AUC{' (TTA)' if suffix else ''}: {auc:.5f}")
        log(f"outputs in {out_dir} ({time.time() - started:.0f} s)")
        notify_me(f"g2net {cfg.name}: done, OOF AUC {summary.get('oof_auc')}")
    if runtime.distributed:
        dist.barrier()
    return summary


def main(argv: Sequence[str] | None, pseudo: bool) -> dict[str, Any] | None:
    """Entry point shared by train.py (``pseudo=False``) and train_pseudo.py (``pseudo=True``)."""
    script = "train_pseudo.py" if pseudo else "train.py"
    parser = build_parser(f"{script}: train a config's folds and write its predictions")
    args = parser.parse_args(argv)
    if args.list:
        for name, backbone, count in describe_configs():
            size = f"{count / 1e6:8.2f}M" if count is not None else "       ?"
            print(f"{name:24s} {backbone:32s} {size} params")
        return None
    if not args.config:
        parser.error("--config NAME is required (python train.py --list shows the configs)")
    cfg = get_config(args.config)
    if cfg.pseudo_labels and not pseudo:
        raise G2NetError(f"config {cfg.__name__} trains on pseudo-labels; run python train_pseudo.py "
                         f"--config {cfg.__name__}")
    if pseudo and not cfg.pseudo_labels:
        raise G2NetError(f"config {cfg.__name__} has no pseudo_labels; run python train.py "
                         f"--config {cfg.__name__}")
    if args.wait > 0:
        time.sleep(args.wait)
    try:
        return run_experiment(cfg, args)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
