"""What the hardware crossbar needs from instruments, independent of make and model.

Every SMU driver exposes its channels as :class:`SourceChannel`; every switch matrix (and the serial
switch board) as :class:`Matrix`.  Units are SI (V, A, s).

Relay addressing
----------------
A matrix connects *inputs* (instrument-side ports) to *pins* (DUT-side ports, wired to crossbar
lines).  Names are strings, per model:

* Keithley 707B / 708B: input = row letter ``"A"``–``"H"`` (shared by all slots over the
  backplane), pin = slot digit + two-digit column, ``"101"`` = slot 1 column 01; the instrument's
  channel is ``slot + row + column``, e.g. ``"1A01"``.
* Keysight B2200 / E5250A: input = card digit + two-digit input port, pin = card digit +
  two-digit output port; channel ``(@1ccoo)``-style, e.g. input ``"103"``, pin ``"105"`` is
  ``(@10305)``.
* serial switch board: input = bus ``"A"``–``"D"``, pin = ``"R<i>"`` / ``"C<j>"`` (0-based line).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable


class InstrumentTimeout(TimeoutError):
    """An instrument did not answer in time; the message names the instrument and the command."""


class InstrumentError(RuntimeError):
    """An instrument reported errors (its error queue), named with the instrument."""


class InstrumentConnectionError(InstrumentError):
    """An instrument cannot be reached (refused, absent) or its connection dropped mid-run; the
    message names the instrument, its resource and the command that failed."""


@runtime_checkable
class SourceChannel(Protocol):
    """One voltage-sourcing, current-measuring channel."""

    name: str

    def setup(self, compliance: float, nplc: float) -> None:
        """Voltage source mode, current measurement, compliance (A), integration (NPLC),
        level 0 V; output state unchanged."""

    def set_level(self, volts: float) -> None:
        """DC source level, V."""

    def enable(self) -> None:
        """Output on."""

    def disable(self) -> None:
        """Output off (and level 0 V where the model allows)."""

    def output_enabled(self) -> bool:
        """Ask the instrument whether the output is on."""

    def measure_current(self) -> float:
        """One current reading, A (positive = out of HI)."""

    def pulse(self, amplitude: float, width: float) -> None:
        """One voltage pulse from 0 V to ``amplitude`` for ``width`` s and back to 0 V, output
        left on at 0 V.  Raises NotImplementedError on models without a pulse mode."""

    def compliance_tripped(self) -> bool:
        """Whether the last source/measure hit the compliance limit."""


@runtime_checkable
class PulseGenerator(Protocol):
    """One pulse-generator output routed to the selected row (the ``pulse`` role of a station):
    short write pulses an SMU cannot give.  Its output idles at 0 V when enabled."""

    name: str

    def setup(self) -> None:
        """One pulse per :meth:`fire`, output off."""

    def arm(self, amplitude: float, width: float) -> None:
        """Prepare one pulse 0 V -> ``amplitude`` (V) for ``width`` (s) -> 0 V with the output
        off; ValueError (nothing written) outside the model's limits."""

    def enable(self) -> None:
        """Output on, idling at 0 V."""

    def disable(self) -> None:
        """Output off (high impedance)."""

    def output_enabled(self) -> bool:
        """Ask the instrument whether the output is on."""

    def fire(self) -> None:
        """Emit the armed pulse; returns once the instrument reports it over."""


@runtime_checkable
class Matrix(Protocol):
    """A switch matrix (or switch board)."""

    name: str

    def open_all(self) -> None:
        """Open every relay."""

    def close(self, connections: list[tuple[str, str]]) -> None:
        """Close the relays (input, pin) listed, in one command where the model allows."""

    def closed(self) -> set[tuple[str, str]]:
        """The (input, pin) relays the instrument reports closed."""


@runtime_checkable
class Identified(Protocol):
    """Every driver: identity and error queue."""

    def identity(self) -> str:
        """The instrument's identification string."""

    def drain_errors(self) -> list[tuple[int, str]]:
        """Read the error queue until it is empty; returns [(code, message), ...]."""
