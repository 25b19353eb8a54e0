"""Long continuous strain with injections, in the MLGWSC-1 layout, for searches (docs/search.md).

``simulate_strain.py`` writes, under ``--out``:
- ``foreground.hdf``: calibrated noise plus an injection every 24 +- 6 s (MLGWSC-1's spacing);
- ``background.hdf``: independent noise of the same segments, no injections;
- ``injections.hdf``: one dataset per parameter, one entry per injection: ``tc`` (GPS of the
  geocentric merger), ``distance``, ``chirp_distance``, ``mass1``, ``mass2`` and the other
  ``injections.csv`` columns (spins, sky position, angles, ``snr_<det>``, ``snr_network``).
Every parameter but the distance comes from the priors (:mod:`g2net.simulation.priors`); the
distance follows MLGWSC-1: chirp distance uniform in volume between MIN and MAX Mpc, which is what
the volume-weighted sensitive distance of the search evaluation assumes. Signals are the PyCBC
engine's (:func:`~g2net.simulation.pycbc_engine.injection_signal`), optimal SNRs against the noise
model's PSD over ``SNR_BAND``.

Noise is the calibrated noise, drawn as one continuous stream per segment
(:class:`~g2net.simulation.noise.StreamingNoise`), chunk by chunk, so memory does not grow with the
duration and there is no seam between chunks.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
from tqdm import tqdm

from g2net.search.strain_io import SIMULATION_FILES, StrainWriter
from g2net.simulation.noise import StreamingNoise
from g2net.simulation.physics import F_LOWER
from g2net.simulation.priors import Priors, draw_parameters
from g2net.simulation.pycbc_engine import injection_signal, optimal_snr
from utils import DETECTORS, SAMPLE_RATE, G2NetError, output_file, output_folder

INJECTION_STEP = 24.0  # s between injections (MLGWSC-1)


INJECTION_JITTER = 6.0  # s, each injection uniform within +- this of its grid time (MLGWSC-1)


DEFAULT_START = 1238166018  # GPS, start of O3 (as the simulator's gps_range)


DEFAULT_CHIRP_DISTANCE = (20.0, 300.0)  # Mpc: network SNR ~50 down to ~3 in this noise (H1+L1)


DEFAULT_PADDING = 30.0  # s at each segment end without injections (MLGWSC-1's evaluation padding)


CHUNK_SECONDS = 64  # strain generated and written at a time


POST_MERGER = 1.0  # s of signal kept after the merger (ringdown is over in << 1 s)


MCHIRP_BNS = 1.4 * 2.0 ** -0.2  # chirp mass of a 1.4+1.4 binary, the chirp distance's reference


FILE_NAMES = SIMULATION_FILES


PARAMETER_COLUMNS = ["f_ref", "mass1", "mass2", "spin1z", "spin2z", "distance", "chirp_distance", "ra", "dec",
                     "polarization", "inclination", "coa_phase", "tc"]


@dataclass(frozen=True)
class StrainPlan:
    """What to simulate: detectors, segments (GPS start, samples), injection options."""
    detectors: tuple[str, ...]
    segments: tuple[tuple[float, int], ...]
    seed: int
    approximant: str
    chirp_distance_range: tuple[float, float]
    padding: float
    priors: Priors
    sample_rate: float = SAMPLE_RATE


def plan_segments(duration: float, segment_duration: float | None, gap: float, start: float,
                  sample_rate: float = SAMPLE_RATE) -> tuple[tuple[float, int], ...]:
    """Whole-second segments of at most ``segment_duration`` s adding up to ``duration`` s, ``gap`` s apart."""
    if not math.isfinite(duration) or not duration > 0 or duration != int(duration):
        raise G2NetError(f"--duration {duration:g}: give a whole number of seconds > 0")
    segment_duration = duration if segment_duration is None else segment_duration
    if not math.isfinite(segment_duration) or not segment_duration > 0 \
            or segment_duration != int(segment_duration):
        raise G2NetError(f"--segment-duration {segment_duration:g}: give a whole number of seconds > 0")
    if not math.isfinite(gap) or gap < 0 or gap != int(gap):
        raise G2NetError(f"--gap {gap:g}: give a whole number of seconds >= 0")
    if not math.isfinite(start):
        raise G2NetError(f"--start-time {start:g}: give a finite GPS time")
    segments, left, t = [], int(duration), float(start)
    while left > 0:
        length = min(left, int(segment_duration))
        segments.append((t, int(length * sample_rate)))
        t += length + gap
        left -= length
    return tuple(segments)


def injection_times(plan: StrainPlan) -> list[tuple[int, float]]:
    """``(segment index, tc)`` of every injection: one per 24 s grid slot at least ``padding`` s
    (plus the jitter) inside a segment, uniform within +- 6 s of the slot's centre."""
    rng = np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(3,)))
    times = []
    for index, (start, n_samples) in enumerate(plan.segments):
        end = start + n_samples / plan.sample_rate
        slot = start + plan.padding + INJECTION_JITTER
        while slot + INJECTION_JITTER <= end - plan.padding:
            times.append((index, slot + rng.uniform(-INJECTION_JITTER, INJECTION_JITTER)))
            slot += INJECTION_STEP
    return times


def draw_injection(plan: StrainPlan, number: int, tc: float) -> dict[str, Any]:
    """Parameters of injection ``number`` (a pure function of the seed and the number)."""
    from pycbc.conversions import mchirp_from_mass1_mass2

    rng = np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(0, number)))
    params = draw_parameters(rng, plan.priors, plan.approximant)
    low, high = plan.chirp_distance_range
    chirp_distance = (low ** 3 + rng.uniform() * (high ** 3 - low ** 3)) ** (1.0 / 3.0)
    mchirp = float(mchirp_from_mass1_mass2(params["mass1"], params["mass2"]))
    params.update(tc=float(tc), chirp_distance=float(chirp_distance),
                  distance=float(chirp_distance * (mchirp / MCHIRP_BNS) ** (5.0 / 6.0)))
    return params


def signal_window(plan: StrainPlan) -> tuple[float, int]:
    """``(seconds before the merger, samples)`` of the stretch every injection is computed on:
    long enough for the lightest binary of the prior from 20 Hz (PyCBC's Newtonian chirp time)."""
    from pycbc.conversions import tau0_from_mass1_mass2

    lightest = plan.priors.mass_range[0]
    before = math.ceil(1.25 * float(tau0_from_mass1_mass2(lightest, lightest, F_LOWER)) + 1.0)
    return float(before), int((before + POST_MERGER) * plan.sample_rate)


def injection_on_grid(plan: StrainPlan, params: dict[str, Any], segment_start: float
                      ) -> tuple[int, np.ndarray, np.ndarray]:
    """``(first sample in the segment, signal (n_detectors, n), snrs of the chosen detectors)``."""
    before, n_samples = signal_window(plan)
    first = int(math.floor((params["tc"] - before - segment_start) * plan.sample_rate))
    gps_start = segment_start + first / plan.sample_rate
    row = {**params, "gps_start": gps_start, "tc": params["tc"] - gps_start}
    signal = injection_signal(row, n_samples, plan.sample_rate)
    snrs, _ = optimal_snr(signal, plan.sample_rate)
    rows = [DETECTORS.index(d) for d in plan.detectors]
    return first, signal[rows], snrs[rows]


def _chunks(n_samples: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n_samples, chunk):
        yield start, min(n_samples, start + chunk)


def _write_injections(path: Path, rows: list[dict[str, Any]], plan: StrainPlan,
                      attrs: dict[str, Any]) -> None:
    """The injection file: one float64 dataset per parameter column, one entry per injection."""
    low, high = plan.chirp_distance_range
    columns = PARAMETER_COLUMNS + [f"snr_{d}" for d in plan.detectors] + ["snr_network"]
    with h5py.File(path, "w") as f:
        for name in columns:
            f.create_dataset(name, data=np.array([row[name] for row in rows], dtype=np.float64))
        f.create_dataset("approximant", data=np.array([row["approximant"] for row in rows], dtype="S"))
        for key, value in {**attrs, "chirp_distance_min": low, "chirp_distance_max": high,
                           "injection_step": INJECTION_STEP, "injection_jitter": INJECTION_JITTER}.items():
            f.attrs[key] = value


def simulate_strain(out: str | Path, plan: StrainPlan, overwrite: bool = False, progress: bool = True,
                    dtype: Any = np.float32) -> dict[str, Any]:
    """Write foreground, background and injection files under ``out``; return a summary."""
    out = output_folder(out, "--out")
    for name in FILE_NAMES:
        output_file(out / name, "--out", overwrite=overwrite)
    plan.priors.validate(plan.approximant)
    low, high = plan.chirp_distance_range
    if not 0 < low <= high or not math.isfinite(high):
        raise G2NetError(f"--chirp-distance-range {low:g} {high:g}: need 0 < MIN <= MAX (Mpc)")
    # every file of the run records it: readers refuse a set mixed by an interrupted --overwrite
    attrs = {"sample_rate": plan.sample_rate, "detectors": ",".join(plan.detectors), "seed": plan.seed,
             "approximant": plan.approximant, "padding": plan.padding, "run_id": uuid.uuid4().hex}
    times = injection_times(plan)
    fg_rng, bg_rng = (np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(k,)))
                      for k in (1, 2))
    foreground = StrainWriter(out / "foreground.hdf", plan.detectors, {**attrs, "kind": "foreground"}, dtype)
    background = StrainWriter(out / "background.hdf", plan.detectors, {**attrs, "kind": "background"}, dtype)
    rows: list[dict[str, Any]] = []
    chunk = int(CHUNK_SECONDS * plan.sample_rate)
    total = sum(n for _, n in plan.segments)
    try:
        with tqdm(total=total / plan.sample_rate, unit="s", desc="strain", disable=not progress) as bar:
            for index, (start_time, n_samples) in enumerate(plan.segments):
                fg_noise = StreamingNoise(plan.detectors, fg_rng, plan.sample_rate)
                bg_noise = StreamingNoise(plan.detectors, bg_rng, plan.sample_rate)
                fg_key = foreground.create_segment(start_time, n_samples, 1.0 / plan.sample_rate)
                bg_key = background.create_segment(start_time, n_samples, 1.0 / plan.sample_rate)
                pending = [(number, tc) for number, (seg, tc) in enumerate(times) if seg == index]
                active: list[tuple[int, np.ndarray]] = []
                for lo, hi in _chunks(n_samples, chunk):
                    data = fg_noise(hi - lo)
                    before, window = signal_window(plan)
                    while pending and (pending[0][1] - before - start_time) * plan.sample_rate < hi:
                        number, tc = pending.pop(0)
                        params = draw_injection(plan, number, tc)
                        first, signal, snrs = injection_on_grid(plan, params, start_time)
                        params.update({f"snr_{d}": float(s) for d, s in zip(plan.detectors, snrs)})
                        params["snr_network"] = float(np.sqrt(np.sum(snrs ** 2)))
                        rows.append(params)
                        active.append((first, signal))
                    for first, signal in active:
                        a, b = max(lo, first), min(hi, first + signal.shape[-1])
                        if b > a:
                            data[:, a - lo:b - lo] += signal[:, a - first:b - first]
                    active = [(f, s) for f, s in active if f + s.shape[-1] > hi]
                    foreground.write(fg_key, lo, data)
                    background.write(bg_key, lo, bg_noise(hi - lo))
                    bar.update((hi - lo) / plan.sample_rate)
        foreground.finish()
        background.finish()
        _write_injections(out / ".injections.hdf.tmp", rows, plan, attrs)
    except BaseException:
        foreground.abort()
        background.abort()
        (out / ".injections.hdf.tmp").unlink(missing_ok=True)
        raise
    # all three are complete under temporary names; a kill between these renames leaves files of
    # two runs side by side, which their run_id tells apart (strain_io.check_same_run)
    foreground.commit()
    background.commit()
    (out / ".injections.hdf.tmp").replace(out / "injections.hdf")
    return {"out": str(out), "seconds": total / plan.sample_rate, "segments": len(plan.segments),
            "injections": len(rows), "detectors": plan.detectors}
