"""In-situ training on the simulated ``asymmetric`` chip, moons (figures, not a timed test).

Trains a 2 → 8 (sigmoid) → 1 network with a bias input held at 1 in both layers, on
``load_dataset("moons")`` (800 train / 200 test points), with

* ideal floating-point mini-batch SGD in software (the reference),
* pulse SGD, the Manhattan rule, Tiki-Taka and Stochastic Hamiltonian Descent on a
  ``SimulatedCrossbar(preset="asymmetric")``, changing the weights by V/2 pulses only
  (:func:`models.insitu.train_in_situ`; Tiki-Taka and SHD with stochastic and with buffered
  transfer rounding),

and prints the test accuracy of every run and its mean, the gap to floating point, the pulses and
calls used and the wall time.  The runs of one rule are the chips of one simulated batch
(``--seeds`` chips: independent device draws, initial weights and data orders) trained in lockstep.
Target: Tiki-Taka or SHD within 5 points of floating-point SGD, where pulse SGD is ≥ 10 points worse.

Usage: python benchmarks/insitu_moons.py [--seeds 3] [--epochs 20] [--seed 0] [--rules sgd,...]
                                         [--extended] [--json REPORT.json]
"""
from __future__ import annotations

import argparse
import json
import time

from mock_hw.sim_chip import SimulatedCrossbar
from models.datasets import load_dataset
from models.insitu import InSituConfig, chip_shape_for, train_in_situ, train_software

#: label → (rule, extra settings); the label is what --rules selects
VARIANTS = {
    "sgd": ("sgd", {}),
    "manhattan": ("manhattan", {}),
    "tiki-taka": ("tiki-taka", {"buffered_transfer": False}),
    "tiki-taka-buffered": ("tiki-taka", {"buffered_transfer": True}),
    "shd": ("shd", {"buffered_transfer": False}),
    "shd-buffered": ("shd", {"buffered_transfer": True}),
}
EXTENDED = {"shd-buffered-lookahead": ("shd", {"buffered_transfer": True, "gamma": 0.3, "transfer_lr": 0.01,
                                               "transfer_every": 1})}
DESCRIPTION = {
    "float": "floating-point SGD (software)",
    "sgd": "pulse SGD",
    "manhattan": "Manhattan rule",
    "tiki-taka": "Tiki-Taka (stochastic transfer)",
    "tiki-taka-buffered": "Tiki-Taka (buffered transfer)",
    "shd": "SHD (stochastic transfer)",
    "shd-buffered": "SHD (buffered transfer)",
    "shd-buffered-lookahead": "SHD buffered + γ look-ahead (ours)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="runs per rule (chips of one simulated batch)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="seeds the chips and every run")
    ap.add_argument("--rules", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--extended", action="store_true", help="also SHD with our γ look-ahead extension")
    ap.add_argument("--verbose", action="store_true", help="one line per epoch")
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args()
    variants = dict(VARIANTS, **EXTENDED)
    chosen = [r.strip() for r in args.rules.split(",") if r.strip()] + (list(EXTENDED) if args.extended else [])
    unknown = [r for r in chosen if r not in variants]
    if unknown or args.seeds < 1 or args.epochs < 1:
        ap.error(f"unknown rule(s) {unknown}" if unknown else "--seeds and --epochs must be >= 1")

    ds = load_dataset("moons", seed=0)
    t_all = time.perf_counter()
    base = InSituConfig(rule="sgd", epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    results = {"float": train_software(ds, 8, base, runs=args.seeds)}
    print(f"moons (800 train / 200 test), 2-8-1 sigmoid, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.seeds} runs per rule; chips: SimulatedCrossbar(preset='asymmetric')")
    print("pulses/run: device pulses of training per run (init: centring, step calibration and initial "
          "weights); calls: xb.pulse + xb.mvm calls for all runs together")
    print(f"{'rule':<38} {'test accuracy per run':<26} {'mean':>6} {'vs float':>9} "
          f"{'pulses/run':>11} {'init':>6} {'calls':>7} {'wall':>7}")

    def show(label, res):
        accs = " ".join(f"{a:.3f}" for a in res.final_accuracy)
        gap = 100 * (res.mean_accuracy - results["float"].mean_accuracy)
        print(f"{DESCRIPTION[label]:<38} {accs:<26} {res.mean_accuracy:6.3f} {gap:+8.1f}p "
              f"{res.pulses.mean():11.0f} {res.init_pulses.mean():6.0f} {res.pulse_calls + res.mvm_calls:7d} "
              f"{res.wall_s:6.1f}s", flush=True)

    show("float", results["float"])
    for label in chosen:
        rule, extra = variants[label]
        cfg = InSituConfig(rule=rule, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, **extra)
        xb = SimulatedCrossbar(*chip_shape_for(2, 8, 1, cfg), n_chips=args.seeds, preset="asymmetric", seed=args.seed)
        results[label] = train_in_situ(xb, ds, 8, cfg, log=print if args.verbose else None)
        show(label, results[label])

    ref = results["float"].mean_accuracy
    if chosen:
        print(f"\nmeasured push-pull pulse step dw ≈ {results[chosen[0]].dw.mean():.3f} weight units "
              f"(1.5 V, 100 ns; w_max = {base.w_max:g} at the full programming window)")
    if "sgd" in results:
        gap_sgd = 100 * (ref - results["sgd"].mean_accuracy)
        print(f"pulse SGD is {gap_sgd:.1f} points below floating point (target >= 10): "
              f"{'yes' if gap_sgd >= 10 else 'no'}")
    for label in chosen:
        if variants[label][0] in ("tiki-taka", "shd"):
            gap = 100 * (ref - results[label].mean_accuracy)
            print(f"{DESCRIPTION[label]:<38} within 5 points of floating point: "
                  f"{'yes' if gap <= 5 else 'no'} ({gap:.1f} points below)")
    print(f"total wall time {time.perf_counter() - t_all:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: r.summary() for k, r in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
