"""Third-party modules imported on their first use rather than where they are named.

pymeasure's ``pymeasure.experiment`` (which every operator procedure subclasses) imports pandas
at its top for :class:`pymeasure.experiment.Results`' data frames, which a terminal run never
builds: :func:`defer` makes ``import pandas`` there bind a stand-in that imports pandas when one of
its attributes is first read (60 MB and ~1.5 s of CPU a simulated run does not spend).
(``importlib.util.LazyLoader`` cannot do it on Python 3.11: the import statement's own look-up
of ``__spec__`` loads the module.)

pymeasure also parses every data column's unit with pint whenever a procedure or its results
file is made (``Procedure.parse_columns``): loading pint's unit registry costs ~27 MB and ~0.2 s of
CPU that a run writing plain numbers never uses.  :func:`defer_units` makes the units parsed when
one is first asked for (a value that is not a number, written to a column with a unit).

``pymeasure.experiment`` and pint also import, at their top, modules for what a terminal run never
does: IPython (pymeasure's plots in a notebook), zmq (a live window publishing over TCP) and dask
(pint's dask arrays), about 250 modules and 14 MB of the resident set.
:func:`import_pymeasure_experiment` imports pymeasure.experiment with stand-ins bound in their
place, each loading its module when first used.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from collections.abc import MutableMapping


class _Deferred(types.ModuleType):
    """Stands in ``sys.modules`` for a module not imported yet; the first attribute read that it
    does not hold imports the module (in its place) and is answered by it, as is every later one.
    A stand-in of a module that is not a package (``_module``) has no ``__path__`` (the import
    statement asks for it to tell a package's ``from m import name``)."""

    _module = False

    def __getattr__(self, name):
        if name == "__path__" and self._module:
            raise AttributeError(name)
        real = sys.modules.get(self.__name__)
        if real is None or real is self:
            sys.modules.pop(self.__name__, None)
            real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)          # later reads find the module's names directly
        return getattr(real, name)


def defer(name: str) -> None:
    """Let ``import name`` bind a stand-in until an attribute of the module is used (nothing is
    done if the module is imported already or is not installed)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = _Deferred(name)
    stand_in.__spec__ = None        # a module being imported, for the import statement: none
    sys.modules[name] = stand_in


#: what ``pymeasure.experiment`` (and pint, which it imports) take at their top for what a terminal
#: run never does, as (module, is a package, names taken with ``from module import name``: a
#: package's sub-modules, a module's functions)
PYMEASURE_UNUSED = (("IPython", True, ("display",)), ("zmq", True, ()),
                    ("dask.base", False, ("compute", "persist", "visualize")))


def import_pymeasure_experiment() -> None:
    """Import ``pymeasure.experiment`` with stand-ins bound where it and pint import the modules of
    :data:`PYMEASURE_UNUSED` (those installed and not imported yet): each stand-in imports its module
    when first used (a sub-module's stand-in, when an attribute of it is read; a function's, when
    it is called).  The stand-ins leave ``sys.modules`` once pymeasure is imported: a later
    ``import`` of those modules imports them as usual."""
    if "pymeasure.experiment" in sys.modules:
        return
    placed = []
    for name, package, names in PYMEASURE_UNUSED:
        top = name.partition(".")[0]
        spec = None if top in sys.modules else importlib.util.find_spec(top)    # (imports nothing)
        if name in sys.modules or spec is None:
            continue
        stand_in = _Deferred(name)
        stand_in.__spec__ = None
        stand_in._module = not package
        if package:         # (its own __path__: ``from name import sub`` takes the sub-module's stand-in)
            stand_in.__path__ = list(spec.submodule_search_locations or ())
            for sub in names:
                member = _Deferred(f"{name}.{sub}")
                member.__spec__, member._module = None, True
                setattr(stand_in, sub, member)
        else:
            for fn in names:
                setattr(stand_in, fn, _deferred_function(name, fn))
        sys.modules[name] = stand_in
        placed.append((name, stand_in))
    try:
        importlib.import_module("pymeasure.experiment")
    finally:
        for name, stand_in in placed:
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]


def _deferred_function(module: str, name: str):
    """A function that imports ``module`` when first called and calls its function ``name``."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported when first called"
    return call


#: pymeasure's pattern of a column's unit (``"Voltage (V)"``), as ``Procedure.parse_columns`` has it
_UNIT = re.compile(r"\((?P<units>[\w/\(\)\*\t]+)\)")


class _ColumnUnits(MutableMapping):
    """The units of data columns (column → pint unit, as ``Procedure.parse_columns`` returns them),
    parsed when first needed: asking for a column without a unit in parentheses (or not one of the
    columns) needs no parsing; anything else parses them all, raising as pymeasure does for a unit
    pint does not know."""

    def __init__(self, columns, parse):
        self._columns, self._parse, self._units = list(columns), parse, None

    def _all(self) -> dict:
        if self._units is None:
            self._units = self._parse(self._columns)
        return self._units

    def get(self, key, default=None):
        if self._units is None and (key not in self._columns or not _UNIT.search(str(key))):
            return default
        return self._all().get(key, default)

    def __getitem__(self, key):
        return self._all()[key]

    def __setitem__(self, key, value):
        self._all()[key] = value

    def __delitem__(self, key):
        del self._all()[key]

    def __iter__(self):
        return iter(self._all())

    def __len__(self):
        return len(self._all())


def defer_units() -> None:
    """Make pymeasure parse data columns' units with pint when one is first needed (see the module
    docstring; every procedure's columns are checked against pint by the tests instead)."""
    from pymeasure.experiment.procedure import Procedure

    raw = Procedure.__dict__.get("parse_columns")
    if not isinstance(raw, staticmethod):
        return      # a pymeasure whose Procedure parses its columns otherwise: left as it is
    parse = raw.__func__
    if getattr(parse, "deferred", False):
        return

    def parse_columns(columns):
        return _ColumnUnits(columns, parse)

    parse_columns.deferred = True
    parse_columns.__doc__ = parse.__doc__
    Procedure.parse_columns = staticmethod(parse_columns)
