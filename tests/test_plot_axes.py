"""Every plot type says what it plots: axis labels with units, the right scales (log where the data
are logarithmic), colour bars where colour encodes a value, and legends outside the data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from procedures.report import plot_maps, plots


def _describe(fig) -> dict:
    """Title, labels, scales and legend placement of each data axes; the colour bars' labels."""
    fig.canvas.draw()
    axes, bars = [], []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            bars.append(ax.get_ylabel())
            continue
        if not ax.get_visible() or not (ax.lines or ax.collections or ax.images or ax.patches):
            continue
        leg = ax.get_legend()
        axes.append({"title": ax.get_title(), "x": ax.get_xlabel(), "y": ax.get_ylabel(),
                     "xscale": ax.get_xscale(), "yscale": ax.get_yscale(),
                     "legend_outside": None if leg is None else
                     bool(leg.get_window_extent().x0 >= ax.get_window_extent().x1)})
    return {"axes": axes, "colorbars": bars, "suptitle": fig._suptitle.get_text() if fig._suptitle else ""}


@pytest.fixture
def figures(monkeypatch):
    """Each saved plot's description, by file name."""
    seen = {}
    real = plot_maps.save

    def capture(fig, path):
        seen[path.name] = _describe(fig)
        return real(fig, path)
    monkeypatch.setattr(plot_maps, "save", capture)
    monkeypatch.setattr(plots, "save", capture)
    return seen


def _maps(rng, shape=(1, 4, 5)):
    targets = rng.uniform(100e-6, 500e-6, shape)
    final = targets * (1 + rng.normal(0, 0.004, shape))
    status = np.ones(shape, int)
    status[0, 0, 0] = 3
    return {"before": rng.uniform(20e-6, 60e-6, shape), "final": final, "targets": targets, "status": status,
            "rel_error": (final - targets) / targets, "pulses": rng.integers(1, 30, shape).astype(float)}


def test_map_plots_label_axes_colour_bars_and_legends(figures, tmp_path):
    maps = _maps(np.random.default_rng(0))
    for _, job in plot_maps.map_plots(maps, {"tolerance": 0.01}, tmp_path):
        job()
    heat = figures["map_final.png"]
    assert heat["colorbars"] == ["conductance (µS)"]
    assert heat["axes"][0]["x"] == "column" and heat["axes"][0]["y"] == "row" and "final" in heat["axes"][0]["title"]
    tva = figures["target_vs_achieved.png"]["axes"][0]
    assert (tva["x"], tva["y"]) == ("target conductance (µS)", "achieved conductance (µS)")
    assert tva["legend_outside"] is True
    err = figures["error_hist.png"]["axes"][0]
    assert (err["x"], err["y"], err["legend_outside"]) == ("relative error (%)", "cells", True)
    pulses = figures["pulses_hist.png"]["axes"][0]
    assert (pulses["x"], pulses["y"], pulses["legend_outside"]) == ("pulses per cell", "cells", True)


def test_forming_plot_labels(figures, tmp_path):
    volts = np.full((1, 3, 3), np.nan)
    volts[0, :2] = np.linspace(1.8, 2.6, 6).reshape(2, 3)
    plot_maps.plot_forming({"forming_voltage": volts}, tmp_path)
    ax = figures["forming.png"]["axes"][0]
    assert (ax["x"], ax["y"]) == ("forming voltage (V)", "cells") and "6 / 9" in ax["title"]


def test_traces_plot_labels_both_axes(figures, tmp_path):
    n = 6
    trace = {"chip": np.zeros(2 * n), "row": np.zeros(2 * n), "col": np.zeros(2 * n), "pass": np.zeros(2 * n),
             "kind": np.tile([1, 0], n), "amplitude": np.tile([1.2, 0.2], n), "width": np.tile([1e-6, 0], n),
             "reading": np.tile([np.nan, 2e-4], n)}
    plots.plot_traces(trace, {"targets": np.full((1, 1, 1), 2e-4)}, tmp_path)
    fig = figures["traces.png"]
    labels = {(a["x"], a["y"]) for a in fig["axes"]}
    assert ("operation", "conductance (µS)") in labels and ("", "pulse amplitude (V)") in labels
    assert "traces" in fig["suptitle"]


def test_iv_plots_pulsed_reads_labelled_and_steps_have_a_colour_bar(figures, tmp_path):
    v = np.array([0.5, 1.0, 0.5, -0.5, -1.0, -0.5])
    data = pd.DataFrame({"Step": np.arange(6), "Voltage (V)": v, "Current (A)": 2e-5 + 1e-6 * np.arange(6),
                         "Conductance (S)": 1e-4 + 5e-6 * np.arange(6)})
    plots.plot_iv(data, {"mode": "pulsed", "v_read": 0.2, "row": 1, "col": 2}, tmp_path)
    fig = figures.pop("iv.png")
    current, conductance = fig["axes"]
    assert current["x"] == "pulse voltage (V)" and current["y"] == "read current at 0.2 V after the pulse (µA)"
    assert conductance["y"] == "conductance after the pulse (µS)" and "(1, 2)" in conductance["title"]
    assert fig["colorbars"] == ["step (measurement order)"] * 2
    plots.plot_iv(data, {"mode": "read", "row": 0, "col": 0}, tmp_path)
    fig = figures["iv.png"]
    assert [(a["x"], a["y"]) for a in fig["axes"]] == [("voltage (V)", "current (µA)")]
    assert fig["colorbars"] == ["step (measurement order)"]


def test_retention_time_axis_is_logarithmic_for_log_intervals(figures, tmp_path):
    rng = np.random.default_rng(1)
    times = np.concatenate([[0.0], 60.0 * 2.0 ** np.arange(5)])    # --log --interval 60 --reads 6
    maps = 3e-4 * (1 - 0.01 * np.log1p(times))[:, None, None] * rng.uniform(0.9, 1.1, (1, 3, 3))
    plots.plot_retention(times, maps, tmp_path, log=True)
    mean, rel = figures.pop("retention.png")["axes"]
    assert rel["xscale"] == "log" and rel["x"].startswith("time since first read (s")
    assert mean["y"] == "conductance (µS)" and rel["y"] == "change since first read (%)"
    assert mean["legend_outside"] is True
    plots.plot_retention(60.0 * np.arange(6), maps, tmp_path, log=False)        # linear intervals
    assert figures["retention.png"]["axes"][1]["xscale"] == "linear"


def test_endurance_legend_outside_and_log_cycles(figures, tmp_path):
    cycles = np.array([1, 2, 5, 10, 100, 1000])
    rows = [{"Cycle": c, "Chip": 0, "Row": r, "Col": 0, "G SET (S)": 3e-4, "G RESET (S)": 1e-4}
            for c in cycles for r in range(8)]
    plots.plot_endurance(pd.DataFrame(rows), tmp_path)
    ax = figures["endurance.png"]["axes"][0]
    assert (ax["x"], ax["y"]) == ("cycle (log scale)", "conductance (µS)") and ax["xscale"] == "log"
    assert ax["legend_outside"] is True and "8 cell(s)" in ax["title"]


def test_target_vs_achieved_draws_at_most_scatter_max_cells_of_a_status_and_counts_them_all(tmp_path, monkeypatch):
    """A batch of many chips: each status's scatter draws at most SCATTER_MAX cells, evenly spread over
    them (a rare status all of its cells), while the legend counts every cell."""
    monkeypatch.setattr(plot_maps, "SCATTER_MAX", 50)
    drawn = {}
    real = plot_maps.save

    def capture(fig, path):
        ax = fig.axes[0]
        drawn.update({c.get_label(): len(c.get_offsets()) for c in ax.collections})
        drawn["title"] = ax.get_title()
        return real(fig, path)
    monkeypatch.setattr(plot_maps, "save", capture)
    maps = _maps(np.random.default_rng(3), shape=(30, 4, 5))
    maps["status"][:2] = 3                                      # 40 stuck cells, 560 converged
    plot_maps.plot_target_vs_achieved(maps, tmp_path)
    assert drawn["converged (560)"] == 50 and drawn["stuck (40)"] == 40
    assert "600 targeted cells" in drawn["title"] and "at most 50" in drawn["title"]


def test_map_plots_fixed_margins_keep_every_label_inside_the_figure(tmp_path, monkeypatch):
    """The heat maps, the target-vs-achieved scatter and the histograms are drawn in fixed margins
    (no layout engine): their tick labels, axis labels, colour bar label, legend and titles (two lines
    on a batch) still lie inside the figure, for a batch with six-digit counts."""
    inside = {}
    real = plot_maps.save

    def capture(fig, path):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        extents = [ax.get_tightbbox(renderer) for ax in fig.axes]          # what each axes draws, its text too
        extents += [ax.get_legend().get_window_extent(renderer) for ax in fig.axes if ax.get_legend() is not None]
        inside[path.name] = all(e.x0 >= box.x0 - 0.5 and e.x1 <= box.x1 + 0.5 and e.y0 >= box.y0 - 0.5
                                and e.y1 <= box.y1 + 0.5 for e in extents)
        return real(fig, path)
    monkeypatch.setattr(plot_maps, "save", capture)
    maps = _maps(np.random.default_rng(4), shape=(20000, 4, 5))         # 400 000 cells: counts up to 6 digits
    maps["status"][:100] = 3
    for _, job in plot_maps.map_plots(maps, {"tolerance": 0.01}, tmp_path):
        job()
    assert set(inside) == {"map_before.png", "map_final.png", "map_targets.png", "target_vs_achieved.png",
                           "error_hist.png", "pulses_hist.png"}
    assert all(inside.values()), inside


def _pixels(path):
    from matplotlib.image import imread
    return imread(path)


@pytest.mark.parametrize("case", ["plain", "offset", "twin_power_of_ten", "ticks_on_top"])
def test_pinned_titles_give_the_pixels_matplotlib_places_them_at(case, tmp_path):
    """save() places the titles of a figure in fixed margins itself where nothing can lift them
    (plot_maps.pin_titles); where something can (a y axis's offset or power of ten, its twin's,
    x ticks on top) matplotlib still places them: the same pixels as matplotlib's own placement."""
    def build():
        fig = plot_maps.new_figure(6.0, 4.0, margins=(0.9, 0.9, 0.6, 0.6))
        ax = fig.add_subplot()
        y = {"offset": [1e7 + 1, 1e7 + 3, 1e7 + 2], "twin_power_of_ten": [1, 3, 2]}.get(case, [1.0, 3.0, 2.0])
        ax.plot([0, 1, 2], y, "o-")
        if case == "twin_power_of_ten":
            twin = ax.twinx()
            twin.plot([0, 1, 2], [2e-7, 5e-7, 1e-7], color="tab:red")
        if case == "ticks_on_top":
            ax.xaxis.tick_top()
        ax.set_title("a title long enough to reach over the whole width of the axes, offset text included")
        return fig, ax

    fig, ax = build()
    plot_maps.save(fig, tmp_path / "pinned.png")
    ref, ref_ax = build()
    ref.savefig(tmp_path / "reference.png", format="png")
    assert np.array_equal(_pixels(tmp_path / "pinned.png"), _pixels(tmp_path / "reference.png"))
    lifted = ref_ax.title.get_position()[1] > 1.0          # matplotlib's own placement, after its draw
    assert lifted == (case != "plain")


def test_saved_png_has_the_pixels_of_matplotlibs_default_png(tmp_path):
    """save() writes its PNG at a faster deflate level: the same pixels as matplotlib's default."""
    def build():
        fig = plot_maps.new_figure(4.0, 3.0, margins=(0.8, 0.3, 0.5, 0.4))
        ax = fig.add_subplot()
        ax.imshow(np.random.default_rng(1).random((8, 8)), interpolation="nearest")
        ax.set_title("map")
        return fig
    plot_maps.save(build(), tmp_path / "fast.png")
    build().savefig(tmp_path / "default.png", format="png")
    assert np.array_equal(_pixels(tmp_path / "fast.png"), _pixels(tmp_path / "default.png"))


def test_heat_maps_redrawn_in_one_figure_have_the_pixels_of_figures_of_their_own(tmp_path):
    """A run's heat maps share one figure (plot_map's ``reuse``): each PNG has the pixels of the map
    drawn in a figure of its own (values, colour scale, colour bar ticks, title), NaNs (untargeted
    cells) and two-line titles included."""
    rng = np.random.default_rng(5)
    maps = _maps(rng, shape=(3, 6, 7))
    maps["targets"][0, 1:3, 2:5] = np.nan
    maps["final"] = maps["final"] * 40.0                       # another range: other colour bar ticks
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    reuse: dict = {}
    for name in ("before", "targets", "final"):
        plot_maps.plot_map(name, maps[name], shared, reuse)
        plot_maps.plot_map(name, maps[name], alone)
    assert "heat map" in reuse
    for name in ("before", "targets", "final"):
        assert np.array_equal(_pixels(shared / f"map_{name}.png"), _pixels(alone / f"map_{name}.png")), name


@pytest.mark.parametrize("case", ["pulses", "errors", "few"])
def test_histogram_bars_in_one_collection_are_the_bars_of_ax_hist(case, tmp_path):
    """plot_maps.hist_bars draws what ``ax.hist(..., edgecolor="white")`` draws (one collection
    instead of a patch per bin): the same counts, bar corners, limits, and all but a few pixels
    (a bar's edge on the neighbouring pixel: its corners computed in another order)."""
    rng = np.random.default_rng(11)
    values, bins = {"pulses": (rng.integers(0, 40, 200000).astype(float), np.arange(0, 42) - 0.5),
                    "errors": (rng.normal(0, 0.3, 200000), 50), "few": (rng.normal(0, 1, 30), 10)}[case]

    def build(collection: bool):
        fig = plot_maps.new_figure(margins=plot_maps.HIST_MARGINS)
        ax = fig.add_subplot()
        if collection:
            counts = plot_maps.hist_bars(ax, values, bins)
        else:
            counts = ax.hist(values, bins=bins, color="tab:blue", edgecolor="white")[0]
        ax.axvline(float(np.median(values)), color="black", linestyle=":", label="median")
        plot_maps.legend_outside(ax)
        ax.set_title("a histogram")
        return fig, ax, counts

    fig, ax, counts = build(True)
    ref, ref_ax, ref_counts = build(False)
    assert np.array_equal(counts, ref_counts)
    corners = ax.collections[0].get_paths()
    assert len(corners) == len(ref_ax.patches)
    for path, patch in zip(corners, ref_ax.patches):
        box = patch.get_bbox()
        np.testing.assert_allclose(path.vertices[:4].min(0), [box.x0, box.y0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(path.vertices[:4].max(0), [box.x1, box.y1], rtol=1e-12, atol=1e-12)
    plot_maps.save(fig, tmp_path / "bars.png")
    plot_maps.save(ref, tmp_path / "hist.png")
    assert ax.get_xlim() == ref_ax.get_xlim() and ax.get_ylim() == ref_ax.get_ylim()
    mine, theirs = _pixels(tmp_path / "bars.png"), _pixels(tmp_path / "hist.png")
    assert mine.shape == theirs.shape and (mine != theirs).any(-1).mean() < 1e-3
