"""The mock bench: emulated instruments on loopback TCP, all wired to one simulated crossbar.

Instruments (each on its own 127.0.0.1 port): a Keithley 2450, a Keithley 2636B (smua, smub), a
Keysight B2902A (channels 1, 2), a Keithley 707B with as many 7174A-style 8×12 cards as the size
needs (2 to 6), a Keysight B2200 (as many 14x12 cards as the size needs, up to 4), the serial
switch board and a Keysight 33512B pulse generator.

Wiring (what a bench's cables would do):

=================  ===========  ==============  ===========
source             707B input   B2200 input     board bus
=================  ===========  ==============  ===========
2636B smua         A            03              —
2636B smub         B            04              —
B2902A ch 1        C            01              A
B2902A ch 2        D            02              B
2450               E            05              C
ground             F            06              D
33512B ch 1        G            07              —
33512B ch 2        H            08              —
=================  ===========  ==============  ===========

TSP-Link: the 2636B is node 1 and the 707B node 2 of one TSP-Link network (the emulated 2636B
runs its scripts' ``node[2].channel.*`` calls on the emulated 707B), so ``--on-instrument`` runs
the whole loop, routing included, on the 2636B.  LAN: the 2636B's scripts reach the B2902A at its
address over TSP-Net (``tspnet.execute``), which holds the unselected columns of an on-instrument
V/3 write.

Time and aging: the bench's clock is emulated instrument time by default (``clock="emulated"``:
integration, settling, relay and pulse durations, and explicit waits of an in-process caller,
:meth:`~mock_hw.bench_physics.PhysicalBench.wait`; see :class:`~mock_hw.bench_physics.EmulatedClock`):
it never reads the host's clock, so a run's result does not depend on the host's load or pauses.
``clock="wall"`` uses the host's monotonic clock (``xbar mock-bench --clock wall``, for
demonstrations: a retention run's host waits then age the chip).  The chip ages with the bench's
clock (``time_scale`` chip seconds per bench second, default 1).

Fault injection: each emulator's ``faults`` (no reply, garbled reply, instrument error, latency),
``bench.bench.stuck_open`` (relays that never close), a tight compliance in the station file
(trips).  ``bench.violations`` lists every hot switch, short and limit violation.

Size: up to 64x64 (:data:`MAX_LINES`).  Crossbar rows go to 707B slots 1.. (12 columns each),
columns to the slots after them (up to the 707B's 6 slots: e.g. 36x36, or 9x18 on 3 slots); B2200
outputs rows then columns, 12 per card (up to its 4 cards: 48 lines); board pins ``R<i>`` /
``C<j>`` (any size).  A matrix that cannot hold the crossbar is not wired, and a station file for
it is refused with the reason.

:meth:`MockBench.station_toml` writes a station file for one of these benches: ``k2600-707b`` (the
2636B drives and senses, the B2902A biases, the 707B switches, the 33512B gives the write pulses
down to 100 ns: channel 1 the row's half, channel 2 the column's, in one trigger), ``k2600-707b-smu`` (the same without the generator: the 2636B pulses, from
100 µs), ``k2600-b2200`` (the ``k2600-707b`` instruments routed through the B2200's cards) or
``b2900-board`` (B2902A ch 1 drives and pulses, from 50 µs, the 2450 senses, B2902A
ch 2 biases rows and columns, the serial board switches).  Every emulator refuses what its
instrument refuses (pulse widths included).
"""
from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .bench_physics import GROUND, BenchTiming, EmulatedClock, PhysicalBench, check_time_scale
from .emulators.base import InstrumentServer
from .presets import DEFAULT_PRESET
from .sim_chip import SimulatedCrossbar

CLOCKS = ("emulated", "wall")
#: TSP-Link node numbers of the emulated 2636B and 707B (the station file's tsplink_node)
TSPLINK_NODES = {"smu": 1, "matrix": 2}


def bench_clock(clock):
    """The bench clock for ``clock``: ``"emulated"`` (a new :class:`EmulatedClock`), ``"wall"``
    (:func:`time.monotonic`) or a callable returning seconds (as it is); else a ValueError."""
    if callable(clock):
        return clock
    if clock == "emulated":
        return EmulatedClock()
    if clock == "wall":
        return time.monotonic
    raise ValueError(f"--clock must be one of {', '.join(CLOCKS)}, got {clock!r}")


@contextmanager
def frozen_heap():
    """While a process serves a mock bench (``xbar mock-bench``): collect, then move every object
    that exists now (modules, the chip model, the emulators) out of the cyclic garbage collector's
    reach (:func:`gc.freeze`); on exit, give them back (:func:`gc.unfreeze`).  A full collection
    meanwhile visits only what serving creates — well under a millisecond instead of 15-100 ms
    over the whole heap, a pause every client of every port would wait through."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


#: per-query VISA timeout of the station files a mock bench writes, ms.  The emulators answer in
#: emulated instrument time, but their replies still wait for the host's scheduler: on a loaded
#: machine (a CI runner, a laptop running a study) a 2 s timeout was seen to expire on a healthy
#: bench.  A timeout only costs time when an instrument stops answering (the fault tests set their
#: own, shorter one); a real station file sets its own (instruments/station.py: 2000 ms by default).
MOCK_TIMEOUT_MS = 20000

VARIANTS = ("k2600-707b", "k2600-707b-smu", "k2600-b2200", "b2900-board")
#: largest crossbar the mock bench serves (the switch board; the 707B and B2200 hold fewer lines)
MAX_LINES = 64
#: a 707B has 6 slots of 12-column 7174A cards; a B2200 up to 4 cards of 12 outputs (their drivers'
#: MODEL_LIMITS): 72 and 48 crossbar lines
SLOTS_707B, CARDS_B2200 = 6, 4


def _cards(lines: int) -> int:
    """12-pin cards (707B slots, B2200 modules) needed for ``lines`` crossbar lines."""
    return -(-lines // 12)


def warm_solver(rows: int, cols: int, preset: str, seed: int, pristine: bool, r_access: float) -> None:
    """Build the line solver's compiled kernels (numba) before any instrument answers.

    On a cold numba cache (a fresh clone, a new install) the first solve of a chip with
    resistive lines compiles its kernels: seconds of CPU, more on a loaded machine, and inside
    an emulator's reply that can outlast a query's VISA timeout (seen at load 13 with the 20 s
    timeout).  A throwaway chip of the bench's preset, size, seed and formedness is driven the ways
    a bench drives one (a read with the other lines grounded, V/2 and V/3 half-select levels, a
    floating line) and pulsed once, at the read voltage: the same solver branches and argument
    types, so every kernel the bench's chip will call is compiled (or loaded from numba's cache)
    here, the pulse's too (the pulse solve, what the simulator keeps of it, the lanes' switching:
    ~30 s of CPU on a cold cache).  The bench's own chip is not touched: its state, age and random
    draws are as if this never ran."""
    twin = SimulatedCrossbar(rows, cols, preset=preset, seed=seed, pristine=pristine)
    if twin.params.r_line <= 0:
        return                                     # ideal lines: no line solve, nothing compiled
    v = 0.2
    read_r = np.zeros(rows)
    read_r[0] = v
    half_r = np.full(rows, v / 2)
    half_r[0] = v
    third_r = np.full(rows, v / 3)
    third_r[0] = v
    third_c = np.full(cols, 2 * v / 3)
    third_c[0] = 0.0
    half_c = np.full(cols, v / 2)
    half_c[0] = 0.0
    float_r = read_r.copy()
    float_r[-1] = np.nan
    for row_v, col_v in ((read_r, np.zeros(cols)), (half_r, half_c), (third_r, third_c), (float_r, np.zeros(cols))):
        twin.drive_lines(row_v, col_v, r_access=r_access)
    twin.pulse(np.zeros(1, int), np.zeros(1, int), v, twin.limits.width_min)


class MockBench:
    """Start every emulated instrument; ``close()`` (or the context manager) stops them.

    ``pristine=True`` wires the instruments to a chip of unformed devices (see
    :class:`~mock_hw.sim_chip.SimulatedCrossbar`).  ``time_scale`` (chip seconds of retention
    aging per clock second, >= 0; 0 freezes the chip's age) and ``clock`` (``"emulated"``, the
    default; ``"wall"``; or a callable returning seconds) go to
    :class:`~mock_hw.bench_physics.PhysicalBench`."""

    def __init__(self, rows: int = 8, cols: int = 8, preset: str = DEFAULT_PRESET, seed: int = 0,
                 v_limit: float = 3.0, realistic_timing: bool = False, pristine: bool = False,
                 time_scale: float = 1.0, clock: str | Callable[[], float] = "emulated"):
        from .emulators.keithley707b import Keithley707BEmulator
        from .emulators.keithley2450 import Keithley2450Emulator
        from .emulators.keithley2600 import Keithley2600Emulator
        from .emulators.keysight_b2200 import KeysightB2200Emulator
        from .emulators.keysight_33500b import Keysight33500BEmulator
        from .emulators.keysight_b2900 import KeysightB2900Emulator
        from .emulators.switch_board import SwitchBoardEmulator

        if not (1 <= rows <= MAX_LINES and 1 <= cols <= MAX_LINES):
            raise ValueError(f"the mock bench serves 1..{MAX_LINES} rows and columns, not {rows}x{cols}")
        check_time_scale(time_scale)   # before anything is built or served
        clock = bench_clock(clock)
        self.rows, self.cols, self.pristine = rows, cols, pristine
        #: the emulated chip's ID, written into the station file (what a lab labels its die)
        self.chip_id = f"mock-{preset}-seed{seed}-{rows}x{cols}" + ("-pristine" if pristine else "")
        #: 707B slots (rows on the first ones, columns on the next) and B2200 cards (rows then
        #: columns, 12 outputs per card) this size needs; a matrix that cannot hold it is not wired
        self.slots_707b = _cards(rows) + _cards(cols)
        self.cards_b2200 = _cards(rows + cols)
        self.has_707b = self.slots_707b <= SLOTS_707B
        self.has_b2200 = self.cards_b2200 <= CARDS_B2200
        self.chip = SimulatedCrossbar(rows, cols, preset=preset, seed=seed, pristine=pristine)
        timing = BenchTiming.realistic() if realistic_timing else None
        self.bench = bench = PhysicalBench(self.chip, v_limit=v_limit, timing=timing, clock=clock,
                                           time_scale=time_scale)
        self.emulators = {
            "K2450": Keithley2450Emulator(bench, name="K2450", source="K2450"),
            "K2600": Keithley2600Emulator(bench, name="K2600", sources={"a": "K2600.a", "b": "K2600.b"}),
            "B2900": KeysightB2900Emulator(bench, name="B2900", sources={1: "B2900.1", 2: "B2900.2"}),
            "M707B": Keithley707BEmulator(bench, name="M707B", slots=min(max(2, self.slots_707b), SLOTS_707B)),
            "B2200": KeysightB2200Emulator(bench, name="B2200", cards=min(self.cards_b2200, CARDS_B2200), outputs=12),
            "BOARD": SwitchBoardEmulator(bench, name="BOARD", rows=rows, cols=cols),
            "FGEN": Keysight33500BEmulator(bench, name="FGEN", sources={1: "FGEN.1", 2: "FGEN.2"}),
        }
        # TSP-Link: the 2636B (node 1) reaches the 707B as node[2] (its scripts switch the matrix)
        self.emulators["K2600"].link(TSPLINK_NODES["matrix"], self.emulators["M707B"])
        for src, m707, b2200, board in (("K2600.a", "A", "03", None), ("K2600.b", "B", "04", None),
                                        ("B2900.1", "C", "01", "A"), ("B2900.2", "D", "02", "B"),
                                        ("K2450", "E", "05", "C"), (GROUND, "F", "06", "D"),
                                        ("FGEN.1", "G", "07", None), ("FGEN.2", "H", "08", None)):
            bench.wire_input("M707B", m707, src)
            for card in range(1, self.emulators["B2200"].cards + 1):   # the inputs reach every card
                bench.wire_input("B2200", f"{card}{b2200}", src)
            if board:
                bench.wire_input("BOARD", board, src)
        for kind, n, board in (("row", rows, "R"), ("col", cols, "C")):
            for i in range(n):
                if self.has_707b:
                    bench.wire_pin("M707B", self.pin_707b(kind, i), (kind, i))
                if self.has_b2200:
                    bench.wire_pin("B2200", self.pin_b2200(kind, i), (kind, i))
                bench.wire_pin("BOARD", f"{board}{i}", (kind, i))
        warm_solver(rows, cols, preset, seed, pristine, bench.r_access)
        self.servers = {}
        try:
            for name, emu in self.emulators.items():
                self.servers[name] = InstrumentServer(emu)
        except Exception:
            self.close()
            raise
        # LAN: the 2636B's scripts reach the B2902A at its address over TSP-Net (V/3 on the instrument)
        self.emulators["K2600"].lan_link(self.servers["B2900"].address, self.emulators["B2900"])

    # ------------------------------------------------------------------------------ naming
    def pin_707b(self, kind: str, index: int) -> str:
        """Row i on slot 1 + i // 12, column j on the slots after the rows'; column i % 12 + 1."""
        slot = 1 + index // 12 + (0 if kind == "row" else _cards(self.rows))
        return f"{slot}{index % 12 + 1:02d}"

    def pin_b2200(self, kind: str, index: int) -> str:
        """Rows, then columns, 12 outputs per card: card 1 + k // 12, output k % 12 + 1."""
        k = index + (0 if kind == "row" else self.rows)
        return f"{1 + k // 12}{k % 12 + 1:02d}"

    def resource(self, name: str) -> str:
        port = self.servers[name].port
        return f"socket://127.0.0.1:{port}" if name == "BOARD" else f"TCPIP::127.0.0.1::{port}::SOCKET"

    @property
    def violations(self):
        return self.bench.violations

    # ------------------------------------------------------------------------ safety record
    record_path: Path | None = None

    def record_to(self, path: str | Path) -> Path:
        """Keep the bench's safety record (:meth:`PhysicalBench.safety_record`: hot switches,
        shorts, limit violations, outputs on, relays closed, largest unselected-cell voltage) in
        ``path`` as JSON: written now, again at once on every violation, and by
        :meth:`write_record` (``xbar mock-bench --record`` calls it on exit and on SIGTERM)."""
        self.record_path = Path(path)
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        self.bench.on_violation = lambda v: self.write_record()
        self.write_record()
        return self.record_path

    def write_record(self, running: bool = True) -> None:
        """Replace the record file atomically (a reader never sees half of it)."""
        if self.record_path is None:
            return
        record = {"running": running, **self.bench.safety_record()}
        tmp = self.record_path.with_name(self.record_path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.record_path)

    # ----------------------------------------------------------------------------- station
    def station_toml(self, variant: str = "k2600-707b", write_scheme: str = "v/2", v_max: float | None = None,
                     i_compliance: float = 1e-2, timeout_ms: int = MOCK_TIMEOUT_MS) -> str:
        """A station file pointing at this bench's instruments.  ``timeout_ms``: per query (default
        :data:`MOCK_TIMEOUT_MS`).  ``v_max`` (V): the largest pulse
        the station allows; default 2.5 V, or for a pristine chip the emulated bench's own limit (3 V
        by default), since forming needs pulses up to ~2.9 V (forming voltage ≈2.2 V ± 7 %, the
        preset's; ``xbar form``'s default ramp stops at 2.9 V), as a real station is raised for forming."""
        if v_max is None:
            v_max = self.bench.v_limit if self.pristine else 2.5
        if variant not in VARIANTS:
            raise ValueError(f"unknown bench variant {variant!r}; choose one of {VARIANTS}")
        insts = {
            "smu": ("keithley2600", "K2600", "2636B"), "bias": ("keysight_b2900", "B2900", "B2902A"),
            "sm2450": ("keithley2450", "K2450", "2450"), "matrix": ("keithley707b", "M707B", "707B"),
            "b2200": ("keysight_b2200", "B2200", "B2200"), "board": ("switch_board", "BOARD", "SWITCHBOARD"),
            "fgen": ("keysight_33500b", "FGEN", "33512B"),
        }
        if variant.startswith("k2600-707b") and not self.has_707b:
            raise ValueError(f"a {self.rows}x{self.cols} crossbar needs {self.slots_707b} 707B slots of 12 columns "
                             f"(rows and columns on separate cards); the 707B has {SLOTS_707B}: use the "
                             f"b2900-board variant")
        if variant == "k2600-b2200" and not self.has_b2200:
            raise ValueError(f"a {self.rows}x{self.cols} crossbar needs {self.rows + self.cols} B2200 outputs; four "
                             f"cards have {12 * CARDS_B2200}: use the b2900-board variant")
        if variant == "k2600-b2200":        # the same instruments routed through the B2200's cards
            routing = dict(matrix="b2200", drive="smu.a", sense="smu.b", bias_rows="bias.1", bias_cols="bias.2",
                           ground="06", pulse="fgen.1", pulse_col="fgen.2")
            inputs = {"smu.a": "03", "smu.b": "04", "bias.1": "01", "bias.2": "02", "fgen.1": "07", "fgen.2": "08"}
            rows = [self.pin_b2200("row", i) for i in range(self.rows)]
            cols = [self.pin_b2200("col", j) for j in range(self.cols)]
        elif variant.startswith("k2600-707b"):
            routing = dict(matrix="matrix", drive="smu.a", sense="smu.b", bias_rows="bias.1", bias_cols="bias.2")
            inputs = {"smu.a": "A", "smu.b": "B", "bias.1": "C", "bias.2": "D"}
            routing["ground"] = "F"
            if variant == "k2600-707b":      # the 33500B gives the write pulses (µs), the 2636B reads:
                routing["pulse"] = "fgen.1"  # ch 1 the row's half, ch 2 the column's, in one trigger
                routing["pulse_col"] = "fgen.2"
                inputs["fgen.1"] = "G"
                inputs["fgen.2"] = "H"
            rows = [self.pin_707b("row", i) for i in range(self.rows)]
            cols = [self.pin_707b("col", j) for j in range(self.cols)]
        else:
            routing = dict(matrix="board", drive="bias.1", sense="sm2450.1", bias_rows="bias.2", bias_cols="bias.2")
            inputs = {"bias.1": "A", "bias.2": "B", "sm2450.1": "C"}
            routing["ground"] = "D"
            rows = [f"R{i}" for i in range(self.rows)]
            cols = [f"C{j}" for j in range(self.cols)]
            if write_scheme == "v/3":
                raise ValueError("the b2900-board bench has one bias channel: no V/3 writes")
        # the isolating read holds the unselected columns at V_read and the rows at 0 V: two bias channels
        read_schemes = ("ground", "float") + (("isolate",) if routing["bias_rows"] != routing["bias_cols"] else ())
        lines = [
            "# written by xbar mock-bench: emulated instruments on 127.0.0.1",
            "[station]", f'name = "mock bench ({variant})"', f'chip_id = "{self.chip_id}"',
            f"rows = {self.rows}", f"cols = {self.cols}",
            f'write_scheme = "{write_scheme}"', f"read_schemes = {list(read_schemes)!r}".replace("'", '"'),
            "v_read = 0.2", "nplc = 0.1", f"timeout_ms = {timeout_ms}", "",
            "[limits]", f"v_max = {v_max}", "v_read_max = 0.5", f"i_compliance = {i_compliance}",
            "width_min = 1e-7", "width_max = 1e-3", "",
        ]
        for name, (driver, emu, ident) in insts.items():
            lines += [f"[instruments.{name}]", f'driver = "{driver}"', f'resource = "{self.resource(emu)}"',
                      f'identity = "{ident}"']
            lines += [f"tsplink_node = {TSPLINK_NODES[name]}"] if name in TSPLINK_NODES else []
            lines.append("")
        lines += ["[routing]"] + [f'{k} = "{v}"' for k, v in routing.items()]
        lines.append("inputs = { " + ", ".join(f'"{k}" = "{v}"' for k, v in inputs.items()) + " }")
        lines.append("row_pins = [" + ", ".join(f'"{p}"' for p in rows) + "]")
        lines.append("col_pins = [" + ", ".join(f'"{p}"' for p in cols) + "]")
        return "\n".join(lines) + "\n"

    def write_station(self, path: str | Path, **kwargs) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.station_toml(**kwargs))
        return path

    # ------------------------------------------------------------------------------ life
    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers = {}
        self.write_record(running=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
