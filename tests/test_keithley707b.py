"""Keithley 707B driver (exact TSP strings), its emulator, and both together over loopback TCP."""
from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from instruments.keithley707b import Keithley707B, parse_getclose, validate_channel_list
from instruments.roles import Identified, InstrumentError, InstrumentTimeout, Matrix
# replies wait for the host: the mock bench's timeout (20 s), not the speed of the machine; a test of a dropped
# reply waits for a short one of its own
from mock_hw.mock_bench import MOCK_TIMEOUT_MS as REPLY_MS
from mock_hw.bench_physics import PhysicalBench
from mock_hw.emulators.base import InstrumentServer
from mock_hw.emulators.keithley707b import Keithley707BEmulator
from mock_hw.sim_chip import SimulatedCrossbar

GETCLOSE = 'print(channel.getclose("allslots"))'
ERRNEXT = "print(errorqueue.next())"


# ------------------------------------------------------------------------------- protocol
def test_protocols_satisfied():
    with expected_protocol(Keithley707B, []) as inst:
        assert isinstance(inst, Matrix) and isinstance(inst, Identified)
        assert inst.name == "Keithley 707B"


def test_open_all():
    with expected_protocol(Keithley707B, [('channel.open("allslots")', None)]) as inst:
        inst.open_all()


def test_close_is_one_command():
    with expected_protocol(Keithley707B, [('channel.close("1A01,1B02,2H12")', None)]) as inst:
        inst.close([("A", "101"), ("B", "102"), ("H", "212")])


def test_close_empty_sends_nothing():
    with expected_protocol(Keithley707B, []) as inst:
        inst.close([])


def test_exclusive_close():
    with expected_protocol(Keithley707B, [('channel.exclusiveclose("1C05")', None),
                                          ('channel.open("allslots")', None)]) as inst:
        inst.exclusive_close([("C", "105")])
        inst.exclusive_close([])


def test_declarative_setting_accepts_lists():
    with expected_protocol(Keithley707B, [('channel.close("1A01,6H12")', None)]) as inst:
        inst.close_channels = ["1A01", "6H12"]


@pytest.mark.parametrize("bad", [("I", "101"), ("A", "113"), ("A", "100"), ("A", "701"), ("a", "101"),
                                 ("A", "1011"), ("AB", "101"), ("A", 101), "A101", ("A",)])
def test_close_refuses_bad_relay_writing_nothing(bad):
    with expected_protocol(Keithley707B, []) as inst:
        with pytest.raises(ValueError) as info:
            inst.close([("A", "101"), bad])
        assert "Keithley 707B" in str(info.value)
        with pytest.raises(ValueError):
            inst.exclusive_close([bad])


@pytest.mark.parametrize("bad", ["1A13", "7A01", "1I01", "1A1", "1A01;reset()", "", '1A01")os.exit("'])
def test_setting_validator_refuses(bad):
    with expected_protocol(Keithley707B, []) as inst:
        with pytest.raises(ValueError):
            inst.close_channels = bad
        with pytest.raises(ValueError):
            inst.exclusive_close_channels = bad


def test_closed_parses_list_and_nil():
    with expected_protocol(Keithley707B, [(GETCLOSE, "1A01;2E12;1B02"), (GETCLOSE, "nil")]) as inst:
        assert inst.closed() == {("A", "101"), ("E", "212"), ("B", "102")}
        assert inst.closed() == set()


def test_closed_garbled_names_instrument():
    with expected_protocol(Keithley707B, [(GETCLOSE, "1A01;XYZ"), (GETCLOSE, "1E01,2")],
                           name="M1") as inst:
        with pytest.raises(InstrumentError, match="M1"):
            inst.closed()
        with pytest.raises(InstrumentError, match="M1"):
            inst.closed()


def test_parse_getclose_does_not_cast_to_numbers():
    # "1E01" would be 10.0 if the reply went through float()
    assert parse_getclose("1E01") == {("E", "101")}
    assert validate_channel_list("1A01, 1B02") == "1A01,1B02"


def test_identity_and_errors():
    pairs = [("*IDN?", "Keithley Instruments Inc., Model 707B, 1234567, 1.8.0"),
             (ERRNEXT, "-2.86000e+02\tTSP Runtime error: invalid channel\t2.00000e+00\t1.00000e+00"),
             (ERRNEXT, "1.11500e+03\tParameter error\t2.00000e+00\t1.00000e+00"),
             (ERRNEXT, "0.00000e+00\tQueue Is Empty\t0.00000e+00\t1.00000e+00")]
    with expected_protocol(Keithley707B, pairs) as inst:
        assert inst.identity().startswith("Keithley Instruments Inc., Model 707B")
        assert inst.drain_errors() == [(-286, "TSP Runtime error: invalid channel"), (1115, "Parameter error")]


def test_garbled_error_queue_reply():
    with expected_protocol(Keithley707B, [(ERRNEXT, "\x15#?garbled?#")]) as inst:
        with pytest.raises(InstrumentError, match="Keithley 707B"):
            inst.drain_errors()


# ------------------------------------------------------------------------------- emulator
@pytest.fixture
def bench():
    return PhysicalBench(SimulatedCrossbar(4, 4, preset="ideal", seed=0))


def test_emulator_commands(bench):
    emu = Keithley707BEmulator(bench)
    assert emu.process("*IDN?") == ["Keithley Instruments Inc., Model 707B, 1234567, 1.8.0"]
    assert emu.process('channel.close("1A01,2B03")') == []
    assert bench.closed_relays("M707B") == [("A", "101"), ("B", "203")]
    assert emu.process(GETCLOSE) == ["1A01;2B03"]
    assert emu.process('print(channel.getclose("slot2"))') == ["2B03"]
    emu.process('channel.exclusiveclose("1H12")')
    assert emu.process(GETCLOSE) == ["1H12"]
    emu.process('channel.open("slot1")')
    assert emu.process(GETCLOSE) == ["nil"]
    emu.process('channel.close("1A01")')
    emu.process("reset()")
    assert bench.closed_relays("M707B") == []
    assert emu.process(ERRNEXT) == ["0.00000e+00\tQueue Is Empty\t0.00000e+00\t1.00000e+00"]


@pytest.mark.parametrize("cmd", ['channel.close("1A01,3A01")', 'channel.close("1A13")', 'channel.close("slot3")',
                                 'channel.close(1A01)', 'channel.close("1A01"', 'os.execute("ls")',
                                 'print(io.open("/etc/passwd"))', "channel.close(\"1A01\") .. x", "\x00\xff"])
def test_emulator_rejects_without_acting(bench, cmd):
    emu = Keithley707BEmulator(bench, slots=2)
    assert emu.process(cmd) == []
    assert bench.closed_relays("M707B") == []
    code = emu.process(ERRNEXT)[0].split("\t")[0]
    assert float(code) in (-285.0, -286.0)
    assert emu.process(ERRNEXT)[0].startswith("0.00000e+00")


# --------------------------------------------------------------------------------- on TCP
@pytest.fixture
def rig(bench):
    emu = Keithley707BEmulator(bench, name="M707B", slots=2)
    server = InstrumentServer(emu)
    inst = Keithley707B(f"TCPIP::127.0.0.1::{server.port}::SOCKET", name="M707B", timeout_ms=REPLY_MS)
    yield bench, emu, inst
    inst.adapter.close()
    server.close()


def test_close_open_over_tcp(rig):
    bench, emu, inst = rig
    bench.wire_input("M707B", "A", "SRC")
    bench.wire_pin("M707B", "101", ("row", 0))
    assert inst.identity() == emu.idn
    inst.close([("A", "101"), ("B", "102"), ("C", "205")])
    reported = inst.closed()  # a query also waits until the instrument has handled the writes
    assert reported == set(bench.closed_relays("M707B")) == {("A", "101"), ("B", "102"), ("C", "205")}
    inst.exclusive_close([("D", "112")])
    reported = inst.closed()
    assert reported == set(bench.closed_relays("M707B")) == {("D", "112")}
    inst.open_all()
    assert inst.closed() == set() and bench.closed_relays("M707B") == []
    assert inst.drain_errors() == []
    assert bench.violations == []


def test_instrument_errors_over_tcp(rig):
    bench, emu, inst = rig
    inst.write('channel.close("3A01")')  # slot 3 absent on a 2-slot mainframe
    errors = inst.drain_errors()
    assert len(errors) == 1 and errors[0][0] == -286 and "3A01" in errors[0][1]
    assert inst.closed() == set()


@pytest.fixture
def hot_rig():
    # dc_stress=False: this test is about the hot-switch record, not about the DC stress a live
    # source applies (with dc_stress on, PhysicalBench cannot settle a live source on an array with
    # no driven line yet, and the emulator queues that as a -300 error)
    bench = PhysicalBench(SimulatedCrossbar(4, 4, preset="ideal", seed=0), dc_stress=False)
    emu = Keithley707BEmulator(bench, name="M707B")
    server = InstrumentServer(emu)
    inst = Keithley707B(f"TCPIP::127.0.0.1::{server.port}::SOCKET", name="M707B", timeout_ms=REPLY_MS)
    yield bench, emu, inst
    inst.adapter.close()
    server.close()


def test_hot_switch_recorded(hot_rig):
    bench, emu, inst = hot_rig
    bench.add_source("SRC")
    bench.wire_input("M707B", "A", "SRC")
    bench.wire_pin("M707B", "101", ("row", 0))
    bench.set_source("SRC", level=1.0, on=True)
    inst.close([("A", "101")])
    assert inst.closed() == {("A", "101")}
    assert [v.kind for v in bench.violations] == ["hot-switch"]
    assert inst.drain_errors() == []


def test_cold_switch_not_recorded(hot_rig):
    bench, emu, inst = hot_rig
    bench.add_source("SRC")
    bench.wire_input("M707B", "A", "SRC")
    bench.wire_pin("M707B", "101", ("row", 0))
    bench.set_source("SRC", level=1.0, on=False)
    inst.close([("A", "101")])
    assert inst.closed() == {("A", "101")}
    inst.open_all()
    assert inst.closed() == set()
    assert bench.violations == []


def test_stuck_relay_not_reported(rig):
    bench, emu, inst = rig
    bench.stuck_open.add(("M707B", "B", "102"))
    inst.close([("A", "101"), ("B", "102")])
    assert inst.closed() == {("A", "101")}


def test_no_reply_times_out_naming_instrument_and_command(rig):
    bench, emu, inst = rig
    emu.faults.no_reply_next = 1
    with inst._timeout(0.3), pytest.raises(InstrumentTimeout) as info:   # the wait for the dropped reply
        inst.closed()
    assert "M707B" in str(info.value) and "getclose" in str(info.value)
    assert inst.closed() == set()  # the next exchange works


def test_garbled_reply_over_tcp(rig):
    bench, emu, inst = rig
    emu.faults.garbled_next = 1
    with pytest.raises(InstrumentError, match="M707B"):
        inst.closed()
    emu.faults.garbled_next = 1
    with pytest.raises(InstrumentError, match="M707B"):
        inst.drain_errors()
