"""Running a procedure from the command line into a run folder.

:func:`run_procedure` is the terminal counterpart of pymeasure's ``Worker`` (which the live
window uses): it runs ``startup → execute → shutdown`` in the main thread and writes the results
file synchronously, one flushed line per record, so ``kill -9`` loses at most what was in
progress.  Ctrl-C asks the procedure to stop at the next safe point (a second Ctrl-C stops at
once); either way ``shutdown`` turns outputs off and opens relays, the data so far is saved, and
a resume hint is printed.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pymeasure.experiment import Results

from instruments.safe_state import deferred_signals
from programming.tune_state import TuneInterrupted

from ..ops.base import ProcedureStopped, XbarProcedure
from .run_data import DATA_CSV, REPORT_JSON, RUN_H5, RUN_JSON, read_json, write_h5, write_json, write_status

#: test hook: with ``XBAR_KILL_AFTER_RECORDS=N`` in the environment the run process SIGKILLs itself
#: right after its N-th data.csv record is flushed: a deterministic crash point (no timing) for
#: the kill-and-resume tests and ``benchmarks/faults.py``
KILL_AFTER_ENV = "XBAR_KILL_AFTER_RECORDS"


def after_record(n: int) -> None:
    """Called after the ``n``-th record of this process is flushed to data.csv (1-based)."""
    kill_after = os.environ.get(KILL_AFTER_ENV)
    if kill_after and n >= int(kill_after):
        os.kill(os.getpid(), signal.SIGKILL)


def default_runs() -> Path:
    """Where runs go when ``--out`` is not given: ``$XBAR_RUNS``, else ``runs`` in the working
    directory."""
    return Path(os.environ.get("XBAR_RUNS", "runs"))


@dataclass
class RunOutcome:
    """How a run ended: ``status`` is finished, interrupted or failed; ``error`` the message of a
    failure."""

    run_dir: Path
    status: str
    report: dict
    error: str | None = None


def new_run_dir(name: str, out: str | Path | None = None) -> Path:
    """``out`` if given (it must not hold another run), else ``runs/<UTC time stamp>-<name>``."""
    if out is not None:
        path = Path(out)
        if (path / RUN_JSON).exists():
            raise ValueError(f"{path} already holds a run; use --resume {path} to continue it, "
                             "or choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = default_runs() / f"{stamp}-{name}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    path.mkdir(parents=True)
    return path


def parameter_values(proc: XbarProcedure) -> dict:
    """The procedure's parameters, JSON-ready."""
    out = {}
    for name, param in proc.parameter_objects().items():
        value = param.value
        out[name] = value.item() if hasattr(value, "item") else value
    return out


class _Stopper:
    """SIGINT → a stop request; a second SIGINT → KeyboardInterrupt at once; SIGTERM → stop at
    once.  Either way the shutdown (safe state) then runs with signals held."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __call__(self) -> bool:
        return self.requested

    def _handler(self, signum, frame):
        if signum == signal.SIGTERM:
            raise ProcedureStopped("terminated (SIGTERM)")
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after the current step (Ctrl-C again to stop at once)...", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
            self._old_term = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            signal.signal(signal.SIGTERM, self._old_term)
        return False


class _Bar:
    """Terminal progress bar fed by the procedure's ``count`` emissions: one bar per stage (e.g.
    a tune's 'pass 2 (re-verify)'), whose total is known when the stage starts and never grows.
    The rate (tqdm's, in the procedure's unit per second) is shown only when it was measured
    over several updates: an array read in one go gets its elapsed time, not a rate."""

    #: the bar of a stage finished in one update (no rate)
    ONE_SHOT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}]"

    def __init__(self, enabled: bool, desc: str):
        self.enabled, self.desc, self.bar, self.stage, self.updates = enabled, desc, None, None, 0

    def update(self, done: int, total: int, unit: str, stage: str | None = None) -> None:
        if not self.enabled:
            return
        if self.bar is not None and (stage != self.stage or total != self.bar.total or done < self.bar.n):
            self.close()                                        # a new stage: a new bar
        if self.bar is None:
            from tqdm import tqdm
            self.stage, self.updates = stage, 0
            self.bar = tqdm(total=total, unit=unit, desc=f"{self.desc} {stage}" if stage else self.desc,
                            smoothing=0.05)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
            self.updates += 1

    def close(self) -> None:
        if self.bar is not None:
            if self.updates <= 1:
                self.bar.bar_format = self.ONE_SHOT
            self.bar.close()
            self.bar = None


def format_table(columns: list[str], table: dict) -> str:
    """Many results rows at once, as the lines pymeasure's CSV formatter writes one by one:
    ``table`` maps each column to an array (one entry per row) or to one value for every row;
    numbers as Python prints them, a missing column as nan.  The counterpart of a procedure
    emitting ``("results_table", table)`` instead of one ``("results", row)`` per row, for an
    emit that accepts it (``emit.tables``)."""
    import numpy as np

    n = max((np.size(v) for v in table.values() if not isinstance(v, str)), default=0)
    if not n:
        return ""
    if n >= COMPILED_MIN and "numba" in sys.modules:
        compiled = _compiled_columns(columns, table, n)
        if compiled is not None:
            from .csv_text import table_text
            return table_text(n, compiled)
    cols = []
    for name in columns:
        value = table.get(name, float("nan"))
        if isinstance(value, str) or np.ndim(value) == 0:
            cols.append([str(value)] * n)
        else:       # Python's str of each number (numpy's str conversion gives the same text, slower)
            cols.append(_number_texts(np.asarray(value)))
    return "\n".join(map(",".join, zip(*cols))) + "\n"


#: :func:`_number_texts` formats a column's distinct values once each where its first
#: ``REPEATS_SAMPLE`` values hold at most a quarter of distinct ones (a tune's instrument times,
#: pulse and read counts: ~30 distinct values in 8192 rows; its targets, readings and energies are
#: all distinct and are formatted value by value, without the sort)
REPEATS_SAMPLE = 256


#: :func:`_number_texts` takes the text of a column of integers in [0, INT_TEXTS) from a table of
#: them made once (a tune's chip, row, column, pulse and read counts: 0.3-0.8 ms per 8192 rows by
#: their distinct values, ~0.1 ms from the table); at most INT_TEXTS short strings (~3 MB)
INT_TEXTS = 1 << 16
_int_texts: list = []         # [the table as an object array] once made, grown to the largest value seen


#: :func:`format_table` writes a table of at least COMPILED_MIN rows with the compiled
#: :func:`~procedures.storage.csv_text.table_text`, and :func:`_number_texts` a column of as many
#: floats with :func:`~procedures.storage.csv_text.float_texts` (~0.1 us a float instead of
#: ~0.7-1 us: 27 -> ~3 ms per 8192 rows of a tune), when numba is loaded already (a simulated chip's
#: line solver loads it; loading it costs ~0.7 s of CPU, the repr of a million floats, which a
#: bench's table of one chip never pays back).  The same text either way.
COMPILED_MIN = 256


def _compiled_columns(columns: list[str], table: dict, n: int) -> list | None:
    """``table``'s columns as :func:`~procedures.storage.csv_text.table_text` takes them, or None
    when an array column is not 1-D of ``n`` values (the rows are then zipped as they are)."""
    import numpy as np

    from .csv_text import CONST, FLOAT, INT, TEXT

    out = []
    for name in columns:
        value = table.get(name, float("nan"))
        if isinstance(value, str) or np.ndim(value) == 0:
            out.append((CONST, str(value)))
            continue
        a = np.asarray(value)
        if a.ndim != 1 or a.size != n:
            return None
        if a.dtype.kind == "f" and a.dtype.itemsize <= 8:
            out.append((FLOAT, a))
        elif a.dtype.kind == "i" or (a.dtype.kind == "u" and a.dtype.itemsize <= 4):
            out.append((INT, a))
        elif a.dtype.kind == "U":               # (strings: as they are, see csv_text._text_column)
            out.append((TEXT, a))
        else:                                   # (objects, bools, uint64: Python's str of each)
            out.append((TEXT, _number_texts(a)))
    return out


def _number_texts(a) -> list[str]:
    """Python's str of each number of the 1-D array ``a``, as ``map(str, a.tolist())`` gives it;
    a column of repeating values has each distinct value (bit pattern: -0.0 and 0.0, NaNs kept
    apart) formatted once (a float's shortest repr is ~0.5 us, a tenth of a row), a column of small
    non-negative integers taken from a table (:data:`INT_TEXTS`), a long column of floats compiled
    (:data:`COMPILED_MIN`)."""
    import numpy as np

    if a.ndim == 1 and a.dtype.kind in "iu" and a.size >= REPEATS_SAMPLE:
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi < INT_TEXTS:
            if not _int_texts or len(_int_texts[0]) <= hi:
                size = min(INT_TEXTS, max(hi + 1 + hi // 8, 1024))
                _int_texts[:] = [np.array([str(i) for i in range(size)], dtype=object)]
            return _int_texts[0][a].tolist()
    if a.ndim == 1 and a.dtype.kind in "fiu" and a.size >= 2 * REPEATS_SAMPLE:
        keys = np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")
        if np.unique(keys[:REPEATS_SAMPLE]).size * 4 <= REPEATS_SAMPLE:
            _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
            if first.size * 4 <= a.size:
                return np.array(list(map(str, a[first].tolist())), dtype=object)[inv].tolist()
    if a.ndim == 1 and a.dtype.kind == "f" and a.dtype.itemsize <= 8 and a.size >= COMPILED_MIN \
            and "numba" in sys.modules:
        from .csv_text import float_texts
        return float_texts(a)
    return list(map(str, a.tolist()))


#: the most rows of a results table formatted at once (:func:`table_parts`): a pass of 10 000 chips
#: of 8x8 finishes up to 80 000 cells in one step, whose rows as Python strings (before they are
#: joined) would take ~60 MB
TABLE_ROWS = 8192


def table_parts(table: dict, rows: int = TABLE_ROWS):
    """``table`` (as :func:`format_table` takes it) in consecutive parts of at most ``rows`` rows
    (views: one value for every row stays as it is)."""
    import numpy as np

    n = max((np.size(v) for v in table.values() if not isinstance(v, str)), default=0)
    if n <= rows:
        yield table
        return
    for a in range(0, n, rows):
        yield {k: v if isinstance(v, str) or np.ndim(v) == 0 else v[a:a + rows] for k, v in table.items()}


class RunRefused(ValueError):
    """The run did not start (nothing sourced, the run folder's records untouched): bad
    parameters, a folder another process is writing, a folder that cannot be written."""


#: the lock file a running procedure holds in its run folder (``flock``: released by the kernel
#: even after ``kill -9``), with the holder's pid
LOCK_FILE = "run.lock"


@contextmanager
def run_lock(run_dir: Path):
    """Hold the run folder's lock for the block; :class:`RunRefused` if another process holds it
    (two writers on one folder would interleave their records) or the folder is not writable."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunRefused(f"cannot write in the run folder {run_dir} ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise RunRefused(f"{run_dir} is being written by another xbar process (pid {holder}); one run folder "
                         f"takes one process at a time") from None
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode("ascii"))
        except OSError:
            pass                            # the pid is a courtesy; the lock is what matters
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class StorageFault(OSError):
    """A write to the run folder failed (disk full, read-only, quota, I/O error); its text is the
    one line to show."""

    def __str__(self) -> str:
        return str(self.strerror)


def storage_message(exc: OSError, run_dir: Path) -> str | None:
    """One line for a storage fault (disk full, read-only, quota, I/O error), else None."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO, errno.EPERM):
        where = exc.filename or run_dir
        return f"storage fault: {exc.strerror or exc} writing {where}"
    return None


def run_procedure(proc: XbarProcedure, run_dir: Path, resume: bool = False, progress: bool = True,
                  command: list[str] | None = None, plots: bool = True) -> RunOutcome:
    """Run ``proc`` into ``run_dir`` (made by :func:`new_run_dir`, or the folder to resume), holding
    the folder's lock (:func:`run_lock`).  :class:`RunRefused` when it did not start."""
    run_dir = Path(run_dir)
    proc.run_dir = run_dir
    proc.resuming = resume
    with run_lock(run_dir):
        return _run_locked(proc, run_dir, resume, progress, command, plots)


def _run_locked(proc, run_dir, resume, progress, command, plots) -> RunOutcome:
    meta_path = run_dir / RUN_JSON
    try:
        proc.validate()                     # refuse bad parameters before a file or chip is touched
    except ValueError as exc:
        raise RunRefused(str(exc)) from None
    if resume:
        from .journal import repair_tails

        for note in repair_tails(run_dir):      # corrupt or cut-short records: named, set aside
            print(f"resume: {note}", file=sys.stderr)
        meta = read_json(meta_path)
        meta["resumes"] = int(meta.get("resumes", 0)) + 1
        meta.setdefault("resumed_at", []).append(_now())
    else:
        meta = {"procedure": proc.NAME, "parameters": parameter_values(proc), "status": "running",
                "started": _now(), "command": command or [], "resumes": 0}
    meta["status"] = "running"
    try:
        write_json(meta_path, meta)
        results = Results(proc, str(run_dir / DATA_CSV))
        data_file = open(run_dir / DATA_CSV, "a", encoding="utf-8")
    except OSError as exc:
        raise RunRefused(storage_message(exc, run_dir) or f"cannot write {meta_path}: {exc}") from None
    bar = _Bar(progress, proc.NAME)

    written = [0]

    def emit(topic, record):
        if topic == "results":
            data_file.write(results.format(record) + "\n")
            data_file.flush()
            written[0] += 1
            after_record(written[0])
        elif topic == "results_table":
            for part in table_parts(record):
                text = format_table(results.formatter.columns, part)
                lines = text.splitlines(keepends=True) if os.environ.get(KILL_AFTER_ENV) else [text]
                for chunk in lines:             # row by row only when a test kill point is set
                    data_file.write(chunk)
                    data_file.flush()
                    written[0] += chunk.count("\n")
                    after_record(written[0])
        elif topic == "count":
            bar.update(*record)

    emit.tables = True                      # accepts "results_table" (see format_table)
    proc.emit = emit
    status, error = "finished", None
    with _Stopper() as stopper:
        proc.should_stop = stopper
        try:
            try:
                proc.startup()
                if not resume:
                    proc.evaluate_metadata()
                    data_file.flush()
                    results.store_metadata()
                meta.update({k: proc.ident[k] for k in ("station", "chip_id", "instruments")},
                            software_version=proc.version, operator=proc.operator)
                write_json(meta_path, meta)
                proc.execute()
            finally:
                bar.close()
                with deferred_signals():         # a second Ctrl-C cannot cut the safe state short
                    proc.shutdown()
        except (ProcedureStopped, TuneInterrupted, KeyboardInterrupt) as exc:
            status, error = "interrupted", str(exc) or "interrupted"
        except Exception as exc:  # noqa: BLE001 - recorded, then re-raised for the command line
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            storage = storage_message(exc, run_dir) if isinstance(exc, OSError) else None
            if storage:
                error = storage
            _close_quietly(data_file)
            with deferred_signals():
                _finish(proc, run_dir, meta, status, error, plots)
            if storage:
                raise StorageFault(exc.errno, storage) from None   # one line: what failed, where
            raise
    _close_quietly(data_file)
    with deferred_signals():
        _finish(proc, run_dir, meta, status, error, plots)
    return RunOutcome(run_dir, status, proc.report, error)


def _close_quietly(f) -> None:
    try:
        f.close()
    except OSError:  # a full disk refuses the last flush: the record was incomplete anyway
        pass


def _finish(proc, run_dir, meta, status, error, plots) -> None:
    """Write what the procedure collected (maps, trace, report), the final metadata and plots.
    Each file is written atomically and on its own: a storage fault on one (disk full) is noted in
    the metadata and never stops ``run.json`` from recording how the run ended."""
    try:
        proc.finalize()
    except Exception as exc:  # noqa: BLE001 - never lose the metadata because a summary failed
        error = (error + "; " if error else "") + f"finalize: {exc}"
    # the run's freed arrays (a 10 000-chip batch's: ~280 MB of the heap) go back to the system
    # before h5py and the plots load their libraries and modules on top of them
    give_back_memory()
    problems = []
    if proc.maps or proc.trace or proc.series:
        try:
            write_h5(run_dir / RUN_H5, proc.maps, proc.trace, proc.series)
        except Exception as exc:  # noqa: BLE001 - h5py/OSError: the journal and data.csv still hold it
            problems.append(f"{RUN_H5} not written ({str(exc).splitlines()[0][:100]})")
    report = dict(proc.report)
    report["status"] = status
    if error:
        report["error"] = error
    if proc.safe_state is not None:
        report["safe_state"] = proc.safe_state
    proc.report = report
    try:
        write_json(run_dir / REPORT_JSON, report)
    except OSError as exc:
        problems.append(f"{REPORT_JSON} not written ({exc.strerror or exc})")
    meta.update(status=status, ended=_now())
    if proc.safe_state is not None:
        meta["safe_state"] = proc.safe_state
    if error or problems:
        meta["error"] = "; ".join([e for e in (error, *problems) if e])
    write_status(run_dir / RUN_JSON, meta)
    if plots and not problems:
        try:
            give_back_memory()                  # (what writing run.h5 freed), before matplotlib loads
            from ..report.plots import plot_run
            plot_run(run_dir, (proc.maps, proc.trace, proc.series))     # (what run.h5 was just written from)
        except Exception as exc:  # noqa: BLE001 - plots are a convenience; the data is saved
            print(f"warning: plots not made: {exc}", file=sys.stderr)


def give_back_memory() -> None:
    """Return the free pages of the process's heap to the system (glibc's ``malloc_trim``; nothing
    elsewhere).  glibc keeps freed blocks of up to its dynamic mmap threshold (32 MiB) in the heap,
    so a large batch's freed temporaries would stay in the resident set while a run's plots are
    drawn."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)


def resume_hint(outcome: RunOutcome, command: str) -> str:
    return f"data saved in {outcome.run_dir}; continue with: xbar {command} --resume {outcome.run_dir}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
