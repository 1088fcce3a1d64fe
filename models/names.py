"""The names the models package offers, without importing torch (so the command line can build its
options quickly): datasets, weight scalings, learning-rate schedules, drift-count conventions, tuning-error distributions and
variability presets.  The modules that implement them import these tuples from here."""

#: datasets of :func:`models.datasets.load_dataset`
DATASETS = ("moons", "moons-paper", "moons-paper-clean", "digits")
#: how weights are scaled onto conductances: one scale per output (column pair) or per layer
SCALES = ("output", "layer")
#: learning-rate schedules of :class:`models.train.TrainConfig`
LR_SCHEDULES = ("cosine", "constant")
#: which later-programmed cells count toward a cell's neighbour-drift count k
DRIFT_COUNTS = ("line", "all")
#: distributions of the tuning imprecision's unit draw
REL_DISTS = ("normal", "uniform")
#: names of :data:`models.variability.VARIABILITY_PRESETS`
VARIABILITY_PRESET_NAMES = ("tio2-3it", "ideal")
#: transfer models selectable beside the presets: Drolet et al. 2023's published simulation
TRANSFER_MODEL_NAMES = ("drolet2023",)
