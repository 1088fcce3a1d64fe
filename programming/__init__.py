"""Chip-independent programming: the Crossbar interface, weight↔conductance mapping and the
write-verify tuner.  Depends on nothing else in xbarlab."""
