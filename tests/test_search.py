"""Searching continuous strain: file layout checks, trigger files, clustering, time slides."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from strain_io import StrainFile, StrainWriter, cluster_triggers, read_triggers, write_triggers
from timeslides import TimeSlides, light_travel_time
from utils import G2NetError


def _strain(path, detectors=("H1", "L1"), segments=((100.0, 64),), delta_t=1 / 16):
    writer = StrainWriter(path, detectors)
    for start, n in segments:
        key = writer.create_segment(start, n, delta_t)
        writer.write(key, 0, np.random.default_rng(0).standard_normal((len(detectors), n)))
    writer.close()
    return path


def test_time_slides_are_disjoint_and_counted():
    """Slide k pairs H1 sample i with L1 sample i + k*step; lags differ by at least a step, no pair
    of samples is used twice, and the effective duration counts every kept sample once."""
    rate, step, n = 16.0, 3.0, 400
    data = np.stack([np.arange(n), 10_000 + np.arange(n)]).astype(float)
    slides = TimeSlides(n_slides=5, step=step)
    slides.validate(("H1", "L1"), window=2.0)
    pairs, lags, kept = set(), [], 0
    for k, slid in slides.views(data, rate):
        lag = slid[1] - 10_000 - slid[0]
        assert np.all(lag == k * step * rate)  # one lag per slide
        lags.append(lag[0])
        new = set(zip(slid[0].astype(int), slid[1].astype(int)))
        assert not pairs & new
        pairs |= new
        kept += slid.shape[1]
    assert lags == [0, 48, 96, 144, 192, 240]
    assert np.all(np.diff(lags) >= (light_travel_time(("H1", "L1")) + 2.0) * rate)
    assert slides.effective_duration([n], 2, rate) == kept / rate == sum(n - 48 * k for k in range(6)) / rate
    # three detectors: detector j moves j * k * step; too long a slide drops out of a short segment
    three = TimeSlides(n_slides=3, step=step)
    assert three.offsets(2, 3, rate).tolist() == [0, 96, 192]
    assert three.usable(300, 3, 3, rate) == 12 and three.usable(200, 3, 3, rate) == 0
    assert len(list(three.views(np.zeros((3, 200)), rate))) == 3
    assert three.effective_duration([200, 300], 3, rate) == (200 + 104 + 8 + 300 + 204 + 108 + 12) / rate


def test_time_slide_step_is_checked():
    with pytest.raises(G2NetError, match="light travel"):
        TimeSlides(3, step=2.0).validate(("H1", "L1"), window=2.0)
    with pytest.raises(G2NetError, match="two detectors"):
        TimeSlides(3, step=5.0).validate(("H1",), window=2.0)
    with pytest.raises(G2NetError, match=">= 0"):
        TimeSlides(-1, step=5.0).validate(("H1", "L1"), window=2.0)
    TimeSlides(0).validate(("H1",), window=2.0)  # zero lag alone needs no step
    assert 0.009 < light_travel_time(("H1", "L1")) < 0.011
    assert 0.026 < light_travel_time(("H1", "L1", "V1")) < 0.028


def test_wrong_layouts_are_refused_with_one_line(tmp_path):
    good = _strain(tmp_path / "good.hdf")
    with StrainFile(good, ("H1", "L1"), 16) as strain:
        assert strain.detectors == ("H1", "L1") and strain.duration == 4.0
    cases = {}
    with h5py.File(tmp_path / "flat.hdf", "w") as f:
        f["strain"] = np.zeros(10)
    cases["flat.hdf"] = "no detector groups"
    with h5py.File(tmp_path / "noattrs.hdf", "w") as f:
        f.create_group("H1")["100"] = np.zeros(10)
    cases["noattrs.hdf"] = "lacks the attributes start_time and delta_t"
    with h5py.File(tmp_path / "unknown.hdf", "w") as f:
        f.create_group("X1")
    cases["unknown.hdf"] = "unknown detector"
    _strain(tmp_path / "mismatch.hdf")
    with h5py.File(tmp_path / "mismatch.hdf", "a") as f:
        del f["L1/100"]
        ds = f["L1"].create_dataset("100", data=np.zeros(32))
        ds.attrs.update({"start_time": 100.0, "delta_t": 1 / 16})
    cases["mismatch.hdf"] = "different segments"
    _strain(tmp_path / "overlap.hdf", segments=((100.0, 64), (102.0, 64)))
    cases["overlap.hdf"] = "overlap"
    (tmp_path / "text.hdf").write_text("not hdf5")
    cases["text.hdf"] = "not an HDF5 file"
    cases["missing.hdf"] = "not found"
    for name, message in cases.items():
        with pytest.raises(G2NetError, match=message) as err:
            StrainFile(tmp_path / name)
        assert "\n" not in str(err.value), name
    with pytest.raises(G2NetError, match="H1,L1 but H1,L1,V1 are needed"):
        StrainFile(good, ("H1", "L1", "V1"))
    with pytest.raises(G2NetError, match="sampled at 16 Hz but 2048 Hz"):
        StrainFile(good, sample_rate=2048)
    with h5py.File(good, "a") as f:
        f["H1/100"][5] = np.nan
    with StrainFile(good) as strain, pytest.raises(G2NetError, match="NaN"):
        strain.read(strain.segments[0])


def test_trigger_files_hold_exactly_what_mlgwsc1_reads(tmp_path):
    write_triggers(tmp_path / "t.hdf", [5.0, 1.0, 3.0], [0.1, 0.9, 0.5], 0.3, attrs={"duration": 10.0})
    with h5py.File(tmp_path / "t.hdf") as f:
        assert sorted(f.keys()) == ["stat", "time", "var"]
        for key in ("time", "stat", "var"):
            assert f[key].dtype == np.float64 and f[key].ndim == 1
        assert f["time"][()].tolist() == [1.0, 3.0, 5.0]
        assert f["stat"][()].tolist() == [0.9, 0.5, 0.1]
        assert f["var"][()].tolist() == [0.3] * 3
    time, stat, var, attrs = read_triggers(tmp_path / "t.hdf")
    assert attrs["duration"] == 10.0 and time.tolist() == [1.0, 3.0, 5.0]


def test_clustering_keeps_the_loudest_within_the_window():
    time = np.array([0.0, 0.3, 0.6, 0.9, 5.0, 5.2, 9.0])
    stat = np.array([1.0, 3.0, 2.0, 2.5, 0.5, 0.5, 0.1])
    kept = cluster_triggers(time, stat, window=0.5)
    # 0.3 (3.0) removes 0.0 and 0.6; 0.9 (2.5) is 0.6 s away and stays; 5.0 wins the tie with 5.2
    assert kept.tolist() == [1, 3, 4, 6]
    assert np.all(np.diff(time[kept]) > 0.5)
