"""Line resistance (IR drop): the tuner's truth through resistive lines, the solver's speed, and
networks through the chip's own matrix-vector product (figures, not a timed test).

For each array size (``--sizes``, default 16 32 64) and line resistance per segment (0, 0.5, 1,
2 Ω and the ``tio2-3it`` default), on a simulated ``tio2-3it`` chip with random targets in the
100–500 µS window at 1 % tolerance: the line resistance is *measured* first (``xbar
calibrate-lines``' estimator, reads only), then the chip is tuned with the IR-drop correction on
that estimate.  Printed: the estimate, working cells converged, working cells truly within ±1 %,
median pulses per cell, wall time (calibration + tuning).  Targets: ≥ 99 % truly within ±1 % at
the default and at 1 Ω on 64×64, ≥ 95 % at 2 Ω, median ≤ 25 pulses.

Solver: a 64×64 full-array grounded read with IR drop on fresh conductances (factorization
included; target ≤ 0.2 s) and the 64×64 tune at 1 Ω against the same tune on ideal lines
(target ≤ 10×), measured in this run.

Networks (``--networks``): the moons (2-8-1, hardware-aware recipe) and digits (64-32-10)
networks deployed on one chip of their extent at the default line resistance: software accuracy,
and accuracy through the chip's product without correction, with the tuner's IR-drop correction,
and with the correction plus pre-distorted targets (target: within 1 point of software).

Usage: python benchmarks/ir_drop.py [--sizes 16 32 64] [--r 0 0.5 1 2] [--seed 0] [--networks]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from mock_hw.presets import TIO2_3IT_R_LINE
from mock_hw.sim_chip import SimulatedCrossbar
from programming.ir_correction import measure_line_resistance
from programming.tuner import CONVERGED, TunerConfig, tune


def tune_case(n: int, r_line: float, seed: int) -> dict:
    xb = SimulatedCrossbar(n, n, seed=seed, r_line=r_line)
    targets = np.random.default_rng(seed + 100).uniform(*xb.programming_window, size=(n, n))
    t0 = time.perf_counter()
    r_est = float(measure_line_resistance(xb)[0][0]) if r_line > 0 else 0.0
    t_cal = time.perf_counter() - t0
    res = tune(xb, targets, TunerConfig(line_resistance=r_est))
    wall = time.perf_counter() - t0
    working = xb.working_mask[0]
    truly = np.abs(xb.true_conductance[0] - targets) <= 0.01 * targets
    return {"r_est": r_est, "converged": float((res.status[0] == CONVERGED)[working].mean()),
            "truly": float(truly[working].mean()), "median_pulses": float(np.median(res.pulses[0][working])),
            "wall": wall, "calibration_s": t_cal}


def read_time(n: int = 64, r_line: float = 1.0) -> float:
    xb = SimulatedCrossbar(n, n, seed=0, r_line=r_line)
    xb.set_conductances(xb.true_conductance * 1.001)       # fresh conductances: a new factorization
    t0 = time.perf_counter()
    xb.read_array()
    return time.perf_counter() - t0


def networks(seed: int) -> None:
    from models.deploy import DeployConfig, deploy, network_extent
    from models.train import TrainConfig, train

    for name in ("moons", "digits"):
        r = train(TrainConfig.for_dataset(name, aware=True, seed=seed))
        extent = network_extent(r.model)
        line = [f"  {name:<7} ({'x'.join(map(str, extent))} cells) software {100 * r.test_accuracy:6.2f} %"]
        for label, make in (("no correction", lambda est: DeployConfig(seed=seed)),
                            ("correction", lambda est: DeployConfig(seed=seed, line_resistance=est)),
                            ("+ pre-distortion", lambda est: DeployConfig(seed=seed, line_resistance=est,
                                                                          predistort=True))):
            xb = SimulatedCrossbar(*extent, seed=3000 + seed)
            est = float(measure_line_resistance(xb)[0][0])
            dep = deploy(r.model, xb, r.dataset, make(est))
            line.append(f"{label} {100 * dep.report['accuracy']['chip_mvm']:6.2f} %")
        print(" | ".join(line))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--r", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, TIO2_3IT_R_LINE])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--networks", action="store_true", help="also deploy the moons and digits networks")
    args = ap.parse_args()
    print("write-verify through line resistance (tio2-3it, random targets 100-500 uS, 1 % tolerance; "
          "line resistance measured, then corrected)")
    walls = {}
    for n in args.sizes:
        for r in args.r:
            rep = tune_case(n, r, args.seed)
            walls[(n, r)] = rep["wall"]
            print(f"  {n:>2}x{n:<2} r_line {r:4.2f} ohm (measured {rep['r_est']:5.2f})  converged "
                  f"{100 * rep['converged']:6.2f} %  truly within 1 % {100 * rep['truly']:6.2f} %  "
                  f"median pulses {rep['median_pulses']:4.0f}  wall {rep['wall']:7.1f} s "
                  f"(calibration {rep['calibration_s']:.1f} s)", flush=True)
    if 64 in args.sizes:
        print(f"  64x64 full-array read with IR drop (1 ohm, new factorization): {read_time():.3f} s (target <= 0.2 s)")
        if (64, 1.0) in walls and (64, 0.0) in walls:
            print(f"  64x64 tune at 1 ohm / on ideal lines: {walls[(64, 1.0)] / walls[(64, 0.0)]:.1f}x (target <= 10x)")
    if args.networks:
        print(f"networks through the chip's product (tio2-3it, {TIO2_3IT_R_LINE} ohm per segment)")
        networks(args.seed)


if __name__ == "__main__":
    main()
