"""The strain search's reference bank: placed by PyCBC's pycbc_brute_bank, stored and read back,
and the fitting factor that measures any bank against a prior's injections."""
from __future__ import annotations

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
