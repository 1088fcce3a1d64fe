"""The one dispatch of ``xbar``: every subcommand registers its options and its handler here.

    @command("station", help="...", arguments=_station_args)
    def cmd_station(args) -> int: ...

:func:`build_parser` imports the command modules (which register on import), adds one subparser
per command in registration order and sets ``args.func`` to its handler; :func:`main` calls it.
A handler returns the exit code; a ValueError, OSError or instrument error becomes one line on
stderr and exit code 2, Ctrl-C exit code 130.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Callable

#: the modules that register subcommands, in the order ``xbar --help`` lists them
MODULES = ("procedures", "runs", "gui", "bench", "models", "sweep")


@dataclass(frozen=True)
class Command:
    """One ``xbar`` subcommand."""

    name: str
    """the subcommand (``xbar NAME``)"""
    help: str
    """one line for ``xbar --help``"""
    arguments: Callable[[argparse.ArgumentParser], None]
    """adds the subcommand's options to its parser"""
    handler: Callable[[argparse.Namespace], int]
    """runs the subcommand; returns the exit code"""
    description: str | None = None
    """the text at the top of ``xbar NAME --help`` (default: none)"""


#: every registered subcommand, by name, in registration order
COMMANDS: dict[str, Command] = {}


def register(name: str, help: str, arguments: Callable, handler: Callable, description: str | None = None) -> None:
    """Register a subcommand (a name registered twice is a programming error)."""
    if name in COMMANDS:
        raise RuntimeError(f"xbar {name} is registered twice")
    COMMANDS[name] = Command(name, help, arguments, handler, description)


def command(name: str, help: str, arguments: Callable | None = None, description: str | None = None):
    """Decorator: register the decorated function as the handler of ``xbar NAME``."""
    def decorate(handler: Callable) -> Callable:
        register(name, help, arguments or (lambda p: None), handler, description)
        return handler
    return decorate


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand.  Given the command line ``argv``, only the subcommand it
    names gets its options (they may import the simulator, pymeasure, pandas ...): ``xbar --help``
    and ``xbar NAME`` stay cheap to start."""
    for module in MODULES:
        importlib.import_module(f"{__package__}.{module}")
    parser = argparse.ArgumentParser(prog="xbar", description="Passive memristor crossbar lab suite")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for c in COMMANDS.values():
        p = sub.add_parser(c.name, help=c.help, description=c.description)
        if chosen is None or chosen == c.name:
            c.arguments(p)
        p.set_defaults(func=c.handler)
    return parser


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    """Run ``xbar argv``; ``started`` (``time.perf_counter()``) is when the command began (default:
    now), so summaries can give the wall time of the whole command (``args.started``)."""
    import time

    from instruments.roles import InstrumentError

    started = time.perf_counter() if started is None else started
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.started = started
    try:
        return args.func(args)
    except BrokenPipeError:              # the reader went away (xbar show RUN_DIR | head): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())    # nothing more to write
        return 141
    except (ValueError, OSError, InstrumentError) as exc:
        print(f"xbar {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xbar {args.command}: interrupted", file=sys.stderr)
        return 130
