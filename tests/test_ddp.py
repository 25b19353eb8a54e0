"""torchrun on the CPU (gloo): a 2-process ``Debug`` run writes every out-of-fold and test prediction
exactly once and in dataset order, and a 1-process run equals the plain run bit for bit."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO

import configs
from g2net.experiments import runner
from prep_data import write_cache_stamp

# One training and one test example fewer than the simulated set: odd fold and test sizes make
# the sampler pad a shard, so the test sees that the padding is dropped again.
N_TRAIN, N_TEST = 159, 47


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(args: list[str], env: dict[str, str], nproc: int | None) -> subprocess.Popen:
    """``train.py args`` plainly (``nproc=None``) or under torchrun with ``nproc`` processes."""
    prefix = [sys.executable]
    if nproc is not None:
        prefix += ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
                   "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(prefix + [str(REPO / "train.py"), *args], cwd=REPO, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, what: str) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, f"{what} failed ({process.returncode}):\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def odd_input(simulated_input, tmp_path_factory) -> Path:
    """The simulated folder cut to 159 train / 47 test examples (csvs with absolute paths, caches)."""
    root = tmp_path_factory.mktemp("odd_input")
    for split, size in (("train", N_TRAIN), ("test", N_TEST)):
        table = pd.read_csv(simulated_input / f"{split}.csv", dtype={"id": str}).iloc[:size].copy()
        table["path"] = [str((simulated_input / p).resolve()) for p in table["path"]]
        table.to_csv(root / f"{split}.csv", index=False)
        cache = np.load(simulated_input / f"{split}_cache.npy", mmap_mode="r")
        np.save(root / f"{split}_cache.npy", np.asarray(cache[:size]))
        write_cache_stamp(root / f"{split}_cache.npy", root / f"{split}.csv")
    return root


@pytest.fixture(scope="module")
def runs(odd_input, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Three runs side by side: 2-process torchrun (both folds), and plain vs 1-process torchrun
    (fold 0). Returns each run's results folder and output."""
    plans = {"ddp2": (2, []), "plain": (None, ["--limit_fold", "0"]),
             "ddp1": (1, ["--limit_fold", "0"])}
    started = {}
    for name, (nproc, extra) in plans.items():
        results = tmp_path_factory.mktemp(f"results_{name}")
        env = {"G2NET_INPUT_DIR": str(odd_input), "G2NET_RESULTS_DIR": str(results)}
        started[name] = (results, launch(["--config", "Debug", *extra], env, nproc))
    return {name: (results / "Debug", finish(process, name))
            for name, (results, process) in started.items()}


def debug_model(checkpoint: Path) -> torch.nn.Module:
    model = configs.Debug.model(**configs.Debug.model_params)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
    return model.eval()


@torch.no_grad()
def single_process_logits(model: torch.nn.Module, dataset) -> np.ndarray:
    """Logits of every example of ``dataset`` in order, one example at a time."""
    items = [dataset[i] for i in range(len(dataset))]
    inputs = torch.stack([item[0] if isinstance(item, tuple) else item for item in items])
    return np.concatenate([model(x[None]).numpy() for x in inputs])


def test_two_processes_write_every_prediction_once_and_in_order(runs, odd_input, monkeypatch):
    out, output = runs["ddp2"]
    cfg = configs.Debug
    oof, test = np.load(out / "outoffolds.npy"), np.load(out / "predictions.npy")
    assert oof.shape == (N_TRAIN, 1) and test.shape == (cfg.cv, N_TEST, 1)
    assert np.isfinite(oof).all() and np.isfinite(test).all()
    assert output.count("out-of-fold AUC") == 1  # rank 0 alone reports and writes
    assert len(list(out.glob("Debug_*.log"))) == 1
    assert not list(out.glob("*_last.pt")) and not list(out.glob("*.tmp"))

    monkeypatch.setenv("G2NET_INPUT_DIR", str(odd_input))
    data = runner.load_data(cfg)
    folds = np.load(out / "folds.npy")
    np.testing.assert_array_equal(folds, runner.split_folds(cfg, data.train["target"].values))
    test_set = runner._test_dataset(cfg, data, cfg.transforms["test"])
    for fold in range(cfg.cv):
        model = debug_model(out / f"fold{fold}.pt")
        valid_rows = np.flatnonzero(folds == fold)
        valid_set = runner._dataset(cfg, data, valid_rows, cfg.transforms["test"], False)
        # a row written twice, shifted or taken from the padding would not match its own logit
        np.testing.assert_allclose(oof[valid_rows], single_process_logits(model, valid_set),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(test[fold], single_process_logits(model, test_set),
                                   rtol=1e-4, atol=1e-5)
    assert sorted(np.bincount(folds) % 2) == [0, 1]  # one fold is odd: its shards were padded


def test_one_process_torchrun_equals_the_plain_run_bit_for_bit(runs):
    plain, _ = runs["plain"]
    ddp, _ = runs["ddp1"]
    for name in ("outoffolds.npy", "predictions.npy"):
        a, b = np.load(plain / name), np.load(ddp / name)
        assert np.isfinite(a).sum() > 0
        np.testing.assert_array_equal(a, b)  # NaN rows (fold 1 untrained) in the same places
    saved_plain = torch.load(plain / "fold0.pt", weights_only=False)
    saved_ddp = torch.load(ddp / "fold0.pt", weights_only=False)
    assert saved_plain["model"].keys() == saved_ddp["model"].keys()
    for key, tensor in saved_plain["model"].items():
        assert torch.equal(tensor, saved_ddp["model"][key]), key
    for before, after in zip(saved_plain["state"]["history"], saved_ddp["state"]["history"]):
        assert before["valid_loss"] == after["valid_loss"] and before["score"] == after["score"]
        assert after["train_loss"] == pytest.approx(before["train_loss"], rel=1e-6)
