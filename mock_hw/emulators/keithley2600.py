"""Emulated Keithley 2600B SourceMeter (a 2636B: channels ``smua`` / ``smub``, TSP), acting on a
:class:`~mock_hw.bench_physics.PhysicalBench`.

Nothing received is ever evaluated: statements and ``print(...)`` expressions are matched by
regular expression (:mod:`.tsp`) and handled in Python.  Understood (one statement per line or
``;``-separated):

* SMU attributes, assigned (``smua.source.levelv = 0.2``, ``smua.source.levelv=0.200000``) and
  printed (``print(smua.source.levelv)``): ``source.func``, ``source.levelv``, ``source.leveli``,
  ``source.limiti``, ``source.limitv``, ``source.rangev``, ``source.rangei``,
  ``source.autorangev``, ``source.autorangei``, ``source.output``, ``measure.nplc``,
  ``measure.rangev``, ``measure.rangei``, ``measure.autorangev``, ``measure.autorangei``,
  ``measure.autozero``, ``sense`` and the trigger-model attributes ``trigger.count``,
  ``trigger.arm.count``, ``trigger.{arm,source,measure,endpulse}.stimulus``,
  ``trigger.{source,measure}.action``, ``trigger.{endpulse,endsweep}.action``.  Values are numbers,
  ``true`` / ``false``, the SMU constants (``smua.OUTPUT_ON``, ``smua.OUTPUT_DCVOLTS``,
  ``smua.AUTORANGE_ON``, ``smua.ENABLE``, ``smua.SOURCE_IDLE``, ...) and event IDs
  (``smua.trigger.SOURCE_COMPLETE_EVENT_ID``, ``trigger.timer[1].EVENT_ID``); out-of-range values
  are error -222, read-only ``source.compliance`` (prints ``true`` / ``false``).
* ``smuX.measure.i()``, ``.v()``, ``.r()``, ``.iv()`` — as statements (a reading, discarded) or in
  ``print``; ``smuX.reset()``, ``reset()``.
* trigger model: ``smuX.trigger.source.listv({v, ...})``, ``smuX.trigger.source.linearv(a, b, n)``,
  ``trigger.timer[N].delay / count / passthrough / stimulus`` (also printed), ``trigger.timer[N].reset()``,
  ``smuX.trigger.initiate()``, ``waitcomplete()``.
* the instrument timer: ``print(timer.measure.t())`` (seconds of the bench clock since ``timer.reset()``,
  or since the bench started).
* the IEEE 488.2 common commands, ``print(errorqueue.next())``, ``errorqueue.clear()``,
  ``print(errorqueue.count)``, ``print(localnode.model)``, ``print(localnode.linefreq)`` (base
  class, :mod:`.tsp`); ``print(a, b, ...)`` prints its values tab-separated, as QCoDeS's driver
  reads ``print(smua.measure.i(), status.measurement.instrument.smua.condition)``.
* ``status.measurement.instrument.smuX.condition`` — bit 1 (ILMT, 2) while the bench reports the
  source in current compliance, else 0 (bit 0, VLMT, never: the emulated SMU sources voltage).
* scripts: ``loadscript NAME`` ... ``endscript`` is stored (base class); ``NAME.run()`` /
  ``NAME()`` runs it as real Lua in a sandbox (:mod:`.lua_sandbox`: no ``os`` / ``io`` / ``load``
  / ``require`` / ``string.dump``, bounded memory and instructions) whose ``smua`` / ``smub``,
  ``trigger.timer[N]``, ``waitcomplete`` and ``print`` are this emulator's; a call line
  ``f(args)`` of a function a script defined (arguments: numbers, strings, booleans, ``nil``,
  ``smua`` / ``smub``, ``node[N]``, flat tables — parsed, never evaluated) runs it there and
  replies what it printed.  A failing, endless or memory-hungry script is TSP error -286; the
  emulator carries on.  ``print(type(NAME))`` -> ``function`` / ``nil``.  So the packaged
  ``instruments/tsp/xbar_write_verify.lua`` is the one definition of the on-instrument loop.
* TSP-Net (2600B reference manual, ``tspnet.connect()`` / ``tspnet.execute()``): scripts reach
  the LAN instruments :meth:`Keithley2600Emulator.lan_link` names by address and port —
  ``tspnet.connect(address, port, init)`` (nil when nothing answers there, or beyond the 32
  connections a 2600B keeps), ``tspnet.execute(id, command[, format])`` (the command goes to the
  instrument as a line it received; with a format — ``%d`` a number delimited by punctuation,
  ``%n`` / ``%s`` / ``%t`` text — the first reply line is decoded, and a command with no reply is a
  timeout, -286), ``tspnet.disconnect(id)``.  Each exchange takes :data:`TSPNET_EXCHANGE_S` of
  emulated time; :attr:`Keithley2600Emulator.tspnet_exchanges` counts them.
* TSP-Link: :meth:`Keithley2600Emulator.link` puts an emulated 707B on the network as
  ``node[N]``; ``tsplink.reset()`` brings it online, ``print(tsplink.state)``,
  ``print(node[N].model)``; scripts call ``node[N].channel.open / close / exclusiveclose /
  getclose`` on it (under the 707B's lock, with its errors).

Bench mapping: level / output / ``limiti`` -> ``bench.set_source``; ``measure.i()`` ->
``bench.measure_current`` (``source.compliance`` reports the bench's ``tripped``); a triggered
sweep whose end-pulse comes from a timer started by the SMU's source-complete event, with
end-pulse action ``SOURCE_IDLE``, is ``bench.pulse(amplitude, timer delay)`` per point (nothing
when the output is off); any other sweep steps the DC level (``SOURCE_HOLD``) and returns to the
idle level when the end-sweep action is ``SOURCE_IDLE``.  The bench sources voltage only: a
measurement in current-source mode is error -221.  Unknown or malformed input is -285 in the error
queue (never executed, never raised).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .base import CommandError
from .lua_sandbox import LuaSandbox, LuaStopped
from .tsp import NUMBER, STRING, TspInstrument, fmt, number


CONSTANTS = {
    "OUTPUT_OFF": 0, "OUTPUT_ON": 1, "OUTPUT_HIGH_Z": 2, "OUTPUT_DCAMPS": 0, "OUTPUT_DCVOLTS": 1,
    "OUTPUT_NORMAL": 0, "OUTPUT_ZERO": 1,
    "AUTORANGE_OFF": 0, "AUTORANGE_ON": 1, "AUTORANGE_FOLLOW_LIMIT": 2, "DISABLE": 0, "ENABLE": 1,
    "SOURCE_IDLE": 0, "SOURCE_HOLD": 1, "SENSE_LOCAL": 0, "SENSE_REMOTE": 1, "SENSE_CALA": 3,
    "AUTOZERO_OFF": 0, "AUTOZERO_ONCE": 1, "AUTOZERO_AUTO": 2,
}
_SMU_EVENTS = ("SWEEPING_EVENT_ID", "ARMED_EVENT_ID", "SOURCE_COMPLETE_EVENT_ID", "MEASURE_COMPLETE_EVENT_ID",
               "PULSE_COMPLETE_EVENT_ID", "SWEEP_COMPLETE_EVENT_ID", "IDLE_EVENT_ID")
#: emulated time of one TSP-Net exchange (a command line and, for a query, its reply) with a LAN
#: instrument, s: an assumed LAN round trip on a local network with a SCPI instrument answering at
#: once (order of 1 ms; not a figure of the 2600B's or the B2900's manuals)
TSPNET_EXCHANGE_S = 1e-3
#: TSP-Net connections a 2600B keeps at once (2600B reference manual, tspnet.connect(): "You can
#: simultaneously connect to a maximum of 32 remote devices")
TSPNET_MAX = 32
#: what the 2600B prints for an overflowed reading (e.g. a resistance with zero current)
OVERFLOW = 9.91e37


def smu_event(ch: str, name: str) -> int:
    """Numeric event ID of ``smu<ch>.trigger.<name>`` (emulator numbering)."""
    return {"a": 1, "b": 11}[ch] + _SMU_EVENTS.index(name)


def timer_event(n: int) -> int:
    return 30 + int(n)


def _discrete(*allowed):
    def check(value):
        if isinstance(value, bool) or value not in allowed:
            raise CommandError(-222, f"Parameter data out of range: {value!r} (allowed {allowed})")
        return int(value)
    return check


def _span(lo, hi):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, float) or not lo <= value <= hi:
            raise CommandError(-222, f"Parameter data out of range: {value!r} (allowed {lo:g} to {hi:g})")
        return value
    return check


def _count(value):
    if isinstance(value, bool) or not isinstance(value, float) or value < 0 or not value.is_integer():
        raise CommandError(-222, f"Parameter data out of range: {value!r} (a count >= 0)")
    return int(value)


def _event(value):
    if isinstance(value, bool) or not isinstance(value, float) or value < 0 or not value.is_integer():
        raise CommandError(-222, f"Parameter data out of range: {value!r} (an event ID)")
    return int(value)


def _flag(value):
    if not isinstance(value, bool):
        raise CommandError(-222, f"Parameter data out of range: {value!r} (true or false)")
    return value


#: settable SMU attributes: path -> (default, checker)
SMU_ATTRIBUTES = {
    "source.func": (1, _discrete(0, 1)),
    "source.levelv": (0.0, _span(-200.0, 200.0)),
    "source.leveli": (0.0, _span(-1.5, 1.5)),
    "source.limiti": (0.1, _span(1e-11, 1.5)),
    "source.limitv": (20.0, _span(0.02, 200.0)),
    "source.rangev": (200.0, _span(-200.0, 200.0)),
    "source.rangei": (1.5, _span(-1.5, 1.5)),
    "source.autorangev": (1, _discrete(0, 1)),
    "source.autorangei": (1, _discrete(0, 1)),
    "source.output": (0, _discrete(0, 1, 2)),
    "source.offmode": (0, _discrete(0, 1, 2)),     # OUTPUT_NORMAL, OUTPUT_ZERO, OUTPUT_HIGH_Z
    "measure.nplc": (1.0, _span(0.001, 25.0)),
    "measure.rangev": (200.0, _span(-200.0, 200.0)),
    "measure.rangei": (1.5, _span(-1.5, 1.5)),
    "measure.autorangev": (1, _discrete(0, 1)),
    "measure.autorangei": (1, _discrete(0, 1, 2)),
    "measure.autozero": (2, _discrete(0, 1, 2)),
    "sense": (0, _discrete(0, 1, 3)),
    "trigger.count": (1, _count),
    "trigger.arm.count": (1, _count),
    "trigger.arm.stimulus": (0, _event),
    "trigger.source.stimulus": (0, _event),
    "trigger.measure.stimulus": (0, _event),
    "trigger.endpulse.stimulus": (0, _event),
    "trigger.source.action": (0, _discrete(0, 1, 2)),
    "trigger.measure.action": (0, _discrete(0, 1, 2)),
    "trigger.endpulse.action": (1, _discrete(0, 1)),
    "trigger.endsweep.action": (0, _discrete(0, 1)),
}
TIMER_ATTRIBUTES = {
    "delay": (10e-6, _span(0.0, 100e3)),
    "count": (1, _count),
    "passthrough": (False, _flag),
    "stimulus": (0, _event),
}

_SMU = r"smu([ab])"
_PATH = "|".join(re.escape(p) for p in sorted(SMU_ATTRIBUTES, key=len, reverse=True))
_NUMBERS = rf"\s*{NUMBER}\s*(?:,\s*{NUMBER}\s*)*"


@dataclass
class SmuState:
    attrs: dict = field(default_factory=lambda: {k: v for k, (v, _) in SMU_ATTRIBUTES.items()})
    sweep: list = field(default_factory=list)     # source values of the configured sweep (V)
    buffer: list = field(default_factory=list)    # readings of the trigger model's measure action


class Keithley2600Emulator(TspInstrument):
    """A 2636B whose channels ``a`` / ``b`` are the bench sources named in ``sources``."""

    idn = "Keithley Instruments Inc., Model 2636B, 4040404, 4.0.4"

    def __init__(self, bench, name: str = "K2600", sources: dict | None = None):
        self.bench = bench
        self.sources = dict(sources or {"a": f"{name}.a", "b": f"{name}.b"})
        if set(self.sources) != {"a", "b"}:
            raise ValueError("a 2636B has channels 'a' and 'b': sources must map both")
        self.smu = {ch: SmuState() for ch in "ab"}
        self.timers = {n: {k: v for k, (v, _) in TIMER_ATTRIBUTES.items()} for n in range(1, 9)}
        self.timer_zero = 0.0   # bench-clock time of the last timer.reset(), s
        #: calls of functions that loaded scripts defined (each one call line, one reply)
        self.wv_runs = 0
        #: the sandboxed Lua running loaded scripts (made on first use)
        self.lua: LuaSandbox | None = None
        self._printed: list[str] = []
        #: TSP-Link: node number -> linked emulated instrument (see :meth:`link`)
        self.tsplink: dict[int, object] = {}
        self.tsplink_state = "offline"
        #: TSP-Net: (address, port) -> reachable emulated LAN instrument; open connections by id
        self.lan: dict[tuple[str, int], object] = {}
        self.tspnet_conns: dict[int, object] = {}
        self._tspnet_next = 1
        #: TSP-Net exchanges scripts made (instrument to instrument: not host round trips)
        self.tspnet_exchanges = 0
        super().__init__(name)
        for ch in "ab":
            self._push_to_bench(ch)

    # ------------------------------------------------------------------------------ table
    def build(self) -> None:
        st, ex = self.statement, self.expression
        # the measurement condition register: bit 0 VLMT, bit 1 ILMT (2600B reference manual,
        # status.measurement.instrument.smuX); the emulated SMU sources voltage, so only ILMT
        ex(rf"status\.measurement\.instrument\.{_SMU}\.condition", lambda m: self._condition(m.group(1)))

        st(rf"{_SMU}\.({_PATH})\s*=\s*(.+)", lambda m: self._set(m.group(1), m.group(2), self._value(m.group(3))))
        ex(rf"{_SMU}\.({_PATH})", lambda m: self.smu[m.group(1)].attrs[m.group(2)])
        st(rf"{_SMU}\.source\.compliance\s*=.*",
           lambda m: self._raise(-286, "TSP Runtime error: smuX.source.compliance is read-only"))
        ex(rf"{_SMU}\.source\.compliance", lambda m: bool(self.bench.sources[self.sources[m.group(1)]].tripped))
        for what in ("i", "v", "r", "iv"):
            st(rf"{_SMU}\.measure\.{what}\(\)", lambda m, w=what: self._discard(self._measure(m.group(1), w)))
            ex(rf"{_SMU}\.measure\.{what}\(\)", lambda m, w=what: self._measure(m.group(1), w))
        st(rf"{_SMU}\.reset\(\)", lambda m: self._reset_smu(m.group(1)))

        st(rf"{_SMU}\.trigger\.source\.listv\(\s*\{{({_NUMBERS})\}}\s*\)",
           lambda m: self._sweep(m.group(1), [number(v) for v in m.group(2).split(",")]))
        st(rf"{_SMU}\.trigger\.source\.linearv\(\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*\)",
           lambda m: self._linear(m.group(1), number(m.group(2)), number(m.group(3)), number(m.group(4))))
        st(rf"{_SMU}\.trigger\.initiate\(\)", lambda m: self._initiate(m.group(1)))
        st(r"trigger\.timer\[(\d)\]\.(delay|count|passthrough|stimulus)\s*=\s*(.+)",
           lambda m: self._set_timer(int(m.group(1)), m.group(2), self._value(m.group(3))))
        ex(r"trigger\.timer\[(\d)\]\.(delay|count|passthrough|stimulus)",
           lambda m: self._timer(int(m.group(1)))[m.group(2)])
        st(r"trigger\.timer\[(\d)\]\.reset\(\)", lambda m: self._reset_timer(int(m.group(1))))
        # the instrument's timer (2600B reference manual, timer.measure.t() / timer.reset()): the
        # bench clock's seconds since the last reset (emulated instrument time on an emulated bench)
        ex(r"timer\.measure\.t\(\)", lambda m: float(self.bench.clock()) - self.timer_zero)
        st(r"timer\.reset\(\)", lambda m: setattr(self, "timer_zero", float(self.bench.clock())))

        ex(r"tsplink\.state", lambda m: self.tsplink_state)
        ex(r"tsplink\.reset\(\)", lambda m: self._tsplink_reset())
        st(r"tsplink\.reset\(\)", lambda m: self._discard(self._tsplink_reset()))
        ex(r"node\[(\d{1,2})\]\.model", lambda m: self._node_model(int(m.group(1))))
        ex(r"type\(\s*([A-Za-z_]\w*)\s*\)", lambda m: self._script_type(m.group(1)))
        # a call of a function a loaded script defined (last: every other statement comes first)
        st(r"([A-Za-z_]\w*)\((.*)\)", lambda m: self._script_call(m.group(1), m.group(2)))

    def _condition(self, ch: str) -> int:
        return 2 if self.bench.sources[self.sources[ch]].tripped else 0

    @staticmethod
    def _discard(value) -> None:
        return None

    @staticmethod
    def _raise(code, message):
        raise CommandError(code, message)

    # ---------------------------------------------------------------------------- values
    def _value(self, text: str):
        """A right-hand side: number, true/false, SMU constant or event ID — nothing else."""
        text = text.strip()
        if re.fullmatch(NUMBER, text):
            return float(text)
        if text in ("true", "false"):
            return text == "true"
        m = re.fullmatch(rf"{_SMU}\.([A-Z_]+)", text)
        if m and m.group(2) in CONSTANTS:
            return float(CONSTANTS[m.group(2)])
        m = re.fullmatch(rf"{_SMU}\.trigger\.([A-Z_]+)", text)
        if m and m.group(2) in _SMU_EVENTS:
            return float(smu_event(m.group(1), m.group(2)))
        m = re.fullmatch(r"trigger\.timer\[(\d)\]\.EVENT_ID", text)
        if m:
            self._timer(int(m.group(1)))
            return float(timer_event(int(m.group(1))))
        raise CommandError(-285, f"Program syntax error: unsupported value {text[:40]!r}")

    # ------------------------------------------------------------------------------- SMUs
    def _set(self, ch: str, path: str, value) -> None:
        _, check = SMU_ATTRIBUTES[path]
        self.smu[ch].attrs[path] = check(value)
        if path in ("source.func", "source.levelv", "source.limiti", "source.output"):
            self._push_to_bench(ch)

    def _push_to_bench(self, ch: str) -> None:
        a = self.smu[ch].attrs
        level = a["source.levelv"] if a["source.func"] == 1 else 0.0
        self.bench.set_source(self.sources[ch], level=level, on=a["source.output"] == 1,
                              compliance=a["source.limiti"])

    def _reset_smu(self, ch: str) -> None:
        self.smu[ch] = SmuState()
        self._push_to_bench(ch)

    def reset(self) -> None:
        for ch in "ab":
            self._reset_smu(ch)
        for n in self.timers:
            self._reset_timer(n)

    def _measure(self, ch: str, what: str):
        a = self.smu[ch].attrs
        if a["source.func"] != 1:
            raise CommandError(-221, "Settings conflict: the emulated bench sources voltage only")
        on = a["source.output"] == 1
        v = a["source.levelv"] if on else 0.0
        if what == "v":
            return v
        i = self.bench.measure_current(self.sources[ch])
        if what == "i":
            return i
        if what == "r":
            return v / i if i != 0 else OVERFLOW
        return (i, v)

    # --------------------------------------------------------------------- trigger model
    def _timer(self, n: int) -> dict:
        if n not in self.timers:
            raise CommandError(-286, f"TSP Runtime error: no trigger timer {n} (1 to 8)")
        return self.timers[n]

    def _set_timer(self, n: int, name: str, value) -> None:
        timer = self._timer(n)
        timer[name] = TIMER_ATTRIBUTES[name][1](value)

    def _reset_timer(self, n: int) -> None:
        self._timer(n).update({k: v for k, (v, _) in TIMER_ATTRIBUTES.items()})

    def _sweep(self, ch: str, values: list[float]) -> None:
        for v in values:
            _span(-200.0, 200.0)(v)
        self.smu[ch].sweep = list(values)

    def _linear(self, ch: str, start: float, stop: float, points: float) -> None:
        if not points.is_integer() or points < 1:
            raise CommandError(-222, f"Parameter data out of range: points {points!r}")
        n = int(points)
        self._sweep(ch, [start] if n == 1 else [start + (stop - start) * k / (n - 1) for k in range(n)])

    def _initiate(self, ch: str) -> None:
        s, a = self.smu[ch], self.smu[ch].attrs
        if a["source.func"] != 1:
            raise CommandError(-221, "Settings conflict: the emulated bench sources voltage only")
        if a["trigger.arm.stimulus"] or a["trigger.source.stimulus"] or a["trigger.measure.stimulus"]:
            raise CommandError(-221, "Settings conflict: the emulator never generates the events this "
                                     "trigger model waits for (set the arm/source/measure stimulus to 0)")
        points = a["trigger.count"] * a["trigger.arm.count"]
        if points == 0:
            raise CommandError(-221, "Settings conflict: an endless sweep (count 0) cannot be emulated")
        if a["trigger.source.action"] == 1 and not s.sweep:
            raise CommandError(-221, "Settings conflict: source action enabled but no sweep configured")
        width = self._pulse_width(ch)
        src = self.sources[ch]
        if a["source.output"] != 1:
            return  # the sweep runs, but nothing reaches the terminals
        with self.bench.lock:
            for k in range(points):
                level = s.sweep[k % len(s.sweep)] if a["trigger.source.action"] == 1 else a["source.levelv"]
                if width is not None:
                    current = self.bench.pulse(src, level, width, base=a["source.levelv"])
                else:
                    self.bench.set_source(src, level=level)
                    current = self.bench.measure_current(src) if a["trigger.measure.action"] == 1 else None
                if a["trigger.measure.action"] == 1:
                    s.buffer.append(current)
            if width is None and a["trigger.endsweep.action"] == 0:
                self.bench.set_source(src, level=a["source.levelv"])

    def _pulse_width(self, ch: str):
        """The pulse width when the trigger model makes pulses (end pulse from a timer started by
        this SMU's source-complete event, action SOURCE_IDLE), else None (DC steps)."""
        a = self.smu[ch].attrs
        if a["trigger.endpulse.action"] != 0:
            return None
        stim = a["trigger.endpulse.stimulus"]
        if stim == 0:
            return 0.0  # back to idle at once
        for n, timer in self.timers.items():
            if stim == timer_event(n):
                if timer["stimulus"] != smu_event(ch, "SOURCE_COMPLETE_EVENT_ID") or timer["passthrough"]:
                    raise CommandError(-221, f"Settings conflict: timer {n} is not started by smu{ch}'s "
                                             f"source-complete event (without passthrough)")
                return float(timer["delay"]) * max(int(timer["count"]), 1)
        raise CommandError(-221, "Settings conflict: the end-pulse event is never generated by the emulator")

    # ------------------------------------------------------------------- scripts (real Lua)
    def _sandbox(self) -> LuaSandbox:
        """The instrument's Lua, made on first use: the SMUs, trigger timers, ``print``,
        ``waitcomplete`` and the TSP-Link nodes (``node[N]``) bound to this emulator."""
        if self.lua is None:
            self.lua = lua = LuaSandbox()
            make_smu, make_node, make_timers = lua.runtime.execute(_LUA_BINDINGS)
            env = lua.env
            for ch in "ab":
                env[f"smu{ch}"] = make_smu(ch, self._lua_get, self._lua_set, self._lua_call)
            env.trigger = lua.runtime.table_from({"timer": make_timers(self._lua_timer_get, self._lua_timer_set)})
            env.print = self._lua_print
            env.waitcomplete = lambda *a: None
            env.tspnet = lua.runtime.table_from({"connect": self._tspnet_connect, "execute": self._tspnet_execute,
                                                 "disconnect": self._tspnet_disconnect})
            nodes = {n: make_node(n, self._link_call, self._link_model(n)) for n in self.tsplink}
            env.node = lua.runtime.table_from(nodes)
        return self.lua

    def run_script(self, name: str):
        """Run a loaded script in the sandboxed Lua (:mod:`.lua_sandbox`): it defines functions
        (``xbar_wv``, ``xbar_tune``, ...) that call lines then run.  A script that fails, loops or
        allocates without bound is stopped with TSP error -286; the emulator carries on."""
        self._run_lua(lambda lua: lua.run(self.scripts[name], name))
        return None

    def _run_lua(self, fn):
        self._printed = []
        try:
            fn(self._sandbox())
        except CommandError:
            raise
        except LuaStopped as exc:
            raise CommandError(-286, f"TSP Runtime error: {str(exc)[:200]}") from None
        return "\n".join(self._printed) if self._printed else None

    def _function(self, name: str):
        if self.lua is None:
            return None
        f = self.lua.env[name]
        return f if self.lua.runtime.eval("type")(f) == "function" else None

    def _script_type(self, name: str) -> str:
        if self.lua is None:
            return "nil"
        return str(self.lua.runtime.eval("type")(self.lua.env[name]))

    def _script_call(self, name: str, args_text: str):
        """``NAME(args)`` with NAME a function a loaded script defined: the arguments (numbers,
        strings, ``true`` / ``false`` / ``nil``, ``smua`` / ``smub``, ``node[N]``, flat tables of
        numbers and strings) are parsed, never evaluated, and the function runs in the sandbox;
        what it prints is the reply."""
        if self._function(name) is None:
            raise CommandError(-286, f"TSP Runtime error: attempt to call global '{name}' (a nil value)")
        args = parse_call_arguments(args_text)
        self.wv_runs += 1

        def call(lua):
            values = [self._lua_value(lua, a) for a in args]
            lua.call(lua.env[name], *values)
        return self._run_lua(call)

    def _lua_value(self, lua, arg):
        kind, value = arg
        if kind == "smu":
            return lua.env[f"smu{value}"]
        if kind == "node":
            if value not in self.tsplink:
                raise CommandError(-286, f"TSP Runtime error: node[{value}] is not on the TSP-Link network")
            return lua.env.node[value]
        if kind == "table":
            return lua.table(value)
        return value

    def _lua_print(self, *values):
        self._printed.append("\t".join(fmt(v) for v in values))

    # the SMU attributes and functions, as the bindings ask for them
    def _lua_get(self, ch, path):
        if path in SMU_ATTRIBUTES:
            return "value", float(self.smu[ch].attrs[path])
        if path in CONSTANTS:
            return "value", float(CONSTANTS[path])
        if path.startswith("trigger.") and path[8:] in _SMU_EVENTS:
            return "value", float(smu_event(ch, path[8:]))
        if path == "source.compliance":
            return "value", bool(self.bench.sources[self.sources[ch]].tripped)
        if path in _SMU_FUNCTIONS:
            return "func", None
        if any(p.startswith(path + ".") for p in (*SMU_ATTRIBUTES, *_SMU_FUNCTIONS)):
            return "node", None
        raise CommandError(-286, f"TSP Runtime error: smu{ch}.{path} does not exist")

    def _lua_set(self, ch, path, value):
        if path not in SMU_ATTRIBUTES:
            raise CommandError(-286, f"TSP Runtime error: smu{ch}.{path} cannot be set")
        self._set(ch, path, float(value) if isinstance(value, int) and not isinstance(value, bool) else value)

    def _lua_call(self, ch, path, *args):
        if path in ("measure.i", "measure.v", "measure.r"):
            return float(self._measure(ch, path[-1]))
        if path == "measure.iv":
            return tuple(float(x) for x in self._measure(ch, "iv"))
        if path == "reset":
            return self._reset_smu(ch)
        if path == "trigger.initiate":
            return self._initiate(ch)
        if path == "trigger.source.listv":
            values = list(args[0].values()) if args and hasattr(args[0], "values") else []
            return self._sweep(ch, [float(v) for v in values])
        if path == "trigger.source.linearv":
            return self._linear(ch, *(float(a) for a in args[:3]))
        raise CommandError(-286, f"TSP Runtime error: smu{ch}.{path}() does not exist")

    def _lua_timer_get(self, n, name):
        n = int(n)
        if name == "EVENT_ID":
            self._timer(n)
            return float(timer_event(n))
        value = self._timer(n)[name]
        return value if isinstance(value, bool) else float(value)

    def _lua_timer_set(self, n, name, value):
        if name not in TIMER_ATTRIBUTES:
            raise CommandError(-286, f"TSP Runtime error: trigger.timer[{n}].{name} cannot be set")
        self._set_timer(int(n), name, float(value) if isinstance(value, int) and not isinstance(value, bool) else value)

    # ---------------------------------------------------------------------------- TSP-Link
    def link(self, node: int, instrument) -> None:
        """Put ``instrument`` (an emulated 707B) on this 2600B's TSP-Link network as ``node``:
        scripts reach its ``channel`` functions as ``node[N].channel.*``."""
        self.tsplink[int(node)] = instrument
        self.lua = None

    def _link_model(self, n: int) -> str:
        return self.tsplink[n].model

    def _link_call(self, n, name, arg=None):
        """``node[n].channel.<name>(arg)`` on the linked matrix, under its own lock (a remote
        command over TSP-Link); errors are the matrix's."""
        matrix = self.tsplink[int(n)]
        if self.tsplink_state != "online":
            raise CommandError(-286, "TSP Runtime error: TSP-Link is offline (run tsplink.reset())")
        if name not in ("open", "close", "exclusiveclose", "getclose") or not isinstance(arg, str):
            raise CommandError(-286, f"TSP Runtime error: node[{n}].channel.{name} cannot be called so")
        with matrix.lock:
            channels = matrix.channel_list(arg)
            if name == "open":
                return matrix._open(channels)
            if name == "close":
                return matrix._close(channels)
            if name == "exclusiveclose":
                return matrix._exclusive(channels)
            return matrix._getclose(channels)

    # ----------------------------------------------------------------------------- TSP-Net
    def lan_link(self, address: tuple[str, int], instrument) -> None:
        """Make ``instrument`` (an emulated SCPI instrument) reachable by scripts' TSP-Net at
        ``address`` (host, port): what a LAN cable between them does."""
        self.lan[(str(address[0]), int(address[1]))] = instrument

    def _tspnet_connect(self, address, port=None, init=None):
        """``tspnet.connect(address[, port, init])``: the connection id, or nil."""
        inst = self.lan.get((str(address), int(port) if port else 5025))
        if inst is None or len(self.tspnet_conns) >= TSPNET_MAX:
            return None
        cid, self._tspnet_next = self._tspnet_next, self._tspnet_next + 1
        self.tspnet_conns[cid] = inst
        if init:
            self._tspnet_send(inst, str(init))
        return cid

    def _tspnet_send(self, inst, command: str) -> list[str]:
        replies = inst.process(command)
        self.tspnet_exchanges += 1
        self.bench.wait(TSPNET_EXCHANGE_S)
        return replies

    def _tspnet_execute(self, cid, command, fmt=None):
        """``tspnet.execute(id, command[, format])``: see the module docstring."""
        inst = self.tspnet_conns.get(int(cid)) if isinstance(cid, (int, float)) else None
        if inst is None:
            raise CommandError(-286, "TSP Runtime error: tspnet.execute: invalid connection id")
        replies = self._tspnet_send(inst, str(command))
        if fmt is None:
            return None
        m = re.fullmatch(r"%(\d*)([dnst])", str(fmt))
        if not m:
            raise CommandError(-286, f"TSP Runtime error: tspnet format {str(fmt)[:20]!r} is not supported here")
        if not replies:
            raise CommandError(-286, "TSP Runtime error: tspnet.execute: timeout waiting for the reply")
        line = replies[0]
        if m.group(2) != "d":
            return line[: int(m.group(1))] if m.group(1) else line
        field = re.split(r"[,;\s]", line.strip(), maxsplit=1)[0]
        return float(field) if re.fullmatch(NUMBER, field) else None

    def _tspnet_disconnect(self, cid):
        if isinstance(cid, (int, float)):
            self.tspnet_conns.pop(int(cid), None)

    def _tsplink_reset(self) -> int:
        """``tsplink.reset()``: the network comes online with every linked node; returns the number
        of nodes (this one included).  With no node linked it stays offline (error 1205 on a
        2600B: no other node found)."""
        if not self.tsplink:
            self.tsplink_state = "offline"
            raise CommandError(-286, "TSP Runtime error: tsplink.reset() found no other node")
        self.tsplink_state = "online"
        return len(self.tsplink) + 1

    def _node_model(self, n: int) -> str:
        if self.tsplink_state != "online" or n not in self.tsplink:
            raise CommandError(-286, f"TSP Runtime error: node[{n}] is not on the TSP-Link network")
        return self.tsplink[n].model


#: SMU functions scripts may call (relative to smuX)
_SMU_FUNCTIONS = ("measure.i", "measure.v", "measure.r", "measure.iv", "reset", "trigger.initiate",
                  "trigger.source.listv", "trigger.source.linearv")

#: Lua bindings (trusted text, compiled outside the sandbox so that setmetatable is available to
#: them and not to scripts): smuX proxies whose attribute reads, writes and calls go to Python
_LUA_BINDINGS = """
local function make_smu(ch, get, set, call)
  local function proxy(prefix)
    return setmetatable({}, {
      __index = function(t, k)
        local path = prefix .. k
        local kind, v = get(ch, path)
        if kind == "value" then return v end
        if kind == "func" then return function(...) return call(ch, path, ...) end end
        return proxy(path .. ".")
      end,
      __newindex = function(t, k, v) set(ch, prefix .. k, v) end,
    })
  end
  return proxy("")
end
local function make_node(n, call, model)
  local channel = {}
  for _, name in ipairs({"open", "close", "exclusiveclose", "getclose"}) do
    channel[name] = function(list) return call(n, name, list) end
  end
  return {channel = channel, model = model}
end
local function make_timers(get, set)
  local timers = {}
  for n = 1, 8 do
    timers[n] = setmetatable({}, {
      __index = function(t, k) return get(n, k) end,
      __newindex = function(t, k, v) set(n, k, v) end,
    })
  end
  return timers
end
return make_smu, make_node, make_timers
"""

#: one argument of a call line: number, string, true/false/nil, smua/smub, node[N], or a flat table
_ARG_TOKEN = re.compile(rf"\s*(?:({NUMBER})|({STRING})|(true|false|nil)|smu([ab])|node\[(\d{{1,2}})\]|(\{{))\s*")
_ITEM_TOKEN = re.compile(rf"\s*(?:({NUMBER})|({STRING}))\s*")


def parse_call_arguments(text: str) -> list[tuple[str, object]]:
    """The arguments of a call line as (kind, value) pairs, in one left-to-right scan (linear
    time); CommandError -285 on anything else (nothing is evaluated)."""
    args: list[tuple[str, object]] = []
    pos, n = 0, len(text)
    if not text.strip():
        return args
    while True:
        m = _ARG_TOKEN.match(text, pos)
        if not m:
            raise CommandError(-285, f"Program syntax error: bad argument near {text[pos:pos + 30]!r}")
        pos = m.end()
        if m.group(1):
            args.append(("value", float(m.group(1))))
        elif m.group(2):
            args.append(("value", m.group(2)[1:-1]))
        elif m.group(3):
            args.append(("value", {"true": True, "false": False, "nil": None}[m.group(3)]))
        elif m.group(4):
            args.append(("smu", m.group(4)))
        elif m.group(5):
            args.append(("node", int(m.group(5))))
        else:
            items = []
            while True:
                if text.startswith("}", pos):
                    pos += 1
                    break
                im = _ITEM_TOKEN.match(text, pos)
                if not im:
                    raise CommandError(-285, f"Program syntax error: bad table near {text[pos:pos + 30]!r}")
                items.append(float(im.group(1)) if im.group(1) else im.group(2)[1:-1])
                pos = im.end()
                if text.startswith(",", pos):
                    pos += 1
                elif not text.startswith("}", pos):
                    raise CommandError(-285, f"Program syntax error: bad table near {text[pos:pos + 30]!r}")
            args.append(("table", items))
            while pos < n and text[pos].isspace():
                pos += 1
        if pos >= n:
            return args
        if text[pos] != ",":
            raise CommandError(-285, f"Program syntax error: bad argument near {text[pos:pos + 30]!r}")
        pos += 1
