"""Third-party modules imported on their first use rather than where they are named.

pymeasure's ``pymeasure.experiment`` (which every operator procedure subclasses) imports pandas
at its top for :class:`pymeasure.experiment.Results`' data frames, which a terminal run never
builds: :func:`defer` makes ``import pandas`` there bind a stand-in that imports pandas when one of
its attributes is first read (60 MB and ~1.5 s of CPU a simulated run does not spend).
(``importlib.util.LazyLoader`` cannot do it on Python 3.11: the import statement's own look-up
of ``__spec__`` loads the module.)
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types


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
