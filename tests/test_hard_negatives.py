"""Hard negatives (issue 18): scripts/mine_hard_negatives.py cuts the windows a search scored
highest out of a background strain, and the online source replaces a fraction of each batch's
negatives by them. Hand-made strain and trigger files, fixed seeds."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import configs
import mine_hard_negatives as mining
from g2net.experiments import online as online_source
from g2net.search.strain_io import StrainWriter
from g2net.search.triggers import write_triggers
from g2net.simulation.ml4gw_engine import Batch, OnlineSimulator
from utils import N_SAMPLES, SAMPLE_RATE, G2NetError

SEGMENTS = ((1000.0, 12 * SAMPLE_RATE), (1100.0, 8 * SAMPLE_RATE))  # GPS start, samples
OFFSET = 1.7


@pytest.fixture
def background(tmp_path):
    """An H1+L1 strain of two segments, and its samples per segment (H1, L1 rows)."""
    writer = StrainWriter(tmp_path / "background.hdf", ("H1", "L1"))
    rng = np.random.default_rng(0)
    arrays = {}
    for start, n in SEGMENTS:
        key = writer.create_segment(start, n, 1.0 / SAMPLE_RATE)
        arrays[start] = rng.standard_normal((2, n)) * 1e-21
        writer.write(key, 0, arrays[start])
    writer.close()
    return tmp_path / "background.hdf", arrays


# window starts (segment, sample) and the search's stat of each: the top 3 are 9, 7, 5
WINDOWS = [((1000.0, 0), 5.0), ((1000.0, 3 * SAMPLE_RATE + 512), 9.0), ((1100.0, 4 * SAMPLE_RATE), 7.0),
           ((1000.0, 8 * SAMPLE_RATE), 1.0)]


def _events(path, strain, windows=WINDOWS, **attrs):
    times = [start + sample / SAMPLE_RATE + OFFSET for (start, sample), _ in windows]
    recorded = {"input": str(strain), "detectors": "H1,L1", "merger_offset": OFFSET, "slides": 0,
                "search": "search.py", "duration": 20.0, **attrs}
    write_triggers(path, times, [stat for _, stat in windows], 0.3,
                   {k: v for k, v in recorded.items() if v is not None})
    return path


def test_the_loudest_windows_are_cut_at_their_samples_in_h1_l1_v1_order(background, tmp_path, capsys):
    strain, arrays = background
    events = _events(tmp_path / "bg_events.hdf", strain)
    record = mining.main(["--events", str(events), "--strain", str(strain), "--top", "3",
                          "--out", str(tmp_path / "pool.npy")])
    pool = np.load(tmp_path / "pool.npy")
    assert pool.shape == (3, 3, N_SAMPLES) and pool.dtype == np.float32
    for k, index in enumerate([1, 2, 0]):  # loudest first: stats 9, 7, 5
        (start, sample), _ = WINDOWS[index]
        expected = arrays[start][:, sample:sample + N_SAMPLES].astype(np.float32)
        assert np.array_equal(pool[k, :2], expected)
        assert np.all(pool[k, 2] == 0)  # V1 absent
    saved = json.loads((tmp_path / "pool.json").read_text())
    assert saved == record and saved["top"] == 3 and saved["stat_range"] == [5.0, 9.0]
    assert saved["strain"] == str(strain) and saved["events"] == str(events)
    assert "3 hard negatives" in capsys.readouterr().out


def _refused(argv, tmp_path, capsys, message):
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as excinfo:
        mining.main(argv)
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("attrs, message", [
    (dict(slides=4), "search the background at zero lag"),
    (dict(detectors="H1,L1,V1"), "searched detectors H1,L1,V1"),
    (dict(input="elsewhere/other.hdf"), "is a search of elsewhere/other.hdf"),
    (dict(strain_run_id="another-run"), "from simulate_strain.py run another-run"),
    (dict(timing="plateau"), "--trigger-time plateau"),
    (dict(search="matched_filter"), "not search.py"),
    (dict(merger_offset=None), "does not record merger_offset"),
])
def test_trigger_files_that_do_not_say_where_their_windows_are_are_refused(
        background, tmp_path, capsys, attrs, message):
    strain, _ = background
    events = _events(tmp_path / "bg_events.hdf", strain, **attrs)
    if "strain_run_id" in attrs:  # the strain records its run: the trigger file's must match
        import h5py
        with h5py.File(strain, "a") as f:
            f.attrs["run_id"] = "this-run"
    _refused(["--events", str(events), "--strain", str(strain), "--top", "2",
              "--out", str(tmp_path / "pool.npy")], tmp_path, capsys, message)


def test_bad_requests_are_refused_before_anything_is_written(background, tmp_path, capsys):
    strain, _ = background
    events = _events(tmp_path / "bg_events.hdf", strain)
    args = ["--events", str(events), "--strain", str(strain)]
    out = ["--out", str(tmp_path / "pool.npy")]
    _refused(args + ["--top", "5"] + out, tmp_path, capsys, "holds only 4 triggers")
    _refused(args + ["--top", "0"] + out, tmp_path, capsys, "must be >= 1")
    _refused(args + ["--top", "1", "--out", str(events)], tmp_path, capsys, "ending in .npy")
    as_npy = _events(tmp_path / "bg_events.npy", strain)
    _refused(["--events", str(as_npy), "--strain", str(strain), "--top", "1", "--out", str(as_npy)],
             tmp_path, capsys, "is also an input")
    # the second segment's last window would run past its end
    late = _events(tmp_path / "late.hdf", strain, [((1100.0, 7 * SAMPLE_RATE), 10.0)] + WINDOWS)
    _refused(["--events", str(late), "--strain", str(strain), "--top", "2"] + out, tmp_path, capsys,
             "runs off the strain")
    # an offset that is not the one searched with puts the windows between samples
    shifted = _events(tmp_path / "shifted.hdf", strain, merger_offset=OFFSET + 0.1 / SAMPLE_RATE)
    _refused(["--events", str(shifted), "--strain", str(strain), "--top", "2"] + out, tmp_path,
             capsys, "does not start on a sample")
    mining.main(args + ["--top", "1"] + out)
    first = np.load(tmp_path / "pool.npy")
    _refused(args + ["--top", "2"] + out, tmp_path, capsys, "already exists")
    mining.main(args + ["--top", "2", "--overwrite"] + out)
    assert np.array_equal(np.load(tmp_path / "pool.npy")[:1], first)


# ----------------------------------------------------------------------------- the online source
def _batch(n: int = 20, positives: int = 8, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    signal = torch.randn(n, 3, 64, generator=g, dtype=torch.float64)
    signal[positives:] = 0.0
    target = torch.zeros(n, dtype=torch.float64)
    target[:positives] = 1.0
    return Batch(torch.randn(n, 3, 64, generator=g, dtype=torch.float64) + signal, target, signal, {})


def _pool_rows(data: torch.Tensor, pool: torch.Tensor) -> list[int]:
    """Indices of the rows of ``data`` that are exactly a window of ``pool``."""
    return [i for i in range(len(data)) if any(torch.equal(data[i], p) for p in pool)]


def test_a_fraction_of_the_negatives_become_pool_windows_and_positives_are_untouched():
    pool = torch.randn(5, 3, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    batch, original = _batch(), _batch()
    online_source.replace_hard_negatives(batch, torch.Generator().manual_seed(1), 0.25, pool)
    replaced = _pool_rows(batch.data, pool)
    assert len(replaced) == 3 and all(i >= 8 for i in replaced)  # round(0.25 * 12) negatives
    kept = [i for i in range(20) if i not in replaced]
    assert torch.equal(batch.data[kept], original.data[kept])
    assert torch.equal(batch.target, original.target) and torch.all(batch.signal[replaced] == 0)
    again = _batch()
    online_source.replace_hard_negatives(again, torch.Generator().manual_seed(1), 0.25, pool)
    assert torch.equal(again.data, batch.data)
    online_source.replace_hard_negatives(again, torch.Generator().manual_seed(1), 0.0, pool)
    assert torch.equal(again.data, batch.data)  # fraction 0: nothing drawn, nothing changed


def _source(pool, fraction, seed=4):
    simulator = OnlineSimulator(detectors=("H1", "L1"))
    return online_source.OnlineSource(simulator, batch_size=8, steps_per_epoch=2, seed=seed,
                                      hard_negatives=pool, hard_negative_fraction=fraction)


def test_the_online_source_puts_pool_windows_in_each_batch_reproducibly():
    pool = torch.randn(3, 3, N_SAMPLES, generator=torch.Generator().manual_seed(0)).double() * 1e-21
    pool[:, 2] = 0.0
    batches = [(x.clone(), y.clone()) for x, y in _source(pool, 0.5)]
    plain_x, plain_y = next(iter(_source(None, 0.0)))
    for x, y in batches:
        negatives = int((y == 0).sum())
        rows = _pool_rows(x, pool.float())
        assert len(rows) == round(0.5 * negatives) and all(y[rows] == 0)
    x, y = batches[0]  # the first batch is the plain source's until the negatives are replaced
    rows = _pool_rows(x, pool.float())
    others = [i for i in range(8) if i not in rows]
    assert torch.equal(y, plain_y) and torch.equal(x[others], plain_x[others])
    again = [(x.clone(), y.clone()) for x, y in _source(pool, 0.5)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))


def test_the_hard_negative_config_loads_its_pool_from_the_input_folder(tmp_path, monkeypatch):
    pool = np.random.default_rng(1).standard_normal((4, 3, N_SAMPLES)).astype(np.float32) * 1e-21
    np.save(tmp_path / "hard_negatives.npy", pool)
    monkeypatch.setenv("G2NET_INPUT_DIR", str(tmp_path))
    cfg = configs.Demo2detOnlineHardNeg
    source = online_source.make_source(cfg, torch.device("cpu"), seed=0, max_steps=1)
    assert source.hard_negative_fraction == 0.25 and source.hard_negatives.dtype == torch.float64
    expected = torch.from_numpy(pool).double()
    expected[:, 2] = 0.0  # V1: the config does not use it
    assert torch.equal(source.hard_negatives, expected)
    x, y = next(iter(source))
    assert x.shape == (32, 2, N_SAMPLES) and bool(torch.isfinite(x).all())


def _config(**online):
    return type("Bad", (configs.Demo2detOnline,), {"online": dict(configs.Demo2detOnline.online, **online)})


@pytest.mark.parametrize("settings, message", [
    (dict(hard_negative_fraction=1.5, hard_negatives="p.npy"), "must be in [0, 1]"),
    (dict(hard_negative_fraction=-0.1, hard_negatives="p.npy"), "must be in [0, 1]"),
    (dict(hard_negative_fraction="0.2", hard_negatives="p.npy"), "not a number"),
    (dict(hard_negative_fraction=0.2), "needs online['hard_negatives']"),
])
def test_bad_fractions_are_refused_naming_the_config(settings, message):
    with pytest.raises(G2NetError, match="config Bad") as excinfo:
        online_source.online_settings(_config(**settings))
    assert message in str(excinfo.value)


def _bad_pools():
    good = np.ones((2, 3, N_SAMPLES), dtype=np.float32)
    nan = good.copy()
    nan[1, 0, 5] = np.nan
    no_l1 = good.copy()
    no_l1[1, 1] = 0.0
    return [(None, "not found"), (np.ones((2, 2, N_SAMPLES), np.float32), "holds float32 (2, 2, 4096)"),
            (np.ones((0, 3, N_SAMPLES), np.float32), "K >= 1"), (nan, "NaN/inf (first: 1)"),
            (no_l1, "window 1 has no L1 strain"), ("text", "not a .npy array")]


@pytest.mark.parametrize("pool, message", _bad_pools())
def test_bad_pools_are_refused_naming_the_config(pool, message, tmp_path, monkeypatch):
    monkeypatch.setenv("G2NET_INPUT_DIR", str(tmp_path))
    if isinstance(pool, str):
        (tmp_path / "hard_negatives.npy").write_text(pool)
    elif pool is not None:
        np.save(tmp_path / "hard_negatives.npy", pool)
    with pytest.raises(G2NetError, match="config Demo2detOnlineHardNeg") as excinfo:
        online_source.make_source(configs.Demo2detOnlineHardNeg, torch.device("cpu"), seed=0)
    assert message in str(excinfo.value)
