"""Physics-grade evaluation of experiments on a simulated test set.

``python evaluate.py --experiments NAME [NAME ...] [--submission FILE] [--out DIR]``

Reads the simulated input folder (``utils.input_dir()``: ``test.csv`` or ``sample_submission.csv``
for the row order, ``test_labels.csv`` and ``injections.csv`` from ``simulate.py``) and each
experiment's ``results/<name>/predictions.npy`` ``(cv, N_test, 1)`` (fold mean of the logits; only
the order of the scores matters). The matched filter (``results/matched_filter/``) joins
automatically when it has been run. Writes to ``--out`` (default ``results/evaluation/``):

- ``auc.csv``: AUC with a bootstrap 95% interval;
- ``efficiency.csv`` / ``efficiency.png``: detection efficiency versus the injected network SNR
  at false-alarm probabilities 1% and 0.1%, the threshold set on the test negatives;
- ``roc.png``: ROC curves; ``auc_by_mchirp.csv``: AUC of each chirp-mass bin of the positives
  against all negatives;
- ``report.md``: the tables, linking the figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
import pandas as pd

from metrics import roc_auc
from utils import (MATCHED_FILTER, G2NetError, atomic_write, check_data_record, data_identity,
                   input_dir, load_predictions, output_file, output_folder, read_table, results_dir,
                   unique_ids)

FALSE_ALARM_PROBABILITIES = (0.01, 0.001)


N_BOOTSTRAP = 1000


MAX_BOOTSTRAP = 100_000  # beyond this the 2.5/97.5 percentiles no longer move; 1e9 would run for days


BOOTSTRAP_SEED = 0


SNR_BIN_WIDTH = 2.0


N_MCHIRP_BINS = 4


OUT_NAME = "evaluation"


OUTPUT_FILES = ("auc.csv", "efficiency.csv", "auc_by_mchirp.csv", "efficiency.png", "roc.png", "report.md")


@dataclass
class Truth:
    """The test set's ground truth, rows in the order of ``test.csv``."""

    ids: np.ndarray
    target: np.ndarray  # 0/1
    snr_network: np.ndarray  # NaN for negatives
    mchirp: np.ndarray  # NaN for negatives

    def __len__(self) -> int:
        return len(self.ids)


def load_truth(root: Path | None = None) -> Truth:
    """Labels, network SNR and chirp mass of every test example, in ``test.csv`` order."""
    root = input_dir() if root is None else Path(root)
    simulated = ("evaluate.py needs a simulated input folder: run `python simulate.py --out DIR "
                 "...` and `python prep_data.py --input DIR`, then point G2NET_INPUT_DIR at DIR")
    order_file = root / "test.csv"
    if not order_file.is_file():
        order_file = root / "sample_submission.csv"
    order = read_table(order_file, ["id"], simulated)["id"].astype(str).to_numpy()
    labels = read_table(root / "test_labels.csv", ["id", "target"], simulated)
    injections = read_table(root / "injections.csv", ["id", "target", "mass1", "mass2", "snr_network"],
                       simulated)
    unique_ids(labels, root / "test_labels.csv", simulated)
    labels = labels.set_index(labels["id"].astype(str))["target"]
    missing = [i for i in order if i not in labels.index]
    if missing:
        raise G2NetError(f"test_labels.csv lacks {len(missing)} test ids (e.g. {missing[0]}); it "
                         "belongs to another simulation: rerun simulate.py and prep_data.py")
    target = pd.to_numeric(labels.reindex(order), errors="coerce").to_numpy(dtype=np.float64)
    if not np.isin(target, (0, 1)).all():
        raise G2NetError("test_labels.csv holds targets that are not 0 or 1; rerun simulate.py")
    target = target.astype(np.int64)
    if not np.isin(target, (0, 1)).all() or target.min() == target.max():
        raise G2NetError("test_labels.csv must hold both 0 (noise) and 1 (signal) targets; "
                         "simulate a test set with positives and negatives")
    injections = injections.drop_duplicates("id").set_index(injections["id"].astype(str))
    rows = injections.reindex(order)
    positive = target == 1
    lost = int((positive & rows["snr_network"].isna().to_numpy()).sum())
    if lost:
        raise G2NetError(f"injections.csv has no SNR for {lost} positive test examples; it belongs "
                         "to another simulation: rerun simulate.py")
    snr = np.where(positive, rows["snr_network"].to_numpy(dtype=float), np.nan)
    from pycbc.conversions import mchirp_from_mass1_mass2

    mchirp = np.where(positive, mchirp_from_mass1_mass2(rows["mass1"].to_numpy(dtype=float),
                                                        rows["mass2"].to_numpy(dtype=float)), np.nan)
    return Truth(ids=order, target=target, snr_network=snr, mchirp=mchirp)


def load_scores(name: str, n_test: int, identity: dict | None = None) -> np.ndarray:
    """Fold-mean test logits ``(N_test,)`` of ``results/<name>/predictions.npy``, over the folds
    that were predicted (a run with ``--limit_fold`` leaves the others NaN). With ``identity``
    (:func:`utils.data_identity` of the test set), predictions recorded as made from another test
    set or simulation are refused."""
    path = results_dir() / name / "predictions.npy"
    retrain = ("run `python matched_filter.py --split test`" if name == MATCHED_FILTER else
               f"retrain it on the current data: python train.py --config {name} (train_pseudo.py "
               "for a pseudo config)")
    if not path.is_file():
        remedy = ("run `python matched_filter.py --split test`" if name == MATCHED_FILTER else
                  f"run `python predict.py --config {name}` (or train it) first")
        raise G2NetError(f"experiment '{name}' has no test predictions ({path}); {remedy}")
    scores = load_predictions(path, retrain)
    stored_shape = scores.shape
    if scores.ndim == 3 and scores.shape[-1] == 1:
        scores = scores[..., 0]
    if scores.ndim != 2 or scores.shape[1] != n_test:
        raise G2NetError(f"{path} has shape {stored_shape}, expected "
                         f"(cv, {n_test}, 1) for this input folder's {n_test} test examples; "
                         "predict again on the current test.csv")
    if identity is not None and not check_data_record(path, identity, f"experiment '{name}'", retrain,
                                                      ("test", "simulation")):
        print(f"warning: experiment {name} has no record of the data its predictions.npy came from "
              "(made before data.json was kept), so it cannot be checked against the input folder")
    # untrained folds are all-NaN rows (train.py --limit_fold); any other NaN is a broken file
    complete = np.isfinite(scores).all(axis=1)
    untrained = ~np.isfinite(scores).any(axis=1)
    if not complete.any() or not (complete | untrained).all():
        raise G2NetError(f"{path} holds NaN or infinite predictions; predict again")
    return scores[complete].mean(axis=0)


def load_submission(path: Path, truth: Truth) -> np.ndarray:
    """Scores of a submission csv (``id,target``) in ``test.csv`` order."""
    table = read_table(path, ["id", "target"], "a submission has the columns id,target")
    unique_ids(table, path, "regenerate the submission")
    table = table.set_index(table["id"].astype(str))
    missing = [i for i in truth.ids if i not in table.index]
    if missing:
        raise G2NetError(f"{path} lacks {len(missing)} test ids (e.g. {missing[0]}); it was made "
                         "for another test set")
    scores = pd.to_numeric(table["target"].reindex(truth.ids), errors="coerce").to_numpy(float)
    if not np.isfinite(scores).all():
        raise G2NetError(f"{path} has non-numeric or missing targets; regenerate it")
    return scores


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def resampled_aucs(target: np.ndarray, score_sets: Sequence[np.ndarray], n_resamples: int = N_BOOTSTRAP,
                   seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``(resamples, len(score_sets))`` AUCs of every score set on the same example resamples.

    A resample is a vector of multiplicities of the examples, given to ``metrics.roc_auc`` as
    sample weights; resamples holding one class only are left out. Sharing the resamples is what
    makes the difference of two experiments' AUCs a paired comparison.
    """
    target = np.asarray(target)
    score_sets = [np.asarray(s, dtype=float) for s in score_sets]
    n = len(target)
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, n_resamples, 100):  # the same draws, 100 resamples at a time
        size = min(100, n_resamples - start)
        drawn = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n)
        for weights in counts:
            row = [roc_auc(target, s, sample_weight=weights, undefined="nan") for s in score_sets]
            if not np.isnan(row[0]):
                values.append(row)
    return np.asarray(values, dtype=float).reshape(-1, len(score_sets))


def bootstrap_auc(target: np.ndarray, scores: np.ndarray, n_resamples: int = N_BOOTSTRAP,
                  seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """``(auc, low, high)``: AUC and the percentile 95% interval over example resamples."""
    values = resampled_aucs(target, [scores], n_resamples, seed)[:, 0]
    low, high = np.percentile(values, [2.5, 97.5])
    return roc_auc(target, scores), float(low), float(high)


def threshold_at(negative_scores: np.ndarray, false_alarm_probability: float) -> float:
    """Score a detection must exceed so that at most this fraction of negatives do.

    With fewer than ``1 / false_alarm_probability`` negatives it is the loudest negative (no false
    alarm at all on this set): the efficiency is then an upper estimate.
    """
    ordered = np.sort(np.asarray(negative_scores, dtype=float))[::-1]
    allowed = int(math.floor(false_alarm_probability * len(ordered) + 1e-9))
    return float(ordered[min(allowed, len(ordered) - 1)])


def snr_bin_edges(snr: np.ndarray, width: float = SNR_BIN_WIDTH) -> np.ndarray:
    """Edges on multiples of ``width``, the outer two moved in to the positives' whole-SNR range.

    SNRs drawn in 5-20 give bins 5-6, 6-8, ..., 18-20, each labelled by what it holds.
    """
    snr = snr[np.isfinite(snr)]
    low, high = math.floor(snr.min()), math.floor(snr.max()) + 1
    inner = np.arange(math.floor(low / width) * width + width, high, width)
    return np.unique(np.concatenate([[low], inner, [high]]).astype(float))


def efficiency_table(truth: Truth, scores: dict[str, np.ndarray],
                     edges: np.ndarray | None = None,
                     false_alarm_probabilities: Sequence[float] = FALSE_ALARM_PROBABILITIES
                     ) -> pd.DataFrame:
    """Fraction of positives above the threshold, per experiment, false-alarm probability and SNR bin."""
    positive = truth.target == 1
    snr = truth.snr_network[positive]
    edges = snr_bin_edges(snr) if edges is None else np.asarray(edges, dtype=float)
    which = np.digitize(snr, edges) - 1
    rows = []
    for name, values in scores.items():
        for fap in false_alarm_probabilities:
            threshold = threshold_at(values[~positive], fap)
            detected = values[positive] > threshold
            for b in range(len(edges) - 1):
                inside = which == b
                n = int(inside.sum())
                k = int(detected[inside].sum())
                eff = k / n if n else float("nan")
                rows.append({"experiment": name, "false_alarm_probability": fap,
                             "snr_low": edges[b], "snr_high": edges[b + 1],
                             "snr_mid": 0.5 * (edges[b] + edges[b + 1]), "n": n, "detected": k,
                             "efficiency": eff,
                             "error": math.sqrt(eff * (1 - eff) / n) if n else float("nan"),
                             "threshold": threshold})
    return pd.DataFrame(rows)


def mchirp_bin_edges(mchirp: np.ndarray, n_bins: int = N_MCHIRP_BINS) -> np.ndarray:
    """Quantile edges of the positives' chirp masses, rounded to 0.1 solar mass."""
    values = mchirp[np.isfinite(mchirp)]
    edges = np.unique(np.round(np.quantile(values, np.linspace(0, 1, n_bins + 1)), 1))
    edges[0], edges[-1] = min(edges[0], values.min()), max(edges[-1], values.max())
    return edges


def auc_by_mchirp(truth: Truth, scores: dict[str, np.ndarray],
                  edges: np.ndarray | None = None) -> pd.DataFrame:
    """AUC of the positives in each chirp-mass bin against all negatives."""
    positive = truth.target == 1
    edges = mchirp_bin_edges(truth.mchirp) if edges is None else np.asarray(edges, dtype=float)
    which = np.clip(np.digitize(truth.mchirp, edges) - 1, 0, len(edges) - 2)
    rows = []
    for name, values in scores.items():
        for b in range(len(edges) - 1):
            keep = ~positive | (which == b)
            n_pos = int((positive & keep).sum())
            auc = roc_auc(truth.target[keep], values[keep]) if n_pos else float("nan")
            rows.append({"experiment": name, "mchirp_low": edges[b], "mchirp_high": edges[b + 1],
                         "n_positive": n_pos, "auc": auc})
    return pd.DataFrame(rows)


def auc_table(truth: Truth, scores: dict[str, np.ndarray],
              n_resamples: int = N_BOOTSTRAP) -> pd.DataFrame:
    """AUC with its 95% interval, and the paired-bootstrap 95% interval of its difference to
    the first experiment (the same resamples for all: the test examples' own variation cancels)."""
    names = list(scores)
    values = resampled_aucs(truth.target, [scores[n] for n in names], n_resamples)
    rows = []
    for i, name in enumerate(names):
        low, high = np.percentile(values[:, i], [2.5, 97.5])
        diff = values[:, i] - values[:, 0]
        d_low, d_high = np.percentile(diff, [2.5, 97.5])
        auc = roc_auc(truth.target, scores[name])
        rows.append({"experiment": name, "auc": auc, "ci95_low": float(low), "ci95_high": float(high),
                     f"minus_{names[0]}": auc - roc_auc(truth.target, scores[names[0]]),
                     "diff_ci95_low": float(d_low), "diff_ci95_high": float(d_high)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Figures and report
# ---------------------------------------------------------------------------------------------
def _save_figure(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=110,
                                                     bbox_inches="tight"))
    plt.close(figure)


def plot_efficiency(table: pd.DataFrame, path: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faps = sorted(table["false_alarm_probability"].unique(), reverse=True)
    figure, axes = plt.subplots(1, len(faps), figsize=(5.5 * len(faps), 4.2), squeeze=False)
    for axis, fap in zip(axes[0], faps):
        for name, rows in table[table["false_alarm_probability"] == fap].groupby("experiment",
                                                                                   sort=False):
            rows = rows[rows["n"] > 0]
            axis.errorbar(rows["snr_mid"], rows["efficiency"], yerr=rows["error"], marker="o",
                          capsize=3, label=name)
        axis.set_xlabel("injected network SNR")
        axis.set_ylabel("detection efficiency")
        axis.set_ylim(-0.02, 1.02)
        axis.set_title(f"false-alarm probability {fap:g}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    _save_figure(figure, path)


def plot_roc(truth: Truth, scores: dict[str, np.ndarray], aucs: pd.DataFrame, path: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    for name, values in scores.items():
        fpr, tpr, _ = roc_curve(truth.target, values)
        auc = float(aucs.loc[aucs["experiment"] == name, "auc"].iloc[0])
        axis.plot(np.maximum(fpr, 1e-4), tpr, label=f"{name} (AUC {auc:.4f})")
    chance = np.logspace(-3, 0, 50)
    axis.plot(chance, chance, ":", color="grey", label="chance")
    axis.set_xscale("log")
    axis.set_xlim(1e-3, 1)
    axis.set_xlabel("false-positive rate")
    axis.set_ylabel("true-positive rate")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    _save_figure(figure, path)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table (no ``tabulate`` dependency)."""
    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if np.isnan(value) else f"{value:.{digits}g}"
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def efficiency_wide(table: pd.DataFrame, fap: float) -> pd.DataFrame:
    """Efficiency per SNR bin (rows) and experiment (columns) at one false-alarm probability."""
    rows = table[table["false_alarm_probability"] == fap]
    wide = rows.pivot_table(index=["snr_low", "snr_high", "n"], columns="experiment",
                            values="efficiency", sort=False).reset_index()
    wide.columns.name = None
    wide.insert(0, "SNR bin", [f"{a:g}-{b:g}" for a, b in zip(wide.pop("snr_low"),
                                                              wide.pop("snr_high"))])
    return wide


def write_report(out: Path, truth: Truth, aucs: pd.DataFrame, efficiency: pd.DataFrame,
                 by_mchirp: pd.DataFrame) -> Path:
    n_pos = int(truth.target.sum())
    n_neg = len(truth) - n_pos
    lines = ["# Evaluation report", "",
             f"Input folder `{input_dir()}`: {len(truth)} test examples, {n_pos} signals, "
             f"{n_neg} noise.", "",
             "## AUC (bootstrap 95% interval; difference to the first experiment, paired)", "", markdown_table(aucs), "",
             "![ROC curves](roc.png)", "",
             "## Detection efficiency versus injected network SNR", "",
             "Threshold: the score exceeded by the given fraction of the test negatives; the "
             "efficiency is the fraction of signals in the SNR bin above it.", "",
             "![efficiency](efficiency.png)", ""]
    for fap in FALSE_ALARM_PROBABILITIES:
        if fap * n_neg < 1:
            lines += [f"With {n_neg} negatives a false-alarm probability of {fap:g} is not "
                      "resolved: the threshold is the loudest negative.", ""]
        lines += [f"### False-alarm probability {fap:g}", "",
                  markdown_table(efficiency_wide(efficiency, fap), 3), ""]
    wide = by_mchirp.pivot_table(index=["mchirp_low", "mchirp_high", "n_positive"],
                                 columns="experiment", values="auc", sort=False).reset_index()
    wide.columns.name = None
    wide.insert(0, "chirp mass (Msun)", [f"{a:.1f}-{b:.1f}" for a, b in
                                         zip(wide.pop("mchirp_low"), wide.pop("mchirp_high"))])
    lines += ["## AUC by chirp-mass bin (positives of the bin against all negatives)", "",
              markdown_table(wide), "",
              "Tables as csv: [auc.csv](auc.csv), [efficiency.csv](efficiency.csv), "
              "[auc_by_mchirp.csv](auc_by_mchirp.csv).", ""]
    path = out / "report.md"
    atomic_write(path, lambda handle: handle.write("\n".join(lines)), mode="w")
    return path


def evaluate(experiments: Sequence[str], submission: Path | None = None,
             out: Path | None = None, n_resamples: int = N_BOOTSTRAP) -> Path:
    """Write the report and its tables and figures; returns the path of ``report.md``."""
    if not 10 <= n_resamples <= MAX_BOOTSTRAP:
        raise G2NetError(f"--bootstrap {n_resamples}: give 10 to {MAX_BOOTSTRAP} resamples")
    out = results_dir() / OUT_NAME if out is None else Path(out)
    output_folder(out, "--out", input_folders=[input_dir()])  # decided before any work
    for name in OUTPUT_FILES:
        output_file(out / name, "--out", overwrite=True,
                    inputs=[submission] if submission is not None else [])
    truth = load_truth()
    names = list(dict.fromkeys(experiments))
    if MATCHED_FILTER not in names and (results_dir() / MATCHED_FILTER / "predictions.npy").is_file():
        names.append(MATCHED_FILTER)
    identity = data_identity(input_dir(), test_ids=truth.ids)
    scores = {name: load_scores(name, len(truth), identity) for name in names}
    if submission is not None:
        scores[Path(submission).stem] = load_submission(Path(submission), truth)
    if not scores:
        raise G2NetError("nothing to evaluate: name experiments with --experiments or pass "
                         "--submission")
    out.mkdir(parents=True, exist_ok=True)
    aucs = auc_table(truth, scores, n_resamples)
    efficiency = efficiency_table(truth, scores)
    by_mchirp = auc_by_mchirp(truth, scores)
    for frame, name in ((aucs, "auc.csv"), (efficiency, "efficiency.csv"),
                        (by_mchirp, "auc_by_mchirp.csv")):
        atomic_write(out / name, lambda handle, f=frame: f.to_csv(handle, index=False), mode="w")
    plot_efficiency(efficiency, out / "efficiency.png")
    plot_roc(truth, scores, aucs, out / "roc.png")
    report = write_report(out, truth, aucs, efficiency, by_mchirp)
    print(markdown_table(aucs))
    print(f"report: {report}")
    return report
