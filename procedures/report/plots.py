"""Plots of a run folder (``xbar plot RUN_DIR``): PNGs in ``RUN_DIR/plots`` and ``report.html``.

:func:`make_plots` draws whatever the run holds and skips the rest:

* ``maps/*``: heat maps, target vs achieved, error and pulse histograms, forming voltages
  (see :mod:`procedures.report.plot_maps`);
* ``trace/*``: tuning traces of a few cells (``traces.png``);
* ``data.csv`` columns ``Voltage (V)``, ``Current (A)``: an IV sweep (``iv.png``);
* ``series/times`` + ``series/maps``: retention (``retention.png``);
* ``data.csv`` columns ``Cycle``, ``G SET (S)``, ``G RESET (S)``: endurance (``endurance.png``).

Files hold SI units; conductances and currents are shown in µS and µA.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .plot_maps import US, as_float, chip_stack, legend_outside, map_plots, new_figure, save
from ..storage.run_data import PLOTS_DIR, RunData, load_run

__all__ = ["make_plots", "plot_run", "select_trace_cells"]

MAX_TRACE_CELLS = 6
MAX_RETENTION_CELLS = 20
TRACE_FIELDS = ("row", "col", "kind", "reading")


def _log_span(values) -> bool:
    """True if ``values`` are all > 0 and span more than two decades (use a log axis)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 1 and bool((v > 0).all()) and v.max() / v.min() > 100.0


def _label(value) -> str:
    """A cell index for a legend: 3.0 → "3"."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(f)) if f.is_integer() else str(value)



def _chip0_trace(trace: dict) -> dict | None:
    """The chip-0 entries of a trace as float arrays, or None if it is unusable."""
    if not trace or not all(k in trace for k in TRACE_FIELDS):
        return None
    arrays = {k: np.asarray(v).ravel() for k, v in trace.items()}
    n = len(arrays["row"])
    if n == 0 or any(len(a) != n for a in arrays.values()):
        return None
    keep = arrays["chip"] == 0 if "chip" in arrays else np.ones(n, dtype=bool)
    return {k: a[keep] for k, a in arrays.items()} if keep.any() else None


def select_trace_cells(trace: dict, targeted=None, n: int = MAX_TRACE_CELLS) -> list[tuple[int, int, int]]:
    """Up to ``n`` cells of chip 0 to show: those with the most pulses, the fewest, and around
    the median. Deterministic (ties broken by row, then column).

    Args:
        trace: ``trace/*`` arrays (see :mod:`procedures.storage.run_data`).
        targeted: optional bool map (rows, cols) of chip 0; cells outside it are not chosen
            (unless none of the traced cells is in it).
    Returns:
        [(row, col, pulses)], most pulses first.
    """
    t = _chip0_trace(trace)
    if t is None:
        return []
    rows, cols = t["row"].astype(int), t["col"].astype(int)
    cells, inverse = np.unique(np.stack([rows, cols], axis=1), axis=0, return_inverse=True)
    pulses = np.bincount(inverse.ravel(), weights=(t["kind"] == 1).astype(float), minlength=len(cells))
    idx = np.arange(len(cells))
    if targeted is not None:
        tm = np.asarray(targeted, dtype=bool)
        inside = np.array([0 <= r < tm.shape[0] and 0 <= c < tm.shape[1] and bool(tm[r, c]) for r, c in cells])
        if inside.any():
            idx = idx[inside]
    order = idx[np.lexsort((cells[idx, 1], cells[idx, 0], pulses[idx]))]  # ascending pulses
    m = len(order)
    if m <= n:
        picks = list(order)
    else:
        candidates = [m - 1, 0, m // 2, m - 2, 1, m // 2 - 1, m - 3, 2, m // 2 + 1]
        picks = []
        for i in candidates:
            if order[i] not in picks:
                picks.append(order[i])
            if len(picks) == n:
                break
    picks.sort(key=lambda i: (-pulses[i], cells[i, 0], cells[i, 1]))
    return [(int(cells[i, 0]), int(cells[i, 1]), int(pulses[i])) for i in picks]


def plot_traces(trace: dict, maps: dict, out_dir: Path) -> Path | None:
    """``traces.png``: readings (µS) vs operation index of up to 6 cells of chip 0, the target as a
    dashed line, pulse amplitudes (V) on a twin axis."""
    t = _chip0_trace(trace)
    if t is None:
        return None
    targets = chip_stack(maps["targets"]) if "targets" in maps else None
    targets0 = targets[0] if targets is not None else None
    chosen = select_trace_cells(trace, None if targets0 is None else np.isfinite(targets0))
    if not chosen:
        return None
    ncols = min(3, len(chosen))
    nrows = -(-len(chosen) // ncols)
    fig = new_figure(4.4 * ncols, 3.2 * nrows + 0.5, layout=None)  # fixed margins: twin axes make
    axes = fig.subplots(nrows, ncols, squeeze=False)           # constrained layout slow
    fig.subplots_adjust(left=0.9 / (4.4 * ncols), right=1 - 0.9 / (4.4 * ncols), bottom=0.6 / (3.2 * nrows + 0.5),
                        top=1 - 0.6 / (3.2 * nrows + 0.5), wspace=0.75, hspace=0.5)
    for ax in axes.ravel()[len(chosen):]:
        ax.set_visible(False)
    for ax, (r, c, n_pulses) in zip(axes.ravel(), chosen):
        sel = (t["row"].astype(int) == r) & (t["col"].astype(int) == c)
        kind, reading = t["kind"][sel], t["reading"][sel].astype(float)
        ops = np.arange(sel.sum())
        is_read = (kind == 0) & np.isfinite(reading)
        ax.plot(ops[is_read], reading[is_read] * US, "o-", color="tab:blue", markersize=3, label="reading")
        if "pass" in t:
            passes = t["pass"][sel]
            for i in np.flatnonzero(np.diff(passes) != 0) + 1:
                ax.axvline(i - 0.5, color="gray", linewidth=0.6, linestyle=":")
        if targets0 is not None and 0 <= r < targets0.shape[0] and 0 <= c < targets0.shape[1] \
                and np.isfinite(targets0[r, c]):
            ax.axhline(targets0[r, c] * US, color="black", linestyle="--", linewidth=1, label="target")
        ax.set_xlabel("operation")
        ax.set_ylabel("conductance (µS)", color="tab:blue")
        ax.set_title(f"cell ({r}, {c}): {n_pulses} pulses", fontsize="medium")
        if "amplitude" in t and (kind == 1).any():
            twin = ax.twinx()
            amp = t["amplitude"][sel].astype(float)
            is_pulse = kind == 1
            twin.vlines(ops[is_pulse], 0, amp[is_pulse], color="tab:red", alpha=0.5, linewidth=1.2)
            twin.axhline(0, color="tab:red", linewidth=0.4)
            twin.set_ylabel("pulse amplitude (V)", color="tab:red")
    fig.suptitle("write-verify traces (chip 0)")
    return save(fig, out_dir / "traces.png")


def plot_iv(data, params: dict, out_dir: Path) -> Path | None:
    """``iv.png``.  A read sweep (``mode`` read): current (µA) vs the applied voltage (V).  A
    pulsed loop (``mode`` pulsed): the read current (µA, at ``v_read``) after each pulse vs the
    pulse voltage, and the conductance (µS, column ``Conductance (S)``) after each pulse.  Points
    are joined in measurement order and coloured by step (colour bar)."""
    mode = str(params.get("mode") or "").strip().lower()
    v = data["Voltage (V)"].to_numpy(dtype=float)
    i = data["Current (A)"].to_numpy(dtype=float)
    steps = data["Step"].to_numpy(dtype=float) if "Step" in data.columns else np.arange(len(v), dtype=float)
    pulsed = mode == "pulsed"
    v_read = as_float(params.get("v_read"))
    read_at = f" at {v_read:g} V" if v_read is not None else ""
    with_g = pulsed and "Conductance (S)" in data.columns
    fig = new_figure(12.0 if with_g else 7.0, 4.8)
    axes = fig.subplots(1, 2 if with_g else 1, squeeze=False).ravel()
    cell = f"cell ({params['row']}, {params['col']})" if "row" in params and "col" in params else "one cell"
    panels = [(axes[0], i * US, f"read current{read_at} after the pulse (µA)" if pulsed else "current (µA)",
               f"read current after each pulse, {cell}" if pulsed else f"DC read sweep, {cell}")]
    if with_g:
        panels.append((axes[1], data["Conductance (S)"].to_numpy(dtype=float) * US, "conductance after the pulse (µS)",
                       f"switching loop: conductance after each pulse, {cell}"))
    for ax, y, ylabel, title in panels:
        ax.plot(v, y, "-", color="gray", linewidth=0.6, zorder=1)
        points = ax.scatter(v, y, c=steps, cmap="viridis", s=12, zorder=3)
        ax.plot(v[:1], y[:1], "k^", markersize=7, label="first step")
        ax.axhline(0, color="gray", linewidth=0.4)
        ax.axvline(0, color="gray", linewidth=0.4)
        ax.set_xlabel("pulse voltage (V)" if pulsed else "voltage (V)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize="medium")
        fig.colorbar(points, ax=ax, label="step (measurement order)")
    legend_outside(axes[-1])
    return save(fig, out_dir / "iv.png")


def plot_retention(times, maps, out_dir: Path, log: bool | None = None) -> Path | None:
    """``retention.png``: mean ± std conductance (µS) over cells vs time since the first read
    (s), and the relative change (%) of up to 20 cells.  ``times`` (n,) s; ``maps`` (n, n_chips,
    rows, cols) or (n, rows, cols) S.  The time axis is logarithmic when ``log`` (the run's
    logarithmic intervals) or when the times span more than two decades; the first read (t = 0,
    the reference) then sits at the axis's left edge, marked."""
    times = np.asarray(times, dtype=float).ravel()
    g = np.asarray(maps, dtype=float)
    if g.ndim < 2 or len(times) == 0 or g.shape[0] != len(times):
        return None
    g = g.reshape(len(times), -1)
    order = np.argsort(times, kind="stable")
    times, g = times[order], g[order]
    positive = times[times > 0]
    use_log = positive.size > 1 and (bool(log) or _log_span(positive))
    x = times.copy()
    if use_log:
        x[x <= 0] = positive.min() / 2.0          # the reference read, drawn at the left edge
    fig = new_figure(8.5, 7.0)
    ax_mean, ax_rel = fig.subplots(2, 1, sharex=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN time steps
        mean, std = np.nanmean(g, axis=1) * US, np.nanstd(g, axis=1) * US
    ax_mean.plot(x, mean, "o-", color="tab:blue", markersize=3, label="mean")
    ax_mean.fill_between(x, mean - std, mean + std, color="tab:blue", alpha=0.25, label="± std")
    ax_mean.set_ylabel("conductance (µS)")
    ax_mean.set_title(f"retention: mean conductance of {g.shape[1]} cells over {len(times)} reads", fontsize="medium")
    legend_outside(ax_mean)
    g0 = g[0]
    usable = np.flatnonzero(np.isfinite(g0) & (g0 > 0))
    shown = usable[np.linspace(0, len(usable) - 1, min(MAX_RETENTION_CELLS, len(usable))).astype(int)] \
        if len(usable) else usable
    for k in shown:
        ax_rel.plot(x, (g[:, k] / g0[k] - 1.0) * 100.0, linewidth=0.7, alpha=0.8)
    ax_rel.axhline(0, color="black", linewidth=0.5)
    ax_rel.set_ylabel("change since first read (%)")
    ax_rel.set_title(f"relative change of {len(shown)} individual cells", fontsize="medium")
    if use_log:
        ax_rel.set_xscale("log")
        ax_rel.set_xlabel("time since first read (s, log scale; first read drawn at the left edge)")
    else:
        ax_rel.set_xlabel("time since first read (s)")
    return save(fig, out_dir / "retention.png")


def plot_endurance(data, out_dir: Path) -> Path | None:
    """``endurance.png``: G SET and G RESET (µS) vs cycle, one colour per cell (columns ``Chip``,
    ``Row``, ``Col`` if present); the legend (cells up to 5, else the line styles) outside the axes."""
    keys = [k for k in ("Chip", "Row", "Col") if k in data.columns]
    groups = list(data.groupby(keys, sort=True)) if keys else [((), data)]
    fig = new_figure(9.0, 5.0)
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(groups))]
    labelled = len(groups) <= 5
    for colour, (key, part) in zip(colours, groups):
        part = part.sort_values("Cycle", kind="stable")
        cyc = part["Cycle"].to_numpy(dtype=float)
        name = ", ".join(f"{k.lower()} {_label(v)}" for k, v in zip(keys, key if isinstance(key, tuple) else (key,)))
        ax.plot(cyc, part["G SET (S)"].to_numpy(dtype=float) * US, "-", color=colour, linewidth=1,
                label=f"SET {name}".strip() if labelled else "_")
        ax.plot(cyc, part["G RESET (S)"].to_numpy(dtype=float) * US, "--", color=colour, linewidth=1,
                label=f"RESET {name}".strip() if labelled else "_")
    if not labelled:
        ax.plot([], [], "-", color="black", label="SET (each colour a cell)")
        ax.plot([], [], "--", color="black", label="RESET")
    if _log_span(data["Cycle"].to_numpy(dtype=float)):
        ax.set_xscale("log")
        ax.set_xlabel("cycle (log scale)")
    else:
        ax.set_xlabel("cycle")
    ax.set_ylabel("conductance (µS)")
    ax.set_title(f"endurance: conductance after SET and RESET, {len(groups)} cell(s)", fontsize="medium")
    legend_outside(ax)
    return save(fig, out_dir / "endurance.png")


def _jobs(run: RunData, out_dir: Path) -> list[tuple[str, object]]:
    """(file name, plotting function) for every plot the run's content allows."""
    params = run.parameters
    if params.get("tolerance") is None and isinstance(run.report, dict) and "tolerance" in run.report:
        params["tolerance"] = run.report["tolerance"]
    jobs = map_plots(run.maps, params, out_dir)
    if run.trace:
        jobs.append(("traces.png", lambda: plot_traces(run.trace, run.maps, out_dir)))
    if run.has_columns("Voltage (V)", "Current (A)"):
        jobs.append(("iv.png", lambda: plot_iv(run.data, params, out_dir)))
    if "times" in run.series and "maps" in run.series:
        log = str(params.get("log", "")).strip().lower() in ("true", "1", "yes")
        jobs.append(("retention.png", lambda: plot_retention(run.series["times"], run.series["maps"], out_dir, log)))
    if run.has_columns("Cycle", "G SET (S)", "G RESET (S)"):
        jobs.append(("endurance.png", lambda: plot_endurance(run.data, out_dir)))
    return jobs


def make_plots(run: RunData) -> list[Path]:
    """Write the PNGs the run's content allows into ``run.path / "plots"``; return their paths.

    What is absent is skipped; a plot whose data is malformed is skipped with a warning, so one
    broken array never prevents the others (nor the HTML report)."""
    out_dir = Path(run.path) / PLOTS_DIR
    images: list[Path] = []
    for name, job in _jobs(run, out_dir):
        try:
            path = job()
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            warnings.warn(f"{run.path}: plot {name} skipped: {exc}", RuntimeWarning, stacklevel=2)
            continue
        if path is not None:
            images.append(path)
    return images


def plot_run(path: str | Path, arrays: tuple[dict, dict | None, dict] | None = None) -> tuple[list[Path], Path]:
    """Load a run folder, write its plots and ``report.html``; return (images, html path).
    ``arrays``: the (maps, trace, series) its ``run.h5`` was just written from (the runner's, at
    the end of a run: not read back; see :func:`~procedures.storage.run_data.load_run`).

    Raises :class:`procedures.storage.run_data.RunFolderError` if ``path`` is not a run folder."""
    from .report_html import write_report_html

    run = load_run(path, arrays)
    images = make_plots(run)
    return images, write_report_html(run, images)
