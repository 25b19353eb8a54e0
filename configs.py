"""Experiments. ``Baseline`` holds every field an experiment can set; experiments subclass it and
change a few fields. ``python train.py --config NAME`` trains the class called NAME into
``results/NAME/``.

Paths are relative to the input folder (``G2NET_INPUT_DIR``, default ``input/``) and resolved when a
run starts. ``name`` defaults to the class name; ``splitter`` follows ``cv`` and ``seed`` unless a
subclass sets its own.
"""
from __future__ import annotations

from sklearn.model_selection import StratifiedKFold
from torch import nn, optim

from architectures import SpectroCNN, MultiInstanceSCNN
from callbacks import EarlyStopping, SaveSnapshot
from datasets import G2NetDataset
from frontends import CQT
from loss_functions import BCEWithLogitsLoss
from metrics import AUC
from models1d_pytorch import ResNet1d
from trainer import TrainHook
from transforms import BandPass, Compose, FlipWave, GaussianNoiseSNR, Normalize, Whiten

COMPETITION_FACTORS = (4.61e-20, 4.23e-20, 1.11e-20)


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
        spectrogram=CQT, spec_params=dict(sr=2048, fmin=20, fmax=1024, hop_length=32),
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
    channels_last = False
    amp_precision = None  # autocast dtype on CUDA: None = bf16 where supported else fp16, or 'bf16' / 'fp16'
    compile = False  # torch.compile the model: False, True, or a mode ('max-autotune', 'reduce-overhead' = CUDA graphs)
    clip_grad = "value"
    max_grad_norm = 10000
    hook = TrainHook()
    callbacks: list = [EarlyStopping(patience=5, maximize=True), SaveSnapshot()]
    transforms: dict = dict(
        train=Compose([Normalize(COMPETITION_FACTORS), BandPass(lower=20, upper=500)]),
        test=Compose([Normalize(COMPETITION_FACTORS), BandPass(lower=20, upper=500)]),
        tta=Compose([Normalize(COMPETITION_FACTORS), BandPass(lower=20, upper=500),
                     FlipWave(always_apply=True)]),
    )
    pseudo_labels = None  # dict(path=parent, confident_samples=None, hard_label=False)
    debug = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        if "splitter" not in cls.__dict__ and ("cv" in cls.__dict__ or "seed" in cls.__dict__):
            cls.splitter = StratifiedKFold(n_splits=cls.cv, shuffle=True, random_state=cls.seed)


def _whitened(*extra) -> Compose:
    """Whiten with the simulator PSD, then band-pass 20-500 Hz: noise becomes unit-variance."""
    return Compose([Whiten(psd="simulator"), BandPass(lower=20, upper=500), *extra])


class Demo(Baseline):
    """A small 1D ResNet on whitened strain: trains in minutes on 2 CPU cores (``make demo``)."""
    cv = 3
    model = ResNet1d
    model_params = dict(in_channels=3, base_filters=16, kernel_size=15, stride=2, groups=1,
                        n_block=6, n_classes=1, use_bn=True, dropout=0.1)
    num_epochs = 8
    batch_size = 32
    optimizer_params = dict(lr=2e-3, weight_decay=1e-6)
    scheduler_params = dict(T_0=8, T_mult=1, eta_min=1e-5)
    transforms = dict(train=_whitened(FlipWave(p=0.5)), test=_whitened(),
                      tta=_whitened(FlipWave(always_apply=True)))


class PseudoDemo(Demo):
    """``Demo`` retrained with its own soft test labels (the competition's last round)."""
    criterion = BCEWithLogitsLoss(smooth_eps=0.025)
    pseudo_labels = dict(path="Demo", confident_samples=None, hard_label=False)


class Debug(Baseline):
    """A tiny model for tests: two folds, two epochs, deterministic."""
    cv = 2
    model = ResNet1d
    model_params = dict(in_channels=3, base_filters=8, kernel_size=7, stride=4, groups=1,
                        n_block=2, n_classes=1, use_bn=True, dropout=0.0)
    num_epochs = 2
    batch_size = 16
    deterministic = True
    optimizer_params = dict(lr=1e-3, weight_decay=1e-6)
    transforms = dict(train=_whitened(FlipWave(p=0.5)), test=_whitened(),
                      tta=_whitened(FlipWave(always_apply=True)))


class DebugPseudo(Debug):
    criterion = BCEWithLogitsLoss(smooth_eps=0.025)
    pseudo_labels = dict(path="Debug", confident_samples=None, hard_label=False)
