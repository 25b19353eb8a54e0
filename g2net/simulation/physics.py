"""The physics settings every engine, bank and search of this project shares, declared once.

Waveforms start at ``F_LOWER``; their phase and spins are defined at the reference frequency ``F_REF``
(LALSimulation's ``f_ref``: PyCBC's ``get_td_waveform(f_ref=...)``, ml4gw's generator ``f_ref``; every
engine passes it and ``injections.csv`` records it, so recorded parameters remake their signal);
optimal SNRs are measured over ``SNR_BAND`` against the simulator's
PSD; a source is first made at ``REFERENCE_DISTANCE`` and then moved to the distance that gives its
drawn network SNR. Units are PyCBC's: Hz, Mpc, solar masses.
"""
from __future__ import annotations

DEFAULT_APPROXIMANT = "IMRPhenomD"
F_LOWER = 20.0  # Hz, waveform start frequency
F_REF = 20.0  # Hz, reference frequency of coa_phase (and of the spins of precessing sources)
# what files written before the reference frequency was recorded used: PyCBC's default, which
# LALSimulation reads as "the frequency of the last sample" (the merger)
F_REF_UNRECORDED = 0.0
SNR_BAND = (20.0, 1000.0)  # Hz, band of the optimal SNR
REFERENCE_DISTANCE = 1000.0  # Mpc, distance of the first draw before rescaling to the drawn SNR
