"""Emulated Keithley 2450 SourceMeter (native SCPI command set) acting on a
:class:`~mock_hw.bench_physics.PhysicalBench` source.

Understands what :class:`instruments.keithley2450.Keithley2450` and pymeasure's own
``Keithley2450`` send (short and long forms, any case, compound ``;`` messages):

* source: ``:SOUR:FUNC VOLT|CURR``, ``:SOUR:VOLT[:LEV][:IMM][:AMPL]``, ``:SOUR:VOLT:RANG[:AUTO]``,
  ``:SOUR:VOLT:ILIM[:LEV]``, ``:SOUR:VOLT:ILIM:TRIP?``, ``:SOUR:VOLT:DEL[:AUTO]``, the same for
  ``CURR`` (with ``VLIM``), ``:SOUR:VOLT:READ:BACK``
* measure: ``:SENS:FUNC "CURR"`` (also ``'CURR'``, ``"CURR:DC"``, unquoted), ``:SENS:CURR:NPLC``,
  ``:SENS:CURR:RANG[:UPP]``, ``:SENS:CURR:RANG:AUTO``, ``:SENS:CURR:AVER[:TCON|:COUN]``, the same
  for ``VOLT`` and ``RES`` (``:SENS:`` optional), ``:SENS:RES:RSEN``
* output: ``:OUTP[:STAT] ON|OFF|1|0``, ``:OUTP?``, ``:OUTP:VOLT|CURR:SMOD``
* readings: ``:READ?`` and ``:MEAS[:CURR|:VOLT|:RES]?`` (current from the bench),
  ``:FETC?``, ``:INIT`` (one reading into the buffer), ``:ABOR``, ``:TRAC:CLE``, ``:TRAC:POIN``,
  ``:TRAC:ACT?``, ``:TRAC:DATA?``, ``:TRAC:STAT:AVER|MAX|MIN|STDD?``
* system: ``*RST``, ``*CLS``, ``*IDN?``, ``*OPC?``, ``*WAI``, ``*TRG``, ``*STB?``, ``*ESR?``,
  ``*SRE``, ``*ESE``, ``:STAT:PRES``, ``:SYST:ERR[:NEXT]?``, ``:SYST:ERR:COUN?``, ``:SYST:CLE``,
  ``:SYST:BEEP``, ``:ROUT:TERM FRON|REAR``, ``:FORM[:DATA] ASC``

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

from ..bench_physics import PhysicalBench
from .base import CommandError
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
BUFFER_MAX = 100_000


def fmt(value: float) -> str:
    return f"{float(value):.9E}"


class Keithley2450Emulator(ScpiInstrument):
    """A Keithley 2450 whose output drives ``source`` on ``bench``."""

    idn = "KEITHLEY INSTRUMENTS,MODEL 2450,04096331,1.7.12b"

    def __init__(self, bench: PhysicalBench, name: str = "K2450", source: str = "K2450"):
        self.bench = bench
        self.source = source
        bench.add_source(source)
        self.state: dict = {}
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
            "rsense": False,
            "smode": {"VOLT": "NORM", "CURR": "NORM"},
            "terminals": "FRON",
            "buffer": [],
            "buffer_points": 100_000,
            "last": float("nan"),
        }
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
    def _reading(self, func: str | None = None) -> float:
        st = self.state
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
        st["last"] = value
        if len(st["buffer"]) >= st["buffer_points"]:
            st["buffer"].pop(0)
        st["buffer"].append(value)
        return value

    def _stat(self, fn):
        def handler(s, a, q):
            data = self.state["buffer"]
            if not data:
                return fmt(float("nan"))
            return fmt(fn(data))
        return handler

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
        t.add("[:SENSe#]:RESistance:RSENse", self._boolean("rsense", None))

        # output
        t.add(":OUTPut#[:STATe]", self._boolean("output", None, self._sync))
        for node, func in ((":VOLTage", "VOLT"), (":CURRent", "CURR")):
            t.add(f":OUTPut#{node}:SMODe", self._choice("smode", func, {
                "HIMP": "HIMP", "HIMPEDANCE": "HIMP", "NORM": "NORM", "NORMAL": "NORM",
                "ZERO": "ZERO", "GUAR": "GUAR", "GUARD": "GUAR"}))

        # readings and buffer
        t.add(":READ", lambda s, a, q: fmt(self._reading()), query=True)
        t.add(":MEASure", lambda s, a, q: fmt(self._reading()), query=True)
        t.add(":MEASure:CURRent[:DC]", lambda s, a, q: fmt(self._reading("CURR")), query=True)
        t.add(":MEASure:VOLTage[:DC]", lambda s, a, q: fmt(self._reading("VOLT")), query=True)
        t.add(":MEASure:RESistance", lambda s, a, q: fmt(self._reading("RES")), query=True)
        t.add(":FETCh", lambda s, a, q: fmt(self.state["last"]), query=True)
        t.add(":INITiate[:IMMediate]", self._initiate, query=False)
        t.add(":ABORt", self._no_op, query=False)
        t.add(":TRACe:CLEar", lambda s, a, q: self.state["buffer"].clear(), query=False)
        t.add(":TRACe:POINts", self._buffer_points)
        t.add(":TRACe:ACTual", lambda s, a, q: str(len(self.state["buffer"])), query=True)
        t.add(":TRACe:DATA", lambda s, a, q: ",".join(fmt(v) for v in self.state["buffer"]), query=True)
        t.add(":TRACe:STATistics:AVERage", self._stat(lambda d: sum(d) / len(d)), query=True)
        t.add(":TRACe:STATistics:MAXimum", self._stat(max), query=True)
        t.add(":TRACe:STATistics:MINimum", self._stat(min), query=True)
        t.add(":TRACe:STATistics:STDDev", self._stat(
            lambda d: math.sqrt(sum((x - sum(d) / len(d)) ** 2 for x in d) / (len(d) - 1)) if len(d) > 1 else 0.0),
            query=True)

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

    def _initiate(self, s, a, q):
        self._reading()             # the default trigger model: one reading into defbuffer1

    def _buffer_points(self, s, a, q):
        if q:
            return str(self.state["buffer_points"])
        first = a.split(",")[0]
        self.state["buffer_points"] = int(number(first, 1, BUFFER_MAX, "buffer size"))
        del self.state["buffer"][: max(0, len(self.state["buffer"]) - self.state["buffer_points"])]

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
