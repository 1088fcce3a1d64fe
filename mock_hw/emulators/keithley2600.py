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
* the IEEE 488.2 common commands, ``print(errorqueue.next())``, ``errorqueue.clear()``,
  ``print(errorqueue.count)``, ``print(localnode.model)``, ``print(localnode.linefreq)`` (base
  class, :mod:`.tsp`); ``print(a, b, ...)`` prints its values tab-separated, as QCoDeS's driver
  reads ``print(smua.measure.i(), status.measurement.instrument.smua.condition)``.
* ``status.measurement.instrument.smuX.condition`` — bit 1 (ILMT, 2) while the bench reports the
  source in current compliance, else 0 (bit 0, VLMT, never: the emulated SMU sources voltage).
* the write-verify script: ``loadscript xbarwv`` ... ``endscript`` is stored (base class);
  ``xbarwv.run()`` / ``xbarwv()`` checks that the stored text is xbarlab's packaged
  ``instruments/tsp/xbar_write_verify.lua`` (else -286 TSP runtime error) and only then counts
  ``xbar_wv`` as defined; ``xbar_wv(smuX, smuY, <19 numbers>)`` runs :func:`write_verify_loop`, a
  native Python implementation of the script's loop, through this emulator's own SMU model
  (reads: level ``vread``, ``measure.i()``, level 0; pulses: one-point trigger-model sweeps) and
  prints the line the script prints.  ``print(type(xbar_wv))`` -> ``function`` / ``nil``.

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
from importlib import resources

from .base import CommandError
from .tsp import NUMBER, TspInstrument, number

SCRIPT_NAME = "xbarwv"
SCRIPT_FUNCTION = "xbar_wv"
#: number of numeric arguments of xbar_wv after (src, sense)
N_WV_ARGS = 19

CONSTANTS = {
    "OUTPUT_OFF": 0, "OUTPUT_ON": 1, "OUTPUT_HIGH_Z": 2, "OUTPUT_DCAMPS": 0, "OUTPUT_DCVOLTS": 1,
    "OUTPUT_NORMAL": 0, "OUTPUT_ZERO": 1,
    "AUTORANGE_OFF": 0, "AUTORANGE_ON": 1, "AUTORANGE_FOLLOW_LIMIT": 2, "DISABLE": 0, "ENABLE": 1,
    "SOURCE_IDLE": 0, "SOURCE_HOLD": 1, "SENSE_LOCAL": 0, "SENSE_REMOTE": 1, "SENSE_CALA": 3,
    "AUTOZERO_OFF": 0, "AUTOZERO_ONCE": 1, "AUTOZERO_AUTO": 2,
}
_SMU_EVENTS = ("SWEEPING_EVENT_ID", "ARMED_EVENT_ID", "SOURCE_COMPLETE_EVENT_ID", "MEASURE_COMPLETE_EVENT_ID",
               "PULSE_COMPLETE_EVENT_ID", "SWEEP_COMPLETE_EVENT_ID", "IDLE_EVENT_ID")
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


def packaged_script_lines() -> list[str]:
    """xbarlab's write-verify script as the emulator stores a loaded script: stripped, non-blank lines."""
    text = resources.files("instruments").joinpath("tsp", "xbar_write_verify.lua").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------- the write-verify loop
WV_PARAMS = ("target", "tol", "guard", "consecutive", "vset0", "vreset0", "vstep", "vsetmax", "vresetmax",
             "width0", "width_ramp", "width_max", "vread", "maxpulses", "pulses_at_cap", "stuck_rel",
             "stuck_ramp", "reset_v", "reset_width")


def write_verify_loop(read, pulse, p: dict):
    """The loop of ``xbar_write_verify.lua``'s ``xbar_wv``, statement for statement, in Python.

    ``read()`` returns one conductance reading (S); ``pulse(amplitude, width)`` applies one pulse;
    ``p`` holds :data:`WV_PARAMS`.  Returns (status, pulses, reads, final reading, trace) with the
    trace a list of (amplitude applied just before the read, reading)."""
    pulses = reads = band = at_cap = last_pol = 0
    amp, width, applied, g = 0.0, p["width0"], 0.0, 0.0
    g_lo = g_hi = status = None
    trace = []
    if p["reset_v"] > 0:
        pulse(-p["reset_v"], p["reset_width"])
        pulses = 1
        applied = -p["reset_v"]
    while status is None:
        g = read()
        reads += 1
        trace.append((applied, g))
        applied = 0.0
        if g_lo is None or g < g_lo:
            g_lo = g
        if g_hi is None or g > g_hi:
            g_hi = g
        if abs(g - p["target"]) <= p["tol"] * (1 - p["guard"]) * p["target"]:
            band += 1
            at_cap = 0
            if band >= p["consecutive"]:
                status = "converged"
        else:
            band = 0
            pol, start, cap = 1, p["vset0"], p["vsetmax"]
            if g >= p["target"]:
                pol, start, cap = -1, p["vreset0"], p["vresetmax"]
            same = pol == last_pol
            amp = min(amp + p["vstep"], cap) if same else start
            if same and amp >= cap - 1e-12:
                at_cap += 1
                width = min(width * p["width_ramp"], p["width_max"])
            else:
                at_cap = 0
                width = p["width0"]
            if (g_hi - g_lo) <= p["stuck_rel"] * g_lo and amp >= start + p["stuck_ramp"] - 1e-9:
                status = "stuck"
            elif at_cap > p["pulses_at_cap"] or pulses >= p["maxpulses"]:
                status = "failed"
            else:
                pulse(pol * amp, width)
                pulses += 1
                last_pol = pol
                applied = pol * amp
    return status, pulses, reads, g, trace


def format_write_verify(status, pulses, reads, final, trace) -> str:
    """The line the script prints: ``status,pulses,reads,final,a1,g1,...`` (C's %d and %.5e)."""
    head = f"{status},{int(pulses)},{int(reads)},{final:.5e},"
    return head + ",".join(f"{a:.5e},{g:.5e}" for a, g in trace)


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
        self.wv_defined = False
        self.wv_runs = 0
        self._script_lines = packaged_script_lines()
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

        ex(rf"type\(\s*{SCRIPT_FUNCTION}\s*\)", lambda m: "function" if self.wv_defined else "nil")
        args = rf"\s*{_SMU}\s*,\s*{_SMU}\s*((?:,\s*{NUMBER}\s*){{{N_WV_ARGS}}})(?:,\s*{_SMU}\s*)?"
        st(rf"{SCRIPT_FUNCTION}\({args}\)",
           lambda m: self._write_verify(m.group(1), m.group(2), m.group(3), m.group(4)))
        st(rf"{SCRIPT_FUNCTION}\(.*\)",
           lambda m: self._raise(-286, f"TSP Runtime error: bad arguments to {SCRIPT_FUNCTION}"))

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

    # ---------------------------------------------------------------------- write-verify
    def run_script(self, name: str):
        if name != SCRIPT_NAME:
            raise CommandError(-286, f"TSP Runtime error: script {name} cannot run on this emulator "
                                     f"(it runs no Lua)")
        if self.scripts[name].split("\n") != self._script_lines:
            raise CommandError(-286, f"TSP runtime error: script {name} is not xbarlab's packaged "
                                     f"write-verify script (the emulator runs no Lua)")
        self.wv_defined = True
        return None

    def _write_verify(self, src: str, sense: str, numbers: str, bias: str | None = None) -> str:
        if not self.wv_defined:
            raise CommandError(-286, f"TSP Runtime error: attempt to call global `{SCRIPT_FUNCTION}' (a nil value)")
        values = [number(v) for v in numbers.strip().lstrip(",").split(",")]
        p = dict(zip(WV_PARAMS, values))
        if p["vread"] == 0:
            raise CommandError(-286, "TSP Runtime error: vread = 0 (division by zero)")
        self.wv_runs += 1
        with self.bench.lock:
            # the script's set-up, through the same SMU model as the statements it executes
            for ch in dict.fromkeys(c for c in (src, sense, bias) if c is not None):
                self._set(ch, "source.func", 1.0)
                self._set(ch, "source.levelv", 0.0)
                self._set(ch, "source.output", 1.0)
            for path, value in (("trigger.arm.count", 1.0), ("trigger.arm.stimulus", 0.0),
                                ("trigger.source.stimulus", 0.0), ("trigger.count", 1.0),
                                ("trigger.source.action", 1.0), ("trigger.measure.action", 0.0),
                                ("trigger.endpulse.action", 0.0), ("trigger.endsweep.action", 0.0)):
                self._set(src, path, value)
            self._set_timer(1, "count", 1.0)
            self._set_timer(1, "passthrough", False)
            self._set_timer(1, "stimulus", float(smu_event(src, "SOURCE_COMPLETE_EVENT_ID")))
            self._set(src, "trigger.endpulse.stimulus", float(timer_event(1)))

            def read():
                if bias is not None:
                    self._set(bias, "source.levelv", p["vread"])
                self._set(src, "source.levelv", p["vread"])
                i = self._measure(sense, "i")
                self._set(src, "source.levelv", 0.0)
                return i / p["vread"] if sense == src else -i / p["vread"]

            def pulse(amplitude, width):
                if bias is not None:
                    self._set(bias, "source.levelv", amplitude / 2)
                self._sweep(src, [amplitude])
                self._set_timer(1, "delay", float(width))
                self._initiate(src)

            result = write_verify_loop(read, pulse, p)
            if bias is not None:
                self._set(bias, "source.levelv", 0.0)
        return format_write_verify(*result)
