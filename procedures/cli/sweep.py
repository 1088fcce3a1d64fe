"""``xbar sweep SPEC.toml``: a grid (or list) of any simulated command's options × seeds on Dask
(procedures/sweep/); ``xbar show SWEEP_DIR`` prints its summary."""
from __future__ import annotations

import argparse
from pathlib import Path

from .registry import command


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, metavar="SPEC.toml",
                   help="the sweep: command, seed, seeds, [fixed], [grid] or [[points]] (see the README)")
    p.add_argument("--out", type=Path, default=None, metavar="SWEEP_DIR",
                   help="sweep folder (default: runs/<time stamp>-sweep-<command>); an earlier sweep's "
                        "folder continues it: finished points are skipped")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on this Dask scheduler (default: an embedded local cluster on 127.0.0.1)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the embedded cluster (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="do not draw the summary plots")


@command("sweep", help="run a grid of any simulated command's options x seeds on Dask (resumable)",
         arguments=_sweep_args, description="Parameter study: every point of SPEC.toml is one run of the "
                                            "command on a Dask worker; one tidy Parquet table.")
def cmd_sweep(args) -> int:
    from ..sweep.runner import run_sweep
    from ..sweep.spec import load_spec
    from ..sweep.summary import format_sweep

    if args.scheduler is not None and not str(args.scheduler).startswith(("tcp://", "tls://")):
        raise ValueError(f"--scheduler must be a Dask scheduler address like tcp://HOST:8786, got {args.scheduler!r}")
    if args.workers is not None and args.scheduler is not None:
        raise ValueError("--workers sizes the embedded cluster; with --scheduler the cluster's own workers run")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    spec = load_spec(args.spec)                  # a bad spec: one line, before any folder exists
    outcome = run_sweep(spec, args.out, scheduler=args.scheduler, workers=args.workers,
                        progress=not args.quiet, plots=not args.no_plots)
    print(format_sweep(outcome.folder))
    print(f"table: {outcome.table}")
    if outcome.failed:
        print(f"{outcome.failed} point(s) failed (their errors are in the table); run the same command with "
              f"--out {outcome.folder} to retry them", flush=True)
        return 1
    return 0
