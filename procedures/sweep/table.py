"""A sweep's results as one tidy table: a row per point, a column per option and per report figure.

Columns: ``point`` (id), ``index``, ``replicate``, ``seed``, ``status`` (ok | failed), ``error``,
``point_wall_s`` and ``point_cpu_s`` (the point's wall and CPU time on its worker, s),
``worker``; then the point's options under their own names; then every scalar of the command's
report (nested figures joined with a dot, ``pulses_per_cell.mean``; short lists as text).  A report figure with the name of an option
is kept as ``report.<name>`` when it differs from the option.  Written as Parquet.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

#: the columns every sweep table starts with
ID_COLUMNS = ("point", "index", "replicate", "seed", "status", "error", "point_wall_s", "point_cpu_s", "worker")
#: columns that depend on the machine or on timing, not on the physics (left out when two runs of
#: one sweep are compared)
TIMING_COLUMNS = ("point_wall_s", "point_cpu_s", "worker", "wall_s", "instrument_wall_s")

TABLE = "sweep.parquet"


def flatten(report: dict, prefix: str = "") -> dict:
    """Scalars of a nested report, keys joined with dots; lists of scalars as JSON text."""
    out = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            if all(not isinstance(v, (dict, list, tuple)) for v in value) and len(value) <= 16:
                out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def row_of(record: dict) -> dict:
    """The table row of one point's record (as stored in ``points/<id>.json``)."""
    row = {k: record.get(k) for k in ID_COLUMNS}
    params = record.get("params", {})
    row.update(params)
    for key, value in flatten(record.get("report") or {}).items():
        if key in ID_COLUMNS:
            key = f"report.{key}"
        elif key in params:
            if _same(value, params[key]):
                continue
            key = f"report.{key}"
        row[key] = value
    return row


def _same(a, b) -> bool:
    try:
        return a == b or json.dumps(a) == json.dumps(b) or float(a) == float(b)
    except (TypeError, ValueError):
        return False


def frame(records: list[dict]):
    """The records as a pandas DataFrame, rows in point order, each column of one type."""
    import pandas as pd

    rows = [row_of(r) for r in sorted(records, key=lambda r: r["index"])]
    df = pd.DataFrame(rows)
    for col in df.columns:
        values = [v for v in df[col] if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if values and all(isinstance(v, bool) for v in values):
            df[col] = df[col].astype("boolean")
        elif values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        elif values:
            df[col] = df[col].map(_text)
    return df


def _text(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def write_table(records: list[dict], path: Path) -> Path:
    """Write the records' table as Parquet (atomically: a reader never sees half a file)."""
    df = frame(records)
    tmp = Path(path).with_suffix(".parquet.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)
    return Path(path)


def read_table(path: Path):
    import pandas as pd

    return pd.read_parquet(path)
