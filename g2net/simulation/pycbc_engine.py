"""The PyCBC/LALSuite engine: every example, data set and bank made with PyCBC waveforms.

Every example is a pure function of (seed, example index): its random numbers come from
``SeedSequence(seed, spawn_key=(index,))``, so the files are byte-identical whatever ``workers``.
A positive is ``colored_noise + injection_signal(row)``, where ``row`` is its line of
``injections.csv``; the distance in that row is the one that gives the drawn network SNR
(``get_td_waveform`` from ``F_LOWER``, ``Detector.project_wave``, ``pycbc.filter.sigma`` over
``SNR_BAND``). :func:`simulate` writes a data set (or injects a signal bank's signals, without
PyCBC); :func:`draw_signal_bank` and :func:`write_polarization_bank` write the banks.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import multiprocessing
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from g2net.simulation import layout
from g2net.simulation.banks import (BANK_COLUMNS, BANK_FORMAT, BANK_FORMAT_VERSION, BANK_PARAMS,
                                    BANK_ROW_COLUMN, CROP_MARGIN, POLARIZATION_BANK_FORMAT,
                                    POLARIZATION_BANK_FORMAT_VERSION, SignalBank, bank_generator,
                                    bank_rows, load_signal_bank, quantise_signal, segment_geometry,
                                    write_npz, write_signal_bank)
from g2net.simulation.noise import colored_noise, detector_psd
from g2net.simulation.physics import (DEFAULT_APPROXIMANT, F_LOWER, F_REF, F_REF_UNRECORDED,
                                      REFERENCE_DISTANCE, SNR_BAND)
from g2net.simulation.priors import (Priors, check_positive_fraction, draw_parameters,
                                     draw_precessing_spins, draw_snr)
from utils import DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError, example_path


@functools.lru_cache(maxsize=None)
def _detector(name: str):
    from pycbc.detector import Detector

    return Detector(name)


def reference_frequency(row: Mapping[str, Any]) -> float:
    """The ``f_ref`` a row's signal was made with: its ``f_ref`` column, or ``F_REF_UNRECORDED``
    for a row written before the column existed (its engine then left PyCBC's default)."""
    value = row.get("f_ref", F_REF_UNRECORDED)
    value = F_REF_UNRECORDED if value is None or (isinstance(value, float) and math.isnan(value)) else value
    return float(value)


def injection_signal(row: Mapping[str, Any], n_samples: int = N_SAMPLES,
                     sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """The clean signal (3, n_samples) of one ``injections.csv`` row, from its columns alone.

    ``get_td_waveform`` (from ``F_LOWER``, reference frequency the row's ``f_ref``: see
    :func:`reference_frequency`) with the merger at GPS ``gps_start + tc``, projected with
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
                             delta_t=1.0 / sample_rate, f_lower=F_LOWER, f_ref=reference_frequency(row))
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
    return tuple(detector_psd(name, sample_rate / n_samples, n_samples // 2 + 1,
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
    noise = colored_noise(noise_rng)
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
    layout.save_example(example_path(job.out, split, example_id), data)
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
    record = layout.run_record(n_train, n_test, seed, priors, approximant,
                        None if signal_bank is None else getattr(signal_bank, "path", signal_bank))
    if detectors != DETECTORS:
        record["detectors"] = list(detectors)
    layout.check_counts(n_train, n_test, seed, workers)
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
    ids = layout.make_ids(seed, total)
    targets = layout.make_targets(seed, n_train, n_test, priors.positive_fraction)
    rows_of = [None] * total
    if bank is not None:
        positives = np.flatnonzero(targets)
        for index, row in zip(positives, bank_rows(seed, len(positives), len(bank))):
            rows_of[index] = int(row)
    layout.begin_run(out, overwrite, record)  # after the bank's checks: a broken bank is the news
    splits = ["train"] * n_train + ["test"] * n_test
    job = _Job(str(out), seed, priors, approximant, bank is not None, detectors)
    tasks = [(job, i, ids[i], splits[i], int(targets[i]), rows_of[i]) for i in range(total)]
    started = time.perf_counter()
    # the noise PSD (a deconvolution) and the SNR PSDs are built once here, inherited by the workers
    colored_noise(np.random.default_rng(0))
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
    layout.end_run(out, rows, layout.INJECTION_COLUMNS if bank is None else [*layout.INJECTION_COLUMNS, BANK_ROW_COLUMN], record)
    summary = {"n_train": n_train, "n_test": n_test, "positives": int(targets.sum()),
               "seconds": elapsed, "rate": total / elapsed if elapsed > 0 else float("inf"),
               "cpu_seconds": cpu, "rate_per_cpu": total / cpu if cpu > 0 else float("inf")}
    if bank is not None:
        summary.update({"signal_bank": str(bank.path), "bank_signals": len(bank)})
    return summary


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
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


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
    layout.check_seed_and_workers(seed, workers)
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
                "priors": dataclasses.asdict(priors), "f_lower": F_LOWER, "f_ref": F_REF, "snr_band": list(SNR_BAND),
                "encoding": "signal = float16 signals * float32 scales (per signal)"}
    write_signal_bank(path, codes, scales, table, metadata)
    elapsed = time.perf_counter() - started
    return {"path": str(path), "n_signals": n_signals, "bytes": path.stat().st_size,
            "seconds": elapsed, "rate": n_signals / elapsed if elapsed > 0 else float("inf"),
            "cpu_seconds": _cpu_seconds() - cpu_started}


def _bank_row(args: tuple) -> tuple[np.ndarray, dict[str, Any]]:
    """One bank waveform: intrinsic parameters from ``(seed, row)``, h+/hx with PyCBC."""
    from pycbc.waveform import get_td_waveform  # deferred: PyCBC is heavy (so are all below)

    seed, row, priors, approximant, length, merger = args
    rng = bank_generator(seed, row)
    params = draw_parameters(rng, priors, approximant)
    precessing = bool(_lal_precessing(approximant))
    if precessing:
        params.update(draw_precessing_spins(rng, priors))
    else:
        params.update({f"spin{k}{c}": 0.0 for k in (1, 2) for c in "xy"})
    hp, hc = get_td_waveform(
        approximant=approximant, mass1=params["mass1"], mass2=params["mass2"],
        spin1x=params["spin1x"], spin1y=params["spin1y"], spin1z=params["spin1z"],
        spin2x=params["spin2x"], spin2y=params["spin2y"], spin2z=params["spin2z"],
        distance=REFERENCE_DISTANCE, inclination=params["inclination"],
        coa_phase=params["coa_phase"], delta_t=1.0 / SAMPLE_RATE, f_lower=F_LOWER,
        f_ref=F_REF)
    out = np.zeros((2, length))
    start = int(round(float(hp.start_time) * SAMPLE_RATE)) + merger  # segment index of sample 0
    lo, hi = max(start, 0), min(start + len(hp), length)
    if hi > lo:
        out[0, lo:hi] = hp.numpy()[lo - start:hi - start]
        out[1, lo:hi] = hc.numpy()[lo - start:hi - start]
    return out, {k: params[k] for k in BANK_PARAMS}


def _lal_precessing(approximant: str) -> bool:
    import lalsimulation  # deferred: LALSuite is heavy; only bank writing needs it

    try:
        code = lalsimulation.GetApproximantFromString(approximant)
        return lalsimulation.SimInspiralGetSpinSupportFromApproximant(code) >= \
            lalsimulation.SIM_INSPIRAL_PRECESSINGSPIN
    except RuntimeError:
        return False


def write_polarization_bank(path: str | Path, n_signals: int, seed: int, priors: Priors = Priors(),
                            approximant: str = "IMRPhenomXPHM", workers: int = 1,
                            progress: bool = True) -> dict[str, Any]:
    """Store h+/hx of ``n_signals`` sources of any LALSimulation approximant (made with PyCBC,
    float16 codes times a float32 scale per waveform, ~25 KB each). Row ``j`` is a function of
    ``(seed, j)``. Sky, polarisation, merger time, SNR and noise are drawn when training."""
    if n_signals < 1:
        raise G2NetError(f"--n-signals {n_signals}: a bank needs at least 1 waveform")
    priors.validate(approximant)
    length, merger = segment_geometry(priors)
    tasks = [(seed, row, priors, approximant, length, merger) for row in range(n_signals)]
    started = time.perf_counter()
    results = _map_in_order(_bank_row, tasks, workers, "polarisation bank", "wf", progress)
    coded = [quantise_signal(r[0]) for r in results]
    arrays = {"polarizations": np.stack([c[0] for c in coded]),
              "scales": np.array([c[1] for c in coded], dtype=np.float32)}
    table = pd.DataFrame([r[1] for r in results])
    metadata = {"format": POLARIZATION_BANK_FORMAT, "format_version": POLARIZATION_BANK_FORMAT_VERSION,
                "seed": int(seed), "n_signals": int(n_signals), "approximant": approximant,
                "sample_rate": SAMPLE_RATE,
                "segment_samples": length, "merger_index": merger, "f_lower": F_LOWER,
                "f_ref": F_REF, "distance": REFERENCE_DISTANCE,
                "priors": dataclasses.asdict(priors)}
    arrays["metadata"] = np.array(json.dumps(metadata, sort_keys=True))
    for column in BANK_PARAMS:
        arrays[f"param_{column}"] = np.array(table[column].tolist(),
                                             dtype=str if column == "approximant" else np.float64)
    write_npz(Path(path), arrays)
    return {"path": str(path), "n_signals": n_signals, "bytes": Path(path).stat().st_size,
            "seconds": time.perf_counter() - started}
