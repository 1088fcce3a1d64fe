"""The on-instrument loop: the 2600B's script (real Lua, sandboxed in the emulated 2636B) routes
each cell through the 707B over TSP-Link, tunes a batch of cells per call and reads them back in
one call; the sandbox stops runaway scripts with the 2600B's error and the emulator carries on."""
from __future__ import annotations

import numpy as np
import pytest

from instruments.hardware_crossbar import HardwareCrossbar
from instruments.keithley2600 import Keithley2600
from instruments.station import load_station
from mock_hw.mock_bench import MOCK_TIMEOUT_MS as REPLY_MS, MockBench
from procedures.cli import main
from programming.auto_schedule import auto_schedule, with_width
from programming.tuner import TunerConfig, tune


def _replies(bench) -> int:
    return sum(s.replies for s in bench.servers.values())


def test_on_instrument_tune_matches_the_host_loop_in_few_round_trips(tmp_path):
    """Same chip (seeded), same TunerConfig: the script's loop and the host loop both bring every
    cell truly within tolerance; the script takes at most 3 round trips per cell in all (routing
    and read-backs included), switches no live relay and keeps unselected cells at V/2."""
    targets = np.random.default_rng(5).uniform(150e-6, 450e-6, size=(3, 3))
    truths, statuses = {}, {}
    for loop in (False, True):
        with MockBench(3, 3, preset="ideal", seed=3, time_scale=0.0) as bench:
            station = load_station(bench.write_station(tmp_path / f"s{loop}.toml", variant="k2600-707b-smu"))
            with HardwareCrossbar(station) as xb:
                cfg = auto_schedule(xb, with_width(TunerConfig(seed=1), 1e-4))[0]   # the same probe both times
                n0, calls0 = _replies(bench), bench.emulators["K2600"].wv_runs
                res = tune(xb, targets, cfg, on_instrument=loop)
                trips = _replies(bench) - n0
                calls = bench.emulators["K2600"].wv_runs - calls0
            truths[loop] = bench.chip.true_conductance[0].copy()
            statuses[loop] = res.status[0].copy()
            assert bench.violations == [] and bench.bench.all_off()
            assert 0 < bench.bench.max_unselected <= 0.5 * max(w.v_selected for w in bench.bench.writes) + 1e-3
            if loop:
                assert trips <= 3 * targets.size, trips
                # per pass: one call tunes the 9 cells (a batch), one or two read them back
                assert 2 <= calls <= 3 * res.passes_run, calls
    for loop, truth in truths.items():
        ok = np.abs(truth - targets) <= 0.01 * targets
        assert ok.sum() >= 8 and (ok == (statuses[loop] == 1)).all(), (loop, truth / targets, statuses[loop])
    assert np.allclose(truths[True], truths[False], rtol=0.025)


def test_a_runaway_script_is_stopped_with_the_2600b_error_and_the_server_survives():
    with MockBench(2, 2, preset="ideal", seed=0) as bench:
        emu = bench.emulators["K2600"]
        emu._sandbox().max_instructions = 2_000_000            # a small budget: the test stays quick
        inst = Keithley2600(bench.resource("K2600"), timeout_ms=REPLY_MS)
        try:
            for line in ("loadscript spin", "function spin_f() while true do end end",
                         "function hog_f() local t = {} local i = 0 while true do i = i + 1 "
                         "t[i] = string.rep('x', 4096) .. i end end", "endscript", "spin.run()"):
                inst.write(line)
            assert inst.ask("print(type(spin_f))").strip() == "function"
            inst.write("spin_f()")
            assert inst.identity().startswith("Keithley")          # the server answers at once afterwards
            errors = inst.drain_errors()
            assert [c for c, _ in errors] == [-286] and "instruction" in errors[0][1]
            inst.write("hog_f()")
            errors = inst.drain_errors()
            assert [c for c, _ in errors] == [-286] and "memory" in errors[0][1]
            # the same Lua state still runs the packaged script afterwards
            inst.load_write_verify()
            assert inst.ask("print(type(xbar_tune))").strip() == "function"
        finally:
            inst.adapter.close()


def test_a_bench_without_tsp_link_is_refused_in_one_line_before_anything_runs(tmp_path, capsys):
    with MockBench(2, 2, preset="ideal", seed=0) as bench:
        station = bench.write_station(tmp_path / "board.toml", variant="b2900-board")
        n0 = _replies(bench)
        assert main(["tune", "--station", str(station), "--on-instrument", "--quiet", "--no-plots",
                     "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "2600B" in err[0], err
        assert _replies(bench) == n0, "nothing was sent"
        assert not (tmp_path / "run").exists()
        st = load_station(bench.write_station(tmp_path / "b2200.toml", variant="k2600-b2200"))
        assert "TSP-Link" in st.on_instrument_problem()


@pytest.mark.parametrize("bad", ["node[2].channel.close('1A01')", "smua.source.levelv = 500"])
def test_the_sandboxed_script_errors_are_the_instruments(bad):
    """A script step the instrument refuses (a node that is not linked yet, an out-of-range level)
    is a -286 / -222 error in the queue, as on the 2600B; nothing else changes."""
    with MockBench(2, 2, preset="ideal", seed=0) as bench:
        emu = bench.emulators["K2600"]
        for line in ("loadscript bad", bad, "endscript", "bad.run()"):
            emu.process(line)
        assert [c for c, _ in emu.errors] in ([-286], [-222])
        assert bench.bench.closed_relays("M707B") == set() or not bench.bench.closed_relays("M707B")


@pytest.mark.parametrize("scheme,share", [("v/2", 1 / 2), ("v/3", 1 / 3)])
def test_generator_writes_hold_no_level_outside_the_pulse(tmp_path, scheme, share):
    """The 33512B's two channels give the row's and the column's halves of a write in one trigger,
    the SMUs handing both lines over: the selected cell sees nothing between pulses (V/2: no held
    level at all; V/3: only the unselected columns' V/3 while the pulse fires), and no unselected
    cell ever sees more than the scheme's share of V (DC states and pulse)."""
    from programming.crossbar import WriteScheme

    with MockBench(3, 3, preset="ideal", seed=1, time_scale=0.0) as bench:
        station = load_station(bench.write_station(tmp_path / "g.toml", variant="k2600-707b", write_scheme=scheme))
        assert station.roles["pulse_col"] == "fgen.2"
        with HardwareCrossbar(station) as xb:
            for (r, c), v in (((0, 0), 1.6), ((1, 2), -1.8), ((2, 1), 2.0)):
                xb.pulse(np.array([[r]]), np.array([[c]]), np.array([[v]]), np.array([[1e-6]]),
                         WriteScheme(scheme))
        writes = bench.bench.writes
        assert [(w.row, w.col) for w in writes] == [(0, 0), (1, 2), (2, 1)]
        for w, v in zip(writes, (1.6, 1.8, 2.0)):
            assert w.v_selected == pytest.approx(v, rel=0.02)
            assert w.v_selected_dc <= (0.0 if scheme == "v/2" else share * v) + 1e-9, w
            assert w.v_unselected <= share * v + 1e-3, w
        assert bench.violations == [] and bench.bench.all_off()


def test_on_instrument_v3_sets_the_unselected_columns_over_tsp_net_safely_by_construction(tmp_path):
    """V/3 on the instrument: the script holds the unselected columns with the B2902A (over
    TSP-Net) while the 2636B's SMUs take the selected column to −V/3 and pulse the row to +2V/3.
    Every write and every DC state on the way keeps unselected cells within V/3 (V/2's run, the
    same chip, reaches V/2: the check can tell them apart); cells converge as with V/2, in at most
    3 host round trips per cell, and the bench ends with every output off and every relay open."""
    targets = np.random.default_rng(5).uniform(150e-6, 450e-6, size=(3, 3))
    for scheme, share in (("v/2", 1 / 2), ("v/3", 1 / 3)):
        with MockBench(3, 3, preset="ideal", seed=3, time_scale=0.0) as bench:
            station = load_station(bench.write_station(tmp_path / "s.toml", variant="k2600-707b-smu",
                                                       write_scheme=scheme))
            with HardwareCrossbar(station) as xb:
                cfg = auto_schedule(xb, with_width(TunerConfig(seed=1, write_scheme=scheme), 1e-4))[0]
                n0, lan0 = _replies(bench), bench.emulators["K2600"].tspnet_exchanges
                res = tune(xb, targets, cfg, on_instrument=True)
                trips, lan = _replies(bench) - n0, bench.emulators["K2600"].tspnet_exchanges - lan0
            assert bench.violations == [] and bench.bench.all_off()
            top = max(w.v_selected for w in bench.bench.writes)
            assert bench.bench.writes_beyond(share, v_read=cfg.v_read or station.v_read) == []
            assert bench.bench.max_unselected == pytest.approx(share * top, abs=0.02), (scheme, top)
            assert trips <= 3 * targets.size and (lan > 2 * res.pulses.sum()) == (scheme == "v/3"), (trips, lan)
            truth = bench.chip.true_conductance[0]
            assert np.all(np.abs(truth - targets) <= 0.01 * targets), (scheme, truth / targets)


def test_on_instrument_v3_needs_the_column_bias_on_the_lan(tmp_path):
    """A V/3 on-instrument run needs the unselected columns' source on a B2900 the 2600B reaches
    over TSP-Net: a GPIB one is refused in one line naming it; V/2 on the same station is fine."""
    from dataclasses import replace

    with MockBench(2, 2, preset="ideal", seed=0) as bench:
        st = load_station(bench.write_station(tmp_path / "s.toml", variant="k2600-707b-smu", write_scheme="v/3"))
    port = int(st.instruments["bias"].resource.split("::")[2])
    assert st.on_instrument_problem("v/3") is None and st.tspnet_source() == ("127.0.0.1", port, 2)
    gpib = replace(st, instruments={**st.instruments, "bias": replace(st.instruments["bias"], resource="GPIB0::23::INSTR")})
    problem = gpib.on_instrument_problem("v/3")
    assert "LAN" in problem and "GPIB0::23::INSTR" in problem and "\n" not in problem
    assert gpib.on_instrument_problem("v/2") is None
    assert "float" in gpib.on_instrument_problem("float")


def test_on_a_station_with_a_pulse_generator_the_script_writes_with_the_2600b(tmp_path, capsys):
    """The script pulses with the 2636B's SMU, never the 33512B: a 1 µs write (the generator's) is
    refused in one line before anything is sent or a run folder exists, where it used to pass the
    generator's limits and reach the 2636B; ``xbar tune --on-instrument`` defaults to the 2636B's
    100 µs and probes its schedule with the 2636B's pulses (the generator is never addressed)."""
    from procedures.ops.chips import planned_limits

    with MockBench(2, 2, preset="ideal", seed=0, time_scale=0.0) as bench:
        path = bench.write_station(tmp_path / "gen.toml", variant="k2600-707b")
        st = load_station(path)
        assert planned_limits(station=st).width_min < 1e-6                  # the host loop: the generator's
        assert planned_limits(station=st, on_instrument=True).width_min == pytest.approx(1e-4)
        assert "fgen" not in st.without_pulse_generator().instruments
        n0 = _replies(bench)
        assert main(["tune", "--station", str(path), "--on-instrument", "--width", "1e-6", "--quiet",
                     "--no-plots", "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "width" in err[0], err
        assert _replies(bench) == n0, "nothing was sent"
        assert not (tmp_path / "run").exists()
        with HardwareCrossbar(st) as xb:        # the API: refused before the first read
            with pytest.raises(ValueError, match="pulse widths"):
                tune(xb, np.full((2, 2), 200e-6), TunerConfig(), on_instrument=True)
        assert bench.bench.writes == []
        gen0 = bench.servers["FGEN"].replies
        assert main(["tune", "--station", str(path), "--on-instrument", "--passes", "2", "--quiet", "--no-plots",
                     "--out", str(tmp_path / "ok")]) == 0
        assert bench.servers["FGEN"].replies == gen0, "the generator was addressed"
        assert bench.bench.writes and bench.violations == []
