"""``xbar`` subcommands of the operator procedures, built from their pymeasure parameters.

Every parameter of a procedure becomes an option (``max_pulses`` → ``--max-pulses``; booleans are
flags); the chip options are the shared ones (:func:`options.add_chip_options`): ``--chip sim``
(default) or ``--station FILE``.  Every run writes a run folder (``--out RUN_DIR``, default
``runs/<time stamp>-<procedure>``); ``--resume RUN_DIR`` continues an interrupted tune or deploy;
``xbar show RUN_DIR`` and ``xbar plot RUN_DIR`` read one.  A finished run prints its terminal
summary (:data:`FORMATTERS`).
"""
from __future__ import annotations

import argparse
import functools
import importlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .options import CHIP_PARAMS, add_chip_options, add_json_option, add_quiet_option
from .registry import register

if TYPE_CHECKING:  # pragma: no cover
    from ..ops.base import XbarProcedure

#: every operator procedure, by subcommand: (module in procedures.ops, class), imported only when
#: its command is used (so ``xbar --help`` loads neither pymeasure.experiment nor pandas)
PROCEDURES = {
    "form": ("forming", "FormingProcedure"),
    "iv": ("iv_sweep", "IVProcedure"),
    "read": ("read_map", "ReadMapProcedure"),
    "tune": ("tune_array", "TuneProcedure"),
    "deploy": ("network", "DeployProcedure"),
    "infer": ("network", "InferenceProcedure"),
    "retention": ("retention", "RetentionProcedure"),
    "endurance": ("endurance", "EnduranceProcedure"),
    "calibrate-lines": ("calibrate_lines", "CalibrateLinesProcedure"),
}
HELP = {
    "form": "electroform every cell with ramped pulses under compliance",
    "iv": "IV sweep of one cell (DC read sweep or pulsed switching loop)",
    "read": "read the conductance map of the array",
    "tune": "tune every cell to a target conductance by write-verify",
    "deploy": "program a trained network onto a chip and measure its accuracy",
    "infer": "classify the test set through the chip's matrix-vector products",
    "retention": "read the map at intervals (retention)",
    "endurance": "SET/RESET cycling with periodic reads (endurance)",
    "calibrate-lines": "measure the line resistance (for the tuner's IR-drop correction)",
}


def procedure_class(name: str) -> type[XbarProcedure]:
    """The procedure class of ``xbar NAME``."""
    module, cls = PROCEDURES[name]
    return getattr(importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.ops.{module}"), cls)


SIZES = {"tune": "16x16", "deploy": "", "infer": ""}
POSITIONAL = {"deploy": ("model",), "infer": ("model",)}
#: parameters handled by the chip options rather than one option each (chip, station: set from --station)
_SET_BY_STATION = ("chip", "station")


def _schedule_line(report: dict) -> str:
    """One line: the pulse width and the amplitude schedule a tuning run used."""
    sched = report.get("schedule")
    if not sched or (sched["mode"] == "recipe" and sched["schedule"]["width"] == 1e-6):
        return ""                       # the 3IT recipe as it is: nothing to add
    s = sched["schedule"]
    return (f"\n  pulses                  {s['width'] * 1e6:g} µs, SET {s['v_set_start']:.3g}..{s['v_set_max']:.3g} V, "
            f"RESET {s['v_reset_start']:.3g}..{s['v_reset_max']:.3g} V, step {s['v_step'] * 1e3:g} mV "
            f"({sched['mode']} schedule)")


def chip_label(proc) -> str:
    """What the run ran on, for its summary: the simulated chip by preset, size and seed; a bench by
    its station (name and file) and the chip ID its station file declares."""
    if proc.chip == "sim":
        r, c = proc.array_size
        return f"sim ({proc.preset}, {r}x{c}, {proc.chips} chip(s), seed {proc.seed})"
    ident = getattr(proc, "ident", {}) or {}
    return f"station {ident.get('station', proc.station)}, chip {ident.get('chip_id', '?')}"


def _tune_summary(proc) -> str:
    from ..report.tables import format_tune_summary

    return format_tune_summary({**proc.report, "chip": chip_label(proc)}) + _schedule_line(proc.report)


def _deploy_summary(proc) -> str:
    from .models import format_deploy
    text = format_deploy({**proc.report, "chip": chip_label(proc), "preset": None}) + _schedule_line(proc.report)
    ft = proc.report.get("finetune")
    if ft:
        text += (f"\n  fine-tuned  chip accuracy {100 * ft['accuracy_before']:.2f} % -> "
                 f"{100 * ft['accuracy_after']:.2f} % in {ft['rounds']} rounds ({ft['cells_retuned']} cells "
                 f"re-tuned, {ft['wall_s']:.1f} s); model saved as {proc.run_dir / 'finetuned.pt'}")
    return text


def _append_row(text: str, key: str, value: str) -> str:
    """``text`` (a title, then "  key  value" rows) with one more row, every row re-aligned."""
    import re

    rows = [re.match(r"^  (\S.*?)\s{2,}(\S.*)$", line) for line in text.splitlines()]
    width = max([len(key)] + [len(m.group(1)) for m in rows if m])
    lines = [f"  {m.group(1):<{width}}  {m.group(2)}" if m else line for m, line in zip(rows, text.splitlines())]
    return "\n".join(lines + [f"  {key:<{width}}  {value}"])


def _read_summary(proc) -> str:
    from ..report.tables import format_read_summary

    return format_read_summary(proc.maps["conductance"], proc.scheme)


def _report(title: str):
    def summary(proc) -> str:
        from ..report.tables import format_report

        return format_report(title, proc.report)
    return summary


#: terminal summary of a finished run, by subcommand
FORMATTERS = {
    "tune": _tune_summary,
    "deploy": _deploy_summary,
    "read": _read_summary,
    "form": _report("forming"),
    "iv": _report("IV sweep"),
    "infer": _report("inference on chip"),
    "retention": _report("retention"),
    "endurance": _report("endurance"),
    "calibrate-lines": _report("line calibration"),
}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


#: second names of procedure options, by subcommand: the amplitude schedule's names where a
#: procedure's own ramp is the same thing (``xbar form --amplitude-start 1.5`` = ``--v-start 1.5``)
ALIASES = {"form": {"v_start": "--amplitude-start", "v_step": "--amplitude-step", "v_stop": "--amplitude-max"}}


def add_procedure_arguments(p: argparse.ArgumentParser, name: str, size_default: str = "8x8",
                            positional: tuple[str, ...] = ()) -> None:
    """The options of ``xbar NAME``: the procedure's parameters (``positional`` ones are
    arguments, e.g. ``xbar deploy MODEL.pt``)."""
    cls = procedure_class(name)         # first: procedures.ops defers pandas before pymeasure imports it
    from pymeasure.experiment import BooleanParameter, FloatParameter, IntegerParameter, ListParameter

    p.description = (cls.__doc__ or "").strip().split("\n")[0]
    params = cls().parameter_objects()
    add_chip_options(p, size_default, params)
    for name, param in params.items():
        if name in CHIP_PARAMS:
            continue
        if name in positional:
            p.add_argument(name, nargs="?", default=None, metavar=name.upper(), help=param.name)
            continue
        flags = [_option(name), *([ALIASES[cls.NAME][name]] if name in ALIASES.get(cls.NAME, {}) else [])]
        units = f" ({param.units})" if getattr(param, "units", None) else ""
        helptext = f"{param.name}{units} (default: {param.default})"
        if isinstance(param, BooleanParameter):
            p.add_argument(*flags, dest=name, action="store_true", default=None, help=param.name)
        elif isinstance(param, ListParameter):
            p.add_argument(*flags, dest=name, choices=[str(c) for c in param.choices], default=None, help=helptext)
        elif isinstance(param, IntegerParameter):
            p.add_argument(*flags, dest=name, type=int, default=None, help=helptext)
        elif isinstance(param, FloatParameter):
            p.add_argument(*flags, dest=name, type=float, default=None, help=helptext)
        else:
            p.add_argument(*flags, dest=name, default=None, help=helptext)
    p.add_argument("--out", type=Path, default=None, metavar="RUN_DIR",
                   help="run folder to write (default: runs/<time stamp>-%s)" % cls.NAME)
    if cls.RESUMABLE:
        p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue the interrupted run in RUN_DIR (its parameters are used)")
    add_json_option(p)
    add_quiet_option(p)
    p.add_argument("--no-plots", action="store_true", help="do not draw the plots and report.html")
    p.set_defaults(procedure=cls, size_default=size_default)


def build_procedure(args) -> XbarProcedure:
    """The procedure with the command line's parameters (parameters not given keep their defaults);
    a bad value raises a ValueError naming the option."""
    from ..ops.base import CHIP_KEYS
    from ..ops.chips import load_station
    from ..storage.run_data import RUN_JSON

    cls: type[XbarProcedure] = args.procedure
    proc = cls()
    values = {"size": args.size_default}
    if args.station is not None:
        st = load_station(args.station)            # a bad station file is refused here, clearly
        values.update(chip="station", station=str(args.station), size=f"{st.rows}x{st.cols}")
    for name in proc.parameter_objects():
        if name not in _SET_BY_STATION and getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    if values.get("line_resistance") == 0 and "ideal_lines" in proc.parameter_objects():
        values["ideal_lines"] = args.ideal_lines = True      # --line-resistance 0: ideal lines, not the preset's
    if values.get("chip_from"):
        src = Path(values["chip_from"])
        if not (src / RUN_JSON).is_file():
            raise ValueError(f"--chip-from {src}: not a run folder (no {RUN_JSON})")
        proc.adopt_chip_of(src)
        adopted = {key: getattr(proc, key) for key in CHIP_KEYS}
        for key in CHIP_KEYS:             # a chip option that contradicts the chip of that run is refused
            given = str(args.station) if key == "station" and args.station is not None else getattr(args, key, None)
            if key != "chip" and given is not None and str(given) != str(adopted.get(key)):
                raise ValueError(f"{_option(key)} {given} cannot be combined with --chip-from {src}: that run's "
                                 f"chip has {key.replace('_', ' ')} {adopted.get(key)!r} (leave {_option(key)} out)")
        values = {k: v for k, v in values.items() if k not in CHIP_KEYS}
    set_parameters(proc, values)
    return proc


def set_parameters(proc: XbarProcedure, values: dict) -> None:
    """Set parameters from option values; one ValueError line naming the option and what it allows."""
    import math

    from pymeasure.experiment import FloatParameter

    params = proc.parameter_objects()
    for name, value in values.items():
        param = params[name]
        if isinstance(param, FloatParameter) and isinstance(value, (int, float)) and not math.isfinite(value):
            raise ValueError(f"{_option(name)} {value!r}: must be a finite number")
        try:
            setattr(proc, name, value)
            param.value = value
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{_option(name)} {value!r}: {_allowed(param) or exc}") from None


def _allowed(param) -> str:
    """'must be between 0.0001 and 0.49' for a numeric parameter with bounds ('' otherwise)."""
    from pymeasure.experiment import ListParameter

    lo, hi = getattr(param, "minimum", None), getattr(param, "maximum", None)
    units = f" {param.units}" if getattr(param, "units", None) else ""
    if isinstance(param, ListParameter):
        return f"must be one of {', '.join(str(c) for c in param.choices)}"
    if lo is not None and hi is not None:
        return f"must be between {lo:g} and {hi:g}{units}"
    if lo is not None:
        return f"must be >= {lo:g}{units}"
    return ""


def cmd_procedure(args) -> int:
    """Run the procedure the command line describes (or resume one) and print its summary."""
    from ..storage.run_data import RUN_JSON, read_json, write_json
    from ..storage.runner import RunRefused, new_run_dir, resume_hint, run_procedure

    cls: type[XbarProcedure] = args.procedure
    formatter = FORMATTERS.get(cls.NAME)
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
    except RunRefused:
        raise                               # nothing ran: the one line says why, no resume hint
    except Exception:
        print(f"{cls.NAME} failed: {_end_state(proc)}data saved in {run_dir}"
              + (f"; continue with: xbar {cls.NAME} --resume {run_dir}" if cls.RESUMABLE else ""), file=sys.stderr)
        raise
    if formatter is not None and outcome.status == "finished":
        text = formatter(proc)
        if getattr(args, "started", None) is not None:
            text = _append_row(text, "wall time, command", f"{time.perf_counter() - args.started:.1f} s  "
                               "(start-up, run, run folder and plots)")
        print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, outcome.report)
        print(f"report written to {args.json}")
    print(f"run folder: {outcome.run_dir}")
    if outcome.status == "interrupted":
        print(f"{cls.NAME} interrupted" + (f": {proc.safe_state}." if proc.safe_state else "."), file=sys.stderr)
        if cls.RESUMABLE:
            print(resume_hint(outcome, cls.NAME), file=sys.stderr)
        return 130
    return 0


def _end_state(proc: XbarProcedure) -> str:
    """What the shutdown confirmed about the chip ('' when no chip was opened), then '; '."""
    return f"{proc.safe_state}; " if proc.safe_state else ""


for _name in PROCEDURES:
    register(_name, HELP[_name],
             functools.partial(add_procedure_arguments, name=_name, size_default=SIZES.get(_name, "8x8"),
                               positional=POSITIONAL.get(_name, ())),
             cmd_procedure)
