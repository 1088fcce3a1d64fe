"""Write-verify benchmark on the simulated TiO2 chip (figures, not a timed test).

Prints, for random targets in the 100–500 µS window at 1 % tolerance:

* a 64×64 ``tio2-3it`` array, with and without the initial RESET;
* a batch of 1000 independent 8×8 chips, with and without the initial RESET;
* the IR-drop study: 8×8 arrays with line resistance (grounded reads, no line correction),
  truly-within-tolerance;
* the tuner's CPU time per step against the numpy floor of the same step
  (:mod:`benchmarks.tune_floor`, as many busy cells as the tuner had on average), measured
  alternately in this run, at 64×64 and at 1000 × 8×8 (target: within 3×);

all on the ``tio2-3it`` devices with ideal lines (the preset's resistive lines and the tuner's
IR-drop correction: ``benchmarks/ir_drop.py``), and checks the targets: ≥ 99 % of working cells converged and truly within ±1 %, every stuck cell
flagged, median ≤ 20 pulses per cell, 64×64 in ≤ 5 s and 1000 × 8×8 in ≤ 10 s of wall time.

Usage: python benchmarks/tune_sim.py [--seed 0] [--quick] [--floor-only]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

import programming.tuner as tuner_module
from mock_hw.sim_chip import SimulatedCrossbar
from programming.tuner import CONVERGED, STUCK, TunerConfig, tune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_floor import floor_step_s  # noqa: E402


def tuner_step(rows, cols, chips, seed) -> tuple[float, float, int]:
    """(CPU s per tuner step, mean busy cells per step, steps) of one tune."""
    count = {"steps": 0, "busy": 0}
    step = tuner_module._step

    def counted(xb, n, *args):
        count["steps"] += 1
        count["busy"] += int((~n.done).sum())
        return step(xb, n, *args)

    xb = SimulatedCrossbar(rows, cols, n_chips=chips, seed=seed, r_line=0.0)
    targets = np.random.default_rng(seed + 100).uniform(*xb.programming_window, size=(chips, rows, cols))
    tuner_module._step = counted
    try:
        t0 = time.process_time()
        tune(xb, targets, TunerConfig())
        cpu = time.process_time() - t0
    finally:
        tuner_module._step = step
    return cpu / count["steps"], count["busy"] / count["steps"], count["steps"]


def floor_ratios(seed, batch) -> list[tuple[str, bool]]:
    """Tuner step vs the numpy floor, alternated twice per shape; the best of each is compared."""
    checks = []
    print(f"tuner step vs numpy floor (CPU time; load average {os.getloadavg()[0]:.2f}):")
    for rows, cols, chips in ((64, 64, 1), (8, 8, batch)):
        tuner_s, floor_s = [], []
        for _ in range(2):
            t, busy, steps = tuner_step(rows, cols, chips, seed)
            tuner_s.append(t)
            floor_s.append(floor_step_s(rows, cols, chips, busy=busy, steps=min(steps, 400), seed=seed))
        ratio = min(tuner_s) / min(floor_s)
        print(f"  {chips} x {rows}x{cols}: tuner {1e3 * min(tuner_s):.3f} ms/step ({busy:.0f} busy cells, "
              f"{steps} steps), floor {1e3 * min(floor_s):.3f} ms/step: {ratio:.2f}x")
        checks.append((f"{chips} x {rows}x{cols} tuner step within 3x of the floor", ratio <= 3.0))
    return checks


def run(rows, cols, chips, seed, reset, r_line=0.0):
    # tio2-3it devices on ideal lines unless told (the corrected tuner on resistive lines: ir_drop.py)
    xb = SimulatedCrossbar(rows, cols, n_chips=chips, seed=seed, r_line=r_line)
    targets = np.random.default_rng(seed + 100).uniform(*xb.programming_window, size=(chips, rows, cols))
    res = tune(xb, targets, TunerConfig(initial_reset=reset))
    rep = res.summary(xb)
    working = xb.working_mask
    true_ok = np.abs(xb.true_conductance - targets) <= 0.01 * targets
    rep["working_converged_true"] = float(((res.status == CONVERGED) & true_ok)[working].mean())
    stuck_off = ~working & ~true_ok
    rep["stuck_off_target"] = int(stuck_off.sum())
    rep["stuck_off_target_flagged"] = int((stuck_off & (res.status == STUCK)).sum())
    return rep


def line(name, rep):
    ppc = rep["pulses_per_cell"]
    return (f"  {name:<26} yield {100 * rep['yield']:6.2f} %  working conv.+true {100 * rep['working_converged_true']:6.2f} %"
            f"  true_within_tol {100 * rep['true_within_tol']:6.2f} %  stuck {rep['stuck_off_target_flagged']}/"
            f"{rep['stuck_off_target']}  pulses med {ppc['median']:.0f} mean {ppc['mean']:.1f} p95 {ppc['p95']:.0f}"
            f"  E {rep['energy_j'] * 1e6:8.2f} µJ  instr {rep['instrument_time_s']:7.1f} s  wall {rep['wall_s']:5.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smaller batch (100 chips), no IR-drop study")
    ap.add_argument("--floor-only", action="store_true", help="only the tuner-step vs floor ratios")
    args = ap.parse_args()
    batch = 100 if args.quick else 1000
    floor_checks = floor_ratios(args.seed, batch)
    if args.floor_only:
        for name, ok in floor_checks:
            print(f"  [{'met' if ok else 'MISSED'}] {name}")
        return
    print("write-verify on the simulated tio2-3it chip, 1 % tolerance, random targets 100–500 µS")
    results = {}
    for reset in (True, False):
        tag = "reset" if reset else "no reset"
        results[("64", reset)] = rep = run(64, 64, 1, args.seed, reset)
        print(line(f"64x64, {tag}", rep))
        results[("batch", reset)] = rep = run(8, 8, batch, args.seed, reset)
        print(line(f"{batch} x 8x8, {tag}", rep))
    if not args.quick:
        print("IR drop (grounded reads, line resistance per segment), 8x8, reset:")
        for r_line in (0.5, 2.0):
            print(line(f"8x8 x 20, r_line {r_line} Ω", run(8, 8, 20, args.seed, True, r_line)))
    print("targets:")
    checks = list(floor_checks)
    for reset in (True, False):
        for key in ("64", "batch"):
            rep = results[(key, reset)]
            checks.append((f"{key} reset={reset}: >= 99 % working converged and truly within 1 %",
                           rep["working_converged_true"] >= 0.99))
            checks.append((f"{key} reset={reset}: every off-target stuck cell flagged",
                           rep["stuck_off_target_flagged"] == rep["stuck_off_target"]))
            checks.append((f"{key} reset={reset}: median <= 20 pulses per cell", rep["pulses_per_cell"]["median"] <= 20))
        checks.append((f"64x64 reset={reset} wall <= 5 s", results[("64", reset)]["wall_s"] <= 5.0))
        if batch == 1000:
            checks.append((f"1000 x 8x8 reset={reset} wall <= 10 s", results[("batch", reset)]["wall_s"] <= 10.0))
    for name, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {name}")


if __name__ == "__main__":
    main()
