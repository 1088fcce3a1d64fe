"""Simulated hardware: TiO2 device physics (device.py), the crossbar network solver (nodal.py),
chip presets (presets.py), the simulated chip (sim_chip.py), and the mock bench (mock_bench.py,
bench_physics.py, emulators/: one emulated instrument per model, served on 127.0.0.1)."""
