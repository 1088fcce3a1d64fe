"""Running a sweep on Dask, into a sweep folder.

By default the sweep starts an embedded local cluster on 127.0.0.1 (one worker process per core,
one thread each; ``workers`` to choose); ``scheduler="tcp://HOST:PORT"`` runs it on an existing
Dask cluster instead (``dask scheduler`` / ``dask worker`` on lab machines, or a SLURM/PBS
allocation through dask-jobqueue).  Every point is one task; results come back to this process,
which writes each to ``points/<id>.json`` as it arrives (atomically), so:

* a re-run with the same folder skips the points already finished (failed ones are run again);
* a failing point is recorded with its error and the sweep goes on;
* a worker lost mid-sweep loses nothing: Dask runs its points again on the other workers (a point
  that kills several workers in turn is recorded as failed).

The folder: ``sweep.json`` (the spec, counts, status), ``spec.toml``, ``points/``,
``sweep.parquet`` (the tidy table, see :mod:`.table`) and ``plots/`` (see :mod:`.plots`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .spec import Point, SweepSpec
from .table import TABLE, write_table

SWEEP_JSON = "sweep.json"
POINTS = "points"


@dataclass
class SweepOutcome:
    """How a sweep ended: the folder, the table's path, counts and the wall time (s)."""

    folder: Path
    table: Path
    total: int
    ok: int
    failed: int
    skipped: int
    wall_s: float
    plots: list


def is_sweep_folder(path: Path) -> bool:
    return (Path(path) / SWEEP_JSON).is_file()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def prepare_folder(spec: SweepSpec, out: Path | None) -> Path:
    """The sweep folder: ``out`` (a new folder, or an earlier sweep of the same command to
    continue), else ``runs/<UTC time stamp>-sweep``."""
    from procedures.storage.runner import default_runs

    if out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out = default_runs() / f"{stamp}-sweep-{spec.command}"
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not is_sweep_folder(out):
        raise ValueError(f"{out} exists and is not a sweep folder; choose another --out")
    if is_sweep_folder(out):
        old = json.loads((out / SWEEP_JSON).read_text())
        if old.get("command") != spec.command or old.get("seed") != spec.seed:
            raise ValueError(f"{out} holds a sweep of {old.get('command')!r} with seed {old.get('seed')}; "
                             f"this spec sweeps {spec.command!r} with seed {spec.seed}: choose another --out")
    (out / POINTS).mkdir(parents=True, exist_ok=True)
    return out


def load_records(folder: Path) -> dict[str, dict]:
    """The points recorded in a sweep folder, by id."""
    out = {}
    for path in sorted((Path(folder) / POINTS).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue                                  # a torn file: the point is run again
        out[rec["point"]] = rec
    return out


def _record(point: Point, result: dict) -> dict:
    return {"point": point.id, "index": point.index, "replicate": point.replicate, "seed": point.seed,
            "params": point.params, "argv": list(point.argv), "status": result["status"],
            "error": result.get("error"), "point_wall_s": result.get("wall_s"), "point_cpu_s": result.get("cpu_s"),
            "worker": result.get("worker"), "report": result.get("report") or {}}


#: Dask settings of the embedded cluster: no statistical profiling of the workers (a stack sample
#: every 10 ms, during the points too), no work stealing (points wait on the scheduler until a
#: worker is free, so there is nothing to rebalance), a 1 s event-loop health tick (20 ms by
#: default), the memory limits checked every second (100 ms by default: a point's memory does not
#: grow that fast) and the system monitor (the dashboard's CPU, memory and disk figures) sampling
#: every 2 s (0.5 s).  An idle 2-worker cluster then takes about 12 ms of CPU per s instead of 32
#: (load 12, measured with psutil over 20 s): background that runs on the same cores as the points
LOCAL_CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.scheduler.work-stealing": False,
                        "distributed.admin.tick.interval": "1s", "distributed.worker.memory.monitor-interval": "1s",
                        "distributed.admin.system-monitor.interval": "2s"}


def local_cluster(workers: int | None = None):
    """A Dask LocalCluster on 127.0.0.1 (dashboard too) of ``workers`` processes, one thread each
    (None: one per core), with :data:`LOCAL_CLUSTER_CONFIG`."""
    import logging

    import dask
    from distributed import LocalCluster

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        return LocalCluster(n_workers=workers or cores or 1, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)


class _Cluster:
    """A Dask client on ``scheduler``, or on an embedded LocalCluster of ``workers`` processes."""

    def __init__(self, scheduler: str | None, workers: int | None):
        self.scheduler, self.workers = scheduler, workers
        self.cluster = self.client = None

    def __enter__(self):
        from distributed import Client

        if self.scheduler:
            self.client = Client(self.scheduler, timeout="60s")
        else:
            self.cluster = local_cluster(self.workers)
            self.client = Client(self.cluster)
        return self.client

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False


def _result_of(fut) -> dict:
    """A point's result (:func:`~.point.run_point`'s dict) from its finished future, or its
    failure as Dask reports it (e.g. KilledWorker: the point took its workers down).  A future
    can finish, lose its result with the worker that held it and be computed again before this
    reads it (its status is then "lost" or "pending", not "finished"): ``result()`` waits for the
    new result.  (Reading a future that was not "finished" as failed recorded such a point with
    the error "NoneType: None", the exception of a future that then succeeded: a point lost.
    ``as_completed`` yields a future that finished even if it is lost afterwards, which a worker
    killed while the sweep handles another result makes likely.)"""
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - run_point never raises: this is Dask's error for the point
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def run_sweep(spec: SweepSpec, out: Path | None = None, scheduler: str | None = None,
              workers: int | None = None, progress: bool = True, plots: bool = True,
              on_result: Callable[[dict], None] | None = None) -> SweepOutcome:
    """Run every point of ``spec`` not yet finished in the folder ``out``; write the table (and,
    with ``plots``, the summary plots).  ``on_result(record)`` is called as each point arrives."""
    from distributed import as_completed

    points = spec.expand()
    folder = prepare_folder(spec, out)
    records = load_records(folder)
    todo = [p for p in points if records.get(p.id, {}).get("status") != "ok"]
    skipped = len(points) - len(todo)
    (folder / "spec.toml").write_text(spec.text or "")
    meta = {"command": spec.command, "seed": spec.seed, "seeds": spec.seeds, "fixed": spec.fixed,
            "grid": spec.grid, "points": spec.points, "swept": spec.swept, "total": len(points),
            "status": "running", "started": _now(), "scheduler": scheduler or "embedded"}
    _write_json(folder / SWEEP_JSON, meta)
    t0 = time.perf_counter()
    bar = None
    status = "interrupted"
    try:
        if todo:
            from .point import run_point

            with _Cluster(scheduler, workers) as client:
                if progress:
                    from tqdm import tqdm
                    bar = tqdm(total=len(points), initial=skipped, unit="point", desc=f"sweep {spec.command}",
                               smoothing=0.1)
                # one message to the scheduler for every point (not a round trip per point)
                futures = client.map(run_point, [list(p.argv) for p in todo],
                                     key=[f"xbar-{spec.command}-{p.id}" for p in todo], pure=False)
                by_key = {fut.key: p for fut, p in zip(futures, todo)}
                failed = sum(records[q.id]["status"] != "ok" for q in points if q.id in records)
                for fut in as_completed(futures):
                    p = by_key[fut.key]
                    rec = _record(p, _result_of(fut))
                    _write_json(folder / POINTS / f"{p.id}.json", rec)
                    failed += (rec["status"] != "ok") - (records.get(p.id, {"status": "ok"})["status"] != "ok")
                    records[p.id] = rec
                    fut.release()
                    if bar is not None:     # (a running count: a sweep of N points is not N² lookups)
                        bar.update(1)
                        bar.set_postfix(failed=failed, refresh=False)
                    if on_result is not None:
                        on_result(rec)
        status = "finished"
    finally:
        if bar is not None:
            bar.close()
        current = [records[p.id] for p in points if p.id in records]
        table = write_table(current, folder / TABLE) if current else folder / TABLE
        ok = sum(r["status"] == "ok" for r in current)
        meta.update(status=status, ended=_now(), ok=ok, failed=len(current) - ok,
                    wall_s=time.perf_counter() - t0)
        _write_json(folder / SWEEP_JSON, meta)
    images = []
    if plots and current:
        from .summary import plot_sweep
        images = plot_sweep(folder)
    return SweepOutcome(folder, table, len(points), ok, len(current) - ok, skipped,
                        time.perf_counter() - t0, images)
