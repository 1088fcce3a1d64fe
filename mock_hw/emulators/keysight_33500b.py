"""Emulated Keysight 33512B waveform generator (SCPI, channels 1 and 2) acting on
:class:`~mock_hw.bench_physics.PhysicalBench` sources: the pulse source of a mock bench.

Understands (short and long forms, any case, ``;`` compound messages, ``[SOURce<n>:]`` optional
and channel 1 when the suffix is missing):

* ``[SOUR<n>:]FUNC[:SHAP]`` SIN|SQU|RAMP|PULS|NOIS|DC|...; ``[SOUR<n>:]FUNC:PULS:WIDT``,
  ``…:PER``, ``…:TRAN[:BOTH]`` (edge times)
* ``[SOUR<n>:]VOLT`` (amplitude, Vpp), ``…:VOLT:OFFS``, ``…:VOLT:HIGH``, ``…:VOLT:LOW``
* ``OUTP<n>[:STAT]``, ``OUTP<n>:LOAD <ohms>|INF``, ``OUTP<n>:POL NORM|INV``
* ``[SOUR<n>:]BURS:STAT``, ``…:BURS:MODE TRIG|GAT``, ``…:BURS:NCYC``, ``TRIG<n>:SOUR
  IMM|EXT|TIM|BUS``, ``*TRG`` and ``TRIG<n>`` (software trigger), ``*OPC?``, ``*RST``, ``*CLS``,
  ``*IDN?``, ``SYST:ERR?``

What the real instrument refuses is refused here, the setting left unchanged (33500 Series
Operating and Service Guide): a width outside 16 ns – 1 000 000 s, an edge time outside
8.4 ns – 1 µs, an amplitude or offset outside the output's range for the load setting (±5 V into
50 Ω, ±10 V into an open circuit, |offset| + Vpp/2 within it) are ``-222,"Data out of range"``; a
width that does not fit the period (width > period - 16 ns, or edges longer than width / 1.6: the
33250A's documented rule, assumed for the 33500B, see :mod:`instruments.limits`) is
``-221,"Settings conflict"``; ``*TRG`` without ``TRIG:SOUR BUS`` is ``-211,"Trigger ignored"``.

Bench mapping: an enabled output holds its idle level (the pulse's low level, mirrored about the
offset when inverted) through ``bench.set_source(source, level=idle, on=True)``; a software trigger
in triggered-burst pulse mode applies ``NCYC`` pulses through ``bench.pulse(source, peak, width,
base=idle)``; the channels one trigger fires with the same width and count pulse at once (one
``bench.pulse`` with ``together``), as the two outputs of a 33512B triggered together do.  The
50 Ω output impedance is not modelled (see :mod:`instruments.keysight_33500b`).
"""
from __future__ import annotations

from ..bench_physics import PhysicalBench
from .base import CommandError
from .scpi import ScpiInstrument, choice, number, parse_bool

WIDTH_RANGE = (16e-9, 1e6)
EDGE_RANGE = (8.4e-9, 1e-6)
PERIOD_RANGE = (50e-9, 1e6)          # 33512B: pulses up to 20 MHz
V_PEAK = {"50": 5.0, "INF": 10.0}   # largest |level| into 50 Ω / an open circuit, V
#: a 50 Ω output into its own impedance: the most current it can drive into a short, A
CURRENT_MAX = 10.0 / 50.0


def fmt(value: float) -> str:
    return f"{float(value):+.9E}"


def _default() -> dict:
    return {"func": "SIN", "width": 1e-4, "period": 1e-3, "edge": 10e-9, "vpp": 0.1, "offset": 0.0,
            "output": False, "load": "50", "polarity": "NORM", "burst": False, "burst_mode": "TRIG",
            "ncyc": 1, "trig_source": "IMM"}


class Keysight33500BEmulator(ScpiInstrument):
    """A 33512B whose channels drive ``sources[n]`` on ``bench``."""

    idn = "Agilent Technologies,33512B,MY52400001,3.05-1.19-2.00-52-00"

    def __init__(self, bench: PhysicalBench, name: str = "FGEN", sources: dict[int, str] | None = None):
        self.bench = bench
        self.sources = dict(sources) if sources is not None else {1: "FGEN.1", 2: "FGEN.2"}
        for src in self.sources.values():
            bench.add_source(src)
        self.ch: dict[int, dict] = {}
        super().__init__(name)
        self.reset()

    def reset(self) -> None:
        self.ch = {n: _default() for n in self.sources}
        for n in self.ch:
            self._sync(n)

    # ---------------------------------------------------------------------------- helpers
    def _channel(self, suffixes) -> int:
        n = next((s for s in suffixes if s is not None), 1)
        if n not in self.ch:
            raise CommandError(-114, f"Header suffix out of range: {n}")
        return n

    @staticmethod
    def _low_high(st) -> tuple[float, float]:
        return st["offset"] - st["vpp"] / 2, st["offset"] + st["vpp"] / 2

    def _levels(self, st) -> tuple[float, float]:
        """(idle, peak) at the output terminals, open-circuit volts, polarity applied."""
        low, high = self._low_high(st)
        if st["polarity"] == "INV":
            low, high = 2 * st["offset"] - low, 2 * st["offset"] - high
        # the instrument sets its levels to 1 µV, not to binary floating point: 0.75 - 1.5/2 is 0 V
        return round(low, 6) + 0.0, round(high, 6) + 0.0

    def _scale(self, st) -> float:
        """Open-circuit volts per programmed volt: 2 with a 50 Ω load setting, 1 with INF."""
        return 1.0 if st["load"] == "INF" else 2.0

    def _sync(self, n: int) -> None:
        """Tell the bench what the output terminal does now; nothing when that did not change
        (setting levels with the output off is no physical event)."""
        st = self.ch[n]
        idle = self._levels(st)[0] * self._scale(st) if st["func"] != "DC" else st["offset"] * self._scale(st)
        level, on = (idle if st["output"] else 0.0), st["output"]
        src = self.bench.sources[self.sources[n]]
        if (src.level, src.on, src.compliance) != (level, on, CURRENT_MAX):
            self.bench.set_source(self.sources[n], level=level, on=on, compliance=CURRENT_MAX)

    def _check_levels(self, st, vpp: float, offset: float) -> None:
        vmax = V_PEAK[st["load"]]
        if not (vmax / 5000 <= vpp <= 2 * vmax) or abs(offset) + vpp / 2 > vmax + 1e-12:
            raise CommandError(-222, f"Data out of range: amplitude {vpp:g} Vpp, offset {offset:g} V")

    # ----------------------------------------------------------------------------- commands
    def build(self) -> None:
        t = self.table
        t.add("*TRG", lambda s, a, q: self._trigger(list(self.ch)), query=False)
        t.add("TRIGger#[:IMMediate]", lambda s, a, q: self._trigger([self._channel(s)]), query=False)
        t.add("TRIGger#:SOURce", self._choice("trig_source", {"IMM": "IMM", "IMMEDIATE": "IMM", "EXT": "EXT",
                                                               "EXTERNAL": "EXT", "TIM": "TIM", "TIMER": "TIM",
                                                               "BUS": "BUS"}))
        t.add("[:SOURce#]:FUNCtion[:SHAPe]", self._function)
        t.add("[:SOURce#]:FUNCtion:PULSe:WIDTh", self._width)
        t.add("[:SOURce#]:FUNCtion:PULSe:PERiod", self._period)
        t.add("[:SOURce#]:FUNCtion:PULSe:TRANsition[:BOTH]", self._edge)
        t.add("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", self._amplitude)
        t.add("[:SOURce#]:VOLTage[:LEVel][:IMMediate]:OFFSet", self._offset)
        t.add("[:SOURce#]:VOLTage[:LEVel][:IMMediate]:HIGH", self._high_low(high=True))
        t.add("[:SOURce#]:VOLTage[:LEVel][:IMMediate]:LOW", self._high_low(high=False))
        t.add("OUTPut#[:STATe]", self._output)
        t.add("OUTPut#:LOAD", self._load)
        t.add("OUTPut#:POLarity", self._choice("polarity", {"NORM": "NORM", "NORMAL": "NORM", "INV": "INV",
                                                            "INVERTED": "INV"}, sync=True))
        t.add("[:SOURce#]:BURSt:STATe", self._burst_state)
        t.add("[:SOURce#]:BURSt:MODE", self._choice("burst_mode", {"TRIG": "TRIG", "TRIGGERED": "TRIG",
                                                                   "GAT": "GAT", "GATED": "GAT"}))
        t.add("[:SOURce#]:BURSt:NCYCles", self._ncycles)

    def _choice(self, key, options, sync=False):
        def handler(s, a, q):
            n = self._channel(s)
            if q:
                return self.ch[n][key]
            self.ch[n][key] = choice(a, options, key)
            if sync:
                self._sync(n)
        return handler

    def _function(self, s, a, q):
        n = self._channel(s)
        if q:
            return self.ch[n]["func"]
        opts = {k: k[:4] if k not in ("SIN", "SQU", "DC") else k for k in
                ("SIN", "SINUSOID", "SQU", "SQUARE", "RAMP", "PULS", "PULSE", "NOIS", "NOISE", "DC", "ARB", "PRBS")}
        opts.update({"SINUSOID": "SIN", "SQUARE": "SQU", "PULSE": "PULS", "NOISE": "NOIS"})
        self.ch[n]["func"] = choice(a, opts, "function")
        self._sync(n)

    def _width(self, s, a, q):
        n = self._channel(s)
        st = self.ch[n]
        if q:
            return fmt(st["width"])
        w = number(a, *WIDTH_RANGE, "width", 1e-4)
        if w > st["period"] - WIDTH_RANGE[0] or w < 1.6 * st["edge"] * 0.999:
            raise CommandError(-221, f"Settings conflict: width {w:g} s with period {st['period']:g} s and "
                                     f"edge {st['edge']:g} s")
        st["width"] = w

    def _period(self, s, a, q):
        n = self._channel(s)
        st = self.ch[n]
        if q:
            return fmt(st["period"])
        p = number(a, *PERIOD_RANGE, "period", 1e-3)
        if st["width"] > p - WIDTH_RANGE[0]:
            raise CommandError(-221, f"Settings conflict: period {p:g} s shorter than width {st['width']:g} s")
        st["period"] = p

    def _edge(self, s, a, q):
        n = self._channel(s)
        st = self.ch[n]
        if q:
            return fmt(st["edge"])
        e = number(a, *EDGE_RANGE, "edge time", 10e-9)
        if 1.6 * e > st["width"] * 1.001:
            raise CommandError(-221, f"Settings conflict: edge {e:g} s too long for width {st['width']:g} s")
        st["edge"] = e

    def _amplitude(self, s, a, q):
        n = self._channel(s)
        st = self.ch[n]
        if q:
            return fmt(st["vpp"])
        vpp = number(a, 0.0, 2 * V_PEAK["INF"], "amplitude", 0.1)
        self._check_levels(st, vpp, st["offset"])
        st["vpp"] = vpp
        self._sync(n)

    def _offset(self, s, a, q):
        n = self._channel(s)
        st = self.ch[n]
        if q:
            return fmt(st["offset"])
        off = number(a, -V_PEAK["INF"], V_PEAK["INF"], "offset", 0.0)
        self._check_levels(st, st["vpp"], off)
        st["offset"] = off
        self._sync(n)

    def _high_low(self, high: bool):
        def handler(s, a, q):
            n = self._channel(s)
            st = self.ch[n]
            low, hi = self._low_high(st)
            if q:
                return fmt(hi if high else low)
            v = number(a, -V_PEAK["INF"], V_PEAK["INF"], "level", 0.0)
            low, hi = (low, v) if high else (v, hi)
            if hi <= low:
                raise CommandError(-221, "Settings conflict: high level must exceed low level")
            self._check_levels(st, hi - low, (hi + low) / 2)
            st["vpp"], st["offset"] = hi - low, (hi + low) / 2
            self._sync(n)
        return handler

    def _output(self, s, a, q):
        n = self._channel(s)
        if q:
            return "1" if self.ch[n]["output"] else "0"
        self.ch[n]["output"] = parse_bool(a)
        self._sync(n)

    def _load(self, s, a, q):
        n = self._channel(s)
        st = self.ch[n]
        if q:
            return "9.9E+37" if st["load"] == "INF" else fmt(50.0)
        t = a.strip().upper()
        if t in ("INF", "INFINITY"):
            st["load"] = "INF"
        elif number(t, 1.0, 10_000.0, "load") == 50.0:
            st["load"] = "50"
        else:
            raise CommandError(-222, f"Data out of range: load {t[:12]} (this emulator: 50 or INF)")
        self._sync(n)

    def _burst_state(self, s, a, q):
        n = self._channel(s)
        if q:
            return "1" if self.ch[n]["burst"] else "0"
        self.ch[n]["burst"] = parse_bool(a)

    def _ncycles(self, s, a, q):
        n = self._channel(s)
        if q:
            return str(self.ch[n]["ncyc"])
        self.ch[n]["ncyc"] = int(round(number(a, 1, 100_000_000, "burst count", 1)))

    def _trigger(self, channels: list[int]) -> None:
        """A software trigger: every channel waiting on BUS with its output on fires its burst;
        channels of one trigger with the same width and count pulse together (at once)."""
        fired = False
        ready = []
        for n in channels:
            st = self.ch[n]
            if st["trig_source"] != "BUS":
                continue
            fired = True
            if not (st["output"] and st["burst"] and st["burst_mode"] == "TRIG" and st["func"] == "PULS"):
                continue
            idle, peak = (v * self._scale(st) for v in self._levels(st))
            ready.append((n, idle, peak, st["width"], st["ncyc"]))
        if not fired:
            raise CommandError(-211, "Trigger ignored")
        while ready:
            n, idle, peak, width, ncyc = ready.pop(0)
            with_it = [r for r in ready if r[3] == width and r[4] == ncyc]
            ready = [r for r in ready if r not in with_it]
            together = {self.sources[m]: p for m, _, p, _, _ in with_it}
            for _ in range(ncyc):
                self.bench.pulse(self.sources[n], peak, width, base=idle, together=together)
