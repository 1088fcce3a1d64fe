"""Emulated instruments of the mock bench: they speak the real instruments' command languages over
loopback TCP and act on one simulated crossbar through :class:`mock_hw.bench_physics.PhysicalBench`."""
