"""One sweep point, run on a Dask worker: the ``xbar`` command in this process, its report back.

The command runs exactly as from the command line (the same parser, checks and code), in a
temporary folder that holds its run folder or model file and is deleted afterwards; what comes
back to the sweep is the command's JSON report, so the workers need no file system shared with the
machine that runs ``xbar sweep`` (only the inputs a spec names, e.g. a model file).  A point never
raises: a failure comes back as its error message.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

#: how many characters of a failed point's output are kept with its error
OUTPUT_TAIL = 2000


_OUTPUTS: dict[str, list[str]] = {}


def run_point(argv: list[str]) -> dict:
    """Run ``xbar *argv`` here; return ``{"status": "ok" | "failed", "error", "report",
    "wall_s", "cpu_s", "worker"}`` (wall and CPU time of the point in this process, s).  The run
    folder is temporary, so its files are not flushed to the disk (:mod:`programming.durable`)."""
    from procedures.cli import main
    from programming.durable import skipped

    command = argv[0]
    t0, c0 = time.perf_counter(), time.process_time()
    out = io.StringIO()
    status, error, report = "failed", None, {}
    with tempfile.TemporaryDirectory(prefix="xbar-point-") as folder:
        try:
            if command not in _OUTPUTS:
                from .spec import command_parsers, output_options

                _OUTPUTS[command] = output_options(command_parsers()[command])
            full = [*argv, *(a.format(folder=folder) for a in _OUTPUTS[command])]
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), skipped():
                code = main(full)
            path = Path(folder) / "report.json"
            if path.is_file():
                report = json.loads(path.read_text())
            if code == 0 and path.is_file():
                status = "ok"
            else:
                error = f"exit status {code}: " + _tail(out.getvalue())
        except SystemExit as exc:                       # argparse refused the options
            error = f"exit status {exc.code}: " + _tail(out.getvalue())
        except BaseException as exc:  # noqa: BLE001 - a failed point is recorded, never fatal
            if isinstance(exc, KeyboardInterrupt):
                raise
            error = f"{type(exc).__name__}: {exc}"
    return {"status": status, "error": error, "report": report, "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "worker": _worker_name()}


def _tail(text: str) -> str:
    text = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text[-OUTPUT_TAIL:]


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"
