"""Run folders: what every procedure writes, and how to reload it for analysis.

A run folder (``--out RUN_DIR``, by default ``runs/<time stamp>-<procedure>``) holds::

    run.json        metadata: procedure, parameters, station, chip ID, instrument identities,
                    software version, start/end time, status (running | finished | interrupted |
                    failed), the command line, resume count
    data.csv        pymeasure Results: a commented header with the procedure, its parameters and
                    metadata, then one row per record (flushed as the run goes)
    journal/        crash-safe append-only journals of long jobs (tune, deploy): what ``--resume``
                    reads back after Ctrl-C, a crash or ``kill -9``
    run.h5          HDF5 (h5py): ``maps/<name>`` arrays (n_chips, rows, cols) in SI units or status
                    codes; ``trace/<field>`` the tuner's every read and pulse (chip, row, col, pass,
                    kind 0 = read / 1 = pulse, amplitude V (a read's: the read voltage), width s,
                    reading S); ``series/<name>`` other arrays (retention maps over time, ...).
                    Every dataset carries its unit as the attribute ``units`` (:data:`H5_UNITS`)
                    and every array of codes its legend as the attribute ``legend`` (JSON
                    ``{"code": "meaning"}``, :data:`H5_LEGENDS`)
    report.json     the final report
    plots/*.png, report.html     ``xbar plot RUN_DIR`` regenerates them

All values in files are SI (S, V, A, s, J); µS appear only in plots and terminal tables.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from programming.durable import fsync
from programming.tune_result import STATUS_NAMES

#: the unit of each ``run.h5`` dataset, by group and name ("1": a dimensionless ratio; "code": see
#: :data:`H5_LEGENDS`; "count", "index": integers)
H5_UNITS = {
    "maps": {"before": "S", "after": "S", "final": "S", "conductance": "S", "targets": "S", "first": "S",
             "last": "S", "rel_error": "1", "pulses": "count", "reads": "count", "energy": "J", "time": "s",
             "forming_voltage": "V", "formed": "code", "status": "code"},
    "trace": {"chip": "index", "row": "index", "col": "index", "pass": "index", "stage": "index", "kind": "code",
              "amplitude": "V", "width": "s", "reading": "S"},
    "series": {"times": "s", "maps": "S", "voltage": "V", "current": "A", "conductance": "S", "cycles": "count",
               "g_set": "S", "g_reset": "S", "rows": "index", "cols": "index"},
}
#: the meaning of each code of a ``run.h5`` array of codes, by group and name
H5_LEGENDS = {
    ("maps", "status"): {str(k): v for k, v in sorted(STATUS_NAMES.items())},
    ("trace", "kind"): {"0": "read (amplitude: the read voltage)", "1": "pulse (amplitude: signed, V)"},
    ("maps", "formed"): {"0": "not formed", "1": "formed"},
}

#: the filters of a ``run.h5`` dataset of more than 4096 entries: gzip (deflate) after HDF5's byte
#: shuffle, both built into every HDF5 library.  The shuffle groups the arrays' bytes by significance
#: before deflate: a tune of 10 000 chips of 8x8 wrote its run.h5 in 0.34 s of CPU instead of 0.53 s
#: (19.1 MB instead of 21.1 MB), the datasets the same.  Deflate at level 1 (zlib's fastest; h5py's
#: default is 4): its maps, mostly the mantissas of measured conductances, compress hardly more at 4
#: (19.17 MB at 1, 19.10 MB at 4) for ~12 % more CPU (0.373 against 0.423 s, best of 6 alternated)
H5_FILTERS = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
#: ... only where they pay (:func:`h5_filters`): a dataset whose sample, shuffled, deflates to more
#: than H5_WORTH of its bytes is stored as it is.  A tune's maps of measured conductances (before,
#: final, targets, relative errors: random mantissas) deflate to ~86 % of their size: a 10 000 x 8x8
#: tune wrote run.h5 in 0.373 s of CPU for 19.17 MB deflating them, 0.058 s for 21.71 MB storing them
#: as they are (best of 5, alternated); its status, pulse and read maps and its trace deflate to
#: 4-45 % and still are
H5_WORTH = 0.75
#: bytes of a dataset :func:`h5_filters` tries deflating: 8 runs spread over it
H5_SAMPLE = 1 << 16

RUN_JSON, DATA_CSV, RUN_H5, REPORT_JSON = "run.json", "data.csv", "run.h5", "report.json"
PLOTS_DIR, REPORT_HTML, JOURNAL_DIR = "plots", "report.html", "journal"


class RunFolderError(ValueError):
    """A path is not a readable run folder (the message says what is missing or broken)."""


@dataclass
class RunData:
    """A run folder loaded for analysis.

    Attributes:
        path: the folder.
        meta: ``run.json`` (procedure name under ``"procedure"``, parameters under ``"parameters"``).
        data: the rows of ``data.csv`` as a pandas DataFrame (columns named with units, e.g.
            ``"Conductance (S)"``); empty if the run wrote none.  Read when first used (a tune of
            10 000 chips writes 640 000 rows its plots never read: pandas and the frame would be
            ~130 MB at the end of the run); :meth:`has_columns` reads only the header.
        maps: ``run.h5`` ``maps/*`` arrays, (n_chips, rows, cols).
        trace: ``run.h5`` ``trace/*`` 1-D arrays of equal length, or None.
        series: ``run.h5`` ``series/*`` arrays.
        report: ``report.json``, or None if the run did not finish one.
    """

    path: Path
    meta: dict
    maps: dict = field(default_factory=dict)
    trace: dict | None = None
    series: dict = field(default_factory=dict)
    report: dict | None = None
    _data: object = field(default=None, repr=False)

    @property
    def data(self):
        if self._data is None:
            self._data = read_data_csv(Path(self.path) / DATA_CSV)
        return self._data

    def has_columns(self, *names: str) -> bool:
        """Whether ``data.csv`` has data rows with every column ``names`` (its header and first
        data line only, unless :attr:`data` is loaded already)."""
        if self._data is not None:
            return len(self._data) > 0 and all(n in self._data.columns for n in names)
        header = rows = None
        try:
            with open(Path(self.path) / DATA_CSV, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("#") or not line.strip():
                        continue
                    if header is None:
                        header = [c.strip() for c in next(csv.reader([line]))]
                    else:
                        rows = True
                        break
        except OSError:
            return False
        return bool(rows) and all(n in header for n in names)

    @property
    def procedure(self) -> str:
        return str(self.meta.get("procedure", "unknown"))

    @property
    def parameters(self) -> dict:
        return dict(self.meta.get("parameters", {}))

    @property
    def status(self) -> str:
        return str(self.meta.get("status", "unknown"))


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (a crash leaves the old file or the new one, never half of one)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")
            f.flush()
            fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)                 # never leave a half-written .tmp behind (a full disk)
        raise


def write_status(path: Path, meta: dict) -> None:
    """Write ``run.json`` at the end of a run.  On a full disk, where even a small new file cannot
    be created, the existing file is rewritten in place (it already owns its blocks), so the run is
    never left marked "running"."""
    try:
        write_json(path, meta)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not Path(path).is_file():
            raise
        text = (json.dumps(meta, indent=2, default=_json_default) + "\n").encode("utf-8")
        with open(path, "r+b") as f:
            f.write(text)
            f.truncate(len(text))
            f.flush()
            fsync(f.fileno())


def _remove(path: Path) -> None:
    try:
        Path(path).unlink()
    except OSError:
        pass


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path} is not valid JSON: {exc}") from None


def write_h5(path: Path, maps: dict | None = None, trace: dict | None = None, series: dict | None = None,
             attrs: dict | None = None) -> None:
    """Write ``run.h5`` (replacing it atomically): groups ``maps``, ``trace``, ``series``; each
    dataset with its ``units`` (and ``legend``) attribute when :data:`H5_UNITS` knows it."""
    import shutil

    import h5py

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    need = sum(np.asarray(v).nbytes for c in (maps, trace, series) if c for v in c.values()) + 2**20
    free = shutil.disk_usage(path.parent).free
    if free < need:                  # refuse before HDF5 starts (its own failure is noisy and may be partial)
        raise OSError(errno.ENOSPC, f"No space left on device: {path.name} needs about {need / 2**20:.1f} MiB, "
                                    f"{free / 2**20:.1f} MiB free", str(path))
    try:
        with h5py.File(tmp, "w") as f:
            for group, content in (("maps", maps), ("trace", trace), ("series", series)):
                if not content:
                    continue
                g = f.create_group(group)
                for name, value in content.items():
                    value = np.asarray(value)
                    d = g.create_dataset(name, data=value, **h5_filters(value))
                    if name in H5_UNITS[group]:
                        d.attrs["units"] = H5_UNITS[group][name]
                    if (group, name) in H5_LEGENDS:
                        d.attrs["legend"] = json.dumps(H5_LEGENDS[group, name])
            for key, value in (attrs or {}).items():
                f.attrs[key] = json.dumps(value, default=_json_default)
        if not h5_intact(tmp):
            raise OSError(errno.EIO, f"{path.name} was not written completely", str(path))
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def h5_filters(value: np.ndarray) -> dict:
    """The filters of ``value``'s dataset in ``run.h5``: :data:`H5_FILTERS` for an array of more
    than 4096 entries that deflates to at most :data:`H5_WORTH` of its bytes, judged on
    :data:`H5_SAMPLE` bytes of it (8 runs spread over it) shuffled as HDF5 shuffles them; none
    otherwise (a small array, or one of random mantissas that deflate would not shrink)."""
    import zlib

    if value.size <= 4096:
        return {}
    flat = np.ascontiguousarray(value).reshape(-1)
    if flat.dtype.kind not in "biufc":
        return H5_FILTERS
    per = max(1, H5_SAMPLE // 8 // flat.itemsize)
    if flat.size <= 8 * per:
        sample = flat                                   # (all of it: runs that overlap would repeat)
    else:
        sample = np.concatenate([flat[a:a + per] for a in np.linspace(0, flat.size - per, 8).astype(np.intp)])
    shuffled = sample.view(np.uint8).reshape(-1, sample.itemsize).T.tobytes()     # (HDF5's byte shuffle)
    return H5_FILTERS if len(zlib.compress(shuffled, 1)) <= H5_WORTH * len(shuffled) else {}


def h5_intact(path: Path) -> bool:
    """Whether an HDF5 file is complete: its signature is there and the file is at least as long
    as the end-of-file address its superblock records.  Checked before h5py opens a file, since
    the HDF5 library can crash the interpreter on a truncated one."""
    sig = b"\x89HDF\r\n\x1a\n"
    try:
        with open(path, "rb") as f:
            head = f.read(48)
        size = Path(path).stat().st_size
    except OSError:
        return False
    if len(head) < 36 or head[:8] != sig:
        return False
    version = head[8]
    if version in (0, 1):
        n_off = head[13]
        at = 24 + 2 * n_off + (4 if version == 1 else 0)
        # base address, free-space address, end-of-file address (each n_off bytes)
        if n_off != 8 or len(head) < at + 8:
            return n_off in (2, 4, 8) and size > 64
    elif version in (2, 3):
        n_off = head[9]
        at = 12 + 2 * n_off
        if n_off != 8:
            return size > 48
    else:
        return False
    eof = int.from_bytes(head[at:at + 8], "little")
    return size >= eof


def read_h5(path: Path) -> tuple[dict, dict | None, dict]:
    """(maps, trace or None, series) of a ``run.h5``."""
    import h5py

    if not h5_intact(path):
        raise RunFolderError(f"{path} is incomplete (cut short, e.g. by a full disk); its maps are rebuilt "
                             f"from the journal by --resume")
    try:
        with h5py.File(path, "r") as f:
            def group(name):
                return {k: f[name][k][()] for k in f[name]} if name in f else {}
            maps, trace, series = group("maps"), group("trace"), group("series")
    except OSError as exc:
        raise RunFolderError(f"{path} is not a readable HDF5 file: {exc}") from None
    return maps, (trace or None), series


class _Head(io.RawIOBase):
    """The first ``n`` bytes of the binary file ``f`` (from its current position), read through."""

    def __init__(self, f, n: int):
        self.f, self.left = f, int(n)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.left <= 0:
            return 0
        k = self.f.readinto(memoryview(b)[:self.left])
        self.left -= k
        return k


def _complete_lines_end(f) -> int:
    """The offset just after the last newline of the binary file ``f`` (0: no complete line)."""
    end = f.seek(0, os.SEEK_END)
    while end > 0:
        step = min(end, 1 << 16)
        f.seek(end - step)
        k = f.read(step).rfind(b"\n")
        if k >= 0:
            return end - step + k + 1
        end -= step
    return 0


def read_data_csv(path: Path):
    """The data rows of a pymeasure results CSV as a DataFrame (the commented header skipped).

    Complete lines only, as they were when the read began: a last line without its newline is a
    row still being written (``xbar show`` of a running run) or cut short by a crash, which pandas
    read with its missing fields NaN or a number cut short (0.000125 as 0.00); rows appended while
    pandas parses are not read either (the file is read up to that newline, without a copy)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        with open(path, "rb") as f:
            end = _complete_lines_end(f)
            if end == 0:
                return pd.DataFrame()
            f.seek(0)
            return pd.read_csv(io.BufferedReader(_Head(f, end)), comment="#", on_bad_lines="skip",
                               encoding_errors="replace")
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (ValueError, OSError, pd.errors.ParserError) as exc:   # corrupt bytes (a resume repairs them)
        raise RunFolderError(f"{path} is damaged ({str(exc).splitlines()[0][:100]}); "
                             f"--resume keeps its valid records") from None


def load_run(path: str | Path, arrays: tuple[dict, dict | None, dict] | None = None) -> RunData:
    """Reload a run folder for analysis; a clear :class:`RunFolderError` if it is not one.
    ``arrays``: the (maps, trace, series) just written to its ``run.h5`` by :func:`write_h5` (the
    runner's own, at the end of a run: the same arrays, not read back from the file)."""
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"run folder {path} does not exist")
    if not (path / RUN_JSON).is_file():
        raise RunFolderError(f"{path} is not a run folder (no {RUN_JSON})")
    meta = read_json(path / RUN_JSON)
    if arrays is not None:
        maps, trace, series = ({k: np.asarray(v) for k, v in (c or {}).items()} for c in arrays)
        trace = trace or None
    else:
        maps, trace, series = read_h5(path / RUN_H5) if (path / RUN_H5).is_file() else ({}, None, {})
    report = read_json(path / REPORT_JSON) if (path / REPORT_JSON).is_file() else None
    return RunData(path, meta, maps, trace, series, report)
