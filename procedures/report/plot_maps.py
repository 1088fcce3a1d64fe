"""Plots of a run's per-cell maps (``run.h5`` ``maps/*``), and the figure helpers the other plots share.

Every array in the run folder is SI (S, V); conductances are converted to µS only here, for display.
Figures are :class:`matplotlib.figure.Figure` objects drawn on an Agg canvas: no pyplot global
state, no display needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

US = 1e6  # S → µS, A → µA

#: map names drawn as heat maps, with a caption each
MAP_NAMES = {
    "before": "conductance before tuning",
    "after": "conductance after tuning",
    "final": "final read-back conductance",
    "conductance": "conductance",
    "targets": "target conductance (blank: untargeted)",
}

#: status codes of ``maps/status`` (see ``programming.tune_result``): name and colour
STATUS_STYLE = {
    1: ("converged", "tab:green"),
    2: ("failed", "tab:red"),
    3: ("stuck", "tab:purple"),
    4: ("disturbed", "tab:orange"),
    0: ("untargeted", "tab:gray"),
}


def new_figure(width: float = 6.4, height: float = 4.8, layout: str | None = "constrained",
               margins: tuple[float, float, float, float] | None = None) -> Figure:
    """A figure attached to its own Agg canvas (no pyplot, no display).  ``margins``: (left, right,
    bottom, top) around its subplots, inches, instead of a layout engine (a plot whose frame is
    known: the constrained layout works out the text's extents before each draw, ~70 ms of a
    figure's ~160 ms)."""
    if margins is None:
        fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    else:
        left, right, bottom, top = margins
        fig = Figure(figsize=(width, height), dpi=100, layout=None)
        fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path``.  The figure is not cleared after (the garbage collector
    frees it with its last reference): ``Figure.clear`` clears each axes, which builds its axis
    and ticks anew (~30 ms of an 8x8 heat map's ~140 ms, ~80 ms of a tune's traces).  Titles that
    nothing can lift are placed before drawing (:func:`pin_titles`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pin_titles(fig)
    fig.savefig(path, format="png", pil_kwargs={"compress_level": PNG_LEVEL})
    return path


#: the deflate level of the PNGs (zlib's 1, its fastest, instead of Pillow's default 6): the same
#: pixels, ~10 % larger files (a 10 000 x 8x8 tune's seven: 332 -> 364 KB), ~45 ms less CPU
#: encoding them (a twelfth of their drawing and encoding)
PNG_LEVEL = 1


def pin_titles(fig: Figure) -> None:
    """Give each axes' title of a figure in fixed margins (no layout engine) the place matplotlib
    would find for it, the top of its frame, wherever nothing can lift it from there: its x axes
    (and its twins') keep their ticks and label at the bottom, and none of their y axes shows an
    offset or a power of ten (an offset text drawn above the frame, which matplotlib lifts the
    title over).  matplotlib otherwise works out every y axis's ticks and tick-label extents of
    the axes and its twins to look for such text before each title is drawn: ~0.3 s of the seven
    plots of a tune (a third of its traces' drawing, 12 axes), for the same pixels."""
    if fig.get_layout_engine() is not None:     # (a layout engine resizes the axes as it draws)
        return
    for ax in fig.axes:
        if ax.get_title(loc="left") or ax.get_title(loc="right") or not ax.get_title() or ax.child_axes:
            continue
        siblings = set(ax.get_shared_x_axes().get_siblings(ax)) | set(ax.get_shared_y_axes().get_siblings(ax))
        if all(_title_stays(s) for s in siblings):
            ax.set_title(ax.get_title(), y=1.0, fontsize=ax.title.get_fontsize())   # (y given: not moved)


def _title_stays(ax) -> bool:
    """Whether nothing of ``ax`` can lift a title above its frame (:func:`pin_titles`)."""
    if ax.xaxis.get_ticks_position() in ("top", "unknown") or ax.xaxis.get_label_position() == "top":
        return False
    if not ax.yaxis.offsetText.get_visible():
        return True
    formatter = ax.yaxis.get_major_formatter()
    formatter.set_locs(ax.yaxis.get_majorticklocs())      # (as drawing the axis does: its offset)
    return not formatter.get_offset()


def legend_outside(ax, **kw) -> None:
    """The legend of ``ax`` to the right of its axes, where it hides no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small", **kw)


def as_float(value) -> float | None:
    """``value`` as a float (parameters may be strings), or None if it is not a finite number."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def chip_stack(value) -> np.ndarray | None:
    """A map as a float array (n_chips, rows, cols); a 2-D map counts as one chip; else None."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.size == 0:
        return None
    return arr


def targeted_mask(maps: dict, shape: tuple) -> np.ndarray:
    """Cells with a finite target (every cell if there is no usable ``maps/targets``)."""
    targets = chip_stack(maps["targets"]) if "targets" in maps else None
    if targets is None or targets.shape != shape:
        return np.ones(shape, dtype=bool)
    return np.isfinite(targets)


def plot_map(name: str, value, out_dir: Path, reuse: dict | None = None) -> Path | None:
    """``map_<name>.png``: heat map of chip 0 of a conductance map (S, shown in µS).  ``reuse``: a
    dict shared by the heat maps of one run, in which the first keeps its figure; the next of the
    same shape redraws it with its own values, colour scale and title (the same pixels as a figure
    of its own: ~30 ms less of an 8x8 map's ~110 ms, its axes, colour bar and their ticks made once)."""
    stack = chip_stack(value)
    if stack is None or not np.isfinite(stack[0]).any():
        return None  # not a map, or nothing to show
    kept = reuse.get("heat map") if reuse is not None else None
    if kept is not None and kept[2].get_array().shape == stack[0].shape:
        fig, ax, image = kept
        image.set_data(stack[0] * US)
        image.norm.autoscale(image.get_array())             # (to these values, as imshow scales them)
    else:
        fig = new_figure(6.0, 5.0, margins=(0.75, 0.8, 0.55, 0.65))    # two title lines, the colour bar's label
        ax = fig.add_subplot()
        image = ax.imshow(stack[0] * US, cmap="viridis", interpolation="nearest", origin="upper")
        fig.colorbar(image, ax=ax, label="conductance (µS)")
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        if reuse is not None:
            reuse["heat map"] = (fig, ax, image)
    title = f"{name}: {MAP_NAMES.get(name, name)}"
    if stack.shape[0] > 1:
        title += f"\nchip 0 of {stack.shape[0]}"
    ax.set_title(title)
    return save(fig, out_dir / f"map_{name}.png")


#: the most points of one status the target-vs-achieved scatter draws (evenly spaced over its cells;
#: a batch of 10 000 chips of 8x8 has 630 000 converged cells, whose markers cost 0.4 s of CPU to
#: draw and cover the plot just the same); the legend counts every cell
SCATTER_MAX = 20000


def _spread(x: np.ndarray) -> np.ndarray:
    """At most :data:`SCATTER_MAX` entries of ``x``, evenly spaced over it (all of them if fewer)."""
    most = SCATTER_MAX
    return x if x.size <= most else x[np.linspace(0, x.size - 1, most).round().astype(np.intp)]


def plot_target_vs_achieved(maps: dict, out_dir: Path) -> Path | None:
    """``target_vs_achieved.png``: final vs target conductance (µS) of targeted cells, coloured by
    status code if ``maps/status`` is present (at most :data:`SCATTER_MAX` cells of a status drawn)."""
    targets, final = chip_stack(maps["targets"]), chip_stack(maps["final"])
    if targets is None or final is None or targets.shape != final.shape:
        return None
    sel = np.isfinite(targets)
    if not sel.any():
        return None
    t, f = targets[sel] * US, final[sel] * US
    fig = new_figure(7.2, 5.2, margins=(1.15, 1.82, 0.6, 0.4))    # the legend (counts) to the right
    ax = fig.add_subplot()
    status = chip_stack(maps["status"]) if "status" in maps else None
    if status is not None and status.shape == targets.shape:
        codes = status[sel]
        for code, (label, colour) in STATUS_STYLE.items():
            pick = np.flatnonzero(codes == code)
            if pick.size:
                drawn = _spread(pick)
                ax.scatter(t[drawn], f[drawn], s=10, color=colour, label=f"{label} ({pick.size})")
        other = np.flatnonzero(~np.isin(codes, list(STATUS_STYLE)))
        if other.size:
            drawn = _spread(other)
            ax.scatter(t[drawn], f[drawn], s=10, color="black", label=f"other ({other.size})")
    else:
        drawn = _spread(np.arange(t.size))
        ax.scatter(t[drawn], f[drawn], s=10, color="tab:blue")
    finite = np.concatenate([t[np.isfinite(t)], f[np.isfinite(f)]])
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, linestyle="--", label="achieved = target")
    legend_outside(ax, title="status (cells)" if status is not None and status.shape == targets.shape else None)
    ax.set_xlabel("target conductance (µS)")
    ax.set_ylabel("achieved conductance (µS)")
    shown = "" if t.size <= SCATTER_MAX else f"; at most {SCATTER_MAX} of a status drawn"
    ax.set_title(f"target vs achieved ({int(sel.sum())} targeted cells{shown})")
    return save(fig, out_dir / "target_vs_achieved.png")


#: a histogram's margins (inches; :func:`new_figure`): counts up to six digits on the left, a short
#: legend to the right
HIST_MARGINS = (0.85, 1.3, 0.55, 0.35)


def hist_bars(ax, values, bins, color: str = "tab:blue") -> np.ndarray:
    """A histogram of ``values`` (``bins`` as :func:`numpy.histogram` takes them) drawn as
    ``ax.hist(values, bins, color=color, edgecolor="white")`` draws it, its bars in one collection
    instead of a patch each (a tune's 85 bins: ~45 ms less of the ~120 ms of its histogram's
    figure); the same bars, limits and colours (a bar's edge may fall on the neighbouring pixel:
    the corners are computed in another order).  Returns the counts."""
    from matplotlib.collections import PolyCollection

    counts, edges = np.histogram(values, bins)
    left, right = edges[:-1], edges[1:]
    height = counts.astype(float)
    zero = np.zeros_like(height)
    corners = np.stack([np.stack(c, axis=1) for c in ((left, zero), (left, height), (right, height), (right, zero))],
                       axis=1)
    bars = PolyCollection(corners, closed=True, facecolors=color, edgecolors="white",
                          linewidths=mpl_rc("patch.linewidth"), antialiaseds=mpl_rc("patch.antialiased"),
                          joinstyle="miter", capstyle="butt")     # (a patch's joins and caps)
    bars.sticky_edges.y.append(0.0)                   # (the bars stand on the axis, as ax.bar's do)
    ax.add_collection(bars, autolim=True)
    ax.autoscale_view()
    return counts


def mpl_rc(key: str):
    """matplotlib's setting ``key``."""
    import matplotlib

    return matplotlib.rcParams[key]


def plot_error_hist(maps: dict, tolerance, out_dir: Path) -> Path | None:
    """``error_hist.png``: histogram (%) of the relative error ``maps/rel_error`` (0.01 = 1 %) of
    targeted cells, with ± ``tolerance`` (relative) as vertical lines if given."""
    err = chip_stack(maps["rel_error"])
    if err is None:
        return None
    values = err[targeted_mask(maps, err.shape)] * 100.0
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    fig = new_figure(margins=HIST_MARGINS)
    ax = fig.add_subplot()
    hist_bars(ax, values, min(50, max(10, int(np.sqrt(values.size)))))
    tol = as_float(tolerance)
    if tol is not None:
        lines = [tol * 100.0, -tol * 100.0] if values.min() < 0 else [tol * 100.0]
        for x in lines:
            ax.axvline(x, color="tab:red", linestyle="--", label="tolerance" if x > 0 else "_tolerance")
        lo, hi = min(values.min(), *lines), max(values.max(), *lines)
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        ax.set_xlim(lo - pad, hi + pad)
        legend_outside(ax)
    ax.set_xlabel("relative error (%)")
    ax.set_ylabel("cells")
    ax.set_title(f"relative error of the final read-back ({values.size} targeted cells)")
    return save(fig, out_dir / "error_hist.png")


def plot_pulses_hist(maps: dict, out_dir: Path) -> Path | None:
    """``pulses_hist.png``: histogram of the programming pulses per targeted cell (integer bins)."""
    pulses = chip_stack(maps["pulses"])
    if pulses is None:
        return None
    values = pulses[targeted_mask(maps, pulses.shape)]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = int(np.floor(values.min())), int(np.ceil(values.max()))
    step = max(1, int(np.ceil((hi - lo + 1) / 100)))
    bins = np.arange(lo, hi + step + 1, step) - 0.5
    fig = new_figure(margins=HIST_MARGINS)
    ax = fig.add_subplot()
    hist_bars(ax, values, bins)
    median = np.median(values)
    ax.axvline(float(median), color="black", linestyle=":", label=f"median {median:g}")
    legend_outside(ax)
    ax.set_xlabel("pulses per cell")
    ax.set_ylabel("cells")
    ax.set_title(f"programming pulses per cell ({values.size} cells, mean {values.mean():.1f})")
    return save(fig, out_dir / "pulses_hist.png")


def plot_forming(maps: dict, out_dir: Path) -> Path | None:
    """``forming.png``: histogram of forming voltages ``maps/forming_voltage`` (V, NaN where not
    formed); the title gives the formed count of the total."""
    volts = chip_stack(maps["forming_voltage"])
    if volts is None:
        return None
    formed = volts[np.isfinite(volts)]
    fig = new_figure()
    ax = fig.add_subplot()
    if formed.size:
        hist_bars(ax, formed, min(40, max(5, int(np.sqrt(formed.size)))))
    else:
        ax.text(0.5, 0.5, "no cell formed", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("forming voltage (V)")
    ax.set_ylabel("cells")
    ax.set_title(f"forming: {formed.size} / {volts.size} cells formed")
    return save(fig, out_dir / "forming.png")


def map_plots(maps: dict, parameters: dict, out_dir: Path) -> list[tuple[str, object]]:
    """(file name, zero-argument plotting function) for every map plot the run's maps allow."""
    jobs: list[tuple[str, object]] = []
    heat_maps: dict = {}                    # (one figure for the heat maps: plot_map's ``reuse``)
    for name in MAP_NAMES:
        if name in maps:
            jobs.append((f"map_{name}.png", lambda n=name: plot_map(n, maps[n], out_dir, heat_maps)))
    if "targets" in maps and "final" in maps:
        jobs.append(("target_vs_achieved.png", lambda: plot_target_vs_achieved(maps, out_dir)))
    if "rel_error" in maps:
        tol = parameters.get("tolerance")
        jobs.append(("error_hist.png", lambda: plot_error_hist(maps, tol, out_dir)))
    if "pulses" in maps:
        jobs.append(("pulses_hist.png", lambda: plot_pulses_hist(maps, out_dir)))
    if "forming_voltage" in maps:
        jobs.append(("forming.png", lambda: plot_forming(maps, out_dir)))
    return jobs
