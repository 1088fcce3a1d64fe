"""Keysight (Agilent) B2200A / B2201A / E5250A switching matrix (SCPI) as a
:class:`~instruments.roles.Matrix`.

Relay addressing (see :mod:`instruments.roles`): input = card digit + two-digit input port
(``"103"`` = card 1, input 03), pin = card digit + two-digit output port (``"105"`` = card 1,
output 05); the channel is ``card + input + output``: ("103", "105") -> ``10305``.  Input and pin
must be on the same card; cards 1..``cards`` (card 0, the auto-configuration pseudo-card, is not
used by this driver), inputs 01–14, outputs 01–48.

Commands sent:

* ``:ROUT:OPEN:CARD ALL``                — :meth:`KeysightB2200.open_all`
* ``:ROUT:CLOS (@10305,10406)``          — :meth:`KeysightB2200.close` (one command)
* ``:ROUT:CLOS:CARD? <card>``            — :meth:`KeysightB2200.closed`, once per card; the reply
  is the closed channels of that card as a channel list, ``(@10305,10406)``, or ``(@)`` if none
* ``*IDN?``                              — :meth:`KeysightB2200.identity`
* ``:SYST:ERR?``                         — :meth:`KeysightB2200.drain_errors`; ``+0,"No error"``
  ends the queue
"""
from __future__ import annotations

import re

from pymeasure.instruments import Instrument
from pymeasure.instruments.generic_types import SCPIMixin

from .base import (DEFAULT_TIMEOUT_MS, ErrorQueueMixin, TimeoutNamingMixin,
                   adapter_for, channel_list_validator)
from .roles import InstrumentError

#: one channel: card 1-4, input 01-14, output 01-48
CHANNEL_RE = re.compile(r"^[1-4](0[1-9]|1[0-4])(0[1-9]|[1-3][0-9]|4[0-8])$")
_INPUT_RE = re.compile(r"^[1-4](0[1-9]|1[0-4])$")
_PIN_RE = re.compile(r"^[1-4](0[1-9]|[1-3][0-9]|4[0-8])$")
_LIST_RE = re.compile(r"^\(@\s*([0-9,\s]*)\)$")


validate_channel_list = channel_list_validator(
    "B2200", CHANNEL_RE, "card 1-4 + input 01-14 + output 01-48, e.g. '10305'")


def parse_channel_list(reply) -> set[tuple[str, str]]:
    """``"(@10305,10406)"`` / ``"(@)"`` -> {("103", "105"), ("104", "106")}."""
    text = str(reply).strip()
    m = _LIST_RE.match(text)
    if not m:
        raise ValueError(f"expected a channel list like '(@10305)', got {text[:60]!r}")
    out = set()
    for ch in m.group(1).split(","):
        ch = ch.strip()
        if not ch:
            continue
        if not CHANNEL_RE.match(ch):
            raise ValueError(f"unexpected channel {ch[:20]!r} in reply {text[:60]!r}")
        out.add((ch[:3], ch[0] + ch[3:]))
    return out


def channel_name(inp: str, pin: str) -> str:
    """(input, pin) -> channel: ("103", "105") -> "10305"."""
    if not isinstance(inp, str) or not isinstance(pin, str) or not _INPUT_RE.match(inp) or not _PIN_RE.match(pin):
        raise ValueError(f"invalid B2200 relay (input {inp!r}, pin {pin!r}): input is card digit + "
                         f"input port 01-14, pin is card digit + output port 01-48, e.g. ('103', '105')")
    if inp[0] != pin[0]:
        raise ValueError(f"invalid B2200 relay (input {inp!r}, pin {pin!r}): input and pin are on "
                         f"different cards")
    return inp + pin[1:]


class KeysightB2200(TimeoutNamingMixin, ErrorQueueMixin, SCPIMixin, Instrument):
    """Keysight B2200A / B2201A / E5250A switching matrix.

    Args:
        resource: VISA resource string (GPIB, ``TCPIP::host::port::SOCKET``, ...) or an adapter.
        name: instrument name used in error messages.
        timeout_ms: read timeout.
        cards: number of matrix cards installed (1-4); :meth:`closed` queries each.
    """

    error_query = ":SYST:ERR?"

    close_channels = Instrument.setting(
        ":ROUT:CLOS (@%s)",
        """Close the channels given (comma-separated string or list of 5-digit channels).""",
        validator=validate_channel_list,
    )

    open_channels = Instrument.setting(
        ":ROUT:OPEN (@%s)",
        """Open the channels given (comma-separated string or list of 5-digit channels).""",
        validator=validate_channel_list,
    )

    def __init__(self, resource, name: str = "Keysight B2200", timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 cards: int = 1, **kw):
        if not 1 <= int(cards) <= 4:
            raise ValueError(f"{name}: a B2200 holds 1-4 cards, not {cards}")
        self.cards = int(cards)
        super().__init__(adapter_for(resource, timeout_ms), name, **kw)

    def _channels(self, connections) -> list[str]:
        names = []
        for item in connections:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(f"{self.name}: bad connection {item!r}: expected (input, pin)")
            try:
                ch = channel_name(*item)
            except ValueError as exc:
                raise ValueError(f"{self.name}: {exc}") from None
            if int(ch[0]) > self.cards:
                raise ValueError(f"{self.name}: relay {item!r} is on card {ch[0]}, "
                                 f"but only {self.cards} card(s) are configured")
            names.append(ch)
        return list(dict.fromkeys(names))  # duplicates dropped, order kept

    # ------------------------------------------------------------------------------ Matrix
    def open_all(self) -> None:
        self.write(":ROUT:OPEN:CARD ALL")

    def close(self, connections) -> None:
        """Close the relays (input, pin) with one ``:ROUT:CLOS (@...)``; nothing is sent for an
        empty list or when any connection is invalid (ValueError naming it)."""
        names = self._channels(connections)
        if names:
            self.close_channels = ",".join(names)

    def open(self, connections) -> None:
        """Open the relays (input, pin) with one ``:ROUT:OPEN (@...)``."""
        names = self._channels(connections)
        if names:
            self.open_channels = ",".join(names)

    def closed(self) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for card in range(1, self.cards + 1):
            reply = self.ask(f":ROUT:CLOS:CARD? {card}")
            try:
                out |= parse_channel_list(reply)
            except ValueError as exc:
                raise InstrumentError(f"{self.name}: cannot parse the closed-channel list of card "
                                      f"{card}: {exc}") from None
        return out

    # -------------------------------------------------------------------------- Identified