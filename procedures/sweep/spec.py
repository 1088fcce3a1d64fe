"""A sweep's specification: which command, which options, which values, how many seeds.

A spec is a TOML file::

    command = "tune"          # any simulated command with a --json report: tune, evaluate, train, insitu,
                              # deploy, read, form, iv, infer, retention, endurance
    seed = 1                  # the sweep seed: each point's --seed derives from it and the point
    seeds = 3                 # runs of every point, each with its own derived seed (default 1)

    [fixed]                   # options every point shares (names as on the command line, - or _)
    size = "8x8"
    chips = 100

    [grid]                    # every combination of these values ...
    tolerance = [0.005, 0.01, 0.02]
    preset = ["tio2-3it", "asymmetric"]

    # ... or, instead of [grid], a list of points:
    # [[points]]
    # tolerance = 0.01
    # preset = "asymmetric"

Option values are checked against the command's own parser before anything is run or written:
an unknown option, a wrong value or an option the sweep sets itself (--seed, --out, --json,
--resume, --station, --quiet, --no-plots) is refused with one line naming it.  Booleans switch a
flag on (``true``) or leave it off (``false``).  A string naming a file beside the spec (a model,
a variability JSON) is passed as its absolute path.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: options the sweep sets on every point itself
CONTROLLED = ("seed", "out", "json", "resume", "station", "quiet", "no_plots", "help")
#: commands that are not simulations (a sweep cannot run them)
NOT_SWEEPABLE = ("sweep", "show", "plot", "gui", "mock-bench", "station")
#: top-level keys of a spec
SPEC_KEYS = ("command", "seed", "seeds", "fixed", "grid", "points")


class _ParseError(ValueError):
    pass


def _raise(message):
    raise _ParseError(message)


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """The ``xbar`` subcommands a sweep can run, each parser raising instead of exiting."""
    from procedures.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for name, sub in subs.choices.items():
        if name in NOT_SWEEPABLE or "--json" not in sub._option_string_actions:
            continue
        sub.error = _raise                     # a bad value: an exception, not sys.exit
        out[name] = sub
    return out


def output_options(sub: argparse.ArgumentParser) -> list[str]:
    """The options the sweep adds to every run of a command, sending its results into a folder
    (written ``{folder}``): ``--json``, ``--out`` (a run folder, model or JSON file, by its
    metavar), ``--quiet`` and ``--no-plots`` where the command has them."""
    extra = ["--json", "{folder}/report.json"]
    out = sub._option_string_actions.get("--out")
    if out is not None:
        metavar = str(out.metavar or "")
        name = "model.pt" if metavar.endswith(".pt") else "out.json" if metavar.endswith(".json") else "run"
        extra += ["--out", "{folder}/" + name]
    return extra + [flag for flag in ("--quiet", "--no-plots") if flag in sub._option_string_actions]


def _key(name: str) -> str:
    return str(name).strip().lstrip("-").replace("-", "_")


def _options(sub: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The command's options and positional arguments by key (``max_pulses``)."""
    out = {}
    for action in sub._actions:
        if action.option_strings:
            for opt in action.option_strings:
                if opt.startswith("--"):
                    out[_key(opt)] = action
        else:
            out[action.dest] = action
    return out


def point_digest(sweep_seed: int, command: str, params: dict, replicate: int) -> str:
    """SHA-256 (hex) of the sweep seed, the command, the point's options as written in the spec
    and the replicate number: the same point has the same digest on any machine."""
    text = json.dumps({"sweep_seed": int(sweep_seed), "command": command, "params": params,
                       "replicate": int(replicate)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def derive_seed(sweep_seed: int, command: str, params: dict, replicate: int) -> int:
    """A point's seed (0 <= seed < 2**31), from its :func:`point_digest`."""
    return int(point_digest(sweep_seed, command, params, replicate)[:8], 16) & 0x7FFFFFFF


@dataclass(frozen=True)
class Point:
    """One run of the command: its options (``params``, the fixed ones included, as written in the
    spec), the replicate number and the seed derived for it; ``id`` (the start of its digest)
    names it in the sweep folder, so a point keeps its result when the spec gains other points."""

    index: int
    params: dict
    replicate: int
    seed: int
    id: str
    argv: tuple = ()


@dataclass
class SweepSpec:
    """A parsed, checked spec (see the module docstring)."""

    command: str
    seed: int = 0
    seeds: int = 1
    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    points: list = field(default_factory=list)
    base: Path = Path(".")
    #: the spec as written (kept in the sweep folder)
    text: str = ""

    @property
    def swept(self) -> list[str]:
        """The options that vary from point to point."""
        if self.grid:
            return [k for k, v in self.grid.items() if len(v) > 1]
        keys = []
        for p in self.points:
            for k in p:
                if k not in keys and len({json.dumps(q.get(k), sort_keys=True) for q in self.points}) > 1:
                    keys.append(k)
        return keys

    def expand(self) -> list[Point]:
        """Every point (options × replicates), each with its derived seed and its ``xbar`` argv
        (without the options the runner adds: --out, --json, --quiet, --no-plots)."""
        if self.grid:
            names = list(self.grid)
            combos = [dict(zip(names, vals)) for vals in itertools.product(*self.grid.values())]
        else:
            combos = [dict(p) for p in self.points] or [{}]
        sub = command_parsers()[self.command]
        options = _options(sub)
        out, index = [], 0
        for combo in combos:
            params = {**self.fixed, **combo}
            for r in range(self.seeds):
                digest = point_digest(self.seed, self.command, params, r)
                seed = int(digest[:8], 16) & 0x7FFFFFFF
                argv = tuple(_argv(self.command, params, seed, options, sub, self.base))
                out.append(Point(index, params, r, seed, digest[:16], argv))
                index += 1
        return out


def _argv(command: str, params: dict, seed: int, options: dict, sub, base: Path) -> list[str]:
    argv, positional = [command], []
    for key, value in params.items():
        action, value = options[key], _resolve(value, base)
        if not action.option_strings:
            positional.append(str(value))
        elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if value:
                argv.append(action.option_strings[-1])
        else:
            argv += [action.option_strings[-1], "x".join(map(str, value)) if isinstance(value, list) else str(value)]
    argv += positional
    if "--seed" in sub._option_string_actions:
        argv += ["--seed", str(seed)]
    return argv


def _check_value(key: str, value, action: argparse.Action, where: str) -> None:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} is a flag; give true or false, got {value!r}")
    elif isinstance(value, (dict, bool)) or (isinstance(value, list) and key != "size"):
        raise ValueError(f"{where}: {key} takes one value, got {value!r}")


def _resolve(value, base: Path):
    """A string naming a file beside the spec → its absolute path."""
    if isinstance(value, str) and value and not Path(value).is_absolute() and (base / value).is_file():
        return str((base / value).resolve())
    return value


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file; a bad spec raises ValueError with one line naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sweep spec {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"sweep spec {path}: not valid TOML ({exc})") from None
    return parse_spec(data, base=path.parent, text=text, where=f"sweep spec {path}")


def parse_spec(data: dict, base: Path = Path("."), text: str = "", where: str = "sweep spec") -> SweepSpec:
    """Check a spec's contents (see :func:`load_spec`) and expand every point once, so that each
    point's options pass the command's parser before the sweep starts."""
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(SPEC_KEYS)})")
    parsers = command_parsers()
    command = data.get("command")
    if command not in parsers:
        raise ValueError(f"{where}: command must be one of {', '.join(sorted(parsers))}, got {command!r}")
    seed, seeds = data.get("seed", 0), data.get("seeds", 1)
    for name, value, low in (("seed", seed, 0), ("seeds", seeds, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{where}: {name} must be an integer >= {low}, got {value!r}")
    fixed, grid, points = data.get("fixed", {}), data.get("grid", {}), data.get("points", [])
    if not isinstance(fixed, dict) or not isinstance(grid, dict) or not isinstance(points, list):
        raise ValueError(f"{where}: [fixed] and [grid] are tables, [[points]] a list of tables")
    if grid and points:
        raise ValueError(f"{where}: give either [grid] or [[points]], not both")
    options = _options(parsers[command])

    def check(table: dict, what: str, lists: bool) -> dict:
        out = {}
        for raw, value in table.items():
            key = _key(raw)
            if key in CONTROLLED:
                hint = " (each point's seed derives from the sweep seed; use seeds = N for more runs)" \
                    if key == "seed" else " (the sweep sets it)"
                raise ValueError(f"{where}: {what}.{raw} cannot be set{hint}")
            if key not in options:
                raise ValueError(f"{where}: {command} has no option {raw!r} ({what})")
            if key == "chip" and value != "sim" and value != ["sim"]:
                raise ValueError(f"{where}: sweeps run on the simulated chip only (chip = 'sim')")
            if key in out:
                raise ValueError(f"{where}: {what}.{raw} is given twice")
            values = value if lists else [value]
            if lists and (not isinstance(value, list) or not value):
                raise ValueError(f"{where}: grid.{raw} must be a non-empty list of values, got {value!r}")
            for v in values:
                _check_value(raw, v, options[key], f"{where}: {what}")
            out[key] = value
        return out

    fixed = check(fixed, "fixed", False)
    grid = check(grid, "grid", True)
    pts = []
    for k, p in enumerate(points):
        if not isinstance(p, dict):
            raise ValueError(f"{where}: points[{k}] must be a table of options")
        pts.append(check(p, f"points[{k}]", False))
    both = sorted(set(fixed) & (set(grid) | {k for p in pts for k in p}))
    if both:
        raise ValueError(f"{where}: {both[0]!r} is both fixed and swept")
    spec = SweepSpec(command, seed, seeds, fixed, grid, pts, Path(base), text)
    sub = parsers[command]
    extra = [a.format(folder="sweep-point") for a in output_options(sub)]
    for point in spec.expand():
        try:
            sub.parse_args([*point.argv[1:], *extra])
        except _ParseError as exc:
            raise ValueError(f"{where}: point {dict(point.params)}: {exc}") from None
    return spec
