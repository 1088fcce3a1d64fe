"""``xbar show RUN_DIR`` and ``xbar plot RUN_DIR``: read a run folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from .registry import command


def _run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")


@command("show", help="print the summary of a run folder", arguments=_run_dir)
def cmd_show(args) -> int:
    from ..report.tables import format_run
    from ..storage.run_data import load_run

    print(format_run(load_run(args.run_dir)))
    return 0


@command("plot", help="(re)draw a run folder's plots and report.html", arguments=_run_dir)
def cmd_plot(args) -> int:
    from ..report.plots import plot_run

    images, html = plot_run(args.run_dir)
    for img in images:
        print(f"  {img}")
    print(f"report: {html}")
    return 0
