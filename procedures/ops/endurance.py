"""Endurance: SET/RESET cycling of cells with periodic reads of both states.

Each cycle is one SET pulse (``v_set``) and one RESET pulse (``−v_reset``) on every selected cell;
at log-spaced check cycles (1, 2, 5, 10, 20, 50, ...) and the last, the cell is read after its
SET and after its RESET.  The cells (``cells`` as ``r,c;r,c``; default the main diagonal up to 4
cells) must not share a row or a column, so on the simulated chip they cycle together.
"""
from __future__ import annotations

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter, ListParameter, Parameter

from .base import XbarProcedure
from .pulse_schedule import chip_width


def check_cycles(n: int) -> np.ndarray:
    """Cycles (1-based) after which the states are read: 1-2-5 per decade, and ``n``."""
    marks = {n}
    k = 1
    while k <= n:
        for m in (1, 2, 5):
            if k * m <= n:
                marks.add(k * m)
        k *= 10
    return np.array(sorted(marks))


def parse_cells(text: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``"r,c;r,c"`` → (rows, cols); empty → the diagonal up to 4 cells.  Cells must be inside the
    array and on distinct lines."""
    if not str(text).strip():
        k = np.arange(min(4, *shape))
        return k, k.copy()
    try:
        pairs = [tuple(int(v) for v in item.split(",")) for item in str(text).split(";") if item.strip()]
    except ValueError:
        raise ValueError(f"--cells takes 'row,col;row,col', got {text!r}") from None
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"--cells takes 'row,col;row,col', got {text!r}")
    rows, cols = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    bad = [(r, c) for r, c in pairs if not (0 <= r < shape[0] and 0 <= c < shape[1])]
    if bad:
        raise ValueError(f"cell {bad[0]} is outside the {shape[0]}x{shape[1]} array")
    if len(set(rows)) < len(rows) or len(set(cols)) < len(cols):
        raise ValueError("endurance cells must not share a row or a column")
    return rows, cols


class EnduranceProcedure(XbarProcedure):
    """SET/RESET cycling with periodic reads."""

    NAME = "endurance"
    DATA_COLUMNS = ["Cycle", "Chip", "Row", "Col", "G SET (S)", "G RESET (S)"]

    cells = Parameter("Cells", default="")
    cycles = IntegerParameter("Cycles", minimum=1, maximum=10**9, default=1000)
    v_set = FloatParameter("SET amplitude", units="V", default=1.6)
    v_reset = FloatParameter("RESET amplitude", units="V", default=1.8)
    width = FloatParameter("Pulse width (0 = 1 µs or the chip's shortest if longer)", units="s", minimum=0,
                           default=0.0)
    scheme = ListParameter("Write scheme", choices=["v/2", "v/3", "float"], default="v/2")

    def check(self) -> None:
        super().check()
        parse_cells(self.cells, self.array_size)
        if not (float(self.v_set) > 0 and float(self.v_reset) > 0 and float(self.width) >= 0):
            raise ValueError("--v-set, --v-reset (magnitudes) must be positive and --width >= 0 (0: the default)")

    def check_limits(self, limits) -> None:
        limits.check_pulse(np.array([float(self.v_set), -float(self.v_reset)]), np.full(2, self.pulse_width(limits)))

    def pulse_width(self, limits=None) -> float:
        """The cycling pulse width, s (:func:`~.pulse_schedule.chip_width`, default 1 µs)."""
        return chip_width(self.width, 1e-6, limits)

    def run(self) -> None:
        xb = self.xb
        rows, cols = parse_cells(self.cells, xb.shape)
        marks = check_cycles(int(self.cycles))
        self.rows, self.cols = rows, cols
        self.log_cycles, self.g_set, self.g_reset = [], [], []
        w = self.pulse_width(xb.limits)
        for n in range(1, int(self.cycles) + 1):
            if n % 50 == 1:
                self.stop_point()
            xb.pulse(rows, cols, float(self.v_set), w, self.scheme)
            check = n == marks[0] if len(marks) else False
            if check:
                g_on = xb.read(rows, cols).conductance
            xb.pulse(rows, cols, -float(self.v_reset), w, self.scheme)
            if check:
                marks = marks[1:]
                g_off = xb.read(rows, cols).conductance
                self.log_cycles.append(n)
                self.g_set.append(g_on)
                self.g_reset.append(g_off)
                for c in range(xb.n_chips):
                    for k in range(rows.size):
                        self.emit("results", {"Cycle": n, "Chip": c, "Row": int(rows[k]), "Col": int(cols[k]),
                                              "G SET (S)": float(g_on[c, k]), "G RESET (S)": float(g_off[c, k])})
                self.count(n, int(self.cycles), "cycle")

    def finalize(self) -> None:
        if not getattr(self, "g_set", None):
            return
        on, off = np.stack(self.g_set), np.stack(self.g_reset)        # (checks, n_chips, cells)
        self.series = {"cycles": np.array(self.log_cycles), "g_set": on, "g_reset": off,
                       "rows": self.rows, "cols": self.cols}
        ratio = on / np.maximum(off, 1e-15)
        self.report = {"cells": int(self.rows.size), "cycles": int(self.log_cycles[-1]),
                       "g_set_first": float(on[0].mean()), "g_set_last": float(on[-1].mean()),
                       "g_reset_first": float(off[0].mean()), "g_reset_last": float(off[-1].mean()),
                       "on_off_ratio_first": float(ratio[0].mean()), "on_off_ratio_last": float(ratio[-1].mean()),
                       "on_off_ratio_min": float(ratio.min())}
