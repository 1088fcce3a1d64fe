"""Line resistance (IR drop): the tuner's truth through resistive lines, the solver's speed, and
networks through the chip's own matrix-vector product (figures, not a timed test).

For each array size (``--sizes``, default 16 32 64) and line resistance per segment (0, 0.5, 1,
2 Ω and the ``tio2-3it`` default), on a simulated ``tio2-3it`` chip with random targets in the
100–500 µS window at 1 % tolerance: the line resistance is *measured* first (``xbar
calibrate-lines``' estimator, reads only), then the chip is tuned with the IR-drop correction on
that estimate.  Printed: the estimate, working cells converged, working cells truly within ±1 %,
median pulses per cell, wall and CPU time (calibration + tuning) and the tuning's CPU time
against the same tune of the same chip and targets on ideal lines (0 Ω, run first in the same
run: list 0 first in ``--r``).  Targets: ≥ 99 % truly within ±1 % at
the default and at 1 Ω on 64×64, ≥ 95 % at 2 Ω, median ≤ 25 pulses.

Solver: a 64×64 full-array grounded read with IR drop on fresh conductances (factorization
included; target ≤ 0.2 s), wall and CPU time; a 64×64 tune with IR drop against the same tune on
ideal lines (target ≤ 10×), measured in this run.  The load average is printed with the figures.

Networks (``--networks``): the moons (2-8-1, hardware-aware recipe) and digits (64-32-10)
networks deployed on one chip of their extent at the default line resistance: software accuracy,
and accuracy through the chip's product without correction, with the tuner's IR-drop correction,
and with the correction plus pre-distorted targets (target: within 1 point of software).

Usage: python benchmarks/ir_drop.py [--sizes 16 32 64] [--r 0 0.5 1 2] [--seed 0] [--networks]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from mock_hw.presets import TIO2_3IT_R_LINE
from mock_hw.sim_chip import SimulatedCrossbar
from programming.ir_correction import measure_line_resistance
from programming.tuner import CONVERGED, TunerConfig, tune


def tune_case(n: int, r_line: float, seed: int) -> dict:
    xb = SimulatedCrossbar(n, n, seed=seed, r_line=r_line)
    targets = np.random.default_rng(seed + 100).uniform(*xb.programming_window, size=(n, n))
    t0, c0 = time.perf_counter(), time.process_time()
    r_est, beta = (float(x[0]) for x in measure_line_resistance(xb)) if r_line > 0 else (0.0, 0.0)
    t_cal = time.perf_counter() - t0
    t1, c1 = time.perf_counter(), time.process_time()
    res = tune(xb, targets, TunerConfig(line_resistance=r_est, device_beta=beta))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    working = xb.working_mask[0]
    truly = np.abs(xb.true_conductance[0] - targets) <= 0.01 * targets
    return {"r_est": r_est, "converged": float((res.status[0] == CONVERGED)[working].mean()),
            "truly": float(truly[working].mean()), "median_pulses": float(np.median(res.pulses[0][working])),
            "wall": wall, "cpu": cpu, "calibration_s": t_cal,
            "tune_wall": time.perf_counter() - t1, "tune_cpu": time.process_time() - c1}


def read_time(n: int = 64, r_line: float = 1.0, repeat: int = 3) -> tuple[float, float]:
    """Wall and CPU time (s, the fastest of ``repeat``) of a full-array grounded read of an
    ``n``×``n`` chip with IR drop, each on fresh conductances (a new factorization)."""
    xb = SimulatedCrossbar(n, n, seed=0, r_line=r_line)
    best = (np.inf, np.inf)
    for k in range(repeat):
        xb.set_conductances(xb.true_conductance * 1.001)   # fresh conductances: a new factorization
        t0, c0 = time.perf_counter(), time.process_time()
        xb.read_array()
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best


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


def load() -> str:
    """The 1, 5 and 15 minute load averages (figures on a shared machine depend on them)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--r", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, TIO2_3IT_R_LINE])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--networks", action="store_true", help="also deploy the moons and digits networks")
    args = ap.parse_args()
    print("write-verify through line resistance (tio2-3it, random targets 100-500 uS, 1 % tolerance; "
          "line resistance measured, then corrected)")
    print(f"  (load average at the start: {load()})")
    tune_s = {}
    for n in args.sizes:
        for r in args.r:
            rep = tune_case(n, r, args.seed)
            tune_s[(n, r)] = rep["tune_cpu"]
            ratio = f"  tune {rep['tune_cpu'] / tune_s[(n, 0.0)]:5.1f}x ideal lines (CPU)" \
                if r > 0 and (n, 0.0) in tune_s else ""
            print(f"  {n:>2}x{n:<2} r_line {r:4.2f} ohm (measured {rep['r_est']:5.2f})  converged "
                  f"{100 * rep['converged']:6.2f} %  truly within 1 % {100 * rep['truly']:6.2f} %  "
                  f"median pulses {rep['median_pulses']:4.0f}  wall {rep['wall']:7.1f} s  CPU {rep['cpu']:7.1f} s "
                  f"(calibration {rep['calibration_s']:.1f} s wall){ratio}", flush=True)
    print(f"  (load average at the end: {load()})")
    if 64 in args.sizes:
        wall, cpu = read_time()
        print(f"  64x64 full-array read with IR drop (1 ohm, new factorization): wall {wall:.3f} s, CPU {cpu:.3f} s "
              f"(target <= 0.2 s; load {load()})")
    if args.networks:
        print(f"networks through the chip's product (tio2-3it, {TIO2_3IT_R_LINE} ohm per segment)")
        networks(args.seed)


if __name__ == "__main__":
    main()
