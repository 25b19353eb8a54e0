"""Shared fixtures and helpers: a tiny simulated competition folder, prepared once per test session;
running the command-line scripts; quiet prep_data options; one-line error messages."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Small enough to simulate in seconds, large enough for two stratified folds to learn a little.
SIM_TRAIN, SIM_TEST = 160, 48


def run_script(script: str, *args: str, env: dict[str, str] | None = None, check: bool = True,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one of the project's command-line scripts with this interpreter, output captured."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run([sys.executable, str(REPO / script), *args], cwd=REPO, env=full_env,
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


def one_line_error(excinfo) -> str:
    """The message of a caught error, asserted to be a single line."""
    message = str(excinfo.value)
    assert "\n" not in message
    return message


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
