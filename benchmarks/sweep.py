"""Sweep throughput: a 200-point ``tune`` sweep on a local Dask cluster with 1 and with 2 worker
processes, alternated in one run: the sweep in two halves of 100 points (two sweep seeds), run on
1, 2, 2, then 1 workers, so each worker count runs all 200 points and a load that changes during
the run cancels in the ratios.

Each half runs on a cluster of its own, started before it as ``xbar sweep`` starts its embedded
one and closed after it, so only one cluster runs during a timed sweep, as with ``xbar sweep`` (an
idle second cluster's scheduler and workers took CPU on the cores the 2-worker sweeps used).  The
clusters' start-up, each worker's first imports, this process's first Parquet write (its imports
fell in the first, 1-worker sweep before) and an idle cluster's background CPU are measured and
printed on their own and are in neither sweep's time.  Each sweep then runs through
``run_sweep`` on its cluster exactly as ``xbar sweep --scheduler`` does (a fresh sweep folder,
every point recorded, the table written).  Per sweep it prints the wall time, the points' own wall
and CPU time on their workers, the CPU time of the worker processes and of this process (client,
scheduler and nannies), and the overhead per point, both ways:

* wall: ``(wall × workers − Σ point wall) / points``, what the sweep machinery adds to each
  point's time on a worker (includes waiting for the scheduler and the client);
* CPU: ``(CPU of the workers and of this process − their CPU while idle × wall − Σ point CPU) /
  points``, the machinery's own work per point, which a loaded machine does not inflate (the idle
  cluster's background CPU, measured first, is printed on its own).

Then the speed-up from 1 to 2 workers: the wall-time ratio of the alternated sweeps, and, robust
to load, the one the measured CPU times give on an idle machine (a sweep then takes the CPU time
of its busiest worker, or all its processes' CPU time spread over the cores, whichever is more).
Targets (issue 17): speed-up >= 1.8x, overhead <= 50 ms per point.  The machine is shared: the
load average is printed.

One pair's ratio moves by tens of per cent on a shared machine (idle runs gave pairs of 1.50x to
2.18x), so ``--rounds`` (default 2) repeats the (1, 2, 2, 1) alternation and the speed-up is
printed per pair, as the median and range of the pairs and from the total times.  Beside each
sweep the same points run in plain processes without Dask (``--reference``, on by default: a
``concurrent.futures`` pool of 1 or 2 warmed processes with the environment Dask's nanny gives
its workers, one BLAS/OpenMP thread each), alternated the same way: the machine's own speed-up for
these points, the ceiling the sweep's can reach here (two points running at once take more CPU
each than one alone when the cores share a cache, a memory bus or a host core).  The sweep's
speed-up is printed as measured, and beside it its ratio to the reference's.  About 3 minutes per
round on an idle 2-core machine (half of it the reference).

    PYTHONPATH=. python benchmarks/sweep.py [--points 200] [--size 8x8] [--preset asymmetric] [--rounds 2] [--no-reference]

(``asymmetric``: the preset with ideal lines, ~0.3 s of CPU per 8x8 point; the default ``tio2-3it``
chip's resistive lines make a point ~4x dearer and the run too long.)
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


def _reference_pool(n: int):
    """``n`` warmed plain worker processes (spawned, no Dask) with the environment Dask's nanny
    gives its workers (one BLAS/OpenMP thread each: ``distributed.nanny.pre-spawn-environ``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    import dask

    saved = dict(os.environ)
    os.environ.update({k: str(v) for k, v in (dask.config.get("distributed.nanny.pre-spawn-environ") or {}).items()})
    try:
        pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
        wait([pool.submit(_warm) for _ in range(2 * n)])       # every process started and warmed
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return pool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=200, help="points (a multiple of 40)")
    ap.add_argument("--size", default="8x8")
    ap.add_argument("--preset", default="asymmetric", help="chip preset of every point")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the (1, 2, 2, 1)-worker half sweeps")
    ap.add_argument("--no-reference", dest="reference", action="store_false",
                    help="skip the same points in plain processes (the machine's own speed-up)")
    args = ap.parse_args()
    from distributed import Client

    from procedures.sweep.runner import load_records, local_cluster, run_sweep
    from procedures.sweep.spec import parse_spec
    from procedures.sweep.table import write_table

    half = max(1, args.points // 40)            # seeds per half: 20 grid points x seeds = points / 2

    def spec_of(sweep_seed):
        return parse_spec({"command": "tune", "seed": sweep_seed, "seeds": half,
                           "fixed": {"size": args.size, "preset": args.preset},
                           "grid": {"tolerance": [0.005, 0.01, 0.02, 0.03, 0.05],
                                    "max-pulses": [25, 50, 100, 200]}})
    halves = [spec_of(1), spec_of(2)]
    n = sum(len(h.expand()) for h in halves)
    logging.getLogger("distributed").setLevel(logging.ERROR)     # no INFO lines when the clusters close
    begin = time.perf_counter()
    print(f"{n}-point tune sweep ({args.size}, {args.preset}), load average {os.getloadavg()[0]:.2f} at start")
    stats: dict[int, list[dict]] = {1: [], 2: []}
    plain: dict[int, list[float]] = {1: [], 2: []}     # the reference: wall s per half in plain processes
    idle: dict[int, tuple[float, float]] = {}       # per cluster size: (this process, workers) CPU s per s

    def start(w):
        """A cluster of ``w`` workers as xbar sweep's embedded one, its workers warmed, its idle
        background measured the first time (not counted in any sweep)."""
        t0 = time.perf_counter()
        cluster = local_cluster(w)
        client = Client(cluster)
        started = time.perf_counter() - t0
        cpu = client.run(_warm)
        if w not in idle:
            t0 = time.perf_counter()
            c0, wc0 = _cpu(), sum(client.run(_cpu).values())
            time.sleep(3.0)
            dt = time.perf_counter() - t0
            idle[w] = ((_cpu() - c0) / dt, (sum(client.run(_cpu).values()) - wc0) / dt)
            print(f"  {w}-worker cluster: started in {started:.2f} s; each worker's first imports "
                  f"{statistics.mean(cpu.values()):.2f} s CPU; idle, this process (scheduler, nannies, client) "
                  f"{1e3 * idle[w][0]:.0f} ms CPU per s, the workers {1e3 * idle[w][1]:.0f} (none of it counted "
                  f"in the sweeps' overheads below)")
        return cluster, client

    with tempfile.TemporaryDirectory() as tmp:
        # this process's own first use of the Parquet writer (pandas' engine, pyarrow: about 1 s
        # of imports) would otherwise fall in the first sweep only, a 1-worker one
        c0 = _cpu()
        write_table([{"point": "warm", "index": 0, "params": {}, "report": {}}], Path(tmp) / "warm.parquet")
        print(f"  this process's first table write (imports) {_cpu() - c0:.2f} s CPU (counted in neither sweep)")
        for i, (w, h) in enumerate([(1, 0), (2, 0), (2, 1), (1, 1)] * args.rounds):
            cluster, client = start(w)      # one cluster at a time, as xbar sweep runs
            try:
                folder = Path(tmp) / f"{i}-w{w}"
                c0, wc0 = _cpu(), client.run(_cpu)
                t0 = time.perf_counter()
                out = run_sweep(halves[h], folder, scheduler=cluster.scheduler_address, progress=False,
                                plots=False)
                wall = time.perf_counter() - t0
                own = _cpu() - c0
                wcpu = {k: v - wc0[k] for k, v in client.run(_cpu).items()}
            finally:
                client.close()
                cluster.close()
            recs = list(load_records(folder).values())
            m = len(recs)
            p_wall = sum(r["point_wall_s"] for r in recs)
            p_cpu = sum(r["point_cpu_s"] for r in recs)
            s = {"wall": wall, "busiest": max(wcpu.values()), "cpu": own + sum(wcpu.values()),
                 "p_wall": p_wall, "p_cpu": p_cpu, "n": m,
                 "net": own + sum(wcpu.values()) - (idle[w][0] + idle[w][1]) * wall - p_cpu,
                 "busy": own + sum(wcpu.values())}
            stats[w].append(s)
            print(f"  {w} worker(s), half {h + 1}: {wall:6.2f} s wall, {out.ok} ok / {out.failed} failed; "
                  f"points {1e3 * p_wall / m:.0f} ms wall, {1e3 * p_cpu / m:.0f} ms CPU each; CPU: workers "
                  f"{sum(wcpu.values()):.2f} s, this process {own:.2f} s; overhead per point "
                  f"{1e3 * (wall * w - p_wall) / m:.1f} ms wall, {1e3 * s['net'] / m:.1f} ms CPU")
            if args.reference:          # the same points in plain processes, right after
                from procedures.sweep.point import run_point

                pool = _reference_pool(w)
                try:
                    t0 = time.perf_counter()
                    done = list(pool.map(run_point, [list(p.argv) for p in halves[h].expand()]))
                    plain[w].append(time.perf_counter() - t0)
                finally:
                    pool.shutdown()
                bad = sum(r["status"] != "ok" for r in done)
                print(f"  {w} plain process(es), half {h + 1}: {plain[w][-1]:6.2f} s wall; points "
                      f"{1e3 * sum(r['cpu_s'] for r in done) / len(done):.0f} ms CPU each"
                      + (f"; {bad} failed" if bad else ""))
    for w in (1, 2):
        wall = sum(s["wall"] for s in stats[w])
        m = sum(s["n"] for s in stats[w])
        over_wall = (wall * w - sum(s["p_wall"] for s in stats[w])) / m
        over_cpu = sum(s["net"] for s in stats[w]) / m
        print(f"  {m} points on {w} worker(s): {wall:.2f} s wall; overhead per point {1e3 * over_wall:.1f} ms "
              f"wall, {1e3 * over_cpu:.1f} ms CPU (target <= 50 ms)")
    pairs = [(a["wall"] / b["wall"]) for a, b in zip(stats[1], stats[2])]
    wall_ratio = sum(s["wall"] for s in stats[1]) / sum(s["wall"] for s in stats[2])

    def spread(r):
        return f"median {statistics.median(r):.2f}x, range {min(r):.2f}-{max(r):.2f}x over {len(r)} pairs"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def idle_time(w):   # a sweep's time on an idle machine: its busiest process, or all its CPU time on the cores
        return sum(max(s["busiest"], s["busy"] / cores) for s in stats[w])
    cpu_ratio = idle_time(1) / idle_time(2)
    print(f"  speed-up 1 -> 2 workers: {wall_ratio:.2f}x in wall time (alternated pairs: "
          f"{', '.join(f'{r:.2f}x' for r in pairs)}; {spread(pairs)}); {cpu_ratio:.2f}x from the CPU times on "
          f"an idle {cores}-core machine (target >= 1.8x)")
    if args.reference:
        ref_pairs = [a / b for a, b in zip(plain[1], plain[2])]
        ref_ratio = sum(plain[1]) / sum(plain[2])
        print(f"  the same points in plain processes (no Dask), 1 -> 2: {ref_ratio:.2f}x in wall time (pairs: "
              f"{', '.join(f'{r:.2f}x' for r in ref_pairs)}; {spread(ref_pairs)}): the machine's own speed-up "
              f"here; the sweep's is {wall_ratio / ref_ratio:.2f} of it (pair by pair: median "
              f"{statistics.median([a / b for a, b in zip(pairs, ref_pairs)]):.2f})")
    print(f"  {time.perf_counter() - begin:.0f} s in all; load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
