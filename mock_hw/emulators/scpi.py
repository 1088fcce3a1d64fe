"""SCPI command matching for emulators: short/long forms, case-insensitivity, numeric suffixes,
compound messages — no evaluation of received text.

A pattern is written in SCPI manual notation, e.g. ``:SOURce#:VOLTage:ILIMit``: the upper-case
letters of each node are its short form, the whole node its long form, ``#`` an optional numeric
suffix (channel) captured for the handler, ``[:NODE]`` an optional node.  ``match`` accepts any
mix of short and long forms in any case, and a trailing ``?`` for queries.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .base import CommandError, EmulatedInstrument


@dataclass
class _Node:
    short: str
    long: str
    suffix: bool
    optional: bool


def _parse_pattern(pattern: str) -> list[_Node]:
    nodes = []
    for m in re.finditer(r"(\[)?:?([A-Za-z*]+)(#)?(\])?", pattern):
        word = m.group(2)
        short = "".join(ch for ch in word if ch.isupper() or ch == "*")
        nodes.append(_Node(short.upper(), word.upper(), bool(m.group(3)), bool(m.group(1))))
    return nodes


def _node_matches(token: str, node: _Node):
    """Return the numeric suffix (or '' / None for no suffix) if ``token`` matches, else False."""
    m = re.fullmatch(r"([A-Za-z*]+)(\d*)", token)
    if not m:
        return False
    word, digits = m.group(1).upper(), m.group(2)
    if digits and not node.suffix:
        return False
    if word not in (node.short, node.long):
        return False
    return digits or None


class ScpiTable:
    """Patterns → handlers.  A handler gets (suffixes: list[int|None], args: str, query: bool)."""

    def __init__(self):
        self._entries: list[tuple[list[_Node], Callable, bool | None]] = []
        # entries indexed by the short and long forms of their first node (entries whose first
        # node is optional are candidates for every command)
        self._by_head: dict[str, list[int]] = {}
        self._any_head: list[int] = []

    def add(self, pattern: str, handler: Callable, query: bool | None = None) -> None:
        """``query``: True = only the query form, False = only the set form, None = both."""
        nodes = _parse_pattern(pattern)
        index = len(self._entries)
        self._entries.append((nodes, handler, query))
        if not nodes or nodes[0].optional:
            self._any_head.append(index)
        else:
            for form in {nodes[0].short, nodes[0].long}:
                self._by_head.setdefault(form, []).append(index)

    def dispatch(self, command: str, last_path: list[str] | None = None):
        head, _, args = command.strip().partition(" ")
        query = head.endswith("?")
        head = head.rstrip("?")
        tokens = [t for t in head.split(":") if t]
        if not tokens:
            raise CommandError(-102, "Syntax error")
        head_word = re.match(r"[A-Za-z*]*", tokens[0]).group(0).upper()
        candidates = sorted(self._by_head.get(head_word, []) + self._any_head)
        for index in candidates:
            nodes, handler, q = self._entries[index]
            if q is not None and q != query:
                continue
            suffixes = self._match(tokens, nodes)
            if suffixes is not None:
                return handler([None if s is None else int(s) for s in suffixes], args.strip(), query)
        raise CommandError(-113, f"Undefined header: {command.strip()[:60]}")

    @staticmethod
    def _match(tokens: list[str], nodes: list[_Node]):
        """Match tokens against nodes allowing optional nodes to be omitted."""
        def rec(ti, ni, acc):
            if ni == len(nodes):
                return acc if ti == len(tokens) else None
            node = nodes[ni]
            if ti < len(tokens):
                got = _node_matches(tokens[ti], node)
                if got is not False:
                    res = rec(ti + 1, ni + 1, acc + ([got] if node.suffix else []))
                    if res is not None:
                        return res
            if node.optional:
                return rec(ti, ni + 1, acc + ([None] if node.suffix else []))
            return None
        return rec(0, 0, [])


class ScpiInstrument(EmulatedInstrument):
    """An emulated SCPI instrument: compound messages split on ';', common commands built in
    (``*IDN?``, ``*RST``, ``*CLS``, ``*OPC?``, ``:SYSTem:ERRor[:NEXT]?``), the rest from
    :attr:`table`, which subclasses fill in :meth:`build`."""

    def __init__(self, name: str):
        super().__init__(name)
        self.table = ScpiTable()
        self.table.add("*IDN", lambda s, a, q: self.idn, query=True)
        self.table.add("*RST", lambda s, a, q: self.reset(), query=False)
        self.table.add("*CLS", lambda s, a, q: self.errors.clear(), query=False)
        self.table.add("*OPC", lambda s, a, q: "1", query=True)
        self.table.add(":SYSTem:ERRor[:NEXT]", lambda s, a, q: self.format_error(*self.pop_error()), query=True)
        self.table.add(":SYSTem:ERRor:COUNt", lambda s, a, q: str(len(self.errors)), query=True)
        self.build()

    def build(self) -> None:
        """Add the instrument's commands to :attr:`table`."""

    def reset(self) -> None:
        """``*RST``: subclasses restore their defaults (and must leave outputs off)."""

    def format_error(self, code: int, message: str) -> str:
        return f'{code:+d},"{message}"' if code else '+0,"No error"'

    def split(self, message: str) -> list[str]:
        # ';' separates commands; a following command without a leading ':' continues from the
        # root here (a simplification of SCPI's path rule that every well-formed driver satisfies)
        return [part for part in message.split(";")]

    def execute(self, command: str):
        return self.table.dispatch(command)


def parse_number(text: str, name: str = "value") -> float:
    """A SCPI numeric argument (plain or with MIN/MAX/DEF not supported here)."""
    try:
        value = float(text.strip())
    except ValueError:
        raise CommandError(-104, f"Data type error: {name} {text.strip()[:20]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise CommandError(-222, f"Data out of range: {name}")
    return value


def parse_bool(text: str) -> bool:
    t = text.strip().upper()
    if t in ("1", "ON"):
        return True
    if t in ("0", "OFF"):
        return False
    raise CommandError(-104, f"Data type error: expected ON/OFF, got {text.strip()[:20]!r}")


def choice(text: str, options: dict[str, str], what: str) -> str:
    """A keyword argument (any case, quotes allowed) mapped through ``options`` (-224 otherwise)."""
    t = text.strip().strip("\"'").upper()
    if not t:
        raise CommandError(-109, f"Missing parameter: {what}")
    if t not in options:
        raise CommandError(-224, f"Illegal parameter value: {what} {text.strip()[:20]!r}")
    return options[t]


def number(text: str, lo: float, hi: float, what: str, default: float | None = None) -> float:
    """A numeric argument with MIN/MAX/DEF, range-checked (-222 outside [lo, hi])."""
    t = text.strip().upper()
    if not t:
        raise CommandError(-109, f"Missing parameter: {what}")
    if t in ("MIN", "MINIMUM"):
        return lo
    if t in ("MAX", "MAXIMUM"):
        return hi
    if t in ("DEF", "DEFAULT") and default is not None:
        return default
    value = parse_number(t, what)
    if not lo <= value <= hi:
        raise CommandError(-222, f"Data out of range: {what} {value:g}")
    return value
