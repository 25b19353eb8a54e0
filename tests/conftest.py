"""Shared fixtures and helpers: a tiny simulated competition folder, prepared once per test session;
running the command-line scripts; quiet prep_data options; one-line error messages; untrained fold
checkpoints and searches killed part-way for the resume tests."""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Small enough to simulate in seconds, large enough for two stratified folds to learn a little.
SIM_TRAIN, SIM_TEST = 160, 48


def run_script(script: str, *args: str, env: dict[str, str] | None = None, check: bool = True,
               timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run one of the project's command-line scripts with this interpreter, output captured."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd or REPO, env=full_env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def quiet(**kwargs) -> tuple[list[str], dict]:
    """Keyword arguments for ``prep_data.prepare`` without a progress bar, and the list its printer
    appends each line to."""
    lines: list[str] = []
    return lines, dict(progress=False, printer=lines.append, **kwargs)


# what any train.py run rewrites or adds: its lock, its log and the progress files that follow a
# running training (history.csv, learning_curve.png); never a model or predictions
RUN_FOLDER_NOISE = (".lock", "*.log", "history.csv", "learning_curve.png")


def file_digests(root: Path, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` (or of ``root`` itself when it is a file), by path
    relative to ``root``; names matching a pattern of ``ignore`` are left out."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)) if p != root else p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files if not any(fnmatch.fnmatch(p.name, pattern) for pattern in ignore)}


def assert_untouched(before: dict[str, str], root: Path, ignore: tuple[str, ...] = (),
                     new_files: tuple[str, ...] = ()) -> None:
    """Every file of ``before`` (:func:`file_digests`) is still there with the same bytes, and no
    file was added but names matching ``ignore`` or ``new_files``."""
    after = file_digests(root, ignore)
    changed = sorted(name for name in before if after.get(name) != before[name])
    assert not changed, f"changed or removed: {changed}"
    added = sorted(name for name in after if name not in before
                   and not any(fnmatch.fnmatch(Path(name).name, p) for p in new_files))
    assert not added, f"added: {added}"


def one_line_error(excinfo) -> str:
    """The message of a caught error, asserted to be a single line."""
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def write_untrained_folds(config, folder: Path, folds: int = 2, seed: int = 0) -> list[Path]:
    """Finished fold checkpoints of ``config``'s model with its initial weights (``torch.manual_seed
    (seed)`` first), where train.py writes them: what search.py and predict.py read."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    paths = []
    for fold in range(folds):
        model = config.model(**config.model_params)
        paths.append(folder / f"fold{fold}.pt")
        torch.save({"model": model.state_dict(), "state": {"finished": True, "epoch": 0}}, paths[-1])
    return paths


@pytest.fixture
def killed_at_save(monkeypatch):
    """``with killed_at_save(n): run()``: the strain search inside saves its checkpoint as usual and
    is killed (KeyboardInterrupt) right after the n-th save; the test fails if it finishes first."""
    from g2net.search import checkpoint

    @contextlib.contextmanager
    def killed(saves: int):
        real_save = checkpoint.SearchCheckpoint.save
        calls = []

        def save(self, done, state, force=False):
            saved = real_save(self, done, state, force)
            calls.append(done)
            if len(calls) == saves:
                raise KeyboardInterrupt
            return saved

        monkeypatch.setattr(checkpoint.SearchCheckpoint, "save", save)
        try:
            with pytest.raises(KeyboardInterrupt):
                yield
        finally:
            monkeypatch.setattr(checkpoint.SearchCheckpoint, "save", real_save)

    return killed


@pytest.fixture(scope="session")
def simulated_input(tmp_path_factory) -> Path:
    """A prepared (csvs + caches) simulated folder: 160 train and 48 test examples."""
    root = tmp_path_factory.mktemp("sim") / "input"
    run_script("simulate.py", "--out", str(root), "--n-train", str(SIM_TRAIN), "--n-test",
               str(SIM_TEST), "--seed", "7", "--workers", "1")
    run_script("prep_data.py", "--input", str(root), "--cache", "--no-progress")
    return root


@pytest.fixture
def experiment_env(simulated_input, tmp_path, monkeypatch) -> dict[str, str]:
    """Point G2NET_INPUT_DIR at the simulated folder and G2NET_RESULTS_DIR at a fresh folder."""
    env = {"G2NET_INPUT_DIR": str(simulated_input), "G2NET_RESULTS_DIR": str(tmp_path / "results")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="session")
def trained_fold(simulated_input, tmp_path_factory) -> Path:
    """``train.py --config Debug --limit_fold 0`` once: a results folder with a finished fold 0."""
    results = tmp_path_factory.mktemp("trained")
    run_script("train.py", "--config", "Debug", "--limit_fold", "0", "--silent",
               env={"G2NET_INPUT_DIR": str(simulated_input), "G2NET_RESULTS_DIR": str(results)})
    return results / "Debug"


@pytest.fixture
def results(trained_fold, experiment_env) -> Path:
    """A private copy of the trained folder, as ``results/Debug`` of this test's environment."""
    out = Path(experiment_env["G2NET_RESULTS_DIR"]) / "Debug"
    shutil.copytree(trained_fold, out)
    return out
