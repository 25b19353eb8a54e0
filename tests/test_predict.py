"""predict.py's input checks, the same as prep_data.py's: ids that could leave the input folder,
duplicates, wrong dtypes, unreadable arrays and bad csvs are each one line of error, for a folder
and for --files; one checker shared with prep_data.py, and a file outside the input folder is never
read."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import predict
import prep_data
from conftest import REPO, RUN_FOLDER_NOISE, assert_untouched, file_digests, one_line_error
from utils import G2NetError, cli_errors, example_path


def predict_folder(tmp_path: Path, ids: list[str], arrays: dict[str, object] | None = None,
                   csv_text: str | None = None) -> Path:
    root = tmp_path / "new"
    (root / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for example_id in ids:
        if "/" in example_id or "." in example_id:
            continue
        path = example_path(root, "test", example_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        make = (arrays or {}).get(example_id)
        if make is None:
            np.save(path, rng.standard_normal((3, 4096)))
        else:
            make(path)
    (root / "sample_submission.csv").write_text(
        csv_text if csv_text is not None else "id,target\n" + "".join(f"{i},0.5\n" for i in ids))
    return root


def truncated(path: Path) -> None:
    np.save(path, np.zeros((3, 4096)))
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize("ids, arrays, csv_text, message", [
    (["../../..../secret"], None, None, r"ids are not at least 3 letters/digits"),
    (["aaa111", "bbb222", "aaa111"], None, None, r"1 ids appear more than once: aaa111"),
    (["aaa111", "bbb222"], {"bbb222": lambda p: np.save(p, np.ones((3, 4096), dtype=np.int64))}, None,
     r"1 not of dtype float64 \(first: dtype int64\): bbb222"),
    (["aaa111"], {"aaa111": lambda p: np.save(p, np.ones((3, 4096)) * (1 + 1j))}, None,
     r"not of dtype float64 \(first: dtype complex128\)"),
    (["aaa111"], {"aaa111": lambda p: np.savez(open(p, "wb"), x=np.zeros((3, 4096)))}, None,
     r"not readable as a \.npy array \(first: an \.npz archive"),
    (["aaa111"], {"aaa111": lambda p: np.save(p, np.array([object()] * 3), allow_pickle=True)}, None,
     r"not readable.*Python objects"),
    (["aaa111"], {"aaa111": truncated}, None, r"not readable as a \.npy array \(first: EOFError"),
    (["aaa111"], None, "", r"is not a readable csv"),
    (["aaa111"], None, "id,target\n", r"lists no examples"),
])
def test_predict_refuses_bad_inputs_in_one_line(tmp_path, ids, arrays, csv_text, message):
    root = predict_folder(tmp_path, ids, arrays, csv_text)
    with pytest.raises(G2NetError, match=message) as info:
        predict.main(["--config", "Debug", "--input", str(root)])
    one_line_error(info)


def test_secret_outside_the_input_folder_is_never_read(tmp_path, monkeypatch):
    secret = tmp_path / "secret.npy"
    np.save(secret, np.zeros((3, 4096)))
    root = predict_folder(tmp_path, ["../../../secret"])
    read = []
    monkeypatch.setattr(prep_data, "load_example", lambda path: read.append(path))
    with pytest.raises(G2NetError, match="ids are not"):
        predict.main(["--config", "Debug", "--input", str(root)])
    assert read == []


def test_predict_files_are_checked_too(tmp_path):
    good, bad = tmp_path / "a" / "x1.npy", tmp_path / "b" / "x1.npy"
    for path in (good, bad):
        path.parent.mkdir()
    np.save(good, np.zeros((3, 4096)))
    np.save(bad, np.zeros((3, 4096), dtype=np.int64))
    with pytest.raises(G2NetError, match="names 1 ids more than once"):
        predict.main(["--config", "Debug", "--files", str(good), str(bad)])
    with pytest.raises(G2NetError, match=r"1 files not of dtype float64: .*x1\.npy \(dtype int64\)"):
        predict.main(["--config", "Debug", "--files", str(bad)])


def test_predict_and_prep_data_share_one_checker():
    assert predict.check_split is prep_data.check_split
    source = (REPO / "predict.py").read_text()
    assert "read_csv" not in source and "np.load(" not in source


# -- where the scores go: decided before any work, never onto an input ---------------------------

def predict_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as caught:
        cli_errors(predict.main)(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err


@pytest.fixture
def new_data(tmp_path) -> Path:
    """A competition-layout folder to score, with its training labels beside it."""
    root = predict_folder(tmp_path, ["aaa111", "bbb222"])
    (root / "training_labels.csv").write_text("id,target\nccc333,1\n")
    return root


@pytest.mark.parametrize("target, message", [
    ("sample_submission.csv", "is also an input ({root}/sample_submission.csv); writing it would "
                              "destroy the input: choose another output file"),
    ("training_labels.csv", "lies in {root}, the input folder this command reads; write the output "
                            "somewhere else"),
    ("test/a/a/a/aaa111.npy", "give a file name ending in .csv"),
    ("test/scores.csv", "lies in {root}, the input folder this command reads"),
])
def test_out_naming_an_input_or_the_input_folder_is_refused(results, new_data, tmp_path, capsys,
                                                            target, message):
    before = file_digests(tmp_path, RUN_FOLDER_NOISE)
    line = predict_error(["--config", "Debug", "--input", str(new_data), "--out", str(new_data / target)],
                         capsys)
    assert line.startswith(f"error: --out {new_data / target}") and message.format(root=new_data) in line
    assert_untouched(before, tmp_path, RUN_FOLDER_NOISE)


def test_out_naming_a_folder_or_an_existing_file_is_refused(results, new_data, tmp_path, capsys):
    (tmp_path / "scores").mkdir()
    (tmp_path / "kept.csv").write_text("id,target\nmine,1\n")
    before = file_digests(tmp_path, RUN_FOLDER_NOISE)
    line = predict_error(["--config", "Debug", "--input", str(new_data), "--out", str(tmp_path / "scores")],
                         capsys)
    assert line == f"error: --out {tmp_path / 'scores'} is a folder; give the name of a file to write"
    line = predict_error(["--config", "Debug", "--input", str(new_data), "--out", str(tmp_path / "kept.csv")],
                         capsys)
    assert line == (f"error: --out {tmp_path / 'kept.csv'} already exists; pass --overwrite to replace it "
                    "or choose another name")
    assert_untouched(before, tmp_path, RUN_FOLDER_NOISE)
    predict.main(["--config", "Debug", "--input", str(new_data), "--out", str(tmp_path / "kept.csv"),
                  "--overwrite"])
    assert list(pd.read_csv(tmp_path / "kept.csv")["id"]) == ["aaa111", "bbb222"]


def test_files_and_input_together_are_refused(new_data, tmp_path, capsys):
    before = file_digests(tmp_path)
    line = predict_error(["--config", "Debug", "--input", str(new_data), "--files",
                          str(new_data / "test" / "a" / "a" / "a" / "aaa111.npy")], capsys)
    assert line == ("error: --files scores the files given; --input and --split choose a folder of the "
                    "competition layout instead: give one or the other")
    assert_untouched(before, tmp_path)


def test_debug_without_a_debug_run_names_the_run_and_the_command(results, new_data, capsys):
    line = predict_error(["--config", "Debug", "--input", str(new_data), "--debug"], capsys)
    assert line == (f"error: no fold checkpoints (fold<k>.pt) in {results.parent / 'Debug_debug'}: the "
                    "--debug run of Debug has not been trained yet; train it first (python train.py "
                    "--config Debug --debug)")
