"""A sweep folder's summary (``xbar show SWEEP_DIR``) and its plots (``plots/``).

The key figures of each command's report (:data:`KEY_METRICS`; otherwise its first numeric
figures) are averaged over the seeds of each point; ``xbar show`` prints them per point, and
one plot per swept option (mean ± standard deviation over seeds) or per pair of swept options (a
heat map of the mean over everything else) shows them.  Fractions are shown in %, energies in µJ;
the table keeps SI units.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

from .runner import SWEEP_JSON
from .table import ID_COLUMNS, TABLE, TIMING_COLUMNS, read_table

#: the report figures a sweep of each command is summarised by
KEY_METRICS = {
    "tune": ("yield", "rel_error_mean", "pulses_per_cell.mean", "energy_j"),
    "evaluate": ("mean_accuracy", "frac_points_ge_95", "min_accuracy"),
    "train": ("test_accuracy", "train_accuracy"),
    "insitu": ("mean_test_accuracy",),
    "deploy": ("accuracy.chip_mvm", "accuracy.readback"),
    "infer": ("accuracy",),
}
MAX_METRICS = 4
PLOTS = "plots"


def _scale(name: str) -> tuple[float, str]:
    """Edge units: fractions in %, energies in µJ."""
    if name.endswith("_j"):
        return 1e6, "µJ"
    if any(w in name for w in ("accuracy", "yield", "frac", "rel_error", "within_tol")):
        return 100.0, "%"
    return 1.0, ""


def load_sweep(folder: Path) -> tuple[dict, object]:
    """``(sweep.json contents, table)``; the table is None before the first point finished."""
    folder = Path(folder)
    meta = json.loads((folder / SWEEP_JSON).read_text())
    table = read_table(folder / TABLE) if (folder / TABLE).is_file() else None
    return meta, table


def metrics_of(meta: dict, df) -> list[str]:
    """The key figures present in the table (at most :data:`MAX_METRICS`)."""
    import pandas as pd

    names = [m for m in KEY_METRICS.get(meta["command"], ()) if m in df.columns]
    if not names:
        params = set(meta.get("swept", [])) | set(meta.get("fixed", {}))
        names = [c for c in df.columns if c not in ID_COLUMNS and c not in TIMING_COLUMNS and c not in params
                 and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    return names[:MAX_METRICS]


def _grouped(df, by: list[str], metrics: list[str]):
    ok = df[df["status"] == "ok"]
    if not by:
        return ok[metrics].agg(["mean", "std"])
    return ok.groupby(by, sort=False, dropna=False)[metrics].agg(["mean", "std", "count"])


def format_sweep(folder: Path) -> str:
    """The text ``xbar show`` prints for a sweep folder."""
    meta, df = load_sweep(folder)
    swept = meta.get("swept", [])
    lines = [f"sweep {folder}",
             f"  command     {meta['command']}  (seed {meta['seed']}, {meta.get('seeds', 1)} seed(s) per point)",
             f"  status      {meta.get('status')}  ({meta.get('ok', 0)} ok, {meta.get('failed', 0)} failed of "
             f"{meta.get('total')} points; started {meta.get('started')}, ended {meta.get('ended', '-')})",
             f"  scheduler   {meta.get('scheduler')}",
             "  fixed       " + (", ".join(f"{k}={v}" for k, v in meta.get("fixed", {}).items()) or "-"),
             "  swept       " + (", ".join(swept) or "-")]
    if df is None or not len(df):
        return "\n".join(lines + ["  no point has finished yet"])
    metrics = metrics_of(meta, df)
    if metrics:
        heads = [f"{m} ({_scale(m)[1]})" if _scale(m)[1] else m for m in metrics]
        lines.append("  mean ± std over seeds:")
        lines.append("    " + "  ".join(f"{h:>14}" for h in [*swept, *heads, "runs"]))
        g = _grouped(df, swept, metrics)
        if swept:
            for key, row in g.iterrows():
                key = key if isinstance(key, tuple) else (key,)
                cells = [f"{str(k):>14}" for k in key]
                for m in metrics:
                    s = _scale(m)[0]
                    cells.append(f"{_pm(row[(m, 'mean')] * s, row[(m, 'std')] * s):>14}")
                cells.append(f"{int(row[(metrics[0], 'count')]):>14}")
                lines.append("    " + "  ".join(cells))
        else:
            lines.append("    " + "  ".join(f"{_pm(g[m]['mean'] * _scale(m)[0], g[m]['std'] * _scale(m)[0]):>14}"
                                            for m in metrics))
    failed = df[df["status"] != "ok"]
    if len(failed):
        lines.append(f"  failed points ({len(failed)}):")
        for _, r in failed.head(10).iterrows():
            params = {k: r[k] for k in swept}
            lines.append(f"    {r['point']} {params} seed {r['seed']}: {str(r['error'])[:200]}")
    plots = sorted((Path(folder) / PLOTS).glob("*.png"))
    if plots:
        lines.append("  plots       " + ", ".join(str(p) for p in plots))
    return "\n".join(lines)


def _pm(mean, std) -> str:
    if mean != mean:
        return "-"
    return f"{mean:.4g}" if std != std else f"{mean:.4g}±{std:.2g}"


def plot_sweep(folder: Path) -> list[Path]:
    """One PNG per swept option (with one swept option) or per pair of swept options."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, df = load_sweep(folder)
    swept = meta.get("swept", [])
    if df is None or not swept:
        return []
    metrics = metrics_of(meta, df)
    if not metrics:
        return []
    out_dir = Path(folder) / PLOTS
    out_dir.mkdir(exist_ok=True)
    images = []
    groups = [(swept[0],)] if len(swept) == 1 else list(itertools.combinations(swept, 2))
    for group in groups:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
        g = _grouped(df, list(group), metrics)
        for ax, m in zip(axes[0], metrics):
            scale, unit = _scale(m)
            label = f"{m} ({unit})" if unit else m
            if len(group) == 1:
                xs = [str(k) for k in g.index]
                ax.errorbar(range(len(xs)), g[(m, "mean")] * scale, yerr=(g[(m, "std")] * scale).fillna(0),
                            marker="o", capsize=3)
                ax.set_xticks(range(len(xs)), xs, rotation=30)
                ax.set_xlabel(group[0])
                ax.set_ylabel(label)
            else:
                a, b = group
                grid = g[(m, "mean")].unstack(b) * scale
                im = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="viridis")
                ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], rotation=30)
                ax.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index])
                ax.set_xlabel(b)
                ax.set_ylabel(a)
                ax.set_title(label, fontsize=9)
                fig.colorbar(im, ax=ax)
                for (i, j), v in _cells(grid):
                    ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color="w")
        fig.suptitle(f"sweep of {meta['command']}: mean over seeds" + (" and the other options" if len(swept) > 2
                                                                     else ""), fontsize=10)
        fig.tight_layout()
        path = out_dir / ("sweep-" + "-vs-".join(group) + ".png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        images.append(path)
    return images


def _cells(grid):
    arr = grid.to_numpy(dtype=float)
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            if arr[i, j] == arr[i, j]:
                yield (i, j), arr[i, j]
