"""Calibrate the simulator's noise ASD (data/g2net_asd.txt) on the real G2Net negatives.

The table is the average Tukey(0.1) periodogram of the real negatives (``estimate_psd``), lightly
smoothed above 25 Hz with lines kept: the PSD that whitening and matched filtering of 2 s windows
should divide by. Below 20 Hz the real data has a steep wall near 10 Hz and most of its power at
10-15 Hz, which leaks through the taper into the neighbouring bins; ``noise_model`` therefore
draws noise from the table *deconvolved* through the estimator (Richardson-Lucy with the exact
expectation operator), so that the simulated estimate, leakage included, is the table again.
The script writes the table and checks it by simulating noise (ASD ratio 20-500 Hz and
time-domain RMS per detector against the real negatives).

    python scripts/calibrate_noise.py [--sample DIR] [--out data/g2net_asd.txt] [--check-examples N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation, median_filter, uniform_filter1d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g2net.simulation import noise as sim_noise
from g2net import spectral
from utils import DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError, atomic_write, cli_errors, example_path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CANDIDATES = (REPO.parent / "shared" / "real-g2net-sample", Path("/work/shared/real-g2net-sample"))
ASD_BAND = (20.0, 500.0)  # where the ASD must match within a factor 1.25
ASD_TOLERANCE = 1.25
RMS_TOLERANCE = 0.20


def find_real_sample(explicit: str | Path | None = None) -> Path | None:
    """The real-sample folder: ``explicit`` if given, else ../shared/real-g2net-sample or /work/shared/..."""
    candidates = [Path(explicit)] if explicit else list(SAMPLE_CANDIDATES)
    for candidate in candidates:
        if (candidate / "training_labels.csv").is_file():
            return candidate
    return None


def load_real_negatives(sample_dir: Path) -> np.ndarray:
    """All target-0 examples of the real sample, (N, 3, 4096) float64."""
    import pandas as pd

    labels = pd.read_csv(sample_dir / "training_labels.csv")
    ids = labels.loc[labels["target"] == 0, "id"].astype(str).tolist()
    if not ids:
        raise G2NetError(f"{sample_dir}/training_labels.csv has no negatives (target 0)")
    missing = [i for i in ids if not example_path(sample_dir, "train", i).is_file()]
    if missing:
        from utils import format_ids
        raise G2NetError(f"{len(missing)} negatives of {sample_dir} have no .npy file "
                         f"({format_ids(missing)}); restore the sample")
    return np.stack([np.load(example_path(sample_dir, "train", i)) for i in ids]).astype(np.float64)


def smooth_keeping_lines(psd: np.ndarray, frequencies: np.ndarray, above_hz: float = 25.0,
                         line_threshold: float = 0.5) -> np.ndarray:
    """Light smoothing: 3-bin running mean of log PSD above ``above_hz``, lines left untouched.

    It removes part of the +-11 % scatter of an 81-example estimate. Bins standing out of a
    5-bin running median by more than ``line_threshold`` in log power (60 Hz mains, violin modes)
    are lines: they and their shoulders are kept as they are, and lines stay out of other means.
    """
    log_psd = np.log(np.maximum(psd, 1e-300))
    median = median_filter(log_psd, size=(1, 5), mode="nearest")
    line = log_psd - median > line_threshold
    smoothed = uniform_filter1d(np.where(line, median, log_psd), size=3, axis=-1, mode="nearest")
    near_line = binary_dilation(line, structure=np.ones((1, 3), dtype=bool))  # shoulders too
    result = np.where(near_line, log_psd, smoothed)
    keep = frequencies < above_hz
    result[:, keep] = log_psd[:, keep]
    return np.exp(result)


def compare_with_real(real: np.ndarray, simulated: np.ndarray) -> dict[str, np.ndarray]:
    """Per-detector ASD ratio (min, max over 20-500 Hz) and RMS ratio, simulated / real."""
    freqs = np.fft.rfftfreq(real.shape[-1], 1.0 / SAMPLE_RATE)
    band = (freqs >= ASD_BAND[0]) & (freqs <= ASD_BAND[1])
    ratio = np.sqrt(spectral.estimate_psd(simulated) / spectral.estimate_psd(real))[:, band]
    rms = np.sqrt((simulated ** 2).mean(axis=(0, 2)) / (real ** 2).mean(axis=(0, 2)))
    return {"asd_ratio_min": ratio.min(axis=1), "asd_ratio_max": ratio.max(axis=1), "rms_ratio": rms}


def write_table(path: Path, frequencies: np.ndarray, psd: np.ndarray, source: Path, n_real: int) -> None:
    header = (f"G2Net simulator noise ASD (strain/sqrt(Hz)), one-sided; calibrated by "
              f"scripts/calibrate_noise.py on {n_real} real negatives of {source.name}\n"
              "frequency asd_H1 asd_L1 asd_V1")
    table = np.column_stack([frequencies, np.sqrt(psd).T])
    atomic_write(path, lambda f: np.savetxt(f, table, fmt=["%.1f"] + ["%.6e"] * len(DETECTORS), header=header),
                 mode="w")


@cli_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", help="real sample folder (default ../shared/real-g2net-sample)")
    parser.add_argument("--out", default=str(sim_noise.ASD_FILE), help="ASD table to write")
    parser.add_argument("--check-examples", type=int, default=2000, help="simulated examples for the check")
    args = parser.parse_args(argv)
    sample_dir = find_real_sample(args.sample)
    if sample_dir is None:
        raise G2NetError("real sample not found; pass --sample DIR (a folder with training_labels.csv "
                         "and train/) or put it at ../shared/real-g2net-sample")
    real = load_real_negatives(sample_dir)
    print(f"{len(real)} real negatives from {sample_dir}")
    frequencies = np.fft.rfftfreq(N_SAMPLES, 1.0 / SAMPLE_RATE)
    psd = smooth_keeping_lines(spectral.estimate_psd(real), frequencies)
    write_table(Path(args.out), frequencies, psd, sample_dir, len(real))
    print(f"wrote {args.out}")

    rng = np.random.default_rng(0)
    table = (frequencies, np.sqrt(psd))
    simulated = np.stack([sim_noise.colored_noise(rng, asd_table=table) for _ in range(args.check_examples)])
    report = compare_with_real(real, simulated)
    for row, det in enumerate(DETECTORS):
        print(f"{det}: ASD ratio {ASD_BAND[0]:g}-{ASD_BAND[1]:g} Hz in "
              f"[{report['asd_ratio_min'][row]:.3f}, {report['asd_ratio_max'][row]:.3f}], "
              f"RMS ratio {report['rms_ratio'][row]:.3f}")
    bad = (report["asd_ratio_min"] < 1 / ASD_TOLERANCE) | (report["asd_ratio_max"] > ASD_TOLERANCE) \
        | (np.abs(report["rms_ratio"] - 1) > RMS_TOLERANCE)
    if bad.any():
        raise G2NetError("calibrated noise misses the bounds for "
                         + ", ".join(d for d, b in zip(DETECTORS, bad) if b) + "; inspect the real sample")


if __name__ == "__main__":
    main()
