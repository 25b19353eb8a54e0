"""predict.py's input checks, the same as prep_data.py's: ids that could leave the input folder,
duplicates, wrong dtypes, unreadable arrays and bad csvs are each one line of error, for a folder
and for --files; one checker shared with prep_data.py, and a file outside the input folder is never
read."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import predict
import prep_data
from conftest import REPO, one_line_error
from utils import G2NetError, example_path


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
