"""CPU time of a tune's ``data.csv`` text: ``format_table`` on blocks of a tune's records, the compiled
path (:mod:`procedures.storage.csv_text`) against Python's (``map(str)`` of each value, rows zipped),
alternated in one process.

A 10 000 x 8x8 tune writes 667 646 records (82 blocks of 8192 rows): the figure per block times 82
is what the run spends on its records' text.  Checks that both paths give the same text.

    python benchmarks/table_text.py                 # 8192 rows, 5 rounds
    python benchmarks/table_text.py --rows 2000 --rounds 9
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402,F401 - loaded as a simulated run has it (the compiled path's condition)

from procedures.storage import runner  # noqa: E402
from procedures.storage.journal import TUNE_COLUMNS  # noqa: E402


def tune_block(rows: int, seed: int = 0) -> dict:
    """A block of records as a tune's journal emits it (values distributed like a 10 000 x 8x8 run's)."""
    rng = np.random.default_rng(seed)
    pulses = rng.integers(1, 40, rows)
    return {"Stage": "tune", "Pass": 0, "Chip": rng.integers(0, 10000, rows), "Row": rng.integers(0, 8, rows),
            "Col": rng.integers(0, 8, rows), "Target (S)": rng.uniform(1e-4, 4e-4, rows),
            "Status": np.array(["converged", "stuck", "failed"], dtype=object)[(rng.random(rows) < 0.01).astype(int)],
            "Reading (S)": rng.uniform(1e-4, 4e-4, rows), "Pulses": pulses, "Reads": pulses + rng.integers(1, 4, rows),
            "Energy (J)": rng.uniform(5e-9, 3e-8, rows),
            "Instrument time (s)": 0.0012 * pulses + 0.0002 * rng.integers(0, 30, rows) + 1e-18 * rng.integers(0, 3, rows)}


def cpu(fn, repeat: int) -> float:
    t = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=runner.TABLE_ROWS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=10, help="calls per measurement")
    args = ap.parse_args()
    block = tune_block(args.rows)
    python_min = runner.COMPILED_MIN

    def compiled():
        runner.COMPILED_MIN = python_min
        return runner.format_table(TUNE_COLUMNS, block)

    def python():
        runner.COMPILED_MIN = 1 << 62
        return runner.format_table(TUNE_COLUMNS, block)

    assert compiled() == python(), "the compiled text differs from Python's"
    times = {"compiled": [], "python": []}
    for _ in range(args.rounds):
        for name, fn in (("python", python), ("compiled", compiled)):
            times[name].append(cpu(fn, args.repeat))
    runner.COMPILED_MIN = python_min
    print(f"format_table, {args.rows} rows of a tune's records, {args.rounds} rounds alternated "
          f"(load {os.getloadavg()[0]:.2f}): same text")
    for name, t in times.items():
        ms = np.array(t) * 1e3
        print(f"  {name:9s} median {np.median(ms):6.2f} ms  (min {ms.min():.2f}, max {ms.max():.2f}); "
              f"x {667646 / args.rows:.0f} blocks: {np.median(ms) * 667646 / args.rows / 1e3:.2f} s per 10 000 x 8x8 run")
    print(f"  ratio {np.median(times['python']) / np.median(times['compiled']):.1f}x")


if __name__ == "__main__":
    main()
