"""Read map: the conductance of every cell, read at a voltage below the switching threshold."""
from __future__ import annotations

import numpy as np
from pymeasure.experiment import FloatParameter, ListParameter, Parameter

from .base import XbarProcedure


def check_read_voltage(xb_limits, v_read: float, what: str = "read voltage") -> None:
    """Refuse a read voltage of 0 or above the chip's disturb limit before anything is sourced."""
    if not np.isfinite(v_read) or v_read == 0:
        raise ValueError(f"{what} must be a non-zero voltage, got {v_read!r}")
    if abs(v_read) > xb_limits.v_read_max:
        raise ValueError(f"{what} {v_read:g} V is above the disturb threshold: reads are limited to "
                         f"{xb_limits.v_read_max:g} V on this chip")


class ReadMapProcedure(XbarProcedure):
    """Read every cell of the array (chord conductance I/V at ``v_read``)."""

    NAME = "read"
    DATA_COLUMNS = ["Chip", "Row", "Col", "Conductance (S)", "Current (A)"]

    v_read = FloatParameter("Read voltage", units="V", default=0.2)
    scheme = ListParameter("Read scheme", choices=["ground", "float"], default="ground")
    map_file = Parameter("Also save the map as .npy", default="")

    def check(self) -> None:
        super().check()
        if self.map_file and not str(self.map_file).endswith(".npy"):
            raise ValueError(f"--map-file must end in .npy, got {self.map_file!r}")

    def check_limits(self, limits) -> None:
        check_read_voltage(limits, float(self.v_read))

    def run(self) -> None:
        g = self.xb.read_array(float(self.v_read), self.scheme)
        self.g = g
        self.window = self.xb.programming_window
        chips, rows, cols = np.indices(g.shape).reshape(3, -1)
        for k, (c, r, j) in enumerate(zip(chips, rows, cols)):
            self.emit("results", {"Chip": int(c), "Row": int(r), "Col": int(j),
                                  "Conductance (S)": float(g[c, r, j]),
                                  "Current (A)": float(g[c, r, j] * float(self.v_read))})
        self.count(g.size, g.size)
        if self.map_file:
            np.save(self.map_file, g[0] if g.shape[0] == 1 else g)

    def finalize(self) -> None:
        g = getattr(self, "g", None)
        if g is None:
            return
        self.maps["conductance"] = g
        lo, hi = self.window
        self.report = {"cells": int(g.size), "v_read": float(self.v_read), "scheme": self.scheme,
                       "g_min": float(g.min()), "g_median": float(np.median(g)), "g_max": float(g.max()),
                       "g_mean": float(g.mean()), "g_std": float(g.std()),
                       "below_window": int((g < lo).sum()), "above_window": int((g > hi).sum())}
