"""Small shared helpers: folders, user-facing errors, atomic writes, seeding, hardware detection.

Every command line tool in the project goes through these so that paths, error messages and
file-writing behaviour are the same everywhere.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

SAMPLE_RATE = 2048  # Hz, the competition's sampling rate
N_SAMPLES = 4096  # 2 s per example
DETECTORS = ("H1", "L1", "V1")  # row order of every example array
EXAMPLE_SHAPE = (len(DETECTORS), N_SAMPLES)  # one example: (3, 4096)
MATCHED_FILTER = "matched_filter"  # results/<MATCHED_FILTER>/: the matched-filter baseline, scored like an experiment


class G2NetError(Exception):
    """An error caused by the user's inputs: printed as one clear message, no traceback."""


def env_folder(variable: str, default: str) -> Path:
    """The folder an environment variable names, ``default`` when it is unset.

    A variable set to an empty (or blank) value is refused: ``Path("")`` is the current folder, so
    an empty ``G2NET_RESULTS_DIR`` would otherwise train into wherever the command was started.
    """
    value = os.environ.get(variable)
    if value is None:
        return Path(default)
    if not value.strip() or "\0" in value:
        raise G2NetError(f"{variable} is set but {'empty' if not value.strip() else 'not a path'}; "
                         f"unset it (default {default}/) or set it to a folder")
    return Path(value)


def input_dir() -> Path:
    """Folder holding the competition files (``G2NET_INPUT_DIR``, default ``input/``)."""
    return env_folder("G2NET_INPUT_DIR", "input")


def results_dir() -> Path:
    """Folder receiving every experiment's outputs (``G2NET_RESULTS_DIR``, default ``results/``)."""
    return env_folder("G2NET_RESULTS_DIR", "results")


def example_path(root: str | os.PathLike, split: str, example_id: str) -> Path:
    """Competition layout: ``root/split/<id[0]>/<id[1]>/<id[2]>/<id>.npy``."""
    return Path(root) / split / example_id[0] / example_id[1] / example_id[2] / f"{example_id}.npy"


def cli_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`G2NetError` into ``error: <message>`` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except G2NetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper


# ----------------------------------------------------------------------------- user input
def finite_float(text: str) -> float:
    """argparse ``type``: a finite real number (``nan``, ``inf`` and non-numbers are refused)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    """argparse ``type``: a finite number > 0."""
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return value


def nonnegative_float(text: str) -> float:
    """argparse ``type``: a finite number >= 0."""
    value = finite_float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return value


def _bounded(convert: Callable[[str], Any], name: str, low: Any, high: Any, why: str) -> Callable[[str], Any]:
    """argparse ``type``: ``convert(text)`` within ``[low, high]`` (``why`` explains the upper bound)."""

    def show(bound: Any) -> str:
        return f"{bound:g}" if isinstance(bound, float) else str(bound)

    def parse(text: str) -> Any:
        value = convert(text)
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"{text!r}: must be >= {show(low)}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text!r}: must be at most {show(high)}{why}")
        return value

    parse.__name__ = name
    return parse


def float_in(low: float | None = None, high: float | None = None, why: str = "") -> Callable[[str], float]:
    """argparse ``type``: a finite number in ``[low, high]``."""
    return _bounded(finite_float, "float", low, high, why)


def whole_number(text: str) -> int:
    """argparse ``type``: an integer; ``1e3`` and ``1000.0`` are read as 1000, ``1.5``, ``nan`` and
    ``inf`` are refused."""
    try:
        return int(text)
    except (TypeError, ValueError):
        pass
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not math.isfinite(value) or not value.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(value)


def int_in(low: int | None = None, high: int | None = None, why: str = "") -> Callable[[str], int]:
    """argparse ``type``: a whole number in ``[low, high]``."""
    return _bounded(whole_number, "int", low, high, why)


positive_int = int_in(1)  # argparse ``type``: a whole number >= 1 (counts, sizes, worker processes)
nonnegative_int = int_in(0)  # argparse ``type``: a whole number >= 0 (seeds, fold and GPU ids, workers)


def path_arg(text: str) -> Path:
    """argparse ``type`` of every file or folder option: a path that is not empty.

    ``Path("")`` is the current folder, so ``--out ""`` would write wherever the command was
    started; ``.`` says so explicitly.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or folder name (. for the "
                                         "current folder)")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} holds a NUL byte; give a file or folder name")
    return Path(text)


def plain_name(name: Any, what: str) -> str:
    """``name`` when it can be one file or folder name inside another folder, else G2NetError.

    Names (labels, experiment names) are not paths: empty names, ``.``, ``..`` and names with a
    path separator or a NUL byte would write outside the folder they are meant for.
    """
    if (not isinstance(name, str) or name.strip() in ("", ".", "..")
            or any(c in name for c in ("/", "\\", "\0", os.sep))):
        raise G2NetError(f"{what} {name!r} is not a plain name; give a file/folder name without "
                         "path separators or '..' (letters, digits, '-', '_', '.')")
    return name


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _check_parent(folder: Path, option: str, target: Path) -> None:
    """The nearest existing folder at or above ``folder`` is a writable folder."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise G2NetError(f"{option} {target}: {existing} is a file, not a folder; choose another path")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise G2NetError(f"{option} {target}: folder {existing} is not writable; choose another path")


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies somewhere below it (links resolved)."""
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


def _named(path: str | os.PathLike, option: str) -> Path:
    if isinstance(path, str) and not path.strip():
        raise G2NetError(f"{option} is empty; give a file or folder name (. for the current folder)")
    return Path(path)


def output_file(path: str | os.PathLike, option: str = "--output", *, overwrite: bool = False,
                inputs: Iterable[str | os.PathLike] = (),
                input_folders: Iterable[str | os.PathLike] = (),
                suffixes: Sequence[str] = ()) -> Path:
    """The one decision whether a command may write the file ``path``, taken before any work.

    Refused (:class:`G2NetError`, one line): an empty name, a folder, a name without one of
    ``suffixes`` (when given), the same file as one of ``inputs`` (writing it would destroy an input), a path
    inside one of ``input_folders`` (the competition layout or data folder the command reads), an
    existing file unless ``overwrite``, or a path under a file or a read-only folder.
    """
    path = _named(path, option)
    if path.is_dir():
        raise G2NetError(f"{option} {path} is a folder; give the name of a file to write")
    if suffixes and path.suffix not in suffixes:
        raise G2NetError(f"{option} {path}: give a file name ending in {' or '.join(suffixes)}")
    for source in inputs:
        if _same_path(path, Path(source)):
            raise G2NetError(f"{option} {path} is also an input ({source}); writing it would destroy "
                             "the input: choose another output file")
    for folder in input_folders:
        if _inside(path, Path(folder)):
            raise G2NetError(f"{option} {path} lies in {folder}, the input folder this command "
                             "reads; write the output somewhere else")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise G2NetError(f"{option} {path} already exists; pass --overwrite to replace it or "
                             "choose another name")
        if not path.is_file():
            raise G2NetError(f"{option} {path} exists and is not a regular file; choose another name")
    _check_parent(path.parent, option, path)
    return path


def output_folder(path: str | os.PathLike, option: str = "--out", *,
                  input_folders: Iterable[str | os.PathLike] = ()) -> Path:
    """Whether a command may write into the folder ``path`` (made when missing): not empty, not a
    file, not inside one of ``input_folders``, and it (or the nearest existing folder above it) is
    writable. Taken before any work."""
    path = _named(path, option)
    if path.exists() and not path.is_dir():
        raise G2NetError(f"{option} {path} is a file, not a folder; give a folder to write into")
    for folder in input_folders:
        if _inside(path, Path(folder)):
            raise G2NetError(f"{option} {path} lies in {folder}, the input folder this command "
                             "reads; write the output somewhere else")
    _check_parent(path, option, path)
    return path


def format_ids(ids: Iterable[str], limit: int = 5) -> str:
    """``'a, b, c and 7 more'``: the first few offending ids for an error message."""
    ids = list(ids)
    head = ", ".join(str(i) for i in ids[:limit])
    return head + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def stage_file(path: str | os.PathLike) -> Path:
    """An empty temporary file beside ``path`` (``.<name>.<pid>.<random>.tmp``, mode 0666 less the
    umask) to be filled and then moved over ``path`` with :func:`commit_staged`.

    The pid in the name lets a later run delete what a killed one left (prep_data does).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
    return Path(tmp)


def commit_staged(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move a staged file over ``path`` in one step (same folder, so an atomic rename)."""
    os.replace(tmp, path)


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb",
                 fsync: bool = True) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``.

    A kill at any moment leaves either the old file or the new one, never a torn one. ``fsync=False``
    skips the flush to disk (a crash of the machine, not of the process, may then lose the data).
    """
    tmp = stage_file(path)
    try:
        with open(tmp, mode) as handle:
            write(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        commit_staged(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_NPY_HEADER_LOCK = threading.Lock()


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """``np.load`` of one ``.npy`` array (no pickles) that is safe to call from several threads.

    ``np.load`` parses the header with ``ast.literal_eval``, and CPython 3.11 can fail with
    "SystemError: AST constructor recursion depth mismatch" when threads parse at once
    (python/cpython#106905, seen here on 3.11.7); the header is read under a lock, the data outside.
    """
    with open(path, "rb") as handle:
        if handle.read(2) == b"PK":
            raise ValueError("an .npz archive, not an .npy array")
        handle.seek(0)
        with _NPY_HEADER_LOCK:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                handle.seek(0)
                return np.load(handle, allow_pickle=False)
        if dtype.hasobject:
            raise ValueError("an array of Python objects (pickles are refused)")
        count = int(np.prod(shape, dtype=np.int64))
        expected = handle.tell() + count * dtype.itemsize
        size = os.fstat(handle.fileno()).st_size
        if size > expected:  # np.load ignores what follows the array: a concatenated or torn file
            raise ValueError(f"{size - expected} bytes of trailing data after the {shape} array")
        data = np.fromfile(handle, dtype=dtype, count=count)
        if data.size != count:
            raise EOFError(f"the file ends after {data.size} of {count} values")
        return data.reshape(shape, order="F" if fortran_order else "C")


def load_predictions(path: str | os.PathLike, remedy: str) -> np.ndarray:
    """A predictions array (logits or probabilities) as float64, or one G2NetError naming ``path``.

    The one reader of ``predictions*.npy`` / ``outoffolds*.npy``: truncated files, trailing bytes,
    archives, pickles and non-real dtypes are refused; ``remedy`` says how to make the file again.
    """
    path = Path(path)
    if not path.is_file():
        raise G2NetError(f"{path} not found; {remedy}")
    try:
        array = load_npy(path)
    except (ValueError, OSError, EOFError) as exc:
        raise G2NetError(f"{path} is not a readable predictions array ({exc}); {remedy}") from None
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise G2NetError(f"{path} holds {array.dtype} values, not real numbers; {remedy}")
    return array.astype(np.float64)


def file_digest(path: str | Path) -> str:
    """sha256 of a file: which checkpoint made a set of predictions, which injection file a set of
    optimal SNRs belongs to (memoised per version of the file)."""
    info = os.stat(path)
    return _digest(str(Path(path).resolve()), info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=64)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def table_digest(ids: Iterable[str], paths: Iterable[str]) -> str:
    """SHA-256 of a table's ``(id, path)`` rows in order: what ties a cache to the csv it mirrors."""
    digest = hashlib.sha256()
    for example_id, path in zip(ids, paths, strict=True):
        digest.update(f"{example_id}\t{path}\n".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- data identity
DATA_RECORD = "data.json"  # in an experiment folder: which data each predictions file was made from
SIMULATION_RECORD = "simulation.json"  # in a simulated input folder: the run that made its bytes

DATA_PARTS = {"train": "train.csv (its ids or labels)", "test": "test.csv (its ids)",
              "simulation": f"{SIMULATION_RECORD} (another simulation run)"}


def rows_digest(ids: Iterable[Any], targets: Iterable[Any] | None = None) -> str:
    """SHA-256 of a table's ids (and targets, as floats) in order: which examples, which labels."""
    digest = hashlib.sha256()
    if targets is None:
        for example_id in ids:
            digest.update(f"{example_id}\n".encode())
    else:
        for example_id, target in zip(ids, targets, strict=True):
            digest.update(f"{example_id}\t{float(target)!r}\n".encode())
    return digest.hexdigest()


def simulation_digest(folder: str | os.PathLike) -> str | None:
    """SHA-256 of the simulation record in ``folder`` (its arguments, not whether it finished), or
    None for data that was not simulated there."""
    try:
        record = json.loads((Path(folder) / SIMULATION_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    record = {k: v for k, v in record.items() if k != "complete"}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def data_identity(folder: str | os.PathLike, train_ids: Iterable[Any] | None = None,
                  train_targets: Iterable[Any] | None = None,
                  test_ids: Iterable[Any] | None = None) -> dict[str, Any]:
    """Which data a command sees: digests of the training ids and labels, of the test ids (in
    order), and of the simulation record of ``folder`` (the input folder). Parts not given are
    absent; this record travels with every predictions file (:func:`write_data_record`)."""
    identity: dict[str, Any] = {"simulation": simulation_digest(folder)}
    if train_ids is not None:
        identity["train"] = rows_digest(train_ids, train_targets)
    if test_ids is not None:
        identity["test"] = rows_digest(test_ids)
    return identity


def identity_differences(recorded: dict[str, Any], current: dict[str, Any],
                         parts: Iterable[str] = tuple(DATA_PARTS)) -> list[str]:
    """The parts (of ``parts``) on which two identities disagree; a part either side lacks (or
    records as None) is not compared."""
    return [part for part in parts
            if recorded.get(part) is not None and current.get(part) is not None
            and recorded[part] != current[part]]


def describe_differences(parts: Iterable[str]) -> str:
    return ", ".join(DATA_PARTS[part] for part in parts)


def read_data_record(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``files`` entries of ``folder/DATA_RECORD`` (empty when missing or unreadable)."""
    try:
        record = json.loads((Path(folder) / DATA_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    files = record.get("files") if isinstance(record, dict) else None
    return files if isinstance(files, dict) else {}


def write_data_record(folder: str | os.PathLike, files: dict[str, dict[str, Any]]) -> None:
    """Record, for each file name of ``files`` (written in ``folder`` just before), the identity of
    the data its rows belong to and the file's own sha256; other entries of the record are kept."""
    folder = Path(folder)
    entries = read_data_record(folder)
    for name, identity in files.items():
        entries[name] = {**identity, "sha256": file_sha256(folder / name)}
    atomic_write(folder / DATA_RECORD,
                 lambda f: f.write(json.dumps({"files": entries}, indent=1, sort_keys=True)), mode="w")


def check_data_record(path: str | os.PathLike, current: dict[str, Any], what: str, remedy: str,
                      parts: Iterable[str] = tuple(DATA_PARTS)) -> bool:
    """Refuse a predictions file made from other data than ``current`` (one G2NetError naming
    ``what``, the experiment, and ``remedy``, how to make it again); True when it was checked, False
    when its folder holds no record of it (made before records were kept)."""
    path = Path(path)
    entry = read_data_record(path.parent).get(path.name)
    if not isinstance(entry, dict):
        return False
    if entry.get("sha256") != file_sha256(path):
        raise G2NetError(f"{what}: {path} is not the file its {DATA_RECORD} describes (it changed "
                         f"since it was written); {remedy}")
    differ = identity_differences(entry, current, parts)
    if differ:
        raise G2NetError(f"{what}: {path.name} was made from other data than the input folder "
                         f"holds now (another {describe_differences(differ)}); {remedy}")
    return True


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_stamp_path(cache_path: str | os.PathLike) -> Path:
    """The sidecar ``<name>.json`` beside a cache (``train_cache.npy`` -> ``train_cache.json``)."""
    return Path(cache_path).with_suffix(".json")


def cache_stamp(table_name: str, ids: Iterable[str], paths: Iterable[str],
                dtype: str = "float32") -> dict[str, Any]:
    """What a cache's sidecar records: the csv (a name in the cache's folder) whose rows it holds,
    the digest of that csv's ``(id, path)`` rows, and the array's shape and dtype."""
    ids, paths = list(ids), list(paths)
    return {"table": table_name, "rows": len(ids), "shape": [len(ids), *EXAMPLE_SHAPE],
            "dtype": dtype, "table_sha256": table_digest(ids, paths)}


def table_stamp_of_csv(csv_path: str | os.PathLike, dtype: str = "float32") -> dict[str, Any]:
    """:func:`cache_stamp` of a prepared csv as it is on disk (raw ``id`` and ``path`` text)."""
    import pandas as pd

    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    return cache_stamp(Path(csv_path).name, frame["id"], frame["path"], dtype)


def read_cache_stamp(cache_path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar of a cache, or None when it is missing or unreadable."""
    try:
        stamp = json.loads(cache_stamp_path(cache_path).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def cpu_count() -> int:
    """CPUs this process may use (respects affinity masks and containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def default_num_workers() -> int:
    """DataLoader workers: all CPUs but one, none on a 1-2 core machine (workers only add overhead)."""
    n = cpu_count()
    return 0 if n <= 2 else min(n - 1, 16)


def cap_workers(requested: int, option: str, tasks: int | None = None,
                printer: Callable[[str], None] = print) -> int:
    """``requested`` worker processes, capped at this machine's CPUs (and at ``tasks``, when given):
    more processes than CPUs only cost memory, a million of them gets the command killed. The cap
    is said in one line."""
    limit = cpu_count() if tasks is None else max(1, min(cpu_count(), tasks))
    if requested <= limit:
        return requested
    printer(f"{option} {requested}: this machine has {cpu_count()} CPUs"
            + (f" and the job {tasks} tasks" if tasks is not None and tasks < cpu_count() else "")
            + f"; using {limit} processes")
    return limit


def free_disk(path: str | os.PathLike) -> int:
    """Bytes free on the file system that ``path`` (or the nearest existing folder above it) is on."""
    existing = Path(os.path.abspath(path))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes of memory a new allocation can still get: the kernel's ``MemAvailable``, lowered to
    what the container's cgroup limit leaves; None where neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            found.append(max(limit - usage, 0))
    return min(found) if found else None


def gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def check_room(request: str, folder: str | os.PathLike, disk: int = 0, memory: int = 0,
               remedy: str = "ask for less") -> None:
    """Refuse (one G2NetError) a request that needs more disk under ``folder`` or more memory than
    this machine has free, before any of it is started. ``request`` names it (the options),
    ``remedy`` says what to change."""
    if disk > 0:
        free = free_disk(folder)
        if disk > free:
            raise G2NetError(f"{request} needs about {gigabytes(disk)} of disk but {folder} has "
                             f"{gigabytes(free)} free; {remedy}")
    if memory > 0:
        free = available_memory()
        if free is not None and memory > free:
            raise G2NetError(f"{request} needs about {gigabytes(memory)} of memory but this machine "
                             f"has {gigabytes(free)} available; {remedy}")


def print_config(cfg: Any, printer: Callable[[str], None] = print) -> None:
    """Print every public field of a config class (its own and inherited), one per line."""
    printer(f"config: {cfg.__name__ if isinstance(cfg, type) else type(cfg).__name__}")
    names = sorted({n for klass in type.mro(cfg if isinstance(cfg, type) else type(cfg))
                    for n in vars(klass) if not n.startswith("_")})
    for name in names:
        value = getattr(cfg, name)
        if callable(value) and not isinstance(value, type) and not hasattr(value, "__dict__"):
            continue
        printer(f"  {name}: {value!r}")


def notify_me(message: str, timeout: float = 5.0) -> bool:
    """Post ``message`` to the webhook named by ``G2NET_WEBHOOK_URL``; silently do nothing otherwise.

    Returns True when a post was made. Network failures are swallowed: a notification must never
    kill a training run.
    """
    url = os.environ.get("G2NET_WEBHOOK_URL")
    if not url:
        return False
    data = json.dumps({"text": message}).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
        return True
    except Exception:
        return False


def read_table(path: str | os.PathLike, columns: Iterable[str], remedy: str):
    """A csv with ids kept as text, checked to exist, to be a readable csv and to hold ``columns``.

    ``remedy`` finishes the error message: what the user should run or provide.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise G2NetError(f"{path} not found; {remedy}")
    try:
        table = pd.read_csv(path, dtype={"id": str})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise G2NetError(f"{path} is not a readable csv ({reason}); {remedy}") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise G2NetError(f"{path} has no column {', '.join(missing)}; {remedy}")
    return table


def numeric_column(table: Any, column: str, path: str | os.PathLike, remedy: str,
                   low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """``table[column]`` as float64, every value a number in ``[low, high]``, or one G2NetError
    naming the first offending ids (labels such as ``yes``, empty cells, NaN)."""
    import pandas as pd

    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(values) & (values >= low) & (values <= high))
    if bad.any():
        ids = table["id"][bad] if "id" in table else np.flatnonzero(bad)
        raise G2NetError(f"{path}: {int(bad.sum())} {column} values are not numbers in "
                         f"[{low:g}, {high:g}] (ids {format_ids(map(str, ids))}); {remedy}")
    return values


def unique_ids(table: Any, path: str | os.PathLike, remedy: str) -> None:
    """Refuse a table listing an id more than once (its rows could not be told apart)."""
    ids = table["id"].astype(str)
    repeated = ids[ids.duplicated()].unique()
    if len(repeated):
        raise G2NetError(f"{path}: {len(repeated)} ids appear more than once ({format_ids(repeated)})"
                         f"; keep one row per id. {remedy[:1].upper() + remedy[1:]}")
