"""pytest fixtures for code that drives instruments: a mock bench in-process.

Installed as a pytest plugin (entry point ``pytest11``), so any project with xbarlab installed can
use them::

    def test_my_procedure(mock_bench_station):
        bench, station_path = mock_bench_station
        ...                                  # drive the station file's instruments
        assert bench.violations == []        # no hot switch, short or limit violation
"""
from __future__ import annotations

import pytest

from .mock_bench import MockBench


@pytest.fixture
def mock_bench():
    """A 4×4 ``tio2-3it`` mock bench (seed 0) on loopback; stopped after the test."""
    with MockBench(4, 4, seed=0) as bench:
        yield bench


@pytest.fixture
def mock_bench_station(mock_bench, tmp_path):
    """(bench, path of a station file for its k2600-707b instruments)."""
    return mock_bench, mock_bench.write_station(tmp_path / "station.toml")
