"""The operator procedures (form, iv, read, tune, deploy, infer, retention, endurance) and the
one place that opens chips and stations (:mod:`procedures.ops.chips`)."""
