"""Crash-safe journals of write-verify runs in a run folder, and reading them back for ``--resume``.

What goes where (all append-only, flushed as the run goes):

* ``data.csv`` (the procedure's pymeasure results): one row per cell each time it finishes a
  pass — stage, pass, chip, row, col, target, status, last reading, and the pass's pulses, reads,
  energy and instrument time;
* ``journal/passes-<stage>.jsonl``: every pass started, with the cells it will tune;
* ``journal/trace-<stage>.bin``: every read and pulse (fixed-size binary records, :data:`TRACE_DTYPE`);
* ``journal/relax-<stage>-<pass>.npz``: what the run had learnt of its cells' relaxation when each
  re-verify pass started (:meth:`~programming.tune_state.TuneJournal.relaxation`), written
  atomically before the pass's start record, so a resume compensates as the uninterrupted run
  (per-cell fields mostly NaN or 0 as their other entries only, :func:`_compact`).

Ordering makes a crash lose at most the cells in progress: on the simulated chip the chip's state
is saved first (atomically), then the records it already contains are appended; on a bench the
chip keeps its own state and records are written at every step.  A record cut short by ``kill -9``
is dropped when the run is resumed, and so is a corrupt one, named (:func:`repair_tails`).
"""
from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import numpy as np

from programming.durable import fsync
from programming.tune_result import STATUS_NAMES
from programming.tune_state import JOURNALED_RELAXATION, TuneJournal, TuneLog, TuneState

from .run_data import DATA_CSV, JOURNAL_DIR, read_data_csv

#: chips of a batch whose reads and pulses the journal traces (the plots show chip 0's): a
#: Monte Carlo batch of thousands of chips would otherwise write ~37 bytes per read and pulse of
#: every cell (0.9 GB for 10 000 chips of 8x8)
TRACE_CHIPS = 16
#: a simulated chip's state is saved at most every SNAPSHOT_RATIO x the time the last save took
#: (with the records it holds), so that saving takes at most 2 % of a run's time: a crash loses at
#: most that interval's work (~3 s for 10 000 chips of 8x8, whose state is ~46 MB), which the resume
#: redoes
SNAPSHOT_RATIO = 50
TRACE_DTYPE = np.dtype([("chip", "<i4"), ("row", "<i4"), ("col", "<i4"), ("pass", "<i2"), ("kind", "i1"),
                        ("amplitude", "<f8"), ("width", "<f8"), ("reading", "<f8")])

#: data.csv columns of a tuning record (SI units)
TUNE_COLUMNS = ["Stage", "Pass", "Chip", "Row", "Col", "Target (S)", "Status", "Reading (S)", "Pulses",
                "Reads", "Energy (J)", "Instrument time (s)"]
_STATUS_CODES = {name: code for code, name in STATUS_NAMES.items()}
#: each status code's name, a numpy array of strings (a block's statuses are an array of them: the
#: table's text takes them as they are, no Python string each; see procedures.storage.csv_text)
_STATUS_TEXTS = np.array([STATUS_NAMES[c] for c in range(max(STATUS_NAMES) + 1)], dtype=str)


def _pack(mask: np.ndarray) -> str:
    return base64.b64encode(np.packbits(np.asarray(mask, bool).ravel()).tobytes()).decode("ascii")


def _unpack(text: str, shape) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))[: int(np.prod(shape))]
    return bits.astype(bool).reshape(shape)


class FileTuneLog(TuneLog):
    """Journals every tuning stage of a procedure into its run folder and, when resuming, gives
    each stage the state its journal records.

    Args:
        run_dir: the run folder.
        emit: the procedure's ``emit`` (rows go out as ``emit("results", row)``).
        snapshot: saves the simulated chip's state (None on a bench).
        should_stop: polled by the tuner between steps.
        resume: rebuild each stage's state from the journal.
        interval: seconds between flushes on the simulated chip (a bench flushes every step); at
            least :data:`SNAPSHOT_RATIO` times the last snapshot's duration, so that saving a large
            batch's state never takes more than a small share of the run.
        trace_chips: the trace journals the reads and pulses of the first ``trace_chips`` chips of
            a batch (None: all).
    """

    def __init__(self, run_dir: Path, emit, snapshot=None, should_stop=None, resume: bool = False,
                 interval: float = 0.5, trace_chips: int | None = TRACE_CHIPS):
        self.dir = Path(run_dir) / JOURNAL_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(run_dir)
        self.emit = emit
        self.snapshot = snapshot
        self.should_stop = should_stop
        self.resume = resume
        self.interval = interval if snapshot is not None else 0.0
        self.trace_chips = trace_chips
        self.journals: dict[str, "FileJournal"] = {}

    def tune_kwargs(self, stage: str, targets: np.ndarray) -> dict:
        state = None
        if self.resume:
            passes, cells = read_events(self.run_dir, stage, np.shape(targets))
            if passes:
                state = TuneState.from_events(targets, passes, cells,
                                              relaxation=read_relaxation(self.run_dir, stage,
                                                                         max(p for p, _ in passes)))
        journal = FileJournal(self, stage, targets)
        self.journals[stage] = journal
        return {"journal": journal, "resume": state, "should_stop": self.should_stop}

    def started(self, stage: str) -> bool:
        path = self.dir / f"passes-{stage}.jsonl"
        return self.resume and path.is_file() and path.stat().st_size > 0

    def flush(self) -> None:
        for j in self.journals.values():
            j.flush()


class FileJournal(TuneJournal):
    """One stage's journal (see the module docstring); ``targets``: the stage's (n_chips, rows,
    cols), S, which its cells are tuned to (not copied)."""

    def __init__(self, log: FileTuneLog, stage: str, targets):
        self.targets = np.asarray(targets)
        self.log, self.stage, self.shape = log, stage, self.targets.shape
        self.trace_chips = log.trace_chips
        self.passes_path = log.dir / f"passes-{stage}.jsonl"
        self.trace_path = log.dir / f"trace-{stage}.bin"
        self._rows: list[dict] = []           # blocks of cells: column -> array
        self._wait = log.interval
        # what this process journaled, kept for :meth:`events` (no need to parse data.csv back):
        # per cell, its records summed over its events, its last status and pass (a 10 000-chip
        # batch of 8x8 finishes about 1.2 million cell events: 17 MB per cell instead of 56 MB per
        # event); its target is the stage's
        self._cells: dict[str, np.ndarray] | None = None
        self._passes_seen: list[tuple[int, np.ndarray]] = []     # (pass, its todo's bits: np.packbits)
        self._passes: list[str] = []
        self._trace: list[np.ndarray] = []
        self._last = time.monotonic()

    def pass_started(self, pass_no, todo):
        self._passes_seen.append((int(pass_no), np.packbits(np.asarray(todo, bool).ravel())))
        self._passes.append(json.dumps({"pass": int(pass_no), "shape": list(todo.shape), "todo": _pack(todo)}))
        self.flush()

    def cells_finished(self, pass_no, chip, row, col, target, status, reading, pulses, reads, energy, time_s):
        self._add_cells(pass_no, chip, row, col, target, status, pulses, reads, energy, time_s)
        self._rows.append({
            "Stage": self.stage, "Pass": int(pass_no), "Chip": np.array(chip, np.int64),
            "Row": np.array(row, np.int64), "Col": np.array(col, np.int64),
            "Target (S)": np.array(target, float), "Status": _STATUS_TEXTS[np.asarray(status, np.intp)],
            "Reading (S)": np.array(reading, float), "Pulses": np.array(pulses, np.int64),
            "Reads": np.array(reads, np.int64), "Energy (J)": np.array(energy, float),
            "Instrument time (s)": np.array(time_s, float)})

    def _add_cells(self, pass_no, chip, row, col, target, status, pulses, reads, energy, time_s) -> None:
        """Fold finished-cell events into the per-cell records (in time order, as
        :meth:`~programming.tune_state.TuneState.from_events` sums them)."""
        if self._cells is None:
            shape = self.shape
            self._cells = {"pass": np.full(shape, -1, np.int16),
                           "status": np.zeros(shape, np.int8), "pulses": np.zeros(shape, np.int32),
                           "reads": np.zeros(shape, np.int32), "energy": np.zeros(shape),
                           "time": np.zeros(shape)}
        c = self._cells
        # flat indices, each value in its record's dtype: ``np.add.at``'s fast path (the same sums;
        # on 3-D indices or values to cast it took ~10x longer: 0.2 s of a 10 000-chip tune)
        at = np.ravel_multi_index((np.asarray(chip, np.intp), np.asarray(row, np.intp), np.asarray(col, np.intp)),
                                  self.shape)
        c["pass"].reshape(-1)[at] = int(pass_no)
        c["status"].reshape(-1)[at] = status
        for key, value in (("pulses", pulses), ("reads", reads), ("energy", energy), ("time", time_s)):
            np.add.at(c[key].reshape(-1), at, np.asarray(value, c[key].dtype))

    def events(self) -> tuple[list, dict]:
        """(passes, cells) this journal recorded, for
        :meth:`~programming.tune_state.TuneState.from_events`: one event per finished cell, its
        records summed over the cell's events in this stage, its last pass and status, and its
        target (a stage tunes each cell to one target, so the state rebuilt is the one
        :func:`read_events`' every event of data.csv gives)."""
        keys = ("pass", "chip", "row", "col", "target", "status", "pulses", "reads", "energy", "time")
        if self._cells is None:
            return self._passes_started(), {k: np.array([]) for k in keys}
        c = self._cells
        seen = c["pass"] >= 0
        chip, row, col = (a.astype(np.int32) for a in np.nonzero(seen))
        cells = {"chip": chip, "row": row, "col": col, "target": np.asarray(self.targets, float)[seen]}
        for key in ("pass", "status", "pulses", "reads", "energy", "time"):
            cells[key] = c[key][seen]
        return self._passes_started(), {k: cells[k] for k in keys}

    def _passes_started(self) -> list[tuple[int, np.ndarray]]:
        """Every (pass, todo) this journal was told of."""
        size = int(np.prod(self.shape))
        return [(p, np.unpackbits(bits, count=size).astype(bool).reshape(self.shape)) for p, bits in self._passes_seen]

    def trace(self, chunk):
        rec = np.empty(len(chunk["chip"]), TRACE_DTYPE)
        for name in TRACE_DTYPE.names:
            rec[name] = chunk[name]
        self._trace.append(rec)

    def relaxation(self, pass_no, state):
        path = self.log.dir / f"relax-{self.stage}-{int(pass_no)}.npz"
        tmp = path.with_name(path.name + ".tmp")
        arrays = {"pass": np.array(int(pass_no))}
        for k in JOURNALED_RELAXATION:
            arrays.update(_compact(k, state[k]))
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)        # (written at once, not compressed: most fields are compact)
            f.flush()
            fsync(f.fileno())
        os.replace(tmp, path)

    def step_done(self):
        if time.monotonic() - self._last >= self._wait:
            self.flush()

    def flush(self) -> None:
        """Chip state first (simulated chip), then the records it already holds, in the order
        they happened: the trace, the finished cells' rows, and only then the start of the next
        pass (buffered rows all belong to earlier passes: a pass start flushes at once).  So a
        kill between the rows and the pass start never hides a pass's unwritten rows behind a
        later pass: the resume redoes those cells in their own pass."""
        self._last = time.monotonic()
        if not (self._rows or self._passes or self._trace):
            return
        if self.log.snapshot is not None:
            self.log.snapshot()
            self._wait = max(self.log.interval, SNAPSHOT_RATIO * (time.monotonic() - self._last))
        if self._trace:
            with open(self.trace_path, "ab") as f:
                f.write(np.concatenate(self._trace).tobytes())
            self._trace.clear()
        blocks, self._rows = self._rows, []
        if getattr(self.log.emit, "tables", False):       # the terminal runner: one write per block
            for block in blocks:
                self.log.emit("results_table", block)
        else:
            for block in blocks:                           # e.g. pymeasure's Worker: row by row
                for i in range(len(block["Chip"])):
                    self.log.emit("results", {k: v if np.ndim(v) == 0 else _scalar(v[i]) for k, v in block.items()})
        if self._passes:
            with open(self.passes_path, "a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in self._passes))
            self._passes.clear()


#: a per-cell field of a relaxation state is journaled as its entries that differ from its most
#: common value (NaN: none, or 0: nothing counted) when they are at most this share of its cells
#: (most are: each cell's own shift, its read-backs found out of band, the bench-clock sums)
SPARSE_SHARE = 0.25


def _compact(name: str, value) -> dict[str, np.ndarray]:
    """``name``'s array for a ``.npz``: as it is, or (a float array of cells mostly NaN or +0)
    as ``name.shape``, ``name.fill``, and the flat indices ``name.at`` and values ``name.val`` of
    the other entries; :func:`_expand` rebuilds it (the same values; NaN as ``np.nan``)."""
    a = np.asarray(value)
    if a.ndim == 0 or a.size < 64 or a.dtype.kind != "f":
        return {name: a}
    for fill in (np.nan, 0.0):
        other = ~np.isnan(a) if fill != fill else (a != 0) | np.signbit(a)
        n = int(np.count_nonzero(other))
        if n <= SPARSE_SHARE * a.size:
            at = np.flatnonzero(other)
            return {f"{name}.shape": np.array(a.shape, np.int64), f"{name}.fill": np.array(fill),
                    f"{name}.at": at.astype(np.int32 if a.size < 2**31 else np.int64),
                    f"{name}.val": a[np.unravel_index(at, a.shape)]}     # (a view of one value: no copy)
    return {name: a}


def _expand(z, name: str):
    """The array :func:`_compact` stored as ``name`` in the open ``.npz`` ``z`` (KeyError: none)."""
    if name in z.files:
        return z[name]
    out = np.full(tuple(z[f"{name}.shape"]), float(z[f"{name}.fill"]))
    out.reshape(-1)[z[f"{name}.at"]] = z[f"{name}.val"]
    return out


def _scalar(value):
    """A numpy scalar as the Python number it holds (a string stays a string)."""
    return value.item() if isinstance(value, np.generic) else value


def repair_tails(run_dir: Path) -> list[str]:
    """Make a run folder's journals trustworthy before a resume reads them: keep every valid
    record, drop what a crash cut short or what is corrupt — a partial last line, a line that is
    not UTF-8, has the wrong number of fields or values that do not parse (``data.csv``), or is
    not a pass record (``journal/*.jsonl``), a partial record of the ``.bin`` traces.  Dropped
    lines are appended to ``<file>.dropped`` (nothing is destroyed); returns one message per
    file naming the lines dropped."""
    run_dir = Path(run_dir)
    notes = []
    if (run_dir / DATA_CSV).is_file():
        notes += _keep_valid_lines(run_dir / DATA_CSV, _csv_line_check(run_dir / DATA_CSV))
    for path in sorted((run_dir / JOURNAL_DIR).glob("*.jsonl")):
        notes += _keep_valid_lines(path, _pass_line_ok)
    for path in (run_dir / JOURNAL_DIR).glob("*.bin"):
        size = path.stat().st_size
        if size % TRACE_DTYPE.itemsize:
            with open(path, "r+b") as f:
                f.truncate(size - size % TRACE_DTYPE.itemsize)
    return notes


def _keep_valid_lines(path: Path, ok) -> list[str]:
    """Rewrite ``path`` (atomically) with only the lines ``ok`` accepts; the others go to
    ``path.dropped``.  A last line without its newline (cut short) is dropped silently."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()                       # b"" when the file ends with a newline
    keep, dropped = [], []
    for number, line in enumerate(lines, 1):
        (keep if ok(line) else dropped).append((number, line))
    if not dropped and not tail:
        return []
    keep_bytes = b"".join(line + b"\n" for _, line in keep)
    if dropped:
        with open(path.with_name(path.name + ".dropped"), "ab") as f:
            f.write(b"".join(line + b"\n" for _, line in dropped))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(keep_bytes)
        f.flush()
        fsync(f.fileno())
    os.replace(tmp, path)
    if not dropped:
        return []
    numbers = [n for n, _ in dropped]
    shown = ", ".join(str(n) for n in numbers[:5]) + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")
    return [f"{path.name}: dropped unreadable line{'s' if len(numbers) > 1 else ''} {shown} "
            f"(kept in {path.name}.dropped); resuming from the valid records"]


_INT_COLUMNS = {"Pass", "Chip", "Row", "Col", "Pulses", "Reads"}
_FLOAT_COLUMNS = {"Target (S)", "Reading (S)", "Energy (J)", "Instrument time (s)"}


def _csv_line_check(path: Path):
    """A check for the data lines of a pymeasure results file: UTF-8, comment lines as they are,
    the column line, then rows with one field per column whose tuning fields parse."""
    import csv

    header: list[str] = []

    def ok(line: bytes) -> bool:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return False
        if text.startswith("#"):
            return True
        if "\x00" in text:
            return False
        try:
            fields = next(csv.reader([text]))
        except (csv.Error, StopIteration):
            return False
        if not header:
            header.extend(fields)
            return True
        if len(fields) != len(header):
            return False
        for name, value in zip(header, fields):
            try:
                if name in _INT_COLUMNS:
                    int(value)
                elif name in _FLOAT_COLUMNS:
                    float(value)
                elif name == "Status" and "Stage" in header and value not in _STATUS_CODES:
                    return False
            except ValueError:
                return False
        return True

    return ok


def _pass_line_ok(line: bytes) -> bool:
    try:
        e = json.loads(line.decode("utf-8"))
        shape = tuple(int(x) for x in e["shape"])
        _unpack(e["todo"], shape)
        int(e["pass"])
        return True
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return False


def read_events(run_dir: Path, stage: str, shape) -> tuple[list, dict]:
    """(passes, cells) of ``stage`` from a run folder's journal, for
    :meth:`~programming.tune_state.TuneState.from_events`."""
    run_dir = Path(run_dir)
    passes = []
    path = run_dir / JOURNAL_DIR / f"passes-{stage}.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                e = json.loads(line)
                passes.append((int(e["pass"]), _unpack(e["todo"], tuple(e["shape"]))))
            except (ValueError, KeyError):
                continue  # a line cut short by a crash
    df = read_data_csv(run_dir / DATA_CSV)
    cells = {k: np.array([]) for k in ("pass", "chip", "row", "col", "target", "status", "pulses", "reads",
                                       "energy", "time")}
    if len(df) and "Stage" in df.columns:
        df = df[df["Stage"] == stage].dropna(subset=TUNE_COLUMNS[:7])
        df = df[df["Status"].isin(list(_STATUS_CODES))]
        cells = {"pass": df["Pass"].to_numpy(int), "chip": df["Chip"].to_numpy(int),
                 "row": df["Row"].to_numpy(int), "col": df["Col"].to_numpy(int),
                 "target": df["Target (S)"].to_numpy(float),
                 "status": df["Status"].map(_STATUS_CODES).to_numpy(np.int8),
                 "reading": df["Reading (S)"].to_numpy(float),
                 "pulses": df["Pulses"].fillna(0).to_numpy(int), "reads": df["Reads"].fillna(0).to_numpy(int),
                 "energy": df["Energy (J)"].fillna(0).to_numpy(float),
                 "time": df["Instrument time (s)"].fillna(0).to_numpy(float)}
    known = {p for p, _ in passes}
    for p in sorted(set(cells["pass"].tolist()) - known):
        # a pass whose start record was lost (set aside as corrupt): it covered at most every
        # cell, so every cell it did not finish is tuned (the first pass) or re-verified again
        passes.append((int(p), np.ones(tuple(shape), bool)))
    passes.sort(key=lambda p: p[0])
    return passes, cells


def read_relaxation(run_dir: Path, stage: str, pass_no: int) -> dict | None:
    """The relaxation state journaled when pass ``pass_no`` of ``stage`` started (with its
    ``pass``), or None if none was (the first pass, a run journaled before it was kept, a file
    a crash left unreadable)."""
    path = Path(run_dir) / JOURNAL_DIR / f"relax-{stage}-{int(pass_no)}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            out = {"pass": z["pass"]}
            for k in JOURNALED_RELAXATION:
                if k in z.files or f"{k}.shape" in z.files:   # (a journal of an earlier version lacks some)
                    out[k] = _expand(z, k)
            return out
    except (OSError, ValueError, KeyError):
        return None


def read_trace(run_dir: Path, stages: list[str]) -> dict | None:
    """Every journaled read and pulse of ``stages`` as 1-D arrays (plus ``stage``, the index into
    ``stages``), or None if none was journaled."""
    parts = []
    for k, stage in enumerate(stages):
        path = Path(run_dir) / JOURNAL_DIR / f"trace-{stage}.bin"
        if path.is_file():
            raw = path.read_bytes()
            rec = np.frombuffer(raw[: len(raw) - len(raw) % TRACE_DTYPE.itemsize], TRACE_DTYPE)
            parts.append((k, rec))
    if not parts:
        return None
    out = {name: np.concatenate([r[name] for _, r in parts]) for name in TRACE_DTYPE.names}
    out["stage"] = np.concatenate([np.full(len(r), k, np.int8) for k, r in parts])
    return out
