"""The pulse width and amplitude schedule of the procedures that tune (tune, deploy).

``--width SECONDS`` (default: the shortest pulse the chip takes — on a station, what its drive
instrument can source, e.g. 100 µs on a 2636B, 50 µs on a B2902A — and at least the recipe's 1 µs);
``--schedule auto|recipe`` (default: the 3IT recipe's amplitudes at 1 µs, ``auto`` at any other
width: :func:`programming.auto_schedule.auto_schedule` probes the cells); ``--amplitude-start``,
``--amplitude-step``, ``--amplitude-max`` (V) override the schedule's start (SET and RESET), step
and caps (SET, RESET and the initial RESET).  The chosen schedule is saved in the run folder
(``schedule.json``) and reused when the run is resumed.
"""
from __future__ import annotations

from dataclasses import replace

from pymeasure.experiment import FloatParameter, Parameter

from programming.auto_schedule import RECIPE, auto_schedule, with_width
from programming.tuner import TunerConfig

from ..storage.run_data import read_json, write_json

SCHEDULES = ("auto", "recipe")
SCHEDULE_JSON = "schedule.json"
#: the TunerConfig fields a schedule sets
SCHEDULE_FIELDS = ("width", "reset_width", "width_max", "v_set_start", "v_reset_start", "v_step", "v_set_max",
                   "v_reset_max", "reset_amplitude")


def chip_width(width: float, default: float, limits=None) -> float:
    """A procedure's pulse width, s: ``width`` if given (non-zero), else ``default`` raised to the
    chip's shortest pulse (``limits.width_min``: on a station, what its drive instrument gives)."""
    if float(width):
        return float(width)
    return max(default, limits.width_min) if limits is not None else default


class PulseScheduleMixin:
    """Parameters and helpers of the pulse schedule (module docstring); for procedures with
    ``self.xb``, ``self.run_dir``, ``self.resuming`` and ``self.report``."""

    width = FloatParameter("Pulse width (0 = the chip's shortest, at least 1 µs)", units="s", minimum=0, default=0.0)
    schedule = Parameter("Amplitude schedule (auto or recipe; default recipe at 1 µs, auto otherwise)", default="")
    amplitude_start = FloatParameter("First amplitude (0 = the schedule's)", units="V", minimum=0, default=0.0)
    amplitude_step = FloatParameter("Amplitude step (0 = the schedule's)", units="V", minimum=0, default=0.0)
    amplitude_max = FloatParameter("Largest amplitude (0 = the schedule's)", units="V", minimum=0, default=0.0)

    def pulse_width(self, limits=None) -> float:
        """The write pulse width, s: ``--width``, else the chip's shortest (at least 1 µs)."""
        return chip_width(self.width, RECIPE.width, limits)

    def schedule_mode(self, limits=None) -> str:
        mode = str(self.schedule or "").strip().lower()
        if mode and mode not in SCHEDULES:
            raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        return mode or ("recipe" if self.pulse_width(limits) == RECIPE.width else "auto")

    def pulse_config(self, base: TunerConfig, limits=None) -> TunerConfig:
        """``base`` at the run's width with the explicit amplitude options applied (the auto
        schedule, if any, is applied in :meth:`scheduled`)."""
        self.schedule_mode(limits)
        return self._overrides(with_width(base, self.pulse_width(limits)))

    def _overrides(self, cfg: TunerConfig) -> TunerConfig:
        ch = {}
        if float(self.amplitude_start):
            ch.update(v_set_start=float(self.amplitude_start), v_reset_start=float(self.amplitude_start))
        if float(self.amplitude_step):
            ch.update(v_step=float(self.amplitude_step))
        if float(self.amplitude_max):
            top = float(self.amplitude_max)
            ch.update(v_set_max=top, v_reset_max=top, reset_amplitude=min(cfg.reset_amplitude, top))
        try:
            return replace(cfg, **ch)
        except ValueError as exc:
            raise ValueError(f"--amplitude-start/--amplitude-step/--amplitude-max: {exc}") from None

    def scheduled(self, cfg: TunerConfig) -> TunerConfig:
        """``cfg`` (from :meth:`pulse_config`) with the auto schedule when it applies: probed on
        ``self.xb`` now, or read back from the run folder when resuming; explicit amplitude
        options still win.  Records the schedule in ``self.schedule_report``."""
        mode = self.schedule_mode(self.xb.limits)
        saved = self.run_dir / SCHEDULE_JSON
        if mode == "auto":
            if self.resuming and saved.is_file():
                rep = read_json(saved)
                cfg = replace(cfg, **{k: rep["schedule"][k] for k in SCHEDULE_FIELDS if k in rep["schedule"]})
            else:
                cfg, rep = auto_schedule(self.xb, cfg)
            cfg = self._overrides(cfg)
        else:
            rep = {}
        rep = {"mode": mode, **rep, "schedule": {k: getattr(cfg, k) for k in SCHEDULE_FIELDS}}
        write_json(saved, rep)
        self.schedule_report = rep
        return cfg
