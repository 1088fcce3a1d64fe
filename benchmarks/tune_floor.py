"""The numpy floor of one write-verify step: the tuner's physics written as minimal numpy.

The floor replays the tuner's own workload: :func:`record_workload` runs the tuner once (untimed)
on a simulated ``tio2-3it`` chip and keeps, for every step, the cells it read and the cells it
pulsed with their signed amplitudes and widths; :func:`floor_step_s` then does, on the same chip
population (thresholds, rates, stuck devices) and for those same cells, what any implementation
must at least do each step:

* **read**: gather the busy cells' conductances, cubic I-V at V_read, multiplicative read noise;
* **algorithm**: verify-band test and amplitude ramp (SET below, RESET above, back to the start on
  a polarity flip), per cell state gathered and scattered;
* **pulse** (V/2, ideal lines): the pulse-width law (|V|_eq = |V| + v_per_decade·log10(w/w_ref))
  for the selected and the half-selected cells, thresholds, soft-bounded overdrive step with the
  device's rate, log-normal cycle-to-cycle noise and post-write relaxation drawn only for the
  devices beyond a threshold, clipping, scatter; the source's compliance test; the pulse energy
  (selected device plus the half-selected devices of its row and column, from line sums);
* **half-select**: each pulsed line screened against its lowest threshold (precomputed), and the
  lines that pass it switched cell by cell (the same switching law at V/2);
* **relaxation under programming activity**: on every chip that got a pulse of at least
  ``disturb_v`` (initial RESETs, high ramp steps) every other working device drifts by the
  increment of N(μ_d·n^q, (σ_d·n^b)²) from n to n + events (capped at ``disturb_n_max``; the
  per-count increments tabulated once, as the tuner does), and the pulsed devices' event counts
  restart.

No scheduling, no bookkeeping (pulse/read counts, durations, statuses, give-up tests, journal), no
checks of the requests: those are the tuner's overheads the ratio measures.  The pulses applied are
the tuner's (amplitudes and widths as recorded), so both sides do the same physics on the same
number of cells, loud pulses and half-select switches.

This models ideal lines (the configuration ``benchmarks/tune_sim.py`` quotes its 3x target for).
On the default ``tio2-3it`` lines (0.67 Ω) every read and pulse is a nodal solve and the IR-drop
correction inverts every reading: :func:`floor_step_s` with ``lines=True`` adds the chip's line
solves (:class:`mock_hw.nodal.LineSolver`, one right-hand side per busy read and per pulse, the
thresholds tested on every cell's solved voltage), the correction's inversion of each reading and
its model refreshes as often as the tuner's run refreshed it (:class:`~programming.ir_correction.ReadCorrection`,
fitted before the timing as the tuner's is before its first step).  Its pulses then switch the
cells of the ideal-line model (the selected ones and the half-selected lines): the voltage drops
along the lines change how far they switch, not how much work that is.

    PYTHONPATH=. python benchmarks/tune_floor.py
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

import programming.tuner as tuner_module
from mock_hw.presets import get_preset
from mock_hw.sim_chip import SimulatedCrossbar
from programming.ir_correction import ReadCorrection
from programming.tuner import TuneInterrupted, TunerConfig, tune


def make_run(rows: int, cols: int, chips: int, seed: int, r_line: float = 0.0):
    """The benchmark's chip and random targets (100–500 µS)."""
    xb = SimulatedCrossbar(rows, cols, n_chips=chips, seed=seed, r_line=r_line)
    targets = np.random.default_rng(seed + 100).uniform(*xb.programming_window, size=(chips, rows, cols))
    return xb, targets


def config_for(r_line: float) -> TunerConfig:
    """The tuner settings of the benchmark: defaults, with the read correction on resistive lines
    (line resistance and I-V coefficient as ``xbar calibrate-lines`` measures them: here the
    chip's own values, so the figure does not depend on a calibration run)."""
    if not r_line:
        return TunerConfig()
    return TunerConfig(line_resistance=r_line, device_beta=get_preset("tio2-3it").device.beta)


@dataclass
class Workload:
    """One tune's steps: per step the flat cell indices read, and the cells pulsed (flat index,
    chip, row, column, signed amplitude V, width s); plus the chip it ran on (at the first step,
    after the tuner's RESET sweep)."""

    shape: tuple[int, int, int]
    params: object
    g0: np.ndarray
    vth_set: np.ndarray
    vth_reset: np.ndarray
    rate: np.ndarray
    stuck: np.ndarray
    working: np.ndarray
    target: np.ndarray
    r_line: float = 0.0
    reads: list = field(default_factory=list)
    pulses: list = field(default_factory=list)
    refreshes: list = field(default_factory=list)

    @property
    def busy(self) -> float:
        """Mean cells read per step."""
        return float(np.mean([r.size for r in self.reads]))


def run_tuner(xb, targets, r_line: float = 0.0, max_steps: int | None = None, started=None) -> int:
    """Tune (the benchmark's settings), stopping after ``max_steps`` steps if given (tuner steps,
    counted at the tuner's ``_step``: ``should_stop`` is also asked during the set-up, the line
    estimate and the first fit, which on resistive lines took all of a small ``max_steps`` before
    the first step); ``started``: called just before the first step.  Returns the steps taken."""
    count = [0]
    step = tuner_module._step

    def counted(*args):
        if count[0] == 0 and started is not None:
            started()
        count[0] += 1
        return step(*args)

    def stop():
        return max_steps is not None and count[0] >= max_steps

    tuner_module._step = counted
    try:
        tune(xb, targets, config_for(r_line), should_stop=stop)
    except TuneInterrupted:
        pass
    finally:
        tuner_module._step = step
    return count[0]


def timed_tune(rows: int, cols: int, chips: int, seed: int, r_line: float = 0.0,
               max_steps: int | None = None) -> tuple[float, float, int]:
    """(CPU s per tuner step timed from the first step, CPU s of the whole call, steps) of one tune
    (its first ``max_steps`` steps if given); the per-step figure leaves out the one-time set-up
    (target checks, the read correction's first fit)."""
    first = []
    xb, targets = make_run(rows, cols, chips, seed, r_line)
    t0 = time.process_time()
    steps = run_tuner(xb, targets, r_line, max_steps, started=lambda: first.append(time.process_time()))
    t1 = time.process_time()
    return (t1 - (first[0] if first else t1)) / max(steps, 1), t1 - t0, steps


def record_workload(rows: int, cols: int, chips: int, seed: int, r_line: float = 0.0,
                    max_steps: int | None = None) -> Workload:
    """Run the tuner once (untimed) and keep every step's reads and pulses (the first
    ``max_steps`` steps if given)."""
    xb, targets = make_run(rows, cols, chips, seed, r_line)
    pop = xb.population
    w = Workload((chips, rows, cols), xb.params, xb.true_conductance.ravel(), pop.vth_set.ravel().copy(),
                 pop.vth_reset.ravel().copy(), pop.rate.ravel().copy(), pop.stuck.ravel().copy(),
                 xb.working_mask.ravel(), targets.ravel().copy(), r_line)
    step, read, pulse, refresh = tuner_module._step, xb.read, xb.pulse, ReadCorrection.refresh
    inside = {"on": False}

    def rec_refresh(self, *args, **kwargs):      # after a step (cells finished, read-backs): counted with it
        if w.refreshes:
            w.refreshes[-1] += 1
        return refresh(self, *args, **kwargs)

    def flat(rows_, cols_, active):
        chip = np.broadcast_to(np.arange(chips)[:, None], rows_.shape)[active]
        return (chip * rows + rows_[active]) * cols + cols_[active], chip

    def rec_read(rows_, cols_, v=None, scheme="ground", active=None):
        if inside["on"]:
            w.reads.append(flat(rows_, cols_, active)[0])
        return read(rows_, cols_, v, scheme, active)

    def rec_pulse(rows_, cols_, amplitude, width, scheme="v/2", active=None):
        if inside["on"]:        # a step's pulse (the RESET sweep before the first step is no step)
            f, chip = flat(rows_, cols_, active)
            amp = np.broadcast_to(amplitude, rows_.shape)[active]
            wid = np.broadcast_to(width, rows_.shape)[active]
            w.pulses[-1] = (f, chip, rows_[active], cols_[active], amp, wid)
        return pulse(rows_, cols_, amplitude, width, scheme, active)

    def rec_step(xb_, n, *args):
        if not w.pulses:            # the steps start from the chip the RESET sweep left
            w.g0 = xb_.true_conductance.ravel().copy()
        inside["on"] = True
        w.pulses.append(None)
        w.refreshes.append(0)
        try:
            out = step(xb_, n, *args)
        finally:
            inside["on"] = False
        if len(w.reads) < len(w.pulses):
            w.reads.append(np.empty(0, np.intp))
        return out

    xb.read, xb.pulse = rec_read, rec_pulse
    tuner_module._step, ReadCorrection.refresh = rec_step, rec_refresh
    try:
        run_tuner(xb, targets, r_line, max_steps)
    finally:
        tuner_module._step, ReadCorrection.refresh = step, refresh
    return w


def _lane_in_chip(chip: np.ndarray, n_chips: int):
    """Each lane's position among its chip's lanes (``chip`` ascending) and the most lanes of a chip."""
    counts = np.bincount(chip, minlength=n_chips)
    return np.arange(chip.size) - (np.cumsum(counts) - counts)[chip], max(int(counts.max(initial=0)), 1)


def floor_step_s(w: Workload, steps: int | None = None, seed: int = 0, lines: bool = False) -> float:
    """Mean CPU time of one minimal step over the first ``steps`` steps of workload ``w``, s.
    ``lines``: add the nodal line solves of resistive lines (reads and pulses)."""
    p = w.params
    d = p.device
    B, R, C = w.shape
    rng = np.random.default_rng(seed)
    g = w.g0.copy()
    g3 = g.reshape(B, R, C)
    n_ev = np.zeros(g.size)
    amp = np.zeros(g.size)
    last_pol = np.zeros(g.size, np.int8)
    vs3, vr3 = w.vth_set.reshape(B, R, C), w.vth_reset.reshape(B, R, C)
    screen_set = np.where(w.stuck, np.inf, w.vth_set).reshape(B, R, C)
    screen_reset = np.where(w.stuck, np.inf, w.vth_reset).reshape(B, R, C)
    row_set, row_reset = screen_set.min(axis=2), screen_reset.min(axis=2)     # per-line screens, precomputed
    col_set, col_reset = screen_set.min(axis=1), screen_reset.min(axis=1)
    # the drift increment from n to n + e events (n = 0..n_max, e = 0..lanes), tabulated once
    n_tab = max(R, C) + 1
    n0 = np.arange(int(d.disturb_n_max) + 1, dtype=float)[:, None]
    n1 = np.minimum(n0 + np.arange(n_tab), d.disturb_n_max)
    drift_sd = np.sqrt(d.disturb_sigma ** 2 * (n1 ** (2 * d.disturb_sigma_power) - n0 ** (2 * d.disturb_sigma_power))).ravel()
    drift_mu = (d.disturb_mu * (n1 ** d.disturb_mu_power - n0 ** d.disturb_mu_power)).ravel()
    pulsed = np.zeros(g.size, bool)
    norm = 1.0 + d.beta * d.v_ref ** 2
    c_read = p.v_read * (1 + d.beta * p.v_read ** 2) / norm
    span = d.g_max - d.g_min
    band = 0.01 * 0.8
    solver = corr = None
    if lines:              # the chip's line solver, and the tuner's read correction fitted (untimed)
        from mock_hw.nodal import LineSolver
        solver = LineSolver(w.r_line, d.beta, d.v_ref)
        cfg = config_for(w.r_line)
        corr = ReadCorrection((R, C), B, p.v_read, cfg.line_resistance, beta=cfg.device_beta)
        corr.est = g3.copy()
        corr.refresh()
    steps = len(w.reads) if steps is None else min(steps, len(w.reads))
    t0 = time.process_time()
    for k in range(steps):
        rf = w.reads[k]
        if rf.size:
            if solver is not None:                                              # grounded reads, lane by lane
                rchip = rf // (R * C)
                pos, K = _lane_in_chip(rchip, B)
                row_v = np.zeros((B, K, R))
                row_v[rchip, pos, (rf // C) % R] = p.v_read
                solver.solve(g3, row_v, np.zeros((B, K, C)), tol=1e-10)
            i = g.take(rf) * c_read
            i *= 1 + d.read_noise * rng.standard_normal(rf.size)               # read noise
            reading = i / p.v_read
            if corr is not None:                                                # IR-drop correction
                reading = corr._a.reshape(-1).take(rf) / (1.0 / reading - corr._c.reshape(-1).take(rf))
                corr.est.reshape(-1)[rf] = reading
                for _ in range(w.refreshes[k]):
                    corr.refresh()
            t = w.target.take(rf)
            pol = np.where(reading < t, 1, -1).astype(np.int8)                  # band test, ramp
            _need = np.abs(reading - t) > band * t
            a = np.where(pol == last_pol.take(rf), np.minimum(amp.take(rf) + 0.05, np.where(pol > 0, 2.1, 2.4)), 1.1)
            amp.put(rf, a)
            last_pol.put(rf, pol)
        if w.pulses[k] is None:
            continue
        pf, chip, r, c, v, wd = w.pulses[k]
        if solver is not None:                                                  # V/2 pulses on the lines
            lane, K = _lane_in_chip(chip, B)
            half_v = np.zeros((B, K))
            half_v[chip, lane] = v / 2
            row_v = np.repeat(half_v[:, :, None], R, axis=2)
            col_v = np.repeat(half_v[:, :, None], C, axis=2)
            row_v[chip, lane, r] = v
            col_v[chip, lane, c] = 0.0
            sol = solver.solve(g3, row_v, col_v, tol=1e-7)
            beyond = (sol.v_cell > vs3[:, None]) | (-sol.v_cell > vr3[:, None])   # every cell sees a voltage
            _cells = np.flatnonzero(beyond.any(axis=1))
        gp = g.take(pf)
        shift = d.v_per_decade * np.log10(wd / d.width_ref)                     # pulse-width law
        mag = np.maximum(np.abs(v) + shift, 0.0)
        pos = v > 0
        od = mag - np.where(pos, w.vth_set.take(pf), w.vth_reset.take(pf))
        i_sel = gp * v * (1 + d.beta * v * v) / norm
        _comp = np.abs(i_sel) > p.limits.i_compliance                           # compliance
        half = v / 2                                                            # energy: line sums
        g_half = g3[chip, r, :].sum(axis=1) + g3[chip, :, c].sum(axis=1) - 2 * gp
        _energy = (v * i_sel + half * half * (1 + d.beta * half * half) / norm * g_half) * wd
        live = np.flatnonzero((od > 0) & ~w.stuck.take(pf))
        if live.size:
            idx, gl, pl = pf[live], gp[live], pos[live]
            room = np.where(pl, d.g_max - gl, gl - d.g_min) / span
            xi = np.exp(d.c2c_sigma * rng.standard_normal(live.size))           # c2c noise
            dg = np.where(pl, d.k_set, -d.k_reset) * od[live] ** 2 * room * w.rate.take(idx) * xi
            dg *= 1.0 - d.relax * 2.0 * rng.random(live.size)                   # relaxation
            g.put(idx, np.clip(gl + dg, d.g_min, d.g_max))
        half_eq = np.maximum(np.abs(half) + shift, 0.0)                         # half-select screen
        hit_row = np.where(pos, half_eq > row_set[chip, r], half_eq > row_reset[chip, r])
        hit_col = np.where(pos, half_eq > col_set[chip, c], half_eq > col_reset[chip, c])
        for hit, line_of in ((hit_row, "row"), (hit_col, "col")):
            q = np.flatnonzero(hit)
            if not q.size:
                continue
            cb, cr, cc = chip[q], r[q], c[q]
            th = np.where(pos[q, None], vs3[cb, cr, :] if line_of == "row" else vs3[cb, :, cc],
                          vr3[cb, cr, :] if line_of == "row" else vr3[cb, :, cc])
            lk, pos_on = np.nonzero(half_eq[q, None] > th)
            cells = ((cb[lk] * R + (cr[lk] if line_of == "row" else pos_on)) * C
                     + (pos_on if line_of == "row" else cc[lk]))
            keep = ~w.stuck.take(cells) & (cells != pf[q[lk]])
            cells, lk = cells[keep], lk[keep]
            if cells.size:
                gl, pl = g.take(cells), pos[q[lk]]
                odh = half_eq[q[lk]] - th[lk, pos_on[keep]]
                room = np.where(pl, d.g_max - gl, gl - d.g_min) / span
                dg = np.where(pl, d.k_set, -d.k_reset) * odh ** 2 * room * w.rate.take(cells) \
                    * np.exp(d.c2c_sigma * rng.standard_normal(cells.size)) * (1.0 - d.relax * 2.0 * rng.random(cells.size))
                g.put(cells, np.clip(gl + dg, d.g_min, d.g_max))
        n_ev.put(pf, 0.0)                                                       # programmed: count restarts
        loud = np.abs(v) >= d.disturb_v
        if loud.any() and d.disturbs:                                           # relaxation under activity
            ev = np.bincount(chip[loud], minlength=B)
            lc = np.flatnonzero(ev)
            cells = (lc[:, None] * (R * C) + np.arange(R * C)).ravel()
            pulsed.put(pf, True)
            cells = cells[w.working.take(cells) & ~pulsed.take(cells)]
            pulsed.put(pf, False)
            e = ev.take(cells // (R * C))
            n = n_ev.take(cells)
            ti = np.minimum(n, d.disturb_n_max).astype(np.intp) * n_tab + np.minimum(e, n_tab - 1)
            g.put(cells, np.clip(g.take(cells) + drift_mu.take(ti) + drift_sd.take(ti) * rng.standard_normal(cells.size),
                                 d.g_min, d.g_max))
            n_ev.put(cells, n + e)
    return (time.process_time() - t0) / max(steps, 1)


if __name__ == "__main__":
    for shape in ((64, 64, 1), (8, 8, 1000)):
        wl = record_workload(*shape[:2], shape[2], seed=0)
        print(f"{shape[2]} x {shape[0]}x{shape[1]}: {len(wl.reads)} steps, {wl.busy:.0f} busy cells, "
              f"floor {1e3 * floor_step_s(wl):.3f} ms per step")
