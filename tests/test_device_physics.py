"""Physics tests for mock_hw.device (pure functions: I-V, switching law, populations, noise)."""
import math

import numpy as np
import pytest

from mock_hw.device import (DeviceParams, DevicePopulation, apply_voltages, c2c_noise, equivalent_voltage,
                            initial_state, iv_current, sample_population, switch_at, switch_steps, switching_step)
from mock_hw.presets import get_preset

TIO2 = get_preset("tio2-3it").device
ASYM = get_preset("asymmetric").device
IDEAL = get_preset("ideal").device


def nominal_pop(shape, p: DeviceParams, stuck=None, stuck_g=None) -> DevicePopulation:
    """A population without device-to-device spread: nominal thresholds, unit rates."""
    stuck = np.zeros(shape, bool) if stuck is None else stuck
    stuck_g = np.full(shape, np.nan) if stuck_g is None else stuck_g
    return DevicePopulation(np.full(shape, p.vth_set), np.full(shape, p.vth_reset), np.ones(shape),
                            stuck, stuck_g)


# ------------------------------------------------------------------------------ thresholds
def test_switching_step_is_exactly_zero_between_thresholds():
    rng = np.random.default_rng(1)
    pop = sample_population((40, 1), TIO2, rng)
    g = np.linspace(TIO2.g_min, TIO2.g_max, 40)[:, None] * np.ones((1, 1))
    # fractions of each device's own threshold at that width (lower for longer pulses), both
    # polarities, including the thresholds themselves
    frac = np.linspace(-1.0, 1.0, 201)[None, :] * (1 - 1e-12)
    xi = c2c_noise(40 * 201, TIO2, rng).reshape(40, 201)
    for width in (1e-7, 1e-6, 1e-4, 1e-3):
        shift = TIO2.v_per_decade * np.log10(width / TIO2.width_ref)
        v = np.where(frac >= 0, frac * (pop.vth_set - shift), frac * (pop.vth_reset - shift))
        assert v.max() > 0.5 and v.min() < -0.5
        dg = switching_step(g, v, width, pop.vth_set, pop.vth_reset, pop.rate, TIO2, xi)
        assert dg.shape == v.shape
        assert np.all(dg == 0.0)


@pytest.mark.parametrize("sign", [+1, -1])
def test_apply_voltages_below_threshold_changes_nothing_and_draws_no_noise(sign):
    rng = np.random.default_rng(2)
    pop = sample_population((24, 24), TIO2, rng)
    g0 = initial_state(pop, TIO2, rng)
    vth = pop.vth_set if sign > 0 else pop.vth_reset
    v = sign * vth * rng.uniform(0.0, 0.999, size=g0.shape)
    run = np.random.default_rng(3)
    before = run.bit_generator.state
    w = TIO2.width_ref                     # the width the thresholds are given at
    g1 = apply_voltages(g0, v, w, pop, TIO2, run)
    np.testing.assert_array_equal(g1, g0)
    assert run.bit_generator.state == before  # only devices beyond a threshold draw noise
    # the same devices just above their thresholds do move
    g2 = apply_voltages(g0, sign * vth * 1.05, w, pop, TIO2, run)
    moved = g2 != g0
    assert np.array_equal(moved, ~pop.stuck & ((g0 < TIO2.g_max) if sign > 0 else (g0 > TIO2.g_min)))


# ------------------------------------------------------------------------------ monotonicity
def test_step_monotonic_in_amplitude_and_width_for_fixed_noise():
    p = TIO2
    rng = np.random.default_rng(4)
    g = rng.uniform(p.g_min + 5e-6, p.g_max - 5e-6, size=(6, 1))
    xi = c2c_noise(6, p, rng)[:, None]
    rate = np.exp(0.2 * rng.standard_normal((6, 1)))
    vth_s, vth_r = 0.9 + 0.2 * rng.random((6, 1)), 0.9 + 0.2 * rng.random((6, 1))

    amp = np.linspace(1.15, 3.0, 60)[None, :]
    up = switching_step(g, amp, 1e-6, vth_s, vth_r, rate, p, xi)
    assert np.all(up > 0)
    assert np.all(np.diff(up, axis=1) > 0)
    down = switching_step(g, -amp, 1e-6, vth_s, vth_r, rate, p, xi)
    assert np.all(down < 0)
    assert np.all(np.diff(down, axis=1) < 0)  # |ΔG| grows with |V|

    widths = np.geomspace(1e-7, 1e-3, 30)[None, :]
    up_w = switching_step(g, 1.6, widths, vth_s, vth_r, rate, p, xi)
    down_w = switching_step(g, -1.6, widths, vth_s, vth_r, rate, p, xi)
    assert np.all(np.diff(up_w, axis=1) > 0)
    assert np.all(np.diff(down_w, axis=1) < 0)
    # power law (od)^n; a tenfold longer pulse acts like v_per_decade more volts
    od = amp - vth_s
    np.testing.assert_allclose(up / up[:, :1], (od / od[:, :1]) ** p.od_power, rtol=1e-12)
    od_w = 1.6 + p.v_per_decade * np.log10(widths / p.width_ref) - vth_s
    np.testing.assert_allclose(up_w / up_w[:, :1], (od_w / od_w[:, :1]) ** p.od_power, rtol=1e-12)


def test_width_law_is_plausible_from_100ns_to_10ms():
    """Effective threshold 1.1 V at 100 ns, 1.0 V at 1 µs, 0.6 V at 10 ms; below it nothing moves,
    and the step at a fixed amplitude grows slowly (logarithmically), not as a power of the width."""
    p = TIO2
    g, vth = np.full(1, 300e-6), np.full(1, 1.0)
    widths = np.array([1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2])
    v_on = vth - p.v_per_decade * np.log10(widths / p.width_ref)
    np.testing.assert_allclose(v_on, [1.1, 1.0, 0.9, 0.8, 0.7, 0.6])
    for w, v in zip(widths, v_on):
        assert switching_step(g, v - 1e-3, w, vth, vth, 1.0, p, 1.0)[0] == 0.0
        assert switching_step(g, v + 1e-2, w, vth, vth, 1.0, p, 1.0)[0] > 0.0
    steps = np.array([switching_step(g, 1.3, w, vth, vth, 1.0, p, 1.0)[0] for w in widths])
    assert np.all(np.diff(steps) > 0)
    assert steps[-1] / steps[1] < 10, "10^4 times longer is < 10 times more, not (10^4)^0.6"


def test_step_scales_with_noise_factor_and_rate():
    p = TIO2
    g = np.full(5, 300e-6)
    xi = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
    dg = switching_step(g, 1.5, 1e-6, 1.0, 1.0, 1.0, p, xi)
    np.testing.assert_allclose(dg / dg[1], xi, rtol=1e-12)
    dg_rate = switching_step(g, 1.5, 1e-6, 1.0, 1.0, xi, p, 1.0)
    np.testing.assert_allclose(dg_rate, dg, rtol=1e-12)


# ------------------------------------------------------------------------------ bounds
def test_repeated_strong_pulses_stay_within_physical_range():
    p = TIO2
    rng = np.random.default_rng(5)
    pop = sample_population((32, 32), p, rng)
    g = initial_state(pop, p, rng)
    run = np.random.default_rng(6)
    for k in range(40):
        v = 3.0 if (k // 10) % 2 == 0 else -3.0
        g = apply_voltages(g, v, 1e-4, pop, p, run)
        work = g[~pop.stuck]
        assert work.min() >= p.g_min and work.max() <= p.g_max
        np.testing.assert_array_equal(g[pop.stuck], pop.stuck_g[pop.stuck])
        # the strong pulses do drive the working devices to the bound (clipping is active)
        if k % 10 == 9:
            np.testing.assert_array_equal(work, p.g_max if v > 0 else p.g_min)


@pytest.mark.parametrize("p_exp", [1.0, 2.0])
def test_soft_bounds_slow_steps_near_the_bound(p_exp):
    p = TIO2.with_(p_set=p_exp, p_reset=p_exp)
    g = np.linspace(p.g_min, p.g_max, 50)
    up = switching_step(g, 1.8, 1e-6, 1.0, 1.0, 1.0, p, 1.0)
    down = switching_step(g, -1.8, 1e-6, 1.0, 1.0, 1.0, p, 1.0)
    assert np.all(np.diff(up) < 0)  # SET step shrinks towards g_max ...
    assert up[-1] == 0.0 and up[0] > 0
    assert np.all(np.diff(np.abs(down)) > 0)  # ... and RESET step towards g_min
    assert down[0] == 0.0 and down[-1] < 0
    span = p.g_max - p.g_min
    np.testing.assert_allclose(up / up[0], ((p.g_max - g) / span) ** p_exp, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(down / down[-1], ((g - p.g_min) / span) ** p_exp, rtol=1e-12, atol=1e-15)


def test_asymmetric_preset_has_symmetry_point():
    p = ASYM
    assert p.k_set != p.k_reset and p.p_set == p.p_reset == 1.0
    g_sp = (p.k_set * p.g_max + p.k_reset * p.g_min) / (p.k_set + p.k_reset)
    assert p.g_min < g_sp < p.g_max
    od = 0.4
    g = np.array([g_sp - 150e-6, g_sp - 50e-6, g_sp, g_sp + 50e-6, g_sp + 150e-6])
    up = switching_step(g, p.vth_set + od, 1e-6, p.vth_set, p.vth_reset, 1.0, p, 1.0)
    down = -switching_step(g, -(p.vth_reset + od), 1e-6, p.vth_set, p.vth_reset, 1.0, p, 1.0)
    assert np.all(up > 0) and np.all(down > 0)
    np.testing.assert_allclose(up[2], down[2], rtol=1e-12)
    assert np.all(up[:2] > 1.05 * down[:2])  # below g_sp SET wins
    assert np.all(down[3:] > 1.05 * up[3:])  # above g_sp RESET wins
    net = up - down
    assert np.all(np.diff(net) < 0)


def test_alternating_pulses_drift_to_symmetry_point():
    """Equal numbers of equal-overdrive SET and RESET pulses drive devices toward g_sp from both
    sides (the in-situ training artefact the asymmetric preset models)."""
    p = ASYM
    g_sp = (p.k_set * p.g_max + p.k_reset * p.g_min) / (p.k_set + p.k_reset)
    shape = (2, 200)
    pop = nominal_pop(shape, p)
    g = np.empty(shape)
    g[0], g[1] = p.g_min, p.g_max
    rng = np.random.default_rng(7)
    for _ in range(150):
        g = apply_voltages(g, p.vth_set + 0.3, 1e-6, pop, p, rng)
        g = apply_voltages(g, -(p.vth_reset + 0.3), 1e-6, pop, p, rng)
    # after the SET+RESET pair the state sits a little below the point where the steps balance
    for side in g:
        assert abs(side.mean() - g_sp) < 25e-6
    assert abs(g[0].mean() - g[1].mean()) < 5e-6  # history forgotten


# ------------------------------------------------------------------------------ I-V
@pytest.mark.parametrize("beta", [0.0, 0.3, 1.2])
def test_iv_current_defines_read_conductance_at_v_ref(beta):
    rng = np.random.default_rng(8)
    g = rng.uniform(1e-6, 1e-3, 10000)
    v_ref = 0.2
    i = iv_current(g, v_ref, beta, v_ref)
    if beta == 0.0:
        np.testing.assert_array_equal(i, g * v_ref)
    # g is the chord conductance at v_ref (to the last bit or two of rounding)
    np.testing.assert_allclose(i, g * v_ref, rtol=5e-16, atol=0)
    np.testing.assert_allclose(iv_current(g, -v_ref, beta, v_ref), -i, rtol=0, atol=0)


def test_iv_nonlinearity_half_voltage_carries_less_than_half_current():
    g = np.array([20e-6, 300e-6, 590e-6])[:, None]
    v = np.linspace(0.1, 3.0, 30)[None, :]
    for beta in (0.1, 0.3, 1.0):
        i_full = iv_current(g, v, beta, 0.2)
        i_half = iv_current(g, v / 2, beta, 0.2)
        assert np.all(i_half < 0.5 * i_full)
        assert np.all(np.diff(i_full, axis=1) > 0)
        # the ratio falls with V: cubic law I ~ V(1 + beta V^2)
        ratio = i_half / i_full
        assert np.all(np.diff(ratio, axis=1) < 0)
    lin_full, lin_half = iv_current(g, v, 0.0, 0.2), iv_current(g, v / 2, 0.0, 0.2)
    np.testing.assert_allclose(lin_half, 0.5 * lin_full, rtol=1e-15)


# ------------------------------------------------------------------------------ stuck devices
def test_stuck_devices_never_change():
    p = TIO2.with_(stuck_lrs_frac=0.2, stuck_hrs_frac=0.2)
    rng = np.random.default_rng(9)
    pop = sample_population((30, 30), p, rng)
    assert 0.3 < pop.stuck.mean() < 0.5
    g0 = initial_state(pop, p, rng)
    np.testing.assert_array_equal(g0[pop.stuck], pop.stuck_g[pop.stuck])
    g = g0
    run = np.random.default_rng(10)
    for v in (3.0, -3.0, 2.0, -2.5, 3.0):
        g = apply_voltages(g, v, 1e-3, pop, p, run)
        np.testing.assert_array_equal(g[pop.stuck], g0[pop.stuck])
    assert np.all(g[~pop.stuck] != g0[~pop.stuck])
    # switch_at, the per-index path, honours the stuck mask too
    gf = g.reshape(-1).copy()
    flat = np.arange(gf.size)
    switch_at(gf, flat, np.full(gf.size, -3.0), np.full(gf.size, 1e-3), pop, p, run)
    np.testing.assert_array_equal(gf[pop.stuck.ravel()], g0[pop.stuck])
    working = ~pop.stuck.ravel()
    assert np.all(gf[working] <= g.reshape(-1)[working]) and np.median(gf[working]) == p.g_min


# ------------------------------------------------------------------------------ populations
@pytest.fixture(scope="module")
def big_pop():
    return sample_population((400, 400), TIO2, np.random.default_rng(11))


def test_population_stuck_fractions_and_values(big_pop):
    p = TIO2
    n = big_pop.stuck.size
    g = big_pop.stuck_g
    lrs = big_pop.stuck & (g > p.stuck_hrs_range[1])
    hrs = big_pop.stuck & ~lrs
    # 0.5 % each: 800 of 160 000 expected, Poisson sigma ~28
    assert abs(lrs.sum() - p.stuck_lrs_frac * n) < 4 * math.sqrt(p.stuck_lrs_frac * n)
    assert abs(hrs.sum() - p.stuck_hrs_frac * n) < 4 * math.sqrt(p.stuck_hrs_frac * n)
    assert np.all(np.isnan(g[~big_pop.stuck]))
    # stuck-HRS: uniform on 10-100 uS
    lo, hi = p.stuck_hrs_range
    assert g[hrs].min() >= lo and g[hrs].max() <= hi
    assert abs(g[hrs].mean() - (lo + hi) / 2) < 4 * (hi - lo) / math.sqrt(12 * hrs.sum())
    # stuck-LRS: N(573, 99) uS as measured (beyond the switching range, so not clipped at g_max)
    g_lrs = g[lrs]
    assert g_lrs.min() >= p.g_min
    assert (g_lrs > p.g_max).any(), "the measured distribution reaches past 600 uS"
    assert abs(g_lrs.mean() - p.stuck_lrs_mean) < 4 * p.stuck_lrs_std / math.sqrt(lrs.sum())
    assert abs(g_lrs.std() / p.stuck_lrs_std - 1) < 0.1


def test_population_threshold_and_rate_spread(big_pop):
    p = TIO2
    for vth, mean in ((big_pop.vth_set, p.vth_set), (big_pop.vth_reset, p.vth_reset)):
        assert abs(vth.mean() / mean - 1) < 0.002
        assert abs(vth.std() / vth.mean() - p.vth_cov) < 0.003
        assert vth.min() > 0
    rate = big_pop.rate
    assert abs(rate.mean() - 1) < 0.003  # mean-one log-normal
    assert abs(rate.std() / rate.mean() - p.k_cov) < 0.005


def test_initial_state_in_as_formed_range():
    rng = np.random.default_rng(12)
    pop = sample_population((100, 100), TIO2, rng)
    g = initial_state(pop, TIO2, rng)
    lo, hi = TIO2.g_init_range
    work = g[~pop.stuck]
    assert work.min() >= lo and work.max() <= hi
    assert abs(work.mean() - (lo + hi) / 2) < 0.02 * (lo + hi) / 2
    np.testing.assert_array_equal(g[pop.stuck], pop.stuck_g[pop.stuck])


def test_ideal_population_has_no_spread():
    pop = sample_population((20, 20), IDEAL, np.random.default_rng(13))
    assert not pop.stuck.any()
    np.testing.assert_array_equal(pop.vth_set, IDEAL.vth_set)
    np.testing.assert_array_equal(pop.rate, 1.0)


def test_population_is_seed_deterministic():
    a = sample_population((30, 30), TIO2, np.random.default_rng(14))
    b = sample_population((30, 30), TIO2, np.random.default_rng(14))
    c = sample_population((30, 30), TIO2, np.random.default_rng(15))
    np.testing.assert_array_equal(a.vth_set, b.vth_set)
    np.testing.assert_array_equal(a.stuck_g, b.stuck_g)
    assert not np.array_equal(a.vth_set, c.vth_set)


# ------------------------------------------------------------------------------ noise
@pytest.mark.parametrize("sigma", [0.1, 0.3])
def test_cycle_to_cycle_noise_is_lognormal(sigma):
    p = TIO2.with_(c2c_sigma=sigma)
    xi = c2c_noise(200_000, p, np.random.default_rng(16))
    assert np.all(xi > 0)
    assert abs(np.log(xi).std() / sigma - 1) < 0.01
    assert abs(np.median(xi) - 1) < 0.01 * sigma + 0.002


def test_noise_free_apply_voltages_equals_clipped_switching_step():
    p = IDEAL
    rng = np.random.default_rng(17)
    g = rng.uniform(p.g_min, p.g_max, (20, 20))
    v = rng.uniform(-2.5, 2.5, (20, 20))
    pop = sample_population(g.shape, p, rng)
    dg = switching_step(g, v, 1e-6, pop.vth_set, pop.vth_reset, pop.rate, p, 1.0)
    g1 = apply_voltages(g, v, 1e-6, pop, p, np.random.default_rng(0))
    np.testing.assert_array_equal(g1, np.clip(g + dg, p.g_min, p.g_max))
    assert np.any(dg != 0) and np.any(dg == 0)


@pytest.mark.parametrize("n_sets", [7, 2], ids=["7-sets", "2-sets"])   # (two sets are applied one after the other)
@pytest.mark.parametrize("at_once", [False, True], ids=["draws-per-set", "draws-at-once"])
@pytest.mark.parametrize("p", [ASYM, TIO2.with_(relax=0.05), ASYM.with_(p_set=1.5, p_reset=0.8)],
                         ids=["asymmetric", "tio2-relax", "unequal-exponents"])
def test_switch_steps_equal_switching_step_set_after_set(p, at_once, n_sets):
    """Sets of pulses, devices pulsed in several sets with both polarities (one polarity per
    device, as a pass sends, and mixed, as any caller may): the states after each pulse are bit for
    bit those of switching_step applied set after set with the same draws (normal, then uniform,
    per set; with ``draws_at_once`` one normal per pulse of every set, then one uniform per pulse),
    relaxation and clipping."""
    rng = np.random.default_rng(21)
    shape = (6, 10)
    pop = sample_population(shape, p, rng)
    pop.stuck.reshape(-1)[:3] = True                                  # stuck devices never switch
    g0 = rng.uniform(p.g_min, p.g_max, shape).ravel()
    polarity = rng.choice([-1.0, 1.0], g0.size)
    for mixed in (False, True):
        sets = [rng.permutation(g0.size)[:rng.integers(5, 40)] for _ in range(n_sets)]
        flat = np.concatenate([np.sort(s) for s in sets])
        v = 1.6 * (rng.choice([-1.0, 1.0], flat.size) if mixed else polarity[flat])
        w = np.full(flat.size, 1e-6)
        bounds = np.cumsum([0] + [s.size for s in sets])
        g = g0.copy()
        _, after = switch_steps(g, flat, v, w, bounds, pop, p, np.random.default_rng(5), draws_at_once=at_once)
        ref, draws, out = g0.copy(), np.random.default_rng(5), np.full(flat.size, np.nan)
        v_eq = equivalent_voltage(v, w, p)
        live = ((v_eq > pop.vth_set.ravel()[flat]) | (-v_eq > pop.vth_reset.ravel()[flat])) & ~pop.stuck.ravel()[flat]
        xi, f = np.ones(flat.size), np.ones(flat.size)
        parts = [slice(0, flat.size)] if at_once else [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        for part in parts:                                            # each part's normal draws, then ...
            on = np.flatnonzero(live[part]) + part.start
            xi[on] = c2c_noise(on.size, p, draws)
            if p.relax > 0:                                           # ... its uniform ones
                f[on] = 1.0 - p.relax * (draws.random(on.size) * 2.0)
        for a, b in zip(bounds[:-1], bounds[1:]):
            i, on = flat[a:b], live[a:b]
            dg = switching_step(ref[i], v[a:b], w[a:b], pop.vth_set.ravel()[i], pop.vth_reset.ravel()[i],
                                pop.rate.ravel()[i], p, xi[a:b])
            if p.relax > 0:
                dg[on] = dg[on] * f[a:b][on]
            ref[i[on]] = np.clip(ref[i] + dg, p.g_min, p.g_max)[on]
            out[a:b][on] = ref[i[on]]
        np.testing.assert_array_equal(after, out)
        np.testing.assert_array_equal(g, ref)

def test_relaxation_loses_a_mean_fraction_of_each_step():
    p = TIO2.with_(c2c_sigma=0.0, relax=0.05)
    shape = (200, 200)
    pop = nominal_pop(shape, p)
    g = np.full(shape, 300e-6)
    dg = switching_step(g, 1.4, 1e-6, p.vth_set, p.vth_reset, 1.0, p, 1.0)
    g1 = apply_voltages(g, 1.4, 1e-6, pop, p, np.random.default_rng(18))
    kept = (g1 - g) / dg
    assert kept.min() >= 1 - 2 * p.relax - 1e-9 and kept.max() <= 1 + 1e-9
    assert abs(kept.mean() - (1 - p.relax)) < 0.002
