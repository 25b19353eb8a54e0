"""The run folder of train.py: one run at a time (a lock the kernel drops with its process),
predictions tied to the checkpoint they come from, truncated checkpoints and resume points named
with the fix, checkpoints carrying code refused without running it, resume points of tensors and
plain values only, and a failed run removing only the folder it created."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import configs
import predict
from conftest import REPO, RUN_FOLDER_NOISE, assert_untouched, file_digests, one_line_error, run_script
from g2net.experiments import runner
from g2net.training import trainer
from g2net.training.trainer import load_checkpoint
from utils import G2NetError, atomic_torch_save, cli_errors, file_digest


def run(*flags: str) -> dict:
    args = runner.build_parser("test").parse_args(["--silent", "--limit_fold", "0", *flags])
    return runner.run_experiment(configs.Debug, args)


def test_a_second_run_on_a_busy_folder_is_refused_and_deletes_nothing(results, experiment_env):
    before = (results / "fold0.pt").read_bytes()
    with runner.claim_run_folder(results) as created:
        assert not created
        assert (results / runner.LOCK_NAME).read_text().strip() == str(os.getpid())
        done = run_script("train.py", "--config", "Debug", "--limit_fold", "0", env=experiment_env,
                          check=False)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: {results} is in use by another run (pid {os.getpid()}); wait for it to end or "
            f"stop it (kill {os.getpid()}) before starting this one"]
        with pytest.raises(G2NetError, match=f"pid {os.getpid()}"):
            with runner.claim_run_folder(results):
                pass
    assert (results / "fold0.pt").read_bytes() == before  # the first run's checkpoint survives
    with runner.claim_run_folder(results):  # released on exit
        pass


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "Held"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; import pathlib; from g2net.experiments import runner; "
         "ctx = runner.claim_run_folder(pathlib.Path(sys.argv[2])); ctx.__enter__(); print('held', flush=True); "
         "time.sleep(600)", str(REPO), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(G2NetError, match=f"in use by another run \\(pid {holder.pid}\\)"):
            with runner.claim_run_folder(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with runner.claim_run_folder(out) as created:  # the kernel dropped the dead process's lock
        assert not created


def _unfinish(checkpoint: Path) -> None:
    """Make a finished fold checkpoint look like one written after its first epoch (other weights:
    the deterministic retraining of --resume must give predictions that differ from these)."""
    saved = torch.load(checkpoint, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    saved["model"] = {k: v + 0.5 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
                      for k, v in saved["model"].items()}
    saved["state"].update(finished=False, epoch=0, best_epoch=0, history=saved["state"]["history"][:1])
    atomic_torch_save(checkpoint, saved)


def test_predictions_always_come_from_the_checkpoint_they_name(results, capsys):
    checkpoint, predictions = results / "fold0.pt", results / "fold0_predictions.npz"
    with np.load(predictions) as saved:
        assert str(saved["checkpoint_sha256"]) == file_digest(checkpoint)
        assert bool(saved["checkpoint_finished"])
    _unfinish(checkpoint)
    args = runner.build_parser("test").parse_args(["--limit_fold", "0", "--inference"])
    runner.run_experiment(configs.Debug, args)
    assert f"warning: {checkpoint} is from an unfinished fold (best epoch 0 after 1 epochs)" in capsys.readouterr().out
    with np.load(predictions) as saved:
        assert str(saved["checkpoint_sha256"]) == file_digest(checkpoint)
        assert not bool(saved["checkpoint_finished"])
        stale = saved["test"].copy()
    run("--resume")  # no resume point: the unfinished fold trains again and is finished
    assert torch.load(checkpoint, weights_only=True)["state"]["finished"]
    with np.load(predictions) as saved:
        assert str(saved["checkpoint_sha256"]) == file_digest(checkpoint)
        assert bool(saved["checkpoint_finished"])
        fresh = saved["test"].copy()
    assert not np.allclose(fresh, stale)
    np.testing.assert_array_equal(np.load(results / "predictions.npy")[0], fresh)
    # predictions of another checkpoint are never assembled: they are made again
    other = torch.load(checkpoint, weights_only=True)
    other["model"] = {k: v * 0.5 if v.is_floating_point() else v for k, v in other["model"].items()}
    atomic_torch_save(checkpoint, other)
    run("--skip_existing")
    with np.load(predictions) as saved:
        assert str(saved["checkpoint_sha256"]) == file_digest(checkpoint)
        assert not np.allclose(saved["test"], fresh)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("flag,fix", [
    ("--inference", "Delete it and train fold 0 again (python train.py --config Debug --limit_fold 0)."),
    ("--resume", "Delete it and rerun with --resume: fold 0 then trains again from its first epoch."),
    ("--skip_existing", "Delete it, or rerun without --skip_existing to train fold 0 again.")])
def test_a_truncated_checkpoint_is_named_with_the_fix(results, flag, fix):
    checkpoint = results / "fold0.pt"
    _truncate(checkpoint)
    with pytest.raises(G2NetError) as caught:
        run(flag)
    message = str(caught.value)
    assert message.startswith(f"{checkpoint} is unreadable (truncated or corrupt: ")
    assert message.endswith(fix) and "\n" not in message


def test_a_truncated_resume_point_and_predict_py_name_the_file(results, experiment_env, simulated_input):
    resume_point = results / "fold0_last.pt"
    shutil.copy(results / "fold0.pt", resume_point)
    _truncate(resume_point)
    _unfinish(results / "fold0.pt")
    with pytest.raises(G2NetError, match=f"{resume_point} is unreadable.*Delete it and rerun with --resume"):
        run("--resume")
    _truncate(results / "fold0.pt")
    done = run_script("predict.py", "--config", "Debug", "--input", str(simulated_input),
                      env=experiment_env, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {results / 'fold0.pt'} is unreadable")
    assert "Delete it and train fold 0 again" in lines[0]


class Payload:
    """Unpickling this runs ``open(marker, 'w')``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(results, experiment_env, tmp_path):
    marker = tmp_path / "payload_ran"
    saved = torch.load(results / "fold0.pt", weights_only=True)
    saved["state"]["extra"] = Payload(marker)
    torch.save(saved, results / "fold0.pt")
    with pytest.raises(G2NetError, match="holds Python objects beyond tensors.*not loaded"):
        load_checkpoint(results / "fold0.pt", "fix")
    done = run_script("train.py", "--config", "Debug", "--limit_fold", "0", "--inference",
                      env=experiment_env, check=False)
    assert done.returncode == 2 and "holds Python objects" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()


def test_resume_points_hold_only_tensors_and_plain_values(results):
    """The training state (optimizer, scheduler, scaler, RNG) loads with weights_only=True."""
    import random

    np.random.seed(5)
    random.seed(5)
    generator = torch.Generator().manual_seed(3)
    state = trainer.rng_state(generator)
    expected = (np.random.rand(3), random.random(), torch.rand(2, generator=generator))
    path = results / "rng.pt"
    torch.save(state, path)
    trainer.set_rng_state(torch.load(path, weights_only=True), generator)
    again = (np.random.rand(3), random.random(), torch.rand(2, generator=generator))
    np.testing.assert_array_equal(expected[0], again[0])
    assert expected[1] == again[1] and torch.equal(expected[2], again[2])


def test_a_failed_run_removes_the_folder_it_created_and_keeps_others(experiment_env, trained_fold):
    out = Path(experiment_env["G2NET_RESULTS_DIR"]) / "DebugPseudo_debug"
    done = run_script("train_pseudo.py", "--config", "DebugPseudo", "--debug", env=experiment_env,
                      check=False)
    assert done.returncode == 2 and "python train.py --config Debug" in done.stderr
    assert not out.exists()
    assert runner.remove_if_empty_run(out) is False
    out.mkdir(parents=True)  # a folder that was there before the run keeps its log
    (out / "notes.txt").write_text("mine")
    run_script("train_pseudo.py", "--config", "DebugPseudo", "--debug", env=experiment_env, check=False)
    assert (out / "notes.txt").exists() and len(list(out.glob("DebugPseudo_*.log"))) == 1


# -- a finished fold is never lost: options checked first, retraining replaces it in one rename --

def cli_train(argv: list[str], capsys) -> str:
    """train.py in this process: the exit status must be 2; returns the error line."""
    with pytest.raises(SystemExit) as caught:
        cli_errors(runner.main)(argv, pseudo=False)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("option, value, message", [
    ("--num_workers", "-1", "'-1': must be >= 0"),
    ("--wait", "inf", "'inf' is not a finite number"),
    ("--wait", "1e300", "'1e300': must be at most 604800 (a week)"),
    ("--limit_fold", "zero", "'zero' is not a whole number"),
])
def test_a_bad_option_is_refused_before_a_finished_fold_is_touched(results, capsys, option, value, message):
    before = file_digests(results)
    line = cli_train(["--config", "Debug", option, value], capsys)
    assert line.endswith(f"error: argument {option}: {message}")
    assert_untouched(before, results)


def finished(checkpoint: Path) -> dict:
    return torch.load(checkpoint, weights_only=True)["state"]


def test_an_interrupted_retrain_keeps_the_finished_fold_and_resume_finishes_it(results, monkeypatch):
    old_state = finished(results / "fold0.pt")
    before = file_digests(results, RUN_FOLDER_NOISE)
    save = trainer.Trainer._save_resume_point

    def killed_after_the_first_epoch(self):
        save(self)
        raise KeyboardInterrupt  # kill -9, a full disk, ... right after epoch 0 was checkpointed

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(trainer.Trainer, "_save_resume_point", killed_after_the_first_epoch)
        run()  # retrain fold 0 from scratch
    # the old finished fold and everything made from it are as they were
    assert_untouched(before, results, RUN_FOLDER_NOISE, new_files=("fold0_last.pt", "fold0_partial.pt"))
    assert torch.load(results / "fold0_last.pt", weights_only=True)["state"]["epoch"] == 0
    run("--resume")  # continues the interrupted retrain
    new = finished(results / "fold0.pt")
    assert new["finished"] and new["run"] != old_state["run"]
    assert [h["epoch"] for h in new["history"]] == [0, 1]
    assert f"resumed from {results / 'fold0_last.pt'} after epoch 0" in \
        "".join(p.read_text() for p in results.glob("Debug_*.log"))
    assert not (results / "fold0_last.pt").exists() and not (results / "fold0_partial.pt").exists()
    with np.load(results / "fold0_predictions.npz") as saved:
        assert str(saved["checkpoint_sha256"]) == file_digest(results / "fold0.pt")


def test_a_kill_while_the_fold_finishes_leaves_the_old_or_the_new_finished_fold(results, monkeypatch):
    before = file_digests(results, RUN_FOLDER_NOISE)
    old_run = finished(results / "fold0.pt")["run"]
    rename = trainer.atomic_torch_save

    def killed_before_the_rename(path, obj):
        if Path(path).name == "fold0.pt":
            raise KeyboardInterrupt
        rename(path, obj)

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(trainer, "atomic_torch_save", killed_before_the_rename)
        run()
    assert_untouched(before, results, RUN_FOLDER_NOISE, new_files=("fold0_last.pt", "fold0_partial.pt"))
    assert not list(results.glob(".fold0.pt.*.tmp"))

    def killed_after_the_rename(path, obj):
        rename(path, obj)
        if Path(path).name == "fold0.pt":
            raise KeyboardInterrupt

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(trainer, "atomic_torch_save", killed_after_the_rename)
        run("--resume")
    new_run = finished(results / "fold0.pt")["run"]
    assert finished(results / "fold0.pt")["finished"] and new_run != old_run
    assert (results / "fold0_last.pt").exists()  # left beside the new finished fold
    run("--resume")
    text = "".join(p.read_text() for p in results.glob("Debug_*.log"))
    assert "is this run's finished model; removing the resume point" in text
    assert finished(results / "fold0.pt")["run"] == new_run  # not trained again
    assert not (results / "fold0_last.pt").exists() and not (results / "fold0_partial.pt").exists()


class NaNLoss(torch.nn.Module):
    def forward(self, output, target):
        return torch.nn.functional.binary_cross_entropy_with_logits(output, target) * float("nan")


def test_a_nan_loss_while_retraining_names_only_files_that_exist(results):
    class DivergingDebug(configs.Debug):
        name = "Debug"
        criterion = NaNLoss()

    before = file_digests(results, RUN_FOLDER_NOISE)
    args = runner.build_parser("test").parse_args(["--silent", "--limit_fold", "0"])
    with pytest.raises(G2NetError, match="loss became nan in epoch 0") as caught:
        runner.run_experiment(DivergingDebug, args)
    message = str(caught.value)
    assert "\n" not in message
    assert "No epoch of this run completed, so there is nothing to resume" in message
    assert f"{results / 'fold0.pt'}, the fold's previous model, is unchanged" in message
    for path in re.findall(r"(/\S+\.pt)", message):
        assert Path(path.rstrip(".,:")).exists(), path
    assert_untouched(before, results, RUN_FOLDER_NOISE)


# -- which data a fold saw ------------------------------------------------------------------------

def other_input(simulated_input: Path, root: Path, flip: int = 10) -> Path:
    """An input folder with the same example files and the labels of ``flip`` rows changed."""
    root.mkdir()
    for name in ("train.csv", "test.csv"):
        table = pd.read_csv(simulated_input / name, dtype={"id": str})
        table["path"] = [str(simulated_input / p) for p in table["path"]]
        if name == "train.csv":
            table.loc[:flip - 1, "target"] = 1 - table.loc[:flip - 1, "target"]
        table.to_csv(root / name, index=False)
    return root


def test_limit_fold_refuses_to_mix_folds_trained_on_other_data(results, simulated_input, tmp_path,
                                                               monkeypatch, capsys):
    monkeypatch.setenv("G2NET_INPUT_DIR", str(other_input(simulated_input, tmp_path / "other")))
    before = file_digests(results, RUN_FOLDER_NOISE)
    for flags in (["--limit_fold", "1"], ["--limit_fold", "0", "--inference"],
                  ["--limit_fold", "0", "--skip_existing"]):
        line = cli_train(["--config", "Debug", "--silent", *flags], capsys)
        assert "fold 0 of experiment Debug was trained on other data than the input folder holds " \
               "now (another train.csv (its ids or labels))" in line
        assert "python train.py --config Debug)" in line
        assert_untouched(before, results, RUN_FOLDER_NOISE)


def test_a_checkpoint_of_another_architecture_is_one_line(results, simulated_input, experiment_env,
                                                          tmp_path, capsys):
    config = tmp_path / "wider.py"
    config.write_text("import configs\n\nclass Wider(configs.Debug):\n    name = 'Debug'\n"
                      "    model_params = dict(configs.Debug.model_params, base_filters=16)\n")
    before = file_digests(results, RUN_FOLDER_NOISE)
    for flags in (["--inference"], ["--skip_existing", "--tta"]):
        line = cli_train(["--config", f"{config}:Wider", "--limit_fold", "0", "--silent", *flags], capsys)
        assert line.startswith(f"error: {results / 'fold0.pt'} holds weights of another model than "
                               "the config builds now (")
        assert line.endswith("restore the config it was trained with, or train fold 0 again "
                             "(python train.py --config Debug --limit_fold 0)")
        assert_untouched(before, results, RUN_FOLDER_NOISE)
    with pytest.raises(G2NetError, match="fold0.pt holds weights of another model") as caught:
        predict.main(["--config", f"{config}:Wider", "--input", str(simulated_input),
                      "--out", str(tmp_path / "scores.csv")])
    one_line_error(caught)
    assert not (tmp_path / "scores.csv").exists()
