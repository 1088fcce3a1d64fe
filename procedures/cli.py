"""The ``xbar`` command line.

    xbar form | iv | read | tune | deploy | infer | retention | endurance  [--chip sim | --station FILE]
         [--out RUN_DIR] [--resume RUN_DIR] ...   (operator procedures: see procedures/procedure_commands.py)
    xbar show RUN_DIR / xbar plot RUN_DIR
    xbar mock-bench --station-out STATION.toml [--preset NAME] [--size RxC] [--seed S] [--time-scale X]
    xbar station check STATION.toml
    xbar tune --station STATION.toml --size 4x4 ...      (any command: --station instead of --chip)
    xbar train / deploy / evaluate ...                    (networks: see procedures/cli_models.py)

Conductances are printed in µS; files hold SI units (S).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from mock_hw.presets import DEFAULT_PRESET, PRESETS

from instruments.roles import InstrumentError
from mock_hw.mock_bench import VARIANTS

from .chips import CHIPS, open_chip, parse_size
from .cli_runs import add_run_tools, cmd_plot, cmd_procedure, cmd_show
from .gui import add_gui_command, cmd_gui
from .procedure_commands import FORMATTERS, add_procedure_commands
from .cli_models import add_insitu_command, add_model_commands, cmd_evaluate, cmd_insitu, cmd_train


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

    add_procedure_commands(sub)
    add_run_tools(sub)
    add_gui_command(sub)
    m = sub.add_parser("mock-bench", help="run emulated instruments wired to a simulated crossbar")
    m.add_argument("--station-out", type=Path, required=True, metavar="STATION.toml",
                   help="write a station file pointing at the emulated instruments here")
    m.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    m.add_argument("--size", default="8x8", type=_size)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--variant", default="k2600-707b", choices=VARIANTS,
                   help="which instruments the station file uses")
    m.add_argument("--pristine", action="store_true", help="a chip of unformed devices (to practise forming)")
    m.add_argument("--realistic-timing", action="store_true",
                   help="add realistic latencies (measurement integration, relay switching, pulse set-up)")
    m.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                   help="the emulated chip ages X chip seconds (retention loss) per wall second "
                        "(default 1; 0 freezes it, 1000 shows a day's loss in ~86 s)")
    m.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)  # tests: stop after N s

    s = sub.add_parser("station", help="station file tools")
    ssub = s.add_subparsers(dest="station_command", required=True)
    c = ssub.add_parser("check", help="connect, check identities and error queues, print the routing")
    c.add_argument("file", type=Path, metavar="STATION.toml")

    add_model_commands(sub, _chip_args)
    add_insitu_command(sub, _chip_args)
    return parser


def cmd_mock_bench(args) -> int:
    import time

    from mock_hw.bench_physics import check_time_scale
    from mock_hw.mock_bench import MockBench

    time_scale = check_time_scale(args.time_scale, "--time-scale")
    with MockBench(*args.size, preset=args.preset, seed=args.seed, realistic_timing=args.realistic_timing,
                   pristine=args.pristine, time_scale=time_scale) as bench:
        path = bench.write_station(args.station_out, variant=args.variant)
        aging = "" if time_scale == 1 else f", aging x{time_scale:g}"
        print(f"mock bench ({args.preset}, {args.size[0]}x{args.size[1]}, seed {args.seed}{aging}) running on 127.0.0.1:")
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
        if getattr(args, "procedure", None) is not None:
            return cmd_procedure(args, FORMATTERS.get(args.command))
        if args.command == "gui":
            return cmd_gui(args)
        if args.command == "show":
            return cmd_show(args)
        if args.command == "plot":
            return cmd_plot(args)
        if getattr(args, "func", None) is not None:
            return args.func(args, open_chip)
        if args.command == "mock-bench":
            return cmd_mock_bench(args)
        if args.command == "station":
            return cmd_station_check(args)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "evaluate":
            return cmd_evaluate(args, open_chip)
        if args.command == "insitu":
            return cmd_insitu(args, open_chip)
        raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover
    except (ValueError, OSError, InstrumentError) as exc:
        print(f"xbar {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xbar {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
