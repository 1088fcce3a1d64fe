"""The tuner's shortcuts change nothing: each is compared with the full computation it skips, in
the same run (the scheduler searching every idle slot, the V/2 pulse reading every half-selected
line, the line check sorting, the energy summing the whole array, the relaxation under programming
activity evaluating the drift law over the whole batch)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import mock_hw.sim_chip as sim_chip
from mock_hw.device import DeviceParams, disturb_drift, disturb_increments
from mock_hw.sim_chip import SimulatedCrossbar
from programming.schedule import SlotScheduler, cell_rank
from programming.tuner import TunerConfig, tune


def _tune(preset, seed, pristine=False):
    # the fast paths are those of ideal lines (resistive lines take the line solver's path)
    xb = SimulatedCrossbar(12, 12, n_chips=3, preset=preset, seed=seed, pristine=pristine, r_line=0.0)
    targets = np.random.default_rng(seed).uniform(*xb.programming_window, size=(3, 12, 12))
    cfg = TunerConfig(v_set_max=2.3, v_reset_max=2.4, max_pulses=60)
    return xb, tune(xb, targets, cfg)


@pytest.mark.parametrize("preset, pristine", [("tio2-3it", False), ("asymmetric", False), ("tio2-3it", True)])
def test_screened_v2_pulses_and_line_sums_give_bit_identical_tuning(monkeypatch, preset, pristine):
    fast_xb, fast = _tune(preset, 4, pristine)

    # the reference: every lane's lines read (screens that let everything through), the line
    # check by sorting, energy from whole-array sums; count the half-select hits it applies
    def open_screens(self):
        rows = np.full((self.n_chips, self.shape[0]), -np.inf)
        cols = np.full((self.n_chips, self.shape[1]), -np.inf)
        return {"row": (rows, rows, rows), "col": (cols, cols, cols)}

    def sorted_check(self, chip_idx, r, c):
        return np.unique(chip_idx * self.shape[0] + r).size == chip_idx.size \
            and np.unique(chip_idx * self.shape[1] + c).size == chip_idx.size

    def whole_sums(self, chip_idx, r, c, v, width, g_sel, i_sel=None):     # (the current worked out again)
        d = self.params.device
        g_sel = self._g[chip_idx, r, c]
        g_half = self._g.sum(axis=2)[chip_idx, r] + self._g.sum(axis=1)[chip_idx, c] - 2 * g_sel
        half = v / 2
        p_half = half * half * (1 + d.beta * half * half) / (1 + d.beta * d.v_ref ** 2) * g_half
        return (v * sim_chip.iv_current(g_sel, v, d.beta, d.v_ref) + p_half) * width

    hits = {"cells": 0, "drifted": 0}
    switch_at, switch_steps = sim_chip.switch_at, sim_chip.switch_steps

    def full_disturb(self, selected, loud):       # the drift law over the whole batch, no table
        d = self.params.device
        n_flat = self._n_disturb.reshape(-1)
        n_flat[selected] = 0.0
        loud = np.asarray(loud)
        if not d.disturbs or not loud.any():
            return
        ev = np.repeat(loud.astype(float), self.shape[0] * self.shape[1])
        ev[selected] = 0.0
        ev[~self.working_mask.reshape(-1)] = 0.0
        cells = np.flatnonzero(ev)
        hits["drifted"] += cells.size
        g_flat = self._g.reshape(-1)
        g_flat[cells] = disturb_drift(g_flat[cells], n_flat[cells], ev[cells], d, self._rng)
        n_flat[cells] += ev[cells]

    def counted(g_flat, flat, *args, **kwargs):
        hits["cells"] += flat.size
        return switch_at(g_flat, flat, *args, **kwargs)

    def counted_steps(g_flat, flat, *args, **kwargs):
        hits["cells"] += flat.size
        return switch_steps(g_flat, flat, *args, **kwargs)

    monkeypatch.setattr(SimulatedCrossbar, "_half_select_screens", open_screens)
    monkeypatch.setattr(SimulatedCrossbar, "_keys_distinct", sorted_check)
    monkeypatch.setattr(SimulatedCrossbar, "_energy_v2", whole_sums)
    monkeypatch.setattr(SimulatedCrossbar, "_disturb", full_disturb)
    monkeypatch.setattr(sim_chip, "switch_at", counted)
    monkeypatch.setattr(sim_chip, "switch_steps", counted_steps)
    ref_xb, ref = _tune(preset, 4, pristine)

    assert hits["cells"] > ref_xb.n_pulse_ops          # half-selected cells did switch in this run
    if not pristine:                                    # programmed cells drifted (tio2-3it)
        assert (hits["drifted"] > 0) == ref_xb.params.device.disturbs
    np.testing.assert_array_equal(fast_xb.true_conductance, ref_xb.true_conductance)
    np.testing.assert_array_equal(fast_xb._n_disturb, ref_xb._n_disturb)
    for name in ("status", "pulses", "reads", "time", "final", "rel_error"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
    assert fast.passes_run == ref.passes_run and fast.compliance_events == ref.compliance_events
    # energy: the same sums over fewer cells (equal up to the order of floating-point additions)
    np.testing.assert_allclose(fast.energy, ref.energy, rtol=1e-12, atol=0)
    if pristine:
        assert (fast_xb.formed_mask == ref_xb.formed_mask).all()


def test_line_check_by_counts_agrees_with_sorting():
    xb = SimulatedCrossbar(6, 5, n_chips=4, preset="ideal", seed=0)
    rng = np.random.default_rng(3)
    answers = set()
    for _ in range(300):
        lanes = int(rng.integers(1, 5))
        rows, cols = rng.integers(0, 6, size=(4, lanes)), rng.integers(0, 5, size=(4, lanes))
        active = rng.random((4, lanes)) < 0.7
        b = np.broadcast_to(np.arange(4)[:, None], rows.shape)[active]
        expected = b.size <= 1 or (np.unique(b * 6 + rows[active]).size == b.size
                                   and np.unique(b * 5 + cols[active]).size == b.size)
        assert xb._keys_distinct(b, rows[active], cols[active]) == expected
        answers.add(expected)
    assert answers == {True, False}


@pytest.mark.parametrize("shape, parallel", [((6, 9), 4), ((9, 5), 5), ((7, 7), 3)])
def test_scheduler_skipping_slots_without_cells_assigns_the_same(shape, parallel):
    rng = np.random.default_rng(shape[0] * 10 + parallel)
    todo = rng.random((3, *shape)) < 0.6
    rank = cell_rank(shape, "random", rng)
    fast = SlotScheduler(shape, todo, rank, parallel)
    full = SlotScheduler(shape, todo, rank, parallel)
    idle = np.ones((3, fast.parallel), bool)
    busy = {}
    steps = 0
    while fast.has_work() or busy:
        full.slot_left[:] = 10 ** 6                   # the reference searches every idle slot,
        full._vain[:] = False                         # even those searched in vain before
        picked = fast.assign(idle)
        for a, b in zip(picked, full.assign(idle)):
            np.testing.assert_array_equal(a, b)
        for chip, slot, r, c in zip(*picked):
            busy[(chip, slot)] = (r, c)
            idle[chip, slot] = False
        for key in list(busy)[: 1 + int(rng.integers(0, 3))]:     # finish a few busy cells
            r, c = busy.pop(key)
            for s in (fast, full):
                s.release(np.array([key[0]]), np.array([r]), np.array([c]))
            idle[key] = True
        steps += 1
    assert not full.remaining.any() and fast.left == 0 and steps > todo.sum() / (3 * fast.parallel)


@pytest.mark.parametrize("n_max", [46.0, 7.5])
def test_drift_increment_table_gives_the_drift_law_numbers(n_max):
    d = DeviceParams(disturb_n_max=n_max)
    rng = np.random.default_rng(11)
    n = rng.integers(0, 60, 5000).astype(float)           # beyond the cap too
    events = rng.integers(0, 9, 5000)
    g = rng.uniform(d.g_min, d.g_max, 5000)
    ref = disturb_drift(g, n, events.astype(float), d, np.random.default_rng(2))
    mean, sd = disturb_increments(d, 8)
    i = np.minimum(n, mean.shape[0] - 1).astype(np.intp)
    out = np.clip(g + mean[i, events] + sd[i, events] * np.random.default_rng(2).standard_normal(5000), d.g_min, d.g_max)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("rows, cols, bad", [([[-1, 0], [0, 0]], [[0, 0], [0, 0]], "(-1, 0)"),
                                             ([[0, 0], [0, 0]], [[0, 4], [0, 0]], "(0, 4)"),
                                             ([[0, 0], [0, 3]], [[0, 0], [-2, 0]], "(0, -2)")])
def test_lane_address_check_refuses_negative_and_too_large_indices(rows, cols, bad):
    # the shortcut reads the indices as unsigned: a negative one must still be refused
    xb = SimulatedCrossbar(4, 4, n_chips=2, seed=0, r_line=0.0)
    r, c = np.array(rows, np.intp), np.array(cols, np.intp)
    with pytest.raises(ValueError, match=f"cell {re.escape(bad)} is outside the 4x4 array"):
        xb.read(r, c)
    with pytest.raises(ValueError, match=f"cell {re.escape(bad)} is outside the 4x4 array"):
        xb.pulse(r, c, 1.2, 1e-6)
    assert xb.read(np.array([[0, 3], [3, 0]], np.intp), np.array([[0, 3], [1, 2]], np.intp)).conductance.shape == (2, 2)



@pytest.mark.parametrize("dense", [True, False])
def test_lane_address_check_shortcuts_accept_and_refuse_as_the_plain_rule(dense):
    # rows | columns below the smaller bound accepts at once, else the per-index check decides
    # (10x3: 8 | 2 = 10 is inside, 0 | 5 = 5 is not); a batch with one lane in four or fewer active
    # checks only theirs (an inactive lane may hold anything)
    xb = SimulatedCrossbar(10, 3, n_chips=8, seed=0, r_line=0.0)
    assert xb.read(np.full((8, 2), 8, np.intp), np.full((8, 2), 2, np.intp)).conductance.shape == (8, 2)
    for bad_r, bad_c, name in ((10, 0, "(10, 0)"), (9, 3, "(9, 3)"), (0, 5, "(0, 5)"), (-1, 1, "(-1, 1)")):
        r, c = np.zeros((8, 2), np.intp), np.zeros((8, 2), np.intp)
        r[5, 1], c[5, 1] = bad_r, bad_c
        active = np.ones((8, 2), bool) if dense else np.eye(8, 2, dtype=bool)
        active[5, 1] = False
        xb.pulse(r, c, 1.2, 1e-6, active=active)      # the bad lane is inactive: nothing refused
        active[5, 1] = True
        with pytest.raises(ValueError, match=f"cell {re.escape(name)} is outside the 10x3 array"):
            xb.pulse(r, c, 1.2, 1e-6, active=active)
        with pytest.raises(ValueError, match=f"cell {re.escape(name)} is outside the 10x3 array"):
            xb.read(r, c, active=active)
