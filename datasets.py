"""The dataset: competition-layout ``.npy`` files or prep_data's memory-mapped cache, as tensors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from g2net.mixing import PAIRINGS, check_choice, mix, mix_targets, partner_index, sample_lam
from utils import (EXAMPLE_SHAPE, G2NetError, cache_stamp_path, format_ids, numeric_column, read_cache_stamp,
                   read_table, table_digest, unique_ids)


class CacheView:
    """Rows ``indices`` of a (memory-mapped) cache array, indexed by position in ``indices``.

    Lets a fold's dataset read its rows straight from ``train_cache.npy`` without copying.
    """

    def __init__(self, array: np.ndarray, indices: Sequence[int] | None = None):
        self.array = array
        self.indices = np.arange(len(array)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> np.ndarray:
        return np.asarray(self.array[self.indices[position]])


def load_cache(path: Any, table: int | pd.DataFrame) -> np.ndarray:
    """Open a prep_data cache read-only and memory-mapped, checking it holds the rows of its csv.

    The sidecar ``<cache>.json`` (written with the cache) names the csv in the same folder and the
    digest of its ``(id, path)`` rows; the cache is refused when that csv has changed since (rows
    reordered, added, removed), when ``table`` (the csv as read, or its row count) disagrees, or
    when shape/dtype are not the recorded ones. Every refusal is one G2NetError.
    """
    path = Path(path)
    remedy = f"rerun `python prep_data.py --cache` for {path.parent}"
    stamp = read_cache_stamp(path)
    if stamp is None:
        raise G2NetError(f"cache {path} has no readable {cache_stamp_path(path).name} saying which "
                         f"table it holds (an older prep_data.py, or copied by hand); {remedy}")
    csv = path.parent / str(stamp.get("table"))
    if not csv.is_file():
        raise G2NetError(f"cache {path} was built from {csv}, which is gone; {remedy}")
    written = pd.read_csv(csv, dtype=str, keep_default_na=False)
    if "id" not in written or "path" not in written or \
            table_digest(written["id"], written["path"]) != stamp.get("table_sha256"):
        raise G2NetError(f"cache {path} holds the rows of an earlier {csv.name} (its ids, paths or "
                         f"order have changed since); {remedy}")
    rows = table if isinstance(table, int) else len(table)
    if not isinstance(table, int) and "id" in table and \
            list(table["id"].astype(str)) != list(written["id"]):
        raise G2NetError(f"cache {path} holds the rows of {csv}, not those of the table given; {remedy}")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise G2NetError(f"cache {path} is not readable ({exc}); {remedy}") from None
    if list(array.shape) != stamp.get("shape") or array.dtype.name != stamp.get("dtype") \
            or array.shape[1:] != EXAMPLE_SHAPE or array.shape[0] != rows:
        raise G2NetError(f"cache {path} is {array.dtype} {array.shape}, but its csv lists {rows} "
                         f"examples of {EXAMPLE_SHAPE} ({stamp.get('dtype')}); {remedy}")
    return array


def resolve_path(name: str | os.PathLike | None, base: Path) -> Path | None:
    """``name`` as given when absolute, else under ``base``; None stays None (an unset field)."""
    if name is None:
        return None
    path = Path(name)
    return path if path.is_absolute() else base / path


def read_prepared(path: Path, what: str) -> pd.DataFrame:
    """``train.csv`` / ``test.csv`` from prep_data.py, with paths resolved against the csv's folder."""
    if what == "test" and not path.exists() and (path.parent / "train.csv").exists() \
            and not (path.parent / "sample_submission.csv").exists():
        hint = (f"{path.parent} has no test examples (simulate.py --n-test 0); training writes test "
                "predictions, so simulate some (e.g. --n-test 200) and rerun python prep_data.py --cache")
    else:
        hint = (f"put the competition files (or python simulate.py output) in {path.parent}/ "
                f"and run python prep_data.py --cache to make the {what} table "
                "(G2NET_INPUT_DIR chooses another input folder)")
    columns = ["id", "path", "target"] if what == "training" else ["id", "path"]
    table = read_table(path, columns, hint)
    remedy = (f"rerun python prep_data.py --cache for {path.parent}: it writes {path.name} from the "
              "competition files")
    if len(table) == 0:
        raise G2NetError(f"{path} lists no examples; {remedy}")
    unique_ids(table, path, remedy)
    paths = table["path"].astype(str)
    wrong = paths[~paths.str.endswith(".npy")]
    if len(wrong):
        raise G2NetError(f"{path}: {len(wrong)} paths are not .npy example files "
                         f"({format_ids(map(repr, wrong), 3)}); {remedy}")
    if what == "training":
        table["target"] = numeric_column(table, "target", path, remedy)
    table["path"] = [str(resolve_path(p, path.parent)) for p in paths]
    return table


class G2NetDataset(Dataset):
    """Examples as float32 tensors ``(3, 4096)`` with ``(1,)`` targets.

    ``transforms`` act on each example; ``transforms2`` after in-dataset mixup. With
    ``pseudo_label=True`` the test examples (``test_paths``, ``test_targets``, ``test_cache``) join
    the training examples after them, so index ``len(paths) + j`` is test example ``j``.
    ``mixup=True`` mixes every example with a partner drawn by :mod:`mixing` (``mixup_alpha``,
    ``pairing='random'`` or ``'pos_neg'``: a random negative, the example keeping at least half the
    weight); ``lor_label`` makes the mixed target ``a OR b`` instead of the weighted mean;
    ``hard_label`` rounds targets.
    """

    def __init__(self, paths: Sequence[str], targets: Sequence[float] | np.ndarray | None = None,
                 transforms: Callable[[np.ndarray], np.ndarray] | None = None,
                 transforms2: Callable[[np.ndarray], np.ndarray] | None = None,
                 cache: Any = None, mixup: bool = False, mixup_alpha: float = 0.4,
                 pairing: str = "random", hard_label: bool = False, lor_label: bool = False,
                 is_test: bool = False, pseudo_label: bool = False,
                 test_targets: Sequence[float] | np.ndarray | None = None,
                 test_paths: Sequence[str] | None = None, test_cache: Any = None,
                 return_index: bool = False, return_test_index: bool = False):
        check_choice("pairing", pairing, PAIRINGS)
        self.paths = list(paths)
        self.caches: list[Any] = [cache]
        self.sizes = [len(self.paths)]
        self.is_test = is_test or targets is None
        self.targets = None if self.is_test else np.asarray(targets, dtype=np.float32).reshape(-1)
        if pseudo_label:
            if test_paths is None or test_targets is None:
                raise ValueError("pseudo_label=True needs test_paths and test_targets")
            self.paths += list(test_paths)
            self.caches.append(test_cache)
            self.sizes.append(len(test_paths))
            self.targets = np.concatenate(
                [self.targets, np.asarray(test_targets, dtype=np.float32).reshape(-1)])
        if self.targets is not None and len(self.targets) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.targets)} targets")
        for cache_, size in zip(self.caches, self.sizes):
            if cache_ is not None and len(cache_) != size:
                raise ValueError(f"cache has {len(cache_)} rows for {size} paths")
        self.transforms = transforms
        self.transforms2 = transforms2
        self.mixup = mixup
        self.mixup_alpha = mixup_alpha
        self.pairing = pairing
        self.hard_label = hard_label
        self.lor_label = lor_label
        self.return_index = return_index
        self.return_test_index = return_test_index
        self.n_train = self.sizes[0]

    def __len__(self) -> int:
        return len(self.paths)

    def _raw(self, index: int) -> np.ndarray:
        part, position = (0, index) if index < self.sizes[0] else (1, index - self.sizes[0])
        cache = self.caches[part]
        if cache is not None:
            return np.array(cache[position], dtype=np.float32)
        try:
            x = np.load(self.paths[index]).astype(np.float32)
        except FileNotFoundError:
            raise G2NetError(f"example file {self.paths[index]} is missing; check the input folder "
                             "and rerun python prep_data.py") from None
        # prep_data.py validates the training data; files given directly (predict.py) are checked here
        if x.shape != EXAMPLE_SHAPE:
            raise G2NetError(f"example file {self.paths[index]} has shape {x.shape}; expected "
                             f"{EXAMPLE_SHAPE} (H1, L1, V1 rows of 2 s at 2048 Hz)")
        if not np.isfinite(x).all():
            raise G2NetError(f"example file {self.paths[index]} holds NaN or infinite strain; "
                             "replace it or leave it out")
        return x

    def _example(self, index: int) -> np.ndarray:
        x = self._raw(index)
        return self.transforms(x) if self.transforms is not None else x

    def __getitem__(self, index: int):
        x = self._example(index)
        y = None if self.targets is None else np.float32(self.targets[index])
        if self.mixup and y is not None:
            other = partner_index(self.targets, self.pairing)
            lam = sample_lam(self.mixup_alpha, self.pairing)
            x = mix(x, self._example(other), lam)
            y = np.float32(mix_targets(y, self.targets[other], lam, self.lor_label))
        if self.transforms2 is not None:
            x = self.transforms2(x)
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        items: list[Any] = [x]
        if y is not None:
            if self.hard_label:
                y = np.float32(np.round(y))
            items.append(torch.tensor([y], dtype=torch.float32))
        if self.return_index:
            items.append(index)
        if self.return_test_index:
            items.append(index - self.n_train if index >= self.n_train else -1)
        return items[0] if len(items) == 1 else tuple(items)

