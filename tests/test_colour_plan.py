"""Passes of pulse counts over a colour plan (:mod:`programming.colour_plan`,
:meth:`~programming.crossbar.Crossbar.pulse_counts`): the simulated chip works a pass out from its
counts, bit for bit as it applies the plan's pulse list; plans are checked once, when made."""
from __future__ import annotations

import numpy as np
import pytest

from mock_hw.presets import get_preset
from mock_hw.sim_chip import SimulatedCrossbar
from programming.crossbar import LimitError
from tests.conftest import SpyCrossbar


def _cells(skip=()):
    """Three 4x4 tiles on the diagonal of a 12x12 chip (the last a 3x4 one), colour (col − row) mod 4,
    in row-major order, less the cells ``skip``."""
    rows, cols, tiles, colours = [], [], [], []
    for t, (r0, n_r) in enumerate([(0, 4), (4, 4), (8, 3)]):
        for i in range(n_r):
            for j in range(4):
                if (r0 + i, 4 * t + j) not in skip:
                    rows.append(r0 + i), cols.append(4 * t + j), tiles.append(t), colours.append((j - i) % 4)
    return tuple(np.array(a) for a in (rows, cols, tiles, colours))


def _preset(case):
    p = get_preset("asymmetric")
    if case == "stuck":           # stuck devices take pulses but never switch (no draws)
        return p.with_(device=p.device.with_(stuck_lrs_frac=0.1, stuck_hrs_frac=0.1)), 1.35
    if case == "near-threshold":  # 1.1 V at 100 ns acts like 1.0 V at 1 µs: about half the devices switch
        return p, 1.1
    if case == "two-exponents":   # SET and RESET windows of different exponents (the general step)
        return p.with_(device=p.device.with_(p_reset=2.0)), 1.35
    if case == "half-selects":    # V/2 of 2.4 V may switch half-selected cells: through the list
        return "ideal", 2.4
    return p, 1.35


@pytest.mark.parametrize("case, top", [("plain", 4), ("plain", 1), ("stuck", 4), ("near-threshold", 4),
                                       ("near-threshold", 1), ("two-exponents", 4), ("half-selects", 4)])
@pytest.mark.parametrize("through", ["simulator", "interface default"])
def test_pulse_counts_equal_the_plans_pulse_list(case, top, through, monkeypatch):
    """Passes of random counts (3 chips, most cells several pulses of either polarity, some none):
    the same states, later random draws, age and disturb bookkeeping and counters as
    ``pulse_list`` of the plan's list, pass after pass; the same steps and pulses per chip (counts up
    to ``top``; with 1, every device pulsed once).  On the simulator and through the interface's
    default (the list, one ``_pulse`` per step, as a bench)."""
    preset, amp = _preset(case)
    make = lambda: SimulatedCrossbar(12, 12, n_chips=3, preset=preset, seed=7)  # noqa: E731
    xb, ref = make(), make()
    chip, ref_chip = (xb, ref) if through == "simulator" else (SpyCrossbar(xb), SpyCrossbar(ref))
    plan = chip.colour_plan(*_cells(skip={(1, 2), (9, 9)}), amp, 1e-7)
    listed = []
    steps_at_once = SimulatedCrossbar._steps_at_once
    monkeypatch.setattr(SimulatedCrossbar, "_steps_at_once",
                        lambda self, *a: (listed.append(self is xb), steps_at_once(self, *a))[1])
    rng = np.random.default_rng(3)
    for _ in range(4):
        counts = rng.integers(-top, top + 1, (3, plan.size)) * (rng.random((3, plan.size)) < 0.8)
        done = chip.pulse_counts(plan, counts)
        steps, chips, rows, cols, amps, lanes = plan.pulse_list(counts)
        ref_chip.pulse_list(steps, chips, rows, cols, amps, plan.width, lanes=lanes)
        assert done.steps == steps[-1] + 1
        np.testing.assert_array_equal(done.pulses, np.abs(counts).sum(axis=1))
    np.testing.assert_array_equal(xb.true_conductance, ref.true_conductance)
    np.testing.assert_array_equal(xb._n_disturb, ref._n_disturb)
    np.testing.assert_array_equal(xb._t_written, ref._t_written)
    assert xb._rng.random() == ref._rng.random()
    assert xb.n_pulse_ops == ref.n_pulse_ops > 0
    assert xb.max_unselected_v == ref.max_unselected_v == amp / 2
    assert not np.array_equal(xb.true_conductance, make().true_conductance)
    if through != "simulator":
        assert len(chip.pulses) == len(ref_chip.pulses) > 4          # one call per step
    else:       # worked out from the counts, or (half-selects that may switch) through the list
        assert listed == [False] * 4 if case != "half-selects" else listed.count(True) == listed.count(False) > 0
    none = chip.pulse_counts(plan, np.zeros((3, plan.size), np.int64))
    assert none.steps == 0 and not none.pulses.any()


def test_a_pass_gives_each_cell_its_pulses_in_its_colours_turn():
    """The schedule of a pass, written out tile by tile: each tile takes its colours in order, each
    for as many steps as its largest count; a cell with n pulses is in the first n of them, with
    its polarity's amplitude; a step's pulses never share a line; listed step, chip, lane."""
    xb = SimulatedCrossbar(12, 12, n_chips=2, preset="asymmetric", seed=1)
    rows, cols, tiles, colours = _cells()
    plan = xb.colour_plan(rows, cols, tiles, colours, 1.35, 1e-7)
    counts = np.random.default_rng(2).integers(-3, 4, (2, plan.size))
    at_step, chip_of, r, c, amp, lanes = plan.pulse_list(counts)
    want, K = {}, 0
    for b in range(2):
        for t in range(3):
            step = 0
            for colour in range(4):
                sel = np.flatnonzero((tiles == t) & (colours == colour))
                for d in sel:
                    for j in range(abs(counts[b, d])):
                        want.setdefault((step + j, b), set()).add((rows[d], cols[d], 1.35 * np.sign(counts[b, d])))
                step += int(np.abs(counts[b, sel]).max(initial=0))
            K = max(K, step)
    got = {}
    for k, b, rr, cc, a in zip(at_step, chip_of, r, c, amp):
        got.setdefault((k, b), set()).add((rr, cc, a))
    assert got == want and at_step[-1] + 1 == K and len(at_step) == np.abs(counts).sum()
    for cells in got.values():
        assert len({x for x, _, _ in cells}) == len(cells) == len({y for _, y, _ in cells})
    assert np.all(np.diff((at_step * 2 + chip_of) * 1000 + lanes) > 0)


def test_colour_plan_refuses_what_a_pass_could_not_source():
    xb = SimulatedCrossbar(12, 12, n_chips=2, preset="asymmetric", seed=1)
    rows, cols, tiles, colours = _cells()
    ok = dict(rows=rows, cols=cols, tiles=tiles, colours=colours, amplitude=1.35, width=1e-7)
    moved = lambda a, i, v: np.concatenate([a[:i], [v], a[i + 1:]])  # noqa: E731
    cases = [(dict(rows=moved(rows, 0, 12)), ValueError, "outside the 12x12 array"),
             (dict(cols=moved(cols, 3, -1)), ValueError, "outside the 12x12 array"),
             (dict(rows=rows[:-1]), ValueError, "1-D arrays of one length"),
             (dict(rows=rows.astype(float)), ValueError, "must be integers"),
             (dict(colours=moved(colours, 0, -1)), ValueError, ">= 0"),
             (dict(cols=moved(cols, 1, 0)), ValueError, "a cell twice"),
             (dict(colours=moved(colours, 1, 0)), ValueError, "one colour of one tile share a line"),
             (dict(tiles=moved(tiles, 15, 1)), ValueError, "two tiles share a line"),
             (dict(amplitude=3.5), LimitError, "exceeds the limit v_max"),
             (dict(amplitude=-1.0), ValueError, "positive magnitude"),
             (dict(width=1e-9), LimitError, "pulse width")]
    for change, err, msg in cases:
        with pytest.raises(err, match=msg):
            xb.colour_plan(**{**ok, **change})
    plan = xb.colour_plan(**ok)
    g0 = xb.true_conductance
    with pytest.raises(ValueError, match=r"integers of shape \(2, 44\)"):
        xb.pulse_counts(plan, np.ones((1, plan.size), np.int64))
    with pytest.raises(ValueError, match="integers of shape"):
        xb.pulse_counts(plan, np.ones((2, plan.size)))
    with pytest.raises(ValueError, match="made for this chip"):
        SimulatedCrossbar(12, 12, n_chips=1, preset="asymmetric").pulse_counts(plan, np.ones((1, plan.size), int))
    np.testing.assert_array_equal(xb.true_conductance, g0)
    assert xb.n_pulse_ops == 0


def test_pulse_counts_on_unformed_devices_form_them_as_the_list_does():
    """A pristine chip's devices form under their first pulses (set by set): the pass goes through
    its list, with the same result."""
    make = lambda: SimulatedCrossbar(12, 12, preset="tio2-3it", seed=4, pristine=True)  # noqa: E731
    xb, ref = make(), make()
    plan = xb.colour_plan(*_cells(), 1.8, 1e-6)
    counts = np.full((1, plan.size), 2)
    xb.pulse_counts(plan, counts)
    steps, chips, rows, cols, amps, lanes = plan.pulse_list(counts)
    ref.pulse_list(steps, chips, rows, cols, amps, plan.width, lanes=lanes)
    np.testing.assert_array_equal(xb.true_conductance, ref.true_conductance)
    assert xb._rng.random() == ref._rng.random()
    assert not xb.population.unformed.all()
