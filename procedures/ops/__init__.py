"""The operator procedures (form, iv, read, tune, deploy, infer, retention, endurance) and the
one place that opens chips and stations (:mod:`procedures.ops.chips`)."""

from ..deferred import defer, import_pymeasure_experiment

# every procedure subclasses pymeasure.experiment, which imports pandas for data frames a terminal
# run never builds: imported on first use instead (before any procedure module imports pymeasure),
# and so are IPython, zmq and dask (procedures.deferred.PYMEASURE_UNUSED)
defer("pandas")
import_pymeasure_experiment()
