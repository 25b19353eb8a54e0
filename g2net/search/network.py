"""A trained experiment as a search statistic: the config's test preprocessing with the data's
PSD, every fold checkpoint, the folds' mean logit (``search.py``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from g2net.search.checkpoint import SearchCheckpoint, checkpoint_path, strain_identity
from g2net.search.engine import Scorer, search_strain
from g2net.search.options import SearchOptions, check_output, trigger_attrs
from g2net.search.strain_io import StrainFile
from g2net.search.triggers import write_triggers
from g2net.spectral import tukey_window
from g2net.experiments.inference import fold_checkpoints
from g2net.experiments.runner import checkpoint_trainer, get_config
from g2net.training.runtime import setup_runtime
from g2net.whitening import inverse_asd, whiten_torch, whiten_with_psd
from transforms import BandPass, Compose, SelectDetectors, Whiten, torch_equivalent
from utils import N_SAMPLES, SAMPLE_RATE, G2NetError


class ModelScorer:
    """A trained experiment as a :class:`DetectorSplitScorer`: the config's test preprocessing
    (per detector, with ``Whiten`` dividing by the data's PSD) prepares windows, the folds'
    mean logit combines them."""

    def __init__(self, steps: list, trainers: list, device: Any, on_device: bool):
        self.steps, self.trainers, self.device, self.on_device = steps, trainers, device, on_device
        self.modules = [None if isinstance(step, Whiten) else
                        torch_equivalent(step, N_SAMPLES).to(device) for step in steps] \
            if on_device else []
        self.window = torch.from_numpy(tukey_window(N_SAMPLES)).to(device)

    def preprocess(self, batch: np.ndarray, psd: np.ndarray) -> "torch.Tensor":
        """``(B, detectors, T)`` raw windows and ``(detectors, F)`` PSD -> the model's input."""

        if not self.on_device:
            x = batch
            for step in self.steps:
                x = whiten_with_psd(x, psd, step.sample_rate) if isinstance(step, Whiten) else step(x)
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        x = torch.from_numpy(batch).to(self.device, torch.float64)
        for step, module in zip(self.steps, self.modules):
            if module is None:
                gain = torch.from_numpy(inverse_asd(psd, step.sample_rate)).to(self.device)
                x = whiten_torch(x, self.window, gain.to(torch.complex128))
            else:
                x = module(x)
        return x.float()

    def predict(self, inputs: "torch.Tensor") -> np.ndarray:
        return np.mean([t.predict([inputs])[:, 0] for t in self.trainers], axis=0)

    def prepare(self, windows: np.ndarray, psd: np.ndarray, detector: int) -> "torch.Tensor":
        return self.preprocess(windows[:, None, :], psd[None])

    def combine(self, prepared: Sequence["torch.Tensor"]) -> np.ndarray:
        return self.predict(torch.cat(list(prepared), dim=1))

    def __call__(self, batch: np.ndarray, psd: np.ndarray) -> np.ndarray:
        return self.predict(self.preprocess(batch, psd))


def config_scorer(cfg: type, debug: bool = False, gpu: Sequence[int] | None = None,
                  device_preprocess: bool | None = None,
                  checkpoints: Sequence[Path] | None = None) -> tuple[Scorer, int]:
    """``(scorer, window samples)`` of a trained experiment: the config's test preprocessing with
    ``Whiten`` using the data's PSD, every fold checkpoint (loaded as predict.py loads them; or
    ``checkpoints``, e.g. one epoch's snapshot), their mean logit. When every step acts on each detector alone (``Whiten``, ``BandPass``) the
    scorer is a :class:`DetectorSplitScorer`, so time slides reuse each detector's windows.

    ``device_preprocess`` (default: on CUDA) runs the preprocessing as batched torch modules on the
    model's device (``whiten_torch``, ``transforms.torch_equivalent``), so that a GPU is
    not fed by numpy filters on the CPU; otherwise the numpy transforms run as in training.
    """

    chain = cfg.transforms.get("test")
    steps = list(chain.transforms) if isinstance(chain, Compose) else ([] if chain is None else [chain])
    # the strain file holds exactly the config's detectors: no rows to select
    steps = [step for step in steps if not isinstance(step, SelectDetectors)]
    if cfg.transforms.get("gpu") is not None:
        raise G2NetError(f"config {cfg.name} preprocesses on the GPU (transforms['gpu']); search.py "
                         "applies the numpy test transforms with the data's PSD: use a config "
                         "without gpu_transforms")
    runtime = setup_runtime(gpu, 0, deterministic=False)
    trainers = [checkpoint_trainer(cfg, path, runtime, lambda message: None, False)
                for path in (fold_checkpoints(cfg, debug) if checkpoints is None else checkpoints)]
    on_device = runtime.device.type == "cuda" if device_preprocess is None else device_preprocess
    scorer = ModelScorer(steps, trainers, runtime.device, on_device)
    per_detector = all(isinstance(step, (Whiten, BandPass)) for step in steps)
    return (scorer if per_detector else scorer.__call__), N_SAMPLES


def config_detectors(cfg: type) -> tuple[str, ...]:
    """The detectors a config's model was trained on (``detectors`` field; H1,L1,V1 by default)."""
    return tuple(cfg.detectors)


def run(config: str, input_path: str | Path, output: str | Path, options: SearchOptions,
        debug: bool = False, gpu: Sequence[int] | None = None, progress: bool = True,
        overwrite: bool = False, checkpoints: Sequence[str | Path] | None = None,
        resume: bool = True, checkpoint_every: float = 60.0) -> dict[str, Any]:
    """Search ``input_path`` with experiment ``config``'s folds (or ``checkpoints``) into ``output``.
    Progress is saved beside ``output`` (a month of background is an hour on a CPU) and resumed
    unless ``resume`` is False; the models' files are part of the search's fingerprint."""
    output = check_output(output, input_path, overwrite)
    cfg = get_config(config)
    if checkpoints is not None:
        checkpoints = [Path(c) for c in checkpoints]
        missing = [str(c) for c in checkpoints if not c.is_file()]
        if missing or not checkpoints:
            raise G2NetError(f"--checkpoint {' '.join(missing) or '(none)'}: no such checkpoint file; "
                             f"give fold<k>.pt or fold<k>_epoch<e>.pt files of results/{cfg.name}/")
    detectors = config_detectors(cfg)
    with StrainFile(input_path, detectors, SAMPLE_RATE) as strain:
        models = fold_checkpoints(cfg, debug) if checkpoints is None else checkpoints
        scorer, window = config_scorer(cfg, debug, gpu, checkpoints=models)
        options = SearchOptions(**{**options.__dict__, "window": window})
        checkpoint = SearchCheckpoint(checkpoint_path(output), {
            "search": "search.py", "config": cfg.name, "strain": strain_identity(input_path),
            "strain_run_id": strain.run_id, "options": options.fingerprint(),
            "models": [strain_identity(m) for m in models]}, every=checkpoint_every)
        if not resume:
            checkpoint.remove()
        result = search_strain(strain, scorer, options, progress, checkpoint)
        extra = {} if checkpoints is None else {"checkpoints": ",".join(str(c) for c in checkpoints)}
        write_triggers(output, result["time"], result["stat"], result["var"],
                       trigger_attrs(strain, options, result, config=cfg.name, search="search.py", **extra),
                       slide=result["slide"])
        checkpoint.remove()
    print(f"{len(result['time'])} triggers from {result['windows']} windows over "
          f"{result['duration']:g} s of {'slid ' if options.slides.n_slides else ''}strain -> {output}")
    return result
