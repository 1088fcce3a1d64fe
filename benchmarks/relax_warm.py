"""CPU time of the relaxed line solve's kernels in a tune of many small chips, warm starts against
cold (every relaxed pulse and read from ``u = 0``), alternated in one process.

Runs ``xbar tune`` (tio2-3it, 8x8, its resistive lines relaxed) with the compiled kernels
:func:`~programming.relax_kernels.relax_pulses`, ``relax_reads`` and ``relax_points`` timed
(``time.process_time``) and the whole run's CPU time, once with the warm starts
(:meth:`programming.line_batch.BatchLines.pulse_points` / ``read_points``, the default) and once
cold, for each round; prints each run's figures and the outcomes of its report (converged, truly
within tolerance, mean and median pulses, mean relative error).

    PYTHONPATH=$PWD python benchmarks/relax_warm.py                     # 2000 chips, 3 rounds
    PYTHONPATH=$PWD python benchmarks/relax_warm.py --chips 10000 --rounds 3
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from procedures.cli import main  # noqa: E402
from programming import line_batch, relax_kernels  # noqa: E402

KERNELS = ("relax_pulses", "relax_reads", "relax_points")


def run(chips: int, seed: int, warm: bool) -> dict:
    """One tune; its kernels' CPU time (s), calls, the run's CPU time and its report's outcomes."""
    spent = {k: [0.0, 0] for k in KERNELS}
    originals = {k: getattr(relax_kernels, k) for k in KERNELS}
    methods = {m: getattr(line_batch.BatchLines, m) for m in ("pulse_points", "read_points")
               if "warm" in inspect.signature(getattr(line_batch.BatchLines, m)).parameters}

    def timed(name, f):
        def call(*args):
            t0 = time.process_time()
            try:
                return f(*args)
            finally:
                spent[name][0] += time.process_time() - t0
                spent[name][1] += 1
        return call

    for k, f in originals.items():
        setattr(relax_kernels, k, timed(k, f))
    if not warm:
        for m, f in methods.items():
            setattr(line_batch.BatchLines, m, lambda self, *args, _f=f, **kw: _f(self, *args, **kw, warm=False))
    try:
        with tempfile.TemporaryDirectory() as runs:
            os.environ["XBAR_RUNS"] = runs
            t0 = time.process_time()
            main(["tune", "--chips", str(chips), "--size", "8x8", "--seed", str(seed), "--quiet"])
            cpu = time.process_time() - t0
            report = json.loads(next(Path(runs).glob("*/report.json")).read_text())
    finally:
        for k, f in originals.items():
            setattr(relax_kernels, k, f)
        for m, f in methods.items():
            setattr(line_batch.BatchLines, m, f)
    return {"cpu": cpu, "spent": spent, "report": report}


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    run(64, a.seed, True)               # the kernels compiled or loaded
    print(f"{a.chips} x 8x8, seed {a.seed}; load {os.getloadavg()[0]:.2f}")
    for r in range(a.rounds):
        for warm in ((True, False) if r % 2 == 0 else (False, True)):
            out = run(a.chips, a.seed, warm)
            rep, k = out["report"], out["spent"]
            print(f"  {'warm' if warm else 'cold'}: run {out['cpu']:6.2f} s CPU; "
                  + ", ".join(f"{n} {k[n][0]:5.2f} s ({k[n][1]} calls)" for n in KERNELS)
                  + f"; converged {rep['converged']}, truly within {100 * rep['true_within_tol']:.4f} %, pulses mean "
                  f"{rep['pulses_per_cell']['mean']:.4f} median {rep['pulses_per_cell']['median']:g}, mean |error| "
                  f"{rep['rel_error_mean']:.6f}; load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main_()
