"""What train.py, train_pseudo.py and predict.py share: config lookup, data, folds and outputs.

``run_experiment`` is the single fold loop driver; the two training scripts differ only in
whether they accept configs with ``pseudo_labels``.
"""
from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from datasets import CacheView, load_cache
from trainer import Trainer
from training_extras import make_tta_dataloader
from utils import (G2NetError, default_num_workers, input_dir, print_config, read_table, results_dir,
                   seed_everything, atomic_save_npy, notify_me)

DEBUG_TRAIN_SIZE = 512
DEBUG_TEST_SIZE = 128
DEBUG_MAX_EPOCHS = 2


# ----------------------------------------------------------------------------- configs
def all_configs() -> dict[str, type]:
    """Every experiment class defined in configs.py, by name."""
    import configs

    return {name: obj for name, obj in vars(configs).items()
            if isinstance(obj, type) and issubclass(obj, configs.Baseline)
            and obj.__module__ == configs.__name__}


def get_config(name: str) -> type:
    """The config class called ``name``; unknown names list the closest ones."""
    configs = all_configs()
    if name in configs:
        return configs[name]
    lowered = {n.lower(): n for n in configs}
    if name.lower() in lowered:
        return configs[lowered[name.lower()]]
    close = difflib.get_close_matches(name, list(configs), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise G2NetError(f"unknown config {name!r}.{hint} Run python train.py --list to see them all.")


def describe_configs() -> list[tuple[str, str, int | None]]:
    """(name, backbone, parameter count) for ``train.py --list``; counts need building the model."""
    rows = []
    for name, cfg in all_configs().items():
        backbone = cfg.model_params.get("model_name") or cfg.model.__name__
        try:
            with torch.device("meta"):
                model = cfg.model(**offline_model_params(cfg))
            count = sum(p.numel() for p in model.parameters())
        except Exception:  # a model that cannot be built on the meta device
            count = None
        rows.append((name, backbone, count))
    return rows


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="experiment class in configs.py, e.g. Nspec16")
    parser.add_argument("--list", action="store_true", help="list every config with its backbone and size")
    parser.add_argument("--limit_fold", type=int, default=None, help="train only fold K (0-based)")
    parser.add_argument("--inference", action="store_true", help="only predict from existing checkpoints")
    parser.add_argument("--tta", action="store_true", help="also write flipped-waveform TTA predictions")
    parser.add_argument("--progress_bar", action="store_true", help="tqdm bars for every epoch")
    parser.add_argument("--skip_existing", action="store_true", help="skip folds whose checkpoint exists")
    parser.add_argument("--resume", action="store_true", help="continue interrupted folds")
    parser.add_argument("--debug", action="store_true",
                        help=f"small subset ({DEBUG_TRAIN_SIZE} train / {DEBUG_TEST_SIZE} test, "
                             f"{DEBUG_MAX_EPOCHS} epochs) into results/<name>_debug")
    parser.add_argument("--silent", action="store_true", help="log to the file only")
    parser.add_argument("--gpu", type=int, nargs="+", default=None, help="CUDA device ids to use")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait before starting")
    parser.add_argument("--num_workers", type=int, default=None,
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


def _resolve(name: str | os.PathLike | None, base: Path) -> Path | None:
    if name is None:
        return None
    path = Path(name)
    return path if path.is_absolute() else base / path


def read_prepared(path: Path, what: str) -> pd.DataFrame:
    """``train.csv`` / ``test.csv`` from prep_data.py, with paths resolved against the csv's folder."""
    table = read_table(path, ["id", "path"],
                       f"put the competition files (or python simulate.py output) in {path.parent}/ "
                       f"and run python prep_data.py --cache to make the {what} table "
                       "(G2NET_INPUT_DIR chooses another input folder)")
    table["path"] = [str(_resolve(p, path.parent)) for p in table["path"]]
    return table


def load_data(cfg: type, debug: bool = False) -> ExperimentData:
    base = input_dir()
    train = read_prepared(_resolve(cfg.train_path, base), "training")
    test_path = _resolve(cfg.test_path, base)
    test = read_prepared(test_path, "test")
    train_rows, test_rows = np.arange(len(train)), np.arange(len(test))
    if debug:
        rng = np.random.default_rng(cfg.seed)
        train_rows = np.sort(rng.permutation(len(train))[:DEBUG_TRAIN_SIZE])
        test_rows = np.sort(rng.permutation(len(test))[:DEBUG_TEST_SIZE])
    caches = []
    for name, table in ((cfg.train_cache, train), (cfg.test_cache, test)):
        path = _resolve(name, base)
        caches.append(load_cache(path, len(table)) if path is not None and path.exists() else None)
    return ExperimentData(train.iloc[train_rows].reset_index(drop=True),
                          test.iloc[test_rows].reset_index(drop=True),
                          caches[0], caches[1], train_rows, test_rows, len(test), debug)


class ShardSampler(Sampler[int]):
    """Per-epoch seeded shuffle (or identity), sharded over ranks as ``indices[rank::world]``.

    The same sampler serves single-process and distributed runs, so a one-process torchrun run
    sees exactly the batches of a plain run; the order depends only on (seed, epoch), which also
    makes resumed runs reproducible. Shards are padded to equal length; ``gather_ordered`` removes
    the padding again.
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        self.size, self.shuffle, self.seed, self.rank, self.world = size, shuffle, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = len(self) * self.world
        order += order[: total - len(order)]
        return iter(order[self.rank::self.world])

    def __len__(self) -> int:
        return -(-self.size // self.world)


def _seed_worker(worker_id: int) -> None:
    np.random.seed(torch.initial_seed() % 2 ** 32)


@dataclass
class Runtime:
    device: torch.device
    num_workers: int
    rank: int = 0
    world: int = 1
    device_ids: Sequence[int] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def setup_runtime(gpu: Sequence[int] | None, num_workers: int | None, deterministic: bool) -> Runtime:
    """Pick the device, worker count and (under torchrun) the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if gpu and not cuda:
        raise G2NetError(f"--gpu {' '.join(map(str, gpu))} was given but no CUDA device is visible; "
                         "drop --gpu to train on the CPU")
    if cuda:
        ids = list(gpu) if gpu else list(range(torch.cuda.device_count()))
        device = torch.device("cuda", ids[local_rank % len(ids)] if world > 1 else ids[0])
        torch.cuda.set_device(device)
    else:
        ids, device = None, torch.device("cpu")
    if "WORLD_SIZE" in os.environ and not (dist.is_available() and dist.is_initialized()):
        dist.init_process_group("nccl" if cuda else "gloo")
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True
    workers = default_num_workers() if num_workers is None else num_workers
    return Runtime(device, workers, rank, world, ids if gpu and len(gpu) > 1 else None)


def make_loader(dataset: Any, batch_size: int, runtime: Runtime, shuffle: bool, seed: int = 0,
                generator: torch.Generator | None = None, drop_last: bool = False) -> DataLoader:
    sampler = ShardSampler(len(dataset), shuffle, seed, runtime.rank, runtime.world)
    batch_size = min(batch_size, max(len(sampler), 1))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                      num_workers=runtime.num_workers, pin_memory=runtime.device.type == "cuda",
                      persistent_workers=runtime.num_workers > 0, drop_last=drop_last,
                      generator=generator, worker_init_fn=_seed_worker)


# ----------------------------------------------------------------------------- logging
def make_logger(out_dir: Path, name: str, silent: bool, is_main: bool) -> Callable[[str], None]:
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
    return logger.info


# ----------------------------------------------------------------------------- model pieces
def build_model(cfg: type) -> torch.nn.Module:
    model = cfg.model(**cfg.model_params)
    if cfg.weight_path is not None:
        path = _resolve(cfg.weight_path, results_dir())
        if not path.exists():
            raise G2NetError(f"weight_path {path} of config {cfg.name} does not exist; train the "
                             "experiment that makes it first or set weight_path = None")
        saved = torch.load(path, map_location="cpu", weights_only=False)
        try:
            model.load_state_dict(saved.get("model", saved) if isinstance(saved, dict) else saved)
        except RuntimeError as exc:
            raise G2NetError(f"weights in {path} do not fit the model of config {cfg.name}: "
                             f"{str(exc).splitlines()[0]}") from None
    return model


def wrap_model(model: torch.nn.Module, runtime: Runtime, cfg: type | None = None) -> torch.nn.Module:
    """Move to the device (channels_last on CUDA when the config asks), wrap in DDP (torchrun) or
    DataParallel (several --gpu), then compile (config field ``compile``: False, True, a
    ``torch.compile`` mode, or 'cudagraphs' for the cudagraphs backend) on the device types of
    ``compile_devices`` (default: CUDA only, where it was measured; a CPU run stays eager).

    channels_last converts the weights; the 2D models then lay out their image to match. Measured
    on an H200, it doubles Nspec16's step rate (bf16: 498 -> 990 examples/s).
    """
    compile = getattr(cfg, "compile", False)
    if runtime.device.type not in getattr(cfg, "compile_devices", ("cuda",)):
        compile = False
    model = model.to(runtime.device)
    if getattr(cfg, "channels_last", False) and runtime.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if runtime.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    elif runtime.device_ids:
        model = torch.nn.DataParallel(model, device_ids=list(runtime.device_ids))
    if compile == "cudagraphs":  # CUDA graphs of the traced graphs, no Inductor code generation
        model = torch.compile(model, backend="cudagraphs")
    elif compile:
        model = torch.compile(model, mode=compile if isinstance(compile, str) else None)
    return model


def for_device(cfg: type, runtime: Runtime) -> type:
    """``cfg`` with its exact preprocessing moved to the GPU when it trains on one.

    Normalize / BandPass / Whiten then run batched on the device (``transforms['gpu']``) and the
    DataLoader workers only read and augment; results equal the CPU versions within float
    tolerance (``transforms.gpu_transforms`` moves only steps that commute with what follows).
    """
    if not (getattr(cfg, "gpu_preprocess", False) and runtime.device.type == "cuda"
            and cfg.transforms.get("gpu") is None):
        return cfg
    from transforms import gpu_transforms

    return type(cfg.__name__, (cfg,), {"name": cfg.name, "__module__": cfg.__module__,
                                       "__doc__": cfg.__doc__,
                                       "transforms": gpu_transforms(cfg.transforms)})


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
    return results_dir() / (f"{cfg.name}_debug" if debug else cfg.name)


def split_folds(cfg: type, targets: np.ndarray) -> np.ndarray:
    """Fold number of every training row, from the config's splitter."""
    folds = np.full(len(targets), -1, dtype=np.int64)
    for k, (_, valid) in enumerate(cfg.splitter.split(np.zeros(len(targets)), targets)):
        folds[valid] = k
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
    from pseudo import load_parent_predictions

    parent = str(cfg.pseudo_labels["path"])
    parent_cfg = all_configs().get(parent)
    is_pseudo = bool(parent_cfg is not None and parent_cfg.pseudo_labels)
    if data.debug:
        return load_parent_predictions(parent, len(data.test_rows), is_pseudo, debug=True)
    return load_parent_predictions(parent, data.n_test_total, is_pseudo)[:, data.test_rows]


def _pseudo_extra(cfg: type, data: ExperimentData, fold: int) -> dict[str, Any]:
    """Dataset arguments that append the parent's soft-labelled test examples for this fold."""
    from pseudo import pseudo_targets

    from pseudo import validate_pseudo_labels

    options = {k: v for k, v in validate_pseudo_labels(cfg.pseudo_labels).items() if k != "path"}
    rows, targets = pseudo_targets(_parent_predictions(cfg, data), fold, **options)
    cache = CacheView(data.test_cache, data.test_rows[rows]) if data.test_cache is not None else None
    return dict(pseudo_label=True, test_paths=data.test["path"].values[rows],
                test_targets=np.asarray(targets).reshape(-1), test_cache=cache)


def train_fold(cfg: type, data: ExperimentData, folds: np.ndarray, fold: int, out_dir: Path,
               runtime: Runtime, log: Callable[[str], None], args: argparse.Namespace,
               num_epochs: int) -> None:
    """Train one fold to ``out_dir/fold<k>.pt`` (resuming when asked and possible)."""
    checkpoint = out_dir / f"fold{fold}.pt"
    resume_point = checkpoint.with_name(f"fold{fold}_last.pt")
    if args.resume and not resume_point.exists() and checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state"]
        if state.get("finished"):
            log(f"fold {fold}: already finished (best epoch {state['best_epoch']}), nothing to resume")
            return
    if not args.resume:
        for stale in (checkpoint, resume_point, out_dir / f"fold{fold}_predictions.npz"):
            if runtime.is_main and stale.exists():
                stale.unlink()
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
    if getattr(cfg, "train_source", "files") != "files":  # fresh batches made on the device
        from online import make_source

        train_loader = make_source(cfg, runtime.device, cfg.seed + fold, runtime.rank,
                                   max_steps=max(1, DEBUG_TRAIN_SIZE // cfg.batch_size) if data.debug else None)
        log(f"fold {fold}: training on {len(train_loader)} generated batches per epoch "
            f"(train_source {cfg.train_source!r}), validating on the files")
    valid_loader = make_loader(valid_set, cfg.batch_size, runtime, False)
    model = wrap_model(build_model(cfg), runtime, cfg)
    trainer = make_trainer(cfg, model, checkpoint, runtime, log, args.progress_bar, generator)
    state = trainer.fit(train_loader, valid_loader, num_epochs, resume=args.resume)
    if runtime.distributed:
        dist.barrier()  # rank 0 finishes writing the checkpoint before any rank loads it to predict
    log(f"fold {fold}: best valid AUC {state['best_score']:.5f} at epoch {state['best_epoch']}")


def checkpoint_trainer(cfg: type, checkpoint: Path, runtime: Runtime, log: Callable[[str], None],
                       progress_bar: bool) -> Trainer:
    """A trainer holding the weights of a fold checkpoint, ready to predict."""
    model = wrap_model(cfg.model(**offline_model_params(cfg)), runtime, cfg)
    trainer = make_trainer(cfg, model, checkpoint, runtime, log, progress_bar)
    trainer.load_best()
    return trainer


def tta_predict(cfg: type, trainer: Trainer, loader: DataLoader, desc: str) -> np.ndarray:
    """Logits of ``loader``'s examples under the config's ``tta`` transforms (the sign flip)."""
    return trainer.predict(make_tta_dataloader(loader, cfg.transforms.get("tta")), desc=desc)


def predict_fold(cfg: type, data: ExperimentData, folds: np.ndarray, fold: int, out_dir: Path,
                 runtime: Runtime, log: Callable[[str], None], args: argparse.Namespace) -> None:
    """Out-of-fold and test logits of fold ``k``'s checkpoint into ``fold<k>_predictions.npz``."""
    trainer = checkpoint_trainer(cfg, out_dir / f"fold{fold}.pt", runtime, log, args.progress_bar)
    valid_rows = np.flatnonzero(folds == fold)
    loaders = {"oof": make_loader(_dataset(cfg, data, valid_rows, cfg.transforms.get("test"), False),
                                  cfg.batch_size, runtime, False),
               "test": make_loader(_test_dataset(cfg, data, cfg.transforms.get("test")),
                                   cfg.batch_size, runtime, False)}
    result: dict[str, np.ndarray] = {"valid_rows": valid_rows}
    for key, loader in loaders.items():
        result[key] = trainer.predict(loader, desc=f"fold {fold} {key}")
        if args.tta:
            flipped = tta_predict(cfg, trainer, loader, desc=f"fold {fold} {key} tta")
            result[f"{key}_tta"] = (result[key] + flipped) / 2
    if runtime.is_main:
        from utils import atomic_write

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
            if not path.exists():
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
    if missing:
        log(f"folds {missing} have no predictions yet: their rows are NaN. Train them (--limit_fold K) "
            "and rerun with --inference to complete the outputs.")
    return outputs


def oof_auc(oof: np.ndarray, targets: np.ndarray) -> float | None:
    from metrics import AUC

    mask = np.isfinite(oof[:, 0])
    if mask.sum() == 0 or len(np.unique(targets[mask])) < 2:
        return None
    return float(AUC()(targets[mask], oof[mask]))


def run_experiment(cfg: type, args: argparse.Namespace) -> dict[str, Any]:
    """Train (unless --inference) and predict every requested fold of ``cfg``; write the outputs."""
    debug = bool(args.debug or cfg.debug)
    runtime = setup_runtime(args.gpu, args.num_workers, cfg.deterministic)
    cfg = for_device(cfg, runtime)
    out_dir = experiment_dir(cfg, debug)
    log = make_logger(out_dir, cfg.name, args.silent, runtime.is_main)
    print_config(cfg, log)
    data = load_data(cfg, debug)
    if cfg.pseudo_labels:
        from pseudo import validate_pseudo_labels

        validate_pseudo_labels(cfg.pseudo_labels)
        _parent_predictions(cfg, data)  # fail before any training when the parent is missing
    targets = data.train["target"].values.astype(np.float32)
    folds = split_folds(cfg, targets)
    n_folds = int(folds.max()) + 1
    if args.limit_fold is not None and not 0 <= args.limit_fold < n_folds:
        raise G2NetError(f"--limit_fold {args.limit_fold} is out of range: config {cfg.name} has "
                         f"{n_folds} folds (0 to {n_folds - 1})")
    selected = [args.limit_fold] if args.limit_fold is not None else list(range(n_folds))
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
        elif args.skip_existing and checkpoint.exists() and not checkpoint.with_name(f"fold{fold}_last.pt").exists():
            log(f"fold {fold}: checkpoint exists, skipped (--skip_existing)")
        else:
            train_fold(cfg, data, folds, fold, out_dir, runtime, log, args, num_epochs)
        predictions = out_dir / f"fold{fold}_predictions.npz"
        if args.inference or args.tta or not predictions.exists():
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
