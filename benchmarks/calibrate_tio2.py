"""Calibration check of the ``tio2-3it`` preset against the measured 3IT TiO2 figures.

Prints, next to the measured values (Drolet et al. 2023; shared/data/tio2_3it_drift.json):

1. neighbour drift: 8×8 arrays programmed cell by cell in column-major order (one pass, V/2, no
   re-verify, initial RESET at ``--reset-amplitude``, default −2.2 V), the drift of each tuned
   cell's true conductance by the end of the array, versus the number k of cells programmed
   after it (mean and σ over chips, µS);
2. residual spread after tuning: σ of the true relative error of converged cells, binned by
   target conductance, versus σ_rel(G) = 0.691 % − 6.24e-4 %/µS · G.

The chips are the ``tio2-3it`` preset's, with its resistive lines (0.67 Ω per segment); the tuner
runs as ``xbar tune`` does by default: the line resistance and the devices' I-V curvature are
measured with reads first and every verify read is corrected for the lines
(``--no-line-correction``: raw reads, which converge on IR-biased readings).  The figures are then
the devices' behaviour (drift, tuning spread) with the lines' bias taken out as far as the tuner's
own estimate allows.

Usage: python benchmarks/calibrate_tio2.py [--chips 300] [--seed 0] [--reset-amplitude 2.2] [--no-line-correction]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from mock_hw.sim_chip import SimulatedCrossbar
from programming.ir_correction import line_estimate
from programming.schedule import cell_order
from programming.tuner import CONVERGED, TunerConfig, tune

#: measured drift table (k: (mean µS, σ µS)), raw-sample statistics of the 3IT data
MEASURED_DRIFT = {1: (-0.37, 6.68), 2: (-0.91, 8.22), 4: (-1.73, 10.03), 8: (-3.35, 11.67),
                  16: (-5.48, 13.92), 24: (-6.40, 16.82), 30: (-7.70, 18.51)}


def sigma_rel_measured(g_us):
    return 0.691 - 6.24e-4 * g_us  # %


def drift_study(n_chips: int, seed: int, preset: str = "tio2-3it", scheme: str = "v/2",
                reset_amplitude: float = 2.2, lines: bool = True):
    """The drift table, relative errors and targets; ``lines``: the tuner corrects its reads with
    the line resistance and device curvature measured first (as ``xbar tune`` by default)."""
    xb = SimulatedCrossbar(8, 8, n_chips=n_chips, preset=preset, seed=seed)
    r_line, beta = line_estimate(xb) if lines else (0.0, 0.0)
    rng = np.random.default_rng(seed + 1)
    targets = rng.uniform(*xb.programming_window, size=(n_chips, 8, 8))
    cfg = TunerConfig(passes=1, parallel=1, order="column", write_scheme=scheme,
                      reset_amplitude=reset_amplitude, line_resistance=r_line, device_beta=beta)
    rows, cols = cell_order((8, 8), "column")
    after_tune = np.full((n_chips, 8, 8), np.nan)
    status = np.zeros((n_chips, 8, 8), int)
    for r, c in zip(rows, cols):
        one = np.full((n_chips, 8, 8), np.nan)
        one[:, r, c] = targets[:, r, c]
        res = tune(xb, one, cfg)
        after_tune[:, r, c] = xb.true_conductance[:, r, c]
        status[:, r, c] = res.status[:, r, c]
    drift = (xb.true_conductance - after_tune) * 1e6
    ok = (status == CONVERGED) & xb.working_mask
    position = np.empty((8, 8), int)
    position[rows, cols] = np.arange(64)
    later = 63 - position  # cells programmed after this one
    table = {}
    for k in MEASURED_DRIFT:
        sel = ok & (later == k)[None]
        d = drift[sel]
        table[k] = (float(d.mean()), float(d.std(ddof=1)), int(d.size))
    rel = ((after_tune - targets) / targets)[ok] * 100
    g = targets[ok] * 1e6
    return table, rel, g, r_line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chips", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scheme", default="v/2")
    ap.add_argument("--reset-amplitude", type=float, default=2.2, help="initial RESET magnitude, V")
    ap.add_argument("--no-line-correction", dest="lines", action="store_false",
                    help="the tuner reads raw (no line estimate, no IR-drop correction)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    table, rel, g, r_line = drift_study(args.chips, args.seed, scheme=args.scheme,
                                        reset_amplitude=args.reset_amplitude, lines=args.lines)
    print(f"tio2-3it calibration, {args.chips} chips of 8x8, column-major, {args.scheme}, initial RESET "
          f"-{args.reset_amplitude} V, " + (f"reads corrected for a measured {r_line:.3f} ohm per segment"
                                            if args.lines else "raw reads (no line correction)")
          + f" ({time.perf_counter() - t0:.1f} s)")
    print("\nneighbour drift vs cells programmed later (µS)")
    print(f"  {'k':>3}  {'sim mean':>9} {'sim σ':>7}  {'meas mean':>9} {'meas σ':>7}  {'n':>6}")
    for k, (m, s, n) in table.items():
        mm, ms = MEASURED_DRIFT[k]
        print(f"  {k:>3}  {m:9.2f} {s:7.2f}  {mm:9.2f} {ms:7.2f}  {n:6d}")
    print("\nresidual relative error right after tuning (true conductance, %)")
    print(f"  {'G bin (µS)':>12}  {'sim mean':>8} {'sim σ':>6}  {'meas σ':>6}  {'n':>6}")
    for lo in range(100, 500, 100):
        sel = (g >= lo) & (g < lo + 100)
        print(f"  {lo:>5}-{lo + 100:<6}  {rel[sel].mean():8.3f} {rel[sel].std():6.3f}  "
              f"{sigma_rel_measured(lo + 50):6.3f}  {sel.sum():6d}")
    print(f"\n  all: mean {rel.mean():.3f} %, σ {rel.std():.3f} % (measured offset −0.589 ± 0.339 %)")


if __name__ == "__main__":
    main()
