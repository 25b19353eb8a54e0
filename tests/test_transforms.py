"""transforms.py: every augmentation keeps shape/dtype and does what its name says; the torch
batch versions equal the numpy ones within 1e-5 relative error."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from g2net import spectral
import transforms as T
from utils import N_SAMPLES, SAMPLE_RATE, G2NetError
from g2net.simulation import noise as sim_noise

FS = SAMPLE_RATE
N = N_SAMPLES
TIME = np.arange(N) / FS
FREQS = np.fft.rfftfreq(N, 1 / FS)


def synthetic_psd(n_samples: int = N) -> np.ndarray:
    """A steep-walled, detector-like one-sided PSD (3, n // 2 + 1), different per detector."""
    f = np.maximum(np.fft.rfftfreq(n_samples, 1 / FS), 5.0)
    shape = (30.0 / f) ** 6 + 1.0 + (f / 300.0) ** 2
    return np.stack([k * 1e-46 * shape for k in (1.0, 1.3, 4.0)])


def noise_from_psd(rng: np.random.Generator, psd: np.ndarray, n_examples: int) -> np.ndarray:
    """Stationary Gaussian noise (n, 3, N) with one-sided PSD ``psd``: E|X_k|^2 = N fs S / 2."""
    n = 2 * (psd.shape[-1] - 1)
    scale = np.sqrt(psd * n * FS / 4)
    spectrum = (rng.standard_normal((n_examples,) + psd.shape)
                + 1j * rng.standard_normal((n_examples,) + psd.shape)) * scale
    spectrum[..., 0] = spectrum[..., 0].real * np.sqrt(2)
    spectrum[..., -1] = spectrum[..., -1].real * np.sqrt(2)
    return np.fft.irfft(spectrum, n=n, axis=-1)


def example(dtype=np.float64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((3, N)) * np.array(T.COMPETITION_FACTORS)[:, None]).astype(dtype)


def sines(freq: float, amplitude: float = 1.0) -> np.ndarray:
    return np.tile(amplitude * np.sin(2 * np.pi * freq * TIME), (3, 1))


def peak_frequency(x: np.ndarray) -> float:
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / FS)
    return float(freqs[np.argmax(np.abs(np.fft.rfft(x * np.hanning(x.shape[-1]))))])


PSD = synthetic_psd()

# Each factory builds a transform that certainly changes a random example when applied.
FACTORIES = {
    "Normalize": lambda **kw: T.Normalize(**kw),
    "BandPass": lambda **kw: T.BandPass(20, 500, **kw),
    "Whiten": lambda **kw: T.Whiten(psd=PSD, **kw),
    "GaussianNoiseSNR": lambda **kw: T.GaussianNoiseSNR(5, 20, **kw),
    "PinkNoiseSNR": lambda **kw: T.PinkNoiseSNR(5, 20, **kw),
    "BrownNoiseSNR": lambda **kw: T.BrownNoiseSNR(5, 20, **kw),
    "FlipWave": lambda **kw: T.FlipWave(**kw),
    "FlipWavePerChannel": lambda **kw: T.FlipWavePerChannel(**kw),
    "SwapChannel": lambda **kw: T.SwapChannel(**kw),
    "GlobalTimeShift": lambda **kw: T.GlobalTimeShift(max_shift=0.5, **kw),
    "IndependentTimeShift": lambda **kw: T.IndependentTimeShift(max_shift=0.01, **kw),
    "TimeMask": lambda **kw: T.TimeMask(max_width=0.2, num_masks=3, **kw),
    "FrequencyMask": lambda **kw: T.FrequencyMask(max_width=64, num_masks=3, **kw),
    "RandomResizedCrop": lambda **kw: T.RandomResizedCrop(0.5, 0.9, **kw),
    "TimeResize": lambda **kw: T.TimeResize(0.8, 1.2, **kw),
    "Scale": lambda **kw: T.Scale(0.5, 0.9, **kw),
    "OneOf": lambda **kw: T.OneOf([T.FlipWave(p=0.5), T.Scale(0.5, 0.9, p=0.5)], **kw),
    "Compose": lambda **kw: T.Compose([T.FlipWave(p=1.0), T.SwapChannel(p=1.0)], **kw),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_dtype_input_untouched_and_probability(name, dtype):
    x = example(dtype)
    x.flags.writeable = False  # the dataset may hand over a read-only memory map
    original = x.copy()
    np.random.seed(1)
    y = FACTORIES[name](always_apply=True)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.all(np.isfinite(y))
    assert not np.array_equal(y, x), "always_apply must apply"
    assert np.array_equal(x, original), "the input must not be modified"
    never = FACTORIES[name](p=0.0)
    for seed in range(20):
        np.random.seed(seed)
        assert never(x) is x, "p=0 must never apply"


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_seeded_global_state_reproduces(name):
    x = example()
    transform = FACTORIES[name](p=0.5)
    np.random.seed(7)
    first = [transform(x) for _ in range(4)]
    np.random.seed(7)
    second = [transform(x) for _ in range(4)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_p_is_a_probability():
    x = example()
    transform = T.FlipWave(p=0.3)
    np.random.seed(0)
    applied = np.mean([transform(x) is not x for _ in range(2000)])
    assert abs(applied - 0.3) < 0.04
    with pytest.raises(ValueError, match="p must lie in"):
        T.FlipWave(p=1.5)


def test_normalize_divides_each_detector():
    x = example()
    y = T.Normalize()(x)
    np.testing.assert_allclose(y, x / np.array([4.61e-20, 4.23e-20, 1.11e-20])[:, None], rtol=1e-12)
    assert 0.5 < y.std() < 2
    with pytest.raises(ValueError, match="non-zero"):
        T.Normalize(factors=(1.0, 0.0, 1.0))


def central_gain_db(transform, freq: float) -> float:
    x = sines(freq)
    y = transform(x)
    middle = slice(N // 4, 3 * N // 4)  # away from the edges of the 2 s window
    return float(20 * np.log10(np.sqrt(np.mean(y[:, middle] ** 2)) / np.sqrt(np.mean(x[:, middle] ** 2))))


def test_bandpass_passes_band_and_attenuates_an_octave_outside():
    bandpass = T.BandPass(20, 500)
    for freq in (40.0, 100.0, 250.0):
        assert abs(central_gain_db(bandpass, freq)) < 1.0, freq
    for freq in (10.0, 1000.0):  # one octave below 20 Hz and above 500 Hz
        assert central_gain_db(bandpass, freq) < -40.0, freq


def test_bandpass_is_zero_phase():
    x = np.tile(np.exp(-0.5 * ((TIME - 1.0) / 0.01) ** 2) * np.cos(2 * np.pi * 100 * TIME), (3, 1))
    y = T.BandPass(20, 500)(x)
    assert np.argmax(np.abs(y[0])) == np.argmax(np.abs(x[0]))
    np.testing.assert_allclose(y, x, atol=0.02)


def test_bandpass_rejects_a_band_beyond_nyquist():
    with pytest.raises(ValueError, match="Nyquist"):
        T.BandPass(20, 1500)
    with pytest.raises(ValueError, match="Nyquist"):
        T.TorchBandPass(500, 20)


def test_bandpass_sample_rate_sets_the_band():
    rate = 1024.0
    t = np.arange(2048) / rate
    x = np.tile(np.sin(2 * np.pi * 100 * t), (3, 1))
    y = T.BandPass(20, 200, sample_rate=rate)(x)
    np.testing.assert_allclose(y[:, 512:-512], x[:, 512:-512], atol=0.02)  # 100 Hz in band
    assert T.BandPass(20, 200, sample_rate=rate).sample_rate == rate
    with pytest.raises(ValueError, match="Nyquist"):
        T.BandPass(20, 600, sample_rate=rate)


def test_bandpass_keeps_sos_form_because_ba_filtfilt_fails():
    """Why BandPass / TorchBandPass are not torchaudio's (b, a) filtfilt: in float32 that filter
    diverges, and in float64 its unpadded edges differ from scipy's; ours agrees in float32."""
    functional = pytest.importorskip("torchaudio.functional")
    from scipy import signal as sp_signal

    x = T.Normalize()(raw_batch())
    want = np.stack([T.BandPass(20, 500)(e) for e in x])
    ours = T.TorchBandPass(20, 500, compute_dtype=torch.float32)(torch.from_numpy(x).float())
    assert relative_error(ours.double().numpy(), want) < 1e-5
    b, a = sp_signal.butter(8, [20, 500], btype="bandpass", fs=FS)
    theirs32 = functional.filtfilt(torch.from_numpy(x).float(), torch.from_numpy(a).float(),
                                   torch.from_numpy(b).float(), clamp=False).double().numpy()
    assert not np.all(np.isfinite(theirs32)) or relative_error(theirs32, want) > 0.1
    theirs64 = functional.filtfilt(torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(b),
                                   clamp=False).numpy()
    assert relative_error(theirs64, want) > 0.1


def snr_db(signal: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    rms = lambda a: np.sqrt(np.mean(np.asarray(a, np.float64) ** 2, axis=-1))
    return 20 * np.log10(rms(signal) / rms(noisy - signal))


@pytest.mark.parametrize("cls", [T.GaussianNoiseSNR, T.PinkNoiseSNR, T.BrownNoiseSNR])
def test_noise_has_the_asked_snr_per_detector(cls):
    x = example() / np.array(T.COMPETITION_FACTORS)[:, None] * np.array([[1.0], [3.0], [0.2]])
    np.random.seed(0)
    np.testing.assert_allclose(snr_db(x, cls(10, 10, always_apply=True)(x)), 10.0, atol=1e-9)
    for seed in range(10):
        np.random.seed(seed)
        measured = snr_db(x, cls(3, 12, always_apply=True)(x))
        assert np.all((measured > 3 - 1e-9) & (measured < 12 + 1e-9))
        assert np.ptp(measured) < 1e-9, "one SNR for all detectors of an example"


@pytest.mark.parametrize("cls,slope", [(T.GaussianNoiseSNR, 0.0), (T.PinkNoiseSNR, -1.0),
                                       (T.BrownNoiseSNR, -2.0)])
def test_noise_colour(cls, slope):
    np.random.seed(0)
    x = np.zeros((64, 3, N))
    x[..., 0] = 1.0  # a click: the added noise dominates the spectrum
    noise = np.stack([cls(0, 0, always_apply=True)(e) for e in x]) - x
    power = (np.abs(np.fft.rfft(noise, axis=-1)) ** 2).mean(axis=(0, 1))
    band = (FREQS >= 8) & (FREQS <= 800)
    fitted = np.polyfit(np.log(FREQS[band]), np.log(power[band]), 1)[0]
    assert abs(fitted - slope) < 0.1


def test_flips_and_swap():
    x = example()
    np.testing.assert_array_equal(T.FlipWave(always_apply=True)(x), -x)
    swapped = T.SwapChannel(always_apply=True)(x)
    np.testing.assert_array_equal(swapped[0], x[1])
    np.testing.assert_array_equal(swapped[1], x[0])
    np.testing.assert_array_equal(swapped[2], x[2])
    seen = set()
    for seed in range(30):
        np.random.seed(seed)
        y = T.FlipWavePerChannel(always_apply=True)(x)
        signs = tuple(int(np.sign(y[i, 0] / x[i, 0])) for i in range(3))
        np.testing.assert_array_equal(y, x * np.array(signs)[:, None])
        seen.add(signs)
    assert len(seen) >= 6, "each detector gets its own sign"


def spikes(position: int) -> np.ndarray:
    x = np.zeros((3, N))
    x[:, position] = [1.0, 2.0, 3.0]
    return x


def test_global_time_shift_rolls_all_rows_together_within_range():
    x = spikes(2000)
    shifts = set()
    for seed in range(30):
        np.random.seed(seed)
        y = T.GlobalTimeShift(max_shift=0.25, always_apply=True)(x)
        shift = int(np.argmax(y[0])) - 2000
        np.testing.assert_array_equal(y, np.roll(x, shift, axis=-1))
        assert abs(shift) <= 512
        shifts.add(shift)
    assert len(shifts) > 20
    assert min(shifts) < -256 and max(shifts) > 256


def test_independent_time_shift_rolls_each_row_within_range():
    x = spikes(2000)
    relative = set()
    for seed in range(30):
        np.random.seed(seed)
        y = T.IndependentTimeShift(max_shift=0.01, always_apply=True)(x)
        shifts = [int(np.argmax(y[i])) - 2000 for i in range(3)]
        for i in range(3):
            np.testing.assert_array_equal(y[i], np.roll(x[i], shifts[i]))
            assert abs(shifts[i]) <= round(0.01 * FS)
        relative.add(shifts[1] - shifts[0])
    assert len(relative) > 10, "rows move independently"


def test_time_mask_zeroes_an_interval_of_bounded_width():
    x = example() + 1.0  # no exact zeros
    widths = []
    for seed in range(20):
        np.random.seed(seed)
        y = T.TimeMask(max_width=0.1, num_masks=1, always_apply=True)(x)
        zero = np.all(y == 0, axis=0)
        np.testing.assert_array_equal(y[:, ~zero], x[:, ~zero])
        where = np.flatnonzero(zero)
        if where.size:
            assert where[-1] - where[0] + 1 == where.size, "one contiguous interval"
        widths.append(where.size)
    assert max(widths) <= round(0.1 * FS) and max(widths) > 100


def test_frequency_mask_removes_a_band_of_bounded_width():
    x = example()
    spectrum = np.fft.rfft(x, axis=-1)
    widths = []
    for seed in range(20):
        np.random.seed(seed)
        y = T.FrequencyMask(max_width=50, num_masks=1, always_apply=True)(x)
        out = np.fft.rfft(y, axis=-1)
        removed = np.all(np.abs(out) < 1e-9 * np.abs(spectrum).max(), axis=0)
        np.testing.assert_allclose(out[:, ~removed], spectrum[:, ~removed], rtol=1e-9,
                                   atol=1e-9 * np.abs(spectrum).max())
        widths.append(removed.sum() * FS / N)
    assert max(widths) <= 50 and max(widths) > 25


def test_random_resized_crop_stretches_a_crop_to_full_length():
    np.random.seed(0)
    y = T.RandomResizedCrop(0.5, 0.5, always_apply=True)(sines(100.0))
    assert abs(peak_frequency(y[0]) - 50.0) <= 1.0  # half the window stretched over all of it


def test_time_resize_scales_frequencies_and_keeps_length():
    np.random.seed(0)
    slower = T.TimeResize(2.0, 2.0, always_apply=True)(sines(100.0))
    assert abs(peak_frequency(slower[0]) - 50.0) <= 1.0
    faster = T.TimeResize(0.5, 0.5, always_apply=True)(sines(100.0))
    assert np.all(faster[:, N // 2:] == 0)
    assert abs(peak_frequency(faster[0, : N // 2]) - 200.0) <= 2.0


def test_scale_multiplies_by_a_factor_in_range():
    x = example()
    for seed in range(10):
        np.random.seed(seed)
        y = T.Scale(0.5, 0.9, always_apply=True)(x)
        ratio = y / x
        assert np.ptp(ratio) < 1e-12 and 0.5 <= ratio[0, 0] <= 0.9


def test_compose_runs_in_order_and_oneof_applies_exactly_one():
    x = example()
    composed = T.Compose([T.SwapChannel(p=1.0), T.Scale(2.0, 2.0, p=1.0)])(x)
    np.testing.assert_array_equal(composed, 2.0 * x[[1, 0, 2]])
    one_of = T.OneOf([T.FlipWave(p=0.25), T.SwapChannel(p=0.75), T.Scale(2, 2, p=0.0)], p=1.0)
    chosen = []
    for seed in range(400):
        np.random.seed(seed)
        y = one_of(x)
        is_flip, is_swap = np.array_equal(y, -x), np.array_equal(y, x[[1, 0, 2]])
        assert is_flip != is_swap, "exactly one transform, never the p=0 one"
        chosen.append(is_swap)
    assert abs(np.mean(chosen) - 0.75) < 0.07, "chosen in proportion to p"
    with pytest.raises(ValueError, match="OneOf"):
        T.OneOf([T.FlipWave(p=0.0)])


# ------------------------------------------------------------------------------------------------
# Whitening
# ------------------------------------------------------------------------------------------------
def band_levels(psd: np.ndarray, low: float = 30.0, high: float = 500.0, width: float = 10.0):
    """The PSD averaged in ``width`` Hz bands between ``low`` and ``high``: (3, n_bands)."""
    edges = np.arange(low, high + width / 2, width)
    return np.stack([psd[:, (FREQS >= a) & (FREQS < b)].mean(axis=1)
                     for a, b in zip(edges[:-1], edges[1:])], axis=1)


def test_whiten_gives_unit_variance_flat_noise():
    rng = np.random.default_rng(0)
    noise = noise_from_psd(rng, PSD, 48)
    white = np.stack([T.Whiten(psd=PSD)(e) for e in noise])
    middle = white[..., N // 8: 7 * N // 8]  # where the Tukey window is one
    np.testing.assert_allclose(middle.var(axis=(0, 2)), 1.0, atol=0.03)
    levels = band_levels(spectral.estimate_psd(white)) * FS / 2  # unit variance <=> 1
    assert np.all(np.abs(levels - 1) < 0.2), levels.round(2)
    raw_levels = band_levels(spectral.estimate_psd(noise))
    assert np.all(raw_levels.max(axis=1) / raw_levels.min(axis=1) > 2), "the input was coloured"


def test_whiten_flattens_the_simulator_noise():

    rng = np.random.default_rng(1)
    noise = np.stack([sim_noise.colored_noise(rng, N, FS) for _ in range(64)])
    whiten = T.Whiten(psd="simulator")
    white = np.stack([whiten(e) for e in noise])
    levels = band_levels(spectral.estimate_psd(white)) * FS / 2
    assert np.all(np.abs(levels - 1) < 0.2), levels.round(2)
    np.testing.assert_allclose(white[..., N // 8: 7 * N // 8].var(axis=(0, 2)), 1.0, atol=0.05)
    torch_white = T.TorchWhiten(psd="simulator")(torch.from_numpy(noise)).numpy()
    assert relative_error(torch_white, white) < 1e-9


def test_whiten_reads_npy_files_relative_to_the_input_folder(tmp_path, monkeypatch):
    np.save(tmp_path / "psd.npy", PSD)
    monkeypatch.setenv("G2NET_INPUT_DIR", str(tmp_path))
    x = example()
    np.testing.assert_array_equal(T.Whiten(psd="psd.npy")(x), T.Whiten(psd=PSD)(x))
    with pytest.raises(G2NetError, match="prep_data.py --psd"):
        T.Whiten(psd="missing.npy")(x)
    np.save(tmp_path / "short.npy", PSD[:, :100])
    with pytest.raises(G2NetError, match=r"\(3, 2049\)"):
        T.Whiten(psd="short.npy")(x)
    with pytest.raises(ValueError, match=r"\(3, 2049\)"):  # an array in code: a programming error
        T.Whiten(psd=PSD[:, :100])(x)


# ------------------------------------------------------------------------------------------------
# Torch batch versions
# ------------------------------------------------------------------------------------------------
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def torch_pairs():
    return [
        ("Normalize", T.Normalize(), T.TorchNormalize()),
        ("BandPass 20-500", T.BandPass(20, 500), T.TorchBandPass(20, 500)),
        ("BandPass 16-512 order 4", T.BandPass(16, 512, order=4), T.TorchBandPass(16, 512, order=4)),
        ("Whiten", T.Whiten(psd=PSD), T.TorchWhiten(psd=PSD)),
    ]


def raw_batch(dtype=np.float64, n: int = 4) -> np.ndarray:
    """Detector-like strain with strong low-frequency content (the band-pass must remove it)."""
    rng = np.random.default_rng(3)
    return noise_from_psd(rng, PSD, n).astype(dtype)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_versions_equal_numpy(device, dtype):
    batch = raw_batch(dtype)
    for name, numpy_version, torch_version in torch_pairs():
        # the normalised scale is what the band-pass and whitening see in a typical pipeline
        x = batch if name in ("Normalize", "Whiten") else T.Normalize()(batch)
        want = np.stack([numpy_version(e) for e in x]).astype(np.float64)
        got = torch_version.to(device)(torch.from_numpy(x).to(device))
        assert got.dtype == torch.from_numpy(x).dtype and got.shape == x.shape
        error = relative_error(got.cpu().numpy(), want)
        assert error < 1e-5, f"{name}: {error:.2e}"


def test_torch_bandpass_is_exact_at_the_edges():
    x = T.Normalize()(raw_batch())
    want = np.stack([T.BandPass(20, 500)(e) for e in x])
    got = T.TorchBandPass(20, 500)(torch.from_numpy(x)).numpy()
    edges = np.r_[0:200, N - 200:N]
    assert relative_error(got[..., edges], want[..., edges]) < 1e-9


def test_torch_transforms_ignore_autocast_and_dtype_casts():
    x = T.Normalize()(raw_batch(np.float32))
    want = np.stack([T.BandPass(20, 500)(e) for e in x]).astype(np.float64)
    module = T.TorchBandPass(20, 500).half()  # complex kernels stay in double precision
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = module(torch.from_numpy(x))
    assert got.dtype == torch.float32
    assert relative_error(got.numpy(), want) < 1e-5
    whiten = T.TorchWhiten(psd=PSD).bfloat16()
    want = np.stack([T.Whiten(psd=PSD)(e) for e in raw_batch()])
    assert relative_error(whiten(torch.from_numpy(raw_batch())).numpy(), want) < 1e-9


def test_torch_float32_compute_is_within_tolerance():
    x = T.Normalize()(raw_batch(np.float32))
    want = np.stack([T.BandPass(20, 500)(e) for e in x]).astype(np.float64)
    got = T.TorchBandPass(20, 500, compute_dtype=torch.float32)(torch.from_numpy(x)).numpy()
    assert relative_error(got, want) < 1e-5


def test_torch_versions_check_the_length_they_were_built_for():
    with pytest.raises(ValueError, match="n_samples=2048"):
        T.TorchBandPass(20, 500)(torch.zeros(2, 3, 2048))
    with pytest.raises(ValueError, match="n_samples=2048"):
        T.TorchWhiten(psd=PSD)(torch.zeros(2, 3, 2048))
    with pytest.raises(ValueError, match="rows H1, L1, V1"):
        T.TorchWhiten(psd=PSD)(torch.zeros(2, 2, N))
    x = T.Normalize()(raw_batch())[..., :2048]
    want = np.stack([T.BandPass(20, 500)(e) for e in x])
    got = T.TorchBandPass(20, 500, n_samples=2048)(torch.from_numpy(x)).numpy()
    assert relative_error(got, want) < 1e-9
