"""Emulated xbarlab serial switch board, acting on a :class:`~mock_hw.bench_physics.PhysicalBench`.

Speaks the line protocol documented in :mod:`instruments.switch_board` (``*IDN?``, ``CONN``,
``OPEN ALL``, ``OPEN <pins>``, ``STATE?``, ``ERR?``; ``OK`` after every accepted command,
``ERR <code>,<message>`` after a rejected one, which is also queued for ``ERR?``).  Every line
gets exactly one reply: an empty line is ``ERR 101,Empty line``, a line longer than
:attr:`SwitchBoardEmulator.max_line` is discarded and answered ``ERR 104,Line too long ...``, and
a full error queue turns its newest entry into ``105,Error queue overflow``.  Serve it with
:class:`~mock_hw.emulators.base.InstrumentServer` and connect with ``socket://127.0.0.1:PORT``.

Bus ``X`` to pin ``P`` is ``bench.set_relay(name, X, P, closed)``; ``STATE?`` reports the bench's
relays (a relay stuck open is not listed).
"""
from __future__ import annotations

import re
import string

from .base import CommandError, EmulatedInstrument, failing

BUSES = ("A", "B", "C", "D")

UNKNOWN, SYNTAX, BAD_BUS, BAD_PIN, TOO_LONG, OVERFLOW = 100, 101, 102, 103, 104, 105
_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_OPEN = re.compile(r"OPEN\s+(\S+)")
_CONN = re.compile(r"CONN\s+(\S+)\s+(\S+)")
_PIN = re.compile(r"([RC])(0|[1-9]\d{0,3})")


class SwitchBoardEmulator(EmulatedInstrument):
    unknown_command = (UNKNOWN, "Unknown command")
    overflow_error = (OVERFLOW, "Error queue overflow")
    no_error = "0,No error"
    #: longest line the board's firmware buffers, characters (the longest command, CONN with
    #: every pin of a 48-line board, is under 300)
    max_line = 1024

    def __init__(self, bench, name: str = "BOARD", rows: int = 8, cols: int = 8, serial: str = "SB000001"):
        if int(rows) < 1 or int(cols) < 1:
            raise ValueError(f"switch board needs >= 1 row and column, got {rows}x{cols}")
        super().__init__(name)
        self.bench = bench
        self.rows, self.cols = int(rows), int(cols)
        self.idn = f"XBARLAB,SWITCHBOARD,{serial},1.0"

    # ------------------------------------------------------------------------- messages
    def parse(self, message: str):
        """One line is one command; its action always returns the line's reply (the data, ``OK``
        or ``ERR <code>,<message>``).  Parsing (here, without the lock) never changes anything."""
        command = message.strip().translate(_UPPER)    # ASCII letters only (the protocol is ASCII)
        try:
            action = self._compile(command)
        except CommandError as exc:
            action = failing(exc)
        return [lambda: self._answer(action)]

    def _answer(self, action) -> str:
        try:
            return action()
        except CommandError as exc:
            self.push_error(exc.code, exc.message)
        except Exception as exc:  # a handler bug must not take the board down, nor leave the client waiting
            self.push_error(SYNTAX, f"Internal error: {type(exc).__name__}")
        code, message = self.errors[-1]
        return f"ERR {code},{message}"

    def execute(self, command: str):
        """Parse and run one command (the caller holds the lock); returns its reply."""
        return self.parse(command)[0]()

    def overlong_line(self, length: int) -> list[str]:
        with self.lock:
            self.push_error(TOO_LONG, f"Line too long (max {self.max_line} characters)")
            return [f"ERR {TOO_LONG},Line too long (max {self.max_line} characters)"]

    def _compile(self, command: str):
        if not command:
            raise CommandError(SYNTAX, "Empty line")
        if command == "*IDN?":
            return lambda: self.idn
        if command == "ERR?":
            return self._err
        if command == "STATE?":
            return self.state
        if command == "OPEN ALL":
            return self._open_all
        m = _OPEN.fullmatch(command)
        if m:
            pins = self._pins(m.group(1))
            return lambda: self._open(pins)
        m = _CONN.fullmatch(command)
        if m:
            bus = m.group(1)
            if bus not in BUSES:
                raise CommandError(BAD_BUS, f"Invalid bus {bus[:8]}")
            pins = self._pins(m.group(2))
            return lambda: self._conn(bus, pins)
        word = command.split(" ", 1)[0]
        if word in ("CONN", "OPEN"):
            raise CommandError(SYNTAX, f"Syntax error: {command[:40]}")
        raise CommandError(UNKNOWN, f"Unknown command {word[:16]}")

    # ---------------------------------------------------------------------------- actions
    def _err(self) -> str:
        code, message = self.pop_error()
        return f"{code},{message}" if code else self.no_error

    def _open_all(self) -> str:
        self.reset()
        return "OK"

    def reset(self) -> None:
        """Every relay open (the board's power-on state)."""
        self.bench.open_all(self.name)

    def _open(self, pins: list[str]) -> str:
        for bus, pin in self.bench.closed_relays(self.name):
            if pin in pins:
                self.bench.set_relay(self.name, bus, pin, closed=False)
        return "OK"

    def _conn(self, bus: str, pins: list[str]) -> str:
        for pin in pins:
            for other in BUSES:  # break before make: a pin is on at most one bus
                if other != bus:
                    self.bench.set_relay(self.name, other, pin, closed=False)
            self.bench.set_relay(self.name, bus, pin, closed=True)
        return "OK"

    def _pins(self, text: str) -> list[str]:
        """'R0,C3' -> ['R0', 'C3']; the whole list is rejected if any pin is invalid."""
        pins = []
        for p in text.split(","):
            m = _PIN.fullmatch(p.strip())
            if not m:
                raise CommandError(BAD_PIN, f"Invalid pin {p.strip()[:8]!r}")
            n = self.rows if m.group(1) == "R" else self.cols
            if int(m.group(2)) >= n:
                raise CommandError(BAD_PIN, f"Invalid pin {p.strip()[:8]}: out of range")
            pins.append(p.strip())
        return list(dict.fromkeys(pins))

    def state(self) -> str:
        on: dict[str, list[str]] = {b: [] for b in BUSES}
        for bus, pin in self.bench.closed_relays(self.name):
            if bus in on:
                on[bus].append(pin)
        key = lambda p: (0 if p[0] == "R" else 1, int(p[1:]) if p[1:].isdigit() else 0)  # noqa: E731
        return ";".join(f"{b}:{','.join(sorted(on[b], key=key))}" for b in BUSES)
