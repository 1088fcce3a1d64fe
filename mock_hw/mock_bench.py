"""The mock bench: emulated instruments on loopback TCP, all wired to one simulated crossbar.

Instruments (each on its own 127.0.0.1 port): a Keithley 2450, a Keithley 2636B (smua, smub), a
Keysight B2902A (channels 1, 2), a Keithley 707B with two 7174A-style 8×12 cards, a Keysight
B2200 (one card, 14 inputs × 48 outputs) and the serial switch board.

Wiring (what a bench's cables would do):

=================  ===========  ==============  ===========
source             707B input   B2200 input     board bus
=================  ===========  ==============  ===========
2636B smua         A            103             —
2636B smub         B            104             —
B2902A ch 1        C            101             A
B2902A ch 2        D            102             B
2450               E            105             C
ground             F            106             D
=================  ===========  ==============  ===========

Time and aging: the bench's clock is emulated instrument time by default (``clock="emulated"``:
integration, settling, relay and pulse durations, and explicit waits; see
:class:`~mock_hw.bench_physics.EmulatedClock`), so a run's result does not depend on the host's
load; ``clock="wall"`` uses the host's monotonic clock (``xbar mock-bench --clock wall``).  The chip
ages with that clock (``time_scale`` chip seconds per bench second, default 1), so a retention run
against the bench sees the devices relax.

Fault injection: each emulator's ``faults`` (no reply, garbled reply, instrument error, latency),
``bench.bench.stuck_open`` (relays that never close), a tight compliance in the station file
(trips).  ``bench.violations`` lists every hot switch, short and limit violation.

Crossbar rows go to 707B pins ``1xx`` (slot 1 columns 01..), columns to ``2xx`` (slot 2); B2200
outputs ``101..`` rows then columns; board pins ``R<i>`` / ``C<j>``.

:meth:`MockBench.station_toml` writes a station file for one of two benches: ``k2600-707b`` (the
2636B drives and senses, the B2902A biases, the 707B switches) or ``b2900-board`` (B2902A ch 1
drives, the 2450 senses, B2902A ch 2 biases rows and columns, the serial board switches).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from .bench_physics import GROUND, BenchTiming, EmulatedClock, PhysicalBench, check_time_scale
from .emulators.base import InstrumentServer
from .presets import DEFAULT_PRESET
from .sim_chip import SimulatedCrossbar

VARIANTS = ("k2600-707b", "b2900-board")
CLOCKS = ("emulated", "wall")


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
        from .emulators.keysight_b2900 import KeysightB2900Emulator
        from .emulators.switch_board import SwitchBoardEmulator

        if rows > 12 or cols > 12 or rows + cols > 48:
            raise ValueError("the mock bench's 707B cards take up to 12 rows and 12 columns")
        check_time_scale(time_scale)   # before anything is built or served
        clock = bench_clock(clock)
        self.rows, self.cols, self.pristine = rows, cols, pristine
        #: the emulated chip's ID, written into the station file (what a lab labels its die)
        self.chip_id = f"mock-{preset}-seed{seed}-{rows}x{cols}" + ("-pristine" if pristine else "")
        self.chip = SimulatedCrossbar(rows, cols, preset=preset, seed=seed, pristine=pristine)
        timing = BenchTiming.realistic() if realistic_timing else None
        self.bench = bench = PhysicalBench(self.chip, v_limit=v_limit, timing=timing, clock=clock,
                                           time_scale=time_scale)
        self.emulators = {
            "K2450": Keithley2450Emulator(bench, name="K2450", source="K2450"),
            "K2600": Keithley2600Emulator(bench, name="K2600", sources={"a": "K2600.a", "b": "K2600.b"}),
            "B2900": KeysightB2900Emulator(bench, name="B2900", sources={1: "B2900.1", 2: "B2900.2"}),
            "M707B": Keithley707BEmulator(bench, name="M707B", slots=2),
            "B2200": KeysightB2200Emulator(bench, name="B2200"),
            "BOARD": SwitchBoardEmulator(bench, name="BOARD", rows=rows, cols=cols),
        }
        for src, m707, b2200, board in (("K2600.a", "A", "103", None), ("K2600.b", "B", "104", None),
                                        ("B2900.1", "C", "101", "A"), ("B2900.2", "D", "102", "B"),
                                        ("K2450", "E", "105", "C"), (GROUND, "F", "106", "D")):
            bench.wire_input("M707B", m707, src)
            bench.wire_input("B2200", b2200, src)
            if board:
                bench.wire_input("BOARD", board, src)
        for i in range(rows):
            bench.wire_pin("M707B", self.pin_707b("row", i), ("row", i))
            bench.wire_pin("B2200", self.pin_b2200("row", i), ("row", i))
            bench.wire_pin("BOARD", f"R{i}", ("row", i))
        for j in range(cols):
            bench.wire_pin("M707B", self.pin_707b("col", j), ("col", j))
            bench.wire_pin("B2200", self.pin_b2200("col", j), ("col", j))
            bench.wire_pin("BOARD", f"C{j}", ("col", j))
        self.servers = {}
        try:
            for name, emu in self.emulators.items():
                self.servers[name] = InstrumentServer(emu)
        except Exception:
            self.close()
            raise

    # ------------------------------------------------------------------------------ naming
    def pin_707b(self, kind: str, index: int) -> str:
        return f"{1 if kind == 'row' else 2}{index + 1:02d}"

    def pin_b2200(self, kind: str, index: int) -> str:
        return f"1{index + 1 + (0 if kind == 'row' else self.rows):02d}"

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
                     i_compliance: float = 1e-2, timeout_ms: int = 2000) -> str:
        """A station file pointing at this bench's instruments.  ``v_max`` (V): the largest pulse
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
        }
        if variant == "k2600-707b":
            routing = dict(matrix="matrix", drive="smu.a", sense="smu.b", bias_rows="bias.1", bias_cols="bias.2")
            inputs = {"smu.a": "A", "smu.b": "B", "bias.1": "C", "bias.2": "D"}
            routing["ground"] = "F"
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
        lines = [
            "# written by xbar mock-bench: emulated instruments on 127.0.0.1",
            "[station]", f'name = "mock bench ({variant})"', f'chip_id = "{self.chip_id}"',
            f"rows = {self.rows}", f"cols = {self.cols}",
            f'write_scheme = "{write_scheme}"', "v_read = 0.2", "nplc = 0.1", f"timeout_ms = {timeout_ms}", "",
            "[limits]", f"v_max = {v_max}", "v_read_max = 0.5", f"i_compliance = {i_compliance}",
            "width_min = 1e-7", "width_max = 1e-3", "",
        ]
        for name, (driver, emu, ident) in insts.items():
            lines += [f"[instruments.{name}]", f'driver = "{driver}"', f'resource = "{self.resource(emu)}"',
                      f'identity = "{ident}"', ""]
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
