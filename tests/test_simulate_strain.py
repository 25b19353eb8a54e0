"""simulate_strain.py: continuous calibrated noise, injections where the injection file says, the
MLGWSC-1 layout."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from g2net.simulation import noise as sim_noise
from g2net.simulation import strain
from g2net import spectral
import simulate_strain as ss
from g2net.search.strain_io import StrainFile, parse_detectors
from g2net.simulation.priors import Priors
from utils import G2NetError


def test_streamed_noise_has_no_seams():
    """Chunks of any size continue one stream: the same samples as one long call."""
    whole = sim_noise.StreamingNoise(("H1", "L1"), np.random.default_rng(3))(20000)
    stream = sim_noise.StreamingNoise(("H1", "L1"), np.random.default_rng(3))
    parts = np.concatenate([stream(n) for n in (1, 4095, 7000, 8904)], axis=-1)
    np.testing.assert_allclose(parts, whole, rtol=1e-9, atol=1e-12 * np.abs(whole).max())


def test_streamed_noise_asd_matches_the_noise_model():
    """512 s of streamed noise, cut into 2 s windows, estimates the calibrated table's PSD."""
    noise = sim_noise.StreamingNoise(("H1", "L1", "V1"), np.random.default_rng(11))
    x = np.concatenate([noise(2048 * 64) for _ in range(8)], axis=-1)
    windows = x.reshape(3, -1, 4096).transpose(1, 0, 2)
    ratio = spectral.estimate_psd(windows) / sim_noise.psd_array()
    freqs = np.fft.rfftfreq(4096, 1 / 2048)
    for low, high in [(20, 60), (60, 150), (150, 400), (400, 1000)]:
        band = (freqs >= low) & (freqs < high)
        assert np.median(ratio[:, band], axis=1) == pytest.approx([1, 1, 1], abs=0.04), (low, high)


def _run(out, chirp=(5.0, 8.0), seed=4, extra=()):
    return ss.main(["--out", str(out), "--duration", "90", "--segment-duration", "45", "--gap", "10",
                    "--padding", "3", "--seed", str(seed), "--chirp-distance-range", *map(str, chirp),
                    "--no-progress", *extra])


def test_layout_injections_and_signals(tmp_path):
    """Two segments in the MLGWSC-1 layout; injections every 24 +- 6 s inside them; the foreground
    minus the same noise with far-away sources is exactly the injected signals the file describes."""
    summary = _run(tmp_path / "near")
    _run(tmp_path / "far", chirp=(1e7, 1e7))
    with StrainFile(tmp_path / "near" / "foreground.hdf", ("H1", "L1"), 2048) as fg, \
            StrainFile(tmp_path / "near" / "background.hdf", ("H1", "L1"), 2048) as bg, \
            StrainFile(tmp_path / "far" / "foreground.hdf") as far:
        assert [(s.start_time, s.duration) for s in fg.segments] == [(strain.DEFAULT_START, 45.0),
                                                                      (strain.DEFAULT_START + 55, 45.0)]
        assert fg.segments == bg.segments
        with h5py.File(tmp_path / "near" / "injections.hdf") as f:
            table = {k: f[k][()] for k in f.keys()}
        n = summary["injections"]
        assert n == len(table["tc"]) >= 2
        for key in ("tc", "distance", "chirp_distance", "mass1", "mass2", "spin1z", "spin2z", "ra",
                    "dec", "polarization", "inclination", "coa_phase", "snr_H1", "snr_L1", "snr_network"):
            assert table[key].shape == (n,), key
        np.testing.assert_allclose(table["snr_network"], np.hypot(table["snr_H1"], table["snr_L1"]))
        mchirp = (table["mass1"] * table["mass2"]) ** 0.6 / (table["mass1"] + table["mass2"]) ** 0.2
        np.testing.assert_allclose(table["distance"],
                                   table["chirp_distance"] * (mchirp / strain.MCHIRP_BNS) ** (5 / 6))
        assert np.all((table["chirp_distance"] >= 5) & (table["chirp_distance"] <= 8))
        for s in fg.segments:
            inside = (table["tc"] >= s.start_time) & (table["tc"] <= s.end_time)
            assert np.all(table["tc"][inside] >= s.start_time + 3)
            assert np.all(table["tc"][inside] <= s.end_time - 3)
        assert sum(((table["tc"] >= s.start_time) & (table["tc"] <= s.end_time)).sum()
                   for s in fg.segments) == n
        plan = strain.StrainPlan(("H1", "L1"), strain.plan_segments(90, 45, 10, strain.DEFAULT_START), 4,
                             "IMRPhenomD", (5.0, 8.0), 3.0, Priors())
        for seg in fg.segments:
            diff = fg.read(seg) - far.read(seg)
            expected = np.zeros_like(diff)
            for number, (index, tc) in enumerate(strain.injection_times(plan)):
                if fg.segments[index] != seg:
                    continue
                params = strain.draw_injection(plan, number, tc)
                first, signal, snrs = strain.injection_on_grid(plan, params, seg.start_time)
                np.testing.assert_allclose(snrs, [table["snr_H1"][number], table["snr_L1"][number]])
                lo, hi = max(0, first), min(seg.n_samples, first + signal.shape[-1])
                expected[:, lo:hi] += signal[:, lo - first:hi - first]
            scale = np.abs(expected).max()
            assert scale > 0
            # float32 storage: noise (~1e3 x the far signals' level) rounds at ~1e-7 of its size
            np.testing.assert_allclose(diff, expected, atol=2e-6 * np.abs(fg.read(seg)).max())
            # the background is other noise, not the foreground's
            assert np.corrcoef(fg.read(seg)[0], bg.read(seg)[0])[0, 1] < 0.1


def test_same_seed_same_bytes_and_refusals(tmp_path):
    _run(tmp_path / "a", seed=9)
    _run(tmp_path / "b", seed=9)
    for name in strain.FILE_NAMES:
        with h5py.File(tmp_path / "a" / name) as fa, h5py.File(tmp_path / "b" / name) as fb:
            keys = []
            fa.visit(keys.append)
            for key in keys:
                if isinstance(fa[key], h5py.Dataset):
                    np.testing.assert_array_equal(fa[key][()], fb[key][()])
    with pytest.raises(SystemExit):
        _run(tmp_path / "a", seed=9)  # exists: refused, not overwritten
    with pytest.raises(G2NetError, match="--detectors"):
        parse_detectors("H1,X1")
    with pytest.raises(G2NetError, match="whole number"):
        strain.plan_segments(10.5, None, 0, 0)


@pytest.mark.parametrize("option,value", [("--duration", "inf"), ("--gap", "nan"), ("--start-time", "nan"),
                                          ("--segment-duration", "inf"), ("--padding", "nan")])
def test_non_finite_options_are_one_argparse_line(option, value, tmp_path, capsys):
    args = {"--duration": "20", option: value}
    with pytest.raises(SystemExit) as done:
        ss.main(["--out", str(tmp_path / "out"), *[x for pair in args.items() for x in pair], "--no-progress"])
    assert done.value.code == 2
    assert f"error: argument {option}: '{value}' is not a finite number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_naming_a_file_is_one_line_and_the_file_is_kept(tmp_path, capsys):
    (tmp_path / "notes").write_text("mine")
    with pytest.raises(SystemExit) as done:
        ss.main(["--out", str(tmp_path / "notes"), "--duration", "20", "--no-progress"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --out {tmp_path / 'notes'} is a file, not a folder; give a folder to write into"]
    assert (tmp_path / "notes").read_text() == "mine"


def _small(out, seed, *extra):
    return ss.main(["--out", str(out), "--duration", "20", "--padding", "3", "--seed", str(seed),
                    "--no-progress", *extra])


def test_an_overwrite_killed_between_renames_is_refused_by_the_readers(tmp_path, monkeypatch):
    """The three files are written under temporary names and renamed together; a kill between
    the renames leaves a new foreground beside the old background and injections, which every
    reader refuses (each file records its run); the next --overwrite run repairs the folder."""
    from g2net.search import evaluation
    from g2net.search.triggers import write_triggers

    out = tmp_path / "sim"
    _small(out, 1)
    with h5py.File(out / "injections.hdf") as f:
        old_run = f.attrs["run_id"]
    for name in strain.FILE_NAMES:  # one run, recorded in all three files
        with h5py.File(out / name) as f:
            assert f.attrs["run_id"] == old_run
    renamed = []
    real_replace = type(out).replace

    def killed_after_one(self, target):
        if renamed:
            staged = sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))
            assert staged == [".background.hdf.tmp", ".injections.hdf.tmp"]  # complete, not yet renamed
            raise KeyboardInterrupt
        renamed.append(target)
        return real_replace(self, target)

    monkeypatch.setattr(type(out), "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        _small(out, 2, "--overwrite")
    monkeypatch.undo()
    assert [p.name for p in renamed] == ["foreground.hdf"]
    with h5py.File(out / "foreground.hdf") as f:
        assert f.attrs["run_id"] != old_run and f.attrs["seed"] == 2
    for name in ("foreground.hdf", "background.hdf"):
        with pytest.raises(G2NetError, match="not from the same simulate_strain.py run.*simulate the "
                                             "folder again") as err:
            StrainFile(out / name)
        assert "\n" not in str(err.value)
    write_triggers(tmp_path / "fg.hdf", [100.0], [1.0], 0.3)
    with pytest.raises(G2NetError, match="not from the same simulate_strain.py run"):
        evaluation.run(str(out / "injections.hdf"), [str(out / "foreground.hdf")], [[str(tmp_path / "fg.hdf")]],
                       [[str(tmp_path / "fg.hdf")]], ["x"], tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
    # a copy of one file alone carries no siblings to compare with: it opens
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "background.hdf").write_bytes((out / "background.hdf").read_bytes())
    with StrainFile(tmp_path / "alone" / "background.hdf") as alone:
        assert alone.run_id == old_run
    _small(out, 2, "--overwrite")
    with StrainFile(out / "foreground.hdf") as fg, StrainFile(out / "background.hdf") as bg:
        assert fg.run_id == bg.run_id != old_run
    assert sorted(p.name for p in out.iterdir()) == sorted(strain.FILE_NAMES)  # no .tmp left
