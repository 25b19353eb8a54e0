"""Stack trained experiments into ``results/submission.csv``.

The competition solution's last step: a ridge regression without intercept over the models'
out-of-fold probabilities, fitted per fold on that fold's out-of-fold rows, applied to the test
predictions of the same fold's models, MinMax-scaled and averaged over folds. Plain mean and
rank-mean blends are computed next to it for comparison.

The stacked out-of-fold AUC that is reported is cross-fitted: the rows of fold k are scored by the
ridges fitted on the other folds (MinMax-scaled and averaged the same way as the test set), so
it never includes rows a ridge was fitted on and is comparable with the single-model AUCs.

``g2net-submission.ipynb`` walks through these functions step by step;
``python stacking.py [--models a b c]`` runs them all (:func:`run_stacking`).
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.preprocessing import minmax_scale

from g2net.training.pseudo import sigmoid
from metrics import roc_auc
from utils import (MATCHED_FILTER, G2NetError, atomic_write, check_data_record, data_identity,
                   input_dir, load_predictions, numeric_column, output_file, read_table, results_dir,
                   unique_ids)

OOF_FILES = ("outoffolds_tta.npy", "outoffolds.npy")  # preferred first


TEST_FILES = ("predictions_tta.npy", "predictions.npy")


FOLDS_FILE = "folds.npy"


SUBMISSION_FILE = "submission.csv"


REPORT_FILE = "stacking_report.csv"


HEATMAP_FILE = "stacking_correlation.png"


STACK_NAME = "ridge_stack"


BLEND_CHOICES = (STACK_NAME, "mean", "rank_mean")


Printer = Callable[[str], None]


@dataclass
class Inputs:
    """The competition tables, rows in the order of ``train.csv`` / ``test.csv``."""

    train_ids: np.ndarray
    targets: np.ndarray  # (n_train,) 0/1
    test_ids: np.ndarray
    sample_ids: np.ndarray  # order of sample_submission.csv
    test_labels: np.ndarray | None = None  # (n_test,) aligned to test_ids, simulator only
    identity: dict | None = None  # utils.data_identity of these tables: what predictions must match

    @property
    def n_train(self) -> int:
        return len(self.train_ids)

    @property
    def n_test(self) -> int:
        return len(self.test_ids)


@dataclass
class Experiment:
    """One experiment's predictions as probabilities."""

    name: str
    test: np.ndarray  # (cv, n_test)
    oof: np.ndarray | None  # (n_train,) or None when the experiment has no usable OOF
    folds: np.ndarray | None  # (n_train,) fold of each training row, from folds.npy
    test_file: str
    oof_file: str | None
    note: str = ""  # why the experiment cannot be stacked, if it cannot
    unrecorded: list[str] = field(default_factory=list)  # files without a record of their data

    @property
    def complete_test_folds(self) -> np.ndarray:
        """Which fold rows of ``test`` hold predictions (untrained folds are NaN)."""
        return np.all(np.isfinite(self.test), axis=1)

    @property
    def test_mean(self) -> np.ndarray:
        """Fold-mean test probability over the predicted folds (what a single model would submit)."""
        return self.test[self.complete_test_folds].mean(axis=0)


@dataclass
class Blend:
    """A combination of the stacked experiments: out-of-fold and test scores."""

    name: str
    oof: np.ndarray  # (n_train,), NaN where it cannot be evaluated honestly
    test: np.ndarray  # (n_test,) in [0, 1]
    description: str
    coefficients: pd.DataFrame | None = field(default=None, repr=False)


def load_inputs(printer: Printer = print) -> Inputs:
    """Read ``train.csv``, ``test.csv``, ``sample_submission.csv`` and, if present, ``test_labels.csv``."""
    remedy = "point G2NET_INPUT_DIR at the competition folder, or make it with prep_data.py / simulate.py"
    train = read_table(input_dir() / "train.csv", ("id", "target"), remedy)
    test = read_table(input_dir() / "test.csv", ("id",), remedy)
    sample = read_table(input_dir() / "sample_submission.csv", ("id",), remedy)
    for name, table in (("train.csv", train), ("test.csv", test), ("sample_submission.csv", sample)):
        unique_ids(table, input_dir() / name, remedy)
    targets = numeric_column(train, "target", input_dir() / "train.csv", "rebuild it with prep_data.py")
    unknown = sorted(set(sample["id"]) - set(test["id"]))
    if unknown:
        raise G2NetError(f"sample_submission.csv has {len(unknown)} ids that test.csv lacks "
                         f"({', '.join(unknown[:5])}); rebuild test.csv with prep_data.py")
    labels = None
    labels_path = input_dir() / "test_labels.csv"
    if labels_path.is_file():
        table = read_table(labels_path, ("id", "target"), "rerun simulate.py, or remove it")
        unique_ids(table, labels_path, "rerun simulate.py, or remove it")
        table = table.set_index("id")["target"]
        aligned = pd.to_numeric(table.reindex(test["id"]), errors="coerce")
        if aligned.isna().any():
            printer(f"warning: {labels_path} lacks labels for {int(aligned.isna().sum())} test ids; "
                  "test AUCs are not reported")
        else:
            labels = aligned.to_numpy(dtype=np.float64)
    return Inputs(train_ids=train["id"].to_numpy(), targets=targets,
                  test_ids=test["id"].to_numpy(), sample_ids=sample["id"].to_numpy(),
                  test_labels=labels,
                  identity=data_identity(input_dir(), train["id"], targets, test["id"]))


def _first_existing(folder: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def discover_experiments(results: str | os.PathLike | None = None) -> list[str]:
    """Names of the experiment folders holding both out-of-fold and test predictions."""
    results = Path(results) if results is not None else results_dir()
    if not results.is_dir():
        return []
    return sorted(folder.name for folder in results.iterdir() if folder.is_dir()
                  and _first_existing(folder, OOF_FILES) and _first_existing(folder, TEST_FILES))


def retrain_command(name: str) -> str:
    """How to make an experiment's predictions again on the current data."""
    if name == MATCHED_FILTER:
        return "run the matched filter on the current data: python matched_filter.py --split train and --split test"
    return (f"retrain it on the current data: python train.py --config {name} (train_pseudo.py for a "
            "pseudo config)")


def check_data(name: str, folder: Path, identity: dict | None, files: Sequence[tuple[Path | None, tuple]],
               ) -> list[str]:
    """Refuse predictions of ``name`` made from other data than ``identity`` (the input folder's):
    each file against its ``utils.DATA_RECORD`` entry, on the given parts; returns the names of
    the files without a record (made before records were kept)."""
    if identity is None:
        return []
    unrecorded = []
    for path, parts in files:
        if path is not None and not check_data_record(path, identity, f"experiment '{name}'",
                                                      retrain_command(name), parts):
            unrecorded.append(path.name)
    return unrecorded


def load_experiment(name: str, n_train: int, n_test: int, identity: dict | None = None) -> Experiment:
    """Load one experiment's predictions (``*_tta.npy`` preferred) as probabilities; with
    ``identity`` (:func:`utils.data_identity` of the input folder), predictions recorded as made
    from other data are refused."""
    folder = results_dir() / name
    test_path = _first_existing(folder, TEST_FILES)
    if test_path is None:
        raise G2NetError(f"experiment '{name}' has no test predictions in {folder}; train it first "
                         f"(python train.py --config {name}, or train_pseudo.py for a pseudo config)")
    remedy = (f"predict again on the current train.csv / test.csv with `python train.py --config "
              f"{name} --inference` (train_pseudo.py for a pseudo config)")
    test = load_predictions(test_path, remedy)
    stored_shape = test.shape
    if test.ndim == 3 and test.shape[-1] == 1:
        test = test[..., 0]
    if test.ndim == 1:
        test = test[None]
    if test.ndim != 2 or test.shape[1] != n_test:
        raise G2NetError(f"experiment '{name}': {test_path.name} has shape {stored_shape}, "
                         f"expected (cv, {n_test}, 1) for the current test.csv; {remedy}")
    complete = np.all(np.isfinite(test), axis=1)
    if not complete.any():
        raise G2NetError(f"experiment '{name}': {test_path.name} holds no finite predictions "
                         f"(no fold trained yet?); {remedy}")

    oof = folds = None
    note = "" if complete.all() else \
        f"test predictions of folds {np.flatnonzero(~complete).tolist()} are NaN (not trained yet?)"
    oof_path = _first_existing(folder, OOF_FILES)
    if oof_path is None:
        note = note or "no out-of-fold predictions"
    else:
        oof = load_predictions(oof_path, remedy).reshape(-1)
        if oof.shape[0] != n_train:
            raise G2NetError(f"experiment '{name}': {oof_path.name} has {oof.shape[0]} rows but "
                             f"train.csv has {n_train}; {remedy}")
        bad = int((~np.isfinite(oof)).sum())
        if bad:
            note = note or f"{bad} out-of-fold rows are NaN/inf (not every fold trained?)"
            oof = None
    if not complete.all():
        oof = None  # an incomplete experiment cannot be stacked per fold
    if (folder / FOLDS_FILE).is_file():
        folds = load_predictions(folder / FOLDS_FILE, remedy).astype(np.int64).reshape(-1)
        if folds.shape[0] != n_train:
            raise G2NetError(f"experiment '{name}': {FOLDS_FILE} has {folds.shape[0]} rows but "
                             f"train.csv has {n_train}; {remedy}")
    unrecorded = check_data(name, folder, identity, [
        (test_path, ("train", "test", "simulation")), (oof_path, ("train", "simulation")),
        (folder / FOLDS_FILE if folds is not None else None, ("train", "simulation"))])
    return Experiment(name=name, test=sigmoid(test), oof=None if oof is None else sigmoid(oof),
                      folds=folds, test_file=test_path.name,
                      oof_file=oof_path.name if oof_path is not None else None, note=note,
                      unrecorded=unrecorded)


def load_experiments(names: Sequence[str] | None, inputs: Inputs,
                     printer: Printer = print) -> tuple[list[Experiment], list[str]]:
    """The experiments asked for (default: every complete one) and the names that were not found."""
    results = results_dir()
    discovered = names is None
    if discovered:
        names = discover_experiments(results)
        if not names:
            raise G2NetError(f"no experiment folder under {results} holds both out-of-fold and test "
                             "predictions; train some with train.py / train_pseudo.py, or set "
                             "G2NET_RESULTS_DIR")
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise G2NetError(f"--models names {', '.join(repeated)} more than once; give each experiment "
                         "once (a model stacked with itself only shares its own weight)")
    missing = [n for n in names if _first_existing(results / n, TEST_FILES) is None]
    if missing:
        printer(f"not found (no predictions under {results}): {', '.join(missing)}")
    experiments = []
    for name in names:
        if name in missing:
            continue
        try:
            experiments.append(load_experiment(name, inputs.n_train, inputs.n_test, inputs.identity))
        except G2NetError as exc:
            if not discovered:
                raise
            # e.g. a --debug run (results/<name>_debug) made on a subset of the data
            printer(f"skipping {name}: {exc}")
    if not experiments:
        raise G2NetError(f"none of the experiments has usable predictions under {results}"
                         + (f" (not found: {', '.join(missing)})" if missing else "")
                         + "; train them on the current input folder or check the names")
    for exp in experiments:
        if exp.unrecorded:
            printer(f"warning: experiment {exp.name} has no record of the data its "
                    f"{', '.join(exp.unrecorded)} came from (made before {results / exp.name}/data.json "
                    "was kept), so it cannot be checked against the input folder; retrain it to be sure")
        tta = " (TTA)" if exp.test_file.endswith("_tta.npy") else ""
        printer(f"loaded {exp.name}: test {exp.test.shape[0]} x {exp.test.shape[1]}{tta}"
                + (f", out-of-fold from {exp.oof_file}" if exp.oof is not None else f"; {exp.note}"))
    return experiments, missing


def auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (``metrics.roc_auc``), NaN when it is undefined (one class only, or NaN scores)."""
    return roc_auc(targets, scores, undefined="nan")


def stackable(experiments: Sequence[Experiment], printer: Printer = print) -> list[Experiment]:
    """The experiments with complete out-of-fold predictions; the others are named and skipped."""
    usable = [exp for exp in experiments if exp.oof is not None]
    for exp in experiments:
        if exp.oof is None:
            printer(f"skipping {exp.name} in the blends: {exp.note}")
    if not usable:
        raise G2NetError("no experiment has complete out-of-fold predictions to stack; "
                         "train at least one config on every fold with train.py")
    return usable


def oof_auc_table(experiments: Sequence[Experiment], inputs: Inputs) -> pd.DataFrame:
    """Per-model out-of-fold AUC (and test AUC with the simulator's labels), best first."""
    rows = []
    for exp in experiments:
        rows.append(dict(
            name=exp.name, kind="model",
            oof_auc=auc(inputs.targets, exp.oof) if exp.oof is not None else float("nan"),
            test_auc=auc(inputs.test_labels, exp.test_mean) if inputs.test_labels is not None
            else float("nan"),
            source=f"{exp.oof_file or '-'} / {exp.test_file}"))
    return pd.DataFrame(rows).sort_values("oof_auc", ascending=False, na_position="last",
                                          ignore_index=True)


def prediction_correlations(experiments: Sequence[Experiment]) -> pd.DataFrame:
    """Pearson correlation between the models' fold-mean test probabilities."""
    return pd.DataFrame({exp.name: exp.test_mean for exp in experiments}).corr()


def correlation_heatmap(correlations: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Save the correlation matrix as an annotated heatmap PNG (Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(correlations)
    size = 2.5 + 0.6 * n
    figure = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(correlations.to_numpy(), vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    axes.set_xticks(range(n), correlations.columns, rotation=90)
    axes.set_yticks(range(n), correlations.index)
    if n <= 25:
        for i in range(n):
            for j in range(n):
                value = correlations.iat[i, j]
                axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if abs(value) > 0.6 else "black")
    axes.set_title("correlation of test predictions")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    path = Path(path)
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    return path


def common_folds(experiments: Sequence[Experiment]) -> np.ndarray:
    """The fold of every training row, which all stacked experiments must share."""
    with_folds = [exp for exp in experiments if exp.folds is not None]
    if not with_folds:
        raise G2NetError("no stacked experiment has folds.npy (the fold of each training row), so "
                         "the ridge cannot be fitted per fold: "
                         + ", ".join(exp.name for exp in experiments)
                         + "; include an experiment trained with train.py (which writes folds.npy), "
                         "or re-run train.py --inference for these")
    reference = with_folds[0]
    differ = [exp.name for exp in with_folds[1:] if not np.array_equal(exp.folds, reference.folds)]
    if differ:
        raise G2NetError(f"experiments {', '.join(differ)} used other folds than {reference.name}; "
                         "stacking needs one split: retrain them with the same cv and seed")
    n_folds = len(np.unique(reference.folds))
    wrong = [exp.name for exp in experiments if exp.test.shape[0] not in (1, n_folds)]
    if wrong or reference.folds.min() < 0 or reference.folds.max() >= n_folds:
        raise G2NetError(f"folds.npy of {reference.name} has folds {np.unique(reference.folds)}, "
                         f"which do not match the test predictions per fold of "
                         f"{', '.join(wrong) or reference.name}; retrain them with the same cv")
    return reference.folds


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] with ``sklearn.preprocessing.minmax_scale`` (a constant input becomes 0.5,
    where sklearn would give 0)."""
    values = np.asarray(values, dtype=np.float64)
    if float(np.max(values)) - float(np.min(values)) <= 0.0:
        return np.full_like(values, 0.5, dtype=np.float64)
    return minmax_scale(values)


def ridge_stack(experiments: Sequence[Experiment], inputs: Inputs, folds: np.ndarray,
                alpha: float = 1.0) -> Blend:
    """Ridge(fit_intercept=False) per fold on that fold's OOF rows, applied to that fold's test rows.

    Test score: the mean over folds k of MinMax(ridge_k(test predictions of the fold-k models)).
    Out-of-fold score (cross-fitted, honest): rows of fold k get the mean over the other folds j
    of MinMax(ridge_j(their OOF predictions)); with a single fold it is NaN.
    """

    oof_matrix = np.stack([exp.oof for exp in experiments], axis=1)  # (n_train, M)
    fold_values = np.unique(folds)
    ridges = {}
    test_scores = []
    for k in fold_values:
        rows = folds == k
        ridge = Ridge(alpha=alpha, fit_intercept=False).fit(oof_matrix[rows], inputs.targets[rows])
        ridges[k] = ridge
        test_matrix = np.stack([exp.test[k if exp.test.shape[0] > 1 else 0]
                                for exp in experiments], axis=1)
        test_scores.append(minmax(ridge.predict(test_matrix)))
    oof = np.full(inputs.n_train, np.nan)
    if len(fold_values) > 1:
        for k in fold_values:
            rows = folds == k
            oof[rows] = np.mean([minmax(ridges[j].predict(oof_matrix[rows]))
                                 for j in fold_values if j != k], axis=0)
    coefficients = pd.DataFrame([ridges[k].coef_ for k in fold_values],
                                index=pd.Index(fold_values, name="fold"),
                                columns=[exp.name for exp in experiments])
    return Blend(STACK_NAME, oof=oof, test=np.clip(np.mean(test_scores, axis=0), 0.0, 1.0),
                 description=f"Ridge(alpha={alpha}, fit_intercept=False) per fold, "
                             "MinMax-scaled, averaged over folds; OOF cross-fitted",
                 coefficients=coefficients)


def mean_blend(experiments: Sequence[Experiment]) -> Blend:
    """Plain average of the probabilities."""
    return Blend("mean", oof=np.mean([exp.oof for exp in experiments], axis=0),
                 test=np.mean([exp.test_mean for exp in experiments], axis=0),
                 description="mean of probabilities")


def rank_mean_blend(experiments: Sequence[Experiment]) -> Blend:
    """Average of the normalised ranks: insensitive to each model's calibration."""
    from scipy.stats import rankdata

    def ranks(values: np.ndarray) -> np.ndarray:
        return rankdata(values) / len(values)

    return Blend("rank_mean", oof=np.mean([ranks(exp.oof) for exp in experiments], axis=0),
                 test=np.mean([ranks(exp.test_mean) for exp in experiments], axis=0),
                 description="mean of normalised ranks")


def make_blends(experiments: Sequence[Experiment], inputs: Inputs, alpha: float = 1.0) -> list[Blend]:
    """The ridge stack and the two simple blends over the stackable experiments."""
    folds = common_folds(experiments)
    return [ridge_stack(experiments, inputs, folds, alpha), mean_blend(experiments),
            rank_mean_blend(experiments)]


def build_report(model_table: pd.DataFrame, blends: Sequence[Blend], inputs: Inputs) -> pd.DataFrame:
    """One row per model and blend: out-of-fold AUC and (simulator only) test AUC."""
    blend_rows = pd.DataFrame([dict(
        name=blend.name, kind="blend", oof_auc=auc(inputs.targets, blend.oof) if
        np.all(np.isfinite(blend.oof)) else float("nan"),
        test_auc=auc(inputs.test_labels, blend.test) if inputs.test_labels is not None
        else float("nan"), source=blend.description) for blend in blends])
    return pd.concat([model_table, blend_rows], ignore_index=True)


def summary_lines(report: pd.DataFrame) -> list[str]:
    """The headline: the stacked OOF AUC next to the best single model's."""
    models = report[report["kind"] == "model"].dropna(subset=["oof_auc"])
    stack = report[report["name"] == STACK_NAME].iloc[0]
    lines = []
    if len(models):
        best = models.loc[models["oof_auc"].idxmax()]
        lines.append(f"stacked OOF AUC {stack['oof_auc']:.5f} (cross-fitted) vs best single model "
                     f"{best['name']} {best['oof_auc']:.5f}")
        if not np.isnan(stack["test_auc"]):
            lines.append(f"stacked test AUC {stack['test_auc']:.5f} vs {best['name']} "
                         f"{best['test_auc']:.5f}")
    return lines


def format_report(report: pd.DataFrame) -> str:
    columns = ["name", "kind", "oof_auc"] + (["test_auc"] if report["test_auc"].notna().any() else [])
    return report[columns].to_string(index=False, float_format=lambda v: f"{v:.5f}")


def submission_table(blend: Blend, inputs: Inputs) -> pd.DataFrame:
    """``id,target`` for every id of ``sample_submission.csv``, in its order."""
    by_id = pd.Series(blend.test, index=inputs.test_ids)
    target = by_id.reindex(inputs.sample_ids).to_numpy()
    return pd.DataFrame({"id": inputs.sample_ids, "target": np.clip(target, 0.0, 1.0)})


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    path = Path(path)
    atomic_write(path, lambda handle: table.to_csv(handle, index=False), mode="w")
    return path


@dataclass
class StackingOutcome:
    report: pd.DataFrame
    submission: pd.DataFrame
    blends: list[Blend]
    missing: list[str]
    paths: dict[str, Path]


def run_stacking(model_names: Sequence[str] | None = None, alpha: float = 1.0,
                 submit: str = STACK_NAME, printer: Printer = print) -> StackingOutcome:
    """Every step: load, AUC table, heatmap, stack and blends, report and submission files."""
    if submit not in BLEND_CHOICES:
        raise G2NetError(f"unknown blend '{submit}' to submit; choose one of {', '.join(BLEND_CHOICES)}")
    if not (isinstance(alpha, (int, float)) and np.isfinite(alpha) and alpha > 0):
        raise G2NetError(f"alpha {alpha!r}: the ridge regularisation must be a finite number > 0")
    results = results_dir()
    for name in (HEATMAP_FILE, REPORT_FILE, SUBMISSION_FILE):  # decided before any work
        output_file(results / name, "the results folder (G2NET_RESULTS_DIR)", overwrite=True,
                    input_folders=[input_dir()])
    inputs = load_inputs(printer)
    experiments, missing = load_experiments(model_names, inputs, printer)
    heatmap = correlation_heatmap(prediction_correlations(experiments), results / HEATMAP_FILE)
    usable = stackable(experiments, printer)
    blends = make_blends(usable, inputs, alpha)
    report = build_report(oof_auc_table(experiments, inputs), blends, inputs)
    weights = blends[0].coefficients.mean(axis=0)
    printer("ridge weights (mean over folds): "
            + ", ".join(f"{name} {weight:.3f}" for name, weight in weights.items()))
    printer(format_report(report))
    for line in summary_lines(report):
        printer(line)
    submission = submission_table(next(b for b in blends if b.name == submit), inputs)
    paths = dict(heatmap=heatmap, report=write_csv(report, results / REPORT_FILE),
                 submission=write_csv(submission, results / SUBMISSION_FILE))
    printer(f"wrote {paths['submission']} ({submit}, {len(submission)} rows), {paths['report']}, "
            f"{paths['heatmap']}")
    return StackingOutcome(report, submission, blends, missing, paths)
