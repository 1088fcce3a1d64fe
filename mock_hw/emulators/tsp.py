"""TSP (Keithley Test Script Processor, Lua) command matching for emulators — no evaluation.

A TSP instrument receives Lua chunks.  The emulator recognises the statements a driver sends —
assignments (``smua.source.levelv = 1.5``), calls (``smua.measure.i()``), ``print(...)`` of
readable expressions, ``loadscript``/``endscript`` blocks — by regular expression and runs a Python
handler.  Anything else is a syntax error in the instrument's error queue (TSP code -285), never
executed.  Numbers are printed the way a 2600B/707B prints them by default (``%.5e``).
"""
from __future__ import annotations

import re
from typing import Callable

from .base import CommandError, EmulatedInstrument

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
STRING = r"\"[^\"]*\"|'[^']*'"


def fmt(value) -> str:
    """Format a value as TSP ``print`` does: numbers as %.5e, strings verbatim, nil as 'nil'."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{float(value):.5e}"
    return str(value)


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    raise CommandError(-285, f"Program syntax error: expected a string, got {text[:30]!r}")


def number(text: str) -> float:
    if not re.fullmatch(NUMBER, text.strip()):
        raise CommandError(-285, f"Program syntax error: expected a number, got {text.strip()[:30]!r}")
    return float(text)


class TspInstrument(EmulatedInstrument):
    """An emulated TSP instrument.

    Subclasses register *statements* (regex over the whole statement → handler(match) → None) and
    *expressions* (regex → handler(match) → value or tuple of values, used inside ``print(...)``).
    ``print(a, b)`` prints values separated by tabs.  ``errorqueue.next()`` returns
    (code, message, severity, node) as the 2600B/707B do; ``errorqueue.count`` the queue length.
    ``loadscript NAME`` ... ``endscript`` stores the script text under NAME without running it;
    :meth:`run_script` is called for ``NAME()`` or ``NAME.run()``.
    """

    unknown_command = (-285, "Program syntax error")

    def __init__(self, name: str):
        super().__init__(name)
        self._statements: list[tuple[re.Pattern, Callable]] = []
        self._expressions: list[tuple[re.Pattern, Callable]] = []
        self.scripts: dict[str, str] = {}
        self._loading: tuple[str, list[str]] | None = None
        self.expression(r"errorqueue\.next\(\)", lambda m: self._next_error())
        self.expression(r"errorqueue\.count", lambda m: len(self.errors))
        self.statement(r"errorqueue\.clear\(\)", lambda m: self.errors.clear())
        self.statement(r"reset\(\)", lambda m: self.reset())
        self.expression(r"localnode\.model", lambda m: self.idn.split(",")[1].replace("Model ", ""))
        self.expression(r"localnode\.serialno", lambda m: self.idn.split(",")[2])
        self.build()

    def build(self) -> None:
        """Register the instrument's statements and expressions."""

    def reset(self) -> None:
        """``reset()``: restore defaults, outputs off / relays open."""

    def statement(self, regex: str, handler: Callable) -> None:
        self._statements.append((re.compile(regex), handler))

    def expression(self, regex: str, handler: Callable) -> None:
        self._expressions.append((re.compile(regex), handler))

    def _next_error(self):
        code, message = self.pop_error()
        return (code, message if code else "Queue Is Empty", 0 if code == 0 else 2, 1)

    def combine_replies(self) -> bool:
        return False

    def split(self, message: str) -> list[str]:
        if self._loading is not None or message.strip().startswith("loadscript"):
            return [message]
        # several statements on one line are separated by whitespace in Lua; drivers here send one
        # statement per line, or separate them with ';' (also valid Lua)
        return [part for part in message.split(";")]

    def execute(self, command: str):
        command = command.strip()
        if self._loading is not None:
            name, lines = self._loading
            if command == "endscript":
                self.scripts[name] = "\n".join(lines)
                self._loading = None
            else:
                lines.append(command)
            return None
        m = re.fullmatch(r"loadscript\s+([A-Za-z_]\w*)", command)
        if m:
            self._loading = (m.group(1), [])
            return None
        m = re.fullmatch(r"print\((.*)\)", command)
        if m:
            return "\t".join(fmt(v) for v in self._evaluate_list(m.group(1)))
        m = re.fullmatch(r"([A-Za-z_]\w*)(?:\.run)?\(\)", command)
        if m and m.group(1) in self.scripts:
            return self.run_script(m.group(1))
        for regex, handler in self._statements:
            sm = regex.fullmatch(command)
            if sm:
                return handler(sm)
        raise CommandError(-285, f"Program syntax error: {command[:60]}")

    def _evaluate_list(self, text: str) -> list:
        values: list = []
        for part in _split_args(text):
            value = self._evaluate(part)
            values.extend(value if isinstance(value, tuple) else (value,))
        return values

    def _evaluate(self, text: str):
        text = text.strip()
        if re.fullmatch(NUMBER, text):
            return float(text)
        if re.fullmatch(STRING, text):
            return unquote(text)
        for regex, handler in self._expressions:
            m = regex.fullmatch(text)
            if m:
                return handler(m)
        raise CommandError(-285, f"Program syntax error: cannot print {text[:60]}")

    def run_script(self, name: str):  # pragma: no cover - instruments that run scripts override
        raise CommandError(-286, f"TSP runtime error: script {name} cannot run on this emulator")


def _split_args(text: str) -> list[str]:
    """Split a Lua argument list on top-level commas (respecting parentheses and quotes)."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur)
    return parts
