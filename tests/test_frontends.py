"""Front-ends: competition image sizes, CWT against independent references, trainable width,
float32 under autocast, FFT sizes (scipy's next_fast_len), registry and errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import scipy.signal
import torch
import torch.nn.functional as F

from g2net import frontends
from g2net.frontends import CQT, CNNSpectrogram, ComplexMorletCWT, MultiSpectrogram, RickerCWT, ResNetSpectrogram, WaveNetSpectrogram, create_frontend

FS = 2048
T = np.arange(4096) / FS


def chirp() -> np.ndarray:
    """Tapered logarithmic chirp 30 -> 300 Hz over the 2 s example."""
    return (scipy.signal.chirp(T, f0=30, t1=2, f1=300, method="logarithmic")
            * scipy.signal.windows.tukey(4096, 0.1))


def chirp_frequency() -> np.ndarray:
    return 30 * (300 / 30) ** (T / 2)


def as_batch(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)[None, None]


# image sizes of the competition models' table: (front-end, params, expected (C, H, W))
COMPETITION_FRONTENDS = {
    "Resized08aug4 CQT": ("cqt", dict(sample_rate=2048, fmin=16, fmax=1024, hop_length=8), (3, 72, 513)),
    "Nspec12": ("cwt", dict(sample_rate=2048, fmin=16, fmax=1024, wavelet_width=3, stride=8,
                            n_scales=256), (3, 256, 512)),
    "Nspec12arch0": ("cwt", dict(sample_rate=2048, fmin=16, fmax=1024, wavelet_width=8,
                                 stride=8, n_scales=256), (3, 256, 512)),
    "Nspec16": ("cwt", dict(sample_rate=2048, fmin=16, fmax=1024, wavelet_width=8,
                            trainable_width=True, stride=4, n_scales=128), (3, 128, 1024)),
    "Nspec16spec13": ("cwt", dict(sample_rate=2048, fmin=16, fmax=512, wavelet_width=8,
                                  trainable_width=True, stride=4, n_scales=128), (3, 128, 1024)),
    "Nspec21": ("cwt", dict(sample_rate=2048, fmin=16, fmax=1024, wavelet_width=8,
                            trainable_width=True, stride=4, n_scales=256), (3, 256, 1024)),
    "MultiInstance04": ("cwt", dict(sample_rate=2048, fmin=16, fmax=1024, wavelet_width=8,
                                    stride=4, n_scales=384), (3, 384, 1024)),
    "Nspec22": ("wavenet", dict(base_filters=128, wave_layers=(10, 6, 2), kernel_size=3),
                (3, 128, 1024)),
    "Nspec22aug1": ("wavenet", dict(wave_block="none", base_filters=128, wave_layers=(10, 6, 2),
                                    kernel_size=3), (3, 128, 1024)),
    "Nspec23": ("cnn", dict(base_filters=128, kernel_sizes=(32, 16, 4)), (3, 128, 1024)),
    "Nspec23arch3": ("cnn", dict(base_filters=128, kernel_sizes=(64, 16, 4)), (3, 128, 1024)),
    "Nspec25": ("wavenet", dict(wave_block="none", base_filters=256, wave_layers=(10, 6, 2),
                                downsample=4), (3, 256, 1024)),
    "Nspec30arch2": ("wavenet", dict(separate_channel=True, in_chans=1, wave_block="none",
                                     base_filters=128, wave_layers=(8, 8, 8), kernel_size=3),
                     (3, 128, 1024)),
    "ResNetSpectrogram": ("resnet", dict(), (1, 128, 1024)),
}


@pytest.mark.parametrize("row", sorted(COMPETITION_FRONTENDS))
def test_competition_image_sizes(row):
    name, params, expected = COMPETITION_FRONTENDS[row]
    torch.manual_seed(0)
    frontend = create_frontend(name, **params).eval()
    with torch.no_grad():
        image = frontend(torch.randn(1, 3, 4096))
    assert tuple(image.shape) == (1, *expected)
    assert frontend.image_channels(3) == expected[0]
    assert torch.isfinite(image).all()


def test_cwt_rows_are_log_spaced_from_upper_to_lower():
    cwt = ComplexMorletCWT(sample_rate=FS, fmin=16, fmax=1024, n_scales=128, stride=4)
    f = cwt.frequencies.double().numpy()
    assert f[0] == pytest.approx(1024) and f[-1] == pytest.approx(16)
    assert np.allclose(np.diff(np.log(f)), math.log(16 / 1024) / 127)


@pytest.mark.parametrize("width", [3.0, 8.0])
def test_morlet_cwt_matches_pywavelets_on_chirp(width):
    """PyWavelets' cmor{B}-1.0 at scale s*fs samples is the same wavelet; our normalisation is
    2/sqrt(scale) times PyWavelets' (unit response to a unit sinusoid)."""
    cwt = ComplexMorletCWT(sample_rate=FS, fmin=20, fmax=500, n_scales=24,
                           wavelet_width=width, stride=1)
    ours = cwt(as_batch(chirp()))[0, 0].numpy()
    scales = FS / cwt.frequencies.double().numpy()
    coef, freqs = pywt.cwt(chirp(), scales, f"cmor{width}-1.0", sampling_period=1 / FS,
                           method="fft")
    assert np.allclose(freqs, cwt.frequencies.numpy(), rtol=1e-5)
    reference = np.abs(coef) * 2 / np.sqrt(scales)[:, None]
    inner = slice(600, -600)  # PyWavelets pads differently at the edges
    error = np.abs(ours[:, inner] - reference[:, inner]).max() / reference[:, inner].max()
    assert error < 0.03


def test_morlet_cwt_matches_direct_numpy_convolution_with_stride_and_crop():
    """A brute-force np.convolve with a wavelet cut at 5 Gaussian sigmas, sampled every 4th sample."""
    x = chirp()
    cwt = ComplexMorletCWT(sample_rate=FS, fmin=16, fmax=1024, n_scales=16, wavelet_width=8,
                           stride=4, border_crop=64)
    ours = cwt(as_batch(x))[0, 0].numpy()
    assert ours.shape == (16, 1024 - 2 * 16)
    reference = np.empty_like(ours, dtype=np.float64)
    for row, f in enumerate(cwt.frequencies.double().numpy()):
        s = 1 / f
        half = int(5 * s * math.sqrt(8 / 2) * FS)
        tk = np.arange(-half, half + 1) / FS
        psi = np.exp(-(tk / s) ** 2 / 8) * np.exp(2j * np.pi * tk / s) / (
            math.sqrt(math.pi * 8) * s * FS / 2)
        reference[row] = np.abs(np.convolve(x, psi[::-1], mode="same"))[::4][16:-16]
    error = np.abs(ours - reference)
    # float32 rounding everywhere; the two lowest rows also feel our kernel's truncation at
    # sqrt(4.5 * width) scale lengths (the reference goes to 5 sigma)
    assert error[:-2].max() < 1e-5 * reference.max()
    assert error.max() < 1e-3 * reference.max()


def test_morlet_ridge_follows_chirp_and_unit_sinusoid_gives_one():
    cwt = ComplexMorletCWT(sample_rate=FS, fmin=16, fmax=1024, n_scales=128, wavelet_width=8,
                           stride=4)
    image = cwt(as_batch(chirp()))[0, 0].numpy()
    ridge = cwt.frequencies.numpy()[image.argmax(axis=0)]
    inner = slice(150, -150)
    truth = chirp_frequency()[::4][inner]
    assert np.abs(np.log(ridge[inner] / truth)).max() < 0.06  # within ~6% (row spacing 3.3%)
    tone = np.cos(2 * np.pi * 100.0 * T)
    row = int(np.argmin(np.abs(cwt.frequencies.numpy() - 100.0)))
    image = cwt(as_batch(tone))[0, 0].numpy()
    assert image[:, 256:768].max(axis=0).mean() == pytest.approx(1.0, abs=0.02)
    assert abs(int(image[:, 512].argmax()) - row) <= 1


def test_ricker_cwt_matches_direct_convolution_and_peaks_at_its_frequency():
    cwt = RickerCWT(sample_rate=FS, fmin=20, fmax=500, n_scales=24, stride=2)
    x = chirp()
    ours = cwt(as_batch(x))[0, 0].numpy()
    assert ours.shape == (24, 2048)
    for row, f in enumerate(cwt.frequencies.double().numpy()):
        sigma = math.sqrt(2) / (2 * math.pi * f)
        half = int(10 * sigma * FS)
        u = np.arange(-half, half + 1) / FS / sigma
        # PyWavelets' mexh at sigma * fs samples
        psi = 2 / (math.sqrt(3) * np.pi ** 0.25) * (1 - u ** 2) * np.exp(-u ** 2 / 2) / math.sqrt(sigma * FS)
        full = np.convolve(x, psi, mode="same")[::2]
        assert np.abs(ours[row] - full).max() < 1e-3 * np.abs(full).max() + 1e-6, row
    for freq in (40.0, 150.0):
        image = cwt(as_batch(np.sin(2 * np.pi * freq * T)))[0, 0].abs().numpy()
        peak = cwt.frequencies.numpy()[image[:, 512:1536].max(axis=1).argmax()]
        assert abs(math.log(peak / freq)) < 0.15


def test_trainable_width_gets_gradient_and_trains():
    torch.manual_seed(0)
    cwt = ComplexMorletCWT(sample_rate=FS, fmin=32, fmax=512, n_scales=16, wavelet_width=8,
                           stride=8, trainable_width=True)
    assert [n for n, _ in cwt.named_parameters()] == ["wavelet_width"]
    x = torch.randn(2, 3, 4096)
    before = cwt(x).detach()
    cwt(x).mean().backward()
    grad = cwt.wavelet_width.grad
    assert grad is not None and torch.isfinite(grad) and grad.abs() > 0
    optimizer = torch.optim.SGD(cwt.parameters(), lr=1.0)
    optimizer.step()
    assert cwt.width != pytest.approx(8.0)
    assert cwt.width == pytest.approx(8.0 - float(grad))
    # the kernels follow the new width: the image changes
    assert not torch.allclose(cwt(x).detach(), before)
    assert "wavelet_width" in cwt.state_dict()


def test_fixed_bank_is_a_buffer_built_once_and_trainable_filter_is_a_parameter():
    fixed = ComplexMorletCWT(sample_rate=FS, fmin=32, fmax=512, n_scales=8, stride=8)
    assert list(fixed.parameters()) == []
    assert fixed.kernels() is fixed.kernels()  # not rebuilt per call
    assert fixed.state_dict() == {} or "bank" not in fixed.state_dict()
    learned = ComplexMorletCWT(sample_rate=FS, fmin=32, fmax=512, n_scales=8, stride=8,
                               trainable_filter=True)
    assert [n for n, _ in learned.named_parameters()] == ["bank"]
    assert torch.equal(learned.bank.detach(), fixed.bank)
    learned(torch.randn(1, 3, 4096)).sum().backward()
    assert learned.bank.grad.abs().sum() > 0


def test_fixed_transforms_run_in_float32_under_autocast():
    x = torch.randn(2, 3, 4096)
    for frontend in (ComplexMorletCWT(n_scales=16, stride=16), RickerCWT(n_scales=8, stride=16),
                     CQT(sample_rate=2048, fmin=32, fmax=512, hop_length=64)):
        plain = frontend(x)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            mixed = frontend(x.bfloat16())
        assert mixed.dtype == torch.float32
        # only the bf16 rounding of the input differs
        assert torch.allclose(mixed, plain, rtol=0.02, atol=0.02 * float(plain.abs().max()))


def test_cqt_is_one_batched_call_equal_to_per_detector():
    cqt = CQT(sample_rate=2048, fmin=16, fmax=1024, hop_length=8)
    x = torch.randn(2, 3, 4096)
    image = cqt(x)
    assert image.shape == (2, 3, 72, 513)
    one = cqt.cqt(x[1, 2][None])[0]
    assert torch.allclose(image[1, 2], one, atol=1e-5 * float(one.abs().max()))
    with pytest.raises(ValueError, match="fmax or n_bins"):
        CQT(fmax=1024, n_bins=84)


def test_wavenet_separate_channel_branch_sees_only_its_detector():
    torch.manual_seed(0)
    frontend = WaveNetSpectrogram(separate_channel=True, wave_block="none", base_filters=8,
                                  wave_layers=(2, 2, 2), kernel_size=3).eval()
    x = torch.randn(1, 3, 512)
    y = x.clone()
    y[:, 0] += 1.0
    a, b = frontend(x), frontend(y)
    assert a.shape == (1, 3, 8, 128)
    assert not torch.allclose(a[:, 0], b[:, 0])
    assert torch.equal(a[:, 1:], b[:, 1:])
    with pytest.raises(ValueError, match="one per detector"):
        frontend(torch.randn(1, 2, 512))


def test_learned_frontends_train_and_options():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 1024)
    for frontend in (WaveNetSpectrogram(base_filters=(8, 16), wave_layers=(3, 1), downsample=2),
                     CNNSpectrogram(base_filters=(8, 4), kernel_sizes=(8, 4), stride=2,
                                    output_size=100, sigmoid=True),
                     ResNetSpectrogram(base_filters=32, n_block=4, downsample_gap=2,
                                       increasefilter_gap=2, transpose=True)):
        image = frontend(x)
        image.square().mean().backward()
        assert all(p.grad is not None for p in frontend.parameters() if p.requires_grad)
        assert image.dim() == 4 and image.shape[1] == frontend.image_channels(3)
    assert WaveNetSpectrogram(base_filters=(8, 16), wave_layers=(3, 1), downsample=2)(x).shape == (2, 2, 16, 256)
    cnn = CNNSpectrogram(base_filters=(8, 4), kernel_sizes=(8, 4), stride=2, output_size=100,
                         sigmoid=True)(x)
    assert cnn.shape == (2, 2, 4, 100) and cnn.min() >= 0 and cnn.max() <= 1
    assert ResNetSpectrogram(base_filters=32, n_block=4, downsample_gap=2, increasefilter_gap=2,
                             transpose=True)(x).shape == (2, 1, 256, 64)


def test_multi_spectrogram_concatenates_and_checks_sizes():
    x = torch.randn(1, 3, 4096)
    multi = MultiSpectrogram([("cwt", dict(n_scales=128, stride=4)),
                              (CNNSpectrogram, dict(base_filters=128, kernel_sizes=(16,)))])
    image = multi(x)
    assert image.shape == (1, 4, 128, 1024) and multi.image_channels(3) == 4
    assert torch.allclose(image[:, :3], multi.frontends[0](x))
    mismatched = MultiSpectrogram([("cwt", dict(n_scales=64, stride=8)), ("cnn", dict())])
    with pytest.raises(ValueError, match="size=\\(H, W\\)"):
        mismatched(x)
    resized = MultiSpectrogram([("cwt", dict(n_scales=64, stride=8)), ("cnn", dict())],
                               size=(128, 512))
    assert resized(x).shape == (1, 6, 128, 512)


def test_create_frontend_registry_and_errors():
    assert isinstance(create_frontend("CWT", n_scales=8, stride=8), ComplexMorletCWT)
    assert isinstance(create_frontend("ComplexMorletCWT", n_scales=8), ComplexMorletCWT)
    assert isinstance(create_frontend(RickerCWT, n_scales=8), RickerCWT)
    built = CNNSpectrogram()
    assert create_frontend(built) is built
    with pytest.raises(ValueError, match="did you mean wavenet"):
        create_frontend("wavnet")
    with pytest.raises(TypeError, match="bad parameters for front-end ComplexMorletCWT"):
        create_frontend("cwt", n_scale=8)
    with pytest.raises(ValueError, match="fmin < fmax"):
        ComplexMorletCWT(fmin=500, fmax=100)
    with pytest.raises(ValueError, match="Nyquist"):
        ComplexMorletCWT(fmax=2000)
    with pytest.raises(ValueError, match="not both"):
        ComplexMorletCWT(trainable_width=True, trainable_filter=True)
    with pytest.raises(ValueError, match="wave_block"):
        WaveNetSpectrogram(wave_block="fancy")

    class Doubler(frontends.Frontend):
        def forward(self, x):
            return x[:, :, None, :] * 2

    frontends.register_frontend("doubler_test", Doubler)
    try:
        assert isinstance(create_frontend("doubler_test"), Doubler)
    finally:
        del frontends.FRONTENDS["doubler_test"]


def test_fft_size_is_the_smallest_5_smooth_length():
    from g2net.frontends import fft_size

    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in (1, 2, 7, 97, 1409, 4097, 5633):
        size = fft_size(n)
        assert size >= n and smooth(size)
        assert not any(smooth(m) for m in range(n, size))


def reference_fft_size(n):
    """The smallest 5-smooth length, searched over powers of 5 and 3 with doubling."""
    best = 1 << max(n - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


def test_fft_size_is_scipys_next_fast_len_and_the_reference_search():
    from scipy.fft import next_fast_len

    from g2net.frontends import fft_size

    for n in list(range(1, 3000)) + [4097, 8193, 12289, 65537]:
        assert fft_size(n) == reference_fft_size(n) == next_fast_len(n, real=True)
    assert fft_size(0) == reference_fft_size(0) == 1


@pytest.mark.parametrize("stride,padding,taps", [(1, 3, 7), (3, 2, 7), (4, 768, 1537), (2, 0, 5)])
def test_fft_conv1d_equals_conv1d(stride, padding, taps):
    from g2net.frontends import fft_conv1d

    torch.manual_seed(0)
    x, weight = torch.randn(4, 1000), torch.randn(5, 1, taps)
    expected = F.conv1d(x.unsqueeze(1), weight, stride=stride, padding=padding)
    got = fft_conv1d(x, weight, stride, padding)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-5 * expected.abs().max()


@pytest.mark.parametrize("cls,params", [
    (ComplexMorletCWT, dict(n_scales=32, wavelet_width=8, stride=4, border_crop=64,
                            trainable_width=True)),
    (ComplexMorletCWT, dict(n_scales=16, wavelet_width=3, stride=1, trainable_filter=True)),
    (RickerCWT, dict(n_scales=15, stride=2, trainable_filter=True)),
])
def test_fft_and_direct_convolution_give_the_same_image_and_gradients(cls, params):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4096)
    images, grads = {}, {}
    for method in ("fft", "conv"):
        frontend = cls(sample_rate=FS, fmin=16, fmax=1024, method=method, **params)
        image = frontend(x)
        (image * torch.linspace(0, 1, image.shape[-1])).sum().backward()
        images[method] = image.detach()
        grads[method] = next(frontend.parameters()).grad
    scale = images["conv"].abs().max()
    assert (images["fft"] - images["conv"]).abs().max() < 1e-5 * scale
    assert torch.allclose(grads["fft"], grads["conv"], rtol=1e-3, atol=1e-4 * grads["conv"].abs().max())
    # 'auto' picks the FFT for the long kernels of these banks
    auto = cls(sample_rate=FS, fmin=16, fmax=1024, **params)
    assert auto.uses_fft(auto.kernels().shape[-1])


def test_unknown_convolution_method_is_one_clear_error():
    with pytest.raises(ValueError, match="method must be one of auto, fft, conv"):
        ComplexMorletCWT(method="fast")
