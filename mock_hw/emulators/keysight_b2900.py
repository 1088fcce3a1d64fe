"""Emulated Keysight B2902A / B2912A precision SMU (SCPI, channels 1 and 2) acting on
:class:`~mock_hw.bench_physics.PhysicalBench` sources.

Understands (short and long forms, any case, compound ``;`` messages; a missing channel suffix
means channel 1):

* source: ``:SOUR<n>:FUNC:MODE VOLT|CURR``, ``:SOUR<n>:FUNC[:SHAP] DC|PULS``,
  ``:SOUR<n>:VOLT[:LEV][:IMM][:AMPL]`` (DC / pulse base level), ``:SOUR<n>:VOLT[:LEV]:TRIG[:AMPL]``
  (pulse peak), ``:SOUR<n>:VOLT:MODE``, ``:SOUR<n>:VOLT:RANG[:AUTO]``, the same for ``CURR``,
  ``:SOUR<n>:PULS:WIDT``, ``:SOUR<n>:PULS:DEL``
* measure: ``:SENS<n>:FUNC[:ON]``, ``:SENS<n>:CURR[:DC]:PROT[:LEV][:BOTH]``,
  ``:SENS<n>:CURR[:DC]:PROT:TRIP?``, ``:SENS<n>:CURR|VOLT[:DC]:NPLC``, ``…:APER``,
  ``…:RANG[:UPP]``, ``…:RANG:AUTO``, ``:SENS<n>:VOLT[:DC]:PROT[:LEV]``
* remote sensing (4-wire): ``:SENS<n>:REM ON|OFF`` (remembered; the bench's lines have no lead
  resistance, so it changes no reading)
* output: ``:OUTP<n>[:STAT]``, ``:OUTP<n>:ON:AUTO``, ``:OUTP<n>:OFF:MODE``
* triggering and readings: ``:INIT[:IMM][:ALL|:TRAN|:ACQ] (@n[,m])``, ``:ABOR[:ALL|:TRAN|:ACQ]``,
  ``:TRIG<n>[:ALL|:TRAN|:ACQ]:COUN|:SOUR``, ``:MEAS:CURR|VOLT|RES? (@n)``, ``:MEAS? (@n)`` (the
  elements of ``:FORM:ELEM:SENS``), ``:FETC[:SCAL][:CURR|:VOLT]? (@n)``
* system: the IEEE 488.2 common commands (:class:`.scpi.ScpiInstrument`), ``:SYST:ERR[:NEXT]?``,
  ``:SYST:ERR:COUN?``, ``:FORM[:DATA] ASC``

Bench mapping: the output (voltage-source mode) is ``bench.set_source(source, level=<DC level>,
on=…, compliance=…)``.  ``:INIT`` in pulse shape applies ``bench.pulse(source, peak, width,
base=<DC level>)``; in DC shape it applies the DC level.  ``:INIT``, ``:MEAS`` and ``:READ`` turn
the output on first when the automatic output-on function is enabled (default), as on the B2900.
``:MEAS`` in pulse shape measures at the base level (no pulse is emitted).  Current sourcing is
accepted and remembered but not modelled: the bench sees the output off.

Pulse widths below ``min_pulse_width`` are refused as the real instrument refuses them (-222, the
setting unchanged): 50 µs on every B2900 model (B2900 User's Guide Ed. 5, "Pulse Output": "50 µs
to 100000 s"), the default.  Errors: -113 undefined header,
-114 header suffix out of range (channel), -104 data type, -109 missing parameter, -222 out of
range, -224 illegal parameter value; the queue answers ``+0,"No error"`` when empty.
"""
from __future__ import annotations

import re

from ..bench_physics import PhysicalBench
from .base import CommandError
from .scpi import ScpiInstrument, choice, number, parse_bool

V_MAX = 210.0
I_MAX = 3.0
COMPLIANCE_RANGE = (1e-9, 3.0)
NPLC_RANGE = (4e-4, 100.0)
APERTURE_RANGE = (8e-6, 2.0)
WIDTH_MAX = 100_000.0
#: the B2900's shortest pulse, s (User's Guide Ed. 5, "Pulse Output")
MIN_PULSE_WIDTH = 50e-6
DELAY_RANGE = (0.0, 99_999.9)
NAN_READING = 9.91e37
ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT", "SOUR")
_LIST_RE = re.compile(r"^\(@([0-9,:\s]*)\)$")


def fmt(value: float) -> str:
    return f"{float(value):+.9E}"


def _default_channel_state() -> dict:
    return {
        "output": False, "auto_on": True, "remote": False, "off_mode": "NORM",
        "mode": "VOLT", "shape": "DC",
        "level": {"VOLT": 0.0, "CURR": 0.0}, "trig": {"VOLT": 0.0, "CURR": 0.0},
        "src_mode": {"VOLT": "FIX", "CURR": "FIX"},
        "src_range": {"VOLT": 2.0, "CURR": 1e-7}, "src_range_auto": {"VOLT": True, "CURR": True},
        "width": 1e-4, "delay": 0.0,
        "prot": {"CURR": 1e-4, "VOLT": 2.0},
        "nplc": {"CURR": 1.0, "VOLT": 1.0}, "aper": {"CURR": 0.02, "VOLT": 0.02},
        "sense_range": {"CURR": 1e-4, "VOLT": 2.0}, "sense_range_auto": {"CURR": True, "VOLT": True},
        "sense_funcs": ["VOLT", "CURR"],
        "trig_count": 1, "trig_source": "AINT",
        "last": {"VOLT": float("nan"), "CURR": float("nan")},
    }


class KeysightB2900Emulator(ScpiInstrument):
    """A B2902A whose channels drive ``sources[n]`` on ``bench``."""

    idn = "Keysight Technologies,B2902A,MY51140001,3.4.2011.5100"

    def __init__(self, bench: PhysicalBench, name: str = "B2900",
                 sources: dict[int, str] | None = None, min_pulse_width: float = MIN_PULSE_WIDTH):
        self.bench = bench
        self.sources = dict(sources) if sources is not None else {1: "B2900.1", 2: "B2900.2"}
        self.min_pulse_width = float(min_pulse_width)
        for src in self.sources.values():
            bench.add_source(src)
        self.ch: dict[int, dict] = {}
        self.elements = list(ELEMENTS)
        super().__init__(name)
        self.reset()

    # ------------------------------------------------------------------------------- state
    def reset(self) -> None:
        self.ch = {n: _default_channel_state() for n in self.sources}
        self.elements = list(ELEMENTS)
        for n in self.ch:
            self._sync(n)

    def _sync(self, n: int) -> None:
        st = self.ch[n]
        volt = st["mode"] == "VOLT"
        self.bench.set_source(self.sources[n], level=st["level"]["VOLT"] if volt else 0.0,
                              on=st["output"] and volt, compliance=st["prot"]["CURR"])

    # ----------------------------------------------------------------------------- helpers
    def _channel(self, suffixes) -> int:
        n = 1
        for s in suffixes:
            if s is not None:
                n = s
        if n not in self.ch:
            raise CommandError(-114, f"Header suffix out of range: {n}")
        return n

    def _channels(self, text: str) -> list[int]:
        """A channel list ``(@1)``, ``(@1,2)``, ``(@1:2)``; none given = channel 1."""
        t = text.strip()
        if not t:
            return [1]
        m = _LIST_RE.match(t)
        if not m:
            raise CommandError(-104, f"Data type error: expected a channel list, got {t[:20]!r}")
        out = []
        for item in m.group(1).split(","):
            lo, _, hi = item.strip().partition(":")
            try:
                a, b = int(lo), int(hi or lo)
            except ValueError:
                raise CommandError(-104, f"Data type error: channel list {t[:20]!r}") from None
            step = 1 if b >= a else -1
            for n in range(a, b + step, step):
                if n not in self.ch:
                    raise CommandError(-224, f"Illegal parameter value: channel {n}")
                out.append(n)
        return out

    def _numeric(self, key, func, lo, hi, default=None, after=None, integer=False):
        def handler(s, a, q):
            n = self._channel(s)
            st = self.ch[n]
            if q:
                value = st[key] if func is None else st[key][func]
                return str(int(value)) if integer else fmt(value)
            value = number(a, lo() if callable(lo) else lo, hi, key, default)
            if integer:
                value = int(round(value))
            if func is None:
                st[key] = value
            else:
                st[key][func] = value
            if after:
                after(n)
        return handler

    def _boolean(self, key, func, after=None):
        def handler(s, a, q):
            n = self._channel(s)
            st = self.ch[n]
            if q:
                return "1" if (st[key] if func is None else st[key][func]) else "0"
            if func is None:
                st[key] = parse_bool(a)
            else:
                st[key][func] = parse_bool(a)
            if after:
                after(n)
        return handler

    def _choice(self, key, func, options):
        def handler(s, a, q):
            n = self._channel(s)
            st = self.ch[n]
            if q:
                return st[key] if func is None else st[key][func]
            value = choice(a, options, key)
            if func is None:
                st[key] = value
            else:
                st[key][func] = value
        return handler

    # ------------------------------------------------------------------------------ commands
    def build(self) -> None:
        t = self.table
        t.add(":FORMat[:DATA]", self._format)
        t.add(":FORMat:ELEMents:SENSe", self._elements)

        t.add(":SOURce#:FUNCtion:MODE", self._source_mode)
        t.add(":SOURce#:FUNCtion[:SHAPe]", self._choice("shape", None, {"DC": "DC", "PULS": "PULS", "PULSE": "PULS"}))
        for node, func, hi in ((":VOLTage", "VOLT", V_MAX), (":CURRent", "CURR", I_MAX)):
            src = f":SOURce#{node}"
            t.add(f"{src}[:LEVel][:IMMediate][:AMPLitude]", self._numeric("level", func, -hi, hi, 0.0, self._sync))
            t.add(f"{src}[:LEVel]:TRIGgered[:AMPLitude]", self._numeric("trig", func, -hi, hi, 0.0))
            t.add(f"{src}:MODE", self._choice("src_mode", func, {
                "FIX": "FIX", "FIXED": "FIX", "SWE": "SWE", "SWEEP": "SWE", "LIST": "LIST"}))
            t.add(f"{src}:RANGe[:UPPer]", self._numeric("src_range", func, -hi, hi, hi))
            t.add(f"{src}:RANGe:AUTO", self._boolean("src_range_auto", func))
        t.add(":SOURce#:PULSe:WIDTh", self._numeric("width", None, lambda: self.min_pulse_width, WIDTH_MAX, 1e-4))
        t.add(":SOURce#:PULSe:DELay", self._numeric("delay", None, *DELAY_RANGE, 0.0))

        t.add(":SENSe#:FUNCtion[:ON]", self._sense_function)
        t.add(":SENSe#:REMote", self._boolean("remote", None))
        t.add(":SENSe#:CURRent[:DC]:PROTection[:LEVel][:BOTH]",
              self._numeric("prot", "CURR", *COMPLIANCE_RANGE, 1e-4, self._sync))
        t.add(":SENSe#:CURRent[:DC]:PROTection:TRIPped", self._tripped, query=True)
        t.add(":SENSe#:VOLTage[:DC]:PROTection[:LEVel]", self._numeric("prot", "VOLT", 0.0, V_MAX, 2.0))
        t.add(":SENSe#:VOLTage[:DC]:PROTection:TRIPped", lambda s, a, q: self._channel(s) and "0", query=True)
        for node, func, hi in ((":CURRent[:DC]", "CURR", I_MAX), (":VOLTage[:DC]", "VOLT", V_MAX)):
            sens = f":SENSe#{node}"
            t.add(f"{sens}:NPLCycles", self._numeric("nplc", func, *NPLC_RANGE, 1.0))
            t.add(f"{sens}:APERture", self._numeric("aper", func, *APERTURE_RANGE, 0.02))
            t.add(f"{sens}:RANGe[:UPPer]", self._numeric("sense_range", func, -hi, hi, hi))
            t.add(f"{sens}:RANGe:AUTO", self._boolean("sense_range_auto", func))

        t.add(":OUTPut#[:STATe]", self._boolean("output", None, self._sync))
        t.add(":OUTPut#:ON:AUTO", self._boolean("auto_on", None))
        t.add(":OUTPut#:OFF:MODE", self._choice("off_mode", None, {
            "ZERO": "ZERO", "HIZ": "HIZ", "NORM": "NORM", "NORMAL": "NORM"}))

        for node in ("[:IMMediate][:ALL]", "[:IMMediate]:TRANsient"):
            t.add(f":INITiate{node}", self._initiate, query=False)
        t.add(":INITiate[:IMMediate]:ACQuire", self._acquire, query=False)
        for node in ("[:ALL]", ":TRANsient", ":ACQuire"):
            t.add(f":ABORt{node}", lambda s, a, q: self._channels(a) and None, query=False)
            t.add(f":TRIGger#{node}:COUNt", self._numeric("trig_count", None, 1, 100_000, 1, integer=True))
            t.add(f":TRIGger#{node}:SOURce", self._choice("trig_source", None, {
                "AINT": "AINT", "AINTERNAL": "AINT", "BUS": "BUS", "TIM": "TIM", "TIMER": "TIM",
                "INT1": "INT1", "INT2": "INT2", "LAN": "LAN"}))

        t.add(":MEASure", self._measure_elements, query=True)
        t.add(":MEASure:CURRent[:DC]", self._measure("CURR"), query=True)
        t.add(":MEASure:VOLTage[:DC]", self._measure("VOLT"), query=True)
        t.add(":MEASure:RESistance", self._measure("RES"), query=True)
        t.add(":READ[:SCALar]", self._measure_elements, query=True)
        t.add(":FETCh[:SCALar]:CURRent[:DC]", self._fetch("CURR"), query=True)
        t.add(":FETCh[:SCALar]:VOLTage[:DC]", self._fetch("VOLT"), query=True)

    # ------------------------------------------------------------------------- handlers
    def _format(self, s, a, q):
        if q:
            return "ASC"
        if a.strip().upper() not in ("ASC", "ASCII"):
            raise CommandError(-224, f"Illegal parameter value: format {a.strip()[:20]!r}")

    def _elements(self, s, a, q):
        if q:
            return ",".join(self.elements)
        opts = {"VOLT": "VOLT", "VOLTAGE": "VOLT", "CURR": "CURR", "CURRENT": "CURR", "RES": "RES",
                "RESISTANCE": "RES", "TIME": "TIME", "STAT": "STAT", "STATUS": "STAT",
                "SOUR": "SOUR", "SOURCE": "SOUR"}
        self.elements = [choice(x, opts, "element") for x in a.split(",")]

    def _source_mode(self, s, a, q):
        n = self._channel(s)
        st = self.ch[n]
        if q:
            return st["mode"]
        st["mode"] = choice(a, {"VOLT": "VOLT", "VOLTAGE": "VOLT", "CURR": "CURR", "CURRENT": "CURR"},
                            "source mode")
        self._sync(n)

    def _sense_function(self, s, a, q):
        n = self._channel(s)
        st = self.ch[n]
        if q:
            return ",".join(f'"{f}"' for f in st["sense_funcs"])
        opts = {"VOLT": "VOLT", "VOLTAGE": "VOLT", "CURR": "CURR", "CURRENT": "CURR", "RES": "RES",
                "RESISTANCE": "RES", "VOLT:DC": "VOLT", "CURR:DC": "CURR"}
        for item in a.split(","):
            f = choice(item, opts, "measure function")
            if f not in st["sense_funcs"]:
                st["sense_funcs"].append(f)

    def _tripped(self, s, a, q):
        n = self._channel(s)
        src = self.bench.sources[self.sources[n]]
        return "1" if (self.ch[n]["mode"] == "VOLT" and src.tripped) else "0"

    def _auto_on(self, n: int) -> None:
        st = self.ch[n]
        if not st["output"] and st["auto_on"]:
            st["output"] = True
            self._sync(n)

    def _initiate(self, s, a, q):
        for n in self._channels(a):
            st = self.ch[n]
            self._auto_on(n)
            if not st["output"] or st["mode"] != "VOLT":
                continue
            if st["shape"] == "PULS":
                for _ in range(st["trig_count"]):
                    self.bench.pulse(self.sources[n], st["trig"]["VOLT"], st["width"], base=st["level"]["VOLT"])
            else:
                self._sync(n)

    def _acquire(self, s, a, q):
        for n in self._channels(a):
            self._auto_on(n)
            self._take(n)

    def _take(self, n: int) -> dict[str, float]:
        st = self.ch[n]
        current = self.bench.measure_current(self.sources[n])
        volts = st["level"]["VOLT"] if (st["output"] and st["mode"] == "VOLT") else 0.0
        st["last"] = {"VOLT": volts, "CURR": current}
        return {"VOLT": volts, "CURR": current, "RES": volts / current if current else NAN_READING,
                "TIME": 0.0, "STAT": 0.0, "SOUR": volts}

    def _measure(self, what: str):
        def handler(s, a, q):
            out = []
            for n in self._channels(a):
                self._auto_on(n)
                out.append(fmt(self._take(n)[what]))
            return ",".join(out)
        return handler

    def _measure_elements(self, s, a, q):
        out = []
        for n in self._channels(a):
            self._auto_on(n)
            r = self._take(n)
            out += [fmt(r[e]) for e in self.elements]
        return ",".join(out)

    def _fetch(self, what: str):
        def handler(s, a, q):
            return ",".join(fmt(self.ch[n]["last"][what]) for n in self._channels(a))
        return handler
