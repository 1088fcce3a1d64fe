"""The write-verify amplitude schedule at whatever pulse width a bench gives.

The tuner's defaults (:class:`~programming.tuner.TunerConfig`) are the 3IT TiO2 recipe at 1 µs:
amplitudes from ±1.1 V in 50 mV steps up to 2.1 V (SET) / 2.4 V (RESET).  A bench whose write
instrument cannot make 1 µs pulses (a 2636B from ~100 µs, a B2902A from 50 µs) switches the same
devices at lower voltages: oxide switching is exponentially faster with voltage, so a longer pulse
needs less of it (the voltage–time dilemma; Pickett et al., J. Appl. Phys. 106, 074508 (2009);
Menzel et al., Adv. Funct. Mater. 21, 4487 (2011)), and the recipe's start would overshoot.

:func:`with_width` moves a config to another width (pulse and RESET widths; nothing else).
:func:`auto_schedule` finds the amplitudes by probing the cells themselves, through the Crossbar
interface — only what a bench can measure:

1. take ``cells`` cells on distinct rows and columns (spread over the array), read each
   ``reads`` times (the reference);
2. for SET, then RESET: pulse every probed cell at ``v_low``, ``v_low + step``, ... (the config's
   width and write scheme), reading after each pulse; a cell's *turn-on* amplitude is the first
   that moved its reading by more than ``detect`` (relative) in the pulse's direction.  The ramp
   stops at the config's caps (and the chip's ``v_max``);
3. the schedule starts where the median probed cell turns on — as the recipe's 1.1 V does at 1 µs
   on devices with ~1 V thresholds — keeps the recipe's step, and keeps the recipe's head-room
   above the start for the caps (SET +1.0 V, RESET +1.3 V, initial RESET +0.9 V), within
   ``v_max``.  Under V/2 (V/3) the caps are also held below 2× (3×) the start, so a half-selected
   neighbour of typical threshold stays below its switching amplitude at this width (the recipe
   at 1 µs: 1.1 V start, 2.1 V SET cap).

Where the tuner compensates its writes for resistive lines (``line_resistance`` > 0 with
``write_compensation``) its amplitudes are what a cell is to get, so each probed turn-on drive is
taken times the share of it the tuner's line model puts across that cell (one read of every cell
fits the model): a probed cell far from the drivers turns on at a drive the lines cut down, and
the schedule would otherwise start that much too high for every cell.

Stuck cells never turn on and are ignored; if no probed cell turns on, a ValueError says so.  The
probe's pulses change the probed cells slightly (a few tenths of a percent each way); they are
tuned afterwards like every other cell.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .crossbar import Crossbar, parse_read_scheme, parse_write_scheme, WriteScheme
from .ir_correction import ReadCorrection
from .tuner import WRITE_SHARES, TunerConfig, choose_write_scheme

__all__ = ["ProbeSettings", "auto_schedule", "with_width", "probe_cells", "RECIPE"]

#: the 3IT recipe the head-rooms are taken from (1 µs pulses)
RECIPE = TunerConfig()


@dataclass(frozen=True)
class ProbeSettings:
    """How :func:`auto_schedule` probes.

    Attributes:
        cells: cells probed (on distinct rows and columns; at most min(rows, cols)).
        v_low: first probe amplitude, V.
        step: probe amplitude increment, V.
        reads: reads averaged for each cell's reference reading.
        detect: relative change of the reading that counts as turned on (default: half the
            config's verify band, tolerance·(1 − guard)/2).
    """

    cells: int = 8
    v_low: float = 0.3
    step: float = 0.05
    reads: int = 2
    detect: float | None = None

    def __post_init__(self):
        if int(self.cells) < 1 or int(self.reads) < 1:
            raise ValueError("ProbeSettings.cells and reads must be >= 1")
        if not (self.v_low > 0 and self.step > 0):
            raise ValueError("ProbeSettings.v_low and step must be positive (V)")
        if self.detect is not None and not 0 < self.detect < 0.5:
            raise ValueError("ProbeSettings.detect is a relative change in (0, 0.5)")


def with_width(cfg: TunerConfig, width: float) -> TunerConfig:
    """``cfg`` with write and initial-RESET pulses of ``width`` (s); ``width_max`` is raised to it
    if needed.  Amplitudes are unchanged (see :func:`auto_schedule`)."""
    return replace(cfg, width=float(width), reset_width=float(width), width_max=max(cfg.width_max, float(width)))


def probe_cells(shape: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` cells (at most min(rows, cols)) on distinct rows and distinct columns, spread over
    the array: rows and columns evenly spaced, the columns rotated by half the array."""
    rows, cols = shape
    k = max(1, min(int(n), rows, cols))
    r = np.unique(np.linspace(0, rows - 1, k).round().astype(np.intp))
    c = np.unique(np.linspace(0, cols - 1, k).round().astype(np.intp))
    c = np.roll(c, k // 2)
    return r, c[: r.size]


def auto_schedule(xb: Crossbar, cfg: TunerConfig, settings: ProbeSettings | None = None) -> tuple[TunerConfig, dict]:
    """Probe the cells of ``xb`` at ``cfg``'s width and scheme and return ``cfg`` with the
    amplitude schedule chosen from their response (module docstring), and a report: the probed
    cells, their turn-on amplitudes (V, NaN where a cell never turned on), the probe's pulses and
    reads, and the schedule chosen."""
    s = settings or ProbeSettings()
    cfg = choose_write_scheme(xb, cfg)      # probed with the scheme the tune will write with
    cfg.check_limits(xb.limits)
    detect = s.detect if s.detect is not None else cfg.tolerance * (1 - cfg.guard) / 2
    r, c = probe_cells(xb.shape, s.cells)
    rows = np.broadcast_to(r, (xb.n_chips, r.size))
    cols = np.broadcast_to(c, (xb.n_chips, c.size))
    counts = {"pulses": 0, "reads": 0}

    def read(active):
        counts["reads"] += int(active.sum())
        return xb.read(rows, cols, cfg.v_read, cfg.read_scheme, active=active).conductance

    v_on = {}
    v_max = float(xb.limits.v_max)
    for name, pol, cap in (("set", 1, cfg.v_set_max), ("reset", -1, cfg.v_reset_max)):
        active = np.ones(rows.shape, bool)
        ref = sum(read(active) for _ in range(s.reads)) / s.reads
        on = np.full(rows.shape, np.nan)
        v = s.v_low
        top = min(cap, v_max)
        while active.any() and v <= top + 1e-9:
            xb.pulse(rows, cols, pol * v, cfg.width, cfg.write_scheme, active=active)
            counts["pulses"] += int(active.sum())
            g = read(active)
            moved = active & (pol * (g - ref) > detect * ref)
            on[moved] = v
            active &= ~moved
            v = round(v + s.step, 9)
        if np.isnan(on).all():
            raise ValueError(f"auto schedule: none of the {on.size} probed cells changed by {100 * detect:.2g} % "
                             f"under {name.upper()} pulses up to {top:g} V at {cfg.width:g} s "
                             f"(give --amplitude-start/--amplitude-max, or a longer --width)")
        v_on[name] = on

    share = {WriteScheme.V2: 2.0, WriteScheme.V3: 3.0}.get(parse_write_scheme(cfg.write_scheme), np.inf)
    drive_on = v_on
    v_on = _reached(xb, cfg, rows, cols, v_on)
    start = {k: float(np.nanmedian(v)) for k, v in v_on.items()}
    half_safe = {k: share * v for k, v in start.items()}

    def cap(name, head):
        return float(min(start[name] + head, v_max, max(half_safe[name], start[name])))

    out = replace(cfg, v_set_start=start["set"], v_reset_start=start["reset"],
                  v_set_max=cap("set", RECIPE.v_set_max - RECIPE.v_set_start),
                  v_reset_max=cap("reset", RECIPE.v_reset_max - RECIPE.v_reset_start),
                  reset_amplitude=cap("reset", RECIPE.reset_amplitude - RECIPE.v_reset_start))
    chosen = {k: getattr(out, k) for k in ("width", "v_set_start", "v_reset_start", "v_step", "v_set_max",
                                           "v_reset_max", "reset_amplitude")}
    report = {"cells": [[int(a), int(b)] for a, b in zip(r, c)], "detect": detect,
              "v_on_set": v_on["set"].tolist(), "v_on_reset": v_on["reset"].tolist(),
              "drive_on_set": drive_on["set"].tolist(), "drive_on_reset": drive_on["reset"].tolist(),
              "probe": asdict(s), **counts, "schedule": chosen}
    return out, report


def _reached(xb: Crossbar, cfg: TunerConfig, rows, cols, v_on: dict) -> dict:
    """The probed turn-on amplitudes ``v_on`` (drives, V) as what reached the cells, where the tuner
    compensates its writes for the lines (``cfg.line_resistance`` > 0 with ``write_compensation``,
    V/2 or V/3): its amplitudes are then what a cell is to get, and a probed cell far from the
    drivers turned on at a drive the lines cut down (on 64×64 at 0.67 Ω to 64–95 %).  Each drive
    times the share of it the tuner's line model puts across the cell
    (:meth:`~programming.ir_correction.ReadCorrection.write_transfer`), the model fitted to one
    read of every cell; unchanged otherwise."""
    shares = WRITE_SHARES.get(parse_write_scheme(cfg.write_scheme))
    if not (cfg.line_resistance > 0 and cfg.write_compensation and shares is not None):
        return v_on
    scheme = parse_read_scheme(cfg.read_scheme).value
    corr = ReadCorrection(xb.shape, xb.n_chips, cfg.v_read or xb.v_read, cfg.line_resistance,
                          cfg.access_resistance, scheme=scheme, beta=cfg.device_beta)
    r, c = (a.ravel() for a in np.indices(xb.shape))
    corr.correct_map(xb.read(r, c, cfg.v_read, cfg.read_scheme).conductance.reshape(xb.n_chips, *xb.shape))
    return {k: v * corr.write_transfer(rows, cols, np.nan_to_num(v, nan=1.0), *shares) for k, v in v_on.items()}
