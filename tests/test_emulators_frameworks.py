"""Other people's drivers against our emulators, unchanged, over loopback TCP (pyvisa-py SOCKET
resources): QCoDeS's Keithley2450, Keithley2636B, KeysightB2962A and KeysightB2200, and
pymeasure's Keithley2450 and Keithley2600 (pymeasure has no B2900, B2200 or 707B driver; QCoDeS
has no 707B driver: the 707B is checked against its manual in test_keithley707b.py).

Each instrument drives one ideal cell (source on row 0, ground on column 0), so a measured current
is exactly V·G.  Every test also reads an error back after a bad command, and checks that a full
QCoDeS snapshot leaves the emulator's error queue empty (every parameter the driver queries is
understood)."""
from __future__ import annotations

import warnings

import pytest

# replies wait for the host: the mock bench's timeout (20 s), not the speed of the machine; a test of a dropped
# reply waits for a short one of its own
from mock_hw.mock_bench import MOCK_TIMEOUT_MS as REPLY_MS
from mock_hw.bench_physics import GROUND, PhysicalBench
from mock_hw.emulators.base import InstrumentServer
from mock_hw.emulators.keithley2450 import Keithley2450Emulator
from mock_hw.emulators.keithley2600 import Keithley2600Emulator
from mock_hw.emulators.keysight_b2200 import KeysightB2200Emulator
from mock_hw.emulators.keysight_b2900 import KeysightB2900Emulator
from mock_hw.sim_chip import SimulatedCrossbar

qcodes = pytest.importorskip("qcodes")
from qcodes.instrument import Instrument  # noqa: E402


def one_cell(source: str | None) -> PhysicalBench:
    """A 1x1 ideal chip: ``source`` on row 0 and ground on column 0 through matrix M."""
    bench = PhysicalBench(SimulatedCrossbar(1, 1, preset="ideal", seed=0))
    bench.wire_pin("M", "r0", ("row", 0))
    bench.wire_pin("M", "c0", ("col", 0))
    bench.wire_input("M", "G", GROUND)
    bench.set_relay("M", "G", "c0", True)
    if source is not None:
        bench.add_source(source)
        bench.wire_input("M", "S", source)
        bench.set_relay("M", "S", "r0", True)
    return bench


def g_cell(bench) -> float:
    return float(bench.chip.true_conductance[0, 0, 0])


@pytest.fixture
def serve():
    servers = []

    def start(emulator):
        server = InstrumentServer(emulator)
        servers.append(server)
        return f"TCPIP::127.0.0.1::{server.port}::SOCKET"
    yield start
    Instrument.close_all()
    for server in servers:
        server.close()


def no_errors(emu):
    with emu.lock:
        errors = list(emu.errors)
        emu.errors.clear()
    assert errors == []


# ------------------------------------------------------------------------------ QCoDeS
def test_qcodes_keithley2450(serve):
    from qcodes.instrument_drivers.Keithley import Keithley2450

    bench = one_cell(None)
    emu = Keithley2450Emulator(bench, source="K2450")
    bench.wire_input("M", "S", "K2450")
    bench.set_relay("M", "S", "r0", True)
    k = Keithley2450("k2450", serve(emu))
    assert k.IDN()["model"] == "2450"
    for sub in k.submodules.values():
        if "user_number" in getattr(sub, "parameters", {}):
            sub.user_number(1)           # the driver's user-delay query needs a user number
    snap = k.snapshot(update=True)
    no_errors(emu)
    assert snap["parameters"]["line_frequency"]["value"] == "50"
    k.reset()
    k.source_function("voltage")
    k.sense_function("current")
    k.source.range(2)
    k.source.limit(1e-3)
    k.source.voltage(0.2)
    k.output_enabled(True)
    g = g_cell(bench)
    assert k.sense.current() == pytest.approx(0.2 * g, rel=1e-6)
    assert k.source.limit_tripped() == 0
    buffer = k.buffer("defbuffer1")
    assert buffer.number_of_readings() == 1
    assert buffer.get_data(1, 1) == [pytest.approx(0.2 * g, rel=1e-6)]
    buffer.elements(["source_value", "measurement"])
    assert [float(x) for x in buffer.get_data(1, 1)] == [pytest.approx(0.2), pytest.approx(0.2 * g, rel=1e-6)]
    buffer.trigger_start()                           # :TRAC:TRIG 'defbuffer1'
    assert float(buffer.get_last_reading().split(",")[1]) == pytest.approx(0.2 * g, rel=1e-6)
    with k.buffer("mine", size=100) as mine:         # :TRAC:MAKE ... :TRAC:DEL
        assert mine.size() == 100 and mine.number_of_readings() == 0
    k.buffer_name("defbuffer1")
    k.sense.auto_zero_once()
    k.clear_event_register()
    k.clear_event_log()
    k.abort()
    k.wait()
    no_errors(emu)
    k.source.sweep_setup(0.0, 0.2, 3)                # :SOUR:SWE:VOLT:LIN, :INIT, *WAI, :TRAC:DATA?
    assert list(k.sense.sweep()) == pytest.approx([0.0, 0.1 * g, 0.2 * g], rel=1e-6, abs=1e-15)
    k.output_enabled(False)
    assert k.output_enabled() is False              # a query: the write has been handled
    assert not bench.sources["K2450"].on
    no_errors(emu)
    k.write(":SOUR:VOLT:BAD 1")
    assert k.ask(":SYST:ERR?").startswith("-113,")


def test_qcodes_keithley2636b(serve):
    from qcodes.instrument_drivers.Keithley import Keithley2636B
    from qcodes.instrument_drivers.Keithley._Keithley_2600 import Keithley2600MeasurementStatus as Status

    bench = one_cell(None)
    emu = Keithley2600Emulator(bench, sources={"a": "K2600.a", "b": "K2600.b"})
    bench.wire_input("M", "S", "K2600.a")
    bench.set_relay("M", "S", "r0", True)
    k = Keithley2636B("k2636b", serve(emu))
    assert k.model == "2636B" and k.IDN()["model"] == "2636B"
    k.snapshot(update=True)
    assert k.smua.linefreq() == 50                  # print(localnode.linefreq)
    no_errors(emu)
    k.reset()                         # reset() then the driver's snapshot(update=True)
    k.smua.reset()
    no_errors(emu)
    k.smua.mode("voltage")
    k.smua.limiti(1e-3)
    k.smua.volt(0.2)
    k.smua.output("on")
    g = g_cell(bench)
    assert k.smua.curr() == pytest.approx(0.2 * g, rel=1e-5)    # TSP prints %.5e
    assert k.smua.curr.measurement_status == Status.NORMAL
    assert k.smua.res() == pytest.approx(1 / g, rel=1e-5)
    k.smua.limiti(1e-9)               # compliance: the condition register's ILMT bit
    assert k.smua.curr() == pytest.approx(1e-9)
    assert k.smua.curr.measurement_status == Status.CURRENT_COMPLIANCE_ERROR
    k.smua.output("off")
    assert k.smua.output() is False
    assert not bench.sources["K2600.a"].on
    no_errors(emu)
    k.write("smua.source.levelv = bogus")
    assert k.ask("errorqueue.next()").startswith("-2.85000e+02\t")


def test_qcodes_keysight_b2962a(serve):
    from qcodes.instrument_drivers.Keysight import KeysightB2962A

    bench = one_cell(None)
    emu = KeysightB2900Emulator(bench, sources={1: "B.1", 2: "B.2"})
    bench.wire_input("M", "S", "B.1")
    bench.set_relay("M", "S", "r0", True)
    k = KeysightB2962A("b2962", serve(emu))
    assert k.IDN()["vendor"] == "Keysight Technologies"
    k.snapshot(update=True)
    no_errors(emu)
    k.ch1.source_mode("voltage")
    k.ch1.current_limit(1e-3)
    k.ch1.source_voltage(0.2)
    k.ch1.enable("on")
    k.ch1.remote_sensing("on")
    assert k.ch1.remote_sensing() is True
    g = g_cell(bench)
    assert k.ch1.current() == pytest.approx(0.2 * g, rel=1e-6)
    assert k.ch1.voltage() == pytest.approx(0.2)
    k.ch1.enable("off")
    assert k.ch1.enable() in (False, "off")
    assert not bench.sources["B.1"].on
    no_errors(emu)
    k.write(":SOUR1:VOLT 999")
    assert k.ask(":SYST:ERR?").startswith("-222,")


def test_qcodes_keysight_b2200(serve):
    from qcodes.instrument_drivers.Keysight.keysight_b220x import KeysightB2200

    bench = PhysicalBench(SimulatedCrossbar(1, 1, preset="ideal", seed=0))
    emu = KeysightB2200Emulator(bench, name="B2200", cards=1, inputs=14, outputs=12)
    bench.add_source("SRC")
    bench.wire_input("B2200", "101", "SRC")
    bench.wire_input("B2200", "112", GROUND)           # input 12: the ground-mode port
    bench.wire_pin("B2200", "101", ("row", 0))
    bench.wire_pin("B2200", "102", ("col", 0))
    k = KeysightB2200("b2200", serve(emu))
    assert k.IDN()["model"] == "B2200A"
    snap = k.snapshot(update=True)
    no_errors(emu)
    assert snap["parameters"]["connection_rule"]["value"] == "free"
    assert snap["parameters"]["gnd_input_port"]["value"] == 12
    k.connect(1, 1)                                  # card 0: auto configuration
    assert k.connections() == {(1, 1)}
    k.gnd_mode(True)                                 # input 12 to every free output: column 0 grounded
    assert k.connections() == {(1, 1)} | {(12, out) for out in range(2, 13)}
    bench.set_source("SRC", level=0.2, on=True)
    assert bench.measure_current("SRC") == pytest.approx(0.2 * g_cell(bench), rel=1e-6)
    bench.set_source("SRC", level=0.0, on=False)
    k.gnd_mode(False)
    k.connection_rule("single")
    k.connect(1, 2)                                  # single route: (1, 1) opens
    assert k.connections() == {(1, 2)}
    k.disconnect_all()
    assert k.connections() == set() and bench.closed_relays("B2200") == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        k.connect(1, 13)                             # no output 13: the status poll warns
    assert any("status byte" in str(w.message) for w in caught)
    assert k.get_error().startswith("-222,")
    k.reset()
    no_errors(emu)


# ---------------------------------------------------------------- pymeasure's own drivers
def test_pymeasure_drivers_read_errors_back(serve):
    from pymeasure.instruments.keithley import Keithley2450, Keithley2600

    bench = one_cell("K2450")
    pm = Keithley2450(serve(Keithley2450Emulator(bench, source="K2450")), visa_library="@py",
                      read_termination="\n", write_termination="\n", timeout=REPLY_MS)
    try:
        pm.write(":SOUR:VOLT 1e6")
        assert pm.check_errors()[0][0] == -222
        pm.apply_voltage(compliance_current=1e-3)
        pm.source_voltage = 0.1
        pm.enable_source()
        pm.measure_current(nplc=0.1)
        assert pm.current == pytest.approx(0.1 * g_cell(bench), rel=1e-6)
        pm.shutdown()
        assert pm.check_errors() == []
    finally:
        pm.adapter.close()

    bench = one_cell(None)
    emu = Keithley2600Emulator(bench, sources={"a": "A", "b": "B"})
    bench.wire_input("M", "S", "A")
    bench.set_relay("M", "S", "r0", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pm = Keithley2600(serve(emu), visa_library="@py", read_termination="\n", write_termination="\n",
                          timeout=REPLY_MS)
    try:
        pm.write("smua.source.levelv = nope")
        assert pm.next_error[0] == -285
        pm.ChA.apply_voltage(compliance_current=1e-3)
        pm.ChA.source_voltage = 0.1
        pm.ChA.source_output = "ON"
        assert pm.ChA.current == pytest.approx(0.1 * g_cell(bench), rel=1e-5)
        pm.ChA.source_output = "OFF"
        assert pm.next_error == (0, "Queue Is Empty")
    finally:
        pm.adapter.close()
