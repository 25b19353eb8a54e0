"""Bank formats: waveforms made once with PyCBC, stored compactly, used where PyCBC is missing.

* A *signal bank* holds projected signals ``(K, 3, 4096)`` with their ``injections.csv`` columns:
  ``signals`` float16 codes, ``scales`` float32 (signal = code * scale), one ``param_<column>``
  array per :data:`BANK_COLUMNS` and a JSON ``metadata`` string. ``simulate.py --signal-bank``
  injects them into fresh noise (numpy and pandas only).
* A *polarisation bank* holds h+/hx segments ``(K, 2, L)`` of any LALSimulation approximant at
  ``REFERENCE_DISTANCE`` with the merger at ``merger_index`` (:func:`segment_geometry`): the online
  ``bank`` source projects them with sky, time, SNR and noise drawn fresh every step.

Both are uncompressed ``.npz`` files with fixed zip timestamps (:func:`write_npz`), opened by
:func:`open_bank`. They are *written* by the PyCBC engine (:mod:`g2net.simulation.pycbc_engine`).
"""
from __future__ import annotations

import contextlib
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from g2net.simulation.physics import F_REF_UNRECORDED
from g2net.simulation.priors import Priors
from utils import DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError, atomic_write

POLARIZATION_BANK_FORMAT = "g2net-polarization-bank"
POLARIZATION_BANK_FORMAT_VERSION = 1


# the physics columns of injections.csv, kept per signal (simulate.INJECTION_COLUMNS ends with them)
BANK_COLUMNS = ["approximant", "f_ref", "mass1", "mass2", "spin1z", "spin2z", "distance", "ra", "dec",
                "polarization", "inclination", "coa_phase", "gps_start", "tc", "snr_H1", "snr_L1",
                "snr_V1", "snr_network"]


BANK_ROW_COLUMN = "bank_row"  # extra injections.csv column of a --signal-bank run


BANK_FORMAT = "g2net-signal-bank"


BANK_FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class SignalBank:
    """A loaded signal bank: what a ``--signal-bank`` run injects instead of calling PyCBC.

    Signals stay encoded (float16 codes, a float32 scale each: a quarter of float64's memory) and
    are decoded row by row, so a large bank can feed online simulation.
    """
    path: Path
    codes: np.ndarray  # float16 (K, 3, N_SAMPLES)
    scales: np.ndarray  # float32 (K,)
    table: pd.DataFrame  # BANK_COLUMNS, row k describes signal k (distance and SNRs included)
    metadata: dict[str, Any]  # format, format_version, seed, approximant, sample_rate, n_samples, ...

    def __len__(self) -> int:
        return len(self.codes)

    def signal(self, row: int) -> np.ndarray:
        """float64 ``(3, N_SAMPLES)`` signal of bank row ``row``."""
        return self.codes[row].astype(np.float64) * np.float64(self.scales[row])

    def decode(self, rows: Sequence[int] | np.ndarray | slice = slice(None)) -> np.ndarray:
        """float64 ``(n, 3, N_SAMPLES)`` signals of ``rows`` (default: all)."""
        return decode_signals(self.codes[rows], self.scales[rows])


def bank_generator(seed: int, row: int) -> np.random.Generator:
    """Parameter generator of bank row ``row``: a stream of its own, so that a bank never holds
    the signals of ``simulate --seed S`` (a test set simulated with the bank's seed stays unseen)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2 ** 32 - 4, row)))


def quantise_signal(signal: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """``(float16 codes, float32 scale)`` with ``codes * scale`` within 2.5e-4 of the signal's peak
    (optimal SNR changed by < 1e-4): a quarter of the bytes of float64, for a bank that must travel."""
    peak = float(np.max(np.abs(signal))) if signal.size else 0.0
    scale = np.float32(peak if peak > 0 else 1.0)
    return (np.asarray(signal, dtype=np.float64) / np.float64(scale)).astype(np.float16), scale


def decode_signals(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float64 signals (K, 3, T) from the stored codes and per-signal scales."""
    return codes.astype(np.float64) * scales.astype(np.float64)[:, None, None]


def bank_rows(seed: int, n_positives: int, n_signals: int) -> np.ndarray:
    """Bank row of each positive, in example order: positive ``k`` takes ``perm_c[k % K]`` with a
    fresh seeded permutation per cycle ``c = k // K``, so every row is used floor(n/K) or
    ceil(n/K) times and none twice before all have been used once."""
    if n_positives and n_signals < 1:
        raise G2NetError("the signal bank holds no signals but positives were asked for; rebuild it "
                         "with --n-signals >= 1, or use --positive-fraction 0")
    if not n_positives:
        return np.zeros(0, dtype=np.int64)
    cycles = -(-n_positives // n_signals)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2 ** 32 - 3,)))
    order = np.argsort(rng.random((cycles, n_signals)), axis=1, kind="stable")
    return order.reshape(-1)[:n_positives].astype(np.int64)


def write_signal_bank(path: str | Path, codes: np.ndarray, scales: np.ndarray, table: pd.DataFrame,
               metadata: dict[str, Any]) -> None:
    """Store a bank: ``codes``/``scales`` from :func:`quantise_signal`, ``table`` with
    :data:`BANK_COLUMNS`, ``metadata`` with format, version, sample_rate, n_samples, detectors,
    n_signals. An uncompressed ``.npz`` (float16 does not compress) with fixed zip timestamps, so
    that the same bank is the same bytes; written atomically."""
    arrays = {"signals": np.asarray(codes, dtype=np.float16),
              "scales": np.asarray(scales, dtype=np.float32),
              "metadata": np.array(json.dumps(metadata, sort_keys=True))}
    for column in BANK_COLUMNS:
        dtype = str if column == "approximant" else np.int64 if column == "gps_start" else np.float64
        arrays[f"param_{column}"] = np.array(table[column].tolist(), dtype=dtype)

    write_npz(path, arrays)


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as an uncompressed ``.npz`` with fixed zip timestamps (same arrays, same bytes),
    written atomically: the container of every bank (this one and online.py's polarisation banks)."""
    def write(handle: Any) -> None:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)

    atomic_write(path, write)


@contextlib.contextmanager
def open_bank(path: Path, bank_format: str, name: str, what: str,
              remedy: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """An ``.npz`` bank of ``bank_format`` opened with its metadata, for every bank reader (this
    module's and online.py's). A missing file, anything unreadable or malformed, here or in the
    caller's block (OSError, ValueError, KeyError, ...), is one G2NetError saying ``remedy``."""
    if not path.is_file():
        raise G2NetError(f"{name} {path} not found; {remedy}")
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":
                raise ValueError("not an .npz archive")
        with np.load(path, allow_pickle=False) as archive:
            if "metadata" not in archive.files:
                raise ValueError("no metadata")
            metadata = json.loads(str(archive["metadata"][()]))
            if not isinstance(metadata, dict) or metadata.get("format") != bank_format:
                raise ValueError(f"no {name} metadata")
            yield archive, metadata
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise G2NetError(f"{path} is not a {what} ({exc}); {remedy}") from None


def load_signal_bank(path: str | Path) -> SignalBank:
    """Read and check a bank written by :func:`write_signal_bank` (numpy and pandas only: this is
    what a machine without PyCBC runs). Every problem is one G2NetError saying what to do."""
    path = Path(path)
    remedy = (f"make one with `python simulate.py --write-signal-bank {path} --n-signals K --seed S` "
              "on a machine with PyCBC")
    with open_bank(path, BANK_FORMAT, "signal bank",
                   "signal bank written by simulate.py --write-signal-bank", remedy) as (archive, metadata):
        version = metadata.get("format_version")
        if version != BANK_FORMAT_VERSION:
            raise G2NetError(f"{path} is a signal bank of format version {version}; this "
                             f"simulate.py reads version {BANK_FORMAT_VERSION}: rebuild it with "
                             "this simulate.py --write-signal-bank")
        rate, length = metadata.get("sample_rate"), metadata.get("n_samples")
        if rate != SAMPLE_RATE or length != N_SAMPLES or metadata.get("detectors") != list(DETECTORS):
            raise G2NetError(f"{path} holds {metadata.get('detectors')} signals of {length} samples "
                             f"at {rate} Hz; the competition layout needs {list(DETECTORS)}, "
                             f"{N_SAMPLES} samples at {SAMPLE_RATE} Hz (utils.N_SAMPLES, "
                             "utils.SAMPLE_RATE): rebuild the bank with this simulate.py")
        codes, scales = archive["signals"], archive["scales"]
        # a bank written before the reference frequency was recorded has no param_f_ref: its
        # signals were made with PyCBC's default (F_REF_UNRECORDED)
        columns = {column: archive[f"param_{column}"] for column in BANK_COLUMNS
                   if column != "f_ref" or "param_f_ref" in archive.files}
        table = pd.DataFrame(columns).reindex(columns=BANK_COLUMNS)
        table["f_ref"] = table["f_ref"].fillna(F_REF_UNRECORDED)
    count = len(codes)
    problem = None
    if codes.dtype != np.float16 or codes.shape[1:] != (len(DETECTORS), N_SAMPLES):
        problem = f"signals are {codes.dtype} {codes.shape}, not float16 (K, {len(DETECTORS)}, {N_SAMPLES})"
    elif scales.shape != (count,) or len(table) != count or metadata.get("n_signals") != count:
        problem = (f"{count} signals, {len(scales)} scales, {len(table)} parameter rows and "
                   f"n_signals {metadata.get('n_signals')} disagree")
    elif not (np.all(np.isfinite(codes)) and np.all(np.isfinite(scales)) and np.all(scales > 0)):
        problem = "signals or scales are not finite"
    if problem:
        raise G2NetError(f"{path} is a damaged signal bank ({problem}); rebuild it with "
                         "simulate.py --write-signal-bank")
    return SignalBank(path, codes, scales, table, metadata)


CROP_MARGIN = 0.1  # s kept either side of the window before projection (light travel <= 27 ms)
MAX_DELAY = 0.03  # s, more than the light travel time from the geocentre to any detector (21 ms)


EDGE_TAPER = 0.05  # s of cosine taper at the start of a stored/cropped waveform segment


POST_MERGER = 0.5  # s kept after the merger (ringdowns of these masses last < 50 ms)


def segment_geometry(priors: Priors, sample_rate: float = SAMPLE_RATE) -> tuple[int, int]:
    """``(segment length, merger index)`` in samples of the h+/hx segments the projector takes:
    enough before the merger for the latest merger time plus delays and taper, ``POST_MERGER`` after."""
    before = priors.tc_range[1] + MAX_DELAY + CROP_MARGIN + EDGE_TAPER
    merger = int(math.ceil(before * sample_rate))
    return merger + int(round(POST_MERGER * sample_rate)), merger


# ----------------------------------------------------------------------------- polarisation banks
@dataclass(frozen=True, eq=False)
class PolarizationBank:
    """h+/hx segments (K, 2, L) at ``simulate.REFERENCE_DISTANCE`` with the merger at ``merger_index``."""
    path: Path
    polarizations: np.ndarray  # float64 (K, 2, L)
    table: Any  # pandas DataFrame of the intrinsic parameters, row k describes polarizations[k]
    metadata: dict[str, Any]

    def __len__(self) -> int:
        return len(self.polarizations)


BANK_PARAMS = ["approximant", "mass1", "mass2", "spin1x", "spin1y", "spin1z", "spin2x", "spin2y",
               "spin2z", "inclination", "coa_phase"]


def load_polarization_bank(path: str | Path) -> PolarizationBank:
    """Read a bank of :func:`write_polarization_bank`; every problem is one G2NetError."""
    path = Path(path)
    remedy = (f"write one with online.write_polarization_bank('{path}', K, seed) "
              "on a machine with PyCBC")
    with open_bank(path, POLARIZATION_BANK_FORMAT, "polarisation bank", "polarisation bank",
                               remedy) as (archive, metadata):
        if metadata.get("format_version") != POLARIZATION_BANK_FORMAT_VERSION:
            raise ValueError(f"format {metadata.get('format')} v{metadata.get('format_version')}")
        codes, scales = archive["polarizations"], archive["scales"]
        table = pd.DataFrame({c: archive[f"param_{c}"] for c in BANK_PARAMS})
    if metadata.get("sample_rate") != SAMPLE_RATE or codes.shape[1:] != (2, metadata["segment_samples"]):
        raise G2NetError(f"{path} holds waveforms of shape {codes.shape[1:]} at "
                         f"{metadata.get('sample_rate')} Hz; rebuild it with this online.py")
    return PolarizationBank(path, decode_signals(codes, scales), table, metadata)
