"""Throughput of one config on this machine: is the GPU fed, and how close is training to the model's
own ceiling?

``python bench.py --config NAME [--steps N] [--batch-size B] [--json FILE] [--synthetic]``

Four figures, in examples per second, all through the project's real code (``runtime.make_loader``,
``Trainer.train_one_epoch``, ``Trainer.evaluate``):

- ``data``: iterating the training DataLoader alone (reading, per-example transforms, collation,
  pinning), nothing on the device;
- ``model``: training steps on a few real batches already on the device (GPU transforms, forward,
  backward, optimizer step under the trainer's AMP / channels_last settings): the ceiling;
- ``train``: one epoch of training steps fed by the DataLoader (end to end);
- ``valid``: one validation pass (inference) fed by its DataLoader;

plus the peak GPU memory of the device phases. ``--setting original`` reproduces the original
pipeline (per-file reads, scipy preprocessing in the main process, fp16, no channels_last);
``--setting optimized`` reads the memory-mapped cache with DataLoader workers, runs Normalize /
BandPass / Whiten batched on the GPU (:func:`gpu_transforms`), bf16 and channels_last.
``--synthetic`` first writes a noise-only folder in the competition layout (``--data-dir``) and its
caches, so the benchmark needs no competition data. ``--summarize A.json B.json ...`` prints the
results of several runs as one markdown table. See docs/gpu.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from datasets import CacheView, load_cache, read_prepared
from g2net.simulation.noise import colored_noise
from g2net.experiments.runner import build_model, get_config, make_trainer
from g2net.training.runtime import make_loader, setup_runtime, wrap_model
from prep_data import prepare
from transforms import GpuPreprocess, cpu_transforms, gpu_transforms
from utils import G2NetError, atomic_write, cpu_count, default_num_workers, example_path, input_dir

PHASES = ("data", "model", "train", "valid")


RESULT_KEYS = ("config", "setting", "device", "batch_size", "n_train", "n_valid", "num_workers",
               "amp_dtype", "channels_last", "gpu_transform", "cache", "compile",
               "data_examples_per_s", "model_examples_per_s", "train_examples_per_s",
               "valid_examples_per_s", "train_vs_model", "train_seconds", "train_data_wait_s",
               "peak_gpu_memory_mb", "peak_rss_mb",
               "gpu_transform_max_rel_error", "seconds", "errors")


MODEL_BATCHES = 4  # distinct real batches kept on the device for the model-alone phase


WARMUP_STEPS = 5  # untimed steps first: cudnn autotuning, torch.compile, allocator growth


# =============================================================================================
# A noise-only data set in the competition layout
# =============================================================================================
def _noise_examples(seed: int, indices: Sequence[int]) -> list[np.ndarray]:
    """The simulator's calibrated coloured noise (``noise_model.colored_noise``), one per index."""
    return [colored_noise(np.random.default_rng([seed, index])) for index in indices]


def _write_chunk(job: tuple[str, int, list[tuple[int, str]]]) -> None:
    root, seed, items = job
    examples = _noise_examples(seed, [i for i, _ in items])
    for (_, example_id), x in zip(items, examples):
        path = example_path(root, "train", example_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, x.astype(np.float64))


def make_noise_dataset(root: str | os.PathLike, n_examples: int, seed: int = 0,
                       workers: int | None = None, printer: Callable[[str], None] = print) -> Path:
    """Write ``n_examples`` noise-only training examples (random 0/1 targets) in the competition
    layout under ``root``, then ``train.csv`` and ``train_cache.npy`` with prep_data.

    A folder already made with the same size and seed is reused.
    """
    root = Path(root)
    stamp = root / "bench_noise.json"
    spec = {"n_examples": int(n_examples), "seed": int(seed)}
    if stamp.exists() and json.loads(stamp.read_text()) == spec and (root / "train_cache.npy").exists():
        printer(f"reusing the noise data set in {root}")
        return root
    if n_examples < 2:
        raise G2NetError(f"--synthetic needs at least 2 examples, got {n_examples}")
    rng = np.random.default_rng(seed)
    ids = [f"{v:010x}" for v in rng.choice(16 ** 10, size=n_examples, replace=False)]
    targets = rng.permutation(np.arange(n_examples) % 2)
    started = time.perf_counter()
    items = list(enumerate(ids))
    workers = workers or min(cpu_count(), 16)
    chunks = [(str(root), seed, items[i:i + 256]) for i in range(0, len(items), 256)]
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_write_chunk, chunks))
    else:
        for chunk in chunks:
            _write_chunk(chunk)
    pd.DataFrame({"id": ids, "target": targets}).to_csv(root / "training_labels.csv", index=False)
    printer(f"wrote {n_examples} noise examples to {root} in {time.perf_counter() - started:.1f} s")
    prepare(root, cache=True, progress=False, printer=printer)
    atomic_write(stamp, lambda f: f.write(json.dumps(spec)), mode="w")
    return root


# =============================================================================================
# The measurements
# =============================================================================================
SETTINGS: dict[str, dict[str, Any]] = {
    # what the config says; the cache when prep_data made one; workers from the CPU count
    "config": dict(cache=True, gpu_transform=None, amp=None, channels_last=None, workers=None,
                   compile=None),
    # the original pipeline: per-file reads and scipy preprocessing in the main process, fp16
    "original": dict(cache=False, gpu_transform=False, amp="fp16", channels_last=False, workers=0,
                     compile=None),
    # memory-mapped cache, workers, preprocessing batched on the GPU, bf16, channels_last
    "optimized": dict(cache=True, gpu_transform=True, amp="auto", channels_last=True, workers=None,
                      compile=None),
}


def bench_config(cfg: type, args: argparse.Namespace) -> tuple[type, dict[str, Any]]:
    """The config as benchmarked (a subclass with the setting's fields) and the chosen options."""
    setting = dict(SETTINGS[args.setting])
    for key in ("cache", "gpu_transform", "amp", "channels_last", "compile"):
        if getattr(args, key) is not None:
            setting[key] = getattr(args, key)
    if args.num_workers is not None:
        setting["workers"] = args.num_workers
    fields: dict[str, Any] = {"name": cfg.name, "weight_path": None}
    if "pretrained" in cfg.model_params:  # throughput does not depend on the weights; no download
        fields["model_params"] = {**cfg.model_params, "pretrained": False}
    if args.batch_size is not None:
        fields["batch_size"] = args.batch_size
    if getattr(args, "frontend_method", None) is not None:
        params = fields.get("model_params", cfg.model_params)
        if "spec_params" not in params:
            raise G2NetError(f"--frontend-method: {cfg.__name__} has no spectrogram front-end "
                             "(spec_params)")
        fields["model_params"] = {**params, "spec_params": {**params["spec_params"],
                                                            "method": args.frontend_method}}
    if setting["amp"] is not None:
        fields["amp"] = setting["amp"] != "off"
        fields["amp_precision"] = setting["amp"] if setting["amp"] in ("bf16", "fp16") else None
    if setting["channels_last"] is not None:
        fields["channels_last"] = bool(setting["channels_last"])
    if setting["compile"] is not None:
        fields["compile"] = {"off": False, "on": True}.get(setting["compile"], setting["compile"])
    has_gpu = cfg.transforms.get("gpu") is not None
    if setting["gpu_transform"] and not has_gpu:
        fields["transforms"] = gpu_transforms(cfg.transforms)
    elif setting["gpu_transform"] is False and has_gpu:
        fields["transforms"] = cpu_transforms(cfg.transforms)
    variant = type(cfg.__name__, (cfg,), fields)
    if setting["workers"] is None:
        setting["workers"] = default_num_workers()
    return variant, setting


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def time_data(loader: Any, keep: int) -> tuple[float, list[Any]]:
    """Examples/s of iterating ``loader`` (the first batch, which pays for worker start-up, is not
    timed) and its first ``keep`` batches."""
    kept: list[Any] = []
    count, started = 0, None
    for batch in loader:
        if started is None:
            started = time.perf_counter()
        else:
            count += len(batch[0])
        if len(kept) < keep:
            kept.append(batch)
    seconds = time.perf_counter() - started if started is not None else 0.0
    if count == 0 or seconds <= 0:
        raise G2NetError("the training set gives fewer than two batches; use more examples or a "
                         "smaller --batch-size")
    return count / seconds, kept


def time_model(trainer: Any, batches: list[Any], steps: int) -> float:
    """Examples/s of training steps on batches already on the device (the model's ceiling)."""
    on_device = [tuple(t.to(trainer.device) for t in batch[:2]) for batch in batches]
    trainer.train_one_epoch([on_device[i % len(on_device)] for i in range(WARMUP_STEPS)], 0)
    _synchronize(trainer.device)
    started = time.perf_counter()
    trainer.train_one_epoch([on_device[i % len(on_device)] for i in range(steps)], 0)
    _synchronize(trainer.device)
    return steps * len(on_device[0][0]) / (time.perf_counter() - started)


class _WaitTimer:
    """Iterates a loader and adds up the seconds the caller waits for each batch: an end-to-end
    rate below the model's own with no waiting points at the step, not at the data pipeline."""

    def __init__(self, loader: Any):
        self.loader, self.wait = loader, 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        iterator = iter(self.loader)
        while True:
            tic = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            finally:
                self.wait += time.perf_counter() - tic
            yield batch


def time_train(trainer: Any, loader: Any, record: dict[str, Any] | None = None) -> float:
    """Examples/s of one epoch of training fed by the DataLoader (end to end); ``record`` gets
    ``train_data_wait_s``, the part of the epoch spent waiting for batches."""
    timed = _WaitTimer(loader)
    _synchronize(trainer.device)
    started = time.perf_counter()
    trainer.train_one_epoch(timed, 1)
    _synchronize(trainer.device)
    seconds = time.perf_counter() - started
    if record is not None:
        record["train_seconds"] = round(seconds, 3)
        record["train_data_wait_s"] = round(timed.wait, 3)
    return len(loader) * loader.batch_size / seconds


def time_valid(trainer: Any, loader: Any, warmup: Sequence[Any] = ()) -> float:
    """Examples/s of one validation pass (logits, loss and AUC) fed by its DataLoader, after an
    untimed pass over ``warmup`` batches (a compiled model builds its evaluation graph there)."""
    if warmup:
        trainer.predict([batch[0] for batch in warmup])
    _synchronize(trainer.device)
    started = time.perf_counter()
    trainer.evaluate(loader, 0)
    _synchronize(trainer.device)
    return len(loader.dataset) / (time.perf_counter() - started)


def gpu_split_error(transforms: dict[str, Any], examples: Sequence[np.ndarray],
                    device: torch.device) -> float | None:
    """Largest deviation of the CPU part + ``gpu`` module on ``device`` from the whole numpy
    ``test`` pipeline, relative to the largest output value; None without a ``gpu`` module."""
    gpu = transforms.get("gpu")
    if not isinstance(gpu, GpuPreprocess):
        return None
    full, cpu = cpu_transforms(transforms)["test"], transforms["test"]
    expected = np.stack([full(x) for x in examples])
    partial = torch.from_numpy(np.stack([cpu(x) for x in examples])).to(device)
    with torch.no_grad():
        got = gpu(partial).cpu().numpy()
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {cpu_count()} cores)"


def _noise_root(args: argparse.Namespace) -> Path | None:
    """Where ``--synthetic`` writes its noise data set: ``--data-dir``, else under ``--results-dir``;
    None when neither is given (bench.py then uses a temporary folder, never the current one)."""
    if args.data_dir:
        return Path(args.data_dir)
    return Path(args.results_dir) / "bench_noise" if args.results_dir else None


def run_bench(args: argparse.Namespace, printer: Callable[[str], None] = print,
              save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure every phase (each on its own: one failing is recorded and the rest still run).

    ``save`` receives the results so far after every phase, so that a run killed at its time
    limit still leaves the figures it had.
    """
    started = time.perf_counter()
    cfg, setting = bench_config(get_config(args.config), args)
    base = Path(args.data_dir) if args.data_dir else None
    if args.synthetic:
        if _noise_root(args) is None:
            raise G2NetError("--synthetic: name the folder for the noise data set (--data-dir or "
                             "--results-dir)")
        base = make_noise_dataset(_noise_root(args), args.n_train + args.n_valid, seed=args.seed,
                                  printer=printer)
    base = base or input_dir()
    table = read_prepared(base / cfg.train_path, "training")
    if len(table) < args.n_train + args.n_valid:
        raise G2NetError(f"{base / cfg.train_path} has {len(table)} examples, fewer than --n-train "
                         f"{args.n_train} + --n-valid {args.n_valid}; lower them or use --synthetic")
    cache_path = base / cfg.train_cache if cfg.train_cache else None
    cache = load_cache(cache_path, table) if setting["cache"] and cache_path and cache_path.exists() else None
    # cudnn.benchmark on, as in every non-deterministic run: the figures are for production configs
    runtime = setup_runtime(None, setting["workers"], deterministic=False)
    batch_size = cfg.batch_size
    n_train = args.n_train if args.steps is None else min(args.n_train, args.steps * batch_size)
    train_rows = np.arange(n_train)
    valid_rows = np.arange(args.n_train, args.n_train + args.n_valid)

    def dataset(rows: np.ndarray, transforms: Any, train: bool) -> Any:
        params = dict(cfg.dataset_params) if train else {}
        return cfg.dataset(paths=table["path"].values[rows], targets=table["target"].values[rows],
                           transforms=transforms, cache=CacheView(cache, rows) if cache is not None else None,
                           **params)

    generator = torch.Generator().manual_seed(args.seed)
    train_loader = make_loader(dataset(train_rows, cfg.transforms.get("train"), True),
                               batch_size, runtime, True, args.seed, generator,
                               drop_last=n_train > batch_size)
    valid_loader = make_loader(dataset(valid_rows, cfg.transforms.get("test"), False),
                               batch_size, runtime, False)
    gpu_transform = cfg.transforms.get("gpu")
    result: dict[str, Any] = {
        "config": args.config, "setting": args.label or args.setting, "device": _device_name(runtime.device),
        "torch": torch.__version__, "python": platform.python_version(),
        "batch_size": batch_size, "n_train": n_train, "n_valid": len(valid_rows),
        "num_workers": runtime.num_workers, "cache": cache is not None,
        "gpu_transform": repr(gpu_transform) if gpu_transform is not None else None,
        "cpu_transform": repr(cfg.transforms.get("train")), "channels_last": bool(cfg.channels_last),
        "compile": cfg.compile, "errors": {}, "peak_gpu_memory_mb": {},
    }
    printer(f"bench {args.config} [{result['setting']}] on {result['device']}: batch {batch_size}, "
            f"{n_train} train + {len(valid_rows)} valid examples, {runtime.num_workers} workers, "
            f"cache {'on' if cache is not None else 'off'}, GPU transforms "
            f"{'on' if gpu_transform is not None else 'off'}")

    def phase(name: str, measure: Callable[[], float]) -> None:
        if name not in args.phases:
            return
        if runtime.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(runtime.device)
        tic = time.perf_counter()
        try:
            result[f"{name}_examples_per_s"] = round(float(measure()), 2)
            printer(f"  {name:5s}: {result[f'{name}_examples_per_s']:10.1f} examples/s "
                    f"({time.perf_counter() - tic:.1f} s)")
        except Exception as exc:  # recorded, so that one failure does not lose the other figures
            result[f"{name}_examples_per_s"] = None
            result["errors"][name] = f"{type(exc).__name__}: {exc}"
            printer(f"  {name:5s}: FAILED {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
        if name != "data" and runtime.device.type == "cuda":
            result["peak_gpu_memory_mb"][name] = round(_peak_mb(runtime.device), 1)
        if save is not None:
            save(result)

    kept: list[Any] = []

    def data() -> float:
        rate, batches = time_data(train_loader, MODEL_BATCHES)
        kept.extend(batches)
        return rate

    phase("data", data)
    try:  # the preprocessing on this device must equal the numpy one (float tolerance: 1e-5)
        raw = dataset(valid_rows[:16], None, False)
        result["gpu_transform_max_rel_error"] = gpu_split_error(
            cfg.transforms, [raw[i][0].numpy() for i in range(len(raw))], runtime.device)
    except Exception as exc:
        result["errors"]["gpu_transform_check"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    if result.get("gpu_transform_max_rel_error") is not None:
        printer(f"  GPU preprocessing vs numpy: max relative error "
                f"{result['gpu_transform_max_rel_error']:.2e}")
    trainer = None
    try:
        model = wrap_model(build_model(cfg), runtime, cfg)
        result["amp_dtype"] = None
        trainer = make_trainer(cfg, model, Path(args.results_dir or ".") / "bench_unused.pt",
                                      runtime, lambda message: None, progress_bar=False,
                                      generator=generator)
        result["amp_dtype"] = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else None
        result["parameters"] = sum(p.numel() for p in model.parameters())
    except Exception as exc:
        result["errors"]["model_build"] = f"{type(exc).__name__}: {exc}"
        printer(f"  model: cannot be built: {type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stderr)
    if trainer is not None:
        steps = args.steps or max(len(train_loader), 1)

        def model_alone() -> float:
            if not kept:
                kept.extend(b for b, _ in zip(train_loader, range(MODEL_BATCHES)))
            return time_model(trainer, kept, steps)

        phase("model", model_alone)
        phase("train", lambda: time_train(trainer, train_loader, result))
        if result.get("train_data_wait_s") is not None:
            printer(f"  train: {result['train_data_wait_s']:.2f} s of {result['train_seconds']:.2f} s "
                    "spent waiting for batches")
        phase("valid", lambda: time_valid(trainer, valid_loader, kept[:2] if cfg.compile else ()))
    model_rate, train_rate = result.get("model_examples_per_s"), result.get("train_examples_per_s")
    result["train_vs_model"] = round(train_rate / model_rate, 4) if model_rate and train_rate else None
    peaks = [v for v in result["peak_gpu_memory_mb"].values() if v is not None]
    result["peak_gpu_memory_mb"]["max"] = max(peaks) if peaks else None
    result["peak_rss_mb"] = round(_rss_mb(), 1)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if result["peak_gpu_memory_mb"]["max"] is not None:
        printer(f"  peak GPU memory {result['peak_gpu_memory_mb']['max']:.0f} MiB")
    if result["train_vs_model"] is not None:
        printer(f"  end to end / model alone: {100 * result['train_vs_model']:.1f}%")
    return result


# =============================================================================================
# Reporting
# =============================================================================================
def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """One row per run: the throughput figures, the model/end-to-end ratio and the peak memory."""
    header = ("| config | setting | device | batch | workers | AMP | channels_last | GPU transforms | "
              "compile | data ex/s | model ex/s | train ex/s | train/model | waiting for data | valid ex/s | "
              "peak GPU MiB | GPU prep. rel. error | errors |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        ratio = f"{100 * r['train_vs_model']:.0f}%" if r.get("train_vs_model") else "-"
        wait = (f"{100 * r['train_data_wait_s'] / r['train_seconds']:.1f}%"
                if r.get("train_data_wait_s") is not None and r.get("train_seconds") else "-")
        peak = max((v for v in (r.get("peak_gpu_memory_mb") or {}).values() if v is not None),
                   default=None)  # also for a run cut short before it wrote "max"
        errors = "; ".join(f"{k}: {v}" for k, v in (r.get("errors") or {}).items())
        cells = [r.get("config"), r.get("setting"), r.get("device"), r.get("batch_size"),
                 r.get("num_workers"), r.get("amp_dtype") or "off", r.get("channels_last"),
                 "on" if r.get("gpu_transform") else "off", r.get("compile") or "off",
                 r.get("data_examples_per_s"), r.get("model_examples_per_s"),
                 r.get("train_examples_per_s"), ratio, wait, r.get("valid_examples_per_s"), peak,
                 r.get("gpu_transform_max_rel_error"), errors.replace("|", "/")[:200] or ""]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def summarize(paths: Sequence[str], markdown: str | None, combined: str | None = None,
              printer: Callable[[str], None] = print) -> str:
    """The markdown table of several result files (and, with ``combined``, all of them in one JSON)."""
    results = []
    for path in paths:
        try:
            results.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise G2NetError(f"cannot read bench result {path} ({exc}); rerun that benchmark") from None
    text = markdown_table(results)
    if markdown:
        atomic_write(markdown, lambda f: f.write(text), mode="w")
    if combined:
        atomic_write(combined, lambda f: f.write(json.dumps(results, indent=2, default=str)), mode="w")
    printer(text)
    return text
