"""Emulated xbarlab serial switch board, acting on a :class:`~mock_hw.bench_physics.PhysicalBench`.

Speaks the line protocol documented in :mod:`instruments.switch_board` (``*IDN?``, ``CONN``,
``OPEN ALL``, ``OPEN <pins>``, ``STATE?``, ``ERR?``; ``OK`` after every accepted command,
``ERR <code>,<message>`` after a rejected one, which is also queued for ``ERR?``).  Serve it with
:class:`~mock_hw.emulators.base.InstrumentServer` and connect with ``socket://127.0.0.1:PORT``.

Bus ``X`` to pin ``P`` is ``bench.set_relay(name, X, P, closed)``; ``STATE?`` reports the bench's
relays (a relay stuck open is not listed).
"""
from __future__ import annotations

import re

from .base import CommandError, EmulatedInstrument

BUSES = ("A", "B", "C", "D")

UNKNOWN, SYNTAX, BAD_BUS, BAD_PIN = 100, 101, 102, 103


class SwitchBoardEmulator(EmulatedInstrument):
    unknown_command = (UNKNOWN, "Unknown command")
    no_error = "0,No error"

    def __init__(self, bench, name: str = "BOARD", rows: int = 8, cols: int = 8, serial: str = "SB000001"):
        if int(rows) < 1 or int(cols) < 1:
            raise ValueError(f"switch board needs >= 1 row and column, got {rows}x{cols}")
        super().__init__(name)
        self.bench = bench
        self.rows, self.cols = int(rows), int(cols)
        self.idn = f"XBARLAB,SWITCHBOARD,{serial},1.0"

    # ------------------------------------------------------------------------- messages
    def execute(self, command: str):
        """Every line gets a reply: the query's data, ``OK``, or ``ERR <code>,<message>``."""
        try:
            return self._execute(command.strip().upper())
        except CommandError as exc:
            self.push_error(exc.code, exc.message)
            return f"ERR {exc.code},{exc.message}"
        except Exception as exc:  # a handler bug must not take the board down, nor leave the client waiting
            self.push_error(SYNTAX, f"Internal error: {type(exc).__name__}")
            return f"ERR {SYNTAX},Internal error: {type(exc).__name__}"

    def _execute(self, command: str):
        if command == "*IDN?":
            return self.idn
        if command == "ERR?":
            code, message = self.pop_error()
            return f"{code},{message}" if code else self.no_error
        if command == "STATE?":
            return self.state()
        if command == "OPEN ALL":
            self.bench.open_all(self.name)
            return "OK"
        m = re.fullmatch(r"OPEN\s+(\S+)", command)
        if m:
            pins = self._pins(m.group(1))
            for bus, pin in self.bench.closed_relays(self.name):
                if pin in pins:
                    self.bench.set_relay(self.name, bus, pin, closed=False)
            return "OK"
        m = re.fullmatch(r"CONN\s+(\S+)\s+(\S+)", command)
        if m:
            bus = m.group(1)
            if bus not in BUSES:
                raise CommandError(BAD_BUS, f"Invalid bus {bus[:8]}")
            pins = self._pins(m.group(2))
            for pin in pins:
                for other in BUSES:  # break before make: a pin is on at most one bus
                    if other != bus:
                        self.bench.set_relay(self.name, other, pin, closed=False)
                self.bench.set_relay(self.name, bus, pin, closed=True)
            return "OK"
        word = command.split(" ", 1)[0]
        if word in ("CONN", "OPEN"):
            raise CommandError(SYNTAX, f"Syntax error: {command[:40]}")
        raise CommandError(UNKNOWN, f"Unknown command {word[:16]}")

    def _pins(self, text: str) -> list[str]:
        """'R0,C3' -> ['R0', 'C3']; the whole list is rejected if any pin is invalid."""
        pins = []
        for p in text.split(","):
            m = re.fullmatch(r"([RC])(0|[1-9]\d*)", p.strip())
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
