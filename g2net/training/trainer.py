"""The one fold loop: train, validate, checkpoint, resume and predict.

``train.py``, ``train_pseudo.py``, ``predict.py`` and ``bench.py`` all drive a model through this
class, so AMP, gradient clipping, scheduler stepping, callbacks and checkpointing behave the same
everywhere.
"""
from __future__ import annotations

import copy
import math
import pickle
import random
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from g2net.training.callbacks import Callback
from utils import G2NetError, atomic_torch_save


class TrainHook:
    """How one batch becomes a loss. Subclass it (see ``training_extras``) for mixup and friends."""

    def forward_train(self, trainer: "Trainer", inputs: torch.Tensor, target: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        output = trainer.model(inputs)
        return trainer.criterion(output, target), output

    def forward_eval(self, trainer: "Trainer", inputs: torch.Tensor) -> torch.Tensor:
        return trainer.model(inputs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


AMP_PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(device: torch.device, enabled: bool, precision: str | None = None) -> torch.dtype | None:
    """bf16 where the GPU supports it, fp16 on older GPUs, no autocast on CPU.

    ``precision`` ('bf16' or 'fp16') forces one, e.g. to reproduce an fp16 run on a newer GPU.
    """
    if precision is not None and precision not in AMP_PRECISIONS:
        raise G2NetError(f"amp_precision must be None, 'bf16' or 'fp16', not {precision!r}")
    if not enabled or device.type != "cuda":
        return None
    if precision is not None:
        return AMP_PRECISIONS[precision]
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_checkpoint(path: str | Path, fix: str, keys: Sequence[str] = ("model",),
                    map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint holding tensors and plain values only (``weights_only=True``: never runs code).

    An unreadable, foreign or unsafe file raises one G2NetError naming it, ending with ``fix``
    (what to do about it, which depends on the command).
    """
    path = Path(path)
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise G2NetError(f"{path} is unreadable (truncated or corrupt: {exc}). {fix}") from None
        raise G2NetError(f"{path} holds Python objects beyond tensors and plain values, so it was not "
                         f"loaded (loading it could run code). {fix}") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise G2NetError(f"{path} is unreadable (truncated or corrupt: {reason}). {fix}") from None
    if not isinstance(saved, dict) or any(key not in saved for key in keys):
        raise G2NetError(f"{path} is not a checkpoint of this pipeline (it needs the entries "
                         f"{', '.join(keys)}). {fix}")
    return saved


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    """Every random generator a training step draws from, as tensors and plain values."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, key.tolist(), pos, has_gauss, gauss),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    random.setstate(state["python"])
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _to_device(batch: Any, device: torch.device) -> Any:
    non_blocking = device.type == "cuda"
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    return [b.to(device, non_blocking=non_blocking) if isinstance(b, torch.Tensor) else b for b in batch]


class Trainer:
    """Trains one fold of one experiment.

    ``checkpoint_path`` (``fold<k>.pt``) is only ever a finished fold: while the fold trains, the
    selected model goes to ``partial_path`` (``fold<k>_partial.pt``) and the full training state,
    after every epoch, to ``resume_path`` (``fold<k>_last.pt``), so that ``fit(resume=True)``
    continues bit for bit. When the fold finishes, the selected model, marked finished, replaces
    ``checkpoint_path`` in one rename: a run killed at any moment leaves the fold's previous
    finished model or the new one, never neither and never a half-trained one in its place.
    Both files hold ``{"model": state_dict, "state": {...}}``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                 checkpoint_path: str | Path, scheduler: Any = None,
                 scheduler_target: str | None = None, batch_scheduler: bool = False,
                 eval_metric: Callable[[Any, Any], float] | None = None,
                 monitor_metrics: Sequence[Callable[[Any, Any], float]] = (),
                 maximize: bool = True, callbacks: Iterable[Callback] = (),
                 hook: TrainHook | None = None, device: torch.device | str = "cpu",
                 amp: bool = True, clip_grad: str | None = "value", max_grad_norm: float = 10000.0,
                 gpu_transform: nn.Module | None = None, channels_last: bool = False,
                 amp_precision: str | None = None, log: Callable[[str], None] = print, progress_bar: bool = False,
                 loader_generator: torch.Generator | None = None, is_main: bool = True):
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion
        self.scheduler = scheduler
        self.scheduler_target = scheduler_target
        self.batch_scheduler = batch_scheduler
        self.eval_metric = eval_metric
        self.monitor_metrics = list(monitor_metrics)
        self.maximize = maximize
        self.callbacks = [copy.deepcopy(c) for c in callbacks]
        self.hook = copy.deepcopy(hook) if hook is not None else TrainHook()
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype(self.device, amp, amp_precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if clip_grad not in (None, "value", "norm"):
            raise G2NetError(f"clip_grad must be None, 'value' or 'norm', not {clip_grad!r}")
        self.clip_grad = clip_grad
        self.max_grad_norm = max_grad_norm
        self.gpu_transform = gpu_transform.to(self.device) if gpu_transform is not None else None
        self.channels_last = channels_last
        self.checkpoint_path = Path(checkpoint_path)
        self.partial_path = self.checkpoint_path.with_name(self.checkpoint_path.stem + "_partial.pt")
        self.resume_path = self.checkpoint_path.with_name(self.checkpoint_path.stem + "_last.pt")
        self.log = log if is_main else (lambda message: None)
        self.progress_bar = progress_bar and is_main
        self.loader_generator = loader_generator
        self.is_main = is_main
        self.stop_training = False
        self._epoch_examples = 0  # training examples of the last epoch, every rank's
        self._train_source: Any = None  # a generated training stream (online.OnlineSource) to checkpoint
        self.state: dict[str, Any] = {"epoch": -1, "best_score": None, "best_epoch": -1,
                                      "history": [], "finished": False}

    # ----------------------------------------------------------------- checkpoints
    def save_model(self, path: str | Path) -> None:
        """Write ``{"model", "state"}`` atomically (rank 0 only under DDP)."""
        if self.is_main:
            atomic_torch_save(path, {"model": unwrap(self.model).state_dict(),
                                     "state": copy.deepcopy(self.state)})

    def _save_resume_point(self) -> None:
        if not self.is_main:
            return
        atomic_torch_save(self.resume_path, {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "callbacks": [c.state_dict() for c in self.callbacks],
            "hook": self.hook.state_dict() if hasattr(self.hook, "state_dict") else None,
            "state": copy.deepcopy(self.state),
            "rng": rng_state(self.loader_generator),
            "train_source": self._train_source.state_dict() if self._train_source is not None else None,
        })

    def _load_resume_point(self) -> None:
        fix = "Delete it and rerun with --resume: the fold then starts again from its first epoch."
        saved = load_checkpoint(self.resume_path, fix, ("model", "optimizer", "state", "rng"), self.device)
        load_weights(self.model, saved["model"], self.resume_path,
                     "rerun without --resume to train the fold again from its first epoch")
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None and saved["scheduler"] is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        for callback, state in zip(self.callbacks, saved["callbacks"]):
            callback.load_state_dict(state)
        if saved.get("hook") is not None:
            self.hook.load_state_dict(saved["hook"])
        self.state = saved["state"]
        set_rng_state(saved["rng"], self.loader_generator)
        if self._train_source is not None and saved.get("train_source") is not None:
            self._train_source.load_state_dict(saved["train_source"])

    def load_best(self, fix: str = "Delete it and train the fold again.",
                  retrain: str = "train the fold again") -> dict[str, Any]:
        """Load the weights and state (epoch, ``finished``...) of ``checkpoint_path``; returns the
        state. ``fix`` ends the message about an unreadable file, ``retrain`` the one about weights
        of another architecture."""
        saved = load_checkpoint(self.checkpoint_path, fix, ("model", "state"), self.device)
        load_weights(self.model, saved["model"], self.checkpoint_path, retrain)
        self.state = saved["state"]
        return self.state

    # ----------------------------------------------------------------- steps
    def _prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.gpu_transform is not None:
            with torch.autocast(self.device.type, enabled=False):
                inputs = self.gpu_transform(inputs.float())
        return inputs

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _step_scheduler(self, score: float | None = None, loss: float | None = None) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(loss if self.scheduler_target == "loss" else score)
        else:
            self.scheduler.step()

    def _check_finite(self, loss_sum: torch.Tensor, epoch: int) -> None:
        if not math.isfinite(float(loss_sum)):
            raise G2NetError(f"the training loss became {float(loss_sum)} in epoch {epoch}. "
                             f"{self.kept_files()} Lower the learning rate, enable clip_grad, or "
                             "check the inputs for NaN/inf (python prep_data.py validates them).")

    def kept_files(self) -> str:
        """What a stopped fold leaves, naming only files that exist: the run's last completed epoch
        (continued by --resume) and the fold's previous finished model (unchanged)."""
        parts = []
        if self.resume_path.exists():
            parts.append(f"The last completed epoch of this run is kept in {self.resume_path}: rerun "
                         "with --resume to continue from it.")
        else:
            parts.append("No epoch of this run completed, so there is nothing to resume: rerun "
                         "without --resume to start the fold again.")
        if self.checkpoint_path.exists():
            parts.append(f"{self.checkpoint_path}, the fold's previous model, is unchanged.")
        return " ".join(parts)

    def train_one_epoch(self, loader: Iterable, epoch: int) -> float:
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        count = 0
        bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not self.progress_bar)
        for step, batch in enumerate(bar):
            inputs, target = _to_device(batch, self.device)[:2]
            inputs = self._prepare(inputs)
            if self.channels_last and inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                loss, _ = self.hook.forward_train(self, inputs, target)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.clip_grad is not None:
                self.scaler.unscale_(self.optimizer)
                params = [p for group in self.optimizer.param_groups for p in group["params"]]
                if self.clip_grad == "value":
                    nn.utils.clip_grad_value_(params, self.max_grad_norm)
                else:
                    nn.utils.clip_grad_norm_(params, self.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.batch_scheduler:
                self._step_scheduler()
            batch_size = target.shape[0]
            loss_sum += loss.detach().float() * batch_size
            count += batch_size
            if step % 50 == 0 or self.progress_bar:
                self._check_finite(loss_sum, epoch)
                bar.set_postfix(loss=f"{float(loss_sum) / count:.4f}")
        self._check_finite(loss_sum, epoch)
        mean, self._epoch_examples = self._reduce_mean(loss_sum, count)
        return mean

    def _reduce_mean(self, total: torch.Tensor, count: int) -> tuple[float, int]:
        """Mean over every rank's examples, and how many examples that was."""
        if dist.is_available() and dist.is_initialized():
            packed = torch.stack([total.float(), torch.tensor(float(count), device=total.device)])
            dist.all_reduce(packed)
            return float(packed[0] / packed[1]), int(packed[1])
        return float(total) / max(count, 1), count

    @torch.no_grad()
    def predict(self, loader: Iterable, desc: str = "predict") -> np.ndarray:
        """Logits for every example of ``loader`` in order, float32 (N, num_classes)."""
        outputs, _ = self._run_eval(loader, desc, with_target=False)
        return outputs

    @torch.no_grad()
    def _run_eval(self, loader: Iterable, desc: str, with_target: bool) -> tuple[np.ndarray, np.ndarray | None]:
        self.model.eval()
        outputs, targets = [], []
        for batch in tqdm(loader, desc=desc, leave=False, disable=not self.progress_bar):
            batch = _to_device(batch, self.device)
            inputs = batch if isinstance(batch, torch.Tensor) else batch[0]
            inputs = self._prepare(inputs)
            if self.channels_last and inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                output = self.hook.forward_eval(self, inputs)
            outputs.append(output.float().clone())  # a CUDA-graph replay (compile) reuses its output
            if with_target:
                targets.append(batch[1].float())
        out = torch.cat(outputs) if outputs else torch.zeros(0, 1)
        tgt = torch.cat(targets) if targets else None
        if dist.is_available() and dist.is_initialized():
            out = gather_ordered(out, len(loader.dataset))
            tgt = gather_ordered(tgt, len(loader.dataset)) if tgt is not None else None
        return out.cpu().numpy().astype(np.float32), (tgt.cpu().numpy() if tgt is not None else None)

    def evaluate(self, loader: Iterable, epoch: int) -> tuple[float, float, dict[str, float], np.ndarray]:
        """Validation loss, score, monitor metrics and logits."""
        output, target = self._run_eval(loader, f"epoch {epoch} valid", with_target=True)
        out_t, tgt_t = torch.from_numpy(output), torch.from_numpy(target)
        loss = float(self.criterion(out_t, tgt_t)) if len(out_t) else float("nan")
        score = float(self.eval_metric(target, output)) if self.eval_metric is not None else -loss
        monitors = {getattr(m, "name", getattr(m, "__name__", type(m).__name__)): float(m(target, output))
                    for m in self.monitor_metrics}
        return loss, score, monitors, output

    # ----------------------------------------------------------------- fold loop
    def fit(self, train_loader: Iterable, valid_loader: Iterable, num_epochs: int,
            resume: bool = False) -> dict[str, Any]:
        """Train for ``num_epochs`` (or until a callback stops), validating after every epoch."""
        self._train_source = train_loader if hasattr(train_loader, "state_dict") else None
        if resume and self.resume_path.exists():
            self._load_resume_point()
            if self._finished_on_disk():
                return self.state
            self.log(f"resumed from {self.resume_path} after epoch {self.state['epoch']}")
        else:  # a fresh start: what an earlier, interrupted run of this fold left is not continued
            if self.is_main:
                self.resume_path.unlink(missing_ok=True)
                self.partial_path.unlink(missing_ok=True)
            self.state["run"] = uuid.uuid4().hex  # ties the resume point to the model it leads to
        self.model.to(self.device)
        start = self.state["epoch"] + 1
        self.stop_training = False
        for epoch in range(start, num_epochs):
            tic = time.time()
            sampler = getattr(train_loader, "sampler", train_loader)  # an online source reseeds itself
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            train_loss = self.train_one_epoch(train_loader, epoch)
            valid_loss, score, monitors, _ = self.evaluate(valid_loader, epoch)
            lr = self.optimizer.param_groups[0]["lr"]
            if not self.batch_scheduler:
                self._step_scheduler(score=score, loss=valid_loss)
            best = self.state["best_score"]
            if best is None or (score > best if self.maximize else score < best):
                self.state["best_score"], self.state["best_epoch"] = score, epoch
            self.state["epoch"] = epoch
            seconds = time.time() - tic
            self.state["history"].append({"epoch": epoch, "train_loss": train_loss,
                                          "valid_loss": valid_loss, "score": score, "lr": lr,
                                          "seconds": seconds, "examples": self._epoch_examples,
                                          **monitors})
            extra = "".join(f" {name}={value:.5f}" for name, value in monitors.items())
            self.log(f"epoch {epoch:3d}  train_loss={train_loss:.5f}  valid_loss={valid_loss:.5f}  "
                     f"valid_auc={score:.5f}{extra}  lr={lr:.3e}  {seconds:.1f}s"
                     + ("  *" if self.state["best_epoch"] == epoch else ""))
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch, score)
            if not self.partial_path.exists():  # callbacks that save only on improvement
                self.save_model(self.partial_path)
            self._save_resume_point()
            if self.stop_training:
                break
        self.state["finished"] = True
        if self.is_main:
            self._finalise_checkpoint()
        return self.state

    def _finalise_checkpoint(self) -> None:
        """Mark the selected model finished and move it over ``checkpoint_path`` in one rename,
        then drop the resume point and the partial model.

        A kill before the rename leaves the previous ``checkpoint_path`` and the resume point
        (``--resume`` finishes again); after it, the new finished fold, whose ``run`` the
        leftover resume point shares (``--resume`` then only tidies up).
        """
        if not self.partial_path.exists():
            self.save_model(self.partial_path)
        saved = load_checkpoint(self.partial_path, "Delete it and rerun with --resume.", ("model", "state"))
        saved["state"].update({k: copy.deepcopy(v) for k, v in self.state.items()
                               if k in ("finished", "history", "best_score", "best_epoch", "run", "data")})
        saved["state"]["last_epoch"] = self.state["epoch"]
        atomic_torch_save(self.checkpoint_path, saved)  # the one rename: old finished -> new finished
        self.resume_path.unlink(missing_ok=True)
        self.partial_path.unlink(missing_ok=True)

    def _finished_on_disk(self) -> bool:
        """Whether the run of the loaded resume point already finished (killed after its model was
        renamed into place, before the resume point was removed): then only tidy up."""
        if not self.checkpoint_path.exists():
            return False
        try:
            final = load_checkpoint(self.checkpoint_path, "", ("model", "state"))["state"]
        except G2NetError:
            return False
        if not (final.get("finished") and final.get("run") is not None
                and final.get("run") == self.state.get("run")):
            return False
        self.log(f"{self.checkpoint_path} is this run's finished model; removing the resume point "
                 "left beside it")
        if self.is_main:
            self.resume_path.unlink(missing_ok=True)
            self.partial_path.unlink(missing_ok=True)
        self.state = final
        return True


def load_weights(model: nn.Module, weights: dict[str, Any], path: Path,
                 retrain: str = "train the fold again") -> None:
    """``load_state_dict`` of a checkpoint's weights; weights of another architecture (the config
    changed since the fold was trained) are one G2NetError naming the file and ``retrain``."""
    try:
        unwrap(model).load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = reason.replace("Error(s) in loading state_dict for ", "")
        raise G2NetError(f"{path} holds weights of another model than the config builds now "
                         f"({reason[:200]}); restore the config it was trained with, or "
                         f"{retrain}") from None


def gather_ordered(tensor: torch.Tensor, total: int) -> torch.Tensor:
    """Undo a DistributedSampler(shuffle=False): rank r holds rows r, r + W, r + 2W, ...

    Gathers every rank's rows, interleaves them back into dataset order and drops the sampler's
    padding, so each example appears exactly once and in order.
    """
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    interleaved = torch.stack(parts, dim=1).reshape(longest * world, *tensor.shape[1:])
    return interleaved[:total]
