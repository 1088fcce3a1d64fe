"""Keithley 707B / 708B switching matrix mainframe (TSP) as a :class:`~instruments.roles.Matrix`.

Relay addressing (see :mod:`instruments.roles`): input = matrix row letter ``"A"``–``"H"``, pin =
slot digit + two-digit column (``"101"`` = slot 1, column 01); the instrument channel is
``slot + row + column``, e.g. input ``"A"`` + pin ``"101"`` -> ``"1A01"``.

Commands sent (TSP, one statement per line):

* ``channel.open("allslots")``                      — :meth:`Keithley707B.open_all`
* ``channel.close("1A01,1B02")``                    — :meth:`Keithley707B.close` (one command)
* ``channel.exclusiveclose("1A01,1B02")``           — :meth:`Keithley707B.exclusive_close`
* ``print(channel.getclose("allslots"))``           — :meth:`Keithley707B.closed`; the reply is a
  ``;``-separated list of closed channels, or ``nil`` when none is closed
* ``*IDN?``                                         — :meth:`Keithley707B.identity`
* ``print(errorqueue.next())``                      — :meth:`Keithley707B.drain_errors`; the reply
  is ``code<TAB>message<TAB>severity<TAB>node`` (numbers in TSP's ``%.5e`` print format), code 0
  when the queue is empty
"""
from __future__ import annotations

import re

from pymeasure.instruments import Instrument

from .base import (DEFAULT_TIMEOUT_MS, ErrorQueueMixin, TimeoutNamingMixin,
                   adapter_for, channel_list_validator, parse_tsp_error)
from .limits import MatrixLimits
from .roles import InstrumentError

#: 707B mainframe: 6 slots sharing rows A–H over the backplane (707B/708B Reference Manual
#: 707B-901-01); the 7174A low-current matrix card is 8 rows x 12 columns.  Its 200 V / 1 A rating
#: is NOT verified against a 7174A data-sheet page (none could be retrieved; see instruments.limits)
_DOC_707B = ("707B/708B Reference Manual 707B-901-01 (6 slots, 8x12 cards); 7174A rating 200 V / 1 A "
             "unverified (no 7174A data-sheet page retrieved)")
MODEL_LIMITS = {
    "707B": MatrixLimits("707B + 7174A", _DOC_707B, cards=6, inputs=8, outputs=12, voltage_max=200.0, current_max=1.0),
    "708B": MatrixLimits("708B + 7174A", _DOC_707B, cards=1, inputs=8, outputs=12, voltage_max=200.0, current_max=1.0),
}

#: one 707B/708B channel: slot 1-6, row A-H, column 01-12
CHANNEL_RE = re.compile(r"^[1-6][A-H](0[1-9]|1[0-2])$")
_INPUT_RE = re.compile(r"^[A-H]$")
_PIN_RE = re.compile(r"^[1-6](0[1-9]|1[0-2])$")


validate_channel_list = channel_list_validator(
    "707B", CHANNEL_RE, "slot 1-6, row A-H, column 01-12, e.g. '1A01'")


def parse_getclose(reply) -> set[tuple[str, str]]:
    """Parse ``print(channel.getclose(...))``: ``"1A01;1B02"`` or ``"nil"`` -> {(input, pin)}."""
    text = str(reply).strip()
    if text in ("nil", ""):
        return set()
    out = set()
    for ch in text.split(";"):
        ch = ch.strip()
        if not CHANNEL_RE.match(ch):
            raise ValueError(f"unexpected channel {ch[:20]!r} in getclose reply {text[:60]!r}")
        out.add((ch[1], ch[0] + ch[2:]))
    return out


def channel_name(inp: str, pin: str) -> str:
    """(input, pin) -> instrument channel, e.g. ("A", "101") -> "1A01"."""
    if not isinstance(inp, str) or not isinstance(pin, str) or not _INPUT_RE.match(inp) or not _PIN_RE.match(pin):
        raise ValueError(f"invalid 707B relay (input {inp!r}, pin {pin!r}): input is a row letter "
                         f"A-H, pin is slot digit 1-6 + column 01-12, e.g. ('A', '101')")
    return pin[0] + inp + pin[1:]


class Keithley707B(TimeoutNamingMixin, ErrorQueueMixin, Instrument):
    """Keithley 707B / 708B switching matrix over TSP.

    Args:
        resource: VISA resource (``TCPIP::host::5025::SOCKET``, GPIB, ...), or a pymeasure adapter.
        name: instrument name used in error messages.
        timeout_ms: read timeout.
    """

    error_query = "print(errorqueue.next())"
    parse_error_reply = staticmethod(parse_tsp_error)

    closed_channels = Instrument.measurement(
        'print(channel.getclose("allslots"))',
        """Get the closed relays as a set of (input, pin), from channel.getclose("allslots").""",
        cast=str, maxsplit=0, get_process=parse_getclose,
    )

    close_channels = Instrument.setting(
        'channel.close("%s")',
        """Close the channels given (comma-separated string or list of names like '1A01');
        other closed channels stay closed.""",
        validator=validate_channel_list,
    )

    exclusive_close_channels = Instrument.setting(
        'channel.exclusiveclose("%s")',
        """Close exactly the channels given and open every other channel.""",
        validator=validate_channel_list,
    )

    MODEL_LIMITS = MODEL_LIMITS
    DEFAULT_MODEL = "707B"

    def __init__(self, resource, name: str = "Keithley 707B", timeout_ms: int = DEFAULT_TIMEOUT_MS, **kw):
        super().__init__(adapter_for(resource, timeout_ms), name, includeSCPI=False, **kw)

    # ------------------------------------------------------------------------------ Matrix
    def _channels(self, connections) -> list[str]:
        """Validate every (input, pin) before anything is written."""
        names = []
        for item in connections:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(f"{self.name}: bad connection {item!r}: expected (input, pin)")
            try:
                names.append(channel_name(*item))
            except ValueError as exc:
                raise ValueError(f"{self.name}: {exc}") from None
        return list(dict.fromkeys(names))  # duplicates dropped, order kept

    def open_all(self) -> None:
        """Open every relay in every slot."""
        self.write('channel.open("allslots")')

    def close(self, connections) -> None:
        """Close the relays (input, pin) in one ``channel.close`` command; nothing is sent for an
        empty list, nor when any connection is invalid (ValueError naming it)."""
        names = self._channels(connections)
        if names:
            self.close_channels = ",".join(names)

    def exclusive_close(self, connections) -> None:
        """Close exactly these relays, opening all others (``channel.exclusiveclose``); an empty
        list opens everything."""
        names = self._channels(connections)
        if names:
            self.exclusive_close_channels = ",".join(names)
        else:
            self.open_all()

    def closed(self) -> set[tuple[str, str]]:
        """The relays the instrument reports closed, as (input, pin)."""
        try:
            return self.closed_channels
        except ValueError as exc:
            raise InstrumentError(f"{self.name}: cannot parse the closed-channel list: {exc}") from None

    # -------------------------------------------------------------------------- Identified