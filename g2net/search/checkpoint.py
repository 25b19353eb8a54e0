"""Resuming a long search: its finished work units saved beside the output, so a killed run goes on.

A search is an ordered list of work units (pass of templates, segment, block of windows); after
units the engine saves how many are done and the outputs they made, atomically (a kill leaves the
old checkpoint or the new one), at most every ``every`` seconds and at the end of every pass. The
file carries a fingerprint of the search (its inputs, options, templates): rerunning the same
command resumes; a different search starts over, saying why, instead of mixing two searches.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from utils import atomic_write

CHECKPOINT_SUFFIX = ".checkpoint.npz"


State = dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]]  # (segment, lag, block) -> (time, stat)


def checkpoint_path(output: str | Path) -> Path:
    """Where the search writing ``output`` keeps its checkpoint: beside it."""
    output = Path(output)
    return output.with_name(output.name + CHECKPOINT_SUFFIX)


def strain_identity(path: str | Path) -> dict[str, Any]:
    """What tells one strain file from another cheaply: where it is, its size and modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def recorded_fingerprint(path: str | Path) -> dict[str, Any] | None:
    """The fingerprint a checkpoint file was written with; None when there is none to read."""
    try:
        with np.load(path, allow_pickle=False) as f:
            found = json.loads(str(f["fingerprint"]))
    except Exception:  # absent, torn or foreign: resume() says so when it is read for real
        return None
    return found if isinstance(found, dict) else None


class SearchCheckpoint:
    """The checkpoint file of one search, identified by ``fingerprint`` (JSON-able)."""

    def __init__(self, path: str | Path, fingerprint: dict[str, Any], every: float = 60.0):
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.every = every
        self._last = time.monotonic()

    def resume(self, n_units: int) -> tuple[int, State]:
        """``(units done, their outputs)`` of a matching checkpoint; ``(0, {})`` otherwise."""
        if not self.path.exists():
            return 0, {}
        try:
            with np.load(self.path, allow_pickle=False) as f:
                found = json.loads(str(f["fingerprint"]))
                done, keys, lengths = int(f["done"]), f["keys"], f["lengths"]
                times, stats = f["time"], f["stat"]
        except Exception as exc:  # torn or foreign file: atomic writes make this rare
            self._restart(f"it is unreadable ({type(exc).__name__})")
            return 0, {}
        if found != self.fingerprint:
            differ = sorted(k for k in set(found) | set(self.fingerprint) if found.get(k) != self.fingerprint.get(k))
            self._restart(f"it was written by a different search (differs in: {', '.join(differ)})")
            return 0, {}
        if not 0 <= done <= n_units:
            self._restart(f"it counts {done} of {n_units} work units")
            return 0, {}
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        state = {tuple(int(v) for v in key): (times[a:b], stats[a:b])
                 for key, a, b in zip(keys, bounds[:-1], bounds[1:])}
        print(f"resuming from {self.path}: {done} of {n_units} work units done", file=sys.stderr)
        return done, state

    def _restart(self, why: str) -> None:
        print(f"ignoring checkpoint {self.path}: {why}; starting over", file=sys.stderr)
        self.remove()

    def save(self, done: int, state: State, force: bool = False) -> bool:
        """Save ``done`` units and their outputs if ``every`` seconds passed (or ``force``)."""
        if not force and time.monotonic() - self._last < self.every:
            return False
        keys = sorted(state)
        pieces = [state[k] for k in keys]

        def write(handle: Any) -> None:
            np.savez(handle, fingerprint=json.dumps(self.fingerprint, sort_keys=True), done=done,
                     keys=np.asarray(keys, dtype=np.int64).reshape(-1, 3),
                     lengths=np.asarray([len(t) for t, _ in pieces], dtype=np.int64),
                     time=np.concatenate([t for t, _ in pieces]) if pieces else np.zeros(0),
                     stat=np.concatenate([s for _, s in pieces]) if pieces else np.zeros(0))

        atomic_write(self.path, write)
        self._last = time.monotonic()
        return True

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
