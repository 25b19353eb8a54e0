"""The strain search's reference bank: placed by PyCBC's pycbc_brute_bank, stored and read back,
and the fitting factor that measures any bank against a prior's injections."""
from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

import matched_filter
from g2net.filtering import reference_bank as rb
from utils import G2NetError

# a corner of the prior and a loose match, so that placement takes seconds
RECIPE = rb.BankRecipe(minimal_match=0.9, mass_range=(30.0, 36.0), spin_range=(0.0, 0.0),
                       tolerance=0.05)


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    return rb.build(tmp_path_factory.mktemp("bank") / "bank.hdf", RECIPE, progress=False)


def test_placed_bank_is_read_back_with_its_recipe(placed):
    again = rb.load(placed.path)
    assert len(again) == len(placed) >= 1
    assert np.all((again.mass1 >= 30) & (again.mass1 <= 36) & (again.mass2 <= again.mass1))
    assert again.recipe["minimal_match"] == 0.9 and again.approximant == "IMRPhenomD"
    assert again.f_lower == 20.0


def test_fitting_factor_of_the_placed_bank_reaches_its_minimal_match(placed):
    injections = [{**p, "approximant": "IMRPhenomD"} for p in
                  (rb.search_prior_injections(1, seed=s)[0] for s in range(40))
                  if 30 <= p["mass2"] <= p["mass1"] <= 36][:6]
    injections = [{**p, "spin1z": 0.0, "spin2z": 0.0} for p in injections] or \
        [{"mass1": 34.0, "mass2": 31.0, "spin1z": 0.0, "spin2z": 0.0}]
    factors = rb.fitting_factors(placed, injections, "simulator", progress=False)
    # the stochastic bank keeps a proposal only below the minimal match: nearly every point of its
    # own prior is covered (a few may fall just short: the stopping rule is statistical)
    assert np.median(factors) >= 0.9 and factors.min() > 0.85


def test_a_template_fits_itself_and_the_figure_is_pycbcs(placed):
    template = placed.params()[0]
    factor = rb.fitting_factors(placed, [template], "simulator", progress=False)[0]
    assert factor == pytest.approx(1.0, abs=1e-3)
    # an unrelated signal fits worse, and the MLGWSC-1 prior has its own PSD and approximant
    far = rb.fitting_factors(placed, [{"mass1": 12.0, "mass2": 11.0, "spin1z": 0.0, "spin2z": 0.0}],
                             "simulator", progress=False)[0]
    assert far < 0.8
    ds1 = rb.mlgwsc1_dataset1_injections(3, seed=0)
    assert all(p["spin1z"] == 0 and p["mass2"] <= p["mass1"] and 10 <= p["mass2"] for p in ds1)
    ds1_factors = rb.fitting_factors(placed, ds1, "aLIGOZeroDetHighPower", progress=False)
    assert np.all((ds1_factors > 0) & (ds1_factors <= 1.0 + 1e-6))


def test_bad_bank_files_are_one_clear_error(tmp_path):
    with pytest.raises(G2NetError, match="not found; remake it with"):
        rb.load(tmp_path / "missing.hdf")
    (tmp_path / "text.hdf").write_text("not hdf")
    with pytest.raises(G2NetError, match="not an HDF5 template bank"):
        rb.load(tmp_path / "text.hdf")
    with h5py.File(tmp_path / "partial.hdf", "w") as f:
        f.create_dataset("mass1", data=[30.0])
    with pytest.raises(G2NetError, match="lacks mass2, spin1z, spin2z"):
        rb.load(tmp_path / "partial.hdf")
    with pytest.raises(G2NetError, match="minimal-match 1.2"):
        rb.build(tmp_path / "x.hdf", rb.BankRecipe(minimal_match=1.2), progress=False)
    assert not (tmp_path / "x.hdf").exists()


def test_check_reference_bank_command_reports_the_fitting_factor(placed, capsys):
    summary = matched_filter.main(["--check-reference-bank", "2", "--bank-file", str(placed.path),
                                   "--minimal-match", "0.9"])
    out = capsys.readouterr().out
    assert summary["n"] == 2 and "fitting factor median" in out and str(placed.path) in out


def test_the_committed_reference_bank_fits_the_search_prior():
    """data/reference_bank.hdf is what the strain search reads: placed for the search's prior and
    the simulator's PSD, and every injection finds a template of match >= 0.97 (checked here on
    the templates near a few injections' chirp masses; 500 injections: docs/search.md)."""
    from types import SimpleNamespace

    from pycbc.conversions import mchirp_from_mass1_mass2

    from g2net.simulation import noise
    from g2net.simulation.priors import Priors

    bank = rb.load()
    prior = Priors()
    assert bank.recipe["minimal_match"] == 0.97 and len(bank) > 1000
    assert bank.mass1.max() <= prior.mass_range[1] and bank.mass2.min() >= prior.mass_range[0]
    assert np.abs(np.concatenate(bank.spins)).max() <= max(abs(s) for s in prior.spin_range)
    with h5py.File(rb.REFERENCE_BANK_FILE, "r") as f:  # placed against today's simulator PSD
        placed_psd = f.attrs["psd_sha256"]
    assert placed_psd == hashlib.sha256(noise.load_asd()[1][0].tobytes()).hexdigest(), \
        "the simulator's H1 PSD changed: remake the bank (python matched_filter.py --build-reference-bank)"
    injections = rb.search_prior_injections(3, seed=11)
    chirp = mchirp_from_mass1_mass2(bank.mass1, bank.mass2)
    for injection in injections:
        target = mchirp_from_mass1_mass2(injection["mass1"], injection["mass2"])
        near = np.abs(chirp / target - 1) < 0.04
        sub = SimpleNamespace(masses=(bank.mass1[near], bank.mass2[near]),
                              spins=(bank.spin1z[near], bank.spin2z[near]),
                              approximant=bank.approximant, f_lower=bank.f_lower)
        assert rb.fitting_factors(sub, [injection], progress=False)[0] >= 0.97


@pytest.mark.parametrize("argv, message", [
    (["--check-reference-bank", "-3"], "must be >= 0"),
    (["--build-reference-bank", "--bank-file", ""], "an empty path"),
    (["--build-reference-bank", "--workers", "0"], "must be >= 1"),
    (["--build-reference-bank", "--bank-file", "{tmp}/asd.txt"], "ending in .hdf or .h5"),
    (["--build-reference-bank", "--bank-file", "{tmp}/other.hdf"], "exists"),
])
def test_bank_options_are_refused_before_placement_and_files_are_kept(tmp_path, capsys, argv, message):
    (tmp_path / "asd.txt").write_text("20 1e-23\n")
    with h5py.File(tmp_path / "other.hdf", "w") as f:  # an HDF5 file that is not a bank
        f.create_dataset("strain", data=np.zeros(4))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        matched_filter.main([a.format(tmp=tmp_path) for a in argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
