"""Sweep throughput: a 200-point ``tune`` sweep on the embedded Dask cluster with 1 and with 2
worker processes, in one run.

Prints, per worker count, the sweep's wall time (cluster start and stop included), the sum of the
points' own wall times on their workers, the speed-up from 1 to 2 workers, and the overhead per
point: (wall time × workers − Σ point wall time) / points, i.e. what the sweep machinery (Dask,
recording, the table) adds to each point.  Targets (issue 17): speed-up >= 1.8x, overhead
<= 50 ms per point.  The machine is shared: quote ``uptime`` with the figures.

    PYTHONPATH=. python benchmarks/sweep.py [--points 200] [--size 8x8]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=200, help="points (a multiple of 20)")
    ap.add_argument("--size", default="8x8")
    args = ap.parse_args()
    from procedures.sweep.runner import load_records, run_sweep
    from procedures.sweep.spec import parse_spec

    spec = parse_spec({"command": "tune", "seed": 1, "seeds": max(1, args.points // 20),
                       "fixed": {"size": args.size},
                       "grid": {"tolerance": [0.005, 0.01, 0.02, 0.03, 0.05], "max-pulses": [25, 50, 100, 200]}})
    n = len(spec.expand())
    print(f"{n}-point tune sweep ({args.size}), load average {os.getloadavg()[0]:.2f} at start")
    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            folder = Path(tmp) / f"w{workers}"
            t0 = time.perf_counter()
            out = run_sweep(spec, folder, workers=workers, progress=False, plots=False)
            wall = time.perf_counter() - t0
            point_s = sum(r["point_wall_s"] for r in load_records(folder).values())
            walls[workers] = wall
            overhead = (wall * workers - point_s) / n
            print(f"  {workers} worker(s): {wall:7.2f} s wall, points {point_s:7.2f} s in all "
                  f"({1e3 * point_s / n:.1f} ms each), {out.ok} ok / {out.failed} failed; "
                  f"overhead {1e3 * overhead:.1f} ms per point")
            shutil.rmtree(folder)
    print(f"  speed-up 1 -> 2 workers: {walls[1] / walls[2]:.2f}x (target >= 1.8x); "
          f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
