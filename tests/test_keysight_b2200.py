"""Keysight B2200 driver (exact SCPI strings), its emulator, and both together over loopback TCP."""
from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from instruments.keysight_b2200 import KeysightB2200, parse_channel_list
from instruments.roles import Identified, InstrumentError, InstrumentTimeout, Matrix
# replies wait for the host: the mock bench's timeout (20 s), not the speed of the machine; a test of a dropped
# reply waits for a short one of its own
from mock_hw.mock_bench import MOCK_TIMEOUT_MS as REPLY_MS
from mock_hw.bench_physics import PhysicalBench
from mock_hw.emulators.base import InstrumentServer
from mock_hw.emulators.keysight_b2200 import KeysightB2200Emulator
from mock_hw.sim_chip import SimulatedCrossbar

IDN = "Agilent Technologies,B2200A,0,1.0"


# ------------------------------------------------------------------------------- protocol
def test_protocols_satisfied():
    with expected_protocol(KeysightB2200, []) as inst:
        assert isinstance(inst, Matrix) and isinstance(inst, Identified)


def test_open_all():
    with expected_protocol(KeysightB2200, [(":ROUT:OPEN:CARD ALL", None)]) as inst:
        inst.open_all()


def test_close_is_one_command():
    with expected_protocol(KeysightB2200, [(":ROUT:CLOS (@10305,10406,11412)", None)]) as inst:
        inst.close([("03", "105"), ("04", "106"), ("14", "112")])


def test_close_empty_and_open():
    with expected_protocol(KeysightB2200, [(":ROUT:OPEN (@10305)", None)]) as inst:
        inst.close([])
        inst.open([("03", "105")])


def test_inputs_are_shared_by_every_card():
    """The mainframe's input ports reach all cards: one input, lines on four cards, one command."""
    with expected_protocol(KeysightB2200, [(":ROUT:CLOS (@10112,20101,30106,40112)", None),
                                           (":ROUT:CLOS:CARD? ALL", "(@10112,20101,30106,40112)")]) as inst:
        inst.close([("01", "112"), ("01", "201"), ("01", "306"), ("01", "412")])
        assert inst.closed() == {("01", "112"), ("01", "201"), ("01", "306"), ("01", "412")}


@pytest.mark.parametrize("bad", [("00", "105"), ("15", "105"), ("03", "100"), ("03", "113"), ("03", "148"),
                                 ("103", "105"), ("03", "505"), ("3", "105"), (3, "105"), "10305", ("03",),
                                 ("03", "305")])    # the last: card 3 of a 2-card mainframe
def test_close_refuses_bad_relay_writing_nothing(bad):
    with expected_protocol(KeysightB2200, [], name="SW1", cards=2) as inst:
        with pytest.raises(ValueError, match="SW1"):
            inst.close([("03", "105"), bad])


@pytest.mark.parametrize("bad", ["10300", "11505", "50101", "1030", "10305;*RST", "", "10305)", "10313"])
def test_setting_validator_refuses(bad):
    with expected_protocol(KeysightB2200, []) as inst:
        with pytest.raises(ValueError):
            inst.close_channels = bad


def test_closed_parses():
    with expected_protocol(KeysightB2200, [(":ROUT:CLOS:CARD? ALL", "(@10305,20406)"),
                                           (":ROUT:CLOS:CARD? ALL", "(@)")]) as inst:
        assert inst.closed() == {("03", "105"), ("04", "206")}
        assert inst.closed() == set()


@pytest.mark.parametrize("reply", ["1,0", "(@10305,XYZ)", "(@1030)", "\x15#?garbled?#", ""])
def test_closed_garbled_names_instrument(reply):
    with expected_protocol(KeysightB2200, [(":ROUT:CLOS:CARD? ALL", reply)], name="SW1") as inst:
        with pytest.raises(InstrumentError, match="SW1"):
            inst.closed()


def test_identity_and_errors():
    pairs = [("*IDN?", IDN), (":SYST:ERR?", '-222,"Data out of range: channel 11505"'),
             (":SYST:ERR?", '-113,"Undefined header"'), (":SYST:ERR?", '+0,"No error"')]
    with expected_protocol(KeysightB2200, pairs) as inst:
        assert inst.identity() == IDN
        assert inst.drain_errors() == [(-222, "Data out of range: channel 11505"), (-113, "Undefined header")]


def test_garbled_error_queue_reply():
    with expected_protocol(KeysightB2200, [(":SYST:ERR?", "\x15#?garbled?#")]) as inst:
        with pytest.raises(InstrumentError, match="Keysight B2200"):
            inst.drain_errors()


def test_parse_channel_list():
    assert parse_channel_list(" (@ 10101, 20212 ) ") == {("01", "101"), ("02", "212")}


# ------------------------------------------------------------------------------- emulator
@pytest.fixture
def bench():
    return PhysicalBench(SimulatedCrossbar(4, 4, preset="ideal", seed=0))


def test_emulator_commands(bench):
    emu = KeysightB2200Emulator(bench, cards=2)
    assert emu.process("*IDN?") == [IDN]
    assert emu.process(":ROUT:CLOS (@10305,20406)") == []
    assert bench.closed_relays("B2200") == [("103", "105"), ("204", "206")]   # (card + input, pin)
    assert emu.process(":ROUT:CLOS:CARD? 1") == ["(@10305)"]
    assert emu.process(":ROUTE:CLOSE:CARD? ALL") == ["(@10305,20406)"]
    assert emu.process(":rout:clos? (@10305,10101)") == ["1,0"]
    assert emu.process("ROUT:OPEN? (@10305,10101)") == ["0,1"]
    emu.process(":ROUT:OPEN (@10305)")
    assert emu.process(":ROUT:CLOS:CARD? 1") == ["(@)"]
    emu.process(":ROUT:CLOS (@10101:10202)")
    assert emu.process(":ROUT:CLOS:CARD? 1") == ["(@10101,10102,10201,10202)"]
    emu.process(":ROUT:OPEN:CARD 1")
    assert emu.process(":ROUT:CLOS:CARD? ALL") == ["(@20406)"]
    emu.process("*RST")
    assert bench.closed_relays("B2200") == []
    assert emu.process(":SYST:ERR?") == ['+0,"No error"']


@pytest.mark.parametrize("cmd, code", [(":ROUT:CLOS (@10305,11505)", -222), (":ROUT:CLOS (@20101)", -222),
                                       (":ROUT:CLOS (@10149)", -222), (":ROUT:CLOS 10305", -104),
                                       (":ROUT:CLOS (@10305", -104), (":ROUT:CLOS:CARD? 3", -222),
                                       ('__import__("os").system("ls")', -113), (":ROUT:CLOS (@1e3)", -104),
                                       ("\x00\xff", -113)])
def test_emulator_rejects_without_acting(bench, cmd, code):
    emu = KeysightB2200Emulator(bench, cards=1)
    assert emu.process(cmd) == []
    assert bench.closed_relays("B2200") == []
    assert emu.process(":SYST:ERR?")[0].startswith(f"{code:+d},")
    assert emu.process(":SYST:ERR?") == ['+0,"No error"']


# --------------------------------------------------------------------------------- on TCP
def _rig(bench, name="B2200"):
    emu = KeysightB2200Emulator(bench, name=name)
    server = InstrumentServer(emu)
    inst = KeysightB2200(f"TCPIP::127.0.0.1::{server.port}::SOCKET", name=name, timeout_ms=REPLY_MS)
    return emu, server, inst


@pytest.fixture
def rig(bench):
    emu, server, inst = _rig(bench)
    yield bench, emu, inst
    inst.adapter.close()
    server.close()


@pytest.fixture
def hot_rig():
    # dc_stress=False: only the hot-switch record is under test (with dc_stress on, PhysicalBench
    # cannot settle a live source while no crossbar line is driven yet)
    bench = PhysicalBench(SimulatedCrossbar(4, 4, preset="ideal", seed=0), dc_stress=False)
    emu, server, inst = _rig(bench)
    yield bench, emu, inst
    inst.adapter.close()
    server.close()


def test_close_open_over_tcp(rig):
    bench, emu, inst = rig
    bench.wire_input("B2200", "101", "SRC")           # the emulator's relays: (card + input, pin)
    bench.wire_pin("B2200", "101", ("row", 0))
    assert inst.identity() == IDN
    inst.close([("01", "101"), ("02", "105"), ("14", "112")])
    reported = inst.closed()  # the query also waits until the instrument has handled the write
    assert reported == {("01", "101"), ("02", "105"), ("14", "112")}
    assert set(bench.closed_relays("B2200")) == {("101", "101"), ("102", "105"), ("114", "112")}
    inst.open([("02", "105")])
    assert inst.closed() == {("01", "101"), ("14", "112")}
    assert set(bench.closed_relays("B2200")) == {("101", "101"), ("114", "112")}
    inst.open_all()
    assert inst.closed() == set() and bench.closed_relays("B2200") == []
    assert inst.drain_errors() == []
    assert bench.violations == []


def test_instrument_errors_over_tcp(rig):
    bench, emu, inst = rig
    inst.write(":ROUT:CLOS (@20101)")  # card 2 absent
    errors = inst.drain_errors()
    assert len(errors) == 1 and errors[0][0] == -222
    assert inst.closed() == set()


def test_hot_switch_recorded(hot_rig):
    bench, emu, inst = hot_rig
    bench.add_source("SRC")
    bench.wire_input("B2200", "101", "SRC")
    bench.wire_pin("B2200", "101", ("row", 0))
    bench.set_source("SRC", level=1.0, on=True)
    inst.close([("01", "101")])
    assert inst.closed() == {("01", "101")}
    assert [v.kind for v in bench.violations] == ["hot-switch"]


def test_cold_switch_not_recorded(hot_rig):
    bench, emu, inst = hot_rig
    bench.add_source("SRC")
    bench.wire_input("B2200", "101", "SRC")
    bench.wire_pin("B2200", "101", ("row", 0))
    bench.set_source("SRC", level=1.0, on=False)
    inst.close([("01", "101")])
    assert inst.closed() == {("01", "101")}
    inst.open_all()
    assert inst.closed() == set()
    assert bench.violations == []


def test_stuck_relay_not_reported(rig):
    bench, emu, inst = rig
    bench.stuck_open.add(("B2200", "102", "105"))
    inst.close([("01", "101"), ("02", "105")])
    assert inst.closed() == {("01", "101")}


def test_no_reply_times_out_naming_instrument_and_command(rig):
    bench, emu, inst = rig
    emu.faults.no_reply_next = 1
    with inst._timeout(0.3), pytest.raises(InstrumentTimeout) as info:   # the wait for the dropped reply
        inst.closed()
    assert "B2200" in str(info.value) and ":ROUT:CLOS:CARD? ALL" in str(info.value)
    assert inst.identity() == IDN  # the next exchange works


def test_garbled_reply_over_tcp(rig):
    bench, emu, inst = rig
    emu.faults.garbled_next = 1
    with pytest.raises(InstrumentError, match="B2200"):
        inst.closed()
    emu.faults.garbled_next = 1
    with pytest.raises(InstrumentError, match="B2200"):
        inst.drain_errors()


def test_emulator_bias_couple_and_auto_configuration(bench):
    """B2200 User's Guide, chapter 5: bias mode connects the bias port to every bias-enabled output
    no other input uses, and the bias port cannot be switched by hand; couple mode switches the
    partner channel too; card 0 addresses the cards as one (auto configuration)."""
    emu = KeysightB2200Emulator(bench, cards=2, inputs=14, outputs=12)
    assert emu.process(":BIAS:PORT 1,10;:BIAS:CHAN:DIS:CARD 1;:BIAS:CHAN:ENAB (@11001:11003)") == []
    emu.process(":CLOS (@10102);:BIAS 1,ON")
    assert emu.process(":CLOS:CARD? 1") == ["(@10102,11001,11003)"]        # output 2 is in use
    emu.process(":CLOS (@11005)")
    assert emu.process(":SYST:ERR?")[0].startswith("-221,")                 # the bias port, by hand
    emu.process(":OPEN (@10102)")
    assert emu.process(":CLOS:CARD? 1") == ["(@11001,11002,11003)"]          # bias takes output 2 back
    emu.process(":BIAS 1,OFF;:COUP:PORT 1,'3';:COUP 1,ON;:CLOS (@10305)")
    assert emu.process(":CLOS:CARD? 1;:COUP:PORT? 1") == ["(@10305,10406);'3'"]
    emu.process("*RST;:CLOS (@00115)")                                        # card 0: output 15 = card 2, output 3
    assert emu.process(":CLOS:CARD? 2;:CLOS:CARD? 0") == ["(@20103);(@00115)"]
    assert emu.process(":SYST:ERR?") == ['+0,"No error"']
