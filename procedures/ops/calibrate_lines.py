"""Calibrate lines: measure the crossbar's line resistance per segment from reads under two biasings.

The tuner's IR-drop correction (:mod:`programming.ir_correction`) needs an estimate of the line
resistance.  This procedure measures it on the chip itself, with nothing but reads below the
switching threshold (so it can run before or after tuning and disturbs nothing):

1. every cell read with the unselected lines grounded (``ground``);
2. one cell per row (its column stepping by 3) read at half and at the full read voltage: the
   devices' I-V curvature β (the model needs it for step 3);
3. the same cells read with the unselected lines floating (``float``): their sneak paths route the
   current through the lines differently from a grounded read.

:func:`~programming.ir_correction.estimate_line_resistance` finds the resistance for which the
conductances fitted to the grounded map reproduce the floating reads.  The result is written to
``lines.json`` in the run folder and to the report; ``xbar tune --line-estimate OHMS`` uses it
(``xbar tune`` measures it the same way by itself unless told a value).
``--access-resistance`` is the known path from the instruments to the lines (relay, leads, probe),
which a bench adds in series with every line.
"""
from __future__ import annotations

import json

import numpy as np
from pymeasure.experiment import FloatParameter, Parameter

from programming.ir_correction import calibration_cells, measure_line_resistance

from .base import XbarProcedure
from .read_map import check_read_voltage

LINES_JSON = "lines.json"


def parse_line_estimate(value) -> float | None:
    """A ``--line-estimate`` value in Ω, or None for ``auto``; ValueError naming a bad one."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"--line-estimate must be a resistance in ohms or 'auto', got {value!r}") from None
    if not np.isfinite(number) or number < 0:
        raise ValueError(f"--line-estimate must be a finite resistance >= 0 ohm, got {value!r}")
    return number


class LineEstimateMixin:
    """The IR-drop correction's line resistance for the procedures that tune (tune, deploy):
    ``--line-estimate`` (a value measured by ``xbar calibrate-lines``, 0 for none, or ``auto``:
    measured on the chip before tuning, with reads only) and ``--access-estimate`` (the known path
    resistance of a bench, Ω)."""

    line_estimate = Parameter("Line resistance per segment for the IR-drop correction (ohm, from xbar "
                              "calibrate-lines; 0 = none; auto = measure before tuning)", default="auto")
    access_estimate = FloatParameter("Known access path resistance (relay, leads) for the IR-drop correction",
                                     units="ohm", minimum=0, default=0.0)

    def line_estimate_ohm(self) -> float | None:
        return parse_line_estimate(self.line_estimate)

    def measured_line_estimate(self, xb) -> float:
        """The estimate to tune with (Ω): the given value, or measured now for ``auto``.  (The
        on-instrument loop reads raw; the host maps its targets and read-backs through the same
        correction.)"""
        r_line = self.line_estimate_ohm()
        if r_line is None:
            r_line = float(np.median(measure_line_resistance(xb, r_access=float(self.access_estimate))[0]))
        self.line_estimate_used = r_line
        return r_line


class CalibrateLinesProcedure(XbarProcedure):
    """Measure the line resistance per segment (grounded vs floating reads) for the tuner's IR-drop correction."""

    NAME = "calibrate-lines"
    DATA_COLUMNS = ["Chip", "Line resistance (ohm)", "Beta (1/V^2)"]

    v_read = FloatParameter("Read voltage", units="V", default=0.2)
    access_resistance = FloatParameter("Known access path resistance (relay, leads)", units="ohm",
                                       minimum=0, default=0.0)

    def check_limits(self, limits) -> None:
        check_read_voltage(limits, float(self.v_read))

    def run(self) -> None:
        xb = self.xb
        self.cells_sampled = calibration_cells(xb.shape)
        total = xb.shape[0] * xb.shape[1] + 3 * len(self.cells_sampled)
        self.count(0, total)
        self.r_line, self.beta = measure_line_resistance(xb, float(self.v_read), float(self.access_resistance))
        self.count(total, total)
        for k in range(xb.n_chips):
            self.emit("results", {"Chip": k, "Line resistance (ohm)": float(self.r_line[k]),
                                  "Beta (1/V^2)": float(self.beta[k])})

    def finalize(self) -> None:
        r = getattr(self, "r_line", None)
        if r is None:
            return
        self.report = {"line_resistance_ohm": float(np.median(r)), "line_resistance_per_chip_ohm": r.tolist(),
                       "beta_per_v2": float(np.median(self.beta)), "access_resistance_ohm": float(self.access_resistance),
                       "v_read": float(self.v_read), "cells_sampled": len(self.cells_sampled)}
        if self.run_dir is not None:
            (self.run_dir / LINES_JSON).write_text(json.dumps(self.report, indent=2) + "\n")
