"""Closed-loop write-verify tuning of conductances, for any :class:`Crossbar`.

One implementation drives a simulated batch of chips (vectorized over chips and over the cells
tuned concurrently on each) and a bench (a batch of one chip, one cell at a time).

Algorithm (per cell; the adaptive scheme of Alibart et al. 2012 as used at 3IT):

1. optionally one RESET pulse of ``reset_amplitude`` (``initial_reset``, first pass only).  By
   default (``reset_sweep``) every cell of the first pass gets it in one sweep of the array before
   any cell is tuned, so no cell's initial RESET comes after another cell has been programmed
   (pulses at ``disturb_v`` ≈ 2.0 V and above advance the relaxation of the array's programmed
   cells: see below); ``reset_sweep=False`` resets each cell just before it is tuned, as the
   measurement of that relaxation did (Drolet et al. 2023), and so does the on-instrument loop
   (its script resets each cell as it starts it);
2. read at V_read; if the reading is within the verify band ``target·(1 ± tolerance·(1 − guard))``
   count it, and stop as *converged* after ``consecutive`` in-band reads in a row (no pulse between
   them).  The guard gives hysteresis: a cell accepted inside the verify band is not thrown back by
   read noise when it is checked against the full tolerance later;
3. otherwise pulse toward the target: SET (positive) if below, RESET (negative) if above.  The
   amplitude starts at ``v_set_start`` / ``v_reset_start`` and grows by ``v_step`` on each retry of
   the same polarity up to ``v_set_max`` / ``v_reset_max``; it falls back to the start when the
   polarity flips.  At the cap the width may grow by ``width_ramp`` per retry (up to ``width_max``),
   except in the last ``quiet_passes`` passes of the budget (a low-disturbance trim).  With
   ``step_control`` (host loop) each cell's level follows its own measured response: a pulse that
   moved the cell by at least that share of the distance left is repeated at the same amplitude and
   width instead of one level more, and a polarity starts — after a flip, or in a later pass — at
   the lowest level that has moved the cell in it, not from the start at the base width
   (:func:`_step_control`);
4. give up after ``pulses_at_cap`` pulses at the cap or ``max_pulses`` in all, and flag the cell
   *failed* — with ``held_progress``, only the pulses held at the full limit (the cap and, where
   writes widen, ``width_max``) count, and not one after a pulse that moved the cell toward its
   target by the verify band: a cell the lines starve that the widest writes still move a few % a
   pulse is tuned to its target instead of being given up after a few of them; a cell whose
   readings never moved by more than ``stuck_rel`` (of its reading, or of the window's bottom if
   more: a low reading corrected for the lines carries the correction's absolute error) although
   its amplitude has ramped ``stuck_ramp`` volts above the start is flagged *stuck* at once (a
   working device has switched long before; ramping on to the cap would only disturb its
   neighbours), and so is a cell given up at the drive limit without moving once
   half that ramp reached it (:data:`STUCK_HELD_RAMP`: line-compensated drives stop at
   ``compensation_max``, short of the full ramp on a cell the lines starve).

Through resistive lines (an IR-drop correction, ``line_resistance`` > 0) the amplitude is what the
selected cell is to *get*: with ``write_compensation`` each V/2 or V/3 write is driven at the
amplitude divided by the share of the drive the tuner's line model — the measured line resistance
and I-V curvature, the running estimate of every conductance — puts across the cell
(:meth:`~programming.ir_correction.ReadCorrection.write_transfer`; a far cell of a 64×64 array at
0.67 Ω gets about 2/3 of its drive).  The drive never exceeds the caps nor ``compensation_max``
(1.95 V: below the 3IT recipe's 2.0 V initial RESET, the pulse level whose writes advance the
relaxation of the array's programmed cells — measured by Drolet et al. 2023 as drift growing with
every later cell programmed; on a 32×32 array at 2 Ω compensated writes up to 2.4 V left half of
the cells drifted out of 1 %); the cap counts from where the drive stops.  The stuck rule compares
what reached the cell, so a far cell the lines starve is not condemned for not moving.  Raising
the drive raises what the half-selected cells next to the drivers see with it (at most the
scheme's share of the drive, as on ideal lines); it is bounded by the same caps.  The
on-instrument loop writes uncompensated.

Cells are handed out by :class:`~programming.schedule.SlotScheduler` (``parallel`` at a time, never
two on one line).  With ``far_first`` (set by ``write_scheme="auto"`` where writes widen to the chip's
width limit) every pass tunes the *far* cells first — those the line model leaves short of
``v_set_start`` at the drive limit (:func:`_far_cells`), whose writes are held there and widened —
then reads the whole array back (the line model's estimates fitted anew to it) and only then tunes
the other cells, joined by every other cell that read-back finds out of the hold band: the far
cells' long writes switch half-selected cells near the drivers, whose stale estimates bias the
correction of every verify read on their lines (:data:`AUTO_FAR_FIRST`).  With ``refit_every``
a pass also reads every cell and fits the line model anew after every that many cells finished in
it (:func:`_refit`): the same stale estimates bias the verify reads between the read-backs.  After each pass the
array is read back and the cells that no longer *hold* —
whose reading is off by more than the hold band ``tolerance·(1 − hold_guard)`` (0.9 % at the
defaults), knocked out by later cells' pulses or relaxed since they converged — are re-tuned in a
re-verify pass, until every cell holds or ``passes`` passes are spent.  The hold band leaves a margin under the tolerance for what a reading cannot see (read noise, the
IR-drop correction's error), so that a cell that reads within it is truly within the tolerance.
A read-back that finds a cell out of the hold band is confirmed by ``consecutive − 1`` more reads
(their mean decides), so one noisy read neither re-tunes a good cell nor condemns it.  The last
read-back gives each cell's final reading and relative error.  On the instrument
(``on_instrument``) the read-back also averages the cells whose single read lies within two read
noises of the hold band's edge (:data:`EDGE_REPEATS` more reads each, where the decision is close):
the noise is measured from the script's own reads (:meth:`_Run.read_noise`), never assumed.

Each read-back also measures how far the cells that converged in the pass moved since their
converging read (a bench's fresh cells relax: retention) and later passes compensate the median
move of every pass so far (``relax_compensation``, :meth:`_Run.learn_relaxation`): they accept a
cell only in the part of the verify band away from where cells move, and re-tune the cells read
that close to the hold band's edge.  Devices relax at their own rates: a cell measured twice in a
row to move beyond its pass's median by more than the cells' spread (the mock bench's seed-3 chip
has a device whose retention exponent is 2.9× the median), or found relaxed out of the hold band
at two read-backs since it converged (seed 2's, 3.4×), gets its own shift in the host loop (up
to the whole verify band), and, read within it of the hold band's edge, is re-tuned in a pass of
its own, which every cell at risk joins.  Where the host reads the bench's clock
(:meth:`~programming.crossbar.Crossbar.bench_time`: a 2600B's timer) the host loop also measures
each cell's relaxation rate in log-time since it converged (:meth:`_Run.learn_retention`): a
cell relaxing at least twice as fast as the median one gets its own shift from its rate, and is
re-tuned where it is predicted out of the hold band by the end of the read-back that read it
inside (it was read early), instead of whenever it reads within its shift of the edge.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from .crossbar import Crossbar, WriteScheme, parse_read_scheme, parse_write_scheme
from .mapping import check_targets
from .schedule import ORDERS, SlotScheduler, cell_rank
from .tune_result import CONVERGED, DISTURBED, FAILED, STATUS_NAMES, STUCK, UNTARGETED, TuneResult
from .tune_state import TuneInterrupted, TuneJournal, TuneState

__all__ = ["TunerConfig", "TuneResult", "tune", "config_dict", "choose_write_scheme", "on_instrument_scheme", "AUTO_SCHEME", "CONVERGED",
           "DISTURBED", "FAILED", "STATUS_NAMES", "STUCK", "UNTARGETED", "TuneInterrupted", "TuneJournal", "TuneState"]

#: ``TunerConfig.write_scheme`` value that lets the tuner choose V/2 or V/3 from its line estimate
#: (:func:`choose_write_scheme`)
AUTO_SCHEME = "auto"


@dataclass(frozen=True)
class TunerConfig:
    """Write-verify settings (SI units: V, s).  Defaults follow the 3IT TiO2 recipe."""

    tolerance: float = 0.01
    guard: float = 0.2
    hold_guard: float = 0.1     # re-verify re-tunes a cell read off by more than tolerance·(1 − hold_guard)
    relax_compensation: float = 1.0   # share of the cells' measured move after converging that later passes compensate
    consecutive: int = 2
    v_set_start: float = 1.1
    v_reset_start: float = 1.1
    v_step: float = 0.05
    v_set_max: float = 2.1
    v_reset_max: float = 2.4
    width: float = 1e-6
    width_ramp: float = 1.0
    width_max: float = 1e-4
    max_pulses: int = 200
    pulses_at_cap: int = 5
    held_progress: bool = False  # pulses at the cap count toward pulses_at_cap only at width_max, unmoved (docstring)
    stuck_rel: float = 0.02
    stuck_ramp: float = 0.6
    initial_reset: bool = True
    reset_sweep: bool = True    # the initial RESETs as one sweep before any cell is tuned (False: each just before its cell)
    reset_amplitude: float = 2.0
    reset_width: float = 1e-6
    passes: int = 8             # at most (re-verify passes stop once every cell holds)
    quiet_passes: int = 0       # the last this many passes of the budget never widen a write (width_ramp 1)
    far_first: bool = False     # with a line model: the cells it leaves short of v_set_start go first in every pass (docstring)
    refit_every: int = 0        # with a line model: after this many cells finish in a pass, read every cell and refit (docstring); 0: never
    step_control: float = 0.0   # share of the remaining distance a pulse's move must reach to hold its level (docstring); 0: off
    order: str = "row"
    parallel: int | None = None
    write_scheme: str = "auto"   # V/2 or V/3 chosen from the line estimate (choose_write_scheme); or "v/2", "v/3", "float"
    read_scheme: str = "ground"
    v_read: float | None = None
    line_resistance: float = 0.0
    access_resistance: float = 0.0
    device_beta: float = 0.0     # the devices' cubic I-V coefficient for the IR-drop correction, 1/V² (calibrate-lines)
    write_compensation: bool = True  # with line_resistance: drive each write so the line model puts its amplitude on the cell
    compensation_max: float = 1.95   # the largest drive of a line-compensated write, V (below the recipe's 2.0 V RESET)
    seed: int = 0

    def __post_init__(self):
        positive = ("tolerance", "v_set_start", "v_reset_start", "v_step", "v_set_max", "v_reset_max",
                    "width", "width_max", "reset_amplitude", "reset_width", "stuck_rel", "stuck_ramp",
                    "compensation_max")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"TunerConfig.{name} must be a positive number, got {value!r}")
        if not (isinstance(self.refit_every, (int, np.integer)) and self.refit_every >= 0):
            raise ValueError(f"TunerConfig.refit_every is a number of cells >= 0, got {self.refit_every!r}")
        for name in ("consecutive", "max_pulses", "pulses_at_cap", "passes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TunerConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.quiet_passes) < 0:
            raise ValueError(f"TunerConfig.quiet_passes must be >= 0, got {self.quiet_passes!r}")
        if not (isinstance(self.step_control, (int, float)) and 0 <= self.step_control <= 1):
            raise ValueError(f"TunerConfig.step_control is a share of the remaining distance in [0, 1], got "
                             f"{self.step_control!r}")
        if not 0 <= self.guard < 1:
            raise ValueError(f"TunerConfig.guard is a fraction of the tolerance in [0, 1), got {self.guard!r}")
        if not (isinstance(self.relax_compensation, (int, float)) and 0 <= self.relax_compensation <= 1):
            raise ValueError(f"TunerConfig.relax_compensation is a share in [0, 1], got {self.relax_compensation!r}")
        if not 0 <= self.hold_guard <= self.guard:
            raise ValueError(f"TunerConfig.hold_guard is a fraction of the tolerance in [0, guard], got "
                             f"{self.hold_guard!r}")
        if self.tolerance >= 0.5:
            raise ValueError(f"TunerConfig.tolerance is relative (0.01 = 1 %), got {self.tolerance}")
        if self.v_set_start > self.v_set_max or self.v_reset_start > self.v_reset_max:
            raise ValueError("TunerConfig start amplitudes must not exceed their caps")
        if self.width > self.width_max:
            raise ValueError("TunerConfig.width must not exceed width_max")
        if self.width_ramp < 1:
            raise ValueError("TunerConfig.width_ramp is a growth factor >= 1")
        if self.order not in ORDERS:
            raise ValueError(f"TunerConfig.order must be one of {ORDERS}, got {self.order!r}")
        if self.parallel is not None and int(self.parallel) < 1:
            raise ValueError("TunerConfig.parallel must be >= 1 (or None for the chip's preference)")
        if self.write_scheme != AUTO_SCHEME:
            parse_write_scheme(self.write_scheme)
        parse_read_scheme(self.read_scheme)
        if not (isinstance(self.device_beta, (int, float)) and np.isfinite(self.device_beta)
                and self.device_beta >= 0):
            raise ValueError(f"TunerConfig.device_beta must be a number of 1/V^2 >= 0, got {self.device_beta!r}")
        for name in ("line_resistance", "access_resistance"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"TunerConfig.{name} must be a number of ohms >= 0, got {value!r}")
        if self.line_resistance > 0 and parse_read_scheme(self.read_scheme).value == "float":
            raise ValueError("TunerConfig.line_resistance corrects grounded and isolating reads: it needs "
                             "read_scheme 'ground' or 'isolate'")

    @property
    def verify_band(self) -> float:
        """The relative half-width of the verify band: ``tolerance·(1 − guard)``."""
        return self.tolerance * (1 - self.guard)

    @property
    def hold_band(self) -> float:
        """The relative error beyond which a read-back re-tunes a cell: ``tolerance·(1 − hold_guard)``."""
        return self.tolerance * (1 - self.hold_guard)

    def check_limits(self, lim) -> None:
        """Refuse settings the chip's limits (:class:`~programming.crossbar.SafetyLimits`) forbid,
        before anything is sourced."""
        for name in ("v_set_max", "v_reset_max", "reset_amplitude"):
            if getattr(self, name) > lim.v_max:
                raise ValueError(f"TunerConfig.{name}={getattr(self, name)} V exceeds the chip limit "
                                 f"v_max={lim.v_max} V")
        widest = max(self.width_max if self.width_ramp > 1 else self.width, self.reset_width)
        if min(self.width, self.reset_width) < lim.width_min or widest > lim.width_max:
            raise ValueError(f"TunerConfig pulse widths must lie within the chip limits "
                             f"[{lim.width_min:g}, {lim.width_max:g}] s")


class _Slots:
    """Working state of the tuner's slots, arrays of shape (n_chips, P); a slot is idle (``done``)
    until the scheduler loads a cell into it."""

    _RESET = (("status", 0), ("amp", 0.0), ("last_pol", 0), ("band", 0), ("at_cap", 0), ("pulses", 0),
              ("reads", 0), ("energy", 0.0), ("time", 0.0), ("g_lo", np.inf), ("g_hi", -np.inf),
              ("last", np.nan), ("reached", np.nan), ("up_amp", np.nan), ("up_width", np.nan),
              ("down_amp", np.nan), ("down_width", np.nan))

    def __init__(self, n_chips: int, n_slots: int, cfg: TunerConfig, half: float):
        shape = (n_chips, n_slots)
        self.width0 = cfg.width
        self.rows = np.zeros(shape, np.intp)
        self.cols = np.zeros(shape, np.intp)
        self.target = np.full(shape, np.nan)
        self.half = np.full(shape, half)    # each slot's verify band relative half-width (load)
        self.done = np.ones(shape, bool)
        self.finished = np.zeros(0, np.intp)   # flat indices of the slots whose cell finished in the last step
        self.pending_reset = np.zeros(shape, bool)
        self.pending = False    # a slot has its pending_reset set
        self.width = np.full(shape, cfg.width)
        self.status = np.zeros(shape, np.int8)
        self.last_pol = np.zeros(shape, np.int8)
        self.amp, self.energy, self.time = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        self.band, self.at_cap = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
        self.pulses, self.reads = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
        self.g_lo, self.g_hi = np.full(shape, np.inf), np.full(shape, -np.inf)
        self.last = np.full(shape, np.nan)  # last reading, S
        # step_control: the amplitude that reached the cell at its last pulse (V), and per polarity
        # the lowest level that moved it: amplitude reached (V) and width (s) (NaN: none yet)
        # (only step_control reads them: None without it)
        levels = (lambda: np.full(shape, np.nan)) if cfg.step_control else (lambda: None)
        self.reached = levels()
        self.up_amp, self.up_width = levels(), levels()
        self.down_amp, self.down_width = levels(), levels()
        self.chip_of = np.repeat(np.arange(n_chips), n_slots)     # each flat slot's chip
        # the fields a load resets, with their values (those step_control alone reads: with it only)
        self._reset = [(name, getattr(self, name), value) for name, value in self._RESET
                       if getattr(self, name) is not None]

    def load(self, chip, slot, rows, cols, target, carry: dict | None = None, reset: bool = False,
             half=None) -> None:
        """Start tuning cell (rows, cols) of ``chip`` in ``slot`` toward ``target`` (S), accepting
        readings within ``target·(1 ± half)`` (``half``: per cell, else the one the slots were made
        with); ``carry``: what the cells' records start from (per record field, else 0); ``reset``:
        the cells get their initial RESET first."""
        k = chip * self.done.shape[1] + slot      # flat slot indices (every array is C-contiguous)
        self.rows.put(k, rows)
        self.cols.put(k, cols)
        self.target.put(k, target)
        if half is not None:
            self.half.put(k, half)
        self.done.put(k, False)
        self.width.put(k, self.width0)
        self.pending_reset.put(k, reset)
        if (reset if type(reset) is bool else np.any(reset)) and k.size:
            self.pending = True
        carry = carry or {}
        for name, field, value in self._reset:
            field.put(k, carry.get(name, value))


def tune(xb: Crossbar, targets, config: TunerConfig | None = None, progress=False,
         record_trace: bool = False, journal: TuneJournal | None = None, resume: TuneState | None = None,
         should_stop: Callable[[], bool] | None = None, on_instrument: bool = False) -> TuneResult:
    """Tune every cell with a finite target to it.

    Args:
        xb: any crossbar.
        targets: conductances (S) of shape (rows, cols) — the same for every chip — or
            (n_chips, rows, cols); NaN marks a cell that is left alone.  Every finite target must
            lie in the chip's programming window.
        config: tuner settings (default :class:`TunerConfig`).
        progress: show a progress bar (tqdm) on stderr, one per pass, or a callable
            ``progress(done, total, stage)`` called as cells finish: ``total`` the cells of the pass
            (known when it starts, never grown), ``stage`` 'pass 1', 'pass 2 (re-verify)', ...
        record_trace: keep every read and pulse (chip, row, col, pass, kind 0 read / 1 pulse,
            amplitude V — the read voltage of a read, the signed pulse amplitude of a pulse —,
            width s — 0 for a read —, reading S — NaN for a pulse) as flat arrays in
            :attr:`TuneResult.trace`.
        journal: told of every pass, finished cell, read and pulse as they happen
            (:class:`~programming.tune_state.TuneJournal`), so an interrupted run can be resumed.
        resume: continue an interrupted run from this state (rebuilt from its journal): the
            pass in progress tunes only the cells it had not finished.
        should_stop: polled between steps; when it returns True the run stops and raises
            :class:`~programming.tune_state.TuneInterrupted` with the state to resume from.
        on_instrument: run the write-verify loop, the routing and the read-backs on the
            instrument (a crossbar with ``tune_on_instrument``: a 2600B that switches a 707B over
            TSP-Link; one call per :data:`ON_INSTRUMENT_BATCH` cells with this config's settings,
            one per read-back), cells in priority order; passes, journal and result are the host
            loop's.
    """
    cfg = config or TunerConfig()
    # on the instrument the 2600B's SMU writes (never a station's pulse generator): its limits
    cfg.check_limits(getattr(xb, "on_instrument_limits", xb.limits) if on_instrument else xb.limits)
    if on_instrument and not (hasattr(xb, "tune_on_instrument") and xb.n_chips == 1):
        raise ValueError("the on-instrument write-verify loop needs a bench whose instrument runs it "
                         "(a station with a Keithley 2600B driving and sensing and a 707B on its TSP-Link)")
    if on_instrument and cfg.held_progress:
        raise ValueError("TunerConfig.held_progress is a rule of the host loop; the on-instrument script gives up "
                         "after pulses_at_cap pulses at the cap")
    if on_instrument and cfg.step_control:
        raise ValueError("TunerConfig.step_control is a rule of the host loop; the on-instrument script ramps as "
                         "the recipe does")
    if on_instrument and cfg.far_first:
        raise ValueError("TunerConfig.far_first is a rule of the host loop; the on-instrument script tunes its cells "
                         "in priority order")
    if on_instrument:
        cfg = replace(cfg, write_scheme=on_instrument_scheme(cfg.write_scheme))
    problem = getattr(xb, "on_instrument_problem", None) if on_instrument else None
    if problem is not None and problem(cfg.write_scheme):
        raise ValueError(problem(cfg.write_scheme))
    if on_instrument and parse_write_scheme(cfg.write_scheme) not in (WriteScheme.V2, WriteScheme.V3):
        raise ValueError(f"the on-instrument write-verify loop writes with V/2 or V/3, not {cfg.write_scheme}")
    full = (xb.n_chips, *xb.shape)
    tgt = np.asarray(targets, dtype=float)
    if tgt.shape == xb.shape:
        tgt = np.broadcast_to(tgt, full)
    lo, hi = xb.programming_window
    checked = check_targets(tgt, lo, hi, shape=full, allow_nan=True)     # (a float copy of its own)
    # the run's own targets: that copy, but a read-only float array holding its own memory is kept
    # as it is (nothing can write it: the tune procedure's, 5 MB at 10 000 x 8x8 not held twice)
    own = tgt.dtype == np.float64 and not tgt.flags.writeable and tgt.base is None
    tgt = tgt if own else checked
    del checked
    targeted = ~np.isnan(tgt)
    if not targeted.any():
        raise ValueError("no cell has a finite target: nothing to tune")
    if resume is not None and resume.todo.shape != full:
        raise ValueError(f"resume state has shape {resume.todo.shape}, the run has {full}")

    t0 = time.perf_counter()
    rank = cell_rank(xb.shape, cfg.order, np.random.default_rng(cfg.seed))
    parallel = int(cfg.parallel or xb.preferred_parallel)
    state = TuneState.fresh(targeted) if resume is None else resume
    # a fresh state's arrays are this run's own (no copies: 10 000 chips of 8x8 hold 16 MB of them)
    rec = state.records if resume is None else {k: v.copy() for k, v in state.records.items()}
    status = state.status if resume is None else state.status.copy()
    journal = journal or TuneJournal()
    keep = {k: [] for k in ("chip", "row", "col", "pass", "kind", "amplitude", "width", "reading")} \
        if record_trace else None
    trace = _Trace(keep, journal)
    run = _Run(xb, tgt, rank, parallel, cfg, rec, status, trace, journal, should_stop, per_cell=not on_instrument)
    run.compliance = state.compliance
    if state.relaxation is not None:
        run.restore_relaxation(state.relaxation)
    verify_reads = 0
    p, todo = state.pass_no, state.todo & targeted
    # the chips in the pass (each chip's run is its own: a chip whose cells all hold leaves the run,
    # its last read-back its final readings); a resumed pass's from its journal (unknown: every chip)
    run.on = (todo.any(axis=(1, 2)) if resume is None
              else np.ones(xb.n_chips, bool) if resume.pass_chips is None else np.asarray(resume.pass_chips, bool))
    run.confirming = np.zeros(xb.n_chips, bool)
    if resume is None:
        journal.pass_started(0, todo)
    # the host loop's RESET sweep (the on-instrument script resets each cell as it starts it)
    sweep = cfg.initial_reset and cfg.reset_sweep and not on_instrument
    if sweep and p == 0 and todo.any():
        run.reset_sweep(todo, p)        # before the line model's first read: it sees the cells reset
    run.corr = _start_correction(xb, cfg, rec, parallel, on_instrument)
    cfg = run.cfg = choose_write_scheme(xb, cfg, run.corr)
    if cfg.order == "reach":
        run.rank = cell_rank(xb.shape, "reach", need=_write_need(xb, cfg, run.corr))
    if cfg.far_first and not on_instrument:
        run.far = _far_cells(xb, cfg, run.corr)
    run.progress = progress
    final = np.full(full, np.nan)   # each chip's last read-back
    bar = _progress(int(todo.sum()), progress, p)
    try:
        while True:
            if todo.any():
                # the last quiet_passes of the budget write at the base width (a low-disturbance trim)
                run.cfg = cfg if p < cfg.passes - cfg.quiet_passes else replace(cfg, width_ramp=1.0)
                tune_pass = run.tune_pass_on_instrument if on_instrument else run.tune_pass
                verify_reads += bool(tune_pass(todo, cfg.initial_reset and p == 0 and not sweep, p, bar))
                run.carry, run.swept = None, False      # the pass took all the sweep spent
            # read back every targeted cell of the pass's chips: the re-verify check (after a chip's
            # last pass, its final read); NaN on the chips that have left
            t_read = run.now()
            back = (_read_back_on_instrument(xb, tgt, targeted, cfg, rec, run.corr, run.read_noise()) if on_instrument
                    else _read_back(xb, tgt, targeted, cfg, rec, run.corr, chips=run.on))
            np.copyto(final, back, where=run.on[:, None, None])
            verify_reads += 1
            journal.read_back(p, final)
            journal.step_done()
            run.learn_relaxation(back)
            todo = targeted & (status != STUCK) & (np.abs(back - tgt) > cfg.hold_band * tgt)
            # cells whose own relaxation rate takes them out of the hold band by the read-back's end
            todo |= targeted & (status != STUCK) & run.learn_retention(back, t_read, run.now())
            risky = targeted & (status != STUCK) & (run.at_risk(back) | run.risk_next)
            del back
            # a cell out of the hold band runs another pass of its chip, and so does a fast-relaxing
            # cell at risk (on the bench's clock: the cells predicted out, in todo already); every
            # cell at risk on a chip that goes on joins it (the pass prolongs its chip's run for all
            # of them); a chip with neither has finished: it leaves the later passes and read-backs
            # (a chip's outcome does not depend on the batch it is tuned in) — where the batch goes
            # on, after one more read-back.  That chip's cells are not tuned in the pass, and a cell
            # the second read-back finds out of the hold band sends its chip on (a chip run alone
            # ends at the first).  The second, independent reading of every cell that held catches
            # the few read within the hold band through the read noise but truly beyond the
            # tolerance: 10 000 × 8×8 chips (seed 1) ended with 16 of 633 717 working cells truly
            # beyond 1 % without it, none with it (the loop that read every chip back at every
            # pass: 1), at 22.3 reads per cell instead of 20.8 (26.9 that loop)
            go = (todo | (risky & run.fast & ~run.timed)).any(axis=(1, 2))
            if not go.any() or p + 1 >= cfg.passes:
                break
            run.confirming = run.on & ~go & ~run.confirming
            run.on = go | run.confirming
            todo |= risky & go[:, None, None]
            p += 1
            journal.relaxation(p, run.relaxation_state(copy=False))
            journal.pass_started(p, todo)
            bar.close()
            bar = _progress(int(todo.sum()), progress, p)
    finally:
        bar.close()
    rel_error = (final - tgt) / tgt
    out_of_band = targeted & (np.abs(rel_error) > cfg.tolerance)
    status = np.where(out_of_band & (status == CONVERGED), DISTURBED, status)
    status = np.where(targeted & ~out_of_band & (status == FAILED), CONVERGED, status)
    kept = None if keep is None else {k: np.concatenate(v) if v else np.array([]) for k, v in keep.items()}
    return TuneResult(tgt, status, rec["pulses"], rec["reads"], rec["energy"], rec["time"], final,
                      rel_error, cfg, time.perf_counter() - t0, run.compliance, p + 1, verify_reads, kept)


#: without ``refit_every``, the cells finished in a pass are added to the records (and their statuses
#: set) once this many steps have finished cells, or a step this many (one concatenation and one put
#: per record field for them all, instead of one a step)
FINISHED_BATCH = 32
#: the fewest measured moves (cells converged and read back, over the run's passes so far) from
#: which the relaxation compensation is learnt
RELAX_MIN_CELLS = 8
#: a cell whose move after converging exceeds its pass's median move by at least this many spreads
#: of the pass's moves (1.4826·MAD), at two read-backs in a row, gets its own shift
#: (:meth:`_Run.learn_relaxation`)
RELAX_OUTLIER = 2.0
#: the time (s) after a write from which the tuner's law of relaxation is linear in log-time:
#: L = ln(1 + age/RELAX_ONSET) (:meth:`_Run.learn_retention`)
RELAX_ONSET = 1.0
#: the weight (in Σ L² of a cell's measured moves) of the median rate toward which each cell's own
#: relaxation rate is pulled (:meth:`_Run.learn_retention`)
RELAX_PRIOR = 1.0
#: a cell whose relaxation rate (pulled toward the median) is at least this many times the median
#: one gets its own shift (:meth:`_Run.learn_retention`)
RELAX_FAST = 2.0
#: cells per call of the on-instrument loop (one call line, one reply each; the journal records the
#: cells of a call when it returns, so an interrupted run loses at most this many cells' work)
ON_INSTRUMENT_BATCH = 16
#: extra reads, averaged, of each cell an on-instrument read-back finds within two read noises of
#: the hold band's edge (:func:`_read_back_on_instrument`): the mean of 1 + 4 reads has 0.45 of a
#: single read's noise, so a cell truly at the tolerance (0.1 % past the hold band, one read's noise
#: on the mock bench: measured 0.096 % from the script's reads) passes for one that holds with a
#: few % chance instead of 16 %
EDGE_REPEATS = 4
#: the fewest pairs of back-to-back reads from which the read noise is estimated
NOISE_MIN_PAIRS = 8
#: the on-instrument script's statuses, as the tuner's codes
_ON_INSTRUMENT_STATUS = {"converged": CONVERGED, "failed": FAILED, "stuck": STUCK}


def _per_cell(shape, fill: float, used: bool) -> np.ndarray:
    """A per-cell array filled with ``fill``; where it is not ``used`` (not written yet), a
    read-only view of the one value (no memory per cell; :func:`_whole` makes it an array)."""
    return np.full(shape, fill) if used else np.broadcast_to(np.float64(fill), shape)


def _whole(a: np.ndarray) -> np.ndarray:
    """``a`` itself where it can be written, else (a :func:`_per_cell` view) an array of its values."""
    return a if a.flags.writeable else np.array(a)


class _Trace:
    """Every read and pulse, kept (``record_trace``) and/or sent to the journal."""

    def __init__(self, keep: dict | None, journal: TuneJournal):
        self.keep = keep
        self.journal = journal
        self.active = keep is not None or type(journal).trace is not TuneJournal.trace
        # without a kept trace, only the chips the journal traces
        self.chips = None if keep is not None else journal.trace_chips

    def record(self, n: "_Slots", mask, pass_no, kind, amplitude, width, reading) -> None:
        if not self.active:
            return
        if self.chips is not None:
            mask = mask[:self.chips]
        if not mask.any():
            return
        chip, slot = np.nonzero(mask)
        chunk = {"chip": chip, "row": n.rows[chip, slot], "col": n.cols[chip, slot],
                 "pass": np.full(chip.size, pass_no), "kind": np.full(chip.size, kind, np.int8)}  # 0 read, 1 pulse
        for key, value in (("amplitude", amplitude), ("width", width), ("reading", reading)):
            chunk[key] = np.broadcast_to(np.asarray(value, float), n.rows.shape)[chip, slot]
        self.emit(chunk)

    def record_cell(self, row, col, pass_no, kind, amplitude, width, reading) -> None:
        """Reads and pulses of one cell of chip 0, in order (arrays of equal length)."""
        if not self.active or (self.chips is not None and self.chips < 1) or not len(kind):
            return
        k = len(kind)
        self.emit({"chip": np.zeros(k, np.intp), "row": np.full(k, row, np.intp), "col": np.full(k, col, np.intp),
                   "pass": np.full(k, pass_no), "kind": np.asarray(kind, np.int8),
                   "amplitude": np.asarray(amplitude, float), "width": np.asarray(width, float),
                   "reading": np.asarray(reading, float)})

    def emit(self, chunk: dict) -> None:
        if self.keep is not None:
            for key, value in chunk.items():
                self.keep[key].append(value)
        self.journal.trace(chunk)


class _Run:
    """One write-verify run's shared state across its passes."""

    def __init__(self, xb, tgt, rank, parallel, cfg, rec, status, trace, journal, should_stop, per_cell=True):
        self.xb, self.tgt, self.rank, self.parallel, self.cfg = xb, tgt, rank, parallel, cfg
        self.rec, self.status, self.trace, self.journal = rec, status, trace, journal
        self.should_stop = should_stop
        self.compliance = 0
        self.corr = None    # the IR-drop read correction (programming.ir_correction), if any
        self.shift = 0.0    # the relative relaxation the verify band pre-compensates (learn_relaxation)
        self.seen_moves = np.zeros(0)   # every converged cell's relative move to the next read-back, all passes
        # the cells' own shifts where they relax faster than the others (NaN: the learnt one);
        # the host loop's (the on-instrument script takes one band per call)
        # (these per-cell arrays start as read-only views of their one value, made whole when first
        # written: 10 000 chips of 8x8 hold none of them through the RESET sweep and the first pass)
        self.own = _per_cell(tgt.shape, np.nan, False)
        self.excess = _per_cell(tgt.shape, np.nan, False)     # each cell's last move beyond its pass's median, in spreads
        self.per_cell = per_cell
        self.moves = (0.0, 0.0)     # a pass's median move and their spread (learn_relaxation)
        self.settled = _per_cell(tgt.shape, np.nan, False)   # each cell's reading when it converged in this pass, S
        self.anchor = _per_cell(tgt.shape, np.nan, False)    # each cell's reading when it last converged (any pass), S
        self.outs = _per_cell(tgt.shape, 0.0, False)     # read-backs that found the cell relaxed out of the hold band
        self.read_pairs: list[float] = []   # relative differences of back-to-back reads with no pulse between
        # what the RESET sweep spent on each cell, added to its records when the pass tunes it
        # (made by the sweep, released once its pass took it all)
        self.carry: dict | None = None
        self.swept = False  # the RESET sweep ran: :attr:`carry` holds what it spent
        self.far = None     # far_first: the cells tuned first in every pass (_far_cells), else None
        # the bench's clock (Crossbar.bench_time) where the host reads one: each cell's relaxation rate
        # in log-time (learn_retention); the host loop's
        self.timed = per_cell and hasattr(xb, "bench_time") and xb.bench_time() is not None
        # (without a clock they stay NaN and 0: read-only views, no memory per cell)
        self.born = _per_cell(tgt.shape, np.nan, self.timed)  # bench time each cell last converged, s (NaN: not since its last tuning)
        self.sxx = _per_cell(tgt.shape, 0.0, self.timed)      # Σ L² and Σ L·d over each cell's measured moves d after
        self.sxy = _per_cell(tgt.shape, 0.0, self.timed)      # converging, L the log-time since (learn_retention)
        self.t_back = np.nan    # bench time the last read-back ended, s (learn_retention)
        self.risk_next = np.zeros(tgt.shape, bool)  # predicted out of the hold band after another pass (learn_retention)
        # step_control: each cell's remembered levels, kept from pass to pass (not journaled: a
        # resumed run remembers them again as its cells move); made when step_control first uses them
        self._step_levels = None
        self.progress = False   # tune()'s progress argument (a pass's second group gets its own bar)
        self.on = None          # the chips in the pass (bool (n_chips,)): the others have finished (tune)
        self.confirming = None  # the chips of the pass read back once more before they leave (tune)

    @property
    def step_levels(self) -> dict:
        """step_control's remembered levels per cell (:data:`STEP_LEVELS`; NaN: none yet)."""
        if self._step_levels is None:
            self._step_levels = {k: np.full(self.tgt.shape, np.nan) for k in STEP_LEVELS}
        return self._step_levels

    def read_noise(self) -> float:
        """The relative noise of one read, measured: from the differences d of back-to-back reads of
        a cell with no pulse between them (the script's converging reads), 1.4826·median|d|/√2 —
        robust to the odd cell that moved.  0 until :data:`NOISE_MIN_PAIRS` pairs are known."""
        if len(self.read_pairs) < NOISE_MIN_PAIRS:
            return 0.0
        return float(1.4826 * np.median(np.abs(self.read_pairs)) / np.sqrt(2))

    @property
    def half(self) -> float:
        """The verify band's relative half-width with the compensation: the band keeps its edge on
        the side the cells relax toward and narrows on the other by the shift."""
        return self.cfg.verify_band - abs(self.shift) / 2

    @property
    def fast(self) -> np.ndarray:
        """The cells with their own shift (they relaxed faster than the others)."""
        return ~np.isnan(self.own)

    @property
    def shifts(self) -> np.ndarray:
        """Each cell's shift: its own where it has one, else the learnt one."""
        return np.where(self.fast, self.own, self.shift)

    def at_risk(self, back) -> np.ndarray:
        """Cells a re-verify pass re-tunes although they hold: those read within their shift (their
        own or the learnt one) of the hold band's edge they relax toward, likely to cross it before
        the run ends.  A fast-relaxing cell at risk runs a pass of its own, and every cell at risk
        joins whatever pass runs: a pass prolongs the run for all of them (left out of the pass a
        fast cell ran alone, a cell of the mock bench's seed-2 chip read at risk at −0.70 % ended
        truly at −0.997 %)."""
        s = self.shifts
        rel = (back - self.tgt) / self.tgt * np.sign(s)
        return (s != 0) & (rel < -(self.cfg.hold_band - np.abs(s)))

    def learn_relaxation(self, back) -> None:
        """Learn from a read-back ``back`` (S) how far cells move between converging and the next
        read-back: the median relative change d of every cell that converged in the run so far,
        each pass's cells measured at the read-back that ended their pass (nothing is learnt
        before :data:`RELAX_MIN_CELLS` moves are known).  Pooled over the passes: a late pass
        re-tunes a handful of cells, whose moves alone are at the level of the read noise (on the
        mock bench's 2636B + 707B station, 8 re-tuned cells' median read −0.01 % where they truly
        moved −0.13 %; learnt from them alone the shift fell from 0.26 % to 0.01 % and later
        passes accepted cells anywhere in the band, which relaxed out until the passes were spent:
        4 of 64 cells ended beyond 1 %, diagnosed with the simulator's truth).  The
        shift is ``−relax_compensation·d``, at most half the verify band: later passes accept a
        cell only in the part of the verify band away from where cells move (:attr:`half`, aiming
        at ``target·(1 + shift/2)``), and re-tune the cells at risk (:meth:`at_risk`).  A bench's
        cells relax after every write (TiO2 retention; on the mock bench
        :func:`mock_hw.aging.retention_relax`, a few tenths of a % in the first seconds) and drift
        under later cells' loud pulses: measured here from the cells' own readings, never from a
        model.

        Devices relax at their own rates (retention exponents spread from device to device), so
        in the host loop a cell whose move exceeds its pass's median move, in its direction, by at
        least :data:`RELAX_OUTLIER` spreads of the pass's moves (1.4826·MAD; a pass with fewer
        than :data:`RELAX_MIN_CELLS` converged cells is judged by the last pass with enough) at
        two read-backs in a row gets its own shift: ``−relax_compensation`` times its move then
        (and the largest of its later moves beyond the others), at most the whole verify band (its
        band then keeps only the side away from where it moves).  A device that relaxes fast does so after every write, whereas a cell
        knocked once by a neighbour's pulse is not marked; once marked, a cell keeps its shift
        (its exponent does not change; a short wait for the read-back shows less of it).  On the
        mock bench's seed-3 chip (B2902A board, 50 µs) the device with 2.9× the median exponent
        moved −2.1 % and −0.66 % after its first two acceptances, where the median cell moved
        −0.36 % and −0.16 %; under half the band it was accepted at −0.15 % and read −0.77 % at
        the last read-back (truly −1.19 %).

        A single read-back's move is a noisy measure of a device's rate (two reads' noise against
        moves of a few tenths of a % after a short pass), so a cell also gets its own shift when
        read-backs have found it relaxed out of the hold band, in the cells' direction, since it
        last converged (its :attr:`anchor`) twice in the run: ``−relax_compensation`` times its
        drift since then (at most the whole verify band).  Being read out of the band takes a
        large move, which the noise rarely makes; a knock takes a cell out once.  On the mock
        bench's seed-2 chip (2636B, 100 µs) the device with 3.4× the median exponent moved 3.7
        and then 1.0 spreads beyond its pass's median (its second move read 0.3 % short of its
        true one: the noise), so the rule above never marked it; it relaxed out at the first and
        the third read-backs, and, with the learnt shift alone, ended truly at −1.10 % (read
        −0.71 % at the last read-back, early in it, and moving 0.4 % more before it ended).  (The
        on-instrument script takes one band per call: it keeps the learnt shift.)"""
        moved = ~np.isnan(self.settled) & ~np.isnan(back)
        rel = (back[moved] - self.settled[moved]) / self.settled[moved]
        b = self.cfg.verify_band
        self.seen_moves = np.concatenate([self.seen_moves, rel])
        if len(self.seen_moves) >= RELAX_MIN_CELLS:
            d = float(np.median(self.seen_moves))
            self.shift = float(np.clip(-self.cfg.relax_compensation * d, -b / 2, b / 2))
        if rel.size >= RELAX_MIN_CELLS:
            # the pass's own median move and spread: a move grows with the time a cell waits for
            # the read-back (a longer pass, a longer wait), so a cell is judged against its pass's
            d = float(np.median(rel))
            self.moves = (d, float(1.4826 * np.median(np.abs(rel - d))))
        if self.per_cell and self.shift != 0 and self.moves[1] > 0:
            d, spread = self.moves
            # how far beyond the pass's median move, in its direction, in spreads of the cells' moves
            z = (rel - d) * np.sign(d) / spread
            prev = self.own[moved]
            # beyond at this read-back, and at the one before or marked already; once marked, a
            # device keeps the largest shift it has shown (its exponent does not change; a short
            # wait for the read-back shows less of it)
            mark = (z >= RELAX_OUTLIER) & ((self.excess[moved] >= RELAX_OUTLIER) | ~np.isnan(prev))
            self.excess = _whole(self.excess)
            self.excess[moved] = z
            if mark.any():      # (else every moved cell keeps its own shift as it is)
                own = np.clip(-self.cfg.relax_compensation * rel, -b, b)
                self.own = _whole(self.own)
                self.own[moved] = np.where(mark, np.sign(own) * np.fmax(np.abs(prev), np.abs(own)), prev)
        self.anchor = np.where(np.isnan(self.settled), self.anchor, self.settled)
        if self.per_cell and self.shift != 0:
            # relaxed out of the hold band since it last converged, in the cells' direction: found
            # so twice, a device relaxes beyond the compensation; its shift is its drift then
            way = -np.sign(self.shift)
            drift = (back - self.anchor) / self.anchor
            out = ((back - self.tgt) / self.tgt * way > self.cfg.hold_band) & (drift * way > 0)
            if out.any():
                self.outs = _whole(self.outs)
                self.outs += out
            twice = out & (self.outs >= 2)
            if twice.any():
                own = np.clip(-self.cfg.relax_compensation * drift, -b, b)
                self.own = np.where(twice, np.sign(own) * np.fmax(np.abs(self.own), np.abs(own)), self.own)
        self.settled = _per_cell(self.tgt.shape, np.nan, False)     # (until the next pass's cells converge)

    def now(self) -> float:
        """The bench's time (s) where the run reads one (:attr:`timed`), else NaN."""
        return float(self.xb.bench_time()) if self.timed else np.nan

    def learn_retention(self, back, t0: float, t1: float) -> np.ndarray:
        """Each cell's relaxation rate on the bench's clock, from a read-back ``back`` (S) made
        from bench time ``t0`` to ``t1`` (s; NaN: no clock, nothing learnt); returns the cells it
        predicts out of the hold band by ``t1`` although they read within it (re-tuned: they start
        a pass), and sets :attr:`risk_next` (they join any pass).

        A TiO2 device relaxes linearly in log-time after a write (power-law retention), each at
        its own rate.  A cell's relative move d since it last converged (its :attr:`anchor`, at
        bench time :attr:`born`) is measured at each read-back against L = ln(1 + a/``RELAX_ONSET``),
        a its age then; its rate k is the least-squares slope of d on L over every move measured
        since it was first tuned (its device's exponent does not change when it is re-tuned),
        pulled toward the median rate of the cells by :data:`RELAX_PRIOR` (a move or two of a few
        tenths of a % is at the level of two reads' noise).  The reads of a read-back are taken as
        evenly spaced between ``t0`` and ``t1`` (one cell after the other, in flat order; the
        confirming reads of the cells out of the hold band at the end).

        Only the cells relaxing :data:`RELAX_FAST` times as fast as the median one or more, in its
        direction (a neighbour's write knocks a cell either way, once), are judged by their rate;
        the others keep the learnt shift (:meth:`learn_relaxation`).  Such a cell gets its own
        shift: what it relaxes in the time a pass and its read-back took, −k·L(wait), at most the
        whole verify band.  Read early in a read-back, it keeps relaxing until the read-back ends:
        predicted out of the hold band then (its reading plus k·(L(t1) − L(its read))), it is
        re-tuned; predicted out after one more pass as long as the last and its read-back, it
        joins any pass that runs.  On the mock bench's seed-3 chip (33512B, 1 µs, V/3) the device
        with 2.9× the median exponent read −0.89 % early in the last read-back, with no rule
        marking it, and ended truly at −1.08 %; its measured rate was 2.7× the median.  On the
        bench's clock these predictions replace the rule that a fast cell at risk (:meth:`at_risk`)
        starts a pass of its own (every cell the rate marks would have been at risk, most of them
        not predicted out: passes that changed nothing)."""
        late = np.zeros(self.tgt.shape, bool)
        self.risk_next = late.copy()
        if not (self.timed and np.isfinite(t0) and np.isfinite(t1)):
            return late
        # re-tuned in the next pass, a cell waits the rest of it and a read-back: as long as the
        # pass just ended (from the read-back before; the run's start for the first) and this one
        wait = t1 - (self.t_back if np.isfinite(self.t_back) else t0)
        self.t_back = t1
        read = _read_mask(~np.isnan(self.tgt), self.corr, self.on)     # what the read-back read
        order = np.cumsum(read.reshape(-1)).reshape(self.tgt.shape)     # each read cell's place
        out = ~np.isnan(self.tgt) & (np.abs(back - self.tgt) > self.cfg.hold_band * self.tgt)
        total = read.sum() + out.sum() * (self.cfg.consecutive - 1)
        t_read = t0 + order * (t1 - t0) / max(total, 1)
        age = t_read - self.born
        ok = ~np.isnan(back) & ~np.isnan(self.anchor) & ~np.isnan(self.born) & (age > 0)
        L = np.log1p(np.where(ok, age, 0.0) / RELAX_ONSET)
        d = np.where(ok, (back - self.anchor) / np.where(ok, self.anchor, 1.0), 0.0)
        self.sxx += np.where(ok, L * L, 0.0)
        self.sxy += np.where(ok, L * d, 0.0)
        seen = self.sxx > 0
        if not seen.any():
            return late
        own_k = self.sxy[seen] / self.sxx[seen]
        k_med = float(np.median(own_k))
        k = np.where(seen, (self.sxy + RELAX_PRIOR * k_med) / (self.sxx + RELAX_PRIOR), 0.0)
        end = np.log1p(np.fmax(t1 - self.born, 0.0) / RELAX_ONSET)
        rel = (back - self.tgt) / self.tgt
        pred = rel + k * (end - L)
        band = self.cfg.hold_band
        # the cells relaxing at least RELAX_FAST times as fast as the median one, in its direction
        # (a knock by a neighbour's write moves a cell either way, once)
        way = np.sign(k_med)
        fast = seen & (k * way >= RELAX_FAST * abs(k_med))
        late = ok & fast & (np.abs(rel) <= band) & (pred * way > band)
        b = self.cfg.verify_band
        # where another pass runs (as long as this one and its read-back), a cell predicted out of
        # the hold band at its end joins it (at risk, :meth:`at_risk`)
        after = np.log1p(np.fmax(t1 + wait - self.born, 0.0) / RELAX_ONSET)
        self.risk_next = ok & fast & (np.abs(rel) <= band) & ((rel + k * (after - L)) * way > band)
        own = np.clip(-k * np.log1p(wait / RELAX_ONSET), -b, b)
        self.own = np.where(fast, np.sign(own) * np.fmax(np.abs(self.own), np.abs(own)), self.own)
        return late

    def relaxation_state(self, copy: bool = True) -> dict:
        """What the run has learnt of its cells' relaxation
        (:data:`~programming.tune_state.RELAXATION_FIELDS`; copies, or with ``copy=False`` the
        run's own arrays, for a caller done with them before the run goes on)."""
        own = np.array if copy else np.asarray
        return {"shift": self.shift, "moves": np.array(self.moves), "seen_moves": own(self.seen_moves),
                "own": own(self.own), "excess": own(self.excess), "anchor": own(self.anchor),
                "outs": own(self.outs), "born": own(self.born), "sxx": own(self.sxx), "sxy": own(self.sxy),
                "t_back": self.t_back,
                "read_pairs": np.array(self.read_pairs, float), "settled": own(self.settled)}

    def _interrupted(self, pass_no: int, todo) -> TuneInterrupted:
        """The stop a ``should_stop`` asked for in pass ``pass_no`` with the cells ``todo`` left:
        the state a resume continues from (statuses, records, compliance, relaxation; copies)."""
        return TuneInterrupted(TuneState(pass_no, todo, self.status.copy(), *(v.copy() for v in self.rec.values()),
                                         self.compliance, self.relaxation_state(),
                                         None if self.on is None else self.on & ~self.confirming))

    def restore_relaxation(self, state: dict) -> None:
        """Continue from :meth:`relaxation_state` (a resumed run: the same compensation as the
        uninterrupted one)."""
        for key in ("own", "excess", "anchor", "outs", "born", "sxx", "sxy", "settled"):
            if key not in state:    # a journal of an earlier version: learnt anew
                continue
            value = np.asarray(state[key], float)
            if value.shape != self.tgt.shape:
                raise ValueError(f"resume state's relaxation {key} has shape {value.shape}, the run has "
                                 f"{self.tgt.shape}")
            setattr(self, key, value.copy())
        self.shift = float(state["shift"])
        self.moves = tuple(float(x) for x in state["moves"])
        self.seen_moves = np.array(state["seen_moves"], float).reshape(-1)
        self.read_pairs = np.asarray(state.get("read_pairs", []), float).tolist()
        self.t_back = float(state.get("t_back", np.nan))

    def reset_sweep(self, todo, pass_no: int) -> None:
        """The initial RESET of every cell in ``todo`` as one sweep before any is tuned: one pulse of
        ``-reset_amplitude`` for ``reset_width`` each, in priority order, ``parallel`` cells at a
        time on distinct rows and columns (the slot scheduler's rule, so concurrent pulses never
        half-select each other's cells).  Their pulses, energy and time count toward each cell's
        records when the pass tunes it (:attr:`carry`)."""
        xb, cfg = self.xb, self.cfg
        sched = SlotScheduler(xb.shape, todo, self.rank, self.parallel)
        n = _Slots(xb.n_chips, sched.parallel, cfg, self.half)
        self.swept = True
        if self.carry is None:
            self.carry = {k: np.zeros(self.tgt.shape, self.rec[k].dtype) for k in ("pulses", "energy", "time")}
        while sched.has_work():
            if self.should_stop is not None and self.should_stop():
                raise self._interrupted(pass_no, todo.copy())
            chip, slot, r, c = sched.assign(n.done)
            if not chip.size:
                raise RuntimeError("write-verify scheduler made no progress (internal error)")
            n.load(chip, slot, r, c, self.tgt[chip, r, c])
            fire = ~n.done
            signed = np.where(fire, -cfg.reset_amplitude, 0.0)
            # under 'auto' the scheme is chosen after the sweep, on the reset array's line model:
            # the sweep writes with V/2 (its half-selected cells are reset or about to be)
            scheme = WriteScheme.V2.value if cfg.write_scheme == AUTO_SCHEME else cfg.write_scheme
            res = self.xb.pulse(n.rows, n.cols, signed, cfg.reset_width, scheme, active=fire)
            self.compliance += int(res.compliance.sum())
            _account_pulse(n, res, np.flatnonzero(fire))
            self.trace.record(n, fire, pass_no, 1, signed, cfg.reset_width, np.nan)
            for key, value in self.carry.items():
                value[chip, r, c] += getattr(n, key)[chip, slot]
            n.done |= fire
            sched.release(chip, r, c)
            self.journal.step_done()

    def _take_carry(self, cell) -> dict:
        """What the RESET sweep spent on the cells at flat indices ``cell`` (per record field; the
        arrays are C-contiguous), cleared once taken (nothing: zeros)."""
        if self.carry is None:
            return {k: np.zeros(np.shape(cell), self.rec[k].dtype) for k in ("pulses", "energy", "time")}
        out = {}
        for key, value in self.carry.items():
            flat = value.reshape(-1)
            out[key] = flat.take(cell)
            flat[cell] = 0
        return out

    def tune_pass(self, todo, reset: bool, pass_no: int, bar) -> bool:
        """Tune every cell in ``todo`` once; accumulates into the records and statuses as cells
        finish (with ``refit_every``, whose reads add to every cell's records within the pass, those
        of the cells finished in the pass together, when it ends or is interrupted: the same sums in
        the same order; a cell finishes once a pass).  With ``far_first`` (:attr:`far`) the far cells of ``todo`` go first, all of them;
        then the whole array is read back (:func:`_read_back`: every estimate of the line model
        fitted anew) and the other cells of ``todo`` go, joined by every other cell that read-back
        finds out of the hold band.  Returns whether that read-back was made."""
        remaining = todo.copy()
        finished = []       # per step with finished cells: (flat cells, statuses, last readings, records)
        between = False
        try:
            first = None if self.far is None else todo & self.far
            if first is not None and first.any():
                self._tune_cells(first, reset, pass_no, bar, remaining, finished)
                self._pass_finished(finished, remaining)
                back = _read_back(self.xb, self.tgt, ~np.isnan(self.tgt), self.cfg, self.rec, self.corr,
                                  chips=self.on & ~self.confirming)
                between = True
                more = ~self.far & (self.status != STUCK) & (np.abs(back - self.tgt) > self.cfg.hold_band * self.tgt)
                if (more & ~remaining).any():
                    remaining |= more
                    self.journal.pass_started(pass_no, remaining.copy())
                    bar.close()
                    bar = _progress(int(remaining.sum()), self.progress, pass_no)
            self._tune_cells(remaining.copy(), reset, pass_no, bar, remaining, finished)
            return between
        finally:
            self._pass_finished(finished, remaining)
            if between:
                bar.close()

    def _tune_cells(self, todo, reset: bool, pass_no: int, bar, remaining, finished) -> None:
        """:meth:`tune_pass`'s loop over the cells ``todo``: finished cells are appended to
        ``finished`` (``remaining``: the pass's cells not yet finished, for an interruption)."""
        xb, cfg = self.xb, self.cfg
        sched = SlotScheduler(xb.shape, todo, self.rank, self.parallel)
        n = _Slots(xb.n_chips, sched.parallel, cfg, self.half)
        shifts = self.shifts    # each cell's, for the pass (its verify band: aim and half-width)
        shifted = bool(np.any(shifts))     # (none: every cell aims at its target, with the slots' band)
        # the journal's record of finished cells (the base journal's does nothing: not called)
        tell = type(self.journal).cells_finished is not TuneJournal.cells_finished
        rows, cols = xb.shape
        refit = cfg.refit_every if self.corr is not None else 0
        since = 0           # cells finished since the last refit (refit_every)
        while True:
            if self.should_stop is not None and self.should_stop():
                self._pass_finished(finished, remaining)
                raise self._interrupted(pass_no, remaining)
            if sched.has_work():
                chip, slot, r, c = sched.assign(n.done)
                if chip.size:
                    cell = (chip * rows + r) * cols + c     # flat cell indices
                    carry = self._take_carry(cell) if self.swept else None
                    if cfg.step_control:
                        carry = dict(carry or {}, **{k: v.take(cell) for k, v in self.step_levels.items()})
                    if shifted:
                        s = shifts.take(cell)
                        n.load(chip, slot, r, c, self.tgt.take(cell) * (1 + s / 2), carry, reset,
                               half=cfg.verify_band - np.abs(s) / 2)
                    else:       # (the same numbers: a shift of 0)
                        n.load(chip, slot, r, c, self.tgt.take(cell), carry, reset)
            if np.count_nonzero(n.done) == n.done.size:     # (cheaper than all() on a few slots)
                if not sched.has_work():
                    return
                raise RuntimeError("write-verify scheduler made no progress (internal error)")
            self.compliance += _step(xb, n, cfg, pass_no, self.trace, self.corr)
            k = n.finished      # flat slot indices (the slot arrays are C-contiguous)
            if k.size:
                chip = n.chip_of.take(k)
                r, c = n.rows.take(k), n.cols.take(k)
                cell = (chip * rows + r) * cols + c     # flat cell indices
                done = [getattr(n, key).take(k) for key in self.rec]
                if cfg.step_control:
                    for key, v in self.step_levels.items():
                        v.put(cell, getattr(n, key).take(k))
                status, last = n.status.take(k), n.last.take(k)
                finished.append((cell, status, last, done))
                if self.timed:      # when they converged (a cell tuned again and not converged: unknown)
                    self.born.put(cell, np.where(status == CONVERGED, self.xb.bench_time(), np.nan))
                if tell:
                    self.journal.cells_finished(pass_no, chip, r, c, self.tgt.take(cell), status, last, *done)
                if not refit and (len(finished) >= FINISHED_BATCH or int(chip.size) >= FINISHED_BATCH):
                    # nothing else adds to the records in a pass (a cell finishes once in it): added
                    # a batch of steps at a time, not kept to its end
                    self._pass_finished(finished, remaining)
                sched.release(chip, r, c)
                bar.update(int(chip.size))
                if self.corr is not None:
                    self.corr.cells_finished(int(chip.size), chip)     # each chip's own count
                since += int(chip.size)
                if refit and since >= refit and sched.has_work():
                    since = 0
                    _refit(xb, cfg, self.rec, self.corr)
            self.journal.step_done()

    def _pass_finished(self, finished, remaining) -> None:
        """Add what the cells finished so far in a pass spent to their records, set their statuses
        and converging readings, and mark them done in ``remaining``; ``finished`` is emptied."""
        if not finished:
            return
        if len(finished) == 1:      # (one step's cells: nothing to join)
            cell, status, last, done = finished[0]
        else:
            cell = np.concatenate([f[0] for f in finished])
            status, last = (np.concatenate([f[i] for f in finished]) for i in (1, 2))
            done = [np.concatenate([f[3][i] for f in finished]) for i in range(len(self.rec))]
        for key, spent in zip(self.rec, done):
            self.rec[key].put(cell, self.rec[key].take(cell) + spent)
        self.status.put(cell, status)
        self.settled = _whole(self.settled)
        self.settled.put(cell, np.where(status == CONVERGED, last, np.nan))
        remaining.put(cell, False)
        finished.clear()


    def tune_pass_on_instrument(self, todo, reset: bool, pass_no: int, bar) -> None:
        """Tune every cell in ``todo`` (chip 0) with the loop — and the routing — running on the
        instrument, :data:`ON_INSTRUMENT_BATCH` cells per call
        (:meth:`~instruments.hardware_crossbar.HardwareCrossbar.tune_on_instrument`) in priority
        order; the same records, statuses, journal events and trace as :meth:`tune_pass`.  Pulse
        energy is estimated as V²·G·w with G the reading before the pulse (what a bench estimates
        for its own pulses).

        The instrument reads raw.  With an IR-drop correction (``line_resistance``) the host gives
        the script each cell's target *as a reading*: what the line model
        (:meth:`~programming.ir_correction.ReadCorrection.model`) says a grounded read of the cell
        measures when every targeted cell is at its target and the others at their estimates."""
        xb, cfg = self.xb, self.cfg
        # the verify band with the relaxation compensation (learn_relaxation): its half-width as
        # the script's guard, its centre in the readings the script aims at
        cell_cfg = replace(cfg, initial_reset=reset, line_resistance=0.0, access_resistance=0.0,
                           guard=cfg.guard if self.shift == 0 else 1 - self.half / cfg.tolerance)
        v_read = cfg.v_read or xb.v_read
        script_tgt = self.tgt
        if self.corr is not None:
            g = np.where(np.isnan(self.tgt), self.corr.est, self.tgt)
            # a reading of a target at the window's edge can fall just outside it, which the
            # instrument refuses: the script aims at the window's edge there (a fraction of a %)
            script_tgt = np.clip(np.where(np.isnan(self.tgt), np.nan, self.corr.model(g)[0]),
                                 *xb.programming_window)
        rank = np.where(todo[0], self.rank, np.iinfo(np.int64).max)
        remaining = todo.copy()
        order = [tuple(int(i) for i in np.unravel_index(f, xb.shape))
                 for f in np.argsort(rank, axis=None)[: int(todo[0].sum())]]
        for k in range(0, len(order), ON_INSTRUMENT_BATCH):
            if self.should_stop is not None and self.should_stop():
                raise self._interrupted(pass_no, remaining)
            batch = order[k:k + ON_INSTRUMENT_BATCH]
            t0 = time.perf_counter()
            aims = np.clip([script_tgt[0, r, c] * (1 + self.shift / 2) for r, c in batch], *xb.programming_window)
            outs = xb.tune_on_instrument(batch, [float(self.tgt[0, r, c]) for r, c in batch], cell_cfg,
                                         readings=[float(a) for a in aims])
            took = (time.perf_counter() - t0) / len(batch)
            for (r, c), out in zip(batch, outs):
                # the reading mapped back to a conductance (locally proportional about the target)
                out = dict(out, final=out["final"] * self.tgt[0, r, c] / script_tgt[0, r, c])
                self._cell_done(r, c, out, took, pass_no, v_read, remaining)
                bar.update(1)
            self.journal.step_done()

    def _cell_done(self, r, c, out, took, pass_no, v_read, remaining) -> None:
        """Records, trace and journal of one cell the instrument tuned."""
        cfg = self.cfg
        amps = np.array([a for a, _ in out["trace"]], float)
        reads = np.array([g for _, g in out["trace"]], float)
        before = np.concatenate([[reads[0]], reads[:-1]])
        fired = amps != 0
        widths = np.where(amps == -cfg.reset_amplitude, cfg.reset_width, cfg.width)
        energy = float(np.sum(np.where(fired, amps ** 2 * before * widths, 0.0)))
        kind = np.zeros(fired.sum() + reads.size, np.int8)       # each read, after its pulse if any
        pos = np.arange(reads.size) + np.cumsum(fired)
        kind[pos[fired] - 1] = 1
        amp = np.zeros(kind.size)
        amp[pos[fired] - 1], amp[pos] = amps[fired], v_read
        wid = np.zeros(kind.size)
        wid[pos[fired] - 1] = widths[fired]
        rd = np.full(kind.size, np.nan)
        rd[pos] = reads
        self.trace.record_cell(r, c, pass_no, kind, amp, wid, rd)
        quiet = np.flatnonzero(~fired[1:]) + 1          # reads with no pulse since the one before
        self.read_pairs += ((reads[quiet] - reads[quiet - 1]) / reads[quiet - 1]).tolist()
        status = _ON_INSTRUMENT_STATUS[out["status"]]
        swept = self._take_carry(r * self.tgt.shape[2] + c)      # (chip 0)
        done = {"pulses": out["pulses"] + int(swept["pulses"]), "reads": out["reads"],
                "energy": energy + float(swept["energy"]), "time": took + float(swept["time"])}
        for key, value in done.items():
            self.rec[key][0, r, c] += value
        self.status[0, r, c] = status
        self.settled = _whole(self.settled)
        self.settled[0, r, c] = out["final"] if status == CONVERGED else np.nan
        remaining[0, r, c] = False
        one = np.zeros(1, np.intp)
        self.journal.cells_finished(pass_no, one, one + r, one + c, self.tgt[0, r, c:c + 1], np.array([status]),
                                    np.array([out["final"]]), *(np.array([done[k]]) for k in self.rec))


def _step(xb: Crossbar, n: _Slots, cfg: TunerConfig, pass_no: int, trace: _Trace, corr=None) -> int:
    """One read of every busy slot, then one pulse for those out of band; sets ``n.finished`` (the
    flat indices of the slots whose cell finished).  Returns the number of compliance events.  The
    rule works on the slots read (gathered by flat index, the slot arrays being C-contiguous: a
    batch of chips has most slots idle) with the arithmetic of the rule as written in the module
    docstring; their state is scattered back.  The other slots' counters are not touched: an idle
    slot's are reset when a cell is loaded into it."""
    pending = n.pending     # cells loaded this step that get their initial RESET first
    run = ~n.done
    if pending:
        run &= ~n.pending_reset
    li = run.reshape(-1).nonzero()[0]   # the slots read (flat)
    target = n.target.take(li)
    if li.size:
        rd = xb.read(n.rows, n.cols, cfg.v_read, cfg.read_scheme, active=run)
        lanes = rd.conductance if corr is None else corr.correct(n.rows, n.cols, rd.conductance, run)
        g = lanes.take(li)
        n.reads.reshape(-1)[li] = n.reads.take(li) + 1
        n.time.reshape(-1)[li] = n.time.take(li) + rd.duration.take(li)
        lo, hi = n.g_lo.take(li), n.g_hi.take(li)
        np.fmin(lo, g, out=lo)
        np.fmax(hi, g, out=hi)
        n.g_lo.reshape(-1)[li] = lo
        n.g_hi.reshape(-1)[li] = hi
        if cfg.held_progress or cfg.step_control:   # how far the last pulse moved each cell toward its target (NaN at a first read)
            last = n.last.take(li)
            toward = (g - last) * np.sign(target - last)
        n.last.reshape(-1)[li] = g
        trace.record(n, run, pass_no, 0, xb.v_read if cfg.v_read is None else cfg.v_read, 0.0, lanes)  # a read: its voltage
    else:
        g = lo = hi = toward = np.empty(0)

    half = n.half.take(li)
    in_band = np.abs(g - target) <= half * target
    band = n.band.take(li)
    band += 1
    band *= in_band
    n.band.reshape(-1)[li] = band
    converged = in_band & (band >= cfg.consecutive)
    need = ~in_band
    up = g < target
    pol = up.view(np.int8) * 2 - 1      # +1 SET, −1 RESET (int8)
    same = need & (pol == n.last_pol.take(li))
    start = cfg.v_set_start if cfg.v_set_start == cfg.v_reset_start else np.where(up, cfg.v_set_start, cfg.v_reset_start)
    cap = np.where(up, cfg.v_set_max, cfg.v_reset_max)
    amp = np.where(same, np.minimum(n.amp.take(li) + cfg.v_step, cap), start)
    if cfg.step_control:
        hold, restart, restart_width = _step_control(n, li, cfg, g, target, toward, same, need, up, start)
        amp = np.where(hold, n.amp.take(li), np.fmax(amp, restart))    # (restart NaN: none)
    drive = reached = amp   # what is driven, and what reaches the cell: the amplitude on ideal lines
    if corr is not None and cfg.write_compensation and np.count_nonzero(need):
        share = WRITE_SHARES.get(parse_write_scheme(cfg.write_scheme))
        if share is not None:
            # the line model's share of the drive across the selected cell: drive so that it gets
            # the amplitude, never beyond the cap nor compensation_max (the cap counts from there)
            t = corr.write_transfer(n.rows, n.cols, amp, *share, lanes=li)
            cap = np.minimum(cap, cfg.compensation_max)
            drive = np.minimum(amp / t, cap)
            reached = drive * t
    at_cap = same & (drive >= cap - 1e-12)
    held = n.at_cap.take(li)
    if cfg.held_progress:
        # a write held at the full limit (the cap and, where writes widen, width_max) counts toward
        # giving up only where the pulse before it did not move the cell toward its target by the
        # verify band
        full = at_cap if cfg.width_ramp == 1 else at_cap & (np.minimum(n.width.take(li) * cfg.width_ramp,
                                                                       cfg.width_max) >= cfg.width_max)
        held += full & ~(toward > half * target)
    else:
        held += 1
    held *= at_cap
    n.at_cap.reshape(-1)[li] = held
    if cfg.width_ramp != 1:         # (else every width stays cfg.width)
        width = np.where(at_cap, np.minimum(n.width.take(li) * cfg.width_ramp, cfg.width_max), cfg.width)
        if cfg.step_control:
            width = np.where(hold, n.width.take(li), np.fmax(width, restart_width))
        n.width.reshape(-1)[li[need]] = width[need]
    held = held > cfg.pulses_at_cap
    # no cell is stuck until the lower of its two ramps reached it: the rule's arrays only then
    near = reached >= start + STUCK_HELD_RAMP * cfg.stuck_ramp - 1e-9
    ramped = reached >= start + cfg.stuck_ramp - 1e-9 if STUCK_HELD_RAMP > 1 else near
    if np.count_nonzero(ramped):
        unmoved = (hi - lo) <= cfg.stuck_rel * np.maximum(lo, xb.programming_window[0])
        stuck = need & unmoved & ((reached >= start + cfg.stuck_ramp - 1e-9) | (held & near))
    else:
        stuck = ramped
    give_up = stuck | held | (n.pulses.take(li) >= cfg.max_pulses)
    give_up &= need
    fire = need & ~give_up
    n.amp.reshape(-1)[li[need]] = amp[need]
    if cfg.step_control:
        n.reached.reshape(-1)[li[fire]] = reached[fire]
    # the finished lanes' statuses (a busy slot's is read only once its cell finishes)
    finished = converged | give_up
    n.finished = li[finished]
    n.status.reshape(-1)[n.finished] = np.where(converged[finished], CONVERGED,
                                                np.where(stuck[finished], STUCK, FAILED))
    n.done.reshape(-1)[n.finished] = True
    k = li[fire]                    # the slots pulsed toward their targets
    if not (k.size or pending):
        return 0
    signed = np.zeros(n.rows.shape)
    pol = pol[fire]
    signed.reshape(-1)[k] = pol * drive[fire]
    fire_any = np.zeros(n.rows.shape, bool)
    fire_any.reshape(-1)[k] = True
    if cfg.width_ramp == 1 and cfg.reset_width == cfg.width:
        widths = cfg.width
    else:
        widths = np.full(n.rows.shape, cfg.width)
        if cfg.width_ramp != 1:
            widths.reshape(-1)[k] = width[fire]
    if pending:                     # their RESETs in the same call as the others' pulses
        np.copyto(signed, -cfg.reset_amplitude, where=n.pending_reset)
        if type(widths) is np.ndarray:
            np.copyto(widths, cfg.reset_width, where=n.pending_reset)
        fire_any |= n.pending_reset
    res = xb.pulse(n.rows, n.cols, signed, widths, cfg.write_scheme, active=fire_any)
    _account_pulse(n, res, np.flatnonzero(fire_any) if pending else k)
    n.last_pol.reshape(-1)[k] = pol
    trace.record(n, fire_any, pass_no, 1, signed, widths, np.nan)
    if pending:
        n.pending_reset.fill(False)
        n.pending = False
    return int(np.count_nonzero(res.compliance))


def _step_control(n: _Slots, li, cfg: TunerConfig, g, target, toward, same, need, up, start):
    """``step_control``: each cell's write level from its own measured response (the slots ``li``
    read this step: readings ``g`` and targets, S; ``toward``: how far the last pulse moved the cell
    toward its target, S; ``same``/``need``/``up`` as in :func:`_step`; ``start``: the recipe's
    start amplitudes, V).

    Per polarity, each cell remembers the lowest level — the narrowest width, then the smallest
    amplitude that reached the cell by the line model — of the pulses that moved it by more than
    :data:`STEP_MOVED` of its verify band (kept across passes, :attr:`_Run.step_levels`).  Returns
    ``hold`` (bool: the cell keeps its last pulse's amplitude and width, that pulse having moved it
    by at least ``step_control`` of the distance left: one level more would likely overshoot),
    ``restart`` (V, NaN where none) and ``restart_width`` (s): the first pulse of a polarity — after
    a flip, or a pass's first — starts at that polarity's remembered level instead of the recipe's
    start at the base width (at least the start amplitude)."""
    pol_prev = n.last_pol.take(li)
    moved = toward > STEP_MOVED * n.half.take(li) * target
    width_now, amp_now = n.width.take(li), n.reached.take(li)
    for sign, amp_mem, width_mem in ((1, n.up_amp, n.up_width), (-1, n.down_amp, n.down_width)):
        w_old, a_old = width_mem.take(li), amp_mem.take(li)
        lower = ~(w_old <= width_now * (1 + 1e-9)) | ((w_old >= width_now * (1 - 1e-9)) & ~(a_old <= amp_now))
        k = li[moved & (pol_prev == sign) & lower]           # (NaN compares False: none remembered yet)
        amp_mem.reshape(-1)[k] = n.reached.take(k)
        width_mem.reshape(-1)[k] = n.width.take(k)
    hold = same & need & (toward >= cfg.step_control * np.abs(target - g))
    first = need & ~same
    mem_amp = np.where(up, n.up_amp.take(li), n.down_amp.take(li))
    mem_width = np.where(up, n.up_width.take(li), n.down_width.take(li))
    restart = np.where(first, np.fmax(start, mem_amp), np.nan)
    restart_width = np.where(first & (mem_width > cfg.width), mem_width, cfg.width)
    return hold, restart, restart_width


#: ``step_control``: a pulse counts as having moved its cell (its level remembered) when the next
#: reading is closer to the target by at least this share of the verify band (0.4 % at the
#: defaults: four read noises of the simulated chip, 2.8 of the difference of two reads)
STEP_MOVED = 0.5
#: the slot fields of ``step_control``'s remembered levels (V, s; NaN: none yet), kept per cell
#: across passes in :attr:`_Run.step_levels`
STEP_LEVELS = ("up_amp", "up_width", "down_amp", "down_width")


#: a cell given up at the drive limit (``pulses_at_cap`` pulses there) whose readings never moved is
#: flagged *stuck* once at least this share of ``stuck_ramp`` above the start reached it (by the line
#: model).  Line-compensated drives stop at ``compensation_max``, so a cell the lines give 70–87 % of
#: its drive (65×84 at 0.67 Ω, V/3) never gets the full ramp (1.7 V): 32 of 37 stuck devices of such
#: a chip ended *failed*, were re-tuned at the limit in every re-verify pass and were never
#: compensated.  Half the ramp (1.4 V: 0.4 V past the recipe's ~1.0 V thresholds, where a working
#: device's step is tens of µS a pulse) still keeps a cell the lines starve below that from being
#: condemned
STUCK_HELD_RAMP = 0.5


#: the shares of the drive on the unselected rows and columns of the write schemes the line model
#: compensates (:meth:`~programming.ir_correction.ReadCorrection.write_transfer`)
WRITE_SHARES = {WriteScheme.V2: (0.5, 0.5), WriteScheme.V3: (1 / 3, 2 / 3)}


#: ``write_scheme="auto"``: the amplitude a write is to put across its cell when the scheme is chosen
#: — the recipe's SET start (1.1 V) and three of its steps (0.05 V): the level the first retries ask
#: for, V
AUTO_NEED_STEPS = 3
#: ``write_scheme="auto"``: V/3 is chosen when the line model says V/2's compensated writes, held to
#: ``compensation_max``, leave more than this share of the array's cells short of that amplitude
AUTO_SHORT_SHARE = 0.01
#: ``write_scheme="auto"``: the growth per retry of a write held at the drive limit under the V/3 it
#: chooses (``width_ramp``, up to ``width_max``): a longer pulse stands in for the voltage the
#: limit withholds (TiO2 switching is thermally activated: |V|_eq grows by about 0.1 V a decade of
#: width, :func:`mock_hw.device.equivalent_voltage`'s sources).  Under V/2 the half-selected cells
#: sit at half the drive and a widened pulse pushes them past their thresholds (measured: 32×32 at
#: 4 Ω, V/2 84.8 % truly within 1 %, widened 84.1 %), so V/2 keeps its width
AUTO_WIDTH_RAMP = 3.0
#: ``write_scheme="auto"``: V/3 is also chosen when V/2's compensated writes would put more than this
#: share of a write's amplitude on the half-selected cells next to the drivers (half of the drive
#: ``amplitude/t``: the lines take more than a quarter of it) for more than ``AUTO_SHORT_SHARE`` of the
#: cells.  Those cells' writes switch their low-threshold half-selected neighbours, and a full array
#: has many: on 64×64 at 0.67 Ω (20 % of the cells past 2/3; diagnosed with the simulator's truth)
#: V/2 left 95.6 % truly within 1 % at 1 µs and 89.2 % at 100 µs, the first pass moving the cells
#: of the 8 columns next to the row drivers by −28 % to +76 % (10th–90th percentile) at 100 µs, where
#: the width adds to every cell's effective voltage; V/3 (a third of the drive, 44 % of the
#: amplitude there) 99.6 % at 100 µs.  32×32 at 0.67–2 Ω and 16×16 keep V/2 (none or < 1 % past it)
AUTO_HALF_SELECT = 2 / 3
#: ``write_scheme="auto"``: where even V/3 at the drive limit leaves more than
#: :data:`AUTO_SHORT_SHARE` of the cells short of the start amplitude itself (64×64 at 2 Ω: 37 %),
#: held writes widen up to the chip's width limit (``limits.width_max``, 1 ms on the simulated chip
#: and the stations' SMUs) and may take this many pulses at the limit before the cell is given up
#: (``pulses_at_cap``).  Measured on 64×64 at 2 Ω (512 cells): 78.4 % truly within 1 % with 100 µs and
#: 5, 85.9 % with 1 ms and 8 (median pulses 32 and 35).  Only the pulses at the limit that did not move
#: the cell by the verify band count there (``held_progress``): counting every held pulse, the ramp
#: from 1 µs took 6 of the 8 and a far cell got two pulses of 1 ms per pass, each moving it 5–20 µS
#: (diagnosed with the simulator's truth on 32×32 at 7.2 Ω, the spread of V/3 transfers of 64×64 at
#: 2 Ω: 90 of its 103 misses were never within 1 % at any read-back, 15 % off at the median, crept
#: 15–25 µS closer each widened pass and were given up).  With it: 32×32 at 7.2 Ω 89.83 → 95.85 %
#: (median 24 pulses both; 5 unmoved pulses instead of 8: 93.48 %); 12×12 at 45 Ω, seeds 0–2,
#: 90.9 / 90.9 / 91.5 → 97.2 / 97.2 / 97.9 %
AUTO_LONG_PULSES_AT_CAP = 8
#: ``write_scheme="auto"``: where it widens held writes, the last this many passes of the budget
#: (``quiet_passes``) write at the base width.  A widened write to a far cell acts on the half-selected
#: cells next to its drivers like 0.1 V a decade more: under V/3 at the 1.95 V limit on 64×64 those
#: see 0.86–0.90 V at 1 Ω and 0.94–0.98 V at 2 Ω (the unselected columns lose up to 0.3 V along their
#: length; diagnosed with the simulator's truth), so 100 µs to 1 ms switch most of them, and a
#: re-verify pass that widens for a few far cells knocks out the cells next to the drivers that held.
#: Measured on the full 64×64 at 1 Ω (seed 0): widened in every pass 94.47 % truly within 1 %, the
#: misses in the two corners next to the drivers; never widened 96.84 %, the corners held and 108
#: far cells failed at the limit
AUTO_QUIET_PASSES = 2
#: ``write_scheme="auto"``: where held writes widen to the chip's width limit, ``far_first``: every
#: pass tunes the far cells (:func:`_far_cells`: V/3 at the drive limit leaves them short of the
#: start amplitude) first, reads the whole array back and then tunes the others.  Diagnosed with the
#: simulator's truth on the full 64×64 at 2 Ω (seed 0, main c177329): in the passes that widen, the
#: tuner's corrected verify reads were off by 4–10 % rms (a third of them by more than 1 %; the
#: read-backs' joint fits 0.13 %), most on the cells tuned while the far cells' 1 ms writes went on:
#: those switch the half-selected cells next to the drivers, whose estimates then go stale and bias
#: the correction of every cell on their lines, so cells converged on wrong readings and the passes
#: churned (65–71 % truly within 1 % at the read-backs of passes 2 to 5).  Far cells first, then the
#: others on a fresh fit: 92.71 → 94.89 % truly within 1 %, median pulses 31 → 29 (32×32 at 7.2 Ω,
#: the same spread of transfers: 93.98 → 96.15 %, median 23 both; 12×12 at 45 Ω, seeds 0–2:
#: 97.18 / 97.90 / 97.87 → 97.18 / 98.60 / 97.87 %)
AUTO_FAR_FIRST = True
#: ``write_scheme="auto"``: where held writes widen to the chip's width limit, ``refit_every``: a
#: pass reads every cell and refits the line model after every this many cells finished in it.
#: Diagnosed with the simulator's truth on the full 64×64 at 2 Ω (seed 0, main ac6197a, 94.42 %
#: truly within 1 %, median 29): only 41 % of pass 1's converged cells were truly within 1 % when
#: they converged — their corrected verify reads off by 5–8 % rms, the read-backs' joint fits by
#: 0.11 % — so 2787 cells were re-tuned in pass 2 and about 1500 in each of passes 3–6: the median's
#: pulses were mostly re-tunes.  With a refit every 128 cells (about 30 in the first pass) and
#: ``step_control``: 96.05 % truly within 1 %, median 22 pulses (main 3f84500's line sweeps;
#: 2223 cells re-tuned in pass 2, about 1200 in passes 3–6); the refits alone 96.02 %, median 26
#: (mean 45 pulses against 36).  On 12×12 at 45 Ω a refit every 4 cells took the first pass's converging
#: reads from 4.7 to 1.7 % rms off the truth
AUTO_REFIT_EVERY = 128
#: ``write_scheme="auto"``: where held writes widen to the chip's width limit, ``step_control``
#: (the share of the distance left a pulse's move must reach for the next pulse to keep its
#: level).  On the same run a typical cell's first pass took 16 pulses, a third of the widened
#: run's pulses did not move their cell by 0.4 %, and every flip and every re-tune started again
#: from 1.1 V and 1 µs, below the level that had moved the cell.  With ``refit_every``: 94.42 →
#: 96.05 %, median 29 → 22 (:data:`AUTO_REFIT_EVERY`); alone 95.08 %, median 25; on 12×12 at 45 Ω alone, 28 % fewer pulses
#: that do not move their cell and 18 % fewer pulses in all, as many cells within 1 % (± one)
AUTO_STEP_CONTROL = 0.4


def on_instrument_scheme(scheme: str) -> str:
    """The scheme the on-instrument loop writes with for ``scheme``: ``"auto"`` is V/2, which is
    what :func:`choose_write_scheme` gives uncompensated writes (the script writes uncompensated);
    a named scheme is itself."""
    return WriteScheme.V2.value if scheme == AUTO_SCHEME else scheme


def choose_write_scheme(xb, cfg: TunerConfig, corr=None) -> TunerConfig:
    """``cfg`` with ``write_scheme="auto"`` resolved (any other scheme is returned unchanged).

    On ideal lines (no line estimate, or uncompensated writes) V/2, the recipe's scheme.  Through
    resistive lines, V/3 when the chip can bias it (``xb.write_schemes``: a station needs two bias
    channels) and the tuner's line model — the measured line resistance and curvature, the
    estimate of every conductance (``corr``, a fitted
    :class:`~programming.ir_correction.ReadCorrection`; fitted here to one read of every cell if
    not given) — says that V/2 would leave more than :data:`AUTO_SHORT_SHARE` of the array's
    cells short of ``v_set_start + AUTO_NEED_STEPS·v_step`` at the drive limit
    (``compensation_max``), or would put more than :data:`AUTO_HALF_SELECT` of a write's amplitude
    on its half-selected cells for more than that share of the cells (then without widening, every
    cell being within reach).  V/3 holds the unselected
    rows at a third of the drive and the columns at two thirds, so the selected lines carry less of
    the half-selected cells' current and more of the drive reaches the selected cell (on 64×64 at
    1 Ω: V/2 leaves 36 % of the cells short of 1.25 V, V/3 7 %), and no unselected cell sees more
    than a third of the drive.  Under the V/3 it chooses, writes held at the drive limit are
    widened by :data:`AUTO_WIDTH_RAMP` per retry (unless ``width_ramp`` already grows them), up to
    ``width_max`` — or, where the model says V/3 leaves more than :data:`AUTO_SHORT_SHARE` of the
    cells short of ``v_set_start`` itself, up to the chip's width limit with
    :data:`AUTO_LONG_PULSES_AT_CAP` pulses there that do not move the cell (``held_progress``) and
    the far cells first in every pass (``far_first``, :data:`AUTO_FAR_FIRST`), the line model
    refitted within each pass (``refit_every``, :data:`AUTO_REFIT_EVERY`) and each cell's write level
    set from its own response (``step_control``, :data:`AUTO_STEP_CONTROL`);
    where it widens, the last :data:`AUTO_QUIET_PASSES` passes of the budget do not
    (``quiet_passes``), and the default
    row-major order becomes ``reach`` (the far cells first in every pass, so the cells next to the
    drivers that their widened writes disturb are tuned after them; another order is kept).
    Measured on the full 64×64 at 1 Ω (seed 0): 94.47 % truly within 1 % widened in every pass,
    98.07 % with the quiet passes, 99.36 % with the quiet passes and the reach order."""
    if cfg.write_scheme != AUTO_SCHEME:
        return cfg
    v2 = replace(cfg, write_scheme=WriteScheme.V2.value)
    able = tuple(getattr(xb, "write_schemes", (WriteScheme.V2.value, WriteScheme.V3.value)))
    if not (cfg.line_resistance > 0 and cfg.write_compensation) or WriteScheme.V3.value not in able:
        return v2
    if corr is None:
        corr = _line_correction(xb, cfg)
        r, c = (a.ravel() for a in np.indices(xb.shape))
        corr.correct_map(xb.read(r, c, cfg.v_read, cfg.read_scheme).conductance.reshape(xb.n_chips, *xb.shape))
    need = cfg.v_set_start + AUTO_NEED_STEPS * cfg.v_step
    rows, cols = (np.broadcast_to(a.ravel(), (xb.n_chips, a.size)) for a in np.indices(xb.shape))
    t = corr.write_transfer(rows, cols, need, *WRITE_SHARES[WriteScheme.V2])
    limit = min(cfg.compensation_max, cfg.v_set_max)
    short = float(np.mean(need / t > limit))
    loud = float(np.mean(WRITE_SHARES[WriteScheme.V2][0] / t > AUTO_HALF_SELECT))   # half of the drive
    if short <= AUTO_SHORT_SHARE and loud <= AUTO_SHORT_SHARE:
        return v2
    if cfg.width_ramp > 1 or short <= AUTO_SHORT_SHARE:
        # widening stands in for withheld voltage: not where every cell is within reach (chosen for
        # the half-selected cells, whom V/3's third of a widened drive still pushes: on 64×64 at
        # 0.67 Ω at 1 µs, 97.8 % truly within 1 % after three passes widened, 99.4 % not)
        return replace(cfg, write_scheme=WriteScheme.V3.value)
    v3 = replace(cfg, write_scheme=WriteScheme.V3.value, width_ramp=AUTO_WIDTH_RAMP,
                 width_max=max(cfg.width, min(cfg.width_max, xb.limits.width_max)),
                 quiet_passes=max(cfg.quiet_passes, AUTO_QUIET_PASSES),
                 order="reach" if cfg.order == "row" else cfg.order)
    t3 = corr.write_transfer(rows, cols, cfg.v_set_start, *WRITE_SHARES[WriteScheme.V3])
    if float(np.mean(cfg.v_set_start / t3 > limit)) <= AUTO_SHORT_SHARE:
        return v3
    # V/3 itself leaves cells short of the start amplitude: their writes widen up to the chip's limit
    return replace(v3, width_max=max(cfg.width, xb.limits.width_max),
                   pulses_at_cap=max(cfg.pulses_at_cap, AUTO_LONG_PULSES_AT_CAP), held_progress=True,
                   far_first=cfg.far_first or AUTO_FAR_FIRST, refit_every=cfg.refit_every or AUTO_REFIT_EVERY,
                   step_control=cfg.step_control or AUTO_STEP_CONTROL)


def _write_need(xb, cfg: TunerConfig, corr=None):
    """The drive per volt across the cell that each cell's writes need under ``cfg``'s write
    scheme, from the tuner's line model (the inverse of
    :meth:`~programming.ir_correction.ReadCorrection.write_transfer` at the SET start amplitude,
    averaged over the chips): shape ``xb.shape``; None without a line model (ideal lines)."""
    share = WRITE_SHARES.get(parse_write_scheme(cfg.write_scheme)) if cfg.write_scheme != AUTO_SCHEME else None
    if corr is None or share is None:
        return None
    rows, cols = (np.broadcast_to(a.ravel(), (xb.n_chips, a.size)) for a in np.indices(xb.shape))
    return (1.0 / corr.write_transfer(rows, cols, cfg.v_set_start, *share)).mean(axis=0).reshape(xb.shape)


def _far_cells(xb, cfg: TunerConfig, corr=None):
    """``far_first``'s far cells: bool (n_chips, rows, cols), those the tuner's line model (``corr``:
    each chip's transfer under ``cfg``'s write scheme at the SET start amplitude) leaves short of
    ``v_set_start`` at the drive limit (``compensation_max``, ``v_set_max``): every write of theirs
    is held there, and widened where writes widen.  None without a line model."""
    share = WRITE_SHARES.get(parse_write_scheme(cfg.write_scheme)) if cfg.write_scheme != AUTO_SCHEME else None
    if corr is None or share is None:
        return None
    rows, cols = (np.broadcast_to(a.ravel(), (xb.n_chips, a.size)) for a in np.indices(xb.shape))
    t = corr.write_transfer(rows, cols, cfg.v_set_start, *share).reshape(xb.n_chips, *xb.shape)
    return cfg.v_set_start / t > min(cfg.compensation_max, cfg.v_set_max)


def _line_correction(xb, cfg: TunerConfig, **options):
    """The IR-drop correction (:class:`~programming.ir_correction.ReadCorrection`, not yet fitted)
    of ``xb`` read as ``cfg`` reads it, on ``cfg``'s line-resistance estimate and I-V curvature;
    ``options``: ReadCorrection's others (``refresh_every``)."""
    from .ir_correction import ReadCorrection

    return ReadCorrection(xb.shape, xb.n_chips, cfg.v_read or xb.v_read, cfg.line_resistance,
                          cfg.access_resistance, scheme=parse_read_scheme(cfg.read_scheme).value,
                          beta=cfg.device_beta, **options)


def _start_correction(xb, cfg: TunerConfig, rec, parallel: int, on_instrument: bool = False):
    """With an estimated line resistance: read every cell once and fit the IR-drop correction's
    estimate of every conductance to those readings (:mod:`programming.ir_correction`); on the
    instrument, the reads are one call (:meth:`read_on_instrument`)."""
    if cfg.line_resistance <= 0:
        return None
    # refreshed once as many cells as are tuned at once have finished: between refreshes each cell's
    # own inversion and its first-order follow of the others stay within ~1e-3 of the model
    # (ReadCorrection._linearized; 64x64 at 0.67 ohm: after every 32 cells 2277 steps, every 64
    # 2305, every 128 2471, with the model's solves 2.2, 1.5, 1.0 s)
    corr = _line_correction(xb, cfg, refresh_every=max(1, parallel))
    rows, cols = (a.ravel() for a in np.indices(xb.shape))
    t0 = time.perf_counter()
    if on_instrument:
        g = xb.read_on_instrument(list(zip(rows.tolist(), cols.tolist())), cfg.v_read).reshape(1, *xb.shape)
        rec["time"] += (time.perf_counter() - t0) / rows.size
    else:
        first = xb.read(rows, cols, cfg.v_read, cfg.read_scheme)
        rec["time"] += first.duration.reshape(rec["time"].shape)
        g = first.conductance.reshape(xb.n_chips, *xb.shape)
    rec["reads"] += 1
    corr.correct_map(g)
    return corr


def _refit(xb, cfg: TunerConfig, rec, corr) -> None:
    """``refit_every``: in the middle of a pass, read every cell once and fit the line model's
    estimate of every conductance anew to those readings (the joint inversion of a read-back,
    :meth:`~programming.ir_correction.ReadCorrection.correct_map`).  Nothing is decided on these
    readings: the cells being tuned go on, with every verify read corrected on the fresh fit."""
    corr.correct_map(_read_map(xb, cfg, rec, np.ones(rec["time"].shape, bool)))


def _read_mask(targeted, corr=None, chips=None) -> np.ndarray:
    """The cells a read-back reads: the targeted ones; with an IR-drop correction every cell (the
    untargeted ones load the same lines and drift under the others' pulses: their stale estimates
    biased a 64×64 chip's corrected read-back of 512 tuned cells by 0.85 % rms).  ``chips`` (bool
    (n_chips,), default every chip): of these chips only (the chips still in the run)."""
    if chips is None:
        return targeted if corr is None else np.ones(np.shape(targeted), bool)
    on = np.asarray(chips, bool)[:, None, None]
    return targeted & on if corr is None else np.broadcast_to(on, np.shape(targeted))


def _read_map(xb, cfg: TunerConfig, rec, read) -> np.ndarray:
    """Read the cells ``read`` (bool, (n_chips, rows, cols)) once, as ``cfg`` reads, counting the
    reads and their time in the records ``rec``: their readings (S), NaN where not read."""
    rows, cols = (a.ravel() for a in np.indices(xb.shape))
    back = xb.read(rows, cols, cfg.v_read, cfg.read_scheme, active=read.reshape(xb.n_chips, -1))
    rec["reads"] += read
    rec["time"] += back.duration.reshape(read.shape)
    return back.conductance.reshape(read.shape)


def _read_back(xb, tgt, targeted, cfg: TunerConfig, rec, corr=None, chips=None) -> np.ndarray:
    """Read every targeted cell once; re-read those out of tolerance ``consecutive − 1`` more times
    and keep the mean.  Returns the conductances (S), NaN where untargeted.  With an IR-drop
    correction every cell is read (:func:`_read_mask`) and the map is inverted jointly (its re-reads
    cell by cell on that fit: :meth:`~programming.ir_correction.ReadCorrection.correct_cells`).  ``chips``
    (bool (n_chips,), default every chip): these chips only (NaN on the others; their line model
    keeps its estimates)."""
    final = _read_map(xb, cfg, rec, _read_mask(targeted, corr, chips))
    if corr is not None:
        final = np.where(targeted, corr.correct_map(final), np.nan)
    doubt = targeted & (np.abs(final - tgt) > cfg.hold_band * tgt)
    if doubt.any() and cfg.consecutive > 1:
        total = np.where(doubt, final, 0.0)
        for _ in range(cfg.consecutive - 1):
            again = _read_map(xb, cfg, rec, doubt)
            total += np.where(doubt, again if corr is None else corr.correct_cells(again), 0.0)
        final = np.where(doubt, total / cfg.consecutive, final)
    return final


def _read_back_on_instrument(xb, tgt, targeted, cfg: TunerConfig, rec, corr=None, noise: float = 0.0) -> np.ndarray:
    """:func:`_read_back` with the reads (and the routing) on the instrument: one call reads
    every targeted cell, one more re-reads those out of tolerance ``consecutive − 1`` times
    (:meth:`~instruments.hardware_crossbar.HardwareCrossbar.read_on_instrument`); raw readings
    are corrected for IR drop on the host when ``corr`` is given.  ``noise`` (relative, one read's,
    :meth:`_Run.read_noise`): the same call also re-reads the cells read within ``2·noise`` of the
    hold band's edge, :data:`EDGE_REPEATS` times (at least ``consecutive − 1``), and their mean
    decides — more reads only where one read cannot tell whether the cell holds."""
    read = _read_mask(targeted, corr)
    cells = [(int(r), int(c)) for r, c in zip(*np.nonzero(read[0]))]
    raw = np.full(tgt.shape, np.nan)
    t0 = time.perf_counter()
    rows, cols = np.array(cells).T
    raw[0, rows, cols] = xb.read_on_instrument(cells, cfg.v_read)
    rec["reads"] += read
    final = raw if corr is None else np.where(targeted, corr.correct_map(raw), np.nan)
    edge = 2 * noise if noise > 0 else 0.0
    doubt = targeted & (np.abs(final - tgt) > (cfg.hold_band - edge) * tgt)
    repeats = max(cfg.consecutive - 1, EDGE_REPEATS if edge else 0)
    if doubt.any() and repeats > 0:
        again = [(int(r), int(c)) for r, c in zip(*np.nonzero(doubt[0]))]
        mean = xb.read_on_instrument(again, cfg.v_read, repeats=repeats)
        ar, ac = np.array(again).T
        raw[0, ar, ac] = (raw[0, ar, ac] + repeats * mean) / (repeats + 1)
        rec["reads"] += doubt * repeats
        final = raw if corr is None else np.where(targeted, corr.correct_map(raw), np.nan)
    rec["time"] += np.where(targeted, (time.perf_counter() - t0) / len(cells), 0.0)
    return final


def _account_pulse(n: _Slots, res, fired):
    """Count the pulses of the slots at flat indices ``fired`` (ascending) and add their energy
    and time (the slot arrays are C-contiguous)."""
    n.pulses.reshape(-1)[fired] = n.pulses.take(fired) + 1
    n.energy.reshape(-1)[fired] = n.energy.take(fired) + res.energy.take(fired)
    n.time.reshape(-1)[fired] = n.time.take(fired) + res.duration.take(fired)


class _NoBar:
    total = 0

    def update(self, n):
        pass

    def refresh(self):
        pass

    def close(self):
        pass


class _CallbackBar(_NoBar):
    """Reports ``(done, total, stage)`` cells of one pass to a callable instead of drawing a bar."""

    def __init__(self, total: int, callback: Callable[[int, int, str], None], stage: str):
        self.total, self.done, self.callback, self.stage = total, 0, callback, stage
        self.callback(0, total, stage)

    def update(self, n):
        self.done += n
        self.callback(self.done, self.total, self.stage)

    def refresh(self):
        self.callback(self.done, self.total, self.stage)


def _stage(pass_no: int) -> str:
    """The progress label of a pass: 'pass 1', then 'pass 2 (re-verify)', ..."""
    return f"pass {pass_no + 1}" + (" (re-verify)" if pass_no else "")


def _progress(total: int, progress, pass_no: int = 0):
    """The progress of one pass, whose ``total`` cells are known when it starts (a bar per pass,
    so no total ever grows)."""
    if callable(progress):
        return _CallbackBar(total, progress, _stage(pass_no))
    if not progress:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, unit="cell", desc=f"tuning {_stage(pass_no)}", smoothing=0.05)


def config_dict(cfg: TunerConfig) -> dict:
    return asdict(cfg)
