"""TSP (Keithley Test Script Processor, Lua) command matching for emulators — no evaluation.

A TSP instrument receives Lua chunks.  The emulator recognises the statements a driver sends —
assignments (``smua.source.levelv = 1.5``), calls (``smua.measure.i()``), ``print(...)`` of
readable expressions, ``loadscript``/``endscript`` blocks — by regular expression and runs a Python
handler.  Anything else is a syntax error in the instrument's error queue (TSP code -285), never
executed.  Numbers are printed the way a 2600B/707B prints them by default (``%.5e``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from .base import ESR_OPC, CommandError, EmulatedInstrument, failing, split_args

#: longest script text ``loadscript`` stores, characters (bounds the emulator's memory)
MAX_SCRIPT = 262_144
#: most values one ``print(...)`` takes: Lua (5.0, 5.1; TSP is Lua) gives a function 250 registers
#: (MAXSTACK, llimits.h) and refuses a longer call, "function or expression too complex"
MAX_PRINT_VALUES = 250

#: a Lua number literal, written so that no input makes the matcher backtrack (each digit run
#: is matched one way only): linear time on any text
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
STRING = r"\"[^\"]*\"|'[^']*'"
_NUMBER = re.compile(NUMBER)
_STRING = re.compile(STRING)
_PRINT = re.compile(r"print\((.*)\)", re.DOTALL)
_CALL = re.compile(r"([A-Za-z_]\w*)(?:\.run)?\(\)")
_LOADSCRIPT = re.compile(r"(loadscript|loadandrunscript)(?:\s+([A-Za-z_]\w*))?")
_SCRIPT_HEADS = ("loadscript", "loadandrunscript")


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
    if not _NUMBER.fullmatch(text.strip()):
        raise CommandError(-285, f"Program syntax error: expected a number, got {text.strip()[:30]!r}")
    return float(text)


@dataclass
class _Loading:
    """A script being received between ``loadscript`` / ``loadandrunscript`` and ``endscript``."""

    name: str | None
    run: bool
    lines: list[str] = field(default_factory=list)
    size: int = 0               # characters so far (bounded by MAX_SCRIPT)


class TspInstrument(EmulatedInstrument):
    """An emulated TSP instrument.

    Subclasses register *statements* (regex over the whole statement → handler(match) → None) and
    *expressions* (regex → handler(match) → value or tuple of values, used inside ``print(...)``).
    ``print(a, b)`` prints values separated by tabs.  ``errorqueue.next()`` returns
    (code, message, severity, node) as the 2600B/707B do; ``errorqueue.count`` the queue length.
    ``loadscript NAME`` ... ``endscript`` stores the script text under NAME without running it;
    :meth:`run_script` is called for ``NAME()`` or ``NAME.run()``; ``loadandrunscript [NAME]`` ...
    ``endscript`` stores (if named) and then runs it the same way — an unnamed script is refused
    (-286): its lines are never executed one by one.  ``*IDN?`` answers
    :attr:`idn`, ``localnode.model`` its model (``Model 2636B`` -> ``2636B``), ``localnode.serialno``
    its serial number, ``localnode.linefreq`` the line frequency (:attr:`line_frequency`).

    Matching (the regexes, outside the instrument lock) and running (the handlers, under the lock)
    are separate: :meth:`compile` returns the action of one statement.  Statement regexes must
    match in linear time (no nested or adjacent ambiguous repetitions).
    """

    unknown_command = (-285, "Program syntax error")
    #: what localnode.linefreq reports, Hz (the mains the emulated bench pretends to run on)
    line_frequency = 50.0

    def __init__(self, name: str):
        super().__init__(name)
        self._statements: list[tuple[re.Pattern, Callable]] = []
        self._expressions: list[tuple[re.Pattern, Callable]] = []
        self.scripts: dict[str, str] = {}
        self._loading: _Loading | None = None
        parts = [p.strip() for p in self.idn.split(",")]
        self.model = parts[1].replace("Model ", "") if len(parts) > 1 else ""
        self.serial = parts[2] if len(parts) > 2 else ""
        # the IEEE 488.2 common commands, which TSP instruments accept as statements
        self.statement(r"\*IDN\?", lambda m: self.idn)
        self.statement(r"\*RST", lambda m: self.reset())
        self.statement(r"\*CLS", lambda m: self.clear_status())
        self.statement(r"\*OPC\?", lambda m: "1")
        self.statement(r"\*OPC", lambda m: setattr(self, "esr", self.esr | ESR_OPC))
        self.statement(r"\*WAI|waitcomplete\(\)", lambda m: None)
        self.statement(r"\*TST\?", lambda m: "0")
        self.statement(r"\*ESR\?", lambda m: str(self.read_esr()))
        self.statement(r"\*STB\?", lambda m: str(self.status_byte()))
        self.statement(r"\*(ESE|SRE)\?", lambda m: str(getattr(self, m.group(1).lower())))
        self.statement(r"\*(ESE|SRE)\s+(\d{1,3})", lambda m: self.set_register(m.group(1).lower(), int(m.group(2))))
        self.expression(r"errorqueue\.next\(\)", lambda m: self._next_error())
        self.expression(r"errorqueue\.count", lambda m: len(self.errors))
        self.statement(r"errorqueue\.clear\(\)", lambda m: self.errors.clear())
        self.statement(r"reset\(\)", lambda m: self.reset())
        self.expression(r"localnode\.model", lambda m: self.model)
        self.expression(r"localnode\.serialno", lambda m: self.serial)
        self.expression(r"localnode\.linefreq", lambda m: self.line_frequency)
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
        # several statements on one line are separated by whitespace in Lua; drivers here send one
        # statement per line, or separate them with ';' (also valid Lua)
        if message.lstrip().startswith(_SCRIPT_HEADS):
            return []       # the whole line is the script header (see bind)
        return message.split(";")

    def bind(self, message, actions):
        """While a script is being loaded every line is script text, whatever it parsed as."""
        text = message.strip()
        if self._loading is not None:
            return [lambda: self._script_line(text)]
        if text.startswith(_SCRIPT_HEADS):
            m = _LOADSCRIPT.fullmatch(text)
            if not m or (m.group(1) == "loadscript" and not m.group(2)):
                return [failing(CommandError(-285, f"Program syntax error: {text[:60]}"))]
            return [lambda: self._start_script(m.group(2), run=m.group(1) == "loadandrunscript")]
        return actions

    def _start_script(self, name: str | None, run: bool) -> None:
        self._loading = _Loading(name, run)

    def _script_line(self, text: str):
        """One line of the script being loaded; ``endscript`` stores it (under its name) and, for
        ``loadandrunscript``, runs it: only :meth:`run_script` decides what may run — the text of
        an unnamed script is never executed, line by line or otherwise."""
        loading = self._loading
        if text == "endscript":
            self._loading = None
            if loading.name is not None:
                self.scripts[loading.name] = "\n".join(loading.lines)
            if not loading.run:
                return None
            if loading.name is None:
                raise CommandError(-286, "TSP Runtime error: anonymous script not run (the emulator runs no Lua)")
            return self.run_script(loading.name)
        if text:
            loading.size += len(text) + 1
            if loading.size > MAX_SCRIPT:
                self._loading = None
                raise CommandError(-286, f"TSP Runtime error: script longer than {MAX_SCRIPT} characters")
            loading.lines.append(text)
        return None

    def compile(self, command: str):
        m = _PRINT.fullmatch(command)
        if m:
            getters = self._compile_list(m.group(1))
            return lambda: "\t".join(fmt(v) for v in self._values(getters))
        statement = None
        for regex, handler in self._statements:
            sm = regex.fullmatch(command)
            if sm:
                statement = (handler, sm)
                break
        call = _CALL.fullmatch(command)
        if call:
            name = call.group(1)
            return lambda: self._call(name, statement, command)
        if statement is None:
            raise CommandError(-285, f"Program syntax error: {command[:60]}")
        handler, sm = statement
        return lambda: handler(sm)

    def _call(self, name, statement, command):
        """``NAME()`` runs a loaded script, else it is whatever statement it matched."""
        if name in self.scripts:
            return self.run_script(name)
        if statement is None:
            raise CommandError(-285, f"Program syntax error: {command[:60]}")
        return statement[0](statement[1])

    def _compile_list(self, text: str) -> list[Callable]:
        parts = split_args(text, nesting=True, limit=MAX_PRINT_VALUES)
        if len(parts) > MAX_PRINT_VALUES:
            raise CommandError(-285, f"Program syntax error: function or expression too complex "
                                     f"(more than {MAX_PRINT_VALUES} values)")
        return [self._compile_expression(part) for part in parts]

    @staticmethod
    def _values(getters) -> list:
        values: list = []
        for get in getters:
            value = get()
            values.extend(value if isinstance(value, tuple) else (value,))
        return values

    def _compile_expression(self, text: str) -> Callable:
        text = text.strip()
        if _NUMBER.fullmatch(text):
            value = float(text)
            return lambda: value
        if _STRING.fullmatch(text):
            s = text[1:-1]
            return lambda: s
        for regex, handler in self._expressions:
            m = regex.fullmatch(text)
            if m:
                return lambda: handler(m)
        raise CommandError(-285, f"Program syntax error: cannot print {text[:60]}")

    def run_script(self, name: str):  # pragma: no cover - instruments that run scripts override
        raise CommandError(-286, f"TSP runtime error: script {name} cannot run on this emulator")
