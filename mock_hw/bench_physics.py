"""The physical side of the mock bench: sources, switch-matrix relays and one simulated crossbar.

Emulated instruments do not compute currents themselves.  They tell the bench what their hardware
does — a source channel's level, output state and compliance, a pulse, a relay opening or
closing — and ask it what an ammeter reads.  The bench works out which crossbar line is connected
to which source (through every matrix's closed relays), solves the network with the crossbar
physics and returns the current out of the source's HI terminal.

Matrix model: a matrix has *inputs* (its rows: 707B rows A–H, B2200 input ports, the serial board's
buses) wired to sources or ground, and *pins* (its outputs) wired to crossbar lines.  Closing
(input, pin) connects that line to that input's source.  A line connected to nothing floats; a line
connected to two different live sources is a short (recorded).

Time: the bench's clock is by default an :class:`EmulatedClock` that advances only by what the
instruments do — a source level change settles for ``settle_s``, a relay operates in ``relay_s``, a
measurement integrates for ``measure_s``, a pulse lasts its width plus ``pulse_overhead_s`` (the
:class:`BenchTiming` durations) — and by explicit waits of a caller in the same process
(:meth:`PhysicalBench.wait`).  It never reads the host's clock, so no result depends on how loaded
the host is or how long it paused between commands (a host's own sleep, e.g. ``xbar retention``'s
waits through a separate ``xbar mock-bench``, counts nothing on it).  A plain callable
(``time.monotonic``: the ``--clock wall`` of ``xbar mock-bench``, where host waits age the chip, or
a test's fake clock) is used as it is.

Aging: the chip ages with the bench's clock.  The bench remembers when its last physical event
happened; before every read (:meth:`PhysicalBench.measure_current`), pulse and DC settle (every
relay or source change) it advances the chip by the time since then, times ``time_scale``, through
the chip's own :meth:`~mock_hw.sim_chip.SimulatedCrossbar.wait` (retention loss,
:mod:`mock_hw.aging`).  So a retention procedure that waits between read maps sees the devices
relax, as on a real chip or on ``--chip sim``.

Safety record: every relay operation while a source connected to it is live (output on at a
non-zero level) is a **hot switch**; every level beyond the bench's limits is a **limit
violation**; both are appended to :attr:`PhysicalBench.violations` so tests can assert there were
none.  Every pulse appends a :class:`WriteRecord` to :attr:`PhysicalBench.writes`: the selected
cell (the one that sees the largest voltage during the pulse), its voltage, and the largest voltage
any *other* cell saw from the previous pulse through this one — in every DC state the sources and
relays passed through (in the order the instruments actually applied them) and during the pulse.
Voltages are line-terminal differences of driven lines; cells on a floating line are not counted.  All methods are thread-safe (one lock for the bench): several instrument servers share it.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from programming.crossbar import finite_nonnegative

from .sim_chip import SimulatedCrossbar

GROUND = "GND"

#: Series resistance of a bench's path from an instrument terminal to a crossbar line, Ω: one
#: closed matrix relay plus the instrument's leads and the probe.  An assumed typical figure (order
#: of 1 Ω for a reed-relay matrix path, ~0.1–0.2 Ω for 1–2 m of triax and a probe contact), not a
#: value taken from the 707B/7174A or B2200 manuals.  It matters only on a chip with resistive
#: lines (it adds in series with each line's first segment).
R_RELAY_PATH = 1.0
R_LEADS = 0.2


def check_time_scale(value, name: str = "time_scale") -> float:
    """``value`` as a time scale (chip seconds per bench-clock second): a finite number >= 0, else
    a ValueError naming the option ``name``."""
    return finite_nonnegative(value, name, "chip seconds per wall second")


@dataclass
class SourceState:
    """One source channel (SMU channel or bias supply): level (V), output, compliance (A)."""

    name: str
    level: float = 0.0
    on: bool = False
    compliance: float = 0.1
    on_since: float = 0.0        # bench-clock time (s) the present DC level has been applied since
    tripped: bool = False        # the last measurement hit compliance


@dataclass(frozen=True)
class BenchTiming:
    """Instrument durations, s: an ammeter reading (integration + settling), a relay operation, the
    overhead of a pulse on top of its width, and the settling of a source level change.

    They advance an :class:`EmulatedClock` (:meth:`realistic` values); with a wall clock and
    ``realistic_timing`` the host also sleeps them (a demonstration of a bench's pace)."""

    measure_s: float = 0.0
    relay_s: float = 0.0
    pulse_overhead_s: float = 0.0
    settle_s: float = 0.0

    @classmethod
    def realistic(cls) -> "BenchTiming":
        """NPLC 0.1 at 50 Hz (2 ms) plus settling, ~2.5 ms; a reed relay's operate time, ~3 ms
        (Keithley 7174A card: 3 ms max actuation); 0.1 ms pulse set-up; 50 µs source settling
        (2600B datasheet: source settling < 50 µs to 0.1 % on the 2 V range)."""
        return cls(measure_s=2.5e-3, relay_s=3e-3, pulse_overhead_s=1e-4, settle_s=5e-5)


class EmulatedClock:
    """A bench clock (s) that moves only when the bench says an instrument spent time
    (:meth:`advance`); ``EmulatedClock()`` starts at 0 s."""

    def __init__(self, t0: float = 0.0):
        self.t = float(t0)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self.t += float(seconds)


@dataclass(frozen=True)
class WriteRecord:
    """One pulse as the array saw it (voltages are magnitudes, V).

    Attributes:
        row, col: the selected cell (largest |V| during the pulse).
        v_selected: |V| across the selected cell during the pulse.
        v_unselected: the largest |V| across any other cell in the DC states since the previous
            pulse and during this one (the previous pulse's selected cell excluded from the DC
            states: they are its own ramp-down).
        v_unselected_pulse: the same during the pulse alone.
        v_selected_dc: the largest |V| across the selected cell in those DC states.
    """

    row: int
    col: int
    v_selected: float
    v_unselected: float
    v_unselected_pulse: float
    v_selected_dc: float


@dataclass
class Violation:
    kind: str                    # "hot-switch", "limit", "short"
    detail: str
    when: float = field(default_factory=time.monotonic)


class PhysicalBench:
    """Sources + matrices + one simulated crossbar (chip 0 of ``chip``).

    Args:
        chip: the simulated crossbar the bench is wired to.
        v_limit: largest |level| a source may apply before it counts as a limit violation, V.
        dc_stress: apply switching physics for the time a DC level above threshold stays on
            (bench-clock seconds, not scaled by ``time_scale``), as a real DC source would.
        timing: latencies the host sleeps (:class:`BenchTiming`; default none).
        clock: the bench's clock: an :class:`EmulatedClock` (the default, a new one) advanced by
            ``times`` and explicit :meth:`wait` calls only, or any callable returning seconds (:func:`time.monotonic`
            for wall time, a fake one in tests) used as it is.  It times aging and DC stress.
        times: the instrument durations that advance an emulated clock (default
            :meth:`BenchTiming.realistic`).
        time_scale: chip seconds of aging per bench-clock second (>= 0, finite; default 1.0: one
            wall second is one chip second, as on a real chip).  ``0`` freezes the chip's age
            (no retention loss); ``1000`` lets a retention run of minutes show weeks of loss.
            Only rest (retention) is accelerated: pulse widths and DC stress keep their real
            duration.
        min_age_step: chip time, s, below which elapsed time is accumulated rather than applied
            at once (default 1 ms), so back-to-back reads and relay operations do not each
            recompute every device's retention.  The accumulated time is applied at the next
            event that brings the total to ``min_age_step`` or more, before every pulse, and by
            :meth:`age_chip`.  Retention composes exactly over successive waits, so the total
            loss is the same; the only approximation is that a device switched by a held DC level
            (``dc_stress``) may count up to ``min_age_step`` as older.
        r_access: series resistance of each path from a source to a crossbar line (relay, leads,
            probe), Ω (default :data:`R_RELAY_PATH` + :data:`R_LEADS`); it adds to the first
            segment of each line on a chip with resistive lines.
    """

    def __init__(self, chip: SimulatedCrossbar, v_limit: float = 3.0, dc_stress: bool = True,
                 timing: BenchTiming | None = None, clock: Callable[[], float] | None = None,
                 time_scale: float = 1.0, min_age_step: float = 1e-3, times: BenchTiming | None = None,
                 r_access: float = R_RELAY_PATH + R_LEADS):
        self.chip = chip
        self.r_access = finite_nonnegative(r_access, "r_access", "ohms")
        self.timing = timing or BenchTiming()
        clock = EmulatedClock() if clock is None else clock
        self.emulated = isinstance(clock, EmulatedClock)
        self.times = times or BenchTiming.realistic()
        self._relay_batch: str | None = None  # matrix whose relays are operating now (one command's)
        self.v_limit = v_limit
        self.dc_stress = dc_stress
        self._time_scale = check_time_scale(time_scale)
        self.min_age_step = finite_nonnegative(min_age_step, "min_age_step", "seconds")
        self.clock = clock
        self.lock = threading.RLock()
        self.sources: dict[str, SourceState] = {}
        self.inputs: dict[tuple[str, str], str] = {}      # (matrix, input) -> source name or GND
        self.pins: dict[tuple[str, str], tuple[str, int]] = {}  # (matrix, pin) -> ("row"|"col", index)
        self.closed: set[tuple[str, str, str]] = set()    # (matrix, input, pin)
        self.stuck_open: set[tuple[str, str, str]] = set()  # fault injection: relays that never close
        self.violations: list[Violation] = []
        self.writes: list[WriteRecord] = []
        self.pulses = 0
        self._dc_peak = np.zeros(chip.shape)   # largest |V| per cell in the DC states since the last pulse
        self._last_selected: tuple[int, int] | None = None
        #: called with each new :class:`Violation` (the safety record's writer)
        self.on_violation: Callable[[Violation], None] | None = None
        self._last_event = float(clock())   # bench-clock time of the last physical event, s
        self._pending_age = 0.0             # chip time not yet applied to the chip, s

    # ------------------------------------------------------------------------------ aging
    def _age(self, flush: bool = False) -> float:
        """Advance the chip by the bench-clock time since the last physical event times
        ``time_scale`` (chip s), through the chip's own ``wait``.  Less than ``min_age_step`` is
        accumulated unless ``flush``.  A clock that goes backwards ages nothing.  Returns the
        bench-clock time now, s."""
        now = float(self.clock())
        elapsed = now - self._last_event
        self._last_event = now
        if elapsed > 0 and self.time_scale > 0:
            self._pending_age += elapsed * self.time_scale
        if self._pending_age > 0 and (flush or self._pending_age >= self.min_age_step):
            seconds, self._pending_age = self._pending_age, 0.0
            self.chip.wait(seconds)
        return now

    def _spend(self, seconds: float, sleep: float = 0.0) -> None:
        """An instrument spends ``seconds`` on its present operation: an emulated clock advances
        by them; the host sleeps ``sleep`` (the :attr:`timing` latencies, 0 by default)."""
        if self.emulated:
            self.clock.advance(seconds)
        if sleep:
            time.sleep(sleep)

    def wait(self, seconds: float) -> None:
        """An explicit wait of ``seconds`` (s, >= 0) by a caller in this process, e.g. a test
        standing in for a host's retention wait: an emulated clock advances by it and the chip ages
        (DC levels held meanwhile stress the devices); another clock keeps its own time."""
        seconds = finite_nonnegative(seconds, "wait", "seconds")
        with self.lock:
            self._relay_batch = None
            self._spend(seconds)
            self._settle_dc(change=False)

    @property
    def time_scale(self) -> float:
        """Chip seconds of aging per bench-clock second.  Setting it ages the chip to now at the
        old scale first, so the new one counts from the change."""
        return self._time_scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        scale = check_time_scale(value)
        with self.lock:
            self._age()
            self._time_scale = scale

    def age_chip(self) -> float:
        """Bring the chip's age up to the bench clock now, accumulated time included (e.g. before
        inspecting ``chip.true_conductance``).  Returns the chip's virtual clock, s."""
        with self.lock:
            self._age(flush=True)
            return self.chip.clock

    # ------------------------------------------------------------------------------ wiring
    def add_source(self, name: str) -> SourceState:
        with self.lock:
            return self.sources.setdefault(name, SourceState(name))

    def wire_input(self, matrix: str, inp: str, source: str) -> None:
        """Matrix ``matrix``'s input ``inp`` is wired to ``source`` (a source name or ``GND``)."""
        if source != GROUND:
            self.add_source(source)
        self.inputs[(matrix, str(inp))] = source

    def wire_pin(self, matrix: str, pin: str, line: tuple[str, int]) -> None:
        """Matrix ``matrix``'s output ``pin`` is wired to crossbar line ("row"|"col", index)."""
        kind, index = line
        n = self.chip.shape[0] if kind == "row" else self.chip.shape[1]
        if kind not in ("row", "col") or not 0 <= index < n:
            raise ValueError(f"pin {pin} of {matrix}: no crossbar line {line}")
        self.pins[(matrix, str(pin))] = (kind, int(index))

    # ------------------------------------------------------------------------------ relays
    def set_relay(self, matrix: str, inp: str, pin: str, closed: bool) -> None:
        """Open or close one relay, recording a hot switch if a live source is on either side."""
        key = (matrix, str(inp), str(pin))
        with self.lock:
            if (key in self.closed) == closed:
                return
            live = self._live_sources_at(matrix, str(inp), str(pin))
            self._settle_dc()
            if closed and key not in self.stuck_open:
                self.closed.add(key)
            elif not closed:
                self.closed.discard(key)
            if self._relay_batch != matrix:     # relays of one command operate together
                self._spend(self.times.relay_s, self.timing.relay_s)
            self._relay_batch = matrix
            if live:   # recorded once the relay has moved, so the record shows the state it left
                self._violation(Violation(
                    "hot-switch", f"{matrix} relay {inp}-{pin} {'closed' if closed else 'opened'} "
                                  f"while {', '.join(live)} live"))

    def open_all(self, matrix: str) -> None:
        with self.lock:
            for key in [k for k in self.closed if k[0] == matrix]:
                self.set_relay(*key, closed=False)
            self._relay_batch = None            # the next command's relays operate on their own

    def closed_relays(self, matrix: str) -> list[tuple[str, str]]:
        with self.lock:
            return sorted((i, p) for m, i, p in self.closed if m == matrix)

    def _live_sources_at(self, matrix, inp, pin) -> list[str]:
        names = set()
        src = self.inputs.get((matrix, inp))
        if src and src != GROUND:
            names.add(src)
        line = self.pins.get((matrix, pin))
        if line is not None:
            names |= {s for s in self._sources_on_line(line) if s != GROUND}
        return sorted(n for n in names if self.sources[n].on and self.sources[n].level != 0)

    def _sources_on_line(self, line) -> set[str]:
        out = set()
        for m, i, p in self.closed:
            if self.pins.get((m, p)) == line and (m, i) in self.inputs:
                out.add(self.inputs[(m, i)])
        return out

    # ------------------------------------------------------------------------------ sources
    def set_source(self, name: str, level: float | None = None, on: bool | None = None,
                   compliance: float | None = None) -> None:
        with self.lock:
            self._relay_batch = None
            s = self.add_source(name)
            self._settle_dc()
            if level is not None:
                if abs(level) > self.v_limit:
                    self._violation(Violation("limit", f"{name} level {level:g} V beyond ±{self.v_limit:g} V"))
                s.level = float(level)
            if compliance is not None:
                s.compliance = float(compliance)
            if on is not None:
                s.on = bool(on)
            if level is not None or on is not None:
                self._spend(self.times.settle_s)

    def _settle_dc(self, flush_age: bool = False, change: bool = True) -> None:
        """Age the chip to now (:meth:`_age`, applying accumulated time if ``flush_age``), then
        apply the switching stress of the DC levels held since the last change (bench-clock
        seconds), as one hold of that duration.  Every relay or source change, read and pulse
        starts here; a read (``change`` False) changes no level, so the hold goes on through it."""
        now = self._age(flush=flush_age)
        live = [s for s in self.sources.values() if s.on and s.level != 0]
        if live:
            row_v, col_v = self._line_voltages()
            self._dc_peak = np.fmax(self._dc_peak, _cell_voltages(row_v, col_v))
        if not change:
            return
        if self.dc_stress and live:
            width = max(now - min(s.on_since for s in live), 0.0)
            if width > 0 and not (np.all(np.isnan(row_v)) or np.all(np.isnan(col_v))):
                self.chip.drive_lines(row_v, col_v, width, r_access=self.r_access)  # no closed path: nothing is stressed
        for s in self.sources.values():
            s.on_since = now

    def _line_voltages(self, override: dict[str, float] | None = None):
        """Terminal voltages of every line from the relays and sources; NaN = floating."""
        n_rows, n_cols = self.chip.shape
        v = {"row": np.full(n_rows, np.nan), "col": np.full(n_cols, np.nan)}
        owner: dict[tuple[str, int], str] = {}
        for m, i, p in self.closed:
            line = self.pins.get((m, p))
            src = self.inputs.get((m, i))
            if line is None or src is None:
                continue
            if src == GROUND:
                level = 0.0
            else:
                s = self.sources[src]
                if not s.on and not (override and src in override):
                    continue  # an output that is off is high impedance (a pulse turns it on)
                level = override.get(src, s.level) if override else s.level
            if line in owner and owner[line] != src:
                prev = v[line[0]][line[1]]
                if prev != level:
                    self._violation(Violation("short", f"{line} driven by {owner[line]} and {src}"))
            owner[line] = src
            v[line[0]][line[1]] = level
        return v["row"], v["col"]

    def _lines_of(self, source: str) -> list[tuple[str, int]]:
        return [self.pins[(m, p)] for m, i, p in self.closed
                if self.inputs.get((m, i)) == source and (m, p) in self.pins]

    # ---------------------------------------------------------------------------- measure
    def measure_current(self, source: str) -> float:
        """Current out of ``source``'s HI terminal (A), limited by its compliance; 0 if off."""
        with self.lock:
            self._relay_batch = None
            s = self.add_source(source)
            self._settle_dc(change=False)
            s.tripped = False
            if not s.on:
                return 0.0
            self._spend(self.times.measure_s, self.timing.measure_s)
            current = self._terminal_current(source, self._line_voltages())
            current = float(self.chip.noisy_current(current))
            if abs(current) > s.compliance:
                s.tripped = True
                current = float(np.sign(current) * s.compliance)
            return current

    def _terminal_current(self, source: str, lines) -> float:
        row_v, col_v = lines
        if np.all(np.isnan(row_v)) or np.all(np.isnan(col_v)):
            return 0.0  # no closed path through the array
        sol = self.chip.drive_lines(row_v, col_v, r_access=self.r_access)
        total = 0.0
        for kind, index in sorted(set(self._lines_of(source))):   # a fixed order: the same sum bit for bit
            # row_current: out of the driver into the row; col_current: out of the column into its driver
            total += sol.row_current[0, index] if kind == "row" else -sol.col_current[0, index]
        return total

    def pulse(self, source: str, amplitude: float, width: float, base: float = 0.0,
              together: dict[str, float] | None = None) -> float:
        """``source`` steps from ``base`` to ``amplitude`` for ``width`` s and back.  The array sees
        the pulse through the closed relays; returns the current at the top of the pulse (A).
        ``together``: other sources pulsing at the same time, to their given levels (V), for the
        same width (the two channels of one generator fired by one trigger)."""
        together = dict(together or {})
        with self.lock:
            self._relay_batch = None
            for other in together:
                self.add_source(other)
            s = self.add_source(source)
            self._settle_dc(flush_age=True)   # the devices it writes start their new age exactly
            if abs(amplitude) > self.v_limit:
                self._violation(Violation("limit", f"{source} pulse {amplitude:g} V beyond ±{self.v_limit:g} V"))
            self.pulses += 1
            self._spend(self.times.pulse_overhead_s + width,
                        self.timing.pulse_overhead_s + width if self.timing.pulse_overhead_s else 0.0)
            for other, level in together.items():
                if abs(level) > self.v_limit:
                    self._violation(Violation("limit", f"{other} pulse {level:g} V beyond ±{self.v_limit:g} V"))
            lines = self._line_voltages(override={**together, source: amplitude})
            self._record_write(_cell_voltages(*lines))
            if np.all(np.isnan(lines[0])) or np.all(np.isnan(lines[1])):
                return 0.0
            sol = self.chip.drive_lines(*lines, width=width, r_access=self.r_access)
            # the held levels' hold goes on after the pulse; its width was the pulse's own (above)
            for src in self.sources.values():
                src.on_since = float(self.clock()) - self.times.pulse_overhead_s if self.emulated else src.on_since
            current = 0.0
            for kind, index in sorted(set(self._lines_of(source))):   # a fixed order: the same sum bit for bit
                current += sol.row_current[0, index] if kind == "row" else -sol.col_current[0, index]
            s.tripped = abs(current) > s.compliance
            return float(current)

    def _record_write(self, v_pulse: np.ndarray) -> None:
        """Append the :class:`WriteRecord` of a pulse whose cell voltages are ``v_pulse`` (|V|)."""
        sel = np.unravel_index(int(np.argmax(v_pulse)), v_pulse.shape)
        others = np.ones(v_pulse.shape, bool)
        others[sel] = False
        dc = self._dc_peak.copy()
        dc[sel] = 0.0
        if self._last_selected is not None:
            dc[self._last_selected] = 0.0
        unsel_pulse = float(v_pulse[others].max()) if others.any() else 0.0
        self.writes.append(WriteRecord(int(sel[0]), int(sel[1]), float(v_pulse[sel]),
                                       max(unsel_pulse, float(dc.max())), unsel_pulse,
                                       float(self._dc_peak[sel])))
        self._dc_peak = np.zeros(v_pulse.shape)
        self._last_selected = (int(sel[0]), int(sel[1]))

    def writes_beyond(self, share: float, tol: float = 1e-3, v_read: float = 0.0) -> list[tuple[int, WriteRecord]]:
        """The writes (index, record) that broke a write scheme allowing unselected cells
        ``share`` of the write voltage (1/2 for V/2, 1/3 for V/3), ``tol`` volts of formatting and
        settling allowed: a cell other than the selected one above share·V during the pulse, or in
        the DC states before it above share·max(V, the previous write's V) (those states are the
        previous write's ramp-down or this one's ramp-up) and above ``v_read`` (reads between
        writes put the read voltage on the selected row), or the selected cell above V (above the
        previous write's share in the DC states before it, where it was an unselected cell)."""
        bad = []
        with self.lock:
            for k, w in enumerate(self.writes):
                v_prev = self.writes[k - 1].v_selected if k else 0.0
                if (w.v_unselected_pulse > share * w.v_selected + tol
                        or w.v_unselected > max(share * max(w.v_selected, v_prev), v_read) + tol
                        or w.v_selected_dc > max(w.v_selected, share * v_prev, v_read) + tol):
                    bad.append((k, w))
        return bad

    @property
    def max_unselected(self) -> float:
        """The largest voltage any unselected cell saw in any write so far, V (0 without writes)."""
        with self.lock:
            return max((w.v_unselected for w in self.writes), default=0.0)

    def _violation(self, v: Violation) -> None:
        self.violations.append(v)
        if self.on_violation is not None:
            self.on_violation(v)

    def safety_record(self) -> dict:
        """The bench's safety record, JSON-ready: violations by kind, outputs on, relays closed,
        the largest unselected-cell voltage."""
        with self.lock:
            kinds = ("hot-switch", "short", "limit")
            return {
                "counts": {k: sum(v.kind == k for v in self.violations) for k in kinds},
                "violations": [{"kind": v.kind, "detail": v.detail, "when": v.when} for v in self.violations],
                "outputs_on": sorted(n for n, s in self.sources.items() if s.on),
                "relays_closed": [f"{m}:{i}-{p}" for m, i, p in sorted(self.closed)],
                "max_unselected_cell_v": self.max_unselected,
                "pulses": self.pulses,
            }

    def all_off(self) -> bool:
        """True when every source output is off and every relay open."""
        with self.lock:
            return not self.closed and not any(s.on for s in self.sources.values())


def _cell_voltages(row_v, col_v) -> np.ndarray:
    """|V| across every cell from its line-terminal voltages (0 where a line floats)."""
    v = np.abs(np.asarray(row_v, float)[:, None] - np.asarray(col_v, float)[None, :])
    return np.nan_to_num(v, nan=0.0)
