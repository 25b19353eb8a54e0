"""The learning curve of a search: sensitive distance at fixed false-alarm rates against training time.

A config that keeps every epoch's model (``SaveAllSnapshots``: ``results/NAME/fold<k>_epoch<e>.pt``,
e.g. ``Demo2detOnlineCurve``) is searched epoch by epoch on one foreground and its slid background
(``search.py --checkpoint``), each pair scored by ``evaluate_search.py``; the training seconds and
examples seen come from the fold's ``history.csv``::

    python scripts/learning_curve.py --config Demo2detOnlineCurve --foreground strain/foreground.hdf \\
        --background strain/background.hdf --injections strain/injections.hdf --slides 16 --out curve \\
        -- --stride 0.25 --trigger-time plateau --merger-offset 1.109 --var 0.839

Everything after ``--`` goes to both searches (the background's also gets ``--slides``).
``--reference FG BG`` scores another search's trigger files (the reference matched filter's, on the
same foreground and background) beside every epoch: each row then also holds the reference's
distance and the network's distance as a fraction of it with a 90% paired interval, and the plot
draws the reference as dashed lines. Writes
``curve/fg_epoch<e>.hdf``, ``bg_epoch<e>.hdf``, ``eval_epoch<e>/`` and ``learning_curve.csv`` (one
row per epoch: training seconds, examples seen, validation AUC, and for every rate the distance,
its error, the injections found and whether the background reaches the rate) and
``learning_curve.png``. Searches already written are kept, so a killed run continues where it
stopped when run again.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g2net.experiments.runner import experiment_dir, get_config  # noqa: E402
from g2net.search.evaluation import TABLE_FARS  # noqa: E402
from g2net.training.history import HISTORY_FILE, read_history  # noqa: E402
from utils import G2NetError, cli_errors, nonnegative_int, positive_float  # noqa: E402

SNAPSHOT = re.compile(r"fold(\d+)_epoch(\d+)\.pt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="experiment whose per-epoch snapshots are searched")
    parser.add_argument("--fold", type=nonnegative_int, default=0)
    parser.add_argument("--foreground", required=True, type=Path, help="strain file with injections")
    parser.add_argument("--background", required=True, type=Path, help="noise strain file, slid")
    parser.add_argument("--injections", required=True, type=Path, help="injection file of --foreground")
    parser.add_argument("--slides", type=nonnegative_int, default=0, help="time slides of the background")
    parser.add_argument("--epochs", type=nonnegative_int, nargs="+", default=None,
                        help="only these epochs (default: every snapshot)")
    parser.add_argument("--rates", type=positive_float, nargs="+", default=list(TABLE_FARS),
                        choices=list(TABLE_FARS), metavar="RATE",
                        help="false alarms per month the curve is read at (of evaluate_search.py's "
                             f"{', '.join(f'{r:g}' for r in TABLE_FARS)})")
    parser.add_argument("--reference", type=Path, nargs=2, metavar=("FG_EVENTS", "BG_EVENTS"),
                        help="another search's foreground and background trigger files (e.g. the "
                             "reference matched filter's), scored beside every epoch")
    parser.add_argument("--out", required=True, type=Path, help="folder for the searches and the curve")
    parser.add_argument("--debug", action="store_true", help="the --debug run's snapshots")
    return parser


def snapshots(folder: Path, fold: int, epochs: Sequence[int] | None) -> dict[int, Path]:
    """``{epoch: fold<fold>_epoch<e>.pt}`` in ``folder``; every epoch asked for must be there."""
    found = {int(m.group(2)): p for p in folder.glob(f"fold{fold}_epoch*.pt")
             if (m := SNAPSHOT.fullmatch(p.name)) and int(m.group(1)) == fold}
    if not found:
        raise G2NetError(f"no snapshots fold{fold}_epoch<e>.pt in {folder}: train a config that keeps "
                         "every epoch (callbacks with SaveAllSnapshots, e.g. Demo2detOnlineCurve) first")
    if epochs is not None:
        missing = sorted(set(epochs) - set(found))
        if missing:
            raise G2NetError(f"--epochs {' '.join(map(str, missing))}: no such snapshot in {folder} "
                             f"(there are epochs {min(found)}-{max(found)})")
        found = {e: found[e] for e in epochs}
    return dict(sorted(found.items()))


REFERENCE_LABEL = "reference"


def curve_rows(epochs: dict[int, dict[str, Any]], history: list[dict[str, Any]], fold: int,
               rates: Sequence[float], label: str, reference: bool = False) -> list[dict[str, Any]]:
    """One row per epoch from the evaluations' summaries and the fold's history; with
    ``reference``, also the reference search's distance and the network's as a fraction of it."""
    by_epoch = {row["epoch"]: row for row in history if row["fold"] == fold}
    rows = []
    for epoch, summary in epochs.items():
        trained = by_epoch.get(epoch)
        if trained is None:
            raise G2NetError(f"{HISTORY_FILE} has no row for fold {fold} epoch {epoch}: it is not "
                             "this snapshot's training run")
        row: dict[str, Any] = {"epoch": epoch, "train_seconds": trained["elapsed_seconds"],
                               "examples_seen": trained["examples_seen"], "valid_auc": trained["valid_auc"]}
        search = summary["searches"][label]
        for rate in rates:
            at = search["at_far_per_month"][f"{rate:g}"]
            row[f"distance_{rate:g}"] = at["distance"]
            row[f"distance_error_{rate:g}"] = at["distance_error"]
            row[f"found_{rate:g}"] = at["found"]
            row[f"reached_{rate:g}"] = int(bool(at["reached"]))
        if reference:
            row.update(_against_reference(summary, label, rates))
        rows.append(row)
    return rows


def _against_reference(summary: dict[str, Any], label: str, rates: Sequence[float]) -> dict[str, Any]:
    """The reference's distance at each rate and the network's distance over it, with the paired
    interval of evaluate_search.py's comparison (reference first, so its ratio is network /
    reference)."""
    at = summary["searches"][REFERENCE_LABEL]["at_far_per_month"]
    pairs = {c["per_month"]: c for c in summary["comparisons"]
             if c["reference"] == REFERENCE_LABEL and c["search"] == label}
    columns: dict[str, Any] = {}
    for rate in rates:
        pair = pairs[float(rate)]
        columns[f"reference_distance_{rate:g}"] = at[f"{rate:g}"]["distance"]
        columns[f"reference_reached_{rate:g}"] = int(bool(at[f"{rate:g}"]["reached"]))
        low, high = pair["distance_ratio_interval"]
        columns[f"ratio_{rate:g}"] = pair["distance_ratio"]
        columns[f"ratio_low_{rate:g}"], columns[f"ratio_high_{rate:g}"] = low, high
    return columns


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def plot(rows: list[dict[str, Any]], rates: Sequence[float], path: Path, title: str) -> None:
    """Distance (with its error) at every reached rate, the network's fraction of the reference's
    (paired intervals; when a reference was scored) and the validation AUC, against hours trained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paired = [rate for rate in rates if rows[0].get(f"reference_reached_{rate:g}")]
    heights = (2, 1.3, 1) if paired else (2, 1)
    fig, axes = plt.subplots(len(heights), 1, figsize=(8.5, 2.2 * sum(heights) + 0.8), sharex=True,
                             height_ratios=heights)
    top, bottom = axes[0], axes[-1]
    hours = [r["train_seconds"] / 3600 for r in rows]
    colours = {}
    for rate in rates:
        points = [(h, r[f"distance_{rate:g}"], _number(r[f"distance_error_{rate:g}"]))
                  for h, r in zip(hours, rows) if r[f"reached_{rate:g}"]]
        if points:
            x, y, err = zip(*points)
            line = top.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{rate:g} / month")
            colours[rate] = line[0].get_color()
            if rate in paired:
                top.axhline(rows[0][f"reference_distance_{rate:g}"], ls="--", lw=1,
                            color=colours[rate], label=f"reference, {rate:g} / month")
    top.set_ylabel("sensitive distance (Mpc)")
    # beside the curves, never over them
    top.legend(title="false alarms", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    top.set_title(title, fontsize=9)
    if paired:
        middle = axes[1]
        dodge = 0.01 * (max(hours) - min(hours) or 1.0)  # side by side, so the intervals stay readable
        for i, rate in enumerate(paired):
            points = [(h, _number(r[f"ratio_{rate:g}"]), _number(r[f"ratio_low_{rate:g}"]),
                       _number(r[f"ratio_high_{rate:g}"])) for h, r in zip(hours, rows)
                      if r[f"reached_{rate:g}"]]
            if points:
                x, y, low, high = map(np.array, zip(*points))
                middle.errorbar(x + dodge * (i - (len(paired) - 1) / 2), y, yerr=np.vstack([y - low, high - y]),
                                marker="o", capsize=3,
                                color=colours.get(rate), label=f"{rate:g} / month")
        middle.axhline(1.0, color="k", lw=0.8)
        middle.set_ylabel("distance / reference\n(90% paired)")
    bottom.plot(hours, [r["valid_auc"] for r in rows], marker="o", color="k")
    bottom.set_ylabel("valid AUC")
    bottom.set_xlabel("training time (h, this run's wall clock)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fraction_text(row: dict[str, Any], rate: float) -> str:
    if not row.get(f"reference_reached_{rate:g}"):
        return ""
    return (f" ({_number(row[f'ratio_{rate:g}']):.3f} [{_number(row[f'ratio_low_{rate:g}']):.3f}, "
            f"{_number(row[f'ratio_high_{rate:g}']):.3f}] of the reference)")


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@cli_errors
def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    arguments = list(sys.argv[1:] if argv is None else argv)
    split = arguments.index("--") if "--" in arguments else len(arguments)
    args, search_args = build_parser().parse_args(arguments[:split]), arguments[split + 1:]
    for flag in ("--input", "--output", "--checkpoint", "--config", "--slides"):
        if flag in search_args:
            raise G2NetError(f"{flag} after --: the script sets it; give the other search.py options there")
    cfg = get_config(args.config)
    for name in ("foreground", "background", "injections"):
        if not getattr(args, name).is_file():
            raise G2NetError(f"--{name} {getattr(args, name)}: no such file")
    for path in args.reference or ():
        if not path.is_file():
            raise G2NetError(f"--reference {path}: no such trigger file")
    label = cfg.name
    if label == REFERENCE_LABEL:
        raise G2NetError(f"--config {label}: the name is taken by --reference's search in the evaluation")
    folder = experiment_dir(cfg, args.debug)
    chosen = snapshots(folder, args.fold, args.epochs)
    history = read_history(folder / HISTORY_FILE)
    if not history:
        raise G2NetError(f"no {HISTORY_FILE} in {folder}: it is written by the training run of the snapshots")
    args.out.mkdir(parents=True, exist_ok=True)

    import evaluate_search
    import search

    reference = (["--foreground-events", str(args.reference[0]), "--background-events",
                  str(args.reference[1]), "--label", REFERENCE_LABEL] if args.reference else [])
    summaries = {}
    for epoch, snapshot in chosen.items():
        outputs = {}
        for kind, strain, extra in (("fg", args.foreground, []),
                                    ("bg", args.background, ["--slides", str(args.slides)])):
            outputs[kind] = args.out / f"{kind}_epoch{epoch}.hdf"
            if not outputs[kind].exists():  # written only when finished: a rerun resumes
                search.main(["--config", cfg.name, "--input", str(strain), "--output", str(outputs[kind]),
                             "--checkpoint", str(snapshot), *(["--debug"] if args.debug else []),
                             *extra, *search_args])
        summaries[epoch] = evaluate_search.main([
            "--injections", str(args.injections), "--foreground-files", str(args.foreground), *reference,
            "--foreground-events", str(outputs["fg"]), "--background-events", str(outputs["bg"]),
            "--label", label, "--out", str(args.out / f"eval_epoch{epoch}")])
    rows = curve_rows(summaries, history, args.fold, args.rates, label, bool(args.reference))
    write_csv(rows, args.out / "learning_curve.csv")
    plot(rows, args.rates, args.out / "learning_curve.png",
         f"{cfg.name} fold {args.fold}: {args.foreground.name} against {args.slides} slides")
    for row in rows:
        reached = [f"{rate:g}/month {_number(row[f'distance_{rate:g}']):,.0f} +- "
                   f"{_number(row[f'distance_error_{rate:g}']):,.0f} Mpc" + _fraction_text(row, rate)
                   for rate in args.rates if row[f"reached_{rate:g}"]]
        print(f"epoch {row['epoch']}: {row['train_seconds']:,.0f} s, valid AUC {row['valid_auc']:.4f}; "
              + ("; ".join(reached) or "no rate reached"))
    print(f"-> {args.out / 'learning_curve.csv'}, {args.out / 'learning_curve.png'}")
    return rows


if __name__ == "__main__":
    main()
