"""The ``xbar`` command line.

    xbar tune --chip sim [--preset NAME] --size 64x64 --targets random|FILE.npy --tolerance 0.01
              [--no-reset] [--passes N] --seed S --json REPORT.json
    xbar read --chip sim --size RxC --seed S --out MAP.npy
    xbar mock-bench --station-out STATION.toml [--preset NAME] [--size RxC] [--seed S]
    xbar station check STATION.toml
    xbar tune --station STATION.toml --size 4x4 ...      (any command: --station instead of --chip)
    xbar train / deploy / evaluate ...                    (networks: see procedures/cli_models.py)

Conductances are printed in µS; files hold SI units (S).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mock_hw.presets import DEFAULT_PRESET, PRESETS
from programming.schedule import ORDERS
from programming.tuner import TunerConfig, tune

from instruments.roles import InstrumentError
from mock_hw.mock_bench import VARIANTS

from .chips import CHIPS, make_targets, open_chip, parse_size
from .cli_models import add_insitu_command, add_model_commands, cmd_deploy, cmd_evaluate, cmd_insitu, cmd_train
from .tables import format_read_summary, format_tune_summary


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as exc:  # argparse shows ArgumentTypeError messages verbatim
        raise argparse.ArgumentTypeError(str(exc)) from None


def _chip_args(p: argparse.ArgumentParser, default_size: str) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--chip", choices=CHIPS, default="sim", help="chip to use (default: the simulated chip)")
    which.add_argument("--station", type=Path, default=None, metavar="STATION.toml",
                       help="drive the bench this station file describes instead")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help="simulated chip preset")
    p.add_argument("--size", default=default_size, type=_size, help="array size ROWSxCOLS")
    p.add_argument("--chips", type=int, default=1, help="simulated chips run at once (Monte Carlo batch)")
    p.add_argument("--line-resistance", type=float, default=None, metavar="OHM",
                   help="line resistance per segment, Ω (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the chip and of every random choice")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xbar", description="Passive memristor crossbar lab suite")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tune", help="tune every cell to a target conductance by write-verify")
    _chip_args(t, "16x16")
    t.add_argument("--targets", default="random", help="'random' (uniform in the window) or FILE.npy (S)")
    t.add_argument("--tolerance", type=float, default=0.01, help="relative tolerance (0.01 = 1 %%)")
    t.add_argument("--no-reset", action="store_true", help="skip the initial RESET pulse of each cell")
    t.add_argument("--passes", type=int, default=3, help="tuning passes incl. re-verify passes")
    t.add_argument("--order", choices=ORDERS, default="row", help="cell order")
    t.add_argument("--parallel", type=int, default=None,
                   help="cells of a chip tuned concurrently (default: the chip's preference)")
    t.add_argument("--scheme", default="v/2", choices=["v/2", "v/3", "float"], help="write biasing scheme")
    t.add_argument("--max-pulses", type=int, default=200, help="pulse budget per cell per pass")
    t.add_argument("--json", type=Path, default=None, metavar="REPORT.json", help="write the report here")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    m = sub.add_parser("mock-bench", help="run emulated instruments wired to a simulated crossbar")
    m.add_argument("--station-out", type=Path, required=True, metavar="STATION.toml",
                   help="write a station file pointing at the emulated instruments here")
    m.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    m.add_argument("--size", default="8x8", type=_size)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--variant", default="k2600-707b", choices=VARIANTS,
                   help="which instruments the station file uses")
    m.add_argument("--realistic-timing", action="store_true",
                   help="add realistic latencies (measurement integration, relay switching, pulse set-up)")
    m.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)  # tests: stop after N s

    s = sub.add_parser("station", help="station file tools")
    ssub = s.add_subparsers(dest="station_command", required=True)
    c = ssub.add_parser("check", help="connect, check identities and error queues, print the routing")
    c.add_argument("file", type=Path, metavar="STATION.toml")

    r = sub.add_parser("read", help="read the conductance map of the array")
    _chip_args(r, "8x8")
    r.add_argument("--scheme", default="ground", choices=["ground", "float"], help="read biasing scheme")
    r.add_argument("--out", type=Path, default=None, metavar="MAP.npy", help="save the map (S) here")
    add_model_commands(sub, _chip_args)
    add_insitu_command(sub)
    return parser


def cmd_tune(args) -> int:
    cfg = TunerConfig(tolerance=args.tolerance, initial_reset=not args.no_reset, passes=args.passes,
                      order=args.order, parallel=args.parallel, write_scheme=args.scheme,
                      max_pulses=args.max_pulses, seed=args.seed)
    with open_chip(args.chip, args.size, args.preset, args.seed, args.chips, args.line_resistance,
                   args.station) as xb:
        targets = make_targets(args.targets, xb, args.seed, block=args.size)
        result = tune(xb, targets, cfg, progress=not args.quiet)
        report = result.summary(xb)
    chip = f"station {args.station}" if args.station else args.chip
    report = {"chip": chip, "preset": None if args.station else args.preset, "size": list(args.size),
              "chips": args.chips, "seed": args.seed, **report}
    print(format_tune_summary(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0


def cmd_read(args) -> int:
    with open_chip(args.chip, args.size, args.preset, args.seed, args.chips, args.line_resistance,
                   args.station) as xb:
        g = xb.read_array(scheme=args.scheme)
    print(format_read_summary(g, args.scheme))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.out, g[0] if g.shape[0] == 1 else g)
        print(f"map written to {args.out} (S)")
    return 0


def cmd_mock_bench(args) -> int:
    import time

    from mock_hw.mock_bench import MockBench

    with MockBench(*args.size, preset=args.preset, seed=args.seed, realistic_timing=args.realistic_timing) as bench:
        path = bench.write_station(args.station_out, variant=args.variant)
        print(f"mock bench ({args.preset}, {args.size[0]}x{args.size[1]}, seed {args.seed}) running on 127.0.0.1:")
        for name, server in bench.servers.items():
            print(f"  {name:<6} {bench.resource(name)}")
        print(f"station file: {path}\nCtrl-C to stop", flush=True)
        t0 = time.monotonic()
        try:
            while args.duration is None or time.monotonic() - t0 < args.duration:
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        if bench.violations:
            print(f"safety violations recorded: {len(bench.violations)}")
            for v in bench.violations[:20]:
                print(f"  {v.kind}: {v.detail}")
    print("mock bench stopped")
    return 0


def cmd_station_check(args) -> int:
    from instruments.hardware_crossbar import check_station
    from instruments.station import load_station

    st = load_station(args.file)
    report = check_station(st)
    print(f"station {st.name} ({args.file}): {st.rows}x{st.cols}, writes {st.write_scheme}, "
          f"read {st.v_read} V, limits |V| <= {st.limits.v_max} V, compliance {st.limits.i_compliance} A")
    for e in report:
        state = "ok" if e["ok"] else "PROBLEM"
        print(f"  [{state}] {e['name']:<8} {e['driver']:<15} {e['resource']}")
        print(f"         identity: {e.get('identity')!r} (expected to contain {e['expected']!r})")
        if e.get("errors"):
            print(f"         error queue: {e['errors']}")
        if e.get("problem"):
            print(f"         {e['problem']}")
    print("routing:")
    for what, where in st.routing_table():
        print(f"  {what:<22} -> {where}")
    return 0 if all(e["ok"] for e in report) else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "tune":
            return cmd_tune(args)
        if args.command == "mock-bench":
            return cmd_mock_bench(args)
        if args.command == "station":
            return cmd_station_check(args)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "deploy":
            return cmd_deploy(args, open_chip)
        if args.command == "evaluate":
            return cmd_evaluate(args, open_chip)
        if args.command == "insitu":
            return cmd_insitu(args, open_chip)
        return cmd_read(args)
    except (ValueError, OSError, InstrumentError) as exc:
        print(f"xbar {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xbar {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
