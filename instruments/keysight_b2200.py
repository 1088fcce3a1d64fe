"""Keysight (Agilent) B2200A / B2201A / E5250A switching matrix (SCPI) as a
:class:`~instruments.roles.Matrix`.

Relay addressing (see :mod:`instruments.roles`): the mainframe's 14 input ports are shared by
every matrix card (module) installed, and each card has 12 output ports (B2200 User's Guide, normal
configuration mode).  So input = two-digit input port ``"01"``–``"14"``, pin = card digit 1–4 +
two-digit output port 01–12 (``"205"`` = card 2, output 05); the channel is ``card + input +
output``: ("03", "205") -> ``20305``.  Up to 4 cards: 48 crossbar lines on one mainframe.  (The
auto-configuration mode, card 0, is not used by this driver.)

Commands sent:

* ``:ROUT:OPEN:CARD ALL``                — :meth:`KeysightB2200.open_all`
* ``:ROUT:CLOS (@10305,20406)``          — :meth:`KeysightB2200.close` (one command, any cards)
* ``:ROUT:CLOS:CARD? ALL``               — :meth:`KeysightB2200.closed`; the reply is the closed
  channels of every card as a channel list, ``(@10305,20406)``, or ``(@)`` if none
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
from .limits import MatrixLimits
from .roles import InstrumentError

#: ±200 V / 1 A per path is NOT verified: the B2200 User's Guide (Edition 2) specification pages
#: retrieved give only the supplemental data (offset current, settling, bandwidth); see instruments.limits
_DOC = ("Agilent B2200 User's Guide: 4 module slots, each B2210A (B2200A) / B2211A (B2201A) module "
        "14 inputs x 12 outputs; ±200 V, 1 A per path unverified (not on the specification pages retrieved)")
MODEL_LIMITS = {m: MatrixLimits(m, _DOC, cards=4, inputs=14, outputs=12, voltage_max=200.0, current_max=1.0)
                for m in ("B2200A", "B2201A")}

#: one channel: card 1-4, input 01-14, output 01-12
CHANNEL_RE = re.compile(r"^[1-4](0[1-9]|1[0-4])(0[1-9]|1[0-2])$")
_INPUT_RE = re.compile(r"^(0[1-9]|1[0-4])$")
_PIN_RE = re.compile(r"^[1-4](0[1-9]|1[0-2])$")
_LIST_RE = re.compile(r"^\(@\s*([0-9,\s]*)\)$")


validate_channel_list = channel_list_validator(
    "B2200", CHANNEL_RE, "card 1-4 + input 01-14 + output 01-12, e.g. '10305'")


def parse_channel_list(reply) -> set[tuple[str, str]]:
    """``"(@10305,20406)"`` / ``"(@)"`` -> {("03", "105"), ("04", "206")}."""
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
        out.add((ch[1:3], ch[0] + ch[3:]))
    return out


def channel_name(inp: str, pin: str) -> str:
    """(input, pin) -> channel: ("03", "205") -> "20305"."""
    if not isinstance(inp, str) or not isinstance(pin, str) or not _INPUT_RE.match(inp) or not _PIN_RE.match(pin):
        raise ValueError(f"invalid B2200 relay (input {inp!r}, pin {pin!r}): input is the input port "
                         f"01-14, pin is card digit 1-4 + output port 01-12, e.g. ('03', '205')")
    return pin[0] + inp + pin[1:]


class KeysightB2200(TimeoutNamingMixin, ErrorQueueMixin, SCPIMixin, Instrument):
    """Keysight B2200A / B2201A / E5250A switching matrix.

    Args:
        resource: VISA resource string (GPIB, ``TCPIP::host::port::SOCKET``, ...) or an adapter.
        name: instrument name used in error messages.
        timeout_ms: read timeout.
        cards: number of matrix cards installed (1-4, default 4); relays on other cards are
            refused before anything is sent.
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

    MODEL_LIMITS = MODEL_LIMITS
    DEFAULT_MODEL = "B2200A"

    def __init__(self, resource, name: str = "Keysight B2200", timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 cards: int = 4, **kw):
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
        """The relays every card reports closed, as (input, pin): one query."""
        reply = self.ask(":ROUT:CLOS:CARD? ALL")
        try:
            return parse_channel_list(reply)
        except ValueError as exc:
            raise InstrumentError(f"{self.name}: cannot parse the closed-channel list: {exc}") from None

    # -------------------------------------------------------------------------- Identified