"""Serial switch board: driver (exact protocol lines), emulator, and both over a pyserial socket://."""
from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from instruments.roles import Identified, InstrumentError, InstrumentTimeout, Matrix
from instruments.switch_board import SwitchBoard, parse_state
# replies wait for the host: the mock bench's timeout (20 s), not the speed of the machine; a test of a dropped
# reply waits for a short one of its own
from mock_hw.mock_bench import MOCK_TIMEOUT_MS as REPLY_MS
from mock_hw.bench_physics import PhysicalBench
from mock_hw.emulators.base import InstrumentServer
from mock_hw.emulators.switch_board import SwitchBoardEmulator
from mock_hw.sim_chip import SimulatedCrossbar

IDN = "XBARLAB,SWITCHBOARD,SB000001,1.0"
EMPTY = "A:;B:;C:;D:"


# ------------------------------------------------------------------------------- protocol
def test_protocols_satisfied():
    with expected_protocol(SwitchBoard, []) as inst:
        assert isinstance(inst, Matrix) and isinstance(inst, Identified)


def test_open_all_and_open_pins():
    with expected_protocol(SwitchBoard, [("OPEN ALL", "OK"), ("OPEN R1,C2", "OK")]) as inst:
        inst.open_all()
        inst.open(["R1", "C2"])


def test_close_one_command_per_bus():
    pairs = [("CONN A R0,C3", "OK"), ("CONN C R1", "OK")]
    with expected_protocol(SwitchBoard, pairs) as inst:
        inst.close([("A", "R0"), ("C", "R1"), ("A", "C3"), ("A", "R0")])


def test_close_empty_sends_nothing():
    with expected_protocol(SwitchBoard, []) as inst:
        inst.close([])


@pytest.mark.parametrize("bad", [("E", "R0"), ("a", "R0"), ("A", "X0"), ("A", "R01"), ("A", "r0"), ("A", "R-1"),
                                 ("A", "R8"), ("A", "C8"), ("A", 0), ("A", "R0,C1"), ("B", "R0"), "AR0", ("A",)])
def test_close_refuses_bad_connection_writing_nothing(bad):
    with expected_protocol(SwitchBoard, [], name="BRD", rows=8, cols=8) as inst:
        with pytest.raises(ValueError, match="BRD"):
            inst.close([("A", "R0"), bad])


def test_unacknowledged_command_raises():
    pairs = [("CONN A R0", "ERR 103,Invalid pin R0"), ("OPEN ALL", ""), ("OPEN ALL", "OKAY")]
    with expected_protocol(SwitchBoard, pairs, name="BRD") as inst:
        with pytest.raises(InstrumentError, match=r"BRD.*CONN A R0.*ERR 103"):
            inst.close([("A", "R0")])
        with pytest.raises(InstrumentError, match="BRD"):
            inst.open_all()
        with pytest.raises(InstrumentError, match="BRD"):
            inst.open_all()


def test_closed_parses():
    with expected_protocol(SwitchBoard, [("STATE?", "A:R0,C3;B:;C:R1;D:"), ("STATE?", EMPTY)]) as inst:
        assert inst.closed() == {("A", "R0"), ("A", "C3"), ("C", "R1")}
        assert inst.closed() == set()


@pytest.mark.parametrize("reply", ["A:R0;B:;C:", "A:R0,X1;B:;C:;D:", "OK", "\x15#?garbled?#", "A:R0,C3;B:;C:;D:;E:"])
def test_closed_garbled_names_instrument(reply):
    with expected_protocol(SwitchBoard, [("STATE?", reply)], name="BRD") as inst:
        with pytest.raises(InstrumentError, match="BRD"):
            inst.closed()


def test_identity_and_errors():
    pairs = [("*IDN?", IDN), ("ERR?", "103,Invalid pin R9: out of range"), ("ERR?", "100,Unknown command FOO"),
             ("ERR?", "0,No error")]
    with expected_protocol(SwitchBoard, pairs) as inst:
        assert inst.identity() == IDN
        assert inst.drain_errors() == [(103, "Invalid pin R9: out of range"), (100, "Unknown command FOO")]


def test_garbled_error_reply():
    with expected_protocol(SwitchBoard, [("ERR?", "\x15#?garbled?#")]) as inst:
        with pytest.raises(InstrumentError, match="Switch board"):
            inst.drain_errors()


def test_parse_state_sorted_input():
    assert parse_state("A:;B:C10,R2;C:;D:R0") == {("B", "C10"), ("B", "R2"), ("D", "R0")}


# ------------------------------------------------------------------------------- emulator
@pytest.fixture
def bench():
    return PhysicalBench(SimulatedCrossbar(4, 4, preset="ideal", seed=0))


def test_emulator_commands(bench):
    emu = SwitchBoardEmulator(bench, rows=4, cols=4)
    assert emu.process("*IDN?") == [IDN]
    assert emu.process("CONN A R0,C3") == ["OK"]
    assert emu.process("conn c r1") == ["OK"]
    assert emu.process("STATE?") == ["A:R0,C3;B:;C:R1;D:"]
    assert emu.process("CONN B R0") == ["OK"]          # moves R0 from bus A to bus B
    assert bench.closed_relays("BOARD") == [("A", "C3"), ("B", "R0"), ("C", "R1")]
    assert emu.process("OPEN C3,R1") == ["OK"]
    assert emu.process("STATE?") == ["A:;B:R0;C:;D:"]
    assert emu.process("OPEN ALL") == ["OK"]
    assert emu.process("STATE?") == [EMPTY]
    assert emu.process("ERR?") == ["0,No error"]
    assert emu.process("") == ["ERR 101,Empty line"]   # every line is answered, an empty one too
    assert emu.process("  \t") == ["ERR 101,Empty line"]
    assert emu.process("ERR?") == ["101,Empty line"]


@pytest.mark.parametrize("cmd, code", [("CONN E R0", 102), ("CONN A R4", 103), ("CONN A R0,C9", 103),
                                       ("CONN A R01", 103), ("CONN A", 101), ("OPEN", 101), ("OPEN R0 C1", 101),
                                       ("FOO", 100), ("exec('import os')", 100), ("\x00\xff", 100),
                                       ("CONN A R0,,C1", 103)])
def test_emulator_rejects_without_acting(bench, cmd, code):
    emu = SwitchBoardEmulator(bench, rows=4, cols=4)
    reply = emu.process(cmd)
    assert len(reply) == 1 and reply[0].startswith(f"ERR {code},")
    assert bench.closed_relays("BOARD") == []
    assert emu.process("ERR?")[0].startswith(f"{code},")
    assert emu.process("ERR?") == ["0,No error"]


# ------------------------------------------------------------------------------ on serial
@pytest.fixture(scope="module")
def link():
    """One server and one serial connection for the module (pyserial's socket:// close() sleeps
    0.3 s); each test attaches a fresh emulator on a fresh bench to the server."""
    server = InstrumentServer(SwitchBoardEmulator(PhysicalBench(SimulatedCrossbar(4, 4, preset="ideal", seed=0))))
    inst = SwitchBoard(f"socket://127.0.0.1:{server.port}", name="BOARD", timeout_ms=REPLY_MS)
    yield server, inst
    inst.adapter.close()
    server.close()


def _attach(link, bench):
    server, inst = link
    emu = SwitchBoardEmulator(bench, name="BOARD", rows=4, cols=4)
    server.instrument = emu  # the server hands every received line to server.instrument
    inst.adapter.flush_read_buffer()
    return emu, inst


@pytest.fixture
def rig(link, bench):
    emu, inst = _attach(link, bench)
    return bench, emu, inst


@pytest.fixture
def hot_rig(link):
    # dc_stress=False: only the hot-switch record is under test (with dc_stress on, PhysicalBench
    # cannot settle a live source while no crossbar line is driven yet)
    bench = PhysicalBench(SimulatedCrossbar(4, 4, preset="ideal", seed=0), dc_stress=False)
    emu, inst = _attach(link, bench)
    return bench, emu, inst


def test_close_open_over_serial(rig):
    bench, emu, inst = rig
    bench.wire_input("BOARD", "A", "SRC")
    bench.wire_pin("BOARD", "R0", ("row", 0))
    assert inst.identity() == IDN
    inst.close([("A", "R0"), ("B", "C1"), ("A", "C3")])
    # every command is acknowledged, so the relays are set when close() returns
    assert set(bench.closed_relays("BOARD")) == inst.closed() == {("A", "R0"), ("B", "C1"), ("A", "C3")}
    inst.close([("C", "R0")])
    assert set(bench.closed_relays("BOARD")) == inst.closed() == {("C", "R0"), ("B", "C1"), ("A", "C3")}
    inst.open(["C1"])
    assert inst.closed() == {("C", "R0"), ("A", "C3")}
    inst.open_all()
    assert bench.closed_relays("BOARD") == [] and inst.closed() == set()
    assert inst.drain_errors() == []
    assert bench.violations == []


def test_rejected_command_over_serial(rig):
    bench, emu, inst = rig  # the driver does not know the board's size; the board has 4 rows
    with pytest.raises(InstrumentError, match=r"BOARD.*CONN A R5"):
        inst.close([("A", "R5")])
    assert inst.drain_errors() == [(103, "Invalid pin R5: out of range")]
    assert inst.closed() == set()


def test_hot_switch_recorded(hot_rig):
    bench, emu, inst = hot_rig
    bench.add_source("SRC")
    bench.wire_input("BOARD", "A", "SRC")
    bench.wire_pin("BOARD", "R0", ("row", 0))
    bench.set_source("SRC", level=1.0, on=True)
    inst.close([("A", "R0")])
    assert [v.kind for v in bench.violations] == ["hot-switch"]
    assert inst.closed() == {("A", "R0")}


def test_cold_switch_not_recorded(hot_rig):
    bench, emu, inst = hot_rig
    bench.add_source("SRC")
    bench.wire_input("BOARD", "A", "SRC")
    bench.wire_pin("BOARD", "R0", ("row", 0))
    bench.set_source("SRC", level=1.0, on=False)
    inst.close([("A", "R0")])
    inst.open_all()
    assert bench.violations == []


def test_stuck_relay_not_reported(rig):
    bench, emu, inst = rig
    bench.stuck_open.add(("BOARD", "B", "C1"))
    inst.close([("A", "R0"), ("B", "C1")])
    assert inst.closed() == {("A", "R0")}


def test_no_reply_times_out_naming_instrument_and_command(rig):
    bench, emu, inst = rig
    emu.faults.no_reply_next = 1
    with inst._timeout(0.3), pytest.raises(InstrumentTimeout) as info:   # the wait for the dropped reply
        inst.close([("A", "R0")])
    assert "BOARD" in str(info.value) and "CONN A R0" in str(info.value)
    assert inst.identity() == IDN  # the next exchange works


def test_garbled_reply_over_serial(rig):
    bench, emu, inst = rig
    emu.faults.garbled_next = 1
    with pytest.raises(InstrumentError, match="BOARD"):
        inst.open_all()
    emu.faults.garbled_next = 1
    with pytest.raises(InstrumentError, match="BOARD"):
        inst.closed()
    emu.faults.garbled_next = 1
    with pytest.raises(InstrumentError, match="BOARD"):
        inst.drain_errors()
