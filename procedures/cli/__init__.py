"""The ``xbar`` command line: one package, one dispatch.

    xbar form | iv | read | tune | deploy | infer | retention | endurance  [--chip sim | --station FILE]
         [--out RUN_DIR] [--resume RUN_DIR] ...   (operator procedures: procedures.py)
    xbar show RUN_DIR / xbar plot RUN_DIR          (run folders: runs.py)
    xbar gui                                        (the live window: gui.py)
    xbar mock-bench --station-out STATION.toml ... / xbar station check STATION.toml   (bench.py)
    xbar train / evaluate / fit-variability / insitu ...                              (networks: models.py)
    xbar tune --station STATION.toml --size 4x4 ...      (any chip command: --station instead of --chip)

Every subcommand registers its options and its handler with :func:`registry.command`
(registry.py); options several commands share (the chip, ``--json``, ``--quiet``) are declared
once in options.py.  Conductances are printed in µS; files hold SI units (S).

This file imports nothing heavy: :func:`main` and :func:`build_parser` load the commands when called.
"""
from __future__ import annotations


def build_parser():
    """The ``xbar`` argument parser with every registered subcommand."""
    from .registry import build_parser as _build

    return _build()


def main(argv: list[str] | None = None) -> int:
    """Run ``xbar`` with ``argv`` (default: the process's arguments); returns the exit code."""
    import time

    started = time.perf_counter()          # before the commands are imported: the whole command's time
    from .registry import main as _main

    return _main(argv, started)
