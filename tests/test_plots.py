"""Plots and the HTML report of run folders, built synthetically (no instrument, no tuner)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from procedures.report.plots import make_plots, plot_run, select_trace_cells
from procedures.report.quantities import headline, quantity
from procedures.report.report_html import flatten, write_report_html
from procedures.storage.run_data import RunFolderError, load_run, write_h5, write_json

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run_json(path, procedure, **parameters):
    write_json(path / "run.json", {
        "procedure": procedure, "status": "finished", "start_time": "2024-05-01T10:00:00",
        "end_time": "2024-05-01T10:05:00", "station": "sim", "chip": "TiO2-A7",
        "software_version": "0.1.0", "instruments": {"smu": "KEITHLEY 2636B"},
        "parameters": parameters,
    })


def _write_csv(path, columns, rows):
    lines = ["#Procedure: <procedures.Test>", "#Parameters:", "#\tMode: x", "#Data:", ",".join(columns)]
    lines += [",".join(repr(float(v)) for v in row) for row in rows]
    (path / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _assert_png(path):
    from matplotlib.image import imread

    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels[..., :3].std() > 0.01  # not a single flat colour


def _tune_folder(tmp_path, rows=6, cols=5, chips=2):
    rng = np.random.default_rng(3)
    run = tmp_path / "20240501-tune"
    run.mkdir()
    _run_json(run, "tune", tolerance="0.01", seed=1)
    shape = (chips, rows, cols)
    targets = rng.uniform(100e-6, 500e-6, shape)
    targets[:, 0, 0] = np.nan  # untargeted
    final = targets * (1 + rng.normal(0, 0.004, shape))
    status = np.where(np.isnan(targets), 0, 1)
    status[0, 1, 1], status[0, 2, 2] = 2, 3
    pulses = rng.integers(3, 40, shape).astype(float)
    pulses[np.isnan(targets)] = 0
    before = rng.uniform(20e-6, 60e-6, shape)
    trace = {k: [] for k in ("chip", "row", "col", "pass", "kind", "amplitude", "width", "reading")}
    for r in range(rows):
        for c in range(cols):
            if np.isnan(targets[0, r, c]):
                continue
            g = before[0, r, c]
            for p in range(int(pulses[0, r, c])):
                for kind, amp, reading in ((1, 1.2 if g < targets[0, r, c] else -1.0, np.nan), (0, 0.0, g)):
                    for k, v in zip(trace, (0, r, c, int(p > 20), kind, amp, 1e-6, reading)):
                        trace[k].append(v)
                g += (targets[0, r, c] - g) * 0.3
    write_h5(run / "run.h5",
             maps={"before": before, "final": final, "targets": targets, "status": status,
                   "rel_error": (final - targets) / targets, "pulses": pulses},
             trace={k: np.asarray(v) for k, v in trace.items()})
    write_json(run / "report.json", {"cells": 58, "converged": 56, "yield": 0.9655172413793104,
                                     "pulses_per_cell": {"mean": 19.25, "p95": 37.0},
                                     "rel_error_max": 0.00987, "working": None,
                                     "long": list(range(50)), "short": [1, 2]})
    return run


def test_tune_folder_plots_and_report(tmp_path):
    run_dir = _tune_folder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images, html_path = plot_run(run_dir)
    names = {p.name for p in images}
    assert names == {"map_before.png", "map_final.png", "map_targets.png", "target_vs_achieved.png",
                     "error_hist.png", "pulses_hist.png", "traces.png"}
    for p in images:
        assert p.parent == run_dir / "plots"
        _assert_png(p)
    text = html_path.read_text(encoding="utf-8")
    assert html_path == run_dir / "report.html"
    for name in names:
        assert f'<img src="plots/{name}"' in text
    assert text.count("<img") == len(images)
    summary = text.split("<h2>Summary</h2>")[1].split("<h2>Plots</h2>")[0]
    assert "<h3>pulses per cell</h3>" in summary and ">19.2<" in summary and ">96.6 %<" in summary
    assert ">0.987 %<" in summary and ">p95<" in summary
    assert "KEITHLEY 2636B" in text and "<h3>Chip</h3>" in text and "<h3>Procedure</h3>" in text
    assert "short" in summary and "long" not in summary
    assert "<title>Write-verify tuning — 20240501-tune</title>" in text
    assert 'id="headline">' in text
    assert text.count("<figcaption>Figure ") == len(images)


def test_trace_cell_selection_is_deterministic(tmp_path):
    run = load_run(_tune_folder(tmp_path))
    targeted = np.isfinite(run.maps["targets"][0])
    chosen = select_trace_cells(run.trace, targeted)
    assert chosen == select_trace_cells(run.trace, targeted)
    assert len(chosen) == 6
    counts = run.maps["pulses"][0][targeted]
    got = [p for _, _, p in chosen]
    assert got == sorted(got, reverse=True)
    assert got[0] == counts.max() and got[-1] == counts.min()
    assert all(targeted[r, c] for r, c, _ in chosen)
    # pulses counted from the trace agree with the pulses map
    assert all(run.maps["pulses"][0, r, c] == p for r, c, p in chosen)
    assert any(abs(p - np.median(counts)) <= 3 for p in got[1:-1])


@pytest.mark.parametrize("mode", ["read", "pulsed"])
def test_iv_folder(tmp_path, mode):
    run = tmp_path / "iv"
    run.mkdir()
    _run_json(run, "iv", mode=mode)
    v = np.concatenate([np.linspace(0, 1, 11), np.linspace(1, -1, 21), np.linspace(-1, 0, 11)])
    g = 100e-6 + 50e-6 * np.tanh(np.cumsum(v) / 5)
    _write_csv(run, ["Voltage (V)", "Current (A)", "Conductance (S)"], zip(v, v * g, g))
    images, _ = plot_run(run)
    assert [p.name for p in images] == ["iv.png"]
    _assert_png(images[0])
    from matplotlib.image import imread
    width = imread(images[0]).shape[1]
    assert (width > 900) == (mode == "pulsed")  # pulsed: a second panel


def test_retention_folder(tmp_path):
    rng = np.random.default_rng(5)
    run = tmp_path / "ret"
    run.mkdir()
    _run_json(run, "retention")
    times = np.logspace(0, 4, 9)
    g0 = rng.uniform(100e-6, 400e-6, (1, 8, 8))
    maps = np.stack([g0 * (1 - 0.01 * np.log10(t) + rng.normal(0, 0.002, g0.shape)) for t in times])
    write_h5(run / "run.h5", series={"times": times, "maps": maps})
    images, _ = plot_run(run)
    assert [p.name for p in images] == ["retention.png"]
    _assert_png(images[0])


def test_endurance_folder(tmp_path):
    run = tmp_path / "end"
    run.mkdir()
    _run_json(run, "endurance")
    rows = []
    for cell, (r, c) in enumerate([(0, 1), (2, 3)]):
        for cyc in range(1, 2001, 50):
            rows.append((0, r, c, cyc, 400e-6 - 20e-9 * cyc - cell * 1e-5, 50e-6 + 5e-9 * cyc))
    _write_csv(run, ["Chip", "Row", "Col", "Cycle", "G SET (S)", "G RESET (S)"], rows)
    images, _ = plot_run(run)
    assert [p.name for p in images] == ["endurance.png"]
    _assert_png(images[0])


def test_forming_folder(tmp_path):
    rng = np.random.default_rng(9)
    run = tmp_path / "form"
    run.mkdir()
    _run_json(run, "forming")
    volts = rng.uniform(2.0, 4.0, (1, 4, 4))
    volts[0, :2, 0] = np.nan
    write_h5(run / "run.h5", maps={"forming_voltage": volts})
    images, _ = plot_run(run)
    assert [p.name for p in images] == ["forming.png"]
    _assert_png(images[0])


def test_bare_folder_gives_report_without_plots(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    _run_json(run, "tune", tolerance="<script>alert(1)</script>", mode="a&b")
    images, html_path = plot_run(run)
    assert images == []
    assert not (run / "plots").exists() or not list((run / "plots").iterdir())
    text = html_path.read_text(encoding="utf-8")
    assert "<img" not in text
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a&amp;b" in text
    assert "no report.json" in text


def test_malformed_data_is_skipped(tmp_path):
    run_dir = tmp_path / "bad"
    run_dir.mkdir()
    _run_json(run_dir, "tune")
    write_h5(run_dir / "run.h5", maps={"final": np.zeros((2, 3, 4, 5)), "targets": np.full((1, 3, 3), np.nan),
                                       "forming_voltage": np.full((1, 2, 2), 3.0)},
             trace={"row": np.arange(4), "col": np.arange(3), "kind": np.zeros(4), "reading": np.ones(4)})
    (run_dir / "data.csv").write_text("#x\nVoltage (V),Current (A)\nabc,1e-6\n0.1,2e-6\n", encoding="utf-8")
    run = load_run(run_dir)
    with pytest.warns(RuntimeWarning, match="iv.png"):  # non-numeric voltages: skipped, not fatal
        images = make_plots(run)
    # a 4-D "final" is not a map, an all-NaN map has nothing to show, trace fields of unequal
    # length are unusable: all skipped; the forming histogram is still drawn
    assert [p.name for p in images] == ["forming.png"]
    html_path = write_report_html(run, images)
    assert html_path.read_text(encoding="utf-8").count("<img") == 1


def test_missing_folder_raises(tmp_path):
    with pytest.raises(RunFolderError):
        plot_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFolderError):
        plot_run(tmp_path / "empty")


def test_flatten_and_format():
    assert flatten({"a": {"b": 1, "c": {"d": 2.5}}, "e": list(range(21)), "f": [1, 2]}) == \
        [("a.b", 1), ("a.c.d", 2.5), ("f", [1, 2])]
    assert quantity("rel_error_mean", 0.004120713) == "0.412 %"
    assert quantity("g_min", 0.000320924) == "321 µS" and quantity("energy_j", 2.9861e-06) == "2.99 µJ"
    assert quantity("wall_s", 1024.0) == "1024 s" and quantity("compliance_A", 1e-3) == "1.00 mA"
    assert quantity("accuracy", 1.0) == "100 %" and quantity("cells", 64) == "64"
    assert quantity("x", None) == "—" and quantity("initial_reset", True) == "yes"
    assert quantity("ratio", np.float32(0.5)) == "0.500"
    tune = {"cells": 256, "converged": 250, "failed": 2, "disturbed": 0, "stuck_flagged": 4, "tolerance": 0.01}
    h = headline("tune", tune)
    assert h.met is False and h.text.startswith("Goal missed: 250 of 252 working cells within 1 %; 4 stuck; 2 failed")
    h = headline("tune", {**tune, "converged": 252, "failed": 0})
    assert h.met is True and h.text == "Goal met: 252 of 252 working cells within 1 %; 4 stuck."
    assert headline("tune", tune, "interrupted").met is False
