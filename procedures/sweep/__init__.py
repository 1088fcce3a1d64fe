"""Parameter studies: ``xbar sweep SPEC.toml`` runs a grid (or a list) of any simulated command's
options × seeds on Dask, into a resumable sweep folder with one tidy Parquet table.

* :mod:`.spec`: the spec file, its checks and its points (seeds derived from the sweep seed);
* :mod:`.point`: one point on a worker (the ``xbar`` command in process, its report back);
* :mod:`.runner`: the cluster (embedded, or ``--scheduler``), resuming, recording as points arrive;
* :mod:`.table`: the tidy table; :mod:`.summary`: ``xbar show`` of a sweep folder and its plots.
"""
