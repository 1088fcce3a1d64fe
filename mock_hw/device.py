"""TiO2 memristor device physics: pure functions over numpy arrays (SI units).

State variable
--------------
Each device's state is its *read conductance* ``g`` (S): the chord conductance I/V measured at the
reference read voltage ``v_ref`` (0.2 V).  Targets, reads and reports all speak this quantity.

I-V (:func:`iv_current`)
------------------------
    I(V) = g · V · (1 + β V²) / (1 + β v_ref²)

a cubic nonlinearity (β in 1/V²), so a half-selected cell at V/2 carries less than half the current
of a cell at V, and I(v_ref) = g · v_ref exactly.

Switching (:func:`switching_step`)
----------------------------------
No change while the cell voltage stays between the device's RESET and SET thresholds
(−vth_reset < V < vth_set).  Above threshold, with overdrive od = |V| − vth:

    ΔG_set   = + k_set   · s · (od / 1 V)^n · ((g_max − g)/(g_max − g_min))^p_set   · ξ
    ΔG_reset = − k_reset · s · (od / 1 V)^n · ((g − g_min)/(g_max − g_min))^p_reset · ξ

where s is the device's rate factor (device-to-device spread), ξ a log-normal cycle-to-cycle factor
(median 1, shape σ_c2c), and the soft-bound windows slow each direction as the state approaches its
bound (asymmetric up/down steps).  The step is monotonic in |V| and w for a fixed noise draw, and the
result is clipped to the physical range [g_min, g_max].  After a step the device relaxes back toward
its previous state by a fraction ``relax`` of the step.  Stuck devices never change.

Relaxation under programming activity (:func:`disturb_drift`)
-------------------------------------------------------------
A freshly programmed device keeps relaxing while the rest of its array is programmed.  Every write
pulse of amplitude |V| ≥ ``disturb_v`` on *another* cell of the same array (an initial RESET, a
high ramp step) is one *event* for it — a clock of programming activity.  After n events since the
device was last programmed it has drifted by

    ΔG(n) ~ N(μ_d · n^q, (σ_d · n^b)²)     (independent increments from event to event)

so each event adds the increment that takes n − 1 to n: a sub-diffusive relaxation (b < 1/2) that
grows smoothly with the number of later-programmed cells of the array, whatever their row or column,
saturates after ``disturb_n_max`` = 46 events (where the measured drift stops growing), and
restarts when the device is programmed again.  This is the measured behaviour: Drolet et al.
2023's drift samples (``tio2_3it_drift.json``), taken cell by cell on 8×8 arrays, grow smoothly
with k = the number of cells programmed later in the array, which row/column half-select geometry
alone cannot produce (it gives a saw-tooth in k).  The exponents b = 0.26, q = 0.95 are those of
the weighted power-law fits of the samples (k = 1..16: σ = 6.78 µS·k^0.26, μ = −0.46 µS·k^0.95),
with one event per later cell (its initial RESET at the lab recipe's 2.0 V); the prefactors
σ_d = 5.6 µS, μ_d = −0.2 µS are smaller because half-select switching adds its own share: with
them, ``fit_variability`` on an 8×8 chip tuned cell by cell, column-major, one pass (the
measurement's protocol), counting all later cells, recovers the measured law within 10 % at
k = 1, 5, 15, 30 (``tests/test_variability_fit.py``).  Fine write-verify pulses below
``disturb_v`` do not advance the clock, so re-verify passes repair the drift.  Half-select
*switching* (above a device's threshold at V/2) is separate: it is the switching law itself.

Pulse width (:func:`equivalent_voltage`): TiO2 switching is thermally activated ion drift whose
rate grows exponentially with the applied bias, rate ∝ exp(|V|/V0) — the "voltage–time dilemma":
the time to switch falls by orders of magnitude for a fraction of a volt more (Pickett et al.,
J. Appl. Phys. 106, 074508 (2009): switching energy falls exponentially with the current;
Menzel et al., Adv. Funct. Mater. 21, 4487 (2011): ~10 decades of switching time over ~1 V in
valence-change oxides; Strukov & Williams, Appl. Phys. A 94, 515 (2009): exponential ionic drift at
high field).  So a pulse of |V| for w has the effect of a pulse of

    |V|_eq = |V| + v_per_decade · log10(w / width_ref)

for ``width_ref`` (1 µs, the 3IT recipe's width, at which the thresholds and rates above are
calibrated): a tenfold longer pulse acts like ``v_per_decade`` (0.1 V, V0 = 43 mV) more.  Thresholds
and overdrive use |V|_eq: from 100 ns to 10 ms the effective SET/RESET threshold moves from 1.1 V to
0.6 V, and the step per pulse at fixed V grows like (od + 0.1 V·log10(w/1 µs))² — logarithmically
in width, not as a power law.  DC levels held for a time t stress the devices the same way
(:meth:`~mock_hw.sim_chip.SimulatedCrossbar.drive_lines`).

Forming (:func:`switch_at`)
---------------------------
A pristine device is insulating (``g_pristine``, below g_min) and does not switch.  A pulse of at
least its forming voltage (positive polarity, any width) forms it: it jumps to an as-formed state
drawn uniformly in ``g_formed_range`` and switches normally from then on.  Populations without an
``unformed`` mask are fully formed.  Retention (relaxation with time) is in :mod:`mock_hw.aging`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class DeviceParams:
    """Physical parameters of one device population (all SI units).

    Attributes:
        g_min, g_max: physical conductance range, S.
        beta: cubic I-V nonlinearity, 1/V².
        v_ref: reference read voltage at which ``g`` is defined, V.
        vth_set, vth_reset: mean SET / RESET threshold magnitudes, V.
        vth_cov: device-to-device coefficient of variation of the thresholds.
        k_set, k_reset: step at 1 V overdrive, ``width_ref`` and full window, S.
        k_cov: device-to-device coefficient of variation of the rate (log-normal).
        od_power: exponent n of the overdrive dependence.
        width_ref: reference pulse width at which thresholds and rates are given, s.
        v_per_decade: voltage equivalent of a tenfold longer pulse, V (:func:`equivalent_voltage`).
        p_set, p_reset: soft-bound window exponents.
        c2c_sigma: log-normal shape of the multiplicative cycle-to-cycle write noise.
        relax: mean fraction of each step lost to post-write relaxation toward the previous state.
        read_noise: relative standard deviation of a current reading.
        stuck_lrs_frac, stuck_lrs_mean, stuck_lrs_std: share and Normal conductance (S) of devices
            stuck in the low-resistance state.
        stuck_hrs_frac, stuck_hrs_range: share and Uniform conductance range (S) of devices stuck in
            the high-resistance state.
        g_init_range: range (S) of the initial states of working devices of a formed chip (uniform).
        g_pristine: conductance of an unformed (pristine) device, S; below ``g_min``.
        v_form_mean, v_form_cov: mean forming voltage (V, positive polarity) and its
            device-to-device coefficient of variation (Normal).
        g_formed_range: range (S) of the as-formed state right after forming (uniform).
        retention_nu: mean power-law exponent ν of retention loss (per device, log-normal).
        retention_nu_cov: device-to-device coefficient of variation of ν.
        retention_tau: time constant τ of retention loss, s.
        retention_g_rest: conductance devices relax toward, S (None: ``g_min``).
        disturb_v: smallest write amplitude that advances the relaxation of every other
            programmed device of the array by one event, V: |V| of the pulse as driven onto the
            selected lines (on ideal lines what the selected cell gets; through resistive lines the
            cell gets less, and the event still counts by the drive: the measured law's events are
            the recipe's 2.0 V RESETs as driven, whatever the lines left of them).
        disturb_sigma, disturb_sigma_power: σ of the drift after n disturb events, σ_d·n^b (S).
        disturb_mu, disturb_mu_power: its mean, μ_d·n^q (S).
        disturb_n_max: the relaxation saturates after this many events (the measured drift stops
            growing at k ≈ 30–46; the variability model clamps k at 46 too).
    """

    g_min: float = 10e-6
    g_max: float = 600e-6
    beta: float = 0.3
    v_ref: float = 0.2
    vth_set: float = 1.0
    vth_reset: float = 1.0
    vth_cov: float = 0.10
    k_set: float = 300e-6
    k_reset: float = 300e-6
    k_cov: float = 0.2
    od_power: float = 2.0
    width_ref: float = 1e-6
    v_per_decade: float = 0.1
    p_set: float = 1.0
    p_reset: float = 1.0
    c2c_sigma: float = 0.3
    relax: float = 0.02
    read_noise: float = 1e-3
    stuck_lrs_frac: float = 0.005
    stuck_lrs_mean: float = 573e-6
    stuck_lrs_std: float = 99e-6
    stuck_hrs_frac: float = 0.005
    stuck_hrs_range: tuple[float, float] = (10e-6, 100e-6)
    g_init_range: tuple[float, float] = (100e-6, 400e-6)
    g_pristine: float = 1e-6
    v_form_mean: float = 2.2
    v_form_cov: float = 0.07
    g_formed_range: tuple[float, float] = (150e-6, 450e-6)
    retention_nu: float = 0.004
    retention_nu_cov: float = 0.5
    retention_tau: float = 1.0
    retention_g_rest: float | None = None
    disturb_v: float = 2.0
    disturb_sigma: float = 5.6e-6
    disturb_sigma_power: float = 0.26
    disturb_mu: float = -0.2e-6
    disturb_mu_power: float = 0.95
    disturb_n_max: float = 46.0

    def __post_init__(self):
        if not 0 < self.g_min < self.g_max:
            raise ValueError("DeviceParams needs 0 < g_min < g_max")
        if self.vth_set <= 0 or self.vth_reset <= 0:
            raise ValueError("DeviceParams thresholds are magnitudes and must be positive")
        if self.stuck_lrs_frac + self.stuck_hrs_frac > 1:
            raise ValueError("DeviceParams stuck fractions add up to more than 1")
        if not 0 < self.g_pristine < self.g_min:
            raise ValueError("DeviceParams needs 0 < g_pristine < g_min (unformed devices are insulating)")
        if self.v_form_mean <= 0 or self.v_form_cov < 0:
            raise ValueError("DeviceParams needs v_form_mean > 0 and v_form_cov >= 0")
        lo, hi = self.g_formed_range
        if not self.g_min <= lo <= hi <= self.g_max:
            raise ValueError("DeviceParams g_formed_range must lie inside [g_min, g_max]")
        if not (self.width_ref > 0 and self.v_per_decade >= 0):
            raise ValueError("DeviceParams needs width_ref > 0 and v_per_decade >= 0")
        if self.retention_nu < 0 or self.retention_nu_cov < 0 or self.retention_tau <= 0:
            raise ValueError("DeviceParams needs retention_nu >= 0, retention_nu_cov >= 0, retention_tau > 0")
        if not self.g_min <= self.g_rest <= self.g_max:
            raise ValueError("DeviceParams retention_g_rest must lie inside [g_min, g_max]")
        if self.disturb_v <= 0 or self.disturb_sigma < 0 or self.disturb_sigma_power < 0 or self.disturb_mu_power < 0 \
                or self.disturb_n_max < 0:
            raise ValueError("DeviceParams needs disturb_v > 0 and disturb_sigma, disturb_sigma_power, "
                             "disturb_mu_power, disturb_n_max >= 0")

    @property
    def disturbs(self) -> bool:
        """Half-select disturbance is modelled."""
        return self.disturb_sigma > 0 or self.disturb_mu != 0

    @property
    def g_rest(self) -> float:
        """Conductance that retention loss relaxes toward, S."""
        return self.g_min if self.retention_g_rest is None else self.retention_g_rest

    def with_(self, **changes) -> "DeviceParams":
        return replace(self, **changes)


@dataclass
class DevicePopulation:
    """Per-device parameters drawn once per chip (manufacturing variation), arrays of the array's
    shape: thresholds (V), rate factors, and the stuck mask with stuck conductances (S).

    Optional (None when not modelled): ``v_form`` forming voltages (V), ``unformed`` mask of devices
    not yet formed (None: every device is formed; updated in place when a device forms), ``nu``
    retention exponents (see :mod:`mock_hw.aging`)."""

    vth_set: np.ndarray
    vth_reset: np.ndarray
    rate: np.ndarray
    stuck: np.ndarray
    stuck_g: np.ndarray = field(repr=False)
    v_form: np.ndarray | None = field(default=None, repr=False)
    unformed: np.ndarray | None = field(default=None, repr=False)
    nu: np.ndarray | None = field(default=None, repr=False)


def iv_current(g, v, beta: float, v_ref: float):
    """Current through devices of read conductance ``g`` (S) at voltage ``v`` (V), A."""
    return g * v * ((1.0 + beta * v * v) / (1.0 + beta * v_ref * v_ref))


def iv_slope(g, v, beta: float, v_ref: float):
    """dI/dV of :func:`iv_current`, S."""
    return g * (1.0 + 3.0 * beta * v * v) / (1.0 + beta * v_ref * v_ref)


def sample_population(shape, p: DeviceParams, rng: np.random.Generator) -> DevicePopulation:
    """Draw per-device thresholds, rates and stuck devices for an array of ``shape``."""
    vth_set = p.vth_set * (1.0 + p.vth_cov * rng.standard_normal(shape))
    vth_reset = p.vth_reset * (1.0 + p.vth_cov * rng.standard_normal(shape))
    floor = 0.2 * min(p.vth_set, p.vth_reset)  # a threshold never collapses to ~0
    vth_set = np.maximum(vth_set, floor)
    vth_reset = np.maximum(vth_reset, floor)
    sig = np.sqrt(np.log1p(p.k_cov ** 2))
    rate = np.exp(sig * rng.standard_normal(shape) - 0.5 * sig * sig)
    u = rng.random(shape)
    stuck_lrs = u < p.stuck_lrs_frac
    stuck_hrs = (u >= p.stuck_lrs_frac) & (u < p.stuck_lrs_frac + p.stuck_hrs_frac)
    # stuck-LRS devices are filaments beyond the switching range: N(573, 99) µS is kept as measured
    # (not clipped at g_max), only floored at g_min
    g_lrs = np.maximum(p.stuck_lrs_mean + p.stuck_lrs_std * rng.standard_normal(shape), p.g_min)
    g_hrs = rng.uniform(*p.stuck_hrs_range, size=shape)
    stuck_g = np.where(stuck_lrs, g_lrs, np.where(stuck_hrs, g_hrs, np.nan))
    return DevicePopulation(vth_set, vth_reset, rate, stuck_lrs | stuck_hrs, stuck_g)


def initial_state(pop: DevicePopulation, p: DeviceParams, rng: np.random.Generator) -> np.ndarray:
    """As-formed conductances (S): uniform in ``g_init_range``; stuck devices at their stuck value."""
    g = rng.uniform(*p.g_init_range, size=pop.stuck.shape)
    return np.where(pop.stuck, pop.stuck_g, g)


def equivalent_shift(width, p: DeviceParams):
    """The width term of :func:`equivalent_voltage`: v_per_decade·log10(width/width_ref), V, for
    pulses of ``width`` (s)."""
    return p.v_per_decade * np.log10(np.maximum(np.asarray(width, dtype=float), 1e-15) / p.width_ref)


def equivalent_voltage(v, width, p: DeviceParams, shift=None):
    """The voltage (V, signed like ``v``) a pulse of ``width_ref`` would need to act like ``v``
    applied for ``width`` (s): |V| + v_per_decade·log10(width/width_ref), floored at 0 (see the
    module docstring).  ``shift``: that width term when already worked out
    (:func:`equivalent_shift`; ``width`` is then not used)."""
    v = np.asarray(v, dtype=float)
    if shift is None:
        shift = equivalent_shift(width, p)
    return np.sign(v) * np.maximum(np.abs(v) + shift, 0.0)


def switching_step(g, v, width, vth_set, vth_reset, rate, p: DeviceParams, xi):
    """Conductance change (S) of devices at state ``g`` (S) under a pulse of ``v`` (V) for ``width``
    (s).  ``xi`` is the cycle-to-cycle noise factor (same shape, median 1).  Pure; no clipping."""
    span = p.g_max - p.g_min
    v = equivalent_voltage(v, width, p)
    od_set = np.maximum(v - vth_set, 0.0)
    od_reset = np.maximum(-v - vth_reset, 0.0)
    up = p.k_set * od_set ** p.od_power * np.clip((p.g_max - g) / span, 0.0, 1.0) ** p.p_set
    down = p.k_reset * od_reset ** p.od_power * np.clip((g - p.g_min) / span, 0.0, 1.0) ** p.p_reset
    return (up - down) * rate * xi


def c2c_noise(n: int, p: DeviceParams, rng: np.random.Generator | None, z: np.ndarray | None = None) -> np.ndarray:
    """``n`` log-normal cycle-to-cycle factors with median 1 and shape ``c2c_sigma`` (from the
    standard normal draws ``z`` when given)."""
    return np.exp(p.c2c_sigma * (rng.standard_normal(n) if z is None else z))


_NONE = np.empty(0, dtype=np.intp)


def apply_voltages(g, v, width, pop: DevicePopulation, p: DeviceParams, rng: np.random.Generator):
    """New conductances after every device in ``g`` sees voltage ``v`` for ``width`` (broadcastable).

    Only devices beyond a threshold draw noise (so the cost scales with the cells that switch).
    Includes relaxation toward the previous state, clipping to [g_min, g_max], stuck devices and
    forming of unformed devices (``pop.unformed`` is updated in place).
    """
    return apply_voltages_written(g, v, width, pop, p, rng)[0]


def apply_voltages_written(g, v, width, pop: DevicePopulation, p: DeviceParams, rng: np.random.Generator):
    """:func:`apply_voltages`, also returning the flat indices of the devices written (see
    :func:`switch_at`)."""
    g = np.array(g, dtype=float)
    v = np.broadcast_to(np.asarray(v, dtype=float), g.shape)
    v_eq = equivalent_voltage(v, np.broadcast_to(np.asarray(width, dtype=float), g.shape), p)
    hit = (v_eq > pop.vth_set) | (-v_eq > pop.vth_reset)
    if pop.unformed is not None:
        hit |= pop.unformed & (v >= pop.v_form)
    flat = np.flatnonzero(hit)
    if not flat.size:
        return g, _NONE
    w = np.broadcast_to(np.asarray(width, dtype=float), g.shape).reshape(-1)[flat]
    return g, switch_at(g.reshape(-1), flat, v.reshape(-1)[flat], w, pop, p, rng)


def switch_at(g_flat, flat, v, width, pop: DevicePopulation, p: DeviceParams, rng: np.random.Generator,
              shift=None):
    """In place: devices at flat indices ``flat`` of ``g_flat`` (a flat view of the state, S) see
    pulses of ``v`` (V) for ``width`` (s), one each.  Indices must be unique.  Same physics as
    :func:`apply_voltages` (thresholds, noise, relaxation, clipping, stuck devices, forming).
    ``shift``: the pulses' :func:`equivalent_shift` when already worked out (``width`` is then not
    used).

    Unformed devices (``pop.unformed``) do not switch; one that sees at least its forming voltage
    forms: it takes an as-formed state uniform in ``g_formed_range`` and ``pop.unformed`` is
    cleared for it (in place).  Returns the flat indices of the devices *written*: formed, or
    pulsed beyond a threshold (a step clipped at a bound counts as a write).
    """
    vs = pop.vth_set.reshape(-1)[flat]
    vr = pop.vth_reset.reshape(-1)[flat]
    v_eq = equivalent_voltage(v, width, p, shift)
    live = ((v_eq > vs) | (-v_eq > vr)) & ~pop.stuck.reshape(-1)[flat]
    formed = _NONE
    if pop.unformed is not None:
        unformed = pop.unformed.reshape(-1)[flat]
        if unformed.any():
            live &= ~unformed
            forms = unformed & (v >= pop.v_form.reshape(-1)[flat]) & ~pop.stuck.reshape(-1)[flat]
            formed = flat[forms]
            if formed.size:
                g_flat[formed] = rng.uniform(*p.g_formed_range, size=formed.size)
                pop.unformed.flat[formed] = False
    n_live = np.count_nonzero(live)
    if not n_live:
        return formed
    if n_live < live.size:
        flat, v_eq, vs, vr = flat[live], v_eq[live], vs[live], vr[live]
    _switch_sets(g_flat, flat, v_eq, vs, vr, pop.rate.reshape(-1).take(flat), [0, flat.size], p, rng)
    return np.concatenate([formed, flat]) if formed.size else flat


def _window_term(x, span, power, k):
    """``k·clip(x/span, 0, 1)^power`` computed in place in ``x`` (a fresh array) and returned: one
    polarity's step of :func:`switching_step`'s window law, the same operations in the same order."""
    x /= span
    np.maximum(x, 0.0, out=x)
    np.minimum(x, 1.0, out=x)
    if power != 1:                                          # x^1 is x
        x **= power
    x *= k
    return x


#: numpy's clip ufunc (min(max(x, lo), hi) in one pass, the same numbers as np.maximum then
#: np.minimum on non-NaN values) without np.clip's Python wrapper: it runs once per round of pulses
_clip = getattr(getattr(np, "_core", None), "umath", None)
_clip = getattr(_clip, "clip", None) or (lambda x, lo, hi, out=None: np.minimum(np.maximum(x, lo, out=out), hi, out=out))


def _switch_sets(g_flat, idx, v_eq, vs, vr, rate, ends, p: DeviceParams, rng, draws_at_once=False) -> np.ndarray:
    """In place: the devices ``idx[ends[k]:ends[k + 1]]`` (unique within a set, every one beyond a
    threshold) take their pulses of width-equivalent voltage ``v_eq`` (V, :func:`equivalent_voltage`),
    set k after set k − 1: noise drawn set by set (cycle-to-cycle, then relaxation; with
    ``draws_at_once`` for every pulse at once, in pulse order: the same independent draws in
    another order, and ``ends`` may be just the number of sets), each switching step on the state
    its device has then, clipping.  A device's pulses are applied in set order, round by round
    (its first pulse in round 0, ...), so devices of different sets never wait for each other;
    two sets are applied one after the other (the same states: a device's pulses in set order).
    Returns each pulse's state after it (S).

    The arithmetic is :func:`switching_step`'s, in its order (so the states are bit for bit its
    result), with what does not depend on the state worked out once for all rounds."""
    n = idx.size
    n_sets = ends if isinstance(ends, int) else len(ends) - 1
    if draws_at_once or n_sets <= 1:
        z = rng.standard_normal(n)
        u = rng.random(n) if p.relax > 0 else None  # uniform(0, 2) is 0 + 2·random(): the same numbers
    else:
        ends = ends.tolist() if isinstance(ends, np.ndarray) else list(ends)
        z = np.empty(n)
        u = np.empty(n) if p.relax > 0 else None
        for a, b in zip(ends[:-1], ends[1:]):   # the draws of one switch_at per set, in its order
            if a < b:
                rng.standard_normal(out=z[a:b])
                if u is not None:
                    rng.random(out=u[a:b])
    order = None                                            # one round: every device pulsed once
    two = n_sets == 2 and not isinstance(ends, int) and n > 1
    if two:         # two sets, one after the other (as cheap as two rounds, and nothing to sort)
        cuts = [int(b) for b in ends]
    elif n_sets > 1 and n > 1:
        by_dev = np.argsort(idx, kind="stable")             # a device's pulses together, in set order
        dev_sorted = idx.take(by_dev)
        first = np.empty(n, bool)
        first[0] = True
        np.not_equal(dev_sorted[1:], dev_sorted[:-1], out=first[1:])
        if not first.all():
            ar = np.arange(n)
            occ = ar - np.maximum.accumulate(np.where(first, ar, 0))
            order = by_dev.take(np.argsort(occ, kind="stable"))   # round after round
            cuts = [0, *itertools.accumulate(np.bincount(occ).tolist())]
            # everything below is elementwise per pulse until the rounds: taken in round order
            # once here (the draws stay those of the pulses, in pulse order)
            idx, v_eq, vs, vr, rate, z = (a.take(order) for a in (idx, v_eq, vs, vr, rate, z))
            u = None if u is None else u.take(order)
    after = _switch_rounds(g_flat, idx, _switch_factors(v_eq, vs, vr, p), rate, z, u,
                           cuts if two or order is not None else None, p)
    if order is not None:
        out = np.empty(n)
        out[order] = after                                  # back in the order of the pulses
        return out
    return after


def _switch_factors(v_eq, vs, vr, p: DeviceParams) -> tuple:
    """:func:`switching_step`'s factors of pulses of width-equivalent voltages ``v_eq`` (V) on
    devices of thresholds ``vs``, ``vr`` that do not depend on the state: with one polarity per pulse
    and the same window exponent for SET and RESET, ``(True, ks, bound, sspan)`` (a pulse's step is
    ks·clip((bound − g)/sspan, 0, 1)^p), else ``(False, k_up, k_down)``; elementwise per pulse."""
    k_up = p.k_set * np.maximum(v_eq - vs, 0.0) ** p.od_power
    k_down = p.k_reset * np.maximum(-v_eq - vr, 0.0) ** p.od_power
    # one polarity per pulse (the thresholds are positive): with the same exponent for both, a
    # pulse's step is ks·clip((bound − gi)/sspan, 0, 1)^p with ks = k_up, bound = g_hi, sspan = span
    # for SET and ks = −k_down, bound = g_lo, sspan = −span for RESET, which is up − down bit for
    # bit (a zero term drops out exactly; negation and the division by ±span are exact)
    if p.p_set == p.p_reset and not np.minimum(k_up, k_down).max(initial=0.0) > 0:
        span = p.g_max - p.g_min
        ks = k_up - k_down                                  # k_up, or −k_down (the other is +0)
        down = ks < 0
        return True, ks, np.where(down, p.g_min, p.g_max), np.where(down, -span, span)
    return False, k_up, k_down


def _switch_rounds(g_flat, idx, factors, rate, z, u, cuts, p: DeviceParams) -> np.ndarray:
    """In place: the pulses of :func:`_switch_sets` given round by round (``cuts``: the bounds of
    the rounds, a device at most once in a round and its pulses in round order; None: one round),
    with their devices ``idx``, :func:`_switch_factors` ``factors``, rate factors and standard
    normal (``z``) and uniform (``u``, None without relaxation) draws.  Returns each pulse's state
    after it (S), in the given order."""
    n = idx.size
    xi = c2c_noise(n, p, None, z)
    relax = None if u is None else 1.0 - p.relax * (u * 2.0)
    span, g_lo, g_hi = p.g_max - p.g_min, p.g_min, p.g_max
    signed = factors[0]
    if signed:
        ks, bound, sspan = factors[1:]
    else:
        k_up, k_down = factors[1:]
    groups = [slice(0, n)] if cuts is None else [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    after = np.empty(n)
    for e in groups:
        i = idx[e]
        gi = g_flat.take(i)
        # up = ku·clip((g_hi − gi)/span, 0, 1)^p_set, down likewise, dg = (up − down)·r·x(·f),
        # g_new = clip(gi + dg): the same operations in place (x^1 is x)
        if signed:
            up = _window_term(bound[e] - gi, sspan[e], p.p_set, ks[e])
        else:
            up = _window_term(g_hi - gi, span, p.p_set, k_up[e])
            up -= _window_term(gi - g_lo, span, p.p_reset, k_down[e])
        up *= rate[e]
        up *= xi[e]
        if relax is not None:
            up *= relax[e]
        up += gi
        g_flat[i] = _clip(up, g_lo, g_hi, out=after[e])
    return after


def _beyond_thresholds(flat, v, width, pop: DevicePopulation, p: DeviceParams, shift=None) -> tuple:
    """Pulses of ``v`` (V) for ``width`` (s) on the devices ``flat`` (flat indices; ``shift``: the
    widths' :func:`equivalent_shift` when already worked out): their width-equivalent voltages
    (V), SET and RESET thresholds (V), and which of them switch their device (beyond a threshold,
    the device not stuck)."""
    vs = pop.vth_set.reshape(-1).take(flat)
    vr = pop.vth_reset.reshape(-1).take(flat)
    v_eq = equivalent_voltage(v, width, p, shift)
    live = v_eq > vs
    live |= -v_eq > vr
    live &= ~pop.stuck.reshape(-1).take(flat)
    return v_eq, vs, vr, live


def switch_steps(g_flat, flat, v, width, bounds, pop: DevicePopulation, p: DeviceParams, rng: np.random.Generator,
                 shift=None, draws_at_once=False):
    """:func:`switch_at` for ``len(bounds) − 1`` sets of pulses in turn: set k is the devices
    ``flat[bounds[k]:bounds[k + 1]]`` (unique within the set) with their ``v`` (V) and ``width``
    (s; ``shift``: its :func:`equivalent_shift` when already worked out).  The same states and the
    same random draws as one ``switch_at`` per set; with ``draws_at_once`` each pulse's noise is
    drawn at once for all sets (one normal and one uniform draw per call, not per set: the same
    independent draws in another order, the states those of ``switch_at`` set after set given the
    same per-pulse draws; ``bounds`` may then be just the number of sets, the sets being in order).
    What does not depend on the state (thresholds, which devices switch) is evaluated once for all
    sets.  Returns the flat indices written (of every set, concatenated) and, per pulse, the
    device's state right after it (S; NaN where the pulse wrote nothing)."""
    if pop.unformed is not None and pop.unformed.reshape(-1)[flat].any():   # forming: set by set
        if isinstance(bounds, int):
            raise ValueError("switch_steps needs the sets' bounds where a device is unformed")
        bounds = np.asarray(bounds)
        after = np.full(flat.size, np.nan)
        out = [_NONE]
        for k in range(bounds.size - 1):
            s = slice(bounds[k], bounds[k + 1])
            out.append(switch_at(g_flat, flat[s], v[s], width[s], pop, p, rng))
            after[s] = np.where(np.isin(flat[s], out[-1]), g_flat[flat[s]], np.nan)
        return np.concatenate(out), after
    v_eq, vs, vr, live = _beyond_thresholds(flat, v, width, pop, p, shift)
    if live.all():                                          # every pulse switches its device
        return flat, _switch_sets(g_flat, flat, v_eq, vs, vr, pop.rate.reshape(-1).take(flat), bounds, p, rng,
                                  draws_at_once)
    if draws_at_once:
        ends = bounds if isinstance(bounds, int) else len(bounds) - 1
    else:
        ends = np.zeros(live.size + 1, np.intp)                    # live devices before each set
        live.cumsum(out=ends[1:])
        ends = ends.take(bounds)
    idx = flat[live]
    v_eq, vs, vr = v_eq[live], vs[live], vr[live]           # (the whole ones released: a large batch's)
    states = _switch_sets(g_flat, idx, v_eq, vs, vr, pop.rate.reshape(-1)[idx], ends, p, rng, draws_at_once)
    after = np.full(flat.size, np.nan)
    after[live] = states
    return idx, after


def disturb_drift(g, n_before, events, p: DeviceParams, rng: np.random.Generator):
    """Conductances (S) of devices at ``g`` after ``events`` more relaxation events, having seen
    ``n_before`` since their last programming (arrays of one shape): the increment of the drift
    law N(μ_d·n^q, (σ_d·n^b)²) from ``n_before`` to ``n_before + events`` (both capped at
    ``disturb_n_max``), clipped to [g_min, g_max]."""
    n0 = np.minimum(np.asarray(n_before, dtype=float), p.disturb_n_max)
    n1 = np.minimum(n0 + events, p.disturb_n_max)
    var = p.disturb_sigma ** 2 * (n1 ** (2 * p.disturb_sigma_power) - n0 ** (2 * p.disturb_sigma_power))
    mean = p.disturb_mu * (n1 ** p.disturb_mu_power - n0 ** p.disturb_mu_power)
    return np.clip(g + mean + np.sqrt(var) * rng.standard_normal(np.shape(g)), p.g_min, p.g_max)


def disturb_increments(p: DeviceParams, max_events: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`disturb_drift`'s increments tabulated for whole event counts: (mean, std), S, arrays
    of shape (n_top + 1, max_events + 1) with n_top = ceil(``disturb_n_max``); entry [i, e] is the
    increment of a device that has seen min(i, n_top) events and sees e more.  Computed by the
    same expressions as :func:`disturb_drift`, so a lookup gives its very numbers (event counts
    are whole numbers: they start at 0 and grow by whole pulses)."""
    n_top = int(np.ceil(p.disturb_n_max))
    n0 = np.minimum(np.arange(n_top + 1, dtype=float), p.disturb_n_max)[:, None]
    n1 = np.minimum(n0 + np.arange(max_events + 1, dtype=float), p.disturb_n_max)
    n0 = np.broadcast_to(n0, n1.shape)
    var = p.disturb_sigma ** 2 * (n1 ** (2 * p.disturb_sigma_power) - n0 ** (2 * p.disturb_sigma_power))
    mean = p.disturb_mu * (n1 ** p.disturb_mu_power - n0 ** p.disturb_mu_power)
    return mean, np.sqrt(var)


def read_conductance(g, v, p: DeviceParams, rng: np.random.Generator | None):
    """Measured (current, chord conductance) of devices ``g`` read at ``v``, with read noise."""
    i = iv_current(g, v, p.beta, p.v_ref)
    if rng is not None and p.read_noise > 0:
        i = i * (1.0 + p.read_noise * rng.standard_normal(np.shape(i)))
    return i, i / v


_LANES_KERNEL = {}


def _lanes_kernel():
    """The compiled pass of :func:`switch_drift_lanes` (compiled on first use, cached on disk by
    numba; numba is imported only here, by the resistive-line simulator's pulses, whose line solves
    load it anyway)."""
    if "lanes" not in _LANES_KERNEL:
        from numba import njit

        @njit(cache=True)
        def lanes(g, n_ev, idx, hit_end, ks, bound, sspan, rate, xi, rlx, sel, sel_end, loud_sel, loud_lane,
                  working, zd, mean, sd, per_chip, g_lo, g_hi, touched):  # pragma: no cover - compiled
            """:func:`switch_drift_lanes`' state updates, lane after lane (module functions' arithmetic
            in their order: each comparison as numpy's maximum / minimum / clip make it)."""
            n_rows_t, n_cols_t = mean.shape
            mean_f, sd_f = mean.reshape(-1), sd.reshape(-1)
            h, s0, k = 0, 0, 0
            for q in range(loud_lane.size):
                s1 = sel_end[q]
                for s in range(s0, s1):             # the lane's selected cells: their counts restart
                    n_ev[sel[s]] = 0.0
                h1 = hit_end[q]
                for t in range(h, h1):              # _switch_rounds' signed step (window exponent 1)
                    i = idx[t]
                    gi = g[i]
                    x = bound[t] - gi
                    x /= sspan[t]
                    x = x if x >= 0.0 else 0.0
                    x = x if x <= 1.0 else 1.0
                    x *= ks[t]
                    x *= rate[t]
                    x *= xi[t]
                    x *= rlx[t]
                    x += gi
                    x = x if x > g_lo else g_lo
                    g[i] = x if x < g_hi else g_hi
                h = h1
                if loud_lane[q]:                    # the drift of its loud chips' other working devices
                    for s in range(s0, s1):
                        if not loud_sel[s]:
                            continue
                        c_sel = sel[s]
                        b = c_sel // per_chip
                        touched[b] = True
                        for c in range(b * per_chip, (b + 1) * per_chip):
                            if c == c_sel or not working[c]:
                                continue
                            nc = n_ev[c]
                            ti = int(nc if nc <= n_rows_t - 1 else n_rows_t - 1) * n_cols_t + 1
                            x = g[c] + mean_f[ti]
                            x += zd[k] * sd_f[ti]
                            k += 1
                            x = x if x > g_lo else g_lo
                            g[c] = x if x < g_hi else g_hi
                            n_ev[c] = nc + 1.0
                s0 = s1

        _LANES_KERNEL["lanes"] = lanes
    return _LANES_KERNEL["lanes"]


def lanes_compiled(pop: DevicePopulation, p: DeviceParams) -> bool:
    """Whether :func:`switch_drift_lanes` applies: no unformed device, one window exponent of 1 for
    both polarities (its compiled step skips the power, as :func:`_window_term` does)."""
    return (pop.unformed is None or not pop.unformed.any()) and p.p_set == p.p_reset == 1


#: the pulses and drift draws :func:`switch_drift_lanes` works out at once, at most (whole lanes,
#: at least one): its working arrays stay those of a few lanes (a batch's loud lane drifts every
#: device of its chips: 10 000 8×8 chips, 5 MB of draws a lane)
LANES_CHUNK = 1 << 16


def switch_drift_lanes(g_flat, n_flat, flat, v, width, order, hit_bounds, sel, sel_bounds, loud_sel, loud_lane,
                       working, per_chip: int, drift_table, touched, pop: DevicePopulation, p: DeviceParams,
                       rng: np.random.Generator, shift=None) -> np.ndarray:
    """In place, lane after lane (the simulated chip's pulses of many lanes, :func:`lanes_compiled`
    true): lane q's selected cells ``sel[sel_bounds[q]:sel_bounds[q + 1]]`` (flat indices, one per
    chip, chips in order) restart their disturb counts (``n_flat``); its devices beyond a threshold
    ``flat[o]``, ``o = order[hit_bounds[q]:hit_bounds[q + 1]]`` (unique within the lane), take their
    pulses of ``v[o]`` (V) for ``width[o]`` (s) as :func:`switch_steps` gives them, one set per lane; where
    ``loud_lane[q]``, every other ``working`` device of each chip whose selected cell is
    ``loud_sel`` sees one disturb event (:func:`disturb_drift` through ``drift_table`` =
    :func:`disturb_increments`' (mean, std), as the simulated chip's drift; those chips marked in
    ``touched``).  The same states, counts and random draws, in the same order, as one
    :func:`switch_steps` call per lane followed, for a loud lane, by its drift; the arithmetic that
    depends on the state in one compiled pass, the rest (thresholds, noise factors) as the numpy
    functions work it out, :data:`LANES_CHUNK` pulses and draws at a time.  Returns the flat indices
    written (in lane order).  ``shift``: the widths' :func:`equivalent_shift` when already worked
    out (``width`` is then not used)."""
    n_lanes = loud_lane.size
    n_drift = np.zeros(n_lanes, np.intp)         # each lane's drift draws
    if loud_lane.any():
        s_lane = np.repeat(np.arange(n_lanes), np.diff(sel_bounds))
        on = loud_sel & loud_lane.take(s_lane)
        per = np.count_nonzero(working.reshape(-1, per_chip), axis=1)
        n_drift = np.bincount(s_lane[on], per.take(sel[on] // per_chip) - working.take(sel[on]),
                              minlength=n_lanes).astype(np.intp)
    cost = np.cumsum(np.diff(hit_bounds) + n_drift)
    written = []
    a = 0
    while a < n_lanes:
        b = max(int(np.searchsorted(cost, (cost[a - 1] if a else 0) + LANES_CHUNK, "right")), a + 1)
        o = order[hit_bounds[a]:hit_bounds[b]]
        w, s = (width.take(o), None) if shift is None else (None, shift.take(o))
        written.append(_switch_drift_chunk(g_flat, n_flat, flat.take(o), v.take(o), w, s,
                                           hit_bounds[a:b + 1] - hit_bounds[a], sel[sel_bounds[a]:sel_bounds[b]],
                                           sel_bounds[a + 1:b + 1] - sel_bounds[a],
                                           loud_sel[sel_bounds[a]:sel_bounds[b]], loud_lane[a:b], n_drift[a:b],
                                           working, per_chip, drift_table, touched, pop, p, rng))
        a = b
    return np.concatenate(written) if len(written) != 1 else written[0]


def _switch_drift_chunk(g_flat, n_flat, flat, v, width, shift, hit_bounds, sel, sel_end, loud_sel, loud_lane, n_drift,
                        working, per_chip, drift_table, touched, pop, p, rng) -> np.ndarray:
    """:func:`switch_drift_lanes` of some consecutive lanes (``hit_bounds`` and ``sel_end``, the
    ends of each lane's selected cells, relative to them; ``n_drift`` each lane's drift draws;
    ``shift``: the pulses' :func:`equivalent_shift`, or None to work it out from ``width``)."""
    v_eq, vs, vr, live = _beyond_thresholds(flat, v, width, pop, p, shift)
    ends = np.zeros(live.size + 1, np.intp)                  # live devices before each lane
    live.cumsum(out=ends[1:])
    hit_end = ends.take(hit_bounds[1:])
    if not live.all():
        flat, v_eq, vs, vr = flat[live], v_eq[live], vs[live], vr[live]
    factors = _switch_factors(v_eq, vs, vr, p)
    if not factors[0]:
        raise ValueError("switch_drift_lanes needs one polarity per pulse and one window exponent")
    ks, bound, sspan = factors[1:]
    # the draws, in the order of one switch_steps (normals, then uniforms) per lane and then its
    # drift's normals (the loud chips' other working devices, in flat order)
    z = np.empty(flat.size)
    u = np.empty(flat.size) if p.relax > 0 else None
    zd = np.empty(int(n_drift.sum()))
    # (a lane of one pulse, the usual, draws by the scalar calls: the same numbers, less overhead)
    normal, uniform = rng.standard_normal, rng.random
    k0, h0 = 0, 0
    for h1, m in zip(hit_end.tolist(), n_drift.tolist()):
        if h1 == h0 + 1:
            z[h0] = normal()
            if u is not None:
                u[h0] = uniform()
        elif h1 > h0:
            normal(out=z[h0:h1])
            if u is not None:
                uniform(out=u[h0:h1])
        h0 = h1
        if m:
            normal(out=zd[k0:k0 + m])
            k0 += m
    xi = c2c_noise(z.size, p, None, z)
    rlx = np.ones(z.size) if u is None else 1.0 - p.relax * (u * 2.0)
    mean, sd = drift_table
    _lanes_kernel()(g_flat, n_flat, np.ascontiguousarray(flat, np.int64), hit_end.astype(np.int64), ks, bound,
                    np.ascontiguousarray(sspan, float), pop.rate.reshape(-1).take(flat), xi, rlx,
                    np.ascontiguousarray(sel, np.int64), np.ascontiguousarray(sel_end, np.int64),
                    np.ascontiguousarray(loud_sel), np.ascontiguousarray(loud_lane), working, zd,
                    np.ascontiguousarray(mean), np.ascontiguousarray(sd), int(per_chip), float(p.g_min),
                    float(p.g_max), touched)
    return flat
