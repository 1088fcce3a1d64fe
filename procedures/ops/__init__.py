"""The operator procedures (form, iv, read, tune, deploy, infer, retention, endurance) and the
one place that opens chips and stations (:mod:`procedures.ops.chips`)."""

from ..deferred import defer

# every procedure subclasses pymeasure.experiment, which imports pandas for data frames a terminal
# run never builds: imported on first use instead (before any procedure module imports pymeasure)
defer("pandas")
