"""prep_data.py: csv contents and order, caches equal to the files and tied to the csv they were built
from (datasets.load_cache refuses a stale one), the PSD of the negatives, every bad-input error with
nothing left behind; plus the setup files (environment.yaml pins, Makefile).

Folders are built here with synthetic arrays (seeded), in the competition layout.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import prep_data
from conftest import one_line_error, quiet
from datasets import load_cache
from utils import G2NetError, example_path

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "real-g2net-sample"
# All-digit and exponent-looking ids: a csv reader that parses ids as numbers breaks them.
TRICKY_IDS = ["0000012345", "00001e1000"]


def make_folder(root: Path, n_train: int = 12, n_test: int = 5, seed: int = 0,
                with_test: bool = True) -> dict:
    """A competition-layout folder of float64 (3, 4096) strain-sized examples; returns its truth."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    truth: dict = {}
    for split, n in (("train", n_train), ("test", n_test)):
        if split == "test" and not with_test:
            continue
        ids = [f"{v:010x}" for v in rng.choice(16 ** 9, size=n, replace=False)]
        if split == "train":
            ids[:2] = TRICKY_IDS
        arrays = rng.standard_normal((n, 3, 4096)) * np.array([5e-21, 6e-21, 2e-21])[:, None]
        for example_id, array in zip(ids, arrays):
            path = example_path(root, split, example_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, array)
        if split == "train":
            targets = np.arange(n) % 2
            pd.DataFrame({"id": ids, "target": targets}).to_csv(root / "training_labels.csv",
                                                                index=False)
            truth["train"] = (ids, targets, arrays)
        else:
            pd.DataFrame({"id": ids, "target": 0.5}).to_csv(root / "sample_submission.csv",
                                                            index=False)
            truth["test"] = (ids, None, arrays)
    return truth


def all_files(root: Path) -> set[str]:
    """Every file under ``root`` (hidden temporaries included) with its size and mtime."""
    return {f"{p.relative_to(root)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
            for p in root.rglob("*") if p.is_file()}


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str})


def run(root: Path, **kwargs) -> list[Path]:
    return prep_data.prepare(root, progress=False, printer=lambda _: None, **kwargs)


# -- good inputs ---------------------------------------------------------------------------------

def test_csvs_keep_row_order_ids_targets_and_relative_paths(tmp_path):
    truth = make_folder(tmp_path / "input")
    written = run(tmp_path / "input")
    train = read_csv(tmp_path / "input" / "train.csv")
    test = read_csv(tmp_path / "input" / "test.csv")

    assert sorted(p.name for p in written) == ["test.csv", "train.csv"]  # no cache without --cache
    assert list(train.columns) == ["id", "target", "path"]
    assert list(test.columns) == ["id", "path"]
    assert train["id"].tolist() == truth["train"][0]  # tricky ids survive as text, order kept
    assert train["id"].tolist()[:2] == TRICKY_IDS
    assert train["target"].tolist() == truth["train"][1].tolist()
    assert test["id"].tolist() == truth["test"][0]
    # Relative to the csv's folder, in the competition layout, and pointing at the right arrays.
    assert train["path"][0] == "train/0/0/0/0000012345.npy"
    for frame, split in ((train, "train"), (test, "test")):
        for row, rel in enumerate(frame["path"]):
            assert not Path(rel).is_absolute()
            np.testing.assert_array_equal(np.load(tmp_path / "input" / rel), truth[split][2][row])
    assert not [p for p in (tmp_path / "input").iterdir() if p.name.startswith(".")]


def test_cache_rows_equal_the_files_and_open_memory_mapped(tmp_path):
    truth = make_folder(tmp_path / "input", n_train=20, n_test=7, seed=1)
    written = run(tmp_path / "input", cache=True, workers=3)

    assert sorted(p.name for p in written) == ["test.csv", "test_cache.json", "test_cache.npy",
                                               "train.csv", "train_cache.json", "train_cache.npy"]
    for split, n in (("train", 20), ("test", 7)):
        cache = np.load(tmp_path / "input" / f"{split}_cache.npy", mmap_mode="r")
        assert isinstance(cache, np.memmap)
        assert cache.dtype == np.float32 and cache.shape == (n, 3, 4096)
        np.testing.assert_array_equal(cache, truth[split][2].astype(np.float32))
        frame = read_csv(tmp_path / "input" / f"{split}.csv")
        assert frame["id"].tolist() == truth[split][0]  # cache row i is csv row i
    assert not [p for p in (tmp_path / "input").iterdir() if p.name.startswith(".")]


def test_out_folder_gets_absolute_paths_and_input_is_untouched(tmp_path):
    make_folder(tmp_path / "input")
    before = all_files(tmp_path / "input")
    run(tmp_path / "input", out_folder=tmp_path / "elsewhere" / "prep", cache=True)

    assert all_files(tmp_path / "input") == before
    train = read_csv(tmp_path / "elsewhere" / "prep" / "train.csv")
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in train["path"])
    assert Path(train["path"][0]) == (tmp_path / "input").resolve() / "train/0/0/0/0000012345.npy"


def test_without_sample_submission_only_the_training_side_is_written(tmp_path):
    make_folder(tmp_path / "input", with_test=False)
    lines = []
    written = prep_data.prepare(tmp_path / "input", cache=True, progress=False, printer=lines.append)
    assert sorted(p.name for p in written) == ["train.csv", "train_cache.json", "train_cache.npy"]
    assert any("test: skipped, no sample_submission.csv" in line for line in lines)


def test_psd_is_the_average_of_the_negatives_with_or_without_cache(tmp_path):
    from g2net.spectral import estimate_psd

    truth = make_folder(tmp_path / "input", n_train=9, seed=2)
    ids, targets, arrays = truth["train"]
    run(tmp_path / "input", psd=True, workers=4)
    psd = np.load(tmp_path / "input" / "psd.npy")
    assert psd.shape == (3, 2049) and psd.dtype == np.float64
    np.testing.assert_allclose(psd, estimate_psd(arrays[targets == 0]), rtol=1e-12)
    # Not the average over all examples: the positives are left out.
    assert not np.allclose(psd, estimate_psd(arrays), rtol=1e-3, atol=0)

    # Summed in row order: bit-identical whatever the number of threads, with or without cache.
    run(tmp_path / "input", out_folder=tmp_path / "cached", psd=True, cache=True, workers=1)
    np.testing.assert_array_equal(np.load(tmp_path / "cached" / "psd.npy"), psd)


@pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason=f"real G2Net sample not found at {REAL_SAMPLE}")
def test_real_sample_with_out_folder(tmp_path):
    before = all_files(REAL_SAMPLE)
    written = run(REAL_SAMPLE, out_folder=tmp_path, cache=True)
    assert all_files(REAL_SAMPLE) == before  # the read-only sample is never written
    assert sorted(p.name for p in written) == ["train.csv", "train_cache.json", "train_cache.npy"]

    labels = read_csv(REAL_SAMPLE / "training_labels.csv")
    train = read_csv(tmp_path / "train.csv")
    assert len(train) == 158 and int(train["target"].sum()) == 77
    assert train["id"].tolist() == labels["id"].tolist()
    cache = np.load(tmp_path / "train_cache.npy", mmap_mode="r")
    assert cache.shape == (158, 3, 4096) and cache.dtype == np.float32
    for row in (0, 57, 157):
        original = np.load(train["path"][row])
        assert original.dtype == np.float64
        np.testing.assert_array_equal(cache[row], original.astype(np.float32))
    # Raw strain, not normalised: per-detector standard deviations around 1e-21 .. 1e-20.
    assert 1e-22 < float(np.std(cache[0])) < 1e-19


def test_read_only_input_without_out_is_refused(tmp_path):
    make_folder(tmp_path / "input")
    (tmp_path / "input").chmod(0o555)  # refused even for root, who may write anywhere
    try:
        with pytest.raises(G2NetError, match=r"cannot write to .*pass --out DIR"):
            run(tmp_path / "input")
        assert not (tmp_path / "input" / "train.csv").exists()
    finally:
        (tmp_path / "input").chmod(0o755)


# -- caches tied to the exact table they were built from -----------------------------------------

def test_reordered_labels_drop_the_stale_cache_and_a_kept_copy_is_refused(tmp_path):
    root = tmp_path / "input"
    truth = make_folder(root, n_train=12, n_test=5)
    lines, options = quiet(cache=True)
    prep_data.prepare(root, **options)
    cache_file, stamp_file = root / "train_cache.npy", root / "train_cache.json"
    stamp = json.loads(stamp_file.read_text())
    assert stamp["table"] == "train.csv" and stamp["shape"] == [12, 3, 4096] and stamp["dtype"] == "float32"
    cache = load_cache(cache_file, read_csv(root / "train.csv"))
    np.testing.assert_array_equal(cache, truth["train"][2].astype(np.float32))
    kept = tmp_path / "kept"
    kept.mkdir()
    shutil.copy(cache_file, kept / cache_file.name)
    shutil.copy(stamp_file, kept / stamp_file.name)

    labels = pd.read_csv(root / "training_labels.csv", dtype={"id": str})
    labels.iloc[::-1].to_csv(root / "training_labels.csv", index=False)  # same rows, new order
    lines, options = quiet()
    prep_data.prepare(root, **options)
    assert not cache_file.exists() and not stamp_file.exists()
    assert any("train_cache.npy: it no longer matches train.csv" in line for line in lines)
    load_cache(root / "test_cache.npy", len(pd.read_csv(root / "test.csv")))  # test side unchanged: kept

    shutil.copy(kept / cache_file.name, cache_file)  # the old cache back beside the new csv
    shutil.copy(kept / stamp_file.name, stamp_file)
    for table in (read_csv(root / "train.csv"), 12):
        with pytest.raises(G2NetError, match=r"earlier train\.csv.*rerun `python prep_data\.py --cache`") as info:
            load_cache(cache_file, table)
        one_line_error(info)

    prep_data.prepare(root, **quiet(cache=True)[1])
    np.testing.assert_array_equal(load_cache(cache_file, read_csv(root / "train.csv")),
                                  truth["train"][2][::-1].astype(np.float32))


def test_load_cache_refuses_a_cache_without_sidecar_or_of_another_table(tmp_path):
    root = tmp_path / "input"
    make_folder(root, n_train=6, n_test=3)
    prep_data.prepare(root, **quiet(cache=True)[1])
    cache_file = root / "train_cache.npy"
    with pytest.raises(G2NetError, match="not those of the table given"):
        load_cache(cache_file, read_csv(root / "train.csv").iloc[::-1])
    with pytest.raises(G2NetError, match="its csv lists 5 examples"):
        load_cache(cache_file, 5)
    (root / "train_cache.json").unlink()
    with pytest.raises(G2NetError, match="no readable train_cache.json.*prep_data.py --cache"):
        load_cache(cache_file, 6)
    prep_data.write_cache_stamp(cache_file, root / "train.csv")  # a cache made by hand, tied by hand
    assert load_cache(cache_file, 6).shape == (6, 3, 4096)


# -- bad inputs: one clear error, nothing written ------------------------------------------------

def _remove_labels(root, truth):
    (root / "training_labels.csv").unlink()


def _remove_train_folder(root, truth):
    shutil.rmtree(root / "train")


def _remove_two_files(root, truth):
    for example_id in truth["train"][0][3:5]:
        example_path(root, "train", example_id).unlink()


def _save_first(change):
    def corrupt(root, truth):
        ids, _, arrays = truth["train"]
        np.save(example_path(root, "train", ids[4]), change(arrays[4].copy()))
    return corrupt


def _nan(a):
    a[1, 100] = np.nan
    return a


def _inf(a):
    a[2, 7] = -np.inf
    return a


def _too_big_for_float32(a):
    a[0, 0] = 1e300
    return a


def _not_npy(root, truth):
    example_path(root, "train", truth["train"][0][4]).write_bytes(b"not an array")


BAD_INPUTS = {
    "missing labels csv": (_remove_labels, r"training_labels.csv not found"),
    "missing train folder": (_remove_train_folder, r"folder .*train with its example files is not"),
    "missing npy": (_remove_two_files, r"train: 2 of 12 example files .* unusable -- 2 missing"),
    "wrong shape": (_save_first(lambda a: a[:2]),
                    r"1 not of shape \(3, 4096\) \(first: shape \(2, 4096\)\)"),
    "wrong dtype": (_save_first(lambda a: a.astype(np.float32)),
                    r"1 not of dtype float64 \(first: dtype float32\)"),
    "nan": (_save_first(_nan), r"1 containing NaN or infinite values \(first: 1 non-finite"),
    "inf": (_save_first(_inf), r"1 containing NaN or infinite values"),
    "beyond float32": (_save_first(_too_big_for_float32), r"1 containing NaN or infinite values"),
    "not npy": (_not_npy, r"1 not readable as a .npy array"),
}


@pytest.mark.parametrize("cache", [False, True], ids=["check", "cache"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_one_clear_error_and_writes_nothing(tmp_path, case, cache):
    corrupt, message = BAD_INPUTS[case]
    root = tmp_path / "input"
    truth = make_folder(root, n_train=12)
    corrupt(root, truth)
    before = all_files(root)

    with pytest.raises(G2NetError, match=message) as error:
        run(root, cache=cache, psd=cache)
    assert all_files(root) == before  # no csv, cache, psd or temporary left behind
    if case not in ("missing labels csv", "missing train folder"):
        first_bad = truth["train"][0][4]  # the offending id is named
        assert first_bad in str(error.value) and "Nothing was written" in str(error.value)


def test_error_counts_every_problem_of_both_splits_and_lists_the_first_ids(tmp_path):
    root = tmp_path / "input"
    truth = make_folder(root, n_train=12, n_test=5)
    train_ids, test_ids = truth["train"][0], truth["test"][0]
    for example_id in train_ids[2:9]:
        example_path(root, "train", example_id).unlink()
    np.save(example_path(root, "test", test_ids[3]), np.zeros((3, 4096), dtype=np.float32))

    with pytest.raises(G2NetError) as error:
        run(root, cache=True)
    message = str(error.value)
    assert f"7 missing (first: {example_path(root.resolve(), 'train', train_ids[2])})" in message
    assert ", ".join(train_ids[2:7]) + " and 2 more" in message
    assert "test: 1 of 5 example files listed in sample_submission.csv are unusable" in message
    assert test_ids[3] in message


def test_failed_rerun_keeps_the_previous_outputs_intact(tmp_path):
    root = tmp_path / "input"
    truth = make_folder(root)
    run(root, cache=True)
    before = all_files(root)
    np.save(example_path(root, "train", truth["train"][0][0]), np.full((3, 4096), np.nan))
    after_corruption = all_files(root)
    with pytest.raises(G2NetError, match="NaN"):
        run(root, cache=True)
    assert all_files(root) == after_corruption
    assert {f for f in before if "cache" in f or f.endswith(".csv")} <= after_corruption


@pytest.mark.parametrize("csv_text, message", [
    ("id,label\nabc,1\n", r"no column target .* must name id and target"),
    ("id,target\n", r"lists no examples"),
    ("id,target\n0000012345,1\n0000012345,0\n", r"1 ids appear more than once: 0000012345"),
    ("id,target\nabcdef,2\nabcdeg,0.5\n", r"2 targets are not 0 or 1, for ids abcdef, abcdeg"),
    ("id,target\na/b/c,1\n", r"ids are not at least 3 letters/digits"),
])
def test_bad_labels_csv(tmp_path, csv_text, message):
    root = tmp_path / "input"
    make_folder(root, n_train=3, n_test=1)
    (root / "training_labels.csv").write_text(csv_text)
    before = all_files(root)
    with pytest.raises(G2NetError, match=message):
        run(root)
    assert all_files(root) == before


def test_missing_input_folder_bad_workers_and_psd_without_negatives(tmp_path):
    with pytest.raises(G2NetError, match=r"input folder .*nowhere not found; .*G2NET_INPUT_DIR"):
        run(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()

    root = tmp_path / "input"
    make_folder(root, n_train=4, n_test=1)
    for workers in (-1, 0):  # 0 is not "the default"
        with pytest.raises(G2NetError, match=rf"--workers must be at least 1, not {workers}"):
            run(root, workers=workers)
    labels = pd.read_csv(root / "training_labels.csv", dtype={"id": str}).assign(target=1)
    labels.to_csv(root / "training_labels.csv", index=False)
    before = all_files(root)
    with pytest.raises(G2NetError, match=r"--psd averages the negatives .* has none"):
        run(root, psd=True)
    assert all_files(root) == before


def test_failure_mid_cache_leaves_no_cache_file(tmp_path, monkeypatch):
    """An unexpected crash (not a data problem) halfway through the cache removes the temporary."""
    root = tmp_path / "input"
    make_folder(root, n_train=12)
    before = all_files(root)
    real_load = prep_data.load_example
    calls = []

    def load_then_crash(path):
        calls.append(path)
        if len(calls) == 7:
            raise RuntimeError("disk controller on fire")
        return real_load(path)

    monkeypatch.setattr(prep_data, "load_example", load_then_crash)
    with pytest.raises(RuntimeError, match="on fire"):
        run(root, cache=True, workers=2)
    assert len(calls) >= 7
    assert all_files(root) == before


def test_full_disk_mid_cache_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    root = tmp_path / "input"
    make_folder(root, n_train=12)
    before = all_files(root)
    real_pwrite, writes = os.pwrite, []

    def pwrite_until_full(fd, data, offset):
        writes.append(offset)
        if len(writes) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(prep_data.os, "pwrite", pwrite_until_full)
    with pytest.raises(G2NetError, match=r"ran out of disk space writing the train cache"):
        run(root, cache=True, workers=1)
    assert all_files(root) == before


def test_temporaries_of_a_killed_run_are_removed_and_live_ones_kept(tmp_path):
    root = tmp_path / "input"
    make_folder(root)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # that process has exited
    stale = root / f".train_cache.npy.{dead_pid}.0a1b2c3d.tmp"
    live = root / f".train_cache.npy.{os.getpid()}.0a1b2c3d.tmp"  # a run still going on
    unrelated = root / ".notes.txt.123.tmp"
    for path in (stale, live, unrelated):
        path.write_bytes(b"x" * 100)
    lines = []
    prep_data.prepare(root, progress=False, printer=lines.append)
    assert not stale.exists() and live.exists() and unrelated.exists()
    assert "removed 1 temporary files of an interrupted earlier run" in lines[0]


# -- command line and memory ---------------------------------------------------------------------

def _cli(args, env_input: Path):
    env = dict(os.environ, G2NET_INPUT_DIR=str(env_input))
    return subprocess.run([sys.executable, str(REPO / "prep_data.py"), "--no-progress", *args],
                          cwd=env_input.parent, env=env, capture_output=True, text=True)


def test_cli_uses_g2net_input_dir_and_reports_errors_in_one_line(tmp_path):
    root = tmp_path / "input"
    truth = make_folder(root)
    good = _cli(["--cache"], root)
    assert good.returncode == 0, good.stderr
    assert "train: 12 examples (6 positives)" in good.stdout
    assert (root / "train_cache.npy").is_file() and (root / "test.csv").is_file()

    example_path(root, "test", truth["test"][0][0]).unlink()
    bad = _cli([], root)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: test: 1 of 5 example files")
    assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def _peak_rss_kb(root: Path, out: Path) -> int:
    """Peak resident memory of a fresh process caching ``root`` (VmHWM: ru_maxrss would include
    the parent's peak, which Linux carries across exec)."""
    code = ("import re, sys; import prep_data; "
            "prep_data.prepare(sys.argv[2], sys.argv[3], cache=True, workers=4, progress=False, "
            "printer=lambda _: None); "
            "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))")
    result = subprocess.run([sys.executable, "-c", code, str(REPO), str(root), str(out)],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


def test_cache_memory_does_not_grow_with_the_number_of_examples(tmp_path):
    """1,500 examples make a 74 MB cache (147 MB of float64 files); peak memory must not notice."""
    make_folder(tmp_path / "small", n_train=100, seed=3, with_test=False)
    make_folder(tmp_path / "large", n_train=1500, seed=4, with_test=False)
    small = _peak_rss_kb(tmp_path / "small", tmp_path / "small_out")
    large = _peak_rss_kb(tmp_path / "large", tmp_path / "large_out")
    assert (tmp_path / "large_out" / "train_cache.npy").stat().st_size > 1500 * 3 * 4096 * 4
    assert large - small < 25_000, f"peak RSS grew by {(large - small) / 1000:.0f} MB"


# -- setup files ---------------------------------------------------------------------------------

def _pins(lines) -> list[str]:
    return [line.strip() for line in lines if re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==\S+", line.strip())]


def test_environment_yaml_pins_match_requirements_txt():
    import yaml

    requirements = _pins((REPO / "requirements.txt").read_text().splitlines())
    environment = yaml.safe_load((REPO / "environment.yaml").read_text())
    dependencies = environment["dependencies"]
    pip_section = next(d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d)
    assert "python=3.11" in dependencies
    assert requirements and sorted(pip_section) == sorted(requirements)


def _make_dry_run(folder: Path, target: str) -> subprocess.CompletedProcess:
    """``make -n target`` with the repository's Makefile, unaffected by an enclosing make."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "-n", "--no-print-directory", "-f", str(REPO / "Makefile"),
                           target, "VENV=venv"], cwd=folder, env=env, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_runs_the_whole_job_in_order_on_the_demo_folders(tmp_path):
    """``make -n`` in a scratch folder whose prerequisites are empty files: the command sequence."""
    for name in ("requirements.txt", "pyproject.toml", "simulate.py", "prep_data.py"):
        (tmp_path / name).touch()
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").touch()
    for name in ("requirements.txt", "pyproject.toml"):
        os.utime(tmp_path / name, (1, 1))  # older than the install stamp
    (tmp_path / "venv" / ".requirements-installed").touch()
    result = _make_dry_run(tmp_path, "demo")
    assert result.returncode == 0, result.stderr
    assert "pip install" not in result.stdout  # the stamp is newer than requirements.txt
    commands = re.sub(r"\\\n\s*", "", result.stdout).splitlines()  # join continued lines
    steps = [line for line in commands if ".py" in line and " -c " not in line]
    scripts = [re.search(r"(\w+\.py)", line).group(1) for line in steps]
    assert scripts == ["simulate.py", "prep_data.py", "train.py", "train_pseudo.py", "stacking.py"]
    assert "--out demo_data/input --n-train 2000 --n-test 500 --overwrite --seed 0 --workers 2" in steps[0]
    assert "prep_data.py --cache" in steps[1] and "--config Demo" in steps[2]
    assert "--config PseudoDemo" in steps[3]
    for line in steps[1:]:
        assert line.startswith("G2NET_INPUT_DIR=demo_data/input G2NET_RESULTS_DIR=demo_data/results ")

    os.utime(tmp_path / "requirements.txt")  # changed requirements: reinstall first
    result = _make_dry_run(tmp_path, "test")
    lines = result.stdout.splitlines()
    assert lines[0] == "venv/bin/python -m pip install -r requirements.txt"
    assert lines[1] == "venv/bin/python -m pip install --no-deps -e ."  # the project, editable
    assert lines[-1].startswith("venv/bin/python -m pytest -q --durations=")


@pytest.mark.parametrize("option, value, message", [
    ("--workers", "0", "'0': must be >= 1"),
    ("--workers", "two", "'two' is not a whole number"),
    ("--out", "", "an empty path; give a file or folder name (. for the current folder)"),
])
def test_bad_options_are_refused_by_argparse_and_write_nothing(tmp_path, capsys, option, value, message):
    root = tmp_path / "input"
    make_folder(root, n_train=4, n_test=1)
    before = all_files(tmp_path)
    with pytest.raises(SystemExit) as caught:
        prep_data.main(["--input", str(root), "--no-progress", option, value])
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: argument {option}: {message}")
    assert all_files(tmp_path) == before
