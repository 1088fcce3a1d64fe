"""Interrupting and resuming the write-verify tuner (journal events → TuneState → resume)."""
import numpy as np
import pytest

from mock_hw.sim_chip import SimulatedCrossbar
from programming.tune_result import CONVERGED, STUCK
from programming.tune_state import TuneInterrupted, TuneJournal, TuneState
from programming.tuner import TunerConfig, tune


class MemoryJournal(TuneJournal):
    def __init__(self):
        self.passes, self.cells, self.trace_chunks, self.read_backs, self.relax = [], [], [], [], []

    def relaxation(self, pass_no, state):     # (the run's own arrays: copied to keep)
        self.relax.append({**{k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in state.items()},
                           "pass": pass_no})

    def pass_started(self, pass_no, todo):
        self.passes.append((pass_no, todo.copy()))

    def cells_finished(self, pass_no, chip, row, col, target, status, reading, pulses, reads, energy, time):
        for i in range(len(chip)):
            self.cells.append(dict(pass_=pass_no, chip=chip[i], row=row[i], col=col[i], target=target[i],
                                   status=status[i], reading=reading[i], pulses=pulses[i], reads=reads[i],
                                   energy=energy[i], time=time[i]))

    def trace(self, chunk):
        self.trace_chunks.append({k: np.array(v) for k, v in chunk.items()})

    def read_back(self, pass_no, final):
        self.read_backs.append((pass_no, final.copy()))

    def events(self):
        keys = ("chip", "row", "col", "target", "status", "reading", "pulses", "reads", "energy", "time")
        cells = {k: np.array([c[k] for c in self.cells]) for k in keys}
        cells["pass"] = np.array([c["pass_"] for c in self.cells], int)
        return cells


def _targets(shape, seed=3):
    return np.random.default_rng(seed).uniform(120e-6, 480e-6, size=shape)


def test_journal_sees_every_finished_cell_and_the_trace():
    xb = SimulatedCrossbar(6, 6, seed=1)
    j = MemoryJournal()
    res = tune(xb, _targets((6, 6)), TunerConfig(seed=1), journal=j, record_trace=True)
    assert j.passes[0][0] == 0 and j.passes[0][1].sum() == 36
    pass0 = [c for c in j.cells if c["pass_"] == 0]
    assert sorted((c["row"], c["col"]) for c in pass0) == [(r, c) for r in range(6) for c in range(6)]
    # the journal's per-pass records add up to the result's totals
    assert sum(c["pulses"] for c in j.cells) == res.pulses.sum()
    # converged cells finished on an in-band reading
    for c in pass0:
        if c["status"] == CONVERGED:
            assert abs(c["reading"] - c["target"]) <= 0.01 * c["target"]
    n_trace = sum(len(ch["chip"]) for ch in j.trace_chunks)
    assert n_trace == res.trace["chip"].size
    assert len(j.read_backs) == res.passes_run


def test_should_stop_raises_with_the_state_to_resume_from():
    xb = SimulatedCrossbar(6, 6, seed=2)
    j = MemoryJournal()
    stop = lambda: len(j.cells) >= 10  # noqa: E731
    with pytest.raises(TuneInterrupted) as info:
        tune(xb, _targets((6, 6)), TunerConfig(seed=2, parallel=2), journal=j, should_stop=stop)
    st = info.value.state
    assert st.pass_no == 0
    finished = {(c["row"], c["col"]) for c in j.cells}
    assert len(finished) >= 10
    assert not any(st.todo[0, r, c] for r, c in finished)
    assert st.todo.sum() == 36 - len(finished)
    # the journal rebuilds the same state
    rebuilt = TuneState.from_events(np.broadcast_to(_targets((6, 6)), (1, 6, 6)), j.passes, j.events())
    np.testing.assert_array_equal(rebuilt.todo, st.todo)
    np.testing.assert_array_equal(rebuilt.pulses, st.pulses)
    np.testing.assert_array_equal(rebuilt.status, st.status)


def test_resume_finishes_every_cell_without_repulsing_finished_ones():
    tg = _targets((8, 8), seed=5)
    xb = SimulatedCrossbar(8, 8, seed=4)
    j1 = MemoryJournal()
    with pytest.raises(TuneInterrupted):
        tune(xb, tg, TunerConfig(seed=4, parallel=3), journal=j1, should_stop=lambda: len(j1.cells) >= 25)
    done_before = {(c["row"], c["col"]) for c in j1.cells}
    state = TuneState.from_events(np.broadcast_to(tg, (1, 8, 8)), j1.passes, j1.events())
    j2 = MemoryJournal()
    res = tune(xb, tg, TunerConfig(seed=4, parallel=3), journal=j2, resume=state, record_trace=True)
    # no new pass 0 was announced; pass 0 pulsed only cells that were not finished
    assert all(p != 0 for p, _ in j2.passes)
    tr = res.trace
    pulsed0 = {(int(r), int(c)) for r, c, k, p in zip(tr["row"], tr["col"], tr["kind"], tr["pass"]) if k == 1 and p == 0}
    assert not pulsed0 & done_before
    assert {(c["row"], c["col"]) for c in j2.cells if c["pass_"] == 0} == \
        {(r, c) for r in range(8) for c in range(8)} - done_before
    # the result covers every cell, with the records of both runs
    assert (res.status != 0).all()
    working = xb.working_mask[0]
    assert (res.status[0][working] == CONVERGED).mean() > 0.95
    assert (res.status[0][~working] == STUCK).all()
    assert res.pulses.sum() == sum(c["pulses"] for c in j1.cells) + sum(c["pulses"] for c in j2.cells)


def test_journaled_cells_with_another_target_are_tuned_again():
    tg = _targets((4, 4))
    j = MemoryJournal()
    xb = SimulatedCrossbar(4, 4, seed=0)
    with pytest.raises(TuneInterrupted):
        tune(xb, tg, TunerConfig(parallel=1), journal=j, should_stop=lambda: len(j.cells) >= 5)
    moved = tg.copy()
    moved[0, :] *= 1.1
    st = TuneState.from_events(np.broadcast_to(moved, (1, 4, 4)), j.passes, j.events())
    assert st.todo[0, 0].all()


def test_resume_state_of_another_shape_is_refused():
    xb = SimulatedCrossbar(4, 4, seed=0)
    st = TuneState.fresh(np.ones((1, 3, 3), bool))
    with pytest.raises(ValueError, match="shape"):
        tune(xb, _targets((4, 4)), resume=st)


def _same_relaxation(a, b):
    from programming.tune_state import RELAXATION_FIELDS
    for key in RELAXATION_FIELDS:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def test_a_resumed_run_keeps_what_it_had_learnt_of_the_relaxation():
    """The learnt shift, the measured moves, each cell's own shift and the converging readings of
    the pass in progress survive an interruption: journaled when a pass starts, rebuilt with the
    finished cells' readings, restored by the resumed run (which starts from them, not from zero)."""
    tg = _targets((8, 8), seed=5)
    cfg = TunerConfig(seed=4, parallel=3)
    xb = SimulatedCrossbar(8, 8, seed=4)
    j = MemoryJournal()
    with pytest.raises(TuneInterrupted) as info:
        tune(xb, tg, cfg, journal=j,
             should_stop=lambda: len(j.passes) > 1 and sum(c["pass_"] == j.passes[-1][0] for c in j.cells) >= 3)
    state = info.value.state
    assert state.pass_no >= 1 and state.relaxation["shift"] != 0, "something was learnt before the stop"
    assert np.isfinite(state.relaxation["settled"]).any(), "cells converged in the pass in progress"
    assert [r["pass"] for r in j.relax] == [p for p, _ in j.passes[1:]], "journaled as each re-verify pass starts"
    rebuilt = TuneState.from_events(np.broadcast_to(tg, (1, 8, 8)), j.passes, j.events(), relaxation=j.relax[-1])
    _same_relaxation(rebuilt.relaxation, state.relaxation)
    # the resumed run restores it: stopped before its first step, it hands back the same state
    with pytest.raises(TuneInterrupted) as again:
        tune(xb, tg, cfg, resume=rebuilt, should_stop=lambda: True)
    _same_relaxation(again.value.state.relaxation, state.relaxation)
    # a state journaled at another pass's start is not taken for this one's
    older = TuneState.from_events(np.broadcast_to(tg, (1, 8, 8)), j.passes, j.events(),
                                  relaxation=dict(j.relax[-1], **{"pass": state.pass_no - 1}))
    assert older.relaxation is None


def test_the_run_folder_journal_keeps_the_relaxation_of_each_pass(tmp_path):
    """``journal/relax-<stage>-<pass>.npz`` is written when a pass starts; a resume of that pass
    gets it back (the shared shift, each cell's own shift) through the run folder's tune log."""
    from procedures.storage.journal import FileTuneLog, read_relaxation

    shape = (1, 4, 4)
    tg = np.full(shape, 300e-6)
    own = np.full(shape, np.nan)
    own[0, 1, 2] = 0.006
    state = {"shift": 0.0025, "moves": np.array([-0.002, 0.001]), "seen_moves": np.linspace(-0.004, 0, 16),
             "own": own, "excess": np.where(np.isnan(own), np.nan, 3.0), "anchor": np.full(shape, 299e-6),
             "outs": (own > 0) * 2.0, "born": np.where(np.isnan(own), 3.5, 7.25), "sxx": np.full(shape, 0.5),
             "sxy": np.full(shape, -0.0015), "t_back": 9.5, "read_pairs": np.linspace(-0.002, 0.002, 9), "settled": np.full(shape, np.nan)}
    log = FileTuneLog(tmp_path, lambda *a: None)
    journal = log.tune_kwargs("tune", tg)["journal"]
    journal.pass_started(0, np.ones(shape, bool))
    journal.relaxation(1, state)
    journal.pass_started(1, np.zeros(shape, bool) | (own > 0))
    assert read_relaxation(tmp_path, "tune", 0) is None
    resumed = FileTuneLog(tmp_path, lambda *a: None, resume=True).tune_kwargs("tune", tg)["resume"]
    assert resumed.pass_no == 1
    _same_relaxation(resumed.relaxation, state)


def test_relaxation_journal_stores_mostly_empty_fields_compactly_and_reads_them_back_exactly(tmp_path):
    """Per-cell fields mostly NaN (no own shift) or 0 (no read-back found the cell out) are journaled
    as their other entries only; read back they are the same arrays bit for bit (a signed zero
    and tiny values included), and a dense field is stored as it is."""
    from procedures.storage.journal import FileTuneLog, read_relaxation
    from programming.tune_state import JOURNALED_RELAXATION

    rng = np.random.default_rng(7)
    shape = (40, 8, 8)
    own = np.full(shape, np.nan)
    own.reshape(-1)[rng.choice(own.size, 30, replace=False)] = rng.normal(0, 3e-3, 30)
    outs = np.zeros(shape)
    outs.reshape(-1)[[3, 77, 500]] = [1.0, 2.0, -0.0]          # a negative zero is not the fill
    anchor = rng.uniform(1e-4, 5e-4, shape)                     # dense
    state = {"shift": 0.001, "moves": np.array([-0.002, 0.0005]), "seen_moves": rng.normal(0, 1e-3, 900),
             "own": own, "excess": np.where(np.isnan(own), np.nan, 2.5), "anchor": anchor, "outs": outs,
             "born": np.full(shape, np.nan), "sxx": np.zeros(shape), "sxy": np.full(shape, 5e-324),
             "t_back": np.nan, "read_pairs": np.array([]), "settled": np.full(shape, np.nan)}
    log = FileTuneLog(tmp_path, lambda *a: None)
    journal = log.tune_kwargs("tune", np.full(shape, 3e-4))["journal"]
    journal.relaxation(1, state)
    with np.load(tmp_path / "journal" / "relax-tune-1.npz") as z:
        assert "own.at" in z.files and "own" not in z.files and z["own.at"].size == 30
        assert "anchor" in z.files and "sxy" in z.files          # dense: as they are
        assert z["born.at"].size == 0 and z["outs.at"].size == 3
    back = read_relaxation(tmp_path, "tune", 1)
    assert int(back["pass"]) == 1
    for key in JOURNALED_RELAXATION:
        got, want = np.asarray(back[key]), np.asarray(state[key])
        assert got.shape == want.shape and got.dtype == want.dtype, key
        assert np.array_equal(got, want, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(want)), key
    assert np.signbit(back["outs"].reshape(-1)[500])
