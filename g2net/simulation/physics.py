"""The physics settings every engine, bank and search of this project shares, declared once.

Waveforms start at ``F_LOWER``; optimal SNRs are measured over ``SNR_BAND`` against the simulator's
PSD; a source is first made at ``REFERENCE_DISTANCE`` and then moved to the distance that gives its
drawn network SNR. Units are PyCBC's: Hz, Mpc, solar masses.
"""
from __future__ import annotations

DEFAULT_APPROXIMANT = "IMRPhenomD"
F_LOWER = 20.0  # Hz, waveform start frequency
SNR_BAND = (20.0, 1000.0)  # Hz, band of the optimal SNR
REFERENCE_DISTANCE = 1000.0  # Mpc, distance of the first draw before rescaling to the drawn SNR
