"""Keysight 33500B-series function / arbitrary waveform generator (SCPI) as the pulse source of a
bench: :class:`~instruments.roles.PulseGenerator`.

SMUs cannot give the ~1 µs write pulses of the published TiO2 recipes (a 2600B is specified from
100 µs, a B2900 from 50 µs, a 2450 has no pulse mode); labs route a pulse generator through the
matrix to the selected row and read with the SMU.  :class:`Keysight33500B` extends pymeasure's
:class:`~pymeasure.instruments.agilent.Agilent33500` (every pymeasure property keeps working); its
channels ``ch_1`` / ``ch_2`` are :class:`PulseChannel`.

Commands sent by a channel (``1`` shown):

* ``setup(edge_time=1e-8)`` — output off, then one triggered single-pulse burst per ``*TRG``:
  ``OUTP1 0``, ``OUTP1:LOAD INF`` (levels are open-circuit volts: the row is no 50 Ω load),
  ``SOUR1:FUNC PULS``, ``SOUR1:FUNC:PULS:PER 1.000000e-03``, ``SOUR1:FUNC:PULS:WIDT 1.000000e-04``
  (the instrument's defaults, a known start), ``SOUR1:VOLT:OFFS 0``, ``SOUR1:VOLT 0.1``,
  ``SOUR1:VOLT:OFFS 0.05`` (levels 0 – 0.1 V), ``SOUR1:FUNC:PULS:TRAN:BOTH <edge>``,
  ``SOUR1:BURS:MODE TRIG``, ``SOUR1:BURS:NCYC 1``, ``SOUR1:BURS:STAT 1``, ``TRIG1:SOUR BUS``
* ``arm(amplitude, width)`` — with the output off (so no intermediate level ever reaches the row):
  the period (twice the width, at least the model's shortest period) and the width, in the order
  that keeps width < period at every step; ``SOUR1:VOLT:HIGH <A>``, ``SOUR1:VOLT:LOW 0`` and
  ``OUTP1:POL NORM`` (A > 0), or ``SOUR1:VOLT:LOW <A>``, ``SOUR1:VOLT:HIGH 0`` and ``OUTP1:POL INV``
  (A < 0; the order keeps high > low at every step): the output idles at 0 V and pulses to A
  (an inverted pulse is mirrored about the offset, so idle -|A| becomes 0 V and the peak 0 V
  becomes -|A|; 33500 Series Operating and Service Guide, "Waveform Polarity")
* ``enable()`` / ``disable()`` — ``OUTP1 1`` / ``OUTP1 0``; ``output_enabled()`` — ``OUTP1?``
* ``fire()`` — ``*TRG;*OPC?`` in one message: one pulse, and the reply ``1`` once it is over
* instrument: ``identity()`` — ``*IDN?``; ``drain_errors()`` — ``SYST:ERR?`` until ``+0,"No error"``

Limits (``MODEL_LIMITS``, :mod:`instruments.limits`), from the Agilent/Keysight 33500 Series
Operating and Service Guide ("Pulse Waveforms", "Output Configuration") and the 33500B data sheet:
pulse width 16 ns – 1 000 000 s, edge time 8.4 ns – 1 µs, amplitude into an open circuit 2 mVpp –
20 Vpp with |offset| + Vpp/2 <= 10 V (so a 0 V-based pulse reaches ±10 V), shortest pulse period
50 ns on the 20 MHz models (33509B–33512B) and 33.3 ns on the 30 MHz models (33519B–33522B).  The
validators refuse anything else before writing.

Known simplification of the mock bench: the generator's 50 Ω output impedance is not modelled (a
row of ~300 µS cells loads it by a few per cent at 8 columns).
"""
from __future__ import annotations

import math

from pymeasure.instruments import Channel, Instrument
from pymeasure.instruments.agilent.agilent33500 import Agilent33500, Agilent33500Channel
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from .base import DEFAULT_TIMEOUT_MS, ErrorQueueMixin, TimeoutNamingMixin, adapter_for
from .limits import SourceLimits
from .roles import InstrumentError

_DOC = ("33500 Series Operating and Service Guide, Pulse Waveforms (width 16 ns to 1,000,000 s, edges "
        ">= 8.4 ns) and Output Configuration (±10 V into an open circuit); 33500B data sheet")


def _model(name: str, period_min: float) -> SourceLimits:
    return SourceLimits(name, _DOC, voltage=(-10.0, 10.0), compliance_current=None,
                        pulse_width=(16e-9, 1e6), pulse_period_min=period_min, duty_cycle_max=0.9999)


#: 20 MHz models: pulses up to 20 MHz (period 50 ns); 30 MHz models: 33.3 ns
MODEL_LIMITS = {m: _model(m, 50e-9) for m in ("33509B", "33510B", "33511B", "33512B")}
MODEL_LIMITS.update({m: _model(m, 1 / 30e6) for m in ("33519B", "33520B", "33521B", "33522B")})
#: edge (transition) times, s (33500 Series Operating and Service Guide, Pulse Waveforms).  An edge
#: must also fit the width: edge <= 0.625 x width — the 33250A User's Guide's documented rule
#: (PULSe:TRANsition), ASSUMED for the 33500B (its guide: "edges > 8.4 ns need a width of at least
#: 20 ns; the longer the edges, the greater the minimum pulse width", no formula; see instruments.limits)
EDGE_RANGE = (8.4e-9, 1e-6)
#: amplitude into an open circuit (``OUTP:LOAD INF``), Vpp
AMPLITUDE_RANGE = (2e-3, 20.0)
#: start state set by :meth:`PulseChannel.setup` (the instrument's defaults: 1 kHz, 100 µs)
SETUP_PERIOD, SETUP_WIDTH = 1e-3, 1e-4
#: start levels set by :meth:`PulseChannel.setup`: 0 V low, 0.1 V high (offset 0, 0.1 Vpp, offset 0.05)
SETUP_HIGH = 0.1


class PulseChannel(Agilent33500Channel):
    """One output of a 33500B as a :class:`~instruments.roles.PulseGenerator`."""

    amplitude = Channel.control(
        "SOUR{ch}:VOLT?", "SOUR{ch}:VOLT %g",
        """Control the amplitude, Vpp into the load set by ``output_load`` (2 mVpp – 20 Vpp into an
        open circuit).""",
        validator=strict_range, values=AMPLITUDE_RANGE,
    )
    offset = Channel.control(
        "SOUR{ch}:VOLT:OFFS?", "SOUR{ch}:VOLT:OFFS %g",
        """Control the DC offset, V (±10 V into an open circuit; |offset| + Vpp/2 <= 10 V).""",
        validator=strict_range, values=(-10.0, 10.0),
    )
    voltage_high = Channel.control(
        "SOUR{ch}:VOLT:HIGH?", "SOUR{ch}:VOLT:HIGH %g",
        """Control the high level, V (open circuit: ±10 V; must exceed ``voltage_low``).""",
        validator=strict_range, values=(-10.0, 10.0),
    )
    voltage_low = Channel.control(
        "SOUR{ch}:VOLT:LOW?", "SOUR{ch}:VOLT:LOW %g",
        """Control the low level, V (open circuit: ±10 V; must stay below ``voltage_high``).""",
        validator=strict_range, values=(-10.0, 10.0),
    )
    source_enabled = Channel.control(
        "OUTP{ch}?", "OUTP{ch} %d",
        """Control the output state (bool) — the SMUs' name for it (pymeasure's ``output`` works too).""",
        validator=strict_discrete_set, values={True: 1, False: 0}, map_values=True,
    )
    output_polarity = Channel.control(
        "OUTP{ch}:POL?", "OUTP{ch}:POL %s",
        """Control the polarity: 'normal' or 'inverted' (mirrored about the offset).""",
        validator=strict_discrete_set, values={"normal": "NORM", "inverted": "INV"}, map_values=True,
    )
    trigger_source = Channel.control(
        "TRIG{ch}:SOUR?", "TRIG{ch}:SOUR %s",
        """Control the trigger source of bursts: 'IMM', 'EXT', 'TIM' or 'BUS' (``*TRG``).""",
        validator=strict_discrete_set, values=["IMM", "EXT", "TIM", "BUS"],
    )

    def __init__(self, parent, id, **kwargs):
        super().__init__(parent, id, **kwargs)
        self._period = None
        self._levels = None      # (high, low) last set, V

    @property
    def name(self) -> str:
        return f"{self.parent.name} ch{self.id}"

    @property
    def limits(self) -> SourceLimits:
        return self.parent.limits

    # ------------------------------------------------------------------ PulseGenerator role
    def setup(self, edge_time: float = 1e-8) -> None:
        """Output off, open-circuit levels, pulse shape, one pulse per ``*TRG`` (see module)."""
        strict_range(edge_time, EDGE_RANGE)
        self.source_enabled = False
        self.output_load = "INF"
        self.shape = "PULS"
        self.pulse_period = SETUP_PERIOD
        self.pulse_width = SETUP_WIDTH
        self._period = SETUP_PERIOD
        self.offset = 0.0
        self.amplitude = SETUP_HIGH
        self.offset = SETUP_HIGH / 2
        self._levels = (SETUP_HIGH, 0.0)
        self.pulse_transition = edge_time
        self.burst_mode = "TRIG"
        self.burst_ncycles = 1
        self.burst_state = True
        self.trigger_source = "BUS"

    def arm(self, amplitude: float, width: float) -> None:
        """Prepare one pulse 0 V -> ``amplitude`` (V) for ``width`` (s) -> 0 V, output off.
        Everything is checked (the model's limits, ValueError naming them) before the first write."""
        amplitude, width = float(amplitude), float(width)
        self.limits.check_pulse(amplitude, width)
        if abs(amplitude) < AMPLITUDE_RANGE[0]:
            raise ValueError(f"{self.name}: |amplitude| {abs(amplitude):g} V is below the generator's "
                             f"{AMPLITUDE_RANGE[0]:g} Vpp")
        if self._period is None:
            raise InstrumentError(f"{self.name}: call setup() before arm()")
        period = max(2 * width, self.limits.pulse_period_min or 0.0)
        if period > self._period:        # keep width < period at every step
            self.pulse_period = period
            self.pulse_width = width
        else:
            self.pulse_width = width
            self.pulse_period = period
        self._period = period
        # levels as high/low: the idle level is then exactly 0 V (no offset - Vpp/2 rounding);
        # the order keeps high > low at every step
        high, low = (amplitude, 0.0) if amplitude > 0 else (0.0, amplitude)
        if high > self._levels[1]:
            self.voltage_high = high
            self.voltage_low = low
        else:
            self.voltage_low = low
            self.voltage_high = high
        self._levels = (high, low)
        self.output_polarity = "normal" if amplitude > 0 else "inverted"

    def enable(self) -> None:
        """Output on: the output idles at 0 V until :meth:`fire`."""
        self.source_enabled = True

    def disable(self) -> None:
        self.source_enabled = False

    def output_enabled(self) -> bool:
        return bool(self.source_enabled)

    def fire(self) -> None:
        """One pulse (``*TRG``), returning once the instrument reports it complete (``*OPC?``)."""
        reply = str(self.parent.ask("*TRG;*OPC?")).strip()
        try:
            done = math.isclose(float(reply), 1.0)
        except ValueError:
            done = False
        if not done:
            raise InstrumentError(f"{self.name}: pulse not confirmed (reply {reply[:40]!r})")


class Keysight33500B(TimeoutNamingMixin, ErrorQueueMixin, Agilent33500):
    """Keysight 33500B-series waveform generator (33511B, 33512B, 33522B, ...).

    Args:
        resource: VISA resource (``TCPIP::host::5025::SOCKET``, ``USB0::…``), or an adapter.
        name: shown in messages; the channels are ``"<name> ch1"`` / ``"… ch2"``.
        timeout_ms: per-query timeout (:class:`~instruments.roles.InstrumentTimeout` names this
            instrument and the command).
        model: the model whose limits apply (``MODEL_LIMITS``); default the 20 MHz 33512B.
    """

    error_query = "SYST:ERR?"
    MODEL_LIMITS = MODEL_LIMITS
    DEFAULT_MODEL = "33512B"

    ch_1 = Instrument.ChannelCreator(PulseChannel, 1)
    ch_2 = Instrument.ChannelCreator(PulseChannel, 2)

    def __init__(self, resource, name: str = "Keysight 33500B", timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 model: str | None = None, **kwargs):
        if model is not None and model not in MODEL_LIMITS:
            raise ValueError(f"{name}: unknown 33500B model {model!r}; known: {', '.join(MODEL_LIMITS)}")
        self.limits = MODEL_LIMITS[model or self.DEFAULT_MODEL]
        super().__init__(adapter_for(resource, timeout_ms), name, **kwargs)
