"""Long strain in the MLGWSC-1 layout: reading it (validated) and writing it.

Strain file (HDF5, as gwastro/ml-mock-data-challenge-1 stores it): one group per detector
(``H1``, ``L1``, ...), one dataset per contiguous segment named by its integer GPS start, with
attributes ``start_time`` (GPS s) and ``delta_t`` (s). Every detector holds the same segments.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from utils import DETECTORS, G2NetError

SIMULATION_FILES = ("foreground.hdf", "background.hdf", "injections.hdf")  # one simulate_strain.py run


PROBE_SAMPLES = 16384  # samples at the start of every segment checked for strain when a file is opened


def _number(value: Any) -> float | None:
    """An HDF5 attribute as a float, or None when it is text, an array or not a number."""
    if isinstance(value, (str, bytes, np.str_, np.bytes_)) or np.ndim(value) != 0:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _show(value: Any) -> str:
    """An attribute value as an error message shows it: numbers plainly, anything else quoted."""
    number = _number(value)
    if number is not None:
        return f"{number:g}"
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode(errors="replace")
    return repr(str(value)) if isinstance(value, (str, np.str_)) else repr(value)


def run_id_of(path: str | Path) -> str | None:
    """The ``run_id`` attribute simulate_strain.py writes into each of its files (None: none)."""
    return _text_attr(path, "run_id")


def strain_kind_of(path: str | Path) -> str | None:
    """``foreground`` or ``background``: the ``kind`` attribute simulate_strain.py writes into its
    strain files (None: none, as in MLGWSC-1's own files)."""
    return _text_attr(path, "kind")


def _text_attr(path: str | Path, name: str) -> str | None:
    with h5py.File(path, "r") as f:
        return attr_text(f.attrs.get(name))


def attr_text(value: Any) -> str | None:
    """An HDF5 text attribute as ``str`` (h5py gives ``bytes`` or ``str``), None when absent."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return None if value is None else str(value)


def check_same_run(named: Sequence[tuple[str | Path, str | None]]) -> None:
    """Refuse files of different simulate_strain.py runs: ``(path, run_id)`` pairs, None for a file
    that records no run (MLGWSC-1's own files): ignored unless another file records one."""
    recorded = [(p, r) for p, r in named if r is not None]
    if not recorded:
        return
    first_path, first = recorded[0]
    for path, run in named:
        if run != first:
            raise G2NetError(f"{path} and {first_path} are not from the same simulate_strain.py run "
                             f"(run_id {run or 'missing'} vs {first}): a run was interrupted while "
                             "replacing its files (--overwrite); simulate the folder again")


def parse_detectors(text: str | Sequence[str]) -> tuple[str, ...]:
    """``'H1,L1'`` -> ``('H1', 'L1')``, in the pipeline's row order, each known and at most once."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n) for n in text]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not names or len(set(names)) != len(names):
        raise G2NetError(f"--detectors {','.join(names) or text!r}: give distinct detectors from "
                         f"{','.join(DETECTORS)}, comma-separated (e.g. H1,L1)")
    return tuple(sorted(names, key=DETECTORS.index))


@dataclass(frozen=True)
class Segment:
    """One contiguous stretch of strain: its dataset name, GPS start, sample spacing, length."""
    key: str
    start_time: float
    delta_t: float
    n_samples: int

    @property
    def duration(self) -> float:
        return self.n_samples * self.delta_t

    @property
    def end_time(self) -> float:
        return self.start_time + self.duration

    def times(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.n_samples if stop is None else stop
        return self.start_time + np.arange(start, stop) * self.delta_t


class StrainFile:
    """A validated strain file: its detectors, segments and sample rate; read by slices.

    ``detectors`` (if given) must be exactly the file's set; ``sample_rate`` (if given) must match.
    Use as a context manager (or call :meth:`close`).
    """

    def __init__(self, path: str | Path, detectors: Sequence[str] | None = None,
                 sample_rate: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise G2NetError(f"{self.path} not found; give a strain file in the MLGWSC-1 layout "
                             "(python simulate_strain.py --out DIR writes one)")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise G2NetError(f"{self.path} is not an HDF5 file ({exc}); give a strain file in the "
                             "MLGWSC-1 layout") from exc
        try:
            self.detectors, self.segments = self._validate()
            self.run_id = run_id_of(self.path)
            self.kind = strain_kind_of(self.path)
            self._check_siblings()
            for seg in self.segments:  # an empty or underflowed file is refused before any work
                self.read(seg, 0, PROBE_SAMPLES)
        except G2NetError:
            self._file.close()
            raise
        self.sample_rate = 1.0 / self.segments[0].delta_t
        if detectors is not None and tuple(detectors) != self.detectors:
            self._file.close()
            raise G2NetError(f"{self.path} holds detectors {','.join(self.detectors)} but "
                             f"{','.join(detectors)} are needed; use a model/config trained on "
                             f"{','.join(self.detectors)} or a file with {','.join(detectors)}")
        if sample_rate is not None and abs(self.sample_rate - sample_rate) > 1e-6 * sample_rate:
            self._file.close()
            raise G2NetError(f"{self.path} is sampled at {self.sample_rate:g} Hz but {sample_rate:g} "
                             "Hz is needed; resample it (MLGWSC-1's downsample.py) or use a model "
                             "trained at that rate")

    def _validate(self) -> tuple[tuple[str, ...], list[Segment]]:
        where = f"{self.path} is not in the MLGWSC-1 layout"
        groups = [k for k in self._file.keys() if isinstance(self._file[k], h5py.Group)]
        if not groups:
            raise G2NetError(f"{where}: no detector groups (expected e.g. H1/<start>, L1/<start>)")
        unknown = [g for g in groups if g not in DETECTORS]
        if unknown:
            raise G2NetError(f"{where}: unknown detector group(s) {', '.join(unknown)}; groups must "
                             f"be among {', '.join(DETECTORS)}")
        detectors = tuple(sorted(groups, key=DETECTORS.index))
        per_detector = {}
        for det in detectors:
            segments = []
            for key, ds in self._file[det].items():
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
                    raise G2NetError(f"{where}: {det}/{key} is not a 1-D dataset of strain")
                if ds.dtype.kind not in "fiu":
                    raise G2NetError(f"{where}: {det}/{key} holds {ds.dtype} values, not strain numbers")
                if "start_time" not in ds.attrs or "delta_t" not in ds.attrs:
                    raise G2NetError(f"{where}: {det}/{key} lacks the attributes start_time and delta_t")
                start_time, delta_t = _number(ds.attrs["start_time"]), _number(ds.attrs["delta_t"])
                if start_time is None or not np.isfinite(start_time):
                    raise G2NetError(f"{where}: {det}/{key} has start_time {_show(ds.attrs['start_time'])}; "
                                     "it must be a finite GPS time in seconds")
                if delta_t is None or not np.isfinite(delta_t) or not delta_t > 0:
                    raise G2NetError(f"{where}: {det}/{key} has delta_t {_show(ds.attrs['delta_t'])}; it "
                                     "must be the sample spacing in seconds (> 0)")
                segments.append(Segment(key, start_time, delta_t, int(ds.shape[0])))
            if not segments:
                raise G2NetError(f"{where}: detector group {det} holds no segments")
            per_detector[det] = sorted(segments, key=lambda s: s.start_time)
        reference = per_detector[detectors[0]]
        for det in detectors[1:]:
            if per_detector[det] != reference:
                raise G2NetError(f"{where}: {det} and {detectors[0]} hold different segments (names, "
                                 "start times, lengths or sample rates); every detector needs the same")
        rates = {s.delta_t for s in reference}
        if len(rates) > 1:
            raise G2NetError(f"{where}: segments have different delta_t {sorted(rates)}")
        for before, after in zip(reference, reference[1:]):
            if after.start_time < before.end_time - 0.5 * before.delta_t:
                raise G2NetError(f"{where}: segments {before.key} and {after.key} overlap")
        return detectors, reference

    @property
    def duration(self) -> float:
        """Total seconds of strain (gaps excluded)."""
        return float(sum(s.duration for s in self.segments))

    def read(self, segment: Segment, start: int = 0, stop: int | None = None,
             detector: int | None = None) -> np.ndarray:
        """Samples ``[start, stop)`` of one segment as float64 ``(n_detectors, stop - start)``, or
        ``(stop - start,)`` of the detector numbered ``detector``; refuses NaN/inf strain."""
        stop = segment.n_samples if stop is None else min(stop, segment.n_samples)
        start = max(0, start)
        names = self.detectors if detector is None else [self.detectors[detector]]
        data = np.stack([np.asarray(self._file[det][segment.key][start:stop], dtype=np.float64)
                         for det in names])
        data = data if detector is None else data[0]
        if not np.all(np.isfinite(data)):
            raise G2NetError(f"{self.path}: segment {segment.key} holds NaN/inf strain between "
                             f"samples {start} and {stop}; cut that stretch out of the file")
        rows = data.reshape(-1, data.shape[-1])
        if rows.shape[-1] > 1:
            flat = np.flatnonzero(rows.min(axis=-1) == rows.max(axis=-1))
            if len(flat):
                det = names[int(flat[0])]
                dtype = self._file[det][segment.key].dtype
                hint = (f", stored as {dtype}, whose smallest number is {float(np.finfo(dtype).smallest_subnormal):.1g}"
                        if dtype.kind == "f" and np.finfo(dtype).bits < 32 else f", stored as {dtype}")
                raise G2NetError(f"{self.path}: {det}/{segment.key} is constant "
                                 f"({rows[flat[0], 0]:g}) between samples {start} and {stop}: the "
                                 f"strain is empty or underflowed{hint}; write the strain as float32 "
                                 "or float64 (strain of ~1e-21 rounds to 0 in float16)")
        return data

    def _check_siblings(self) -> None:
        """A file of a simulate_strain.py run (``run_id``) is refused beside files of another run."""
        if self.run_id is None or self.path.name not in SIMULATION_FILES:
            return
        named: list[tuple[Path, str | None]] = [(self.path, self.run_id)]
        for name in SIMULATION_FILES:
            sibling = self.path.with_name(name)
            if name != self.path.name and sibling.is_file():
                try:
                    named.append((sibling, run_id_of(sibling)))
                except OSError:
                    continue  # not HDF5: not a file of a run
        check_same_run(named)

    def attrs(self) -> dict[str, Any]:
        return dict(self._file.attrs)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "StrainFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class StrainWriter:
    """Writes a strain file segment by segment, a slice at a time (memory independent of length).

    The file is written under a temporary name and renamed on :meth:`close`, so a killed run never
    leaves a file that looks complete.
    """

    def __init__(self, path: str | Path, detectors: Sequence[str], attrs: Mapping[str, Any] | None = None,
                 dtype: Any = np.float64):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.detectors = tuple(detectors)
        self.dtype = np.dtype(dtype)
        self._file = h5py.File(self._tmp, "w")
        for det in self.detectors:
            self._file.create_group(det)
        for key, value in (attrs or {}).items():
            self._file.attrs[key] = value

    def create_segment(self, start_time: float, n_samples: int, delta_t: float) -> str:
        key = f"{int(round(start_time))}"
        for det in self.detectors:
            ds = self._file[det].create_dataset(key, shape=(int(n_samples),), dtype=self.dtype)
            ds.attrs["start_time"] = float(start_time)
            ds.attrs["delta_t"] = float(delta_t)
        return key

    def write(self, key: str, start: int, data: np.ndarray) -> None:
        """``data`` (n_detectors, n) into samples ``[start, start + n)`` of segment ``key``."""
        for det, row in zip(self.detectors, data):
            self._file[det][key][start:start + row.shape[-1]] = row.astype(self.dtype, copy=False)

    @property
    def staged(self) -> Path:
        """The temporary file the strain is written to until :meth:`commit`."""
        return self._tmp

    def finish(self) -> None:
        """Close the file, still under its temporary name (see :meth:`commit`)."""
        self._file.close()

    def commit(self) -> None:
        """Rename the finished file to its name."""
        self._tmp.replace(self.path)

    def close(self) -> None:
        self.finish()
        self.commit()

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)
