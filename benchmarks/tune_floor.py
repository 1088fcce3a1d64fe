"""The numpy floor of one write-verify step: the tuner's physics written as minimal numpy.

Per step, for ``P`` busy cells per chip on distinct rows and columns (the slot layout the tuner
uses): gather their conductances, read them (cubic I-V, multiplicative read noise), test the verify
band, ramp the amplitude (SET below, RESET above, reset of the ramp on a polarity flip), apply the
V/2 pulse to the selected cells (threshold, width factor, log-normal cycle-to-cycle noise,
relaxation, clipping), scatter the new states back, and screen the half-selected cells of each
pulsed line against V/2 (a precomputed per-line minimum threshold).  No bookkeeping, no
scheduling, no checks: what any implementation must at least do.  :func:`floor_step_s` returns
the CPU time of one step, s; ``benchmarks/tune_sim.py`` prints the tuner's time per step against it,
measured in the same run.

    PYTHONPATH=. python benchmarks/tune_floor.py
"""
from __future__ import annotations

import time

import numpy as np

from mock_hw.presets import get_preset


def floor_step_s(rows: int, cols: int, chips: int, busy: float | None = None, steps: int = 400,
                 seed: int = 0) -> float:
    """Mean CPU time of one minimal step on ``chips`` chips of ``rows`` × ``cols`` with ``busy``
    busy cells in all (default: every chip's ``min(rows, cols)`` slots busy), s."""
    preset = get_preset("tio2-3it")
    d = preset.device
    rng = np.random.default_rng(seed)
    p = min(rows, cols)
    g = rng.uniform(d.g_min, d.g_max, size=(chips, rows, cols))
    vth_set = rng.normal(1.0, 0.05, size=g.shape)
    vth_reset = rng.normal(1.0, 0.05, size=g.shape)
    rate = rng.lognormal(0.0, 0.2, size=g.shape)
    min_row = np.minimum(vth_set, vth_reset).min(axis=2)       # per-line screens, precomputed
    min_col = np.minimum(vth_set, vth_reset).min(axis=1)
    total = int(round(busy)) if busy is not None else p * chips
    if not 1 <= total <= p * chips:
        raise ValueError(f"busy cells must be in [1, {p * chips}], got {busy}")
    chip = np.arange(total) % chips               # spread over the chips, distinct lines per chip
    lane = np.arange(total) // chips
    target = rng.uniform(*preset.programming_window, size=chip.size)
    amp = np.zeros(chip.size)
    last_pol = np.zeros(chip.size)
    norm = 1.0 + d.beta * d.v_ref ** 2
    span = d.g_max - d.g_min
    t0 = time.process_time()
    for k in range(steps):
        r = lane
        c = (lane + k) % cols
        gi = g[chip, r, c]                                                     # gather
        v = preset.v_read
        i = gi * v * (1 + d.beta * v * v) / norm
        i = i * (1 + d.read_noise * rng.standard_normal(i.size))               # read noise
        reading = i / v
        need = np.abs(reading - target) > 0.008 * target                       # band test
        pol = np.where(reading < target, 1.0, -1.0)
        amp = np.where(pol == last_pol, np.minimum(amp + 0.05, 2.1), 1.1)      # ramp
        last_pol = pol
        vp = pol * amp
        od = np.maximum(np.where(pol > 0, vp - vth_set[chip, r, c], -vp - vth_reset[chip, r, c]), 0.0)
        room = np.where(pol > 0, (d.g_max - gi) / span, (gi - d.g_min) / span)
        xi = np.exp(d.c2c_sigma * rng.standard_normal(gi.size))                # c2c noise
        dg = pol * np.where(pol > 0, d.k_set, d.k_reset) * od ** d.od_power * room * rate[chip, r, c] * xi
        dg = dg * (1.0 - d.relax * rng.uniform(0.0, 2.0, size=dg.size))       # relaxation
        g[chip, r, c] = np.where(need, np.clip(gi + dg, d.g_min, d.g_max), gi)  # scatter
        _ = (amp / 2 > min_row[chip, r]).any() or (amp / 2 > min_col[chip, c]).any()  # half-select screen
    return (time.process_time() - t0) / steps


if __name__ == "__main__":
    for shape in ((64, 64, 1), (8, 8, 1000)):
        print(f"{shape[2]} x {shape[0]}x{shape[1]}: floor {1e3 * floor_step_s(*shape):.3f} ms per step")
