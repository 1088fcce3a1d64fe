"""The Crossbar interface on a real bench: SMU channels + a switch matrix (a batch of one chip).

Routing for a cell (row r, column c) is static while the algorithm works on that cell, so a tuner's
read–pulse–read sequence changes only source levels, never relays:

* ``drive`` → row r; ``sense`` (0 V) → column c;
* ``bias_rows`` → every other row, ``bias_cols`` → every other column (write schemes V/2, V/3 and
  grounded reads); nothing for ``float``.
* ``pulse`` (optional, a :class:`~instruments.roles.PulseGenerator` such as a 33500B) → row r too:
  it gives the write pulses an SMU cannot (µs); its output is off except while ``drive`` hands it
  the row for one pulse (:meth:`HardwareCrossbar._generator_pulse`).

Reads: biases at 0 V, drive at V_read, the current into ``sense`` is the selected cell's (the
grounded-unselected read); the ``isolate`` scheme (if the station lists it) holds ``bias_cols`` at
V_read during the read, so no other cell of the selected row or column sees a voltage.  Matrix-vector products drive one row at a time and sum the measured
column currents (superposition).

Writes (:func:`write_levels`) use the scheme's levels shifted so that the drive idles at 0 V and
every intermediate state is safe *whatever order* the instruments apply their changes in.  A V/2
write of V keeps every unselected line at 0 V, holds the selected column (``sense``) at −V/2 and
pulses the selected row (``drive``) from 0 to +V/2; a V/3 write holds the unselected columns
(``bias_cols``) at +V/3, the selected column at −V/3, the unselected rows at 0 V and pulses the row
to +2V/3.  The selected cell sees V during the pulse; with any subset of the held levels applied
(while they are set up and taken down, in any order) no unselected cell sees more than V/2 (V/3)
and the selected one no more than V/2 (V/3).  The textbook levels (unselected lines at V/2, or rows V/3 and columns 2V/3,
with the drive at 0 V until the pulse) put −2V/3 across the selected row's cells under V/3 for as
long as the bias is held — which disturbed 15 of 16 cells on the mock bench.  Held levels are
confirmed (one query per instrument other than the drive's) before the pulse and removed after it.

Safety, enforced here and proved by the mock-bench tests:

* limits are checked by :class:`~programming.crossbar.Crossbar` before anything is written, and
  the station's compliance is set on every channel before its output is enabled;
* relays change only with every output off (:meth:`_outputs_off` first): no hot switching;
* every exception, timeout or Ctrl-C inside an operation — and :meth:`close` — turns every output
  off and opens every relay (each step attempted even if another fails);
* a compliance trip or an instrument error-queue entry raises :class:`InstrumentError`.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import replace

import numpy as np

from programming.crossbar import (Crossbar, PulseResult, ReadResult, ReadScheme, SafetyLimits, WriteScheme,
                                  parse_write_scheme)

from .base import short_reason
from .limits import limits_for
from .roles import InstrumentConnectionError, InstrumentError, InstrumentTimeout
from .safe_state import SAFE_STATE_BUDGET_S, SafeSequence, SafeStateReport, deferred_signals
from .station import DRIVERS, PULSE_COL_ROLE, PULSE_ROLE, PULSE_ROLES, ROLES, Station


def open_instruments(station: Station) -> dict:
    """Connect every instrument of the station (no output is touched).  A refused or absent
    connection raises :class:`InstrumentConnectionError` naming the instrument and its resource."""
    drivers = {}
    try:
        for name, spec in station.instruments.items():
            module, cls, _ = DRIVERS[spec.driver]
            klass = getattr(importlib.import_module(module), cls)
            try:
                drv = klass(spec.resource, name=f"{name} ({spec.driver})", timeout_ms=spec.timeout_ms)
            except Exception as exc:  # noqa: BLE001 - pyvisa, pyserial and socket errors alike
                raise InstrumentConnectionError(
                    f"station {station.name}: [instruments.{name}] cannot connect to resource "
                    f"{spec.resource!r} ({short_reason(exc)})") from exc
            drv.resource_name = spec.resource
            drivers[name] = drv
    except BaseException:
        close_instruments(drivers)
        raise
    return drivers


def verify_identities(drivers: dict, station: Station) -> None:
    """Ask every instrument ``*IDN?`` (nothing else is sent first) and refuse the station when one
    answers with an identity that does not contain the file's ``identity``: a wrong instrument
    at a resource would receive commands in a dialect it may act on differently."""
    for name, spec in station.instruments.items():
        ident = drivers[name].identity()
        if spec.identity.lower() not in ident.lower():
            raise InstrumentError(f"station {station.name}: [instruments.{name}] identity {spec.identity!r} does "
                                  f"not match the instrument at {spec.resource} ({ident[:80]!r}); refusing to run")


def close_instruments(drivers: dict) -> None:
    for drv in drivers.values():
        try:
            drv.adapter.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def channel(drivers: dict, station: Station, spec: str):
    """The SourceChannel object for ``"instrument.channel"``."""
    inst, _, ch = spec.partition(".")
    attr = DRIVERS[station.instruments[inst].driver][2][ch]
    return getattr(drivers[inst], attr) if attr else drivers[inst]


def driver_class(station: Station, name: str) -> type:
    """The driver class of instrument ``name`` of the station (imported, nothing connected)."""
    module, cls, _ = DRIVERS[station.instruments[name].driver]
    return getattr(importlib.import_module(module), cls)


def instrument_limits(station: Station, name: str):
    """What instrument ``name`` can do: its driver's record for the model the station names in
    ``identity`` (:func:`instruments.limits.limits_for`; the family's most restrictive model when
    the identity names none)."""
    return limits_for(driver_class(station, name), station.instruments[name].identity)


def write_instrument(station: Station) -> str:
    """The instrument that gives the write pulses: the pulse generator when the station routes
    one, else the drive channel's SMU."""
    return station.channel_of("pulse" if "pulse" in station.roles else "drive")[0]


def station_limits(station: Station) -> SafetyLimits:
    """The limits a :class:`HardwareCrossbar` on ``station`` enforces: the station file's, narrowed
    to what its instruments can do (their drivers' ``MODEL_LIMITS``, from the manuals):

    * pulse widths to the write instrument's (:func:`write_instrument`): 100 µs – 10 s on a 2600B,
      50 µs – 100 ks on a B2900, 16 ns – 1000 ks on a 33500B; a 2450 has no pulse mode (its
      pulses are DC steps, not narrowed);
    * ``v_max`` to the write instrument's and the matrix's voltage, ``v_read_max`` to the drive
      channel's; the compliance must be one every SMU of the routing can set.

    A station file that allows 1 µs pulses on a 2636B therefore refuses them before anything is
    written, instead of failing in the driver halfway through a job.  Needs no connection;
    ValueError names the station, the instrument and the document when nothing is left."""
    lim = station.limits
    where = f"station {station.name}"
    writer = write_instrument(station)
    w = instrument_limits(station, writer)
    w_min, w_max = lim.width_min, lim.width_max
    if w.pulse_width is not None:
        lo, hi = w.pulse_width
        w_min, w_max = max(w_min, lo), min(w_max, hi)
        if w_min > w_max:
            raise ValueError(f"{where}: [limits] pulse widths {lim.width_min:g}..{lim.width_max:g} s and the "
                             f"write instrument {writer} ({w.model})'s {lo:g}..{hi:g} s do not overlap "
                             f"({w.document})")
    matrix = instrument_limits(station, station.matrix)
    v_max = min(lim.v_max, abs(w.voltage[0]), w.voltage[1], matrix.voltage_max)
    drive = instrument_limits(station, station.channel_of("drive")[0])
    v_read_max = min(lim.v_read_max, drive.voltage[1], matrix.voltage_max)
    for role in ROLES:
        if role in station.roles:
            inst = station.channel_of(role)[0]
            try:
                instrument_limits(station, inst).check_compliance(lim.i_compliance)
            except ValueError as exc:
                raise ValueError(f"{where}: [limits] i_compliance: {inst} {exc}") from None
    narrowed = dict(width_min=w_min, width_max=w_max, v_max=v_max, v_read_max=v_read_max)
    if all(getattr(lim, k) == v for k, v in narrowed.items()):
        return lim
    return replace(lim, **narrowed)


def check_station(station: Station) -> list[dict]:
    """Connect, read identities and error queues, source nothing.  One dict per instrument:
    name, driver, resource, identity, expected, ok, errors."""
    drivers = open_instruments(station)
    report = []
    try:
        for name, spec in station.instruments.items():
            drv = drivers[name]
            entry = {"name": name, "driver": spec.driver, "resource": spec.resource, "expected": spec.identity}
            try:
                entry["identity"] = drv.identity()
                entry["errors"] = drv.drain_errors()
                entry["ok"] = spec.identity.lower() in entry["identity"].lower() and not entry["errors"]
            except (InstrumentTimeout, OSError, ValueError) as exc:
                entry.update(identity=None, errors=[], ok=False, problem=str(exc))
            report.append(entry)
    finally:
        close_instruments(drivers)
    return report


class HardwareCrossbar(Crossbar):
    """One crossbar on a bench described by a :class:`Station` (``n_chips`` = 1).

    Use it as a context manager; :meth:`close` leaves every output off and every relay open.
    """

    preferred_parallel = 1
    #: longest the safe-state sequence keeps starting steps, s
    safe_state_budget_s = SAFE_STATE_BUDGET_S

    def __init__(self, station: Station, drivers: dict | None = None):
        self.station = station
        self.shape = (station.rows, station.cols)
        self.read_schemes = station.read_schemes
        self.write_schemes = station.write_schemes
        self.n_chips = 1
        self.limits = station_limits(station)
        self.v_read = station.v_read
        self.drivers = drivers if drivers is not None else open_instruments(station)
        try:
            verify_identities(self.drivers, station)   # before any command that acts
        except BaseException:
            close_instruments(self.drivers)
            raise
        self.matrix = self.drivers[station.matrix]
        self.ch = {role: channel(self.drivers, station, spec) for role, spec in station.roles.items()
                   if role not in PULSE_ROLES}
        self._sources = list({id(c): c for c in self.ch.values()}.values())
        #: the pulse generator giving the write pulses (a PulseGenerator), or None: drive pulses
        self.pulser = (channel(self.drivers, station, station.roles[PULSE_ROLE])
                       if PULSE_ROLE in station.roles else None)
        #: the generator's other channel on the selected column (the column's half of a write), or None
        self.pulser_col = (channel(self.drivers, station, station.roles[PULSE_COL_ROLE])
                           if PULSE_COL_ROLE in station.roles else None)
        self._pulsers = [p for p in (self.pulser, self.pulser_col) if p is not None]
        self._outputs = self._sources + self._pulsers
        #: ("instrument.channel", channel) of every source channel in use, once each
        self._source_specs = list({id(c): (station.roles[role], c) for role, c in self.ch.items()}.values())
        for prole, p in ((PULSE_ROLE, self.pulser), (PULSE_COL_ROLE, self.pulser_col)):
            if p is not None:
                self._source_specs.append((station.roles[prole], p))
        self.safe_report: SafeStateReport | None = None
        self._routed: tuple | None = None
        self._closed = False
        self._last_g: dict[tuple[int, int], float] = {}
        self._bias_level: dict[int, float] = {}
        #: the drive's return to 0 V after a read, written but not yet confirmed by a query
        self._drive_unconfirmed = False
        self.round_trips = 0
        try:
            self._safe_state()
            for c in self._sources:
                c.setup(station.limits.i_compliance, station.nplc)
            for p in self._pulsers:
                p.setup()
            self._check_errors()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------ safety
    def _attempt_each(self, steps) -> None:
        """Call every step even if an earlier one fails (the bench must end up as safe as it can),
        forget the routed cell, then raise the first failure."""
        errors = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep making the bench safe
                errors.append(exc)
        self._routed = None
        if errors:
            raise errors[0]

    def _outputs_off(self) -> None:
        self._attempt_each([c.disable for c in self._outputs])

    def _safe_state(self) -> None:
        """Every output off, then every relay open (in that order: no hot switching), each
        confirmed by querying the instrument; signals are held until it is over and it is
        bounded in time (:mod:`instruments.safe_state`).  What was confirmed, and what could not
        be, is left in :attr:`safe_report`; the first failure is raised afterwards.

        Relays are not switched while an instrument reports an output still on (that would be
        a hot switch); they are opened when an instrument cannot be asked (connection lost):
        disconnecting the chip from an instrument nobody controls any more is the safer side."""
        with deferred_signals():
            seq = SafeSequence(self.safe_state_budget_s)
            groups: dict[str, list] = {}
            for spec, ch in self._source_specs:
                groups.setdefault(spec.partition(".")[0], []).append((spec.partition(".")[2], ch))
            for inst, chans in groups.items():
                for _, ch in chans:
                    seq.attempt(inst, ch.disable)
            live_somewhere = False
            for inst, chans in groups.items():
                what = f"{inst} outputs off ({', '.join(n for n, _ in chans)})"
                live, reason = [], ""
                for name, ch in chans:
                    ran, result = seq.attempt(inst, ch.output_enabled)
                    if not ran:
                        reason = result
                        break
                    if result:
                        live.append(name)
                live_somewhere |= bool(live)
                seq.confirm(what, not (reason or live), reason or f"still on: {', '.join(live)}")
            m = self.station.matrix
            what = f"{m} relays open"
            if live_somewhere:
                seq.confirm(what, False, "not switched (an output is still on)")
            else:
                seq.attempt(m, self.matrix.open_all)
                ran, result = seq.attempt(m, self.matrix.closed)
                seq.confirm(what, ran and not result,
                            result if not ran else f"still closed: {', '.join(f'{i}-{p}' for i, p in sorted(result)[:5])}")
        self._routed = None
        self._drive_unconfirmed = False     # turned off and asked (or it cannot be asked)
        self.safe_report = seq.report
        if not seq.report.ok:
            if seq.report.errors:
                raise seq.report.errors[0]
            raise InstrumentError("safe state not confirmed: " + "; ".join(seq.report.unconfirmed))

    def _verify_off(self) -> None:
        live = [ch.name for ch in self._outputs if ch.output_enabled()]
        if live:
            raise InstrumentError(f"outputs still on after switching them off: {', '.join(live)}")

    def close(self) -> None:
        if self._closed:
            return
        with deferred_signals():
            try:
                self._safe_state()
            finally:
                self._closed = True
                close_instruments(self.drivers)

    def bench_time(self) -> float | None:
        """The bench's time, s: the drive instrument's timer where its driver reads one (a 2600B's
        ``timer.measure.t()``: on the mock bench the emulated instrument time the chip ages by,
        on a real bench the instrument's own), one round trip; else None."""
        inst = getattr(self.ch["drive"], "parent", self.ch["drive"])
        if not hasattr(inst, "elapsed_time"):
            return None
        self.round_trips += 1
        return float(self._guarded(inst.elapsed_time))

    def _wait(self, seconds: float) -> None:
        """Between operations the cell stays routed with outputs on at 0 V: put the bench in its
        safe idle state (outputs off and confirmed, relays open and confirmed) before sleeping.
        The next operation routes again."""
        if not self._closed:
            self._guarded(self._safe_state)
        time.sleep(seconds)

    def _guarded(self, fn, *args):
        """Run one bench operation; on any exception or Ctrl-C make the bench safe first."""
        try:
            return fn(*args)
        except BaseException:
            try:
                self._safe_state()
            except Exception:  # noqa: BLE001 - the original error matters more (safe_report keeps the rest)
                pass
            raise

    def _check_errors(self) -> None:
        """Drain the error queues of the instruments in use; any entry raises InstrumentError."""
        problems = []
        in_use = {self.station.matrix} | {spec.partition(".")[0] for spec in self.station.roles.values()}
        for name, drv in self.drivers.items():
            if name not in in_use:
                continue
            errs = drv.drain_errors()
            if errs:
                problems.append(f"{name}: " + "; ".join(f"{code} {msg}" for code, msg in errs))
        if problems:
            raise InstrumentError("instrument error queue: " + " | ".join(problems))

    # ----------------------------------------------------------------------------- routing
    def _connections(self, r: int, c: int, bias) -> list[tuple[str, str]]:
        st = self.station
        if bias == "on-instrument":
            # drive on the row, ground on the column, the sense channel biases every other line
            other = st.inputs[st.roles["sense"]]
            return ([(st.inputs[st.roles["drive"]], st.row_pins[r]), (st.ground, st.col_pins[c])]
                    + [(other, p) for i, p in enumerate(st.row_pins) if i != r]
                    + [(other, p) for j, p in enumerate(st.col_pins) if j != c])
        conns = [(st.inputs[st.roles["drive"]], st.row_pins[r]), (st.inputs[st.roles["sense"]], st.col_pins[c])]
        if PULSE_ROLE in st.roles:          # the generator shares the row (output off until a write)
            conns.append((st.inputs[st.roles[PULSE_ROLE]], st.row_pins[r]))
        if PULSE_COL_ROLE in st.roles:      # and its other channel the column, with sense
            conns.append((st.inputs[st.roles[PULSE_COL_ROLE]], st.col_pins[c]))
        if bias and "bias_rows" in st.roles:
            rows_in = st.inputs[st.roles["bias_rows"]]
            cols_in = st.inputs[st.roles.get("bias_cols", st.roles["bias_rows"])]
            conns += [(rows_in, p) for i, p in enumerate(st.row_pins) if i != r]
            conns += [(cols_in, p) for j, p in enumerate(st.col_pins) if j != c]
        return conns

    def _route(self, r: int, c: int, bias: bool) -> None:
        key = (r, c, bias)
        if self._routed == key:
            return
        self._outputs_off()                 # never switch a live relay: off, and confirmed off
        self._verify_off()                  # (a drive left at a read level went to 0 V before it went off)
        self._drive_unconfirmed = False
        self.matrix.open_all()
        conns = self._connections(r, c, bias)
        self.matrix.close(conns)
        closed = self.matrix.closed()
        self.round_trips += 1
        missing = [f"{i}-{p}" for i, p in conns if (i, p) not in closed]
        if missing:
            raise InstrumentError(f"{self.station.matrix}: relays did not close: {', '.join(missing[:5])}")
        self._check_errors()
        for ch in self._sources:
            ch.set_level(0.0)
            ch.enable()
        self._sync(self._sources)
        self._drive_unconfirmed = False
        self._bias_level = {id(ch): 0.0 for ch in self._sources}
        self._routed = key

    def _sync(self, channels) -> None:
        """Instruments process writes on their own; a query to each instrument involved makes
        sure its earlier writes took effect before another instrument measures or pulses."""
        for ch in channels:
            if not ch.output_enabled():
                raise InstrumentError(f"{ch.name}: output is off after it was enabled")
            self.round_trips += 1

    def _confirm_drive(self) -> None:
        """Confirm the drive's return to 0 V after a read (one query) before another instrument
        changes a level: instruments process their writes on their own, so without it the next
        write's held level could reach the array while the drive is still at V_read, and which
        came first would depend on the host's timing.  (Routing needs no such query: every output
        goes off, read levels at most, and is confirmed off before any relay moves.)"""
        if self._drive_unconfirmed:
            self._drive_unconfirmed = False
            self._sync([self.ch["drive"]])

    def _bias(self, levels: dict[str, float]) -> None:
        """Set the held levels of the roles in ``levels`` (others: 0 V) on the sense and bias
        channels, one instrument at a time: its changed channels set, then confirmed with one
        query to it, before the next instrument's are set (the drive's return to 0 V after a read
        first, :meth:`_confirm_drive`).  Instruments process their messages on their own: set
        together and confirmed after, two instruments' changes (V/3's sense on the 2636B and
        column bias on the B2902A) reached the array in an order that depended on the host's
        timing, and so did the level the array held alone between them (the mock bench's 2636B
        V/3 host row gave 222-241 round trips per cell on seed 1 over six runs).  The same queries,
        one per instrument whose levels changed; every intermediate state is a subset of the
        levels (safe by :func:`write_levels`)."""
        groups: list[list] = []     # [(channel, level), ...] per instrument, in role order
        for role in ("sense", "bias_rows", "bias_cols"):
            ch = self.ch.get(role)
            if ch is None or (role == "bias_cols" and ch is self.ch.get("bias_rows") and role not in levels):
                continue
            level = levels.get(role, 0.0)
            if self._bias_level.get(id(ch)) != level:
                group = next((g for g in groups if _same_instrument(g[0][0], ch)), None)
                if group is None:
                    groups.append(group := [])
                group.append((ch, level))
        for group in groups:
            self._confirm_drive()
            for ch, level in group:
                ch.set_level(level)
                self._bias_level[id(ch)] = level
            self._sync([group[0][0]])      # one query per instrument: its writes are processed in order

    # --------------------------------------------------------------------------- operations
    def _read(self, rows, cols, v_read, scheme, active) -> ReadResult:
        current = np.full(rows.shape, np.nan)
        duration = np.zeros(rows.shape)
        for k in range(rows.shape[1]):
            if active[0, k]:
                t0 = time.perf_counter()
                current[0, k] = self._guarded(self._read_cell, int(rows[0, k]), int(cols[0, k]), v_read, scheme)
                duration[0, k] = time.perf_counter() - t0
        return ReadResult(current / v_read, current, duration)

    def _read_cell(self, r, c, v, scheme) -> float:
        self._route(r, c, bias=scheme is not ReadScheme.FLOAT)
        # isolate: the unselected columns held at the read voltage (the unselected rows stay at the
        # sense potential, 0 V), confirmed before the row is driven; every level is a read level
        self._bias({"bias_cols": v} if scheme is ReadScheme.ISOLATE else {})
        self.ch["drive"].set_level(v)
        if not _same_instrument(self.ch["drive"], self.ch["sense"]):
            self._sync([self.ch["drive"]])  # the level must be on before another instrument measures
            self._drive_unconfirmed = False
        i_sense = self.ch["sense"].measure_current()
        self.round_trips += 1
        self.ch["drive"].set_level(0.0)     # confirmed by the next query to its instrument
        self._drive_unconfirmed = not _same_instrument(self.ch["drive"], self.ch["sense"])
        if scheme is ReadScheme.ISOLATE:
            self._bias({})                  # the unselected columns back to 0 V (confirmed)
        if self.ch["sense"].compliance_tripped():
            raise InstrumentError(f"{self.station.roles['sense']}: compliance tripped reading cell ({r}, {c}) "
                                  f"at {v} V")
        self.round_trips += 1
        current = -i_sense  # the cell's current flows into the sense channel's HI terminal
        self._last_g[(r, c)] = current / v
        return current

    def _pulse(self, rows, cols, amplitude, width, scheme, active) -> PulseResult:
        self.station.check_write_scheme(scheme, "write scheme")   # before anything is written
        energy = np.zeros(rows.shape)
        duration = np.zeros(rows.shape)
        tripped = np.zeros(rows.shape, bool)
        for k in range(rows.shape[1]):
            if active[0, k]:
                t0 = time.perf_counter()
                tripped[0, k] = self._guarded(self._pulse_cell, int(rows[0, k]), int(cols[0, k]),
                                              float(amplitude[0, k]), float(width[0, k]), scheme)
                duration[0, k] = time.perf_counter() - t0
                # the SMUs do not report the current during a µs pulse: estimate the selected
                # device's V·I·t as V²·G·t with G its last reading (half-selected cells not included)
                g = self._last_g.get((int(rows[0, k]), int(cols[0, k])), 0.0)
                energy[0, k] = amplitude[0, k] ** 2 * g * width[0, k]
        return PulseResult(energy, duration, tripped)

    def _pulse_cell(self, r, c, v, w, scheme) -> bool:
        biased = scheme is not WriteScheme.FLOAT
        self._route(r, c, bias=biased)
        pulse_v, held = write_levels(scheme if biased and "bias_rows" in self.ch else WriteScheme.FLOAT, v)
        if "bias_cols" in held and self.ch.get("bias_cols", self.ch["bias_rows"]) is self.ch["bias_rows"]:
            raise ValueError(f"station {self.station.name}: V/3 writes need separate bias_rows and bias_cols "
                             f"channels")
        col_v = 0.0
        if self.pulser is not None:
            self.pulser.arm(pulse_v, w)     # checked against the generator's limits, output off
            if self.pulser_col is not None and held.get("sense", 0.0) != 0.0:
                col_v = held.pop("sense")   # the column's half, pulsed with the row's: no hold
                self.pulser_col.arm(col_v, w)
        drive = self.ch["drive"]
        if self.pulser is not None:
            return self._generator_pulse(drive, held, col_v != 0.0)
        try:
            self._bias(held)
            try:
                drive.pulse(pulse_v, w)
            except NotImplementedError:
                drive.set_level(pulse_v)    # a DC source: the pulse lasts as long as the bus allows
                drive.set_level(0.0)
            return bool(drive.compliance_tripped())
        finally:
            self._bias({})

    def _generator_pulse(self, drive, held: dict[str, float], column: bool) -> bool:
        """The armed pulse from the generator, with the SMUs handed over so that no line is ever
        floating or driven by two levels, and no level but 0 V is held outside the pulse:

        1. generator on (idling at 0 V, as drive is) — and its column channel, when ``column`` —
           confirmed;
        2. drive off (and sense off, when ``column``), confirmed: the generator holds the row (and
           the column) at 0 V;
        3. the held levels (``held``: V/3's +V/3 on the unselected columns; none for V/2 with a
           column channel) set and confirmed — only now, so that they are held for the pulse and
           its confirmation alone;
        4. one trigger: the row's pulse (and the column's, at once), confirmed over;
        5. held levels back to 0 V (confirmed), drive (and sense) back on at 0 V (confirmed),
           generator off (confirmed).

        Every intermediate state puts at most the scheme's share of V on an unselected cell (the
        levels of :func:`write_levels`, applied in any subset).  A generator has no current limit:
        nothing trips (returns False)."""
        gens = [self.pulser] + ([self.pulser_col] if column else [])
        smus = [drive] + ([self.ch["sense"]] if column else [])
        for gen in gens:
            self._set_output(gen, True, "output is off after it was enabled")
        for smu in smus:
            self._set_output(smu, False, "output still on before the generator's pulse")
            self._bias_level[id(smu)] = 0.0
        try:
            self._bias(held)
            self.pulser.fire()              # one *TRG fires both channels of the generator
        finally:
            self._bias({})
        for smu in smus:
            smu.set_level(0.0)
            self._set_output(smu, True, "output is off after the generator's pulse")
        for gen in gens:
            self._set_output(gen, False, "output still on after its pulse")
        self.round_trips += 3 + 2 * len(gens) + 2 * len(smus) - 2
        return False

    @staticmethod
    def _set_output(instr, on: bool, message: str) -> None:
        """Switch ``instr``'s output on (``on``) or off and confirm it with a query; if the query
        disagrees, InstrumentError naming the instrument and ``message``."""
        if on:
            instr.enable()
        else:
            instr.disable()
        if bool(instr.output_enabled()) != on:
            raise InstrumentError(f"{instr.name}: {message}")

    def write_verify_on_instrument(self, r: int, c: int, target: float, config=None) -> dict:
        """Tune cell (r, c) with the write-verify loop running *on* a Keithley 2600B: one call,
        one reply with the whole trace (see ``instruments/tsp/xbar_write_verify.lua``).

        Needs ``drive`` and ``sense`` on the same 2600B.  With a ``ground`` input in the station's
        routing, the row goes to ``drive`` (which sources and measures), the column to ground and
        every other line to ``sense``, which the script holds at V_read during reads (the row's
        other cells see 0 V: an exact read) and at half the amplitude during pulses (V/2 writes).
        Without ``ground`` only the row and column are routed and the other lines float (sneak
        paths in reads, no half-select biasing).
        """
        from programming.tuner import TunerConfig

        cfg = config or TunerConfig()
        cfg = replace(cfg, v_read=cfg.v_read or self.v_read)   # None: the station's read voltage
        cfg.check_limits(self.on_instrument_limits)
        lo, hi = self.programming_window
        if not lo <= target <= hi:
            raise ValueError(f"target {target * 1e6:.1f} µS is outside the programming window "
                             f"{lo * 1e6:g}–{hi * 1e6:g} µS")
        drive, sense = self.ch["drive"], self.ch["sense"]
        inst = getattr(drive, "parent", None)
        if inst is None or getattr(sense, "parent", None) is not inst or not hasattr(inst, "write_verify"):
            raise ValueError("on-instrument write-verify needs drive and sense channels on one Keithley 2600B")
        return self._guarded(self._write_verify_cell, inst, drive, sense, r, c, target, cfg)

    def _write_verify_cell(self, inst, drive, sense, r, c, target, cfg) -> dict:
        if self.station.ground is not None:
            self._route(r, c, bias="on-instrument")
            result = inst.write_verify(drive, target, cfg, bias=sense)
        else:
            self._route(r, c, bias=False)
            result = inst.write_verify(drive, target, cfg, sense=sense)
        self.round_trips += 1
        self._last_g[(r, c)] = result["final"]
        return result

    # ------------------------------------------------- the on-instrument loop over TSP-Link
    @property
    def on_instrument_limits(self) -> SafetyLimits:
        """The limits of the on-instrument loop's writes: the 2600B's SMU gives them, never a pulse
        generator (:meth:`~instruments.station.Station.without_pulse_generator`): on a station with
        a generator, pulse widths from the 2600B's 100 µs, not the generator's 16 ns."""
        return station_limits(self.station.without_pulse_generator())

    def on_instrument_problem(self, write_scheme: str | None = None) -> str | None:
        """Why this bench cannot run the on-instrument loop with ``write_scheme`` (default the
        station's) (one line), or None."""
        return self.station.on_instrument_problem(write_scheme)

    def tsplink_layout(self) -> dict[str, list[str]]:
        """The 707B channels the 2600B's script closes (``instruments.keithley707b.channel_name``):
        ``drive`` (the drive SMU's input to each row), ``sense`` (the sense SMU's input to each
        column), ``grow`` / ``gcol`` (the ground input to each row / column: every unselected
        line is grounded, as in the host loop's reads and shifted V/2 writes)."""
        from .keithley707b import channel_name

        st = self.station
        drive_in, sense_in = st.inputs[st.roles["drive"]], st.inputs[st.roles["sense"]]
        return {"drive": [channel_name(drive_in, p) for p in st.row_pins],
                "sense": [channel_name(sense_in, p) for p in st.col_pins],
                "grow": [channel_name(st.ground, p) for p in st.row_pins],
                "gcol": [channel_name(st.ground, p) for p in st.col_pins]}

    def _on_instrument(self):
        """(2600B, drive SMU, bias SMU, matrix node, layout), checking the station and, once per
        crossbar, bringing TSP-Link up and putting the bench in its safe state (every output off
        and every relay open, confirmed by queries) before the script takes over the routing."""
        problem = self.station.on_instrument_problem()
        if problem:
            raise ValueError(problem)
        drive, sense = self.ch["drive"], self.ch["sense"]
        inst = drive.parent
        node = self.station.instruments[self.station.matrix].tsplink_node
        if getattr(self, "_tsplink", None) is None:
            model = inst.tsplink_node_model(node)
            self.round_trips += 3
            if "707" not in model and "708" not in model:
                raise InstrumentError(f"{self.station.name}: TSP-Link node {node} is a {model[:30]!r}, not the "
                                      f"707B matrix the station names")
            self._safe_state()       # the script starts from everything off and open, confirmed
            self._tsplink = (inst, drive, sense, node, self.tsplink_layout())
        return self._tsplink

    def tune_on_instrument(self, cells, targets, config=None, readings=None) -> list[dict]:
        """Tune ``cells`` ((row, col) pairs) to ``targets`` (S) with the write-verify loop AND the
        routing on the 2600B: one call, one reply for the whole list (``xbar_tune`` in
        ``instruments/tsp/xbar_write_verify.lua``; the 707B is the 2600B's TSP-Link node).  The
        script switches relays only with both SMUs off and confirmed off, reads the closed
        channels back before an output goes on, and ends — also on any error — with the outputs
        off and every relay open, confirmed.  Settings from ``config`` (a TunerConfig) as
        :meth:`write_verify_on_instrument`; writes with its ``write_scheme``: V/2, or V/3 with
        the ``bias_cols`` channel (a B2900 on the LAN, :meth:`Station.tspnet_source`) holding the
        unselected columns, set by the script over TSP-Net (the host does not touch it meanwhile).  ``readings`` (S, optional): what the script
        aims each cell's raw reading at instead of its target (the tuner's IR-drop mapping of the
        targets, which must lie in the programming window)."""
        from programming.tuner import TunerConfig

        cfg = config or TunerConfig()
        cfg = replace(cfg, v_read=cfg.v_read or self.v_read)
        cfg.check_limits(self.on_instrument_limits)
        lo, hi = self.programming_window
        for t in targets:
            if not lo <= t <= hi:
                raise ValueError(f"target {t * 1e6:.1f} µS is outside the programming window "
                                 f"{lo * 1e6:g}–{hi * 1e6:g} µS")
        self._check_cell_list(cells)
        problem = self.station.on_instrument_problem(cfg.write_scheme)
        if problem:
            raise ValueError(problem)
        inst, drive, sense, node, layout = self._on_instrument()
        aims = targets if readings is None else readings
        v3 = None
        if parse_write_scheme(cfg.write_scheme) is WriteScheme.V3:
            from .keithley707b import channel_name

            st = self.station
            address, port, ch = st.tspnet_source()
            v3 = (address, port, ch, [channel_name(st.inputs[st.roles["bias_cols"]], p) for p in st.col_pins])
        results = self._guarded(lambda: inst.tune_cells(drive, sense, node, layout, cells, aims, cfg, v3=v3))
        self._routed = None
        self.round_trips += 1
        for (r, c), res in zip(cells, results):
            self._last_g[(int(r), int(c))] = res["final"]
        return results

    def read_on_instrument(self, cells, v_read: float | None = None, repeats: int = 1) -> np.ndarray:
        """Read ``cells`` (each ``repeats`` times, the mean kept) with the routing on the 2600B:
        one call, one reply (``xbar_read``).  Conductances, S.  V_read is checked against the
        station's limits before anything is sent."""
        v = float(v_read or self.v_read)
        if not 0 < abs(v) <= self.limits.v_read_max:
            raise ValueError(f"read voltage {v} V is outside (0, {self.limits.v_read_max}] V")
        self._check_cell_list(cells)
        inst, drive, sense, node, layout = self._on_instrument()
        g = self._guarded(inst.read_cells, drive, sense, node, layout, cells, v, repeats)
        self._routed = None
        self.round_trips += 1
        for (r, c), value in zip(cells, g):
            self._last_g[(int(r), int(c))] = value
        return np.asarray(g, float)

    def _check_cell_list(self, cells) -> None:
        for r, c in cells:
            if not (0 <= int(r) < self.shape[0] and 0 <= int(c) < self.shape[1]):
                raise ValueError(f"cell ({r}, {c}) is outside the {self.shape[0]}x{self.shape[1]} crossbar")

    def _read_array(self, v_read, scheme) -> np.ndarray:
        n_rows, n_cols = self.shape
        rr, cc = np.indices(self.shape)
        res = self._read(rr.reshape(1, -1), cc.reshape(1, -1), v_read, scheme, np.ones((1, rr.size), bool))
        return res.conductance.reshape(1, n_rows, n_cols)

    def _mvm(self, v_rows) -> np.ndarray:
        """Drive rows, measure columns — by superposition, since a bench has one drive channel:
        for every row and every distinct non-zero input level it carries, drive that row alone at
        that level (all other lines grounded) and measure each column; a product is the sum of
        its rows' column currents.  Exact for grounded columns on ideal lines, with the I-V
        nonlinearity measured at the actual input voltages.  Costs rows × levels × columns reads."""
        v = np.asarray(v_rows, float)
        n = 1 if v.ndim == 1 else v.shape[-2]
        return self._mvm_needed(v, np.ones((1, n, self.shape[1]), bool))

    def _mvm_needed(self, v_rows, need) -> np.ndarray:
        """:meth:`_mvm` measuring only the cells that feed a needed current: cell (i, j) at level
        V when some input vector drives row i at V and needs column j.  The cell is routed once
        and measured at each of its levels in turn (relays change only between cells)."""
        v = np.asarray(v_rows, float)
        flat = (v[0] if v.ndim == 3 else v).reshape(-1, self.shape[0])
        need = np.asarray(need, bool).reshape(-1, self.shape[1])      # (N, cols): one chip
        out = np.zeros((flat.shape[0], self.shape[1]))
        for i in range(self.shape[0]):
            driven = flat[:, i] != 0
            if not driven.any():
                continue
            levels, which = np.unique(flat[driven, i], return_inverse=True)
            vectors = np.flatnonzero(driven)
            for j in np.flatnonzero(need[driven].any(axis=0)):
                for k, level in enumerate(levels):
                    sel = vectors[which == k]
                    if need[sel, j].any():
                        out[sel, j] += self._guarded(self._read_cell, i, int(j), float(level), ReadScheme.GROUND)
        out[~need] = np.nan
        if v.ndim == 1:
            return out[:1]
        return out[None]


def write_levels(scheme: WriteScheme, v: float) -> tuple[float, dict[str, float]]:
    """The drive's pulse amplitude and the held levels (V, by role; missing roles at 0 V) of a
    write that puts ``v`` across the selected cell (see the module docstring):

    * V/2: pulse +V/2, ``sense`` (selected column) at −V/2; every unselected line at 0 V;
    * V/3: pulse +2V/3, ``sense`` at −V/3, ``bias_cols`` at +V/3, ``bias_rows`` at 0 V;
    * float: pulse V, ``sense`` at 0 V (the other lines are not connected).

    Unselected cells see at most |v|/2 (|v|/3) in every combination of applied levels."""
    if scheme is WriteScheme.V2:
        return v / 2, {"sense": -v / 2}
    if scheme is WriteScheme.V3:
        return 2 * v / 3, {"sense": -v / 3, "bias_cols": v / 3}
    return v, {}


def _same_instrument(a, b) -> bool:
    """Two channels of one instrument share its connection: one query syncs both."""
    def owner(ch):
        return getattr(ch, "parent", None) or getattr(ch, "instrument", None) or ch

    return owner(a) is owner(b)
