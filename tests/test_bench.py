"""bench.py: the exact CPU/GPU split of the preprocessing, the noise data set, a CPU smoke run
that writes valid JSON and a markdown summary, and the GPU scripts parsing and asking for OUT."""
from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest
import torch

import bench
from g2net.simulation import noise as sim_noise
from g2net.training import runtime as rt
from g2net.training import trainer
from g2net.experiments import throughput
import configs
import transforms as T
from utils import G2NetError

FACTORS = T.COMPETITION_FACTORS


def names(steps) -> list[str]:
    return [type(s).__name__ for s in steps]


def cpu_names(cpu) -> list[str]:
    return [] if cpu is None else names(cpu.transforms)


def test_split_moves_exactly_the_steps_that_commute_with_what_follows():
    cpu, gpu = T.split_for_gpu(configs.Debug.transforms["train"])
    assert names(gpu) == ["Whiten", "BandPass"] and cpu_names(cpu) == ["FlipWave"]
    # noise added after the band-pass must not be band-passed: only Normalize may move past it
    cpu, gpu = T.split_for_gpu(T.Compose([T.Normalize(FACTORS), T.BandPass(),
                                              T.GaussianNoiseSNR(p=1.0), T.FlipWave()]))
    assert names(gpu) == ["Normalize"] and cpu_names(cpu) == ["BandPass", "GaussianNoiseSNR", "FlipWave"]
    # per-detector factors do not commute with swapping H1 and L1; one shared filter does
    cpu, gpu = T.split_for_gpu(T.Compose([T.Normalize(FACTORS), T.BandPass(), T.SwapChannel()]))
    assert names(gpu) == ["BandPass"] and cpu_names(cpu) == ["Normalize", "SwapChannel"]
    cpu, gpu = T.split_for_gpu(T.Compose([T.Whiten(), T.SwapChannel(p=0.5)]))
    assert gpu == [] and cpu_names(cpu) == ["Whiten", "SwapChannel"]
    # a preprocessing step applied only sometimes stays where it is
    cpu, gpu = T.split_for_gpu(T.Compose([T.Normalize(FACTORS, p=0.5)]))
    assert gpu == [] and cpu_names(cpu) == ["Normalize"]
    # a random choice among commuting augmentations commutes too; everything moved leaves no CPU part
    cpu, gpu = T.split_for_gpu(T.Compose([T.BandPass(), T.OneOf([T.FlipWave(), T.Scale()])]))
    assert names(gpu) == ["BandPass"] and cpu_names(cpu) == ["OneOf"]
    assert T.split_for_gpu(T.Compose([T.Normalize(FACTORS), T.BandPass()]))[0] is None
    assert T.split_for_gpu(None) == (None, [])


def strain(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((3, 4096)) * np.array(FACTORS)[:, None]).astype(np.float32)


PIPELINES = {
    "normalize-bandpass-noise": [T.Normalize(FACTORS, always_apply=True),
                                 T.BandPass(always_apply=True), T.GaussianNoiseSNR(always_apply=True),
                                 T.FlipWave(p=0.5), T.Scale(p=0.5)],
    "whiten-bandpass-flips": [T.Whiten(always_apply=True), T.BandPass(always_apply=True),
                              T.FlipWavePerChannel(p=1.0), T.FlipWave(p=0.5)],
    "normalize-past-augmentations": [T.Normalize(FACTORS, always_apply=True),
                                     T.IndependentTimeShift(p=1.0), T.TimeMask(p=1.0),
                                     T.FrequencyMask(p=1.0), T.PinkNoiseSNR(p=1.0),
                                     T.TimeResize(p=1.0), T.RandomResizedCrop(p=1.0)],
    "bandpass-past-swap": [T.BandPass(always_apply=True), T.SwapChannel(always_apply=True),
                           T.FlipWave(p=0.5)],
}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_cpu_part_then_gpu_part_equals_the_numpy_pipeline(name):
    """Same random draws (the moved steps are always_apply, so they draw nothing), same result."""
    full = T.Compose(PIPELINES[name])
    cpu, gpu_steps = T.split_for_gpu(full)
    assert gpu_steps, "something must move for this test to mean anything"
    gpu = T.GpuPreprocess(gpu_steps)
    expected, partial = [], []
    for seed in range(4):
        np.random.seed(seed)
        expected.append(full(strain(seed)))
        np.random.seed(seed)
        partial.append(cpu(strain(seed)) if cpu is not None else strain(seed))
    got = gpu(torch.from_numpy(np.stack(partial))).numpy()
    expected = np.stack(expected)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_gpu_transforms_leaves_one_common_gpu_part_for_every_key():
    numpy_transforms = dict(
        train=T.Compose([T.Normalize(FACTORS), T.BandPass(), T.GaussianNoiseSNR(p=0.5)]),
        test=T.Compose([T.Normalize(FACTORS), T.BandPass()]),
        tta=T.Compose([T.Normalize(FACTORS), T.BandPass(), T.FlipWave(always_apply=True)]))
    out = T.gpu_transforms(numpy_transforms)
    assert names(out["gpu"].steps) == ["Normalize"]
    assert cpu_names(out["train"]) == ["BandPass", "GaussianNoiseSNR"]
    assert cpu_names(out["test"]) == ["BandPass"] and cpu_names(out["tta"]) == ["BandPass", "FlipWave"]
    x = np.stack([strain(s) for s in range(3)])
    expected = np.stack([numpy_transforms["test"](e) for e in x])
    got = out["gpu"](torch.from_numpy(np.stack([out["test"](e) for e in x]))).numpy()
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    with pytest.raises(ValueError, match="already"):
        T.gpu_transforms(out)


def test_gpu_part_loads_its_psd_on_first_use():
    out = T.gpu_transforms(dict(train=T.Compose([T.Whiten(psd="no_such_psd.npy"), T.FlipWave()])))
    with pytest.raises(G2NetError, match="no_such_psd.npy"):
        out["gpu"](torch.zeros(2, 3, 4096))


def test_noise_data_set_is_in_the_competition_layout_and_reused(tmp_path):
    root = throughput.make_noise_dataset(tmp_path / "noise", 12, seed=3, printer=lambda m: None)
    table = __import__("pandas").read_csv(root / "train.csv", dtype={"id": str})
    assert len(table) == 12 and set(table["target"]) == {0, 1} and table["id"].is_unique
    cache = np.load(root / "train_cache.npy")
    first = np.load(root / table["path"][0])
    assert first.shape == (3, 4096) and first.dtype == np.float64
    np.testing.assert_array_equal(cache[0], first.astype(np.float32))
    assert 1e-23 < first.std() < 1e-18  # strain, not unit-variance noise
    assert np.abs(cache[0] - cache[1]).max() > first.std()  # independent examples
    messages = []
    throughput.make_noise_dataset(tmp_path / "noise", 12, seed=3, printer=messages.append)
    assert messages and "reusing" in messages[0]


def test_noise_data_set_is_the_simulators_noise(tmp_path):
    """Examples are sim_noise.colored_noise draws (seeded per example), with no fallback."""

    examples = throughput._noise_examples(3, [0, 5])
    for index, x in zip([0, 5], examples):
        np.testing.assert_array_equal(x, sim_noise.colored_noise(np.random.default_rng([3, index])))
    assert not np.array_equal(examples[0], examples[1])


def test_bench_runs_on_cpu_and_writes_json_and_a_markdown_table(tmp_path, capsys):
    common = ["--config", "Debug", "--synthetic", "--results-dir", str(tmp_path), "--n-train", "48",
              "--n-valid", "20", "--batch-size", "16"]
    optimized = bench.main(common + ["--setting", "optimized", "--num-workers", "1",
                                     "--json", str(tmp_path / "optimized.json")])
    original = bench.main(common + ["--setting", "original", "--steps", "2",
                                    "--json", str(tmp_path / "original.json")])
    for result, path in ((optimized, "optimized.json"), (original, "original.json")):
        saved = json.loads((tmp_path / path).read_text())
        assert set(throughput.RESULT_KEYS) <= set(saved)
        assert saved["errors"] == {} and saved["device"].startswith("cpu")
        for phase in throughput.PHASES:
            assert saved[f"{phase}_examples_per_s"] > 0
        assert 0 < saved["train_vs_model"] and saved["peak_gpu_memory_mb"]["max"] is None
        assert saved["n_valid"] == 20 and saved["batch_size"] == 16 and saved["amp_dtype"] is None
    assert optimized["n_train"] == 48 and optimized["num_workers"] == 1 and optimized["cache"]
    assert "Whiten" in optimized["gpu_transform"] and "Whiten" not in optimized["cpu_transform"]
    assert 0 <= optimized["gpu_transform_max_rel_error"] < 1e-5
    assert original["gpu_transform_max_rel_error"] is None
    assert original["n_train"] == 32 and original["num_workers"] == 0 and not original["cache"]
    assert original["gpu_transform"] is None and "Whiten" in original["cpu_transform"]
    capsys.readouterr()
    text = bench.main(["--summarize", str(tmp_path / "optimized.json"), str(tmp_path / "original.json"),
                       "--markdown", str(tmp_path / "bench.md")])
    lines = (tmp_path / "bench.md").read_text().splitlines()
    assert text.splitlines() == lines and len(lines) == 4
    assert lines[2].startswith("| Debug | optimized |") and lines[3].startswith("| Debug | original |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_bench_explains_bad_requests(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--config", "Debug", "--synthetic", "--results-dir", str(tmp_path),
                    "--n-train", "8", "--n-valid", "4", "--phases", "data,warp"])
    assert exc.value.code == 2 and "unknown --phases warp" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--config", "NoSuchConfig"])
    assert "unknown config" in capsys.readouterr().err


def test_original_setting_moves_a_configs_gpu_steps_back_to_the_cpu():
    class DebugOnGpu(configs.Debug):
        transforms = T.gpu_transforms(configs.Debug.transforms)

    assert names(DebugOnGpu.transforms["gpu"].steps) == ["Whiten", "BandPass"]
    args = bench.build_parser().parse_args(["--config", "DebugOnGpu", "--setting", "original"])
    cfg, setting = throughput.bench_config(DebugOnGpu, args)
    assert "gpu" not in cfg.transforms and setting["workers"] == 0 and cfg.amp_precision == "fp16"
    assert cpu_names(cfg.transforms["tta"]) == ["FlipWave", "Whiten", "BandPass"]
    x = np.stack([strain(s) for s in range(2)])
    for key in ("test", "tta"):
        expected = np.stack([configs.Debug.transforms[key](e) for e in x])
        got = np.stack([cfg.transforms[key](e) for e in x])
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    args = bench.build_parser().parse_args(["--config", "DebugOnGpu", "--setting", "optimized",
                                            "--channels-last", "off", "--amp", "bf16"])
    cfg, _ = throughput.bench_config(DebugOnGpu, args)
    assert cfg.transforms["gpu"] is DebugOnGpu.transforms["gpu"] and not cfg.channels_last
    assert cfg.amp_precision == "bf16" and cfg.name == "DebugOnGpu" and cfg.weight_path is None
    with pytest.raises(TypeError, match="no numpy version"):
        T.cpu_transforms(dict(test=None, gpu=torch.nn.Identity()))


def test_results_are_saved_after_every_phase(tmp_path):
    """A run killed at its time limit keeps the figures of the phases it finished."""
    args = bench.build_parser().parse_args(
        ["--config", "Debug", "--synthetic", "--results-dir", str(tmp_path), "--n-train", "32",
         "--n-valid", "16", "--batch-size", "16", "--setting", "original"])
    args.phases = ["data", "valid"]
    snapshots = []
    result = throughput.run_bench(args, printer=lambda m: None,
                             save=lambda partial: snapshots.append(json.loads(json.dumps(partial, default=str))))
    assert len(snapshots) == 2
    assert snapshots[0]["data_examples_per_s"] > 0 and "valid_examples_per_s" not in snapshots[0]
    assert snapshots[1]["valid_examples_per_s"] == result["valid_examples_per_s"] > 0
    assert "model_examples_per_s" not in result and result["train_vs_model"] is None
    row = throughput.markdown_table([snapshots[0]]).splitlines()[2]
    assert row.startswith("| Debug | original |") and " - |" in row


def test_gpu_scripts_parse_and_ask_for_their_output_folder():
    """The full scripts are checked by hand on the CPU with BENCH_TINY=1 (minutes); here only what is
    instant: they parse, and without OUT they stop before doing anything."""
    import os
    import subprocess

    from conftest import REPO

    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "gpu_common.sh")]).returncode == 0
    for name in ("gpu_throughput.sh", "gpu_session.sh"):
        script = REPO / "scripts" / name
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        env = {k: v for k, v in os.environ.items() if k != "OUT"}
        done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "set OUT" in done.stderr


def test_config_fields_amp_precision_and_compile_reach_the_model_and_trainer():

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert trainer.amp_dtype(cpu, True, "fp16") is None  # no autocast on the CPU
    assert trainer.amp_dtype(cuda, True, "fp16") == torch.float16
    assert trainer.amp_dtype(cuda, True, "bf16") == torch.bfloat16
    assert trainer.amp_dtype(cuda, False, "bf16") is None
    with pytest.raises(G2NetError, match="amp_precision"):
        trainer.amp_dtype(cpu, True, "fp8")
    runtime = rt.Runtime(cpu, 0)
    model = torch.nn.Linear(3, 1)
    assert rt.wrap_model(model, runtime) is model
    # compile applies on compile_devices only (default CUDA): a CPU run of a compiled config is eager
    assert rt.wrap_model(model, runtime, type("Compiled", (configs.Debug,), {"compile": True})) is model
    assert rt.wrap_model(model, runtime, configs.Seq03aug3) is model
    for value in (True, "reduce-overhead", "cudagraphs"):
        cfg = type("Compiled", (configs.Debug,), {"compile": value, "compile_devices": ("cpu", "cuda")})
        compiled = rt.wrap_model(model, runtime, cfg)
        assert compiled is not model and trainer.unwrap(compiled) is model  # checkpoints stay plain
    assert configs.Seq03aug3.compile == "reduce-overhead" and configs.Nspec16.compile == "cudagraphs"
    assert configs.Demo.compile is False


def test_frontend_method_reaches_the_wavelet_front_end():
    args = bench.build_parser().parse_args(["--config", "Nspec16", "--setting", "optimized",
                                            "--frontend-method", "conv"])
    cfg, _ = throughput.bench_config(configs.Nspec16, args)
    assert cfg.model_params["spec_params"]["method"] == "conv"
    assert cfg.model_params["pretrained"] is False
    assert "method" not in configs.Nspec16.model_params["spec_params"]  # the config is untouched
    model = cfg.model(**cfg.model_params)
    assert model.spectrogram.method == "conv" and not model.spectrogram.uses_fft(1537)
    args = bench.build_parser().parse_args(["--config", "Seq03aug3", "--frontend-method", "fft"])
    with pytest.raises(G2NetError, match="no spectrogram front-end"):
        throughput.bench_config(configs.Seq03aug3, args)


# -- bad requests: one line, exit 2, checked before the run; scratch data never in the current folder

def bench_error(argv: list[str], capsys) -> str:
    """bench.py in this process: exit status 2 and the error line (after argparse's usage)."""
    with pytest.raises(SystemExit) as caught:
        bench.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize("option, value, message", [
    ("--batch-size", "0", "'0': must be >= 1"),
    ("--batch-size", "-4", "'-4': must be >= 1"),
    ("--num-workers", "-1", "'-1': must be >= 0"),
    ("--steps", "1.5", "'1.5' is not a whole number"),
    ("--n-train", "0", "'0': must be >= 1"),
    ("--json", "", "an empty path; give a file or folder name (. for the current folder)"),
    ("--results-dir", "", "an empty path; give a file or folder name (. for the current folder)"),
])
def test_bad_numbers_and_empty_paths_are_refused_by_argparse(tmp_path, monkeypatch, capsys, option,
                                                            value, message):
    monkeypatch.chdir(tmp_path)
    line = bench_error(["--config", "Debug", "--synthetic", option, value], capsys)
    assert line.endswith(f"error: argument {option}: {message}")
    assert list(tmp_path.iterdir()) == []


def test_json_naming_an_input_or_a_folder_is_refused_before_the_run(tmp_path, monkeypatch, capsys):
    from conftest import assert_untouched, file_digests

    data = tmp_path / "input"
    data.mkdir()
    (data / "training_labels.csv").write_text("id,target\naaa111,1\n")
    (tmp_path / "a.json").write_text('{"label": "a"}')
    (tmp_path / "taken").mkdir()
    monkeypatch.setenv("G2NET_INPUT_DIR", str(data))
    before = file_digests(tmp_path)
    labels = data / "training_labels.csv"
    assert bench_error(["--config", "Debug", "--json", str(labels)], capsys) == (
        f"error: --json {labels}: give a file name ending in .json")
    inside = data / "bench.json"
    assert bench_error(["--config", "Debug", "--json", str(inside)], capsys) == (
        f"error: --json {inside} lies in {data}, the input folder this command reads; write the output "
        "somewhere else")
    folder = tmp_path / "taken"  # found only after the whole run before: now before any work
    assert bench_error(["--config", "Debug", "--json", str(folder)], capsys) == (
        f"error: --json {folder} is a folder; give the name of a file to write")
    summarized = tmp_path / "a.json"
    assert bench_error(["--summarize", str(summarized), "--json", str(summarized)], capsys) == (
        f"error: --json {summarized} is also an input ({summarized}); writing it would destroy the "
        "input: choose another output file")
    assert_untouched(before, tmp_path)


def test_synthetic_data_goes_to_a_removed_temporary_folder_not_the_current_one(tmp_path, monkeypatch):
    here, scratch = tmp_path / "here", tmp_path / "tmp"
    here.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = bench.main(["--config", "Debug", "--synthetic", "--n-train", "16", "--n-valid", "8",
                         "--batch-size", "8", "--phases", "data", "--setting", "original"])
    assert result["data_examples_per_s"] > 0
    assert list(here.iterdir()) == [] and list(scratch.iterdir()) == []
    with pytest.raises(SystemExit) as caught:
        bench.main(["--synthetic", "--prepare-only", "--n-train", "4", "--n-valid", "2"])
    assert caught.value.code == 2 and list(here.iterdir()) == []
