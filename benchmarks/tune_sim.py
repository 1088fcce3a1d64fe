"""Write-verify benchmark on the simulated TiO2 chip (figures, not a timed test).

Prints, for random targets in the 100–500 µS window at 1 % tolerance:

* a 64×64 ``tio2-3it`` array, with and without the initial RESET;
* a batch of 1000 independent 8×8 chips, with and without the initial RESET;
* the IR-drop study: 8×8 arrays with line resistance (grounded reads, no line correction),
  truly-within-tolerance;
* the tuner's CPU time per step against the numpy floor of the same step
  (:mod:`benchmarks.tune_floor`: the same physics — read noise, width law, V/2 switching with
  noise and relaxation, half-select switching, energy, relaxation under programming activity —
  as minimal numpy, replaying the tuner's own reads and pulses), measured alternately in this run,
  at 64×64 and at 1000 × 8×8: on ideal lines (target: within 3×), and on the default preset's
  0.67 Ω lines with the read correction (the first steps; there the line solves dominate both
  sides, the floor doing the same solves);

all on the ``tio2-3it`` devices with ideal lines (the preset's resistive lines and the tuner's
IR-drop correction: ``benchmarks/ir_drop.py``), and checks the targets: ≥ 99 % of working cells converged and truly within ±1 %, every stuck cell
flagged, median ≤ 20 pulses per cell, 64×64 in ≤ 5 s and 1000 × 8×8 in ≤ 10 s of wall time.

Usage: python benchmarks/tune_sim.py [--seed 0] [--quick] [--floor-only] [--ideal-only]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from mock_hw.presets import TIO2_3IT_R_LINE
from mock_hw.sim_chip import SimulatedCrossbar
from programming.tuner import CONVERGED, STUCK, TunerConfig, tune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_floor import floor_step_s, record_workload, timed_tune  # noqa: E402


def tuner_step(rows, cols, chips, seed, r_line=0.0, max_steps=None) -> tuple[float, int]:
    """(CPU s per tuner step, steps) of one tune (its first ``max_steps`` steps if given), timed
    from its first step (not the one-time set-up: target checks, the read correction's first fit)."""
    per_step, _, steps = timed_tune(rows, cols, chips, seed, r_line, max_steps)
    return per_step, steps


#: (rows, cols, chips, line resistance Ω, steps timed or None for the whole tune): the 3x target's
#: ideal-lines configurations ("batch": --quick's or the full batch of chips), then the default
#: preset's 0.67 Ω lines with the read correction, their first steps only (there the line solves
#: and the correction's model dominate the step; a 1000-chip batch through them would take longer
#: than this benchmark should)
FLOOR_CASES = ((64, 64, 1, 0.0, None), (8, 8, "batch", 0.0, None), (64, 64, 1, TIO2_3IT_R_LINE, 40),
               (8, 8, 100, TIO2_3IT_R_LINE, 40))


def floor_ratios(seed, batch, lines=True, repeat=3) -> list[tuple[str, bool]]:
    """Tuner step vs the numpy floor on the same workload, alternated ``repeat`` times per case;
    the best of each is compared (the target applies to ideal lines)."""
    checks = []
    print(f"tuner step vs numpy floor (CPU time; load average {os.getloadavg()[0]:.2f}):")
    for rows, cols, chips, r_line, max_steps in FLOOR_CASES:
        chips = batch if chips == "batch" else chips
        if r_line and not lines:
            continue
        work = record_workload(rows, cols, chips, seed, r_line, max_steps)
        tuner_s, floor_s = [], []
        for _ in range(repeat if not r_line else 2):
            t, steps = tuner_step(rows, cols, chips, seed, r_line, max_steps)
            tuner_s.append(t)
            floor_s.append(floor_step_s(work, seed=seed, lines=r_line > 0))
        ratio = min(tuner_s) / min(floor_s)
        where = f"{r_line} ohm lines, read correction, first {steps} steps" if r_line else "ideal lines"
        print(f"  {chips} x {rows}x{cols} ({where}): tuner {1e3 * min(tuner_s):.3f} ms/step ({work.busy:.0f} "
              f"busy cells, {steps} steps), floor {1e3 * min(floor_s):.3f} ms/step: {ratio:.2f}x")
        if not r_line:
            checks.append((f"{chips} x {rows}x{cols} tuner step within 3x of the floor (ideal lines)", ratio <= 3.0))
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
    ap.add_argument("--ideal-only", action="store_true",
                    help="floor ratios on ideal lines only (not the default 0.67 ohm lines)")
    args = ap.parse_args()
    batch = 100 if args.quick else 1000
    floor_checks = floor_ratios(args.seed, batch, lines=not args.ideal_only)
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
