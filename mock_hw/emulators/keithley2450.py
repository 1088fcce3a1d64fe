"""Emulated Keithley 2450 SourceMeter (native SCPI command set) acting on a
:class:`~mock_hw.bench_physics.PhysicalBench` source.

Understands what :class:`instruments.keithley2450.Keithley2450`, pymeasure's own ``Keithley2450`` and
QCoDeS's ``Keithley2450`` send (short and long forms, any case, compound ``;`` messages):

* source: ``:SOUR:FUNC VOLT|CURR``, ``:SOUR:VOLT[:LEV][:IMM][:AMPL]``, ``:SOUR:VOLT:RANG[:AUTO]``,
  ``:SOUR:VOLT:ILIM[:LEV]``, ``:SOUR:VOLT:ILIM:TRIP?``, ``:SOUR:VOLT:DEL[:AUTO]``, the same for
  ``CURR`` (with ``VLIM``), ``:SOUR:VOLT:READ:BACK``
* measure: ``:SENS:FUNC "CURR"`` (also ``'CURR'``, ``"CURR:DC"``, unquoted), ``:SENS:CURR:NPLC``,
  ``:SENS:CURR:RANG[:UPP]``, ``:SENS:CURR:RANG:AUTO``, ``:SENS:CURR:AVER[:TCON|:COUN]``, the same
  for ``VOLT`` and ``RES`` (``:SENS:`` optional), ``:SENS:RES:RSEN``
* output: ``:OUTP[:STAT] ON|OFF|1|0``, ``:OUTP?``, ``:OUTP:VOLT|CURR:SMOD``
* readings and buffers: ``:READ? ['buf'[,elements]]`` and ``:MEAS[:CURR|:VOLT|:RES]? ['buf'[,elements]]``
  (a reading from the bench, stored in the buffer, default ``defbuffer1``), ``:FETC? ['buf'[,elements]]``,
  ``:INIT`` (the trigger model: the configured sweep, else one reading), ``:ABOR``,
  ``:TRAC:MAKE 'name',size[,style]``, ``:TRAC:DEL 'name'``, ``:TRAC:CLE ['buf']``,
  ``:TRAC:POIN[?] [size,]['buf']``, ``:TRAC:ACT? ['buf']``, ``:TRAC:TRIG ['buf']``,
  ``:TRAC:DATA? start,end[,'buf'[,elements]]`` (readings start..end, each as its elements: READ,
  SOUR, REL, SEC, FRAC, TST, DATE, TIME, UNIT, SOURUNIT, STAT, SOURSTAT, FORM, SOURFORM; the two
  status elements are always 0), ``:TRAC:STAT:AVER|MAX|MIN|STDD? ['buf']``
* sweeps: ``:SOUR:SWE:VOLT|CURR:LIN start,stop,points[,delay,count,rangeType,failAbort,dual,'buf']``
  then ``:INIT`` (clears the buffer, turns the output on, one reading per level; the output stays on)
* ``[:SENS]:<func>:AZER``, ``[:SENS]:AZER:ONCE``, ``[:SENS]:COUN``, ``[:SENS]:<func>:DEL:USER<n>``,
  ``:SOUR:<func>:DEL:USER<n>``, ``[:SENS]:<func>:RSEN`` (remembered)
* system: the IEEE 488.2 common commands (:class:`.scpi.ScpiInstrument`), ``*TRG``, ``*LANG?``
  (``SCPI``: this emulator speaks the SCPI command set only), ``:STAT:PRES``, ``:STAT:CLE``,
  ``:SYST:ERR[:NEXT]?``, ``:SYST:ERR:COUN?``, ``:SYST:CLE``, ``:SYST:BEEP``, ``:SYST:LFR?`` (50),
  ``:ROUT:TERM FRON|REAR``, ``:FORM[:DATA] ASC``

Bench mapping: output on in voltage-source mode → ``bench.set_source(source, level=<V>, on=True)``;
the current limit is the bench compliance; a reading calls ``bench.measure_current(source)`` and the
trip query reports the bench's compliance flag of that reading.  Current sourcing is accepted and
remembered but not modelled: the bench sees the output off.

Errors (the 2450's codes): -113 undefined header, -104 data type, -222 out of range, -224 illegal
parameter value, -114 header suffix out of range, -109 missing parameter.  Readings are formatted
with 10 significant digits (the 2450's ``:FORM:ASC:PREC`` can give up to 16); an overflow (manual
range too small) reads ``9.9E+37`` as on the instrument.
"""
from __future__ import annotations

import math
import time
from array import array
from typing import NamedTuple

from ..bench_physics import PhysicalBench
from .base import CommandError, split_args
from .scpi import ScpiInstrument, choice, number, parse_bool

OVERFLOW = 9.9e37
V_MAX = 210.0
I_MAX = 1.05
ILIM_RANGE = (1e-9, 1.05)
VLIM_RANGE = (0.02, 210.0)
NPLC_RANGE = (0.01, 10.0)
SENSE_FUNCS = {"CURR": "CURR", "CURRENT": "CURR", "VOLT": "VOLT", "VOLTAGE": "VOLT",
               "RES": "RES", "RESISTANCE": "RES"}
SOURCE_FUNCS = {"VOLT": "VOLT", "VOLTAGE": "VOLT", "CURR": "CURR", "CURRENT": "CURR"}
#: capacity of defbuffer1/2 after *RST, readings (2450 reference manual, :TRACe:POINts)
BUFFER_DEFAULT = 100_000
BUFFER_MAX = 100_000
DEFAULT_BUFFERS = ("defbuffer1", "defbuffer2")
#: the emulator's reading memory, readings over all buffers (24 bytes each: a bounded 7 MB; the
#: instrument's own limit is larger, and it too refuses a buffer with -225 when memory runs out)
READING_MEMORY = 300_000
MAX_BUFFERS = 8
#: the buffer elements of :TRACe:DATA? / :FETCh? / :READ? (2450 reference manual, :TRACe:DATA?)
ELEMENTS = {e: e for e in ("DATE", "FORM", "FRAC", "READ", "REL", "SEC", "SOUR", "SOURFORM", "SOURSTAT",
                           "SOURUNIT", "STAT", "TIME", "TST", "UNIT")}
ELEMENTS.update({"FORMATTED": "FORM", "FRACTIONAL": "FRAC", "READING": "READ", "RELATIVE": "REL",
                 "SECONDS": "SEC", "SOURCE": "SOUR", "SOURFORMATTED": "SOURFORM", "SOURSTATUS": "SOURSTAT",
                 "STATUS": "STAT", "TSTAMP": "TST"})
#: line frequency the emulated 2450 reports, Hz
LINE_FREQUENCY = 50.0
UNITS = {"CURR": "Amp DC", "VOLT": "Volt DC", "RES": "Ohm"}
FUNCS = ("CURR", "VOLT", "RES")
#: emulated time 0 of the bench clock is this date (the timestamps are deterministic)
EPOCH = 1_735_689_600.0      # 2025-01-01 00:00:00 UTC


def fmt(value: float) -> str:
    return f"{float(value):.9E}"


def buffer_name(text: str) -> str:
    """A reading-buffer argument, quoted (``'name'`` / ``"name"``) or not."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        t = t[1:-1]
    if not t or len(t) > 31:
        raise CommandError(-224, f"Illegal parameter value: buffer name {text.strip()[:31]!r}")
    return t


class Reading(NamedTuple):
    value: float
    source: float
    t: float            # bench clock, s
    func: str           # measure function
    source_func: str


class ReadingBuffer:
    """A 2450 reading buffer: a ring of ``points`` readings (the oldest is overwritten), stored in
    flat arrays (24 bytes a reading)."""

    def __init__(self, points: int):
        self.points = int(points)
        self.clear()

    def clear(self) -> None:
        self._v, self._s, self._t, self._f = array("d"), array("d"), array("d"), bytearray()
        self._start = 0

    def __len__(self) -> int:
        return len(self._v)

    def add(self, r: Reading) -> None:
        code = FUNCS.index(r.func) | (FUNCS.index(r.source_func) << 2)
        if len(self._v) < self.points:
            self._v.append(r.value)
            self._s.append(r.source)
            self._t.append(r.t)
            self._f.append(code)
            return
        i = self._start
        self._v[i], self._s[i], self._t[i], self._f[i] = r.value, r.source, r.t, code
        self._start = (i + 1) % self.points

    @property
    def data(self) -> list[Reading]:
        n = len(self._v)
        order = [(self._start + k) % n for k in range(n)] if n else []
        return [Reading(self._v[i], self._s[i], self._t[i], FUNCS[self._f[i] & 3], FUNCS[self._f[i] >> 2])
                for i in order]

    def last(self) -> Reading | None:
        data = self.data[-1:] if len(self._v) else []
        return data[0] if data else None

    def resize(self, points: int) -> None:
        """A new capacity clears the buffer (as :TRACe:POINts does on the 2450)."""
        self.points = int(points)
        self.clear()

    def first_time(self) -> float:
        return self._t[self._start] if len(self._v) else 0.0

    def element(self, r: Reading, name: str) -> str:
        """One buffer element of reading ``r`` as the 2450 prints it."""
        stamp = EPOCH + r.t
        if name == "READ":
            return fmt(r.value)
        if name == "SOUR":
            return fmt(r.source)
        if name == "REL":
            return fmt(r.t - self.first_time())
        if name == "SEC":
            return str(int(stamp))
        if name == "FRAC":
            return fmt(stamp - int(stamp))
        if name in ("UNIT", "SOURUNIT"):
            return UNITS[r.func if name == "UNIT" else r.source_func]
        if name in ("STAT", "SOURSTAT"):
            return "0"
        if name in ("FORM", "SOURFORM"):
            value, func = (r.value, r.func) if name == "FORM" else (r.source, r.source_func)
            return f"{value:+.6E} {UNITS[func].split()[0][0]}"
        tm = time.gmtime(stamp)
        frac = f"{stamp - int(stamp):.9f}"[1:]
        if name == "DATE":
            return time.strftime("%m/%d/%Y", tm)
        if name == "TIME":
            return time.strftime("%H:%M:%S", tm) + frac
        return time.strftime("%m/%d/%Y %H:%M:%S", tm) + frac     # TST


class Keithley2450Emulator(ScpiInstrument):
    """A Keithley 2450 whose output drives ``source`` on ``bench``."""

    idn = "KEITHLEY INSTRUMENTS,MODEL 2450,04096331,1.7.12b"

    def __init__(self, bench: PhysicalBench, name: str = "K2450", source: str = "K2450"):
        self.bench = bench
        self.source = source
        bench.add_source(source)
        self.state: dict = {}
        self.buffers: dict[str, ReadingBuffer] = {}
        super().__init__(name)
        self.reset()

    # ------------------------------------------------------------------------------- state
    def reset(self) -> None:
        self.state = {
            "output": False,
            "source_func": "VOLT",
            "level": {"VOLT": 0.0, "CURR": 0.0},
            "src_range": {"VOLT": 0.2, "CURR": 1e-8},
            "src_range_auto": {"VOLT": True, "CURR": True},
            "src_delay": {"VOLT": 0.0, "CURR": 0.0},
            "src_delay_auto": {"VOLT": True, "CURR": True},
            "readback": {"VOLT": True, "CURR": True},
            "ilim": 105e-6,
            "vlim": 21.0,
            "sense_func": "CURR",
            "nplc": {"CURR": 1.0, "VOLT": 1.0, "RES": 1.0},
            "sense_range": {"CURR": 1e-4, "VOLT": 0.02, "RES": 2e5},
            "sense_range_auto": {"CURR": True, "VOLT": True, "RES": True},
            "aver": {"CURR": False, "VOLT": False, "RES": False},
            "aver_tcon": {"CURR": "REP", "VOLT": "REP", "RES": "REP"},
            "aver_count": {"CURR": 10, "VOLT": 10, "RES": 10},
            "rsense": {"CURR": False, "VOLT": False, "RES": False},
            "smode": {"VOLT": "NORM", "CURR": "NORM"},
            "terminals": "FRON",
            "sense_count": 1,
            "azero": {"CURR": True, "VOLT": True, "RES": True},
            "sense_user_delay": {(f, n): 0.0 for f in ("CURR", "VOLT", "RES") for n in range(1, 6)},
            "source_user_delay": {(f, n): 0.0 for f in ("VOLT", "CURR") for n in range(1, 6)},
            "sweep": None,
        }
        # *RST clears the default buffers and deletes user buffers (2450 reference manual, *RST)
        self.buffers = {name: ReadingBuffer(BUFFER_DEFAULT) for name in DEFAULT_BUFFERS}
        self._sync()

    def _sync(self) -> None:
        """Tell the bench what the output does now."""
        st = self.state
        volt = st["source_func"] == "VOLT"
        self.bench.set_source(self.source, level=st["level"]["VOLT"] if volt else 0.0,
                              on=st["output"] and volt, compliance=st["ilim"])

    # ----------------------------------------------------------------------------- helpers
    @staticmethod
    def _suffix(suffixes) -> None:
        for s in suffixes:
            if s not in (None, 1):
                raise CommandError(-114, f"Header suffix out of range: {s}")

    def _numeric(self, key, func, lo, hi, default=None, after=None, integer=False):
        """Handler for a numeric setting ``state[key][func]`` (or ``state[key]`` if func is None)."""
        def handler(s, a, q):
            self._suffix(s)
            if q:
                value = self.state[key] if func is None else self.state[key][func]
                return str(int(value)) if integer else fmt(value)
            value = number(a, lo, hi, key, default)
            if integer:
                value = int(round(value))
            if func is None:
                self.state[key] = value
            else:
                self.state[key][func] = value
            if after:
                after()
        return handler

    def _boolean(self, key, func, after=None):
        def handler(s, a, q):
            self._suffix(s)
            if q:
                return "1" if (self.state[key] if func is None else self.state[key][func]) else "0"
            if func is None:
                self.state[key] = parse_bool(a)
            else:
                self.state[key][func] = parse_bool(a)
            if after:
                after()
        return handler

    def _choice(self, key, func, options: dict[str, str]):
        def handler(s, a, q):
            self._suffix(s)
            if q:
                return self.state[key] if func is None else self.state[key][func]
            value = choice(a, options, key)
            if func is None:
                self.state[key] = value
            else:
                self.state[key][func] = value
        return handler

    def _no_op(self, s, a, q):
        self._suffix(s)

    # ----------------------------------------------------------------------------- readings
    def _reading(self, func: str | None = None, buffer: str = "defbuffer1") -> Reading:
        """Make one reading with the present settings and store it in ``buffer``."""
        st = self.state
        store = self._buffer(buffer)
        func = func or st["sense_func"]
        current = self.bench.measure_current(self.source)
        on_v = st["output"] and st["source_func"] == "VOLT"
        volts = st["level"]["VOLT"] if on_v else 0.0
        if func == "CURR":
            value = current
        elif func == "VOLT":
            value = volts
        else:
            value = volts / current if current else OVERFLOW
        if not st["sense_range_auto"][func] and abs(value) > 1.05 * st["sense_range"][func]:
            value = OVERFLOW
        source_value = st["level"][st["source_func"]] if st["output"] else 0.0
        clock = getattr(self.bench, "clock", None)
        reading = Reading(value, source_value, float(clock()) if clock else 0.0, func, st["source_func"])
        store.add(reading)
        return reading

    def _buffer(self, name: str) -> "ReadingBuffer":
        if name not in self.buffers:
            raise CommandError(-222, f"Data out of range: no reading buffer {name[:30]!r}")
        return self.buffers[name]

    def _buffer_and_elements(self, args: list[str]) -> tuple[str, list[str]]:
        """``["'defbuffer1'", "READ", "SOUR"]`` -> ("defbuffer1", ["READ", "SOUR"]); no name = defbuffer1."""
        if not args:
            return "defbuffer1", ["READ"]
        name = buffer_name(args[0])
        elements = [choice(e, ELEMENTS, "buffer element") for e in args[1:]] or ["READ"]
        return name, elements

    def _measure_query(self, func: str | None):
        def handler(s, a, q):
            self._suffix(s)
            name, elements = self._buffer_and_elements(split_args(a))
            self._buffer(name)
            reading = self._reading(func, name)
            return ",".join(self.buffers[name].element(reading, e) for e in elements)
        return handler

    def _fetch(self, s, a, q):
        name, elements = self._buffer_and_elements(split_args(a))
        buf = self._buffer(name)
        last = buf.last()
        if last is None:
            raise CommandError(-230, "Data corrupt or stale: the buffer is empty")
        return ",".join(buf.element(last, e) for e in elements)

    def _trace_data(self, s, a, q):
        args = split_args(a)
        if len(args) < 2:
            raise CommandError(-109, "Missing parameter: start and end index")
        name, elements = self._buffer_and_elements(args[2:])
        buf = self._buffer(name)
        start = int(number(args[0], 1, BUFFER_MAX, "start index"))
        end = int(number(args[1], 1, BUFFER_MAX, "end index"))
        if not start <= end <= len(buf):
            raise CommandError(-222, f"Data out of range: indexes {start} to {end} of {len(buf)} readings")
        data = buf.data[start - 1:end]
        return ",".join(buf.element(r, e) for r in data for e in elements)

    def _stat(self, fn):
        def handler(s, a, q):
            args = split_args(a)
            data = [r.value for r in self._buffer(buffer_name(args[0]) if args else "defbuffer1").data]
            if not data:
                return fmt(float("nan"))
            return fmt(fn(data))
        return handler

    def _trace_make(self, s, a, q):
        args = split_args(a)
        if len(args) < 2:
            raise CommandError(-109, "Missing parameter: buffer name and size")
        name = buffer_name(args[0])
        if name in self.buffers:
            raise CommandError(-222, f"Data out of range: buffer {name[:30]!r} exists")
        size = int(number(args[1], 10, BUFFER_MAX, "buffer size"))
        if len(self.buffers) >= MAX_BUFFERS or self._memory() + size > READING_MEMORY:
            raise CommandError(-225, "Out of memory: no room for the reading buffer")
        if len(args) > 2 and args[2]:       # an empty style (QCoDeS sends "'name', size, ") is the default
            choice(args[2], {"STAN": "STAN", "STANDARD": "STAN", "COMP": "COMP", "COMPACT": "COMP",
                             "FULL": "FULL", "WRIT": "WRIT", "WRITABLE": "WRIT", "FULLWRIT": "FULLWRIT",
                             "FULLWRITABLE": "FULLWRIT"}, "buffer style")
        self.buffers[name] = ReadingBuffer(size)

    def _trace_delete(self, s, a, q):
        name = buffer_name(a)
        self._buffer(name)
        if name in DEFAULT_BUFFERS:
            raise CommandError(-222, f"Data out of range: {name} cannot be deleted")
        del self.buffers[name]

    def _trace_points(self, s, a, q):
        args = split_args(a)
        if q:
            return str(self._buffer(buffer_name(args[0]) if args else "defbuffer1").points)
        if not args:
            raise CommandError(-109, "Missing parameter: buffer size")
        name = buffer_name(args[1]) if len(args) > 1 else "defbuffer1"
        buf = self._buffer(name)
        size = int(number(args[0], 1 if name in DEFAULT_BUFFERS else 10, BUFFER_MAX, "size"))
        if self._memory() - buf.points + size > READING_MEMORY:
            raise CommandError(-225, "Out of memory: no room for the reading buffer")
        buf.resize(size)

    def _memory(self) -> int:
        return sum(b.points for b in self.buffers.values())

    def _trace_arg(self, what):
        def handler(s, a, q):
            args = split_args(a)
            buf = self._buffer(buffer_name(args[0]) if args else "defbuffer1")
            if what == "clear":
                buf.clear()
                return None
            if what == "actual":
                return str(len(buf))
            self._reading(None, buffer_name(args[0]) if args else "defbuffer1")   # :TRACe:TRIGger
        return handler

    def _user_delay(self, key, func):
        def handler(s, a, q):
            n = s[-1]
            if n is None or not 1 <= n <= 5:
                raise CommandError(-114, f"Header suffix out of range: USER{n}")
            if q:
                return fmt(self.state[key][(func, n)])
            self.state[key][(func, n)] = number(a, 0.0, 10_000.0, "user delay", 0.0)
        return handler

    def _language(self, s, a, q):
        """``*LANG?`` answers SCPI: this emulator speaks the SCPI command set only (``*LANG TSP``
        is refused; on the instrument it takes effect after a power cycle)."""
        if q:
            return "SCPI"
        choice(a, {"SCPI": "SCPI"}, "command set (this emulator speaks SCPI only)")

    def _sweep_setup(self, func):
        def handler(s, a, q):
            self._suffix(s)
            args = split_args(a)
            if len(args) < 3:
                raise CommandError(-109, "Missing parameter: start, stop, points")
            hi = V_MAX if func == "VOLT" else I_MAX
            start, stop = number(args[0], -hi, hi, "sweep start"), number(args[1], -hi, hi, "sweep stop")
            points = int(number(args[2], 2, BUFFER_MAX, "sweep points"))
            delay = number(args[3], -1, 10_000, "sweep delay") if len(args) > 3 else -1
            count = int(number(args[4], 1, 1000, "sweep count")) if len(args) > 4 else 1
            if len(args) > 5:
                choice(args[5], {"AUTO": "AUTO", "BEST": "BEST", "FIX": "FIX", "FIXED": "FIX"}, "range type")
            if len(args) > 6:
                parse_bool(args[6])
            dual = parse_bool(args[7]) if len(args) > 7 else False
            name = buffer_name(args[8]) if len(args) > 8 else "defbuffer1"
            self._buffer(name)
            levels = [start + (stop - start) * k / (points - 1) for k in range(points)]
            if dual:
                levels += levels[::-1]
            if func != self.state["source_func"]:
                raise CommandError(-221, f"Settings conflict: the source function is {self.state['source_func']}")
            self.state["sweep"] = {"func": func, "levels": levels * count, "delay": delay, "buffer": name}
        return handler

    def _initiate(self, s, a, q):
        """The trigger model: the configured sweep (the sweep's trigger model first clears its
        buffer, turns the output on, then sources each level and makes one reading into the buffer;
        the output stays on at the last level), else the default model: one reading into
        defbuffer1."""
        sweep = self.state["sweep"]
        if sweep is None:
            self._reading()
            return
        st = self.state
        self._buffer(sweep["buffer"]).clear()
        st["output"] = True
        for level in sweep["levels"]:
            st["level"][sweep["func"]] = level
            self._sync()
            self._reading(None, sweep["buffer"])

    # ------------------------------------------------------------------------------ commands
    def build(self) -> None:
        t = self.table
        t.add("*TRG", lambda s, a, q: None, query=False)
        t.add(":STATus:PRESet", self._no_op, query=False)
        t.add(":SYSTem:CLEar", lambda s, a, q: self.errors.clear(), query=False)
        t.add(":SYSTem:BEEPer[:IMMediate]", self._beep, query=False)
        t.add(":ROUTe:TERMinals", self._choice("terminals", None, {"FRON": "FRON", "FRONT": "FRON",
                                                                    "REAR": "REAR"}))
        t.add(":FORMat[:DATA]", self._format)

        # source
        t.add(":SOURce#:FUNCtion[:MODE]", self._source_function)
        for node, func, hi in ((":VOLTage", "VOLT", V_MAX), (":CURRent", "CURR", I_MAX)):
            src = f":SOURce#{node}"
            t.add(f"{src}[:LEVel][:IMMediate][:AMPLitude]", self._numeric("level", func, -hi, hi, 0.0, self._sync))
            t.add(f"{src}:RANGe", self._source_range(func, hi))
            t.add(f"{src}:RANGe:AUTO", self._boolean("src_range_auto", func))
            t.add(f"{src}:DELay", self._numeric("src_delay", func, 0.0, 10_000.0, 0.0))
            t.add(f"{src}:DELay:AUTO", self._boolean("src_delay_auto", func))
            t.add(f"{src}:READ:BACK", self._boolean("readback", func))
            t.add(f"{src}:DELay:USER#", self._user_delay("source_user_delay", func))
        t.add(":SOURce#:VOLTage:ILIMit[:LEVel]", self._numeric("ilim", None, *ILIM_RANGE, 105e-6, self._sync))
        t.add(":SOURce#:VOLTage:ILIMit[:LEVel]:TRIPped", self._ilim_tripped, query=True)
        t.add(":SOURce#:CURRent:VLIMit[:LEVel]", self._numeric("vlim", None, *VLIM_RANGE, 21.0))
        t.add(":SOURce#:CURRent:VLIMit[:LEVel]:TRIPped", lambda s, a, q: "0", query=True)

        # measure
        t.add("[:SENSe#]:FUNCtion[:ON]", self._sense_function)
        for node, func, lo, hi in ((":CURRent[:DC]", "CURR", 1e-8, 1.0), (":VOLTage[:DC]", "VOLT", 0.02, 200.0),
                                   (":RESistance", "RES", 20.0, 200e6)):
            sens = f"[:SENSe#]{node}"
            t.add(f"{sens}:NPLCycles", self._numeric("nplc", func, *NPLC_RANGE, 1.0))
            t.add(f"{sens}:RANGe[:UPPer]", self._sense_range(func, lo, hi))
            t.add(f"{sens}:RANGe:AUTO", self._boolean("sense_range_auto", func))
            t.add(f"{sens}:AVERage[:STATe]", self._boolean("aver", func))
            t.add(f"{sens}:AVERage:TCONtrol", self._choice("aver_tcon", func, {
                "REP": "REP", "REPEAT": "REP", "MOV": "MOV", "MOVING": "MOV"}))
            t.add(f"{sens}:AVERage:COUNt", self._numeric("aver_count", func, 1, 100, 10, integer=True))
            t.add(f"{sens}:RSENse", self._boolean("rsense", func))
            t.add(f"{sens}:AZERo[:STATe]", self._boolean("azero", func))
            t.add(f"{sens}:DELay:USER#", self._user_delay("sense_user_delay", func))
        t.add("[:SENSe#]:AZERo:ONCE", self._no_op, query=False)
        t.add("[:SENSe#]:COUNt", self._numeric("sense_count", None, 1, 300_000, 1, integer=True))
        t.add("*LANG", self._language)
        t.add(":SYSTem:LFRequency", lambda s, a, q: f"{LINE_FREQUENCY:g}", query=True)
        t.add(":STATus:CLEar", lambda s, a, q: self.clear_status(), query=False)

        # output
        t.add(":OUTPut#[:STATe]", self._boolean("output", None, self._sync))
        for node, func in ((":VOLTage", "VOLT"), (":CURRent", "CURR")):
            t.add(f":OUTPut#{node}:SMODe", self._choice("smode", func, {
                "HIMP": "HIMP", "HIMPEDANCE": "HIMP", "NORM": "NORM", "NORMAL": "NORM",
                "ZERO": "ZERO", "GUAR": "GUAR", "GUARD": "GUAR"}))

        # readings and buffers
        t.add(":READ", self._measure_query(None), query=True)
        t.add(":MEASure", self._measure_query(None), query=True)
        t.add(":MEASure:CURRent[:DC]", self._measure_query("CURR"), query=True)
        t.add(":MEASure:VOLTage[:DC]", self._measure_query("VOLT"), query=True)
        t.add(":MEASure:RESistance", self._measure_query("RES"), query=True)
        t.add(":FETCh", self._fetch, query=True)
        t.add(":INITiate[:IMMediate]", self._initiate, query=False)
        t.add(":ABORt", self._no_op, query=False)
        t.add(":TRACe:MAKE", self._trace_make, query=False)
        t.add(":TRACe:DELete", self._trace_delete, query=False)
        t.add(":TRACe:CLEar", self._trace_arg("clear"), query=False)
        t.add(":TRACe:POINts", self._trace_points)
        t.add(":TRACe:ACTual", self._trace_arg("actual"), query=True)
        t.add(":TRACe:TRIGger", self._trace_arg("trigger"), query=False)
        t.add(":TRACe:DATA", self._trace_data, query=True)
        t.add(":TRACe:STATistics:AVERage", self._stat(lambda d: sum(d) / len(d)), query=True)
        t.add(":TRACe:STATistics:MAXimum", self._stat(max), query=True)
        t.add(":TRACe:STATistics:MINimum", self._stat(min), query=True)
        t.add(":TRACe:STATistics:STDDev", self._stat(
            lambda d: math.sqrt(sum((x - sum(d) / len(d)) ** 2 for x in d) / (len(d) - 1)) if len(d) > 1 else 0.0),
            query=True)
        t.add(":SOURce#:SWEep:VOLTage:LINear", self._sweep_setup("VOLT"), query=False)
        t.add(":SOURce#:SWEep:CURRent:LINear", self._sweep_setup("CURR"), query=False)

    # ------------------------------------------------------------------------- handlers
    def _source_function(self, s, a, q):
        self._suffix(s)
        if q:
            return self.state["source_func"]
        func = choice(a, SOURCE_FUNCS, "source function")
        if func != self.state["source_func"]:
            self.state["output"] = False   # the 2450 turns the output off on a function change
            self.state["source_func"] = func
            self._sync()

    def _sense_function(self, s, a, q):
        self._suffix(s)
        if q:
            return f'"{self.state["sense_func"]}:DC"' if self.state["sense_func"] != "RES" else '"RES"'
        text = a.strip().strip("\"'").upper()
        if text.endswith(":DC"):
            text = text[:-3]
        self.state["sense_func"] = choice(text, SENSE_FUNCS, "measure function")

    def _source_range(self, func, hi):
        def handler(s, a, q):
            self._suffix(s)
            if q:
                return fmt(self.state["src_range"][func])
            self.state["src_range"][func] = number(a, -hi, hi, "source range", hi)
            self.state["src_range_auto"][func] = False
        return handler

    def _sense_range(self, func, lo, hi):
        def handler(s, a, q):
            self._suffix(s)
            if q:
                return fmt(self.state["sense_range"][func])
            value = abs(number(a, -hi, hi, "measure range", hi))
            self.state["sense_range"][func] = max(value, lo)
            self.state["sense_range_auto"][func] = False
        return handler

    def _ilim_tripped(self, s, a, q):
        self._suffix(s)
        src = self.bench.sources[self.source]
        return "1" if (self.state["source_func"] == "VOLT" and src.tripped) else "0"

    def _beep(self, s, a, q):
        parts = [p for p in a.split(",")]
        if len(parts) != 2:
            raise CommandError(-109, "Missing parameter: beeper frequency, duration")
        number(parts[0], 20.0, 8000.0, "beeper frequency")
        number(parts[1], 0.001, 100.0, "beeper duration")

    def _format(self, s, a, q):
        if q:
            return "ASC"
        if a.strip().upper() not in ("ASC", "ASCII"):
            raise CommandError(-224, f"Illegal parameter value: format {a.strip()[:20]!r}")
