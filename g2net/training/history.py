"""Each run's per-epoch history as ``history.csv`` and a learning-curve PNG in ``results/<name>/``.

The history also lives in the text log and in each fold's checkpoint, but neither is something a
person plots or a script reads; the CSV is. One row per fold and epoch; the rows of a fold are
rewritten after each of its epochs (so the files follow a running training, and a resumed fold
continues its own rows), the other folds' rows are kept as they are.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from g2net.training.callbacks import Callback
from utils import atomic_write

if TYPE_CHECKING:
    from g2net.training.trainer import Trainer

HISTORY_FILE = "history.csv"
LEARNING_CURVE_FILE = "learning_curve.png"
COLUMNS = ("fold", "epoch", "train_loss", "valid_loss", "valid_auc", "lr", "seconds",
           "elapsed_seconds", "examples", "examples_seen", "best")


def fold_rows(fold: int, history: list[dict[str, Any]], best_epoch: int) -> list[dict[str, Any]]:
    """CSV rows of one fold from the trainer's ``state["history"]``: cumulative time and examples
    added, and ``best`` marking the epoch whose weights are the fold's model."""
    rows, elapsed, seen = [], 0.0, 0
    for entry in history:
        elapsed += float(entry["seconds"])
        examples = int(entry.get("examples", 0))
        seen += examples
        rows.append({"fold": fold, "epoch": int(entry["epoch"]), "train_loss": entry["train_loss"],
                     "valid_loss": entry["valid_loss"], "valid_auc": entry["score"], "lr": entry["lr"],
                     "seconds": round(float(entry["seconds"]), 3), "elapsed_seconds": round(elapsed, 3),
                     "examples": examples, "examples_seen": seen,
                     "best": int(int(entry["epoch"]) == best_epoch)})
    return rows


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``history.csv`` with numbers parsed (an absent file has no rows)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    integers = {"fold", "epoch", "examples", "examples_seen", "best"}
    return [{k: (int(v) if k in integers else float(v)) for k, v in row.items() if k in COLUMNS}
            for row in rows]


def write_history(out_dir: str | Path, fold: int, history: list[dict[str, Any]], best_epoch: int) -> Path:
    """Replace ``fold``'s rows of ``out_dir/history.csv`` (atomically) and redraw the curve."""
    path = Path(out_dir) / HISTORY_FILE
    try:
        others = [row for row in read_history(path) if row["fold"] != fold]
    except (KeyError, ValueError):  # a hand-edited or foreign file: this run's rows replace it
        others = []
    rows = sorted(others + fold_rows(fold, history, best_epoch), key=lambda r: (r["fold"], r["epoch"]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda handle: handle.write(text.getvalue()), mode="w", fsync=False)
    plot_learning_curve(rows, Path(out_dir) / LEARNING_CURVE_FILE)
    return path


def plot_learning_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """Losses and validation AUC of every fold against training time (the best epoch ringed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, auc_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    for fold in sorted({row["fold"] for row in rows}):
        mine = [row for row in rows if row["fold"] == fold]
        minutes = [row["elapsed_seconds"] / 60 for row in mine]
        line, = loss_axis.plot(minutes, [row["train_loss"] for row in mine], "-", marker=".",
                               label=f"fold {fold} train")
        loss_axis.plot(minutes, [row["valid_loss"] for row in mine], "--", marker=".",
                       color=line.get_color(), label=f"fold {fold} valid")
        auc_axis.plot(minutes, [row["valid_auc"] for row in mine], "-", marker=".",
                      color=line.get_color(), label=f"fold {fold}")
        for row, minute in zip(mine, minutes):
            if row["best"]:
                auc_axis.plot([minute], [row["valid_auc"]], "o", markersize=9, fillstyle="none",
                              color=line.get_color())
    loss_axis.set_ylabel("loss")
    auc_axis.set_ylabel("validation AUC (ring: the fold's model)")
    for axis in (loss_axis, auc_axis):
        axis.set_xlabel("training time (minutes)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100, bbox_inches="tight"),
                 fsync=False)
    plt.close(figure)


class HistoryWriter(Callback):
    """Writes the fold's rows of ``history.csv`` and the learning curve after every epoch."""

    def __init__(self, out_dir: str | Path, fold: int):
        self.out_dir = Path(out_dir)
        self.fold = fold

    def on_epoch_end(self, trainer: Trainer, epoch: int, score: float) -> None:
        if trainer.is_main:
            write_history(self.out_dir, self.fold, trainer.state["history"], trainer.state["best_epoch"])

    def __repr__(self) -> str:
        return f"HistoryWriter(fold={self.fold})"
