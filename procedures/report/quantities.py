"""What a run means to an operator: a headline that says whether the run met its goal, and every
report value as a quantity with its unit and sensible digits.

Files hold SI values (S, J, s, A, fractions); this edge shows µS, µJ, mA, % and s.  Shared by
``report.html`` (:mod:`procedures.report.report_html`) and ``xbar show`` (:mod:`procedures.report.tables`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: a run's procedure as a title
TITLES = {"tune": "Write-verify tuning", "deploy": "Network deployment", "infer": "Inference on chip",
          "read": "Conductance map", "form": "Electroforming", "iv": "IV sweep", "retention": "Retention",
          "endurance": "Endurance"}

#: labels of report keys that are not their own words (the key's last part)
LABELS = {"rel_error_mean": "relative error, mean", "rel_error_max": "relative error, max",
          "energy_j": "energy", "instrument_time_s": "instrument time", "wall_s": "wall time",
          "duration_s": "duration", "stuck_flagged": "stuck (flagged)", "true_within_tol": "truly within tolerance",
          "stuck_true": "stuck (true)", "compliance_A": "compliance", "g_min": "conductance, min",
          "g_max": "conductance, max", "g_median": "conductance, median", "g_mean": "conductance, mean",
          "g_std": "conductance, std", "v_read": "read voltage", "v_max": "sweep amplitude",
          "on_off_ratio": "on/off ratio", "chip_mvm": "chip (analog MVM)", "readback": "read-back weights",
          "chip_mvm_without_predistortion": "chip (analog MVM) without pre-distortion",
          "readback_without_predistortion": "read-back weights without pre-distortion"}

_PERCENT = ("yield", "tolerance", "true_within_tol", "accuracy", "rel_error", "relative_change", "frac_",
            "weight_error", "software", "chip_mvm", "readback", "product_error")


def _digits(x: float, sig: int = 3) -> str:
    """``x`` to ``sig`` significant digits, without exponent between 1e-3 and 1e6."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if 1e-3 <= abs(x) < 1e6:
        decimals = max(sig - 1 - int(math.floor(math.log10(abs(x)))), 0)
        return f"{x:.{decimals}f}"
    return f"{x:.{sig - 1}e}"


def unit_of(key: str) -> tuple[str, float]:
    """(unit shown, factor from the file's SI value) for a report key (dotted keys: the last part)."""
    k = key.rsplit(".", 1)[-1].lower()
    if k in ("v_max", "v_read") or "voltage" in k or k.startswith("v_"):
        return "V", 1.0
    if k.startswith("g_") or "conductance" in k:
        return "µS", 1e6
    if k.endswith("_j") or k == "energy":
        return "µJ", 1e6
    if k.endswith("_a") or k == "compliance":
        return "mA", 1e3
    if k.endswith("_s") or k in ("wall", "time"):
        return "s", 1.0
    if any(p in k for p in _PERCENT):
        return "%", 100.0
    return "", 1.0


def quantity(key: str, value) -> str:
    """A report value for people: its unit (µS, %, µJ, mA, V, s) and 3 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        unit, factor = unit_of(key)
        return _digits(value * factor) + (f" {unit}" if unit else "")
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) == 0:
            return "none"
        if all(isinstance(v, dict) for v in value):
            return "; ".join(", ".join(f"{label(k)} {quantity(k, x)}" for k, x in v.items()) for v in value)
        items = list(np.asarray(value, dtype=object).ravel())
        if all(isinstance(v, (int, np.integer)) for v in items) and len(items) == 2 and \
                key.endswith(("size", "shape", "extent", "chip", "cell")):
            return f"({items[0]}, {items[1]})" if key.endswith("cell") else f"{items[0]} × {items[1]}"
        return ", ".join(quantity(key, v) for v in items)
    return str(value)


def label(key: str) -> str:
    """The words for a report key (its last dotted part)."""
    k = key.rsplit(".", 1)[-1]
    return LABELS.get(k, k.replace("_", " "))


@dataclass
class Headline:
    """One sentence on the run's outcome; ``met``: whether it met its goal (None: no goal to judge)."""

    text: str
    met: bool | None = None


def _pct(x) -> str:
    return f"{100.0 * float(x):.3g} %"


def _us(x) -> str:
    return _digits(1e6 * float(x)) + " µS"


def headline(procedure: str, report: dict | None, status: str = "finished", error: str | None = None) -> Headline:
    """The run's outcome in one sentence, from its ``report.json`` (SI values)."""
    r = report if isinstance(report, dict) else {}
    if status != "finished":
        why = f": {error}" if error else ""
        return Headline(f"Run {status}{why}; the data measured so far is saved.", False)
    try:
        return _headline(procedure, r)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return Headline(f"{TITLES.get(procedure, procedure)} finished.", None)


def _headline(procedure: str, r: dict) -> Headline:
    tuning = r if "converged" in r else r.get("tuning")
    if procedure in ("tune", "deploy") and isinstance(tuning, dict) and "converged" in tuning:
        t = tuning
        stuck = int(t.get("stuck_flagged", 0))
        working = int(t["cells"]) - stuck
        bad = int(t.get("failed", 0)) + int(t.get("disturbed", 0))
        text = (f"{t['converged']} of {working} working cells within {_pct(t['tolerance'])}; {stuck} stuck")
        if bad:
            text += f"; {t.get('failed', 0)} failed, {t.get('disturbed', 0)} disturbed"
        if t.get("true_within_tol") is not None:
            text += f" (simulator's truth: {_pct(t['true_within_tol'])} of working cells within tolerance)"
        acc = r.get("accuracy")
        if procedure == "deploy" and isinstance(acc, dict) and "chip_mvm" in acc:
            text += f". Chip accuracy {_pct(acc['chip_mvm'])} (software {_pct(acc['software'])})"
        return Headline(("Goal met: " if bad == 0 else "Goal missed: ") + text + ".", bad == 0)
    if procedure == "deploy" and isinstance(r.get("accuracy"), dict):
        a = r["accuracy"]
        return Headline(f"Chip accuracy {_pct(a['chip_mvm'])} (software {_pct(a['software'])}).", None)
    if procedure == "infer":
        text = f"Accuracy {_pct(r['accuracy'])} on {r['test_points']} test points"
        if r.get("software_accuracy") is not None:
            text += f" (software {_pct(r['software_accuracy'])})"
        return Headline(text + ".", None)
    if procedure == "form":
        ok = int(r["not_formed"]) == 0
        return Headline(("Goal met: " if ok else "Goal missed: ") + f"{r['formed']} of {r['cells']} cells formed "
                        f"({r['newly_formed']} newly, {r['already_formed']} already); {r['not_formed']} not formed.", ok)
    if procedure == "read":
        return Headline(f"{r['cells']} cells read at {_digits(r['v_read'])} V: median {_us(r['g_median'])} "
                        f"({_us(r['g_min'])} – {_us(r['g_max'])}); {r['below_window']} below and "
                        f"{r['above_window']} above the programming window.", None)
    if procedure == "iv":
        cell = r.get("cell", ["?", "?"])
        kind = "Switching loop" if r.get("mode") == "pulsed" else "DC read sweep"
        return Headline(f"{kind} of cell ({cell[0]}, {cell[1]}): conductance {_us(r['g_min'])} – {_us(r['g_max'])}, "
                        f"on/off ratio {_digits(r['on_off_ratio'])}.", None)
    if procedure == "retention":
        return Headline(f"Mean conductance changed {_pct(r['mean_relative_change'])} over "
                        f"{_digits(r['duration_s'])} s ({r['reads']} reads of {r['cells']} cells); largest change of "
                        f"one cell {_pct(r['max_abs_relative_change'])}.", None)
    if procedure == "endurance":
        return Headline(f"After {r['cycles']} cycles of {r['cells']} cell(s): on/off ratio "
                        f"{_digits(r['on_off_ratio_first'])} → {_digits(r['on_off_ratio_last'])} "
                        f"(lowest {_digits(r['on_off_ratio_min'])}).", None)
    return Headline(f"{TITLES.get(procedure, procedure)} finished.", None)


#: parameters that describe the chip (the rest describe the procedure)
CHIP_PARAMETERS = ("chip", "station", "chip_from", "preset", "size", "chips", "seed", "pristine", "line_resistance",
                   "ideal_lines")
#: run.json keys by group, in order (keys not listed go to "Run")
META_GROUPS = {
    "Run": ("procedure", "status", "started", "ended", "resumes", "resumed_at", "error", "command"),
    "Bench and chip": ("station", "chip_id", "instruments"),
    "Software and operator": ("software_version", "operator"),
}


def parameter_groups(parameters: dict) -> list[tuple[str, list[tuple[str, object]]]]:
    """The run's parameters as [("Chip", [...]), ("Procedure", [...])]."""
    chip = [(k, parameters[k]) for k in CHIP_PARAMETERS if k in parameters]
    rest = [(k, v) for k, v in parameters.items() if k not in CHIP_PARAMETERS]
    return [("Chip", chip), ("Procedure", rest)]


def meta_groups(meta: dict) -> list[tuple[str, list[tuple[str, object]]]]:
    """``run.json`` (without its parameters) in :data:`META_GROUPS`."""
    listed = {k for keys in META_GROUPS.values() for k in keys} | {"parameters"}
    groups = []
    for name, keys in META_GROUPS.items():
        rows = [(k, meta[k]) for k in keys if k in meta]
        if name == "Run":
            rows += [(k, v) for k, v in meta.items() if k not in listed]
        flat = []
        for k, v in rows:
            if isinstance(v, dict):
                flat += [(f"{k}.{kk}", vv) for kk, vv in v.items()]
            else:
                flat.append((k, " ".join(map(str, v)) if k == "command" and isinstance(v, list) else v))
        groups.append((name, flat))
    return groups
