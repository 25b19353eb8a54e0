"""Each trigger's time slide is recorded, so a slid background yields its zero lag (MLGWSC-1's
evaluate.py compares a foreground with an unslid background) or a shorter background."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from g2net.search import engine
from g2net.search import options as search_options
from g2net.search.strain_io import StrainFile, StrainWriter
from g2net.search.timeslides import TimeSlides
from g2net.search.triggers import parse_slides, read_triggers, select_slides, write_triggers
from utils import G2NetError

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "select_slides_cli", Path(__file__).resolve().parents[1] / "scripts" / "select_slides.py")
select_slides_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(select_slides_cli)

RATE = 2048


def _score(batch: np.ndarray, psd: np.ndarray) -> np.ndarray:
    """A stand-in statistic that depends on how the detectors are paired."""
    return (batch[:, 0] * batch[:, 1]).sum(-1) / batch.shape[-1] ** 0.5


@pytest.fixture(scope="module")
def strain_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("slides") / "background.hdf"
    writer = StrainWriter(path, ("H1", "L1"))
    for start, seconds in ((1000.0, 60), (2000.0, 45)):
        n = seconds * RATE
        key = writer.create_segment(start, n, 1 / RATE)
        writer.write(key, 0, np.random.default_rng(int(start)).standard_normal((2, n)))
    writer.close()
    return path


def _search(path, n_slides):
    options = search_options.SearchOptions(stride=0.25, psd_duration=8.0, cluster=1.0,
                                           slides=TimeSlides(n_slides, 5.0))
    with StrainFile(path) as strain:
        result = engine.search_strain(strain, _score, options, progress=False)
        return result, search_options.trigger_attrs(strain, options, result)


def test_slides_are_recorded_and_the_zero_lag_is_the_unslid_search(strain_path, tmp_path):
    slid, attrs = _search(strain_path, 3)
    # every trigger names its slide; each slide's seconds are the kept stretch of each segment
    assert slid["slide"].shape == slid["time"].shape and set(slid["slide"]) == {0, 1, 2, 3}
    expected = [(60 - 5 * k) + (45 - 5 * k) for k in range(4)]
    np.testing.assert_allclose(slid["slide_duration"], expected)
    assert slid["duration"] == pytest.approx(sum(expected))
    write_triggers(tmp_path / "bg.hdf", slid["time"], slid["stat"], slid["var"], attrs, slide=slid["slide"])
    with h5py.File(tmp_path / "bg.hdf") as f:  # written sorted by time, slides alongside
        order = np.argsort(slid["time"], kind="stable")
        np.testing.assert_array_equal(f["slide"][()], slid["slide"][order])

    unslid, _ = _search(strain_path, 0)
    time, stat, var, slide, selected = select_slides(tmp_path / "bg.hdf", [0])
    np.testing.assert_array_equal(time, np.sort(unslid["time"]))
    np.testing.assert_array_equal(stat, unslid["stat"][np.argsort(unslid["time"], kind="stable")])
    assert np.all(slide == 0) and selected["duration"] == pytest.approx(105.0)
    assert selected["duration"] == pytest.approx(unslid["duration"])

    # the command line: two slides, then the zero lag again from its output
    assert select_slides_cli.main(["--events", str(tmp_path / "bg.hdf"), "--slides", "0,2",
                                   "--output", str(tmp_path / "two.hdf")]) == 0
    time2, _, _, attrs2 = read_triggers(tmp_path / "two.hdf")
    assert attrs2["duration"] == pytest.approx(expected[0] + expected[2])
    assert len(time2) == np.isin(slid["slide"], [0, 2]).sum()
    again = select_slides(tmp_path / "two.hdf", [0])
    np.testing.assert_array_equal(again[0], time)
    assert again[4]["duration"] == pytest.approx(105.0)


def test_refusals(strain_path, tmp_path, capsys):
    write_triggers(tmp_path / "old.hdf", [1.0, 2.0], [3.0, 4.0], 0.3, {"duration": 10.0})
    with pytest.raises(G2NetError, match="does not record the slide"):
        select_slides(tmp_path / "old.hdf", [0])
    slid, attrs = _search(strain_path, 1)
    write_triggers(tmp_path / "bg.hdf", slid["time"], slid["stat"], slid["var"], attrs, slide=slid["slide"])
    with pytest.raises(G2NetError, match=r"holds slides 0-1; slide\(s\) 2, 5 are not in it"):
        select_slides(tmp_path / "bg.hdf", [0, 2, 5])
    assert parse_slides("0") == [0] and parse_slides("3, 0-2,2") == [0, 1, 2, 3]
    for bad in ("", "a", "-1", "3-1", "1.5"):
        with pytest.raises(G2NetError, match="slide numbers >= 0"):
            parse_slides(bad)
    # the output is checked before anything is read or written: never the input
    with pytest.raises(SystemExit):
        select_slides_cli.main(["--events", str(tmp_path / "bg.hdf"), "--slides", "0",
                                "--output", str(tmp_path / "bg.hdf"), "--overwrite"])
    assert "also an input" in capsys.readouterr().err
    assert read_triggers(tmp_path / "bg.hdf")[0].shape == slid["time"].shape
