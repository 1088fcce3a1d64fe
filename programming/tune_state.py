"""Interruption and resume of write-verify runs: the journal the tuner reports to, and the state it
continues from.

The tuner (:func:`programming.tuner.tune`) tells a :class:`TuneJournal` about every pass it starts,
every cell it finishes and every read and pulse it makes, as they happen.  A journal that writes
these to disk (``procedures.storage.journal``) survives Ctrl-C, a crash, ``kill -9`` or an instrument
timeout; :meth:`TuneState.from_events` rebuilds from it where the run stood, and
``tune(..., resume=state)`` continues: cells finished in the pass in progress are not tuned again
(only a later re-verify pass may pulse them, like any other cell found out of tolerance), the
records of the earlier run are kept, and the final report covers every cell once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tune_result import CONVERGED, UNTARGETED

#: record fields of a finished cell, as the tuner reports them (per pass, not cumulative)
CELL_FIELDS = ("pulses", "reads", "energy", "time")
#: what a run has learnt of its cells' relaxation (``programming.tuner._Run.learn_relaxation``):
#: the learnt shift, the pass's median move and spread, every measured move so far, each cell's
#: own shift and last excess (NaN where none), its reading when it last converged (NaN: never) and
#: how many read-backs found it relaxed out of the hold band since, and each cell's converging
#: reading in the pass in progress (NaN where none; not journaled: a resume rebuilds it from the
#: finished cells' readings); with a bench clock (``_Run.learn_retention``) the bench time each cell
#: last converged (NaN: unknown; a resume forgets it for the cells the pass in progress finished)
#: and the sums Σ L², Σ L·d of its measured moves in log-time, when the last read-back ended; the relative differences of
#: back-to-back reads the read noise is measured from (``_Run.read_noise``, the on-instrument loop)
RELAXATION_FIELDS = ("shift", "moves", "seen_moves", "own", "excess", "anchor", "outs", "born", "sxx", "sxy",
                     "t_back", "read_pairs", "settled")
#: the :data:`RELAXATION_FIELDS` a journal keeps (all but ``settled``, which a resume rebuilds)
JOURNALED_RELAXATION = tuple(k for k in RELAXATION_FIELDS if k != "settled")


class TuneInterrupted(Exception):
    """A write-verify run was stopped on request (``should_stop``) between two steps.  ``state``
    says where it stood; the cells in progress were abandoned (they are tuned again on resume)."""

    def __init__(self, state: "TuneState"):
        super().__init__(f"write-verify stopped in pass {state.pass_no + 1} with "
                         f"{int(state.todo.sum())} cell(s) of that pass still to tune")
        self.state = state


class TuneJournal:
    """What the tuner reports as it goes; the base class records nothing.  Arrays are 1-D, one
    entry per cell (chip, row, col indices into (n_chips, rows, cols))."""

    #: :meth:`trace` is told of the reads and pulses of chips ``0 .. trace_chips - 1`` only (None:
    #: every chip); a Monte Carlo batch of thousands of chips need not journal every pulse
    trace_chips: int | None = None

    def pass_started(self, pass_no: int, todo: np.ndarray) -> None:
        """Pass ``pass_no`` (0-based) starts and will tune the cells where ``todo`` (bool,
        (n_chips, rows, cols)) is True.  Told again with the same ``pass_no`` when cells join the
        pass as it goes (``TunerConfig.far_first``): ``todo`` is then every cell of the pass."""

    def cells_finished(self, pass_no: int, chip, row, col, target, status, reading, pulses, reads,
                       energy, time) -> None:
        """Cells finished tuning in ``pass_no``: their target (S), status code, last reading (S),
        and this pass's pulses, reads, energy (J) and instrument time (s)."""

    def trace(self, chunk: dict) -> None:
        """Reads and pulses just made: arrays ``chip, row, col, pass, kind`` (0 read, 1 pulse),
        ``amplitude`` (V), ``width`` (s), ``reading`` (S, NaN for pulses)."""

    def read_back(self, pass_no: int, final: np.ndarray) -> None:
        """The read-back after pass ``pass_no``: conductances (S), NaN where untargeted."""

    def relaxation(self, pass_no: int, state: dict) -> None:
        """What the run has learnt of its cells' relaxation when pass ``pass_no`` (>= 1) starts
        (:data:`RELAXATION_FIELDS`; the learnt shift, the measured moves and each cell's own
        shift), told just before :meth:`pass_started`: a resumed run restores it
        (:attr:`TuneState.relaxation`) and compensates as the uninterrupted run would.  The arrays
        are the run's own, valid during the call: a journal that keeps them copies them."""

    def step_done(self) -> None:
        """A tuner step ended (a point where the chip and the records agree): a journal may flush."""


@dataclass
class TuneState:
    """Where a write-verify run stands.

    Attributes:
        pass_no: the pass in progress (0-based).
        todo: bool (n_chips, rows, cols), cells of that pass still to tune.
        status: status codes so far (see :mod:`programming.tune_result`).
        pulses, reads, energy, time: per-cell records summed over what is finished (J, s).
        compliance: compliance events so far.
        relaxation: what the run had learnt of its cells' relaxation (:data:`RELAXATION_FIELDS`),
            None if nothing (a run resumed without it compensates from what it measures anew).
        pass_chips: bool (n_chips,), the chips in that pass (the others had finished: they are not
            read back again), or None if unknown (every chip is read back after the pass).
    """

    pass_no: int
    todo: np.ndarray
    status: np.ndarray
    pulses: np.ndarray
    reads: np.ndarray
    energy: np.ndarray
    time: np.ndarray
    compliance: int = 0
    relaxation: dict | None = None
    pass_chips: np.ndarray | None = None

    @classmethod
    def fresh(cls, targeted: np.ndarray) -> "TuneState":
        shape = targeted.shape
        return cls(0, targeted.copy(), np.full(shape, UNTARGETED, np.int8), np.zeros(shape, np.int32),
                   np.zeros(shape, np.int32), np.zeros(shape), np.zeros(shape))

    @property
    def records(self) -> dict:
        return {k: getattr(self, k) for k in CELL_FIELDS}

    @classmethod
    def from_events(cls, targets: np.ndarray, passes: list[tuple[int, np.ndarray]], cells: dict,
                    rtol: float = 1e-3, relaxation: dict | None = None) -> "TuneState":
        """Rebuild the state from journal events.

        Args:
            targets: the run's targets (n_chips, rows, cols), S, NaN where untargeted.
            passes: ``(pass_no, todo)`` for every pass started, in order.
            cells: finished-cell events as equal-length 1-D arrays ``pass, chip, row, col, target,
                status`` and the :data:`CELL_FIELDS` (and ``reading``, S, for the relaxation).  A
                cell whose journaled target differs from ``targets`` by more than ``rtol``
                (relative) counts as not finished.
            relaxation: the relaxation state journaled when a pass started
                (:meth:`TuneJournal.relaxation`, with its ``pass``): kept if that pass is the one
                in progress, with the converging readings of the cells it finished (``settled``).
        """
        targets = np.asarray(targets, float)
        targeted = ~np.isnan(targets)
        state = cls.fresh(targeted)
        if not passes:
            return state
        # the last todo journaled for the latest pass (a pass can be joined by more cells as it goes:
        # TunerConfig.far_first's read-back between its far cells and the others)
        pass_no = max(int(p) for p, _ in passes)
        todo = [t for p, t in passes if int(p) == pass_no][-1]
        if np.asarray(todo).shape != targets.shape:
            raise ValueError(f"journaled pass {pass_no} covers shape {np.asarray(todo).shape}, "
                             f"the run's targets have shape {targets.shape}")
        state.pass_no = int(pass_no)
        state.todo = np.asarray(todo, bool) & targeted
        state.pass_chips = state.todo.any(axis=(1, 2))      # (a chip in a pass has a cell of it to tune)
        n = len(cells.get("chip", ()))
        if n:
            chip, row, col = (np.asarray(cells[k]) for k in ("chip", "row", "col"))
            if ((chip < 0) | (chip >= targets.shape[0]) | (row < 0) | (row >= targets.shape[1])
                    | (col < 0) | (col >= targets.shape[2])).any():
                raise ValueError("journaled cells lie outside the run's array")
            # flat cell indices: one index array and no per-field copies where every event counts
            # (a 10 000-chip batch journals over a million events)
            flat = np.ravel_multi_index((chip, row, col), targets.shape)
            del chip, row, col
            tgt = targets.ravel()[flat]
            same = np.isfinite(tgt) & (np.abs(np.asarray(cells["target"], float) - tgt) <= rtol * np.abs(tgt))
            del tgt
            pick = slice(None) if same.all() else same
            flat = flat[pick]
            for k in CELL_FIELDS:
                np.add.at(getattr(state, k).reshape(-1), flat, np.asarray(cells[k])[pick])
            # events are in time order: the last one of a cell gives its status
            state.status.reshape(-1)[flat] = np.asarray(cells["status"], np.int8)[pick]
            now = np.asarray(cells["pass"])[pick] == state.pass_no
            state.todo.reshape(-1)[flat[now]] = False
        if relaxation is not None and int(relaxation["pass"]) == state.pass_no:
            # (a journal of an earlier version lacks the later fields: the run learns them anew)
            state.relaxation = {k: relaxation[k] for k in JOURNALED_RELAXATION if k in relaxation}
            if n and "born" in state.relaxation:    # the pass in progress tuned these again: since when, unknown
                born = np.array(state.relaxation["born"], float)
                born.reshape(-1)[flat[now]] = np.nan
                state.relaxation["born"] = born
            settled = np.full(targets.shape, np.nan)
            if n and "reading" in cells:
                # the cells the pass in progress finished converged, at their last reading (events in
                # time order: a cell finishes once a pass)
                conv = now & (np.asarray(cells["status"], np.int8)[pick] == CONVERGED)
                settled.reshape(-1)[flat[conv]] = np.asarray(cells["reading"], float)[pick][conv]
            state.relaxation["settled"] = settled
        return state


class TuneLog:
    """Journals and resume states of the write-verify runs of a multi-stage job (deployment tunes
    the network's cells, then the partners of stuck devices).  The base class keeps nothing:
    :meth:`tune_kwargs` gives ``tune()`` no journal, no resume state and no stop request."""

    def tune_kwargs(self, stage: str, targets: np.ndarray) -> dict:
        """Keyword arguments for ``tune()`` (``journal``, ``resume``, ``should_stop``) of ``stage``
        with ``targets`` (n_chips, rows, cols), S."""
        return {}

    def started(self, stage: str) -> bool:
        """Whether ``stage`` had begun before this run (a resume within it)."""
        return False
