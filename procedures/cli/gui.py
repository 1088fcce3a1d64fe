"""``xbar gui``: the live window (procedures/gui.py; needs the gui extra)."""
from __future__ import annotations

from .registry import command


def _gui_args(p) -> None:
    from ..gui import gui_arguments

    gui_arguments(p)


@command("gui", help="live window: queue tunes, watch the conductance map and the trace (needs the gui extra)",
         arguments=_gui_args)
def cmd_gui(args) -> int:
    from ..gui import run_window

    return run_window(args)
