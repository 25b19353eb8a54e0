"""Matched-filter baseline: the optimal detector for known signals, scored like an experiment.

``python matched_filter.py --input DIR --split test|train [--bank-size N] [--batch-size B]``.
Per example: whiten with the simulator PSD (``g2net.whitening.whiten_torch``, the training
pipeline's whitening), correlate every unit-norm whitened template (:mod:`g2net.filtering.bank`,
cut to the inspiral an example can hold) with every detector in the frequency domain (one batched
complex inverse FFT gives the complex SNR, whose modulus maximises over phase), and form the
network statistic

    rho_net(t)^2 = rho_H(t)^2 + max_{|dt| <= 10 ms} rho_L(t + dt)^2 + max_{|dt| <= 27 ms} rho_V(t + dt)^2

maximised over merger times ``t`` in the simulator's window and over templates. The statistic is
written as a logit ``rho_net - SNR_OFFSET`` (sigmoid 0.5 at network SNR 8) in the experiment
layout under ``results/matched_filter/``: ``predictions.npy`` ``(1, N_test, 1)`` for the test split,
``outoffolds.npy`` ``(N_train, 1)`` for the train split, rows in the order of ``test.csv`` /
``train.csv``.
"""
from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from datasets import load_cache, read_prepared
from g2net.filtering.bank import (DEFAULT_BANK_SIZE, DEFAULT_CANDIDATES, TemplateBank,
                                  bank_cache_path, default_bank_spec, load_or_build_bank)
from g2net.filtering.templates import sliding_max, whitened_unit_templates
from g2net.simulation import noise
from g2net.simulation.priors import Priors
from g2net.whitening import whiten_torch, whitening_kernel
from prep_data import load_example
from utils import (DETECTORS, MATCHED_FILTER, N_SAMPLES, SAMPLE_RATE, G2NetError, atomic_save_npy,
                   atomic_write, data_identity, results_dir, write_data_record)

MAX_DT_HL = 0.010  # s, largest physical H1-L1 arrival-time difference allowed


MAX_DT_V = 0.027  # s, largest physical Virgo-to-LIGO arrival-time difference allowed


SNR_OFFSET = 8.0  # logit = rho_net - SNR_OFFSET


EARTH_LIGHT_TIME = 0.022  # s, largest geocentre-to-detector light travel time (6371 km / c)


class MatchedFilter:
    """Network matched-filter statistic of raw-strain batches ``(B, 3, N)`` against a bank.

    ``step`` 1 evaluates the complex SNR at every sample; ``step`` 2 at every other sample
    (0.98 ms), exactly, with a length ``N / 2`` inverse FFT of the bins below Nyquist: half the
    cost, at the price of a peak loss that grows with the whitened template's bandwidth.
    """

    def __init__(self, bank: TemplateBank, psd: np.ndarray | None = None,
                 window: tuple[float, float] = (0.1, 1.9), device: str | torch.device | None = None,
                 template_chunk: int | None = None, step: int = 1, sample_rate: float = SAMPLE_RATE,
                 n_samples: int = N_SAMPLES):
        psd = noise.psd_array(n_samples, sample_rate) if psd is None else np.asarray(psd)
        self.device = torch.device(device if device is not None else
                                   ("cuda" if torch.cuda.is_available() else "cpu"))
        self.n_samples, self.sample_rate = n_samples, sample_rate
        if step not in (1, 2):
            raise G2NetError(f"step must be 1 or 2 samples, got {step}")
        self.n_bins = n_samples // 2  # bins 0 .. N/2 - 1; N/2 (Nyquist) carries nothing
        self.step = step  # samples between SNR series points
        self.n_times = n_samples // step
        white = whitened_unit_templates(bank.waveforms[None], psd[:, None, :], bank.spec.f_lower,
                                        n_samples, sample_rate)  # (3, T, n_freq)
        self.templates = torch.from_numpy(np.conj(white[..., :self.n_bins]).astype(np.complex64)
                                          ).to(self.device)
        taper, gain = whitening_kernel(psd, n_samples, sample_rate)  # the Whiten transform's
        self.taper = torch.from_numpy(taper).to(self.device)
        self.gain = torch.from_numpy(gain).to(torch.complex128).to(self.device)
        # Small chunks keep a CPU's working set in cache; a GPU wants large batched FFTs.
        self.template_chunk = template_chunk or (16 if self.device.type == "cpu" else 256)
        rate = sample_rate / self.step
        self.radius_l = int(math.floor(MAX_DT_HL * rate + 1e-9))
        self.radius_v = int(math.floor(MAX_DT_V * rate + 1e-9))
        margin = self.radius_v
        first = max(int(math.ceil(window[0] * rate)), margin)
        last = min(int(math.floor(window[1] * rate)), self.n_times - 1 - margin)
        if last < first:
            raise G2NetError(f"merger-time window {window} s is empty once the detectors' "
                             f"{MAX_DT_V * 1e3:.0f} ms margins are kept inside the example")
        self.first, self.last = first, last

    def __len__(self) -> int:
        return self.templates.shape[1]

    @torch.no_grad()
    def snr_series(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Squared SNR ``(B, 3, T, n_times)`` of every template in every detector (for tests)."""
        spectrum = self._spectrum(x)
        return torch.cat([self._chunk_snr2(spectrum, s, s + self.template_chunk)
                          for s in range(0, len(self), self.template_chunk)], dim=2)

    @torch.no_grad()
    def statistic(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Network SNR ``(B,)`` maximised over templates and merger times in the window."""
        spectrum = self._spectrum(x)
        best = torch.zeros(spectrum.shape[0], device=self.device)
        a, b = self.first, self.last + 1
        rl, rv = self.radius_l, self.radius_v
        for start in range(0, len(self), self.template_chunk):
            snr2 = self._chunk_snr2(spectrum, start, start + self.template_chunk,
                                    crop=(a - rv, b + rv))
            offset = rv  # index of time ``a`` inside the crop
            hanford = snr2[:, 0, :, offset:offset + b - a]
            livingston = sliding_max(snr2[:, 1, :, offset - rl:offset + b - a + rl], rl)
            virgo = sliding_max(snr2[:, 2], rv)
            network = hanford + livingston + virgo
            best = torch.maximum(best, network.flatten(1).amax(dim=1))
        return best.sqrt().cpu().numpy().astype(np.float64)

    def _spectrum(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (len(DETECTORS), self.n_samples):
            raise G2NetError(f"the matched filter takes (B, 3, {self.n_samples}) strain, got "
                             f"{tuple(x.shape)}")
        white = whiten_torch(x.to(self.device, torch.float64), self.taper, self.gain)
        return torch.fft.rfft(white, dim=-1)[..., :self.n_bins].to(torch.complex64)

    def _chunk_snr2(self, spectrum: torch.Tensor, start: int, stop: int,
                    crop: tuple[int, int] | None = None) -> torch.Tensor:
        product = spectrum[:, :, None, :] * self.templates[None, :, start:stop, :]
        # z_j = (2/N) sum_k W_k T_k* exp(2 pi i k j step / N) = (2 / step) * ifft(n = N / step)
        series = torch.fft.ifft(product, n=self.n_times, dim=-1)
        if crop is not None:
            series = series[..., crop[0]:crop[1]]
        return (series.real ** 2 + series.imag ** 2) * (2.0 / self.step) ** 2


def default_window() -> tuple[float, float]:
    """Hanford merger times (s from the example start) the simulator's default prior produces."""
    low, high = Priors().tc_range  # geocentric merger time, widened by the largest delay
    return float(low) - EARTH_LIGHT_TIME, float(high) + EARTH_LIGHT_TIME


def iter_batches(table: pd.DataFrame, cache: np.ndarray | None, batch_size: int,
                 threads: int = 8) -> Iterator[np.ndarray]:
    """Batches ``(b, 3, N)`` float64 in table order, from the cache or the example files."""

    def read(path: str) -> np.ndarray:
        array, problem = load_example(Path(path))
        if problem is not None:
            raise G2NetError(f"example {path} is {problem[0]} ({problem[1]}); rerun prep_data.py "
                             "to check the input folder")
        return array

    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(table), batch_size):
            if cache is not None:
                yield np.asarray(cache[start:start + batch_size], dtype=np.float64)
            else:
                yield np.stack(list(pool.map(read, table["path"].iloc[start:start + batch_size])))


def split_table(root: Path, split: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """``train.csv`` / ``test.csv`` of ``root`` (paths resolved) and its cache when there is one."""

    table = read_prepared(root / f"{split}.csv", "training" if split == "train" else "test")
    cache_path = root / f"{split}_cache.npy"
    cache = load_cache(cache_path, table) if cache_path.is_file() else None
    return table, cache


def run_split(root: Path, split: str, bank_size: int = DEFAULT_BANK_SIZE, batch_size: int = 8,
              device: str | None = None, n_candidates: int = DEFAULT_CANDIDATES,
              step: int = 1) -> dict:
    """Score every example of a split and write it in the experiment layout; returns a summary."""
    table, cache = split_table(root, split)
    psd = noise.psd_array()
    bank = load_or_build_bank(default_bank_spec(bank_size, n_candidates), psd)
    filt = MatchedFilter(bank, psd, window=default_window(), device=device, step=step)
    scores = np.empty(len(table), dtype=np.float64)
    start_time, start_cpu = time.perf_counter(), time.process_time()
    done = 0
    with tqdm(total=len(table), desc=f"matched filter ({split})", unit="ex") as bar:
        for batch in iter_batches(table, cache, batch_size):
            scores[done:done + len(batch)] = filt.statistic(batch)
            done += len(batch)
            bar.update(len(batch))
    elapsed = time.perf_counter() - start_time
    cpu = time.process_time() - start_cpu
    rate = len(table) / max(elapsed, 1e-9)
    print(f"matched filter: {len(table)} examples in {elapsed:.1f} s = {rate:.1f} examples/s "
          f"({len(table) / max(cpu, 1e-9):.1f} per CPU-second; {len(bank)} templates, step "
          f"{step}, device {filt.device}, {torch.get_num_threads()} threads)")
    logits = (scores - SNR_OFFSET).astype(np.float32)
    out = results_dir() / MATCHED_FILTER
    if split == "test":
        atomic_save_npy(out / "predictions.npy", logits[None, :, None])
        write_data_record(out, {"predictions.npy": data_identity(root, test_ids=table["id"])})
    else:
        atomic_save_npy(out / "outoffolds.npy", logits[:, None])
        write_data_record(out, {"outoffolds.npy": data_identity(root, table["id"], table["target"])})
    summary = {"split": split, "n_examples": len(table), "seconds": elapsed,
               "examples_per_second": rate, "cpu_seconds": cpu, "n_templates": len(bank),
               "step": step,
               "pool_coverage": bank.pool_coverage, "bank": asdict(bank.spec),
               "bank_file": bank_cache_path(bank.spec, psd).name, "window_s": default_window(),
               "device": str(filt.device), "threads": torch.get_num_threads(),
               "snr_offset": SNR_OFFSET}
    atomic_write(out / f"summary_{split}.json",
                 lambda handle: handle.write(json.dumps(summary, indent=2)), mode="w")
    return summary
