"""``xbar show RUN_DIR`` and ``xbar plot RUN_DIR``: read a run folder (or a sweep folder)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .registry import command


def _run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder or a sweep folder")


def _is_sweep(path: Path) -> bool:
    from ..sweep.runner import is_sweep_folder

    return is_sweep_folder(path)


@command("show", help="print the summary of a run folder or a sweep folder", arguments=_run_dir)
def cmd_show(args) -> int:
    if _is_sweep(args.run_dir):
        from ..sweep.summary import format_sweep

        print(format_sweep(args.run_dir))
        return 0
    from ..report.tables import format_run
    from ..storage.run_data import load_run

    print(format_run(load_run(args.run_dir)))
    return 0


@command("plot", help="(re)draw a run folder's plots and report.html", arguments=_run_dir)
def cmd_plot(args) -> int:
    if _is_sweep(args.run_dir):
        from ..sweep.summary import plot_sweep

        for img in plot_sweep(args.run_dir):
            print(f"  {img}")
        return 0
    from ..report.plots import plot_run

    images, html = plot_run(args.run_dir)
    for img in images:
        print(f"  {img}")
    print(f"report: {html}")
    return 0
