"""Keithley 2450 driver (exact SCPI strings), its emulator, and both together over loopback TCP —
including pymeasure's own, unmodified Keithley2450 driver against the emulator."""
from __future__ import annotations

import pytest
from pymeasure.instruments.keithley import Keithley2450 as PymeasureKeithley2450
from pymeasure.test import expected_protocol

from instruments.keithley2450 import Keithley2450
from instruments.base import parse_scpi_error as parse_error
from instruments.roles import InstrumentError
from instruments.roles import Identified, InstrumentTimeout, SourceChannel
# replies wait for the host: the mock bench's timeout (20 s), not the speed of the machine; a test of a dropped
# reply waits for a short one of its own
from mock_hw.mock_bench import MOCK_TIMEOUT_MS as REPLY_MS
from mock_hw.bench_physics import PhysicalBench
from mock_hw.emulators.base import InstrumentServer
from mock_hw.emulators.keithley2450 import Keithley2450Emulator
from mock_hw.sim_chip import SimulatedCrossbar

SETUP = [(":SOUR:FUNC VOLT", None), (":SOUR:VOLT:LEV 0", None), (':SENS:FUNC "CURR"', None),
         (":SENS:CURR:RANG:AUTO 1", None), (":SENS:CURR:NPLC 0.1", None), (":SOUR:VOLT:ILIM 0.001", None)]


# ------------------------------------------------------------------------------- protocol
def test_protocols_satisfied_and_name():
    with expected_protocol(Keithley2450, []) as k:
        assert isinstance(k, SourceChannel) and isinstance(k, Identified)
        assert k.name == "Keithley 2450"
    with expected_protocol(Keithley2450, [], name="smu (keithley2450)") as k:
        assert k.name == "smu (keithley2450)"


def test_setup():
    with expected_protocol(Keithley2450, SETUP) as k:
        k.setup(1e-3, 0.1)


@pytest.mark.parametrize("compliance, nplc", [(0.0, 1), (-1e-3, 1), (1.1, 1), (1e-10, 1),
                                              (1e-3, 0.001), (1e-3, 11), (1e-3, -1)])
def test_setup_refuses_before_writing(compliance, nplc):
    with expected_protocol(Keithley2450, []) as k:
        with pytest.raises(ValueError):
            k.setup(compliance, nplc)


def test_set_level_enable_disable_output():
    with expected_protocol(Keithley2450, [
        (":SOUR:VOLT:LEV 0.2", None), (":SOUR:VOLT:LEV -1.5", None),
        (":OUTP ON", None), (":OUTP?", "1"),
        (":SOUR:VOLT:LEV 0", None), (":OUTP OFF", None), (":OUTP?", "0"),
    ]) as k:
        k.set_level(0.2)
        k.set_level(-1.5)
        k.enable()
        assert k.output_enabled() is True
        k.disable()
        assert k.output_enabled() is False


@pytest.mark.parametrize("volts", [210.5, -211, 1e6])
def test_set_level_refuses(volts):
    with expected_protocol(Keithley2450, []) as k:
        with pytest.raises(ValueError):
            k.set_level(volts)


def test_measure_and_trip():
    with expected_protocol(Keithley2450, [
        (":READ?", "2.140315399E-05"), (":SOUR:VOLT:ILIM:TRIP?", "0"), (":SOUR:VOLT:ILIM:TRIP?", "1"),
    ]) as k:
        assert k.measure_current() == pytest.approx(2.140315399e-05)
        assert k.compliance_tripped() is False
        assert k.compliance_tripped() is True


def test_pulse_not_supported_sends_nothing():
    with expected_protocol(Keithley2450, []) as k:
        with pytest.raises(NotImplementedError, match="Keithley 2450 has no pulse mode"):
            k.pulse(2.0, 1e-6)


def test_identity_and_drain_errors():
    with expected_protocol(Keithley2450, [
        ("*IDN?", "KEITHLEY INSTRUMENTS,MODEL 2450,04096331,1.7.12b"),
        (":SYST:ERR:NEXT?", '-113,"Undefined header"'), (":SYST:ERR:NEXT?", '-222,"Parameter data out of range"'),
        (":SYST:ERR:NEXT?", '+0,"No error"'),
        (":SYST:ERR:NEXT?", '0,"No error"'),
    ]) as k:
        assert k.identity() == "KEITHLEY INSTRUMENTS,MODEL 2450,04096331,1.7.12b"
        assert k.drain_errors() == [(-113, "Undefined header"), (-222, "Parameter data out of range")]
        assert k.drain_errors() == []


def test_drain_errors_unreadable_reply_names_instrument():
    with expected_protocol(Keithley2450, [(":SYST:ERR:NEXT?", "garbage")], name="K1") as k:
        with pytest.raises(InstrumentError, match="K1: unexpected error-queue reply 'garbage'"):
            k.drain_errors()


def test_parse_error():
    assert parse_error('+0,"No error"') == (0, "No error")
    assert parse_error('-113,"Undefined header"') == (-113, "Undefined header")
    assert parse_error('-104, "Data type error"') == (-104, "Data type error")
    with pytest.raises(ValueError):
        parse_error("No error")


def test_properties():
    with expected_protocol(Keithley2450, [
        (":SOUR:VOLT:ILIM 0.0001", None), (":SOUR:VOLT:ILIM?", "1.000000E-04"),
        (":SENS:CURR:NPLC 10", None), (":SENS:CURR:NPLC?", "10"),
        (":SOUR:VOLT:LEV 1.25", None), (":SOUR:VOLT?", "1.25"),
        (":OUTP ON", None), (":OUTP OFF", None), (":OUTP?", "1"),
        (':SENS:FUNC "VOLT"', None), (":SENS:FUNC?", '"VOLT:DC"'), (":SENS:FUNC?", '"CURR:DC"'),
        (":SENS:CURR:RANG:AUTO 0", None), (":SENS:CURR:RANG:AUTO?", "1"),
        (":SOUR:VOLT:ILIM:TRIP?", "1"),
        (":SOUR:FUNC VOLT", None), (":SOUR:FUNC?", "VOLT"),
    ]) as k:
        k.compliance_current = 1e-4
        assert k.compliance_current == pytest.approx(1e-4)
        k.current_nplc = 10
        assert k.current_nplc == 10
        k.source_voltage = 1.25
        assert k.source_voltage == 1.25
        k.source_enabled = True
        k.source_enabled = False
        assert k.source_enabled is True
        k.sense_function = "voltage"
        assert k.sense_function == "voltage"
        assert k.sense_function == "current"
        k.current_range_auto = False
        assert k.current_range_auto is True
        assert k.compliance_current_tripped is True
        k.source_mode = "voltage"
        assert k.source_mode == "voltage"


@pytest.mark.parametrize("prop, value", [
    ("compliance_current", 0), ("compliance_current", 1.06), ("compliance_current", -0.01),
    ("current_nplc", 0.005), ("current_nplc", 10.5),
    ("source_voltage", 210.01), ("source_voltage", -300),
    ("source_enabled", "ON"), ("source_enabled", 2),
    ("sense_function", "CURR"), ("sense_function", "power"),
    ("current_range_auto", "yes"),
])
def test_validators_refuse_without_writing(prop, value):
    with expected_protocol(Keithley2450, []) as k:
        with pytest.raises(ValueError):
            setattr(k, prop, value)


def test_configure_current_measurement_is_pymeasures():
    with expected_protocol(Keithley2450, [
        (":SENS:FUNC 'CURR';:SENS:CURR:NPLC 0.100000;", None), (":SENS:CURR:RANG:AUTO 1;", None),
        (":SYST:ERR:NEXT?", '+0,"No error"'),
    ]) as k:
        k.configure_current_measurement(nplc=0.1)


# -------------------------------------------------------------------------- emulator, unit
def wired_bench(source: str, guard: bool = True) -> PhysicalBench:
    """``source`` on row 0, ground on column 0 through matrix M; with ``guard`` a bench bias
    supply "AUX" (off) is wired to columns 1-3, so turned on at the read level it leaves only
    cell (0, 0) conducting out of the source (without it, the floating lines add sneak currents:
    16/7 of the cell's on a uniform 4x4 array).

    The guard goes on only while ``source`` is on and off before it: the bench cannot solve a
    network whose rows all float while a column is live."""
    bench = PhysicalBench(SimulatedCrossbar(4, 4, preset="ideal", seed=0))
    bench.wire_input("M", "A", source)
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
    return Keithley2450Emulator(wired_bench("K2450"))


def errors(emulator):
    out = []
    while True:
        (reply,) = emulator.process(":SYST:ERR?")
        code, message = parse_error(reply)
        if code == 0:
            return out
        out.append((code, message))


def test_emulator_identity_and_reset_state(emu):
    assert emu.process("*IDN?") == ["KEITHLEY INSTRUMENTS,MODEL 2450,04096331,1.7.12b"]
    emu.process(":SOUR:VOLT 0.1;:OUTP ON")
    assert emu.bench.sources["K2450"].on and emu.bench.sources["K2450"].level == 0.1
    emu.process("*RST")
    assert emu.process(":OUTP?;:SOUR:VOLT?;:SOUR:FUNC?") == ["0;0.000000000E+00;VOLT"]
    assert not emu.bench.sources["K2450"].on and emu.bench.sources["K2450"].level == 0.0
    assert errors(emu) == []


@pytest.mark.parametrize("setter, query", [
    (":SOUR:VOLT:LEV 0.05", ":SOUR:VOLT?"),
    (":SOURce:VOLTage:LEVel:IMMediate:AMPLitude 0.05", ":sour:volt:lev?"),
    (":source1:voltage 0.05", ":SOURCE:VOLTAGE?"),
    ("sour:volt 5e-2", "SOUR1:VOLT?"),
])
def test_emulator_short_long_forms_and_case(emu, setter, query):
    assert emu.process(setter) == []
    assert emu.process(query) == ["5.000000000E-02"]
    assert emu.bench.sources["K2450"].level == 0.05
    assert errors(emu) == []


def test_emulator_settings_map_to_bench(emu):
    emu.process(":SOURce:VOLTage:ILIMit 2e-3;:OUTPut:STATe ON;:SOUR:VOLT 0.1")
    src = emu.bench.sources["K2450"]
    assert (src.compliance, src.on, src.level) == (2e-3, True, 0.1)
    assert emu.process(":sour:volt:ilim?;:outp:stat?") == ["2.000000000E-03;1"]
    emu.process("OUTPUT OFF")
    assert not src.on
    assert errors(emu) == []


def test_emulator_sense_settings(emu):
    emu.process(":SENS:FUNC 'CURR';:SENS:CURR:NPLC 0.1;:SENS:CURR:RANG:AUTO 0;:SENS:CURR:RANG 1e-3")
    assert emu.process(':SENSe:FUNCtion?;:sens:curr:nplc?;:SENS:CURR:RANG:AUTO?;:SENS:CURR:RANG?') == [
        '"CURR:DC";1.000000000E-01;0;1.000000000E-03']
    emu.process(':SENS:FUNC "VOLT"')
    assert emu.process(":SENS:FUNC?") == ['"VOLT:DC"']
    assert errors(emu) == []


def test_emulator_reads_current_and_trips(emu):
    g = emu.bench.chip.true_conductance[0, 0, 0]
    emu.process(":SOUR:VOLT 0.2;:SOUR:VOLT:ILIM 1e-3;:OUTP ON")
    emu.bench.set_source("AUX", level=0.2, on=True)
    (reply,) = emu.process(":READ?")
    assert float(reply) == pytest.approx(0.2 * g, rel=1e-6)
    assert emu.process(":SOUR:VOLT:ILIM:TRIP?") == ["0"]
    (reply,) = emu.process(":MEAS:CURR?")
    assert float(reply) == pytest.approx(0.2 * g, rel=1e-6)
    emu.process(":SOUR:VOLT:ILIM 1e-9")
    (reply,) = emu.process(":READ?")
    assert float(reply) == pytest.approx(1e-9)
    assert emu.process(":SOUR:VOLT:ILIM:TRIP?") == ["1"]
    emu.process(':SENS:FUNC "VOLT"')
    assert emu.process(":READ?") == ["2.000000000E-01"]
    assert emu.process(":TRAC:ACT?") == ["4"]
    emu.process(":TRAC:CLE")
    assert emu.process(":TRAC:ACT?") == ["0"]
    assert errors(emu) == []


def test_emulator_pymeasure_strings_accepted(emu):
    for message in ["*RST;:stat:pres;:*CLS;", ":SENS:FUNC 'CURR';:SENS:CURR:NPLC 1.000000;",
                    ":SENS:CURR:RANG:AUTO 1;", ":SOUR:VOLT:RANG:AUTO 0;:SOUR:VOLT:RANG 20",
                    ":SENS:CURR:RANG:AUTO 0;:SENS:CURR:RANG 0.001", ":SOUR:VOLT:DEL:AUTO 1",
                    ":SOUR:VOLT:DEL 0.01", ":SENS:CURR:AVER:TCON REP", ":SENS:CURR:AVER:COUNT 10",
                    ":SENS:CURR:AVER ON", ":OUTP:VOLT:SMOD HIMP", ":ROUT:TERM REAR", ":ROUT:TERM FRON",
                    ":SYST:BEEP 1000, 0.1", ":ABOR", "*TRG", ":SOUR:FUNC CURR", ":SOUR:CURR:LEV 1e-6",
                    ":SOUR:CURR:VLIM 5", ":SOUR:FUNC VOLT", "OUTPUT OFF"]:
        assert emu.process(message) == [], message
    assert emu.process("OUTPUT?;SYST:ERR?") == ['0;+0,"No error"']


@pytest.mark.parametrize("command, code", [
    (":BOGus:COMMand 1", -113), (":SOUR:VOLT:FOO 1", -113), (":SOUR2:VOLT 1", -114),
    (":SOUR:VOLT abc", -104), (":SOUR:VOLT 1,2", -104), (":SOUR:VOLT:ILIM 2", -222), (":SOUR:VOLT 300", -222),
    (":SENS:CURR:NPLC 0.001", -222), (":SOUR:VOLT", -109), (":OUTP MAYBE", -104),
    (':SENS:FUNC "POWER"', -224), (":SOUR:FUNC RES", -224), (":SOUR:VOLT 1e999", -222),
])
def test_emulator_errors_go_to_queue(emu, command, code):
    assert emu.process(command) == []
    assert emu.process(":SYST:ERR:COUN?") == ["1"]
    got = errors(emu)
    assert [c for c, _ in got] == [code]
    assert emu.process(":SYST:ERR:NEXT?") == ['+0,"No error"']


def test_emulator_never_raises(emu):
    junk = ["", ";;;", ":", "::", "?", "*IDN? extra", "\x00\x01", ":SOUR:VOLT \"0.1\"", "OUTP ON ON",
            ":SYST:ERR:NEXT", ":READ", ":TRAC:POIN -5", ":SENS:FUNC", "(@1)", ":SOUR#:VOLT 1",
            "x" * 10_000, ":SOUR:VOLT nan", ":SOUR:VOLT inf", "*RST?", ":SOUR:VOLT:ILIM:TRIP 1"]
    for message in junk:
        assert isinstance(emu.process(message), list)
    assert errors(emu)  # the junk was reported
    assert emu.process("*IDN?") == [Keithley2450Emulator.idn]


# ----------------------------------------------------------------------- over loopback TCP
@pytest.fixture
def served():
    bench = wired_bench("K2450")
    emulator = Keithley2450Emulator(bench)
    server = InstrumentServer(emulator)
    try:
        yield bench, emulator, server, f"TCPIP::127.0.0.1::{server.port}::SOCKET"
    finally:
        server.close()


@pytest.fixture
def driver(served):
    drv = Keithley2450(served[3], timeout_ms=REPLY_MS)
    try:
        yield drv
    finally:
        drv.adapter.close()


def test_driver_reads_cell_over_tcp(served, driver):
    bench = served[0]
    g = bench.chip.true_conductance[0, 0, 0]
    assert "MODEL 2450" in driver.identity()
    driver.setup(1e-3, 0.1)
    driver.set_level(0.2)
    assert not driver.output_enabled()
    driver.enable()
    assert driver.output_enabled()
    bench.set_source("AUX", level=0.2, on=True)      # guard: cells (0, 1..3) see 0 V
    assert driver.measure_current() == pytest.approx(0.2 * g, rel=1e-6)
    assert driver.compliance_tripped() is False
    bench.set_source("AUX", level=0.0, on=False)
    driver.disable()
    assert not driver.output_enabled()
    assert not bench.sources["K2450"].on and bench.sources["K2450"].level == 0.0
    assert bench.sources["K2450"].compliance == 1e-3
    assert driver.drain_errors() == []
    assert bench.violations == []


def test_driver_compliance_over_tcp(served, driver):
    driver.setup(1e-9, 0.01)
    driver.set_level(0.2)
    driver.enable()
    assert driver.measure_current() == pytest.approx(1e-9)
    assert driver.compliance_tripped() is True
    driver.disable()
    assert driver.drain_errors() == []


def test_pymeasure_driver_against_emulator(served):
    bench, emulator, _, resource = served
    g = bench.chip.true_conductance[0, 0, 0]
    pm = PymeasureKeithley2450(resource, visa_library="@py", read_termination="\n",
                               write_termination="\n", timeout=2000)
    try:
        pm.reset()
        pm.apply_voltage(compliance_current=1e-3)
        pm.measure_current(nplc=0.1)
        pm.source_voltage = 0.2
        pm.enable_source()
        assert pm.source_enabled is True
        bench.set_source("AUX", level=0.2, on=True)
        assert pm.current == pytest.approx(0.2 * g, rel=1e-6)
        bench.set_source("AUX", level=0.0, on=False)
        assert pm.compliance_current == pytest.approx(1e-3)
        assert pm.check_errors() == []
        pm.shutdown()          # ramps to 0 V, :ABOR, OUTPUT OFF
        assert pm.source_enabled is False
        assert not bench.sources["K2450"].on and bench.sources["K2450"].level == 0.0
        assert pm.check_errors() == []
    finally:
        pm.adapter.close()
    assert list(emulator.errors) == []


def test_timeout_names_instrument_and_command(served):
    emulator = served[1]
    drv = Keithley2450(served[3], name="smu (keithley2450)", timeout_ms=300)
    try:
        emulator.faults.no_reply_next = 1
        with pytest.raises(InstrumentTimeout) as info:
            drv.measure_current()
        assert "smu (keithley2450)" in str(info.value) and ":READ?" in str(info.value)
        assert "MODEL 2450" in drv.identity()       # the link recovers
    finally:
        drv.adapter.close()


def test_instrument_error_is_drained_with_code(driver):
    driver.write(":BOGus:COMMand 1")
    errs = driver.drain_errors()
    assert len(errs) == 1 and errs[0][0] == -113 and "Undefined header" in errs[0][1]
    assert driver.drain_errors() == []


def test_emulator_buffer_arguments(emu):
    """:TRAC:DATA? honours its index range, buffer and elements; :READ? returns the elements asked."""
    assert emu.process(":OUTP ON;:SOUR:VOLT 0.2") == []
    first = emu.process(':READ? "defbuffer1",SOUR,READ')[0].split(",")
    assert len(first) == 2 and float(first[0]) == pytest.approx(0.2)
    emu.process(":SOUR:VOLT 0.1")
    emu.process(":READ?")
    assert emu.process(":TRAC:ACT?") == ["2"]
    one = emu.process(':TRAC:DATA? 1,1,"defbuffer1",READ')[0].split(",")
    assert one == [first[1]]
    both = emu.process(":TRAC:DATA? 1,2,'defbuffer1',SOUR,READ")[0].split(",")
    assert [float(x) for x in both[::2]] == pytest.approx([0.2, 0.1])
    assert emu.process(":TRAC:DATA? 2,3") == [] and errors(emu)[0][0] == -222    # only 2 readings
    emu.process(":TRAC:MAKE 'mine',10;:TRAC:TRIG 'mine'")
    assert emu.process(":TRAC:ACT? 'mine';:TRAC:ACT? 'defbuffer2'") == ["1;0"]
    assert emu.process(":FETC? 'mine',UNIT,SOURUNIT") == ["Amp DC,Volt DC"]
    emu.process(":TRAC:DEL 'mine';:TRAC:DEL 'defbuffer1'")
    assert [code for code, _ in errors(emu)] == [-222]                           # a default buffer stays
    emu.process(":OUTP OFF")
