"""The live window (procedures/gui.py) offscreen: queue a tune, watch it finish, abort one."""
import json
import os
import sys
import time

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from procedures import gui  # noqa: E402 - imports without Qt
from procedures.storage.run_data import DATA_CSV, REPORT_JSON, RUN_H5, RUN_JSON, read_data_csv  # noqa: E402
from procedures.ops.tune_array import TuneProcedure  # noqa: E402


def test_without_qt_the_module_imports_and_the_window_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "qtpy", None)          # "import qtpy" now raises ImportError
    with pytest.raises(gui.GuiUnavailable, match=r"pip install -e '\.\[gui\]'"):
        gui._require_qt()
    assert gui.main([]) == 2
    assert "install the gui extra" in capsys.readouterr().err


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    pytest.importorskip("qtpy.QtWidgets")
    pytest.importorskip("pyqtgraph")
    from qtpy import QtWidgets

    from procedures.cli import main
    # the line kernels compiled (or loaded from numba's cache) here, with no deadline: on a cold
    # cache (a fresh CI checkout) the first tune compiles them, over a minute of a loaded machine,
    # and that must not count against the safety net of wait()
    out = tmp_path_factory.mktemp("warm") / "run"
    assert main(["tune", "--chip", "sim", "--size", "4x4", "--seed", "5", "--quiet", "--no-plots", "--out", str(out)]) == 0
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


@pytest.fixture
def window(app, tmp_path, monkeypatch):
    monkeypatch.setenv("XBAR_RUNS", str(tmp_path))
    w = gui.TuneWindow(plots=False)
    yield w
    w.close()
    w.deleteLater()
    app.processEvents()


def wait(app, cond, what: str, timeout=300.0):
    """Run the Qt event loop until ``cond()`` holds.  The code guarantees it will (a run ends);
    ``timeout`` is only a safety net against a hang, far above a run's time on a loaded machine."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"still waiting after {timeout:.0f} s for {what}"
        app.processEvents()
        time.sleep(0.01)


def _listening() -> set:
    """The TCP addresses this process listens on."""
    import psutil

    return {c.laddr for c in psutil.Process().net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


def test_queued_tune_updates_trace_and_map_and_writes_the_run_folder(app, window, tmp_path):
    from pymeasure.experiment import Procedure

    assert window.inputs.size.value() == "16x16"           # the terminal's tune default
    before = _listening()
    exp = window.queue(TuneProcedure(size="4x4", seed=5, tolerance=0.02))
    assert _listening() == before                          # the run publishes nothing (no ZMQ on *:5888)
    wait(app, lambda: not window.manager.is_running(), "the queued tune to end")
    proc = exp.procedure
    assert proc.status == Procedure.FINISHED
    assert proc.xb is None                                 # chip closed by shutdown

    run_dir = proc.run_dir
    assert run_dir.parent == tmp_path and exp.data_filename == str(run_dir / DATA_CSV)
    data = read_data_csv(run_dir / DATA_CSV)
    first = data[data["Pass"] == 0]
    assert sorted(zip(first["Row"], first["Col"])) == [(r, c) for r in range(4) for c in range(4)]

    meta = json.loads((run_dir / RUN_JSON).read_text())
    assert meta["procedure"] == "tune" and meta["status"] == "finished"
    assert meta["parameters"]["size"] == "4x4" and meta["parameters"]["seed"] == 5
    assert meta["chip_id"].startswith("sim/")
    assert (run_dir / RUN_H5).is_file()
    assert json.loads((run_dir / REPORT_JSON).read_text())["cells"] == 16

    trace, image = exp.curve_list[0], exp.curve_list[1]
    x, y = trace.getData()
    assert len(y) == len(data)
    np.testing.assert_allclose(y, data["Reading (S)"])
    np.testing.assert_allclose(x, data["Target (S)"])
    window.trace_widget.update_x_column(window.trace_widget.columns_x.findText(gui.RECORD))
    np.testing.assert_array_equal(trace.getData()[0], np.arange(len(data)))   # the running record number
    assert image.image.shape == (4, 4) and np.isfinite(image.image).all()
    last = data.drop_duplicates(["Row", "Col"], keep="last")
    np.testing.assert_allclose(image.image[last["Col"], last["Row"]], last["Reading (S)"])

    from procedures.storage.run_data import load_run
    from procedures.report.tables import format_run
    assert "status     finished" in format_run(load_run(run_dir))   # xbar show


def test_bad_parameters_are_refused_before_a_run_folder_is_made(app, window, tmp_path):
    with pytest.raises(ValueError, match="ROWSxCOLS"):
        window.queue(TuneProcedure(size="4by4"))
    window.inputs.size.setValue("oops")
    window.queue_button.click()                            # the button reports instead of raising
    assert "not queued" in window.statusBar().currentMessage()
    assert list(tmp_path.iterdir()) == []


def test_live_results_read_complete_rows_only_and_start_over_when_the_header_changes(app, tmp_path):
    """The window's reader against the writer's in-between states: a row half-written when the
    plot's timer fires is left for the next read (pymeasure's reader parsed it with NaN fields
    and never read it again: the abort test's plot then lost records), and ``store_metadata``
    rewriting the header makes it read the file over."""
    proc = TuneProcedure(size="4x4")
    path = tmp_path / DATA_CSV
    results = gui.LiveResults(proc, str(path))
    assert len(results.data) == 0
    row = results.format({c: 0.5 for c in proc.DATA_COLUMNS} | {"Stage": "tune", "Row": 1, "Col": 2,
                                                              "Reading (S)": 1.25e-4}) + "\n"
    cut = row.index("0.000125") + 4                          # mid-number: "0.00" of 0.000125
    with open(path, "a", encoding="utf-8") as f:
        f.write(row[:cut])
    assert len(results.data) == 0                            # the half row is not read
    with open(path, "a", encoding="utf-8") as f:
        f.write(row[cut:] + row)
    data = results.data
    assert len(data) == 2 and list(data["Reading (S)"]) == [1.25e-4, 1.25e-4]
    assert list(data["Row"]) == [1, 1] and list(data["Stage"]) == ["tune", "tune"]
    assert len(results.data) == 2                            # nothing new: nothing added

    proc.chip_id = "sim/xyz"                                 # the Worker stores the metadata after startup
    proc.evaluate_metadata()
    results.store_metadata()
    assert "sim/xyz" in path.read_text()
    with open(path, "a", encoding="utf-8") as f:
        f.write(row)
    data = results.data
    assert len(data) == 3 and list(data["Col"]) == [2, 2, 2]
    np.testing.assert_array_equal(data.to_numpy(), read_data_csv(path).to_numpy())


def test_abort_stops_the_tune_closes_the_chip_and_keeps_the_rows(app, window, monkeypatch):
    """The Worker holds after its first record until the abort is clicked: the abort lands mid-tune
    whatever the machine's speed (polling the file for a first row let a fast Worker, or a slow
    main thread, finish all 256 cells before the click)."""
    import threading

    from pymeasure.experiment import Procedure, workers

    first, clicked = threading.Event(), threading.Event()
    handle_record = workers.Worker.handle_record

    def held(self, record):
        handle_record(self, record)
        if not first.is_set():
            first.set()
            clicked.wait(600)                              # safety net: the test sets it in any case

    monkeypatch.setattr(workers.Worker, "handle_record", held)
    exp = window.queue(TuneProcedure(size="16x16", seed=1, parallel=1))
    csv = exp.procedure.run_dir / DATA_CSV
    try:
        wait(app, first.is_set, "the tune's first record")
        assert window.abort_button.isEnabled()
        window.abort_button.click()
    finally:
        clicked.set()
    wait(app, lambda: not window.manager.is_running(), "the aborted tune to end")

    proc = exp.procedure
    assert proc.status == Procedure.ABORTED
    assert proc.xb is None
    meta = json.loads((proc.run_dir / RUN_JSON).read_text())
    assert meta["status"] == "interrupted"
    rows = read_data_csv(csv)
    assert 0 < len(rows) < 256
    assert json.loads((proc.run_dir / REPORT_JSON).read_text())["cells_finished"] >= len(rows[rows["Pass"] == 0])
    assert len(exp.curve_list[0].getData()[1]) == len(rows)     # the plot shows what was kept
    assert (proc.run_dir / "chip_state.npz").is_file()          # resumable: xbar tune --resume RUN_DIR


def test_a_failing_run_is_recorded_as_failed(app, window, tmp_path, monkeypatch):
    import pytest
    from pymeasure.experiment import Procedure

    import procedures.ops.tune_array as tune_array

    with pytest.raises(ValueError, match="missing.npy does not exist"):    # bad input: refused at queue time
        window.queue(TuneProcedure(size="4x4", targets=str(tmp_path / "missing.npy")))
    assert not (tmp_path / "runs").exists()

    def broken(*args, **kwargs):
        raise ValueError("targets generator broke")

    monkeypatch.setattr(tune_array, "make_targets", broken)       # a failure once the run is under way
    exp = window.queue(TuneProcedure(size="4x4"))
    wait(app, lambda: not window.manager.is_running(), "the failing tune to end")
    proc = exp.procedure
    assert proc.status == Procedure.FAILED and proc.xb is None
    meta = json.loads((proc.run_dir / RUN_JSON).read_text())
    assert meta["status"] == "failed" and "targets generator broke" in meta["error"]


def test_closing_the_window_mid_run_stops_the_run_and_waits_for_its_end(app, window, monkeypatch):
    """Closing the window while a tune runs stops it and returns once it has ended: chip closed,
    run folder written (pymeasure's Worker.join waited for the stop request only, so the run was
    still shutting down after the window had gone).  The Worker holds after its first record
    until the close asks it to stop: the close lands mid-tune whatever the machine's speed."""
    import threading

    from pymeasure.experiment import Procedure, workers

    first = threading.Event()
    handle_record = workers.Worker.handle_record

    def held(self, record):
        handle_record(self, record)
        if not first.is_set():
            first.set()
            self._should_stop.wait(600)                    # the close's stop request ends this

    monkeypatch.setattr(workers.Worker, "handle_record", held)
    exp = window.queue(TuneProcedure(size="16x16", seed=1, parallel=1))
    wait(app, first.is_set, "the tune's first record")
    worker = window.manager._worker
    window.close()
    assert not worker.is_alive()
    proc = exp.procedure
    assert proc.status == Procedure.ABORTED and proc.xb is None
    assert json.loads((proc.run_dir / RUN_JSON).read_text())["status"] == "interrupted"
    assert (proc.run_dir / REPORT_JSON).is_file()
