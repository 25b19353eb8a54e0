"""Simulated G2Net data: PyCBC/LALSuite binary-black-hole injections into calibrated noise.

``python simulate.py --out DIR --n-train N --n-test M --seed S [--workers W] [--approximant NAME]``
plus one option per prior (``--help``). Writes the competition layout (``training_labels.csv``,
``sample_submission.csv``, ``train/`` and ``test/`` with ``<id[0]>/<id[1]>/<id[2]>/<id>.npy``
float64 arrays (3, 4096)) and the ground truth (``test_labels.csv``, ``injections.csv``).

Every example is a pure function of (seed, example index): its random numbers come from
``SeedSequence(seed, spawn_key=(index,))``, so the files are byte-identical whatever ``--workers``.
A positive is ``colored_noise + injection_signal(row)``, where ``row`` is its line of
``injections.csv``; the distance in that row is the one that gives the drawn network SNR.

Signal banks, for machines without PyCBC/LALSuite (docs/simulator.md): ``--write-signal-bank BANK.npz
--n-signals K --seed S`` stores K such signals (~24.7 KB each); ``--signal-bank BANK.npz`` injects them.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

import noise_model
from prep_data import prepared_files
from signal_bank import (BANK_COLUMNS, BANK_FORMAT, BANK_FORMAT_VERSION, BANK_ROW_COLUMN, SignalBank,
                         bank_generator, bank_rows, load_signal_bank, quantise_signal,
                         write_signal_bank)
from utils import (DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError, atomic_write,
                   cli_errors, cpu_count, example_path)

DEFAULT_APPROXIMANT = "IMRPhenomD"
F_LOWER = 20.0  # Hz, waveform start frequency
SNR_BAND = (20.0, 1000.0)  # Hz, band of the optimal SNR
REFERENCE_DISTANCE = 1000.0  # Mpc, distance of the first draw before rescaling to the drawn SNR
CROP_MARGIN = 0.1  # s kept either side of the window before projection (light travel <= 27 ms)
ID_SPACE = 16 ** 10
SPLITS = ("train", "test")
RUN_FILE = "simulation.json"  # this run's arguments and whether it finished
INJECTION_COLUMNS = ["id", "split", "target", *BANK_COLUMNS]
SNR_DISTRIBUTIONS = ("uniform", "loguniform", "powerlaw")


@dataclass(frozen=True)
class Priors:
    """Where the injection parameters are drawn from (defaults documented in docs/simulator.md).

    Masses are detector-frame solar masses, angles radians, times seconds.
    """
    mass_range: tuple[float, float] = (10.0, 50.0)  # each component uniform; mass1 >= mass2
    spin_range: tuple[float, float] = (-0.5, 0.5)  # aligned spins spin1z, spin2z, each uniform
    ra_range: tuple[float, float] = (0.0, 2 * math.pi)  # uniform
    dec_range: tuple[float, float] = (-math.pi / 2, math.pi / 2)  # uniform in sin(dec): isotropic
    inclination_range: tuple[float, float] = (0.0, math.pi)  # uniform in cos: isotropic
    polarization_range: tuple[float, float] = (0.0, 2 * math.pi)  # uniform
    coa_phase_range: tuple[float, float] = (0.0, 2 * math.pi)  # uniform
    tc_range: tuple[float, float] = (1.5, 1.9)  # geocentric merger, s after the window start
    gps_range: tuple[int, int] = (1238166018, 1269363618)  # window start, whole seconds (O3)
    snr_range: tuple[float, float] = (5.0, 20.0)  # optimal network SNR
    snr_distribution: str = "uniform"  # uniform | loguniform | powerlaw (p ~ snr^-4)
    positive_fraction: float = 0.5

    def validate(self, approximant: str) -> None:
        """Raise G2NetError naming the first prior that makes no sense."""
        duration = N_SAMPLES / SAMPLE_RATE

        def ordered(name: str, lo_ok: float, hi_ok: float) -> None:
            value = getattr(self, name)
            option = "--" + name.replace("_", "-")
            if not all(map(math.isfinite, value)) or value[0] > value[1]:
                raise G2NetError(f"{option} {value[0]:g} {value[1]:g}: need finite MIN <= MAX")
            if value[0] < lo_ok or value[1] > hi_ok:
                raise G2NetError(f"{option} {value[0]:g} {value[1]:g}: must lie within "
                                 f"[{lo_ok:g}, {hi_ok:g}]")

        if not all(map(math.isfinite, self.mass_range)) or not 0 < self.mass_range[0] <= self.mass_range[1]:
            raise G2NetError(f"--mass-range {self.mass_range[0]:g} {self.mass_range[1]:g}: need "
                             "0 < MIN <= MAX (solar masses)")
        ordered("spin_range", -0.99, 0.99)
        ordered("ra_range", 0.0, 2 * math.pi)
        ordered("dec_range", -math.pi / 2, math.pi / 2)
        ordered("inclination_range", 0.0, math.pi)
        ordered("polarization_range", 0.0, 2 * math.pi)
        ordered("coa_phase_range", 0.0, 2 * math.pi)
        ordered("tc_range", 0.0, duration)
        if not self.gps_range[0] <= self.gps_range[1]:
            raise G2NetError(f"--gps-range {self.gps_range[0]} {self.gps_range[1]}: need MIN <= MAX")
        if not all(map(math.isfinite, self.snr_range)) or not 0 < self.snr_range[0] <= self.snr_range[1]:
            raise G2NetError(f"--snr-range {self.snr_range[0]:g} {self.snr_range[1]:g}: need 0 < MIN <= MAX")
        if self.snr_distribution not in SNR_DISTRIBUTIONS:
            raise G2NetError(f"--snr-distribution {self.snr_distribution!r}: use one of "
                             f"{', '.join(SNR_DISTRIBUTIONS)}")
        check_positive_fraction(self.positive_fraction)
        check_approximant(approximant)


def check_positive_fraction(value: float) -> None:
    """The one prior a --signal-bank run still takes: it shapes the data set, not the signals."""
    if not 0.0 <= value <= 1.0:
        raise G2NetError(f"--positive-fraction {value:g}: must be in [0, 1]")


@functools.lru_cache(maxsize=None)
def _td_approximants() -> tuple[str, ...]:
    from pycbc.waveform import td_approximants

    return tuple(td_approximants())


def check_approximant(approximant: str) -> None:
    if approximant not in _td_approximants():
        known = _td_approximants()
        raise G2NetError(f"--approximant {approximant!r} is not a time-domain approximant PyCBC "
                         f"knows; try {DEFAULT_APPROXIMANT} or one of {', '.join(sorted(known)[:12])}, ...")


def _uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1])) if bounds[0] < bounds[1] else float(bounds[0])


def _uniform_in_sin(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return math.asin(_uniform(rng, (math.sin(bounds[0]), math.sin(bounds[1]))))


def _uniform_in_cos(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return math.acos(_uniform(rng, (math.cos(bounds[1]), math.cos(bounds[0]))))


def draw_snr(rng: np.random.Generator, priors: Priors) -> float:
    """Optimal network SNR: uniform, log-uniform, or p(snr) ~ snr^-4 (sources uniform in volume)."""
    low, high = priors.snr_range
    u = _uniform(rng, (0.0, 1.0))
    if low == high:
        return float(low)
    if priors.snr_distribution == "uniform":
        return float(low + u * (high - low))
    if priors.snr_distribution == "loguniform":
        return float(low * (high / low) ** u)
    return float((low ** -3 + u * (high ** -3 - low ** -3)) ** (-1.0 / 3.0))


def draw_parameters(rng: np.random.Generator, priors: Priors, approximant: str) -> dict[str, Any]:
    """One source at ``REFERENCE_DISTANCE`` (the distance is rescaled to the drawn SNR later)."""
    masses = sorted((_uniform(rng, priors.mass_range), _uniform(rng, priors.mass_range)), reverse=True)
    return {
        "approximant": approximant,
        "mass1": masses[0], "mass2": masses[1],
        "spin1z": _uniform(rng, priors.spin_range), "spin2z": _uniform(rng, priors.spin_range),
        "distance": REFERENCE_DISTANCE,
        "ra": _uniform(rng, priors.ra_range), "dec": _uniform_in_sin(rng, priors.dec_range),
        "polarization": _uniform(rng, priors.polarization_range),
        "inclination": _uniform_in_cos(rng, priors.inclination_range),
        "coa_phase": _uniform(rng, priors.coa_phase_range),
        "gps_start": int(rng.integers(priors.gps_range[0], priors.gps_range[1] + 1)),
        "tc": _uniform(rng, priors.tc_range),
    }


@functools.lru_cache(maxsize=None)
def _detector(name: str):
    from pycbc.detector import Detector

    return Detector(name)


def injection_signal(row: Mapping[str, Any], n_samples: int = N_SAMPLES,
                     sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """The clean signal (3, n_samples) of one ``injections.csv`` row, from its columns alone.

    ``get_td_waveform`` (f_lower 20 Hz) with the merger at GPS ``gps_start + tc``, projected with
    ``Detector.project_wave`` (LAL: antenna patterns, light travel time from the geocentre), cut
    to the window that starts at ``gps_start`` (which must lie on the sample grid).
    """
    from pycbc.waveform import get_td_waveform

    gps_start = float(row["gps_start"])
    if abs(gps_start * sample_rate - round(gps_start * sample_rate)) > 1e-6 * sample_rate:
        raise G2NetError(f"gps_start {gps_start!r} is not on the {sample_rate:g} Hz sample grid")
    hp, hc = get_td_waveform(approximant=str(row["approximant"]), mass1=float(row["mass1"]),
                             mass2=float(row["mass2"]), spin1z=float(row["spin1z"]),
                             spin2z=float(row["spin2z"]), distance=float(row["distance"]),
                             inclination=float(row["inclination"]), coa_phase=float(row["coa_phase"]),
                             delta_t=1.0 / sample_rate, f_lower=F_LOWER)
    start = float(hp.start_time) + gps_start + float(row["tc"])
    # Only the part near the window matters; projecting seconds of early inspiral costs time.
    first = max(0, int(math.floor((gps_start - CROP_MARGIN - start) * sample_rate)))
    last = min(len(hp), int(math.ceil((gps_start + n_samples / sample_rate + CROP_MARGIN - start) * sample_rate)))
    signal = np.zeros((len(DETECTORS), n_samples))
    if last - first < 2:
        return signal
    hp, hc = hp[first:last], hc[first:last]
    hp.start_time = hc.start_time = start + first / sample_rate
    for row_index, name in enumerate(DETECTORS):
        projected = _detector(name).project_wave(hp, hc, float(row["ra"]), float(row["dec"]),
                                                 float(row["polarization"]))
        offset = (float(projected.start_time) - gps_start) * sample_rate
        shift = int(round(offset))
        if abs(offset - shift) > 1e-3:
            raise RuntimeError(f"projected waveform is off the sample grid by {offset - shift:g} samples")
        values = projected.numpy()
        lo, hi = max(0, shift), min(n_samples, shift + len(values))
        if hi > lo:
            signal[row_index, lo:hi] = values[lo - shift:hi - shift]
    return signal


@functools.lru_cache(maxsize=4)
def _snr_psds(n_samples: int, sample_rate: float) -> tuple:
    return tuple(noise_model.detector_psd(name, sample_rate / n_samples, n_samples // 2 + 1,
                                          low_frequency_cutoff=SNR_BAND[0]) for name in DETECTORS)


def optimal_snr(signal: np.ndarray, sample_rate: float = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Optimal SNR of a clean signal (3, T) per detector against the simulator PSD over 20-1000 Hz,
    and the network SNR (their quadrature sum), with ``pycbc.filter.sigma``."""
    from pycbc.filter import sigma
    from pycbc.types import TimeSeries

    signal = np.asarray(signal, dtype=np.float64)
    psds = _snr_psds(signal.shape[-1], float(sample_rate))
    per_detector = np.array([
        sigma(TimeSeries(row, delta_t=1.0 / sample_rate), psd=psd,
              low_frequency_cutoff=SNR_BAND[0], high_frequency_cutoff=SNR_BAND[1])
        for row, psd in zip(signal, psds)])
    return per_detector, float(np.sqrt(np.sum(per_detector ** 2)))


def example_generators(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(parameters, noise) generators of example ``index``: independent of every other example."""
    params, noise = np.random.SeedSequence(seed, spawn_key=(index,)).spawn(2)
    return np.random.default_rng(params), np.random.default_rng(noise)


def draw_positive(param_rng: np.random.Generator, priors: Priors, approximant: str,
                  label: str, detectors: Sequence[str] = DETECTORS) -> tuple[np.ndarray, dict[str, Any]]:
    """``(clean signal, physics columns)`` of one positive: parameters and network SNR from the
    priors, PyCBC signal rescaled to that SNR. Shared by the simulator and the signal banks, so
    that a bank holds exactly the signals a simulation would inject. ``label`` names it in errors.

    The network is ``detectors``: its SNR is the quadrature sum over them, the rows of the others
    are zero and their SNR columns empty (NaN).
    """
    params = draw_parameters(param_rng, priors, approximant)
    wanted = draw_snr(param_rng, priors)
    reference = injection_signal(params)
    snrs, network = optimal_snr(reference)
    absent = [i for i, name in enumerate(DETECTORS) if name not in detectors]
    if absent:
        reference[absent] = 0.0
        snrs[absent] = np.nan
        network = float(np.sqrt(np.nansum(snrs ** 2)))
    if not network > 0:
        raise G2NetError(f"{label}: the signal misses the window (tc {params['tc']:.3f} s); "
                         "narrow --tc-range")
    scale = wanted / network
    params["distance"] = REFERENCE_DISTANCE / scale
    signal = reference * scale
    params.update({f"snr_{name}": float(value * scale) for name, value in zip(DETECTORS, snrs)})
    params["snr_network"] = float(network * scale)
    return signal, params


def network_noise(noise_rng: np.random.Generator, detectors: Sequence[str] = DETECTORS) -> np.ndarray:
    """Calibrated noise (3, N) with the rows of detectors outside ``detectors`` zero: the
    competition layout keeps its three rows, an absent detector records nothing."""
    noise = noise_model.colored_noise(noise_rng)
    noise[[i for i, name in enumerate(DETECTORS) if name not in detectors]] = 0.0
    return noise


def simulate_example(seed: int, index: int, target: int, priors: Priors, approximant: str,
                     detectors: Sequence[str] = DETECTORS) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(data, clean signal, physics columns)`` of one example (empty columns for a negative)."""
    param_rng, noise_rng = example_generators(seed, index)
    noise = network_noise(noise_rng, detectors)
    if not target:
        return noise, np.zeros_like(noise), {}
    signal, params = draw_positive(param_rng, priors, approximant, f"example {index}", detectors)
    return noise + signal, signal, params


def make_ids(seed: int, count: int) -> list[str]:
    """``count`` unique 10-character lower-case hex ids, a function of the seed only."""
    if count > ID_SPACE // 4:
        raise G2NetError(f"{count} examples is more than unique 10-hex ids can comfortably name")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2 ** 32 - 1,)))
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        for value in rng.integers(0, ID_SPACE, size=count - len(ids)):
            text = f"{int(value):010x}"
            if text not in seen:
                seen.add(text)
                ids.append(text)
    return ids


def make_targets(seed: int, n_train: int, n_test: int, positive_fraction: float) -> np.ndarray:
    """Targets: round(fraction * n) positives per split, in seed-determined order."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2 ** 32 - 2,)))
    parts = []
    for n in (n_train, n_test):
        labels = np.zeros(n, dtype=np.int64)
        labels[:int(round(positive_fraction * n))] = 1
        parts.append(rng.permutation(labels))
    return np.concatenate(parts)


# --- signal banks (format in signal_bank.py): PyCBC signals drawn here, injected where PyCBC is missing ---

def _bank_worker(args: tuple) -> tuple[np.ndarray, np.float32, dict[str, Any]]:
    seed, row, priors, approximant = args
    signal, params = draw_positive(bank_generator(seed, row), priors, approximant, f"bank signal {row}")
    codes, scale = quantise_signal(signal)
    return codes, scale, params


def draw_signal_bank(path: str | Path, n_signals: int, seed: int, priors: Priors = Priors(),
                      approximant: str = DEFAULT_APPROXIMANT, workers: int = 1,
                      progress: bool = True) -> dict[str, Any]:
    """Draw ``n_signals`` positives exactly as :func:`simulate` draws them and store them in one
    compact ``.npz`` (about 24.7 KB a signal), so that a machine without PyCBC/LALSuite can build
    training data from them (``--signal-bank``). Row ``j`` is a function of ``(seed, j)`` only:
    the file is byte-identical whatever ``workers``. Returns counts, size and rate.
    """
    if n_signals < 1:
        raise G2NetError(f"--n-signals {n_signals}: a bank needs at least 1 signal")
    _check_seed_and_workers(seed, workers)
    path = Path(path)
    if path.is_dir():
        raise G2NetError(f"--write-signal-bank {path} is a folder; give a file name such as bank.npz")
    priors.validate(approximant)
    started = time.perf_counter()
    _snr_psds(N_SAMPLES, float(SAMPLE_RATE))  # built once, inherited by the workers
    cpu_started = _cpu_seconds()
    tasks = [(seed, row, priors, approximant) for row in range(n_signals)]
    results = _map_in_order(_bank_worker, tasks, workers, "signal bank", "sig", progress)
    codes = np.stack([r[0] for r in results])
    scales = np.array([r[1] for r in results], dtype=np.float32)
    table = pd.DataFrame([r[2] for r in results]).reindex(columns=BANK_COLUMNS)
    metadata = {"format": BANK_FORMAT, "format_version": BANK_FORMAT_VERSION, "seed": int(seed),
                "n_signals": int(n_signals), "approximant": approximant,
                "sample_rate": SAMPLE_RATE, "n_samples": N_SAMPLES, "detectors": list(DETECTORS),
                "priors": dataclasses.asdict(priors), "f_lower": F_LOWER, "snr_band": list(SNR_BAND),
                "encoding": "signal = float16 signals * float32 scales (per signal)"}
    write_signal_bank(path, codes, scales, table, metadata)
    elapsed = time.perf_counter() - started
    return {"path": str(path), "n_signals": n_signals, "bytes": path.stat().st_size,
            "seconds": elapsed, "rate": n_signals / elapsed if elapsed > 0 else float("inf"),
            "cpu_seconds": _cpu_seconds() - cpu_started}


def bank_example(seed: int, index: int, bank: SignalBank, row: int | None,
                 detectors: Sequence[str] = DETECTORS) -> tuple[np.ndarray, dict[str, Any]]:
    """``(data, injections.csv columns)`` of example ``index`` in a ``--signal-bank`` run: the noise
    of :func:`simulate_example`, plus bank signal ``row`` (None for a negative). No PyCBC.
    With fewer ``detectors`` the others' rows are zero and the network SNR is recomputed over
    them (the bank's SNR prior was over all three)."""
    _, noise_rng = example_generators(seed, index)
    noise = network_noise(noise_rng, detectors)
    if row is None:
        return noise, {}
    params = bank.table.iloc[row].to_dict()
    params[BANK_ROW_COLUMN] = int(row)
    signal = bank.signal(row).copy()
    absent = [i for i, name in enumerate(DETECTORS) if name not in detectors]
    if absent:
        signal[absent] = 0.0
        for i in absent:
            params[f"snr_{DETECTORS[i]}"] = np.nan
        params["snr_network"] = float(np.sqrt(sum(params[f"snr_{d}"] ** 2 for d in detectors)))
    return noise + signal, params


@dataclass(frozen=True)
class _Job:
    out: str
    seed: int
    priors: Priors
    approximant: str
    signal_bank: bool = False  # the positives come from _BANK_IN_USE
    detectors: tuple[str, ...] = DETECTORS


def _save_example(path: Path, data: np.ndarray) -> None:
    """Write through a temporary name and rename, so a killed run never leaves a torn array.

    No fsync: at 150+ files/s it would dominate the run, and the csv tables, written atomically
    (with fsync) at the very end, are what marks a simulation complete.
    """
    atomic_write(path, lambda f: np.save(f, data), fsync=False)


# The bank of a --signal-bank run, set by simulate() before its workers fork (they inherit it
# instead of receiving a copy with every task).
_BANK_IN_USE: SignalBank | None = None


def _run_one(job: _Job, index: int, example_id: str, split: str, target: int,
             bank_row: int | None = None) -> dict[str, Any]:
    if job.signal_bank and _BANK_IN_USE is None:
        raise RuntimeError("a --signal-bank worker was not forked from simulate(): it has no bank")
    if _BANK_IN_USE is None:
        data, _, params = simulate_example(job.seed, index, target, job.priors, job.approximant,
                                           job.detectors)
    else:
        data, params = bank_example(job.seed, index, _BANK_IN_USE, bank_row, job.detectors)
    _save_example(example_path(job.out, split, example_id), data)
    return {"id": example_id, "split": split, "target": int(target), **params}


def _worker(args: tuple) -> dict[str, Any]:
    return _run_one(*args)


def simulate(out: str | Path, n_train: int, n_test: int, seed: int, priors: Priors = Priors(),
             approximant: str = DEFAULT_APPROXIMANT, workers: int = 1, overwrite: bool = False,
             progress: bool = True, signal_bank: str | Path | SignalBank | None = None,
             detectors: Sequence[str] = DETECTORS) -> dict[str, Any]:
    """Write the competition layout and ground truth under ``out``; return counts and rate.

    With ``signal_bank`` the positives take their signals from that bank (no PyCBC), which fixes
    every prior but ``positive_fraction``; the noise is the same as without it. ``detectors`` is
    the network (e.g. H1, L1 as in MLGWSC-1): examples keep the three rows of the competition
    layout, those of other detectors zero; the SNR prior is over the network.
    """
    global _BANK_IN_USE
    detectors = tuple(detectors)
    if not detectors or any(d not in DETECTORS for d in detectors) or len(set(detectors)) != len(detectors):
        raise G2NetError(f"--detectors {','.join(detectors)}: give distinct detectors among "
                         f"{','.join(DETECTORS)} (e.g. H1,L1)")
    detectors = tuple(sorted(detectors, key=DETECTORS.index))
    record = run_record(n_train, n_test, seed, priors, approximant,
                        None if signal_bank is None else getattr(signal_bank, "path", signal_bank))
    if detectors != DETECTORS:
        record["detectors"] = list(detectors)
    _check_counts(n_train, n_test, seed, workers)
    bank = None
    if signal_bank is None:
        priors.validate(approximant)
    else:
        signal_priors = dataclasses.replace(priors, positive_fraction=Priors().positive_fraction)
        if signal_priors != Priors() or approximant != DEFAULT_APPROXIMANT:
            raise G2NetError("a signal bank fixes the priors and the approximant (chosen when it was "
                             "written); leave them at their defaults with --signal-bank")
        check_positive_fraction(priors.positive_fraction)
        bank = signal_bank if isinstance(signal_bank, SignalBank) else load_signal_bank(signal_bank)
    out = Path(out)
    total = n_train + n_test
    ids = make_ids(seed, total)
    targets = make_targets(seed, n_train, n_test, priors.positive_fraction)
    rows_of = [None] * total
    if bank is not None:
        positives = np.flatnonzero(targets)
        for index, row in zip(positives, bank_rows(seed, len(positives), len(bank))):
            rows_of[index] = int(row)
    begin_run(out, overwrite, record)  # after the bank's checks: a broken bank is the news
    splits = ["train"] * n_train + ["test"] * n_test
    job = _Job(str(out), seed, priors, approximant, bank is not None, detectors)
    tasks = [(job, i, ids[i], splits[i], int(targets[i]), rows_of[i]) for i in range(total)]
    started = time.perf_counter()
    # the noise PSD (a deconvolution) and the SNR PSDs are built once here, inherited by the workers
    noise_model.colored_noise(np.random.default_rng(0))
    if bank is None:
        _snr_psds(N_SAMPLES, float(SAMPLE_RATE))
    cpu_started = _cpu_seconds()
    _BANK_IN_USE = bank
    try:
        rows: list[dict[str, Any]] = _map_in_order(_worker, tasks, workers, "simulate", "ex", progress)
    finally:
        _BANK_IN_USE = None
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    end_run(out, rows, INJECTION_COLUMNS if bank is None else [*INJECTION_COLUMNS, BANK_ROW_COLUMN], record)
    summary = {"n_train": n_train, "n_test": n_test, "positives": int(targets.sum()),
               "seconds": elapsed, "rate": total / elapsed if elapsed > 0 else float("inf"),
               "cpu_seconds": cpu, "rate_per_cpu": total / cpu if cpu > 0 else float("inf")}
    if bank is not None:
        summary.update({"signal_bank": str(bank.path), "bank_signals": len(bank)})
    return summary


def begin_run(out: Path, overwrite: bool, record: dict[str, Any]) -> None:
    """Check ``out``, then write RUN_FILE first (a run killed from here on is known as interrupted,
    with its arguments) and clear what the run replaces. Shared by both engines."""
    check_out_folder(out, overwrite, record)
    previous = previous_run(out)
    atomic_write(out / RUN_FILE, lambda f: json.dump(record, f, indent=1, sort_keys=True), mode="w")
    if previous is not None and _same_run(previous, record):
        # the same arguments remake the same bytes: the prepared csvs and caches stay valid
        for name in ("training_labels.csv", "test_labels.csv", "sample_submission.csv", "injections.csv"):
            (out / name).unlink(missing_ok=True)
    else:  # another run's outputs (or, with --overwrite, anything) are replaced, never mixed with
        _remove_previous_outputs(out)


def end_run(out: Path, rows: list[dict[str, Any]], columns: Sequence[str], record: dict[str, Any]) -> None:
    """Write the tables, then mark the run complete in RUN_FILE."""
    _write_tables(out, rows, columns)
    record["complete"] = True
    atomic_write(out / RUN_FILE, lambda f: json.dump(record, f, indent=1, sort_keys=True), mode="w")


def _map_in_order(function: Any, tasks: Sequence[Any], workers: int, desc: str, unit: str,
                  progress: bool) -> list[Any]:
    """``function`` over ``tasks``, results in task order, in a pool of forked ``workers`` (they
    inherit the PSDs and a loaded bank) or inline for one, with a progress bar.

    Not ``tqdm.contrib.concurrent.process_map``: its order and output would be the same, but with
    ``chunksize > 1`` its bar counts submitted chunks, not tasks (tqdm 4.70.1: 10/80 at the end of
    80 tasks in chunks of 8), and ``chunksize=1`` pays a round trip per task on bank runs whose
    tasks take milliseconds. ``Pool.imap`` yields each result, so the bar counts examples.
    """
    results = []
    with tqdm(total=len(tasks), desc=desc, unit=unit, disable=not progress) as bar:
        if workers == 1:
            for task in tasks:
                results.append(function(task))
                bar.update()
        else:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for result in pool.imap(function, tasks, chunksize=8):
                    results.append(result)
                    bar.update()
    return results


def _cpu_seconds() -> float:
    """CPU time of this process and its finished workers: the cost of a run on a busy machine."""
    import resource

    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def _check_seed_and_workers(seed: int, workers: int) -> None:
    if seed < 0:
        raise G2NetError(f"--seed {seed}: must be >= 0")
    if workers < 1:
        raise G2NetError(f"--workers {workers}: must be >= 1")


def validate_run(out: str | Path, n_train: int, n_test: int, seed: int, workers: int,
                 overwrite: bool, record: dict[str, Any] | None = None) -> None:
    """Refuse bad counts, and an ``out`` holding data this run must not silently replace.

    ``record`` is this run's :func:`run_record`: a folder holding a finished or interrupted run
    with other arguments, or competition files simulate.py did not write, needs ``overwrite``.
    """
    _check_counts(n_train, n_test, seed, workers)
    check_out_folder(out, overwrite, record)


def _check_counts(n_train: int, n_test: int, seed: int, workers: int) -> None:
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise G2NetError(f"--n-train {n_train} --n-test {n_test}: need counts >= 0, not both 0")
    _check_seed_and_workers(seed, workers)


def check_out_folder(out: str | Path, overwrite: bool, record: dict[str, Any] | None = None) -> None:
    """The folder part of :func:`validate_run`: what ``out`` already holds."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise G2NetError(f"--out {out} is a file; give a folder")
    if overwrite:
        return
    previous = previous_run(out)
    if previous is not None:
        if record is not None and _same_run(previous, record):
            return  # the same arguments finish an interrupted run or remake the same bytes
        if previous.get("complete", True):
            raise G2NetError(f"--out {out} already holds a finished simulation ({describe_run(previous)})"
                             "; pass --overwrite to replace it (its train.csv, test.csv, caches and "
                             "psd.npy go too) or choose another folder")
        raise G2NetError(f"--out {out} holds a simulation that was interrupted "
                         f"({describe_run(previous)}); rerun with those arguments to finish it, or "
                         "pass --overwrite to replace it")
    clash = [name for name in ("training_labels.csv", "sample_submission.csv", "train", "test")
             if (out / name).exists()]
    if clash:
        raise G2NetError(f"--out {out} already holds {', '.join(clash)} that simulate.py did not "
                         "write (no injections.csv); choose another folder or pass --overwrite")


def run_record(n_train: int, n_test: int, seed: int, priors: Priors, approximant: str,
               signal_bank: str | Path | None) -> dict[str, Any]:
    """The arguments that determine a simulation's bytes (not ``workers``), as stored in RUN_FILE."""
    return json.loads(json.dumps({
        "n_train": int(n_train), "n_test": int(n_test), "seed": int(seed),
        "approximant": approximant, "priors": dataclasses.asdict(priors),
        "signal_bank": None if signal_bank is None else str(Path(signal_bank).resolve()),
        "complete": False}))


def previous_run(out: Path) -> dict[str, Any] | None:
    """The record of the simulation in ``out``: RUN_FILE, or ``{}`` (arguments unknown) for an older
    simulate.py's finished output (injections.csv alone); None when there is none."""
    try:
        record = json.loads((out / RUN_FILE).read_text())
        if isinstance(record, dict):
            return record
    except (OSError, ValueError):
        pass
    return {} if (out / "injections.csv").is_file() else None


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a) and {k: v for k, v in a.items() if k != "complete"} == \
        {k: v for k, v in b.items() if k != "complete"}


def describe_run(record: dict[str, Any]) -> str:
    """``--n-train 6 --n-test 0 --seed 7 ...``: a run's arguments for an error message."""
    if not record:
        return "arguments not recorded: made by an older simulate.py"
    words = [f"--n-train {record.get('n_train')}", f"--n-test {record.get('n_test')}",
             f"--seed {record.get('seed')}"]
    if record.get("signal_bank"):
        words.append(f"--signal-bank {record['signal_bank']}")
    if record.get("approximant") != DEFAULT_APPROXIMANT:
        words.append(f"--approximant {record.get('approximant')}")
    defaults = json.loads(json.dumps(dataclasses.asdict(Priors())))
    for name, value in (record.get("priors") or {}).items():
        if defaults.get(name) != value:
            words.append("--" + name.replace("_", "-") + " " +
                         (" ".join(f"{v:g}" for v in value) if isinstance(value, list) else
                          f"{value:g}" if isinstance(value, float) else str(value)))
    return " ".join(words)


def _remove_previous_outputs(out: Path) -> None:
    """Delete what an earlier run left in ``out``: its tables first (so a kill leaves no labels
    pointing at missing files), the prepared csvs/caches/PSD made from it, then its examples."""
    for name in ("training_labels.csv", "test_labels.csv", "sample_submission.csv", "injections.csv",
                 *prepared_files()):
        (out / name).unlink(missing_ok=True)
    for name in SPLITS:
        shutil.rmtree(out / name, ignore_errors=True)


def _write_tables(out: Path, rows: list[dict[str, Any]], columns: Sequence[str] = INJECTION_COLUMNS) -> None:
    table = pd.DataFrame(rows).reindex(columns=list(columns))
    table["target"] = table["target"].astype(int)
    table["gps_start"] = table["gps_start"].astype("Int64")
    if BANK_ROW_COLUMN in table:
        table[BANK_ROW_COLUMN] = table[BANK_ROW_COLUMN].astype("Int64")
    train = table[table["split"] == "train"]
    test = table[table["split"] == "test"]

    def csv(frame: pd.DataFrame, name: str) -> None:
        atomic_write(out / name, lambda f: frame.to_csv(f, index=False), mode="w")

    csv(train[["id", "target"]], "training_labels.csv")
    if len(test):  # without test examples there is no test side (prep_data.py then skips it)
        csv(test[["id", "target"]], "test_labels.csv")
        csv(test[["id"]].assign(target=0.5), "sample_submission.csv")
    csv(table, "injections.csv")


def load_injections(path: str | Path) -> pd.DataFrame:
    """``injections.csv`` with ids as strings (a leading zero, or an all-digit id, survives)."""
    path = Path(path)
    if not path.is_file():
        raise G2NetError(f"{path} not found; simulate.py writes it next to training_labels.csv")
    return pd.read_csv(path, dtype={"id": str, "split": str, "approximant": str})


def build_parser() -> argparse.ArgumentParser:
    defaults = Priors()

    def default(name: str) -> str:
        value = getattr(defaults, name)
        return "(" + (" ".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"
                      if isinstance(value, float) else str(value)) + ")"

    parser = argparse.ArgumentParser(
        description="Simulate G2Net-format data: BBH injections (PyCBC/LALSuite) into calibrated "
                    "noise; priors documented in docs/simulator.md. Signal banks: "
                    "--write-signal-bank BANK.npz --n-signals K --seed S stores K signals; "
                    "--out DIR --n-train N --n-test M --seed S --signal-bank BANK.npz injects them "
                    "into fresh noise without PyCBC.")
    parser.add_argument("--out", help="output folder (the competition layout)")
    parser.add_argument("--n-train", type=int, help="training examples")
    parser.add_argument("--n-test", type=int, help="test examples")
    parser.add_argument("--seed", type=int, required=True, help="master seed: same seed, same bytes")
    parser.add_argument("--workers", type=int, default=min(cpu_count(), 8),
                        help="processes (the output does not depend on it)")
    parser.add_argument("--detectors", default=",".join(DETECTORS),
                        help="the detector network, comma-separated (H1,L1 as in MLGWSC-1); rows of "
                             "other detectors are zero and the SNR prior is over the network")
    parser.add_argument("--approximant", default=None,
                        help=f"any LAL time-domain approximant PyCBC knows ({DEFAULT_APPROXIMANT})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace competition files in --out that simulate.py did not write "
                             "(an earlier simulation is always replaced)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--engine", choices=("pycbc", "ml4gw"), default="pycbc",
                        help="pycbc (default): PyCBC/LALSuite per example on --workers processes; "
                             "ml4gw: the online training generator (online.py), batched in torch "
                             "on --device (IMRPhenomD or IMRPhenomPv2; docs/online.md)")
    parser.add_argument("--device", default="cpu", help="torch device of --engine ml4gw (cpu, cuda)")
    parser.add_argument("--write-signal-bank", metavar="BANK.npz",
                        help="instead of a data set, write a bank of --n-signals signals drawn from "
                             "the priors (needs PyCBC; ~24.6 KB a signal)")
    parser.add_argument("--n-signals", type=int, metavar="K", help="signals in --write-signal-bank")
    parser.add_argument("--signal-bank", metavar="BANK.npz",
                        help="take the positives' signals from this bank (no PyCBC/LALSuite needed; "
                             "the bank fixes the priors and the approximant)")
    pair = {"nargs": 2, "type": float, "metavar": ("MIN", "MAX")}
    parser.add_argument("--mass-range", **pair,
                        help=f"component masses, detector-frame Msun, each uniform {default('mass_range')}")
    parser.add_argument("--spin-range", **pair,
                        help=f"aligned spins spin1z, spin2z, each uniform {default('spin_range')}")
    parser.add_argument("--ra-range", **pair, help="right ascension, uniform")
    parser.add_argument("--dec-range", **pair, help="declination, uniform in sin(dec) (isotropic sky)")
    parser.add_argument("--inclination-range", **pair,
                        help="inclination, uniform in cos (isotropic orientation)")
    parser.add_argument("--polarization-range", **pair, help="polarization angle, uniform")
    parser.add_argument("--coa-phase-range", **pair, help="coalescence phase, uniform")
    parser.add_argument("--tc-range", **pair,
                        help=f"geocentric merger time, s after the window start, uniform {default('tc_range')}")
    parser.add_argument("--gps-range", nargs=2, type=int, metavar=("MIN", "MAX"),
                        help="GPS second of the window start, uniform integer")
    parser.add_argument("--snr-range", **pair,
                        help=f"optimal network SNR, 20-1000 Hz {default('snr_range')}")
    parser.add_argument("--snr-distribution",
                        help=f"{' | '.join(SNR_DISTRIBUTIONS)} (powerlaw: p ~ snr^-4) {default('snr_distribution')}")
    parser.add_argument("--positive-fraction", type=float,
                        help=f"share of examples with a signal, per split {default('positive_fraction')}")
    return parser


SIGNAL_PRIORS = [f.name for f in fields(Priors) if f.name != "positive_fraction"]


def priors_from_args(args: argparse.Namespace) -> Priors:
    """The priors of the command line; options not given keep the :class:`Priors` defaults."""
    values = {f.name: getattr(args, f.name) for f in fields(Priors) if getattr(args, f.name) is not None}
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return Priors(**values)


def _given(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    """The options among ``names`` (argparse destinations) that the command line set."""
    return ["--" + name.replace("_", "-") for name in names
            if getattr(args, name) not in (None, False)]


def _refuse(options: list[str], why: str) -> None:
    if options:
        raise G2NetError(f"{', '.join(options)}: {why}")


@cli_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    priors = priors_from_args(args)
    approximant = args.approximant or DEFAULT_APPROXIMANT
    if args.write_signal_bank is not None:
        _refuse(_given(args, ["out", "n_train", "n_test", "overwrite", "signal_bank"]),
                "--write-signal-bank writes only the bank; build the data set from it in a second "
                "run (--out DIR --n-train N --n-test M --seed S --signal-bank BANK)")
        _refuse(_given(args, ["positive_fraction"]), "a bank holds only signals; give it to the run "
                "that reads the bank (--signal-bank)")
        if args.n_signals is None:
            raise G2NetError("--write-signal-bank needs --n-signals K (the number of signals to store)")
        summary = draw_signal_bank(args.write_signal_bank, args.n_signals, args.seed, priors,
                                    approximant, args.workers, progress=not args.no_progress)
        print(f"wrote {summary['n_signals']} signals ({summary['bytes'] / 1e6:.1f} MB) to "
              f"{summary['path']}")
        print(f"rate: {summary['rate']:.1f} signals/s with {args.workers} worker(s) "
              f"({summary['seconds']:.1f} s)")
        return summary
    _refuse(_given(args, ["n_signals"]), "goes with --write-signal-bank BANK.npz")
    missing = [option for option, value in (("--out", args.out), ("--n-train", args.n_train),
                                            ("--n-test", args.n_test)) if value is None]
    _refuse(missing, "required to write a data set (or write a bank with --write-signal-bank "
            "BANK.npz --n-signals K --seed S)")
    if args.engine == "ml4gw":
        return _simulate_ml4gw(args, priors)
    if args.signal_bank is not None:
        _refuse(_given(args, [*SIGNAL_PRIORS, "approximant"]), "the signal bank fixes the priors and "
                "the approximant (they were chosen when it was written); drop these options, or "
                "write a new bank with them")
    summary = simulate(args.out, args.n_train, args.n_test, args.seed, priors, approximant,
                       args.workers, args.overwrite, progress=not args.no_progress,
                       signal_bank=args.signal_bank,
                       detectors=tuple(d.strip() for d in args.detectors.split(",") if d.strip()))
    source = f" from the {summary['bank_signals']} signals of {summary['signal_bank']}" \
        if args.signal_bank is not None else ""
    print(f"wrote {summary['n_train']} train + {summary['n_test']} test examples "
          f"({summary['positives']} with a signal{source}) to {args.out}")
    print(f"rate: {summary['rate']:.1f} examples/s with {args.workers} worker(s) "
          f"({summary['seconds']:.1f} s; {summary['rate_per_cpu']:.1f} examples per CPU-second)")
    return summary


def _simulate_ml4gw(args: argparse.Namespace, priors: Priors) -> dict[str, Any]:
    """``--engine ml4gw``: the data set written by the generator online training uses."""
    import online

    _refuse(_given(args, ["signal_bank"]), "goes with the pycbc engine (a polarisation bank for "
            "training is online.write_polarization_bank)")
    summary = online.simulate_files(args.out, args.n_train, args.n_test, args.seed, priors,
                                    args.approximant or "IMRPhenomD", device=args.device,
                                    overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {summary['n_train']} train + {summary['n_test']} test examples "
          f"({summary['positives']} with a signal, ml4gw on {summary['device']}) to {args.out}")
    print(f"rate: {summary['rate']:.1f} examples/s ({summary['seconds']:.1f} s)")
    return summary


if __name__ == "__main__":
    main()
