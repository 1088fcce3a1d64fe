"""IV sweep of one cell, in one of two modes.

* ``read``: a DC sweep 0 → +v_max → −v_max → 0 within the read range (|V| ≤ the chip's
  ``v_read_max``, below the switching threshold): the current measured at each voltage — the
  device's non-linear I-V, without disturbing its state.
* ``pulsed``: the switching loop.  Pulses of 0 → +v_max → −v_max → 0 (``width`` each, under the
  write scheme), each followed by a read at ``v_read``: the remanent conductance and read current
  after every pulse trace the SET/RESET hysteresis loop.
"""
from __future__ import annotations

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter, ListParameter

from .base import XbarProcedure
from .read_map import check_read_voltage


def sweep_voltages(v_max: float, step: float) -> np.ndarray:
    """0 → +v_max → −v_max → 0 in ``step`` increments (V), without the 0 V points."""
    n = max(int(round(abs(v_max) / step)), 1)
    up = np.linspace(0, v_max, n + 1)[1:]
    v = np.concatenate([up, up[::-1][1:], -up, -up[::-1][1:]])
    return v[np.abs(v) > 1e-12]


class IVProcedure(XbarProcedure):
    """IV sweep of one cell: a DC read sweep or a pulsed switching loop."""

    NAME = "iv"
    DATA_COLUMNS = ["Step", "Voltage (V)", "Current (A)", "Conductance (S)"]

    row = IntegerParameter("Row", minimum=0, default=0)
    col = IntegerParameter("Column", minimum=0, default=0)
    mode = ListParameter("Mode", choices=["pulsed", "read"], default="pulsed")
    v_max = FloatParameter("Sweep amplitude", units="V", default=1.6)
    v_step = FloatParameter("Voltage step", units="V", default=0.05)
    v_read = FloatParameter("Read voltage", units="V", default=0.2)
    width = FloatParameter("Pulse width", units="s", default=1e-6)
    compliance = FloatParameter("Compliance", units="A", default=10e-3)
    scheme = ListParameter("Write scheme", choices=["v/2", "v/3", "float"], default="v/2")

    def check(self) -> None:
        super().check()
        r, c = self.array_size
        if not (0 <= int(self.row) < r and 0 <= int(self.col) < c):
            raise ValueError(f"cell ({self.row}, {self.col}) is outside the {r}x{c} array")
        if not float(self.compliance) > 0:
            raise ValueError(f"--compliance must be a positive current (A), got {self.compliance}")
        if not float(self.v_max) > 0 or not float(self.v_step) > 0:
            raise ValueError("--v-max and --v-step must be positive voltages")

    def check_limits(self, limits) -> None:
        if self.mode == "read":
            check_read_voltage(limits, float(self.v_max), "sweep amplitude of a read sweep")
        else:
            check_read_voltage(limits, float(self.v_read))
            v = sweep_voltages(float(self.v_max), float(self.v_step))
            limits.check_pulse(v, np.full(v.shape, float(self.width)))

    def chip_overrides(self) -> dict:
        return {"i_compliance": float(self.compliance)}

    def run(self) -> None:
        xb = self.xb
        volts = sweep_voltages(float(self.v_max), float(self.v_step))
        r, c = np.array([int(self.row)]), np.array([int(self.col)])
        self.points = []
        for k, v in enumerate(volts):
            self.stop_point()
            if self.mode == "read":
                rd = xb.read(r, c, v_read=float(v))
                current, g = float(rd.current[0, 0]), float(rd.conductance[0, 0])
            else:
                xb.pulse(r, c, float(v), float(self.width), self.scheme)
                rd = xb.read(r, c, v_read=float(self.v_read))
                current, g = float(rd.current[0, 0]), float(rd.conductance[0, 0])
            self.points.append((float(v), current, g))
            self.emit("results", {"Step": k, "Voltage (V)": float(v), "Current (A)": current, "Conductance (S)": g})
            self.count(k + 1, volts.size, "point")

    def finalize(self) -> None:
        pts = np.array(getattr(self, "points", []), float).reshape(-1, 3)
        if not len(pts):
            return
        self.series = {"voltage": pts[:, 0], "current": pts[:, 1], "conductance": pts[:, 2]}
        self.report = {"cell": [int(self.row), int(self.col)], "mode": self.mode, "points": int(len(pts)),
                       "v_max": float(self.v_max), "g_min": float(pts[:, 2].min()), "g_max": float(pts[:, 2].max()),
                       "on_off_ratio": float(pts[:, 2].max() / max(pts[:, 2].min(), 1e-15))}
