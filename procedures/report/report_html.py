"""``report.html`` of a run folder: metadata, the summary of ``report.json``, and the plots.

Self-contained (inline CSS, no scripts, images referenced relative to the folder as
``plots/<file>``); every text is HTML-escaped.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from ..storage.run_data import REPORT_HTML, RunData

__all__ = ["write_report_html", "flatten", "format_value"]

MAX_LIST = 20

#: metadata keys shown first, in this order (the other keys of run.json follow)
META_ORDER = ("procedure", "status", "start_time", "started", "start", "end_time", "finished", "end",
              "station", "chip", "chip_id", "software_version", "version", "instruments", "command",
              "resume_count", "resumes")

CAPTIONS = {
    "map_before": "Conductance map of chip 0 before tuning (µS).",
    "map_after": "Conductance map of chip 0 after tuning (µS).",
    "map_final": "Final read-back conductance of chip 0 (µS).",
    "map_conductance": "Conductance map of chip 0 (µS).",
    "map_targets": "Target conductances of chip 0 (µS); blank cells are untargeted.",
    "target_vs_achieved": "Achieved vs target conductance of the targeted cells (µS), by status; "
                          "dashed: identity.",
    "error_hist": "Relative error of the final read-back (%), with the tolerance.",
    "pulses_hist": "Programming pulses per targeted cell.",
    "traces": "Write-verify traces of selected cells: readings (µS, blue), target (dashed), "
              "pulse amplitudes (V, red).",
    "iv": "IV sweep: current (µA) vs voltage, points joined in measurement order.",
    "retention": "Retention: mean ± std conductance (µS) over cells, and the relative change of "
                 "individual cells.",
    "endurance": "Endurance: SET and RESET conductance (µS) per cycle.",
    "forming": "Forming voltages of the formed cells.",
}

CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; font-weight: normal; font-family: monospace; }
td.num { text-align: right; font-family: monospace; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
"""


def format_value(value) -> str:
    """A readable string for a report value: floats to 6 significant digits, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.4e}"
        return f"{value:.6g}"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(format_value(v) for v in np.asarray(value, dtype=object).ravel()) + "]"
    return str(value)


def flatten(obj, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) pairs of a nested dict; lists/arrays of more than 20 items are dropped."""
    out: list[tuple[str, object]] = []
    if not isinstance(obj, dict):
        return [(prefix or "value", obj)]
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.extend(flatten(value, name) if value else [(name, "{}")])
        elif isinstance(value, (list, tuple, np.ndarray)) and np.size(value) > MAX_LIST:
            continue
        else:
            out.append((name, value))
    return out


def _table(rows: list[tuple[str, object]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    lines = ["<table>"]
    for key, value in rows:
        numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        cls = ' class="num"' if numeric else ""
        lines.append(f"<tr><th>{html.escape(str(key))}</th><td{cls}>{html.escape(format_value(value))}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _meta_rows(meta: dict) -> list[tuple[str, object]]:
    keys = [k for k in META_ORDER if k in meta] + [k for k in meta if k not in META_ORDER and k != "parameters"]
    rows: list[tuple[str, object]] = []
    for key in keys:
        value = meta[key]
        if isinstance(value, dict):
            rows.extend(flatten(value, key) if value else [(key, "{}")])
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value) and key in ("command", "argv"):
            rows.append((key, " ".join(value)))
        else:
            rows.append((key, value))
    return rows


def _image_src(run_path: Path, image: Path) -> str:
    image = Path(image)
    try:
        return image.resolve().relative_to(Path(run_path).resolve()).as_posix()
    except ValueError:
        return f"plots/{image.name}"


def write_report_html(run: RunData, images: list[Path]) -> Path:
    """Write ``run.path / "report.html"``: metadata, parameters, the report summary (dotted keys of
    ``report.json``) and every image with its caption. Returns the file's path."""
    title = f"{run.procedure} — {Path(run.path).name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Run</h2>",
        _table(_meta_rows(run.meta)),
        "<h2>Parameters</h2>",
        _table(flatten(run.parameters)),
        "<h2>Summary</h2>",
        _table(flatten(run.report)) if isinstance(run.report, dict) and run.report
        else "<p><em>no report.json (the run did not finish one)</em></p>",
        "<h2>Plots</h2>",
    ]
    if not images:
        parts.append("<p><em>no plots: the run holds no data to plot</em></p>")
    for image in images:
        image = Path(image)
        caption = CAPTIONS.get(image.stem, image.stem.replace("_", " "))
        src = html.escape(_image_src(run.path, image), quote=True)
        parts.append(f'<figure><img src="{src}" alt="{html.escape(image.stem, quote=True)}">'
                     f"<figcaption>{html.escape(image.name)}: {html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    out = Path(run.path) / REPORT_HTML
    out.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return out
