"""Write-verify over the mock bench (figures, not a timed test): drivers → VISA → loopback TCP →
emulated instruments → crossbar physics, at the pulse widths real instruments give.

For each station variant, pulse width, write scheme and loop it tunes an array and prints: VISA
round trips per cell (reply lines the emulators sent), wall time per cell, median pulses per
cell, the share of working cells *truly* within 1 % (the chip's own conductances), safety
violations and the largest voltage any unselected cell saw in any write:

* k2600-707b-smu (2636B drive/sense, B2902A bias, 707B matrix): 100 µs pulses from the 2636B (its
  shortest specified pulse), V/2 and V/3, host loop (the on-instrument loop: below);
* k2600-707b (the same with a 33512B pulse generator giving the write pulses): 1 µs, the 3IT recipe,
  V/2 and V/3;
* b2900-board (B2902A drive, 2450 sense, serial board): 50 µs (the B2902A's shortest), V/2;
* the 64×64 simulated chip at 100 µs and 50 µs (same tuner, vectorized; the write scheme
  ``auto``, as ``benchmarks/ir_drop.py``: V/3 there, from the tuner's line model).

Every host row runs as ``xbar tune --access-estimate 1`` does: the line resistance and the
devices' I-V curvature measured first with reads only (``--line-estimate auto``), with the bench's
known access path (one matrix relay and the leads, :data:`~mock_hw.bench_physics.R_RELAY_PATH`:
what an operator measures once on a bench, not a property of the chip), the tuner's default settings (passes: ``--passes``, default
TunerConfig's), amplitudes from the auto schedule (``programming.auto_schedule``) at every width
but 1 µs (the 3IT recipe).  The bench's clock is emulated instrument time and its chip ages by it
(``--time-scale``, chip seconds per bench second, default 1: what a real chip does while the
array is tuned).  The same 8×8 run is repeated with every emulator reply delayed 2 ms (a loaded
host) and must give identical results.  Also the host's overhead per round trip (wall time minus
the time the emulated instruments spent processing).

Targets: ≥ 99 % of working cells truly within 1 % at 100 µs and 50 µs (8×8 bench, 64×64 chip);
median ≤ 25 pulses per cell; V/3 within 1 point of V/2; on-instrument loop ≤ 3 round trips per
cell in all and ≥ 99 % truly within 1 %; results identical idle and loaded; host overhead per round
trip ≤ 0.2 ms.

The on-instrument rows (:func:`on_instrument_rows`; ``--on-instrument-only`` prints just them): the
2636B's script routes every cell through the 707B over TSP-Link, tunes batches of cells and reads
them back, one call each; with and without the host's IR-drop correction (a line calibration
first, its round trips counted apart); V/2 and V/3 (the script sets the B2902A channel holding the
unselected columns over TSP-Net: those exchanges are instrument to instrument, printed apart);
benches it cannot serve say why in one line.

Usage: python benchmarks/bench_mock.py [--size 8x8] [--seed 0] [--passes N] [--time-scale 1] [--on-instrument-only]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from instruments.hardware_crossbar import HardwareCrossbar, station_limits
from instruments.station import load_station
from mock_hw.mock_bench import MockBench
from mock_hw.sim_chip import SimulatedCrossbar
from programming.auto_schedule import auto_schedule, with_width
from mock_hw.bench_physics import R_RELAY_PATH
from programming.ir_correction import line_estimate as estimate_lines
from programming.tuner import TunerConfig, choose_write_scheme, tune


def replies(bench: MockBench) -> int:
    return sum(s.replies for s in bench.servers.values())


def busy(bench: MockBench) -> float:
    """Time the emulated instruments spent processing (their side of every round trip), s."""
    return sum(s.busy_s for s in bench.servers.values())


def schedule(xb, width: float, scheme: str, passes: int | None, **lines) -> TunerConfig:
    """The tuner's defaults (``passes`` None: TunerConfig's) at ``width``, with ``xbar tune``'s
    schedule: the recipe at 1 µs, else the auto schedule probed on the chip — through the tuner's
    line model where ``lines`` (TunerConfig's line_resistance, access_resistance, device_beta,
    write_compensation) give it, as ``xbar tune`` probes after measuring the lines."""
    cfg = with_width(TunerConfig(write_scheme=scheme, passes=passes or TunerConfig().passes, **lines), width)
    return cfg if width == TunerConfig().width else auto_schedule(xb, cfg)[0]


def run_bench(rows, cols, seed, variant, width, scheme, passes, time_scale, on_instrument=False, latency=0.0,
              line_estimate=False):
    targets = np.random.default_rng(seed + 1).uniform(120e-6, 480e-6, size=(rows, cols))
    with MockBench(rows, cols, seed=seed, time_scale=time_scale) as bench, tempfile.TemporaryDirectory() as tmp:
        for emu in bench.emulators.values():
            emu.faults.latency_s = latency
        station = load_station(bench.write_station(Path(tmp) / "s.toml", variant=variant, write_scheme=scheme))
        if on_instrument:                   # the script writes with the 2636B, never the 33512B (xbar tune
            station = station.without_pulse_generator()     # --on-instrument): its widths, probe, routing
        lim = station_limits(station)
        if not lim.width_min <= width <= lim.width_max:
            return None                     # the drive instrument cannot source it
        with HardwareCrossbar(station) as xb:
            calib_trips, r_line, lines = 0, 0.0, {}
            if line_estimate:               # xbar calibrate-lines (host reads), once per chip, first
                c0 = replies(bench)
                r_line, beta = estimate_lines(xb, R_RELAY_PATH)
                # (the on-instrument script writes uncompensated: xbar tune --on-instrument)
                lines = dict(line_resistance=r_line, access_resistance=R_RELAY_PATH, device_beta=beta,
                             write_compensation=not on_instrument)
                calib_trips = replies(bench) - c0
            cfg = schedule(xb, width, scheme, passes, **lines)
            n0, t0, b0 = replies(bench), time.perf_counter(), busy(bench)
            loop0, lan0 = bench.emulators["K2600"].wv_runs, bench.emulators["K2600"].tspnet_exchanges
            res = tune(xb, targets, cfg, on_instrument=on_instrument)
            wall = time.perf_counter() - t0
            trips = replies(bench) - n0
            loop_calls = bench.emulators["K2600"].wv_runs - loop0
            lan = bench.emulators["K2600"].tspnet_exchanges - lan0
            host_per_trip = (wall - (busy(bench) - b0)) / max(trips, 1)
            ch = xb.ch["drive"]
            k0, q0, b1 = replies(bench), time.perf_counter(), busy(bench)
            for _ in range(200):
                ch.output_enabled()
            per_trip = (time.perf_counter() - q0 - (busy(bench) - b1)) / max(replies(bench) - k0, 1)
        bench.bench.age_chip()
        truth = bench.chip.true_conductance[0]
        working = bench.chip.working_mask[0]
        true_ok = float((np.abs(truth - targets) <= 0.01 * targets)[working].mean())
        cells = rows * cols
        return dict(trips=trips / cells, calls_per_cell=loop_calls / cells, wall_ms=1e3 * wall / cells,
                    median_pulses=float(np.median(res.pulses[0][working])), true_ok=true_ok,
                    violations=len(bench.violations), max_unsel=bench.bench.max_unselected,
                    max_write=max((w.v_selected for w in bench.bench.writes), default=0.0),
                    overhead_ms=1e3 * per_trip, loop_overhead_ms=1e3 * host_per_trip,
                    calib_trips=calib_trips, r_line=r_line, lan_per_cell=lan / cells,
                    final=res.final.copy(), truth=truth.copy(), start=cfg.v_set_start)


def run_sim(n, seed, width, scheme, passes):
    """The simulated chip as ``xbar tune --chip sim`` tunes it: line resistance measured (reads
    only, ``--line-estimate auto``), then the schedule at ``width`` probed through the tuner's line
    model (and ``scheme`` 'auto' chosen from it)."""
    xb = SimulatedCrossbar(n, n, preset="tio2-3it", seed=seed)
    r_line, beta = estimate_lines(xb)
    cfg = with_width(TunerConfig(write_scheme=scheme, passes=passes or TunerConfig().passes, line_resistance=r_line,
                                 device_beta=beta), width)
    cfg = choose_write_scheme(xb, cfg if width == TunerConfig().width else auto_schedule(xb, cfg)[0])
    targets = np.random.default_rng(seed + 1).uniform(120e-6, 480e-6, size=(n, n))
    t0 = time.perf_counter()
    res = tune(xb, targets, cfg)
    wall = time.perf_counter() - t0
    working = xb.working_mask[0]
    ok = (np.abs(xb.true_conductance[0] - targets) <= 0.01 * targets)[working]
    return dict(true_ok=float(ok.mean()), median_pulses=float(np.median(res.pulses[0][working])),
                wall_ms=1e3 * wall / n / n, start=cfg.v_set_start, scheme=cfg.write_scheme)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="8x8")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--passes", type=int, default=None, help="tuning passes at most (default: TunerConfig's)")
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--sim-size", type=int, default=64)
    ap.add_argument("--on-instrument-only", action="store_true", help="print only the on-instrument rows")
    args = ap.parse_args()
    rows, cols = (int(x) for x in args.size.lower().split("x"))
    if args.on_instrument_only:
        on_instrument_rows(rows, cols, args.seed, args.passes, args.time_scale)
        return
    passes = args.passes or TunerConfig().passes
    print(f"write-verify of a {rows}x{cols} tio2-3it array on the mock bench, 1 % tolerance, at most {passes} passes, "
          f"line resistance measured first (xbar tune's --line-estimate auto), chip aging x{args.time_scale:g}; "
          f"load average {os.getloadavg()[0]:.1f}")
    smu = "k2600-707b-smu"
    cases = [("k2600-707b", 1e-6, "v/2", False), ("k2600-707b", 1e-6, "v/3", False), (smu, 1e-4, "v/2", False),
             (smu, 1e-4, "v/3", False),
             ("b2900-board", 5e-5, "v/2", False)]
    out = {}
    hdr = (f"  {'variant':<14} {'width':>6} {'scheme':<6} {'loop':<13} {'start V':>7} {'trips/cell':>10} {'wall/cell':>10} "
           f"{'med pulses':>10} {'truly<1%':>8} {'viol':>4} {'max unsel V':>11} {'(of write V)':>12}")
    print(hdr)
    for variant, width, scheme, onin in cases:
        r = run_bench(rows, cols, args.seed, variant, width, scheme, args.passes, args.time_scale, onin,
                      line_estimate=True)
        loop = "on-instrument" if onin else "host"
        if r is None:
            print(f"  {variant:<14} {width * 1e6:4g}µs {scheme:<6} {loop:<13} (the drive instrument cannot source it)")
            continue
        out[(variant, width, scheme, onin)] = r
        print(f"  {variant:<14} {width * 1e6:4g}µs {scheme:<6} {loop:<13} {r['start']:7.3f} {r['trips']:10.1f} "
              f"{r['wall_ms']:8.1f}ms {r['median_pulses']:10.0f} {100 * r['true_ok']:7.1f}% {r['violations']:4d} "
              f"{r['max_unsel']:11.3f} {r['max_write']:12.3f}")
    loaded = run_bench(rows, cols, args.seed, smu, 1e-4, "v/2", args.passes, args.time_scale, latency=2e-3,
                       line_estimate=True)
    base = out[(smu, 1e-4, "v/2", False)]
    same = np.array_equal(loaded["final"], base["final"]) and np.array_equal(loaded["truth"], base["truth"])
    print(f"  idle vs loaded host (every reply 2 ms late): results {'identical' if same else 'DIFFERENT'}")
    sims = {}
    for width in (1e-4, 5e-5):
        sims[width] = s = run_sim(args.sim_size, args.seed, width, "auto", args.passes)
        print(f"  simulated {args.sim_size}x{args.sim_size} {width * 1e6:4g}µs auto ({s['scheme']})  start {s['start']:.3f} V   "
              f"truly<1% {100 * s['true_ok']:5.1f}%   median pulses {s['median_pulses']:.0f}   "
              f"wall/cell {s['wall_ms']:.2f} ms")
    host = out.get(("k2600-707b", 1e-6, "v/2", False), out[(smu, 1e-4, "v/2", False)])
    print(f"  host overhead per round trip (wall minus instrument time): trivial query "
          f"{host['overhead_ms']:.3f} ms, whole host-driven loop {host['loop_overhead_ms']:.3f} ms")

    def mark(ok):
        return "met" if ok else "MISSED"

    v2, v3 = out[(smu, 1e-4, "v/2", False)], out[(smu, 1e-4, "v/3", False)]
    b50 = out[("b2900-board", 5e-5, "v/2", False)]
    print("targets:")
    for name, r in (("8x8 bench 100 µs V/2", v2), ("8x8 bench 100 µs V/3", v3), ("8x8 bench 50 µs V/2", b50),
                    (f"{args.sim_size}x{args.sim_size} sim 100 µs", sims[1e-4]),
                    (f"{args.sim_size}x{args.sim_size} sim 50 µs", sims[5e-5])):
        print(f"  [{mark(r['true_ok'] >= 0.99)}] {name}: >= 99 % truly within 1 % ({100 * r['true_ok']:.1f} %); "
              f"[{mark(r['median_pulses'] <= 25)}] median <= 25 pulses ({r['median_pulses']:.0f})")
    for name, a2, a3 in (("100 µs", v2, v3), ("1 µs (33512B)", out[("k2600-707b", 1e-6, "v/2", False)],
                                               out[("k2600-707b", 1e-6, "v/3", False)])):
        print(f"  [{mark(a3['true_ok'] >= a2['true_ok'] - 0.01)}] {name}: V/3 within 1 point of V/2 "
              f"({100 * a3['true_ok']:.1f} vs {100 * a2['true_ok']:.1f} %)")
    print(f"  [{mark(all(r['violations'] == 0 for r in out.values()))}] 0 safety violations; largest unselected "
          f"voltage / write voltage: V/2 {v2['max_unsel'] / v2['max_write']:.3f}, V/3 {v3['max_unsel'] / v3['max_write']:.3f}")
    print(f"  [{mark(same)}] identical results on an idle and a loaded host")
    print(f"  [{mark(host['overhead_ms'] <= 0.2)}] host overhead per round trip <= 0.2 ms ({host['overhead_ms']:.3f} ms)")
    on_instrument_rows(rows, cols, args.seed, args.passes, args.time_scale)


def on_instrument_rows(rows, cols, seed, passes, time_scale) -> None:
    """The on-instrument loop (the 2636B's script routes each cell through the 707B over TSP-Link,
    tunes a batch of cells per call and reads them back in one call), per station variant, width
    and scheme: round trips per cell in all (routing and read-backs included; the line
    calibration, when used, is counted apart), wall time per cell, share truly within 1 %,
    violations, largest unselected-cell voltage.  Benches the script cannot serve say why."""
    from instruments.station import load_station as load

    print(f"on-instrument loop (2636B script, 707B on TSP-Link), {rows}x{cols}, chip aging x{time_scale:g}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  {'variant':<14} {'width':>6} {'scheme':<6} {'IR corr':<8} {'trips/cell':>10} {'wall/cell':>10} "
          f"{'med pulses':>10} {'truly<1%':>8} {'viol':>4} {'max unsel V':>11} {'(of write V)':>12}")
    results, ran = [], []
    for variant, width, scheme, corr in (("k2600-707b-smu", 1e-4, "v/2", False), ("k2600-707b-smu", 1e-4, "v/2", True),
                                         ("k2600-707b", 1e-4, "v/2", True), ("k2600-707b-smu", 1e-4, "v/3", True),
                                         ("k2600-b2200", 1e-4, "v/2", True), ("b2900-board", 5e-5, "v/2", True)):
        with MockBench(rows, cols) as probe, tempfile.TemporaryDirectory() as tmp:
            st = load(probe.write_station(Path(tmp) / "s.toml", variant=variant,
                                          write_scheme=scheme if variant != "b2900-board" else "v/2"))
            problem = st.on_instrument_problem(scheme)
        if problem:
            why = problem.split(": ", 1)[1] if problem.startswith("station file ") else problem
            print(f"  {variant:<14} {width * 1e6:4g}µs {scheme:<6} {'':<8} not run: {why}")
            continue
        r = run_bench(rows, cols, seed, variant, width, scheme, passes, time_scale, True, line_estimate=corr)
        results.append(r)
        ran.append((variant, width, scheme, corr))
        calib = f"  (line calibration {r['calib_trips'] / rows / cols:.1f} trips/cell, {r['r_line']:.2f} Ω)" if corr else ""
        if r["lan_per_cell"]:
            calib += f"  (2636B-B2902A TSP-Net exchanges {r['lan_per_cell']:.0f}/cell, not host round trips)"
        if variant == "k2600-707b":
            calib += "  (the 33512B idle: the script writes with the 2636B)"
        print(f"  {variant:<14} {width * 1e6:4g}µs {scheme:<6} {'yes' if corr else 'no':<8} {r['trips']:10.2f} "
              f"{r['wall_ms']:8.1f}ms {r['median_pulses']:10.0f} {100 * r['true_ok']:7.1f}% {r['violations']:4d} "
              f"{r['max_unsel']:11.3f} {r['max_write']:12.3f}{calib}")
    trips = ", ".join(f"{r['trips']:.2f}" for r in results)
    # the target is the tuner's on a chip with resistive lines: with its IR-drop correction (the row
    # without it shows why the correction is needed)
    corrected = [r for r, run in zip(results, ran) if run[3]]
    share = ", ".join(f"{100 * r['true_ok']:.1f} %" for r in corrected)
    ratio = ", ".join(f"{r['max_unsel'] / r['max_write']:.3f}" for r in results)
    print("on-instrument targets:")
    print(f"  [{'met' if all(r['trips'] <= 3 for r in results) else 'MISSED'}] <= 3 round trips per cell ({trips})")
    print(f"  [{'met' if all(r['true_ok'] >= 0.99 for r in corrected) else 'MISSED'}] >= 99 % truly within 1 %, "
          f"IR-corrected rows ({share})")
    print(f"  [{'met' if all(r['violations'] == 0 for r in results) else 'MISSED'}] 0 violations; largest unselected / "
          f"write voltage {ratio} (V/2: 0.5, V/3: 0.333)")
    v2 = [r for r, (v, w, s, c) in zip(results, ran) if (v, s, c) == ("k2600-707b-smu", "v/2", True)]
    if v2:      # the same run with every emulator reply 2 ms late (a loaded host)
        late = run_bench(rows, cols, seed, "k2600-707b-smu", 1e-4, "v/2", passes, time_scale, True, latency=2e-3,
                         line_estimate=True)
        same = np.array_equal(late["final"], v2[0]["final"]) and np.array_equal(late["truth"], v2[0]["truth"])
        print(f"  [{'met' if same else 'MISSED'}] identical results on an idle and a loaded host (2636B, V/2, "
              f"every reply 2 ms late)")
    v3 = [r for r, (v, w, s, c) in zip(results, ran) if (v, s, c) == ("k2600-707b-smu", "v/3", True)]
    if v2 and v3:
        ok = v3[0]["true_ok"] >= v2[0]["true_ok"] - 0.01
        print(f"  [{'met' if ok else 'MISSED'}] on-instrument V/3 within 1 point of V/2 "
              f"({100 * v3[0]['true_ok']:.1f} vs {100 * v2[0]['true_ok']:.1f} %)")


if __name__ == "__main__":
    main()
