"""Keysight 33500B pulse generator: exact SCPI strings, limits refused before writing, the emulator
refusing what the instrument refuses, and both together over loopback TCP pulsing a cell."""
from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from instruments.base import parse_scpi_error
from instruments.keysight_33500b import Keysight33500B
from instruments.roles import Identified, InstrumentError, PulseGenerator
from mock_hw.bench_physics import GROUND, PhysicalBench
from mock_hw.emulators.base import InstrumentServer
from mock_hw.emulators.keysight_33500b import Keysight33500BEmulator
from mock_hw.sim_chip import SimulatedCrossbar

SETUP = [("OUTP1 0", None), ("OUTP1:LOAD INF", None), ("SOUR1:FUNC PULS", None),
         ("SOUR1:FUNC:PULS:PER 1.000000e-03", None), ("SOUR1:FUNC:PULS:WIDT 1.000000e-04", None),
         ("SOUR1:VOLT:OFFS 0", None), ("SOUR1:VOLT 0.1", None), ("SOUR1:VOLT:OFFS 0.05", None),
         ("SOUR1:FUNC:PULS:TRAN:BOTH 1.000000e-08", None), ("SOUR1:BURS:MODE TRIG", None),
         ("SOUR1:BURS:NCYC 1", None), ("SOUR1:BURS:STAT 1", None), ("TRIG1:SOUR BUS", None)]


def test_roles():
    with expected_protocol(Keysight33500B, [], name="fgen") as g:
        assert isinstance(g, Identified) and isinstance(g.ch_1, PulseGenerator)
        assert g.ch_2.name == "fgen ch2" and g.limits.model == "33512B"


def test_setup_arm_fire_strings():
    with expected_protocol(Keysight33500B, SETUP + [
        # shorter than the period: width first, then the period (width < period at every step)
        ("SOUR1:FUNC:PULS:WIDT 1.000000e-06", None), ("SOUR1:FUNC:PULS:PER 2.000000e-06", None),
        ("SOUR1:VOLT:HIGH 1.5", None), ("SOUR1:VOLT:LOW 0", None), ("OUTP1:POL NORM", None),
        ("OUTP1 1", None), ("*TRG;*OPC?", "1"), ("OUTP1 0", None), ("OUTP1?", "0"),
        # longer: the period first; a negative pulse is the inverted one, idling at 0 V
        ("SOUR1:FUNC:PULS:PER 4.000000e-03", None), ("SOUR1:FUNC:PULS:WIDT 2.000000e-03", None),
        ("SOUR1:VOLT:LOW -2", None), ("SOUR1:VOLT:HIGH 0", None), ("OUTP1:POL INV", None),
    ]) as g:
        ch = g.ch_1
        ch.setup()
        ch.arm(1.5, 1e-6)
        ch.enable()
        ch.fire()
        ch.disable()
        assert ch.output_enabled() is False
        ch.arm(-2.0, 2e-3)


@pytest.mark.parametrize("amplitude, width", [(1.5, 1e-8), (1.5, 15e-9), (1.5, 2e6), (10.5, 1e-6), (-11, 1e-6),
                                              (1e-3, 1e-6), (float("nan"), 1e-6), (1.5, float("inf"))])
def test_arm_refuses_before_writing(amplitude, width):
    """A pulse shorter than the 33500B's 16 ns (or beyond its levels) is refused, nothing written."""
    with expected_protocol(Keysight33500B, SETUP) as g:
        g.ch_1.setup()
        with pytest.raises(ValueError):
            g.ch_1.arm(amplitude, width)


def test_unconfirmed_pulse_raises():
    with expected_protocol(Keysight33500B, [("*TRG;*OPC?", "0")], name="fgen") as g:
        with pytest.raises(InstrumentError, match="fgen ch1: pulse not confirmed"):
            g.ch_1.fire()


# ------------------------------------------------------------------------------ emulator
@pytest.fixture
def bench():
    return PhysicalBench(SimulatedCrossbar(2, 2, preset="tio2-3it", seed=0), time_scale=0)


def errors(emu):
    out = []
    while (e := parse_scpi_error(emu.process("SYST:ERR?")[0]))[0] != 0:
        out.append(e)
    return out


@pytest.mark.parametrize("command, code", [
    ("FUNC:PULS:WIDT 1e-8", -222), ("FUNC:PULS:WIDT 2e6", -222), ("FUNC:PULS:WIDT 2e-3", -221),
    ("FUNC:PULS:TRAN 2e-6", -222), ("FUNC:PULS:TRAN 5e-9", -222), ("VOLT 30", -222),
    ("OUTP1:LOAD INF;VOLT 12;VOLT:OFFS 5", -222), ("*TRG", -211), ("SOUR3:VOLT 1", -114),
])
def test_emulator_refuses_what_the_instrument_refuses(bench, command, code):
    emu = Keysight33500BEmulator(bench)
    before = dict(emu.ch[1])
    emu.process(command)
    assert [c for c, _ in errors(emu)][-1:] == [code]
    assert emu.ch[1]["width"] == before["width"] and emu.ch[1]["offset"] == before["offset"]


def test_driver_pulses_a_cell_through_the_emulator(bench):
    emu = Keysight33500BEmulator(bench, sources={1: "G", 2: "G2"})
    bench.wire_input("M", "A", "G")
    bench.wire_input("M", "B", GROUND)
    bench.wire_pin("M", "r0", ("row", 0))
    bench.wire_pin("M", "c0", ("col", 0))
    server = InstrumentServer(emu)
    gen = Keysight33500B(f"TCPIP::127.0.0.1::{server.port}::SOCKET")
    try:
        ch = gen.ch_1
        ch.setup()
        bench.set_relay("M", "A", "r0", True)
        bench.set_relay("M", "B", "c0", True)
        g0 = bench.chip.true_conductance[0, 0, 0]
        ch.arm(2.2, 1e-6)
        ch.enable()
        assert ch.output_enabled()                                          # (a query: in sync)
        assert bench.sources["G"].on and bench.sources["G"].level == 0.0    # idles at 0 V
        ch.fire()
        g1 = bench.chip.true_conductance[0, 0, 0]
        assert bench.pulses == 1 and g1 > g0                                # SET
        ch.disable()
        ch.arm(-2.4, 1e-6)
        ch.enable()
        assert ch.output_enabled() and bench.sources["G"].level == pytest.approx(0.0)  # inverted: idle 0 V
        ch.fire()
        assert bench.chip.true_conductance[0, 0, 0] < g1                     # RESET
        ch.disable()
        assert gen.drain_errors() == []
        bench.open_all("M")
        assert bench.violations == []
    finally:
        gen.adapter.close()
        server.close()
