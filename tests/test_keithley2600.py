"""Keithley 2600B driver (exact TSP strings), its emulator, the on-instrument write-verify script,
and all of them together over loopback TCP on the mock bench."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from pymeasure.test import expected_protocol

import instruments.keithley2600 as k26
from instruments.keithley2600 import (
    WRITE_VERIFY_DEFAULTS, Keithley2600, parse_write_verify_reply, pulse_command, script_lines,
    write_verify_arguments, write_verify_command, write_verify_script,
)
from instruments.roles import Identified, InstrumentError, InstrumentTimeout, SourceChannel
# replies wait for the host: the mock bench's timeout (20 s), not the speed of the machine; a test of a dropped
# reply waits for a short one of its own
from mock_hw.mock_bench import MOCK_TIMEOUT_MS as REPLY_MS
from mock_hw.bench_physics import PhysicalBench
from mock_hw.emulators.base import InstrumentServer
from mock_hw.emulators.keithley2600 import Keithley2600Emulator
from mock_hw.sim_chip import SimulatedCrossbar
from programming.tuner import TunerConfig, config_dict, tune

ERRNEXT = "print(errorqueue.next())"
EMPTY = "0.00000e+00\tQueue Is Empty\t0.00000e+00\t1.00000e+00"
PULSE_A = ("smua.source.levelv = 0; smua.source.output = smua.OUTPUT_ON; smua.trigger.source.listv({1.5}); "
           "smua.trigger.source.action = smua.ENABLE; smua.trigger.measure.action = smua.DISABLE; "
           "smua.trigger.arm.count = 1; smua.trigger.arm.stimulus = 0; smua.trigger.source.stimulus = 0; "
           "smua.trigger.count = 1; smua.trigger.endpulse.action = smua.SOURCE_IDLE; "
           "smua.trigger.endsweep.action = smua.SOURCE_IDLE; trigger.timer[1].count = 1; "
           "trigger.timer[1].passthrough = false; trigger.timer[1].delay = 1e-06; "
           "trigger.timer[1].stimulus = smua.trigger.SOURCE_COMPLETE_EVENT_ID; "
           "smua.trigger.endpulse.stimulus = trigger.timer[1].EVENT_ID; smua.trigger.initiate(); "
           "waitcomplete(); print(1)")
WV_CALL = ("xbar_wv(smua, smua, 0.0003, 0.01, 0.2, 2, 1.1, 1.1, 0.05, 2.1, 2.4, 1e-06, 1, 0.0001, 0.2, "
           "200, 5, 0.02, 0.6, 2, 1e-06)")
WV_REPLY = "converged,2,3,3.00100e-04,-2.00000e+00,2.90000e-04,1.10000e+00,3.00000e-04,0.00000e+00,3.00100e-04"


def load_pairs():
    return ([("loadscript xbarwv", None)] + [(line, None) for line in script_lines()]
            + [("endscript", None), ("xbarwv.run()", None), ("print(type(xbar_wv))", "function")])


# =============================================================================== driver
def test_protocols_and_names():
    with expected_protocol(Keithley2600, []) as inst:
        assert isinstance(inst, Identified)
        assert isinstance(inst.smua, SourceChannel) and isinstance(inst.smub, SourceChannel)
        assert inst.name == "Keithley 2600B"
        assert (inst.smua.name, inst.smub.name) == ("2600B smua", "2600B smub")
        assert inst.ChA.channel == "a"  # pymeasure's own channels are still there
        assert inst.channel("smub") is inst.smub and inst.channel("A") is inst.smua
        assert inst.channel(inst.smua) is inst.smua
        with pytest.raises(ValueError):
            inst.channel("c")


def test_no_scpi_unknown_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with expected_protocol(Keithley2600, []):
            pass


@pytest.mark.parametrize("prop, value, command", [
    ("source_voltage", 0.2, "smua.source.levelv = 0.2"),
    ("source_voltage", -1.5, "smua.source.levelv = -1.5"),
    ("compliance_current", 1e-3, "smua.source.limiti = 0.001"),
    ("current_nplc", 0.01, "smua.measure.nplc = 0.01"),
    ("source_enabled", True, "smua.source.output = smua.OUTPUT_ON"),
    ("source_enabled", False, "smua.source.output = smua.OUTPUT_OFF"),
    ("source_mode", "voltage", "smua.source.func = smua.OUTPUT_DCVOLTS"),
    ("source_mode", "current", "smua.source.func = smua.OUTPUT_DCAMPS"),
    ("current_range_auto", True, "smua.measure.autorangei = smua.AUTORANGE_ON"),
    ("output_off_mode", "high_z", "smua.source.offmode = smua.OUTPUT_HIGH_Z"),
])
def test_property_set(prop, value, command):
    with expected_protocol(Keithley2600, [(command, None)]) as inst:
        setattr(inst.smua, prop, value)


@pytest.mark.parametrize("prop, query, reply, value", [
    ("source_voltage", "print(smub.source.levelv)", "2.00000e-01", 0.2),
    ("compliance_current", "print(smub.source.limiti)", "1.00000e-03", 1e-3),
    ("current_nplc", "print(smub.measure.nplc)", "1.00000e+00", 1.0),
    ("source_enabled", "print(smub.source.output)", "1.00000e+00", True),
    ("source_enabled", "print(smub.source.output)", "0.00000e+00", False),
    ("source_enabled", "print(smub.source.output)", "2.00000e+00", False),
    ("source_mode", "print(smub.source.func)", "1.00000e+00", "voltage"),
    ("source_mode", "print(smub.source.func)", "0.00000e+00", "current"),
    ("current", "print(smub.measure.i())", "-5.99000e-05", -5.99e-5),
    ("compliance_current_tripped", "print(smub.source.compliance)", "true", True),
    ("compliance_current_tripped", "print(smub.source.compliance)", "false", False),
])
def test_property_get(prop, query, reply, value):
    with expected_protocol(Keithley2600, [(query, reply)]) as inst:
        assert getattr(inst.smub, prop) == pytest.approx(value) if isinstance(value, float) \
            else getattr(inst.smub, prop) == value


def test_elapsed_time_reads_the_instruments_timer():
    with expected_protocol(Keithley2600, [("print(timer.measure.t())", "1.23456e+01")]) as inst:
        assert inst.elapsed_time() == pytest.approx(12.3456)
    with expected_protocol(Keithley2600, [("print(timer.measure.t())", "nil")]) as inst:
        with pytest.raises(InstrumentError, match="timer reading 'nil'"):
            inst.elapsed_time()


@pytest.mark.parametrize("prop, value", [
    ("source_voltage", 200.5), ("source_voltage", -201), ("source_voltage", float("nan")), ("compliance_current", 0), ("compliance_current", 2.0),
    ("current_nplc", 0.0001), ("current_nplc", 30), ("source_enabled", "on"), ("source_enabled", 3), ("source_mode", "resistance"),
    ("current_range_auto", "yes"),
])
def test_validators_write_nothing(prop, value):
    with expected_protocol(Keithley2600, []) as inst:
        with pytest.raises(ValueError):
            setattr(inst.smua, prop, value)


def test_compliance_reply_must_be_boolean():
    with expected_protocol(Keithley2600, [("print(smua.source.compliance)", "1.00000e+00")]) as inst:
        with pytest.raises(ValueError):
            inst.smua.compliance_tripped()


def test_setup():
    with expected_protocol(Keithley2600, [
        ("smua.source.func = smua.OUTPUT_DCVOLTS", None),
        ("smua.source.levelv = 0", None),
        ("smua.source.limiti = 0.001", None),
        ("smua.measure.nplc = 1", None),
        ("smua.measure.autorangei = smua.AUTORANGE_ON", None),
        ("smua.source.offmode = smua.OUTPUT_HIGH_Z", None),
    ]) as inst:
        inst.smua.setup(compliance=1e-3, nplc=1)


@pytest.mark.parametrize("compliance, nplc", [(2.0, 1), (0, 1), (1e-3, 0), (1e-3, 26), (-1e-3, 1)])
def test_setup_refuses_bad_values_writing_nothing(compliance, nplc):
    with expected_protocol(Keithley2600, []) as inst:
        with pytest.raises(ValueError):
            inst.smua.setup(compliance, nplc)


def test_level_enable_disable_state_measure():
    with expected_protocol(Keithley2600, [
        ("smub.source.levelv = 0.2", None),
        ("smub.source.output = smub.OUTPUT_ON", None),
        ("print(smub.source.output)", "1.00000e+00"),
        ("print(smub.measure.i())", "6.00000e-05"),
        ("print(smub.source.compliance)", "false"),
        ("smub.source.levelv = 0", None),
        ("smub.source.output = smub.OUTPUT_OFF", None),
        ("print(smub.source.output)", "0.00000e+00"),
    ]) as inst:
        inst.smub.set_level(0.2)
        inst.smub.enable()
        assert inst.smub.output_enabled() is True
        assert inst.smub.measure_current() == pytest.approx(6e-5)
        assert inst.smub.compliance_tripped() is False
        inst.smub.disable()
        assert inst.smub.output_enabled() is False


def test_measure_current_refuses_non_number():
    with expected_protocol(Keithley2600, [("print(smua.measure.i())", "nil")]) as inst:
        with pytest.raises(InstrumentError, match="Keithley 2600B"):
            inst.smua.measure_current()


def test_pulse_is_one_trigger_model_line():
    assert pulse_command("a", 1.5, 1e-6) == PULSE_A
    pulse_a = PULSE_A.replace("delay = 1e-06", "delay = 0.0001")
    pulse_b = PULSE_A.replace("smua", "smub").replace("timer[1]", "timer[2]").replace("{1.5}", "{-2.25}") \
        .replace("delay = 1e-06", "delay = 0.00025")
    with expected_protocol(Keithley2600, [(pulse_a, "1.00000e+00"), (pulse_b, "1.00000e+00")]) as inst:
        inst.smua.pulse(1.5, 1e-4)
        inst.smub.pulse(-2.25, 2.5e-4)


def test_pulse_must_be_confirmed():
    with expected_protocol(Keithley2600, [(PULSE_A.replace("delay = 1e-06", "delay = 0.0001"), "nil")]) as inst:
        with pytest.raises(InstrumentError, match="pulse not confirmed"):
            inst.smua.pulse(1.5, 1e-4)


@pytest.mark.parametrize("amplitude, width", [(250, 1e-4), (1.0, 0), (1.0, 1e-9), (1.0, 20.0),
                                              (float("nan"), 1e-4), (1.0, float("inf")),
                                              (1.0, 1e-6), (1.0, 99e-6)])   # the 2600B's pulses: >= 100 µs
def test_pulse_refuses_bad_values_writing_nothing(amplitude, width):
    with expected_protocol(Keithley2600, []) as inst:
        with pytest.raises(ValueError):
            inst.smua.pulse(amplitude, width)


def test_identity_and_drain_errors():
    with expected_protocol(Keithley2600, [
        ("*IDN?", "Keithley Instruments Inc., Model 2636B, 4040404, 4.0.4"),
        (ERRNEXT, "-2.85000e+02\tProgram syntax error\t2.00000e+00\t1.00000e+00"),
        (ERRNEXT, "-2.22000e+02\tParameter data out of range\t2.00000e+00\t1.00000e+00"),
        (ERRNEXT, EMPTY),
        (ERRNEXT, EMPTY),
    ]) as inst:
        assert inst.identity() == "Keithley Instruments Inc., Model 2636B, 4040404, 4.0.4"
        assert inst.drain_errors() == [(-285, "Program syntax error"), (-222, "Parameter data out of range")]
        assert inst.check_errors() == []


def test_drain_errors_refuses_garbage():
    with expected_protocol(Keithley2600, [(ERRNEXT, "\x15#?garbled?#")]) as inst:
        with pytest.raises(InstrumentError, match="error-queue reply"):
            inst.drain_errors()


def test_pymeasure_next_error_still_works():
    with expected_protocol(Keithley2600, [(ERRNEXT, EMPTY)]) as inst:
        assert inst.next_error == (0, "Queue Is Empty")


# ---------------------------------------------------------------------- write-verify (driver)
def test_script_is_package_data_and_plain_text():
    text = write_verify_script()
    assert "function xbar_wv(src, sense," in text and text.isascii()
    assert script_lines() == [line.rstrip() for line in text.splitlines() if line.strip()]
    # the Lua 5.0 of the 2600B has no '#' length operator
    assert all("#" not in line.split("--")[0] for line in script_lines())


def test_load_write_verify_protocol():
    with expected_protocol(Keithley2600, load_pairs()) as inst:
        inst.load_write_verify()


def test_load_write_verify_failure_reports_errors():
    pairs = load_pairs()[:-1] + [("print(type(xbar_wv))", "nil"),
                                 (ERRNEXT, "-2.86000e+02\tTSP runtime error\t2.00000e+00\t1.00000e+00"),
                                 (ERRNEXT, EMPTY)]
    with expected_protocol(Keithley2600, pairs) as inst:
        with pytest.raises(InstrumentError, match="-286"):
            inst.load_write_verify()


def test_write_verify_is_one_line_one_reply():
    with expected_protocol(Keithley2600, load_pairs() + [(WV_CALL, WV_REPLY), (WV_CALL, WV_REPLY)]) as inst:
        result = inst.write_verify("a", 300e-6, {"v_read": 0.2})   # loads the script first
        assert result == {"status": "converged", "pulses": 2, "reads": 3, "final": 3.001e-4,
                          "trace": [(-2.0, 2.9e-4), (1.1, 3.0e-4), (0.0, 3.001e-4)]}
        assert inst.write_verify(inst.smua, 300e-6)["status"] == "converged"  # loaded once


def test_write_verify_sense_channel_and_tuner_config():
    call = WV_CALL.replace("smua, smua", "smua, smub").replace("0.2, 200", "0.25, 200")
    cfg = TunerConfig(v_read=0.25)
    with expected_protocol(Keithley2600, load_pairs() + [(call, WV_REPLY)]) as inst:
        assert inst.write_verify("smua", 3e-4, cfg, sense="b")["pulses"] == 2


def test_write_verify_defaults_match_tuner_config():
    tuner = config_dict(TunerConfig())
    for key, value in WRITE_VERIFY_DEFAULTS.items():
        if key != "v_read":
            assert tuner[key] == value, key
    assert write_verify_command("a", "a", 300e-6, {"initial_reset": False}).endswith(", 0, 1e-06)")


@pytest.mark.parametrize("target, config", [
    (-1e-4, {}), (0, {}), (float("nan"), {}), (3e-4, {"tolerance": 0.7}), (3e-4, {"consecutive": 0}),
    (3e-4, {"consecutive": 1.5}), (3e-4, {"v_set_start": 2.5}), (3e-4, {"guard": 1.0}),
    (3e-4, {"width": 1e-9}), (3e-4, {"width": 2e-4}), (3e-4, {"v_reset_max": 300.0}),
    (3e-4, {"v_step": -0.05}), (3e-4, {"tolerence": 0.01}), (3e-4, {"max_pulses": True}),
    (3e-4, {"width_ramp": 0.5}), (3e-4, "fast"),
])
def test_write_verify_refuses_bad_settings_writing_nothing(target, config):
    with expected_protocol(Keithley2600, []) as inst:
        with pytest.raises((ValueError, TypeError)):
            inst.write_verify("a", target, config)


@pytest.mark.parametrize("reply", [
    "garbage", "converged,2,3", "running,2,3,3e-4,0,1,0,1,0,1",
    "converged,2,2,3.00100e-04,-2.00000e+00,2.90000e-04,1.10000e+00,3.00100e-04,0,1",  # pair count
    "converged,3,3,3.00100e-04,-2.00000e+00,2.90000e-04,1.10000e+00,3.00000e-04,0.00000e+00,3.00100e-04",
    "converged,2,3,3.00200e-04,-2.00000e+00,2.90000e-04,1.10000e+00,3.00000e-04,0.00000e+00,3.00100e-04",
])
def test_write_verify_refuses_malformed_reply(reply):
    with pytest.raises(ValueError):
        parse_write_verify_reply(reply)
    with expected_protocol(Keithley2600, [(WV_CALL, reply)]) as inst:
        inst._wv_loaded = True
        with pytest.raises(InstrumentError, match="write-verify reply"):
            inst.write_verify("a", 300e-6)


# ============================================================================= emulator
@pytest.fixture
def bench():
    return PhysicalBench(SimulatedCrossbar(4, 4, preset="ideal", seed=0))


def wire_brief(bench):
    """smua on row 0 and column 0 grounded, every other line floating."""
    bench.wire_input("M", "A", "K2600.a")
    bench.wire_input("M", "G", "GND")
    bench.wire_pin("M", "r0", ("row", 0))
    bench.wire_pin("M", "c0", ("col", 0))
    bench.set_relay("M", "A", "r0", True)
    bench.set_relay("M", "G", "c0", True)


def wire_sensed(bench):
    """smua on row 0, smub (0 V, the ammeter) on column 0, every other line grounded: the column
    current is exactly the cell's (no sneak path, no other cell of the column biased)."""
    bench.wire_input("M", "A", "K2600.a")
    bench.wire_input("M", "B", "K2600.b")
    bench.wire_input("M", "G", "GND")
    for i in range(4):
        bench.wire_pin("M", f"r{i}", ("row", i))
        bench.wire_pin("M", f"c{i}", ("col", i))
    bench.set_relay("M", "A", "r0", True)
    bench.set_relay("M", "B", "c0", True)
    for i in range(1, 4):
        bench.set_relay("M", "G", f"r{i}", True)
        bench.set_relay("M", "G", f"c{i}", True)


def g_true(bench, r=0, c=0):
    return float(bench.chip.true_conductance[0, r, c])


@pytest.fixture
def emu(bench):
    return Keithley2600Emulator(bench)


def one(emu, command):
    replies = emu.process(command)
    assert len(replies) == 1, (command, replies)
    return replies[0]


def errors(emu):
    return [code for code, _ in emu.errors]


def test_emulator_statements_and_prints(emu, bench):
    assert one(emu, "*IDN?") == "Keithley Instruments Inc., Model 2636B, 4040404, 4.0.4"
    assert one(emu, "print(localnode.model)") == "2636B"
    for cmd in ("smua.source.func = smua.OUTPUT_DCVOLTS", "smua.source.levelv = 0.2",
                "smua.source.limiti=0.010000", "smua.measure.nplc = 0.5", "smua.source.output = smua.OUTPUT_ON",
                "smua.measure.autorangei = smua.AUTORANGE_ON", "smua.sense=0", "smua.source.autorangev=1"):
        assert emu.process(cmd) == [], cmd
    s = bench.sources["K2600.a"]
    assert (s.level, s.on, s.compliance) == (0.2, True, 0.01)
    assert one(emu, "print(smua.source.levelv)") == "2.00000e-01"
    assert one(emu, "print(smua.source.output, smua.source.func)") == "1.00000e+00\t1.00000e+00"
    assert one(emu, "print(smua.measure.nplc)") == "5.00000e-01"
    assert one(emu, "print(smua.source.compliance)") == "false"
    assert one(emu, "print(smua.measure.v())") == "2.00000e-01"
    assert one(emu, "print(smua.measure.i())") == "0.00000e+00"  # nothing routed: no current
    assert emu.process("smua.measure.i()") == []  # a reading as a statement prints nothing
    assert one(emu, "print(trigger.timer[3].delay, trigger.timer[3].passthrough)") == "1.00000e-05\tfalse"
    emu.process("smua.source.output = smua.OUTPUT_OFF")
    assert bench.sources["K2600.a"].on is False
    assert not emu.errors


def test_emulator_measures_through_bench(emu, bench):
    wire_sensed(bench)
    for cmd in ("smua.source.levelv = 0.2", "smua.source.output = smua.OUTPUT_ON", "smub.source.levelv = 0",
                "smub.source.output = smub.OUTPUT_ON"):
        emu.process(cmd)
    assert float(one(emu, "print(smub.measure.i())")) == pytest.approx(-0.2 * g_true(bench), rel=1e-5)
    row = float(bench.chip.true_conductance[0, 0].sum())
    assert float(one(emu, "print(smua.measure.i())")) == pytest.approx(0.2 * row, rel=1e-5)
    i, v = one(emu, "print(smua.measure.iv())").split("\t")
    assert float(v) == 0.2 and float(i) == pytest.approx(0.2 * row, rel=1e-5)
    emu.process("smua.source.limiti = 1e-5")  # below the cell current: compliance
    assert float(one(emu, "print(smua.measure.i())")) == pytest.approx(1e-5)
    assert one(emu, "print(smua.source.compliance)") == "true"


def test_emulator_trigger_model_pulse_and_dc_step(emu, bench):
    wire_sensed(bench)
    emu.process("smub.source.output = smub.OUTPUT_ON")
    before, n = g_true(bench), bench.pulses
    assert emu.process(PULSE_A) == ["1.00000e+00"]
    assert not emu.errors and bench.pulses == n + 1 and g_true(bench) > before
    s = bench.sources["K2600.a"]
    assert s.on and s.level == 0.0
    # the same sweep with the output off reaches nothing
    emu.process("smua.source.output = smua.OUTPUT_OFF")
    emu.process("smua.trigger.initiate()")
    assert bench.pulses == n + 1 and not emu.errors
    # SOURCE_HOLD sweep: DC steps, back to the idle level at the end (endsweep SOURCE_IDLE)
    for cmd in ("smua.source.output = smua.OUTPUT_ON", "smua.trigger.endpulse.action = smua.SOURCE_HOLD",
                "smua.trigger.source.linearv(0, 0.3, 4)", "smua.trigger.count = 4",
                "smua.trigger.measure.action = smua.ENABLE", "smua.trigger.initiate()"):
        emu.process(cmd)
    assert not emu.errors and bench.pulses == n + 1 and s.level == 0.0
    assert len(emu.smu["a"].buffer) == 4 and emu.smu["a"].buffer[0] == pytest.approx(0.0, abs=1e-12)


def test_emulator_errors_never_raise_nor_evaluate(emu, bench):
    cases = [
        ("print(1+1)", -285), ("os.exit()", -285), ("print(os.time())", -285), ("smua.source.levelv = 1+1", -285),
        ("smua.source.levelv = 500", -222), ("smua.source.output = 5", -222), ("smua.measure.nplc = 0", -222),
        ("smua.source.compliance = true", -286), ("smuc.source.levelv = 1", -285), ("trigger.timer[9].delay = 1", -286),
        ("bogus", -285), ("\x00\xff\xfe", -285), ("print(", -285), ("smua.source.levelv = smua.NOPE", -285),
        ("xbar_wv(smua, smua, 1)", -286), ("xbarwv.run()", -285), ("smua.trigger.source.listv({1, 500})", -222),
    ]
    for cmd, code in cases:
        emu.errors.clear()
        assert emu.process(cmd) == [], cmd
        assert errors(emu) == [code], (cmd, list(emu.errors))
    assert bench.sources["K2600.a"].level == 0.0
    emu.errors.clear()
    emu.process("smua.source.func = smua.OUTPUT_DCAMPS")
    assert emu.process("print(smua.measure.i())") == [] and errors(emu) == [-221]
    emu.errors.clear()
    emu.process("smua.trigger.count = 0")
    emu.process("smua.source.func = smua.OUTPUT_DCVOLTS")
    emu.process("smua.trigger.initiate()")
    assert errors(emu) == [-221]
    # the error queue, as TSP prints it, then empty
    assert one(emu, ERRNEXT).startswith("-2.21000e+02\tSettings conflict")
    assert one(emu, ERRNEXT) == EMPTY
    assert one(emu, "print(errorqueue.count)") == "0.00000e+00"


def test_emulator_script_checks(emu):
    assert one(emu, "print(type(xbar_wv))") == "nil"
    emu.process(WV_CALL)
    assert errors(emu) == [-286]  # calling the undefined function
    emu.errors.clear()
    # scripts run sandboxed: no os, io, load, require, string.dump (a TSP runtime error, -286)
    for bad in ("os.exit()", "io.open('x', 'w')", "load('return 1')()", "require('os')", "string.dump(print)"):
        emu.process("loadscript xbarwv")
        for line in script_lines() + [bad]:
            assert emu.process(line) == []
        emu.process("endscript")
        emu.process("xbarwv.run()")
        assert errors(emu) == [-286], bad
        emu.errors.clear()
    assert one(emu, "print(type(os))") == "nil"
    emu.errors.clear()
    emu.process("loadscript xbarwv")
    for line in script_lines():
        emu.process(line)
    emu.process("endscript")
    assert emu.scripts["xbarwv"].split("\n") == [line.strip() for line in script_lines()]
    emu.process("xbarwv()")
    assert not emu.errors and one(emu, "print(type(xbar_wv))") == "function"


# ------------------------------------------------------------- the write-verify algorithm
def test_script_run_by_the_emulator_equals_tuner_per_cell_loop():
    """The packaged script, run as real Lua by the emulated 2600B, pulses and reads exactly as
    programming.tuner's host loop on the same (ideal, 1x1) chip: one definition of the loop."""
    for target in (300e-6, 150e-6):
        cfg = TunerConfig(passes=1, v_read=0.2)
        xb = SimulatedCrossbar(1, 1, preset="ideal", seed=0)
        trace = tune(xb, np.array([[target]]), cfg, record_trace=True).trace
        amps = [float(a) for k, a in zip(trace["kind"], trace["amplitude"]) if k == 1]
        reads = [float(g) for k, g in zip(trace["kind"], trace["reading"]) if k == 0]

        bench = PhysicalBench(SimulatedCrossbar(1, 1, preset="ideal", seed=0))
        wire_brief(bench)
        emu = Keithley2600Emulator(bench)
        for line in ["loadscript xbarwv", *script_lines(), "endscript", "xbarwv.run()"]:
            emu.process(line)
        out = parse_write_verify_reply(one(emu, write_verify_command("a", "a", target, config_dict(cfg))))
        assert not emu.errors and emu.lua is not None
        assert out["status"] == "converged" and out["pulses"] == len(amps) == bench.pulses
        assert [a for a, _ in out["trace"] if a] == pytest.approx(amps, abs=1e-12)
        assert [g for _, g in out["trace"]] == pytest.approx(reads, rel=2e-5)   # (%.5e; read-backs not traced)


class _Device:
    """A deterministic toy memristor for the Lua-vs-Python comparison."""

    def __init__(self, g, step=2e-6, frozen=False):
        self.g, self.step, self.frozen, self.log = g, step, frozen, []

    def current(self, v):
        return self.g * v

    def pulse(self, a, w):
        self.log.append((a, w))
        if self.frozen:
            return
        if a > 1.0:
            self.g = min(self.g + self.step * (a - 1.0) ** 2 / 0.01 * (w / 1e-6) ** 0.5, 600e-6)
        elif a < -1.0:
            self.g = max(self.g - self.step * (-a - 1.0) ** 2 / 0.01 * (w / 1e-6) ** 0.5, 10e-6)


_LUA_PRELUDE = """
trigger = {timer = {{EVENT_ID = 31}}}
function waitcomplete() end
function make_smu(dev)
  local smu = {OUTPUT_DCVOLTS = 1, OUTPUT_ON = 1, ENABLE = 1, DISABLE = 0, SOURCE_IDLE = 0,
               source = {levelv = 0}, measure = {},
               trigger = {SOURCE_COMPLETE_EVENT_ID = 3, source = {}, measure = {}, arm = {},
                          endpulse = {}, endsweep = {}}}
  smu.measure.i = function() return dev.current(dev, smu.source.levelv) end
  smu.trigger.source.listv = function(t) smu.list = t end
  smu.trigger.initiate = function() dev.pulse(dev, smu.list[1], trigger.timer[1].delay) end
  return smu
end
"""


@pytest.mark.parametrize("g0, target, config, frozen", [
    (100e-6, 300e-6, {}, False), (500e-6, 150e-6, {"initial_reset": False}, False),
    (300e-6, 300e-6, {}, False), (100e-6, 300e-6, {"v_set_max": 1.2, "pulses_at_cap": 2, "width_ramp": 2.0}, False),
    (200e-6, 300e-6, {}, True), (100e-6, 300e-6, {"max_pulses": 7}, False),
])
def test_lua_script_runs_in_lua51_and_lua54(g0, target, config, frozen):
    """Runs the packaged script in plain Lua 5.1 and 5.4 (the 2600B's TSP is Lua 5.0: the script
    keeps to what they share) on a toy device: the same line in both, the expected status."""
    lupa = pytest.importorskip("lupa")
    runtimes = [m for m in ("lua51", "lua54") if _has(lupa, m)]
    if not runtimes:
        pytest.skip("no Lua runtime in lupa")
    args = write_verify_arguments(target, config)
    lines, logs = [], []
    for name in runtimes:
        mod = __import__(f"lupa.{name}", fromlist=["LuaRuntime"])
        rt = mod.LuaRuntime()
        printed = []
        rt.execute(_LUA_PRELUDE)
        rt.globals().print = printed.append
        rt.execute(write_verify_script())
        lua_dev = _Device(g0, frozen=frozen)
        smu = rt.globals().make_smu(lua_dev)
        rt.globals().xbar_wv(smu, smu, *args)
        assert len(printed) == 1, name
        lines.append(printed[0])
        logs.append(lua_dev.log)
    assert all(line == lines[0] for line in lines) and all(log == logs[0] for log in logs)
    reply = parse_write_verify_reply(lines[0])
    assert reply["pulses"] == len(logs[0])
    assert reply["status"] == ("stuck" if frozen else "failed" if "max_pulses" in config
                               or "v_set_max" in config else "converged")


def _has(lupa, name):
    try:
        __import__(f"lupa.{name}")
        return True
    except ImportError:
        return False


# ============================================================================ over TCP
@pytest.fixture
def served(emu):
    server = InstrumentServer(emu)
    yield emu, server
    server.close()


@pytest.fixture
def k2600(served):
    emu, server = served
    inst = Keithley2600(f"TCPIP::127.0.0.1::{server.port}::SOCKET", timeout_ms=REPLY_MS)
    yield inst
    inst.adapter.close()


def test_tcp_read_and_pulse(k2600, bench):
    wire_sensed(bench)
    assert k2600.identity() == "Keithley Instruments Inc., Model 2636B, 4040404, 4.0.4"
    for ch in (k2600.smua, k2600.smub):
        ch.setup(compliance=1e-2, nplc=1)
        ch.enable()
        assert ch.output_enabled()
    k2600.smua.set_level(0.2)
    g0 = g_true(bench)
    assert -k2600.smub.measure_current() == pytest.approx(0.2 * g0, rel=1e-5)
    assert not k2600.smub.compliance_tripped()
    k2600.smua.set_level(0)
    k2600.smua.pulse(1.5, 1e-4)
    g1 = g_true(bench)
    assert g1 > g0 and bench.pulses == 1
    k2600.smua.set_level(0.2)
    assert -k2600.smub.measure_current() == pytest.approx(0.2 * g1, rel=1e-5)
    k2600.smua.disable()
    assert not k2600.smua.output_enabled() and bench.sources["K2600.a"].level == 0.0
    assert k2600.drain_errors() == []
    assert bench.violations == []


def test_tcp_brief_wiring_reads_the_network(k2600, bench):
    """Row 0 on smua, column 0 grounded, the rest floating: smua reads the cell plus the sneak
    paths through the floating lines, as the nodal solution says."""
    wire_brief(bench)
    k2600.smua.setup(1e-2, 1)
    k2600.smua.enable()
    k2600.smua.set_level(0.2)
    nan = float("nan")
    sol = bench.chip.drive_lines([0.2, nan, nan, nan], [0.0, nan, nan, nan])
    assert k2600.smua.measure_current() == pytest.approx(float(sol.row_current[0, 0]), rel=1e-6)
    k2600.smua.set_level(0)
    before = g_true(bench)
    k2600.smua.pulse(-2.0, 1e-4)
    assert g_true(bench) < before


def test_tcp_pymeasure_own_driver(served, bench):
    """pymeasure's unmodified Keithley2600 (its ChA / ChB) against the emulator."""
    from pymeasure.instruments.keithley import Keithley2600 as PymeasureKeithley2600

    emu, server = served
    wire_sensed(bench)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pm = PymeasureKeithley2600(f"TCPIP::127.0.0.1::{server.port}::SOCKET", visa_library="@py",
                                   read_termination="\n", write_termination="\n", timeout=2000)
    try:
        assert pm.id == "Keithley Instruments Inc., Model 2636B, 4040404, 4.0.4"
        for ch in (pm.ChA, pm.ChB):
            ch.apply_voltage(compliance_current=0.01)
            ch.source_voltage = 0
            ch.source_output = "ON"
        pm.ChA.source_voltage = 0.2
        assert pm.ChA.source_voltage == pytest.approx(0.2)
        assert pm.ChA.source_output == "ON" and pm.ChA.source_mode == "voltage"
        assert pm.ChA.compliance_current == pytest.approx(0.01)
        assert -pm.ChB.current == pytest.approx(0.2 * g_true(bench), rel=1e-5)
        assert pm.ChA.current == pytest.approx(0.2 * float(bench.chip.true_conductance[0, 0].sum()), rel=1e-5)
        assert pm.ChA.voltage == pytest.approx(0.2)
        pm.ChA.measure_current(nplc=1, auto_range=True)  # configures: measure.i(), nplc, autorange
        assert emu.smu["a"].attrs["measure.nplc"] == 1.0
        pm.ChA.source_output = "OFF"
        assert pm.check_errors() == []  # a query: the write before it has been handled
        assert bench.sources["K2600.a"].on is False
        assert pm.next_error == (0, "Queue Is Empty")
        assert not emu.errors
    finally:
        pm.adapter.close()


def _check_ramp(trace, cfg):
    """Signed pulse amplitudes obey the ramp rule: start on a new polarity, + v_step on a repeat,
    capped (the initial RESET sets no polarity)."""
    pulses = [a for a, _ in trace if a != 0]
    assert pulses and pulses[0] == pytest.approx(-cfg["reset_amplitude"])
    last = 0.0
    for a in pulses[1:]:
        pol = 1 if a > 0 else -1
        start, cap = (cfg["v_set_start"], cfg["v_set_max"]) if pol > 0 else (cfg["v_reset_start"], cfg["v_reset_max"])
        if last == 0 or (last > 0) != (a > 0):
            assert abs(a) == pytest.approx(start, abs=1e-6)
        else:
            assert abs(a) == pytest.approx(min(abs(last) + cfg["v_step"], cap), abs=1e-6)
        last = a


def test_tcp_write_verify_end_to_end(k2600, served, bench):
    emu, _ = served
    wire_sensed(bench)
    k2600.smua.setup(compliance=1e-2, nplc=1)
    k2600.smub.setup(compliance=1e-2, nplc=1)
    k2600.load_write_verify()
    assert emu._script_type("xbar_wv") == "function"
    cfg = dict(WRITE_VERIFY_DEFAULTS, v_read=0.2)
    n_messages, n_pulses = len(emu.log), bench.pulses
    result = k2600.write_verify("a", 300e-6, cfg, sense="b")
    assert len(emu.log) - n_messages == 1          # ONE message, ONE reply for the whole cell
    assert result["status"] == "converged"
    assert abs(g_true(bench) - 300e-6) <= 0.01 * 300e-6
    assert result["final"] == pytest.approx(g_true(bench), rel=1e-5)
    assert result["pulses"] == bench.pulses - n_pulses and result["reads"] == len(result["trace"])
    _check_ramp(result["trace"], cfg)
    # tuned down again, from the other side, with the script already loaded
    n_messages = len(emu.log)
    down = k2600.write_verify(k2600.smua, 150e-6, {"initial_reset": False}, sense=k2600.smub)
    assert len(emu.log) - n_messages == 1
    assert down["status"] == "converged" and abs(g_true(bench) - 150e-6) <= 0.01 * 150e-6
    assert down["trace"][0][0] == 0.0 and any(a < 0 for a, _ in down["trace"])
    s = bench.sources["K2600.a"]
    assert s.on and s.level == 0.0
    assert k2600.drain_errors() == []
    assert bench.violations == []


def test_tcp_write_verify_loads_script_on_first_use(k2600, served, bench):
    emu, _ = served
    wire_sensed(bench)
    k2600.smub.setup(1e-2, 1)
    k2600.smub.enable()
    result = k2600.write_verify("a", 200e-6, {"v_read": 0.2}, sense="b")
    assert emu.wv_runs == 1 and result["status"] == "converged"


def test_tcp_load_rejected_script_raises(k2600, served, monkeypatch):
    emu, _ = served
    monkeypatch.setattr(k26, "script_lines", lambda text=None: ["function xbar_wv( end"])
    with pytest.raises(InstrumentError, match="-286"):
        k2600.load_write_verify()
    assert emu._script_type("xbar_wv") == "nil"


def test_tcp_timeout_names_instrument_and_command(served, bench):
    emu, server = served
    inst = Keithley2600(f"TCPIP::127.0.0.1::{server.port}::SOCKET", timeout_ms=300)
    try:
        emu.faults.no_reply_next = 1
        with pytest.raises(InstrumentTimeout) as info:
            inst.smua.measure_current()
        assert "Keithley 2600B" in str(info.value) and "print(smua.measure.i())" in str(info.value)
        assert inst.identity().startswith("Keithley Instruments Inc.")  # still in step afterwards
    finally:
        inst.adapter.close()


def test_tcp_error_queue_drained_with_codes(k2600, served):
    emu, _ = served
    k2600.write("smua.source.levelv = 500")      # out of range
    k2600.write("print(1+1)")                    # not evaluated: a syntax error
    k2600.write("smua.source.compliance = true")  # read-only
    errs = k2600.drain_errors()
    assert [c for c, _ in errs] == [-222, -285, -286]
    assert all(isinstance(m, str) and m for _, m in errs)
    assert k2600.drain_errors() == []


def test_tcp_write_verify_runtime_error_is_reported(k2600, served, bench):
    """An instrument-side failure (no reply, errors queued) becomes InstrumentError with codes."""
    emu, _ = served
    k2600.load_write_verify()
    emu.faults.error_next = 1   # the call itself fails on the instrument: no reply, an error queued
    with pytest.raises(InstrumentError, match="-300"):
        k2600.write_verify("a", 300e-6, timeout_s=0.5)


def test_lua_script_bias_smu_holds_vread_for_reads_and_half_amplitude_for_pulses():
    """The optional bias SMU (every unselected line): at V_read while reading, so the row's other
    cells see 0 V, and at half the amplitude while pulsing (V/2).  Real Lua, as above."""
    lupa = pytest.importorskip("lupa")
    runtimes = [m for m in ("lua51", "lua54") if _has(lupa, m)]
    if not runtimes:
        pytest.skip("no Lua runtime in lupa")
    args = write_verify_arguments(300e-6, {})
    mod = __import__(f"lupa.{runtimes[0]}", fromlist=["LuaRuntime"])
    rt = mod.LuaRuntime()
    printed = []
    rt.execute(_LUA_PRELUDE)
    rt.globals().print = printed.append
    rt.execute(write_verify_script())
    g = rt.globals()
    seen = []

    class Watched(_Device):
        def current(self, v):
            seen.append(("read", float(g.bias.source.levelv), v))
            return super().current(v)

        def pulse(self, a, w):
            seen.append(("pulse", float(g.bias.source.levelv), a))
            super().pulse(a, w)

    smu = g.make_smu(Watched(100e-6))
    g.bias = g.make_smu(_Device(0.0))
    g.xbar_wv(smu, smu, *args, g.bias)
    assert len(printed) == 1 and printed[0].startswith("converged,")
    reads = [s for s in seen if s[0] == "read"]
    pulses = [s for s in seen if s[0] == "pulse"]
    assert reads and pulses
    assert all(level == pytest.approx(v) for _, level, v in reads)
    assert all(level == pytest.approx(a / 2) for _, level, a in pulses)
    assert float(g.bias.source.levelv) == 0.0
    assert write_verify_command("a", "a", 300e-6, {}, "b").endswith(", smub)")
