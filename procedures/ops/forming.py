"""Forming: ramped positive pulses under a current compliance until each cell switches on.

Cells are formed in *waves*: cells on distinct rows and columns (a cyclic diagonal of the array),
so on the simulated chip a wave is one vectorized call per step and on a bench its cells are
pulsed one after another.  For each wave: read every cell; cells already above
``g_formed`` are reported as already formed and never pulsed; the others get pulses of
``v_start``, ``v_start + v_step``, ... up to ``v_stop``, each followed by a read, until their
conductance reaches ``g_formed``.  The default write scheme is V/3 so that half-selected,
already formed neighbours see at most ``v_stop/3`` (below their switching threshold), not V/2.
Re-running forming on a partly formed array skips what is formed: it resumes by itself.
"""
from __future__ import annotations

import numpy as np
from pymeasure.experiment import FloatParameter, ListParameter

from .base import XbarProcedure
from .pulse_schedule import chip_width


def waves(shape: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cyclic diagonals covering an array once: each wave's cells share no row and no column."""
    n_rows, n_cols = shape
    k = np.arange(min(n_rows, n_cols))
    if n_rows <= n_cols:
        return [(k, (k + s) % n_cols) for s in range(n_cols)]
    return [((k + s) % n_rows, k) for s in range(n_rows)]


class FormingProcedure(XbarProcedure):
    """Electroforming of every cell with ramped pulses under compliance."""

    NAME = "form"
    DATA_COLUMNS = ["Chip", "Row", "Col", "Formed", "Forming voltage (V)", "Pulses",
                    "Initial conductance (S)", "Final conductance (S)"]

    v_start = FloatParameter("Start amplitude", units="V", default=1.5)
    v_stop = FloatParameter("Stop amplitude", units="V", default=2.9)
    v_step = FloatParameter("Amplitude step", units="V", default=0.05)
    width = FloatParameter("Pulse width (0 = 10 µs or the chip's shortest if longer)", units="s", minimum=0,
                           default=0.0)
    compliance = FloatParameter("Compliance", units="A", default=1e-3)
    g_formed = FloatParameter("Formed above", units="S", default=50e-6)
    scheme = ListParameter("Write scheme", choices=["v/3", "v/2", "float"], default="v/3")

    def check(self) -> None:
        super().check()
        if not float(self.compliance) > 0:
            raise ValueError(f"--compliance must be a positive current (A), got {self.compliance}")
        if not 0 < float(self.v_start) <= float(self.v_stop):
            raise ValueError(f"forming needs 0 < --v-start <= --v-stop, got {self.v_start} and {self.v_stop} V")
        if not float(self.v_step) > 0:
            raise ValueError(f"--v-step must be positive, got {self.v_step} V")
        if not float(self.width) >= 0 or not float(self.g_formed) > 0:
            raise ValueError("--width must be >= 0 (0: the default) and --g-formed positive")

    def chip_overrides(self) -> dict:
        return {"i_compliance": float(self.compliance)}

    def check_limits(self, limits) -> None:
        amps = self.amplitudes()
        limits.check_pulse(amps, np.full(amps.shape, self.pulse_width(limits)))

    def pulse_width(self, limits=None) -> float:
        """The forming pulse width, s (:func:`~.pulse_schedule.chip_width`, default 10 µs)."""
        return chip_width(self.width, 1e-5, limits)

    def amplitudes(self) -> np.ndarray:
        n = int(np.floor((float(self.v_stop) - float(self.v_start)) / float(self.v_step) + 1e-9)) + 1
        return float(self.v_start) + float(self.v_step) * np.arange(n)

    def run(self) -> None:
        xb = self.xb
        amps = self.amplitudes()
        full = (xb.n_chips, *xb.shape)
        self.before = np.full(full, np.nan)
        self.after = np.full(full, np.nan)
        self.v_form = np.full(full, np.nan)
        self.pulses = np.zeros(full, np.int32)
        thr = float(self.g_formed)
        done = 0
        for rows, cols in waves(xb.shape):
            self.stop_point()
            g = xb.read(rows, cols).conductance                     # (n_chips, L)
            chips = np.arange(xb.n_chips)[:, None]
            self.before[chips, rows, cols] = g
            todo = g < thr
            for v in amps:
                if not todo.any():
                    break
                self.stop_point()
                xb.pulse(rows, cols, v, self.pulse_width(xb.limits), self.scheme, active=todo)
                self.pulses[chips, rows, cols] += todo
                g = np.where(todo, xb.read(rows, cols, active=todo).conductance, g)
                formed = todo & (g >= thr)
                self.v_form[chips, rows, cols] = np.where(formed, v, self.v_form[chips, rows, cols])
                todo &= ~formed
            self.after[chips, rows, cols] = g
            for c in range(xb.n_chips):
                for r, j in zip(rows, cols):
                    self.emit("results", self._row(c, r, j))
            done += rows.size
            self.count(done, xb.shape[0] * xb.shape[1])

    def _row(self, c, r, j) -> dict:
        vf = self.v_form[c, r, j]
        return {"Chip": c, "Row": int(r), "Col": int(j), "Formed": int(self.after[c, r, j] >= float(self.g_formed)),
                "Forming voltage (V)": float(vf), "Pulses": int(self.pulses[c, r, j]),
                "Initial conductance (S)": float(self.before[c, r, j]),
                "Final conductance (S)": float(self.after[c, r, j])}

    def finalize(self) -> None:
        if not hasattr(self, "after"):
            return
        thr = float(self.g_formed)
        seen = ~np.isnan(self.after)
        formed = seen & (self.after >= thr)
        already = seen & (self.before >= thr)
        self.maps.update(before=self.before, after=self.after, forming_voltage=self.v_form,
                         formed=formed.astype(np.int8), pulses=self.pulses)
        vf = self.v_form[~np.isnan(self.v_form)]
        self.report = {"cells": int(seen.sum()), "formed": int(formed.sum()), "already_formed": int(already.sum()),
                       "newly_formed": int((formed & ~already).sum()), "not_formed": int((seen & ~formed).sum()),
                       "forming_voltage_mean": float(vf.mean()) if vf.size else None,
                       "forming_voltage_std": float(vf.std()) if vf.size else None,
                       "forming_voltage_max": float(vf.max()) if vf.size else None,
                       "pulses_total": int(self.pulses.sum()), "compliance_A": float(self.compliance),
                       "scheme": self.scheme}
