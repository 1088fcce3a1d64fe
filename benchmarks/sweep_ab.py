"""Paired A/B of the swept line solves of two trees in one process (figures, not a timed test).

Runs this tree's tune (``tune_floor.make_run``: a ``--size``² chip, the default ``tio2-3it`` lines
at ``TIO2_3IT_R_LINE`` Ω, the tuner's read correction) for ``--steps`` tuner steps, and makes every
swept solve (:func:`programming.line_sweep.sweep_solve`: the simulator's reads and pulses and the
tuner's line model) twice, by this tree's code and by another tree's (``--base``, a checkout whose
``programming`` package is loaded beside this one as ``programming_base``), each on its own copy of
the same warm starts and node voltages: their order alternates call by call, and which of the two
works on the caller's own copy (the one the tune goes on with) every two calls, so neither side
gains from the cache the other warmed.  It prints the CPU time (process time) each side spent in
its solves, their ratio, and how many calls' answers (node voltages, sweeps) were not bit for bit
the same.  The first ``--skip`` calls are left out of the sums (each side loads its compiled
kernels from numba's cache then).

Why: whole tunes alternated in separate processes (``ir_speed.py``) move by 10-40 % with the
machine's load, which hides a kernel change of a few %.  Here both sides see the same load at the
same moments and the same operating points; two copies of one tree (``--base`` this tree) read
0.99-1.01 at load ~3 on a 2-core machine (800 steps of the 64×64 tune, ~5.6 s of solves a side).
The two trees' :class:`~programming.line_sweep.WarmStarts` must share an interface (``assign``,
``pool``, ``deltas``, ``changes``, ``keep``).

Usage: PYTHONPATH=$PWD python benchmarks/sweep_ab.py --base /path/to/other/checkout [--steps 800] [--size 64]
"""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_floor import timed_tune  # noqa: E402

from mock_hw.presets import TIO2_3IT_R_LINE  # noqa: E402


def load_base(root: Path):
    """The other tree's ``programming.line_sweep``, its package loaded as ``programming_base``."""
    pkg = root / "programming"
    spec = importlib.util.spec_from_file_location("programming_base", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["programming_base"] = mod
    spec.loader.exec_module(mod)
    return importlib.import_module("programming_base.line_sweep")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, type=Path, help="the other checkout's root")
    ap.add_argument("--steps", type=int, default=800, help="tuner steps (0: the whole tune)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", type=int, default=60, help="first calls left out of the sums")
    args = ap.parse_args()

    import mock_hw.nodal as nodal
    import programming.ir_correction as ir_correction
    import programming.line_sweep as here

    sides = {"this": here.sweep_solve, "base": load_base(args.base.resolve()).sweep_solve}
    cpu = {"this": 0.0, "base": 0.0}
    count = {"calls": 0, "differ": 0}

    def paired(g, beta, v_ref, r_line, r_access, chip, row_v, col_v, x, tol, i_tol=np.inf, max_sweeps=200,
               starts=None, sharp=False, row_currents=True, cells=None, g_mean=None):
        n = count["calls"] = count["calls"] + 1
        order = ("this", "base") if n % 2 else ("base", "this")
        own = "this" if (n // 2) % 2 else "base"        # the side on the caller's own starts and x
        twin = (copy.deepcopy(starts), x.copy())
        got = {}
        for name in order:
            st, xx = (starts, x) if name == own else twin
            t = time.process_time()
            got[name] = (sides[name](g, beta, v_ref, r_line, r_access, chip, row_v, col_v, xx, tol, i_tol, max_sweeps,
                                     st, sharp, row_currents, cells, g_mean), xx)
            if n > args.skip:
                cpu[name] += time.process_time() - t
        other = "base" if own == "this" else "this"
        if not (np.array_equal(got["this"][0], got["base"][0]) and np.array_equal(got[own][1], got[other][1])):
            count["differ"] += 1
        return got[own][0]

    nodal.sweep_solve = paired
    ir_correction.sweep_solve = paired
    load0 = os.getloadavg()[0]
    steps = timed_tune(args.size, args.size, 1, args.seed, TIO2_3IT_R_LINE, args.steps or None)[2]
    print(f"{args.size}x{args.size} tune at {TIO2_3IT_R_LINE} ohm, {steps} steps, {count['calls']} swept solves "
          f"(the first {args.skip} left out): this tree {cpu['this']:.3f} s, base {cpu['base']:.3f} s of CPU, "
          f"this / base {cpu['this'] / max(cpu['base'], 1e-12):.4f}; answers not bit for bit the same in "
          f"{count['differ']} calls (load average {load0:.2f} -> {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
