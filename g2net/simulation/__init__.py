"""Simulated data: priors, calibrated noise, the PyCBC and ml4gw engines, banks, the competition layout, long strain."""
