"""Speed of the simulated chip with IR drop (figures, not a timed test).

Prints, for the default ``tio2-3it`` preset's resistive lines (``TIO2_3IT_R_LINE`` per segment)
against the same chip with ideal lines:

* the CPU time of a tune's first ``--steps`` steps (0: the whole tune, which the target is about) with IR drop (the tuner with its read correction,
  as ``benchmarks/tune_sim.py`` and ``benchmarks/tune_floor.py`` run it) and on ideal lines (the
  tuner's defaults), per step (timed from the first step) and for the whole call (set-up included:
  the target checks and the read correction's first fit), measured alternately in this run so
  the machine's load cancels, and their ratio (issue 18's target: a 64×64 tune with IR drop within
  10× of the same tune on ideal lines);
* the CPU time of a 64×64 full-array read with IR drop (every cell, grounded reads: one factorization
  and one multi-column solve; target ≤ 0.2 s), alternated with its read on ideal lines.

Usage: python benchmarks/ir_speed.py [--steps 300] [--repeat 2] [--sizes 64] [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mock_hw.presets import TIO2_3IT_R_LINE
from mock_hw.sim_chip import SimulatedCrossbar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_floor import timed_tune  # noqa: E402


def timed_read(size: int, seed: int, r_line: float) -> float:
    """CPU s of one full-array read of a fresh ``size``×``size`` chip (factorization included)."""
    xb = SimulatedCrossbar(size, size, seed=seed, r_line=r_line)
    t0 = time.process_time()
    xb.read_array()
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300,
                    help="tuner steps timed per tune (default 300; 0: the whole tune, minutes on 64x64)")
    ap.add_argument("--repeat", type=int, default=2, help="alternations; the best of each side is quoted")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64], help="array sizes (square), default 64")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"IR-drop speed, tio2-3it, {TIO2_3IT_R_LINE} ohm per segment vs ideal lines (CPU time; "
          f"load average {os.getloadavg()[0]:.2f} at the start)")
    checks = []
    for size in args.sizes:
        ideal, lines = [], []
        for _ in range(args.repeat):
            ideal.append(timed_tune(size, size, 1, args.seed, 0.0, args.steps or None))
            lines.append(timed_tune(size, size, 1, args.seed, TIO2_3IT_R_LINE, args.steps or None))
        i_step, l_step = min(t[0] for t in ideal), min(t[0] for t in lines)
        i_all, l_all = min(t[1] for t in ideal), min(t[1] for t in lines)
        steps = lines[0][2]
        print(f"  {size}x{size} tune, {'first ' if args.steps else 'all '}{steps} steps: IR drop {1e3 * l_step:.2f} ms/step, ideal "
              f"{1e3 * i_step:.3f} ms/step: {l_step / i_step:.1f}x per step; whole call {l_all:.2f} s vs "
              f"{i_all:.3f} s: {l_all / i_all:.1f}x")
        if size == 64:
            checks.append((f"64x64 tune with IR drop within 10x of ideal lines (per step, {steps} steps)",
                           l_step / i_step <= 10.0))
            if not args.steps:      # the words: the whole tune, set-up and read-backs included
                checks.append(("64x64 whole tune with IR drop within 10x of ideal lines (CPU of the call)",
                               l_all / i_all <= 10.0))
    reads_l, reads_i = [], []
    for _ in range(max(args.repeat, 3)):
        reads_i.append(timed_read(64, args.seed, 0.0))
        reads_l.append(timed_read(64, args.seed, TIO2_3IT_R_LINE))
    print(f"  64x64 full-array read: IR drop {min(reads_l):.3f} s CPU, ideal lines {1e3 * min(reads_i):.2f} ms "
          f"(load average {os.getloadavg()[0]:.2f} at the end)")
    checks.append(("64x64 full-array read with IR drop <= 0.2 s CPU", min(reads_l) <= 0.2))
    for name, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {name}")


if __name__ == "__main__":
    main()
