"""The competition layout a simulation writes, and the record that says which run wrote it.

``training_labels.csv``, ``sample_submission.csv``, ``train/`` and ``test/`` with
``<id[0]>/<id[1]>/<id[2]>/<id>.npy`` float64 arrays (3, 4096) (``utils.example_path``), the ground
truth ``test_labels.csv`` and ``injections.csv`` (:data:`INJECTION_COLUMNS`), and ``RUN_FILE``: the
arguments that determine the bytes and whether the run finished. Both engines write through
:func:`begin_run` / :func:`save_example` / :func:`end_run`, so a folder holds one run, never two
mixed, and an interrupted run is known as such.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from g2net.simulation.banks import BANK_COLUMNS, BANK_ROW_COLUMN
from g2net.simulation.physics import DEFAULT_APPROXIMANT, F_REF
from g2net.simulation.priors import Priors
from prep_data import prepared_files
from utils import G2NetError, atomic_write

ID_SPACE = 16 ** 10


SPLITS = ("train", "test")


RUN_FILE = "simulation.json"  # this run's arguments and whether it finished


INJECTION_COLUMNS = ["id", "split", "target", *BANK_COLUMNS]


def make_ids(seed: int, count: int) -> list[str]:
    """``count`` unique 10-character lower-case hex ids, a function of the seed only."""
    if count > ID_SPACE // 4:
        raise G2NetError(f"{count} examples is more than unique 10-hex ids can comfortably name")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2 ** 32 - 1,)))
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        for value in rng.integers(0, ID_SPACE, size=count - len(ids)):
            text = f"{int(value):010x}"
            if text not in seen:
                seen.add(text)
                ids.append(text)
    return ids


def make_targets(seed: int, n_train: int, n_test: int, positive_fraction: float) -> np.ndarray:
    """Targets: round(fraction * n) positives per split, in seed-determined order."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2 ** 32 - 2,)))
    parts = []
    for n in (n_train, n_test):
        labels = np.zeros(n, dtype=np.int64)
        labels[:int(round(positive_fraction * n))] = 1
        parts.append(rng.permutation(labels))
    return np.concatenate(parts)


def save_example(path: Path, data: np.ndarray) -> None:
    """Write through a temporary name and rename, so a killed run never leaves a torn array.

    No fsync: at 150+ files/s it would dominate the run, and the csv tables, written atomically
    (with fsync) at the very end, are what marks a simulation complete.
    """
    atomic_write(path, lambda f: np.save(f, data), fsync=False)


def begin_run(out: Path, overwrite: bool, record: dict[str, Any]) -> None:
    """Check ``out``, then write RUN_FILE first (a run killed from here on is known as interrupted,
    with its arguments) and clear what the run replaces. Shared by both engines."""
    check_out_folder(out, overwrite, record)
    previous = previous_run(out)
    atomic_write(out / RUN_FILE, lambda f: json.dump(record, f, indent=1, sort_keys=True), mode="w")
    if previous is not None and _same_run(previous, record):
        # the same arguments remake the same bytes: the prepared csvs and caches stay valid
        for name in ("training_labels.csv", "test_labels.csv", "sample_submission.csv", "injections.csv"):
            (out / name).unlink(missing_ok=True)
    else:  # another run's outputs (or, with --overwrite, anything) are replaced, never mixed with
        _remove_previous_outputs(out)


def end_run(out: Path, rows: list[dict[str, Any]], columns: Sequence[str], record: dict[str, Any]) -> None:
    """Write the tables, then mark the run complete in RUN_FILE."""
    _write_tables(out, rows, columns)
    record["complete"] = True
    atomic_write(out / RUN_FILE, lambda f: json.dump(record, f, indent=1, sort_keys=True), mode="w")


def check_seed_and_workers(seed: int, workers: int) -> None:
    if seed < 0:
        raise G2NetError(f"--seed {seed}: must be >= 0")
    if workers < 1:
        raise G2NetError(f"--workers {workers}: must be >= 1")


def validate_run(out: str | Path, n_train: int, n_test: int, seed: int, workers: int,
                 overwrite: bool, record: dict[str, Any] | None = None) -> None:
    """Refuse bad counts, and an ``out`` holding data this run must not silently replace.

    ``record`` is this run's :func:`run_record`: a folder holding a finished or interrupted run
    with other arguments, or competition files simulate.py did not write, needs ``overwrite``.
    """
    check_counts(n_train, n_test, seed, workers)
    check_out_folder(out, overwrite, record)


def check_counts(n_train: int, n_test: int, seed: int, workers: int) -> None:
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise G2NetError(f"--n-train {n_train} --n-test {n_test}: need counts >= 0, not both 0")
    check_seed_and_workers(seed, workers)


def check_out_folder(out: str | Path, overwrite: bool, record: dict[str, Any] | None = None) -> None:
    """The folder part of :func:`validate_run`: what ``out`` already holds."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise G2NetError(f"--out {out} is a file; give a folder")
    if overwrite:
        return
    previous = previous_run(out)
    if previous is not None:
        if record is not None and _same_run(previous, record):
            return  # the same arguments finish an interrupted run or remake the same bytes
        if previous.get("complete", True):
            raise G2NetError(f"--out {out} already holds a finished simulation ({describe_run(previous)})"
                             "; pass --overwrite to replace it (its train.csv, test.csv, caches and "
                             "psd.npy go too) or choose another folder")
        raise G2NetError(f"--out {out} holds a simulation that was interrupted "
                         f"({describe_run(previous)}); rerun with those arguments to finish it, or "
                         "pass --overwrite to replace it")
    clash = [name for name in ("training_labels.csv", "sample_submission.csv", "train", "test")
             if (out / name).exists()]
    if clash:
        raise G2NetError(f"--out {out} already holds {', '.join(clash)} that simulate.py did not "
                         "write (no injections.csv); choose another folder or pass --overwrite")


def run_record(n_train: int, n_test: int, seed: int, priors: Priors, approximant: str,
               signal_bank: str | Path | None) -> dict[str, Any]:
    """The arguments that determine a simulation's bytes (not ``workers``), as stored in RUN_FILE."""
    return json.loads(json.dumps({
        "n_train": int(n_train), "n_test": int(n_test), "seed": int(seed),
        "approximant": approximant, "priors": dataclasses.asdict(priors),
        "signal_bank": None if signal_bank is None else str(Path(signal_bank).resolve()),
        "f_ref": F_REF, "complete": False}))


def previous_run(out: Path) -> dict[str, Any] | None:
    """The record of the simulation in ``out``: RUN_FILE, or ``{}`` (arguments unknown) for an older
    simulate.py's finished output (injections.csv alone); None when there is none."""
    try:
        record = json.loads((out / RUN_FILE).read_text())
        if isinstance(record, dict):
            return record
    except (OSError, ValueError):
        pass
    return {} if (out / "injections.csv").is_file() else None


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a) and {k: v for k, v in a.items() if k != "complete"} == \
        {k: v for k, v in b.items() if k != "complete"}


def describe_run(record: dict[str, Any]) -> str:
    """``--n-train 6 --n-test 0 --seed 7 ...``: a run's arguments for an error message."""
    if not record:
        return "arguments not recorded: made by an older simulate.py"
    words = [f"--n-train {record.get('n_train')}", f"--n-test {record.get('n_test')}",
             f"--seed {record.get('seed')}"]
    if record.get("signal_bank"):
        words.append(f"--signal-bank {record['signal_bank']}")
    if record.get("approximant") != DEFAULT_APPROXIMANT:
        words.append(f"--approximant {record.get('approximant')}")
    if record.get("f_ref") != F_REF:  # its signals' phases follow another reference frequency
        words.append(f"(made before simulate.py used f_ref {F_REF:g} Hz)")
    defaults = json.loads(json.dumps(dataclasses.asdict(Priors())))
    for name, value in (record.get("priors") or {}).items():
        if defaults.get(name) != value:
            words.append("--" + name.replace("_", "-") + " " +
                         (" ".join(f"{v:g}" for v in value) if isinstance(value, list) else
                          f"{value:g}" if isinstance(value, float) else str(value)))
    return " ".join(words)


def _remove_previous_outputs(out: Path) -> None:
    """Delete what an earlier run left in ``out``: its tables first (so a kill leaves no labels
    pointing at missing files), the prepared csvs/caches/PSD made from it, then its examples."""
    for name in ("training_labels.csv", "test_labels.csv", "sample_submission.csv", "injections.csv",
                 *prepared_files()):
        (out / name).unlink(missing_ok=True)
    for name in SPLITS:
        shutil.rmtree(out / name, ignore_errors=True)


def _write_tables(out: Path, rows: list[dict[str, Any]], columns: Sequence[str] = INJECTION_COLUMNS) -> None:
    table = pd.DataFrame(rows).reindex(columns=list(columns))
    table["target"] = table["target"].astype(int)
    table["gps_start"] = table["gps_start"].astype("Int64")
    if BANK_ROW_COLUMN in table:
        table[BANK_ROW_COLUMN] = table[BANK_ROW_COLUMN].astype("Int64")
    train = table[table["split"] == "train"]
    test = table[table["split"] == "test"]

    def csv(frame: pd.DataFrame, name: str) -> None:
        atomic_write(out / name, lambda f: frame.to_csv(f, index=False), mode="w")

    csv(train[["id", "target"]], "training_labels.csv")
    if len(test):  # without test examples there is no test side (prep_data.py then skips it)
        csv(test[["id", "target"]], "test_labels.csv")
        csv(test[["id"]].assign(target=0.5), "sample_submission.csv")
    csv(table, "injections.csv")


def load_injections(path: str | Path) -> pd.DataFrame:
    """``injections.csv`` with ids as strings (a leading zero, or an all-digit id, survives)."""
    path = Path(path)
    if not path.is_file():
        raise G2NetError(f"{path} not found; simulate.py writes it next to training_labels.csv")
    return pd.read_csv(path, dtype={"id": str, "split": str, "approximant": str})
