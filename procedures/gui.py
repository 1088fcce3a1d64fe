"""The live window (``xbar gui``, extra ``gui``): queue write-verify tunes and watch them run.

Built on pymeasure's display: the parameter inputs, Queue / Abort and the queue browser come from
``ManagedWindowBase``; the tabs show the tuning trace (every finished cell: ``Target (S)`` against
``Reading (S)`` by default; any column, or ``Record`` — the running record number — can be
chosen) and the conductance map rebuilt from the rows as they arrive (x ``Col``, y ``Row``, z
``Reading (S)``; with several simulated chips side by side).  Runs are executed by pymeasure's
``Worker`` (the terminal uses :func:`procedures.storage.runner.run_procedure`) and write the same run
folder: ``run.json``, ``data.csv``, the journal, and at the end ``run.h5``, ``report.json`` and
the plots, so ``xbar show`` / ``xbar plot`` / ``xbar tune --resume`` work on a window run.

Qt is imported only when the window is used: without it this module imports, and using the window
raises :class:`GuiUnavailable` ("install the gui extra").
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path

import numpy as np

from programming.tune_state import TuneInterrupted

from .ops.base import ProcedureStopped, XbarProcedure
from .storage.run_data import DATA_CSV, RUN_JSON, write_json
from .storage.runner import _finish, _now, new_run_dir, parameter_values

log = logging.getLogger(__name__)

INSTALL_HINT = "install the gui extra: pip install -e '.[gui]'"
#: pseudo-column of the trace plot: the running number of the record (one per cell and pass)
RECORD = "Record"
#: parameters shown in the queue browser
DISPLAYS = ("chip", "preset", "size", "seed", "targets", "tolerance", "passes")
#: parameter inputs first (the rest follow in the procedure's order)
INPUT_ORDER = ("chip", "station", "chip_from", "preset", "size", "chips", "seed", "pristine", "targets", "tolerance",
               "passes", "order", "parallel", "scheme", "max_pulses", "no_reset")
#: longest wait, s, for a running run to end when the window closes (its shutdown is bounded by the
#: instruments' reply timeouts)
CLOSE_WAIT_S = 300.0
MAP_COLUMNS = ["Reading (S)", "Target (S)", "Pulses", "Reads", "Energy (J)", "Instrument time (s)", "Pass"]


class GuiUnavailable(ImportError):
    """Qt (a binding and pyqtgraph) is not installed."""


def attach_run(proc: XbarProcedure, run_dir: Path, plots: bool = True) -> dict:
    """Make ``proc`` write its run folder when pymeasure's ``Worker`` runs it.

    The ``Worker`` knows nothing of run folders, and it marks a run FAILED when ``execute``
    raises — which a stop request does (:class:`TuneInterrupted`, :class:`ProcedureStopped`).  So
    this sets ``proc.run_dir``, writes ``run.json`` (status ``queued``) and wraps the instance's
    ``startup`` / ``execute`` / ``shutdown``: a stop returns normally (the ``Worker`` then marks
    it ABORTED), and after ``shutdown`` (outputs off, relays open) the runner's ``_finish``
    writes ``run.h5``, ``report.json``, the final ``run.json`` and the plots, status finished,
    interrupted or failed as on the terminal.  Returns the run's metadata (kept up to date).
    """
    run_dir = Path(run_dir)
    proc.run_dir, proc.resuming = run_dir, False
    meta = {"procedure": proc.NAME, "parameters": parameter_values(proc), "status": "queued",
            "queued": _now(), "command": ["gui"], "resumes": 0}
    write_json(run_dir / RUN_JSON, meta)
    outcome = {"status": None, "error": None}
    startup, execute, shutdown = proc.startup, proc.execute, proc.shutdown

    def run_startup():
        meta.update(status="running", started=_now())
        write_json(run_dir / RUN_JSON, meta)
        try:
            startup()
        except Exception as exc:
            outcome.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        meta.update({k: proc.ident[k] for k in ("station", "chip_id", "instruments")},
                    software_version=proc.version, operator=proc.operator)
        write_json(run_dir / RUN_JSON, meta)

    def run_execute():
        try:
            execute()
        except (ProcedureStopped, TuneInterrupted) as exc:
            outcome.update(status="interrupted", error=str(exc) or "interrupted")
            log.info("%s stopped on request: outputs off, relays open; data saved in %s", proc.NAME, run_dir)
            return
        except Exception as exc:
            outcome.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        outcome["status"] = "finished"

    def run_shutdown():
        try:
            shutdown()
        finally:
            status = outcome["status"] or "interrupted"   # stopped between startup and execute
            try:
                _finish(proc, run_dir, meta, status, outcome["error"], plots)
            except Exception:  # noqa: BLE001 - the Worker must still end the run
                log.exception("could not write the end of run %s", run_dir)
            log.info("%s %s: run folder %s", proc.NAME, status, run_dir)

    proc.startup, proc.execute, proc.shutdown = run_startup, run_execute, run_shutdown
    return meta


def _numeric(data, column: str) -> np.ndarray:
    if column == RECORD:
        return np.arange(len(data), dtype=float)
    import pandas as pd
    return pd.to_numeric(data[column], errors="coerce").to_numpy(float)


def _require_qt():
    from importlib import import_module
    try:
        import_module("pyqtgraph")
        import_module("qtpy.QtWidgets")
    except Exception as exc:  # qtpy raises its own error when no binding is installed
        raise GuiUnavailable(f"the live window needs Qt ({exc}); {INSTALL_HINT}") from None


@functools.cache
def _classes() -> dict:
    """The Qt classes, defined on first use (so this module imports without Qt)."""
    _require_qt()
    import pyqtgraph as pg
    from pymeasure.display.curves import ResultsCurve, ResultsImage
    from pymeasure.display.Qt import QtCore
    from pymeasure.display.widgets import ImageWidget, LogWidget, PlotWidget
    from pymeasure.display.windows.managed_window import ManagedWindowBase
    from pymeasure.experiment import Results

    from .ops.tune_array import TuneProcedure

    class LiveResults(Results):
        """pymeasure's ``Results`` whose ``data`` parses complete lines only.

        pymeasure's reader parses whatever bytes the file holds when the plot's timer fires, so
        a row the ``Recorder`` thread is still writing is read half-written (its missing fields
        NaN) and, counted as read, never read again: the trace and the map lose that record for
        good.  This reader keeps the byte offset of the last complete line and reads on from it
        (linear in the file).  The header is compared on every read; a change (``store_metadata``
        rewrites it after ``startup``) starts the reading over."""

        def __init__(self, procedure, data_filename):
            super().__init__(procedure, data_filename)
            self._head, self._offset = b"", 0
            self._data = self._empty()

        def _empty(self):
            import pandas as pd
            return pd.DataFrame(columns=self.procedure.DATA_COLUMNS)

        def reload(self):
            self._head, self._offset, self._data = b"", 0, self._empty()
            return self.data

        @property
        def data(self):
            import io

            import pandas as pd
            try:
                with open(self.data_filename, "rb") as f:
                    if f.read(len(self._head)) != self._head:     # the header was rewritten
                        self._head, self._offset, self._data = b"", 0, self._empty()
                    f.seek(self._offset)
                    new = f.read()
            except OSError:
                return self._data
            end = new.rfind(b"\n") + 1                     # complete lines only
            start = 0
            if not self._head:                             # the comment lines, then the column labels
                while start < end and new.startswith(b"#", start):
                    start = new.index(b"\n", start) + 1
                if start >= end:
                    return self._data                      # the labels line is not complete yet
                start = new.index(b"\n", start) + 1
                self._head = new[:start]
            if end > start:
                rows = pd.read_csv(io.BytesIO(new[start:end]), header=None, names=self.procedure.DATA_COLUMNS,
                                   comment=Results.COMMENT, encoding=Results.ENCODING)
                self._data = rows if len(self._data) == 0 else pd.concat([self._data, rows], ignore_index=True)
            self._offset += end
            return self._data

    class TraceCurve(ResultsCurve):
        """Every record as a dot (cells do not come in the order of any column)."""

        def update_data(self):
            data = self.results.data
            if len(data) == 0:
                self.setData([], [])
                return
            x, y = _numeric(data, self.x), _numeric(data, self.y)
            ok = np.isfinite(x) & np.isfinite(y)
            self.setData(x[ok], y[ok])

        def set_color(self, color):
            self.setSymbolBrush(color)
            self.color = pg.mkColor(color)

    class TracePlot(PlotWidget):
        def new_curve(self, results, color=pg.intColor(0), **kwargs):
            curve = TraceCurve(results, wdg=self, x=self.plot_frame.x_axis, y=self.plot_frame.y_axis,
                               pen=pg.mkPen(None), symbol="o", symbolSize=5, symbolPen=None, symbolBrush=color, **kwargs)
            curve.color = pg.mkColor(color)
            return curve

    class MapImage(ResultsImage):
        """The map of the last value of ``z`` recorded for each cell; chips side by side, row 0 on
        top; cells not yet recorded are blank."""

        def __init__(self, results, x, y, z, wdg=None, **kwargs):
            pg.ImageItem.__init__(self, **kwargs)
            self.results, self.wdg, self.x, self.y, self.z = results, wdg, x, y, z
            self.force_reload = False
            proc = results.procedure
            self.rows, self.cols = proc.array_size
            self.n_chips = int(proc.chips)
            self.grid = np.full((self.rows, self.n_chips * (self.cols + 1) - 1), np.nan)
            self.setColorMap(pg.colormap.get("viridis"))
            self.cell_rect = QtCore.QRectF(-0.5, -0.5, self.grid.shape[1], self.rows)   # pixel centres on cells

        def update_data(self):
            data = self.results.data
            if len(data) == 0 or self.z not in data.columns:
                return
            cells = data.drop_duplicates(subset=["Chip", self.y, self.x], keep="last")
            chip, r, c = (_numeric(cells, k) for k in ("Chip", self.y, self.x))
            z = _numeric(cells, self.z)
            ok = (np.isfinite(chip) & (chip >= 0) & (chip < self.n_chips) & (r >= 0) & (r < self.rows)
                  & (c >= 0) & (c < self.cols))
            self.grid[...] = np.nan
            self.grid[r[ok].astype(int), (c[ok] + chip[ok] * (self.cols + 1)).astype(int)] = z[ok]
            if not np.isfinite(self.grid).any():
                return
            lo, hi = float(np.nanmin(self.grid)), float(np.nanmax(self.grid))
            self.setImage(self.grid.T, levels=(lo, hi if hi > lo else lo + abs(lo) * 1e-6 + 1e-30), rect=self.cell_rect)
            scale, unit = (1e6, " µS") if self.z.endswith("(S)") else (1.0, "")
            self.wdg.plot.setTitle(f"{self.z}: {lo * scale:.4g} … {hi * scale:.4g}{unit} (dark → bright)")

    class MapWidget(ImageWidget):
        def __init__(self, name, columns, x_axis, y_axis, z_axis=None, **kwargs):
            super().__init__(name, columns, x_axis, y_axis, z_axis, **kwargs)
            self.plot.invertY(True)                       # row 0 on top, as the array is drawn
            self.plot.setAspectLocked(True)

        def new_curve(self, results, color=None, **kwargs):
            return MapImage(results, wdg=self, x=self.image_frame.x_axis, y=self.image_frame.y_axis,
                            z=self.image_frame.z_axis, **kwargs)

    class TuneWindow(ManagedWindowBase):
        """The live window of a tuning procedure (``TuneProcedure`` by default): parameter inputs,
        Queue / Abort, the queue browser, the tuning trace, the conductance map and the log.

        Every queued run gets its own run folder (``$XBAR_RUNS/<time stamp>-tune``); ``plots``:
        draw the run's plots and ``report.html`` when it ends."""

        def __init__(self, procedure_class=TuneProcedure, x_axis="Target (S)", y_axis="Reading (S)",
                     z_axis="Reading (S)", plots: bool = True, parent=None):
            self.plots = plots
            self.trace_widget = TracePlot("Tuning trace", [RECORD] + list(procedure_class.DATA_COLUMNS),
                                          x_axis, y_axis)
            self.map_widget = MapWidget("Conductance map", MAP_COLUMNS, "Col", "Row", z_axis)
            self.log_widget = LogWidget("Experiment Log")
            names = list(procedure_class().parameter_objects())
            inputs = tuple(sorted(names, key=lambda n: INPUT_ORDER.index(n) if n in INPUT_ORDER else len(INPUT_ORDER)))
            super().__init__(procedure_class, widget_list=(self.trace_widget, self.map_widget, self.log_widget),
                             inputs=inputs, displays=DISPLAYS, enable_file_input=False,
                             inputs_in_scrollarea=True, parent=parent)
            self.browser_widget.browser.measured_quantities.update(["Target (S)", "Reading (S)"])
            self.inputs.set_parameters(procedure_class(size="16x16").parameter_objects())
            logging.getLogger().addHandler(self.log_widget.handler)
            # pymeasure's Worker would publish every record (pickled) on tcp://*:5888 (ZMQ): all
            # interfaces, a fixed port (a second window, or a second test process, collides) and
            # 0.3 s of sleep per run; nothing here listens to it.  No publisher: the window serves
            # nothing on the network.
            self.manager.port = None
            self.manager.failed.connect(self._ended)
            self.manager.abort_returned.connect(self._ended)
            self.setWindowTitle(f"xbar — live {procedure_class.NAME}")

        def _queue(self, checked=False):
            try:
                self.queue()
            except (ValueError, OSError) as exc:
                log.error("not queued: %s", exc)
                self.statusBar().showMessage(f"not queued: {exc}")

        def queue(self, procedure=None):
            """Queue a run (the inputs' parameters, or ``procedure``) into a new run folder; returns
            its pymeasure ``Experiment``.  Bad parameters raise ValueError before anything is made."""
            if procedure is None:
                procedure = self.make_procedure()
            if procedure.chip_from:
                procedure.adopt_chip_of(Path(procedure.chip_from))
                procedure.refresh_parameters()
            procedure.validate()
            run_dir = new_run_dir(procedure.NAME)
            attach_run(procedure, run_dir, plots=self.plots)
            results = LiveResults(procedure, str(run_dir / DATA_CSV))
            experiment = self.new_experiment(results)
            experiment.browser_item.setText(1, run_dir.name)
            self.manager.queue(experiment)
            self.statusBar().showMessage(f"queued: {run_dir}")
            return experiment

        def _ended(self, experiment):
            for curve in experiment.curve_list:       # the Manager refreshes only finished runs
                if curve:
                    curve.update_data()

        def closeEvent(self, event):
            if self.manager.is_running():
                # a run in progress is stopped and its end awaited: outputs off, relays open and
                # the run folder written before the window goes.  (pymeasure's Worker.join(t)
                # waits for the stop request, not for the thread: the run was still shutting down,
                # reporting to a window and a Manager that were gone.)  The Manager says the run
                # ended on the event loop, so a local one runs until then.
                loop = QtCore.QEventLoop()
                for ended in (self.manager.abort_returned, self.manager.finished, self.manager.failed):
                    ended.connect(loop.quit)
                QtCore.QTimer.singleShot(int(CLOSE_WAIT_S * 1000), loop.quit)
                self.manager.abort()
                if self.manager.is_running():
                    loop.exec()
                if self.manager.is_running():
                    log.warning("the run did not end within %.0f s of the window closing", CLOSE_WAIT_S)
            logging.getLogger().removeHandler(self.log_widget.handler)
            super().closeEvent(event)

    return {"TraceCurve": TraceCurve, "MapImage": MapImage, "TuneWindow": TuneWindow, "LiveResults": LiveResults}


def __getattr__(name: str):
    if name in ("TuneWindow", "MapImage", "TraceCurve", "LiveResults"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------- command line
def gui_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``xbar gui`` (registered by procedures/cli/gui.py)."""
    p.add_argument("--runs", type=Path, default=None, metavar="DIR",
                   help="where run folders go (default: $XBAR_RUNS, else ./runs)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the plots and report.html of each run")


def run_window(args) -> int:
    """Open the window and run the Qt event loop until it is closed."""
    try:
        _require_qt()
    except GuiUnavailable as exc:
        print(f"xbar gui: error: {exc}", file=sys.stderr)
        return 2
    from qtpy import QtWidgets

    if args.runs is not None:
        os.environ["XBAR_RUNS"] = str(args.runs)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    window = _classes()["TuneWindow"](plots=not args.no_plots)
    window.show()
    return int(app.exec())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="xbar gui", description="Live window for write-verify tuning")
    gui_arguments(p)
    return run_window(p.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
