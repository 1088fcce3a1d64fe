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
    does not hold imports the module (in its place) and is answered by it, as is every later one."""

    def __getattr__(self, name):
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
