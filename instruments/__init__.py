"""Instrument drivers (pymeasure; one module per model: Keithley 2450/2600/707B, Keysight
B2900/B2200, the serial switch board), station files (station.py, stations/), what the hardware
crossbar needs from instruments (roles.py), and the hardware crossbar itself
(hardware_crossbar.py: an SMU and a switch matrix behind the Crossbar interface)."""
