"""``xbar`` subcommands of the operator procedures, built from their pymeasure parameters.

Every parameter of a procedure becomes an option (``max_pulses`` → ``--max-pulses``; booleans are
flags); the chip is chosen with ``--chip sim`` (default) or ``--station FILE``.  Every run writes
a run folder (``--out RUN_DIR``, default ``runs/<time stamp>-<procedure>``); ``--resume RUN_DIR``
continues an interrupted tune or deploy; ``xbar show RUN_DIR`` and ``xbar plot RUN_DIR`` read one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pymeasure.experiment import BooleanParameter, FloatParameter, IntegerParameter, ListParameter

from .base import CHIP_KEYS, XbarProcedure
from .run_data import RUN_JSON, load_run, read_json, write_json
from .runner import new_run_dir, resume_hint, run_procedure

#: parameters handled by the common chip options rather than one option each
_CHIP_PARAMS = ("chip", "station")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_procedure_command(sub, cls: type[XbarProcedure], help_text: str, size_default: str = "8x8",
                          positional: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """A subcommand for ``cls`` whose options are the procedure's parameters (``positional``
    ones are arguments, e.g. ``xbar deploy MODEL.pt``)."""
    p = sub.add_parser(cls.NAME, help=help_text, description=(cls.__doc__ or "").strip().split("\n")[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument("--chip", choices=["sim"], default=None, help="the simulated chip (default)")
    which.add_argument("--station", type=Path, default=None, metavar="STATION.toml",
                       help="drive the bench this station file describes")
    for name, param in cls().parameter_objects().items():
        if name in _CHIP_PARAMS:
            continue
        if name in positional:
            p.add_argument(name, nargs="?", default=None, metavar=name.upper(), help=param.name)
            continue
        flag = _option(name)
        units = f" ({param.units})" if getattr(param, "units", None) else ""
        default = size_default if name == "size" else param.default
        helptext = f"{param.name}{units} (default: {default})"
        if isinstance(param, BooleanParameter):
            p.add_argument(flag, dest=name, action="store_true", default=None, help=param.name)
        elif isinstance(param, ListParameter):
            p.add_argument(flag, dest=name, choices=[str(c) for c in param.choices], default=None, help=helptext)
        elif isinstance(param, IntegerParameter):
            p.add_argument(flag, dest=name, type=int, default=None, help=helptext)
        elif isinstance(param, FloatParameter):
            p.add_argument(flag, dest=name, type=float, default=None, help=helptext)
        else:
            p.add_argument(flag, dest=name, default=None, help=helptext)
    p.add_argument("--out", type=Path, default=None, metavar="RUN_DIR",
                   help="run folder to write (default: runs/<time stamp>-%s)" % cls.NAME)
    if cls.RESUMABLE:
        p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue the interrupted run in RUN_DIR (its parameters are used)")
    p.add_argument("--json", type=Path, default=None, metavar="REPORT.json", help="also write the report here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="do not draw the plots and report.html")
    p.set_defaults(procedure=cls, size_default=size_default)
    return p


def build_procedure(args) -> XbarProcedure:
    """The procedure with the command line's parameters (parameters not given keep their defaults);
    a bad value raises a ValueError naming the option."""
    cls: type[XbarProcedure] = args.procedure
    proc = cls()
    values = {"size": args.size_default}
    if args.station is not None:
        from instruments.station import load_station

        st = load_station(args.station)            # a bad station file is refused here, clearly
        values.update(chip="station", station=str(args.station), size=f"{st.rows}x{st.cols}")
    for name in proc.parameter_objects():
        if name not in _CHIP_PARAMS and getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    if values.get("chip_from"):
        proc.adopt_chip_of(Path(values["chip_from"]))
        values = {k: v for k, v in values.items() if k not in CHIP_KEYS}
    set_parameters(proc, values)
    return proc


def set_parameters(proc: XbarProcedure, values: dict) -> None:
    params = proc.parameter_objects()
    for name, value in values.items():
        try:
            setattr(proc, name, value)
            params[name].value = value
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{_option(name)} {value!r}: {exc}") from None


def cmd_procedure(args, formatter=None) -> int:
    """Run the procedure the command line describes (or resume one) and print its summary."""
    cls: type[XbarProcedure] = args.procedure
    resume = getattr(args, "resume", None)
    if resume is not None:
        meta = read_json(Path(resume) / RUN_JSON) if (Path(resume) / RUN_JSON).is_file() else None
        if meta is None:
            raise ValueError(f"--resume {resume}: not a run folder (no {RUN_JSON})")
        if meta.get("procedure") != cls.NAME:
            raise ValueError(f"--resume {resume}: that run is a {meta.get('procedure')!r}, not a {cls.NAME!r}")
        if meta.get("status") == "finished":
            raise ValueError(f"--resume {resume}: that run has already finished")
        proc = cls()
        set_parameters(proc, meta.get("parameters", {}))
        run_dir = Path(resume)
    else:
        proc = build_procedure(args)
        proc.validate()
        run_dir = new_run_dir(cls.NAME, args.out)
    try:
        outcome = run_procedure(proc, run_dir, resume=resume is not None, progress=not args.quiet,
                                command=sys.argv[1:], plots=not args.no_plots)
    except Exception:
        print(f"{cls.NAME} failed: outputs off, relays open; data saved in {run_dir}"
              + (f"; continue with: xbar {cls.NAME} --resume {run_dir}" if cls.RESUMABLE else ""), file=sys.stderr)
        raise
    if formatter is not None and outcome.status == "finished":
        print(formatter(proc))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, outcome.report)
        print(f"report written to {args.json}")
    print(f"run folder: {outcome.run_dir}")
    if outcome.status == "interrupted":
        print(f"{cls.NAME} interrupted: outputs off, relays open.", file=sys.stderr)
        if cls.RESUMABLE:
            print(resume_hint(outcome, cls.NAME), file=sys.stderr)
        return 130
    return 0


def add_run_tools(sub) -> None:
    s = sub.add_parser("show", help="print the summary of a run folder")
    s.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p = sub.add_parser("plot", help="(re)draw a run folder's plots and report.html")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")


def cmd_show(args) -> int:
    from .tables import format_run
    print(format_run(load_run(args.run_dir)))
    return 0


def cmd_plot(args) -> int:
    from .plots import plot_run
    images, html = plot_run(args.run_dir)
    for img in images:
        print(f"  {img}")
    print(f"report: {html}")
    return 0
