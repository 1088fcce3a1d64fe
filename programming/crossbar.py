"""The Crossbar interface: the one seam between algorithms and chips.

Every algorithm (write-verify tuner, deployment, in-situ training, procedures) talks only to
:class:`Crossbar`; every chip (the simulated chip in ``mock_hw``, the instrument-driven chip in
``instruments``) implements it.

Batching model
--------------
A crossbar object holds ``n_chips`` independent chips of identical ``shape`` (rows, cols).  A real
bench is a batch of one; a simulated chip may hold a thousand.  Cell operations (:meth:`read`,
:meth:`pulse`) take index/amplitude arrays of shape ``(n_chips, L)``: ``L`` *lanes* per chip, each
lane addressing one cell of its chip.  Within a chip the lanes take effect **in lane order**, exactly
as if issued one after another on a bench; different chips are independent.  A boolean ``active``
mask of the same shape skips lanes (nothing is sourced for them).  Scalars and ``(L,)`` arrays are
broadcast to every chip.

Units are SI throughout: siemens, volts, amperes, seconds, joules.

Safety
------
The public methods validate every request against :class:`SafetyLimits` *before* calling the
implementation (``_read``, ``_pulse``, ...), so an out-of-limit request raises
:class:`LimitError` and nothing is written to a chip.  Implementations must not bypass them.
"""
from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass
from enum import Enum

import numpy as np

from programming.colour_plan import ColourPlan, PassResult
from programming.read_plan import ReadPlan


class LimitError(ValueError):
    """A request exceeds the chip's safe operating limits; nothing was sourced."""


class WriteScheme(str, Enum):
    """Biasing of the unselected lines during a write pulse.

    * ``V/2``: selected row at V, selected column at 0, every other line at V/2 — the selected
      row's and column's other cells are half-selected (V/2), the rest see 0.
    * ``V/3``: unselected rows at V/3, unselected columns at 2V/3 — every unselected cell sees
      ±V/3 (less disturbance, more power).
    * ``float``: unselected lines left floating — their potentials, and so the voltage across every
      other cell, follow from the network (sneak paths).
    """

    V2 = "v/2"
    V3 = "v/3"
    FLOAT = "float"


class ReadScheme(str, Enum):
    """Biasing during a read of cell (r, c): row r at V_read, column c at the sense potential (0 V),
    and the unselected lines:

    * ``ground`` (the default): every unselected line at 0 V.  On resistive lines row r carries the
      current of every cell on it, so the selected cell sees less than V_read.
    * ``float``: unselected lines floating, so sneak paths add to the measured current.
    * ``isolate``: unselected rows at the sense potential (0 V), unselected columns at V_read.  No
      other cell of row r or column c sees a voltage (on ideal lines), so the selected lines carry
      only the selected cell's current; the rest of the array is reverse-biased at −V_read through
      its own lines (and draws its current from the bias channels).  A bench needs two bias
      channels for it (rows and columns at different levels).
    """

    GROUND = "ground"
    FLOAT = "float"
    ISOLATE = "isolate"


#: the unsigned integer of an index's width (an index below 0 reads as one above every bound)
_UNSIGNED = np.dtype(np.uintp)

#: each scheme by its value as spelled (what callers pass on every call)
_MEMBERS = {cls: {m.value: m for m in cls} for cls in (WriteScheme, ReadScheme)}


def _parse_enum(cls, value, what: str):
    if type(value) is str:
        member = _MEMBERS[cls].get(value)
        if member is not None:
            return member
    if isinstance(value, cls):
        return value
    try:
        return cls(str(getattr(value, "value", value)).lower())
    except ValueError:
        raise ValueError(f"unknown {what} {value!r}; expected one of {[s.value for s in cls]}") from None


def parse_write_scheme(value: str | WriteScheme) -> WriteScheme:
    return _parse_enum(WriteScheme, value, "write scheme")


def parse_read_scheme(value: str | ReadScheme) -> ReadScheme:
    return _parse_enum(ReadScheme, value, "read scheme")


@dataclass(frozen=True)
class SafetyLimits:
    """Safe operating limits of a chip (checked before any command is written).

    Attributes:
        v_max: largest write-pulse amplitude magnitude, V.
        v_read_max: largest read / matrix-vector input magnitude, V (keep it below the switching
            threshold so reads do not disturb).
        i_compliance: current compliance of the source, A.
        width_min, width_max: allowed write-pulse widths, s.
    """

    v_max: float = 3.0
    v_read_max: float = 0.5
    i_compliance: float = 10e-3
    width_min: float = 1e-7
    width_max: float = 1e-3

    def __post_init__(self):
        for name in ("v_max", "v_read_max", "i_compliance", "width_min", "width_max"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"SafetyLimits.{name} must be a positive finite number, got {value!r}")
        if self.width_min > self.width_max:
            raise ValueError("SafetyLimits.width_min must not exceed width_max")
        if self.v_read_max > self.v_max:
            raise ValueError("SafetyLimits.v_read_max must not exceed v_max")

    def check_pulse(self, amplitude: np.ndarray, width: np.ndarray) -> None:
        """Raise :class:`LimitError` if any amplitude or width is out of limits (or not finite)."""
        amplitude = np.asarray(amplitude, dtype=float)
        width = np.asarray(width, dtype=float)
        # one pass: a NaN makes the largest magnitude NaN, an infinity makes it infinite
        worst = float(np.abs(amplitude).max()) if amplitude.size else 0.0
        if not math.isfinite(worst):
            raise LimitError("pulse amplitude is not finite")
        if width.size == 1:     # (one width for every lane)
            w_hi = w_lo = width.item()
        else:
            w_hi, w_lo = (float(width.max()), float(width.min())) if width.size else (None, None)
        if width.size and not (math.isfinite(w_hi) and math.isfinite(w_lo)):
            raise LimitError("pulse width is not finite")
        if worst > self.v_max + 1e-12:
            raise LimitError(f"pulse amplitude {worst:.4g} V exceeds the limit v_max={self.v_max:.4g} V")
        if width.size and (w_lo < self.width_min * (1 - 1e-9) or w_hi > self.width_max * (1 + 1e-9)):
            raise LimitError(f"pulse width {w_lo:.3g}..{w_hi:.3g} s outside the limits "
                             f"[{self.width_min:.3g}, {self.width_max:.3g}] s")

    def check_read(self, voltage: np.ndarray, what: str = "read voltage") -> None:
        if type(voltage) is float:                 # one voltage (every read): no array needed
            finite, worst = math.isfinite(voltage), abs(voltage)
        else:
            voltage = np.asarray(voltage, dtype=float)
            hi, lo = (float(voltage.max()), float(voltage.min())) if voltage.size else (0.0, 0.0)
            finite = math.isfinite(hi) and math.isfinite(lo)     # NaN or infinite somewhere
            worst = max(hi, -lo, 0.0)
        if not finite:
            raise LimitError(f"{what} is not finite")
        if worst > self.v_read_max + 1e-12:
            raise LimitError(f"{what} {worst:.4g} V exceeds the limit v_read_max={self.v_read_max:.4g} V "
                             "(reads must stay below the switching threshold)")


@dataclass
class ReadResult:
    """Result of reading lanes: arrays of shape (n_chips, L); NaN where the lane was inactive.

    conductance: chord conductance I/V at the read voltage, S.  current: measured current, A.
    duration: instrument time spent, s (0 for inactive lanes).
    """

    conductance: np.ndarray
    current: np.ndarray
    duration: np.ndarray


@dataclass
class PulseResult:
    """Result of pulsing lanes: arrays of shape (n_chips, L).

    energy: energy dissipated in the whole array by the pulse (selected and half-selected cells),
    J.  duration: instrument time, s.  compliance: True where the source hit its current limit.
    """

    energy: np.ndarray
    duration: np.ndarray
    compliance: np.ndarray



def list_as_steps(K: int, n_chips: int, steps, chips, rows, cols, amplitude, width, lanes=None):
    """The pulses (P,) of :meth:`Crossbar.pulse_list` as :meth:`Crossbar.pulse_steps` lanes: rows,
    columns, amplitudes, widths and the active mask, (K, n_chips, L) each, each pulse on its lane
    of ``lanes`` or, without them, a chip's pulses of a step in its first lanes in list order (L:
    the most lanes any chip uses in a step; inactive lanes at cell (0, 0), 0 V, the first pulse's
    width), and where each pulse sits, (step, chip, lane)."""
    P = steps.size
    if lanes is not None:
        lane = lanes
    else:
        group = steps * n_chips + chips
        order = np.argsort(group, kind="stable")          # list order within each (step, chip)
        sorted_group = group[order]
        first = np.ones(P, bool)
        first[1:] = sorted_group[1:] != sorted_group[:-1]
        lane = np.empty(P, np.intp)
        lane[order] = np.arange(P) - np.maximum.accumulate(np.where(first, np.arange(P), 0))
    L = int(lane.max(initial=-1)) + 1
    shape = (K, n_chips, L)
    at = (steps, chips, lane)
    r, c = np.zeros(shape, np.intp), np.zeros(shape, np.intp)
    amp = np.zeros(shape)
    w = np.full(shape, float(width[0]) if P else 0.0)
    act = np.zeros(shape, bool)
    r[at], c[at], amp[at], w[at], act[at] = rows, cols, amplitude, width, True
    return (r, c, amp, w, act), at


def finite_nonnegative(value, what: str, unit: str) -> float:
    """``value`` as a float that is finite and >= 0, else a ValueError naming ``what`` (and its
    ``unit``, e.g. ``"seconds"``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of {unit}, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be a finite number of {unit} >= 0, got {value!r}")
    return number


def _index_arrays(what: str, arrays) -> tuple[list[np.ndarray], tuple]:
    """``arrays`` as numpy arrays and their common 1-D shape; ValueError naming ``what`` unless
    they are integer (or empty) 1-D arrays of one length."""
    idx = [np.asarray(a) for a in arrays]
    if any(a.dtype.kind not in "iu" and a.size for a in idx):
        raise ValueError(f"{what} must be integers")
    n = idx[0].shape
    if len(n) != 1 or any(a.shape != n for a in idx):
        raise ValueError(f"{what} must be 1-D arrays of one length, got shapes {[a.shape for a in idx]}")
    return idx, n


class Crossbar(abc.ABC):
    """Abstract crossbar: ``n_chips`` independent chips of ``shape`` = (rows, cols).

    Subclasses set ``shape``, ``n_chips``, ``limits``, ``v_read`` and implement the underscored
    methods; callers use the public ones, which validate and broadcast first.
    """

    shape: tuple[int, int]
    n_chips: int = 1
    limits: SafetyLimits = SafetyLimits()
    v_read: float = 0.2
    #: conductance window the chip is meant to be programmed in, S (used to validate targets).
    programming_window: tuple[float, float] = (100e-6, 500e-6)
    #: the read schemes this chip's channels can apply (a station lists its own)
    read_schemes: tuple[str, ...] = ("ground", "float")
    #: the write schemes this chip's channels can apply (a station: those its bias channels serve)
    write_schemes: tuple[str, ...] = ("v/2", "v/3", "float")
    #: how many cells of one chip an algorithm may interleave; 1 on a bench (strictly one cell at
    #: a time, as operators expect), more on a simulated chip where interleaving is vectorized.
    preferred_parallel: int = 1

    # ----------------------------------------------------------------------------- public API
    def read(self, rows, cols, v_read: float | None = None, scheme="ground", active=None) -> ReadResult:
        """Read cells at ``v_read`` (default :attr:`v_read`) under a read ``scheme``."""
        v = self.v_read if v_read is None else float(v_read)
        self.limits.check_read(v)
        if v == 0:
            raise LimitError("read voltage must be non-zero")
        scheme = self._check_read_scheme(scheme)
        rows, cols, active = self._lanes(rows, cols, active)
        return self._read(rows, cols, v, scheme, active)

    def pulse(self, rows, cols, amplitude, width, scheme="v/2", active=None) -> PulseResult:
        """Apply one write pulse per active lane (amplitude in V, signed; width in s)."""
        scheme = parse_write_scheme(scheme)
        rows, cols, active, on = self._lanes(rows, cols, active, with_on=True)
        amplitude = self._broadcast(amplitude, rows.shape, "amplitude")
        one_width = type(width) is float or np.ndim(width) == 0     # one width for every lane: checked once
        width = self._broadcast(width, rows.shape, "width")
        self.limits.check_pulse(amplitude.take(on), width.take(on[:1] if one_width else on))
        return self._pulse(rows, cols, amplitude, width, scheme, active)

    def pulse_steps(self, rows, cols, amplitude, width, scheme="v/2", active=None) -> PulseResult:
        """``K`` :meth:`pulse` calls at once: step ``k`` is ``pulse(rows[k], cols[k], amplitude[k],
        width[k], scheme, active[k])``, the steps applied in order.  ``rows`` / ``cols`` have shape
        (K, L) (broadcast to every chip) or (K, n_chips, L); amplitude (V), width (s) and ``active``
        are scalars or arrays of one of those shapes (or broadcast to them).  Every step is validated before the first is applied, so a bad
        one raises and nothing is sourced.  Returns a :class:`PulseResult` of (K, n_chips, L) arrays.
        A simulated chip applies the steps without the overhead of K calls."""
        scheme = parse_write_scheme(scheme)
        r, c = np.asarray(rows), np.asarray(cols)
        if r.dtype.kind not in "iu" or c.dtype.kind not in "iu":
            raise ValueError("row and column indices must be integers")
        if r.ndim not in (2, 3) or c.ndim not in (2, 3) or r.shape[0] != c.shape[0]:
            raise ValueError(f"pulse_steps lane indices must have shape (K, L) or (K, n_chips, L), got rows "
                             f"{r.shape} and cols {c.shape}")
        r, c = (a[:, None] if a.ndim == 2 else a for a in (r, c))
        if r.shape[1] not in (1, self.n_chips) or c.shape[1] not in (1, self.n_chips):
            raise ValueError(f"pulse_steps lanes have {max(r.shape[1], c.shape[1])} chips, crossbar has {self.n_chips}")
        shape = (r.shape[0], self.n_chips, max(r.shape[-1], c.shape[-1]))
        try:
            r, c = (a if a.shape == shape and a.dtype == np.intp else np.broadcast_to(a, shape).astype(np.intp)
                    for a in (r, c))
        except ValueError:
            raise ValueError(f"rows {r.shape} and cols {c.shape} do not broadcast to (K, n_chips, L)") from None

        def steps(value, name, dtype=float):   # (K, L) broadcast to every chip, like the lanes
            value = np.asarray(value, dtype=dtype)
            if value.shape == shape:             # already one value per lane: no copy
                return value
            return self._broadcast(value[:, None] if value.ndim == 2 else value, shape, name, dtype)

        act = np.ones(shape, bool) if active is None else steps(active, "active", bool)
        self._check_cells(r.reshape(-1, shape[2]), c.reshape(-1, shape[2]), act.reshape(-1, shape[2]))
        amplitude, width = steps(amplitude, "amplitude"), steps(width, "width")
        self.limits.check_pulse(amplitude[act], width[act])
        return self._pulse_steps(r, c, amplitude, width, scheme, act)

    def pulse_list(self, steps, chips, rows, cols, amplitude, width, scheme="v/2", lanes=None) -> PulseResult:
        """:meth:`pulse_steps` given pulse by pulse instead of as (K, n_chips, L) lanes: pulse ``p``
        goes to cell ``(rows[p], cols[p])`` of chip ``chips[p]`` in step ``steps[p]``.  Step ``k``
        is one :meth:`pulse` call whose lanes on each chip are that chip's pulses of step ``k``: in
        list order, or on the lanes ``lanes`` (then the list must run step after step, chip after
        chip, lane after lane).  The steps (0 … ``max(steps)``, fewer than the pulses) are applied
        in order.  ``steps``, ``chips``, ``rows``, ``cols`` (and ``lanes``, each below rows ×
        columns): integer arrays of one length P; amplitude (V, signed) and width (s): scalars or
        (P,) arrays.  Every pulse is validated before the first is applied, so a bad one raises and
        nothing is sourced.  Returns a :class:`PulseResult` of (P,) arrays, in list order.  A
        simulated chip applies the list without building the lanes of every step."""
        scheme = parse_write_scheme(scheme)
        idx, n = _index_arrays("pulse_list steps, chips, rows and columns", (steps, chips, rows, cols))
        s, b, r, c = (a if a.dtype == np.intp else a.astype(np.intp) for a in idx)
        if not (type(amplitude) is np.ndarray and amplitude.shape == n and amplitude.dtype == float):
            amplitude = self._broadcast(amplitude, n, "amplitude")
        one_width = np.ndim(width) == 0                    # one width for every pulse: checked once
        width = np.full(n, float(width)) if one_width else self._broadcast(width, n, "width")
        if not n[0]:
            return PulseResult(np.zeros(0), np.zeros(0), np.zeros(0, bool))
        # an index below 0 is, as unsigned, above every bound: one reduction per index
        k_max = int(s.view(np.uintp).max())
        if k_max >= n[0]:
            raise ValueError(f"pulse_list steps must lie in [0, {n[0]}) (0 … the number of pulses − 1), got "
                             f"{int(s.min()) if s.min() < 0 else k_max}")
        if int(b.view(np.uintp).max()) >= self.n_chips:
            bad = int(b[(b < 0) | (b >= self.n_chips)][0])
            raise ValueError(f"pulse_list chip {bad} is outside the crossbar's {self.n_chips} chips")
        self._check_inside(r, c)
        self.limits.check_pulse(amplitude, width[:1] if one_width else width)
        if lanes is not None:
            lanes = np.asarray(lanes)
            if lanes.dtype.kind not in "iu" or lanes.shape != n:
                raise ValueError(f"pulse_list lanes must be integers of the pulses' shape {n}, got {lanes.dtype} "
                                 f"{lanes.shape}")
            lanes = lanes.astype(np.intp, copy=False)
            n_lanes = self.shape[0] * self.shape[1]
            if int(lanes.view(np.uintp).max()) >= n_lanes:
                raise ValueError(f"pulse_list lanes must lie in [0, {n_lanes}) (rows x columns)")
            key = (s * self.n_chips + b) * n_lanes + lanes
            if n[0] > 1 and not (key[1:] > key[:-1]).all():
                raise ValueError("pulse_list with lanes must list the pulses step after step, chip after chip, "
                                 "lane after lane (one pulse per lane)")
        return self._pulse_list(k_max + 1, s, b, r, c, amplitude, width, scheme, lanes)

    def colour_plan(self, rows, cols, tiles, colours, amplitude: float, width: float, scheme="v/2") -> ColourPlan:
        """A :class:`~programming.colour_plan.ColourPlan` of the cells ``(rows[d], cols[d])`` (the same on
        every chip) in tiles ``tiles`` with colours ``colours`` (integers >= 0, one per cell), for passes
        of pulses of ``amplitude`` (V, magnitude: ``+amplitude`` SET, ``−amplitude`` RESET) and
        ``width`` (s) under ``scheme`` (:meth:`pulse_counts`).  Everything a pass can source is checked
        here, once: the cells address the array and are distinct, the cells of one colour of one tile
        share no row and no column, cells of different tiles share no line (so the pulses of a step
        never share one), and the amplitude and width are within :attr:`limits`.  ValueError (a
        :class:`LimitError` for the limits) names what is wrong."""
        scheme = parse_write_scheme(scheme)
        idx, n = _index_arrays("colour_plan rows, columns, tiles and colours", (rows, cols, tiles, colours))
        r, c, t, k = (a.astype(np.intp) for a in idx)
        n_rows, n_cols = self.shape
        self._check_inside(r, c)
        if n[0] and min(int(t.min()), int(k.min())) < 0:
            raise ValueError("colour_plan tiles and colours must be >= 0")
        cell = r * n_cols + c
        if np.unique(cell).size != cell.size:
            raise ValueError("colour_plan lists a cell twice")
        n_colours = int(k.max(initial=-1)) + 1
        group = t * max(n_colours, 1) + k
        for line, size in ((r, n_rows), (c, n_cols)):
            if np.unique(group * size + line).size != line.size:
                raise ValueError("colour_plan: two cells of one colour of one tile share a line")
            if np.unique(line * (int(t.max(initial=0)) + 1) + t).size != np.unique(line).size:
                raise ValueError("colour_plan: two tiles share a line")
        amp = float(amplitude)
        if not amp > 0:
            raise ValueError(f"colour_plan amplitude must be a positive magnitude, V, got {amplitude!r}")
        self.limits.check_pulse(np.array([amp, -amp]), np.array([float(width)]))
        return ColourPlan(r, c, t, k, n_colours, amp, float(width), scheme, tuple(self.shape), int(self.n_chips),
                          self.limits)

    def pulse_counts(self, plan: ColourPlan, counts) -> PassResult:
        """Apply a pass of signed pulse counts ``counts`` (n_chips, D) integers over the cells of
        ``plan`` (:meth:`colour_plan`, made for this chip): the same pulses, steps and order as
        ``pulse_list(*plan.pulse_list(counts)[:5], plan.width, plan.scheme, lanes=...)`` (see
        :mod:`programming.colour_plan`), with the cells and pulse checked once, when the plan was made.
        Returns the steps taken and the pulses per chip (:class:`~programming.colour_plan.PassResult`);
        :meth:`pulse_list` gives the energies.  A simulated chip applies the pass without building its
        list."""
        self._check_plan(plan, "pulse_counts needs a colour plan")
        counts = np.asarray(counts)
        if counts.dtype.kind not in "iu" or counts.shape != (self.n_chips, plan.size):
            raise ValueError(f"pulse_counts counts must be integers of shape {(self.n_chips, plan.size)}, got "
                             f"{counts.dtype} {counts.shape}")
        return self._pulse_counts(plan, counts)

    def read_array(self, v_read: float | None = None, scheme="ground") -> np.ndarray:
        """Read every cell; returns conductances of shape (n_chips, rows, cols), S."""
        v = self.v_read if v_read is None else float(v_read)
        self.limits.check_read(v)
        if v == 0:
            raise LimitError("read voltage must be non-zero")
        return self._read_array(v, self._check_read_scheme(scheme))

    def _check_read_scheme(self, scheme) -> ReadScheme:
        """The read scheme, refused (ValueError, nothing sourced) if this chip cannot apply it."""
        scheme = parse_read_scheme(scheme)
        if scheme.value not in self.read_schemes:
            raise ValueError(f"read scheme {scheme.value!r} is not available on this chip (its channels allow "
                             f"{', '.join(self.read_schemes)})")
        return scheme

    def mvm(self, v_rows, need=None) -> np.ndarray:
        """Analog matrix-vector product: drive rows with voltages, return column currents.

        ``v_rows`` (V) has shape (rows,) or (N, rows), broadcast to every chip, or
        (n_chips, N, rows), one set per chip; columns are held at virtual ground.  Returns column
        currents (A) of shape (n_chips, cols) for a 1-D input, else (n_chips, N, cols).

        ``need`` (optional) is a boolean mask that broadcasts to that output shape: True for the
        currents the caller will use.  The others come back as NaN, and a chip may skip them: a
        bench, which measures one cell at a time, then measures only the cells that feed a needed
        current.  The needed currents are the same as without a mask.
        """
        v = np.asarray(v_rows, dtype=float)
        if v.ndim not in (1, 2, 3) or v.shape[-1] != self.shape[0]:
            raise ValueError(f"mvm input must have shape (rows,), (N, rows) or (n_chips, N, rows) with "
                             f"rows={self.shape[0]}, got shape {v.shape}")
        if v.ndim == 3 and v.shape[0] != self.n_chips:
            raise ValueError(f"per-chip mvm input has {v.shape[0]} chips, crossbar has {self.n_chips}")
        mask = None if need is None else self._need_mask(need, v)
        self.limits.check_read(v, "matrix-vector input voltage")
        if mask is None:
            return self._mvm(v)
        return self._mvm_needed(v, mask)

    def read_plan(self, need, fixed=None, varying=None, drive=None) -> ReadPlan:
        """A :class:`~programming.read_plan.ReadPlan` for products (:meth:`mvm_plan`) of N input
        vectors of which the currents ``need`` (bool (N, cols), the same on every chip) are wanted;
        ``fixed`` (n_chips, N, rows), V, the row voltages of the vectors that never change and
        ``varying`` (bool (N,)) the vectors given with each product (default: every vector when
        ``fixed`` is None, else none); ``drive`` (optional, distinct integers) the flat positions in
        the varying vectors' (n_varying, rows) plane their inputs may drive, the others held at 0 V
        (then each product takes only those voltages).  The fixed voltages are checked here, once
        (finite, within ``v_read_max``).  ValueError (a :class:`LimitError` for the limits) names
        what is wrong."""
        need = np.asarray(need)
        if need.dtype != bool or need.ndim != 2 or need.shape[1] != self.shape[1]:
            raise ValueError(f"read_plan need must be a boolean mask of shape (N, {self.shape[1]}), got "
                             f"{need.dtype} {need.shape}")
        n = need.shape[0]
        if varying is None:
            varying = np.full(n, fixed is None)
        varying = np.asarray(varying)
        if varying.dtype != bool or varying.shape != (n,):
            raise ValueError(f"read_plan varying must be a boolean mask of shape ({n},), got {varying.dtype} "
                             f"{varying.shape}")
        if varying.all():
            fixed = None
        elif fixed is None:
            raise ValueError("read_plan needs the fixed vectors' voltages (fixed) where not every vector varies")
        else:
            fixed = np.array(np.broadcast_to(np.asarray(fixed, dtype=float), (self.n_chips, n, self.shape[0])))
            fixed[:, varying] = 0.0
            self.limits.check_read(fixed, "matrix-vector input voltage")
        k = int(varying.sum())
        if drive is not None:
            drive = np.asarray(drive)
            if drive.dtype.kind not in "iu" or drive.ndim != 1:
                raise ValueError("read_plan drive must be a 1-D array of integer positions")
            drive = drive.astype(np.intp)
            if drive.size and int(drive.view(np.uintp).max()) >= k * self.shape[0]:
                raise ValueError(f"read_plan drive positions must lie in [0, {k * self.shape[0]}) "
                                 "(varying vectors x rows)")
            if np.unique(drive).size != drive.size:
                raise ValueError("read_plan drive lists a position twice")
        return ReadPlan(need.copy(), varying.copy(), fixed, np.flatnonzero(need), bool(varying[:k].all()),
                        drive, tuple(self.shape), int(self.n_chips), self.limits)

    def mvm_plan(self, plan: ReadPlan, v_rows) -> np.ndarray:
        """The needed currents (A), shape (n_chips, M), in (vector, column) order, of the product of
        ``plan`` (:meth:`read_plan`, made for this chip) whose varying vectors are driven at
        ``v_rows`` (n_chips, n_varying, rows), V, or, for a plan with ``drive`` positions, at
        ``v_rows`` (n_chips, P) there and 0 V elsewhere, and its fixed vectors at theirs: what
        ``mvm(input, need=plan.need)`` gives at the needed currents, with the fixed part checked
        once, when the plan was made.  A simulated chip need not build the whole product."""
        self._check_plan(plan, "mvm_plan needs a read plan")
        v = np.asarray(v_rows, dtype=float)
        want = (self.n_chips, plan.n_varying, self.shape[0]) if plan.drive is None else (self.n_chips, plan.drive.size)
        if v.shape != want:
            raise ValueError(f"mvm_plan input must have shape {want} (n_chips, "
                             f"{'varying vectors, rows' if plan.drive is None else 'drive positions'}), got {v.shape}")
        self.limits.check_read(v, "matrix-vector input voltage")
        return self._mvm_plan(plan, v)

    def _inside(self, r: np.ndarray, c: np.ndarray) -> bool:
        """Whether intp arrays ``r``, ``c`` (one shape) address only cells of the array: one unsigned
        reduction each (an index below 0 is, as unsigned, above every bound); on a few lanes first
        one of both, of ``r | c`` (as unsigned no smaller than either: below the smaller bound, both are inside)."""
        n_rows, n_cols = self.shape
        if not r.size:
            return True
        if r.size <= 4096 and int(np.bitwise_or(r, c).view(_UNSIGNED).max()) < min(n_rows, n_cols):
            return True
        return int(r.view(_UNSIGNED).max()) < n_rows and int(c.view(_UNSIGNED).max()) < n_cols

    def _check_inside(self, r: np.ndarray, c: np.ndarray) -> None:
        """ValueError naming the first cell of intp arrays ``r``, ``c`` outside the array."""
        n_rows, n_cols = self.shape
        if not self._inside(r, c):
            p = int(np.flatnonzero((r < 0) | (r >= n_rows) | (c < 0) | (c >= n_cols))[0])
            raise ValueError(f"cell ({r[p]}, {c[p]}) is outside the {n_rows}x{n_cols} array")

    def _check_plan(self, plan, what: str) -> None:
        """ValueError ``what`` unless ``plan`` (a colour or read plan) was made for this chip."""
        if plan.shape != tuple(self.shape) or plan.n_chips != self.n_chips or (
                plan.limits is not self.limits and plan.limits != self.limits):
            raise ValueError(f"{what} made for this chip (its shape, chips and limits)")

    def _need_mask(self, need, v: np.ndarray) -> np.ndarray:
        """``need`` checked and broadcast to the output shape of :meth:`mvm` for input ``v``."""
        out_shape = (self.n_chips, self.shape[1]) if v.ndim == 1 else (self.n_chips, v.shape[-2], self.shape[1])
        mask = np.asarray(need)
        if mask.dtype != bool:
            raise ValueError(f"mvm need must be a boolean mask, got dtype {mask.dtype}")
        if mask.shape == out_shape:
            return mask
        try:
            return np.broadcast_to(mask, out_shape)
        except ValueError:
            raise ValueError(f"mvm need mask of shape {mask.shape} does not broadcast to the output "
                             f"shape {out_shape}") from None

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` (s, finite, >= 0) pass with nothing sourced: the chip rests in its safe
        idle state.  Used by retention procedures.  The default sleeps; a simulator may advance a
        virtual clock instead (and age its devices).  Raises ValueError for a negative, NaN or
        infinite duration."""
        self._wait(finite_nonnegative(seconds, "wait duration", "seconds"))

    def bench_time(self) -> float | None:
        """The bench's time, s, as the host reads it (an instrument's timer), or None where the
        host has no such clock (the default).  Only differences between its readings mean anything."""
        return None

    def close(self) -> None:
        """Leave the chip safe (outputs off, relays open).  Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------------------ implementation
    @abc.abstractmethod
    def _read(self, rows, cols, v_read: float, scheme: ReadScheme, active) -> ReadResult: ...

    @abc.abstractmethod
    def _pulse(self, rows, cols, amplitude, width, scheme: WriteScheme, active) -> PulseResult: ...

    @abc.abstractmethod
    def _read_array(self, v_read: float, scheme: ReadScheme) -> np.ndarray: ...

    @abc.abstractmethod
    def _mvm(self, v_rows: np.ndarray) -> np.ndarray: ...

    def _pulse_steps(self, rows, cols, amplitude, width, scheme: WriteScheme, active) -> PulseResult:
        """Validated steps (K, n_chips, L) of :meth:`pulse_steps`.  Default: one :meth:`_pulse` per
        step, in order (what a bench does)."""
        res = [self._pulse(rows[k], cols[k], amplitude[k], width[k], scheme, active[k]) for k in range(rows.shape[0])]
        if not res:
            return PulseResult(np.zeros(rows.shape), np.zeros(rows.shape), np.zeros(rows.shape, bool))
        return PulseResult(*(np.stack([getattr(x, f) for x in res]) for f in ("energy", "duration", "compliance")))

    def _pulse_list(self, K: int, steps, chips, rows, cols, amplitude, width, scheme: WriteScheme,
                    lanes=None) -> PulseResult:
        """Validated pulses (P,) of :meth:`pulse_list`, in ``K`` steps (``lanes``: theirs, or None).
        Default: as the lanes of :meth:`_pulse_steps` (:func:`list_as_steps`), the results taken
        back pulse by pulse."""
        (r, c, amp, w, act), at = list_as_steps(K, self.n_chips, steps, chips, rows, cols, amplitude, width, lanes)
        res = self._pulse_steps(r, c, amp, w, scheme, act)
        return PulseResult(*(getattr(res, f)[at] for f in ("energy", "duration", "compliance")))

    def _pulse_counts(self, plan: ColourPlan, counts: np.ndarray) -> PassResult:
        """A checked pass of :meth:`pulse_counts`.  Default: its pulse list
        (:meth:`~programming.colour_plan.ColourPlan.pulse_list`, valid by the plan's checks) through
        :meth:`_pulse_list`."""
        got = plan.pulse_list(counts)
        if got is None:
            return PassResult(0, np.zeros(self.n_chips, np.int64))
        steps, chips, rows, cols, amp, lanes = got
        K = int(steps[-1]) + 1
        self._pulse_list(K, steps, chips, rows, cols, amp, np.full(steps.size, plan.width), plan.scheme, lanes)
        return PassResult(K, np.bincount(chips, minlength=self.n_chips))

    def _mvm_needed(self, v_rows: np.ndarray, need: np.ndarray) -> np.ndarray:
        """The product where ``need`` (bool, the output's shape) is True, NaN elsewhere.  Default:
        the whole product, masked."""
        return np.where(need, self._mvm(v_rows), np.nan)

    def _mvm_plan(self, plan: ReadPlan, v_rows: np.ndarray) -> np.ndarray:
        """Checked inputs of :meth:`mvm_plan`.  Default: the whole product through
        :meth:`_mvm_needed`, its needed currents taken."""
        out = self._mvm_needed(plan.product_input(v_rows), plan.need_mask())
        return out.reshape(self.n_chips, -1).take(plan.at, axis=1)

    def _wait(self, seconds: float) -> None:
        """Let validated ``seconds`` pass (default: sleep)."""
        time.sleep(seconds)

    # ------------------------------------------------------------------------------ helpers
    def _broadcast(self, value, shape, name, dtype=float) -> np.ndarray:
        arr = np.asarray(value, dtype=dtype)
        if arr.ndim == 0:                          # one value for every lane
            return np.full(shape, arr, dtype)
        if arr.shape == shape:                     # one value per lane already: a copy
            return arr.astype(dtype)
        try:
            return np.broadcast_to(arr, shape).astype(dtype)
        except ValueError:
            raise ValueError(f"{name} of shape {arr.shape} does not broadcast to lanes {shape}") from None

    def _lanes(self, rows, cols, active, with_on: bool = False):
        """Broadcast lane indices to (n_chips, L) and check they address the array; ``with_on``:
        also the flat indices of the active lanes."""
        r = np.asarray(rows)
        c = np.asarray(cols)
        shape = (self.n_chips, r.shape[-1] if r.ndim else 1)
        if r.shape == shape and c.shape == shape and r.dtype == np.intp and c.dtype == np.intp:
            # already in lane form (what the tuner passes): only check the addresses
            act = np.ones(shape, bool) if active is None else np.asarray(active, bool)
            if act.shape != shape:
                act = np.broadcast_to(act, shape)
            on = act.reshape(-1).nonzero()[0] if with_on else None
            if 4 * (on.size if with_on else np.count_nonzero(act)) <= act.size:
                # one lane in four or fewer active (a batch of chips, late in a tune): theirs only
                if on is None:
                    on = act.reshape(-1).nonzero()[0]
                self._check_inside(r.reshape(-1).take(on), c.reshape(-1).take(on))
            else:
                self._check_cells(r, c, act)
            return (r, c, act, on) if with_on else (r, c, act)
        if r.dtype.kind not in "iu" or c.dtype.kind not in "iu":
            raise ValueError("row and column indices must be integers")
        if r.ndim > 2 or c.ndim > 2:
            raise ValueError("lane indices must have shape (L,) or (n_chips, L)")
        if r.ndim == 2 and r.shape[0] not in (1, self.n_chips):
            raise ValueError(f"lane rows have {r.shape[0]} chips, crossbar has {self.n_chips}")
        r2 = np.atleast_1d(r)
        c2 = np.atleast_1d(c)
        lanes = max(r2.shape[-1], c2.shape[-1])
        shape = (self.n_chips, lanes)
        try:       # (lanes the same on every chip, e.g. a whole-array read: read-only views, not copies
            #          of n_chips rows each: 10 MB for 10 000 chips of 8x8)
            r2 = np.broadcast_to(r2.astype(np.intp, copy=False), shape)
            c2 = np.broadcast_to(c2.astype(np.intp, copy=False), shape)
        except ValueError:
            raise ValueError(f"rows {r.shape} and cols {c.shape} do not broadcast to (n_chips, L)") from None
        act = np.ones(shape, bool) if active is None else np.broadcast_to(np.asarray(active, bool), shape)
        self._check_cells(r2, c2, act)
        act = np.array(act)
        return (r2, c2, act, act.reshape(-1).nonzero()[0]) if with_on else (r2, c2, act)

    def _check_cells(self, r, c, act) -> None:
        n_rows, n_cols = self.shape
        if r.size and self._inside(r, c):
            return      # every lane (active or not) addresses the array
        bad = act & ((r < 0) | (r >= n_rows) | (c < 0) | (c >= n_cols))
        if bad.any():
            b, l = np.argwhere(bad)[0]
            raise ValueError(f"cell ({r[b, l]}, {c[b, l]}) is outside the {n_rows}x{n_cols} array")
