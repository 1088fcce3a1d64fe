"""The whole stack: tuner → HardwareCrossbar → drivers → VISA/pyserial → loopback TCP → emulators →
crossbar physics — and a fault-injection test for every safety rule."""
from __future__ import annotations

import json
from pathlib import Path
from dataclasses import replace

import numpy as np
import pytest

from instruments.hardware_crossbar import HardwareCrossbar, check_station
from instruments.roles import InstrumentError, InstrumentTimeout
from instruments.station import load_station
from mock_hw.mock_bench import MockBench
from mock_hw.sim_chip import SimulatedCrossbar
from procedures.cli import main
from programming.crossbar import LimitError
from programming.ir_correction import measure_line_resistance
from programming.auto_schedule import auto_schedule, with_width
from programming.tuner import TunerConfig, tune


def targets(shape=(4, 4), seed=1):
    return np.random.default_rng(seed).uniform(120e-6, 480e-6, size=shape)


def assert_safe(bench):
    assert bench.bench.all_off(), "outputs must be off and relays open"


def test_station_check_sources_nothing(bench, station, capsys):
    report = check_station(load_station(station))
    assert all(e["ok"] for e in report), report
    assert {e["name"] for e in report} == {"smu", "bias", "sm2450", "matrix", "b2200", "board", "fgen"}
    assert main(["station", "check", str(station)]) == 0
    out = capsys.readouterr().out
    assert "routing:" in out and "row 3" in out and "2636B" in out
    assert bench.bench.pulses == 0 and not any(s.on for s in bench.bench.sources.values())


def assert_writes_within_scheme(bench, scheme):
    """Every write: no unselected cell above the scheme's share of V, the selected one not above V
    (:meth:`~mock_hw.bench_physics.PhysicalBench.writes_beyond`), and the largest unselected
    voltage within the share of the largest write."""
    share = {"v/2": 1 / 2, "v/3": 1 / 3}[scheme]
    writes = bench.bench.writes
    assert writes, "the run wrote"
    assert bench.bench.writes_beyond(share, v_read=0.2) == []
    assert bench.bench.max_unselected <= share * max(w.v_selected for w in writes) + 1e-3


@pytest.mark.parametrize("variant,scheme,width", [("k2600-707b", "v/2", 1e-6), ("k2600-707b", "v/3", 1e-6),
                                                  ("b2900-board", "v/2", 50e-6)])
def test_tune_on_the_mock_bench_converges_without_violations(tmp_path, variant, scheme, width):
    """The loop and its safety through every layer: 1 µs pulses from the 33512B (the 2636B reads),
    50 µs from the B2902A (its shortest).  The chip's retention is frozen (time_scale 0) so that
    what is asserted is convergence, not the drift of the first cells while the others are tuned
    (seconds of instrument time; see benchmarks/bench_mock.py)."""
    with MockBench(4, 4, preset="tio2-3it", seed=3, time_scale=0.0) as bench:
        path = bench.write_station(tmp_path / f"{variant}.toml", variant=variant, write_scheme=scheme)
        with HardwareCrossbar(load_station(path)) as xb:
            r_line = measure_line_resistance(xb, r_access=bench.bench.r_access)[0][0]   # reads only
            res = tune(xb, targets(), TunerConfig(initial_reset=False, write_scheme=scheme, width=width,
                                                  reset_width=width, line_resistance=r_line,
                                                  access_resistance=bench.bench.r_access))
            rep = res.summary(xb)
        _assert_converged_safely(bench, res, rep, scheme)


def _assert_converged_safely(bench, res, rep, scheme):
    truth = bench.chip.true_conductance[0]
    working = bench.chip.working_mask[0]
    true_ok = np.abs(truth - res.targets[0]) <= 0.01 * res.targets[0]
    assert rep["yield"] >= 14 / 16
    assert true_ok[working].mean() >= 0.9
    assert bench.violations == [], bench.violations[:3]
    assert_writes_within_scheme(bench, scheme)
    assert_safe(bench)


@pytest.mark.parametrize("scheme,share", [("v/2", 1 / 2), ("v/3", 1 / 3)])
def test_write_levels_are_safe_in_any_order_of_application(scheme, share):
    """Every subset of the held levels applied (the pulse fires only once all are confirmed): no
    unselected cell above the scheme's share of V, the selected cell never above V, exactly V
    during the pulse."""
    import itertools

    from instruments.hardware_crossbar import write_levels
    from programming.crossbar import parse_write_scheme

    for v in (1.7, -2.1):
        pulse_v, held = write_levels(parse_write_scheme(scheme), v)
        roles = sorted(held)
        for n in range(len(roles) + 1):
            for applied in itertools.combinations(roles, n):
                for drive in (0.0, pulse_v) if n == len(roles) else (0.0,):
                    lv = {role: held[role] if role in applied else 0.0 for role in roles}
                    row = np.array([drive, 0.0, 0.0])                      # selected row, unselected rows
                    col = np.array([lv.get("sense", 0.0)] + [lv.get("bias_cols", 0.0)] * 2)
                    cell = np.abs(row[:, None] - col[None, :])
                    assert cell[0, 0] <= abs(v) + 1e-12
                    others = cell.copy()
                    others[0, 0] = 0.0
                    assert others.max() <= share * abs(v) + 1e-12, (applied, drive)
        full = np.array([pulse_v, 0.0])[:, None] - np.array([held.get("sense", 0.0), held.get("bias_cols", 0.0)])
        assert full[0, 0] == pytest.approx(v)


def test_the_bench_record_catches_textbook_v3_sequencing(bench):
    """Negative control: biases at V/3 and 2V/3 while the drive is still at 0 V (the old order)
    put 2V/3 across the selected row's cells, and the record says so."""
    b = bench.bench
    for src, inp in (("K2600.a", "A"), ("K2600.b", "B"), ("B2900.1", "C"), ("B2900.2", "D")):
        b.set_source(src, level=0.0, on=True)
    b.set_relay("M707B", "A", bench.pin_707b("row", 0), True)
    b.set_relay("M707B", "B", bench.pin_707b("col", 0), True)
    for i in range(1, 4):
        b.set_relay("M707B", "C", bench.pin_707b("row", i), True)
        b.set_relay("M707B", "D", bench.pin_707b("col", i), True)
    b.set_source("B2900.1", level=0.5)
    b.set_source("B2900.2", level=1.0)
    b.pulse("K2600.a", 1.5, 1e-6)
    w = b.writes[-1]
    assert (w.row, w.col, w.v_selected) == (0, 0, 1.5)
    assert w.v_unselected == pytest.approx(1.0) and w.v_unselected_pulse == pytest.approx(0.5)


def test_cli_tune_against_the_bench_reports_like_the_simulator(bench, station, tmp_path):
    out_bench, out_sim = tmp_path / "bench.json", tmp_path / "sim.json"
    assert main(["tune", "--station", str(station), "--size", "3x3", "--seed", "2", "--passes", "2",
                 "--no-reset", "--quiet", "--json", str(out_bench)]) == 0
    assert main(["tune", "--chip", "sim", "--size", "3x3", "--seed", "2", "--passes", "2",
                 "--no-reset", "--quiet", "--json", str(out_sim)]) == 0
    b, s = json.loads(out_bench.read_text()), json.loads(out_sim.read_text())
    assert set(b) == set(s), "same report format"
    assert b["cells"] == 9 and b["true_within_tol"] is None
    assert b["converged"] >= 8
    assert bench.violations == []
    assert_safe(bench)


def test_bench_agrees_statistically_with_the_simulated_chip(tmp_path):
    """Like for like: the simulated chip does not age while it is tuned, so the bench's chip is
    frozen too (time_scale 0); the bench keeps its own physics (held bias levels, routing)."""
    cfg = dict(initial_reset=False, passes=1, parallel=1)
    sim = SimulatedCrossbar(4, 4, preset="tio2-3it", seed=3)  # the same chip as the bench's
    r_sim = measure_line_resistance(sim)[0][0]                # both correct for their measured lines
    rep_sim = tune(sim, targets(seed=5), TunerConfig(line_resistance=r_sim, **cfg)).summary(sim)
    with MockBench(4, 4, preset="tio2-3it", seed=3, time_scale=0.0) as bench, \
            HardwareCrossbar(load_station(bench.write_station(tmp_path / "st.toml"))) as xb:
        r_access = bench.bench.r_access
        r_bench = measure_line_resistance(xb, r_access=r_access)[0][0]
        rep_bench = tune(xb, targets(seed=5), TunerConfig(line_resistance=r_bench, access_resistance=r_access,
                                                         **cfg)).summary(xb)
    for rep in (rep_sim, rep_bench):
        assert rep["yield"] >= 14 / 16
    ratio = rep_bench["pulses_per_cell"]["mean"] / rep_sim["pulses_per_cell"]["mean"]
    assert 0.5 < ratio < 2.0, (rep_bench["pulses_per_cell"], rep_sim["pulses_per_cell"])
    assert abs(rep_bench["rel_error_mean"] - rep_sim["rel_error_mean"]) < 0.005


# ------------------------------------------------------------------ safety: one test per rule
def test_rule1_limits_are_checked_before_any_command(bench, station):
    with HardwareCrossbar(load_station(station)) as xb:
        sent = {name: len(emu.log) for name, emu in bench.emulators.items()}
        with pytest.raises(LimitError, match="exceeds the limit v_max"):
            xb.pulse(0, 0, 2.6, 1e-6)
        with pytest.raises(LimitError, match="width"):
            xb.pulse(0, 0, 1.5, 5e-3)
        with pytest.raises(LimitError, match="v_read_max"):
            xb.read(0, 0, v_read=0.7)
        assert {name: len(emu.log) for name, emu in bench.emulators.items()} == sent, "nothing was written"
    assert bench.bench.pulses == 0


def test_rule2_no_hot_switching_and_the_detector_works(bench, station):
    with HardwareCrossbar(load_station(station)) as xb:
        for r, c in ((0, 0), (1, 2), (3, 3), (0, 0)):
            xb.read(r, c)
            xb.pulse(r, c, 1.3, 1e-6)
    assert bench.violations == []
    # negative control: a live source while a relay closes is recorded
    bench.bench.set_source("K2600.a", level=1.0, on=True)
    bench.bench.set_relay("M707B", "A", bench.pin_707b("row", 0), True)
    assert [v.kind for v in bench.violations] == ["hot-switch"]


def test_rule3_timeout_leaves_everything_off_and_open(bench, fault_station):
    with HardwareCrossbar(load_station(fault_station)) as xb:
        xb.read(1, 1)
        bench.emulators["K2600"].faults.no_reply_next = 1
        with pytest.raises(InstrumentTimeout, match="smu"):
            xb.read(2, 2)
        assert_safe(bench)
    assert_safe(bench)
    assert bench.violations == []


def test_rule3_ctrl_c_and_exceptions_leave_everything_off_and_open(bench, station, monkeypatch):
    xb = HardwareCrossbar(load_station(station))
    calls = {"n": 0}
    real = type(xb.ch["sense"]).measure_current

    def interrupt(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(type(xb.ch["sense"]), "measure_current", interrupt)
    with pytest.raises(KeyboardInterrupt):
        with xb:
            tune(xb, targets(), TunerConfig(initial_reset=False))
    assert_safe(bench)
    xb2 = HardwareCrossbar(load_station(station))
    with pytest.raises(RuntimeError, match="boom"):
        with xb2:
            xb2.read(0, 1)
            raise RuntimeError("boom")
    assert_safe(bench)
    assert bench.violations == []


def test_rule4_compliance_trips_and_error_queues_are_reported(bench, tmp_path):
    tight = bench.write_station(tmp_path / "tight.toml", i_compliance=1e-6)
    with HardwareCrossbar(load_station(tight)) as xb:
        with pytest.raises(InstrumentError, match="compliance"):
            xb.read(0, 0)
        assert_safe(bench)
    ok = bench.write_station(tmp_path / "ok.toml")
    with HardwareCrossbar(load_station(ok)) as xb:
        bench.emulators["M707B"].faults.error_next = 1
        with pytest.raises(InstrumentError, match="error queue"):
            xb.read(1, 0)
        assert_safe(bench)


def test_stuck_relay_is_detected(bench, station):
    bench.bench.stuck_open.add(("M707B", "B", bench.pin_707b("col", 2)))
    with HardwareCrossbar(load_station(station)) as xb:
        with pytest.raises(InstrumentError, match="did not close"):
            xb.read(0, 2)
        assert_safe(bench)
        xb.read(0, 1)  # other cells still work


def test_plugin_fixture_gives_a_working_station(mock_bench_station):
    bench, path = mock_bench_station
    with HardwareCrossbar(load_station(path)) as xb:
        g = xb.read(1, 1).conductance[0, 0]
    assert g == pytest.approx(bench.chip.true_conductance[0, 1, 1], rel=0.01)
    assert bench.violations == []


def test_cli_mock_bench_serves_until_sigterm_and_writes_its_record(tmp_path):
    """`xbar mock-bench --record` in its own process: ready when it prints "Ctrl-C to stop" (no
    fixed duration, no polling), stopped by SIGTERM, after which its safety record says every
    output is off, every relay open and nothing was violated."""
    import signal
    import subprocess
    import sys

    path, record = tmp_path / "st.toml", tmp_path / "record.json"
    proc = subprocess.Popen([sys.executable, "-m", "procedures.cli", "mock-bench", "--station-out", str(path),
                             "--size", "3x3", "--preset", "ideal", "--record", str(record)],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if "Ctrl-C to stop" in line:
                break
        assert json.loads(record.read_text())["running"] is True
        assert main(["station", "check", str(path)]) == 0
        assert main(["read", "--station", str(path), "--size", "3x3", "--map-file", str(tmp_path / "m.npy"),
                     "--out", str(tmp_path / "run"), "--no-plots", "--quiet"]) == 0
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    assert "mock bench stopped" in out
    rec = json.loads(record.read_text())
    assert rec["running"] is False and rec["outputs_on"] == [] and rec["relays_closed"] == []
    assert rec["counts"] == {"hot-switch": 0, "short": 0, "limit": 0} and rec["violations"] == []
    g = np.load(tmp_path / "m.npy")
    assert g.shape == (3, 3) and np.all((g > 50e-6) & (g < 600e-6))
    safe = json.loads((tmp_path / "run" / "run.json").read_text())["safe_state"]
    assert safe.startswith("confirmed ") and "relays open" in safe and "could not" not in safe


def test_realistic_timing_slows_reads():
    import time

    with MockBench(2, 2, preset="ideal", realistic_timing=True) as b:
        src = "K2600.b"
        b.bench.set_source(src, level=0.0, on=True)
        t0 = time.perf_counter()
        b.bench.measure_current(src)
        assert time.perf_counter() - t0 >= 2e-3


def test_on_instrument_write_verify_one_round_trip_per_cell(bench, station):
    servers = bench.servers.values()
    with HardwareCrossbar(load_station(station).without_pulse_generator()) as xb:
        xb.drivers["smu"].load_write_verify()
        t = targets(seed=9)
        # the 2600B's script writes with its own SMU: pulses from its 100 µs (on_instrument_limits),
        # amplitudes from the cells' own response at that width, as `xbar tune --on-instrument`
        cfg = auto_schedule(xb, with_width(TunerConfig(initial_reset=False, seed=1), 1e-4))[0]
        for r, c in ((0, 0), (1, 2), (3, 1)):
            xb._route(r, c, bias="on-instrument")   # routing first, so only the loop is counted
            n0 = sum(s.replies for s in servers)
            res = xb.write_verify_on_instrument(r, c, float(t[r, c]), cfg)
            assert sum(s.replies for s in servers) - n0 == 1
            assert res["status"] == "converged"
            assert abs(res["final"] - t[r, c]) <= 0.01 * t[r, c]   # the script's own verify read
            # its raw reads go through the relay path and the lines (the host's IR-drop correction
            # is tested in test_on_instrument): on this 4x4 they read up to ~0.8 % low
            true = bench.chip.true_conductance[0, r, c]
            assert abs(true - t[r, c]) <= 0.02 * t[r, c]
        with pytest.raises(ValueError, match="exceeds the chip limit"):
            xb.write_verify_on_instrument(0, 0, 300e-6, replace(cfg, v_reset_max=2.6, reset_amplitude=2.6))
    assert bench.violations == []
    assert_safe(bench)


def test_bench_mvm_drives_rows_and_measures_columns(tmp_path):
    with MockBench(3, 4, preset="ideal", seed=4) as b:
        st = load_station(b.write_station(tmp_path / "s.toml"))
        v = np.array([[0.2, 0.0, 0.1], [0.1, 0.1, 0.0]])
        with HardwareCrossbar(st) as xb:
            got = xb.mvm(v)
            one = xb.mvm(v[0])
        want = b.chip.mvm(v)   # the same chip simulated directly (nonlinear I-V, ideal lines)
        assert got.shape == (1, 2, 4) and one.shape == (1, 4)
        np.testing.assert_allclose(got, want, rtol=3e-5)  # the SMU prints 6 digits
        np.testing.assert_allclose(one[0], want[0, 0], rtol=3e-5)
        assert b.violations == []


def test_line_solver_compiled_before_any_instrument_answers(tmp_path):
    """A fresh process (numba's dispatchers empty, as on a cold cache) has the line sweep's
    kernel built once the bench is constructed: the first query's solve cannot spend its VISA
    timeout compiling.  The bench's chip is untouched by the warm-up: it reads like a chip that
    never saw it."""
    import subprocess
    import sys
    code = (
        "from programming import line_sweep\n"
        "assert not line_sweep._KERNEL, 'kernel built before the bench'\n"
        "from mock_hw.mock_bench import MockBench\n"
        "b = MockBench(6, 6, seed=4)\n"
        "k = line_sweep._KERNEL.get('sweep')\n"
        "print(0 if k is None else len(k.signatures))\n"
        "b.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=str(Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().splitlines()[-1]) >= 1
    with MockBench(6, 6, seed=4) as bench:
        twin = SimulatedCrossbar(6, 6, seed=4)
        assert np.array_equal(bench.chip.true_conductance, twin.true_conductance)
        row_v = np.zeros(6)
        row_v[2] = 0.2
        a = bench.chip.drive_lines(row_v, np.zeros(6), width=1e-3, r_access=bench.bench.r_access)
        b = twin.drive_lines(row_v, np.zeros(6), width=1e-3, r_access=bench.bench.r_access)
        assert np.array_equal(a.col_current, b.col_current)
        assert np.array_equal(bench.chip.true_conductance, twin.true_conductance)
