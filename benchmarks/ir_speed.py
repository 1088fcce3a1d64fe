"""Speed of the simulated chip with IR drop (figures, not a timed test).

Prints, for the default ``tio2-3it`` preset's resistive lines (``TIO2_3IT_R_LINE`` per segment)
against the same chip with ideal lines:

* the CPU time of a tune's first ``--steps`` steps (0: the whole tune, which the target is about) with IR drop (the tuner with its read correction,
  as ``benchmarks/tune_sim.py`` and ``benchmarks/tune_floor.py`` run it) and on ideal lines (the
  tuner's defaults), per step (timed from the first step) and for the whole call (set-up included:
  the target checks and the read correction's first fit), measured alternately in this run so
  the machine's load cancels, and their ratio (issue 18's target: a 64×64 tune with IR drop within
  10× of the same tune on ideal lines);
* the CPU time of a 64×64 full-array read with IR drop (every cell, grounded reads: one swept solve
  of every row's read, cold; target ≤ 0.2 s), alternated with its read on ideal lines.

With ``--evidence SIZE:R_LINE ...`` it prints instead the statistical check of the large arrays'
line solve tolerances (``mock_hw.sim_chip.FACTORED_READ_TOL`` / ``FACTORED_PULSE_TOL``, swept lines):
for each case and each of ``--seeds`` seeds, the same chip and targets tuned (``ir_drop.tune_case``:
line resistance measured, the tuner's correction, ``auto`` scheme) with the line solves to those
tolerances and to the strict ones (``READ_TOL`` / ``PULSE_TOL``), alternated: the share truly within
±1 % and the median pulses of each, their mean differences over the seeds with the standard error,
and the CPU time of each.

Usage: python benchmarks/ir_speed.py [--steps 300] [--repeat 2] [--sizes 64] [--seed 0]
       python benchmarks/ir_speed.py --evidence 16:1 32:0.67 [--seeds 8]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from pathlib import Path

from mock_hw.presets import TIO2_3IT_R_LINE
from mock_hw.sim_chip import SimulatedCrossbar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_floor import timed_tune  # noqa: E402


def evidence(cases, seeds: int) -> None:
    """Tuning outcomes with the factorized network's solve tolerances against the strict ones."""
    import mock_hw.sim_chip as sim_chip
    from ir_drop import tune_case

    loose = (sim_chip.FACTORED_READ_TOL, sim_chip.FACTORED_PULSE_TOL)
    strict = (sim_chip.READ_TOL, sim_chip.PULSE_TOL)
    print(f"Solve tolerances on factorized lines: reads / pulses {loose[0]:g} / {loose[1]:g} against "
          f"{strict[0]:g} / {strict[1]:g} (load average {os.getloadavg()[0]:.2f} at the start)")
    for case in cases:
        n, r = case.split(":")
        n, r = int(n), float(r)
        rows = []
        for seed in range(seeds):
            got = {}
            for name, tols in (("strict", strict), ("loose", loose)):
                sim_chip.FACTORED_READ_TOL, sim_chip.FACTORED_PULSE_TOL = tols
                try:
                    got[name] = tune_case(n, r, seed)
                finally:
                    sim_chip.FACTORED_READ_TOL, sim_chip.FACTORED_PULSE_TOL = loose
            s, lo = got["strict"], got["loose"]
            rows.append((100 * s["truly"], 100 * lo["truly"], s["median_pulses"], lo["median_pulses"], s["cpu"], lo["cpu"],
                         100 * s["mean_error"], 100 * lo["mean_error"], s["mean_pulses"], lo["mean_pulses"]))
            print(f"  {n}x{n} {r:g} ohm seed {seed}: truly within 1 % {rows[-1][0]:.2f} / {rows[-1][1]:.2f} %, "
                  f"median {rows[-1][2]:g} / {rows[-1][3]:g} pulses, mean |error| {rows[-1][6]:.4f} / "
                  f"{rows[-1][7]:.4f} %, mean pulses {rows[-1][8]:.2f} / {rows[-1][9]:.2f}, CPU {rows[-1][4]:.1f} / "
                  f"{rows[-1][5]:.1f} s (strict / loose)", flush=True)
        a = np.array(rows)
        for label, k in (("truly within 1 % (points)", 0), ("median pulses", 2), ("mean |error| (%)", 6),
                         ("mean pulses", 8)):
            d = a[:, k + 1] - a[:, k]
            se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
            print(f"  {n}x{n} {r:g} ohm, {seeds} seeds: {label}: strict mean {a[:, k].mean():.3f}, loose "
                  f"{a[:, k + 1].mean():.3f}, difference {d.mean():+.3f} +/- {se:.3f} (1 s.e.)")
        print(f"  {n}x{n} {r:g} ohm: CPU strict {a[:, 4].sum():.1f} s, loose {a[:, 5].sum():.1f} s "
              f"(load average {os.getloadavg()[0]:.2f})", flush=True)


def timed_read(size: int, seed: int, r_line: float) -> float:
    """CPU s of one full-array read of a fresh ``size``×``size`` chip (cold solves: no warm start)."""
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
    ap.add_argument("--evidence", nargs="+", metavar="SIZE:R_LINE",
                    help="instead: tuning outcomes with the factorized solve tolerances against the strict ones")
    ap.add_argument("--seeds", type=int, default=8, help="seeds per --evidence case (0, 1, ...)")
    args = ap.parse_args()
    if args.evidence:
        evidence(args.evidence, args.seeds)
        return
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
