"""Callbacks run by the fold loop at the end of every epoch.

Each callback keeps its own state in ``state_dict`` so that an interrupted fold resumes with
early stopping counters and snapshot bookkeeping exactly where they were.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from g2net.training.trainer import Trainer


class Callback:
    """Base class: ``on_epoch_end`` may set ``trainer.stop_training``."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, score: float) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class EarlyStopping(Callback):
    """Stop the fold when the monitored score has not improved for ``patience`` epochs."""

    def __init__(self, patience: int = 5, maximize: bool = True, min_delta: float = 0.0):
        self.patience = patience
        self.maximize = maximize
        self.min_delta = min_delta
        self._best: float | None = None
        self._bad_epochs = 0

    def on_epoch_end(self, trainer: "Trainer", epoch: int, score: float) -> None:
        improved = self._best is None or (
            score > self._best + self.min_delta if self.maximize else score < self._best - self.min_delta)
        if improved:
            self._best, self._bad_epochs = score, 0
            return
        self._bad_epochs += 1
        if self._bad_epochs >= self.patience:
            trainer.log(f"early stopping: no improvement for {self._bad_epochs} epochs")
            trainer.stop_training = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._best, "bad_epochs": self._bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._best, self._bad_epochs = state["best"], state["bad_epochs"]


class SaveSnapshot(Callback):
    """Select the best model so far: write it to the fold's partial model (``fold<k>_partial.pt``),
    which becomes ``fold<k>.pt`` when the fold finishes."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, score: float) -> None:
        if trainer.state["best_epoch"] == epoch:
            trainer.save_model(trainer.partial_path)


class SaveEveryEpoch(Callback):
    """Select the latest model every epoch (no best-model selection): it becomes ``fold<k>.pt``
    when the fold finishes."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, score: float) -> None:
        trainer.save_model(trainer.partial_path)


class SaveAllSnapshots(Callback):
    """Keep every epoch's model as ``fold<k>_epoch<e>.pt`` beside the fold checkpoint."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, score: float) -> None:
        path = Path(trainer.checkpoint_path)
        trainer.save_model(path.with_name(f"{path.stem}_epoch{epoch}{path.suffix}"))
