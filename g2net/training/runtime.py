"""Where a run executes: device, process group, DataLoaders and the model wrapper.

Kept apart from the fold loop (``runner``) so that bench.py, predict.py and the tests can set up a
device and loaders without the experiment logic.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence, Sized

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from transforms import gpu_transforms
from utils import G2NetError, default_num_workers


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


def shard_sampler(dataset: Sized, shuffle: bool, seed: int = 0, rank: int = 0,
                  world: int = 1) -> DistributedSampler:
    """Per-epoch seeded shuffle (or identity) of ``dataset``'s indices, sharded as ``indices[rank::world]``.

    The same sampler serves single-process and distributed runs, so a one-process torchrun run sees
    exactly the batches of a plain run; the order depends only on (seed, epoch), which also makes
    resumed runs reproducible. Shards are padded to equal length; ``trainer.gather_ordered`` drops
    the padding again. The generator seed ``seed * 1000 + epoch`` keeps the orders of earlier runs.
    """
    return DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                              seed=seed * 1000, drop_last=False)


def _seed_worker(worker_id: int) -> None:
    np.random.seed(torch.initial_seed() % 2 ** 32)


def make_loader(dataset: Any, batch_size: int, runtime: Runtime, shuffle: bool, seed: int = 0,
                generator: torch.Generator | None = None, drop_last: bool = False) -> DataLoader:
    """A DataLoader over this rank's shard of ``dataset`` (see :func:`shard_sampler`)."""
    sampler = shard_sampler(dataset, shuffle, seed, runtime.rank, runtime.world)
    batch_size = min(batch_size, max(len(sampler), 1))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                      num_workers=runtime.num_workers, pin_memory=runtime.device.type == "cuda",
                      persistent_workers=runtime.num_workers > 0, drop_last=drop_last,
                      generator=generator, worker_init_fn=_seed_worker)


def wrap_model(model: torch.nn.Module, runtime: Runtime, cfg: type | None = None) -> torch.nn.Module:
    """Move to the device (channels_last on CUDA when the config asks), wrap in DDP (torchrun) or
    DataParallel (several --gpu), then compile (config field ``compile``: False, True, a
    ``torch.compile`` mode, or 'cudagraphs' for the cudagraphs backend) on the device types of
    ``compile_devices`` (default: CUDA only, where it was measured; a CPU run stays eager).
    ``cfg`` is a config class (a ``configs.Baseline`` subclass); None wraps without either option.

    channels_last converts the weights; the 2D models then lay out their image to match. Measured
    on an H200, it doubles Nspec16's step rate (bf16: 498 -> 990 examples/s).
    """
    compile = cfg.compile if cfg is not None and runtime.device.type in cfg.compile_devices else False
    model = model.to(runtime.device)
    if cfg is not None and cfg.channels_last and runtime.device.type == "cuda":
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
    if not (cfg.gpu_preprocess and runtime.device.type == "cuda" and cfg.transforms.get("gpu") is None):
        return cfg
    return type(cfg.__name__, (cfg,), {"name": cfg.name, "__module__": cfg.__module__,
                                       "__doc__": cfg.__doc__,
                                       "transforms": gpu_transforms(cfg.transforms)})
