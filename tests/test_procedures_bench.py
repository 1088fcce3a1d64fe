"""Every operator procedure on the mock bench (drivers → VISA → emulators → physics), with no
safety violation, outputs off and relays open afterwards, and an instrument timeout mid-tune that
is resumed."""
from __future__ import annotations

import numpy as np
import pytest

from mock_hw.mock_bench import MockBench
from procedures.cli import main
from procedures.storage.run_data import load_run


def run_on(bench, station, args, tmp_path, name):
    out = tmp_path / name
    code = main([*args, "--station", str(station), "--out", str(out), "--quiet", "--no-plots"])
    assert bench.violations == []
    assert bench.bench.all_off(), "outputs must be off and relays open after a procedure"
    return code, out


def test_read_tune_iv_endurance_retention_on_the_bench(bench, station, tmp_path):
    code, out = run_on(bench, station, ["read", "--size", "4x4"], tmp_path, "read")
    assert code == 0
    r = load_run(out)
    assert r.maps["conductance"].shape == (1, 4, 4) and "Model 707B" in str(r.meta["instruments"]["matrix"])
    assert "station" in r.meta["station"] and r.meta["chip_id"]
    # the bench reads what the emulated chip holds
    np.testing.assert_allclose(r.maps["conductance"][0], bench.chip.true_conductance[0], rtol=0.02)

    code, out = run_on(bench, station, ["tune", "--size", "2x2", "--seed", "1"], tmp_path, "tune")
    assert code == 0
    t = load_run(out)
    assert len(t.data[t.data["Pass"] == 0]) == 4 and t.trace is not None

    code, out = run_on(bench, station, ["iv", "--row", "3", "--col", "3", "--v-max", "1.4", "--v-step", "0.35"],
                       tmp_path, "iv")
    assert code == 0 and len(load_run(out).data) == 14
    code, out = run_on(bench, station, ["iv", "--mode", "read", "--v-max", "0.2", "--v-step", "0.1"], tmp_path, "ivr")
    d = load_run(out).data
    assert code == 0 and np.all(np.sign(d["Current (A)"]) == np.sign(d["Voltage (V)"]))

    code, out = run_on(bench, station, ["endurance", "--cycles", "5", "--cells", "2,2"], tmp_path, "end")
    assert code == 0 and sorted(load_run(out).data["Cycle"]) == [1, 2, 5]

    code, out = run_on(bench, station, ["retention", "--size", "4x4", "--interval", "0.01", "--reads", "3"],
                       tmp_path, "ret")
    assert code == 0 and load_run(out).series["maps"].shape == (3, 1, 4, 4)


def test_forming_through_the_instruments(tmp_path):
    with MockBench(3, 3, preset="tio2-3it", seed=2, pristine=True) as bench:
        station = bench.write_station(tmp_path / "st.toml", v_max=2.9, timeout_ms=30000)
        code, out = run_on(bench, station, ["form", "--size", "3x3", "--compliance", "1e-3"], tmp_path, "form")
        assert code == 0
        r = load_run(out)
        assert r.report["newly_formed"] >= 7
        assert bench.chip.formed_mask[0].sum() >= r.report["newly_formed"]


@pytest.mark.parametrize("loop", [[], ["--on-instrument"]])
def test_deploy_and_infer_on_the_bench(bench, station, tmp_path, loop):
    from models.model_io import save_model
    from models.train import TrainConfig, train

    cfg = TrainConfig.for_dataset("moons", hidden=(1,), aware=False, epochs=150, seed=0)
    res = train(cfg)
    model = tmp_path / "tiny.pt"
    save_model(model, res.model, cfg.to_dict(), {"test_accuracy": res.test_accuracy})
    code, out = run_on(bench, station, ["deploy", str(model), "--points", "20", *loop], tmp_path, "dep")
    assert code == 0
    rep = load_run(out).report
    assert rep["chip_shape"] == [4, 4] and rep["accuracy"]["test_points"] == 20
    # the 2600B ran every cell's loop (one call per cell and pass) only when asked to
    assert (bench.emulators["K2600"].wv_runs > 0) == bool(loop), rep["tuning"]   # the 2600B tuned (batches)
    code, out = run_on(bench, station, ["infer", str(model), "--points", "20"], tmp_path, "inf")
    assert code == 0
    inf = load_run(out)
    assert len(inf.data) == 20 and inf.report["accuracy"] == pytest.approx(inf.data["Correct"].mean())


def test_instrument_timeout_mid_tune_is_resumed(bench, fault_station, station, tmp_path, capsys, monkeypatch):
    """An instrument that stops answering fails the run safely (outputs off, relays open — as
    confirmed by the instruments and said so — data kept, a resume hint); --resume continues on
    the same bench.  The fault is injected right after the third data.csv record (the runner's
    record hook): deterministic, not timed."""
    import procedures.storage.runner as runner

    emu = bench.emulators["K2600"]

    injected = []

    def fault_after_three_cells(n):
        if n == 3 and not injected:
            injected.append(n)
            emu.faults.no_reply_next = 1          # the SMU stops answering once

    monkeypatch.setattr(runner, "after_record", fault_after_three_cells)
    code, out = run_on(bench, fault_station, ["tune", "--size", "3x3", "--seed", "2", "--parallel", "1"], tmp_path, "tune")
    assert code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "confirmed smu outputs off (a, b), bias outputs off (1, 2), fgen outputs off (1, 2), matrix relays open" in err
    r = load_run(out)
    assert r.status == "failed" and "Timeout" in r.meta["error"] and len(r.data) >= 3
    # the resume drops no reply: the station's long timeout (the short one only for the run that waits for it)
    code, _ = run_on(bench, station, ["tune", "--resume", str(out)], tmp_path, "unused")
    assert code == 0
    r = load_run(out)
    p0 = r.data[r.data["Pass"] == 0]
    assert r.status == "finished" and len(p0) == 9 and not p0[["Row", "Col"]].duplicated().any()


def test_station_runs_are_checked_against_what_the_drive_instrument_sources(bench, station, tmp_path):
    """The station file allows 100 ns pulses, the 2636B that pulses on the SMU-only bench does not
    (specified from 100 µs): a procedure's planned limits (checked before anything is opened) are
    the narrowed ones.  With the 33512B giving the pulses, 100 ns stays allowed."""
    from instruments.station import load_station
    from procedures.ops.iv_sweep import IVProcedure
    from procedures.ops.tune_array import TuneProcedure

    smu_only = bench.write_station(tmp_path / "smu.toml", variant="k2600-707b-smu")
    assert load_station(smu_only).limits.width_min == pytest.approx(1e-7)
    smu_tune = TuneProcedure(chip="station", station=str(smu_only), size="4x4")
    assert smu_tune.planned_limits().width_min == pytest.approx(1e-4)
    smu_tune.validate()                                           # the tuner takes the station's 100 µs
    iv = IVProcedure(chip="station", station=str(smu_only), size="4x4", mode="pulsed", width=2e-5)
    with pytest.raises(ValueError, match="width"):
        iv.validate()
    tune = TuneProcedure(chip="station", station=str(station), size="4x4")
    assert tune.planned_limits().width_min == pytest.approx(1e-7)
    tune.validate()                                               # the generator gives the tuner's 1 µs
    assert bench.violations == [] and bench.bench.all_off()
