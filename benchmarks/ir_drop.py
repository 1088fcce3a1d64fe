"""Line resistance (IR drop): the tuner's truth through resistive lines, the solver's speed, and
networks through the chip's own matrix-vector product (figures, not a timed test).

For each array size (``--sizes``, default 16 32 64) and line resistance per segment (0, 0.5, 1,
2 Ω and the ``tio2-3it`` default), on a simulated ``tio2-3it`` chip with random targets in the
100–500 µS window at 1 % tolerance: the line resistance is *measured* first (``xbar
calibrate-lines``' estimator, reads only), then the chip is tuned with the IR-drop correction on
that estimate, writing with the scheme the tuner chooses from its line estimate (``--scheme auto``:
V/2, or V/3 with held writes widened where V/2 cannot reach the cells; printed).  Printed: the estimate, working cells converged, working cells truly within ±1 %,
median pulses per cell, wall and CPU time (calibration + tuning) and the tuning's CPU time
against the same tune of the same chip and targets on ideal lines (0 Ω, run first in the same
run: list 0 first in ``--r``).  Targets: ≥ 99 % truly within ±1 % at
the default and at 1 Ω on 64×64, ≥ 95 % at 2 Ω, median ≤ 25 pulses.

Solver: a 64×64 full-array grounded read with IR drop on fresh conductances (factorization
included; target ≤ 0.2 s), wall and CPU time; a 64×64 tune with IR drop against the same tune on
ideal lines (target ≤ 10×), measured in this run.  The load average is printed with the figures.

Networks (``--networks [moons] [digits]``): the moons (2-8-1) and digits (64-32-10) networks,
trained with the hardware-aware recipe, each deployed on a simulated ``tio2-3it`` chip of its
extent at every ``--r`` the way ``xbar deploy`` does by default (line resistance measured, the
tuner's correction, pre-distortion): software accuracy and accuracy through the chip's own
matrix-vector product without and with pre-distortion (the same chip, before and after), the
product's per-layer rms error, the mapping's top (the headroom pre-distortion left), test points,
seeds, wall time.  Target: within 1 point of software.  These are our pipeline's figures on our
simulated chip, not a published result.

Usage: python benchmarks/ir_drop.py [--sizes 16 32 64] [--r 0 0.5 1 2] [--seed 0] [--networks [moons digits]]
       [--save-chips DIR]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from mock_hw.presets import TIO2_3IT_R_LINE
from mock_hw.sim_chip import SimulatedCrossbar, save_chip_state
from programming.ir_correction import measure_line_resistance
from programming.tuner import CONVERGED, TunerConfig, tune


def tune_case(n: int, r_line: float, seed: int, width: float | None = None, cells: int | None = None,
              compensation: bool = True, **tuner) -> dict:
    """One tune of an ``n``×``n`` chip at ``r_line`` Ω per segment: the line resistance measured
    first, then tuned with the correction on that estimate.  ``width`` (s): the pulse width, with
    the amplitude schedule ``xbar tune --width`` uses (``--schedule auto``: probed on the chip);
    ``cells``: tune only that many random cells (NaN targets elsewhere); ``compensation``: the
    tuner's line-compensated writes (``TunerConfig.write_compensation``); ``tuner``: other
    :class:`TunerConfig` settings (``write_scheme``, ``width_ramp``, ...)."""
    from programming.auto_schedule import RECIPE, auto_schedule, with_width

    xb = SimulatedCrossbar(n, n, seed=seed, r_line=r_line)
    targets = np.random.default_rng(seed + 100).uniform(*xb.programming_window, size=(n, n))
    if cells:
        keep = np.zeros(n * n, bool)
        keep[np.random.default_rng(seed + 200).permutation(n * n)[:cells]] = True
        targets = np.where(keep.reshape(n, n), targets, np.nan)
    t0, c0 = time.perf_counter(), time.process_time()
    r_est, beta = (float(x[0]) for x in measure_line_resistance(xb)) if r_line > 0 else (0.0, 0.0)
    cfg = TunerConfig(line_resistance=r_est, device_beta=beta, write_compensation=compensation, **tuner)
    if width is not None and width != RECIPE.width:
        cfg = auto_schedule(xb, with_width(cfg, width))[0]
    t_cal = time.perf_counter() - t0
    t1, c1 = time.perf_counter(), time.process_time()
    res = tune(xb, targets, cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    working = xb.working_mask[0] & ~np.isnan(targets)
    truly = np.abs(xb.true_conductance[0] - targets) <= 0.01 * targets
    return {"r_est": r_est, "converged": float((res.status[0] == CONVERGED)[working].mean()),
            "truly": float(truly[working].mean()), "median_pulses": float(np.median(res.pulses[0][working])),
            "mean_pulses": float(res.pulses[0][working].mean()),
            "mean_error": float((np.abs(xb.true_conductance[0] - targets) / targets)[working].mean()),
            "wall": wall, "cpu": cpu, "calibration_s": t_cal, "passes": res.passes_run,
            "max_unselected": xb.max_unselected_v, "scheme": res.config.write_scheme,
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


def network_case(model, data, extent, r_line: float, seed: int, save: str | None = None) -> dict:
    """One deployment of ``model`` on a simulated ``tio2-3it`` chip of ``extent`` at ``r_line`` Ω
    per segment, as ``xbar deploy`` does it by default: the line resistance and device curvature
    measured with reads, the tuner's correction on that estimate and pre-distortion (the accuracy
    through the chip's product measured before and after it).  ``save``: a path prefix; the chip's
    state is saved before every tuning stage (``{save}_before_{stage}.npz``, with that stage's
    targets ``{save}_targets_{stage}.npy``) and at the end (``{save}_final.npz``), so a later stage
    can be studied again from the tuned chip (``mock_hw.chip_state.load_chip_state``)."""
    from models.deploy import DeployConfig, deploy, with_line_estimate
    from programming.tune_state import TuneLog

    class Checkpoints(TuneLog):
        def tune_kwargs(self, stage, targets):
            save_chip_state(xb, f"{save}_before_{stage}.npz")
            np.save(f"{save}_targets_{stage}.npy", targets)
            return {}

    t0 = time.perf_counter()
    xb = SimulatedCrossbar(*extent, seed=3000 + seed, r_line=r_line)
    cfg = with_line_estimate(DeployConfig(seed=seed), xb)
    est = cfg.line_resistance
    dep = deploy(model, xb, data, cfg, log=Checkpoints() if save else None)
    if save:
        save_chip_state(xb, f"{save}_final.npz")
    a = dep.report["accuracy"]
    return {"estimate": est, "software": a["software"], "with": a["chip_mvm"],
            "without": a.get("chip_mvm_without_predistortion", a["chip_mvm"]),
            "error_with": a["product_error"], "error_without": a.get("product_error_without_predistortion",
                                                                      a["product_error"]),
            "top_uS": dep.report["predistortion"]["mapping_window_uS"][1], "points": a["test_points"],
            "stuck": {k: dep.report["tuning"][k] for k in ("stuck_flagged", "stuck_detected", "stuck_true")},
            "wall": time.perf_counter() - t0}


def networks(seed: int, resistances, names=("moons", "digits"), save: str | None = None) -> None:
    """The network rows: each network trained once (hardware-aware recipe, ``seed``), deployed at
    every line resistance; accuracy through the chip's product without and with pre-distortion.
    ``save``: a folder for the chips' states before every tuning stage (see :func:`network_case`)."""
    from models.deploy import network_extent
    from models.train import TrainConfig, train

    for name in names:
        r = train(TrainConfig.for_dataset(name, aware=True, seed=seed))
        extent = network_extent(r.model)
        print(f"  {name} ({'-'.join(map(str, r.model.sizes))}, trained with seed {seed} in {r.wall_s:.0f} s) on "
              f"{extent[0]}x{extent[1]} chips (chip seed {3000 + seed}), software {100 * r.test_accuracy:.2f} % "
              f"on {int(r.dataset.y_test.shape[0])} test points", flush=True)
        for r_line in resistances:
            c = network_case(r.model, r.dataset, extent, r_line, seed,
                             None if save is None else os.path.join(save, f"{name}_{r_line:g}ohm_seed{seed}"))
            err = lambda e: "/".join(f"{100 * x:.1f}" for x in e)   # noqa: E731
            gap = 100 * (c["software"] - c["with"])
            print(f"    r_line {r_line:4.2f} ohm (measured {c['estimate']:5.3f}): chip product without pre-distortion "
                  f"{100 * c['without']:6.2f} %, with {100 * c['with']:6.2f} % ({gap:+.2f} points below software; "
                  f"target <= 1) | product error per layer {err(c['error_without'])} -> {err(c['error_with'])} % "
                  f"| weights mapped up to {c['top_uS']:.0f} uS | stuck flagged {c['stuck']['stuck_flagged']} "
                  f"({c['stuck']['stuck_detected']} of the {c['stuck']['stuck_true']} truly stuck: simulator's truth, "
                  f"analysis) | {c['points']} points | wall {c['wall']:.0f} s "
                  f"| load {load()}", flush=True)


def load() -> str:
    """The 1, 5 and 15 minute load averages (figures on a shared machine depend on them)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[16, 32, 64], help="array sizes (none: networks only)")
    ap.add_argument("--r", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, TIO2_3IT_R_LINE])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=float, nargs="+", default=[None],
                    help="pulse widths, s (default the recipe's 1 us; others with the auto schedule, as xbar tune --width)")
    ap.add_argument("--cells", type=int, default=0, help="tune only this many random cells per array (0: all)")
    ap.add_argument("--no-compensation", action="store_true", help="uncompensated writes (for comparison)")
    ap.add_argument("--scheme", default="auto",
                    help="the tuner's write scheme (TunerConfig.write_scheme): v/2, v/3 or auto (default: V/3 with held "
                         "writes widened where the line model says V/2 cannot reach the cells, V/2 elsewhere)")
    ap.add_argument("--width-ramp", type=float, default=None,
                    help="growth of a held write's width per retry at the cap (TunerConfig.width_ramp; default its own)")
    ap.add_argument("--networks", nargs="*", choices=("moons", "digits"), default=None,
                    help="also deploy these networks (none named: both) at every --r")
    ap.add_argument("--save-chips", metavar="DIR", default=None,
                    help="save each network chip's state before every tuning stage and at the end (to study a stage again)")
    args = ap.parse_args()
    if args.save_chips:
        os.makedirs(args.save_chips, exist_ok=True)
    print("write-verify through line resistance (tio2-3it, random targets 100-500 uS, 1 % tolerance; "
          "line resistance measured, then corrected)")
    print(f"  (load average at the start: {load()})")
    tune_s = {}
    for n in args.sizes:
        for width in args.width:
            for r in args.r:
                tuner = {k: v for k, v in (("write_scheme", args.scheme), ("width_ramp", args.width_ramp))
                         if v is not None}
                rep = tune_case(n, r, args.seed, width, args.cells, not args.no_compensation, **tuner)
                tune_s[(n, r, width)] = rep["tune_cpu"]
                ratio = f"  tune {rep['tune_cpu'] / tune_s[(n, 0.0, width)]:5.1f}x ideal lines (CPU)" \
                    if r > 0 and (n, 0.0, width) in tune_s else ""
                what = f"{n:>2}x{n:<2}" + (f" ({args.cells} cells)" if args.cells else "") + \
                    (f" {width * 1e6:g} us" if width else "") + (f" {rep['scheme']}" if rep.get("scheme") else "")
                print(f"  {what} r_line {r:4.2f} ohm (measured {rep['r_est']:5.2f})  converged "
                      f"{100 * rep['converged']:6.2f} %  truly within 1 % {100 * rep['truly']:6.2f} %  "
                      f"median pulses {rep['median_pulses']:4.0f}  passes {rep['passes']}  largest unselected "
                      f"{rep['max_unselected']:.2f} V  wall {rep['wall']:7.1f} s  CPU {rep['cpu']:7.1f} s "
                      f"(calibration {rep['calibration_s']:.1f} s wall){ratio}  load {load()}", flush=True)
    print(f"  (load average at the end: {load()})")
    if 64 in args.sizes:
        wall, cpu = read_time()
        print(f"  64x64 full-array read with IR drop (1 ohm, new factorization): wall {wall:.3f} s, CPU {cpu:.3f} s "
              f"(target <= 0.2 s; load {load()})")
    if args.networks is not None:
        print("networks through the chip's own product (tio2-3it chips, line resistance and device curvature "
              "measured, tuner's correction, pre-distortion by default; our pipeline's figures)")
        networks(args.seed, args.r, args.networks or ("moons", "digits"), args.save_chips)


if __name__ == "__main__":
    main()
