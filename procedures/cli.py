"""The ``xbar`` command line.

    xbar tune --chip sim [--preset NAME] --size 64x64 --targets random|FILE.npy --tolerance 0.01
              [--no-reset] [--passes N] --seed S --json REPORT.json
    xbar read --chip sim --size RxC --seed S --out MAP.npy

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

from .chips import CHIPS, make_targets, open_chip, parse_size
from .tables import format_read_summary, format_tune_summary


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as exc:  # argparse shows ArgumentTypeError messages verbatim
        raise argparse.ArgumentTypeError(str(exc)) from None


def _chip_args(p: argparse.ArgumentParser, default_size: str) -> None:
    p.add_argument("--chip", choices=CHIPS, default="sim", help="chip to use (default: the simulated chip)")
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

    r = sub.add_parser("read", help="read the conductance map of the array")
    _chip_args(r, "8x8")
    r.add_argument("--scheme", default="ground", choices=["ground", "float"], help="read biasing scheme")
    r.add_argument("--out", type=Path, default=None, metavar="MAP.npy", help="save the map (S) here")
    return parser


def cmd_tune(args) -> int:
    cfg = TunerConfig(tolerance=args.tolerance, initial_reset=not args.no_reset, passes=args.passes,
                      order=args.order, parallel=args.parallel, write_scheme=args.scheme,
                      max_pulses=args.max_pulses, seed=args.seed)
    with open_chip(args.chip, args.size, args.preset, args.seed, args.chips, args.line_resistance) as xb:
        targets = make_targets(args.targets, xb, args.seed)
        result = tune(xb, targets, cfg, progress=not args.quiet)
        report = result.summary(xb)
    report = {"chip": args.chip, "preset": args.preset, "size": list(args.size), "chips": args.chips,
              "seed": args.seed, **report}
    print(format_tune_summary(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0


def cmd_read(args) -> int:
    with open_chip(args.chip, args.size, args.preset, args.seed, args.chips, args.line_resistance) as xb:
        g = xb.read_array(scheme=args.scheme)
    print(format_read_summary(g, args.scheme))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.out, g[0] if g.shape[0] == 1 else g)
        print(f"map written to {args.out} (S)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "tune":
            return cmd_tune(args)
        return cmd_read(args)
    except (ValueError, OSError) as exc:
        print(f"xbar {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xbar {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
