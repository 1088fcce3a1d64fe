"""Instrument drivers and the hardware crossbar (SMU + switch matrix) — see issue "Instrument
drivers, the mock bench, and the hardware crossbar"."""
