"""Simulated hardware: TiO2 device physics, the simulated crossbar, and (later) emulated instruments."""
