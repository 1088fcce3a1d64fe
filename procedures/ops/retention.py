"""Retention: read the conductance map at intervals and follow how it relaxes.

Time passes through :meth:`~programming.crossbar.Crossbar.wait` with nothing sourced: a bench
waits in real time, the simulated chip advances its virtual clock (and ages its devices) at once.
Intervals are linear (``interval`` each) or logarithmic (``log``: ``interval``·2^k).  Usually run on
a tuned chip: ``xbar retention --chip-from TUNE_RUN``.
"""
from __future__ import annotations

import numpy as np
from pymeasure.experiment import BooleanParameter, FloatParameter, IntegerParameter

from .base import XbarProcedure
from .read_map import check_read_voltage


class RetentionProcedure(XbarProcedure):
    """Read map at intervals (retention)."""

    NAME = "retention"
    DATA_COLUMNS = ["Read", "Time (s)", "Mean conductance (S)", "Std conductance (S)",
                    "Mean change (S)", "Max abs change (S)"]

    interval = FloatParameter("Interval", units="s", default=60.0)
    reads = IntegerParameter("Reads", minimum=2, maximum=100000, default=10)
    log = BooleanParameter("Logarithmic intervals", default=False)
    v_read = FloatParameter("Read voltage", units="V", default=0.2)

    def check(self) -> None:
        super().check()
        if not (np.isfinite(float(self.interval)) and float(self.interval) > 0):
            raise ValueError(f"--interval must be a positive time (s), got {self.interval}")

    def check_limits(self, limits) -> None:
        check_read_voltage(limits, float(self.v_read))

    def times(self) -> np.ndarray:
        """Read times (s) from the first read."""
        k = np.arange(int(self.reads))
        if self.log:
            return np.concatenate([[0.0], float(self.interval) * 2.0 ** k[:-1]])
        return float(self.interval) * k

    def run(self) -> None:
        xb = self.xb
        times = self.times()
        self.t, self.g = [], []
        elapsed = 0.0
        for k, t in enumerate(times):
            self.stop_point()
            if t > elapsed:
                xb.wait(t - elapsed)
                elapsed = t
            g = xb.read_array(float(self.v_read))
            self.t.append(t)
            self.g.append(g)
            d = g - self.g[0]
            self.emit("results", {"Read": k, "Time (s)": t, "Mean conductance (S)": float(g.mean()),
                                  "Std conductance (S)": float(g.std()), "Mean change (S)": float(d.mean()),
                                  "Max abs change (S)": float(np.abs(d).max())})
            self.count(k + 1, times.size, "read")

    def finalize(self) -> None:
        if not getattr(self, "g", None):
            return
        maps = np.stack(self.g)
        self.series = {"times": np.array(self.t), "maps": maps}
        self.maps.update(first=maps[0], last=maps[-1])
        rel = (maps[-1] - maps[0]) / maps[0]
        self.report = {"reads": len(self.t), "duration_s": float(self.t[-1]), "cells": int(maps[0].size),
                       "mean_relative_change": float(rel.mean()), "max_abs_relative_change": float(np.abs(rel).max()),
                       "mean_conductance_first": float(maps[0].mean()), "mean_conductance_last": float(maps[-1].mean())}
