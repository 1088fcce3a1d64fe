"""Emulated Keysight (Agilent) B2200A switching matrix (SCPI), acting on a
:class:`~mock_hw.bench_physics.PhysicalBench`.

Understood (short or long forms, any case, ``;``-compound messages; never evaluated), after the
B2200 User's Guide (Edition 4), chapter 5 "SCPI Command Reference":

* ``[:ROUTe]:CLOSe[:LIST] (@list)`` / ``[:ROUTe]:OPEN[:LIST] (@list)`` — close / open channels;
  the queries return ``1``/``0`` per channel (closed for CLOS?, open for OPEN?).
* ``[:ROUTe]:OPEN:CARD ALL|<card>`` — open every relay (of one card); ``[:ROUTe]:CLOSe:CARD?
  ALL|<card>`` — the closed channels as a channel list ``(@10305,10406)``, ``(@)`` when none.
* ``[:ROUTe]:CONNection:RULE <card>,FREE|SROute`` (default FREE) — in single-route mode closing
  a channel first opens the other connections of its input and of its output;
  ``[:ROUTe]:CONNection:SEQuence <card>,NSEQ|BBM|MBBReak`` (default BBM; remembered).
* bias mode: ``[:ROUTe]:BIAS:PORT <card>,<input>`` (default 10), ``[:ROUTe]:BIAS <card>,ON|OFF``,
  ``[:ROUTe]:BIAS:CHANnel:ENABle|DISable[:LIST] (@list)`` and ``…:CARD <card>`` (every output
  enabled after *RST) — with bias mode on, the bias input is connected to every bias-enabled
  output that no other input is connected to, and it cannot be named in CLOS/OPEN (-221).
* ground mode: the same with ``[:ROUTe]:AGND`` (default port 12) and ``[:ROUTe]:AGND:UNUSED
  <card>,'<inputs>'`` (remembered; the query answers ``'1,2'``).  Bias takes precedence.
* couple mode: ``[:ROUTe]:COUPle:PORT <card>,'<odd inputs>'``, ``[:ROUTe]:COUPle <card>,ON|OFF``,
  ``[:ROUTe]:COUPle:PORT:DETect`` — with couple mode on, a channel of a coupled input
  ``2k-1`` (or ``2k``) closes and opens together with its partner (input ``2k`` / ``2k-1``, the
  adjacent output of the pair ``2m-1``/``2m``).
* ``[:ROUTe]:FUNCtion ACONfig|NCONfig`` — the channel configuration mode, remembered.
* the IEEE 488.2 common commands and ``:SYSTem:ERRor[:NEXT]?`` (:class:`.scpi.ScpiInstrument`).

A channel is ``card + input(2) + output(2)``: card 1..``cards``, input 01..``inputs``, output
01..``outputs``; a range ``10301:10405`` means the rectangle of inputs 03–04 × outputs 01–05.
Card ``0`` is the auto-configuration address of all cards as one (output ``n`` of card 0 is output
``(n-1) % outputs + 1`` of card ``(n-1) // outputs + 1``), as QCoDeS's ``KeysightB220X`` uses it.
The instrument takes only the addressing of its configuration mode; the emulator takes both (so
drivers written for either mode work on the mock bench) and reports channels in the addressing
of the query (card 0 or 1..4).
Channel ``10305`` is ``bench.set_relay(name, "103", "105", closed)``; the state reported is the
bench's (a relay stuck open is reported open).  A list with an invalid channel is rejected whole:
``-222,"Data out of range"``; a malformed list ``-104,"Data type error"``.
"""
from __future__ import annotations

import re

from .base import CommandError, split_args
from .scpi import ScpiInstrument, choice, number


class KeysightB2200Emulator(ScpiInstrument):
    idn = "Agilent Technologies,B2200A,0,1.0"

    def __init__(self, bench, name: str = "B2200", cards: int = 1, inputs: int = 14, outputs: int = 48):
        if not 1 <= int(cards) <= 4 or not 1 <= int(inputs) <= 14 or not 1 <= int(outputs) <= 48:
            raise ValueError(f"B2200: cards 1-4, inputs 1-14, outputs 1-48 (got {cards}, {inputs}, {outputs})")
        self.bench = bench
        self.cards, self.inputs, self.outputs = int(cards), int(inputs), int(outputs)
        self.mode = "NCON"
        self.settings: dict[int, dict] = {}
        super().__init__(name)
        self.reset()

    def build(self) -> None:
        t = self.table
        t.add("[:ROUTe]:CLOSe:CARD", lambda s, a, q: self._closed_list(a), query=True)
        t.add("[:ROUTe]:OPEN:CARD", lambda s, a, q: self._open_card(a), query=False)
        t.add("[:ROUTe]:CLOSe[:LIST]", self._close_cmd)
        t.add("[:ROUTe]:OPEN[:LIST]", self._open_cmd)
        t.add("[:ROUTe]:FUNCtion", self._function)
        t.add("[:ROUTe]:CONNection:RULE", self._card_setting("rule", {"FREE": "FREE", "SROU": "SROU",
                                                                      "SROUTE": "SROU"}))
        t.add("[:ROUTe]:CONNection:SEQuence", self._card_setting("sequence", {
            "NSEQ": "NSEQ", "BBM": "BBM", "MBBR": "MBBR", "MBBREAK": "MBBR"}))
        for mode in ("BIAS", "AGND"):
            node = "[:ROUTe]:BIAS" if mode == "BIAS" else "[:ROUTe]:AGND"
            t.add(node, self._card_setting(mode, {"ON": True, "1": True, "OFF": False, "0": False}))
            t.add(f"{node}:PORT", self._port(mode))
            for verb, on in (("ENABle", True), ("DISable", False)):
                t.add(f"{node}:CHANnel:{verb}[:LIST]", self._mode_channels(mode, on))
                t.add(f"{node}:CHANnel:{verb}:CARD", self._mode_card(mode, on), query=False)
        t.add("[:ROUTe]:AGND:UNUSED", self._port_list("unused"))
        t.add("[:ROUTe]:COUPle", self._card_setting("COUP", {"ON": True, "1": True, "OFF": False, "0": False}))
        t.add("[:ROUTe]:COUPle:PORT", self._port_list("couple"))
        t.add("[:ROUTe]:COUPle:PORT:DETect", lambda s, a, q: None, query=False)

    def reset(self) -> None:
        """*RST: every relay open, the modes off, their defaults back (B2200 User's Guide, *RST)."""
        self.mode = "NCON"
        self.settings = {card: {"rule": "FREE", "sequence": "BBM", "BIAS": False, "AGND": False, "COUP": False,
                                "BIAS_port": 10, "AGND_port": 12, "unused": [], "couple": [],
                                "BIAS_outputs": set(range(1, self.outputs + 1)),
                                "AGND_outputs": set(range(1, self.outputs + 1))}
                         for card in range(1, self.cards + 1)}
        self.bench.open_all(self.name)

    # -------------------------------------------------------------------------- settings
    def _card(self, text: str) -> list[int]:
        """A card argument: 0 (auto configuration: every card), 1..cards, or ALL."""
        a = text.strip().upper()
        if a == "ALL" or a == "0":
            return list(range(1, self.cards + 1))
        if len(a) == 1 and a.isdigit() and 1 <= int(a) <= self.cards:
            return [int(a)]
        raise CommandError(-222, f"Data out of range: card {text.strip()[:10]!r}")

    def _card_args(self, a: str, query: bool, what: str) -> tuple[list[str], list[int]]:
        """(arguments, cards) of a per-card command: a query takes ``<card>``, a setting
        ``<card>,<value>`` (-109 when missing)."""
        args = split_args(a)
        if (len(args) != 1) if query else (len(args) < 2):
            raise CommandError(-109, "Missing parameter: card" + ("" if query else f" and {what}"))
        return args, self._card(args[0])

    def _card_setting(self, key: str, options: dict):
        def handler(s, a, q):
            args, cards = self._card_args(a, q, key)
            if q:
                value = self.settings[cards[0]][key]
                return ("1" if value else "0") if isinstance(value, bool) else value
            value = choice(",".join(args[1:]), options, key)
            for card in cards:
                self.settings[card][key] = value
                self._apply_modes(card)
        return handler

    def _port(self, mode: str):
        def handler(s, a, q):
            args, cards = self._card_args(a, q, "input port")
            if q:
                return str(self.settings[cards[0]][f"{mode}_port"])
            port = int(number(",".join(args[1:]), -1, self.inputs, "input port"))
            if port == 0:
                raise CommandError(-222, "Data out of range: input port 0")
            for card in cards:
                self._release_mode(card, mode)
                self.settings[card][f"{mode}_port"] = port
                self._apply_modes(card)
        return handler

    def _port_list(self, key: str):
        def handler(s, a, q):
            args, cards = self._card_args(a, q, "port list")
            if q:
                return "'" + ",".join(str(p) for p in self.settings[cards[0]][key]) + "'"
            text = ",".join(args[1:]).strip().strip("'\"")
            ports = []
            for item in (x.strip() for x in text.split(",") if x.strip()):
                port = int(number(item, 1, self.inputs, "input port"))
                if key == "couple" and port % 2 == 0:
                    raise CommandError(-222, f"Data out of range: couple port {port} is not odd")
                ports.append(port)
            for card in cards:
                self.settings[card][key] = sorted(set(ports))
        return handler

    def _mode_channels(self, mode: str, enable: bool):
        def handler(s, a, q):
            channels = self._parse_list(a)
            if q:
                return ",".join("1" if (int(ch[3:]) in self.settings[int(ch[0])][f"{mode}_outputs"]) == enable
                                else "0" for ch in channels)
            for ch in channels:
                outputs = self.settings[int(ch[0])][f"{mode}_outputs"]
                (outputs.add if enable else outputs.discard)(int(ch[3:]))
            for card in {int(ch[0]) for ch in channels}:
                self._apply_modes(card)
        return handler

    def _mode_card(self, mode: str, enable: bool):
        def handler(s, a, q):
            for card in self._card(a):
                self.settings[card][f"{mode}_outputs"] = set(range(1, self.outputs + 1)) if enable else set()
                self._apply_modes(card)
        return handler

    def _function(self, s, a, q):
        if q:
            return self.mode
        self.mode = choice(a, {"ACON": "ACON", "ACONFIG": "ACON", "NCON": "NCON", "NCONFIG": "NCON"},
                           "configuration mode")

    # --------------------------------------------------------------------- bias / ground
    def _mode_relays(self, card: int) -> set[str]:
        """The channels bias and ground mode keep closed on ``card``."""
        st = self.settings[card]
        ports = {st[f"{m}_port"] for m in ("BIAS", "AGND") if st[m] and st[f"{m}_port"] > 0}
        busy = {int(ch[3:]) for ch in self.closed_channels() if int(ch[0]) == card and int(ch[1:3]) not in ports}
        want = set()
        for mode in ("BIAS", "AGND"):
            port = st[f"{mode}_port"]
            if not st[mode] or port <= 0:
                continue
            for out in sorted(st[f"{mode}_outputs"] - busy):
                want.add(f"{card}{port:02d}{out:02d}")
                busy.add(out)                      # bias first: ground takes what bias left
        return want

    def _apply_modes(self, card: int) -> None:
        st = self.settings[card]
        ports = {st[f"{m}_port"] for m in ("BIAS", "AGND") if st[f"{m}_port"] > 0}
        want = self._mode_relays(card)
        for ch in self.closed_channels():
            if int(ch[0]) == card and int(ch[1:3]) in ports and ch not in want:
                self.bench.set_relay(self.name, *self._relay(ch), closed=False)
        for ch in sorted(want):
            self.bench.set_relay(self.name, *self._relay(ch), closed=True)

    def _release_mode(self, card: int, mode: str) -> None:
        port = self.settings[card][f"{mode}_port"]
        for ch in self.closed_channels():
            if int(ch[0]) == card and int(ch[1:3]) == port:
                self.bench.set_relay(self.name, *self._relay(ch), closed=False)

    def _check_not_mode_port(self, channels: list[str]) -> None:
        for ch in channels:
            st = self.settings[int(ch[0])]
            for mode in ("BIAS", "AGND"):
                if st[mode] and int(ch[1:3]) == st[f"{mode}_port"]:
                    raise CommandError(-221, f"Settings conflict: input {int(ch[1:3])} is the {mode} port")

    def _coupled(self, channels: list[str]) -> list[str]:
        """With couple mode on, each channel of a coupled input brings its partner channel."""
        out = []
        for ch in channels:
            out.append(ch)
            card, inp, o = int(ch[0]), int(ch[1:3]), int(ch[3:])
            st = self.settings[card]
            first = inp if inp % 2 else inp - 1
            if st["COUP"] and first in st["couple"]:
                partner_in = inp + 1 if inp % 2 else inp - 1
                partner_out = o + 1 if o % 2 else o - 1
                if 1 <= partner_in <= self.inputs and 1 <= partner_out <= self.outputs:
                    out.append(f"{card}{partner_in:02d}{partner_out:02d}")
        return out

    # ------------------------------------------------------------------------- channels
    def _check(self, card: int, inp: int, out: int, text: str) -> None:
        outputs = self.outputs * self.cards if card == 0 else self.outputs
        if not (0 <= card <= self.cards and 1 <= inp <= self.inputs and 1 <= out <= outputs):
            raise CommandError(-222, f"Data out of range: channel {text[:12]}")

    def _physical(self, card: int, inp: int, out: int) -> str:
        """The channel name on its card (card 0, auto configuration, spans the cards' outputs)."""
        if card == 0:
            card, out = (out - 1) // self.outputs + 1, (out - 1) % self.outputs + 1
        return f"{card}{inp:02d}{out:02d}"

    def _auto(self, channel: str) -> str:
        """A card channel in auto-configuration addressing (card 0)."""
        card, inp, out = int(channel[0]), int(channel[1:3]), int(channel[3:])
        return f"0{inp:02d}{(card - 1) * self.outputs + out:02d}"

    def _parse_list(self, args: str) -> list[str]:
        m = re.fullmatch(r"\(\s*@([^()]*)\)", args.strip())
        if not m or not m.group(1).strip():
            raise CommandError(-104, f"Data type error: expected a channel list (@...), got {args.strip()[:30]!r}")
        # a list naming more channels than the matrix has is refused before it is expanded (the
        # work of one command stays bounded whatever its repetitions)
        most = self.cards * self.inputs * self.outputs
        parts = m.group(1).split(",")
        if len(parts) > most:
            raise CommandError(-223, f"Too much data: more than {most} channels in a list")
        channels: list[str] = []
        for part in parts:
            part = part.strip()
            r = re.fullmatch(r"(\d)(\d\d)(\d\d)(?::(\d)(\d\d)(\d\d))?", part)
            if not r:
                raise CommandError(-104, f"Data type error: channel {part[:12]!r}")
            c1, i1, o1 = int(r.group(1)), int(r.group(2)), int(r.group(3))
            self._check(c1, i1, o1, part)
            if r.group(4) is None:
                channels.append(self._physical(c1, i1, o1))
                continue
            c2, i2, o2 = int(r.group(4)), int(r.group(5)), int(r.group(6))
            self._check(c2, i2, o2, part)
            if c1 != c2:
                raise CommandError(-222, f"Data out of range: range {part} spans cards")
            if len(channels) + (abs(i2 - i1) + 1) * (abs(o2 - o1) + 1) > most:
                raise CommandError(-223, f"Too much data: more than {most} channels in a list")
            for i in range(min(i1, i2), max(i1, i2) + 1):
                for o in range(min(o1, o2), max(o1, o2) + 1):
                    channels.append(self._physical(c1, i, o))
        return channels

    @staticmethod
    def _relay(channel: str) -> tuple[str, str]:
        """'10305' -> (input '103', pin '105')."""
        return channel[:3], channel[0] + channel[3:]

    def closed_channels(self) -> list[str]:
        return sorted(i + p[1:] for i, p in self.bench.closed_relays(self.name))

    # ---------------------------------------------------------------------------- relays
    def _close(self, channels: list[str]) -> None:
        self._check_not_mode_port(channels)
        channels = self._coupled(channels)
        for ch in dict.fromkeys(channels):
            card, inp, out = int(ch[0]), ch[1:3], ch[3:]
            if self.settings[card]["rule"] == "SROU":   # single route: one path per input and output
                for other in self.closed_channels():
                    if other != ch and int(other[0]) == card and (other[1:3] == inp or other[3:] == out):
                        self.bench.set_relay(self.name, *self._relay(other), closed=False)
            self.bench.set_relay(self.name, *self._relay(ch), closed=True)
        for card in sorted({int(ch[0]) for ch in channels}):
            self._apply_modes(card)

    def _open(self, channels: list[str]) -> None:
        self._check_not_mode_port(channels)
        channels = self._coupled(channels)
        closed = set(self.closed_channels())
        for ch in dict.fromkeys(channels):
            if ch in closed:
                self.bench.set_relay(self.name, *self._relay(ch), closed=False)
        for card in sorted({int(ch[0]) for ch in channels}):
            self._apply_modes(card)

    def _open_card(self, args: str) -> None:
        cards = self._card(args)
        for ch in self.closed_channels():
            if int(ch[0]) in cards:
                self.bench.set_relay(self.name, *self._relay(ch), closed=False)
        for card in cards:
            self._apply_modes(card)

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

    def _closed_list(self, args: str) -> str:
        cards = self._card(args)
        closed = [ch for ch in self.closed_channels() if int(ch[0]) in cards]
        if args.strip() == "0":
            closed = [self._auto(ch) for ch in closed]
        return "(@" + ",".join(closed) + ")"
