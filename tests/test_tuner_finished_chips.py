"""A batch of chips is tuned as that many runs of one chip: a chip whose cells all hold leaves the
run after one more read-back confirms it (it is then never read back or pulsed again; its last
read-back is its final reading), a chip with a cell out of the hold band goes on (issue 17: 10 000 ×
8×8 chips read back every chip at every pass)."""
from __future__ import annotations

import numpy as np
import pytest

from mock_hw.sim_chip import SimulatedCrossbar
from programming.tune_result import STUCK
from programming.tune_state import TuneInterrupted, TuneJournal, TuneState
from programming import tuner
from programming.tuner import TunerConfig, tune
from tests.conftest import SpyCrossbar


class _Events(TuneJournal):
    """Passes (their chips), read-backs and finished cells, in order."""

    def __init__(self):
        self.log, self.passes, self.backs, self.cells = [], [], [], []

    def pass_started(self, pass_no, todo):
        self.passes.append((pass_no, todo.copy()))
        self.log.append(("pass", pass_no, todo.any(axis=(1, 2))))

    def read_back(self, pass_no, final):
        self.backs.append((pass_no, final.copy()))

    def cells_finished(self, pass_no, chip, row, col, target, status, reading, pulses, reads, energy, time):
        self.cells.append(dict(zip(("pass", "chip", "row", "col", "target", "status", "reading", "pulses", "reads",
                                    "energy", "time"),
                                   (np.full(len(chip), pass_no), chip, row, col, target, status, reading, pulses,
                                    reads, energy, time))))

    def events(self):
        return {k: np.concatenate([c[k] for c in self.cells]) for k in self.cells[0]}


class _ReadBacks(SpyCrossbar):
    """Logs the chips each whole-array read (a read-back's, or its re-reads) reads, and the chips
    each pulse drives, in the journal's order."""

    def __init__(self, inner, log):
        super().__init__(inner)
        self.log = log

    def _read(self, rows, cols, v_read, scheme, active):
        if rows.shape[-1] == self.shape[0] * self.shape[1]:
            self.log.append(("read", active.any(axis=1)))
        return super()._read(rows, cols, v_read, scheme, active)

    def _pulse(self, rows, cols, amplitude, width, scheme, active):
        self.log.append(("pulse", active.any(axis=1)))
        return super()._pulse(rows, cols, amplitude, width, scheme, active)


def _targets(chips, seed):
    xb = SimulatedCrossbar(8, 8, n_chips=chips, seed=seed, r_line=0.0)
    t = np.random.default_rng(seed + 100).uniform(*xb.programming_window, size=(chips, 8, 8))
    t[np.random.default_rng(seed).random(t.shape) < 0.1] = np.nan
    return t


@pytest.mark.parametrize("r_line", [0.0, 0.67])
def test_a_finished_chip_is_read_back_once_more_then_never_read_or_pulsed_again(r_line, monkeypatch):
    chips, seed = 40, 4
    tg = _targets(chips, seed)
    j = _Events()
    # at each read-back, the cells the pass rule sends on besides those out of the hold band: those its
    # learnt retention predicts out, and the fast-relaxing ones at risk (a pass of their own)
    also = []
    learn_retention, at_risk = tuner._Run.learn_retention, tuner._Run.at_risk

    def retention(run, back, t0, t1):
        out = learn_retention(run, back, t0, t1)
        also.append(np.broadcast_to(out, back.shape).copy())
        return out

    def risk(run, back):
        out = at_risk(run, back)
        if not run.timed:
            also[-1] |= (out | run.risk_next) & run.fast
        return out
    monkeypatch.setattr(tuner._Run, "learn_retention", retention)
    monkeypatch.setattr(tuner._Run, "at_risk", risk)
    xb = _ReadBacks(SimulatedCrossbar(8, 8, n_chips=chips, seed=seed, r_line=r_line), j.log)
    cfg = TunerConfig(line_resistance=r_line)
    res = tune(xb, tg, cfg, journal=j)
    targeted = ~np.isnan(tg)
    # the log per pass: the chips it tunes (journaled), the chips its pulses and whole-array reads touch
    passes = []
    for kind, *rest in j.log:
        if kind == "pass":
            passes.append({"tuned": rest[1], "pulsed": np.zeros(chips, bool), "reads": []})
        elif passes:
            if kind == "pulse":
                passes[-1]["pulsed"] |= rest[0]
            else:
                passes[-1]["reads"].append(rest[0])
    assert len(passes) == res.passes_run >= 3
    # pass k tunes the chips whose read-back k - 1 found a cell out of the hold band; its read-back
    # reads those and the chips that read-back found finished for the first time in a row
    read = passes[0]["reads"][0]
    np.testing.assert_array_equal(read, targeted.any(axis=(1, 2)))
    confirming = np.zeros(chips, bool)
    confirmed_then_left = went_on = 0
    for k in range(1, len(passes)):
        back = j.backs[k - 1][1]
        out = targeted & (res.status != STUCK) & ((np.abs(back - tg) > cfg.hold_band * tg) | also[k - 1])
        tuned = out.any(axis=(1, 2)) & read
        np.testing.assert_array_equal(passes[k]["tuned"], tuned)
        assert not (passes[k]["pulsed"] & ~tuned).any(), "a pulse on a chip not tuned in the pass"
        left = read & ~tuned & confirming             # found finished at two read-backs in a row
        confirming = read & ~tuned & ~confirming
        read = tuned | confirming
        np.testing.assert_array_equal(passes[k]["reads"][0], read)
        for r in passes[k]["reads"][1:]:              # the read-back's re-reads: its own chips only
            assert not (r & ~read).any()
        confirmed_then_left += int(left.sum())
        went_on += int(tuned.sum())
    assert confirmed_then_left > 0 and went_on > 0, "the seed should have chips that finish early and chips that go on"
    # a chip's final readings are its last read-back's; its reads count no read-back after it
    last = np.zeros(chips, int)
    for k in range(len(passes)):
        last[passes[k]["reads"][0]] = k
    for b in range(chips):
        np.testing.assert_array_equal(res.final[b], j.backs[last[b]][1][b])
    assert (res.reads[targeted] >= 1).all()
    assert res.summary(xb)["true_within_tol"] == 1.0


def test_a_resumed_pass_reads_back_its_own_chips_only():
    chips, seed = 40, 4
    tg = _targets(chips, seed)
    cfg = TunerConfig()
    xb = SimulatedCrossbar(8, 8, n_chips=chips, seed=seed, r_line=0.0)
    j = _Events()
    with pytest.raises(TuneInterrupted) as info:
        tune(xb, tg, cfg, journal=j,
             should_stop=lambda: len(j.passes) > 1 and sum((c["pass"] == j.passes[-1][0]).sum() for c in j.cells) >= 2)
    state = info.value.state
    assert state.pass_no >= 1
    in_pass = j.passes[-1][1].any(axis=(1, 2))
    assert 0 < in_pass.sum() < chips, "the seed should have chips that left before the stop"
    np.testing.assert_array_equal(state.pass_chips, in_pass)
    rebuilt = TuneState.from_events(tg, j.passes, j.events())
    np.testing.assert_array_equal(rebuilt.pass_chips, in_pass)
    # chips whose every cell of the pass finished before the stop are still read back after it
    assert (in_pass & ~rebuilt.todo.any(axis=(1, 2))).any()
    j2 = _Events()
    spy = _ReadBacks(xb, j2.log)
    tune(spy, tg, cfg, resume=rebuilt, journal=j2)
    first = next(rest[0] for kind, *rest in j2.log if kind == "read")
    np.testing.assert_array_equal(first, in_pass)
