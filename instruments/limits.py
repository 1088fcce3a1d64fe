"""What each instrument model can do, from its manual: one record per model, read generically.

Every driver class carries ``MODEL_LIMITS`` (model name -> :class:`SourceLimits` for sources and
pulse generators, :class:`MatrixLimits` for switch matrices) and ``DEFAULT_MODEL`` (the record used
when the model is not known: the most restrictive of the family).  :func:`limits_for` picks the
record of a driver class from an identity string (the station file's ``identity``, or ``*IDN?``);
:func:`instruments.hardware_crossbar.station_limits` narrows a station's ``[limits]`` to the
records of the instruments it uses, before anything is written.

The drivers' validators refuse values outside these ranges (``ValueError`` before any write), and
the emulators in :mod:`mock_hw.emulators` refuse what the real instruments refuse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLimits:
    """A voltage source's ranges and pulse timing (one model)."""

    model: str
    """Model name as it appears in ``*IDN?`` (e.g. ``"2636B"``)."""
    document: str
    """The document (and section) the numbers come from."""
    voltage: tuple[float, float]
    """Programmable source voltage, V (min, max)."""
    compliance_current: tuple[float, float] | None
    """Programmable current limit of the voltage source, A (min, max); None: no current limit
    (a function generator: its 50 Ω output impedance limits the current)."""
    pulse_width: tuple[float, float] | None
    """Programmable pulse width, s (min, max); None: no pulse mode."""
    pulse_period_min: float | None = None
    """Shortest repetition period (trigger interval) of pulses, s; None: not specified."""
    duty_cycle_max: float | None = None
    """Largest pulse duty cycle (fraction) at the low currents a crossbar draws; None: 1."""
    pulse_width_resolution: float | None = None
    """Pulse width programming resolution, s; None: not specified."""

    def check_pulse(self, amplitude: float, width: float) -> None:
        """ValueError naming the model and the document if this model cannot give the pulse."""
        if not (math.isfinite(amplitude) and math.isfinite(width)):
            raise ValueError(f"{self.model}: pulse amplitude and width must be finite")
        if self.pulse_width is None:
            raise ValueError(f"{self.model} has no pulse mode ({self.document})")
        lo, hi = self.pulse_width
        if not lo <= width <= hi:
            raise ValueError(f"{self.model}: pulse width {width:g} s is outside {lo:g}..{hi:g} s "
                             f"({self.document})")
        self.check_voltage(amplitude)

    def check_voltage(self, volts: float) -> None:
        lo, hi = self.voltage
        if not (math.isfinite(volts) and lo <= volts <= hi):
            raise ValueError(f"{self.model}: source level {volts:g} V is outside {lo:g}..{hi:g} V "
                             f"({self.document})")

    def check_compliance(self, amps: float) -> None:
        if self.compliance_current is None:
            return
        lo, hi = self.compliance_current
        if not (math.isfinite(amps) and lo <= amps <= hi):
            raise ValueError(f"{self.model}: current limit {amps:g} A is outside {lo:g}..{hi:g} A "
                             f"({self.document})")


@dataclass(frozen=True)
class MatrixLimits:
    """A switch matrix's size and ratings (one model or card)."""

    model: str
    """Model name (mainframe and card)."""
    document: str
    """The document the numbers come from."""
    cards: int
    """Largest number of matrix cards (slots) the mainframe takes."""
    inputs: int
    """Inputs (instrument-side ports) per card."""
    outputs: int
    """Outputs (DUT-side pins) per card."""
    voltage_max: float
    """Largest voltage a relay may carry or switch, V."""
    current_max: float
    """Largest current a relay may carry, A."""


def limits_for(driver_class, identity: str = ""):
    """The record of ``driver_class.MODEL_LIMITS`` whose model name appears in ``identity`` (case
    insensitive; the longest match wins), else ``MODEL_LIMITS[driver_class.DEFAULT_MODEL]``."""
    table = driver_class.MODEL_LIMITS
    text = str(identity or "").upper()
    hits = [m for m in table if m.upper() in text]
    if hits:
        return table[max(hits, key=len)]
    return table[driver_class.DEFAULT_MODEL]
