"""Operator procedures on the simulated chip: run folders, data, reload, chained chips, bad input."""
import json

import numpy as np
import pytest

from procedures.ops import chips as chips_mod
from procedures.cli import main
from procedures.storage.run_data import RunFolderError, load_run


def run(args, capsys=None):
    code = main(args)
    return code


def test_tune_writes_a_self_describing_run_folder(tmp_path):
    out = tmp_path / "t"
    assert run(["tune", "--size", "6x6", "--seed", "2", "--out", str(out), "--quiet"]) == 0
    r = load_run(out)
    assert r.procedure == "tune" and r.status == "finished"
    # the pymeasure header holds the parameters and the metadata
    head = (out / "data.csv").read_text().split("Stage,")[0]
    for text in ("Procedure: <procedures.ops.tune_array.TuneProcedure>", "Tolerance: 0.01", "Chip ID: sim/tio2-3it/seed 2/6x6",
                 "Software: xbarlab", "Start time:", "Instruments: chip: SimulatedCrossbar"):
        assert text in head
    assert r.meta["chip_id"] == "sim/tio2-3it/seed 2/6x6" and r.meta["parameters"]["seed"] == 2
    # one row per cell in pass 0; maps and trace in run.h5
    p0 = r.data[r.data["Pass"] == 0]
    assert len(p0) == 36 and not p0[["Row", "Col"]].duplicated().any()
    for name in ("before", "targets", "final", "status", "pulses", "reads", "rel_error"):
        assert r.maps[name].shape == (1, 6, 6), name
    assert r.maps["pulses"].sum() == r.data["Pulses"].sum()
    assert r.trace is not None and (r.trace["kind"] == 1).sum() == r.maps["pulses"].sum()
    assert r.report["cells"] == 36 and r.report["status"] == "finished"
    assert (out / "report.html").is_file() and (out / "plots" / "target_vs_achieved.png").stat().st_size > 1000


def test_default_run_folder_is_time_stamped_under_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("XBAR_RUNS", str(tmp_path / "myruns"))
    assert run(["read", "--size", "3x3", "--quiet", "--no-plots"]) == 0
    folders = list((tmp_path / "myruns").iterdir())
    assert len(folders) == 1 and folders[0].name.endswith("-read")
    r = load_run(folders[0])
    assert r.maps["conductance"].shape == (1, 3, 3) and len(r.data) == 9


def test_an_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "r"
    assert run(["read", "--size", "2x2", "--out", str(out), "--quiet", "--no-plots"]) == 0
    assert run(["read", "--size", "2x2", "--out", str(out), "--quiet", "--no-plots"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_form_tune_retention_on_one_simulated_chip(tmp_path):
    f, t, ret = tmp_path / "form", tmp_path / "tune", tmp_path / "ret"
    assert run(["form", "--size", "4x4", "--pristine", "--seed", "5", "--out", str(f), "--quiet", "--no-plots"]) == 0
    rf = load_run(f)
    assert rf.report["newly_formed"] == rf.report["formed"] > 0
    assert (rf.maps["before"] < 10e-6).sum() >= rf.report["newly_formed"]     # pristine cells started insulating
    vf = rf.maps["forming_voltage"][np.isfinite(rf.maps["forming_voltage"])]
    assert 1.5 <= vf.min() and vf.max() <= 2.9
    # forming again: formed cells are not pulsed (only cells that did not form, e.g. stuck ones)
    f2 = tmp_path / "form2"
    assert run(["form", "--chip-from", str(f), "--out", str(f2), "--quiet", "--no-plots"]) == 0
    r2 = load_run(f2)
    assert r2.report["newly_formed"] == 0 and r2.report["already_formed"] == rf.report["formed"]
    assert (r2.maps["pulses"][rf.maps["formed"] == 1] == 0).all()
    # tune on the formed chip, then follow retention on the tuned chip
    assert run(["tune", "--chip-from", str(f2), "--out", str(t), "--quiet", "--no-plots"]) == 0
    rt = load_run(t)
    assert rt.meta["parameters"]["pristine"] is True and rt.report["yield"] > 0.9
    assert run(["retention", "--chip-from", str(t), "--interval", "100", "--reads", "4", "--out", str(ret),
                "--quiet", "--no-plots"]) == 0
    rr = load_run(ret)
    assert list(rr.series["times"]) == [0, 100, 200, 300]
    assert rr.series["maps"].shape == (4, 1, 4, 4)
    # retention starts from the tuned state and relaxes (down, toward rest) by a few percent at most
    np.testing.assert_allclose(rr.series["maps"][0], rt.maps["final"], rtol=0.02)
    assert -0.1 < rr.report["mean_relative_change"] < 0


def test_iv_sweeps(tmp_path):
    out = tmp_path / "iv"
    assert run(["iv", "--row", "1", "--col", "2", "--v-max", "1.6", "--out", str(out), "--quiet", "--no-plots"]) == 0
    r = load_run(out)
    v, g = r.data["Voltage (V)"].to_numpy(), r.data["Conductance (S)"].to_numpy()
    assert v.max() == pytest.approx(1.6) and v.min() == pytest.approx(-1.6)
    # the switching loop: SET raises the conductance, RESET lowers it
    assert g[np.argmax(v)] > g[np.argmin(v)] * 1.5
    out2 = tmp_path / "iv2"
    assert run(["iv", "--mode", "read", "--v-max", "0.4", "--v-step", "0.1", "--out", str(out2), "--quiet", "--no-plots"]) == 0
    d = load_run(out2).data
    i, v = d["Current (A)"].to_numpy(), d["Voltage (V)"].to_numpy()
    assert np.all(np.sign(i) == np.sign(v)) and len(d) == 14  # 0.1..0.4..0.1, -0.1..-0.4..-0.1
    assert (tmp_path / "iv2" / "report.json").is_file()


def test_endurance_records_both_states(tmp_path):
    out = tmp_path / "e"
    assert run(["endurance", "--cycles", "20", "--cells", "0,0;1,1", "--out", str(out), "--quiet", "--no-plots"]) == 0
    r = load_run(out)
    assert sorted(set(r.data["Cycle"])) == [1, 2, 5, 10, 20]
    assert len(r.data) == 10
    assert (r.data["G SET (S)"] > r.data["G RESET (S)"]).mean() > 0.8


@pytest.mark.parametrize("args, message", [
    (["form", "--compliance=-1e-3"], "compliance"),
    (["iv", "--mode", "read", "--v-max", "0.8"], "disturb threshold"),
    (["read", "--v-read", "0.7"], "disturb threshold"),
    (["iv", "--row", "9"], "outside the 8x8 array"),
    (["endurance", "--cells", "0,0;0,1"], "share a row or a column"),
    (["endurance", "--cells", "8,8"], "outside the 8x8 array"),
    (["tune", "--tolerance=-0.01"], "--tolerance"),
    (["tune", "--size", "4x4", "--targets", "nofile.npy"], "does not exist"),
    (["retention", "--interval", "0"], "--interval"),
])
def test_bad_parameters_are_refused_before_anything_is_sourced(args, message, tmp_path, capsys, monkeypatch):
    opened = []
    real = chips_mod.open_chip

    def spy(*a, **k):
        xb = real(*a, **k)
        opened.append(xb)
        return xb
    monkeypatch.setattr("procedures.ops.base.open_chip", spy)
    assert run([*args, "--out", str(tmp_path / "x"), "--quiet", "--no-plots"]) == 2
    assert message in capsys.readouterr().err
    # nothing was pulsed or read on any chip that was opened
    assert all(xb.n_pulse_ops == 0 and xb.n_read_ops == 0 for xb in opened)


def test_show_and_plot_a_run_folder(tmp_path, capsys):
    out = tmp_path / "t"
    assert run(["tune", "--size", "4x4", "--out", str(out), "--quiet", "--no-plots"]) == 0
    assert not (out / "report.html").exists()
    capsys.readouterr()
    assert run(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "procedure" in text and "tune" in text and "finished" in text and "yield" in text
    assert run(["plot", str(out)]) == 0
    assert (out / "report.html").is_file()
    pngs = list((out / "plots").glob("*.png"))
    assert len(pngs) >= 5 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert run(["show", str(tmp_path / "nothing")]) == 2
    with pytest.raises(RunFolderError):
        load_run(tmp_path / "nothing")


def test_json_report_copy(tmp_path):
    rep = tmp_path / "rep.json"
    assert run(["read", "--size", "2x3", "--out", str(tmp_path / "r"), "--json", str(rep), "--quiet", "--no-plots"]) == 0
    assert json.loads(rep.read_text())["cells"] == 6


def test_every_procedures_data_columns_parse_with_pint_though_a_run_parses_none():
    """pymeasure's check of the data columns' units (pint's registry: ~0.15 s of CPU to load) is made
    when a unit is first needed (procedures.deferred.defer_units); the check itself is kept here:
    every procedure's columns parse, and a column without a unit is answered without parsing."""
    from pymeasure.experiment.procedure import Procedure

    from procedures.cli.procedures import PROCEDURES, procedure_class
    from procedures.deferred import _UNIT

    for name in PROCEDURES:
        cls = procedure_class(name)
        units = Procedure.parse_columns(cls.DATA_COLUMNS)
        assert units.get("Status") is None and units._units is None, name      # nothing parsed yet
        parsed = dict(units)                      # every unit now: an unknown one would raise here
        assert all(c in parsed for c in cls.DATA_COLUMNS if _UNIT.search(c)), name
    units = Procedure.parse_columns(["Voltage (V)", "Chip"])
    assert str(units.get("Voltage (V)")) == "volt" and units.get("Chip") is None
    with pytest.raises(ValueError, match="not defined in Pint"):
        dict(Procedure.parse_columns(["Bad (furlongsz)"]))


def test_pymeasure_is_imported_without_ipython_zmq_or_dask_which_load_when_used():
    """procedures.ops imports pymeasure.experiment with stand-ins where it and pint import IPython,
    zmq and dask at their top (a notebook's display, a live window's TCP publishing, pint's dask
    arrays: ~14 MB a run never uses; procedures.deferred.import_pymeasure_experiment): none of them
    is imported, each stand-in answers with its module when first used, and a later import of
    those modules is the usual one."""
    import subprocess
    import sys

    code = "\n".join([
        "import sys, procedures.ops",
        "unused = ('IPython', 'zmq', 'dask')",
        "print(sorted(m for m in unused if m in sys.modules))",
        "import pymeasure.experiment.experiment as e, pymeasure.experiment.workers as w, pint.compat as c",
        "assert e.display.HTML is sys.modules['IPython.display'].HTML",
        "assert w.zmq.Context is sys.modules['zmq'].Context",
        "assert c.HAS_DASK and c.compute(1, 2) == (1, 2)",      # (dask's compute of plain values)
        "import dask",
        "assert dask.compute is sys.modules['dask.base'].compute and type(sys.modules['dask']).__name__ == 'module'",
        "print(sorted(m for m in unused if m in sys.modules))"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "['IPython', 'dask', 'zmq']"]
