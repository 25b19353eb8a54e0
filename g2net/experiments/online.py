"""Online training data: a fresh batch every step from the ml4gw engine, as training's loader.

A config with ``train_source = 'online'`` (ml4gw waveforms) or ``'bank'`` (a polarisation bank's
h+/hx, projected with sky, time, SNR and noise drawn every step) trains on :class:`OnlineSource`
instead of a DataLoader over ``train.csv``; validation stays on the files. The stream depends only
on seed, rank and epoch (:func:`stream_seed`) and is saved in the resume checkpoint, so a resumed
run continues it bit for bit. The config's ``online`` dict (defaults in ``configs.Baseline.online``)
chooses the approximant, priors, steps per epoch, device and bank (docs/online.md).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from g2net.simulation.ml4gw_engine import (ML4GW_APPROXIMANTS, Batch, OnlineSimulator,
                                           check_ml4gw_approximant, make_generator)
from g2net.simulation.priors import Priors
from transforms import batched
from utils import DETECTORS, EXAMPLE_SHAPE, G2NetError, input_dir, load_npy

SOURCES = ("files", "online", "bank")


# ----------------------------------------------------------------------------- seeding
def stream_seed(seed: int, rank: int, epoch: int) -> int:
    """Seed of rank ``rank``'s generator in ``epoch``: a stream of its own per (seed, rank, epoch),
    never the stream of a ``simulate --seed`` data set (a distinct spawn key)."""
    state = np.random.SeedSequence(seed, spawn_key=(2 ** 32 - 5, rank, epoch)).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


# ----------------------------------------------------------------------------- the training source
class OnlineSource:
    """What training iterates instead of a DataLoader: ``steps_per_epoch`` fresh batches
    ``(x float32 (B, 3, T), y float32 (B, 1))`` on ``device``, after the config's train transforms.

    Batch ``k`` of epoch ``e`` on rank ``r`` comes from the generator seeded ``stream_seed(seed, r,
    e)`` after ``k`` batches: :meth:`set_epoch` (called by the trainer) reseeds, so a resumed run
    continues the stream bit for bit; :meth:`state_dict` records position and generator state.
    """

    def __init__(self, simulator: OnlineSimulator, batch_size: int, steps_per_epoch: int, seed: int,
                 transform: Any = None, rank: int = 0, swap_fraction: float = 0.0,
                 mute_fraction: float = 0.0, hard_negatives: Tensor | None = None,
                 hard_negative_fraction: float = 0.0):
        if steps_per_epoch < 1 or batch_size < 1:
            raise G2NetError(f"online training needs steps_per_epoch >= 1 and batch_size >= 1, got "
                             f"{steps_per_epoch} and {batch_size}")
        check_coherence_fractions(swap_fraction, mute_fraction, simulator.n_detectors)
        self.swap_fraction, self.mute_fraction = swap_fraction, mute_fraction
        check_hard_negative_fraction(hard_negative_fraction, hard_negatives is not None)
        if hard_negatives is not None and tuple(hard_negatives.shape[1:]) != EXAMPLE_SHAPE:
            raise G2NetError(f"a hard-negative pool holds windows of shape {tuple(hard_negatives.shape)}"
                             f"; it must be (K, {EXAMPLE_SHAPE[0]}, {EXAMPLE_SHAPE[1]})")
        self.hard_negative_fraction = hard_negative_fraction
        self.hard_negatives = (None if hard_negatives is None else
                               hard_negatives.to(simulator.device, torch.float64))
        self.simulator, self.batch_size, self.steps = simulator, batch_size, steps_per_epoch
        self.seed, self.rank = seed, rank
        try:
            self.transform = batched(transform)
        except ValueError as exc:  # the config's train transforms: the user's to change
            raise G2NetError(str(exc)) from None
        self.epoch, self.step = 0, 0
        self.generator = make_generator(simulator.device, stream_seed(seed, rank, 0))

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0
        self.generator.manual_seed(stream_seed(self.seed, self.rank, epoch))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while self.step < self.steps:
            batch = self.simulator.sample(self.generator, self.batch_size)
            if self.hard_negative_fraction:  # before swap/mute: only noise negatives are replaced
                replace_hard_negatives(batch, self.generator, self.hard_negative_fraction,
                                       self.hard_negatives)
            if self.swap_fraction or self.mute_fraction:
                incoherent_negatives(batch, self.generator, self.swap_fraction, self.mute_fraction,
                                     self.simulator.present)
            x = self.transform(batch.data, self.generator)
            self.step += 1
            yield x.float(), batch.target.float()[:, None]

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "rank": self.rank, "epoch": self.epoch, "step": self.step,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a saved stream. Under torchrun rank 0 saves the checkpoint: another rank
        takes the position and re-derives its own generator for that epoch."""
        if state["seed"] != self.seed:
            raise G2NetError(f"the checkpoint's online stream has seed {state['seed']}, this run "
                             f"{self.seed}; resume with the same config")
        epoch, step = int(state["epoch"]), int(state["step"])
        if state["rank"] == self.rank:
            self.epoch, self.step = epoch, step
            generator = state["generator"]
            self.generator.set_state(generator.cpu() if hasattr(generator, "cpu") else generator)
        else:  # checkpoints are written at epoch ends, where the next set_epoch reseeds anyway
            self.set_epoch(epoch)
            self.step = step


# ----------------------------------------------------------------------------- coherence negatives
def check_coherence_fractions(swap: float, mute: float, n_detectors: int) -> None:
    if not (0.0 <= swap <= 1.0 and 0.0 <= mute <= 1.0 and swap + mute <= 1.0):
        raise G2NetError(f"online swap_fraction {swap} and mute_fraction {mute}: each in [0, 1], "
                         "together at most 1 (fractions of the positives)")
    if (swap or mute) and n_detectors < 2:
        raise G2NetError("online swap_fraction / mute_fraction make a signal incoherent between "
                         f"detectors; the config trains on {n_detectors} detector: set them to 0")


def incoherent_negatives(batch: Batch, g: torch.Generator, swap_fraction: float,
                         mute_fraction: float, detectors: list[int]) -> None:
    """Aframe's channel swapping and muting, in place: of the batch's positives, ``swap_fraction``
    get one detector's signal replaced by another positive's and ``mute_fraction`` lose one
    detector's signal; both are relabelled noise. An astrophysical signal is coherent across the
    network, so the network is taught to want the detectors to agree, not just one loud row."""
    positives = torch.nonzero(batch.target > 0.5).flatten()
    n = len(positives)
    n_swap = int(round(swap_fraction * n)) if n >= 2 else 0
    n_mute = int(round(mute_fraction * n))
    if not n_swap + n_mute:
        return
    device = positives.device
    shuffled = torch.randperm(n, generator=g, device=device)
    rows = torch.as_tensor(detectors, device=device)
    chosen = rows[torch.randint(len(detectors), (n_swap + n_mute,), generator=g, device=device)]
    changed = positives[shuffled[:n_swap + n_mute]]
    # a swap partner is any other positive: an offset of 1..n-1 positions among the positives
    partner = positives[(shuffled[:n_swap] + torch.randint(1, max(n, 2), (n_swap,), generator=g,
                                                            device=device)) % n]
    incoming = torch.zeros((n_swap + n_mute, batch.signal.shape[-1]), dtype=batch.signal.dtype,
                           device=device)
    incoming[:n_swap] = batch.signal[partner, chosen[:n_swap]]
    batch.data[changed, chosen] += incoming - batch.signal[changed, chosen]
    batch.signal[changed, chosen] = incoming
    batch.target[changed] = 0.0


# ----------------------------------------------------------------------------- hard negatives
def check_hard_negative_fraction(fraction: float, has_pool: bool, where: str = "online") -> None:
    if not 0.0 <= fraction <= 1.0:
        raise G2NetError(f"{where} hard_negative_fraction {fraction}: must be in [0, 1] (the "
                         "fraction of each batch's negatives replaced by pool windows)")
    if fraction and not has_pool:
        raise G2NetError(f"{where} hard_negative_fraction {fraction} needs online['hard_negatives']"
                         ": a pool of windows written by scripts/mine_hard_negatives.py (relative "
                         "to the input folder)")


def load_hard_negatives(path: Path, detectors: tuple[str, ...], where: str) -> Tensor:
    """The pool of scripts/mine_hard_negatives.py as float64 ``(K, 3, 4096)``, checked: windows of
    the example shape, finite, strain in every detector the config uses (a pool mined over other
    detectors would give the network a tell); rows of unused detectors set to zero, as the
    simulator leaves them."""
    remedy = "write it with scripts/mine_hard_negatives.py and copy it into the input folder"
    if not path.is_file():
        raise G2NetError(f"{where}: online hard_negatives {path} not found; {remedy}")
    try:
        pool = load_npy(path)
    except (OSError, ValueError, EOFError) as exc:
        raise G2NetError(f"{where}: online hard_negatives {path} is not a .npy array ({exc}); "
                         f"{remedy}") from None
    if pool.ndim != 3 or pool.shape[1:] != EXAMPLE_SHAPE or pool.shape[0] < 1 or pool.dtype.kind != "f":
        raise G2NetError(f"{where}: online hard_negatives {path} holds {pool.dtype} {pool.shape}; "
                         f"a pool is float (K >= 1, {EXAMPLE_SHAPE[0]}, {EXAMPLE_SHAPE[1]}); {remedy}")
    bad = np.flatnonzero(~np.isfinite(pool).all(axis=(1, 2)))
    if len(bad):
        raise G2NetError(f"{where}: online hard_negatives {path}: {len(bad)} window(s) hold NaN/inf "
                         f"(first: {bad[0]}); {remedy}")
    used = [DETECTORS.index(d) for d in detectors]
    empty = np.argwhere(~pool[:, used].any(axis=-1))
    if len(empty):
        window, row = empty[0]
        raise G2NetError(f"{where}: online hard_negatives {path}: window {window} has no "
                         f"{detectors[row]} strain, which the config uses; mine the pool from strain "
                         f"of {','.join(detectors)}")
    pool = torch.from_numpy(np.array(pool, dtype=np.float64))
    pool[:, [i for i in range(len(DETECTORS)) if i not in used]] = 0.0
    return pool


def replace_hard_negatives(batch: Batch, g: torch.Generator, fraction: float, pool: Tensor) -> None:
    """In place: ``round(fraction * negatives)`` of the batch's negatives, chosen at random,
    become pool windows drawn uniformly with replacement (target 0, no signal). The pool holds the
    background windows a trained model scores highest, so training sees the noise that fools it,
    not only average noise; drawn from the batch generator, so resume stays bit-identical."""
    negatives = torch.nonzero(batch.target < 0.5).flatten()
    n = int(round(fraction * len(negatives)))
    if not n:
        return
    device = negatives.device
    chosen = negatives[torch.randperm(len(negatives), generator=g, device=device)[:n]]
    rows = torch.randint(len(pool), (n,), generator=g, device=device)
    batch.data[chosen] = pool[rows].to(batch.data.dtype)
    batch.signal[chosen] = 0.0  # noise only, as every negative: target stays 0


# ----------------------------------------------------------------------------- configs
def online_settings(cfg: type) -> dict[str, Any]:
    """The config's ``online`` dict over ``Baseline.online`` (every key has its default there),
    checked: a G2NetError names an unknown key or prior. ``Baseline`` is the root-most class of the
    config that defines ``online`` (every config subclasses it), so this module needs no configs."""
    defaults = next(k.__dict__["online"] for k in reversed(cfg.__mro__) if "online" in k.__dict__)
    settings = {**defaults, **(cfg.online or {})}
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise G2NetError(f"config {cfg.name}: unknown online settings {unknown}; known: "
                         f"{sorted(defaults)}")
    fields = {f.name for f in dataclasses.fields(Priors)}
    bad = sorted(set(settings["priors"]) - fields)
    if bad:
        raise G2NetError(f"config {cfg.name}: online priors {bad} are not Priors fields "
                         f"({', '.join(sorted(fields))})")
    check_coherence_fractions(float(settings["swap_fraction"]), float(settings["mute_fraction"]),
                              len(cfg.detectors))
    check_hard_negative_fraction(_fraction(settings, "hard_negative_fraction", cfg.name),
                                 bool(settings["hard_negatives"]), f"config {cfg.name}: online")
    if settings["approximant"] not in ML4GW_APPROXIMANTS and cfg.train_source == "online":
        check_ml4gw_approximant(settings["approximant"])
    return settings


def _fraction(settings: Mapping[str, Any], key: str, name: str) -> float:
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise G2NetError(f"config {name}: online {key} {value!r} is not a number in [0, 1]")
    return float(value)


def _in_input(value: str | Path) -> Path:
    """A file setting (signal_bank, hard_negatives): absolute, or relative to the input folder."""
    path = Path(value)
    return path if path.is_absolute() else input_dir() / path


def make_priors(settings: Mapping[str, Any]) -> Priors:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in settings["priors"].items()}
    return Priors(**values)


def make_source(cfg: type, device: torch.device, seed: int, rank: int = 0,
                max_steps: int | None = None) -> OnlineSource:
    """The training source of a config with ``train_source`` 'online' or 'bank' (``max_steps``
    caps the epoch: ``--debug``)."""
    source = cfg.train_source
    if source not in SOURCES[1:]:
        raise G2NetError(f"config {cfg.name}: train_source {source!r} is not an online source "
                         f"({', '.join(SOURCES)})")
    if cfg.pseudo_labels:
        raise G2NetError(f"config {cfg.name}: pseudo-labels extend a file training set; an online "
                         "source has none (train_source = 'files')")
    settings = online_settings(cfg)
    bank = None
    if source == "bank":
        if not settings["signal_bank"]:
            raise G2NetError(f"config {cfg.name}: train_source 'bank' needs online['signal_bank'] "
                             "(a polarisation bank, relative to the input folder)")
        bank = _in_input(settings["signal_bank"])
    fraction = float(settings["hard_negative_fraction"])
    pool = (load_hard_negatives(_in_input(settings["hard_negatives"]), tuple(cfg.detectors),
                                f"config {cfg.name}") if fraction else None)  # loaded once, if used
    where = torch.device(settings["device"]) if settings["device"] else device
    simulator = OnlineSimulator(make_priors(settings), settings["approximant"], bank, where,
                                tuple(cfg.detectors))
    steps = int(settings["steps_per_epoch"])
    steps = min(steps, max_steps) if max_steps is not None else steps
    return OnlineSource(simulator, cfg.batch_size, steps, seed, cfg.transforms.get("train"), rank,
                        float(settings["swap_fraction"]), float(settings["mute_fraction"]),
                        pool, fraction)
