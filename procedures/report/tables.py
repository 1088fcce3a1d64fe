"""Plain-text summary tables for the terminal (µS at this edge; SI everywhere else)."""
from __future__ import annotations

import numpy as np


def _rows(pairs) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in pairs)


def _q(key: str, value) -> str:
    from .quantities import quantity

    return quantity(key, value)


def _pct(x) -> str:
    from .quantities import quantity

    return "n/a" if x is None else quantity("yield", float(x))


def format_tune_summary(r: dict) -> str:
    """The terminal summary of a tune report; ``r["chip"]`` says what it ran on."""
    ppc = r["pulses_per_cell"]
    pairs = [
        ("chip", r["chip"]),
        ("cells", r["cells"]),
        ("converged", f"{r['converged']}  (yield {_pct(r['yield'])})"),
        ("failed / disturbed", f"{r['failed']} / {r['disturbed']}"),
        ("stuck flagged", r["stuck_flagged"]),
        ("rel. error mean / max", f"{_pct(r['rel_error_mean'])} / {_pct(r['rel_error_max'])}  (tolerance {_pct(r['tolerance'])})"),
        ("pulses per cell", f"mean {ppc['mean']:.1f}, median {ppc['median']:.0f}, p95 {ppc['p95']:.0f}"),
        ("reads per cell", f"mean {r['reads_per_cell']['mean']:.1f}"),
        ("energy", _q("energy_j", r["energy_j"])),
        ("instrument time", f"{r['instrument_time_s']:.2f} s"),
        ("wall time, tuning", f"{r['wall_s']:.2f} s  ({r['passes_run']} pass(es))"),
    ]
    if r.get("true_within_tol") is not None:
        pairs.append(("working cells", r["working"]))
        pairs.append(("truly within tolerance", _pct(r["true_within_tol"])))
        pairs.append(("stuck detected", f"{r['stuck_detected']} of {r['stuck_true']}"))
    return "write-verify tuning\n" + _rows(pairs)


def format_read_summary(g: np.ndarray, scheme: str) -> str:
    us = g * 1e6
    pairs = [
        ("array", f"{g.shape[1]}x{g.shape[2]} ({g.shape[0]} chip(s)), {scheme} read"),
        ("min / median / max", f"{us.min():.1f} / {np.median(us):.1f} / {us.max():.1f} µS"),
        ("mean ± std", f"{us.mean():.1f} ± {us.std():.1f} µS"),
        ("below 100 µS / above 500 µS", f"{int((us < 100).sum())} / {int((us > 500).sum())} cells"),
    ]
    return "conductance map\n" + _rows(pairs)


def format_run(run) -> str:
    """Summary of a run folder (:class:`procedures.storage.run_data.RunData`) for ``xbar show``: the
    headline of ``report.html``, the run's metadata, its parameters (chip, procedure) and the
    report's quantities with units, grouped as in ``report.html``."""
    from .quantities import TITLES, headline, label, parameter_groups, quantity
    from .report_html import summary_groups

    m = run.meta
    report = run.report if isinstance(run.report, dict) else None
    head = headline(run.procedure, report, run.status, m.get("error"))
    pairs = [("procedure", run.procedure), ("status", run.status), ("started", m.get("started", "?")),
             ("ended", m.get("ended", "-")), ("resumes", m.get("resumes", 0)),
             ("station", m.get("station", "?")), ("chip", m.get("chip_id", "?")),
             ("software", m.get("software_version", "?")), ("records", len(run.data))]
    if m.get("error"):
        pairs.append(("error", m["error"]))
    lines = [f"{TITLES.get(run.procedure, run.procedure)}: run {run.path}", f"  {head.text}", _rows(pairs)]
    for name, rows in parameter_groups(run.parameters):
        if rows:
            lines.append(f"{name.lower()} parameters: " + ", ".join(f"{k}={v}" for k, v in rows))
    if report:
        for name, rows in summary_groups(report):
            if rows:
                lines.append(name.lower())
                lines.append(_rows([(label(k), quantity(k, v)) for k, v in rows]))
    if run.maps:
        lines.append("maps: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(run.maps.items())))
    return "\n".join(lines)


def format_report(title: str, report: dict) -> str:
    """A report's entries as a table of labelled quantities with units and 3 significant digits
    (lists of more than 8 items and the run status, printed elsewhere, are left out)."""
    from .quantities import label, quantity
    from .report_html import flatten

    return title + "\n" + _rows([(label(k), quantity(k, v)) for k, v in flatten(report)
                                 if (not isinstance(v, list) or len(v) <= 8) and k != "status"])
