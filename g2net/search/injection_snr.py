"""The optimal SNR of every injection of a search evaluation: recorded, computed, or why missing.

simulate_strain.py records ``snr_<detector>`` and ``snr_network`` in its injection file. MLGWSC-1's
injection files (``pycbc_create_injections`` output, as its generate_data.py writes them) record
only the source parameters: one dataset per varied parameter and, in the file's attributes, the
``static_args`` (for dataset 1: ``approximant`` IMRPhenomXPHM, ``f_lower`` and ``f_ref`` 20 Hz,
``taper`` start, zero spins, ``mode_array`` 22). For such a file the SNRs are computed here:

- the signal each detector saw: ``pycbc.inject.InjectionSet(file).make_strain_from_inj_object``,
  the very call generate_data.py's injection makes (``get_td_waveform`` with the row's parameters
  and every static one, ``f_ref`` included, taper, ``Detector.project_wave``), from the
  foreground's ``f_lower`` attribute (the value generate_data.py passed to ``InjectionSet.apply``,
  20 Hz), else the row's ``f_lower``, else 20 Hz. On dataset 1 made by the challenge's own
  generate_data.py (scripts/mlgwsc1_dataset.py) these signals equal foreground minus background to
  float64 rounding (5e-38 against 1e-22);
- the PSD of the data itself around the injection: ``pycbc.psd.welch`` (median of 4 s Hann
  segments, half overlapping) of ``PSD_SECONDS`` (512) s of the foreground strain around ``tc``
  (centred within ``PSD_STEP`` / 2 s of it, moved inside the segment near its ends), interpolated
  to the signal's frequency grid. Long, because 1 / PSD is what the SNR sums and the scatter of a
  short estimate biases it up: on dataset 1 (seed 1, 132 injections) the network SNR against
  128 / 256 / 512 s of data was 1.3 / 0.6 / 0.2% (median) above the SNR against the PSD the noise
  was drawn from (aLIGOZeroDetHighPower), with 512 s all within -0.1% to +0.5% of it;
- ``pycbc.filter.sigma`` of the signal against that PSD above ``f_lower``, per detector, and the
  network SNR, their quadrature sum.
Only the injections the evaluation counts (inside the foreground, away from the segment ends) are
computed. A file without an SNR and without the parameters to remake its signals gets none, with
the reason (the evaluation says it in its table and figure).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from g2net.search.strain_io import StrainFile, attr_text
from g2net.simulation.physics import F_LOWER
from utils import G2NetError, file_digest

RECORDED, COMPUTED, MISSING = "recorded", "computed", "missing"


PSD_SECONDS = 512.0  # s of foreground around each injection whose Welch average is its PSD


PSD_STEP = 256.0  # s: the stretch is centred on a multiple of this (injections share it)


PSD_SEGMENT = 4.0  # s, length of each Welch segment (half overlapping, Hann, median average)


MIN_PSD_SECONDS = 32.0  # s: a shorter foreground segment gives no PSD (and no SNR)


WAVEFORM_PARAMETERS = ("tc", "mass1", "mass2", "distance", "ra", "dec", "polarization", "inclination",
                       "coa_phase", "approximant")


@dataclass
class InjectionSNR:
    """Optimal SNRs of the counted injections (``network[i]`` for the i-th counted one; NaN where
    it could not be computed), where they come from and how."""
    source: str  # RECORDED, COMPUTED or MISSING
    detail: str
    network: np.ndarray | None = None
    per_detector: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: str | None = None  # computed ones: what they were computed from (:func:`snr_inputs`)

    @property
    def label(self) -> str:
        """A short phrase for a table header and a figure axis."""
        return {RECORDED: "recorded in the injection file",
                COMPUTED: "computed: PyCBC waveform, PSD of the data",
                MISSING: "missing"}[self.source]


def waveform_fields(injection_file: str | Path) -> tuple[list[str], str | None]:
    """The parameters the file gives every injection (datasets and ``static_args``) and the reason
    its signals cannot be remade (None: they can)."""
    with h5py.File(injection_file, "r") as f:
        names = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
        static = f.attrs.get("static_args", [])
        static = [s.decode() if isinstance(s, bytes) else str(s) for s in np.atleast_1d(static)]
    names += static
    missing = [p for p in WAVEFORM_PARAMETERS if p not in names]
    if missing:
        return names, (f"the injection file records no optimal SNR (snr_network) and lacks "
                       f"{', '.join(missing)} to remake the signals")
    return names, None


def _locate(strains: Sequence[StrainFile], tc: float):
    """The (file, segment) whose strain holds ``tc``, or None."""
    for strain in strains:
        for segment in strain.segments:
            if segment.start_time <= tc <= segment.end_time:
                return strain, segment
    return None


def data_psd(strain: StrainFile, segment, tc: float, detector: int, seconds: float | None = None,
             cache: dict | None = None):
    """``pycbc.psd.welch`` of ``seconds`` s of one detector's strain around ``tc`` (centred on the
    multiple of ``PSD_STEP`` s nearest ``tc``, kept inside the segment; neighbouring injections share
    it through ``cache``), or None when the segment is shorter than ``MIN_PSD_SECONDS``."""
    from pycbc.psd import welch  # deferred: pycbc is heavy, and only this path needs it
    from pycbc.types import TimeSeries

    rate = 1.0 / segment.delta_t
    seconds = PSD_SECONDS if seconds is None else seconds
    n = min(int(round(seconds * rate)), segment.n_samples)
    if n < MIN_PSD_SECONDS * rate:
        return None
    step = int(round(PSD_STEP * rate))
    centre = int(round((tc - segment.start_time) * rate / step)) * step
    first = min(max(0, centre - n // 2), segment.n_samples - n)
    key = (str(strain.path), segment.key, detector, first, n)
    if cache is not None and key in cache:
        return cache[key]
    data = strain.read(segment, first, first + n, detector=detector)
    seg_len = int(round(PSD_SEGMENT * rate))
    psd = welch(TimeSeries(data, delta_t=segment.delta_t), seg_len=seg_len, seg_stride=seg_len // 2,
                window="hann", avg_method="median")
    if cache is not None:
        if len(cache) >= 16:
            cache.pop(next(iter(cache)))
        cache[key] = psd
    return psd


def optimal_snr(signal, psd, f_lower: float) -> float:
    """``pycbc.filter.sigma`` of a projected signal against a Welch PSD, above ``f_lower``."""
    from pycbc.filter import sigma  # deferred: pycbc
    from pycbc.psd import interpolate
    from pycbc.types import TimeSeries

    n = 1 << int(math.ceil(math.log2(max(len(signal), int(round(PSD_SEGMENT / signal.delta_t))))))
    padded = np.zeros(n)
    padded[:len(signal)] = signal.numpy()
    htilde = TimeSeries(padded, delta_t=signal.delta_t).to_frequencyseries()
    fine = interpolate(psd, htilde.delta_f, length=len(htilde))
    return float(sigma(htilde, psd=fine, low_frequency_cutoff=f_lower))


def injection_f_lower(strain: StrainFile, row, fieldnames: Sequence[str]) -> float:
    """The frequency the injected signals start at: the foreground's ``f_lower`` attribute
    (generate_data.py's make_injections records the value it passes to ``InjectionSet.apply``, which
    overrides every row's), else the row's ``f_lower``, else ``F_LOWER``."""
    value = strain.attrs().get("f_lower")
    if value is not None and np.ndim(value) == 0 and np.isfinite(float(value)) and float(value) > 0:
        return float(value)
    return float(row["f_lower"]) if "f_lower" in fieldnames else F_LOWER


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


def compute_snrs(injection_file: str | Path, foreground_files: Sequence[str | Path], indices: np.ndarray,
                 progress: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, int]]:
    """Per-detector and network optimal SNRs of the injections ``indices`` (NaN where the strain
    does not hold the injection or is too short for a PSD) and how many lack one, by reason.

    A file PyCBC cannot read as injections, or a row it cannot make a waveform of, is refused with
    one line (G2NetError) naming the file and the row."""
    from pycbc.inject import InjectionSet  # deferred: pycbc

    name = Path(injection_file).name
    try:
        injector = InjectionSet(str(injection_file))
        table = injector.table
    except Exception as exc:  # pycbc raises anything from KeyError to ValueError here
        raise G2NetError(f"{injection_file}: PyCBC cannot read it as an injection file "
                         f"({_one_line(exc)})") from exc
    strains = [StrainFile(path) for path in foreground_files]
    reasons = {"outside the foreground files": 0,
               f"no PSD: foreground segment shorter than {MIN_PSD_SECONDS:g} s": 0}
    outside, short = reasons
    try:
        detectors = strains[0].detectors
        snrs = {det: np.full(len(indices), np.nan) for det in detectors}
        cache: dict = {}
        for k, index in enumerate(indices):
            row = table[int(index)]
            tc = float(row["tc"])
            found = _locate(strains, tc)
            if found is None:
                reasons[outside] += 1
                continue
            strain, segment = found
            f_lower = injection_f_lower(strain, row, table.fieldnames)
            for d, det in enumerate(strain.detectors):
                psd = data_psd(strain, segment, tc, d, cache=cache)
                if psd is None:
                    reasons[short] += d == 0
                    continue
                try:
                    signal = injector.make_strain_from_inj_object(row, segment.delta_t, det,
                                                                  f_lower=f_lower)
                except Exception as exc:  # LAL and PyCBC raise RuntimeError, ValueError, ...
                    raise G2NetError(f"{name}: injection {int(index)} (tc {tc:.3f}): PyCBC cannot make "
                                     f"its {det} signal ({_one_line(exc)})") from exc
                snrs[det][k] = optimal_snr(signal, psd, f_lower)
            if progress and (k + 1) % 100 == 0:
                print(f"optimal SNR of {k + 1}/{len(indices)} injections", flush=True)
    finally:
        for strain in strains:
            strain.close()
    network = np.sqrt(sum(values ** 2 for values in snrs.values()))
    return snrs, network, {reason: n for reason, n in reasons.items() if n}


def injection_snr(injection_file: str | Path, injections: dict[str, np.ndarray],
                  foreground_files: Sequence[str | Path], inside: np.ndarray,
                  compute: bool = True) -> InjectionSNR:
    """The counted injections' optimal network SNRs: the file's ``snr_network`` when it records one,
    else computed from its parameters and the foreground (``compute``), else the reason why not."""
    if "snr_network" in injections:
        per_detector = {key[4:]: np.asarray(values, dtype=np.float64)[inside]
                        for key, values in injections.items()
                        if key.startswith("snr_") and key != "snr_network"}
        return InjectionSNR(RECORDED, f"snr_network as {Path(injection_file).name} records it",
                            np.asarray(injections["snr_network"], dtype=np.float64)[inside], per_detector)
    if not compute:
        return InjectionSNR(MISSING, "the injection file records no optimal SNR (snr_network) and "
                            "computing them was switched off (--no-compute-snr)")
    _, reason = waveform_fields(injection_file)
    if reason is not None:
        return InjectionSNR(MISSING, reason)
    indices = np.flatnonzero(inside)
    per_detector, network, lacking = compute_snrs(injection_file, foreground_files, indices,
                                                  progress=len(indices) >= 500)
    detail = (f"computed for {int(np.isfinite(network).sum())} of {len(indices)} injections: "
              f"{Path(injection_file).name}'s parameters (pycbc.inject.InjectionSet, static args "
              f"included), sigma against pycbc.psd.welch of {PSD_SECONDS:g} s of the foreground "
              f"around each injection ({PSD_SEGMENT:g} s Hann segments, median)")
    if lacking:
        detail += "; none for " + ", ".join(f"{n} ({reason})" for reason, n in lacking.items())
    return InjectionSNR(COMPUTED, detail, network, per_detector,
                        snr_inputs(injection_file, foreground_files))


def snr_inputs(injection_file: str | Path, foreground_files: Sequence[str | Path]) -> str:
    """What computed SNRs depend on, as JSON: the injection file's sha256, each foreground file's
    name and size (hashing gigabytes of strain would cost more than the SNRs) and the PSD convention."""
    return json.dumps({
        "injections_sha256": file_digest(injection_file),
        "foreground": [f"{Path(path).name} ({Path(path).stat().st_size} bytes)" for path in foreground_files],
        "psd": f"pycbc.psd.welch: {PSD_SECONDS:g} s centred on multiples of {PSD_STEP:g} s, "
               f"{PSD_SEGMENT:g} s Hann segments, median"})


INPUT_NAMES = {"injections_sha256": "another injection file (other bytes)",
               "foreground": "other foreground files", "psd": "another PSD convention"}


def reuse_snrs(previous: str | Path, injection_file: str | Path, foreground_files: Sequence[str | Path],
               inside: np.ndarray) -> InjectionSNR:
    """The counted injections' SNRs as an earlier evaluation computed them (its ``<label>.hdf``):
    a day of MLGWSC-1 injections costs minutes to compute, and re-evaluating should not pay again.
    Refused with one line unless they were computed for the same injection file, foreground files
    and PSD convention, and cover every injection counted now."""
    name = Path(previous).name
    remedy = "evaluate once without --optimal-snr-from to compute them"
    if not Path(previous).is_file():
        raise G2NetError(f"--optimal-snr-from {previous}: no such file; give the <label>.hdf an earlier "
                         f"evaluate_search.py wrote, or {remedy}")
    try:
        with h5py.File(previous, "r") as f:
            source = attr_text(f.attrs.get("optimal_snr_source"))
            recorded = attr_text(f.attrs.get("optimal_snr_inputs"))
            detail = attr_text(f.attrs.get("optimal_snr_detail")) or ""
            keys = ("injection-indices", "optimal-snr")
            if not all(isinstance(f.get(key), h5py.Dataset) for key in keys):
                raise G2NetError(f"--optimal-snr-from {previous}: not a per-search file of "
                                 f"evaluate_search.py with optimal SNRs (no {' / '.join(keys)}); {remedy}")
            indices = np.asarray(f["injection-indices"][()], dtype=np.int64)
            network = np.asarray(f["optimal-snr"][()], dtype=np.float64)
            per_detector = {key[len("optimal-snr-"):]: np.asarray(f[key][()], dtype=np.float64)
                            for key in f if key.startswith("optimal-snr-")}
    except OSError as exc:
        raise G2NetError(f"--optimal-snr-from {previous}: not a readable HDF5 file "
                         f"({_one_line(exc)})") from None
    shapes = {values.shape for values in (indices, network, *per_detector.values())}
    if len(shapes) != 1 or indices.ndim != 1 or not np.all(np.diff(indices) > 0):
        raise G2NetError(f"--optimal-snr-from {previous}: its injection-indices and optimal-snr "
                         f"datasets do not match (lengths {sorted(shapes)}, or unsorted); {remedy}")
    if source != COMPUTED:
        raise G2NetError(f"--optimal-snr-from {previous}: its optimal SNRs were not computed by an "
                         f"evaluation (source: {source}); {remedy}")
    if recorded is None:
        raise G2NetError(f"--optimal-snr-from {previous}: written before evaluations recorded what their "
                         f"SNRs were computed from; {remedy}")
    try:
        then = json.loads(recorded)
    except ValueError:
        then = None
    then = then if isinstance(then, dict) else {}
    now = json.loads(snr_inputs(injection_file, foreground_files))
    differ = [INPUT_NAMES[key] for key in INPUT_NAMES if then.get(key) != now[key]]
    if differ:
        raise G2NetError(f"--optimal-snr-from {previous}: its SNRs belong to {' and '.join(differ)}, not "
                         f"{Path(injection_file).name} with {', '.join(now['foreground'])}; {remedy}")
    wanted = np.flatnonzero(inside)
    covered = np.isin(wanted, indices)  # indices are sorted: searchsorted finds each one
    at = np.searchsorted(indices, wanted)
    if not covered.all():
        raise G2NetError(f"--optimal-snr-from {previous}: lacks {int((~covered).sum())} of the "
                         f"{len(wanted)} injections counted here (another --padding?); {remedy}")
    network = network[at]
    per_detector = {det: values[at] for det, values in per_detector.items()}
    have = int(np.isfinite(network).sum())
    how = detail.split(": ", 1)[-1].split("; none for")[0]
    text = f"computed for {have} of {len(wanted)} injections (by the evaluation that wrote {name}): {how}"
    if have < len(wanted):
        text += f"; none for {len(wanted) - have} (see {name})"
    return InjectionSNR(COMPUTED, text, network, per_detector, recorded)
