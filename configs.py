"""Experiments. ``Baseline`` holds every field an experiment can set; experiments subclass it and
change a few fields. ``python train.py --config NAME`` trains the class called NAME into
``results/NAME/``.

Paths are relative to the input folder (``G2NET_INPUT_DIR``, default ``input/``) and resolved when a
run starts. ``name`` defaults to the class name; ``splitter`` follows ``cv`` and ``seed`` unless a
subclass sets its own.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from sklearn.model_selection import StratifiedKFold
from torch import nn, optim

from architectures import MultiInstanceSCNN, SpectroCNN
from datasets import G2NetDataset
from g2net.frontends import CQT, CNNSpectrogram, ComplexMorletCWT, WaveNetSpectrogram
from g2net.training.callbacks import EarlyStopping, SaveAllSnapshots, SaveSnapshot
from g2net.training.trainer import TrainHook
from loss_functions import BCEWithLogitsLoss, TailRankingLoss
from metrics import AUC
from models1d_pytorch import CNN1d, ResNet1d, WaveNet1d, densenet121_1d
from transforms import (COMPETITION_FACTORS, BandPass, Compose, FlipWave, GaussianNoiseSNR,
                        GlobalTimeShift, Normalize, SelectDetectors, Whiten)
from utils import DETECTORS, G2NetError

PARENT = object()  # pseudo_labels = PARENT: soft labels from the nearest parent config's predictions


def _transform_set(head: list, *train_extra) -> dict:
    """train / test / tta pipelines sharing the preprocessing ``head``; tta adds a sign flip."""
    def chain(*extra):
        return Compose([*head, *extra])

    return dict(train=chain(*train_extra), test=chain(), tta=chain(FlipWave(always_apply=True)))


def _bandpassed(lower: float, upper: float, order: int = 8, *train_extra) -> dict:
    """The competition's preprocessing: per-detector normalisation, then a Butterworth band-pass."""
    return _transform_set([Normalize(COMPETITION_FACTORS), BandPass(lower, upper, order)],
                          *train_extra)


def _whitened(*train_extra, detectors: tuple[str, ...] = DETECTORS) -> dict:
    """Whiten with the simulator PSD, then band-pass 20-500 Hz: noise becomes unit-variance.
    With fewer ``detectors`` than H1, L1, V1 their rows are selected first."""
    head = [] if tuple(detectors) == DETECTORS else [SelectDetectors(detectors)]
    return _transform_set([*head, Whiten(psd="simulator", detectors=detectors),
                           BandPass(lower=20, upper=500)], *train_extra)


class Baseline:
    name = "Baseline"
    seed = 2021
    train_path = "train.csv"
    test_path = "test.csv"
    train_cache = "train_cache.npy"  # used when present (python prep_data.py --cache)
    test_cache = "test_cache.npy"
    cv = 5
    splitter = StratifiedKFold(n_splits=5, shuffle=True, random_state=2021)
    dataset = G2NetDataset
    dataset_params: dict = dict()
    model = SpectroCNN
    model_params: dict = dict(
        model_name="tf_efficientnet_b7", pretrained=True, num_classes=1,
        spectrogram=CQT, spec_params=dict(sample_rate=2048, fmin=20, fmax=1024, hop_length=32),
        resize_img=None, custom_classifier="none")
    weight_path = None  # initial weights (a fold checkpoint or state_dict), relative to results/
    num_epochs = 5
    batch_size = 64
    optimizer = optim.Adam
    optimizer_params: dict = dict(lr=2e-4, weight_decay=1e-6)
    scheduler = optim.lr_scheduler.CosineAnnealingWarmRestarts
    scheduler_params: dict = dict(T_0=5, T_mult=1, eta_min=1e-6)
    scheduler_target = None  # 'loss' or None (score) for ReduceLROnPlateau
    batch_scheduler = False
    criterion = nn.BCEWithLogitsLoss()
    eval_metric = AUC()
    monitor_metrics: list = []
    amp = True
    parallel = None  # None, 'dp' (several --gpu ids) or 'ddp' (torchrun)
    deterministic = False
    channels_last = False  # 2D backbones on CUDA: weights and image in channels_last layout
    gpu_preprocess = True  # on CUDA: Normalize/BandPass/Whiten batched on the GPU where exact
    amp_precision = None  # autocast dtype on CUDA: None = bf16 where supported else fp16, or 'bf16' / 'fp16'
    # torch.compile the model: False, True, a mode ('max-autotune', 'reduce-overhead' = Inductor
    # + CUDA graphs) or 'cudagraphs' (CUDA graphs without Inductor); only on compile_devices
    compile = False
    compile_devices = ("cuda",)
    clip_grad = "value"
    max_grad_norm = 10000
    hook = TrainHook()
    callbacks: list = [EarlyStopping(patience=5, maximize=True), SaveSnapshot()]
    transforms: dict = _bandpassed(20, 500)
    pseudo_labels = None  # dict(path=parent, confident_samples=None, hard_label=False)
    debug = False
    # the detectors (rows) the model sees, in this order; fewer than H1, L1, V1 means the transforms
    # start with SelectDetectors and the model has len(detectors) input channels (search.py reads
    # strain files of exactly these detectors)
    detectors: tuple[str, ...] = DETECTORS
    # Where training batches come from (docs/online.md): 'files' (train.csv), 'online' (ml4gw
    # waveforms made on the training device every step) or 'bank' (h+/hx of a polarisation bank,
    # sky, time, SNR and noise drawn every step). Validation always uses the files.
    train_source = "files"
    # Online settings: approximant ('IMRPhenomD' or 'IMRPhenomPv2'), priors (simulate.Priors
    # fields: masses, spins, sky, tc, snr_range, snr_distribution, positive_fraction...), batches
    # per epoch, device (None: the training device), signal_bank (a polarisation bank, 'bank'),
    # swap_fraction / mute_fraction: the fractions of positives made incoherent (one detector's
    # signal swapped for another positive's, or removed) and labelled noise (Aframe), and
    # hard_negatives / hard_negative_fraction: a pool of background windows a trained model scores
    # highest (scripts/mine_hard_negatives.py; .npy relative to the input folder) and the fraction
    # of each batch's negatives replaced by its windows, drawn with replacement.
    online: dict = dict(approximant="IMRPhenomD", priors=dict(), steps_per_epoch=100, device=None,
                        signal_bank=None, swap_fraction=0.0, mute_fraction=0.0,
                        hard_negatives=None, hard_negative_fraction=0.0)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_fields(cls)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        if "splitter" not in cls.__dict__ and ("cv" in cls.__dict__ or "seed" in cls.__dict__):
            cls.splitter = StratifiedKFold(n_splits=cls.cv, shuffle=True, random_state=cls.seed)
        if cls.pseudo_labels is PARENT:
            parent = next(k for k in cls.__mro__[1:] if issubclass(k, Baseline) and k.pseudo_labels is not PARENT)
            cls.pseudo_labels = dict(path=parent.name, confident_samples=None, hard_label=False)


def _is_method(name: str, value: Any) -> bool:
    """A ``def`` in the class body (not a lambda or function assigned to a field name)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    return isinstance(value, property) or (inspect.isfunction(value) and value.__name__ == name)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def check_fields(cfg: type) -> None:
    """Refuse a config (or a mixin it inherits) that sets a field ``Baseline`` does not define.

    A misspelt field (``num_epoch = 3``) would otherwise be ignored silently while the run uses
    the default. Private names (leading underscore) and methods defined with ``def`` are allowed.
    """
    for klass in cfg.__mro__:
        if klass in (Baseline, object):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in CONFIG_FIELDS or _is_method(name, value):
                continue
            where = "" if klass is cfg else f" (inherited from {klass.__name__})"
            raise G2NetError(f"config {cfg.__name__} sets {name!r}{where}, which is not a config "
                             f"field{_suggest(name, sorted(CONFIG_FIELDS))}; every field is listed in "
                             "configs.Baseline (prefix helpers with _ to keep them private)")


def _check_kwargs(cfg: type, field: str, target: Callable, params: dict, skip: int = 0) -> None:
    """``params`` must be keywords ``target`` accepts (unless it takes ``**kwargs``)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: the call will tell
        return
    parameters = list(signature.parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    known = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in params:
        if key not in known:
            name = getattr(target, "__name__", type(target).__name__)
            raise G2NetError(f"config {cfg.__name__}: {field} has {key!r}, which {name} does not take"
                             f"{_suggest(key, known)}; it takes {', '.join(known)}")


def check_params(cfg: type) -> None:
    """The keyword dicts of ``cfg`` fit what they are passed to, checked before anything is built.

    A typo then reads as one line naming the config and the keyword rather than a TypeError from
    deep inside a constructor; errors raised inside a constructor keep their traceback.
    """
    _check_kwargs(cfg, "model_params", cfg.model, cfg.model_params)  # spec_params: create_frontend
    _check_kwargs(cfg, "optimizer_params", cfg.optimizer, cfg.optimizer_params, skip=1)
    if cfg.scheduler is not None:
        _check_kwargs(cfg, "scheduler_params", cfg.scheduler, cfg.scheduler_params, skip=1)
    _check_kwargs(cfg, "dataset_params", cfg.dataset, cfg.dataset_params)
    channels = cfg.model_params.get("in_chans")
    if channels is not None and channels != len(cfg.detectors):
        raise G2NetError(f"config {cfg.__name__}: model_params in_chans={channels} but the model sees "
                         f"{len(cfg.detectors)} detectors ({', '.join(cfg.detectors)}); set in_chans="
                         f"{len(cfg.detectors)}")


CONFIG_FIELDS = frozenset(name for name in vars(Baseline) if not name.startswith("_"))


class Demo(Baseline):
    """A small strided 1D CNN on whitened strain: trains in minutes on 2 CPU cores (``make demo``)."""
    cv = 3
    model = CNN1d
    model_params = dict(in_chans=3, num_classes=1, hidden_dims=(16, 32, 64, 64),
                        kernel_size=(32, 16, 8, 8), stride=(4, 2, 1, 1), pool=(1, 2, 2, 1),
                        global_pool="max")
    num_epochs = 6
    batch_size = 32
    optimizer_params = dict(lr=1e-3, weight_decay=1e-4)
    scheduler_params = dict(T_0=6, T_mult=1, eta_min=1e-5)
    transforms = _whitened(FlipWave(p=0.5), GlobalTimeShift(max_shift=0.1, p=0.5))


class PseudoDemo(Demo):
    """``Demo`` retrained with its own soft test labels (the competition's last round)."""
    criterion = BCEWithLogitsLoss(smooth_eps=0.025)
    pseudo_labels = dict(path="Demo", confident_samples=None, hard_label=False)


class Debug(Baseline):
    """A tiny model for tests: two folds, two epochs, deterministic."""
    cv = 2
    model = ResNet1d
    model_params = dict(in_chans=3, base_filters=8, kernel_size=7, stride=4, groups=1,
                        n_block=2, num_classes=1, use_bn=True, dropout=0.0)
    num_epochs = 2
    batch_size = 16
    deterministic = True
    optimizer_params = dict(lr=1e-3, weight_decay=1e-6)
    transforms = _whitened(FlipWave(p=0.5))


class DebugOnline(Debug):
    """``Debug`` on generated batches (tests): three steps of 16 per epoch."""
    train_source = "online"
    online = dict(Baseline.online, steps_per_epoch=3)


class DebugPseudo(Debug):
    criterion = BCEWithLogitsLoss(smooth_eps=0.025)
    pseudo_labels = dict(path="Debug", confident_samples=None, hard_label=False)


# =============================================================================================
# The competition's experiments (2nd place, G2Net 2021). Spectrogram models: Normalize + BandPass,
# GaussianNoiseSNR(15, 30, p=0.5) in training, GeM head, bicubic resize, lr 1e-3 (2e-4 for
# densenet201 / effnetv2 / xcit, 5e-4 for resnet200d and b7), 8 epochs with T_0 8.
# =============================================================================================
def _spectrogram_transforms(lower: float = 12, upper: float = 512, order: int = 8,
                            *train_extra) -> dict:
    return _bandpassed(lower, upper, order, GaussianNoiseSNR(15, 30, p=0.5), *train_extra)


def _spectro_params(spectrogram, spec_params: dict, model_name: str = "tf_efficientnet_b2",
                    resize_img=(128, 1024), **extra) -> dict:
    return dict(model_name=model_name, pretrained=True, num_classes=1, spectrogram=spectrogram,
                spec_params=spec_params, resize_img=resize_img, upsample="bicubic",
                custom_classifier="gem", **extra)


def _with(cfg: type, **changes) -> dict:
    """``cfg.model_params`` with some entries replaced (the way experiments change a backbone)."""
    return {**cfg.model_params, **changes}


def _lr(lr: float) -> dict:
    return dict(lr=lr, weight_decay=1e-6)


def _cwt(n_scales: int, wavelet_width: float, stride: int, trainable_width: bool = False,
         fmax: float = 1024) -> dict:
    return dict(sample_rate=2048, fmin=16, fmax=fmax, n_scales=n_scales,
                wavelet_width=wavelet_width, stride=stride, trainable_width=trainable_width)


class Resized08aug4(Baseline):
    """CQT (hop 8) resized to 256x512 with the spectrogram defaults: parent of the Nspec family."""
    model_params = _spectro_params(CQT, dict(sample_rate=2048, fmin=16, fmax=1024, hop_length=8),
                                   resize_img=(256, 512))
    num_epochs = 8
    optimizer_params = _lr(1e-3)
    scheduler_params = dict(T_0=8, T_mult=1, eta_min=1e-6)
    transforms = _spectrogram_transforms()
    channels_last = True  # 2D backbones: twice the step rate on an H100/H200 (docs/benchmarks.md)


class Nspec12(Resized08aug4):
    model_params = _spectro_params(ComplexMorletCWT, _cwt(256, 3, 8), resize_img=(256, 512))


class Nspec12arch0(Nspec12):
    model_params = _spectro_params(ComplexMorletCWT, _cwt(256, 8, 8), "densenet201", (256, 512))
    optimizer_params = _lr(2e-4)


class Nspec16(Resized08aug4):
    model_params = _spectro_params(ComplexMorletCWT, _cwt(128, 8, 4, trainable_width=True))
    compile = "cudagraphs"


class Nspec16spec13(Nspec16):
    model_params = _with(Nspec16, spec_params=_cwt(128, 8, 4, True, fmax=512), resize_img=None)
    transforms = _spectrogram_transforms(12, 360, 4)


class Nspec16arch17(Nspec16):
    model_params = _with(Nspec16, model_name="tf_efficientnet_b7_ns", resize_img=None)
    batch_size = 32
    optimizer_params = _lr(5e-4)


class Nspec21(Nspec16):
    model_params = _spectro_params(ComplexMorletCWT, _cwt(256, 8, 4, trainable_width=True),
                                   "tf_efficientnet_b4_ns", (256, 1024))


class MultiInstance04(Nspec16):
    model = MultiInstanceSCNN
    model_params = dict(_spectro_params(ComplexMorletCWT, _cwt(384, 8, 4), "xcit_tiny_12_p16_384_dist",
                                        (384, 768)), n_patch=2)
    optimizer_params = _lr(2e-4)


class Nspec22(Nspec16):
    """Learned WaveNet front-end instead of the CWT."""
    model_params = _spectro_params(WaveNetSpectrogram,
                                   dict(base_filters=128, wave_layers=(10, 6, 2), kernel_size=3))
    transforms = _spectrogram_transforms(16, 512)


class Nspec22aug1(Nspec22):
    model_params = _spectro_params(WaveNetSpectrogram, dict(
        wave_block="none", base_filters=128, wave_layers=(10, 6, 2), kernel_size=3))
    transforms = _spectrogram_transforms(16, 512, 8, FlipWave(p=0.5))


class Nspec22arch2(Nspec22aug1):
    model_params = _with(Nspec22aug1, model_name="tf_efficientnet_b6_ns")


class Nspec22arch6(Nspec22aug1):
    model_params = _with(Nspec22aug1, model_name="densenet201")
    optimizer_params = _lr(2e-4)


class Nspec22arch7(Nspec22aug1):
    model_params = _with(Nspec22aug1, model_name="tf_efficientnetv2_m")
    optimizer_params = _lr(2e-4)


class Nspec22arch10(Nspec22aug1):
    model_params = _with(Nspec22aug1, model_name="resnet200d")
    optimizer_params = _lr(5e-4)


class Nspec22arch12(Nspec22aug1):
    model_params = _with(Nspec22aug1, model_name="tf_efficientnetv2_l")
    optimizer_params = _lr(2e-4)


class Nspec23(Nspec16):
    """Learned strided-CNN front-end."""
    model_params = _spectro_params(CNNSpectrogram, dict(base_filters=128, kernel_sizes=(32, 16, 4)))


class Nspec23arch3(Nspec23):
    model_params = _spectro_params(CNNSpectrogram, dict(base_filters=128, kernel_sizes=(64, 16, 4)),
                                   "tf_efficientnet_b6_ns")


class Nspec23arch5(Nspec23arch3):
    model_params = _with(Nspec23arch3, model_name="tf_efficientnetv2_m")
    optimizer_params = _lr(2e-4)


class Nspec25(Nspec22aug1):
    model_params = _spectro_params(WaveNetSpectrogram, dict(
        wave_block="none", base_filters=256, wave_layers=(10, 6, 2), downsample=4),
        resize_img=(256, 1024))


class Nspec25arch1(Nspec25):
    model_params = _with(Nspec25, model_name="tf_efficientnet_b3_ns")


class Nspec30(Nspec22aug1):
    """One WaveNet stack per detector (``separate_channel``)."""
    model_params = _spectro_params(WaveNetSpectrogram, dict(
        separate_channel=True, in_chans=1, wave_block="none", base_filters=128,
        wave_layers=(10, 10, 10), kernel_size=3))


class Nspec30arch2(Nspec30):
    model_params = _with(Nspec30, model_name="tf_efficientnet_b6_ns", spec_params=dict(
        Nspec30.model_params["spec_params"], wave_layers=(8, 8, 8)))


class Seq00(Baseline):
    """1D ResNeXt on the band-passed waveform."""
    model = ResNet1d
    model_params = dict(in_chans=3, base_filters=64, kernel_size=16, stride=2, groups=64,
                        n_block=16, num_classes=1, use_bn=True, dropout=0.2)
    num_epochs = 8
    optimizer_params = _lr(1e-3)
    scheduler_params = dict(T_0=8, T_mult=1, eta_min=1e-6)
    transforms = _bandpassed(20, 500, 8)


class Seq02(Seq00):
    model_params = dict(Seq00.model_params, base_filters=32, groups=32, dropout=0.0)


class Seq03(Seq00):
    model_params = dict(Seq00.model_params, base_filters=128, groups=32, dropout=0.0)
    # its step is bound by kernel launches: CUDA graphs double it on an H200 (docs/benchmarks.md)
    compile = "reduce-overhead"


class Seq03aug3(Seq03):
    transforms = _bandpassed(30, 300, 4, FlipWave(p=0.5))


class Seq09(Seq00):
    model = densenet121_1d
    model_params: dict = dict()
    transforms = _bandpassed(30, 300, 8)


class Seq12(Seq00):
    model = WaveNet1d
    model_params = dict(in_chans=3, hidden_dims=(128, 256, 512, 1024), wave_block="simplified",
                        num_classes=1, reinit=True, downsample=True)


class Seq12arch4(Seq12):
    model_params = dict(Seq12.model_params, kernel_size=16,
                        hidden_dims=(128, 128, 256, 256, 512, 512, 1024, 1024),
                        wave_layers=(12, 10, 8, 8, 6, 6, 4, 2))


# Whitened copies (physics-grade evaluation): whiten with the simulator PSD instead of Normalize.
class Nspec16w(Nspec16):
    transforms = _whitened(GaussianNoiseSNR(15, 30, p=0.5))


class Seq03w(Seq03aug3):
    transforms = _whitened(FlipWave(p=0.5))


# Two-detector networks (H1+L1, as in MLGWSC-1): the same models on the H1 and L1 rows.
TWO_DETECTORS = ("H1", "L1")


class Demo2det(Demo):
    """``Demo`` on H1+L1: searches two-detector strain (search.py, docs/search.md)."""
    detectors = TWO_DETECTORS
    model_params = dict(Demo.model_params, in_chans=len(TWO_DETECTORS))
    transforms = _whitened(FlipWave(p=0.5), GlobalTimeShift(max_shift=0.1, p=0.5),
                           detectors=TWO_DETECTORS)


class Seq03w2det(Seq03w):
    """``Seq03w`` on H1+L1."""
    detectors = TWO_DETECTORS
    model_params = dict(Seq03w.model_params, in_chans=len(TWO_DETECTORS))
    transforms = _whitened(FlipWave(p=0.5), detectors=TWO_DETECTORS)


# =============================================================================================
# Online training (docs/online.md): the same models, every training batch simulated fresh on the
# training device (ml4gw), validated on the input folder's files.
# =============================================================================================
class DemoOnline(Demo):
    """``Demo`` trained on batches generated every step: 450 steps of 32 per epoch, so that its
    6 epochs (86,400 fresh examples) take on 2 CPU cores what ``Demo`` takes on a fixed
    20,000-example set, simulation included (docs/benchmarks.md)."""
    train_source = "online"
    online = dict(Baseline.online, steps_per_epoch=450)


class Seq03wOnline(Seq03w):
    """``Seq03w`` on online batches: 1,000 steps of 64 per epoch (64,000 fresh examples)."""
    train_source = "online"
    online = dict(Baseline.online, steps_per_epoch=1000)


class Demo2detOnline(Demo2det):
    """``Demo2det`` on online H1+L1 batches (the network SNR prior over H1 and L1): 450 steps of 32."""
    train_source = "online"
    online = dict(Baseline.online, steps_per_epoch=450)


class Seq03w2detOnline(Seq03w2det):
    """``Seq03w2det`` (Seq03's 1D network, 5.3M parameters) on online H1+L1 batches: 300 steps of
    64 per epoch, 5 epochs. A GPU config: on 2 CPU cores a step takes 18 s (7.5 h in all) and a
    searched window 74 ms (``Deep2detOnline`` is the larger model a CPU trains and searches)."""
    train_source = "online"
    num_epochs = 5
    online = dict(Baseline.online, steps_per_epoch=300)


# Training for the tail (issue 18; docs/benchmarks.md "Training for the tail"): one change each to
# Demo2detOnline, screened at equal wall-clock by the sensitive distance at low false-alarm rates.
class Demo2detOnlineSnr4(Demo2detOnline):
    """``Demo2detOnline`` with the network SNR log-uniform over 4-40 (p ~ snr^-1) instead of
    uniform 5-20: signals down to SNR 4 and up to 40."""
    online = dict(Demo2detOnline.online, priors=dict(snr_range=(4.0, 40.0),
                                                     snr_distribution="loguniform"))


class Demo2detOnlineSwapMute(Demo2detOnline):
    """``Demo2detOnline`` with Aframe's coherence negatives: 10% of the positives get one
    detector's signal from another positive and 10% lose one detector's signal, labelled noise."""
    online = dict(Demo2detOnline.online, swap_fraction=0.1, mute_fraction=0.1)


class Demo2detOnlineTail(Demo2detOnline):
    """``Demo2detOnline`` trained with :class:`TailRankingLoss`: BCE plus each positive ranked
    above the batch's loudest eighth of negatives."""
    criterion = TailRankingLoss(weight=1.0, top_fraction=0.125)


class Demo2detOnlineHardNeg(Demo2detOnline):
    """``Demo2detOnline`` with a quarter of each batch's negatives replaced by hard negatives: the
    background windows a trained ``Demo2detOnline`` scores highest. The pool is mined by
    scripts/mine_hard_negatives.py from a Demo2detOnline search of a separate background strain
    (never the strain the search is evaluated on) and copied into the input folder."""
    online = dict(Demo2detOnline.online, hard_negatives="hard_negatives.npy",
                  hard_negative_fraction=0.25)


class Demo2detOnlineCurve(Demo2detOnline):
    """``Demo2detOnline`` for four times as long (24 epochs, cosine over all of them), every
    epoch's model kept as ``fold<k>_epoch<e>.pt``: the learning curve of the search's sensitive
    distance against training time (scripts/learning_curve.py)."""
    num_epochs = 24
    scheduler_params = dict(Demo2detOnline.scheduler_params, T_0=24)
    callbacks = [EarlyStopping(patience=24, maximize=True), SaveSnapshot(), SaveAllSnapshots()]


class Deep2detOnline(Demo2detOnlineCurve):
    """The larger two-detector model a CPU still trains in an hour: ``Demo2det``'s first layers,
    then two more pooled layers of 128 channels (4x the parameters), so that each output sees
    0.92 s of strain instead of 0.22 s (a quiet signal's inspiral, not only its merger). Online
    generation dominates a training step, so it costs 1.1x ``Demo2detOnline`` a step and 1.8x a
    searched window; ``Seq03w2detOnline`` costs 90x a step and 170x a window. Its validation AUC
    is higher, but searched on the simulator it is behind ``Demo2detOnlineCurve`` at 10 and 100
    false alarms per month (one seed each; docs/benchmarks.md)."""
    model_params = dict(Demo2detOnline.model_params, hidden_dims=(16, 32, 64, 64, 128, 128),
                        kernel_size=(32, 16, 8, 8, 8, 8), stride=(4, 2, 1, 1, 1, 1),
                        pool=(1, 2, 2, 2, 2, 1))


class Deep2detOnlineSwapMute(Deep2detOnline):
    """``Deep2detOnline`` with ``Demo2detOnlineSwapMute``'s coherence negatives (10% of positives
    get one detector's signal from another positive, 10% lose one detector's signal, labelled
    noise): its background tail came from one detector alone."""
    online = dict(Deep2detOnline.online, swap_fraction=0.1, mute_fraction=0.1)


class Nspec16Online(Nspec16):
    """``Nspec16`` on online batches: 1,000 steps of 64 per epoch."""
    train_source = "online"
    online = dict(Baseline.online, steps_per_epoch=1000)


# =============================================================================================
# Pseudo-label round: each model retrained with its parent's soft test labels, BCE with label
# smoothing 0.025, 10 epochs (T_0 10).
# =============================================================================================
class _PseudoRound:
    """Mixin placed before the parent config: ``class Pseudo07(_PseudoRound, Nspec16)``."""
    criterion = BCEWithLogitsLoss(smooth_eps=0.025)
    num_epochs = 10
    scheduler_params = dict(T_0=10, T_mult=1, eta_min=1e-6)
    pseudo_labels = PARENT


class Pseudo06(_PseudoRound, Nspec12): pass
class Pseudo07(_PseudoRound, Nspec16): pass
class Pseudo10(_PseudoRound, Nspec16spec13): pass
class Pseudo12(_PseudoRound, Nspec12arch0): pass
class Pseudo13(_PseudoRound, MultiInstance04): pass
class Pseudo14(_PseudoRound, Nspec16arch17): pass
class Pseudo15(_PseudoRound, Nspec22aug1): pass
class Pseudo16(_PseudoRound, Nspec22arch2): pass
class Pseudo17(_PseudoRound, Nspec23arch3): pass
class Pseudo18(_PseudoRound, Nspec21): pass
class Pseudo19(_PseudoRound, Nspec22arch6): pass
class Pseudo21(_PseudoRound, Nspec22arch7): pass
class Pseudo22(_PseudoRound, Nspec23arch5): pass
class Pseudo23(_PseudoRound, Nspec22arch12): pass
class Pseudo24(_PseudoRound, Nspec30arch2): pass
class Pseudo25(_PseudoRound, Nspec25arch1): pass
class Pseudo26(_PseudoRound, Nspec22arch10): pass
class PseudoSeq03(_PseudoRound, Seq09): pass
class PseudoSeq04(_PseudoRound, Seq03aug3): pass


class PseudoSeq07(_PseudoRound, Seq12arch4):
    num_epochs = 6
    scheduler_params = dict(T_0=6, T_mult=1, eta_min=1e-6)
