"""Every experiment in configs.py builds offline, trains a step on CPU and has the documented shape."""
from __future__ import annotations

import pytest
import torch

from conftest import run_script

import configs
from g2net.experiments import runner
from utils import G2NetError

ALL = runner.all_configs()

# The competition's 20 stacked models, their parents and the image each one sees.
PSEUDO_PARENTS = {
    "Pseudo06": "Nspec12", "Pseudo07": "Nspec16", "Pseudo10": "Nspec16spec13",
    "Pseudo12": "Nspec12arch0", "Pseudo13": "MultiInstance04", "Pseudo14": "Nspec16arch17",
    "Pseudo15": "Nspec22aug1", "Pseudo16": "Nspec22arch2", "Pseudo17": "Nspec23arch3",
    "Pseudo18": "Nspec21", "Pseudo19": "Nspec22arch6", "Pseudo21": "Nspec22arch7",
    "Pseudo22": "Nspec23arch5", "Pseudo23": "Nspec22arch12", "Pseudo24": "Nspec30arch2",
    "Pseudo25": "Nspec25arch1", "Pseudo26": "Nspec22arch10", "PseudoSeq03": "Seq09",
    "PseudoSeq04": "Seq03aug3", "PseudoSeq07": "Seq12arch4",
}
IMAGE_SIZE = {
    "Nspec12": (256, 512), "Nspec12arch0": (256, 512), "Nspec16": (128, 1024),
    "Nspec16spec13": (128, 1024), "Nspec16arch17": (128, 1024), "Nspec21": (256, 1024),
    "MultiInstance04": (384, 768), "Nspec22": (128, 1024), "Nspec22aug1": (128, 1024),
    "Nspec22arch2": (128, 1024), "Nspec23": (128, 1024), "Nspec23arch3": (128, 1024),
    "Nspec25arch1": (256, 1024), "Nspec30arch2": (128, 1024),
}
BACKBONE = {
    "Nspec12": "tf_efficientnet_b2", "Nspec12arch0": "densenet201", "Nspec16arch17": "tf_efficientnet_b7_ns",
    "Nspec21": "tf_efficientnet_b4_ns", "MultiInstance04": "xcit_tiny_12_p16_384_dist",
    "Nspec22arch2": "tf_efficientnet_b6_ns", "Nspec22arch6": "densenet201",
    "Nspec22arch7": "tf_efficientnetv2_m", "Nspec22arch10": "resnet200d",
    "Nspec22arch12": "tf_efficientnetv2_l", "Nspec23arch3": "tf_efficientnet_b6_ns",
    "Nspec23arch5": "tf_efficientnetv2_m", "Nspec25arch1": "tf_efficientnet_b3_ns",
    "Nspec30arch2": "tf_efficientnet_b6_ns",
}


def offline(cfg: type) -> torch.nn.Module:
    return cfg.model(**runner.offline_model_params(cfg))


def test_the_twenty_competition_models_and_their_parents_exist():
    for child, parent in PSEUDO_PARENTS.items():
        cfg = ALL[child]
        assert issubclass(cfg, ALL[parent])
        assert cfg.pseudo_labels == dict(path=parent, confident_samples=None, hard_label=False)
        assert cfg.criterion.smooth_eps == 0.025
        assert cfg.num_epochs == (6 if child == "PseudoSeq07" else 10)
        assert cfg.scheduler_params["T_0"] == cfg.num_epochs
    for name in ("Resized08aug4", "Nspec22", "Nspec23", "Nspec25", "Nspec30", "Seq00", "Seq02",
                 "Seq03", "Seq12", "Nspec16w", "Seq03w"):
        assert name in ALL
    for name, backbone in BACKBONE.items():
        assert ALL[name].model_params["model_name"] == backbone


def test_names_folds_and_defaults_follow_the_class():
    assert configs.Nspec16.name == "Nspec16" and configs.Pseudo07.name == "Pseudo07"
    assert configs.Demo.splitter.n_splits == configs.Demo.cv == 3
    assert configs.Baseline.splitter.random_state == configs.Baseline.seed
    assert configs.Baseline.optimizer_params == dict(lr=2e-4, weight_decay=1e-6)
    assert configs.Nspec16.optimizer_params["lr"] == 1e-3
    assert configs.Nspec22arch7.optimizer_params["lr"] == 2e-4
    assert configs.Nspec16arch17.optimizer_params["lr"] == 5e-4 and configs.Nspec16arch17.batch_size == 32
    assert configs.Baseline.model_params["model_name"] == "tf_efficientnet_b7"


def _distinct_models() -> dict[str, list[str]]:
    """One config per distinct model definition, with every config that shares it."""
    groups: dict[tuple, list[str]] = {}
    for name in sorted(ALL):
        cfg = ALL[name]
        groups.setdefault((cfg.model, repr(sorted(cfg.model_params.items()))), []).append(name)
    return {names[0]: names for names in groups.values()}


DISTINCT = _distinct_models()


def test_every_documented_image_size_is_checked():
    assert set(IMAGE_SIZE) <= {n for names in DISTINCT.values() for n in names}


@pytest.mark.parametrize("name", sorted(DISTINCT))
def test_every_model_builds_offline_trains_a_step_and_sees_its_image(name):
    """Build with pretrained=False, forward + backward a (2, detectors, 4096) batch on CPU: (2, 1)
    logits."""
    torch.manual_seed(0)
    model = offline(ALL[name]).train()
    x = torch.randn(2, len(ALL[name].detectors), 4096)
    sizes = {IMAGE_SIZE[n] for n in DISTINCT[name] if n in IMAGE_SIZE}
    if sizes:
        with torch.no_grad():
            image = model.make_image(x)
        assert {tuple(image.shape[-2:])} == sizes
    logits = model(x)
    assert logits.shape == (2, 1) and torch.isfinite(logits).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0], [0.0]]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[-2:])  # the head learns
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def receptive_field_seconds(cfg: type) -> float:
    """Seconds of strain one output position of the model's features depends on (by gradient)."""
    model = offline(cfg).eval()
    x = torch.randn(1, len(cfg.detectors), 4096, requires_grad=True)
    features = model.features(x)
    features[0, :, features.shape[-1] // 2].sum().backward()
    touched = (x.grad[0].abs().sum(0) > 0).nonzero()
    return float(touched.max() - touched.min() + 1) / 2048


def test_the_larger_two_detector_model_sees_four_times_the_strain():
    """Deep2detOnline's outputs integrate 0.92 s (a quiet inspiral), Demo2detOnline's 0.22 s; it
    trains as the 24-epoch Demo2detOnlineCurve does, on the same online H1+L1 batches."""
    small, deep = ALL["Demo2detOnline"], ALL["Deep2detOnline"]
    assert receptive_field_seconds(small) == pytest.approx(452 / 2048)
    assert receptive_field_seconds(deep) == pytest.approx(1892 / 2048)
    params = [sum(p.numel() for p in offline(c).parameters()) for c in (small, deep)]
    assert params == [58_961, 256_401]
    assert deep.detectors == small.detectors and deep.online == small.online
    assert (deep.num_epochs, deep.scheduler_params["T_0"]) == (24, 24)


def test_list_prints_every_config_with_backbone_and_size():
    done = run_script("train.py", "--list")
    rows = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert set(ALL) <= set(rows)
    assert "tf_efficientnet_b2" in rows["Nspec16"] and "CNN1d" in rows["Demo"]
    unsized = [name for name in ALL if "?" in rows[name]]
    assert not unsized and all(rows[name].endswith("M params") for name in ALL)
    # Nspec12's fixed wavelet bank cannot be built on the meta device: counted on the CPU
    count = sum(p.numel() for p in offline(configs.Nspec12).parameters())
    assert f"{count / 1e6:8.2f}M" in rows["Nspec12"] and count > 1e6
    assert runner.parameter_count(configs.Nspec12) == count


def test_lazy_layers_are_sized_by_a_dummy_forward():
    class LazyModel(torch.nn.Module):
        def __init__(self, num_classes: int = 1):
            super().__init__()
            self.head = torch.nn.LazyLinear(num_classes)

        def forward(self, x):
            return self.head(x.flatten(1))

    class Lazy(configs.Debug):
        model = LazyModel
        model_params = dict(num_classes=1)

    assert runner.parameter_count(Lazy) == 3 * 4096 + 1


# ----------------------------------------------------------------------------- checked configs
@pytest.mark.parametrize("field,suggestion", [("num_epoch", "num_epochs"),
                                              ("optimiser_params", "optimizer_params"),
                                              ("batchsize", "batch_size")])
def test_a_misspelt_field_is_refused_when_the_class_is_defined(field, suggestion):
    with pytest.raises(G2NetError, match=f"config Typo sets '{field}'.*did you mean {suggestion}"):
        type("Typo", (configs.Debug,), {field: 3})


def test_mixins_are_checked_and_private_helpers_and_methods_are_allowed():
    class _Mixin:
        num_epoch = 4

    with pytest.raises(G2NetError, match="'num_epoch' \\(inherited from _Mixin\\)"):
        type("Mixed", (_Mixin, configs.Debug), {})

    class Helpers(configs.Debug):
        _lr = 3e-4
        num_epochs = 1

        def describe(self) -> str:
            return "fine"

        @classmethod
        def build(cls):
            return cls

    assert Helpers.num_epochs == 1 and Helpers.name == "Helpers"
    with pytest.raises(G2NetError, match="'make_model'"):  # a lambda is a value, not a method
        type("Lambda", (configs.Debug,), {"make_model": lambda: None})


def test_a_model_params_typo_is_one_line_naming_config_and_keyword():
    bad = type("BadKernel", (configs.Debug,),
               {"model_params": dict(configs.Debug.model_params, kernal_size=7)})
    with pytest.raises(G2NetError) as caught:
        runner.make_model(bad)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("config BadKernel: model_params has 'kernal_size'")
    assert "did you mean kernel_size" in message
    bad_optimizer = type("BadOpt", (configs.Debug,), {"optimizer_params": dict(lr=1e-3, weight_decy=0)})
    with pytest.raises(G2NetError, match="BadOpt: optimizer_params has 'weight_decy'.*weight_decay"):
        runner.make_model(bad_optimizer)


def test_a_type_error_inside_a_model_keeps_its_traceback():
    class Broken(torch.nn.Module):
        def __init__(self, width: int = 4):
            super().__init__()
            torch.nn.Linear(width, "four")  # a bug in the model, not in the config

    cfg = type("BrokenModel", (configs.Debug,), {"model": Broken, "model_params": dict(width=4)})
    with pytest.raises(TypeError):
        runner.make_model(cfg)


USER_CONFIGS = """
from configs import Debug, Baseline


class MyCfg(Debug):
    num_epochs = 1


class NotAConfig:
    pass
"""


def test_configs_from_a_file_or_a_module_path(tmp_path, monkeypatch):
    path = tmp_path / "my_experiments.py"
    path.write_text(USER_CONFIGS)
    cfg = runner.get_config(f"{path}:MyCfg")
    assert issubclass(cfg, configs.Debug) and cfg.name == "MyCfg" and cfg.num_epochs == 1
    package = tmp_path / "mypackage"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "experiments.py").write_text(USER_CONFIGS)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert runner.get_config("mypackage.experiments:MyCfg").num_epochs == 1
    with pytest.raises(G2NetError, match="unknown config 'MyCgf'.*Did you mean: MyCfg"):
        runner.get_config(f"{path}:MyCgf")
    with pytest.raises(G2NetError, match="not a config.*subclasses configs.Baseline"):
        runner.get_config(f"{path}:NotAConfig")
    with pytest.raises(G2NetError, match="config file .*missing.py not found"):
        runner.get_config(f"{tmp_path / 'missing.py'}:MyCfg")
    with pytest.raises(G2NetError, match="config module mypackage.nothing not found"):
        runner.get_config("mypackage.nothing:MyCfg")


def test_a_typo_in_a_user_config_file_is_one_error_line_from_train_py(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("from configs import Debug\n\n\nclass Mine(Debug):\n    num_epoch = 3\n")
    done = run_script("train.py", "--config", f"{path}:Mine", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: config Mine sets 'num_epoch', which is not a config field (did you mean num_epochs?); "
        "every field is listed in configs.Baseline (prefix helpers with _ to keep them private)"]


def test_a_config_file_that_is_not_python_is_one_error_line(tmp_path):
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "text.py").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "binary.py").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00")
    with pytest.raises(G2NetError, match="passwd is not a Python file; give FILE.py:CLASS"):
        runner.get_config(f"{tmp_path / 'passwd'}:X")
    with pytest.raises(G2NetError, match="text.py is not valid Python \\(invalid syntax; .*line 1\\)"):
        runner.get_config(f"{tmp_path / 'text.py'}:X")
    with pytest.raises(G2NetError, match="binary.py is not valid Python .*null bytes"):
        runner.get_config(f"{tmp_path / 'binary.py'}:X")
    done = run_script("train.py", "--config", f"{tmp_path / 'passwd'}:X", check=False)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: config file {tmp_path / 'passwd'} is not a Python file; give FILE.py:CLASS"]


@pytest.mark.parametrize("name", ["../../x", "a/b", "", "..", "."])
def test_a_config_name_must_be_a_plain_folder_name(name, tmp_path, monkeypatch):
    """``name`` picks the results folder: one that is a path would train outside G2NET_RESULTS_DIR."""
    results = tmp_path / "deep" / "results"
    monkeypatch.setenv("G2NET_RESULTS_DIR", str(results))
    path = tmp_path / "escape.py"
    path.write_text(f"from configs import Debug\n\n\nclass Escape(Debug):\n    name = {name!r}\n")
    cfg = runner.get_config(f"{path}:Escape")
    with pytest.raises(G2NetError, match=f"config Escape: name {name!r} is not a plain name"):
        runner.experiment_dir(cfg, debug=False)
    with pytest.raises(G2NetError, match=f"config Escape: name {name!r} is not a plain name"):
        runner.main(["--config", f"{path}:Escape", "--debug"], pseudo=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["escape.py"]  # no folder made anywhere
    assert runner.experiment_dir(configs.Debug, debug=True) == results / "Debug_debug"
