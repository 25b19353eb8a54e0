"""utils.py's file helpers: .npy reading equal to np.load, safe in threads and strict (trailing
bytes refused); the one reader of predictions files, as stacking and pseudo-labelling call it; and
the one atomic writer of files, whose leftovers prep_data.py recognises and removes."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

import g2net.stacking
import prep_data
from conftest import REPO, one_line_error
from g2net.training import pseudo
from utils import G2NetError, atomic_write, load_npy, load_predictions


# -- .npy reading --------------------------------------------------------------------------------

def test_load_npy_equals_np_load_and_is_safe_in_threads(tmp_path):
    """np.load's header parser can crash under threads on CPython 3.11 (cpython#106905)."""
    from concurrent.futures import ThreadPoolExecutor


    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(3, 64)), np.asfortranarray(rng.normal(size=(5, 7))),
              rng.integers(0, 9, size=(4,)).astype(np.int16)]
    paths = []
    for i, array in enumerate(arrays):
        paths.append(tmp_path / f"a{i}.npy")
        np.save(paths[-1], array)
    for path, array in zip(paths, arrays):
        got = load_npy(path)
        assert got.dtype == array.dtype and np.array_equal(got, np.load(path))
    many = paths * 400
    with ThreadPoolExecutor(8) as pool:
        loaded = list(pool.map(load_npy, many))
    assert all(np.array_equal(a, np.load(p)) for a, p in zip(loaded, many))
    np.savez(tmp_path / "z.npy", x=arrays[0])
    import os
    os.replace(tmp_path / "z.npy.npz", tmp_path / "z.npy")
    with pytest.raises(ValueError, match="npz archive"):
        load_npy(tmp_path / "z.npy")
    (tmp_path / "short.npy").write_bytes(paths[0].read_bytes()[:-8])
    with pytest.raises(EOFError, match="ends after"):
        load_npy(tmp_path / "short.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects"):
        load_npy(tmp_path / "obj.npy")


def test_a_valid_npy_followed_by_trailing_bytes_is_refused(tmp_path):
    path = tmp_path / "x.npy"
    array = np.arange(3 * 4096, dtype=np.float64).reshape(3, 4096)
    np.save(path, array)
    np.testing.assert_array_equal(load_npy(path), array)
    with open(path, "ab") as handle:
        handle.write(b"garbage")
    with pytest.raises(ValueError, match="7 bytes of trailing data"):
        load_npy(path)
    assert np.load(path).shape == (3, 4096)  # what np.load alone would have accepted
    _, problem = prep_data.load_example(path)
    assert problem[0] == "unreadable" and "trailing" in problem[1]


# -- one reader of predictions files -------------------------------------------------------------

BROKEN = {
    "truncated": lambda p: (np.save(p, np.zeros((2, 5, 1), dtype=np.float32)),
                            p.write_bytes(p.read_bytes()[:-8])),
    "object": lambda p: np.save(p, np.array([None, 1.0], dtype=object), allow_pickle=True),
    "complex": lambda p: np.save(p, np.zeros((2, 5, 1), dtype=np.complex64)),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_stacking_and_pseudo_name_a_broken_predictions_file_and_the_fix(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(tmp_path))
    folder = tmp_path / "Parent"
    folder.mkdir()
    BROKEN[kind](folder / "predictions.npy")
    np.save(folder / "outoffolds.npy", np.zeros(8, dtype=np.float32))
    with pytest.raises(G2NetError, match=r"predictions\.npy.*`python train\.py --config Parent --inference`") as info:
        g2net.stacking.load_experiment("Parent", 8, 5)
    one_line_error(info)
    with pytest.raises(G2NetError, match=r"predictions\.npy.*`python train\.py --config Parent --inference`") as info:
        pseudo.load_parent_predictions("Parent", 5)
    one_line_error(info)


def test_load_predictions_returns_float64_of_a_good_file(tmp_path):
    path = tmp_path / "p.npy"
    np.save(path, np.array([[1.5], [-2.0]], dtype=np.float32))
    loaded = load_predictions(path, "remake it")
    assert loaded.dtype == np.float64 and loaded.tolist() == [[1.5], [-2.0]]
    with pytest.raises(G2NetError, match="missing.npy not found; remake it"):
        load_predictions(tmp_path / "missing.npy", "remake it")


# -- one writer of temporary files ---------------------------------------------------------------

def test_one_temporary_file_writer():
    found = []
    for path in sorted(REPO.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"os\.replace|mkstemp|\.rename\(", line):
                found.append(path.name)
    assert set(found) == {"utils.py"}, found


def test_atomic_write_leftovers_are_named_for_the_stale_temporary_cleanup(tmp_path):
    def killed(handle):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "train.csv", killed)
    assert list(tmp_path.iterdir()) == []  # removed on the way out
    child = subprocess.run(["python3", "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".train.csv.{int(child.stdout)}.abcd1234.tmp"  # a dead process's temporary
    leftover.write_text("x")
    assert prep_data.remove_stale_temporaries(tmp_path, printer=lambda _: None) == [leftover]


# -- the shared guards: argument types and the one decision whether a path may be written --------

COMMANDS = ("g2net/experiments/runner.py", "predict.py", "stacking.py", "evaluate.py", "bench.py",
            "simulate.py", "prep_data.py")  # train.py and train_pseudo.py parse in runner.py


@pytest.mark.parametrize("source", COMMANDS)
def test_the_commands_take_their_argument_types_from_utils(source):
    """``type=int`` takes -1 and ``type=float`` takes nan and inf, ``type=Path`` takes "": every
    option of these commands is parsed by a checked type of utils (so a new command gets them too)."""
    text = (REPO / source).read_text()
    assert not re.findall(r"type=(?:int|float|Path|str)\b|\"type\": *(?:int|float)\b", text)


def test_argument_types_refuse_what_would_break_a_command_later():
    import argparse

    from utils import float_in, int_in, nonnegative_int, path_arg, positive_int, whole_number

    assert whole_number("1e3") == 1000 and whole_number("7") == 7 and positive_int("1") == 1
    for parse, text, message in ((whole_number, "1.5", "is not a whole number"),
                                 (whole_number, "inf", "is not a whole number"),
                                 (positive_int, "0", "must be >= 1"),
                                 (nonnegative_int, "-1", "must be >= 0"),
                                 (int_in(10, 20, " (why)"), "21", "must be at most 20 (why)"),
                                 (float_in(0, 1), "nan", "is not a finite number"),
                                 (path_arg, " ", "an empty path")):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            parse(text)


def test_one_place_decides_whether_a_path_may_be_written(tmp_path, monkeypatch):
    from utils import output_file, output_folder, results_dir

    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / "test.csv").write_text("id\n")
    cases = [(lambda: output_file("", "--out"), "--out is empty"),
             (lambda: output_file(tmp_path, "--out"), "is a folder"),
             (lambda: output_file(inputs / "test.csv", "--out", overwrite=True, inputs=[inputs / "test.csv"]),
              "is also an input"),
             (lambda: output_file(inputs / "new.csv", "--out", input_folders=[inputs]),
              f"lies in {inputs}, the input folder this command reads"),
             (lambda: output_folder(inputs / "sub", "--out", input_folders=[inputs]), "lies in"),
             (lambda: output_folder(inputs / "test.csv", "--out"), "is a file, not a folder")]
    for call, message in cases:
        with pytest.raises(G2NetError, match=re.escape(message)) as caught:
            call()
        one_line_error(caught)
    monkeypatch.setenv("G2NET_RESULTS_DIR", "  ")
    with pytest.raises(G2NetError, match="G2NET_RESULTS_DIR is set but empty"):
        results_dir()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["input", "test.csv"]


def test_workers_are_capped_at_the_cpus_with_one_line(monkeypatch):
    import utils

    lines = []
    assert utils.cap_workers(1, "--workers", printer=lines.append) == 1 and lines == []
    assert utils.cap_workers(10 ** 6, "--workers", printer=lines.append) == utils.cpu_count()
    assert lines == [f"--workers 1000000: this machine has {utils.cpu_count()} CPUs; using "
                     f"{utils.cpu_count()} processes"]
