"""Emulated Keithley 707B switching matrix (TSP), acting on a :class:`~mock_hw.bench_physics.PhysicalBench`.

Understood (one statement per line or ``;``-separated; nothing is ever evaluated):

* ``channel.open(L)``, ``channel.close(L)``, ``channel.exclusiveclose(L)`` where ``L`` is a quoted
  channel list: ``"allslots"``, ``"slot1"``, or comma-separated channels ``"1A01,1B02"``
  (slot 1..``slots``, row A–H, column 01–12).  ``exclusiveclose`` opens every other channel first
  (break before make).  A list with any invalid entry is rejected as a whole.
* ``print(channel.getclose(L))`` — ``;``-separated closed channels among ``L`` (sorted), or ``nil``.
* ``*IDN?``, ``reset()`` (opens every relay), ``print(errorqueue.next())``, ``errorqueue.clear()``,
  ``print(errorqueue.count)``, ``localnode.model`` / ``localnode.serialno``.

Relays are the bench's: channel ``1A01`` is ``bench.set_relay(name, "A", "101", closed)``, and
``getclose`` reports what the bench has actually closed (a relay stuck open is not reported).
Errors: an invalid channel or channel list is TSP runtime error -286 (``"TSP Runtime error:
... invalid channel ..."``); anything unparsable is -285 (program syntax error).
"""
from __future__ import annotations

import re

from .base import CommandError
from .tsp import STRING, TspInstrument, unquote

_CHANNEL = re.compile(r"([1-9])([A-H])(0[1-9]|1[0-2])")
_ARG = rf"\s*({STRING})\s*"


class Keithley707BEmulator(TspInstrument):
    idn = "Keithley Instruments Inc., Model 707B, 1234567, 1.8.0"

    def __init__(self, bench, name: str = "M707B", slots: int = 2):
        if not 1 <= int(slots) <= 6:
            raise ValueError(f"a 707B has 1-6 slots, not {slots}")
        self.bench = bench
        self.slots = int(slots)
        super().__init__(name)

    def build(self) -> None:
        self.statement(rf"channel\.open\({_ARG}\)", lambda m: self._open(self._channels(m.group(1))))
        self.statement(rf"channel\.close\({_ARG}\)", lambda m: self._close(self._channels(m.group(1))))
        self.statement(rf"channel\.exclusiveclose\({_ARG}\)",
                       lambda m: self._exclusive(self._channels(m.group(1))))
        self.expression(rf"channel\.getclose\({_ARG}\)", lambda m: self._getclose(self._channels(m.group(1))))

    # ------------------------------------------------------------------------- channels
    def all_channels(self) -> list[str]:
        return [f"{s}{r}{c:02d}" for s in range(1, self.slots + 1) for r in "ABCDEFGH" for c in range(1, 13)]

    def _channels(self, literal: str) -> list[str]:
        """A quoted channel-list literal -> channel names; CommandError if any part is invalid."""
        return self.channel_list(unquote(literal))

    def channel_list(self, text: str) -> list[str]:
        """A channel list (the string's contents) -> channel names; CommandError if any part is
        invalid.  Also the entry point of commands arriving over TSP-Link from a 2600B script."""
        text = text.strip()
        if text.lower() == "allslots":
            return self.all_channels()
        names: list[str] = []
        for part in text.split(","):
            part = part.strip()
            m = re.fullmatch(r"slot(\d)", part, flags=re.IGNORECASE)
            if m:
                slot = int(m.group(1))
                if not 1 <= slot <= self.slots:
                    raise CommandError(-286, f"TSP Runtime error: invalid channel list: no slot {slot}")
                names += [c for c in self.all_channels() if c[0] == str(slot)]
                continue
            m = _CHANNEL.fullmatch(part)
            if not m or not 1 <= int(m.group(1)) <= self.slots:
                raise CommandError(-286, f"TSP Runtime error: invalid channel {part[:20]!r}")
            names.append(part)
        return names

    @staticmethod
    def _relay(channel: str) -> tuple[str, str]:
        """'1A01' -> (input 'A', pin '101')."""
        return channel[1], channel[0] + channel[2:]

    def closed_channels(self) -> list[str]:
        return sorted(p[0] + i + p[1:] for i, p in self.bench.closed_relays(self.name))

    # ---------------------------------------------------------------------------- relays
    def _open(self, channels: list[str]) -> None:
        closed = set(self.closed_channels())
        for ch in channels:
            if ch in closed:
                self.bench.set_relay(self.name, *self._relay(ch), closed=False)

    def _close(self, channels: list[str]) -> None:
        for ch in dict.fromkeys(channels):
            self.bench.set_relay(self.name, *self._relay(ch), closed=True)

    def _exclusive(self, channels: list[str]) -> None:
        keep = set(channels)
        self._open([ch for ch in self.closed_channels() if ch not in keep])
        self._close(channels)

    def _getclose(self, channels: list[str]):
        wanted = set(channels)
        closed = [ch for ch in self.closed_channels() if ch in wanted]
        return ";".join(closed) if closed else None

    def reset(self) -> None:
        self.bench.open_all(self.name)
