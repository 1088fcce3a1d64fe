"""Sweep throughput: a 200-point ``tune`` sweep on a local Dask cluster with 1 and with 2 worker
processes, alternated in one run (1, 2, 2, 1 workers: a load that changes during the run cancels
in the ratios).

Both clusters are started once, before the sweeps (their start-up, and each worker's first
imports, are timed and printed separately); each sweep then runs through ``run_sweep`` on its
cluster exactly as ``xbar sweep --scheduler`` does (a fresh sweep folder, every point recorded,
the table written).  Per sweep it prints the wall time, the points' own wall and CPU time on their
workers, the CPU time of the worker processes and of this process (client and scheduler), and the
overhead per point, both ways:

* wall: ``(wall × workers − Σ point wall) / points``, what the sweep machinery adds to each
  point's time on a worker (includes waiting for the scheduler and the client);
* CPU: ``(CPU of the workers and of this process − Σ point CPU) / points``, the machinery's own
  work, which a loaded machine does not inflate.

Then the speed-up from 1 to 2 workers: the wall-time ratio of the alternated sweeps, and, robust
to load, the one the measured CPU times give on an idle machine (a sweep then takes the CPU time
of its busiest worker, or all its processes' CPU time spread over the cores, whichever is more).  Targets (issue 17): speed-up
>= 1.8x, overhead <= 50 ms per point.  The machine is shared: the load average is printed.
About 3 minutes on an idle 2-core machine.

    PYTHONPATH=. python benchmarks/sweep.py [--points 200] [--size 8x8] [--preset asymmetric] [--rounds 1]
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path


def _warm() -> float:
    """On a worker: what its first point would import and build; returns its CPU time so far."""
    from procedures.sweep.point import run_point  # noqa: F401 - the import is the point
    from procedures.sweep.spec import command_parsers, output_options

    output_options(command_parsers()["tune"])
    return time.process_time()


def _cpu() -> float:
    return time.process_time()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=200, help="points (a multiple of 20)")
    ap.add_argument("--size", default="8x8")
    ap.add_argument("--preset", default="asymmetric", help="chip preset of every point")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of (1, 2, 2, 1)-worker sweeps")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    from procedures.sweep.runner import load_records, run_sweep
    from procedures.sweep.spec import parse_spec

    spec = parse_spec({"command": "tune", "seed": 1, "seeds": max(1, args.points // 20),
                       "fixed": {"size": args.size, "preset": args.preset},
                       "grid": {"tolerance": [0.005, 0.01, 0.02, 0.03, 0.05], "max-pulses": [25, 50, 100, 200]}})
    n = len(spec.expand())
    logging.getLogger("distributed").setLevel(logging.ERROR)     # no INFO lines when the clusters close
    begin = time.perf_counter()
    print(f"{n}-point tune sweep ({args.size}, {args.preset}), load average {os.getloadavg()[0]:.2f} at start")
    clusters, clients = {}, {}
    stats: dict[int, list[dict]] = {1: [], 2: []}
    try:
        for w in (1, 2):
            t0 = time.perf_counter()
            clusters[w] = LocalCluster(n_workers=w, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
            clients[w] = Client(clusters[w])
            started = time.perf_counter() - t0
            cpu = clients[w].run(_warm)
            print(f"  {w}-worker cluster: started in {started:.2f} s; each worker's first imports "
                  f"{statistics.mean(cpu.values()):.2f} s CPU (counted in neither sweep below)")
        with tempfile.TemporaryDirectory() as tmp:
            for i, w in enumerate([1, 2, 2, 1] * args.rounds):
                folder = Path(tmp) / f"{i}-w{w}"
                c0, wc0 = _cpu(), clients[w].run(_cpu)
                t0 = time.perf_counter()
                out = run_sweep(spec, folder, scheduler=clusters[w].scheduler_address, progress=False, plots=False)
                wall = time.perf_counter() - t0
                own = _cpu() - c0
                wcpu = {k: v - wc0[k] for k, v in clients[w].run(_cpu).items()}
                recs = load_records(folder).values()
                p_wall = sum(r["point_wall_s"] for r in recs)
                p_cpu = sum(r["point_cpu_s"] for r in recs)
                s = {"wall": wall, "busiest": max(wcpu.values()), "cpu": own + sum(wcpu.values())}
                stats[w].append(s)
                print(f"  {w} worker(s): {wall:6.2f} s wall, {out.ok} ok / {out.failed} failed; points "
                      f"{1e3 * p_wall / n:.0f} ms wall, {1e3 * p_cpu / n:.0f} ms CPU each; CPU: workers "
                      f"{sum(wcpu.values()):.2f} s, this process {own:.2f} s; overhead per point "
                      f"{1e3 * (wall * w - p_wall) / n:.1f} ms wall, {1e3 * (s['cpu'] - p_cpu) / n:.1f} ms CPU")
    finally:
        for w in clients:
            clients[w].close()
            clusters[w].close()
    pairs = [(a["wall"] / b["wall"]) for a, b in zip(stats[1], stats[2])]
    wall_ratio = sum(s["wall"] for s in stats[1]) / sum(s["wall"] for s in stats[2])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def idle(w):   # the sweep's time on an idle machine: its busiest process, or all its CPU time on the cores
        return min(max(s["busiest"], s["cpu"] / cores) for s in stats[w])
    cpu_ratio = idle(1) / idle(2)
    print(f"  speed-up 1 -> 2 workers: {wall_ratio:.2f}x in wall time (alternated pairs: "
          f"{', '.join(f'{r:.2f}x' for r in pairs)}); {cpu_ratio:.2f}x from the CPU times on an idle "
          f"{cores}-core machine (target >= 1.8x)")
    print(f"  {time.perf_counter() - begin:.0f} s in all; load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
