"""Write-verify over the mock bench (figures, not a timed test): drivers → VISA → loopback TCP →
emulated instruments → crossbar physics.

Tunes an 8×8 ``tio2-3it`` array on the k2600-707b bench (2636B drive/sense, B2902A bias, 707B
matrix) two ways and prints, per cell, the VISA round trips (reply lines the emulators sent) and
the wall time:

* host-driven loop: ``programming.tuner.tune`` on ``HardwareCrossbar`` (V/2 writes, grounded reads);
* on-instrument loop: the 2600B runs ``xbar_write_verify.lua`` — one call and one reply per cell —
  with the routing done from the host.

Also the host's overhead per round trip: wall time minus the time the emulated instruments spent
processing, per round trip — for a trivial query, and for the whole host-driven loop (driver
stack, VISA, TCP and the tuner's own work).  Targets: the on-instrument loop needs ≤ 3 round
trips per cell; host overhead per round trip ≤ 0.2 ms.

Usage: python benchmarks/bench_mock.py [--size 8x8] [--seed 0]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from instruments.hardware_crossbar import HardwareCrossbar
from instruments.station import load_station
from mock_hw.mock_bench import MockBench
from programming.tuner import TunerConfig, tune


def replies(bench: MockBench) -> int:
    return sum(s.replies for s in bench.servers.values())


def busy(bench: MockBench) -> float:
    """Time the emulated instruments spent processing (their side of every round trip), s."""
    return sum(s.busy_s for s in bench.servers.values())


def run(rows, cols, seed, on_instrument: bool):
    cfg = TunerConfig(initial_reset=False, passes=1)
    targets = np.random.default_rng(seed + 1).uniform(120e-6, 480e-6, size=(rows, cols))
    with MockBench(rows, cols, seed=seed) as bench, tempfile.TemporaryDirectory() as tmp:
        station = load_station(bench.write_station(Path(tmp) / "s.toml"))
        with HardwareCrossbar(station) as xb:
            if on_instrument:
                xb.drivers["smu"].load_write_verify()
            n0, t0, b0 = replies(bench), time.perf_counter(), busy(bench)
            route0 = 0
            if on_instrument:
                loop_trips = 0
                status = []
                for r in range(rows):
                    for c in range(cols):
                        before = replies(bench)
                        res = xb.write_verify_on_instrument(r, c, float(targets[r, c]), cfg)
                        status.append(res["status"])
                        loop_trips += 1  # the call itself; the rest of `before..after` is routing
                        route0 += replies(bench) - before - 1
                conv = float(np.mean([s == "converged" for s in status]))
            else:
                res = tune(xb, targets, cfg)
                conv = res.summary(xb)["yield"]
            wall = time.perf_counter() - t0
            trips = replies(bench) - n0
            host_per_trip = (wall - (busy(bench) - b0)) / max(trips, 1)
            # host overhead per round trip: a trivial query, many times
            ch = xb.ch["drive"]
            k0, q0, b1 = replies(bench), time.perf_counter(), busy(bench)
            for _ in range(200):
                ch.output_enabled()
            per_trip = (time.perf_counter() - q0 - (busy(bench) - b1)) / max(replies(bench) - k0, 1)
        truth = bench.chip.true_conductance[0]
        true_ok = float((np.abs(truth - targets) <= 0.01 * targets)[bench.chip.working_mask[0]].mean())
        violations = len(bench.violations)
    cells = rows * cols
    return dict(cells=cells, trips_per_cell=trips / cells, routing_per_cell=route0 / cells if on_instrument else None,
                wall_per_cell_ms=1e3 * wall / cells, converged=conv, truly_within_1pct=true_ok,
                overhead_ms=1e3 * per_trip, loop_overhead_ms=1e3 * host_per_trip, violations=violations)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="8x8")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows, cols = (int(x) for x in args.size.lower().split("x"))
    print(f"write-verify of a {rows}x{cols} tio2-3it array on the mock bench (k2600-707b), 1 % tolerance")
    host = run(rows, cols, args.seed, on_instrument=False)
    onin = run(rows, cols, args.seed, on_instrument=True)
    for name, r in (("host-driven loop", host), ("2600B on-instrument loop", onin)):
        extra = (f" (write-verify {r['trips_per_cell'] - r['routing_per_cell']:.1f} + routing "
                 f"{r['routing_per_cell']:.1f})") if r["routing_per_cell"] is not None else ""
        print(f"  {name:<26} round trips/cell {r['trips_per_cell']:7.1f}{extra}   wall/cell {r['wall_per_cell_ms']:7.1f} ms"
              f"   converged {100 * r['converged']:5.1f} %   truly within 1 % {100 * r['truly_within_1pct']:5.1f} %"
              f"   safety violations {r['violations']}")
    print(f"  host overhead per round trip (wall minus instrument time): trivial query "
          f"{host['overhead_ms']:.3f} ms, whole host-driven loop {host['loop_overhead_ms']:.3f} ms")
    wv = onin["trips_per_cell"] - onin["routing_per_cell"]
    print("targets:")
    print(f"  [{'met' if wv <= 3 else 'MISSED'}] on-instrument write-verify <= 3 round trips per cell ({wv:.1f})")
    print(f"  [{'met' if host['overhead_ms'] <= 0.2 else 'MISSED'}] host overhead per round trip <= 0.2 ms "
          f"({host['overhead_ms']:.3f} ms)")


if __name__ == "__main__":
    main()
