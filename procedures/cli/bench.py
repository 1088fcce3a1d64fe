"""``xbar mock-bench`` (emulated instruments wired to a simulated crossbar) and ``xbar station check``."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_chip_options
from .registry import command


def _mock_bench_args(m: argparse.ArgumentParser) -> None:
    from mock_hw.mock_bench import VARIANTS

    m.add_argument("--station-out", type=Path, required=True, metavar="STATION.toml",
                   help="write a station file pointing at the emulated instruments here")
    add_chip_options(m, "8x8", only=("preset", "size", "seed"))
    m.add_argument("--variant", default="k2600-707b", choices=VARIANTS,
                   help="which instruments the station file uses")
    m.add_argument("--pristine", action="store_true", help="a chip of unformed devices (to practise forming)")
    m.add_argument("--realistic-timing", action="store_true",
                   help="add realistic latencies (measurement integration, relay switching, pulse set-up)")
    m.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                   help="the emulated chip ages X chip seconds (retention loss) per bench second "
                        "(default 1; 0 freezes it, 1000 shows a day's loss in ~86 s)")
    m.add_argument("--clock", choices=("emulated", "wall"), default="emulated",
                   help="the bench's time: emulated instrument time (integration, settling, relays, pulses; "
                        "results never depend on the host's load; default) or the host's wall clock (for "
                        "demonstrations: the host's waits, e.g. xbar retention's, age the chip too)")
    m.add_argument("--record", type=Path, default=None, metavar="RECORD.json",
                   help="keep the bench's safety record here (hot switches, shorts, limit violations, outputs "
                        "and relays, largest unselected-cell voltage): JSON, rewritten on every violation and "
                        "when the bench stops (Ctrl-C or SIGTERM)")
    m.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)  # stop after N s


def start_mock_bench(args, **station):
    """The :class:`~mock_hw.mock_bench.MockBench` ``xbar mock-bench`` options describe, serving, with
    its station file written to ``--station-out`` (``station``: more settings of
    :meth:`~mock_hw.mock_bench.MockBench.station_toml`); returns (bench, station file)."""
    from mock_hw.bench_physics import check_time_scale
    from mock_hw.mock_bench import MockBench

    time_scale = check_time_scale(args.time_scale, "--time-scale")
    bench = MockBench(*args.size, preset=args.preset, seed=args.seed, realistic_timing=args.realistic_timing,
                      pristine=args.pristine, time_scale=time_scale, clock=args.clock)
    try:
        return bench, bench.write_station(args.station_out, variant=args.variant, **station)
    except BaseException:
        bench.close()
        raise


@command("mock-bench", help="run emulated instruments wired to a simulated crossbar", arguments=_mock_bench_args)
def cmd_mock_bench(args) -> int:
    from mock_hw.mock_bench import frozen_heap

    bench, path = start_mock_bench(args)
    time_scale = args.time_scale
    with bench, frozen_heap():          # the process only serves meanwhile
        aging = ("" if time_scale == 1 else f", aging x{time_scale:g}") + ("" if args.clock == "emulated" else ", wall clock")
        print(f"mock bench ({args.preset}, {args.size[0]}x{args.size[1]}, seed {args.seed}{aging}) running on 127.0.0.1:")
        for name, server in bench.servers.items():
            print(f"  {name:<6} {bench.resource(name)}")
        if args.record is not None:
            print(f"safety record: {bench.record_to(args.record)}")
        print(f"station file: {path}\nCtrl-C to stop", flush=True)
        _wait_for_stop(args.duration)
        if bench.violations:
            print(f"safety violations recorded: {len(bench.violations)}")
            for v in bench.violations[:20]:
                print(f"  {v.kind}: {v.detail}")
    print("mock bench stopped")
    return 0


def _wait_for_stop(duration: float | None) -> None:
    """Block until SIGINT or SIGTERM (or ``duration`` s, if given); the bench then closes, which
    writes its final safety record."""
    import signal
    import threading

    stop = threading.Event()
    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {s: signal.signal(s, lambda signum, frame: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait(duration)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _station_args(s: argparse.ArgumentParser) -> None:
    ssub = s.add_subparsers(dest="station_command", required=True)
    c = ssub.add_parser("check", help="connect, check identities and error queues, print the routing")
    c.add_argument("file", type=Path, metavar="STATION.toml")


@command("station", help="station file tools", arguments=_station_args)
def cmd_station_check(args) -> int:
    from instruments.hardware_crossbar import check_station

    from ..ops.chips import load_station

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
