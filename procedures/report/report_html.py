"""``report.html`` of a run folder, for an operator: a headline that says whether the run met its goal,
the report's quantities with units (grouped), the plots with captions, the parameters and metadata.

Self-contained (inline CSS, no scripts, images referenced relative to the folder as
``plots/<file>``); every text is HTML-escaped.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ..storage.run_data import REPORT_HTML, RunData
from .quantities import TITLES, headline, label, meta_groups, parameter_groups, quantity

__all__ = ["write_report_html", "flatten", "summary_groups"]

MAX_LIST = 20

CAPTIONS = {
    "map_before": "Conductance map of chip 0 before tuning (µS).",
    "map_after": "Conductance map of chip 0 after the run (µS).",
    "map_final": "Final read-back conductance of chip 0 (µS).",
    "map_conductance": "Conductance map of chip 0 (µS).",
    "map_targets": "Target conductances of chip 0 (µS); blank cells are untargeted.",
    "target_vs_achieved": "Achieved vs target conductance of every targeted cell (µS), coloured by status; "
                          "dashed: achieved = target.",
    "error_hist": "Relative error of the final read-back (%), with the tolerance (dashed).",
    "pulses_hist": "Programming pulses per targeted cell, with the median (dotted).",
    "traces": "Write-verify traces of selected cells (most, fewest and median pulses): readings (µS, blue), "
              "target (dashed), pulse amplitudes (V, red); dotted lines separate passes.",
    "iv": "IV sweep of one cell; colour: measurement step. Pulsed mode: the read current and the conductance "
          "after each pulse, against the pulse voltage (the SET/RESET loop).",
    "retention": "Retention: mean ± std conductance (µS) over the cells, and the relative change of "
                 "individual cells since the first read.",
    "endurance": "Endurance: conductance after SET (solid) and after RESET (dashed) per cycle (µS).",
    "forming": "Forming voltages of the formed cells (V).",
}

CSS = """
body { font-family: sans-serif; margin: 2em auto; padding: 0 1.5em; color: #222; max-width: 1150px; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
h3 { font-size: 1em; margin: 1em 0 0.3em; color: #444; }
p.headline { font-size: 1.15em; padding: 0.6em 0.9em; border-left: 6px solid #888; background: #f6f6f6; }
p.headline.met { border-color: #2a8a2a; background: #eef8ee; }
p.headline.missed { border-color: #c0392b; background: #fbeeee; }
p.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.3em 0 0.8em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f2f2f2; font-weight: normal; min-width: 12em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.3em; }
"""


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


def _quantities(rows: list[tuple[str, object]]) -> str:
    """Key/value rows as a table of labelled quantities with units (:func:`quantities.quantity`)."""
    if not rows:
        return "<p><em>none</em></p>"
    lines = ["<table>"]
    for key, value in rows:
        numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        cls = ' class="num"' if numeric else ""
        lines.append(f"<tr><th>{html.escape(label(key))}</th><td{cls}>{html.escape(quantity(key, value))}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _groups(groups: list[tuple[str, list[tuple[str, object]]]]) -> str:
    return "\n".join(f"<h3>{html.escape(name)}</h3>\n{_quantities(rows)}" for name, rows in groups if rows)


def summary_groups(report: dict) -> list[tuple[str, list[tuple[str, object]]]]:
    """The report's scalars ("Outcome"), then one group per nested dict (e.g. "pulses per cell")
    and per dict of a list of dicts (e.g. "layers 0"); lists of more than 20 items are left out
    (they are in run.h5 / report.json)."""
    def is_records(v):
        return isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v)

    top = [(k, v) for k, v in report.items() if not isinstance(v, dict) and not is_records(v) and k != "status"
           and not (isinstance(v, (list, tuple)) and len(v) > MAX_LIST)]
    groups = [("Outcome", top)]
    for key, value in report.items():
        if isinstance(value, dict):
            groups.append((label(key), [(f"{key}.{k}", v) for k, v in flatten(value)]))
        elif is_records(value) and len(value) <= MAX_LIST:
            groups += [(f"{label(key)} {i}", [(f"{key}.{k}", v) for k, v in flatten(item)])
                       for i, item in enumerate(value)]
    return groups


def _image_src(run_path: Path, image: Path) -> str:
    image = Path(image)
    try:
        return image.resolve().relative_to(Path(run_path).resolve()).as_posix()
    except ValueError:
        return f"plots/{image.name}"


def _caption(run: RunData, stem: str) -> str:
    caption = CAPTIONS.get(stem, stem.replace("_", " ") + ".")
    if stem == "retention" and str(run.parameters.get("log", "")).lower() in ("true", "1"):
        caption += " Logarithmic intervals: the time axis is logarithmic."
    return caption


def write_report_html(run: RunData, images: list[Path]) -> Path:
    """Write ``run.path / "report.html"``: a title and a headline that says whether the run met its
    goal; the report's quantities with units, grouped; the plots with captions; the parameters
    (chip, procedure) and the run's metadata (run, bench and chip, software).  Returns its path."""
    title = f"{TITLES.get(run.procedure, run.procedure)} — {Path(run.path).name}"
    report = run.report if isinstance(run.report, dict) else None
    head = headline(run.procedure, report, run.status, run.meta.get("error"))
    state = {True: "met", False: "missed"}.get(head.met, "neutral")
    chip = run.meta.get("chip_id")
    sub = ", ".join(x for x in (f"status {run.status}", f"chip {chip}" if chip else "",
                                f"station {run.meta['station']}" if run.meta.get("station") else "",
                                f"started {run.meta['started']}" if run.meta.get("started") else "") if x)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">{html.escape(sub)}</p>',
        f'<p class="headline {state}" id="headline">{html.escape(head.text)}</p>',
        "<h2>Summary</h2>",
        _groups(summary_groups(report)) if report
        else "<p><em>no report.json (the run did not finish one)</em></p>",
        "<h2>Plots</h2>",
    ]
    if not images:
        parts.append("<p><em>no plots: the run holds no data to plot</em></p>")
    for n, image in enumerate(images, 1):
        image = Path(image)
        src = html.escape(_image_src(run.path, image), quote=True)
        caption = _caption(run, image.stem)
        parts.append(f'<figure><img src="{src}" alt="{html.escape(caption, quote=True)}">'
                     f"<figcaption>Figure {n}. {html.escape(caption)} ({html.escape(image.name)})</figcaption></figure>")
    parts += ["<h2>Parameters</h2>", _groups(parameter_groups(run.parameters)),
              "<h2>Run</h2>", _groups(meta_groups(run.meta)), "</body></html>"]
    out = Path(run.path) / REPORT_HTML
    out.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return out
