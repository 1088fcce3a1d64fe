"""Calibrate lines: measure the crossbar's line resistance per segment from reads under two biasings.

The tuner's IR-drop correction (:mod:`programming.ir_correction`) needs an estimate of the line
resistance.  This procedure measures it on the chip itself, with nothing but reads below the
switching threshold (so it can run before or after tuning and disturbs nothing):

1. every cell read with the unselected lines grounded (``ground``);
2. one cell per row (its column stepping by 3) read at half and at the full read voltage: the
   devices' I-V curvature β (the model needs it for step 3);
3. the same cells read under a second biasing that routes the current through the lines
   differently: the isolating read (``isolate``: unselected rows at 0 V, unselected columns at
   V_read) where the chip's channels allow it (a station's ``read_schemes``), else with the
   unselected lines floating (``float``, whose sneak paths do the same job less precisely).

:func:`~programming.ir_correction.estimate_line_resistance` finds the resistance for which the
conductances fitted to the grounded map reproduce the second biasing's reads (a first guess, with
β from the ratio of the step-2 reads); :func:`~programming.ir_correction.refine_lines` then fits
the resistance and β *jointly* through the line model, the half-voltage reads modelled as well:
through resistive lines a cell sees less than its row's voltage, so the plain ratio underestimates
β (measured on a simulated 64×64 chip: 0.17 for 0.3 at 0.67 Ω; the joint fit 0.30, and the
resistance within 0.01 %).  The result is written to
``lines.json`` in the run folder and to the report, with the identity of the chip it was measured
on (station, chip ID and array size; for the simulated chip its preset, seed, size and line
resistance).  On a station it is also stored *with the station*: a sidecar next to the station file
(``STATION.lines.json``, :func:`station_store`), so later runs on that bench use it.
``--access-resistance`` is the known path from the instruments to the lines (relay, leads, probe),
which a bench adds in series with every line.

``xbar tune`` / ``deploy`` take ``--line-estimate``:

* ``auto`` (default): the stored estimate of this chip if there is one (the station's sidecar, or
  for the simulated chip the ``--chip-from`` run's ``lines.json``), else measured now;
* ``stored``: the stored estimate, refused before anything runs if there is none for this chip;
* ``measure``: measured now, whatever is stored;
* a value in Ω (0 = no correction).

A stored estimate is validated when loaded (JSON only, known keys, finite resistances >= 0) and
used only for the chip it was measured on: another chip ID, array size or simulated chip is a
mismatch (``stored`` refuses it naming the key; ``auto`` measures instead).
"""
from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pymeasure.experiment import FloatParameter, Parameter

from programming.ir_correction import calibration_cells, line_estimate, measure_line_resistance

from .base import XbarProcedure
from .read_map import check_read_voltage

LINES_JSON = "lines.json"


#: the --line-estimate words (besides a value in ohms)
LINE_CHOICES = ("auto", "stored", "measure")
#: the keys of a stored estimate (lines.json, STATION.lines.json)
STORE_KEYS = {"line_resistance_ohm", "line_resistance_per_chip_ohm", "beta_per_v2", "access_resistance_ohm",
              "v_read", "cells_sampled", "second_read_scheme", "chip", "measured_at"}


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


def parse_line_choice(value) -> tuple[str, float | None]:
    """A ``--line-estimate`` as (``"auto"`` | ``"stored"`` | ``"measure"``, None) or (``"value"``,
    Ω); ValueError naming a bad one."""
    text = str(value).strip().lower()
    if text in LINE_CHOICES:
        return text, None
    try:
        return "value", parse_line_estimate(text)
    except ValueError:
        raise ValueError(f"--line-estimate must be auto, stored, measure or a resistance in ohms >= 0, "
                         f"got {value!r}") from None


def station_store(station) -> Path:
    """The sidecar next to a station file that stores its line-resistance estimate."""
    path = Path(station)
    return path.with_name(path.stem + ".lines.json")


def load_line_store(path: Path, chip: dict) -> dict:
    """The stored estimate at ``path`` for the chip ``chip`` (its identity, as :meth:`chip_key`
    gives it), validated: ValueError with one line naming the file and what is wrong (missing, not
    JSON, an unknown key, a resistance that is not a finite number >= 0, another chip)."""
    if not path.is_file():
        raise ValueError(f"{path}: no stored line-resistance estimate (run xbar calibrate-lines first)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable line-resistance estimate ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a line-resistance estimate must be a JSON object")
    unknown = sorted(set(data) - STORE_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} in the line-resistance estimate")
    for key in ("line_resistance_ohm", "access_resistance_ohm", "beta_per_v2"):
        value = data.get(key, 0.0 if key == "beta_per_v2" else None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            unit = "1/V^2" if key == "beta_per_v2" else "ohms"
            raise ValueError(f"{path}: {key} must be a finite number of {unit} >= 0, got {value!r}")
    stored = data.get("chip")
    if not isinstance(stored, dict):
        raise ValueError(f"{path}: the estimate names no chip (key 'chip')")
    for key, want in chip.items():
        if stored.get(key) != want:
            raise ValueError(f"{path}: the estimate was measured on another chip ({key} {stored.get(key)!r}, "
                             f"this run's {want!r}); run xbar calibrate-lines on this one")
    return data


def write_line_store(path: Path, report: dict) -> None:
    """Write an estimate atomically (a temporary file renamed over ``path``)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)


class LineEstimateMixin:
    """The IR-drop correction's line resistance for the procedures that tune (tune, deploy):
    ``--line-estimate`` (``auto``: the chip's stored estimate, else measured now with reads only;
    ``stored``; ``measure``; or a value in Ω, 0 for none) and ``--access-estimate`` (the known path
    resistance of a bench, Ω; a stored estimate brings the access resistance it was measured with)."""

    line_estimate = Parameter("Line resistance per segment for the IR-drop correction (ohm; 0 = none; auto = "
                              "the stored estimate (xbar calibrate-lines), else measured; stored; measure)",
                              default="auto")
    access_estimate = FloatParameter("Known access path resistance (relay, leads) for the IR-drop correction",
                                     units="ohm", minimum=0, default=0.0)

    def chip_key(self) -> dict:
        """The identity a stored estimate must match: the station's chip ID and array, or the
        simulated chip's preset, seed, size and line resistance."""
        if self.chip == "station":
            from .chips import load_station
            st = load_station(self.station)
            return {"station": st.name, "chip_id": st.chip_id, "rows": st.rows, "cols": st.cols}
        r, c = self.array_size
        key = {"preset": self.preset, "seed": int(self.seed), "rows": r, "cols": c, "chips": int(self.chips),
               "line_resistance": float(self.line_resistance), "pristine": bool(self.pristine)}
        if getattr(self, "ideal_lines", False):
            key["ideal_lines"] = True
        return key

    def line_store(self) -> Path | None:
        """Where this chip's estimate is stored: the station's sidecar, or the ``--chip-from``
        run's ``lines.json`` (the simulated chip); None when there is no such place."""
        if self.chip == "station" and self.station:
            return station_store(self.station)
        if getattr(self, "chip_from", ""):
            return Path(self.chip_from) / LINES_JSON
        return None

    def stored_line_estimate(self, required: bool) -> dict | None:
        """The validated stored estimate of this chip, or None (ValueError if ``required``)."""
        path = self.line_store()
        if path is None:
            if required:
                raise ValueError("--line-estimate stored: no estimate is stored for this chip (a station's is "
                                 "next to its file; a simulated chip's is in the --chip-from run)")
            return None
        try:
            return load_line_store(path, self.chip_key())
        except ValueError:
            if required:
                raise
            return None

    def line_estimate_ohm(self) -> float | None:
        """The estimate known before the chip is opened (a value, or the stored one), None if it
        is to be measured; a bad ``--line-estimate`` or a missing ``stored`` one is refused here."""
        mode, value = parse_line_choice(self.line_estimate)
        if mode == "value":
            return value
        if mode in ("auto", "stored"):
            stored = self.stored_line_estimate(required=mode == "stored")
            if stored is not None:
                return float(stored["line_resistance_ohm"])
        return None

    def measured_line_estimate(self, xb) -> float:
        """The estimate to tune with (Ω): the given value, the stored one, or measured now.  (The
        on-instrument loop reads raw; the host maps its targets and read-backs through the same
        correction.)"""
        mode, value = parse_line_choice(self.line_estimate)
        source, beta = "given", 0.0
        if mode in ("auto", "stored"):
            stored = self.stored_line_estimate(required=mode == "stored")
            if stored is not None:
                value, source = float(stored["line_resistance_ohm"]), f"stored ({self.line_store()})"
                self.access_estimate = float(stored["access_resistance_ohm"])
                beta = float(stored.get("beta_per_v2", 0.0))
        if value is None:
            value, beta = line_estimate(xb, float(self.access_estimate))
            source = "measured"
        self.line_estimate_used = value
        self.line_estimate_source = source
        self.device_beta_used = beta          # the devices' measured I-V curvature, 1/V² (0: unknown)
        return value


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
        self.second_scheme = "isolate" if "isolate" in getattr(xb, "read_schemes", ()) else "float"
        self.r_line, self.beta = measure_line_resistance(xb, float(self.v_read), float(self.access_resistance),
                                                         scheme=self.second_scheme)
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
                       "v_read": float(self.v_read), "cells_sampled": len(self.cells_sampled),
                       "second_read_scheme": getattr(self, "second_scheme", "float"),
                       "chip": LineEstimateMixin.chip_key(self),
                       "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if self.run_dir is not None:
            write_line_store(self.run_dir / LINES_JSON, self.report)
        if self.chip == "station" and self.station:       # stored with the station for later runs
            path = station_store(self.station)
            try:
                write_line_store(path, self.report)
            except OSError as exc:
                self.report["stored_with_station"] = f"not stored: {path}: {exc.strerror or exc}"
            else:
                self.report["stored_with_station"] = str(path)
