"""Turn a competition-layout folder into the tables and caches that training reads.

``python prep_data.py [--input DIR] [--out DIR] [--cache] [--psd] [--workers N] [--no-progress]``

Reads ``training_labels.csv`` (``id,target``) and, when present, ``sample_submission.csv`` (``id``)
from the input folder (default: ``utils.input_dir()``) and writes into the output folder (default:
the input folder; use ``--out`` when the input folder is read-only):

- ``train.csv`` (``id,target,path``) and ``test.csv`` (``id,path``), rows in the order of the source
  csv. ``path`` is relative to the folder holding the csv when the example file lies inside that
  folder (the usual case: the folder can be moved or mounted elsewhere), absolute otherwise (input
  and output folders apart). Readers resolve a relative path against the csv's own folder.
- ``--cache``: ``train_cache.npy`` / ``test_cache.npy``, float32 ``(N, 3, 4096)`` in csv row order,
  for ``np.load(path, mmap_mode='r')``, each with a sidecar ``train_cache.json`` / ``test_cache.json``
  holding the digest of its csv's ``(id, path)`` rows, shape and dtype: ``datasets.load_cache``
  refuses a cache whose csv has changed since. A run without ``--cache`` removes the caches that no
  longer match the csvs it writes.
- ``--psd``: ``psd.npy`` ``(3, 2049)``, the average one-sided PSD (strain^2/Hz) of the training
  negatives, estimated with ``spectral.estimate_psd`` from the original float64 arrays.

Every example file is read once by a pool of threads and checked (exists, ``.npy``, shape
``(3, 4096)``, dtype float64, every value finite in float32); with ``--cache`` the same read fills
the cache, so checking costs no second pass. Cache rows are written with ``os.pwrite`` at their
offset in a temporary file created by ``np.lib.format.open_memmap``: memory use stays flat whatever
N is (the file's pages belong to the OS page cache, not to this process) and a full disk is an
``OSError``, not a crash. Outputs are staged under temporary names and renamed only once every
file of both splits has passed, so a failure leaves no partial csv, cache or PSD behind; problems
are reported together in one :class:`utils.G2NetError`.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from g2net.spectral import estimate_psd
from utils import (EXAMPLE_SHAPE, SAMPLE_RATE, G2NetError, atomic_write, cache_stamp,
                   cache_stamp_path, cli_errors, commit_staged, cpu_count, example_path, format_ids,
                   input_dir, load_npy, path_arg, positive_int, read_cache_stamp, stage_file,
                   table_stamp_of_csv)

LABELS_CSV = "training_labels.csv"
SUBMISSION_CSV = "sample_submission.csv"
OUTPUT_CSV = {"train": "train.csv", "test": "test.csv"}
OUTPUT_CACHE = {"train": "train_cache.npy", "test": "test_cache.npy"}
PSD_FILE = "psd.npy"
EXAMPLE_DTYPE = np.dtype(np.float64)  # what the competition shipped
CACHE_DTYPE = np.dtype(np.float32)
ROW_BYTES = int(np.prod(EXAMPLE_SHAPE)) * CACHE_DTYPE.itemsize
FLOAT32_MAX = float(np.finfo(np.float32).max)

# Problem kinds, in the order the error message lists them, with how the message phrases them.
PROBLEM_TEXT = {
    "missing": "missing",
    "unreadable": "not readable as a .npy array",
    "shape": f"not of shape {EXAMPLE_SHAPE}",
    "dtype": f"not of dtype {EXAMPLE_DTYPE}",
    "nonfinite": "containing NaN or infinite values",
}


def prepared_files() -> list[str]:
    """Every file prep_data.py may write into an output folder (simulate.py --overwrite removes them)."""
    return [*OUTPUT_CSV.values(), *OUTPUT_CACHE.values(), *map(_stamp_name, OUTPUT_CACHE.values()),
            PSD_FILE]


def default_workers() -> int:
    """Reader threads: reading is I/O-bound and numpy releases the GIL, so more threads than CPUs."""
    return min(32, 4 * cpu_count())


@dataclass
class SplitTable:
    """One side (train or test) of the competition folder: ids, targets, example files."""

    name: str
    root: Path  # absolute input folder
    source_csv: Path
    ids: list[str]
    targets: np.ndarray | None = None  # int64 0/1 for train, None for test

    def file(self, row: int) -> Path:
        """The example file of csv row ``row`` (built on demand: no list of N paths in memory)."""
        return example_path(self.root, self.name, self.ids[row])


@dataclass
class SplitCheck:
    """What the read pass found in one split: problem row indices by kind and first details."""

    name: str
    n_rows: int
    problems: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in PROBLEM_TEXT})
    first_detail: dict[str, str] = field(default_factory=dict)

    @property
    def n_bad(self) -> int:
        return sum(len(rows) for rows in self.problems.values())


def read_id_csv(path: Path, need_target: bool) -> pd.DataFrame:
    """Read an ``id[,target]`` csv with ids kept as text (``'0012e45678'`` is not a number).

    The one check of an id list (prep_data.py and predict.py): every id is letters, digits, ``_``
    or ``-`` (no dot, no path separator: an id names a file inside the split folder), unique, and
    targets are 0/1. Raises :class:`utils.G2NetError`.
    """
    try:
        frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise G2NetError(f"{path} is not a readable csv ({exc}); restore it from the competition "
                         "data or rerun simulate.py") from None
    needed = ["id", "target"] if need_target else ["id"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise G2NetError(f"{path} has no column {', '.join(missing)} (its columns: "
                         f"{', '.join(map(str, frame.columns))}); its header line must name "
                         f"{' and '.join(needed)}")
    if len(frame) == 0:
        raise G2NetError(f"{path} lists no examples; it needs one row per example file")
    ids = frame["id"].astype(str).str.strip()
    bad_ids = ids[~ids.str.fullmatch(r"[0-9A-Za-z_-]{3,}")]
    if len(bad_ids):
        raise G2NetError(f"{path}: {len(bad_ids)} ids are not at least 3 letters/digits and so have "
                         f"no place in the competition layout: {format_ids(map(repr, bad_ids))}")
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        raise G2NetError(f"{path}: {len(duplicated)} ids appear more than once: "
                         f"{format_ids(duplicated)}; keep one row per example")
    frame = frame.assign(id=ids)
    if need_target:
        target = pd.to_numeric(frame["target"], errors="coerce")
        bad = frame["id"][~target.isin([0, 1])]
        if len(bad):
            raise G2NetError(f"{path}: {len(bad)} targets are not 0 or 1, for ids "
                             f"{format_ids(bad)}; training labels must be 0 (noise) or 1 (signal)")
        frame = frame.assign(target=target.astype(np.int64))
    return frame


def read_split(root: Path, name: str) -> SplitTable | None:
    """The train or test side of ``root``; ``None`` for a test side without ``sample_submission.csv``."""
    csv = root / (LABELS_CSV if name == "train" else SUBMISSION_CSV)
    if not csv.is_file():
        if name == "test":
            return None
        raise G2NetError(f"{csv} not found; put the competition files (or simulate.py output) in "
                         f"{root}, or point --input / G2NET_INPUT_DIR at the folder holding them")
    if not (root / name).is_dir():
        raise G2NetError(f"{csv.name} is there but the folder {root / name} with its example files "
                         "is not; unpack the competition's "
                         f"{name}/ folder next to {csv.name}")
    frame = read_id_csv(csv, need_target=(name == "train"))
    targets = frame["target"].to_numpy() if name == "train" else None
    return SplitTable(name, root.resolve(), csv, list(frame["id"]), targets)


def csv_paths(table: SplitTable, out_dir: Path) -> list[str]:
    """Paths as written in the csv: relative to ``out_dir`` when inside it, absolute otherwise."""
    out_dir = out_dir.resolve()
    try:
        prefix = table.root.relative_to(out_dir)
    except ValueError:
        prefix = table.root
    return [example_path(prefix, table.name, i).as_posix() for i in table.ids]


def load_example(path: Path) -> tuple[np.ndarray | None, tuple[str, str] | None]:
    """Read one example file and check it: ``(float64 array, None)`` or ``(None, (kind, detail))``.

    Values must stay finite in float32 too, since training and the cache use float32.
    """
    try:
        array = load_npy(path)  # thread-safe: reader threads call this
    except FileNotFoundError:
        return None, ("missing", str(path))
    except (ValueError, OSError, EOFError) as exc:
        return None, ("unreadable", f"{type(exc).__name__}: {exc}" if "npz" not in str(exc) else str(exc))
    if array.shape != EXAMPLE_SHAPE:
        return None, ("shape", f"shape {array.shape}")
    if array.dtype != EXAMPLE_DTYPE:
        return None, ("dtype", f"dtype {array.dtype}")
    finite = np.isfinite(array) & (np.abs(array) <= FLOAT32_MAX)
    if not finite.all():
        return None, ("nonfinite", f"{int(finite.size - finite.sum())} non-finite values")
    return array, None


class _Staged:
    """Output files written under temporary names in the output folder, renamed all at once
    (``utils.stage_file`` / ``utils.commit_staged``, the pieces of ``utils.atomic_write``)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.pending: list[tuple[Path, Path]] = []  # (temporary, final)

    def new(self, final_name: str) -> Path:
        """An empty temporary file for ``final_name`` (mode 0666 less the umask, like any output)."""
        tmp = stage_file(self.out_dir / final_name)
        self.pending.append((tmp, self.out_dir / final_name))
        return tmp

    def commit(self) -> list[Path]:
        for tmp, final in self.pending:
            commit_staged(tmp, final)
        done = [final for _, final in self.pending]
        self.pending = []
        return done

    def discard(self) -> None:
        for tmp, _ in self.pending:
            tmp.unlink(missing_ok=True)
        self.pending = []


def remove_stale_temporaries(out_dir: Path, printer: Callable[[str], None] = print) -> list[Path]:
    """Delete temporaries left by a prep_data run that was killed (a cache one can be many GB).

    Only files named like ours whose process no longer exists are touched.
    """
    names = prepared_files()
    removed = []
    for name in names:
        for tmp in out_dir.glob(f".{name}.*.tmp"):
            pid = tmp.name[len(name) + 2:].split(".")[0]
            if not pid.isdigit() or _process_alive(int(pid)):
                continue
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        printer(f"removed {len(removed)} temporary files of an interrupted earlier run from {out_dir}")
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class _CacheWriter:
    """A float32 ``(N, 3, 4096)`` .npy filled row by row with ``os.pwrite`` from any thread."""

    def __init__(self, path: Path, n_rows: int):
        header = np.lib.format.open_memmap(path, mode="w+", dtype=CACHE_DTYPE,
                                           shape=(n_rows, *EXAMPLE_SHAPE))
        self.offset = header.offset  # bytes of .npy header before row 0
        del header  # unmaps; the file keeps its header and its (sparse) full size
        self.fd = os.open(path, os.O_WRONLY)

    def write(self, row: int, array: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(array, dtype=CACHE_DTYPE).reshape(-1)).cast("B")
        position = self.offset + row * ROW_BYTES
        while len(data):
            written = os.pwrite(self.fd, data, position)
            data, position = data[written:], position + written

    def close(self, sync: bool) -> None:
        if self.fd >= 0:
            if sync:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1


class _PsdSum:
    """Running sum of per-example PSD estimates of the negatives, added in csv row order so that
    ``psd.npy`` is bit-identical whatever the thread timing."""

    def __init__(self) -> None:
        self.estimate = estimate_psd
        self.total: np.ndarray | None = None
        self.count = 0

    def of(self, example: np.ndarray) -> np.ndarray:
        """One example's PSD (called from the reader threads)."""
        return np.asarray(self.estimate(example, sample_rate=SAMPLE_RATE), dtype=np.float64)

    def add(self, psd: np.ndarray) -> None:
        self.total = psd.copy() if self.total is None else self.total + psd
        self.count += 1

    def mean(self) -> np.ndarray:
        return self.total / self.count


def _read_pass(split: SplitTable, cache: _CacheWriter | None, psd: _PsdSum | None, workers: int,
               progress: bool) -> SplitCheck:
    """Read every example of ``split`` once with ``workers`` threads: check, cache, sum the PSD."""
    check = SplitCheck(split.name, len(split.ids))
    negatives = split.targets == 0 if (psd is not None and split.targets is not None) else None

    def work(row: int) -> tuple[tuple[str, str] | None, np.ndarray | None]:
        array, problem = load_example(split.file(row))
        if problem is not None:
            return problem, None
        if cache is not None:
            cache.write(row, array)
        return None, psd.of(array) if negatives is not None and negatives[row] else None

    chunk = max(256, 32 * workers)  # bounded look-ahead: memory stays flat whatever N is
    verb = "caching" if cache is not None else "checking"
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prep_data")
    try:
        with tqdm(total=check.n_rows, desc=f"{split.name}: {verb}", unit="file",
                  disable=not progress, mininterval=0.5) as bar:
            for start in range(0, check.n_rows, chunk):
                rows = range(start, min(start + chunk, check.n_rows))
                for row, (problem, example_psd) in zip(rows, executor.map(work, rows)):
                    if example_psd is not None:
                        psd.add(example_psd)
                    if problem is not None:
                        kind, detail = problem
                        check.problems[kind].append(row)
                        check.first_detail.setdefault(kind, detail)
                bar.update(len(rows))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return check


def check_split(root: str | os.PathLike, name: str, csv: str | os.PathLike,
                workers: int | None = None, progress: bool = False,
                rerun: str = "prep_data.py") -> SplitTable:
    """The id csv ``csv`` read and every example file it lists under ``root/name`` checked, as
    prep_data.py checks them (:func:`read_id_csv`, :func:`load_example`): the one checker of a
    split for every entry point (predict.py too). Raises one :class:`utils.G2NetError` naming the
    count and first ids of each problem; ``rerun`` is the command the message tells to run again.
    """
    root, csv = Path(root), Path(csv)
    frame = read_id_csv(csv, need_target=False)
    table = SplitTable(name, root.resolve(), csv, list(frame["id"]))
    check = _read_pass(table, None, None, workers or default_workers(), progress)
    if check.n_bad:
        raise G2NetError(_problem_message([check], {name: table}, rerun))
    return table


def check_files(paths: Sequence[str | os.PathLike]) -> None:
    """:func:`load_example`'s checks on example files given one by one; one G2NetError for all."""
    found: dict[str, list[str]] = {}
    for path in paths:
        _, problem = load_example(Path(path))
        if problem is not None:
            found.setdefault(PROBLEM_TEXT[problem[0]], []).append(f"{path} ({problem[1]})")
    if found:
        raise G2NetError("; ".join(f"{len(items)} files {kind}: {format_ids(items, 3)}"
                                   for kind, items in found.items()) +
                         f". Every example must be a {EXAMPLE_DTYPE} .npy array of shape "
                         f"{EXAMPLE_SHAPE} with finite values")


def _problem_message(checks: Sequence[SplitCheck], tables: dict[str, SplitTable],
                     rerun: str = "prep_data.py") -> str:
    parts = []
    for check in checks:
        if not check.n_bad:
            continue
        table = tables[check.name]
        kinds = []
        for kind, rows in check.problems.items():
            if rows:
                ids = format_ids(table.ids[r] for r in rows)
                kinds.append(f"{len(rows)} {PROBLEM_TEXT[kind]} (first: {check.first_detail[kind]})"
                             f": {ids}")
        parts.append(f"{check.name}: {check.n_bad} of {check.n_rows} example files listed in "
                     f"{table.source_csv.name} are unusable -- " + "; ".join(kinds))
    return ("; ".join(parts) + ". Every example must be a float64 .npy array of shape "
            f"{EXAMPLE_SHAPE} with finite values; replace those files (or drop their rows from the "
            f"csv) and rerun {rerun}. Nothing was written.")


def _stamp_name(cache_name: str) -> str:
    return cache_stamp_path(cache_name).name


def write_cache_stamp(cache_path: str | os.PathLike, csv_path: str | os.PathLike) -> Path:
    """Tie a cache made outside :func:`prepare` (e.g. a subset copied by hand) to the csv in the
    same folder whose rows it holds, as prepare does for its own caches."""
    cache_path, csv_path = Path(cache_path), Path(csv_path)
    if csv_path.resolve().parent != cache_path.resolve().parent:
        raise G2NetError(f"{csv_path} and its cache {cache_path} must lie in the same folder")
    stamp = table_stamp_of_csv(csv_path)
    atomic_write(cache_stamp_path(cache_path), lambda f: json.dump(stamp, f, indent=1), mode="w")
    return cache_stamp_path(cache_path)


def _drop_unmatched_caches(out_dir: Path, stamps: dict[str, dict], printer: Callable[[str], None]) -> None:
    """Remove the caches (and sidecars) of ``out_dir`` that do not hold the rows of the new csvs.

    Called before the new csvs replace the old ones; a cache whose sidecar matches its new csv
    (same ids, paths and order) is kept.
    """
    for name, stamp in stamps.items():
        cache_file = out_dir / OUTPUT_CACHE[name]
        if not cache_file.exists() and not cache_stamp_path(cache_file).exists():
            continue
        old = read_cache_stamp(cache_file)
        if old is not None and old.get("table_sha256") == stamp["table_sha256"] and \
                old.get("shape") == stamp["shape"] and cache_file.exists():
            continue
        cache_stamp_path(cache_file).unlink(missing_ok=True)
        cache_file.unlink(missing_ok=True)
        printer(f"removed {cache_file}: it no longer matches {OUTPUT_CSV[name]}; rerun "
                "`python prep_data.py --cache` to rebuild it")


def _write_synced(path: Path, write: Callable) -> None:
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise G2NetError(f"cannot create the output folder {out_dir} ({exc.strerror}); "
                         "pass --out DIR with a writable folder") from None
    # The permission bits count even for root, who os.access() lets write anywhere.
    if not os.access(out_dir, os.W_OK | os.X_OK) or not out_dir.stat().st_mode & 0o222:
        raise G2NetError(f"cannot write to {out_dir} (read-only?); pass --out DIR to write the csv "
                         "files and caches somewhere else")


def _check_disk_space(out_dir: Path, n_rows: int) -> None:
    needed = n_rows * ROW_BYTES + 2 * 4096
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        raise G2NetError(f"the caches need {needed / 1e9:.2f} GB but {out_dir} has only "
                         f"{free / 1e9:.2f} GB free; free some space or pass --out DIR on a larger "
                         "disk")


def prepare(input_folder: str | os.PathLike | None = None, out_folder: str | os.PathLike | None = None,
            cache: bool = False, psd: bool = False, workers: int | None = None,
            progress: bool = True, printer: Callable[[str], None] = print) -> list[Path]:
    """Check every example file and write the csvs (and caches, PSD); return the files written.

    ``input_folder`` defaults to ``utils.input_dir()``, ``out_folder`` to ``input_folder``. Raises
    :class:`utils.G2NetError` naming the count and first ids of unusable examples; then nothing is
    written.
    """
    started = time.perf_counter()
    root = Path(input_folder) if input_folder is not None else input_dir()
    out_dir = Path(out_folder) if out_folder is not None else root
    workers = default_workers() if workers is None else workers  # 0 is refused, not the default
    if workers < 1:
        raise G2NetError(f"--workers must be at least 1, not {workers}")
    if not root.is_dir():
        raise G2NetError(f"input folder {root} not found; put the competition files (or "
                         "simulate.py output) there, or point --input / G2NET_INPUT_DIR at them")

    tables = {name: t for name in ("train", "test") if (t := read_split(root, name)) is not None}
    _check_writable(out_dir)
    remove_stale_temporaries(out_dir, printer)
    if cache:
        _check_disk_space(out_dir, sum(len(t.ids) for t in tables.values()))
    if psd and not (tables["train"].targets == 0).any():
        raise G2NetError(f"--psd averages the negatives (target 0) but {LABELS_CSV} has none")

    psd_sum = _PsdSum() if psd else None
    staged = _Staged(out_dir)
    checks = []
    try:
        for name, table in tables.items():
            writer = None
            try:
                if cache:
                    writer = _CacheWriter(staged.new(OUTPUT_CACHE[name]), len(table.ids))
                checks.append(_read_pass(table, writer, psd_sum, workers, progress))
                if writer is not None:
                    writer.close(sync=True)  # a full disk may only show up here
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise G2NetError(f"ran out of disk space writing the {name} cache in {out_dir}; "
                                     "free some space or pass --out DIR on a larger disk") from None
                raise
            finally:
                if writer is not None:
                    writer.close(sync=False)
        if any(check.n_bad for check in checks):
            raise G2NetError(_problem_message(checks, tables))

        stamps = {}
        for name, table in tables.items():
            frame = pd.DataFrame({"id": table.ids})
            if table.targets is not None:
                frame["target"] = table.targets
            frame["path"] = csv_paths(table, out_dir)
            _write_synced(staged.new(OUTPUT_CSV[name]), lambda f: frame.to_csv(f, index=False))
            stamps[name] = cache_stamp(OUTPUT_CSV[name], table.ids, frame["path"], CACHE_DTYPE.name)
        if psd_sum is not None:
            _write_synced(staged.new(PSD_FILE), lambda f: np.save(f, psd_sum.mean()))
        if cache:  # sidecars last: a kill between renames leaves a cache without one, refused
            for name, stamp in stamps.items():
                cache_stamp_path(out_dir / OUTPUT_CACHE[name]).unlink(missing_ok=True)
                _write_synced(staged.new(_stamp_name(OUTPUT_CACHE[name])),
                              lambda f: f.write(json.dumps(stamp, indent=1).encode()))
        else:
            _drop_unmatched_caches(out_dir, stamps, printer)
        written = staged.commit()
    finally:
        staged.discard()

    elapsed = time.perf_counter() - started
    n_files = sum(len(t.ids) for t in tables.values())
    for name, table in tables.items():
        summary = f"{name}: {len(table.ids)} examples"
        if table.targets is not None:
            summary += f" ({int(table.targets.sum())} positives)"
        outputs = [OUTPUT_CSV[name]] + ([OUTPUT_CACHE[name]] if cache else [])
        printer(f"{summary} -> {', '.join(str(out_dir / o) for o in outputs)}")
    if "test" not in tables:
        printer(f"test: skipped, no {SUBMISSION_CSV} in {root}")
        stale = [n for n in (OUTPUT_CSV["test"], OUTPUT_CACHE["test"]) if (out_dir / n).exists()]
        if stale:
            printer(f"warning: {', '.join(stale)} in {out_dir} are from an earlier run, not this one")
    if psd_sum is not None:
        printer(f"psd: average of {psd_sum.count} negatives -> {out_dir / PSD_FILE} "
                f"{psd_sum.mean().shape}")
    printer(f"checked {n_files} files in {elapsed:.1f} s ({n_files / max(elapsed, 1e-9):.0f} files/s, "
            f"{workers} reader threads)")
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=path_arg, default=None,
                        help="competition-layout folder (default: $G2NET_INPUT_DIR or input/)")
    parser.add_argument("--out", type=path_arg, default=None,
                        help="where the csvs, caches and psd.npy go (default: the input folder)")
    parser.add_argument("--cache", action="store_true",
                        help="also write train_cache.npy / test_cache.npy, float32 (N, 3, 4096)")
    parser.add_argument("--psd", action="store_true",
                        help="also write psd.npy (3, 2049): average one-sided PSD of the negatives")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help=f"reader threads (default: {default_workers()} here)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


@cli_errors
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    prepare(args.input, args.out, cache=args.cache, psd=args.psd, workers=args.workers,
            progress=not args.no_progress)


if __name__ == "__main__":
    main()
