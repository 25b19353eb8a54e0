"""The reference bank of the strain matched filter, and how well a bank fits the signals searched for.

A search is only as good a reference as its bank: the strain matched filter filters whole inspirals
from ``F_LOWER``, so its templates must match whole inspirals. The reference bank is placed by
PyCBC's own stochastic placement (``pycbc_brute_bank``): aligned-spin ``IMRPhenomD`` over the
search's prior (component masses, aligned spins), whole waveforms from ``F_LOWER`` in a 16 s
buffer, against the simulator's PSD, each proposal kept when no template matches it better than
``minimal_match`` (maximised over time and phase), until fewer than ``tolerance`` of the proposals
are kept. The result is one HDF file (``data/reference_bank.hdf``) that the search reads instead of
building anything; :func:`build` remakes it and records its recipe in the file.

:func:`fitting_factors` measures any bank on injections of a prior (the search's or MLGWSC-1
dataset 1's): each injection's best match over the bank (time and phase maximised, whitened by a
PSD), ranked with a batched FFT match and the best few confirmed with ``pycbc.filter.match``.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import h5py
import numpy as np
import torch
from tqdm import tqdm

from g2net.simulation import noise
from g2net.simulation.physics import F_LOWER
from g2net.simulation.priors import Priors
from utils import G2NetError, atomic_write

REFERENCE_BANK_FILE = Path(__file__).resolve().parents[2] / "data" / "reference_bank.hdf"
BUFFER_SECONDS = 16  # whole inspirals of the prior's lightest binary from 20 Hz last < 7 s
SAMPLE_RATE = 2048.0
SHORTLIST = 4  # templates per injection confirmed with pycbc.filter.match


@dataclass(frozen=True)
class BankRecipe:
    """How a reference bank is placed: what ``build`` passes to ``pycbc_brute_bank``."""
    minimal_match: float = 0.97
    mass_range: tuple[float, float] = Priors().mass_range
    spin_range: tuple[float, float] = Priors().spin_range
    approximant: str = "IMRPhenomD"
    f_lower: float = F_LOWER
    tolerance: float = 0.003  # stop when fewer than this share of proposals is kept
    buffer_seconds: int = BUFFER_SECONDS
    seed: int = 1
    detector: str = "H1"  # whose simulator PSD the matches are weighted by

    def validate(self) -> None:
        if not 0.5 < self.minimal_match < 1:
            raise G2NetError(f"--minimal-match {self.minimal_match:g}: give a match in (0.5, 1), e.g. 0.97")
        if not 0 < self.tolerance < 0.1:
            raise G2NetError(f"--tolerance {self.tolerance:g}: give a share in (0, 0.1), e.g. 0.003")
        if not 0 < self.mass_range[0] <= self.mass_range[1] or not all(map(math.isfinite, self.mass_range)):
            raise G2NetError(f"mass range {self.mass_range}: need 0 < MIN <= MAX")


@dataclass(frozen=True, eq=False)
class ReferenceBank:
    """Templates ``(mass1, mass2, spin1z, spin2z)`` of one approximant from ``f_lower``."""
    path: Path
    mass1: np.ndarray
    mass2: np.ndarray
    spin1z: np.ndarray
    spin2z: np.ndarray
    approximant: str
    f_lower: float
    recipe: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.mass1)

    @property
    def masses(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mass1, self.mass2

    @property
    def spins(self) -> tuple[np.ndarray, np.ndarray]:
        return self.spin1z, self.spin2z

    def params(self) -> list[dict[str, float]]:
        return [{"mass1": float(a), "mass2": float(b), "spin1z": float(c), "spin2z": float(d)}
                for a, b, c, d in zip(self.mass1, self.mass2, self.spin1z, self.spin2z)]


def _bank_ini(recipe: BankRecipe) -> str:
    """The prior file pycbc_brute_bank draws proposals from (PyCBC's distributions config); a
    range of zero width is a fixed (static) parameter."""
    ranges = {"mass1": recipe.mass_range, "mass2": recipe.mass_range,
              "spin1z": recipe.spin_range, "spin2z": recipe.spin_range}
    variable = [name for name, (low, high) in ranges.items() if low < high]
    static = [f"{name} = {low:g}" for name, (low, high) in ranges.items() if low == high]
    lines = ["[variable_params]", *[f"{name} =" for name in variable], "",
             "[static_params]", f"approximant = {recipe.approximant}", f"f_lower = {recipe.f_lower:g}",
             *static, ""]
    for name in variable:
        low, high = ranges[name]
        lines += [f"[prior-{name}]", "name = uniform", f"min-{name} = {low:g}", f"max-{name} = {high:g}", ""]
    if "mass1" in variable and "mass2" in variable:
        lines += ["[constraint-1]", "name = custom", "constraint_arg = mass2 <= mass1", ""]
    return "\n".join(lines)


def _tau0_span(recipe: BankRecipe) -> tuple[float, float]:
    """Newtonian chirp times (s) from ``f_lower`` spanned by the prior (pycbc_brute_bank crawls them)."""
    from pycbc.conversions import tau0_from_mass1_mass2  # deferred: PyCBC is heavy

    low, high = recipe.mass_range
    return (float(tau0_from_mass1_mass2(high, high, recipe.f_lower)),
            float(tau0_from_mass1_mass2(low, low, recipe.f_lower)))


def build(out: str | Path = REFERENCE_BANK_FILE, recipe: BankRecipe = BankRecipe(), workers: int = 1,
          progress: bool = True) -> ReferenceBank:
    """Place a bank with ``pycbc_brute_bank`` and write it to ``out`` (atomically), its recipe and
    the digest of the PSD it was placed with in the file's attributes."""
    recipe.validate()
    out = Path(out)
    tool = shutil.which("pycbc_brute_bank", path=str(Path(sys.executable).parent)) or \
        shutil.which("pycbc_brute_bank")
    if tool is None:
        raise G2NetError("pycbc_brute_bank (PyCBC's stochastic bank placement) is not installed; "
                         "install the pinned requirements (make venv)")
    freqs, asd = noise.load_asd()
    row = ("H1", "L1", "V1").index(recipe.detector)
    tau0 = _tau0_span(recipe)
    with tempfile.TemporaryDirectory(prefix="g2net_bank_") as scratch:
        scratch = Path(scratch)
        (scratch / "prior.ini").write_text(_bank_ini(recipe))
        np.savetxt(scratch / "asd.txt", np.column_stack([freqs, asd[row]]))
        command = [sys.executable, tool, "--output-file", str(scratch / "bank.hdf"),
                   "--input-config", str(scratch / "prior.ini"),
                   "--minimal-match", f"{recipe.minimal_match}", "--tolerance", f"{recipe.tolerance}",
                   "--buffer-length", str(recipe.buffer_seconds), "--sample-rate", f"{SAMPLE_RATE:g}",
                   "--low-frequency-cutoff", f"{recipe.f_lower:g}", "--asd-file", str(scratch / "asd.txt"),
                   "--tau0-threshold", "0.5", "--tau0-crawl", "1.0",
                   "--tau0-cutoff-frequency", f"{recipe.f_lower:g}",
                   "--tau0-start", f"{max(0.0, tau0[0] - 0.1):.3f}", "--tau0-end", f"{tau0[1] + 0.3:.3f}",
                   "--seed", str(recipe.seed), "--nprocesses", str(max(1, workers))]
        if progress:
            command.append("--verbose")
        done = subprocess.run(command, capture_output=not progress, text=True)
        if done.returncode != 0 or not (scratch / "bank.hdf").is_file():
            tail = (done.stderr or "")[-800:] if not progress else ""
            raise G2NetError(f"pycbc_brute_bank failed (exit {done.returncode}); {tail}")
        with h5py.File(scratch / "bank.hdf", "r") as placed:
            params = {k: np.asarray(placed[k][()], dtype=np.float64)
                      for k in ("mass1", "mass2", "spin1z", "spin2z")}

    def write(handle: Any) -> None:
        with h5py.File(handle, "w") as f:
            for key, values in params.items():
                f.create_dataset(key, data=values)
            f.attrs["recipe"] = json.dumps(asdict(recipe), sort_keys=True)
            f.attrs["approximant"] = recipe.approximant
            f.attrs["f_lower"] = recipe.f_lower
            f.attrs["psd_sha256"] = hashlib.sha256(asd[row].tobytes()).hexdigest()
            f.attrs["placed_with"] = "pycbc_brute_bank"

    atomic_write(out, write)
    return load(out)


def load(path: str | Path = REFERENCE_BANK_FILE) -> ReferenceBank:
    """A bank file written by :func:`build` (or by ``pycbc_brute_bank`` itself: ``mass1``,
    ``mass2``, ``spin1z``, ``spin2z`` datasets); every problem is one G2NetError."""
    path = Path(path)
    remedy = "remake it with `python matched_filter.py --build-reference-bank`"
    if not path.is_file():
        raise G2NetError(f"template bank {path} not found; {remedy}")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("mass1", "mass2", "spin1z", "spin2z") if k not in f]
            if missing:
                raise G2NetError(f"{path} lacks {', '.join(missing)}: not a template bank; {remedy}")
            arrays = [np.asarray(f[k][()], dtype=np.float64) for k in ("mass1", "mass2", "spin1z", "spin2z")]
            attrs = dict(f.attrs)
    except OSError as exc:
        raise G2NetError(f"{path} is not an HDF5 template bank ({exc}); {remedy}") from None
    if len({len(a) for a in arrays}) != 1 or len(arrays[0]) == 0 or not all(np.all(np.isfinite(a)) for a in arrays):
        raise G2NetError(f"{path}: empty, ragged or non-finite template parameters; {remedy}")
    recipe = json.loads(attrs["recipe"]) if "recipe" in attrs else {}
    approximant = attrs.get("approximant", recipe.get("approximant", "IMRPhenomD"))
    return ReferenceBank(path, *arrays, approximant=str(approximant),
                         f_lower=float(attrs.get("f_lower", F_LOWER)), recipe=recipe)


# ----------------------------------------------------------------------------- fitting factor
def _psd_on_grid(psd: Callable[[np.ndarray], np.ndarray] | str, delta_f: float, n_freq: int,
                 f_lower: float, detector: str) -> np.ndarray:
    """One-sided PSD on ``k * delta_f``: ``'simulator'`` (the calibrated table of ``detector``), a
    PyCBC analytic PSD name (``'aLIGOZeroDetHighPower'``, MLGWSC-1 dataset 1's), or a callable."""
    if psd == "simulator":
        return noise.detector_psd(detector, delta_f, n_freq, low_frequency_cutoff=f_lower).numpy()
    if isinstance(psd, str):
        import pycbc.psd  # deferred: PyCBC is heavy

        return pycbc.psd.from_string(psd, n_freq, delta_f, f_lower).numpy()
    return np.asarray(psd(np.arange(n_freq) * delta_f), dtype=np.float64)


class _WhitenedWaveforms:
    """Frequency-domain plus polarisations of whole waveforms (16 s buffer), whitened by a PSD and
    scaled to unit norm, so that a match is ``max_t |sum a b* e^(2 pi i f t)|``."""

    def __init__(self, psd: Any, f_lower: float, detector: str = "H1",
                 buffer_seconds: int = BUFFER_SECONDS, sample_rate: float = SAMPLE_RATE):
        self.delta_f = 1.0 / buffer_seconds
        self.n_freq = int(buffer_seconds * sample_rate) // 2 + 1
        self.f_lower = f_lower
        psd_grid = _psd_on_grid(psd, self.delta_f, self.n_freq, f_lower, detector)
        valid = (np.arange(self.n_freq) * self.delta_f >= f_lower) & (psd_grid > 0)
        valid[-1] = False
        self.weight = np.where(valid, 1.0 / np.sqrt(np.where(valid, psd_grid, 1.0)), 0.0)
        self.psd_grid = psd_grid

    def __call__(self, params: Mapping[str, Any]) -> np.ndarray:
        white = _fd_series(params, self).numpy() * self.weight
        norm = np.sqrt(np.sum(np.abs(white) ** 2))
        if norm == 0:
            raise ValueError(f"waveform {params} has no power above {self.f_lower} Hz")
        return white / norm


def _matches(one: torch.Tensor, many: torch.Tensor, n_time: int) -> torch.Tensor:
    """Match of unit-norm whitened ``one`` (n_freq,) with each row of ``many`` (T, n_freq),
    maximised over every time shift (circular, n_time samples) and over phase."""
    series = torch.fft.ifft(many * one.conj(), n=n_time, dim=-1) * n_time
    return (series.real ** 2 + series.imag ** 2).amax(dim=-1).sqrt()


def fitting_factors(bank: ReferenceBank | Any, injections: Sequence[Mapping[str, Any]], psd: Any = "simulator",
                    injection_approximant: str | None = None, detector: str = "H1", chunk: int = 64,
                    progress: bool = True) -> np.ndarray:
    """Best match of each injection over ``bank`` (the fitting factor), time and phase maximised.

    ``bank`` has ``masses``, ``spins``, ``approximant``, ``f_lower``; ``injections`` are parameter
    dicts (``mass1``, ``mass2``, ``spin1z``, ``spin2z``, optionally ``approximant``, ``f_ref``,
    ``mode_array``). Every template is matched with a batched FFT; the ``SHORTLIST`` best are
    confirmed with ``pycbc.filter.match`` (same PSD, from ``f_lower``), whose figure is returned.
    """
    from pycbc.filter import match  # deferred: PyCBC is heavy
    from pycbc.types import FrequencySeries

    whitened = _WhitenedWaveforms(psd, bank.f_lower, detector)
    n_time = 2 * (whitened.n_freq - 1)
    mass1, mass2 = bank.masses
    spin1z, spin2z = bank.spins
    template_params = [{"mass1": a, "mass2": b, "spin1z": c, "spin2z": d, "approximant": bank.approximant}
                       for a, b, c, d in zip(mass1, mass2, spin1z, spin2z)]
    rows = tqdm(template_params, desc="bank waveforms", leave=False, disable=not progress)
    templates = torch.from_numpy(np.stack([whitened(p) for p in rows]).astype(np.complex64))
    psd_series = FrequencySeries(whitened.psd_grid, delta_f=whitened.delta_f)
    result = np.empty(len(injections))
    for i, injection in enumerate(tqdm(injections, desc="fitting factors", leave=False, disable=not progress)):
        params = dict(injection)
        if injection_approximant is not None:
            params["approximant"] = injection_approximant
        params.setdefault("approximant", bank.approximant)
        one = torch.from_numpy(whitened(params).astype(np.complex64))
        ranked = torch.cat([_matches(one, templates[s:s + chunk], n_time)
                            for s in range(0, len(templates), chunk)])
        best = torch.topk(ranked, min(SHORTLIST, len(templates))).indices.tolist()
        signal = _fd_series(params, whitened)
        result[i] = max(match(signal, _fd_series(template_params[j], whitened), psd=psd_series,
                              low_frequency_cutoff=bank.f_lower)[0] for j in best)
    return result


def _fd_series(params: Mapping[str, Any], whitened: _WhitenedWaveforms):
    from pycbc.types import FrequencySeries  # deferred: PyCBC is heavy
    from pycbc.waveform import get_fd_waveform

    kwargs = {k: v for k, v in params.items() if k in ("mass1", "mass2", "spin1z", "spin2z",
                                                         "approximant", "f_ref", "mode_array")}
    hp, _ = get_fd_waveform(delta_f=whitened.delta_f, f_lower=whitened.f_lower, **kwargs)
    values = np.zeros(whitened.n_freq, dtype=np.complex128)
    size = min(len(hp), whitened.n_freq)
    values[:size] = hp.numpy()[:size]
    return FrequencySeries(values, delta_f=whitened.delta_f)


def search_prior_injections(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` sources of the search's prior (the simulator's masses and aligned spins)."""
    from g2net.simulation.priors import draw_parameters

    rng = np.random.default_rng(seed)
    return [draw_parameters(rng, Priors(), "IMRPhenomD") for _ in range(n)]


def mlgwsc1_dataset1_injections(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` sources of MLGWSC-1 dataset 1's prior: component masses uniform 10-50 Msun with
    mass2 <= mass1, no spins, IMRPhenomXPHM with its (2, 2) mode only (ds1.ini), f_ref 20 Hz."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        a, b = rng.uniform(10.0, 50.0, 2)
        if b <= a:
            out.append({"mass1": float(a), "mass2": float(b), "spin1z": 0.0, "spin2z": 0.0,
                        "approximant": "IMRPhenomXPHM", "f_ref": 20.0,
                        "mode_array": [[2, 2], [2, -2]]})
    return out


def summarize(factors: Iterable[float], minimal_match: float = 0.97) -> dict[str, float]:
    factors = np.asarray(list(factors), dtype=np.float64)
    return {"n": int(len(factors)), "median": float(np.median(factors)),
            "p5": float(np.percentile(factors, 5)), "min": float(factors.min()),
            f"fraction_at_least_{minimal_match:g}": float(np.mean(factors >= minimal_match))}
