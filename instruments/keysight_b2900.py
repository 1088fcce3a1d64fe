"""Keysight B2900 series precision SMUs (B2902A, B2912A; two channels) over SCPI; each channel is a
:class:`~instruments.roles.SourceChannel`.

``KeysightB2900(resource).ch_1`` / ``.ch_2`` are :class:`KeysightB2900Channel` objects (named
``"<instrument name> ch1"`` / ``"… ch2"``); the instrument itself is
:class:`~instruments.roles.Identified`.  Single-channel models (B2901A, B2911A) use ``ch_1`` only.

Commands sent by a channel (``1`` shown; ``{ch}`` in the declarations):

* ``setup(compliance, nplc)`` — ``:SOUR1:FUNC:MODE VOLT``, ``:SOUR1:FUNC:SHAP DC``,
  ``:SOUR1:VOLT 0``, ``:SENS1:CURR:PROT <A>``, ``:SENS1:CURR:NPLC <nplc>`` (both arguments checked
  before the first write)
* ``set_level(v)`` — ``:SOUR1:VOLT <V>`` (the DC level; in pulse shape, the base level)
* ``enable()`` / ``disable()`` — ``:OUTP1 ON`` / ``:SOUR1:VOLT 0`` then ``:OUTP1 OFF``
* ``output_enabled()`` — ``:OUTP1?``;  ``measure_current()`` — ``:MEAS:CURR? (@1)``
* ``compliance_tripped()`` — ``:SENS1:CURR:PROT:TRIP?``
* ``pulse(amplitude, width)`` — ``:SOUR1:VOLT 0`` (base), ``:SOUR1:FUNC:SHAP PULS``,
  ``:SOUR1:PULS:WIDT <s>``, ``:SOUR1:PULS:DEL 0``, ``:SOUR1:VOLT:TRIG <V>`` (peak),
  ``:INIT (@1)``, ``*OPC?`` (waits for the pulse to finish).  Nothing is restored afterwards: the
  channel stays in pulse shape at its 0 V base (``setup`` returns it to DC).  The output is turned
  on by the instrument's automatic output-on function (``:OUTP:ON:AUTO``, on after ``*RST``), so it
  is left on at 0 V.
* instrument: ``identity()`` — ``*IDN?``; ``drain_errors()`` — ``:SYST:ERR:NEXT?`` until
  ``+0,"No error"``

Limits (``MODEL_LIMITS``, :mod:`instruments.limits`): pulse widths 50 µs – 100 000 s on every
B2900 model (B2900 User's Guide, Edition 5, "Pulse Output": "The available values are 50 µs to
100000 s"; Edition 2, "Pulse Source Supplemental Characteristics": minimum programmable pulse width
50 µs, resolution 1 µs); shortest trigger interval, i.e. pulse period, 20 µs on the B2901A/B2902A
and 10 µs on the B2911A/B2912A (B2900A Series Data Sheet, "Timer and triggering specification").
The validators refuse anything shorter before writing.  Voltage ±210 V, compliance 1 nA – 3.03 A
(the pulsed maximum; DC is limited to 1.515 A by the instrument; SCPI Command Reference, "Source
Output Ranges"), NPLC 4e-4 – 100.
"""
from __future__ import annotations


from pymeasure.instruments import Channel, Instrument
from pymeasure.instruments.generic_types import SCPIMixin
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from .base import (DEFAULT_TIMEOUT_MS, ErrorQueueMixin, LevelOutputMixin,
                   TimeoutNamingMixin, adapter_for, on_off)
from .limits import SourceLimits

_DOC = ("Keysight B2900 User's Guide Ed. 5 (Pulse Output: widths 50 µs to 100000 s) and B2900A "
        "Series Data Sheet (minimum trigger interval)")


def _model(name: str, period_min: float) -> SourceLimits:
    return SourceLimits(name, _DOC, voltage=(-210.0, 210.0), compliance_current=(1e-9, 3.03),
                        pulse_width=(50e-6, 100_000.0), pulse_period_min=period_min,
                        pulse_width_resolution=1e-6)


#: per model: B2901A/B2902A trigger interval from 20 µs, B2911A/B2912A from 10 µs
MODEL_LIMITS = {"B2901A": _model("B2901A", 20e-6), "B2902A": _model("B2902A", 20e-6),
                "B2911A": _model("B2911A", 10e-6), "B2912A": _model("B2912A", 10e-6)}
V_MAX = 210.0
COMPLIANCE_RANGE = MODEL_LIMITS["B2902A"].compliance_current
NPLC_RANGE = (4e-4, 100.0)
#: pulse widths every B2900 model accepts, s (the validators refuse anything else before writing)
WIDTH_RANGE = MODEL_LIMITS["B2902A"].pulse_width
DELAY_RANGE = (0.0, 99_999.9)


class KeysightB2900Channel(LevelOutputMixin, Channel):
    """One SMU channel of a B2900 (``id`` 1 or 2)."""

    source_mode = Channel.control(
        ":SOUR{ch}:FUNC:MODE?", ":SOUR{ch}:FUNC:MODE %s",
        """Control the source function: 'voltage' or 'current' (pymeasure's values).""",
        validator=strict_discrete_set,
        values={"voltage": "VOLT", "current": "CURR"},
        map_values=True,
        cast=str,
    )

    source_shape = Channel.control(
        ":SOUR{ch}:FUNC:SHAP?", ":SOUR{ch}:FUNC:SHAP %s",
        """Control the output shape: 'DC' or 'PULS' (pulse).""",
        validator=strict_discrete_set,
        values=["DC", "PULS"],
        cast=str,
    )

    source_voltage = Channel.control(
        ":SOUR{ch}:VOLT?", ":SOUR{ch}:VOLT %g",
        """Control the DC voltage level (the base level in pulse shape), V (±210 V).""",
        validator=strict_range,
        values=(-V_MAX, V_MAX),
    )

    pulse_peak = Channel.control(
        ":SOUR{ch}:VOLT:TRIG?", ":SOUR{ch}:VOLT:TRIG %g",
        """Control the triggered voltage level (the pulse peak in pulse shape), V (±210 V).""",
        validator=strict_range,
        values=(-V_MAX, V_MAX),
    )

    pulse_width = Channel.control(
        ":SOUR{ch}:PULS:WIDT?", ":SOUR{ch}:PULS:WIDT %g",
        """Control the pulse width, s (50 µs – 100 000 s, the instrument's range).""",
        validator=strict_range,
        values=WIDTH_RANGE,
    )

    pulse_delay = Channel.control(
        ":SOUR{ch}:PULS:DEL?", ":SOUR{ch}:PULS:DEL %g",
        """Control the pulse delay (trigger to pulse start), s.""",
        validator=strict_range,
        values=DELAY_RANGE,
    )

    compliance_current = Channel.control(
        ":SENS{ch}:CURR:PROT?", ":SENS{ch}:CURR:PROT %g",
        """Control the current compliance of the voltage source, A (1 nA – 3.03 A).""",
        validator=strict_range,
        values=COMPLIANCE_RANGE,
    )

    compliance_current_tripped = Channel.measurement(
        ":SENS{ch}:CURR:PROT:TRIP?",
        """Get whether the channel hit its current compliance (bool).""",
        cast=bool,
    )

    current_nplc = Channel.control(
        ":SENS{ch}:CURR:NPLC?", ":SENS{ch}:CURR:NPLC %g",
        """Control the current-measurement integration time, power-line cycles (4e-4 – 100).""",
        validator=strict_range,
        values=NPLC_RANGE,
    )

    source_enabled = Channel.control(
        ":OUTP{ch}?", ":OUTP{ch} %s",
        """Control the output state (bool): ``:OUTP1 ON`` / ``:OUTP1 OFF``.""",
        validator=strict_discrete_set,
        values=(True, False),
        set_process=on_off,
        cast=bool,
    )

    current = Channel.measurement(
        ":MEAS:CURR? (@{ch})",
        """Get one spot current measurement, A.""",
    )

    @property
    def name(self) -> str:
        return f"{self.parent.name} ch{self.id}"

    def initiate(self) -> None:
        """Start the channel's trigger system (``:INIT (@n)``): one pulse in pulse shape."""
        self.write(":INIT (@{ch})")

    # ------------------------------------------------------------------ SourceChannel methods
    def setup(self, compliance: float, nplc: float) -> None:
        """Voltage source, DC shape, 0 V, current compliance (A), NPLC; output state unchanged."""
        strict_range(compliance, COMPLIANCE_RANGE)
        strict_range(nplc, NPLC_RANGE)
        self.source_mode = "voltage"
        self.source_shape = "DC"
        self.source_voltage = 0.0
        self.compliance_current = compliance
        self.current_nplc = nplc

    def pulse(self, amplitude: float, width: float) -> None:
        """One pulse 0 V → ``amplitude`` for ``width`` s → 0 V; returns when it is over."""
        strict_range(amplitude, (-V_MAX, V_MAX))
        strict_range(width, WIDTH_RANGE)
        self.source_voltage = 0.0
        self.source_shape = "PULS"
        self.pulse_width = width
        self.pulse_delay = 0.0
        self.pulse_peak = amplitude
        self.initiate()
        self.ask("*OPC?")

    def compliance_tripped(self) -> bool:
        return bool(self.compliance_current_tripped)


class KeysightB2900(TimeoutNamingMixin, ErrorQueueMixin, SCPIMixin, Instrument):
    """Keysight B2900-series SMU (B2902A / B2912A) with channels ``ch_1`` and ``ch_2``.

    Args:
        resource: VISA resource string (``TCPIP::host::5025::SOCKET``, ``USB0::…``, ``GPIB::23``),
            a serial URL, or a ready pymeasure adapter.
        name: shown in messages; the channels are named ``"<name> ch1"`` / ``"<name> ch2"``.
        timeout_ms: per-query timeout; a query without a reply raises
            :class:`~instruments.roles.InstrumentTimeout` naming this instrument and the command.
    """

    MODEL_LIMITS = MODEL_LIMITS
    #: the model assumed when the identity is not known (every model has the same pulse widths;
    #: the B2902A's longer trigger interval is the more restrictive)
    DEFAULT_MODEL = "B2902A"

    ch_1 = Instrument.ChannelCreator(KeysightB2900Channel, 1)
    ch_2 = Instrument.ChannelCreator(KeysightB2900Channel, 2)

    def __init__(self, resource, name: str = "Keysight B2900", timeout_ms: int = DEFAULT_TIMEOUT_MS, **kwargs):
        super().__init__(adapter_for(resource, timeout_ms), name, **kwargs)
