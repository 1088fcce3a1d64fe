"""A simulated passive TiO2 crossbar behind the :class:`~programming.crossbar.Crossbar` interface.

Vectorized over a batch of ``n_chips`` independent chips (Monte Carlo studies) and over the lanes of
one call.  Within a chip, pulses take effect in lane order, as on hardware:

* **Fast path** (V/2 writes on ideal lines, the active lanes of each chip on distinct rows and
  distinct columns — what the tuner issues): under V/2 a pulse changes only its own row and column,
  so each cell is hit by at most one "row" pulse and one "column" pulse of the call.  The cells are
  updated in two vectorized stages, the earlier-lane hit first — the same result as applying the
  pulses one by one.
* **General path** (V/3, floating lines, line resistance, or lanes sharing a line): the lanes are
  applied one after another, each vectorized over all chips and cells.

Reads and matrix-vector products stay below the switching thresholds (the limits enforce
``v_read_max``), so they never disturb.

Forming, retention, state
-------------------------
``pristine=True`` makes a chip whose working devices start unformed (insulating, ``g_pristine``)
until a pulse reaches their forming voltage (every pulse path, :func:`~mock_hw.device.switch_at`).
:meth:`SimulatedCrossbar.wait` advances a virtual clock (:attr:`~SimulatedCrossbar.clock`, s) and
applies retention loss (:mod:`mock_hw.aging`); only ``wait`` advances it (reads and pulses take no
virtual time).  :meth:`~SimulatedCrossbar.state_dict` / :func:`save_chip_state` capture everything
needed to resume a chip exactly (:mod:`mock_hw.chip_state`).
"""
from __future__ import annotations

import weakref

import numpy as np

from programming.colour_plan import ColourPlan, PassResult
from programming.read_plan import ReadPlan
from programming.crossbar import Crossbar, PulseResult, ReadResult, ReadScheme, SafetyLimits, WriteScheme

from . import nodal
from .aging import retention_relax, sample_forming_voltage, sample_retention_nu
from .chip_state import chip_state_dict, load_chip_state, load_chip_state_dict, save_chip_state
from .device import (DevicePopulation, apply_voltages_written, disturb_increments, equivalent_shift, equivalent_voltage,
                     initial_state, iv_current, lanes_compiled, read_conductance, sample_population, switch_at,
                     switch_drift_lanes, switch_steps,
                     _switch_factors, _switch_rounds)
from .presets import DEFAULT_PRESET, ChipParams, get_preset

__all__ = ["SimulatedCrossbar", "save_chip_state", "load_chip_state"]

#: convergence of the line solves, relative to each operating point's largest terminal voltage:
#: reads and products to 1e-10, far below the 0.1 % read noise; pulses to 1e-7 (0.2 µV at 2 V, far
#: below the spread of the switching thresholds).  On swept lines (:func:`programming.line_sweep.sweep_solve`:
#: every chip that does not relax) a proven bound on every node voltage's error
READ_TOL, PULSE_TOL = 1e-10, 1e-7
#: the same on swept lines of at least ``FACTORED_TOL_CELLS`` cells (32×32 and up; the names are
#: those of the factorized solver the sweeps replaced), where a decade costs about a sweep
#: (~8·10⁴ node updates per operating point): reads with every node voltage proven within 1e-5 of
#: the read voltage and every reading within 1e-5 of the read voltage times the chip's mean
#: conductance (2 µV and 0.6 nA at 0.2 V and 300 µS: a hundredth of the 0.1 % read noise of a mean
#: cell); pulses with every node voltage within 1e-4 of the drive (0.2 mV at 2 V, a five-hundredth
#: of the 0.1 V spread of the switching thresholds and of the 0.1 V per decade of the width law,
#: ~0.4 % of the switching step at 0.1 V overdrive against its 30 % cycle-to-cycle noise).  Reads
#: stop on the global bound (the error left ~1e-7 of a reading measured on 64×64: a line
#: calibration averages readings far below their tolerance); pulses on the lines' bound (``sharp``:
#: the error left reaches up to theirs, measured 0.6 of it on a 64×64 tune).  Statistical check (same
#: chips, seeds and targets, tolerances against 1e-10 / 1e-7): ``benchmarks/ir_speed.py --evidence``
FACTORED_READ_TOL, FACTORED_PULSE_TOL = 1e-5, 1e-4
FACTORED_TOL_CELLS = 1024
#: on relaxed lines (many small chips, :mod:`programming.line_batch`) each operating point stops at
#: its own proven bound, and a decade costs a relaxation step of the whole batch.  Pulses there to
#: the factorized path's FACTORED_PULSE_TOL (1e-4 of the drive, 0.2 mV at 2 V: its reasons above;
#: on 8×8 at 0.67 Ω two steps where 1e-6 took three).  Reads keep 1e-10: a reading is the sum of
#: its column's currents at the last iterate but one, whose proven error is the bound over ρ, so a
#: reading's is only bounded by tol·V_read/r_line (relative, tol/(r_line·g): 1.5e-5 for a 10 µS cell
#: at 0.67 Ω).  (A stop on a proven bound of every column current, 1e-5, took 2–3 steps instead of
#: 4–5 but was no faster: the test and the currents of the last iterate cost what the steps saved.)
RELAXED_TOL = {PULSE_TOL: FACTORED_PULSE_TOL}
#: grounded reads on relaxed lines (:meth:`SimulatedCrossbar._relaxed_lane_reads`,
#: :meth:`SimulatedCrossbar._grounded_rows`: a tune's verify reads and maps of many small chips)
#: stop on a proven bound of their readings themselves (:func:`programming.relax_kernels.relax_reads`:
#: every reading within this fraction of the read voltage times its chip's mean conductance, the
#: swept path's FACTORED_READ_TOL on readings; 0.6 nA at 0.2 V and 300 µS, a thirtieth of the
#: 0.1 % read noise of a cell at the bottom of a 100 µS programming window).  Each read starts
#: from its own row's network (the sneak paths left to the relaxation) and mostly proves that in
#: one step.  Measured on 256 640 reads of a 10 000 × 8×8 tune at 0.67 Ω against a solve to
#: 1e-14: readings within 3.2e-6 of V_read·ḡ (p99 1.1e-6; the node bound 1e-8 they replace gave
#: 5.9e-6, p99 2.4e-6), 1.0 step each against 3.1, ~0.42 against ~0.59 µs a read
RELAXED_READ_TOL = FACTORED_READ_TOL
#: isolating reads on resistive lines solved per call (each its own operating point): bounds memory
ISOLATE_CHUNK = 64
#: chips a relaxed line solve (many small chips, :mod:`programming.line_batch`) works at once: the
#: node voltages of a call's operating points are held for this many chips only (1024 chips × 8
#: operating points of 8×8: 8 MB), never for the whole batch (10 000 chips: 82 MB, and the pulse's
#: cell voltages, currents and threshold screens ~300 MB)
LINE_CHIPS = 1024
#: pulses of single cells on relaxed lines (the busy lanes of many chips) worked out per call of the
#: compiled kernel (:meth:`mock_hw.nodal.LineSolver.pulse_points`): bounds its buffers of devices
#: beyond a threshold (8192 points of 8×8: 12 MB of address space, the few written resident)
LINE_POINTS = 8 * LINE_CHIPS
#: reads and pulses on resistive lines that fall back to a factorized chord iteration (relaxed
#: lines too resistive to relax) take a Newton step on their selected lines in every chord
#: iteration (``focus`` of :meth:`mock_hw.nodal.LineSolver.solve`) where a line's own IR drop,
#: estimated as r_line·ḡ·n(n + 1)/2 (n cells fed from one end, ḡ the middle of the programming
#: window), reaches this fraction of its drive.  Below it the chord iteration needs no more
#: substitutions without the step, which then only costs: measured on tio2-3it (0.67 Ω), 16×16
#: (estimate 0.026) 20 % slower per tuner step with it, 24×24 (0.058) 10 % faster, 64×64 1.7× faster
FOCUS_MIN_DROP = 0.04
#: a masked product on ideal lines of at least this many multiply-adds (inputs × rows × columns per
#: chip) is worked out run by run of inputs on their driven rows and needed columns
#: (:meth:`SimulatedCrossbar._mvm_blocks`); below it one dense product costs less than the runs' calls
MVM_BLOCKS_MIN = 1 << 19


class _StepsResult(PulseResult):
    """A :class:`~programming.crossbar.PulseResult` whose energies and compliance flags are worked
    out (energies from the kept states) when first read (in-situ training never reads them); the
    durations are given."""

    def __init__(self, energy, duration, compliance):  # energy, compliance: functions returning the array
        self._of = {"energy": energy, "compliance": compliance}
        self._done = {"duration": duration}

    def _get(self, name):
        if name not in self._done:
            self._done[name] = self._of[name]()
        return self._done[name]

    energy = property(lambda self: self._get("energy"))
    duration = property(lambda self: self._get("duration"))
    compliance = property(lambda self: self._get("compliance"))


def _lane_sort(lanes, n_lanes: int) -> np.ndarray:
    """The stable order of ``lanes`` (ints in [0, ``n_lanes``)): lane by lane, each lane's entries
    in their order.  The lanes are sorted as bytes where they fit: numpy sorts those by radix, not
    merging, faster, and a stable order is the same whatever the sort."""
    return np.argsort(lanes.astype(np.uint8 if n_lanes <= 256 else np.intp, copy=False), kind="stable")


def _at_lanes(a, li) -> np.ndarray:
    """The entries of ``a`` (a lane map, e.g. (n_chips, L)) at the flat indices ``li``: gathered by
    ``take`` where ``a`` is C-contiguous (a tenth of the CPU of ``a.flat[li]``), through ``.flat``
    where it may be a broadcast view (not copied whole)."""
    return a.take(li) if a.flags.c_contiguous else a.flat[li]


def _lane_runs(lane_of, n_lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, bounds): lane q's entries of ``lane_of`` are ``order[bounds[q]:bounds[q + 1]]``, in
    their order (:func:`_lane_sort`)."""
    order = _lane_sort(lane_of, n_lanes)
    return order, np.searchsorted(lane_of[order], np.arange(n_lanes + 1))


class SimulatedCrossbar(Crossbar):
    """``n_chips`` simulated chips of ``rows`` × ``cols`` devices.

    Args:
        rows, cols: array size.
        n_chips: independent chips simulated at once.
        preset: preset name or a :class:`ChipParams`.
        seed: seeds both the manufacturing draw (thresholds, rates, stuck devices, initial states)
            and the run-time noise; the same seed gives the same chip and the same run.
        r_line: overrides the preset's line resistance, Ω per segment.
        limits: overrides the preset's safety limits.
        pristine: every device that is not stuck starts unformed (``g_pristine``, insulating, no
            switching) until a pulse of at least its forming voltage forms it.  The manufacturing
            draw is the same as without ``pristine`` (same thresholds, rates, stuck devices).
    """

    def __init__(self, rows: int, cols: int, n_chips: int = 1, preset: str | ChipParams = DEFAULT_PRESET,
                 seed: int = 0, r_line: float | None = None, limits: SafetyLimits | None = None,
                 pristine: bool = False):
        if int(rows) < 1 or int(cols) < 1 or int(n_chips) < 1:
            raise ValueError(f"array size {rows}x{cols} with {n_chips} chips: all must be >= 1")
        params = get_preset(preset) if isinstance(preset, str) else preset
        if r_line is not None:
            params = params.with_(r_line=float(r_line))
        if limits is not None:
            params = params.with_(limits=limits)
        self.params = params
        self.shape = (int(rows), int(cols))
        self.n_chips = int(n_chips)
        self.limits = params.limits
        self.v_read = params.v_read
        self.programming_window = params.programming_window
        self.preferred_parallel = min(self.shape)
        self.read_schemes = ("ground", "float", "isolate")   # a simulated chip can bias its lines any way
        # a third stream for forming voltages and retention exponents leaves the first two (and so
        # every chip and run of earlier versions) unchanged
        fab, run, aging = np.random.default_rng(seed).spawn(3)
        full = (self.n_chips, *self.shape)
        d = params.device
        pop = sample_population(full, d, fab)
        self._g = initial_state(pop, d, fab)
        pop.v_form = sample_forming_voltage(full, d, aging)
        pop.nu = sample_retention_nu(full, d, aging)
        if pristine:
            pop.unformed = ~pop.stuck
            self._g = np.where(pop.unformed, d.g_pristine, self._g)
        self.population = pop
        self._rng = run
        self._clock = 0.0
        self._t_written = np.zeros(full)   # virtual time each device was last written, s
        self._n_disturb = np.zeros(full)   # disturb events each device saw since it was last programmed
        self.n_read_ops = 0
        self.n_pulse_ops = 0
        #: the largest |voltage| across any cell but a pulse's selected one (half-selected cells
        #: included) in any pulse so far, V: at most V/2 (V/3) of the drive under V/2 (V/3) on ideal lines
        self.max_unselected_v = 0.0
        # resistive lines: the line solvers of the whole batch (its warm starts kept) and of chip 0 (drive_lines)
        self._lines = nodal.LineSolver(params.r_line, d.beta, d.v_ref, warm=True) if params.r_line > 0 else None
        self._lines0 = nodal.LineSolver(params.r_line, d.beta, d.v_ref) if params.r_line > 0 else None
        self._rows_kept = None      # relaxed lines' grounded reads of unchanged chips (_kept_rows)
        # the chips written (_mark_written) or drifted (_disturb) since _lines_relaxed last brought the
        # relaxed network to the conductances (n_chips bool), valid while _touched_of names the same _g
        # object (any other write of the conductances replaces it): the only chips compared next time
        self._touched = np.zeros(self.n_chips, bool)
        self._touched_of = None
        n = max(self.shape)
        self._focus = params.r_line * float(np.mean(params.programming_window)) * n * (n + 1) / 2 >= FOCUS_MIN_DROP

    # ------------------------------------------------------------------ simulator-only truth
    @property
    def true_conductance(self) -> np.ndarray:
        """The devices' actual read conductances, S (known only to a simulator)."""
        return self._g.copy()

    @property
    def stuck_mask(self) -> np.ndarray:
        """Devices stuck at a fixed conductance (they never form or switch)."""
        return self.population.stuck.copy()

    @property
    def formed_mask(self) -> np.ndarray:
        """Devices that are formed (all of them on a chip made without ``pristine``).  Stuck
        devices count as formed: they conduct at their stuck value but never switch."""
        u = self.population.unformed
        return np.ones(self._g.shape, bool) if u is None else ~u

    @property
    def working_mask(self) -> np.ndarray:
        """Devices that switch: neither stuck nor unformed.  An unformed device is not working
        until a forming pulse forms it; its true conductance is ``g_pristine``."""
        u = self.population.unformed
        return ~self.population.stuck if u is None else ~(self.population.stuck | u)

    @property
    def clock(self) -> float:
        """Virtual time, s: advanced only by :meth:`wait`."""
        return self._clock

    def set_conductances(self, g) -> None:
        """Force the state of every working device (for tests and what-if studies), S.  Stuck and
        unformed devices keep theirs; the forced devices count as just written."""
        g = np.broadcast_to(np.asarray(g, dtype=float), self._g.shape)
        d = self.params.device
        working = self.working_mask
        self._g = np.where(working, np.clip(g, d.g_min, d.g_max), self._g)
        self._t_written[working] = self._clock
        self._n_disturb[working] = 0.0

    # ------------------------------------------------------------------- time and state
    def _wait(self, seconds: float) -> None:
        """Advance the virtual clock at once (no sleeping) and apply retention loss to every
        working device, with its age counted from its last write."""
        d = self.params.device
        t0, t1 = self._clock, self._clock + seconds
        if t1 > t0 and d.retention_nu > 0:
            self._g = retention_relax(self._g, t0 - self._t_written, t1 - self._t_written,
                                      self.population.nu, d.retention_tau, d.g_rest, self.working_mask)
        self._clock = t1

    def _mark_written(self, flat) -> None:
        """Reset the age of the devices at flat indices ``flat`` (just written by a pulse; every
        write of a device's conductance in place is marked here or in :meth:`_disturb`), and
        count their chips as touched (:meth:`_lines_relaxed`)."""
        self._t_written.reshape(-1)[flat] = self._clock
        if self._lines is not None:         # (only resistive lines keep a network to bring up to date)
            self._touched[np.asarray(flat) // (self.shape[0] * self.shape[1])] = True

    def _lines_relaxed(self) -> bool:
        """Whether the lines relax (:meth:`~mock_hw.nodal.LineSolver.relaxed`), the network brought
        to the chips' conductances: where every write since the last call was marked
        (:attr:`_touched`, the same conductance array), only the chips touched are compared."""
        of = self._touched_of
        among = np.flatnonzero(self._touched) if of is not None and of() is self._g else None
        relaxed = self._lines.relaxed(self._g, among)
        self._touched.fill(False)
        self._touched_of = weakref.ref(self._g)
        return relaxed

    def _disturb(self, selected, loud) -> None:
        """Relaxation under programming activity (:func:`~mock_hw.device.disturb_drift`): the
        devices at flat indices ``selected`` were just programmed (their event count restarts);
        every other working device of chip ``b`` sees ``loud[b]`` more events (the pulses of
        amplitude >= ``disturb_v`` on that chip).  Only the loud chips' devices are visited, chip
        by chip as one block (a run of consecutive chips: a view of the batch), the drawn ones in
        flat order, and the drift increments come from a table of whole event counts
        (:func:`~mock_hw.device.disturb_increments`): the numbers of ``disturb_drift`` itself."""
        d = self.params.device
        n_flat = self._n_disturb.reshape(-1)
        n_flat[selected] = 0.0
        if not d.disturbs or not np.count_nonzero(loud):
            return
        loud = np.asarray(loud)
        chips = np.flatnonzero(loud)
        if self._lines is not None:
            self._touched[chips] = True
        per = self.shape[0] * self.shape[1]
        # the loud chips' rows of the (n_chips, per) maps: a slice (views) where they are consecutive
        at = slice(int(chips[0]), int(chips[-1]) + 1) if chips[-1] - chips[0] + 1 == chips.size else chips
        mark = self._scratch_mask()
        mark[selected] = True
        keep = ~mark.reshape(-1, per)[at]
        mark[selected] = False
        keep &= self._working_flat().reshape(-1, per)[at]
        ev = loud.take(chips)
        mean, sd = self._disturb_table(int(ev.max()))
        n = self._n_disturb.reshape(-1, per)[at]
        ti = np.minimum(n, mean.shape[0] - 1).astype(np.intp)
        ti *= mean.shape[1]
        events = int(ev[0]) if (ev == ev[0]).all() else ev.astype(np.intp)[:, None]   # (usually 1 for every chip)
        ti += events
        g_rows = self._g.reshape(-1, per)
        g = g_rows[at]
        drift = g + mean.take(ti)
        z = np.zeros(ti.shape)
        z[keep] = self._rng.standard_normal(np.count_nonzero(keep))
        z *= sd.take(ti)
        drift += z
        np.clip(drift, d.g_min, d.g_max, out=drift)
        np.copyto(g, drift, where=keep)
        np.add(n, events, out=n, where=keep)
        if type(at) is not slice:           # (gathered copies: put back)
            g_rows[at] = g
            self._n_disturb.reshape(-1, per)[at] = n

    def _disturb_table(self, max_events: int):
        """The drift increments (mean, std) by event count (at least ``max_events`` more), cached."""
        table = getattr(self, "_drift_table", None)
        if table is None or table[0] is not self.params.device or table[1].shape[1] <= max_events:
            d = self.params.device
            self._drift_table = table = (d, *disturb_increments(d, max(max_events, *self.shape)))
        return table[1], table[2]

    def _working_flat(self) -> np.ndarray:
        """:attr:`working_mask`, flat; cached on a formed chip while its stuck mask is the same object."""
        pop = self.population
        if pop.unformed is not None:
            return self.working_mask.reshape(-1)
        cache = getattr(self, "_working_cache", None)
        if cache is None or cache[0] is not pop.stuck:
            self._working_cache = cache = (pop.stuck, (~pop.stuck).reshape(-1))
        return cache[1]

    def _scratch_mask(self) -> np.ndarray:
        """A flat all-False mask of the batch's cells for marking (left all False after use)."""
        mark = getattr(self, "_scratch", None)
        if mark is None or mark.size != self._g.size:
            self._scratch = mark = np.zeros(self._g.size, bool)
        return mark

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume this chip exactly (see :mod:`mock_hw.chip_state`)."""
        return chip_state_dict(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` of a chip of the same preset, shape and ``n_chips``
        (ValueError otherwise); afterwards this chip behaves exactly like the saved one."""
        load_chip_state_dict(self, state)

    def drive_lines(self, row_v, col_v, width: float | None = None, r_access: float = 0.0):
        """Hold line terminals at ``row_v`` (rows,) / ``col_v`` (cols,) volts, NaN = floating, on
        chip 0 — what an emulated bench does through its switch matrix.  Returns the network
        solution (device voltages and currents, terminal currents in A).  With ``width`` (s) the
        devices also see that stress for that long (switching physics, disturbance included).
        ``r_access`` (Ω): the bench's path (relay and leads) in series with each terminal; it
        applies to a chip with resistive lines (a chip with ideal lines keeps an ideal path)."""
        d = self.params.device
        row_v = np.asarray(row_v, float).reshape(1, -1)
        col_v = np.asarray(col_v, float).reshape(1, -1)
        if row_v.shape[1] != self.shape[0] or col_v.shape[1] != self.shape[1]:
            raise ValueError(f"drive_lines needs {self.shape[0]} row and {self.shape[1]} column voltages")
        r_access = float(r_access) if self.params.r_line > 0 else 0.0
        if self._lines0 is not None and self._lines0.r_access != r_access:
            self._lines0 = nodal.LineSolver(self.params.r_line, d.beta, d.v_ref, r_access)
        sol = nodal.solve_network(self._g[:1], row_v, col_v, d.beta, d.v_ref, self.params.r_line,
                                  solver=self._lines0, r_access=r_access)
        if width is not None and width > 0:
            g0, written = apply_voltages_written(self._g[:1], sol.v_cell, width, self._pop_chip0(), d, self._rng)
            self._g = np.concatenate([g0, self._g[1:]]) if self.n_chips > 1 else g0
            self._mark_written(written)                  # chip 0 comes first in flat order
            # the selected cells see (nearly) the full drive: more than 3/4 of the largest |V|
            mag = np.abs(np.nan_to_num(sol.v_cell[0]))
            top = float(mag.max())
            selected = np.flatnonzero((mag > 0.75 * top) & (mag > 0))
            loud = np.zeros(self.n_chips)
            loud[0] = top >= d.disturb_v
            self._disturb(selected, loud)
        return sol

    def _pop_chip0(self):
        """Chip 0's population as views (forming updates the chip's own ``unformed`` mask)."""
        p = self.population
        return DevicePopulation(*(None if a is None else a[:1] for a in (
            p.vth_set, p.vth_reset, p.rate, p.stuck, p.stuck_g, p.v_form, p.unformed, p.nu)))

    def noisy_current(self, current):
        """A current reading with the chip's read noise, A."""
        return self._noisy(np.asarray(current, float))

    # ------------------------------------------------------------------------------ reads
    def _read(self, rows, cols, v_read, scheme, active) -> ReadResult:
        d = self.params.device
        if scheme is ReadScheme.GROUND and self.params.r_line == 0:
            return self._read_ideal(rows, cols, v_read, active)
        if scheme is ReadScheme.GROUND and self._lines_relaxed():
            return self._read_relaxed(rows, cols, v_read, active)
        rows, cols = self._park_inactive(rows, cols, active)
        b = np.broadcast_to(np.arange(self.n_chips)[:, None], rows.shape)
        if scheme is not ReadScheme.FLOAT and self.params.r_line == 0:
            # ideal lines: grounded or isolating, the selected cell alone sees the read voltage
            # and sends its current into the sensed column
            current, _ = read_conductance(self._g[b, rows, cols], v_read, d, None)
        elif scheme is ReadScheme.ISOLATE:
            current = self._isolated_reads(rows, cols, v_read, active)
        elif scheme is ReadScheme.GROUND:
            # a grounded read depends only on the driven row: with more lanes than rows, solve every
            # row once; else one solve per lane — all on the kept factorization (nodal.LineSolver)
            n_rows = self.shape[0]
            on_lanes = np.flatnonzero(active.any(axis=0))
            if on_lanes.size >= n_rows:
                current = self._grounded_rows(v_read)[b, rows, cols]
            elif not on_lanes.size:
                current = np.zeros(rows.shape)
            else:           # the lanes active on some chip, one right-hand side each
                r_on, c_on = rows[:, on_lanes], cols[:, on_lanes]
                b_on = b[:, on_lanes]
                lane = np.broadcast_to(np.arange(on_lanes.size), r_on.shape)
                row_v = np.zeros((self.n_chips, on_lanes.size, n_rows))
                row_v[b_on, lane, r_on] = np.where(active[:, on_lanes], v_read, 0.0)
                current = np.zeros(rows.shape)
                current[:, on_lanes], = self._line_solve(
                    row_v, np.zeros((*r_on.shape, self.shape[1])), READ_TOL,
                    self._focus_of(np.where(active[:, on_lanes], r_on, -1), -1),
                    lambda sol, sl: (np.take_along_axis(sol.col_current, c_on[sl, :, None], axis=2)[:, :, 0],),
                    cells=np.where(active[:, on_lanes], r_on * self.shape[1] + c_on, -1))
        else:
            current = np.zeros(rows.shape)
            for lane in range(rows.shape[1]):
                row_v, col_v = self._read_lines(rows[:, lane], cols[:, lane], v_read, scheme)
                sol = nodal.solve_network(self._g, row_v, col_v, d.beta, d.v_ref, self.params.r_line)
                current[:, lane] = sol.col_current[np.arange(self.n_chips), cols[:, lane]]
        del rows, cols, b           # (a batch's lane indices: not held while the readings are made)
        current = self._noisy(current)
        self.n_read_ops += int(active.sum())
        current = np.where(active, current, np.nan)
        duration = np.where(active, self.params.timing.read_s, 0.0)
        return ReadResult(current / v_read, current, duration)

    def _read_ideal(self, rows, cols, v_read, active) -> ReadResult:
        """Grounded reads on ideal lines: each cell's own I-V, the active lanes only (the read
        noise is drawn for every lane, as :meth:`_noisy` does, so the random stream is the same)."""
        d = self.params.device
        li, _, _, _, flat = self._active_lanes(rows, cols, active)
        current = iv_current(self._g.reshape(-1).take(flat), v_read, d.beta, d.v_ref)
        if d.read_noise > 0:
            current = current * (1.0 + d.read_noise * self._rng.standard_normal(rows.shape).take(li))
        return self._lane_reads(rows.shape, li, current, v_read)

    def _lane_reads(self, shape, li, current, v_read) -> ReadResult:
        """The :class:`ReadResult` of grounded reads of the lanes ``li`` (flat indices into
        ``shape``) that gave ``current`` (A, noise applied): NaN and no time on every other lane."""
        self.n_read_ops += li.size
        out = np.full(shape, np.nan)
        out.put(li, current)
        conductance = np.full(shape, np.nan)
        conductance.put(li, current / v_read)
        duration = np.zeros(shape)
        duration.put(li, self.params.timing.read_s)
        return ReadResult(conductance, out, duration)

    def _read_relaxed(self, rows, cols, v_read, active) -> ReadResult:
        """Grounded reads on relaxed lines (many small chips, :meth:`_relaxed_reads`; the caller
        brought the relaxed network to the chips' conductances), worked on the active lanes only
        (as :meth:`_read_ideal`): the read noise is drawn for the active lanes only, in lane order
        chip by chip (a batch of many chips has most lanes idle), and applied with
        :meth:`_noisy`'s arithmetic."""
        li = np.flatnonzero(active)
        current = self._relaxed_lane_reads(rows, cols, v_read, li, brought=True)
        sigma = self.params.device.read_noise
        if sigma > 0:
            factor = self._rng.standard_normal(li.size)
            factor *= sigma
            factor += 1.0
            factor *= current                   # current·(1 + σ·z), as _noisy
            current = factor
        return self._lane_reads(rows.shape, li, current, v_read)

    def _relaxed_reads(self, rows, cols, v_read, active, brought: bool = False) -> np.ndarray:
        """Noise-free currents (n_chips, L), A, of grounded reads of cells (rows, cols) where
        ``active``, on relaxed lines (many small chips, :mod:`programming.line_batch`): one
        operating point per lane (a lane idle on a chip costs nothing there), or every row once
        where the chips read more cells than they have rows.  A chip whose conductances have not
        changed since a row's last read reuses that read's currents (:meth:`_kept_rows`): a
        relaxed operating point's answer is its own, bit for bit, whatever else is solved with it,
        so the currents are those a new solve would give; lanes of a chip on one row (more lanes
        than rows) share its operating point.  ``brought``: the caller brought the relaxed network
        to the chips' conductances in this call (:meth:`_kept_rows`)."""
        act = np.flatnonzero(active)        # the active lanes only (a batch of many chips has most idle)
        current = np.zeros(rows.shape)      # (the idle lanes: 0)
        current.put(act, self._relaxed_lane_reads(rows, cols, v_read, act, brought))
        return current

    def _relaxed_lane_reads(self, rows, cols, v_read, act, brought: bool = False) -> np.ndarray:
        """:meth:`_relaxed_reads`' currents of the lanes ``act`` (flat indices into ``rows``, ascending), A."""
        n_rows, n_cols = self.shape
        cur, have = self._kept_rows(v_read, brought)
        lanes = rows.shape[1]
        at = act // lanes                   # each active lane's (chip, row), flat (in place)
        at *= n_rows
        at += _at_lanes(rows, act)
        need = ~have.reshape(-1).take(at)
        todo = at[need]
        if todo.size >= self.n_chips * n_rows and np.unique(act[need] % lanes).size >= n_rows:
            self._grounded_rows(v_read, brought=True)     # (brought by _kept_rows)
        elif todo.size:            # the (chip, row) points to solve, one operating point each
            if lanes > n_rows:      # (lanes of a chip on one row: one point)
                todo = np.unique(todo)
            pc, pr = np.divmod(todo, n_rows)
            cur.reshape(-1, n_cols)[todo] = self._lines.read_points(self._g, pc, pr, v_read, RELAXED_READ_TOL)
            have.reshape(-1)[todo] = True
        del need, todo
        at *= n_cols                        # each active lane's cell, flat
        at += _at_lanes(cols, act)
        return cur.reshape(-1).take(at)

    def _kept_rows(self, v_read, brought: bool = False):
        """The kept noise-free grounded-read currents (n_chips, rows, cols), A — row i's at
        ``v_read`` in ``[b, i]`` — and which (chip, row) are current (n_chips, rows): a chip's
        rows are dropped when its conductances change (the relaxed network's chip versions,
        :meth:`mock_hw.nodal.LineSolver.versions`, compared with those they were read on; any
        change, by pulses, drift or retention, counts), and every row when ``v_read`` (V) differs
        from the kept reads' or the network is new.  Relaxed lines only; updated by the caller
        after a solve.  ``brought``: the caller brought the network to the chips' conductances in
        this call (:meth:`mock_hw.nodal.LineSolver.relaxed`; not compared again)."""
        epoch, versions = self._lines.versions(self._g, brought=brought)
        kept = self._rows_kept
        if kept is None or kept[0] != (float(v_read), epoch):
            n_rows, n_cols = self.shape
            kept = self._rows_kept = ((float(v_read), epoch), versions.copy(), np.zeros((self.n_chips, n_rows, n_cols)),
                                      np.zeros((self.n_chips, n_rows), bool))
        else:
            changed = np.flatnonzero(versions != kept[1])
            if changed.size:
                kept[1][changed] = versions[changed]
                kept[3][changed] = False
        return kept[2], kept[3]

    def _grounded_rows(self, v_read, brought: bool = False) -> np.ndarray:
        """Noise-free grounded-read currents (n_chips, rows, cols), A, of every cell (resistive
        lines): row i driven at ``v_read`` for the cells of row i, every other line at 0 V.  On
        relaxed lines the rows kept from earlier reads of unchanged chips are reused
        (:meth:`_relaxed_reads`) and only the others solved.  ``brought``: the caller brought the
        relaxed network to the chips' conductances in this call (:meth:`_kept_rows`)."""
        if brought or self._lines.relaxed(self._g):
            cur, have = self._kept_rows(v_read, brought=brought)
            if have.all():
                return cur.copy()
            pc, pr = np.nonzero(~have)
            cur[pc, pr] = self._lines.read_points(self._g, pc, pr, v_read, RELAXED_READ_TOL)
            have[:] = True
            return cur.copy()
        n_rows, n_cols = self.shape
        row_v = np.broadcast_to(np.eye(n_rows) * v_read, (self.n_chips, n_rows, n_rows))
        return self._line_solve(row_v, np.zeros((self.n_chips, n_rows, n_cols)), READ_TOL,
                                self._focus_of(np.broadcast_to(np.arange(n_rows), (self.n_chips, n_rows)), -1),
                                lambda sol, sl: (sol.col_current,))[0]

    def _focus_of(self, rows, cols):
        """The ``focus`` lines of a line solve (each operating point's selected row and column,
        −1: none), or None where the lines are too short for the focus to pay (:data:`FOCUS_MIN_DROP`)."""
        return (rows, cols) if self._focus else None

    def _line_solve(self, row_v, col_v, tol, focus, take, cells=None):
        """``take(solution, chips)`` of the line solve (:class:`~mock_hw.nodal.LineSolver`) of
        every chip's operating points ``row_v`` (B, K, R) / ``col_v`` (B, K, C), V (``focus`` as
        :meth:`_focus_of` gives it): a tuple of arrays over the chips.  Where the lines relax and
        the batch is large, :data:`LINE_CHIPS` chips at a time (the same answers: each chip's
        relaxation is its own), so the whole batch's node voltages are never held.  ``cells``
        (B, K): each point's focus cell (flat within its chip, −1: none: its sensed or selected
        cell), whose changes the swept lines' warm starts follow (:func:`~programming.line_sweep.sweep_solve`)."""
        B = self.n_chips
        if not self._lines.relaxed(self._g):        # swept: large ones to the FACTORED_* tolerances
            # reads and products: their column terminals' currents are the answer (every caller
            # takes col_current)
            sensed = tol != PULSE_TOL
            if self.shape[0] * self.shape[1] >= FACTORED_TOL_CELLS:
                tol = {READ_TOL: FACTORED_READ_TOL, PULSE_TOL: FACTORED_PULSE_TOL}.get(tol, tol)
            # (LineSolver.solve's checks done: the lines just found swept, the terminals' voltages
            # built finite here)
            return take(self._lines._swept(self._g, row_v, col_v, tol, sensed, cells), slice(None))
        if B <= LINE_CHIPS:
            tol = RELAXED_TOL.get(tol, tol)
            return take(self._lines.solve(self._g, row_v, col_v, tol=tol, focus=focus), slice(None))
        return self._relaxed_chips_solve(np.arange(B), row_v, col_v, tol, take, focus)

    def _relaxed_chips_solve(self, chips, row_v, col_v, tol, take, focus=None, per=LINE_CHIPS, by_slice=False):
        """:meth:`_line_solve` on relaxed lines of the chips ``chips`` only (indices; the others
        source nothing in the call), their operating points ``row_v`` (len(chips), K, R) /
        ``col_v`` (len(chips), K, C), V, and ``focus`` (those chips', as :meth:`_focus_of` gives
        it): ``take(solution, chip indices)`` (``by_slice``: the slice of ``chips``) concatenated
        over those chips, ``per`` at a time.  The answers are those of a solve of the whole batch
        bit for bit (each chip's relaxation is its own); a batch of many chips with a few at work
        (a re-verify pass) no longer carries the others through the solve."""
        parts = []
        tol = RELAXED_TOL.get(tol, tol)
        self._lines.network(self._g)        # brought to the conductances once for every chunk
        for j0 in range(0, chips.size, per):
            sl = slice(j0, j0 + per)
            idx = chips[sl]
            f = None if focus is None else tuple(x[sl] if np.ndim(x) else x for x in focus)
            parts.append(take(self._lines.solve(self._g, row_v[sl], col_v[sl], tol=tol, focus=f, chips=idx,
                                                checked=True), sl if by_slice else idx))
        return tuple(np.concatenate(p) for p in zip(*parts))

    def _isolated_reads(self, rows, cols, v_read, active) -> np.ndarray:
        """Noise-free currents (n_chips, L), A, of isolating reads on resistive lines: per lane,
        row r at ``v_read``, column c at 0 V, the other rows at 0 V and the other columns at
        ``v_read`` (inactive lanes source nothing); every terminal is driven, so each lane is one
        right-hand side on the kept factorization, ``ISOLATE_CHUNK`` lanes per solve.  On relaxed
        lines only the chips with an active lane are solved (a line calibration reads a few chips
        of a large batch)."""
        n_rows, n_cols = self.shape
        out = np.zeros(rows.shape)
        on_lanes = np.flatnonzero(active.any(axis=0))     # the others source nothing
        relaxed = on_lanes.size > 0 and self._lines.relaxed(self._g)
        chips = np.flatnonzero(active.any(axis=1)) if relaxed else np.arange(self.n_chips)
        for k0 in range(0, on_lanes.size, ISOLATE_CHUNK):
            q = on_lanes[k0:k0 + ISOLATE_CHUNK]
            r, c, on = rows[chips][:, q], cols[chips][:, q], active[chips][:, q]
            b = np.broadcast_to(np.arange(chips.size)[:, None], r.shape)
            lane = np.broadcast_to(np.arange(r.shape[1]), r.shape)
            v = np.where(on, v_read, 0.0)
            row_v = np.zeros((*r.shape, n_rows))
            row_v[b, lane, r] = v
            col_v = np.repeat(v[..., None], n_cols, axis=2)
            col_v[b, lane, c] = 0.0
            focus = self._focus_of(np.where(on, r, -1), np.where(on, c, -1))
            if relaxed:
                got, = self._relaxed_chips_solve(chips, row_v, col_v, READ_TOL, lambda sol, idx: (sol.col_current,),
                                                 focus)
            else:
                got, = self._line_solve(row_v, col_v, READ_TOL, focus, lambda sol, sl: (sol.col_current,))
            out[np.ix_(chips, q)] = np.take_along_axis(got, c[:, :, None], axis=2)[:, :, 0]
        return out

    def _read_lines(self, r, c, v, scheme):
        n_rows, n_cols = self.shape
        fill = 0.0 if scheme is ReadScheme.GROUND else np.nan
        row_v = np.full((self.n_chips, n_rows), fill)
        col_v = np.full((self.n_chips, n_cols), fill)
        chips = np.arange(self.n_chips)
        row_v[chips, r] = v
        col_v[chips, c] = 0.0
        return row_v, col_v

    def _noisy(self, current):
        sigma = self.params.device.read_noise
        if sigma > 0:
            factor = self._rng.standard_normal(np.shape(current))
            factor *= sigma
            factor += 1.0
            factor *= current                   # current·(1 + σ·z), in place
            current = factor
        return current

    def _read_array(self, v_read, scheme) -> np.ndarray:
        d = self.params.device
        if scheme is ReadScheme.GROUND and self._lines is not None:
            current = self._grounded_rows(v_read)
        elif scheme is ReadScheme.GROUND:
            current = nodal.read_rows_grounded(self._g, v_read, d.beta, d.v_ref)
        else:
            n_rows, n_cols = self.shape
            rr, cc = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
            res = self._read(np.broadcast_to(rr.ravel(), (self.n_chips, rr.size)),
                             np.broadcast_to(cc.ravel(), (self.n_chips, cc.size)),
                             v_read, scheme, np.ones((self.n_chips, rr.size), bool))
            return res.conductance.reshape(self.n_chips, n_rows, n_cols)
        self.n_read_ops += self._g.size
        return self._noisy(current) / v_read

    def _mvm(self, v_rows) -> np.ndarray:
        out = self._noisy(self._mvm_exact(v_rows))
        return out[:, 0, :] if v_rows.ndim == 1 else out

    def _mvm_needed(self, v_rows, need) -> np.ndarray:
        """Only the needed currents are measured, so only they draw read noise (the same noise
        per current as :meth:`_mvm`); the others come back as NaN."""
        out = self._mvm_blocks(v_rows, need) if self._lines is None else None
        if out is not None:
            return out
        exact = self._mvm_exact(v_rows)
        at = np.flatnonzero(need.reshape(exact.shape))    # the needed currents, in the output's order
        got = exact.reshape(-1).take(at)
        sigma = self.params.device.read_noise
        if sigma > 0:
            got *= 1.0 + sigma * self._rng.standard_normal(at.size)
        out = np.full(exact.shape, np.nan)
        out.reshape(-1)[at] = got
        return out[:, 0, :] if v_rows.ndim == 1 else out

    def _mvm_plan(self, plan: ReadPlan, v_rows) -> np.ndarray:
        """The needed currents of a read plan's product (:meth:`~programming.crossbar.Crossbar.mvm_plan`)
        on ideal lines, bit for bit those of :meth:`_mvm_needed` on the whole product (the same
        read noise, drawn in the same order), without the whole product: the varying vectors (the
        first ones) as the leading rows of the product, the fixed vectors, each driving at most
        one row (the one-hot reads of a layout), as that row's products f(v)·G (the product's sum
        of one term and zeros, exactly).  A product large enough for :meth:`_mvm_blocks`, of
        varying vectors given at their drive positions, as :meth:`_mvm_plan_blocks`.  Through the
        whole product where none of this holds (resistive lines, fixed vectors driving more rows,
        varying vectors after fixed ones, a large product :meth:`_mvm_blocks` would not take)."""
        n_rows, n_cols = self.shape
        tab = None
        if self._lines is None and plan.leading and plan.n_vectors * n_rows * n_cols < MVM_BLOCKS_MIN:
            tab = self._read_table(plan)
        elif self._lines is None and plan.fixed is None and plan.drive is not None:
            runs = self._block_runs(plan)
            if runs is not None:
                return self._mvm_plan_blocks(plan, runs, v_rows)
        if tab is None:
            return super()._mvm_plan(plan, v_rows)
        d = self.params.device
        B, M, m_var = self.n_chips, plan.size, tab["m_var"]
        out = np.empty((B, M))
        if m_var:
            if plan.drive is None:
                prod = nodal.mvm_currents(self._g, v_rows, d.beta, d.v_ref)
            else:           # the row drives of the driven positions only (0 at 0 V), then the product
                f = np.zeros((B, plan.n_varying * n_rows))
                f[:, plan.drive] = nodal.row_drive(v_rows, d.beta, d.v_ref)
                prod = nodal.drive_product(f.reshape(B, plan.n_varying, n_rows), self._g)
            out[:, :m_var] = prod.reshape(B, -1).take(tab["at_var"], axis=1)
        if M > m_var:
            np.multiply(tab["f_fixed"], self._g.reshape(-1).take(tab["cells_fixed"]), out=out[:, m_var:])
        sigma = d.read_noise
        if sigma > 0:       # as _mvm_needed: one draw per needed current, chip after chip, in order
            noise = self._rng.standard_normal(B * M)
            noise *= sigma
            noise += 1.0
            out *= noise.reshape(B, M)
        return out

    def _block_runs(self, plan: ReadPlan):
        """The runs of :meth:`_mvm_blocks` in a plan's product (varying vectors only, given at
        ``plan.drive``), kept per plan: per run of consecutive vectors needing the same columns,
        (its needed columns, the rows its vectors drive (ascending), the positions of their
        voltages in the plan's input as (vectors, rows), and its slice of the needed currents).
        None where :meth:`_mvm_blocks` would not take the product, or a run's vectors do not all
        drive the same rows."""
        cache = self.__dict__.setdefault("_block_tables", {})
        if plan in cache:
            return cache[plan]
        if len(cache) > 64:
            cache.clear()
        n_rows, n_cols = self.shape
        n = plan.n_vectors
        runs = None
        if n * n_rows * n_cols >= MVM_BLOCKS_MIN:
            cols_of = plan.need                                             # as _mvm_blocks
            starts = np.unique(np.flatnonzero(cols_of[1:] != cols_of[:-1]) // n_cols) + 1
            if starts.size + 1 <= n // 64:
                bounds = [0, *starts.tolist(), n]
                vec, row = np.divmod(plan.drive, n_rows)
                by = np.lexsort((row, vec))                                 # vector after vector, rows ascending
                vec, row, pos = vec[by], row[by], by
                runs, o = [], 0
                for a, b in zip(bounds[:-1], bounds[1:]):
                    cols = np.flatnonzero(cols_of[a])
                    lo, hi = np.searchsorted(vec, [a, b])
                    h = (hi - lo) // (b - a)
                    r = row[lo:hi].reshape(b - a, h) if h * (b - a) == hi - lo else None
                    if r is None or (r != r[:1]).any():
                        runs = None
                        break
                    runs.append((cols, r[0], pos[lo:hi].reshape(b - a, h), slice(o, o + (b - a) * cols.size)))
                    o += (b - a) * cols.size
        cache[plan] = runs
        return runs

    def _mvm_plan_blocks(self, plan: ReadPlan, runs, v) -> np.ndarray:
        """:meth:`_mvm_blocks` of a plan's product, from its drive voltages ``v`` (n_chips, P) and
        :meth:`_block_runs`: the same runs, rows, blocks and read noise, bit for bit, with only the
        needed currents built (in their order)."""
        d = self.params.device
        B, M = self.n_chips, plan.size
        sigma = d.read_noise
        if sigma > 0:       # one draw for every needed current, chip after chip, in order (as _mvm_blocks)
            noise = self._rng.standard_normal(B * M).reshape(B, M)
            noise *= sigma
            noise += 1.0
        out = np.empty((B, M))
        for cols, rows, at, sl in runs:
            if not cols.size:
                continue
            vr = v[:, at]                                                   # (B, vectors, driven rows)
            if not vr.all():                                                # as _mvm_blocks: rows at 0 V left out
                on = (vr != 0).any(axis=(0, 1))
                if not on.all():
                    rows, vr = rows[on], vr[:, :, on]
            if rows.size:
                block = nodal.mvm_currents(self._g[:, rows][:, :, cols], vr, d.beta, d.v_ref)
            else:
                block = np.zeros((B, at.shape[0], cols.size))
            if sigma > 0:
                block *= noise[:, sl].reshape(block.shape)
            out[:, sl] = block.reshape(B, -1)
        return out

    def _read_table(self, plan: ReadPlan):
        """For :meth:`_mvm_plan`: the number of needed currents of the varying vectors and their
        flat positions in the varying vectors' product; for those of the fixed vectors, the driven
        row's f(v) (:func:`~mock_hw.nodal.row_drive`; 0 for a vector at 0 V) and the flat index of
        the cell it meets, (n_chips, M_fixed) each; kept per plan and device.  None if a fixed
        vector drives more than one row."""
        d = self.params.device
        cache = self.__dict__.setdefault("_read_tables", {})
        kept = cache.get(plan)
        if kept is not None and kept[0] is d:
            return kept[1]
        if len(cache) > 64:
            cache.clear()
        n_rows, n_cols = self.shape
        B = self.n_chips
        m_var = int(np.searchsorted(plan.at, plan.n_varying * n_cols))
        tab = {"m_var": m_var, "at_var": plan.at[:m_var]}
        if plan.size > m_var:
            on = plan.fixed != 0
            if (on.sum(axis=2) > 1).any():
                tab = None
            else:
                vec, col = np.divmod(plan.at[m_var:], n_cols)
                row = on.argmax(axis=2)                                    # (B, N): the driven row, or 0
                v = np.take_along_axis(plan.fixed, row[:, :, None], axis=2)[:, :, 0]
                f = nodal.row_drive(v, d.beta, d.v_ref)
                tab["f_fixed"] = np.ascontiguousarray(f[:, vec])
                tab["cells_fixed"] = (np.arange(B)[:, None] * (n_rows * n_cols) + row[:, vec] * n_cols + col)
        cache[plan] = (d, tab)
        return tab

    def _mvm_blocks(self, v_rows, need) -> np.ndarray | None:
        """:meth:`_mvm_needed` of a large product on ideal lines whose inputs come in runs that each
        need the same columns and drive a few rows (the tiles of :mod:`models.insitu_arrays`'
        layout, e.g. an evaluation over a whole data set), worked out run by run on its driven rows
        and needed columns only: the rows left out are at 0 V and carry no current, the columns
        left out are not needed.  The same currents and read noise, bit for bit, as the whole
        product; None where that saves nothing (a small product, a 1-D input, more than one run
        per 64 inputs) or the chips need different currents."""
        n_chips, (n_rows, n_cols) = self.n_chips, self.shape
        if v_rows.ndim == 1 or v_rows.shape[-2] * n_rows * n_cols < MVM_BLOCKS_MIN:
            return None
        n = v_rows.shape[-2]
        mask = need.reshape(n_chips, n, n_cols)
        if n_chips > 1 and mask.strides[0] != 0 and not (mask == mask[:1]).all():
            return None
        cols_of = mask[0]                                                   # (N, cols), every chip's
        starts = np.unique(np.flatnonzero(cols_of[1:] != cols_of[:-1]) // n_cols) + 1
        if starts.size + 1 > n // 64:
            return None
        d = self.params.device
        v = v_rows if v_rows.ndim == 3 else np.broadcast_to(v_rows, (n_chips, *v_rows.shape))
        bounds = [0, *starts.tolist(), n]
        runs = [(a, b, np.flatnonzero(cols_of[a])) for a, b in zip(bounds[:-1], bounds[1:])]
        per_chip = [0]
        for a, b, cols in runs:
            per_chip.append(per_chip[-1] + (b - a) * cols.size)
        sigma = d.read_noise
        if sigma > 0:       # one draw for every needed current, chip after chip, in the output's order
            noise = self._rng.standard_normal(n_chips * per_chip[-1]).reshape(n_chips, -1)
            noise *= sigma
            noise += 1.0
        out = np.full((n_chips, n, n_cols), np.nan)
        for (a, b, cols), o0, o1 in zip(runs, per_chip[:-1], per_chip[1:]):
            if not cols.size:
                continue
            rows = np.flatnonzero((v[:, a:b] != 0).any(axis=(0, 1)))
            if rows.size:
                block = nodal.mvm_currents(self._g[:, rows][:, :, cols], v[:, a:b, rows], d.beta, d.v_ref)
            else:
                block = np.zeros((n_chips, b - a, cols.size))
            if sigma > 0:
                block *= noise[:, o0:o1].reshape(block.shape)
            out[:, a:b, cols] = block
        return out

    def _mvm_exact(self, v_rows) -> np.ndarray:
        """Noise-free column currents (n_chips, N, cols), A, of input ``v_rows`` (V)."""
        d = self.params.device
        per_chip = v_rows.ndim == 3
        if per_chip and v_rows.shape[0] != self.n_chips:
            raise ValueError(f"per-chip mvm input has {v_rows.shape[0]} chips, crossbar has {self.n_chips}")
        v = v_rows if per_chip else np.broadcast_to(np.atleast_2d(v_rows), (self.n_chips, *np.atleast_2d(v_rows).shape))
        if self._lines is None:
            return nodal.mvm_currents(self._g, v, d.beta, d.v_ref)
        # every input vector as one column of the right-hand side, in chunks
        return np.concatenate([self._lines.solve(self._g, v[:, k:k + 256], np.zeros((*v[:, k:k + 256].shape[:2],
                                                                                  self.shape[1])), tol=READ_TOL)
                               .col_current for k in range(0, v.shape[1], 256)], axis=1)

    # ----------------------------------------------------------------------------- pulses
    def _pulse(self, rows, cols, amplitude, width, scheme, active) -> PulseResult:
        if self.params.r_line == 0 and scheme is not WriteScheme.FLOAT:
            lanes = self._active_lanes(rows, cols, active)
            lane_amp = amplitude if amplitude.shape == active.shape else np.broadcast_to(amplitude, active.shape)
            self._unselected_ideal(lane_amp.take(lanes[0]), scheme)
            if scheme is WriteScheme.V2 and self._keys_distinct(*lanes[1:4]):
                # lanes on distinct lines never touch each other's selected cells: the compliance
                # of every lane can be evaluated on the state at the start of the call
                return self._pulse_v2_concurrent(lanes, amplitude, width, active)
        if self._lines is not None and scheme is not WriteScheme.FLOAT:
            pop = self.population
            # (a call with no active lane sources nothing: the network is not brought to the chips)
            relaxed = bool(active.any()) and self._lines_relaxed()
            if relaxed and not (pop.unformed is not None and pop.unformed.any()):
                return self._pulse_relaxed(rows, cols, amplitude, width, scheme, active)
            rows, cols = self._park_inactive(rows, cols, active)
            amplitude, compliance = self._apply_compliance(rows, cols, amplitude, active)
            energy = self._pulse_lines(rows, cols, amplitude, width, scheme, active, relaxed)
        else:
            rows, cols = self._park_inactive(rows, cols, active)
            energy = np.zeros(rows.shape)
            compliance = np.zeros(rows.shape, bool)
            for lane in range(rows.shape[1]):
                # compliance on the state the lane meets (earlier lanes may have disturbed its cell)
                sl = slice(lane, lane + 1)
                amp, comp = self._apply_compliance(rows[:, sl], cols[:, sl], amplitude[:, sl], active[:, sl])
                compliance[:, lane] = comp[:, 0]
                energy[:, lane] = self._pulse_one(rows[:, lane], cols[:, lane], amp[:, 0],
                                                  width[:, lane], scheme, active[:, lane])
        self.n_pulse_ops += int(active.sum())
        duration = np.where(active, width + self.params.timing.pulse_overhead_s, 0.0)
        return PulseResult(np.where(active, energy, 0.0), duration, compliance & active)

    def _unselected_ideal(self, amplitudes, scheme) -> None:
        """Record the largest unselected-cell voltage of pulses of ``amplitudes`` (V, the active
        lanes') on ideal lines: the scheme's share of the largest (V/2: half; V/3: a third), exactly."""
        if amplitudes.size:
            self._unselected_ideal_top(float(np.abs(amplitudes).max()), scheme)

    def _unselected_ideal_top(self, top: float, scheme) -> None:
        """:meth:`_unselected_ideal` given the largest |amplitude| ``top``, V."""
        share = 0.5 if scheme is WriteScheme.V2 else 1 / 3
        self.max_unselected_v = max(self.max_unselected_v, share * top)

    def _active_lanes(self, rows, cols, active):
        """The active lanes of a call, in lane order chip by chip: (flat lane index, chip, row,
        column, flat cell index)."""
        li = active.reshape(-1).nonzero()[0]
        chips, cells = self._lane_map(rows.shape)
        r, c = rows.take(li), cols.take(li)
        flat = r * self.shape[1]
        flat += c
        flat += cells.take(li)
        return li, chips.take(li), r, c, flat

    def _lane_map(self, shape):
        """Each flat lane's chip, and its chip's first flat cell, for lanes of ``shape``
        (n_chips, L) (cached per L)."""
        cache = getattr(self, "_lane_cache", None)
        if cache is None or cache[0] != shape:
            chips = np.repeat(np.arange(shape[0]), shape[1])
            self._lane_cache = cache = (shape, chips, chips * (self.shape[0] * self.shape[1]))
        return cache[1], cache[2]

    def _keys_distinct(self, chip_idx, r, c) -> bool:
        """No row and no column of a chip carries two of these lanes (each line marked once: as many
        lines marked as lanes)."""
        if chip_idx.size <= 1:
            return True
        for line, n_lines in ((r, self.shape[0]), (c, self.shape[1])):
            mark = np.zeros(self.n_chips * n_lines, bool)
            key = chip_idx * n_lines
            key += line
            mark[key] = True
            if np.count_nonzero(mark) < key.size:
                return False
        return True

    def _pulse_steps(self, rows, cols, amplitude, width, scheme, active) -> PulseResult:
        """Steps (K, n_chips, L) of :meth:`~programming.crossbar.Crossbar.pulse_steps`: their active
        lanes, step after step and chip after chip, go to :meth:`_steps_at_once`; where its
        conditions do not hold, step by step (one :meth:`_pulse` each)."""
        K, B, L = rows.shape
        li = np.flatnonzero(active)                                     # step after step, chip after chip
        energy = self._steps_at_once(K, li // L, rows.take(li), cols.take(li), amplitude.take(li), width.take(li),
                                     scheme)
        if energy is None:                                              # (the states met: K x the chips)
            return super()._pulse_steps(*self._park_inactive(rows, cols, active), amplitude, width, scheme, active)

        def energies():
            out = np.zeros(rows.shape)
            out.reshape(-1)[li] = energy()
            return out
        duration = np.where(active, width + self.params.timing.pulse_overhead_s, 0.0)
        return _StepsResult(energies, duration, lambda: np.zeros(rows.shape, bool))

    def _pulse_list(self, K, steps, chips, rows, cols, amplitude, width, scheme, lanes=None) -> PulseResult:
        """Pulses (P,) of :meth:`~programming.crossbar.Crossbar.pulse_list` in ``K`` steps: applied by
        :meth:`_steps_at_once` from the list itself; where its conditions do not hold, as the lanes
        of :meth:`_pulse_steps` (step by step)."""
        energy = self._steps_at_once(K, steps * self.n_chips + chips, rows, cols, amplitude, width, scheme)
        if energy is None:
            return super()._pulse_list(K, steps, chips, rows, cols, amplitude, width, scheme, lanes)
        return _StepsResult(energy, width + self.params.timing.pulse_overhead_s, lambda: np.zeros(rows.shape, bool))

    def _pulse_counts(self, plan: ColourPlan, counts) -> PassResult:
        """A pass of :meth:`~programming.crossbar.Crossbar.pulse_counts` worked out from the counts
        themselves: the pulses of its list (:meth:`~programming.colour_plan.ColourPlan.pulse_list`)
        as :meth:`_steps_at_once` applies that list, bit for bit (the same draws, in the same order,
        to the same pulses; the same stages), without the list or its checks (made once with the
        plan, :meth:`_plan_table`).  Where the conditions of :meth:`_steps_at_once` may not hold,
        through the list."""
        tab = self._plan_table(plan)
        pop, d = self.population, self.params.device
        if tab is None or (pop.unformed is not None and pop.unformed.any()):
            return super()._pulse_counts(plan, counts)
        got = plan.schedule(counts)
        if got is None:
            return PassResult(0, np.zeros(self.n_chips, np.int64))
        signed, at, cnt, ends, pos, step = got
        K = int(step.max()) + 1
        g_top = max(float(self._g.max()), d.g_max)          # as _steps_plain: the compliance at the largest state
        i_top = abs(iv_current(g_top, plan.amplitude, d.beta, d.v_ref))
        if K * self._g.size > 1 << 22 or i_top > self.limits.i_compliance:
            return super()._pulse_counts(plan, counts)
        B, n_rows = self.n_chips, self.shape[0]
        P = pos.size
        self._unselected_ideal_top(plan.amplitude, plan.scheme)
        self.n_pulse_ops += P
        ti = at * 2
        ti += signed.take(at) > 0                            # each device's row of the table (its polarity)
        live = None if tab["all_live"] else tab["live"].take(ti)
        # the list's order (step, chip, row: _steps_at_once's, lane order being row order or not)
        order = np.argsort(step * (B * n_rows) + tab["row_key"].take(pos))
        one = P == at.size                                   # one pulse per device: one round, in list order
        if live is not None and not live.all():              # pulses below threshold or on stuck devices draw nothing
            order = order[(live if one else np.repeat(live, cnt)).take(order)]
        else:
            live = None
        if one:
            src, cuts = order, None
        else:
            j = np.arange(P) - np.repeat(ends - cnt, cnt)   # each pulse's place among its device's (its round)
            j = j.take(order)
            by_round = np.argsort(j, kind="stable")          # round after round, in list order within a round
            src = order.take(by_round)
            cuts = [0, *np.cumsum(np.bincount(j)).tolist()]
        z = self._rng.standard_normal(order.size)            # drawn in list order, as switch_steps draws them
        u = self._rng.random(order.size) if d.relax > 0 else None
        if not one:
            z = z.take(by_round)
            u = None if u is None else u.take(by_round)
        rows = ti.take(src) if one else np.repeat(ti, cnt).take(src)
        idx = tab["flat"].take(rows)
        *factors, rate = tab["factors_rate"].take(rows, axis=1)
        _switch_rounds(self._g.reshape(-1), idx, (tab["signed"], *factors), rate, z, u, cuts, d)
        self._mark_written(idx)
        # not loud: their counts restart (every pulsed device's, switched or not)
        self._n_disturb.reshape(-1)[idx if live is None else tab["flat"].take(ti)] = 0.0
        if B == 1:
            return PassResult(K, np.array([P], np.int64))
        return PassResult(K, np.bincount(at // (plan.size + 1), weights=cnt, minlength=B).astype(np.int64))

    def _plan_table(self, plan: ColourPlan):
        """Per flat position of a (n_chips, D + 1) array (column D: cell (0, 0), never pulsed) and
        polarity (row ``2·position + (count > 0)``) of ``plan``: the device's flat index, its
        pulse's switching factors (:func:`~mock_hw.device._switch_factors`), rate factor and whether
        the pulse switches it (:func:`~mock_hw.device.switch_steps`'s test), and ``row_key``
        chip · rows + row per position; kept for the plan and the chip's population.  None where :meth:`_steps_at_once`
        would not apply a pass at once whatever its counts: not V/2, resistive lines, loud pulses,
        or half-selects that may reach the lowest threshold (:meth:`_steps_plain`)."""
        pop, d = self.population, self.params.device
        key = (pop.vth_set, pop.vth_reset, pop.stuck, pop.rate, d, self.params.r_line)
        cache = self.__dict__.setdefault("_plan_tables", {})
        kept = cache.get(plan)
        if kept is not None and len(kept[0]) == len(key) and all(a is b for a, b in zip(kept[0], key)):
            return kept[1]
        if len(cache) > 64:
            cache.clear()
        tab = None
        amp = plan.amplitude
        if plan.scheme is WriteScheme.V2 and self.params.r_line == 0 and not (d.disturbs and amp >= d.disturb_v):
            shift = equivalent_shift(np.full(2, plan.width), d)
            half_eq = equivalent_voltage(np.array([amp, -amp]) / 2, None, d, shift=shift)
            low_set, low_reset = self._lowest_screen()
            if half_eq[0] <= low_set and -half_eq[1] <= low_reset:
                n_rows, n_cols = self.shape
                B, D = self.n_chips, plan.size
                cell = np.append(plan.rows * n_cols + plan.cols, 0)
                flat = np.repeat((np.arange(B)[:, None] * (n_rows * n_cols) + cell).ravel(), 2)
                v_eq = np.tile(equivalent_voltage(np.array([-amp, amp]), None, d, shift=shift), B * (D + 1))
                vs, vr = pop.vth_set.reshape(-1).take(flat), pop.vth_reset.reshape(-1).take(flat)
                live = v_eq > vs
                live |= -v_eq > vr
                live &= ~pop.stuck.reshape(-1).take(flat)
                row_key = (np.arange(B)[:, None] * n_rows + np.append(plan.rows, 0)).ravel()
                signed, *factors = _switch_factors(v_eq, vs, vr, d)
                tab = {"flat": flat, "signed": signed, "live": live, "all_live": bool(live.all()), "row_key": row_key,
                       "factors_rate": np.stack([*factors, pop.rate.reshape(-1).take(flat)])}
        cache[plan] = (key, tab)
        return tab

    def _steps_at_once(self, K, sc, r, c, v, w, scheme):
        """Apply K steps' pulses, given one by one (step · n_chips + chip ``sc``, row, column,
        amplitude V, width s; in step order, and within a step and chip in lane order), all at
        once when the fast path's conditions hold for every step and no step can reach the
        compliance or switch a half-selected cell (:meth:`_steps_plain`, checked once for all
        steps): each step is then only its selected cells' pulses, the same stages, in the same
        order, as K :meth:`pulse` calls, with each pulse's switching noise drawn at once for all
        steps (:func:`~mock_hw.device.switch_steps`: the same independent draws in another order;
        without relaxation draws the very stream of K calls, and the result bit for bit theirs).
        Returns a function giving the pulses' energies (J, in the given order, worked out from the
        kept states when called), or None, having applied nothing, where the conditions fail."""
        B = self.n_chips
        plain = scheme is WriteScheme.V2 and self.params.r_line == 0 and K * self._g.size <= 1 << 22
        if not plain:
            return None
        if not sc.size:
            if not self._steps_plain(sc, r, c, v, None, None, True, 0.0, 0.0):
                return None
            return lambda: np.zeros(0)
        v_hi, v_lo = float(v.max()), float(v.min())
        self._unselected_ideal_top(max(v_hi, -v_lo), scheme)
        shift = equivalent_shift(w, self.params.device)
        n_rows, n_cols = self.shape
        rows_key = sc * n_rows
        rows_key += r                        # (step, chip, row)
        in_order = sc.size < 2 or bool((rows_key[1:] > rows_key[:-1]).all())
        if not self._steps_plain(sc, r, c, v, shift, rows_key, in_order, v_hi, v_lo):
            return None
        self.n_pulse_ops += int(sc.size)
        key = rows_key * n_cols
        key += c                             # (step, chip, row, column): in a step, cell order
        order = None
        if not in_order:                     # (increasing rows: increasing keys)
            # (as _pulse_v2_concurrent); (step, cell) pairs are distinct
            order = np.argsort(key, kind="stable")
            sc, r, c, v, w, shift, key = (x[order] for x in (sc, r, c, v, w, shift, key))
        flat = key % self._g.size
        g0 = self._g.copy()
        # the steps in order (sc increases): with draws_at_once only their number matters
        written, after = switch_steps(self._g.reshape(-1), flat, v, w, int(K), self.population,
                                      self.params.device, self._rng, shift=shift, draws_at_once=True)
        self._mark_written(written)
        self._n_disturb.reshape(-1)[flat] = 0.0      # not loud (_steps_plain): their counts restart

        def energy():
            """The energies, from the state each step met: the start, then each pulse's result
            from the next step on."""
            k_idx, chip_idx = np.divmod(sc, B)
            last = np.full((K, g0.size), -1)
            seen = np.flatnonzero(~np.isnan(after) & (k_idx < K - 1))
            last[k_idx[seen] + 1, flat[seen]] = seen
            np.maximum.accumulate(last, axis=0, out=last)
            met = np.where(last >= 0, after[last], g0.reshape(-1)).reshape(K, *g0.shape)
            g_sel = met[k_idx, chip_idx, r, c]
            g_half = met[k_idx, chip_idx, r, :].sum(axis=1) + met[k_idx, chip_idx, :, c].sum(axis=1) - 2 * g_sel
            e = self._energy_v2_of(v, w, g_sel, g_half)
            if order is None:
                return e
            out = np.empty(e.size)
            out[order] = e
            return out
        return energy

    def _steps_plain(self, sc, r, c, v, shift, rows_key, in_order, v_hi, v_lo) -> bool:
        """Whether, in every step of a V/2 :meth:`_pulse_steps` (its active lanes: step · n_chips +
        chip, row, column, amplitude V, and the width's :func:`~mock_hw.device.equivalent_shift`,
        V; ``rows_key`` = (step · n_chips + chip) · rows + row, ``in_order``: whether it increases
        from lane to lane; ``v_hi``, ``v_lo``: the largest and smallest amplitude), the active
        lanes of each chip are on distinct lines, no half-select reaches the lowest threshold on
        its line (:meth:`_half_select_screens`; no unformed device), no pulse is loud enough to disturb the rest of the array, and no selected device
        can draw the compliance current even at the largest conductance any device has or can
        reach."""
        d = self.params.device
        pop = self.population
        if pop.unformed is not None and pop.unformed.any():
            return False
        if not sc.size:
            return True
        v_top = max(v_hi, -v_lo)
        if d.disturbs and v_top >= d.disturb_v:              # loud: disturb draws step by step
            return False
        g_top = max(float(self._g.max()), d.g_max)          # switching clips to g_max; stuck ones stay
        if float(np.abs(iv_current(g_top, v_top, d.beta, d.v_ref))) > self.limits.i_compliance:
            return False
        if not in_order and np.bincount(rows_key).max() > 1:
            return False                                     # (increasing keys: distinct rows)
        if np.bincount(sc * self.shape[1] + c).max() > 1:
            return False
        # equivalent voltages are monotone in v: the extremes come from the extreme amplitudes
        # when every pulse has the same width, else from every pulse
        if shift.size > 1 and shift.min() != shift.max():
            half_eq = equivalent_voltage(v / 2, None, d, shift=shift)
            eq_hi, eq_lo = float(half_eq.max()), float(half_eq.min())
        else:                                # (the same few amplitudes and widths pass after pass: kept)
            cache = self.__dict__.setdefault("_half_eq_cache", {})
            key = (v_hi, v_lo, float(shift[0]))          # (the shift carries the width and the device)
            if key not in cache:
                if len(cache) > 64:
                    cache.clear()
                cache[key] = tuple(float(x) for x in equivalent_voltage(np.array([v_hi, v_lo]) / 2, None, d,
                                                                        shift=shift[:1]))
            eq_hi, eq_lo = cache[key]
        low_set, low_reset = self._lowest_screen()
        if eq_hi <= low_set and -eq_lo <= low_reset:
            return True
        screens = self._half_select_screens()
        k_idx, chip_idx = np.divmod(sc, self.n_chips)
        half_eq = equivalent_voltage(v / 2, None, d, shift=shift)
        for line_of, line in (("row", r), ("col", c)):
            lo_set, lo_reset, _ = screens[line_of]
            if np.any((half_eq > lo_set[chip_idx, line]) | (-half_eq > lo_reset[chip_idx, line])):
                return False
        return True

    @staticmethod
    def _park_inactive(rows, cols, active):
        """Inactive lanes may carry any index (the interface checks only active ones): point them
        at cell (0, 0) so indexing never fails; nothing is sourced for them."""
        return np.where(active, rows, 0), np.where(active, cols, 0)

    def _apply_compliance(self, rows, cols, amplitude, active):
        """Where the selected device would draw more than the compliance current, the source
        limits it: the amplitude drops to the voltage at which the device carries exactly
        ``i_compliance`` (:meth:`_compliance_voltage`)."""
        lanes = np.broadcast_to(amplitude, rows.shape)
        li = np.flatnonzero(active)                                     # the active lanes only
        n_rows, n_cols = self.shape
        flat = (li // rows.shape[1] * n_rows + rows.reshape(-1).take(li)) * n_cols + cols.reshape(-1).take(li)
        amp, hit, _ = self._lane_compliance(self._g.reshape(-1).take(flat), lanes.reshape(-1).take(li))
        over = np.zeros(rows.shape, bool)
        if not hit.any():
            return amplitude, over
        over.reshape(-1)[li[hit]] = True
        amplitude = np.array(lanes)
        amplitude.reshape(-1)[li[hit]] = amp[hit]
        return amplitude, over

    def _lane_compliance(self, g_sel, v):
        """The source's compliance on the active lanes: their amplitudes ``v`` (V), lowered where
        the selected device ``g_sel`` (S) would draw more than ``i_compliance`` to the voltage at
        which it carries exactly that (:meth:`_compliance_voltage`).  Returns (the amplitudes:
        ``v`` itself where none is limited, else a new array; which are limited; each device's
        current at ``v``, before the limit, A)."""
        d = self.params.device
        i_sel = iv_current(g_sel, v, d.beta, d.v_ref)
        over = np.abs(i_sel) > self.limits.i_compliance
        if over.any():
            v = v.copy()
            v[over] = self._compliance_voltage(g_sel[over], v[over])
        return v, over, i_sel

    def _compliance_voltage(self, g, amplitude):
        """The signed voltage at which devices ``g`` (S) pulsed at ``amplitude`` (V) carry exactly
        ``i_compliance`` (Newton on the cubic I-V)."""
        d = self.params.device
        i_c = self.limits.i_compliance
        v = np.abs(amplitude)
        norm = 1.0 + d.beta * d.v_ref ** 2
        for _ in range(30):
            f = g * v * (1 + d.beta * v * v) / norm - i_c
            v = v - f / (g * (1 + 3 * d.beta * v * v) / norm)
        return np.sign(amplitude) * v

    def _pulse_v2_concurrent(self, lanes, amplitude, width, active) -> PulseResult:
        """V/2 pulses of lanes on distinct lines (``lanes``: :meth:`_active_lanes`), applied
        exactly in lane order; the compliance of every lane on the state at the start of the call.

        Every selected cell is hit by its own pulse only.  A half-selected cell lies on the row of
        at most one lane and the column of at most one other: its hits are applied in lane order
        (first hits, then second hits).  A half-select below the cell's threshold changes nothing,
        so only the cells it can switch are listed — usually none, which keeps a step cheap.
        Works on the active lanes only.
        """
        d = self.params.device
        n_rows, n_cols = self.shape
        li, chip_idx, r, c, sel = lanes
        v, w = amplitude.take(li), width.take(li)
        g_flat = self._g.reshape(-1)
        g_sel = g_flat.take(sel)
        # the source's compliance: the amplitude drops to where the device carries i_compliance
        v, over, i_sel = self._lane_compliance(g_sel, v)
        compliance = np.zeros(active.shape, bool)
        if over.any():
            compliance.put(li[over], True)
            i_sel = iv_current(g_sel, v, d.beta, d.v_ref)
        energy = np.zeros(active.shape)
        energy.put(li, self._energy_v2(chip_idx, r, c, v, w, g_sel, i_sel))
        # every hit: the flat cell, the active lane's index j (chip by chip in lane order) and the
        # voltage (the selected cells first, each hit by its own lane)
        hit_flat, hit_j, hit_v = [sel], [np.arange(li.size)], [v]
        half = v / 2
        shift = equivalent_shift(w, d)             # each lane's width term, for its hits too
        half_eq = equivalent_voltage(half, w, d, shift)   # thresholds are compared with the width-equivalent voltage
        pop = self.population
        screens = self._half_select_screens()
        by_pol = screens.get("by_pol")
        lowest = screens.get("lowest")         # below the chip's lowest thresholds: no line is read
        quiet = lowest is not None and screens["row"][2] is None and half_eq.max(initial=0.0) <= lowest[0] \
            and -half_eq.min(initial=0.0) <= lowest[1]
        by_line = screens.get("by_line")
        if not quiet and by_line is not None and screens["row"][2] is None and pop.unformed is None:
            self._half_hits_square(by_line, screens, chip_idx, r, c, sel, half, half_eq, n_cols,
                                   (hit_flat, hit_j, hit_v))
            quiet = True        # listed
        for axis_len, line_of in (() if quiet else ((n_cols, "row"), (n_rows, "col"))):
            # only lanes whose half-select reaches the lowest threshold on their line can switch a
            # half-selected cell: the others' lines are not read at all (usually every lane)
            line = r if line_of == "row" else c
            lo_set, lo_reset, lo_form = screens[line_of]
            key = chip_idx * lo_set.shape[1] + line
            cand = (half_eq > lo_set.take(key)) | (-half_eq > lo_reset.take(key))
            if lo_form is not None:
                cand |= half >= lo_form.take(key)
            if not cand.any():
                continue
            q = np.flatnonzero(cand)
            cb, cr, cc = chip_idx[q], r[q], c[q]
            # thresholds of every cell on each candidate lane's row (or column), for its polarity
            h = half_eq[q, None]
            if by_pol is not None:      # one gather: the thresholds of each lane's polarity
                neg = (h[:, 0] < 0).view(np.int8)
                live = np.abs(h) > (by_pol[neg, cb, cr, :] if line_of == "row" else by_pol[neg, cb, :, cc])
            else:
                if line_of == "row":
                    vs, vr, stuck = pop.vth_set[cb, cr, :], pop.vth_reset[cb, cr, :], pop.stuck[cb, cr, :]
                else:
                    vs, vr, stuck = pop.vth_set[cb, :, cc], pop.vth_reset[cb, :, cc], pop.stuck[cb, :, cc]
                live = ((h > vs) | (-h > vr)) & ~stuck
            if pop.unformed is not None:  # a half-select that reaches a forming voltage
                uf, vf = (pop.unformed[cb, cr, :], pop.v_form[cb, cr, :]) if line_of == "row" else \
                    (pop.unformed[cb, :, cc], pop.v_form[cb, :, cc])
                live |= uf & (half[q, None] >= vf)
            other = np.arange(axis_len)[None, :] != (cc if line_of == "row" else cr)[:, None]
            k, pos = np.nonzero(live & other)
            if k.size:
                k = q[k]
                hit_flat.append((chip_idx[k] * n_rows + (r[k] if line_of == "row" else pos)) * n_cols
                                + (pos if line_of == "row" else c[k]))
                hit_j.append(k)
                hit_v.append(half[k])
        if len(hit_flat) == 1:                     # the selected cells only: one hit each, in cell order
            order = np.argsort(sel, kind="stable")
            self._mark_written(switch_at(g_flat, sel.take(order), v.take(order), None, pop, d, self._rng,
                                         shift.take(order)))
        else:
            flat, j, vv = (np.concatenate(x) for x in (hit_flat, hit_j, hit_v))
            # (each temporary below is released once used: a RESET sweep of 10 000 chips of 8x8 lists
            # ~0.5 M half-select hits per pulse, 4 MB per array)
            del hit_flat[1:], hit_j[1:], hit_v[1:]
            # by cell, then by lane (a cell's hits are of one chip, whose lanes j orders as they are);
            # no cell has two hits of one lane, so the keys are distinct
            order = np.argsort(flat * li.size + j)
            by_cell = flat.take(order)
            second = np.zeros(flat.size, bool)
            np.equal(by_cell[1:], by_cell[:-1], out=second[1:])
            del by_cell
            n_hits = flat.size
            n_first = n_hits - np.count_nonzero(second)
            if n_first < n_hits:            # the cells hit twice: their second hits after every first one
                order = np.concatenate([order[~second], order[second]])
            del second
            j = j.take(order)
            flat, vv = flat.take(order), vv.take(order)
            del order
            w_j, shift_j = w.take(j), shift.take(j)
            del j
            # the first hits, then the second ones: one switch_at each (switch_steps: the same draws)
            written, _ = switch_steps(g_flat, flat, vv, w_j, [0, n_first] if n_first == n_hits else [0, n_first, n_hits],
                                      pop, d, self._rng, shift=shift_j)
            self._mark_written(written)
        loud = np.abs(v) >= d.disturb_v
        self._disturb(sel, np.bincount(chip_idx[loud], minlength=self.n_chips) if loud.any() else ())
        self.n_pulse_ops += li.size
        duration = np.zeros(active.shape)
        duration.put(li, w + self.params.timing.pulse_overhead_s)
        return PulseResult(energy, duration, compliance)

    @staticmethod
    def _half_hits_square(by_line, screens, chip_idx, r, c, sel, half, half_eq, n_cols, hits) -> None:
        """The half-selected devices V/2 pulses switch on a square formed array, rows and columns in
        one pass (what the screened loop of :meth:`_pulse_v2_concurrent` lists axis by axis: the
        same hits, appended to ``hits`` — their order does not matter, they are sorted by cell and
        lane).  ``by_line``: the thresholds by line (:meth:`_screen_table`)."""
        keys = []
        for line, line_of in ((r, "row"), (c, "col")):
            lo_set, lo_reset, _ = screens[line_of]
            key = chip_idx * lo_set.shape[1] + line
            keys.append(((half_eq > lo_set.take(key)) | (-half_eq > lo_reset.take(key))).nonzero()[0])
        n_row = keys[0].size
        q = np.concatenate(keys)
        if not q.size:
            return
        on_col = np.zeros(q.size, np.intp)
        on_col[n_row:] = 1
        cr, cc = r.take(q), c.take(q)
        h = half_eq.take(q)
        neg = (h < 0).view(np.int8)
        live = np.abs(h)[:, None] > by_line[on_col, neg, chip_idx.take(q), np.where(on_col, cc, cr), :]
        live[np.arange(q.size), np.where(on_col, cr, cc)] = False      # the selected cell: no half-select
        k, pos = np.nonzero(live)
        if k.size:
            col_k = on_col.take(k).astype(bool)
            k = q.take(k)
            hit_flat, hit_j, hit_v = hits
            # the cell at position pos of the lane's row (sel − c + pos) or column (sel + (pos − r)·cols)
            sel_k = sel.take(k)
            hit_flat.append(np.where(col_k, sel_k + (pos - r.take(k)) * n_cols, sel_k - c.take(k) + pos))
            hit_j.append(k)
            hit_v.append(half.take(k))

    def _half_select_screens(self) -> dict:
        """Per line (``"row"``: (n_chips, rows), ``"col"``: (n_chips, cols)), the lowest SET and
        RESET thresholds of its devices that can switch (stuck ones excluded), and the lowest
        forming voltage of its unformed devices (None on a formed chip), V; ``"lowest"``: the
        lowest SET and RESET thresholds of all.  A half-select below
        all three leaves the line unchanged.  Cached while the population's arrays are the same
        objects (a state load replaces them); the forming screen follows ``unformed`` each call."""
        pop = self.population
        table = self._screen_table()
        if pop.unformed is None:            # a formed chip: no forming screen (kept with the table)
            return table["formed"]
        (rs, rr), (cs, cr) = table["row"], table["col"]
        form_row = form_col = None
        if pop.unformed.any():
            vf = np.where(pop.unformed, pop.v_form, np.inf)
            form_row, form_col = vf.min(axis=2), vf.min(axis=1)
        return {"row": (rs, rr, form_row), "col": (cs, cr, form_col), "lowest": table["lowest"],
                "by_pol": table["by_pol"], "by_line": table["by_line"]}

    def _screen_table(self) -> dict:
        """The thresholds of :meth:`_half_select_screens` without the forming screen, cached."""
        pop = self.population
        cache = getattr(self, "_screen_cache", None)
        if cache is None or cache[0][0] is not pop.vth_set or cache[0][1] is not pop.vth_reset \
                or cache[0][2] is not pop.stuck:
            key = (pop.vth_set, pop.vth_reset, pop.stuck)
            vs = np.where(pop.stuck, np.inf, pop.vth_set)
            vr = np.where(pop.stuck, np.inf, pop.vth_reset)
            # every device's SET and RESET threshold (infinite where stuck), stacked by polarity: where
            # no threshold is negative, a half-select h switches a device iff |h| > the threshold of
            # h's polarity (h > vth_set, or -h > vth_reset)
            by_pol = np.stack([vs, vr]) if min(float(pop.vth_set.min()), float(pop.vth_reset.min())) >= 0 else None
            # on a square array, the same by line: [0] along each row, [1] along each column (one
            # gather serves the rows and the columns of every pulse)
            by_line = None
            if by_pol is not None and self.shape[0] == self.shape[1]:
                by_line = np.stack([by_pol, by_pol.transpose(0, 1, 3, 2)])
                by_pol = by_line[0]
            table = {"row": (vs.min(axis=2), vr.min(axis=2)), "col": (vs.min(axis=1), vr.min(axis=1)),
                     "lowest": (float(vs.min()), float(vr.min())), "by_pol": by_pol, "by_line": by_line}
            table["formed"] = {"row": (*table["row"], None), "col": (*table["col"], None), "lowest": table["lowest"],
                               "by_pol": by_pol, "by_line": by_line}
            cache = (key, table)
            self._screen_cache = cache
        return cache[1]

    def _lowest_screen(self) -> tuple[float, float]:
        """The chip's lowest SET and RESET thresholds of devices that can switch, V (cached)."""
        return self._screen_table()["lowest"]

    def _energy_v2(self, chip_idx, r, c, v, width, g_sel, i_sel=None):
        """Energy (J) of V/2 pulses ``v`` (V), ``width`` (s) on cells (r, c) of chips ``chip_idx``
        whose selected devices are ``g_sel`` (S), over the whole array (selected + half-selected
        cells).

        The half-selected cells all see V/2, so their power is (V/2)²(1 + β V²/4)/(1 + β v_ref²)
        times the sum of their conductances: row and column sums, no per-cell work."""
        # the pulsed lines only (not the whole array)
        g_half = self._g[chip_idx, r, :].sum(axis=1) + self._g[chip_idx, :, c].sum(axis=1) - 2 * g_sel
        return self._energy_v2_of(v, width, g_sel, g_half, i_sel)

    def _energy_v2_of(self, v, width, g_sel, g_half, i_sel=None):
        """Energy (J) of V/2 pulses ``v`` (V), ``width`` (s) on selected devices ``g_sel`` whose
        half-selected devices sum to ``g_half`` (S); ``i_sel``: their currents at ``v`` when already
        worked out (:func:`~mock_hw.device.iv_current`)."""
        d = self.params.device
        half = v / 2
        p_half = half * half * (1 + d.beta * half * half) / (1 + d.beta * d.v_ref ** 2) * g_half
        if i_sel is None:
            i_sel = iv_current(g_sel, v, d.beta, d.v_ref)
        return (v * i_sel + p_half) * width

    def _pulse_relaxed(self, rows, cols, amplitude, width, scheme, active) -> PulseResult:
        """V/2 or V/3 pulses on relaxed lines (many small chips; the caller brought the relaxed
        network to the chips' conductances, and no chip forms), worked on the active lanes only (as
        :meth:`_read_relaxed`): the source's compliance (:meth:`_lane_compliance`),
        then one operating point per active lane, chip-major, :data:`LINE_POINTS` at a time, each
        pulse's power, the devices its cell voltages reach beyond a threshold (in point then flat
        order) and the largest unselected cell voltage in one compiled pass
        (:meth:`~mock_hw.nodal.LineSolver.pulse_points`, solved on the conductances at the start of
        the call, as :meth:`_pulse_lines`); then the switching and bookkeeping lane by lane
        (:meth:`_pulse_lanes_done`).  No pass over the idle lanes but the results' zeros."""
        d, pop = self.params.device, self.population
        n_rows, n_cols = self.shape
        per_chip = n_rows * n_cols
        frac_row, frac_col = (0.5, 0.5) if scheme is WriteScheme.V2 else (1 / 3, 2 / 3)
        li = np.flatnonzero(active)                 # chip-major: chip by chip, lanes in order
        pc, lane = np.divmod(li, rows.shape[1])
        r, c, v, w = (_at_lanes(a, li) for a in (rows, cols, amplitude, width))
        flat = pc * n_rows
        flat += r
        flat *= n_cols
        flat += c
        v, over, _ = self._lane_compliance(self._g.reshape(-1).take(flat), v)
        compliance = np.zeros(rows.shape, bool)
        if over.any():
            compliance.put(li[over], True)
        # the lanes active on some chip, and each point's lane among them
        present = np.bincount(lane, minlength=rows.shape[1]) > 0
        n_on = int(np.count_nonzero(present))
        q = (np.cumsum(present) - 1).take(lane)
        shift = equivalent_shift(w, d)
        energy_p = np.empty(li.size)
        parts = []
        for p0 in range(0, li.size, LINE_POINTS):
            sl = slice(p0, p0 + LINE_POINTS)
            e, hit_p, hit_f, v_at, top = self._lines.pulse_points(
                self._g, pc[sl], r[sl], c[sl], v[sl], (frac_row, frac_col), shift[sl],
                (pop.vth_set, pop.vth_reset), RELAXED_TOL[PULSE_TOL])
            energy_p[sl] = e * w[sl]
            self.max_unselected_v = max(self.max_unselected_v, top)
            hit_p += p0
            parts.append((q[hit_p], pc[hit_p] * per_chip + hit_f, v_at, shift[hit_p]))
        lane_of, hit_flat, v_hit, shift_hit = (np.concatenate(x) for x in zip(*parts))
        order, bounds = _lane_runs(lane_of, n_on)   # each lane's devices in flat order (the chunks come in chip order)
        self._g = np.ascontiguousarray(self._g)
        by_lane = _lane_sort(q, n_on)               # the active lanes lane by lane, chips in order
        self._pulse_lanes_done(q.take(by_lane), flat.take(by_lane), v.take(by_lane), n_on, order, bounds, hit_flat,
                               v_hit, None, shift_hit)
        self.n_pulse_ops += li.size
        energy = np.zeros(rows.shape)
        energy.put(li, energy_p)
        duration = np.zeros(rows.shape)
        duration.put(li, w + self.params.timing.pulse_overhead_s)
        return PulseResult(energy, duration, compliance)

    def _pulse_lines(self, rows, cols, amplitude, width, scheme, active, relaxed: bool):
        """V/2 or V/3 pulses on resistive lines where the chips form (any lines) or the lines are
        swept (``relaxed``: :meth:`~mock_hw.nodal.LineSolver.relaxed`, which the caller evaluated
        on the chips' conductances; relaxed lines without forming: :meth:`_pulse_relaxed`, the
        same arithmetic on the active lanes).  The network of every lane is solved at once on
        the conductances at the start of the call (one factorization, one right-hand side per
        lane); the switching is then applied lane by lane, in lane order, on the evolving state.
        A lane's cell voltages thus ignore how earlier lanes of the same call changed other cells'
        conductances — a change of a few µS in a network whose lines shift the cell voltages by a
        few %, i.e. a relative effect of ~1e-4 on the voltage, far below the threshold spread.
        Returns the energy of each lane, J."""
        d = self.params.device
        n_rows, n_cols = self.shape
        v = np.where(active, amplitude, 0.0)
        frac_row, frac_col = (0.5, 0.5) if scheme is WriteScheme.V2 else (1 / 3, 2 / 3)
        # only the lanes active on some chip are solved (the others source nothing)
        on_lanes = np.flatnonzero(active.any(axis=0))
        if not on_lanes.size:
            return np.zeros(rows.shape)
        lit = active[:, on_lanes]           # the selected row and column of each lit lane carry its nonlinearity
        energy = np.zeros(rows.shape)
        pop = self.population
        forming = pop.unformed is not None and pop.unformed.any()
        w_on = np.where(lit, width[:, on_lanes], 0.0)[:, :, None, None]      # (n_chips, K, 1, 1)

        def terminals(v, sel_r, sel_c):
            """Row and column terminal voltages (..., R), (..., C) of lanes at ``v`` (V, 0 where
            idle) selecting rows ``sel_r`` and columns ``sel_c`` (same shape as ``v``)."""
            row_v = np.repeat((v * frac_row)[..., None], n_rows, axis=-1)
            col_v = np.repeat((v * frac_col)[..., None], n_cols, axis=-1)
            at = np.arange(v.size) * n_rows + sel_r.reshape(-1)      # each lane's selected row, flat
            row_v.reshape(-1)[at] = v.reshape(-1)
            col_v.reshape(-1)[np.arange(v.size) * n_cols + sel_c.reshape(-1)] = 0.0
            return row_v, col_v

        if forming:
            # forming changes the population: lane by lane on the whole voltage maps
            row_v, col_v = terminals(v[:, on_lanes], rows[:, on_lanes], cols[:, on_lanes])
            focus = self._focus_of(np.where(lit, rows[:, on_lanes], -1), np.where(lit, cols[:, on_lanes], -1))
            tol = RELAXED_TOL[PULSE_TOL] if relaxed else PULSE_TOL
            sol = self._lines.solve(self._g, row_v, col_v, tol=tol, focus=focus, currents=False)
            energy[:, on_lanes] = (sol.v_cell * sol.i_cell).sum(axis=(2, 3)) * width[:, on_lanes]
            self._unselected_lines(sol.v_cell, lit, rows[:, on_lanes], cols[:, on_lanes])
            for q, k in enumerate(on_lanes):
                if active[:, k].any():
                    self._g, written = apply_voltages_written(self._g, sol.v_cell[:, q], w_on[:, q], pop, d,
                                                              self._rng)
                    self._pulse_lane_done(written, rows, cols, v, active, k)
            return np.where(active, energy, 0.0)
        per_chip = n_rows * n_cols

        def take(sol, sl):
            """The chips' energies (chips, K) and the devices each lane's voltages reach beyond a
            threshold, for every lane at once (thresholds do not change): lane, flat index,
            voltage and width of each, in lane then chip then flat order; from the swept
            solution's node voltages in one compiled pass (the relaxed pulses' own,
            :func:`~programming.relax_kernels.given_pulses`)."""
            from programming.relax_kernels import given_pulses

            chips = np.arange(self.n_chips)[sl]
            nodes = sol.nodes                   # (chips, K, 2, R, C)
            nb, K = nodes.shape[:2]
            P = nb * K                          # lane-major points: p = lane·nb + chip
            given = nodes.transpose(1, 0, 2, 3, 4).reshape(P, 2, n_rows, n_cols)
            lane_chip = (slice(None), on_lanes)
            sel_r, sel_c = rows[sl][lane_chip].T.ravel(), cols[sl][lane_chip].T.ravel()
            w_p = w_on[sl][:, :, 0, 0].T.ravel()
            power = np.empty(P)
            hit_p, hit_f, hit_v = np.empty(P * per_chip, np.int64), np.empty(P * per_chip, np.int64), np.empty(P * per_chip)
            n, top = given_pulses(np.ascontiguousarray(self._g), np.tile(chips, K).astype(np.int64),
                                  sel_r.astype(np.int64), sel_c.astype(np.int64), 1.0 + d.beta * d.v_ref ** 2,
                                  equivalent_shift(w_p, d), np.ascontiguousarray(pop.vth_set),
                                  np.ascontiguousarray(pop.vth_reset), float(d.beta), np.ascontiguousarray(given),
                                  power, hit_p, hit_f, hit_v)
            self.max_unselected_v = max(self.max_unselected_v, top)
            hit_p = hit_p[:n]
            b = hit_p % nb
            return (power.reshape(K, nb).T * width[sl][:, on_lanes], hit_p // nb, chips[b] * per_chip + hit_f[:n],
                    hit_v[:n].copy(), w_p[hit_p])

        row_v, col_v = terminals(v[:, on_lanes], rows[:, on_lanes], cols[:, on_lanes])
        focus = self._focus_of(np.where(lit, rows[:, on_lanes], -1), np.where(lit, cols[:, on_lanes], -1))
        e, lane_of, flat, v_hit, w_hit = self._line_solve(row_v, col_v, PULSE_TOL, focus, take)
        energy[:, on_lanes] = e
        order, bounds = _lane_runs(lane_of, on_lanes.size)   # each lane's devices in flat order (chunks in chip order)
        self._g = np.ascontiguousarray(self._g)
        # lanes whose pulses disturb nothing (below disturb_v: their _disturb only restarts the
        # selected cells' counts, no drift, no random draw) are switched together, run by run, one
        # set per lane (switch_steps: the same states and draws as one switch_at per lane), and
        # their counts restart together (:meth:`_pulse_lanes_done`); a loud lane ends a run: the
        # run is switched, then its drift meets the state its pulse left
        # the active lanes lane by lane, chips in order (np.nonzero(lit.T)[::-1], without its 2-D cost)
        q, chip = np.divmod(np.flatnonzero(np.ascontiguousarray(lit.T)), lit.shape[0])
        lane_q = on_lanes[q]
        sel = (chip * n_rows + rows[chip, lane_q]) * n_cols + cols[chip, lane_q]
        self._pulse_lanes_done(q, sel, v[chip, lane_q], on_lanes.size, order, bounds, flat, v_hit, w_hit)
        return np.where(active, energy, 0.0)

    def _pulse_lanes_done(self, q, sel, v_sel, n_lanes, order, bounds, flat, v_hit, w_hit, shift_hit=None) -> None:
        """The switching and bookkeeping of a resistive-line pulse's ``n_lanes`` lanes (each active
        on some chip), in lane order.  The active lanes lane by lane, chips in order: each one's lane
        ``q`` (0 … n_lanes − 1), selected cell ``sel`` (flat index) and voltage ``v_sel`` (V).  Lane
        q's devices beyond a threshold are ``order[bounds[q]:bounds[q + 1]]`` of ``flat`` (flat
        indices), ``v_hit`` (V) and ``w_hit`` (s), or, with ``w_hit`` None, their
        :func:`~mock_hw.device.equivalent_shift` ``shift_hit`` (the relaxed pulses work it out
        already).  The lanes below ``disturb_v`` on every chip are switched together run by run
        (:func:`~mock_hw.device.switch_steps`, one set per lane: the same states and draws as lane
        by lane), and their selected cells' disturb counts restart at once
        (all a quiet lane's :meth:`_disturb` does); each loud lane ends a run: the run, itself
        included, is switched first, then its drift (:meth:`_disturb`) — the same states, counts and
        draws, in the same order, as one call per lane."""
        d, pop = self.params.device, self.population
        per_chip = self.shape[0] * self.shape[1]
        g_flat = self._g.reshape(-1)
        n_flat = self._n_disturb.reshape(-1)
        loud = np.zeros(n_lanes, bool)
        loud_sel = np.abs(v_sel) >= d.disturb_v
        if d.disturbs:          # the lanes with a lit chip at or beyond disturb_v
            loud[q[loud_sel]] = True
        per_lane = np.zeros(n_lanes + 1, np.intp)     # each lane's selected cells in sel
        np.cumsum(np.bincount(q, minlength=n_lanes), out=per_lane[1:])
        if lanes_compiled(pop, d):      # every lane in one compiled pass: the same states, counts and draws
            touched = self._touched if self._lines is not None else np.zeros(self.n_chips, bool)
            written = switch_drift_lanes(g_flat, n_flat, flat, v_hit, w_hit, order, bounds, sel, per_lane, loud_sel,
                                         loud, self._working_flat(), per_chip, self._disturb_table(1), touched, pop,
                                         d, self._rng, shift_hit)
            self._mark_written(written)
            return
        start = 0
        for end in [*np.flatnonzero(loud).tolist(), None]:
            stop = n_lanes if end is None else end
            n_flat[sel[per_lane[start]:per_lane[stop]]] = 0.0       # the quiet lanes' counts restart
            last = stop if end is None else end + 1                  # the run: these lanes and the loud one
            if last > start:
                at = order[bounds[start]:bounds[last]]
                written, _ = switch_steps(g_flat, flat[at], v_hit[at], None if w_hit is None else w_hit[at],
                                          bounds[start:last + 1] - bounds[start], pop, d, self._rng,
                                          None if shift_hit is None else shift_hit[at])
                self._mark_written(written)
            if end is not None:     # the loud lane's drift: the other devices of its loud chips
                s = slice(per_lane[end], per_lane[end + 1])
                chips = sel[s][np.abs(v_sel[s]) >= d.disturb_v] // per_chip
                on = np.zeros(self.n_chips, bool)
                on[chips] = True
                self._disturb(sel[s], on)
            start = last

    def _pulse_lane_done(self, written, rows, cols, v, active, k) -> None:
        """After lane ``k`` of a resistive-line pulse: the devices it wrote (flat indices) restart
        their age, its selected cells their disturb counts, and the other devices of its loud chips
        see one more disturb event (as the other pulse paths)."""
        n_rows, n_cols = self.shape
        self._mark_written(written)
        on = active[:, k]
        chips = np.arange(self.n_chips)[on]
        sel = (chips * n_rows + rows[on, k]) * n_cols + cols[on, k]
        self._disturb(sel, on & (np.abs(v[:, k]) >= self.params.device.disturb_v))

    def _unselected_lines(self, v_cell, lit, rows, cols) -> None:
        """Record the largest |voltage| across the unselected cells of solved pulses: ``v_cell``
        (n_chips, K, R, C), V, of lanes ``lit`` (n_chips, K) with selected cells (rows, cols)."""
        b, k = np.nonzero(lit)
        if not b.size:
            return
        r, c = rows[b, k], cols[b, k]
        if b.size == lit.size:      # every lane lit: v_cell itself, its selected cells at 0 V meanwhile
            sel = v_cell[b, k, r, c]
            v_cell[b, k, r, c] = 0.0
            top = max(float(v_cell.max()), -float(v_cell.min()))
            v_cell[b, k, r, c] = sel
        else:
            mag = np.abs(v_cell[b, k])                                   # (lanes, R, C)
            mag[np.arange(b.size), r, c] = 0.0
            top = float(mag.max())
        self.max_unselected_v = max(self.max_unselected_v, top)

    def _pulse_one(self, r, c, v, w, scheme, active):
        """One pulse per chip (chips where ``active`` is False see nothing); returns energy, J."""
        d = self.params.device
        n_rows, n_cols = self.shape
        chips = np.arange(self.n_chips)
        v = np.where(active, v, 0.0)
        if scheme is WriteScheme.FLOAT:
            row_v = np.where(active[:, None], np.nan, 0.0) * np.ones((1, n_rows))
            col_v = np.where(active[:, None], np.nan, 0.0) * np.ones((1, n_cols))
        else:
            frac_row, frac_col = (0.5, 0.5) if scheme is WriteScheme.V2 else (1 / 3, 2 / 3)
            row_v = np.repeat((v * frac_row)[:, None], n_rows, axis=1)
            col_v = np.repeat((v * frac_col)[:, None], n_cols, axis=1)
        row_v[chips, r] = v
        col_v[chips, c] = 0.0
        if self.params.r_line == 0 and scheme is not WriteScheme.FLOAT:
            v_cell = row_v[:, :, None] - col_v[:, None, :]
            i_cell = iv_current(self._g, v_cell, d.beta, d.v_ref)
        else:
            sol = nodal.solve_network(self._g, row_v, col_v, d.beta, d.v_ref, self.params.r_line)
            v_cell, i_cell = sol.v_cell, sol.i_cell
        energy = (v_cell * i_cell).sum(axis=(1, 2)) * w
        self._unselected_lines(np.nan_to_num(v_cell)[:, None], active[:, None], r[:, None], c[:, None])
        self._g, written = apply_voltages_written(self._g, v_cell, w[:, None, None], self.population, d, self._rng)
        self._mark_written(written)
        sel = (chips[active] * n_rows + r[active]) * n_cols + c[active]
        self._disturb(sel, active & (np.abs(v) >= d.disturb_v))
        return energy
