"""Shared fixtures: a spy that wraps any Crossbar and records every call it forwards; Python's own
Ctrl-C handler for the session."""
from __future__ import annotations

import signal

import numpy as np
import pytest

from programming.crossbar import Crossbar


class SpyCrossbar(Crossbar):
    """Forwards to ``inner`` after the interface's own validation, recording each call's lanes."""

    def __init__(self, inner: Crossbar):
        self.inner = inner
        self.shape = inner.shape
        self.n_chips = inner.n_chips
        self.limits = inner.limits
        self.v_read = inner.v_read
        self.programming_window = inner.programming_window
        self.preferred_parallel = inner.preferred_parallel
        self.pulses: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.reads = 0

    def _read(self, rows, cols, v_read, scheme, active):
        self.reads += int(active.sum())
        return self.inner._read(rows, cols, v_read, scheme, active)

    def _pulse(self, rows, cols, amplitude, width, scheme, active):
        self.pulses.append((rows.copy(), cols.copy(), amplitude.copy(), active.copy()))
        return self.inner._pulse(rows, cols, amplitude, width, scheme, active)

    def _read_array(self, v_read, scheme):
        return self.inner._read_array(v_read, scheme)

    def _mvm(self, v_rows):
        return self.inner._mvm(v_rows)

    def _mvm_needed(self, v_rows, need):
        return self.inner._mvm_needed(v_rows, need)

    @property
    def true_conductance(self):
        return self.inner.true_conductance

    @property
    def working_mask(self):
        return self.inner.working_mask

    def amplitudes(self) -> np.ndarray:
        """Every sourced amplitude, V."""
        return np.concatenate([a[act] for _, _, a, act in self.pulses]) if self.pulses else np.array([])


@pytest.fixture(scope="session", autouse=True)
def python_ctrl_c():
    """Python's own SIGINT handler (KeyboardInterrupt) for the session, whatever the runner left:
    a shell without job control starts a background command with SIGINT ignored (POSIX), and
    then the tests of Ctrl-C handling (tests/test_faults.py) would test nothing (seen: the
    suite run as ``bash .ci/run &``).  Restored afterwards."""
    old = signal.getsignal(signal.SIGINT)
    if old == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if old == signal.SIG_IGN:
        signal.signal(signal.SIGINT, old)


@pytest.fixture
def spy():
    return SpyCrossbar


@pytest.fixture
def bench():
    """A 4×4 ``tio2-3it`` mock bench (seed 3) on loopback."""
    from mock_hw.mock_bench import MockBench

    with MockBench(4, 4, preset="tio2-3it", seed=3) as b:
        yield b


@pytest.fixture
def station(bench, tmp_path):
    """The station file of :func:`bench`.  Its instrument timeout (30 s) is far above any reply
    time, also on a loaded machine: no test depends on the host's speed.  Tests that inject a
    dropped reply use :func:`fault_station`."""
    return bench.write_station(tmp_path / "station.toml", timeout_ms=30000)


@pytest.fixture
def fault_station(bench, tmp_path):
    """The station file of :func:`bench` for tests that drop a reply on purpose: the timeout
    (3 s) is what such a test waits for, still ~100x a reply's time."""
    return bench.write_station(tmp_path / "fault-station.toml", timeout_ms=3000)


@pytest.fixture
def stop_after(monkeypatch):
    """``stop_after(n)``: the runner's stop request (Ctrl-C) turns true after ``n`` polls;
    ``stop_after(None)`` restores the real one."""
    import procedures.storage.runner as runner

    original = runner._Stopper

    def arm(n):
        if n is None:
            monkeypatch.setattr(runner, "_Stopper", original)
            return
        calls = {"n": 0}

        class StopAfter(original):
            def __call__(self):
                calls["n"] += 1
                return calls["n"] > n

        monkeypatch.setattr(runner, "_Stopper", StopAfter)
    return arm


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    """Run folders made without --out go under the test's tmp folder, never into the project."""
    monkeypatch.setenv("XBAR_RUNS", str(tmp_path / "runs"))
