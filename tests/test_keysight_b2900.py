"""Keysight B2900 driver (exact SCPI strings per channel), its emulator, and both together over
loopback TCP, pulses included."""
from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from instruments.keysight_b2900 import KeysightB2900, KeysightB2900Channel
from instruments.base import parse_scpi_error as parse_error
from instruments.roles import InstrumentError
from instruments.roles import Identified, InstrumentTimeout, SourceChannel
# replies wait for the host: the mock bench's timeout (20 s), not the speed of the machine; a test of a dropped
# reply waits for a short one of its own
from mock_hw.mock_bench import MOCK_TIMEOUT_MS as REPLY_MS
from mock_hw.bench_physics import PhysicalBench
from mock_hw.emulators.base import InstrumentServer
from mock_hw.emulators.keysight_b2900 import KeysightB2900Emulator
from mock_hw.sim_chip import SimulatedCrossbar

IDN = "Keysight Technologies,B2902A,MY51140001,3.4.2011.5100"


def pulse_commands(ch: int, amplitude: str, width: str):
    return [(f":SOUR{ch}:VOLT 0", None), (f":SOUR{ch}:FUNC:SHAP PULS", None),
            (f":SOUR{ch}:PULS:WIDT {width}", None), (f":SOUR{ch}:PULS:DEL 0", None),
            (f":SOUR{ch}:VOLT:TRIG {amplitude}", None), (f":INIT (@{ch})", None), ("*OPC?", "1")]


# ------------------------------------------------------------------------------- protocol
def test_protocols_satisfied_and_names():
    with expected_protocol(KeysightB2900, [], name="smu (keysight_b2900)") as b:
        assert isinstance(b, Identified)
        for n, ch in ((1, b.ch_1), (2, b.ch_2)):
            assert isinstance(ch, KeysightB2900Channel) and isinstance(ch, SourceChannel)
            assert ch.name == f"smu (keysight_b2900) ch{n}"
    with expected_protocol(KeysightB2900, []) as b:
        assert b.name == "Keysight B2900" and b.ch_1.name == "Keysight B2900 ch1"


@pytest.mark.parametrize("n", [1, 2])
def test_setup(n):
    with expected_protocol(KeysightB2900, [
        (f":SOUR{n}:FUNC:MODE VOLT", None), (f":SOUR{n}:FUNC:SHAP DC", None), (f":SOUR{n}:VOLT 0", None),
        (f":SENS{n}:CURR:PROT 0.001", None), (f":SENS{n}:CURR:NPLC 0.1", None),
    ]) as b:
        getattr(b, f"ch_{n}").setup(1e-3, 0.1)


@pytest.mark.parametrize("compliance, nplc", [(0, 1), (-1e-3, 1), (3.5, 1), (1e-3, 1e-4), (1e-3, 101)])
def test_setup_refuses_before_writing(compliance, nplc):
    with expected_protocol(KeysightB2900, []) as b:
        with pytest.raises(ValueError):
            b.ch_1.setup(compliance, nplc)


def test_level_output_measure_trip():
    with expected_protocol(KeysightB2900, [
        (":SOUR1:VOLT 0.2", None), (":OUTP1 ON", None), (":OUTP1?", "1"),
        (":MEAS:CURR? (@1)", "+2.140315399E-05"), (":SENS1:CURR:PROT:TRIP?", "0"),
        (":SENS2:CURR:PROT:TRIP?", "1"),
        (":SOUR1:VOLT 0", None), (":OUTP1 OFF", None), (":OUTP1?", "0"),
        (":MEAS:CURR? (@2)", "-1.5E-06"),
    ]) as b:
        b.ch_1.set_level(0.2)
        b.ch_1.enable()
        assert b.ch_1.output_enabled() is True
        assert b.ch_1.measure_current() == pytest.approx(2.140315399e-05)
        assert b.ch_1.compliance_tripped() is False
        assert b.ch_2.compliance_tripped() is True
        b.ch_1.disable()
        assert b.ch_1.output_enabled() is False
        assert b.ch_2.measure_current() == pytest.approx(-1.5e-6)


def test_pulse():
    with expected_protocol(KeysightB2900, pulse_commands(1, "2.5", "0.0001") + pulse_commands(2, "-1.8", "5e-05")) as b:
        b.ch_1.pulse(2.5, 1e-4)
        b.ch_2.pulse(-1.8, 50e-6)


# the B2900's pulses are 50 µs – 100 000 s (user's guide): a 1 µs or 49 µs pulse is refused unwritten
@pytest.mark.parametrize("amplitude, width", [(211, 1e-4), (-300, 1e-4), (2.0, 5e-7), (2.0, 1e-6), (2.0, 49e-6),
                                              (2.0, 2e5), (2.0, 0)])
def test_pulse_refuses_before_writing(amplitude, width):
    with expected_protocol(KeysightB2900, []) as b:
        with pytest.raises(ValueError):
            b.ch_1.pulse(amplitude, width)


@pytest.mark.parametrize("volts", [210.5, -211])
def test_set_level_refuses(volts):
    with expected_protocol(KeysightB2900, []) as b:
        with pytest.raises(ValueError):
            b.ch_2.set_level(volts)


def test_channel_properties():
    with expected_protocol(KeysightB2900, [
        (":SOUR2:FUNC:MODE CURR", None), (":SOUR2:FUNC:MODE?", "VOLT"),
        (":SOUR1:FUNC:SHAP PULS", None), (":SOUR1:FUNC:SHAP?", "DC"),
        (":SOUR2:VOLT -3.5", None), (":SOUR2:VOLT?", "-3.5E+00"),
        (":SOUR1:VOLT:TRIG 1.2", None), (":SOUR1:VOLT:TRIG?", "+1.2E+00"),
        (":SOUR1:PULS:WIDT 0.0001", None), (":SOUR1:PULS:WIDT?", "+1.0E-04"),
        (":SOUR2:PULS:DEL 1e-05", None), (":SOUR2:PULS:DEL?", "+1.0E-05"),
        (":SENS1:CURR:PROT 0.01", None), (":SENS1:CURR:PROT?", "+1.0E-02"),
        (":SENS2:CURR:NPLC 10", None), (":SENS2:CURR:NPLC?", "+1.0E+01"),
        (":OUTP2 ON", None), (":OUTP2?", "1"),
        (":SENS1:CURR:PROT:TRIP?", "1"),
        (":MEAS:CURR? (@2)", "+1.0E-03"),
        (":INIT (@2)", None),
    ]) as b:
        b.ch_2.source_mode = "current"
        assert b.ch_2.source_mode == "voltage"
        b.ch_1.source_shape = "PULS"
        assert b.ch_1.source_shape == "DC"
        b.ch_2.source_voltage = -3.5
        assert b.ch_2.source_voltage == -3.5
        b.ch_1.pulse_peak = 1.2
        assert b.ch_1.pulse_peak == 1.2
        b.ch_1.pulse_width = 1e-4
        assert b.ch_1.pulse_width == 1e-4
        b.ch_2.pulse_delay = 1e-5
        assert b.ch_2.pulse_delay == 1e-5
        b.ch_1.compliance_current = 0.01
        assert b.ch_1.compliance_current == 0.01
        b.ch_2.current_nplc = 10
        assert b.ch_2.current_nplc == 10
        b.ch_2.source_enabled = True
        assert b.ch_2.source_enabled is True
        assert b.ch_1.compliance_current_tripped is True
        assert b.ch_2.current == 1e-3
        b.ch_2.initiate()


@pytest.mark.parametrize("prop, value", [
    ("source_mode", "RES"), ("source_mode", "VOLT"), ("source_shape", "PULSE"), ("source_shape", "AC"),
    ("source_voltage", 210.1), ("pulse_peak", -500), ("pulse_width", 1e-7), ("pulse_width", 4e-5),
    ("pulse_delay", -1), ("compliance_current", 0), ("compliance_current", 3.1),
    ("current_nplc", 1e-5), ("current_nplc", 200), ("source_enabled", "ON"), ("source_enabled", 5),
])
def test_validators_refuse_without_writing(prop, value):
    with expected_protocol(KeysightB2900, []) as b:
        with pytest.raises(ValueError):
            setattr(b.ch_1, prop, value)


def test_identity_and_drain_errors():
    with expected_protocol(KeysightB2900, [
        ("*IDN?", IDN),
        (":SYST:ERR:NEXT?", '-113,"Undefined header"'), (":SYST:ERR:NEXT?", '+0,"No error"'),
        (":SYST:ERR:NEXT?", '+0,"No error"'),
    ]) as b:
        assert b.identity() == IDN
        assert b.drain_errors() == [(-113, "Undefined header")]
        assert b.drain_errors() == []


def test_drain_errors_unreadable_reply_names_instrument():
    with expected_protocol(KeysightB2900, [(":SYST:ERR:NEXT?", "?")], name="B1") as b:
        with pytest.raises(InstrumentError, match="B1: unexpected error-queue reply"):
            b.drain_errors()


def test_parse_error():
    assert parse_error('+0,"No error"') == (0, "No error")
    assert parse_error('-222,"Data out of range"') == (-222, "Data out of range")
    with pytest.raises(ValueError):
        parse_error("")


# -------------------------------------------------------------------------- emulator, unit
def wired_bench(guard: bool = True) -> PhysicalBench:
    """Channel 1 ("B2900.1") on row 0, ground on column 0 through matrix M; with ``guard`` a bench
    bias supply "AUX" (off) on columns 1-3 — on at the read level, only cell (0, 0) conducts out
    of channel 1.  The guard goes on only while channel 1 is on (the bench cannot solve a network
    whose rows all float while a column is live)."""
    bench = PhysicalBench(SimulatedCrossbar(4, 4, preset="ideal", seed=0))
    bench.wire_input("M", "A", "B2900.1")
    bench.wire_input("M", "G", "GND")
    bench.wire_pin("M", "r0", ("row", 0))
    bench.wire_pin("M", "c0", ("col", 0))
    bench.set_relay("M", "A", "r0", True)
    bench.set_relay("M", "G", "c0", True)
    if guard:
        bench.wire_input("M", "X", "AUX")
        for j in (1, 2, 3):
            bench.wire_pin("M", f"c{j}", ("col", j))
            bench.set_relay("M", "X", f"c{j}", True)
    return bench


@pytest.fixture
def emu():
    return KeysightB2900Emulator(wired_bench())


def errors(emulator):
    out = []
    while True:
        (reply,) = emulator.process(":SYST:ERR?")
        code, message = parse_error(reply)
        if code == 0:
            return out
        out.append((code, message))


def test_emulator_identity_reset_and_channels(emu):
    assert emu.process("*IDN?") == [IDN]
    emu.process(":SOUR2:VOLT 0.1;:OUTP2 ON")
    assert emu.bench.sources["B2900.2"].on and emu.bench.sources["B2900.2"].level == 0.1
    assert emu.process(":SOUR1:VOLT?;:SOUR:VOLT?;:OUTP1?") == ["+0.000000000E+00;+0.000000000E+00;0"]
    emu.process("*RST")
    assert emu.process(":OUTP2?;:SOUR2:VOLT?;:SOUR2:FUNC:MODE?;:SOUR2:FUNC:SHAP?") == [
        "0;+0.000000000E+00;VOLT;DC"]
    assert not emu.bench.sources["B2900.2"].on
    assert errors(emu) == []


@pytest.mark.parametrize("setter, query", [
    (":SOUR1:VOLT 0.05", ":SOUR1:VOLT?"),
    (":SOURce1:VOLTage:LEVel:IMMediate:AMPLitude 0.05", ":sour:volt:lev?"),
    (":source:voltage 0.05", ":SOURCE1:VOLTAGE?"),
    ("sour1:volt 5e-2", "SOUR1:VOLT:LEV:IMM?"),
])
def test_emulator_short_long_forms_and_case(emu, setter, query):
    assert emu.process(setter) == []
    assert emu.process(query) == ["+5.000000000E-02"]
    assert emu.bench.sources["B2900.1"].level == 0.05
    assert errors(emu) == []


def test_emulator_pulse_settings(emu):
    emu.process(":SOURce2:FUNCtion:SHAPe PULSe;:sour2:puls:widt 2e-4;:SOUR2:PULS:DEL 1e-5;"
                ":SOUR2:VOLT:TRIG 1.5;:SENS2:CURR:PROT 0.01;:SENS2:CURR:NPLC 0.1")
    assert emu.process(":SOUR2:FUNC:SHAP?;:SOUR2:PULS:WIDT?;:SOUR2:PULS:DEL?;:SOUR2:VOLT:TRIG?;"
                       ":SENS2:CURR:PROT?;:SENS2:CURR:NPLC?") == [
        "PULS;+2.000000000E-04;+1.000000000E-05;+1.500000000E+00;+1.000000000E-02;+1.000000000E-01"]
    assert emu.bench.sources["B2900.2"].compliance == 0.01
    assert emu.process(":SOUR1:FUNC:SHAP?") == ["DC"]
    assert errors(emu) == []


def test_emulator_measure_and_trip(emu):
    g = emu.bench.chip.true_conductance[0, 0, 0]
    emu.process(":SOUR1:VOLT 0.2;:SENS1:CURR:PROT 1e-3;:OUTP1 ON")
    emu.bench.set_source("AUX", level=0.2, on=True)
    (reply,) = emu.process(":MEAS:CURR? (@1)")
    assert float(reply) == pytest.approx(0.2 * g, rel=1e-6)
    (reply,) = emu.process(":MEAS:CURR? (@1,2)")
    assert [float(x) for x in reply.split(",")] == pytest.approx([0.2 * g, 0.0], rel=1e-6)
    assert emu.process(":SENS1:CURR:PROT:TRIP?") == ["0"]
    emu.process(":SENS1:CURR:PROT 1e-9")
    (reply,) = emu.process(":MEAS:CURR? (@1)")
    assert float(reply) == pytest.approx(1e-9)
    assert emu.process(":SENS1:CURR:PROT:TRIP?") == ["1"]
    emu.process(":FORM:ELEM:SENS CURR,VOLT")
    assert emu.process(":MEAS? (@1)") == ["+1.000000000E-09,+2.000000000E-01"]
    assert errors(emu) == []


def test_emulator_init_pulses_only_in_pulse_shape(emu):
    bench = emu.bench
    emu.process(":SOUR1:VOLT:TRIG 0.5")
    emu.process(":INIT (@1)")                       # DC shape: applies the DC level, turns on
    assert bench.pulses == 0 and bench.sources["B2900.1"].on and bench.sources["B2900.1"].level == 0.0
    emu.process(":SOUR1:FUNC:SHAP PULS;:SOUR1:PULS:WIDT 1e-6")  # the B2902A refuses < 50 µs
    assert errors(emu) == [(-222, "Data out of range: width 1e-06")]
    assert emu.process(":SOUR1:PULS:WIDT?") == ["+1.000000000E-04"]   # unchanged
    emu.process(":SOUR1:PULS:WIDT 5e-5")
    emu.process(":INIT:IMM:TRAN (@1)")
    assert bench.pulses == 1
    emu.process(":OUTP1 OFF;:OUTP1:ON:AUTO OFF;:INIT (@1)")  # no automatic output-on: no pulse
    assert bench.pulses == 1 and not bench.sources["B2900.1"].on
    assert errors(emu) == []


@pytest.mark.parametrize("command, code", [
    (":BOGus:COMMand 1", -113), (":SOUR1:VOLT:FOO 1", -113), (":SOUR3:VOLT 1", -114),
    (":SOUR1:VOLT abc", -104), (":SOUR1:VOLT 300", -222), (":SENS1:CURR:PROT 5", -222),
    (":SOUR1:PULS:WIDT 1e-7", -222), (":SOUR1:VOLT", -109), (":OUTP1 MAYBE", -104),
    (":SOUR1:FUNC VOLT", -224), (":SOUR1:FUNC:MODE RES", -224), (":INIT (@3)", -224),
    (":MEAS:CURR? (1)", -104), (":INIT (@x)", -104), (":SOUR1:VOLT 1e999", -222),
])
def test_emulator_errors_go_to_queue(emu, command, code):
    assert emu.process(command) == []
    assert emu.process(":SYST:ERR:COUN?") == ["1"]
    assert [c for c, _ in errors(emu)] == [code]
    assert emu.process(":SYST:ERR:NEXT?") == ['+0,"No error"']


def test_emulator_never_raises(emu):
    junk = ["", ";;;", ":", "::", "?", "*IDN? extra", "\x00\x01", ":SOUR1:VOLT \"0.1\"", "OUTP1 ON ON",
            ":SYST:ERR:NEXT", ":MEAS:CURR? (@", ":MEAS:CURR? (@1:9)", ":SENS:FUNC", "(@1)", ":SOUR#:VOLT 1",
            "x" * 10_000, ":SOUR1:VOLT nan", ":SOUR1:VOLT inf", "*RST?", ":FORM:ELEM:SENS FOO",
            ":INIT (@2:1)", ":SOUR99999999999999999999:VOLT 1"]
    for message in junk:
        assert isinstance(emu.process(message), list)
    assert errors(emu)
    assert emu.process("*IDN?") == [IDN]


# ----------------------------------------------------------------------- over loopback TCP
@pytest.fixture
def served():
    bench = wired_bench()
    emulator = KeysightB2900Emulator(bench)
    server = InstrumentServer(emulator)
    try:
        yield bench, emulator, server, f"TCPIP::127.0.0.1::{server.port}::SOCKET"
    finally:
        server.close()


@pytest.fixture
def driver(served):
    drv = KeysightB2900(served[3], timeout_ms=REPLY_MS)
    try:
        yield drv
    finally:
        drv.adapter.close()


def test_driver_reads_cell_over_tcp(served, driver):
    bench = served[0]
    g = bench.chip.true_conductance[0, 0, 0]
    ch = driver.ch_1
    assert "B2902A" in driver.identity()
    ch.setup(1e-3, 0.1)
    ch.set_level(0.2)
    assert not ch.output_enabled()
    ch.enable()
    assert ch.output_enabled()
    bench.set_source("AUX", level=0.2, on=True)      # guard: cells (0, 1..3) see 0 V
    assert ch.measure_current() == pytest.approx(0.2 * g, rel=1e-6)
    assert ch.compliance_tripped() is False
    bench.set_source("AUX", level=0.0, on=False)
    ch.disable()
    assert not ch.output_enabled()
    assert not bench.sources["B2900.1"].on and bench.sources["B2900.1"].level == 0.0
    assert bench.sources["B2900.1"].compliance == 1e-3
    assert driver.drain_errors() == []
    assert bench.violations == []


def test_driver_pulses_over_tcp(served, driver):
    bench = served[0]
    ch = driver.ch_1
    ch.setup(0.1, 0.1)
    g0 = bench.chip.true_conductance[0, 0, 0]
    ch.pulse(0.5, 1e-4)                             # below the 1 V SET threshold
    assert bench.pulses == 1
    assert bench.chip.true_conductance[0, 0, 0] == g0
    assert ch.compliance_tripped() is False
    ch.pulse(2.5, 1e-4)                             # SET
    assert bench.pulses == 2
    assert bench.chip.true_conductance[0, 0, 0] > g0 + 50e-6
    assert ch.output_enabled()                      # left on at the 0 V base
    assert bench.sources["B2900.1"].on and bench.sources["B2900.1"].level == 0.0
    ch.disable()
    assert driver.drain_errors() == []
    assert bench.violations == []


def test_timeout_names_instrument_and_command(served):
    emulator = served[1]
    drv = KeysightB2900(served[3], name="smu (keysight_b2900)", timeout_ms=300)
    try:
        emulator.faults.no_reply_next = 1
        with pytest.raises(InstrumentTimeout) as info:
            drv.ch_2.measure_current()
        assert "smu (keysight_b2900)" in str(info.value) and ":MEAS:CURR? (@2)" in str(info.value)
        assert "B2902A" in drv.identity()             # the link recovers
    finally:
        drv.adapter.close()


def test_instrument_error_is_drained_with_code(driver):
    driver.write(":BOGus:COMMand 1")
    driver.ch_1.write(":SOUR{ch}:VOLT 999")
    errs = driver.drain_errors()
    assert [c for c, _ in errs] == [-113, -222] and "Undefined header" in errs[0][1]
    assert driver.drain_errors() == []
