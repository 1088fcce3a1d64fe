"""Forming of pristine devices, retention on a virtual clock, and chip state save / load."""
from __future__ import annotations

import math

import numpy as np
import pytest

from instruments.hardware_crossbar import HardwareCrossbar
from instruments.station import load_station
from mock_hw.mock_bench import MockBench
from mock_hw.sim_chip import SimulatedCrossbar, load_chip_state, save_chip_state
from programming.tuner import CONVERGED, TunerConfig, tune

TIO2 = SimulatedCrossbar(1, 1).params.device


def pristine(rows=6, cols=6, seed=1, **kw) -> SimulatedCrossbar:
    return SimulatedCrossbar(rows, cols, seed=seed, pristine=True, **kw)


def first_free_cell(xb, avoid_edges=True):
    """A non-stuck cell away from the array's edges (so it has neighbours on every side)."""
    ok = ~xb.stuck_mask[0]
    if avoid_edges:
        ok[0, :] = ok[-1, :] = ok[:, 0] = ok[:, -1] = False
    r, c = np.argwhere(ok)[0]
    return int(r), int(c)


# ----------------------------------------------------------------------------------- forming
def test_pristine_chip_is_unformed_and_reads_g_pristine():
    xb, formed = pristine(), SimulatedCrossbar(6, 6, seed=1)
    free = ~xb.stuck_mask
    # same manufacture with and without pristine
    np.testing.assert_array_equal(xb.population.vth_set, formed.population.vth_set)
    np.testing.assert_array_equal(xb.stuck_mask, formed.stuck_mask)
    np.testing.assert_array_equal(xb.true_conductance[~free], formed.true_conductance[~free])
    np.testing.assert_array_equal(xb.true_conductance[free], TIO2.g_pristine)
    g = xb.read_array()
    assert np.allclose(g[free], TIO2.g_pristine, rtol=0.01)
    assert not xb.working_mask.any()
    np.testing.assert_array_equal(xb.formed_mask, ~free)       # only stuck devices count as formed
    assert formed.formed_mask.all() and formed.population.unformed is None
    vf = xb.population.v_form
    assert np.all((vf > 1.5) & (vf < xb.limits.v_max))


@pytest.mark.parametrize("scheme", ["v/2", "v/3"])
@pytest.mark.parametrize("margin", [0.02, None])   # just above the cell's v_form, and at v_max
def test_forming_pulse_forms_only_the_selected_cell(scheme, margin):
    xb = pristine(seed=2)
    r, c = first_free_cell(xb)
    amp = xb.limits.v_max if margin is None else float(xb.population.v_form[0, r, c]) + margin
    g_before = xb.true_conductance
    xb.pulse(r, c, amp, 1e-6, scheme=scheme)
    expect = xb.stuck_mask[0].copy()
    expect[r, c] = True
    np.testing.assert_array_equal(xb.formed_mask[0], expect)
    assert xb.working_mask[0].sum() == 1 and xb.working_mask[0, r, c]
    lo, hi = TIO2.g_formed_range
    assert lo <= xb.true_conductance[0, r, c] <= hi
    others = np.ones(xb.shape, bool)
    others[r, c] = False
    np.testing.assert_array_equal(xb.true_conductance[0][others], g_before[0][others])


def test_concurrent_v2_lanes_and_line_resistance_form_their_cells():
    xb = pristine(seed=3)
    cells = [(i, i) for i in range(6) if not xb.stuck_mask[0, i, i]]
    rows, cols = np.array(cells).T
    amp = xb.population.v_form[0, rows, cols] + 0.05
    xb.pulse(rows, cols, amp, 1e-6, scheme="v/2")          # distinct lines: the concurrent path
    formed = xb.formed_mask[0] & ~xb.stuck_mask[0]
    assert set(zip(*np.nonzero(formed))) == set(cells)
    # the general path through the nodal solver (line resistance)
    xr = pristine(seed=3, r_line=1.0)
    r, c = first_free_cell(xr)
    xr.pulse(r, c, min(float(xr.population.v_form[0, r, c]) + 0.1, 3.0), 1e-6, scheme="v/2")
    assert xr.formed_mask[0, r, c] and xr.working_mask[0].sum() == 1


@pytest.mark.parametrize("scheme", ["v/2", "v/3"])
def test_below_the_forming_voltage_nothing_forms(scheme):
    xb = pristine(seed=4)
    g0 = xb.true_conductance
    rr, cc = np.nonzero(~xb.stuck_mask[0])
    for r, c in zip(rr, cc):
        xb.pulse(r, c, 0.98 * float(xb.population.v_form[0, r, c]), 1e-5, scheme=scheme)
    assert not xb.working_mask.any()
    np.testing.assert_array_equal(xb.true_conductance, g0)


def form_by_ramp(xb, v_start=1.6, v_stop=3.0, step=0.05, g_formed=50e-6, scheme="v/3"):
    """An operator's forming ramp: read, pulse every cell still reading unformed, raise the
    amplitude; stops when every cell reads formed (or at ``v_stop``).  Returns the last amplitude."""
    for amp in np.arange(v_start, v_stop + 1e-9, step):
        todo = np.argwhere(xb.read_array()[0] < g_formed)
        if not todo.size:
            return amp
        xb.pulse(todo[:, 0], todo[:, 1], amp, 1e-6, scheme=scheme)
    return v_stop


def test_formed_cells_then_tune():
    xb = pristine(6, 6, seed=5, r_line=0.0)    # forming then tuning (IR drop: test_ir_correction)
    form_by_ramp(xb)
    assert xb.formed_mask.all()
    assert (xb.working_mask == ~xb.stuck_mask).all()
    targets = np.full(xb.shape, np.nan)
    targets[1:5, 1:5] = np.random.default_rng(0).uniform(120e-6, 480e-6, size=(4, 4))
    res = tune(xb, targets, TunerConfig())
    block = (slice(None), slice(1, 5), slice(1, 5))
    working = xb.working_mask[block]
    ok = np.abs(xb.true_conductance[block] - targets[1:5, 1:5]) <= 0.01 * targets[1:5, 1:5]
    assert ok[working].mean() >= 0.9
    assert (res.status[block] == CONVERGED)[working].mean() >= 0.9


# --------------------------------------------------------------------------------- retention
def test_retention_after_1e4_s_is_a_few_percent_toward_g_rest():
    xb = SimulatedCrossbar(16, 16, seed=6)
    g0, w, g_rest = xb.true_conductance, xb.working_mask, TIO2.g_rest
    xb.wait(1e4)
    assert xb.clock == 1e4
    g1 = xb.true_conductance
    loss = 1 - (g1 - g_rest)[w] / (g0 - g_rest)[w]
    assert 0.03 <= loss.mean() <= 0.05
    assert np.all(g1[w] < g0[w]) and np.all(g1[w] > g_rest)
    np.testing.assert_array_equal(g1[~w], g0[~w])           # stuck devices do not relax


def test_retention_composes_and_resets_on_write():
    a, b = SimulatedCrossbar(8, 8, seed=7), SimulatedCrossbar(8, 8, seed=7)
    for _ in range(4):
        a.wait(2500.0)
    b.wait(1e4)
    np.testing.assert_allclose(a.true_conductance, b.true_conductance, rtol=1e-12)
    # a freshly written device relaxes much faster than one written 10^4 s ago
    r, c = first_free_cell(b)
    b.pulse(r, c, -1.6, 1e-6)
    g0, g_rest = b.true_conductance, TIO2.g_rest
    b.wait(100.0)
    loss = 1 - (b.true_conductance - g_rest) / (g0 - g_rest)
    w = b.working_mask.copy()
    w[0, r, c] = False
    assert loss[0, r, c] > 5 * np.median(loss[w])


def test_zero_wait_and_reads_change_nothing():
    a, b = SimulatedCrossbar(6, 6, seed=8), SimulatedCrossbar(6, 6, seed=8)
    a.wait(0.0)
    assert a.clock == 0.0
    np.testing.assert_array_equal(a.read_array(), b.read_array())
    np.testing.assert_array_equal(a.true_conductance, b.true_conductance)
    a.wait(100.0)
    g = a.true_conductance
    for _ in range(3):
        a.read_array()
    np.testing.assert_array_equal(a.true_conductance, g)
    assert a.clock == 100.0


def test_ideal_preset_does_not_relax():
    xb = SimulatedCrossbar(6, 6, preset="ideal", seed=9)
    g = xb.true_conductance
    xb.wait(1e6)
    np.testing.assert_array_equal(xb.true_conductance, g)
    assert xb.clock == 1e6


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "soon", None])
def test_bad_waits_are_refused(bad):
    xb = SimulatedCrossbar(4, 4, seed=10)
    g = xb.true_conductance
    with pytest.raises(ValueError, match="wait"):
        xb.wait(bad)
    assert xb.clock == 0.0
    np.testing.assert_array_equal(xb.true_conductance, g)


def test_the_base_class_wait_sleeps(spy, monkeypatch):
    slept = []
    monkeypatch.setattr("programming.crossbar.time.sleep", slept.append)
    inner = SimulatedCrossbar(2, 2, seed=11)
    xb = spy(inner)                      # a Crossbar that does not override _wait
    xb.wait(2.5)
    assert slept == [2.5] and inner.clock == 0.0
    with pytest.raises(ValueError):
        xb.wait(-1)
    assert slept == [2.5]


# ------------------------------------------------------------------------------ save / load
def session(xb):
    """A fixed sequence of operations; returns everything it observed."""
    out = [xb.read([0, 1, 2], [1, 2, 3]).conductance]
    out.append(xb.pulse([0, 1, 2], [0, 1, 2], [2.9, -1.5, 1.4], 1e-6, scheme="v/2").energy)   # concurrent
    out.append(xb.pulse([3, 3], [1, 2], [2.9, 1.6], 1e-6, scheme="v/3").energy)               # sequential
    xb.wait(1e3)
    out.append(xb.read_array())
    out.append(xb.mvm(np.full(xb.shape[0], 0.1)))
    out += [xb.true_conductance, xb.formed_mask, np.array([xb.clock, xb.n_read_ops, xb.n_pulse_ops])]
    return out


def test_save_load_round_trip_resumes_exactly(tmp_path):
    a = SimulatedCrossbar(5, 6, n_chips=2, seed=12, pristine=True)
    form_by_ramp(a, v_stop=2.2)                 # partly formed
    a.wait(50.0)
    path = save_chip_state(a, tmp_path / "chip.npz")
    assert path.exists() and not (tmp_path / "chip.npz.tmp").exists()
    state = a.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values())
    expected = session(a)
    b = SimulatedCrossbar(5, 6, n_chips=2, seed=99)          # another chip, not pristine
    load_chip_state(b, path)
    for x, y in zip(expected, session(b)):
        np.testing.assert_array_equal(x, y)
    c = SimulatedCrossbar(5, 6, n_chips=2, seed=98)          # the in-memory round trip
    c.load_state_dict(state)
    for x, y in zip(expected, session(c)):
        np.testing.assert_array_equal(x, y)


def test_a_format_1_state_still_loads(tmp_path):
    """A run folder saved before format 2 (one file, the population inside) still resumes exactly."""
    import json

    a = SimulatedCrossbar(5, 6, n_chips=2, seed=14, pristine=True)
    form_by_ramp(a, v_stop=2.2)
    state = a.state_dict()
    meta = json.loads(str(state["meta"][()]))
    state["meta"] = np.array(json.dumps({**meta, "version": 1}))
    np.savez(tmp_path / "chip.npz", **state)
    expected = session(a)
    b = SimulatedCrossbar(5, 6, n_chips=2, seed=99)
    load_chip_state(b, tmp_path / "chip.npz")
    for x, y in zip(expected, session(b)):
        np.testing.assert_array_equal(x, y)
    state["meta"] = np.array(json.dumps({**meta, "version": 3}))
    np.savez(tmp_path / "chip3.npz", **state)
    with pytest.raises(ValueError, match="chip state format 3, expected one of 1, 2"):
        load_chip_state(b, tmp_path / "chip3.npz")


def _population_files(folder):
    return sorted(p.name for p in folder.iterdir() if ".population-" in p.name)


def test_the_population_is_written_once_and_again_when_it_changes(tmp_path):
    """The static population goes to its own file, written only when its arrays changed (by
    content: an edit in place counts); the file it replaces is removed."""
    a = SimulatedCrossbar(5, 6, n_chips=2, seed=15, pristine=True)
    path = tmp_path / "chip.npz"
    save_chip_state(a, path)
    [first] = _population_files(tmp_path)
    stat = (tmp_path / first).stat()
    form_by_ramp(a, v_stop=2.2)                 # forming changes ``unformed`` only: in chip.npz
    save_chip_state(a, path)
    assert _population_files(tmp_path) == [first]
    assert (tmp_path / first).stat().st_mtime_ns == stat.st_mtime_ns and (tmp_path / first).stat().st_ino == stat.st_ino
    a.population.vth_set[0, 1, 2] += 0.01       # an edit in place
    save_chip_state(a, path)
    [second] = _population_files(tmp_path)
    assert second != first and not list(tmp_path.glob("*.tmp"))
    expected = session(a)
    b = SimulatedCrossbar(5, 6, n_chips=2, seed=99)
    load_chip_state(b, path)
    assert b.population.vth_set[0, 1, 2] == a.population.vth_set[0, 1, 2]
    for x, y in zip(expected, session(b)):
        np.testing.assert_array_equal(x, y)


def test_a_crash_between_the_two_writes_leaves_the_previous_state(tmp_path, monkeypatch):
    """Killed after the new population file and before the main file: the old main file still
    loads, with its own population, the chip it described; the next save cleans up."""
    import mock_hw.chip_state as cs

    a = SimulatedCrossbar(5, 6, n_chips=2, seed=16, pristine=True)
    form_by_ramp(a, v_stop=2.2)
    path = tmp_path / "chip.npz"
    save_chip_state(a, path)
    before = a.state_dict()
    a.wait(10.0)
    a.population.vth_set[1, 0, 0] += 0.01
    write = cs._write_npz

    def crash_on_main(target, arrays):
        if target == path:
            raise KeyboardInterrupt("killed")
        write(target, arrays)

    monkeypatch.setattr(cs, "_write_npz", crash_on_main)
    with pytest.raises(KeyboardInterrupt):
        save_chip_state(a, path)
    assert len(_population_files(tmp_path)) == 2    # the new one written, the old one kept
    monkeypatch.undo()
    b = SimulatedCrossbar(5, 6, n_chips=2, seed=98)
    load_chip_state(b, path)
    c = SimulatedCrossbar(5, 6, n_chips=2, seed=97)
    c.load_state_dict(before)
    for x, y in zip(session(c), session(b)):
        np.testing.assert_array_equal(x, y)
    save_chip_state(a, path)
    assert len(_population_files(tmp_path)) == 1


def test_a_missing_or_foreign_population_file_is_refused(tmp_path):
    a = SimulatedCrossbar(5, 6, n_chips=2, seed=17)
    other = SimulatedCrossbar(5, 6, n_chips=2, seed=18)
    (tmp_path / "a").mkdir()
    save_chip_state(a, tmp_path / "a" / "chip.npz")
    save_chip_state(other, tmp_path / "chip.npz")
    [mine] = _population_files(tmp_path / "a")
    [theirs] = _population_files(tmp_path)
    b = SimulatedCrossbar(5, 6, n_chips=2, seed=19)
    g = b.true_conductance
    (tmp_path / theirs).replace(tmp_path / "a" / mine)       # another chip's population under its name
    with pytest.raises(ValueError, match="does not hold the population saved"):
        load_chip_state(b, tmp_path / "a" / "chip.npz")
    (tmp_path / "a" / mine).unlink()
    with pytest.raises(ValueError, match=f"population file {mine} is missing"):
        load_chip_state(b, tmp_path / "a" / "chip.npz")
    np.testing.assert_array_equal(b.true_conductance, g)    # nothing changed


@pytest.mark.parametrize("other, match", [
    (dict(rows=5, cols=5), "shape"),
    (dict(n_chips=1), "n_chips"),
    (dict(preset="ideal"), "preset"),
    (dict(r_line=2.0), "line resistance"),
])
def test_a_state_for_another_chip_is_refused(tmp_path, other, match):
    a = SimulatedCrossbar(5, 6, n_chips=2, seed=13)
    save_chip_state(a, tmp_path / "chip.npz")
    kw = dict(rows=5, cols=6, n_chips=2, seed=14) | other
    b = SimulatedCrossbar(**kw)
    g = b.true_conductance
    with pytest.raises(ValueError, match=match):
        load_chip_state(b, tmp_path / "chip.npz")
    np.testing.assert_array_equal(b.true_conductance, g)    # nothing changed


# --------------------------------------------------------------------------------- mock bench
def test_mock_bench_forms_a_cell_through_the_instruments(tmp_path):
    with MockBench(4, 4, seed=3, pristine=True) as bench:
        chip = bench.chip
        r, c = 1, 2
        assert not chip.stuck_mask[0, r, c]
        station = load_station(bench.write_station(tmp_path / "station.toml", v_max=3.0, timeout_ms=30000))
        with HardwareCrossbar(station) as xb:
            before = xb.read(r, c).conductance[0, 0]
            assert before == pytest.approx(chip.params.device.g_pristine, rel=0.05)
            amp = min(float(chip.population.v_form[0, r, c]) + 0.1, 3.0)
            xb.pulse(r, c, amp, 1e-6, scheme="v/2")
            after = xb.read(r, c).conductance[0, 0]
            xb.wait(0.01)
            assert bench.bench.all_off(), "wait leaves outputs off and relays open"
            assert xb.read(r, c).conductance[0, 0] == pytest.approx(after, rel=0.01)
        expect = chip.stuck_mask[0].copy()
        expect[r, c] = True
        np.testing.assert_array_equal(chip.formed_mask[0], expect)
        lo, hi = chip.params.device.g_formed_range
        assert 0.95 * lo <= after <= 1.05 * hi
        assert bench.violations == [], bench.violations[:3]
        assert bench.bench.all_off()
