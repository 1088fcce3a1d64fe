"""What each instrument model can do, from its manual: one record per model, read generically.

Every driver class carries ``MODEL_LIMITS`` (model name -> :class:`SourceLimits` for sources and
pulse generators, :class:`MatrixLimits` for switch matrices) and ``DEFAULT_MODEL`` (the record used
when the model is not known: the most restrictive of the family).  :func:`limits_for` picks the
record of a driver class from an identity string (the station file's ``identity``, or ``*IDN?``);
:func:`instruments.hardware_crossbar.station_limits` narrows a station's ``[limits]`` to the
records of the instruments it uses, before anything is written.

The drivers' validators refuse values outside these ranges (``ValueError`` before any write), and
the emulators in :mod:`mock_hw.emulators` refuse what the real instruments refuse.

Figures checked against a manual page (2026-12-06, issue 13), and those that could not be:

* Keithley 2600B: pulses specified from 100 µs, 1 µs resolution; "not a pulse generator"
  (Series 2600B Reference Manual 2600BS-901-01; 2600B data sheet) — checked in issue 13's first
  half.  TSP-Link: a master addresses a subordinate as ``node[N]`` ("All TSP-accessible remote
  commands can be accessed as elements of the specific node"), ``tsplink.reset()`` initializes
  the network and returns the nodes found, ``tsplink.state`` is ``"online"`` / ``"offline"``
  (2600BS-901-01 Rev. B, section 6, "TSP-Link system", p. 6-49; Series 2600A reference manual,
  tsplink.reset / tsplink.state) — checked.
* Keithley 707B: ``channel.open`` / ``close`` / ``exclusiveclose`` / ``getclose`` are "TSP-Link
  accessible: Yes"; ``getclose`` answers a ``;``-separated list (707B/708B Reference Manual
  707B-901-01 Rev. A, section 7, pp. 7-24, 7-35; Rev. B p. 7-24) — checked.
* Keithley 7174A card, 200 V / 1 A: **not verified** — no 7174A data-sheet or manual page with its
  signal ratings could be retrieved; the figure is the one this project has used (8x12 matrix,
  200 V, 1 A) and stays marked unverified in :data:`instruments.keithley707b.MODEL_LIMITS`.
* Keysight B2200A/B2201A, ±200 V / 1 A per path: **not verified** — the B2200 User's Guide
  (Edition 2) specification pages retrieved give the supplemental data of the B2200A/B2210A (offset
  current < 10 fA, settling 2.0 s, 30 MHz bandwidth, 145 pF guard capacitance) but not the
  maximum voltage and current; marked unverified in
  :data:`instruments.keysight_b2200.MODEL_LIMITS`.  4 module slots of 14 inputs x 12 outputs:
  as before (User's Guide, normal configuration).
* Keysight 33500B pulse edges: the 33500 Series Operating and Service Guide, "Pulse Waveforms"
  (p. 69), gives width 16 ns – 1,000,000 s and "to achieve edges > 8.4 ns (the minimum edge
  time), the pulse width must be at least 20 ns. The longer the edges, the greater the minimum
  pulse width" — checked; it gives no formula.  The rule applied (edge time <= 0.625 x width, i.e.
  width >= 1.6 x edge) is the one the 33250A User's Guide states for ``PULSe:TRANsition`` (ch. 4,
  "Edge Time < 0.625 X Pulse Width"); for the 33500B it is **an assumption** consistent with its
  guide's example (1.6 x 8.4 ns = 13.4 ns <= 20 ns), not a documented 33500B figure.
* xbarlab serial switch board: our own design; its rating (±10 V, 0.5 A per path: signal reed
  relays) is a **design value**, not a measured or data-sheet figure
  (:data:`instruments.switch_board.MODEL_LIMITS`).
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
