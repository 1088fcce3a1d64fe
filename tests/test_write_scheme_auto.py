"""``TunerConfig(write_scheme="auto")``: the tuner picks V/2 or V/3 from its own line estimate
(:func:`programming.tuner.choose_write_scheme`) and widens the writes its drive limit holds.

The line resistance and I-V curvature are *measured* with reads (``line_estimate``); the
simulator's truth is used here only to judge."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mock_hw.sim_chip import SimulatedCrossbar
from programming.ir_correction import line_estimate
from programming.tuner import (AUTO_HALF_SELECT, AUTO_LONG_PULSES_AT_CAP, AUTO_QUIET_PASSES, AUTO_REFIT_EVERY,
                               AUTO_STEP_CONTROL, AUTO_WIDTH_RAMP, TunerConfig, choose_write_scheme, tune)

#: a 12×12 chip at 30 Ω per segment: the same line drop (r·n²) as a 64×64 one at 1 Ω, where V/2's
#: compensated writes would need more than the 1.95 V drive limit for many cells
N, R_STARVED = 12, 30.0


def _auto(xb, **kw) -> TunerConfig:
    r_est, beta = line_estimate(xb) if xb.params.r_line > 0 else (0.0, 0.0)
    return TunerConfig(write_scheme="auto", line_resistance=r_est, device_beta=beta, **kw)


@pytest.mark.parametrize("r_line, scheme", [(0.0, "v/2"), (0.67, "v/2"), (10.0, "v/2"), (R_STARVED, "v/3")])
def test_auto_picks_v3_only_where_v2_cannot_reach_the_cells(r_line, scheme):
    """Ideal lines, the default 0.67 Ω and 10 Ω (every cell within reach, no half-selected cell
    past 2/3 of a write's amplitude) keep the recipe's V/2 and its width; at 30 Ω V/3 with held
    writes widened, within the chip's width limit."""
    xb = SimulatedCrossbar(N, N, seed=0, r_line=r_line)
    cfg = choose_write_scheme(xb, _auto(xb))
    assert cfg.write_scheme == scheme
    if scheme == "v/2":
        assert cfg.width_ramp == 1.0
    else:
        assert cfg.width_ramp == AUTO_WIDTH_RAMP and cfg.width < cfg.width_max <= xb.limits.width_max
    named = replace(_auto(xb), write_scheme="v/2")
    assert choose_write_scheme(xb, named) is named                      # a named scheme is kept


@pytest.mark.parametrize("r_line, scheme", [(10.0, "v/2"), (14.0, "v/3")])
def test_auto_picks_v3_where_v2_would_half_select_past_two_thirds(r_line, scheme):
    """With the drive limit out of the way (every cell within reach under V/2), V/3 is still chosen
    where V/2's compensated writes would put more than AUTO_HALF_SELECT of the amplitude on the
    half-selected cells for more than 1 % of the cells: 12×12 at 14 Ω (10 % of them, up to 0.70),
    not at 10 Ω (up to 0.64); without widening, which stands in for withheld voltage."""
    xb = SimulatedCrossbar(N, N, seed=0, r_line=r_line)
    assert AUTO_HALF_SELECT == pytest.approx(2 / 3)
    cfg = choose_write_scheme(xb, _auto(xb, compensation_max=5.0, v_set_max=5.0))
    assert cfg.write_scheme == scheme
    assert cfg.width_ramp == 1.0        # every cell within reach: no write is widened


def test_auto_widens_to_the_chips_limit_only_where_v3_cannot_reach_the_start_amplitude():
    """At 30 Ω V/3 gives every cell the start amplitude within the drive limit: held writes widen
    up to the config's 100 µs, 5 pulses there.  At 45 Ω (a 64×64 chip at 2 Ω's drop) it does not:
    up to the chip's width limit, with more pulses there."""
    near = choose_write_scheme(SimulatedCrossbar(N, N, seed=0, r_line=R_STARVED),
                               _auto(SimulatedCrossbar(N, N, seed=0, r_line=R_STARVED)))
    assert (near.width_max, near.pulses_at_cap) == (TunerConfig().width_max, TunerConfig().pulses_at_cap)
    xb = SimulatedCrossbar(N, N, seed=0, r_line=45.0)
    far = choose_write_scheme(xb, _auto(xb))
    assert far.write_scheme == "v/3" and far.width_max == xb.limits.width_max > near.width_max
    assert far.pulses_at_cap == AUTO_LONG_PULSES_AT_CAP > near.pulses_at_cap
    assert far.held_progress and not near.held_progress and not TunerConfig().held_progress
    assert far.far_first and not near.far_first and not TunerConfig().far_first
    assert (far.refit_every, far.step_control) == (AUTO_REFIT_EVERY, AUTO_STEP_CONTROL)
    assert near.refit_every == TunerConfig().refit_every == 0 and near.step_control == TunerConfig().step_control == 0
    far.check_limits(xb.limits)


def test_held_writes_that_still_move_the_cell_do_not_count_toward_giving_up():
    """``held_progress`` (set by 'auto' where held writes widen to the chip's width limit): a pulse
    held at the full limit counts toward ``pulses_at_cap`` only where the pulse before it did not
    move the cell by the verify band toward its target.  12×12 at 45 Ω (a 64×64 chip at 2 Ω's
    drop), every cell: counting every held pulse, a far cell's ramp to 1 ms takes most of the count
    and each pass gives it up after a couple of 1 ms pulses that each moved it several µS (about
    91 % truly within 1 %); with the rule 97 %, and some cell takes more than ``pulses_at_cap``
    pulses in a row at 1 ms (never without it)."""
    tg = np.random.default_rng(100).uniform(100e-6, 500e-6, (N, N))
    truly = {}
    for progress in (False, True):
        xb = SimulatedCrossbar(N, N, seed=0, r_line=45.0)
        cfg = replace(choose_write_scheme(xb, _auto(xb)), held_progress=progress)
        res = tune(xb, tg, cfg, record_trace=True)
        work = xb.working_mask[0]
        truly[progress] = float((np.abs(xb.true_conductance[0] - tg) <= 0.01 * tg)[work].mean())
        tr = res.trace
        pulse = np.flatnonzero(tr["kind"] == 1)          # in the order fired
        longest, runs = 0, {}
        for k in pulse:         # pulses at the width limit in a row, per cell and pass
            key = (tr["row"][k], tr["col"][k], tr["pass"][k])
            runs[key] = runs.get(key, 0) + 1 if tr["width"][k] >= cfg.width_max * (1 - 1e-9) else 0
            longest = max(longest, runs[key])
        assert (longest > cfg.pulses_at_cap) == progress
    assert truly[True] >= 0.95
    assert truly[True] >= truly[False] + 0.04


def test_auto_keeps_v2_where_the_channels_cannot_bias_v3():
    """A chip whose channels serve only V/2 (a station with one bias channel) keeps V/2."""
    xb = SimulatedCrossbar(N, N, seed=0, r_line=R_STARVED)
    xb.write_schemes = ("v/2", "float")
    assert choose_write_scheme(xb, _auto(xb)).write_scheme == "v/2"


def test_auto_uncompensated_writes_keep_v2():
    xb = SimulatedCrossbar(N, N, seed=0, r_line=R_STARVED)
    assert choose_write_scheme(xb, _auto(xb, write_compensation=False)).write_scheme == "v/2"


def test_auto_tunes_a_starved_chip_that_v2_cannot():
    """12×12 at 30 Ω, every cell: V/2 leaves about a third of the working cells out of 1 % (the
    far ones held at the drive limit, below their thresholds); the auto scheme (V/3, held writes
    widened) ends at least 90 % truly within 1 %, 15 points more.  Drives stay within
    ``compensation_max`` (the initial RESETs aside), widths within ``width_max``, and no
    unselected cell sees more than half the largest drive."""
    tg = np.random.default_rng(100).uniform(100e-6, 500e-6, (N, N))
    truly = {}
    for scheme in ("v/2", "auto"):
        xb = SimulatedCrossbar(N, N, seed=0, r_line=R_STARVED)
        cfg = replace(_auto(xb), write_scheme=scheme)
        res = tune(xb, tg, cfg, record_trace=True)
        work = xb.working_mask[0]
        truly[scheme] = float((np.abs(xb.true_conductance[0] - tg) <= 0.01 * tg)[work].mean())
        tr = res.trace
        pulse = (tr["kind"] == 1) & (tr["amplitude"] != -cfg.reset_amplitude)
        assert np.abs(tr["amplitude"][pulse]).max() <= cfg.compensation_max + 1e-9
        assert tr["width"][pulse].max() <= res.config.width_max * (1 + 1e-9)
        assert xb.max_unselected_v <= cfg.reset_amplitude / 2 + 1e-9
        if scheme == "auto":
            assert res.config.write_scheme == "v/3" and res.config.width_ramp == AUTO_WIDTH_RAMP
            assert tr["width"][pulse].max() > cfg.width                # held writes were widened
            # ... but never in the last quiet passes of the budget (a low-disturbance trim)
            assert res.config.quiet_passes == AUTO_QUIET_PASSES and res.config.order == "reach"
            quiet = pulse & (tr["pass"] >= cfg.passes - AUTO_QUIET_PASSES)
            assert res.passes_run == cfg.passes and quiet.any()
            assert tr["width"][quiet].max() == cfg.width
    assert truly["auto"] >= 0.90
    assert truly["auto"] >= truly["v/2"] + 0.15


def test_auto_on_the_instrument_loop_writes_v2():
    """The on-instrument script writes uncompensated, for which 'auto' resolves to V/2: the loop is
    checked and run with V/2 (named schemes pass unchanged), and the default config asks for 'auto'."""
    from programming.tuner import on_instrument_scheme, tune as tune_fn

    assert TunerConfig().write_scheme == "auto"
    assert on_instrument_scheme("auto") == "v/2"
    assert [on_instrument_scheme(s) for s in ("v/2", "v/3", "float")] == ["v/2", "v/3", "float"]
    xb = SimulatedCrossbar(4, 4, seed=0)
    xb.tune_on_instrument = lambda *a, **k: None         # looks like a bench that runs the loop
    asked = []
    xb.on_instrument_problem = lambda scheme: asked.append(scheme) or "stop here"
    with pytest.raises(ValueError, match="stop here"):
        tune_fn(xb, np.full((4, 4), 200e-6), TunerConfig(), on_instrument=True)
    assert asked and set(asked) == {"v/2"}


def test_reach_order_tunes_the_cells_the_lines_starve_most_first():
    """``order="reach"``: cells are tuned in decreasing drive need by the tuner's line model, so the
    cell far from both terminals (row 0 from the column terminals, the last column from the row
    drivers) comes first, before cells each next to one terminal that row-major order takes first;
    without a line estimate the order is row-major."""
    tg = np.full((N, N), np.nan)
    for r, c in ((0, 0), (N - 1, N - 1), (0, N - 1)):
        tg[r, c] = 300e-6
    for lines, first in ((R_STARVED, (0, N - 1)), (0.0, (0, 0))):
        xb = SimulatedCrossbar(N, N, seed=0, r_line=lines)
        cfg = replace(_auto(xb), order="reach", parallel=1, passes=1)
        tr = tune(xb, tg, cfg, record_trace=True).trace
        tuned = (tr["kind"] == 0) & (tr["pass"] == 0)                    # the reads of pass 1, in order
        assert (int(tr["row"][tuned][0]), int(tr["col"][tuned][0])) == first


@pytest.mark.parametrize("rule", ["held_progress", "far_first", "step_control"])
def test_host_loop_rules_are_refused_on_the_instrument_loop(rule):
    """The on-instrument script gives up after ``pulses_at_cap`` pulses at the cap and tunes its
    cells in priority order: the host-loop rules are refused there, before anything is sourced."""
    xb = SimulatedCrossbar(4, 4, seed=0)
    xb.tune_on_instrument = lambda *a, **k: None         # looks like a bench that runs the loop
    with pytest.raises(ValueError, match=rule):
        tune(xb, np.full((4, 4), 200e-6), TunerConfig(**{rule: True}), on_instrument=True)


def test_far_first_tunes_the_far_cells_first_then_the_others_after_a_read_back(monkeypatch):
    """``far_first`` (set by 'auto' where held writes widen to the chip's width limit): in every pass
    the far cells (the line model leaves them short of the start amplitude at the drive limit) are
    all tuned before any other cell is pulsed, and the array is read back between the two (a
    read-back more than the passes); the cells that read-back finds out of the hold band join the
    pass, journaled as the pass's cells again, so an interrupted run rebuilds its state from the
    journal.  12×12 at 45 Ω (a 64×64 chip at 2 Ω's drop)."""
    import programming.tuner as tuner_module
    from programming.tune_state import TuneInterrupted, TuneJournal, TuneState

    far_seen, real = [], tuner_module._far_cells

    def spy(*args, **kwargs):         # the far cells the tuner chose
        far_seen.append(real(*args, **kwargs))
        return far_seen[-1]

    monkeypatch.setattr(tuner_module, "_far_cells", spy)
    tg = np.random.default_rng(100).uniform(100e-6, 500e-6, (N, N))
    xb = SimulatedCrossbar(N, N, seed=0, r_line=45.0)
    cfg = choose_write_scheme(xb, _auto(xb))
    assert cfg.far_first
    res = tune(xb, tg, cfg, record_trace=True)
    far = far_seen[0][0]
    assert 0 < far.sum() < N * N // 2
    tr = res.trace
    sweep = N * N        # pass 0 starts with every cell's initial RESET, in one sweep
    for p in range(res.passes_run):
        pulses = np.flatnonzero((tr["kind"] == 1) & (tr["pass"] == p))[sweep if p == 0 else 0:]
        is_far = far[tr["row"][pulses], tr["col"][pulses]]
        if is_far.any() and (~is_far).any():
            assert np.flatnonzero(is_far).max() < np.flatnonzero(~is_far).min()
    assert res.verify_reads > res.passes_run
    work = xb.working_mask[0]
    assert float((np.abs(xb.true_conductance[0] - tg) <= 0.01 * tg)[work].mean()) >= 0.95

    class Journal(TuneJournal):
        def __init__(self):
            self.passes, self.cells = [], []

        def pass_started(self, pass_no, todo):
            self.passes.append((pass_no, todo.copy()))

        def cells_finished(self, pass_no, chip, row, col, target, status, reading, pulses, reads, energy, time):
            self.cells.append((np.full(len(chip), pass_no), chip, row, col, target, status, pulses, reads,
                               energy, time))

    j = Journal()
    joined = lambda: len(j.passes) >= 2 and j.passes[-1][0] == j.passes[-2][0]   # noqa: E731
    xb = SimulatedCrossbar(N, N, seed=0, r_line=45.0)
    with pytest.raises(TuneInterrupted) as info:
        tune(xb, tg, cfg, journal=j, should_stop=joined)
    state = info.value.state
    keys = ("pass", "chip", "row", "col", "target", "status", "pulses", "reads", "energy", "time")
    cells = {k: np.concatenate([c[i] for c in j.cells]) for i, k in enumerate(keys)}
    rebuilt = TuneState.from_events(np.broadcast_to(tg, (1, N, N)), j.passes, cells)
    assert rebuilt.pass_no == state.pass_no
    assert (j.passes[-1][1] & ~j.passes[-2][1]).any()          # cells joined the pass
    np.testing.assert_array_equal(rebuilt.todo, state.todo)


def _converging_truth(xb, tg, cfg, pass_no=0):
    """Tune ``xb`` to ``tg`` with ``cfg``; the relative error, against the simulator's truth (to
    judge only), of each cell's last corrected reading when it converged in pass ``pass_no``."""
    from programming.tune_state import TuneJournal

    errors = []

    class Journal(TuneJournal):
        def cells_finished(self, p, chip, row, col, target, status, reading, *records):
            ok = (np.asarray(status) == 1) & (p == pass_no)
            true = xb.true_conductance[np.asarray(chip), np.asarray(row), np.asarray(col)]
            errors.append(((np.asarray(reading) - true) / np.asarray(target))[ok])

    res = tune(xb, tg, cfg, journal=Journal())
    return res, np.concatenate(errors)


def test_refit_every_keeps_the_verify_reads_true_through_a_pass(monkeypatch):
    """``refit_every`` (set by 'auto' where held writes widen to the chip's width limit): after
    every that many cells finished in a pass the whole array is read and the line model refitted
    to it.  The held and widened writes switch unread half-selected cells, whose stale estimates
    bias the correction of every verify read on their lines: on 12×12 at 45 Ω (a 64×64 chip at
    2 Ω's drop) the readings pass 1's cells converged on are off by 2.2 % rms without it (judged
    with the simulator's truth), by 0.5 % with a refit every 4 cells (about 35 refits in pass 1;
    4.7 % and 1.7 % with the local inversion of a cell behind a fixed series resistance, stop 21)."""
    import programming.tuner as tuner_module

    calls, real = [], tuner_module._refit
    monkeypatch.setattr(tuner_module, "_refit", lambda *a, **k: calls.append(1) or real(*a, **k))
    tg = np.random.default_rng(100).uniform(100e-6, 500e-6, (N, N))
    rms = {}
    for every in (0, 4):
        xb = SimulatedCrossbar(N, N, seed=0, r_line=45.0)
        cfg = replace(choose_write_scheme(xb, _auto(xb)), refit_every=every, step_control=0.0)
        calls.clear()
        res, err = _converging_truth(xb, tg, cfg)
        rms[every] = float(np.sqrt(np.mean(err ** 2)))
        assert (len(calls) >= (N * N) // every // 2) if every else not calls
    assert rms[0] > 0.015
    assert rms[4] < 0.4 * rms[0]
    with pytest.raises(ValueError, match="refit_every"):
        TunerConfig(refit_every=-1)


def _idle_pulses(tr, cfg) -> int:
    """Write pulses (initial RESETs aside) after which the cell's next reading had not moved toward
    its target by 0.4 % (a trace's pulses between two reads of their cell)."""
    order = np.lexsort((np.arange(tr["kind"].size), tr["col"], tr["row"]))    # each cell's events in order
    kind, row, col = tr["kind"][order], tr["row"][order], tr["col"][order]
    amp, g = tr["amplitude"][order], tr["reading"][order]
    i = np.arange(1, order.size - 1)
    i = i[(kind[i] == 1) & (amp[i] != -cfg.reset_amplitude) & (kind[i - 1] == 0) & (kind[i + 1] == 0)
          & (row[i - 1] == row[i]) & (row[i + 1] == row[i]) & (col[i - 1] == col[i]) & (col[i + 1] == col[i])]
    return int(np.count_nonzero((g[i + 1] - g[i - 1]) * np.sign(amp[i]) < 0.004 * g[i - 1]))


def test_step_control_sets_each_cells_level_from_its_own_response():
    """``step_control`` (set by 'auto' where held writes widen to the chip's width limit): a pulse
    that moved its cell by at least that share of the distance left is repeated at its level, and
    a polarity starts — after a flip, in a later pass — at the lowest level (width, then amplitude)
    that has moved the cell in it, instead of at 1.1 V and 1 µs: a far cell's flip no longer
    re-ramps through six widths that do not move it.  12×12 at 45 Ω (a 64×64 chip at 2 Ω's drop):
    about a third of the recipe's pulses do not move their cell by 0.4 %; with the rule 28 % fewer
    such pulses and 18 % fewer pulses in all, as many cells truly within 1 % (± one)."""
    tg = np.random.default_rng(100).uniform(100e-6, 500e-6, (N, N))
    idle, total, truly = {}, {}, {}
    on = AUTO_STEP_CONTROL
    for share in (0.0, on):
        xb = SimulatedCrossbar(N, N, seed=0, r_line=45.0)
        cfg = replace(choose_write_scheme(xb, _auto(xb)), step_control=share, refit_every=0)
        res = tune(xb, tg, cfg, record_trace=True)
        work = xb.working_mask[0]
        idle[share], total[share] = _idle_pulses(res.trace, cfg), int(res.pulses[0][work].sum())
        truly[share] = int((np.abs(xb.true_conductance[0] - tg) <= 0.01 * tg)[work].sum())
    assert idle[0.0] > 0.25 * total[0.0]
    assert idle[on] < 0.8 * idle[0.0]
    assert total[on] < 0.9 * total[0.0]
    assert truly[on] >= truly[0.0] - 1
    with pytest.raises(ValueError, match="step_control"):
        TunerConfig(step_control=1.5)
