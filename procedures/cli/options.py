"""Options several ``xbar`` subcommands share, declared once: the chip (``--chip``/``--station``,
``--preset``, ``--size``, ``--chips``, ``--line-resistance``, ``--seed``), ``--json`` and ``--quiet``."""
from __future__ import annotations

import argparse
from pathlib import Path

from mock_hw.presets import DEFAULT_PRESET, PRESETS


def array_size(text: str) -> tuple[int, int]:
    """argparse type of ``--size``: 'ROWSxCOLS' → (rows, cols)."""
    from ..ops.chips import parse_size      # (the simulator: imported when a command is parsed)

    try:
        return parse_size(text)
    except ValueError as exc:  # argparse shows ArgumentTypeError messages verbatim
        raise argparse.ArgumentTypeError(str(exc)) from None


#: the chip options: (flag, dest, keyword arguments of add_argument, default of a command that
#: takes them itself); an operator procedure's default comes from its parameter of the same name
CHIP_OPTIONS = (
    ("--preset", "preset", dict(choices=sorted(PRESETS), help="simulated chip preset"), DEFAULT_PRESET),
    ("--size", "size", dict(metavar="ROWSxCOLS", help="array size ROWSxCOLS"), None),
    ("--chips", "chips", dict(type=int, help="simulated chips run at once (Monte Carlo batch)"), 1),
    ("--line-resistance", "line_resistance",
     dict(type=float, metavar="OHM", help="line resistance per segment of the simulated chip, Ω (not given: the "
                                          "preset's; 0: ideal lines)"), None),
    ("--seed", "seed", dict(type=int, help="seed of the chip and of every random choice"), 0),
)
#: the parameters of a procedure the chip options stand for (``ideal_lines``: ``--line-resistance 0``)
CHIP_PARAMS = ("chip", "station", "ideal_lines") + tuple(dest for _, dest, _, _ in CHIP_OPTIONS)


def add_chip_options(p: argparse.ArgumentParser, default_size: str | None, params: dict | None = None,
                     only: tuple[str, ...] | None = None) -> None:
    """The chip options (``only``: just these, by dest, without ``--chip``/``--station``).
    ``params``: an operator procedure's parameter objects, which give the defaults (the options
    default to None, so a parameter not given keeps its default, and ``--size`` stays text the
    procedure checks); otherwise ``--size`` is parsed here and the options default to
    ``default_size`` and the defaults above."""
    if only is None:
        from ..ops.chips import CHIPS

        which = p.add_mutually_exclusive_group()
        which.add_argument("--chip", choices=CHIPS, default=None if params is not None else "sim",
                           help="chip to use (default: the simulated chip)")
        which.add_argument("--station", type=Path, default=None, metavar="STATION.toml",
                           help="drive the bench this station file describes instead")
    for flag, dest, kw, default in CHIP_OPTIONS:
        if only is not None and dest not in only:
            continue
        kw = dict(kw)
        if dest == "size":
            default = default_size
            if params is None:
                kw["type"] = array_size
        if params is not None:
            shown = default_size if dest == "size" else params[dest].default
            kw["help"] += f" (default: {shown})"
            default = None
        p.add_argument(flag, dest=dest, default=default, **kw)


def add_json_option(p: argparse.ArgumentParser, help: str = "also write the report here") -> None:
    p.add_argument("--json", type=Path, default=None, metavar="REPORT.json", help=help)


def add_quiet_option(p: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    p.add_argument("--quiet", action="store_true", help=help)
