"""Tuning on the mock bench at the pulse widths real instruments give (100 µs on a 2636B, 50 µs on
a B2902A): ``xbar tune --station`` takes the station's shortest width by default (and the auto
schedule when it is not the recipe's 1 µs); every write keeps unselected cells within the scheme's
share of V.  (1 µs through the 33512B generator: tests/test_mock_bench.py and i13a's tests.)"""
from __future__ import annotations

import json

import numpy as np
import pytest

from mock_hw.mock_bench import MockBench
from procedures.cli import main



@pytest.mark.parametrize("variant,scheme,width", [("k2600-707b-smu", "v/3", 1e-4),  # the 2636B pulses
                                                   ("b2900-board", "v/2", 5e-5)])    # the B2902A pulses
def test_tune_at_the_station_width_converges_safely(tmp_path, variant, scheme, width):
    with MockBench(8, 8, preset="tio2-3it", seed=2, time_scale=0.0) as bench:
        station = bench.write_station(tmp_path / "st.toml", variant=variant, write_scheme=scheme)
        out = tmp_path / "rep.json"
        assert main(["tune", "--station", str(station), "--seed", "1", "--scheme", scheme, "--quiet",
                     "--no-plots", "--out", str(tmp_path / "run"), "--json", str(out)]) == 0
        rep = json.loads(out.read_text())
        sched = rep["schedule"]
        assert sched["schedule"]["width"] == width, "the station's shortest pulse (at least 1 µs)"
        if width > 1e-6:
            assert sched["mode"] == "auto" and sched["schedule"]["v_set_start"] < 1.1, "longer pulses, lower amplitudes"
        else:
            assert sched["mode"] == "recipe" and sched["schedule"]["v_set_start"] == 1.1
        widths = {round(w.v_selected, 6) for w in bench.bench.writes}
        assert len(widths) > 3
        targets = np.load(tmp_path / "run" / "targets.npy")[0]
        truth, working = bench.chip.true_conductance[0], bench.chip.working_mask[0]
        ok = np.abs(truth - targets) <= 0.01 * targets
        assert ok[working].mean() >= 0.95, ok[working].mean()
        assert rep["pulses_per_cell"]["median"] <= 30
        assert bench.violations == []
        share = {"v/2": 1 / 2, "v/3": 1 / 3}[scheme]
        assert bench.bench.writes_beyond(share, v_read=0.2) == []
        assert 0 < bench.bench.max_unselected <= share * max(w.v_selected for w in bench.bench.writes) + 1e-3
        assert bench.bench.all_off()


def test_on_instrument_tune_from_the_command_line_writes_the_host_loops_run_and_resumes(tmp_path, stop_after,
                                                                                      monkeypatch):
    """``xbar tune --station S --on-instrument``: the 2600B routes (707B over TSP-Link) and tunes a
    batch of cells per call, and reads them back in one call per pass (settings from the run's
    TunerConfig); the run folder, journal and report are the host loop's, and an interrupted run
    resumes without re-tuning finished cells."""
    import programming.tuner as tuner
    from procedures.storage.run_data import load_run

    monkeypatch.setattr(tuner, "ON_INSTRUMENT_BATCH", 2)
    with MockBench(3, 3, preset="tio2-3it", seed=2, time_scale=0.0) as bench:
        station = bench.write_station(tmp_path / "st.toml")
        # the preset's line resistance given: on a 3x3 array 0.67 ohm is within one chip's measuring
        # noise (about 0.46 ohm), so --line-estimate auto would find no significant drop to correct
        args = ["tune", "--station", str(station), "--seed", "3", "--on-instrument", "--quiet", "--no-plots",
                "--line-estimate", "0.67"]
        stop_after(4)                                         # Ctrl-C after a few cells
        assert main([*args, "--out", str(tmp_path / "run")]) == 130
        stop_after(None)
        calls = bench.emulators["K2600"].wv_runs
        done = load_run(tmp_path / "run").data
        # one call reads every cell for the IR-drop correction's fit, then one per batch of 2 cells
        assert 0 < len(done) < 9 and calls == 1 + len(done) // 2, "one on-instrument call per batch of 2 cells"
        out = tmp_path / "rep.json"
        assert main(["tune", "--resume", str(tmp_path / "run"), "--quiet", "--no-plots", "--json", str(out)]) == 0
        rep = json.loads(out.read_text())
        run = load_run(tmp_path / "run")
        p0 = run.data[run.data["Pass"] == 0]
        assert len(p0) == 9 and not p0[["Row", "Col"]].duplicated().any()
        passes = int(run.data["Pass"].max()) + 1
        assert bench.emulators["K2600"].wv_runs - calls <= 1 + -(-(len(run.data) - len(done)) // 2) + 2 * passes, \
            "one call per batch, at most two per read-back"
        assert not {tuple(x) for x in done[["Row", "Col"]].to_numpy()} & \
            {tuple(x) for x in p0.iloc[len(done):][["Row", "Col"]].to_numpy()}, "finished cells were not tuned again"
        assert rep["cells"] == 9 and rep["converged"] >= 8
        assert set(run.trace["kind"]) == {0, 1}, "reads and pulses of the instrument's trace are journalled"
        assert bench.violations == [] and bench.bench.all_off()
    assert main(["tune", "--on-instrument", "--size", "2x2", "--quiet"]) == 2   # a simulated chip: refused
