"""Records of a write-verify run: per-cell arrays, status codes and the aggregate report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .crossbar import Crossbar
    from .tuner import TunerConfig

#: status codes of :attr:`TuneResult.status`
UNTARGETED, CONVERGED, FAILED, STUCK, DISTURBED = 0, 1, 2, 3, 4
STATUS_NAMES = {UNTARGETED: "untargeted", CONVERGED: "converged", FAILED: "failed", STUCK: "stuck",
                DISTURBED: "disturbed"}



@dataclass
class TuneResult:
    """Per-cell records, arrays of shape (n_chips, rows, cols), and the run's totals."""

    targets: np.ndarray        # S, NaN where untargeted
    status: np.ndarray         # status codes (see STATUS_NAMES)
    pulses: np.ndarray
    reads: np.ndarray
    energy: np.ndarray         # J
    time: np.ndarray           # instrument time, s
    final: np.ndarray          # final read-back conductance, S
    rel_error: np.ndarray      # (final − target)/target
    config: "TunerConfig"
    wall_s: float = 0.0
    compliance_events: int = 0
    passes_run: int = 0
    verify_reads: int = 0      # read-backs of the whole array (re-verify checks and the final one)
    trace: dict | None = field(default=None, repr=False)

    def summary(self, xb: "Crossbar | None" = None) -> dict:
        """The aggregate report (JSON-ready).  With a simulated chip (``true_conductance`` and
        ``working_mask`` attributes) adds ``working`` and ``true_within_tol``."""
        tgt = ~np.isnan(self.targets)
        conv = tgt & (self.status == CONVERGED)
        pulses = self.pulses[tgt]
        out = {
            "cells": int(tgt.sum()),
            "converged": int(conv.sum()),
            "failed": int((tgt & (self.status == FAILED)).sum()),
            "disturbed": int((tgt & (self.status == DISTURBED)).sum()),
            "stuck_flagged": int((tgt & (self.status == STUCK)).sum()),
            "yield": float(conv.sum() / max(tgt.sum(), 1)),
            "rel_error_mean": float(np.abs(self.rel_error[conv]).mean()) if conv.any() else None,
            "rel_error_max": float(np.abs(self.rel_error[conv]).max()) if conv.any() else None,
            "pulses_per_cell": {
                "mean": float(pulses.mean()) if pulses.size else 0.0,
                "median": float(np.median(pulses)) if pulses.size else 0.0,
                "p95": float(np.percentile(pulses, 95)) if pulses.size else 0.0,
            },
            "reads_per_cell": {"mean": float(self.reads[tgt].mean()) if tgt.any() else 0.0},
            "energy_j": float(self.energy[tgt].sum()),
            "instrument_time_s": float(self.time[tgt].sum()),
            "wall_s": float(self.wall_s),
            "passes_run": int(self.passes_run),
            "compliance_events": int(self.compliance_events),
            "tolerance": self.config.tolerance,
            "initial_reset": self.config.initial_reset,
        }
        truth = getattr(xb, "true_conductance", None) if xb is not None else None
        # the same keys for every chip; only a simulator knows the truth
        out.update(working=None, true_within_tol=None, stuck_true=None, stuck_detected=None)
        if truth is not None:
            working = tgt & xb.working_mask
            true_err = np.abs(truth - self.targets) / self.targets
            out["working"] = int(working.sum())
            out["true_within_tol"] = float((true_err[working] <= self.config.tolerance).mean()) if working.any() else None
            stuck = tgt & ~xb.working_mask
            out["stuck_true"] = int(stuck.sum())
            out["stuck_detected"] = int((stuck & (self.status == STUCK)).sum())
        return out

    def status_names(self) -> np.ndarray:
        return np.vectorize(STATUS_NAMES.get)(self.status)
