"""xbarlab serial crossbar switch board as a :class:`~instruments.roles.Matrix`.

The board connects each crossbar line (pins ``R0``..``R<rows-1>`` and ``C0``..``C<cols-1>``,
0-based) to one of four buses ``A``–``D`` (its inputs, wired to instruments) or to nothing.

Line protocol
-------------
ASCII over a serial port (or a ``socket://host:port`` pyserial URL), 115200 baud 8N1.  Every
message is one line terminated by ``"\\n"`` (a ``"\\r"`` is ignored); keywords, buses and pins
are case-insensitive.  **Every line gets exactly one reply line**, an empty one included: ``OK``
for an accepted command, the data for a query, or ``ERR <code>,<message>`` for a rejected line
(which is then also queued for ``ERR?``); an empty (or blank) line is ``ERR 101,Empty line``.  A
rejected command changes nothing.  A line longer than 1024 characters is discarded and answered
``ERR 104,Line too long (max 1024 characters)``.

* ``*IDN?`` -> ``XBARLAB,SWITCHBOARD,<serial>,1.0``
* ``CONN <bus> <pin>[,<pin>...]`` — connect the pins to ``<bus>`` -> ``OK``
* ``OPEN ALL`` — disconnect every pin -> ``OK``
* ``OPEN <pin>[,<pin>...]`` — disconnect the pins, from whichever bus they are on -> ``OK``
* ``STATE?`` — the pins on each bus -> e.g. ``A:R0,C3;B:;C:R1;D:``
* ``ERR?`` — the oldest queued error -> ``0,No error`` or ``<code>,<message>``

A pin is on at most one bus.  ``CONN`` to a bus of a pin that is on another bus first disconnects
it there, then connects it (break before make); a pin already on that bus stays connected.
``STATE?`` lists every bus ``A``–``D`` in order, separated by ``;``, each as ``<bus>:`` followed by
its pins (rows ascending, then columns ascending) separated by ``,``; it reports the relays as
they are (a relay stuck open is not listed).

Error codes: ``100`` unknown command, ``101`` syntax error (also an empty line), ``102`` invalid
bus, ``103`` invalid pin (unknown name or out of range), ``104`` line too long, ``105`` error queue
overflow.  The queue keeps 64 errors: when it is full, its newest entry becomes ``105,Error queue
overflow`` and later errors are lost until ``ERR?`` makes room.

Driver behaviour
----------------
:class:`SwitchBoard` writes each command and reads its reply; anything but ``OK`` after a command
raises :class:`~instruments.roles.InstrumentError` naming the board, the command and the reply.
:meth:`SwitchBoard.close` validates every (bus, pin) first, then sends one ``CONN`` per bus (in
order of first appearance).  No reply within the timeout raises
:class:`~instruments.roles.InstrumentTimeout`.
"""
from __future__ import annotations

import re

from pymeasure.instruments import Instrument

from .base import DEFAULT_TIMEOUT_MS, ErrorQueueMixin, TimeoutNamingMixin, adapter_for
from .limits import MatrixLimits
from .roles import InstrumentError

BUSES = ("A", "B", "C", "D")
#: the board's design (this module's protocol): 4 buses, lines R0..R9999 / C0..C9999; its relays
#: are signal reed relays rated for the ±10 V, 0.5 A of crossbar work.  Our own board: these are
#: DESIGN VALUES (what it is built for), not a data-sheet or measured rating (see instruments.limits)
MODEL_LIMITS = {
    "SWITCHBOARD": MatrixLimits("SWITCHBOARD (xbarlab serial switch board)", "instruments/switch_board.py protocol (design)",
                                cards=1, inputs=4, outputs=2 * 10_000, voltage_max=10.0, current_max=0.5),
}
PIN_RE = re.compile(r"^[RC](0|[1-9]\d{0,3})$")
_STATE_RE = re.compile(r"^A:([^;]*);B:([^;]*);C:([^;]*);D:([^;]*)$")


def validate_pin_list(value, values=()):
    """pymeasure validator: comma-separated string or iterable of pins -> the comma-separated string."""
    pins = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    pins = [p.strip() for p in pins]
    if not pins or pins == [""]:
        raise ValueError("switch-board pin list is empty")
    for p in pins:
        if not PIN_RE.match(p):
            raise ValueError(f"invalid switch-board pin {p!r} (expected R<i> or C<j>)")
    return ",".join(pins)


def channel_name(bus: str, pin: str) -> str:
    """(bus, pin) -> ``"A:R0"``; ValueError for a bus or pin the board protocol has not got."""
    if not isinstance(bus, str) or bus not in BUSES or not isinstance(pin, str) or not PIN_RE.match(pin):
        raise ValueError(f"invalid switch-board relay (bus {bus!r}, pin {pin!r}): bus is A-D, pin is R<i> or C<j>")
    return f"{bus}:{pin}"


def pin_key(pin: str) -> tuple[int, int]:
    """Sort key: rows first, then columns, by index."""
    return (0 if pin[0] == "R" else 1, int(pin[1:]))


def parse_state(reply) -> set[tuple[str, str]]:
    """``"A:R0,C3;B:;C:R1;D:"`` -> {("A", "R0"), ("A", "C3"), ("C", "R1")}."""
    text = str(reply).strip()
    m = _STATE_RE.match(text)
    if not m:
        raise ValueError(f"expected 'A:...;B:...;C:...;D:...', got {text[:60]!r}")
    out = set()
    for bus, pins in zip(BUSES, m.groups()):
        for p in pins.split(","):
            p = p.strip()
            if not p:
                continue
            if not PIN_RE.match(p):
                raise ValueError(f"unexpected pin {p[:12]!r} in state reply {text[:60]!r}")
            out.add((bus, p))
    return out


class SwitchBoard(TimeoutNamingMixin, ErrorQueueMixin, Instrument):
    """The serial crossbar switch board (protocol in the module docstring).

    Args:
        resource: serial port name (``/dev/ttyUSB0``, ``COM3``), a pyserial URL
            (``socket://127.0.0.1:PORT``) or a pymeasure adapter.
        name: instrument name used in error messages.
        timeout_ms: read timeout.
        rows, cols: the board's line counts, if known: pins beyond them are refused before sending.
    """

    error_query = "ERR?"

    state = Instrument.measurement(
        "STATE?",
        """Get the connected relays as a set of (bus, pin).""",
        cast=str, maxsplit=0, get_process=parse_state,
    )

    MODEL_LIMITS = MODEL_LIMITS
    DEFAULT_MODEL = "SWITCHBOARD"

    def __init__(self, resource, name: str = "Switch board", timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 rows: int | None = None, cols: int | None = None, **kw):
        self.rows, self.cols = rows, cols
        super().__init__(adapter_for(resource, timeout_ms), name, includeSCPI=False, **kw)

    # ---------------------------------------------------------------------------- plumbing
    def command(self, command: str) -> None:
        """Send one command and check it is acknowledged with ``OK``."""
        reply = self.ask(command).strip()
        if reply != "OK":
            raise InstrumentError(f"{self.name}: command {command!r} not acknowledged: got {reply[:60]!r}")

    def _check_pin(self, pin: str) -> str:
        if not isinstance(pin, str) or not PIN_RE.match(pin):
            raise ValueError(f"{self.name}: invalid pin {pin!r} (expected 'R<i>' or 'C<j>', 0-based)")
        limit = self.rows if pin[0] == "R" else self.cols
        if limit is not None and int(pin[1:]) >= limit:
            raise ValueError(f"{self.name}: pin {pin!r} out of range (board has {limit} "
                             f"{'rows' if pin[0] == 'R' else 'columns'})")
        return pin

    # ------------------------------------------------------------------------------ Matrix
    def open_all(self) -> None:
        self.command("OPEN ALL")

    def open(self, pins) -> None:
        """Disconnect the pins given (from whatever bus they are on), one ``OPEN`` command."""
        checked = [self._check_pin(p) for p in pins]
        if checked:
            self.command("OPEN " + validate_pin_list(checked))

    def close(self, connections) -> None:
        """Connect each (bus, pin): everything is validated first (ValueError naming the bad one,
        nothing sent), then one ``CONN <bus> <pins>`` per bus.  A pin listed on two buses is refused
        (a pin is on at most one bus)."""
        by_bus: dict[str, list[str]] = {}
        where: dict[str, str] = {}
        for item in connections:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(f"{self.name}: bad connection {item!r}: expected (bus, pin)")
            bus, pin = item
            if not isinstance(bus, str) or bus not in BUSES:
                raise ValueError(f"{self.name}: invalid bus {bus!r} in {tuple(item)!r} (expected A-D)")
            pin = self._check_pin(pin)
            if where.get(pin, bus) != bus:
                raise ValueError(f"{self.name}: pin {pin} requested on buses {where[pin]} and {bus}; "
                                 f"a pin is on at most one bus")
            where[pin] = bus
            if pin not in by_bus.setdefault(bus, []):
                by_bus[bus].append(pin)
        for bus, pins in by_bus.items():
            self.command(f"CONN {bus} {validate_pin_list(pins)}")

    def closed(self) -> set[tuple[str, str]]:
        try:
            return self.state
        except ValueError as exc:
            raise InstrumentError(f"{self.name}: cannot parse the STATE? reply: {exc}") from None

    # -------------------------------------------------------------------------- Identified