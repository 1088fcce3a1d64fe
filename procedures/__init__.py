"""Operator procedures and their front ends, one sub-package per job:

- :mod:`procedures.ops` — the operator procedures (pymeasure ``Procedure`` subclasses) and
  :mod:`procedures.ops.chips`, the one place that opens a chip or a station;
- :mod:`procedures.storage` — run folders (``run.json``, ``data.csv``, ``run.h5``), the tune
  journal, and the runner that executes a procedure into its run folder;
- :mod:`procedures.report` — plots, ``report.html`` and the terminal summaries;
- :mod:`procedures.cli` — the ``xbar`` command line; :mod:`procedures.sweep` — parameter studies
  on Dask (``xbar sweep``); :mod:`procedures.gui` — the live window.
"""
