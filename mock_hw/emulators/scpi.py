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

from .base import ESR_OPC, CommandError, EmulatedInstrument


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


_TOKEN = re.compile(r"([A-Za-z*]+)(\d{0,9})")
_HEAD_WORD = re.compile(r"[A-Za-z*]*")
#: more header nodes than any command has: a syntax error (bounds the matcher's work)
_MAX_NODES = 12
#: headers whose resolution a table remembers (emptied when full: bounded whatever arrives)
_HEAD_CACHE = 256


def _node_matches(token: str, node: _Node):
    """Return the numeric suffix (or '' / None for no suffix) if ``token`` matches, else False."""
    m = _TOKEN.fullmatch(token)
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
        # entries indexed by the short and long forms of the nodes a command can start with
        self._by_head: dict[str, list[int]] = {}
        self._any_head: list[int] = []
        # header text -> (handler, suffixes, query) of headers that matched: a driver repeats a
        # few headers, so most commands skip the matcher (only matches are kept: garbage is not)
        self._resolved: dict[str, tuple] = {}

    def add(self, pattern: str, handler: Callable, query: bool | None = None) -> None:
        """``query``: True = only the query form, False = only the set form, None = both."""
        nodes = _parse_pattern(pattern)
        self._resolved.clear()
        index = len(self._entries)
        self._entries.append((nodes, handler, query))
        # index the entry under every node a command can start with: the first node, and while
        # the leading nodes are optional, the next ones
        for node in nodes:
            for form in {node.short, node.long}:
                entries = self._by_head.setdefault(form, [])
                if not entries or entries[-1] != index:
                    entries.append(index)
            if not node.optional:
                break
        else:
            self._any_head.append(index)    # every node optional (or none): a candidate always

    def resolve(self, command: str):
        """Parse ``command`` -> (handler, suffixes, args, query); CommandError if nothing matches.
        Pure pattern matching: no handler runs, no state is read."""
        head, _, args = command.strip().partition(" ")
        hit = self._resolved.get(head)
        if hit is None:
            hit = self._resolve_head(head, command)
            if len(self._resolved) >= _HEAD_CACHE:
                self._resolved.clear()
            self._resolved[head] = hit
        handler, suffixes, query = hit
        return handler, list(suffixes), args.strip(), query

    def _resolve_head(self, head: str, command: str):
        query = head.endswith("?")
        head = head[:-1] if query else head
        tokens = [t for t in head.split(":") if t]
        if not tokens or len(tokens) > _MAX_NODES:
            raise CommandError(-102, f"Syntax error: {command.strip()[:60]}")
        head_word = _HEAD_WORD.match(tokens[0]).group(0).upper()
        candidates = sorted(set(self._by_head.get(head_word, [])).union(self._any_head))
        for index in candidates:
            nodes, handler, q = self._entries[index]
            if q is not None and q != query:
                continue
            suffixes = self._match(tokens, nodes)
            if suffixes is not None:
                return handler, tuple(None if s is None else int(s) for s in suffixes), query
        raise CommandError(-113, f"Undefined header: {command.strip()[:60]}")

    def dispatch(self, command: str):
        """Resolve ``command`` and run its handler."""
        handler, suffixes, args, query = self.resolve(command)
        return handler(suffixes, args, query)

    @staticmethod
    def _match(tokens: list[str], nodes: list[_Node], ti: int = 0, ni: int = 0, acc: tuple = ()):
        """Match tokens[ti:] against nodes[ni:] allowing optional nodes to be omitted; returns the
        suffixes or None.  (Plain recursion: a nested function calling itself would be a reference
        cycle per call, garbage for the cyclic collector.)"""
        if ni == len(nodes):
            return list(acc) if ti == len(tokens) else None
        node = nodes[ni]
        if ti < len(tokens):
            got = _node_matches(tokens[ti], node)
            if got is not False:
                res = ScpiTable._match(tokens, nodes, ti + 1, ni + 1, acc + (got,) if node.suffix else acc)
                if res is not None:
                    return res
        if node.optional:
            return ScpiTable._match(tokens, nodes, ti, ni + 1, acc + (None,) if node.suffix else acc)
        return None


class ScpiInstrument(EmulatedInstrument):
    """An emulated SCPI instrument: compound messages split on ';', the IEEE 488.2 mandatory common
    commands and status reporting built in, ``:SYSTem:ERRor[:NEXT]?`` / ``:SYSTem:ERRor:COUNt?``,
    the rest from :attr:`table`, which subclasses fill in :meth:`build`.

    Common commands (IEEE 488.2-1992 §10): ``*CLS`` (clears the error queue and the event status
    register), ``*ESE <0-255>`` / ``*ESE?``, ``*ESR?`` (read and clear), ``*IDN?``, ``*OPC`` (sets the
    OPC bit: every operation of the emulator is complete when its command returns), ``*OPC?`` (1),
    ``*RST`` (:meth:`reset`; the status registers are kept), ``*SRE <0-255>`` / ``*SRE?``, ``*STB?``
    (bit 2 error queue not empty, bit 5 ESB, bit 6 MSS), ``*TST?`` (0: self-test passed), ``*WAI``.
    Every queued error sets its class's bit in the event status register (:func:`esr_bit`); the
    register starts with PON set (power on).
    """

    def __init__(self, name: str):
        super().__init__(name)
        self.table = ScpiTable()
        t = self.table
        t.add("*IDN", lambda s, a, q: self.idn, query=True)
        t.add("*RST", lambda s, a, q: self.reset(), query=False)
        t.add("*CLS", lambda s, a, q: self.clear_status(), query=False)
        t.add("*OPC", self._opc)
        t.add("*WAI", lambda s, a, q: None, query=False)
        t.add("*TST", lambda s, a, q: "0", query=True)
        t.add("*ESR", lambda s, a, q: str(self.read_esr()), query=True)
        t.add("*ESE", self._register("ese"))
        t.add("*SRE", self._register("sre"))
        t.add("*STB", lambda s, a, q: str(self.status_byte()), query=True)
        t.add(":SYSTem:ERRor[:NEXT]", lambda s, a, q: self.format_error(*self.pop_error()), query=True)
        t.add(":SYSTem:ERRor:COUNt", lambda s, a, q: str(len(self.errors)), query=True)
        self.build()

    def build(self) -> None:
        """Add the instrument's commands to :attr:`table`."""

    def reset(self) -> None:
        """``*RST``: subclasses restore their defaults (and must leave outputs off)."""

    def _opc(self, s, a, q):
        if q:
            return "1"
        self.esr |= ESR_OPC

    def _register(self, name: str):
        def handler(s, a, q):
            if q:
                return str(getattr(self, name))
            value = number(a, 0, 255, name.upper())
            if value != int(value):
                raise CommandError(-224, f"Illegal parameter value: {name.upper()} {a.strip()[:20]}")
            self.set_register(name, int(value))
        return handler

    # ------------------------------------------------------------------------------ messages
    def format_error(self, code: int, message: str) -> str:
        """``<code>,"<message>"`` (a quote inside the message becomes ``'``)."""
        return f'{code:+d},"{message.replace(chr(34), chr(39))}"' if code else '+0,"No error"'

    def split(self, message: str) -> list[str]:
        # ';' separates commands; a following command without a leading ':' continues from the
        # root here (a simplification of SCPI's path rule that every well-formed driver satisfies)
        return message.split(";")

    def compile(self, command: str):
        handler, suffixes, args, query = self.table.resolve(command)
        return lambda: handler(suffixes, args, query)

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
