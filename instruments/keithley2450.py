"""Keithley 2450 SourceMeter (native SCPI command set) as a :class:`~instruments.roles.SourceChannel`.

:class:`Keithley2450` extends pymeasure's own driver
(:class:`pymeasure.instruments.keithley.Keithley2450`): every pymeasure property and method keeps
working, except :meth:`Keithley2450.measure_current`, which here takes one reading (the
:class:`~instruments.roles.SourceChannel` meaning); pymeasure's configuration method of that name
is still available as :meth:`Keithley2450.configure_current_measurement`.

A few pymeasure properties are re-declared with the same commands but *strict* validators, so an
out-of-range value raises ``ValueError`` before anything is written (pymeasure truncates or does
not check): ``compliance_current`` (``:SOUR:VOLT:ILIM``, 1 nA – 1.05 A), ``current_nplc``
(``:SENS:CURR:NPLC``, 0.01 – 10), ``source_voltage`` (``:SOUR:VOLT:LEV``, ±210 V).

Commands sent by the SourceChannel methods (the 2450 has one channel; the instrument object is the
channel):

* :meth:`~Keithley2450.setup` — ``:SOUR:FUNC VOLT``, ``:SOUR:VOLT:LEV 0``, ``:SENS:FUNC "CURR"``,
  ``:SENS:CURR:RANG:AUTO 1``, ``:SENS:CURR:NPLC <nplc>``, ``:SOUR:VOLT:ILIM <A>`` (both
  arguments are checked before the first write)
* :meth:`~Keithley2450.set_level` — ``:SOUR:VOLT:LEV <V>``
* :meth:`~Keithley2450.enable` / :meth:`~Keithley2450.disable` — ``:OUTP ON`` /
  ``:SOUR:VOLT:LEV 0`` then ``:OUTP OFF``
* :meth:`~Keithley2450.output_enabled` — ``:OUTP?`` (``1``/``0``)
* :meth:`~Keithley2450.measure_current` — ``:READ?``
* :meth:`~Keithley2450.compliance_tripped` — ``:SOUR:VOLT:ILIM:TRIP?`` (``1``/``0``)
* :meth:`~Keithley2450.pulse` — nothing: raises ``NotImplementedError`` (no pulse mode)
* :meth:`~Keithley2450.identity` — ``*IDN?``;  :meth:`~Keithley2450.drain_errors` —
  ``:SYST:ERR:NEXT?`` until the code is 0 (``+0,"No error"``)
"""
from __future__ import annotations


from pymeasure.instruments import Instrument
from pymeasure.instruments.keithley import Keithley2450 as _PymeasureKeithley2450
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from .base import (DEFAULT_TIMEOUT_MS, ErrorQueueMixin, LevelOutputMixin,
                   TimeoutNamingMixin, adapter_for, on_off)
from .limits import SourceLimits

#: what a 2450 can source (Keithley 2450 Reference Manual, 2450-901-01: voltage source ranges up
#: to 200 V (210 V programmable), ``:SOURce:VOLTage:ILIMit`` 1 nA – 1.05 A); the 2450 is a DC
#: source-measure unit without a pulse mode, so ``pulse_width`` is None
MODEL_LIMITS = {
    "2450": SourceLimits(
        "2450", "Keithley 2450 Reference Manual (2450-901-01), source ranges and :SOUR:VOLT:ILIM; "
        "no pulse mode", voltage=(-210.0, 210.0), compliance_current=(1e-9, 1.05), pulse_width=None),
}
V_MAX = MODEL_LIMITS["2450"].voltage[1]
ILIM_RANGE = MODEL_LIMITS["2450"].compliance_current
#: ``:SENSe:CURRent:NPLCycles`` 0.01 – 10 (same manual)
NPLC_RANGE = (0.01, 10.0)


def _sense_function(reply) -> str:
    """``"CURR:DC"`` (as the 2450 answers, quoted) -> ``CURR``."""
    return str(reply).strip().strip("\"'").split(":")[0].upper()


class Keithley2450(TimeoutNamingMixin, LevelOutputMixin, ErrorQueueMixin, _PymeasureKeithley2450):
    """Keithley 2450 SourceMeter.

    ``MODEL_LIMITS`` / ``DEFAULT_MODEL``: what the model can source (:mod:`instruments.limits`).

    Args:
        resource: VISA resource string (``TCPIP::host::5025::SOCKET``, ``GPIB::18``, ``USB…``), a
            serial port / pyserial URL, or a ready pymeasure adapter.
        name: shown in messages (timeouts, errors); also the SourceChannel name.
        timeout_ms: per-query timeout; a query without a reply raises
            :class:`~instruments.roles.InstrumentTimeout` naming this instrument and the command.
    """

    MODEL_LIMITS = MODEL_LIMITS
    DEFAULT_MODEL = "2450"

    def __init__(self, resource, name: str = "Keithley 2450", timeout_ms: int = DEFAULT_TIMEOUT_MS, **kwargs):
        super().__init__(adapter_for(resource, timeout_ms), name, **kwargs)

    # ------------------------------------------------------------ stricter pymeasure properties
    compliance_current = Instrument.control(
        ":SOUR:VOLT:ILIM?", ":SOUR:VOLT:ILIM %g",
        """Control the current limit (compliance) of the voltage source, A (1 nA – 1.05 A;
        out-of-range values raise ValueError, nothing is written).""",
        validator=strict_range,
        values=ILIM_RANGE,
    )

    current_nplc = Instrument.control(
        ":SENS:CURR:NPLC?", ":SENS:CURR:NPLC %g",
        """Control the integration time of current measurements, power-line cycles (0.01 – 10).""",
        validator=strict_range,
        values=NPLC_RANGE,
    )

    source_voltage = Instrument.control(
        ":SOUR:VOLT?", ":SOUR:VOLT:LEV %g",
        """Control the voltage source level, V (±210 V).""",
        validator=strict_range,
        values=(-V_MAX, V_MAX),
    )

    # ------------------------------------------------------------------------ new properties
    compliance_current_tripped = Instrument.measurement(
        ":SOUR:VOLT:ILIM:TRIP?",
        """Get whether the voltage source is in current limit (bool).""",
        cast=bool,
    )

    source_enabled = Instrument.control(
        ":OUTP?", ":OUTP %s",
        """Control the output state (bool): ``:OUTP ON`` / ``:OUTP OFF`` (pymeasure's name; its
        2450 driver only reads it).""",
        validator=strict_discrete_set,
        values=(True, False),
        set_process=on_off,
        cast=bool,
    )

    sense_function = Instrument.control(
        ":SENS:FUNC?", ':SENS:FUNC "%s"',
        """Control the measure function: 'current', 'voltage' or 'resistance'.""",
        validator=strict_discrete_set,
        values={"current": "CURR", "voltage": "VOLT", "resistance": "RES"},
        map_values=True,
        cast=str,
        get_process=_sense_function,
    )

    current_range_auto = Instrument.control(
        ":SENS:CURR:RANG:AUTO?", ":SENS:CURR:RANG:AUTO %d",
        """Control automatic ranging of current measurements (bool).""",
        validator=strict_discrete_set,
        values={True: 1, False: 0},
        map_values=True,
    )

    # ------------------------------------------------------------------ SourceChannel methods
    def setup(self, compliance: float, nplc: float) -> None:
        """Source voltage at 0 V, measure current (auto range), ``nplc``, current limit
        ``compliance`` (A).  The output state is left as it is."""
        strict_range(compliance, ILIM_RANGE)
        strict_range(nplc, NPLC_RANGE)
        self.source_mode = "voltage"
        self.source_voltage = 0.0
        self.sense_function = "current"
        self.current_range_auto = True
        self.current_nplc = nplc
        self.compliance_current = compliance

    def configure_current_measurement(self, nplc=1, current=1.05e-4, auto_range=True) -> None:
        """pymeasure's ``Keithley2450.measure_current`` (configure current measurement)."""
        _PymeasureKeithley2450.measure_current(self, nplc=nplc, current=current, auto_range=auto_range)

    def pulse(self, amplitude: float, width: float) -> None:
        raise NotImplementedError(f"Keithley 2450 has no pulse mode ({MODEL_LIMITS['2450'].document})")

    def compliance_tripped(self) -> bool:
        return bool(self.compliance_current_tripped)

    # --------------------------------------------------------------------- Identified methods