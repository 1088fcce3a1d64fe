"""Emulated Keysight (Agilent) B2200A switching matrix (SCPI), acting on a
:class:`~mock_hw.bench_physics.PhysicalBench`.

Understood (short or long forms, any case, ``;``-compound messages; never evaluated):

* ``[:ROUTe]:CLOSe[:LIST] (@list)`` / ``[:ROUTe]:OPEN[:LIST] (@list)`` — close / open channels;
  the queries return ``1``/``0`` per channel (closed for CLOS?, open for OPEN?).
* ``[:ROUTe]:OPEN:CARD ALL|<card>`` — open every relay (of one card).
* ``[:ROUTe]:CLOSe:CARD? ALL|<card>`` — the closed channels as a channel list ``(@10305,10406)``,
  ``(@)`` when none.
* ``*IDN?``, ``*RST`` (opens every relay), ``*CLS``, ``*OPC?``, ``:SYSTem:ERRor[:NEXT]?``.

A channel is ``card + input(2) + output(2)``: card 1..``cards``, input 01..``inputs``, output
01..``outputs``; a range ``10301:10405`` means the rectangle of inputs 03–04 × outputs 01–05.
Channel ``10305`` is ``bench.set_relay(name, "103", "105", closed)``; the state reported is the
bench's (a relay stuck open is reported open).  A list with an invalid channel is rejected whole:
``-222,"Data out of range"``; a malformed list ``-104,"Data type error"``.
"""
from __future__ import annotations

import re

from .base import CommandError
from .scpi import ScpiInstrument


class KeysightB2200Emulator(ScpiInstrument):
    idn = "Agilent Technologies,B2200A,0,1.0"

    def __init__(self, bench, name: str = "B2200", cards: int = 1, inputs: int = 14, outputs: int = 48):
        if not 1 <= int(cards) <= 4 or not 1 <= int(inputs) <= 14 or not 1 <= int(outputs) <= 48:
            raise ValueError(f"B2200: cards 1-4, inputs 1-14, outputs 1-48 (got {cards}, {inputs}, {outputs})")
        self.bench = bench
        self.cards, self.inputs, self.outputs = int(cards), int(inputs), int(outputs)
        super().__init__(name)

    def build(self) -> None:
        t = self.table
        t.add("[:ROUTe]:CLOSe:CARD", lambda s, a, q: self._closed_list(self._card_arg(a)), query=True)
        t.add("[:ROUTe]:OPEN:CARD", lambda s, a, q: self._open(self._card_channels(self._card_arg(a))),
              query=False)
        t.add("[:ROUTe]:CLOSe[:LIST]", self._close_cmd)
        t.add("[:ROUTe]:OPEN[:LIST]", self._open_cmd)

    # ------------------------------------------------------------------------- channels
    def _check(self, card: int, inp: int, out: int, text: str) -> None:
        if not (1 <= card <= self.cards and 1 <= inp <= self.inputs and 1 <= out <= self.outputs):
            raise CommandError(-222, f"Data out of range: channel {text[:12]}")

    def _parse_list(self, args: str) -> list[str]:
        m = re.fullmatch(r"\(\s*@([^()]*)\)", args.strip())
        if not m or not m.group(1).strip():
            raise CommandError(-104, f"Data type error: expected a channel list (@...), got {args.strip()[:30]!r}")
        channels: list[str] = []
        for part in m.group(1).split(","):
            part = part.strip()
            r = re.fullmatch(r"(\d)(\d\d)(\d\d)(?::(\d)(\d\d)(\d\d))?", part)
            if not r:
                raise CommandError(-104, f"Data type error: channel {part[:12]!r}")
            c1, i1, o1 = int(r.group(1)), int(r.group(2)), int(r.group(3))
            self._check(c1, i1, o1, part)
            if r.group(4) is None:
                channels.append(f"{c1}{i1:02d}{o1:02d}")
                continue
            c2, i2, o2 = int(r.group(4)), int(r.group(5)), int(r.group(6))
            self._check(c2, i2, o2, part)
            if c1 != c2:
                raise CommandError(-222, f"Data out of range: range {part} spans cards")
            for i in range(min(i1, i2), max(i1, i2) + 1):
                for o in range(min(o1, o2), max(o1, o2) + 1):
                    channels.append(f"{c1}{i:02d}{o:02d}")
        return channels

    def _card_arg(self, args: str) -> list[int]:
        a = args.strip().upper()
        if a == "ALL":
            return list(range(1, self.cards + 1))
        if re.fullmatch(r"\d", a) and 1 <= int(a) <= self.cards:
            return [int(a)]
        raise CommandError(-222, f"Data out of range: card {args.strip()[:10]!r}")

    def _card_channels(self, cards: list[int]) -> list[str]:
        return [ch for ch in self.closed_channels() if int(ch[0]) in cards]

    @staticmethod
    def _relay(channel: str) -> tuple[str, str]:
        """'10305' -> (input '103', pin '105')."""
        return channel[:3], channel[0] + channel[3:]

    def closed_channels(self) -> list[str]:
        return sorted(i + p[1:] for i, p in self.bench.closed_relays(self.name))

    # ---------------------------------------------------------------------------- relays
    def _close(self, channels: list[str]) -> None:
        for ch in dict.fromkeys(channels):
            self.bench.set_relay(self.name, *self._relay(ch), closed=True)

    def _open(self, channels: list[str]) -> None:
        closed = set(self.closed_channels())
        for ch in dict.fromkeys(channels):
            if ch in closed:
                self.bench.set_relay(self.name, *self._relay(ch), closed=False)

    def _close_cmd(self, suffixes, args: str, query: bool):
        channels = self._parse_list(args)
        if query:
            closed = set(self.closed_channels())
            return ",".join("1" if ch in closed else "0" for ch in channels)
        self._close(channels)
        return None

    def _open_cmd(self, suffixes, args: str, query: bool):
        channels = self._parse_list(args)
        if query:
            closed = set(self.closed_channels())
            return ",".join("0" if ch in closed else "1" for ch in channels)
        self._open(channels)
        return None

    def _closed_list(self, cards: list[int]) -> str:
        return "(@" + ",".join(self._card_channels(cards)) + ")"

    def reset(self) -> None:
        self.bench.open_all(self.name)
