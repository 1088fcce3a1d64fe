"""Station files: which instruments a bench has, how the matrix wires them to the crossbar, limits.

A station is a TOML file::

    [station]
    name = "3IT bench 2"
    rows = 8                     # crossbar size
    cols = 8
    write_scheme = "v/2"         # default biasing of writes: v/2, v/3 or float
    read_schemes = ["ground", "float", "isolate"]   # reads the channels can bias (default: ground, float;
                                 # isolate needs distinct bias_rows and bias_cols channels whose
                                 # compliance carries the reverse-biased array's current)
    v_read = 0.2                 # V
    nplc = 0.1                   # SMU integration time, power-line cycles
    timeout_ms = 2000            # per query

    [limits]                     # checked before any command is written
    v_max = 2.5                  # |V| of any pulse
    v_read_max = 0.5             # |V| of any read
    i_compliance = 1e-3          # A, set on every source channel
    width_min = 1e-6             # s
    width_max = 1e-3             # s

    [instruments.smu]            # one table per instrument; the name ("smu") is yours
    driver = "keithley2600"      # see DRIVERS
    resource = "TCPIP::192.0.2.10::5025::SOCKET"   # VISA resource, serial port or socket:// URL
    identity = "2636B"           # expected substring of the identification string
    tsplink_node = 1             # optional (2600B, 707B): its TSP-Link node number; a 2600B and a 707B
                                 # both on TSP-Link let the 2600B route each cell itself (--on-instrument)

    [routing]
    matrix = "matrix"            # the instrument that switches the crossbar lines
    drive = "smu.a"              # channel that sources the selected row (reads and pulses)
    sense = "smu.b"              # channel holding the selected column at 0 V; reads measure here
    bias_rows = "bias.1"         # channel on the unselected rows (0 V for reads, V/2 or V/3 for writes)
    bias_cols = "bias.2"         # channel on the unselected columns (0 V, V/2 or 2V/3)
    inputs = { "smu.a" = "A", "smu.b" = "B", "bias.1" = "C", "bias.2" = "D" }  # matrix input per channel
    ground = "F"                 # optional: matrix input wired to ground (on-instrument write-verify)
    pulse = "fgen.1"             # optional: a pulse generator (keysight_33500b) routed to the selected
                                 # row with drive; it gives the write pulses, drive reads (needs an input)
    pulse_col = "fgen.2"         # optional: its other channel, routed to the selected column with sense:
                                 # it gives the column's half of each write in the same trigger
    row_pins = ["101", "102", ...]   # matrix pin of each crossbar row
    col_pins = ["201", "202", ...]   # matrix pin of each crossbar column

Channels are ``instrument.channel``: ``a``/``b`` on a 2600B, ``1``/``2`` on a B2900, ``1`` on a
2450, ``1``/``2`` on a 33500B.  A single bias channel may serve rows and columns (then V/3 writes are refused).  Every
error names the file and the key.
"""
from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from programming.crossbar import SafetyLimits, parse_read_scheme, parse_write_scheme

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: driver name → (module, class, {channel name: attribute} or None for a matrix)
DRIVERS: dict[str, tuple[str, str, dict[str, str] | None]] = {
    "keithley2450": ("instruments.keithley2450", "Keithley2450", {"1": ""}),
    "keithley2600": ("instruments.keithley2600", "Keithley2600", {"a": "smua", "b": "smub"}),
    "keysight_b2900": ("instruments.keysight_b2900", "KeysightB2900", {"1": "ch_1", "2": "ch_2"}),
    "keithley707b": ("instruments.keithley707b", "Keithley707B", None),
    "keysight_b2200": ("instruments.keysight_b2200", "KeysightB2200", None),
    "switch_board": ("instruments.switch_board", "SwitchBoard", None),
    "keysight_33500b": ("instruments.keysight_33500b", "Keysight33500B", {"1": "ch_1", "2": "ch_2"}),
}
#: drivers whose channels are pulse generators (the ``pulse`` role), not source-measure channels
PULSE_GENERATORS = frozenset({"keysight_33500b"})

#: drivers of instruments with a TSP-Link port (Series 2600B reference manual, "TSP-Link system";
#: 707B/708B reference manual, tsplink functions): the 2600B master drives a 707B node over it
TSPLINK_DRIVERS = frozenset({"keithley2600", "keithley707b"})

ROLES = ("drive", "sense", "bias_rows", "bias_cols")
#: the [limits] keys, all required (SafetyLimits' fields)
LIMIT_KEYS = ("v_max", "v_read_max", "i_compliance", "width_min", "width_max")
#: the optional role of a pulse generator routed to the selected row with ``drive``: it gives the
#: write pulses (short ones an SMU cannot), ``drive`` reads
PULSE_ROLE = "pulse"
#: the optional second channel of the same generator, routed to the selected column: it gives the
#: column's half of a write (−V/2, or −V/3) in the same trigger as ``pulse`` gives the row's, so no
#: level is held on any line outside the pulse (``sense`` hands the column over as ``drive`` the row)
PULSE_COL_ROLE = "pulse_col"
PULSE_ROLES = (PULSE_ROLE, PULSE_COL_ROLE)


class StationError(ValueError):
    """An invalid station file; the message names the file and the key."""


@dataclass(frozen=True)
class InstrumentSpec:
    name: str
    driver: str
    resource: str
    identity: str = ""
    timeout_ms: int = 2000
    tsplink_node: int | None = None        # TSP-Link node number (2600B, 707B), if on a TSP-Link network

    @property
    def is_matrix(self) -> bool:
        return DRIVERS[self.driver][2] is None


@dataclass(frozen=True)
class Station:
    """A validated station file."""

    name: str
    rows: int
    cols: int
    write_scheme: str
    v_read: float
    nplc: float
    limits: SafetyLimits
    instruments: dict[str, InstrumentSpec]
    matrix: str
    roles: dict[str, str]                   # role -> "instrument.channel"
    inputs: dict[str, str]                  # "instrument.channel" -> matrix input
    row_pins: tuple[str, ...]
    col_pins: tuple[str, ...]
    source: str = ""
    ground: str | None = None               # matrix input wired to ground (optional)
    chip_id: str = ""                       # the chip on the bench (wafer/die label), as runs record it
    read_schemes: tuple[str, ...] = ("ground", "float")   # read schemes the channels can bias

    def check_write_scheme(self, scheme, what: str = "--scheme") -> None:
        """Refuse a write scheme the bias channels cannot serve (StationError naming ``what``):
        V/2 and V/3 need a bias channel, V/3 two distinct ones (rows at V/3, columns at 2V/3)."""
        scheme = parse_write_scheme(scheme).value
        if scheme in ("v/2", "v/3") and "bias_rows" not in self.roles:
            raise StationError(f"station file {self.source}: {what} = {scheme!r} needs a bias channel, but "
                               f"[routing] has no bias_rows")
        if scheme == "v/3" and self.roles.get("bias_rows") == self.roles.get("bias_cols", self.roles.get("bias_rows")):
            raise StationError(f"station file {self.source}: {what} = 'v/3' needs distinct [routing] bias_rows and "
                               f"bias_cols channels (this station has one bias channel: use v/2)")

    @property
    def write_schemes(self) -> tuple[str, ...]:
        """The write schemes the bias channels can serve (:meth:`check_write_scheme`)."""
        def served(scheme):
            try:
                self.check_write_scheme(scheme)
            except StationError:
                return False
            return True
        return tuple(s for s in ("v/2", "v/3", "float") if served(s))

    def without_pulse_generator(self) -> "Station":
        """The station the on-instrument loop runs on: the 2600B's script writes with its own SMU
        (``drive``), so a pulse generator (the ``pulse`` / ``pulse_col`` roles) takes no part in it,
        and is left out with its matrix inputs (its relays are never closed).  Its pulse widths,
        the auto schedule's probe pulses and the routing are then the SMU's, as the script's
        writes are: a generator's 1 µs would otherwise pass the station's limits and reach the
        2600B, whose pulses are specified from 100 µs.  The station itself when it has none."""
        gens = {self.roles[r].partition(".")[0] for r in PULSE_ROLES if r in self.roles}
        if not gens:
            return self
        used = {spec.partition(".")[0] for role, spec in self.roles.items() if role not in PULSE_ROLES}
        drop = gens - used - {self.matrix}
        return replace(self, roles={r: spec for r, spec in self.roles.items() if r not in PULSE_ROLES},
                       inputs={spec: i for spec, i in self.inputs.items() if spec.partition(".")[0] not in drop},
                       instruments={n: s for n, s in self.instruments.items() if n not in drop})

    def on_instrument_problem(self, write_scheme: str | None = None) -> str | None:
        """Why this station cannot run the on-instrument loop (one line), or None when it can: the
        loop runs on a Keithley 2600B (``drive`` and ``sense`` its two SMUs) that routes every cell
        itself through a Keithley 707B on its TSP-Link network (both with a ``tsplink_node``), with
        a ``ground`` input on the matrix.  ``write_scheme`` (default the station's): V/2, or V/3,
        which needs the ``bias_cols`` channel on a Keysight B2900 on the LAN (the script sets it
        over TSP-Net: :meth:`tspnet_source`); floating writes are not served."""
        where = f"station file {self.source}"
        d_inst, s_inst = self.channel_of("drive")[0], self.channel_of("sense")[0]
        drive = self.instruments[d_inst]
        matrix = self.instruments[self.matrix]
        if drive.driver != "keithley2600" or s_inst != d_inst:
            return (f"{where}: --on-instrument runs the loop on a Keithley 2600B: [routing] drive and sense must be "
                    f"its two SMUs (drive is {self.roles['drive']} on a {drive.driver})")
        if matrix.driver != "keithley707b":
            return (f"{where}: --on-instrument needs the 2600B to switch the matrix over TSP-Link; the "
                    f"{matrix.driver} matrix {self.matrix!r} has no TSP-Link (use the host loop: drop --on-instrument)")
        if drive.tsplink_node is None or matrix.tsplink_node is None:
            return (f"{where}: --on-instrument needs tsplink_node = N in [instruments.{d_inst}] and "
                    f"[instruments.{self.matrix}] (their TSP-Link node numbers)")
        if self.ground is None:
            return f"{where}: --on-instrument needs a [routing] ground input on the matrix (the selected column)"
        scheme = parse_write_scheme(write_scheme or self.write_scheme).value
        if scheme == "float":
            return f"{where}: --on-instrument writes with V/2 or V/3 (the unselected lines held), not 'float'"
        if scheme == "v/3":
            source = self.tspnet_source()
            if isinstance(source, str):
                return f"{where}: --on-instrument V/3 {source}"
        return None

    def tspnet_source(self, role: str = "bias_cols") -> tuple[str, int, int] | str:
        """Where the on-instrument script reaches the source holding ``role``'s lines over TSP-Net
        (2600B reference manual, ``tspnet.connect(address, port)``): (address, SCPI socket port,
        channel), or a sentence saying why it cannot.  The source must be a Keysight B2900 (the
        script speaks its SCPI: ``:SOUR<n>:VOLT``, ``:OUTP<n>``) on a LAN resource
        (``TCPIP::host::port::SOCKET``, or ``TCPIP::host::...::INSTR``, whose SCPI socket is port
        5025: B2900 user's guide, LAN interface), wired to a matrix input."""
        if role not in self.roles:
            return f"needs a [routing] {role} channel (the unselected columns' source)"
        inst, _, ch = self.roles[role].partition(".")
        spec = self.instruments[inst]
        if spec.driver != "keysight_b2900" or not ch.isdigit():
            return (f"needs [routing] {role} on a Keysight B2900 channel the 2600B can command over TSP-Net "
                    f"({self.roles[role]} is on a {spec.driver})")
        if self.roles[role] not in self.inputs:
            return f"needs [routing] {role} ({self.roles[role]}) wired to a matrix input"
        m = (re.fullmatch(r"TCPIP\d*::([A-Za-z0-9.\-]+)::(\d+)::SOCKET", spec.resource, re.I)
             or re.fullmatch(r"TCPIP\d*::([A-Za-z0-9.\-]+)(?:::[A-Za-z0-9]+)?::INSTR", spec.resource, re.I))
        if not m:
            return (f"needs [instruments.{inst}] on the LAN (a TCPIP resource the 2600B reaches over TSP-Net), "
                    f"not {spec.resource!r}")
        port = int(m.group(2)) if m.lastindex == 2 else 5025
        return m.group(1), port, int(ch)

    def check_read_schemes(self, what: str = "[station] read_schemes") -> None:
        """Refuse a listed read scheme the bias channels cannot serve (StationError naming
        ``what``): ``isolate`` holds the unselected columns at V_read and the unselected rows at
        0 V, so it needs distinct bias_rows and bias_cols channels."""
        if "isolate" in self.read_schemes and (
                "bias_rows" not in self.roles
                or self.roles.get("bias_rows") == self.roles.get("bias_cols", self.roles.get("bias_rows"))):
            raise StationError(f"station file {self.source}: {what} lists 'isolate', which needs distinct "
                               f"[routing] bias_rows and bias_cols channels")

    def channel_of(self, role: str) -> tuple[str, str]:
        inst, _, ch = self.roles[role].partition(".")
        return inst, ch

    def routing_table(self) -> list[tuple[str, str]]:
        """Human-readable routing: (what, where)."""
        rows = [(f"{role} ({self.roles[role]})", f"{self.matrix} input {self.inputs[self.roles[role]]}")
                for role in (*ROLES, *PULSE_ROLES) if role in self.roles]
        rows += [(f"row {i}", f"{self.matrix} pin {p}") for i, p in enumerate(self.row_pins)]
        rows += [(f"col {j}", f"{self.matrix} pin {p}") for j, p in enumerate(self.col_pins)]
        return rows


def load_station(path: str | Path) -> Station:
    """Read and validate a station file; :class:`StationError` names what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise StationError(f"station file {path}: cannot read ({exc.strerror or exc})") from None
    return parse_station(text, str(path))


def parse_station(text: str, source: str = "<station>") -> Station:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StationError(f"station file {source}: not valid TOML ({exc})") from None
    v = _Validator(source)
    v.only(data, "", {"station", "limits", "instruments", "routing"})
    st = v.table(data, "station")
    v.only(st, "station", {"name", "chip_id", "rows", "cols", "write_scheme", "read_schemes", "v_read", "nplc",
                           "timeout_ms"})
    rows = v.integer(st, "station", "rows", minimum=1)
    cols = v.integer(st, "station", "cols", minimum=1)
    scheme = st.get("write_scheme", "v/2")
    try:
        scheme = parse_write_scheme(scheme).value
    except ValueError as exc:
        raise StationError(f"station file {source}: [station] write_scheme: {exc}") from None
    read_schemes = st.get("read_schemes", ["ground", "float"])
    if not isinstance(read_schemes, list) or not read_schemes:
        raise StationError(f"station file {source}: [station] read_schemes must be a non-empty list of read "
                           f"schemes (ground, float, isolate)")
    try:
        read_schemes = tuple(dict.fromkeys(parse_read_scheme(x).value for x in read_schemes))
    except ValueError as exc:
        raise StationError(f"station file {source}: [station] read_schemes: {exc}") from None
    v_read = v.number(st, "station", "v_read", default=0.2)
    nplc = v.number(st, "station", "nplc", default=0.1)
    timeout_ms = v.integer(st, "station", "timeout_ms", default=2000, minimum=1)

    lim = v.table(data, "limits")
    v.only(lim, "limits", set(LIMIT_KEYS))
    try:   # every limit is required: a forgotten v_max must not silently become a default
        limits = SafetyLimits(**{k: v.number(lim, "limits", k) for k in LIMIT_KEYS})
    except ValueError as exc:
        raise StationError(f"station file {source}: [limits] {exc}") from None
    if abs(v_read) > limits.v_read_max:
        raise StationError(f"station file {source}: [station] v_read = {v_read} V exceeds [limits] "
                           f"v_read_max = {limits.v_read_max} V")

    insts = v.table(data, "instruments")
    if not insts:
        raise StationError(f"station file {source}: [instruments] lists no instrument")
    instruments = {}
    for name, spec in insts.items():
        where = f"instruments.{name}"
        if not isinstance(spec, dict):
            raise StationError(f"station file {source}: [{where}] must be a table")
        v.only(spec, where, {"driver", "resource", "identity", "timeout_ms", "tsplink_node"})
        driver = v.string(spec, where, "driver")
        if driver not in DRIVERS:
            raise StationError(f"station file {source}: [{where}] driver = {driver!r} is unknown; "
                               f"known drivers: {', '.join(sorted(DRIVERS))}")
        node = None
        if "tsplink_node" in spec:
            if driver not in TSPLINK_DRIVERS:
                raise StationError(f"station file {source}: [{where}] tsplink_node: a {driver} has no TSP-Link "
                                   f"(only {', '.join(sorted(TSPLINK_DRIVERS))})")
            node = v.integer(spec, where, "tsplink_node", minimum=1)
            if node > 64:
                raise StationError(f"station file {source}: [{where}] tsplink_node = {node}: TSP-Link nodes are 1 to 64")
            if node in {i.tsplink_node for i in instruments.values()}:
                raise StationError(f"station file {source}: [{where}] tsplink_node = {node} is another instrument's")
        instruments[name] = InstrumentSpec(name, driver, v.resource(spec, where), v.string(spec, where, "identity"),
                                           v.integer(spec, where, "timeout_ms", default=timeout_ms, minimum=1), node)

    rt = v.table(data, "routing")
    v.only(rt, "routing", {"matrix", "inputs", "row_pins", "col_pins", "ground", *PULSE_ROLES, *ROLES})
    matrix = v.string(rt, "routing", "matrix")
    if matrix not in instruments or not instruments[matrix].is_matrix:
        raise StationError(f"station file {source}: [routing] matrix = {matrix!r} is not a switch-matrix "
                           f"instrument of [instruments]")
    roles = {}
    for role in ROLES:
        if role not in rt:
            if role in ("drive", "sense"):
                raise StationError(f"station file {source}: [routing] {role} is missing")
            continue
        roles[role] = _channel(v, rt, role, instruments, source)
    for role, spec in roles.items():
        if instruments[spec.partition(".")[0]].driver in PULSE_GENERATORS:
            raise StationError(f"station file {source}: [routing] {role} = {spec!r} is a pulse generator; "
                               f"it can only be the {PULSE_ROLE!r} role")
    for prole in PULSE_ROLES:
        if prole not in rt:
            continue
        roles[prole] = _channel(v, rt, prole, instruments, source)
        if instruments[roles[prole].partition(".")[0]].driver not in PULSE_GENERATORS:
            raise StationError(f"station file {source}: [routing] {prole} = {roles[prole]!r} must be "
                               f"a pulse generator ({', '.join(sorted(PULSE_GENERATORS))})")
    if PULSE_COL_ROLE in roles:
        if PULSE_ROLE not in roles or roles[PULSE_ROLE].partition(".")[0] != roles[PULSE_COL_ROLE].partition(".")[0] \
                or roles[PULSE_ROLE] == roles[PULSE_COL_ROLE]:
            raise StationError(f"station file {source}: [routing] {PULSE_COL_ROLE} must be the other channel of the "
                               f"{PULSE_ROLE} generator (one trigger fires both)")
    inputs = rt.get("inputs", {})
    if not isinstance(inputs, dict):
        raise StationError(f"station file {source}: [routing] inputs must be a table of channel = input")
    for ch in roles.values():
        if ch not in inputs:
            raise StationError(f"station file {source}: [routing] inputs has no entry for {ch!r}")
    used = [str(inputs[ch]) for ch in set(roles.values())]
    if len(set(used)) != len(used):
        raise StationError(f"station file {source}: [routing] inputs: two channels share one matrix input")
    ground = str(rt["ground"]) if "ground" in rt else None
    if ground is not None and ground in used:
        raise StationError(f"station file {source}: [routing] ground = {ground!r} is also a channel's input")
    row_pins = v.pins(rt, "row_pins", rows)
    col_pins = v.pins(rt, "col_pins", cols)
    if set(row_pins) & set(col_pins):
        raise StationError(f"station file {source}: [routing] a pin is both a row and a column: "
                           f"{sorted(set(row_pins) & set(col_pins))[0]}")
    _distinct_channels(roles, source)
    inputs = {str(k): str(val) for k, val in inputs.items()}
    _check_pins(instruments[matrix], [inputs[ch] for ch in roles.values()] + ([ground] if ground else []),
                row_pins + col_pins, source)
    _check_source_ranges(limits, roles, instruments, source)
    station = Station(st.get("name", Path(source).stem), rows, cols, scheme, v_read, nplc, limits, instruments,
                      matrix, roles, inputs, row_pins, col_pins, source, ground,
                      v.string(st, "station", "chip_id") if "chip_id" in st else "", read_schemes)
    station.check_write_scheme(scheme, "[station] write_scheme")
    station.check_read_schemes()
    return station


def _distinct_channels(roles: dict[str, str], source: str) -> None:
    """drive, sense and the bias channels are different channels (bias_rows may equal bias_cols:
    one supply biasing every unselected line)."""
    seen: dict[str, str] = {}
    for role in ROLES:
        ch = roles.get(role)
        if ch is None:
            continue
        other = seen.get(ch)
        if other is not None and {other, role} != {"bias_rows", "bias_cols"}:
            raise StationError(f"station file {source}: [routing] {role} = {ch!r} is the same channel as {other}; "
                               f"each role needs its own channel")
        seen.setdefault(ch, role)


def _check_pins(matrix: InstrumentSpec, inputs: list[str], pins: tuple[str, ...], source: str) -> None:
    """Every matrix input and pin the routing names exists on the matrix (its driver's
    ``channel_name``, which refuses a relay the instrument has not got)."""
    module = importlib.import_module(DRIVERS[matrix.driver][0])
    name_of = getattr(module, "channel_name", None)
    if name_of is None:  # pragma: no cover - every matrix driver has one
        return

    def exists(inp, pin) -> bool:
        try:
            name_of(inp, pin)
            return True
        except ValueError:
            return False

    who = f"{matrix.name} ({matrix.driver})"
    for inp in inputs:
        if not any(exists(inp, p) for p in pins):
            raise StationError(f"station file {source}: [routing] inputs/ground: {who} has no input {inp!r}")
    for pin in pins:
        if not any(exists(i, pin) for i in inputs):
            raise StationError(f"station file {source}: [routing] row_pins/col_pins: {who} has no pin {pin!r}")


def source_ranges(spec: InstrumentSpec) -> dict[str, tuple[float, float]]:
    """What the instrument of ``spec`` can deliver, from its driver (the manual's figures live
    there): ``voltage`` (V), ``current`` (compliance, A) and ``width`` (pulse, s), each (lo, hi)
    when the driver states it.  The model's own limits (``MODEL_LIMITS`` keyed by model, matched
    against the station's identity) win over the driver's family-wide constants."""
    module = importlib.import_module(DRIVERS[spec.driver][0])
    out: dict[str, tuple[float, float]] = {}
    klass = getattr(module, DRIVERS[spec.driver][1])
    if getattr(klass, "MODEL_LIMITS", None):
        from .limits import limits_for   # the model named by the identity, else the family's default

        lim = limits_for(klass, spec.identity)
        for key, attr in (("voltage", "voltage"), ("current", "compliance_current"), ("width", "pulse_width")):
            value = getattr(lim, attr, None)
            if value is not None:
                out[key] = (float(value[0]), float(value[1]))
        if getattr(lim, "pulse_width", 0) is None:
            out["width"] = (0.0, float("inf"))   # no pulse mode: pulses are DC steps, not narrowed
    if "voltage" not in out:
        rng = getattr(module, "VOLTAGE_RANGE", None)
        v_max = getattr(module, "V_MAX", None)
        if rng is not None:
            out["voltage"] = (float(rng[0]), float(rng[1]))
        elif v_max is not None:
            out["voltage"] = (-float(v_max), float(v_max))
    if "current" not in out:
        for name in ("LIMIT_I_RANGE", "ILIM_RANGE", "COMPLIANCE_RANGE"):
            if getattr(module, name, None) is not None:
                out["current"] = tuple(float(x) for x in getattr(module, name))
                break
    if "width" not in out and getattr(module, "WIDTH_RANGE", None) is not None:
        out["width"] = tuple(float(x) for x in module.WIDTH_RANGE)
    return out


def _check_source_ranges(limits: SafetyLimits, roles: dict[str, str], instruments: dict, source: str) -> None:
    """Every source channel can deliver the limits: |v_max| and |v_read_max| within its voltage
    range, i_compliance within its compliance range (so a typo like v_max = 250 or 1e308 is
    refused before anything is opened)."""
    for role, ch in roles.items():
        spec = instruments[ch.partition(".")[0]]
        rng = source_ranges(spec)
        who = f"{role} channel {ch} ({spec.driver}{', ' + spec.identity if spec.identity else ''})"
        v = rng.get("voltage")
        if v is not None:
            for key in ("v_max", "v_read_max"):
                value = getattr(limits, key)
                if value > min(abs(v[0]), abs(v[1])):
                    raise StationError(f"station file {source}: [limits] {key} = {value:g} V is beyond what the "
                                       f"{who} can source (±{min(abs(v[0]), abs(v[1])):g} V)")
        i = rng.get("current")
        if i is not None and not i[0] <= limits.i_compliance <= i[1]:
            raise StationError(f"station file {source}: [limits] i_compliance = {limits.i_compliance:g} A is outside "
                               f"the {who}'s compliance range {i[0]:g}..{i[1]:g} A")


def _channel(v, rt, role, instruments, source) -> str:
    text = v.string(rt, "routing", role)
    inst, dot, ch = text.partition(".")
    if not dot or inst not in instruments:
        raise StationError(f"station file {source}: [routing] {role} = {text!r} must be 'instrument.channel' "
                           f"with an instrument of [instruments]")
    channels = DRIVERS[instruments[inst].driver][2]
    if channels is None or ch not in channels:
        raise StationError(f"station file {source}: [routing] {role} = {text!r}: {inst} "
                           f"({instruments[inst].driver}) has no source channel {ch!r}"
                           + (f"; channels: {', '.join(channels)}" if channels else ""))
    return text


class _Validator:
    def __init__(self, source):
        self.source = source

    def fail(self, where, msg):
        raise StationError(f"station file {self.source}: [{where}] {msg}" if where else f"station file {self.source}: {msg}")

    def only(self, table, where, allowed):
        for key in table:
            if key not in allowed:
                self.fail(where, f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")

    def table(self, data, key):
        if key not in data:
            self.fail("", f"the [{key}] table is missing")
        if not isinstance(data[key], dict):
            self.fail(key, "must be a table")
        return data[key]

    def string(self, table, where, key):
        if key not in table:
            self.fail(where, f"{key} is missing")
        if not isinstance(table[key], str) or not table[key]:
            self.fail(where, f"{key} must be a non-empty string, got {table[key]!r}")
        return table[key]

    def resource(self, table, where):
        """A VISA resource (``TCPIP::host::port::SOCKET``, ``GPIB0::26::INSTR``, ``USB0::...``), a
        serial port (``/dev/ttyUSB0``, ``COM3``, ``ASRL...``) or a pyserial URL (``socket://``,
        ``loop://``, ``rfc2217://``)."""
        text = self.string(table, where, "resource").strip()
        upper = text.upper()
        if upper.startswith(("SOCKET://", "LOOP://", "RFC2217://")) or re.fullmatch(r"COM\d+", upper):
            return text
        if text.startswith("/dev/"):
            return text
        if "::" in text and re.match(r"^(TCPIP|GPIB|USB|ASRL|VXI|PXI)\d*::", upper):
            return text
        self.fail(where, f"resource = {text!r} is not an instrument resource (expected a VISA resource such "
                         f"as 'TCPIP::192.0.2.10::5025::SOCKET' or 'GPIB0::26::INSTR', a serial port such as "
                         f"'/dev/ttyUSB0' or 'COM3', or a URL such as 'socket://host:port')")

    def number(self, table, where, key, default=None):
        if key not in table:
            if default is None:
                self.fail(where, f"{key} is missing")
            return float(default)
        val = table[key]
        if isinstance(val, bool) or not isinstance(val, (int, float)) or val != val or abs(val) == float("inf"):
            self.fail(where, f"{key} must be a finite number, got {val!r}")
        return float(val)

    def integer(self, table, where, key, default=None, minimum=None):
        if key not in table:
            if default is None:
                self.fail(where, f"{key} is missing")
            return int(default)
        val = table[key]
        if isinstance(val, bool) or not isinstance(val, int) or (minimum is not None and val < minimum):
            self.fail(where, f"{key} must be an integer >= {minimum}, got {val!r}")
        return val

    def pins(self, rt, key, n):
        pins = rt.get(key)
        if not isinstance(pins, list) or len(pins) != n or not all(isinstance(p, (str, int)) for p in pins):
            self.fail("routing", f"{key} must list {n} matrix pins (one per {'row' if key == 'row_pins' else 'column'}), "
                                 f"got {pins!r}")
        pins = tuple(str(p) for p in pins)
        if len(set(pins)) != len(pins):
            self.fail("routing", f"{key} repeats a pin")
        return pins
