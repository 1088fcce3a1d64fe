"""Tune array: write-verify every cell of the array (or the top-left block) to its target.

Records: one ``data.csv`` row per cell and pass (see :mod:`procedures.storage.journal`); ``run.h5`` maps
``before`` (the array read before tuning, also in ``before.npy``), ``targets`` (``targets.npy``), ``final`` (the last read-back), ``status``,
``pulses``, ``reads``, ``rel_error`` and the trace of every read and pulse.  Resumable: after
Ctrl-C, a crash, ``kill -9`` or an instrument timeout, ``xbar tune --resume RUN_DIR`` continues
without re-pulsing finished cells of the pass in progress.
"""
from __future__ import annotations

import numpy as np
from pymeasure.experiment import BooleanParameter, FloatParameter, IntegerParameter, ListParameter, Parameter

from programming.schedule import ORDERS
from programming.tune_result import STATUS_NAMES, TuneResult
from programming.tuner import TunerConfig, on_instrument_scheme, tune

from .base import XbarProcedure
from .calibrate_lines import LineEstimateMixin
from .chips import load_station, make_targets, read_npy, read_targets
from .pulse_schedule import PulseScheduleMixin
from ..storage.journal import TUNE_COLUMNS, FileTuneLog, read_events, read_trace, repair_tails

TARGETS_NPY = "targets.npy"
#: the array read before tuning (S), kept in the run folder while the run goes
BEFORE_NPY = "before.npy"


class TuneLogMixin:
    """Shared by the procedures that tune (tune array, deploy): the run folder's tuning journal."""

    STAGES: tuple[str, ...] = ("tune",)

    def tune_log(self) -> FileTuneLog:
        if self.resuming:
            repair_tails(self.run_dir)      # the runner did it before reading data.csv; a no-op now
        snapshot = self.save_chip_state if hasattr(self.xb, "state_dict") else None
        self.log = FileTuneLog(self.run_dir, self.emit, snapshot=snapshot, should_stop=self.should_stop,
                               resume=self.resuming)
        return self.log

    def journal_maps(self, targets: np.ndarray, final: np.ndarray | None) -> None:
        """Maps and trace rebuilt from the journal (complete even after an interruption)."""
        from programming.tune_state import TuneState

        state = None
        journals = getattr(getattr(self, "log", None), "journals", {})
        for stage in self.STAGES:                      # later stages (re-targeted cells) add up
            if stage in journals and not self.resuming:  # this run journaled it all: no parsing back
                passes, cells = journals[stage].events()
            else:
                passes, cells = read_events(self.run_dir, stage, targets.shape)
            if not passes:
                continue
            s = TuneState.from_events(targets, passes, cells, rtol=np.inf)
            if state is None:
                state = s
                continue
            for k in ("pulses", "reads", "energy", "time"):
                getattr(state, k)[...] += getattr(s, k)
            moved = s.status != 0
            state.status[moved] = s.status[moved]
        if state is not None:
            self.maps.update(status=state.status, pulses=state.pulses, reads=state.reads)
        self.maps["targets"] = targets
        if final is not None:
            self.maps["final"] = final
            self.maps["rel_error"] = (final - targets) / targets
        self.trace = read_trace(self.run_dir, list(self.STAGES))


class TuneProcedure(PulseScheduleMixin, LineEstimateMixin, TuneLogMixin, XbarProcedure):
    """Write-verify tuning of every cell (``size`` block) to ``targets`` (random or FILE.npy, S),
    at the pulse width and amplitude schedule of :mod:`procedures.ops.pulse_schedule`."""

    NAME = "tune"
    RESUMABLE = True
    DATA_COLUMNS = TUNE_COLUMNS

    targets = Parameter("Targets", default="random")
    tolerance = FloatParameter("Tolerance", minimum=1e-4, maximum=0.49, default=0.01)
    passes = IntegerParameter("Passes (at most)", minimum=1, maximum=20, default=TunerConfig().passes)
    order = ListParameter("Order", choices=list(ORDERS), default="row")
    parallel = IntegerParameter("Parallel cells", minimum=0, maximum=100000, default=0)
    scheme = ListParameter("Write scheme", choices=["v/2", "v/3", "float", "auto"], default=TunerConfig().write_scheme)
    max_pulses = IntegerParameter("Max pulses", minimum=1, maximum=100000, default=200)
    no_reset = BooleanParameter("No initial reset", default=False)
    on_instrument = BooleanParameter("Write-verify loop on the instrument (2600B script)", default=False)

    def config(self, limits=None, line_resistance: float | None = None) -> TunerConfig:
        if line_resistance is None:
            line_resistance = self.line_estimate_ohm() or 0.0
        base = TunerConfig(tolerance=float(self.tolerance), initial_reset=not self.no_reset,
                           passes=int(self.passes), order=self.order, parallel=int(self.parallel) or None,
                           write_scheme=self.scheme, max_pulses=int(self.max_pulses), seed=int(self.seed),
                           line_resistance=float(line_resistance), access_resistance=float(self.access_estimate),
                           device_beta=float(getattr(self, "device_beta_used", 0.0)),
                           write_compensation=not self.on_instrument)   # (the script writes uncompensated)
        return self.pulse_config(base, limits)

    def check(self) -> None:
        super().check()
        self.config()                                     # TunerConfig validates its settings
        if self.on_instrument and self.chip != "station":
            raise ValueError("--on-instrument runs the write-verify loop on a bench's 2600B: it needs --station")
        if self.on_instrument:
            problem = load_station(self.station).on_instrument_problem(on_instrument_scheme(self.scheme))
            if problem:
                raise ValueError(problem)
        if self.targets != "random" and not self.resuming:   # the file, before a run folder exists
            read_targets(self.targets, self.planned_shape(), int(self.chips) if self.chip == "sim" else 1,
                         self.planned_window())

    def check_limits(self, limits) -> None:
        self.config(limits).check_limits(limits)

    def run(self) -> None:
        xb = self.xb
        saved = self.run_dir / TARGETS_NPY
        if self.resuming and saved.is_file():
            tgt = read_npy(saved, "the run's saved targets", ((xb.n_chips, *xb.shape),))
        else:                   # (a bad targets file is refused here, before anything is read)
            tgt = make_targets(self.targets, xb, int(self.seed), block=self.array_size)
        tgt.flags.writeable = False     # (the tuner takes a read-only array as it is: no copy)
        r_line = self.measured_line_estimate(xb)     # auto: measured now, reads only
        cfg = self.scheduled(self.config(xb.limits, r_line))
        if not (self.resuming and saved.is_file()):
            np.save(saved, tgt)
            np.save(self.run_dir / BEFORE_NPY, xb.read_array())
        if (self.run_dir / BEFORE_NPY).is_file():      # (mapped, not held: read when run.h5 is written)
            self.maps["before"] = np.load(self.run_dir / BEFORE_NPY, mmap_mode="r")
        self.tgt = tgt
        log = self.tune_log()
        try:
            self.result: TuneResult = tune(xb, tgt, cfg, progress=lambda d, t, s: self.count(d, t, stage=s),
                                           on_instrument=bool(self.on_instrument), **log.tune_kwargs("tune", tgt))
        finally:
            log.flush()                     # also on Ctrl-C or an instrument error: keep what finished

    def finalize(self) -> None:
        tgt = getattr(self, "tgt", None)
        if tgt is None:
            return
        result = getattr(self, "result", None)
        if self.resuming and "before" not in self.maps:
            from ..storage.run_data import RUN_H5, RunFolderError, read_h5
            if (self.run_dir / RUN_H5).is_file():
                try:
                    self.maps["before"] = read_h5(self.run_dir / RUN_H5)[0].get("before")
                except RunFolderError:          # cut short by a full disk: the journal holds the rest
                    pass
            if self.maps.get("before") is None:
                self.maps.pop("before", None)
        self.journal_maps(tgt, None if result is None else result.final)
        if result is not None:
            self.maps["status"] = result.status
            self.report = result.summary(self.xb_for_summary)
        else:
            st = self.maps.get("status")
            done = int((st != 0).sum()) if st is not None else 0
            self.report = {"cells": int((~np.isnan(tgt)).sum()), "cells_finished": done,
                           "status_counts": {STATUS_NAMES[c]: int((st == c).sum()) for c in STATUS_NAMES}
                           if st is not None else {}}
        self.report.update(chip_id=getattr(self, "chip_id", ""), size=list(self.array_size), chips=int(self.chips),
                           line_estimate_ohm=getattr(self, "line_estimate_used", None),
                           line_estimate_source=getattr(self, "line_estimate_source", None))
        if getattr(self, "schedule_report", None):
            self.report["schedule"] = self.schedule_report
        # the simulated chip's truth served the summary only, the result and the journal's per-cell
        # sums the maps and report: released before the run folder's maps and plots are written
        # (10 000 chips of 8x8: ~80 MB, ~30 MB and ~17 MB)
        self.xb_for_summary = self.result = None
        if getattr(self, "log", None) is not None:
            self.log.journals.clear()

    def shutdown(self):
        self.xb_for_summary = self.xb if hasattr(self.xb, "true_conductance") else None
        super().shutdown()
