"""Behaviour of mock_hw.sim_chip.SimulatedCrossbar through the public Crossbar API."""
import numpy as np
import pytest

from mock_hw.device import iv_current
from mock_hw.presets import get_preset
from mock_hw.sim_chip import SimulatedCrossbar
from programming.crossbar import LimitError, SafetyLimits

W = 1e-6  # pulse width, s


def ideal(rows=6, cols=6, n_chips=1, seed=0, **kw) -> SimulatedCrossbar:
    return SimulatedCrossbar(rows, cols, n_chips=n_chips, preset="ideal", seed=seed, **kw)


def random_state(xb, seed, lo=150e-6, hi=450e-6):
    g = np.random.default_rng(seed).uniform(lo, hi, size=(xb.n_chips, *xb.shape))
    xb.set_conductances(g)
    np.testing.assert_array_equal(xb.true_conductance, g)
    return g


def apply_one_by_one(xb, rows, cols, amps, scheme="v/2", width=W):
    for r, c, a in zip(rows, cols, amps):
        xb.pulse([r], [c], a, width, scheme=scheme)


class Spy:
    """Counts calls of a SimulatedCrossbar method (to know which pulse path ran)."""

    def __init__(self, xb, name):
        self.n = 0
        inner = getattr(xb, name)

        def wrapper(*a, **k):
            self.n += 1
            return inner(*a, **k)

        setattr(xb, name, wrapper)


# ------------------------------------------------------------------------------ determinism
def _workload(xb):
    xb.pulse([0, 2, 5], [1, 4, 3], [2.2, -2.4, 1.8], W)  # fast V/2 path
    r1 = xb.read([0, 1, 2, 3], [0, 1, 2, 3]).conductance
    xb.pulse([1, 1], [2, 6], [2.6, -2.6], W, scheme="v/3")  # general path
    xb.pulse(4, 4, 2.5, 1e-5, scheme="float")
    m = xb.mvm(np.full(8, 0.3))
    return r1, m, xb.read_array()


def test_same_seed_same_run_different_seed_differs():
    runs = []
    for seed in (42, 42, 43):
        xb = SimulatedCrossbar(8, 8, n_chips=2, seed=seed)  # tio2-3it: every noise source on
        g0 = xb.true_conductance
        out = _workload(xb)
        runs.append((g0, xb.true_conductance, out))
    (a0, a1, a_out), (b0, b1, b_out), (c0, c1, _) = runs
    np.testing.assert_array_equal(a0, b0)
    np.testing.assert_array_equal(a1, b1)
    for x, y in zip(a_out, b_out):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a1, a0)  # the workload did write
    assert not np.array_equal(a0, c0) and not np.array_equal(a1, c1)


def test_same_chip_different_run_noise_still_same_chip():
    """Identical seeds give identical chips; the run-time noise is a separate stream, so extra
    reads change later write noise but never the manufactured chip."""
    a = SimulatedCrossbar(6, 6, seed=5)
    b = SimulatedCrossbar(6, 6, seed=5)
    b.read([0], [0])  # consume run-time noise on b only
    np.testing.assert_array_equal(a.population.vth_set, b.population.vth_set)
    np.testing.assert_array_equal(a.true_conductance, b.true_conductance)
    a.pulse([1], [1], 2.0, W)
    b.pulse([1], [1], 2.0, W)
    assert a.true_conductance[0, 1, 1] != b.true_conductance[0, 1, 1]


# ------------------------------------------------------------------------------ reads
def test_ideal_read_equals_true_conductance():
    xb = ideal(5, 7, n_chips=3)
    g = random_state(xb, 1, 20e-6, 590e-6)
    rng = np.random.default_rng(2)
    rows = rng.integers(0, 5, size=(3, 20))
    cols = rng.integers(0, 7, size=(3, 20))
    res = xb.read(rows, cols)
    want = g[np.arange(3)[:, None], rows, cols]
    np.testing.assert_allclose(res.conductance, want, rtol=1e-15, atol=0)
    np.testing.assert_allclose(res.current, want * xb.v_read, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(res.duration, xb.params.timing.read_s)
    np.testing.assert_array_equal(xb.true_conductance, g)  # reads never disturb
    np.testing.assert_allclose(xb.read_array(), g, rtol=1e-15, atol=0)


def test_tio2_read_noise_is_about_0p1_percent():
    xb = SimulatedCrossbar(8, 8, seed=3, r_line=0.0)   # ideal lines: the reads' only error is the noise
    g = xb.true_conductance[0]
    n = 4000
    rows = np.tile(np.arange(8), n // 8)
    cols = np.repeat(np.arange(8), n // 8) % 8
    res = xb.read(rows, cols)
    rel = res.conductance[0] / g[rows, cols] - 1
    assert abs(rel.std() / xb.params.device.read_noise - 1) < 0.08
    assert abs(rel.mean()) < 4 * xb.params.device.read_noise / np.sqrt(n)
    np.testing.assert_array_equal(xb.true_conductance[0], g)


def test_inactive_read_lanes_are_nan_and_free():
    xb = SimulatedCrossbar(4, 4, n_chips=2, seed=4)
    active = np.array([[True, False, True], [False, False, True]])
    res = xb.read([0, 1, 2], [3, 2, 1], active=active)
    assert np.array_equal(np.isnan(res.conductance), ~active)
    assert np.array_equal(np.isnan(res.current), ~active)
    np.testing.assert_array_equal(res.duration[~active], 0.0)
    np.testing.assert_array_equal(res.duration[active], xb.params.timing.read_s)
    assert xb.n_read_ops == active.sum()


def test_inactive_lanes_may_hold_any_index():
    """The interface validates only active lanes, so the indices of inactive ones are ignored."""
    xb = ideal(4, 4)
    g = random_state(xb, 5)
    res = xb.read([0, 9], [1, -3], active=[True, False])
    assert np.isnan(res.conductance[0, 1])
    np.testing.assert_allclose(res.conductance[0, 0], g[0, 0, 1], rtol=1e-15)
    pr = xb.pulse([2, 99], [2, 99], 2.0, W, active=[True, False])
    assert pr.energy[0, 1] == 0 and pr.energy[0, 0] > 0
    ref = ideal(4, 4)
    ref.set_conductances(g)
    ref.pulse([2], [2], 2.0, W)
    np.testing.assert_array_equal(xb.true_conductance, ref.true_conductance)


# ------------------------------------------------------------------------------ disturbance
@pytest.mark.parametrize("amp", [2.4, -2.4])
def test_half_select_disturbance_ordering_ideal(amp):
    """Same pulse under V/3 and V/2 on identical chips: neighbours see V/3 (0.8 V, below the 1 V
    threshold: untouched) or V/2 (1.2 V: they switch a little); all far less than the selected cell."""
    r, c = 2, 3
    changes = {}
    for scheme in ("v/3", "v/2"):
        xb = ideal(6, 6, seed=7)
        g0 = random_state(xb, 8)[0]
        xb.pulse([r], [c], amp, W, scheme=scheme)
        changes[scheme] = xb.true_conductance[0] - g0
    sel = changes["v/2"][r, c]
    assert changes["v/3"][r, c] == sel  # the selected cell sees the full pulse either way
    assert abs(sel) > 50e-6 and np.sign(sel) == np.sign(amp)
    half = np.zeros((6, 6), bool)
    half[r, :] = half[:, c] = True
    half[r, c] = False
    others = np.ones((6, 6), bool)
    others[r, c] = False
    np.testing.assert_array_equal(changes["v/3"][others], 0.0)  # every other cell sees |V/3| < vth
    d2 = changes["v/2"]
    assert np.all(np.sign(d2[half]) == np.sign(amp)) and np.all(d2[half] != 0)
    unsel = ~half
    unsel[r, c] = False
    np.testing.assert_array_equal(d2[unsel], 0.0)  # V/2: unselected cells see 0 V
    assert np.abs(d2[half]).max() < 0.2 * abs(sel)
    assert np.abs(changes["v/3"]).sum() - abs(sel) < np.abs(d2).sum() - abs(sel)


def test_disturbance_ordering_with_device_spread():
    """tio2-3it, 2.8 V: under V/3 the 0.93 V bias reaches only the few low-threshold devices; under
    V/2 every neighbour sees 1.4 V.  The float scheme sits in between on a uniform array."""
    total = {}
    for scheme in ("v/3", "float", "v/2"):
        xb = SimulatedCrossbar(8, 8, n_chips=4, seed=9, r_line=0.0)   # the schemes' shares exactly
        xb.set_conductances(300e-6)
        g0 = xb.true_conductance
        xb.pulse([3], [4], 2.8, W, scheme=scheme)
        d = xb.true_conductance - g0
        sel = d[:, 3, 4].copy()
        d[:, 3, 4] = 0
        total[scheme] = np.abs(d).sum(axis=(1, 2))
        work = xb.working_mask[:, 3, 4]
        assert np.all(sel[work] > 100e-6)
        assert work.sum() >= 3
        assert np.all(np.abs(d).max(axis=(1, 2))[work] < 0.5 * sel[work])
    assert np.all(total["v/3"] < total["float"])
    assert np.all(total["float"] < total["v/2"])
    assert np.all(total["v/2"] > 50e-6)


# ------------------------------------------------------------------------------ fast V/2 path
# lanes on distinct rows and columns; (0,0) lies on lane 0's row and lane 1's column, (3,2) on
# lane 1's row and lane 2's column, ... so several neighbours are hit twice, in lane order
FAST_ROWS = [0, 3, 5, 6, 1]
FAST_COLS = [2, 0, 7, 4, 5]
FAST_AMPS = [2.4, -2.5, 2.3, -2.45, 2.5]


def test_fast_v2_path_equals_sequential_pulses():
    xb = ideal(8, 8, seed=1)
    g0 = random_state(xb, 11)
    fast, general = Spy(xb, "_pulse_v2_concurrent"), Spy(xb, "_pulse_one")
    res = xb.pulse(FAST_ROWS, FAST_COLS, FAST_AMPS, W)
    assert fast.n == 1 and general.n == 0
    assert not res.compliance.any()

    seq = ideal(8, 8, seed=1)
    seq.set_conductances(g0)
    apply_one_by_one(seq, FAST_ROWS, FAST_COLS, FAST_AMPS)
    np.testing.assert_allclose(xb.true_conductance, seq.true_conductance, rtol=1e-13, atol=0)

    # the test is sensitive to order: the reverse order ends elsewhere on the doubly-hit cells
    rev = ideal(8, 8, seed=1)
    rev.set_conductances(g0)
    apply_one_by_one(rev, FAST_ROWS[::-1], FAST_COLS[::-1], FAST_AMPS[::-1])
    diff = np.abs(rev.true_conductance - seq.true_conductance)[0]
    assert diff[0, 0] > 1e-9 and diff[3, 2] > 1e-9
    # and half-selects did switch: neighbours off the selected cells moved
    moved = (xb.true_conductance != g0)[0]
    assert moved.sum() > 3 * len(FAST_ROWS)


def test_fast_v2_path_batch_of_chips_equals_sequential():
    n = 3
    rng = np.random.default_rng(12)
    rows = np.stack([rng.permutation(8)[:4] for _ in range(n)])
    cols = np.stack([rng.permutation(8)[:4] for _ in range(n)])
    amps = rng.choice([-1, 1], size=(n, 4)) * rng.uniform(2.3, 2.5, size=(n, 4))
    active = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [0, 1, 1, 0]], bool)
    xb = ideal(8, 8, n_chips=n, seed=2)
    g0 = random_state(xb, 13)
    fast = Spy(xb, "_pulse_v2_concurrent")
    xb.pulse(rows, cols, amps, W, active=active)
    assert fast.n == 1
    seq = ideal(8, 8, n_chips=n, seed=2)
    seq.set_conductances(g0)
    for lane in range(4):
        seq.pulse(rows[:, lane:lane + 1], cols[:, lane:lane + 1], amps[:, lane:lane + 1], W,
                  active=active[:, lane:lane + 1])
    np.testing.assert_allclose(xb.true_conductance, seq.true_conductance, rtol=1e-13, atol=0)


@pytest.mark.parametrize("scheme", ["v/2", "v/3"])
def test_general_path_with_shared_lines_equals_sequential_pulses(scheme):
    rows = [0, 0, 3, 5, 3]  # lanes 0/1 share row 0, lanes 1/2 share column 4, lanes 2/4 row 3
    cols = [1, 4, 4, 2, 6]
    amps = [2.5, 2.4, -2.5, 2.45, -2.3]
    xb = ideal(8, 8, seed=3)
    g0 = random_state(xb, 14)
    fast, general = Spy(xb, "_pulse_v2_concurrent"), Spy(xb, "_pulse_one")
    xb.pulse(rows, cols, amps, W, scheme=scheme)
    assert fast.n == 0 and general.n == len(rows)
    seq = ideal(8, 8, seed=3)
    seq.set_conductances(g0)
    apply_one_by_one(seq, rows, cols, amps, scheme=scheme)
    np.testing.assert_allclose(xb.true_conductance, seq.true_conductance, rtol=1e-13, atol=0)
    if scheme == "v/2":  # lane 1's selected cell was half-selected by lane 0 first
        only = ideal(8, 8, seed=3)
        only.set_conductances(g0)
        only.pulse([0], [4], 2.4, W)
        assert xb.true_conductance[0, 0, 4] != only.true_conductance[0, 0, 4]


# ------------------------------------------------------------------------------ batches
@pytest.mark.parametrize("scheme", ["v/2", "v/3", "float"])
def test_batch_chips_are_independent(scheme):
    xb = ideal(6, 6, n_chips=3, seed=4)
    g0 = random_state(xb, 15)
    rows = np.array([[0, 1], [2, 2], [4, 5]])  # chip 1's lanes share a row (general path)
    cols = np.array([[0, 1], [1, 4], [3, 3]])
    amps = np.array([[2.5, 2.5], [2.4, -2.5], [-2.5, 2.5]])
    active = np.array([[False, False], [True, True], [False, False]])
    res = xb.pulse(rows, cols, amps, W, scheme=scheme, active=active)
    g1 = xb.true_conductance
    np.testing.assert_array_equal(g1[[0, 2]], g0[[0, 2]])
    assert np.all(res.energy[[0, 2]] == 0) and np.all(res.duration[[0, 2]] == 0)
    single = ideal(6, 6, seed=99)
    single.set_conductances(g0[1])
    res1 = single.pulse(rows[1], cols[1], amps[1], W, scheme=scheme)
    np.testing.assert_allclose(g1[1], single.true_conductance[0], rtol=1e-13, atol=0)
    np.testing.assert_allclose(res.energy[1], res1.energy[0], rtol=1e-12)
    assert not np.array_equal(g1[1], g0[1])


def test_batch_fast_path_only_one_chip_pulsed():
    xb = ideal(6, 6, n_chips=3, seed=4)
    g0 = random_state(xb, 16)
    active = np.array([[False] * 3, [True] * 3, [False] * 3])
    xb.pulse([0, 2, 4], [1, 3, 5], [2.4, -2.4, 2.4], W, active=active)
    g1 = xb.true_conductance
    np.testing.assert_array_equal(g1[[0, 2]], g0[[0, 2]])
    single = ideal(6, 6)
    single.set_conductances(g0[1])
    single.pulse([0, 2, 4], [1, 3, 5], [2.4, -2.4, 2.4], W)
    np.testing.assert_allclose(g1[1], single.true_conductance[0], rtol=1e-13, atol=0)


# ------------------------------------------------------------------------------ limits
def _unchanged(xb, op):
    g0, n_p, n_r = xb.true_conductance, xb.n_pulse_ops, xb.n_read_ops
    with pytest.raises(LimitError):
        op(xb)
    np.testing.assert_array_equal(xb.true_conductance, g0)
    assert xb.n_pulse_ops == n_p and xb.n_read_ops == n_r


@pytest.mark.parametrize("op", [
    lambda xb: xb.pulse([0, 1], [0, 1], [2.0, 3.2], W),  # one lane above v_max: nothing written
    lambda xb: xb.pulse([0], [0], -3.01, W),
    lambda xb: xb.pulse([0, 1], [0, 1], 2.0, [W, 1e-8]),  # width below width_min
    lambda xb: xb.pulse([0], [0], 2.0, 2e-3),  # width above width_max
    lambda xb: xb.pulse([0], [0], np.nan, W),
    lambda xb: xb.pulse([0], [0], 2.0, np.inf),
    lambda xb: xb.read([0], [0], v_read=0.6),
    lambda xb: xb.read([0], [0], v_read=np.nan),
    lambda xb: xb.read_array(v_read=-0.7),
    lambda xb: xb.mvm(np.full(5, 0.6)),
], ids=["v_max", "neg_v_max", "width_min", "width_max", "nan_amp", "inf_width", "v_read_max",
        "nan_read", "read_array", "mvm"])
def test_out_of_limit_requests_raise_and_write_nothing(op):
    xb = SimulatedCrossbar(5, 4, n_chips=2, seed=6)
    xb.pulse([1], [1], 2.0, W)  # some history first
    _unchanged(xb, op)


def test_limits_are_per_chip_configurable():
    xb = SimulatedCrossbar(4, 4, seed=6, limits=SafetyLimits(v_max=2.0))
    _unchanged(xb, lambda x: x.pulse([0], [0], 2.1, W))
    xb.pulse([0], [0], 2.0, W)
    assert xb.n_pulse_ops == 1


@pytest.mark.parametrize("rows, cols", [([4], [0]), ([0], [5]), ([-1], [0]), ([0, 1], [2, 7]),
                                        ([0.0], [1]), ([1], [np.float64(2)]), (["a"], [0])])
def test_bad_cell_indices_raise_value_error(rows, cols):
    xb = SimulatedCrossbar(4, 5, seed=0)
    g0 = xb.true_conductance
    for op in (lambda: xb.pulse(rows, cols, 2.0, W), lambda: xb.read(rows, cols)):
        with pytest.raises(ValueError) as e:
            op()
        assert e.type is ValueError
    np.testing.assert_array_equal(xb.true_conductance, g0)
    assert xb.n_pulse_ops == 0 and xb.n_read_ops == 0


# ------------------------------------------------------------------------------ compliance
@pytest.mark.parametrize("preset", ["ideal", "tio2-3it"])
@pytest.mark.parametrize("amp", [2.5, -2.5])
def test_compliance_limits_the_step(preset, amp):
    deltas, flags = [], []
    for i_c in (10e-3, 1e-4):
        xb = SimulatedCrossbar(4, 4, preset=preset, seed=8, limits=SafetyLimits(i_compliance=i_c))
        g0 = np.full((1, 4, 4), 300e-6)
        xb.set_conductances(g0)
        res = xb.pulse([1], [1], amp, W)
        deltas.append(xb.true_conductance[0, 1, 1] - 300e-6)
        flags.append(bool(res.compliance[0, 0]))
    assert flags == [False, True]  # 300 uS at 2.5 V draws ~0.75 mA
    assert abs(deltas[1]) < abs(deltas[0])
    assert abs(deltas[0]) > 50e-6


def test_compliance_flags_only_the_lanes_over_the_limit():
    xb = ideal(4, 4, limits=SafetyLimits(i_compliance=5e-4))
    g = np.full((1, 4, 4), 300e-6)
    g[0, 0, 0], g[0, 1, 1] = 500e-6, 100e-6
    xb.set_conductances(g)
    res = xb.pulse([0, 1, 2], [0, 1, 2], [2.0, 2.0, 2.0], W, active=[True, True, False])
    np.testing.assert_array_equal(res.compliance[0], [True, False, False])  # 1 mA, 0.2 mA, inactive
    g1 = xb.true_conductance[0]
    assert g1[0, 0] == 500e-6  # limited to 0.5 mA / 500 uS = 1.0 V: exactly the threshold
    assert g1[1, 1] > 150e-6


def test_compliance_is_evaluated_when_the_lane_fires():
    """General path: lane 1's device was raised by lane 0's half-select, so at its turn it draws
    more than the compliance current although it did not when the call began."""
    lim = SafetyLimits(i_compliance=1.19e-3)
    xb = ideal(4, 4, limits=lim)
    xb.set_conductances(400e-6)  # 400 uS at 2.9 V: 1.16 mA < 1.19 mA before any pulse
    res = xb.pulse([0, 0], [0, 1], [2.9, 2.9], W)
    seq = ideal(4, 4, limits=lim)
    seq.set_conductances(400e-6)
    r0 = seq.pulse([0], [0], 2.9, W)
    r1 = seq.pulse([0], [1], 2.9, W)
    assert not r0.compliance.any() and r1.compliance.all()
    np.testing.assert_array_equal(res.compliance[0], [False, True])
    np.testing.assert_allclose(xb.true_conductance, seq.true_conductance, rtol=1e-13, atol=0)


# ------------------------------------------------------------------------------ read schemes
def test_floating_read_includes_sneak_paths():
    xb = ideal(4, 4)
    g = np.full((1, 4, 4), 500e-6)
    g[0, 1, 2] = 50e-6
    xb.set_conductances(g)
    ground = xb.read([1], [2], scheme="ground").conductance[0, 0]
    floating = xb.read([1], [2], scheme="float").conductance[0, 0]
    np.testing.assert_allclose(ground, 50e-6, rtol=1e-15)
    # sneak path row 1 -> 3 cells -> 3 floating columns -> 9 cells -> 3 floating rows -> 3 cells -> column 2
    sneak = 1 / (1 / 1500e-6 + 1 / 4500e-6 + 1 / 1500e-6)
    np.testing.assert_allclose(floating, 50e-6 + sneak, rtol=1e-9)
    assert floating > 10 * ground
    np.testing.assert_allclose(xb.read_array(scheme="ground")[0], g[0], rtol=1e-15, atol=0)
    arr_float = xb.read_array(scheme="float")[0]
    assert arr_float[1, 2] == pytest.approx(floating, rel=1e-9)
    assert np.all(arr_float > g[0])


# ------------------------------------------------------------------------------ line resistance
def test_line_resistance_lowers_reads_and_mvm():
    g = np.random.default_rng(17).uniform(300e-6, 500e-6, size=(1, 8, 8))
    out = {}
    for r_line in (0.0, 5.0):
        xb = ideal(8, 8, r_line=r_line)
        xb.set_conductances(g)
        far = xb.read([0], [7]).conductance[0, 0]  # row driver at column 0, column sense at row 7
        near = xb.read([7], [0]).conductance[0, 0]
        out[r_line] = (far, near, xb.read_array()[0], xb.mvm(np.full(8, 0.3))[0])
    far0, near0, arr0, m0 = out[0.0]
    far5, near5, arr5, m5 = out[5.0]
    assert far0 == pytest.approx(g[0, 0, 7], rel=1e-15) and near0 == pytest.approx(g[0, 7, 0], rel=1e-15)
    assert far5 < far0 * (1 - 1e-3)
    assert (far0 - far5) / far0 > (near0 - near5) / near0  # more wire between drivers and the far cell
    assert np.all(arr5 < arr0)
    assert np.all(m5 < m0)
    np.testing.assert_allclose(arr5[0, 7], far5, rtol=1e-9)


def test_masked_mvm_draws_the_same_read_noise_for_the_needed_currents_only():
    """With a ``need`` mask the chip measures only the needed currents: each carries read noise of
    the same size as an unmasked product's, unbiased, independent from current to current, and
    the chip's random stream advances by one draw per needed current only."""
    xb = SimulatedCrossbar(8, 8, n_chips=2, seed=3, r_line=0.0)
    sigma = xb.params.device.read_noise
    n = 3000
    v = np.zeros((n, 8))
    v[:, 2] = 0.1
    need = np.zeros((n, 8), bool)
    need[: n // 2, 1] = need[n // 2:, 5] = True
    exact = iv_current(xb.true_conductance[:, 2, :], 0.1, xb.params.device.beta, xb.params.device.v_ref)
    full = xb.mvm(v)
    before = xb._rng.bit_generator.state
    masked = xb.mvm(v, need=need)
    twin = np.random.default_rng()
    twin.bit_generator.state = before
    twin.standard_normal(int(need.sum()) * xb.n_chips)     # one draw per needed current
    assert twin.bit_generator.state == xb._rng.bit_generator.state
    assert np.isnan(masked[:, ~need]).all()
    for out, pick in ((full, lambda a: a[:, :, 1]), (masked, lambda a: a[:, : n // 2, 1])):
        rel = (pick(out) / exact[:, None, 1] - 1).ravel()
        assert abs(rel.std() / sigma - 1) < 0.06 and abs(rel.mean()) < 4 * sigma / np.sqrt(rel.size)
    rel = masked[:, need] / np.broadcast_to(exact[:, None, :], masked.shape)[:, need] - 1
    assert abs(rel.std() / sigma - 1) < 0.06
    assert abs(np.corrcoef(rel[:, :-1].ravel(), rel[:, 1:].ravel())[0, 1]) < 0.05


@pytest.mark.parametrize("same_need_on_every_chip", [True, False])
def test_large_masked_mvm_worked_out_run_by_run_equals_the_whole_product(monkeypatch, same_need_on_every_chip):
    """A large masked product whose inputs come in runs (each driving a few rows and needing a few
    columns, as in-situ training's tiles) is worked out run by run on those rows and columns:
    the same currents and read noise, bit for bit, as the whole product, NaN where not needed."""
    import mock_hw.sim_chip as sim_chip

    n = 6000                                          # 6000 x 12 x 10 multiply-adds: run by run
    assert n * 12 * 10 >= sim_chip.MVM_BLOCKS_MIN
    rng = np.random.default_rng(1)
    v = np.zeros((2, n, 12))
    v[:, :2000, 0:3] = rng.uniform(0, 0.2, (2, 2000, 3))
    v[:, 2000:4500, 5:9] = rng.uniform(0, 0.2, (2, 2500, 4)) * (rng.random((2, 2500, 4)) < 0.7)
    v[:, 4500:, 9] = 0.1
    need = np.zeros((2, n, 10), bool)
    need[:, :2000, 0:4] = need[:, 2000:4500, 4:8] = True    # the last run needs nothing
    if not same_need_on_every_chip:
        need[1, :2000, 8] = True
    chips = [SimulatedCrossbar(12, 10, n_chips=2, preset="asymmetric", seed=7, r_line=0.0) for _ in range(2)]
    calls = []
    blocks = sim_chip.SimulatedCrossbar._mvm_blocks
    monkeypatch.setattr(sim_chip.SimulatedCrossbar, "_mvm_blocks",
                        lambda self, *a: calls.append(blocks(self, *a)) or calls[-1])
    runs = chips[0].mvm(v, need=need)
    assert (calls[-1] is not None) == same_need_on_every_chip
    monkeypatch.setattr(sim_chip, "MVM_BLOCKS_MIN", 1 << 62)       # the whole product
    whole = chips[1].mvm(v, need=need)
    assert calls[-1] is None
    np.testing.assert_array_equal(runs, whole)
    assert np.isnan(runs[~need]).all() and not np.isnan(runs[need]).any()
    assert chips[0]._rng.bit_generator.state == chips[1]._rng.bit_generator.state


@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_mvm_is_sum_of_device_currents(beta):
    params = get_preset("ideal")
    params = params.with_(device=params.device.with_(beta=beta))
    xb = SimulatedCrossbar(5, 3, n_chips=2, preset=params, seed=0)
    g = random_state(xb, 18, 20e-6, 590e-6)
    rng = np.random.default_rng(19)
    v1 = rng.uniform(-0.5, 0.5, 5)
    out1 = xb.mvm(v1)
    assert out1.shape == (2, 3)
    want = iv_current(g, v1[None, :, None], beta, params.device.v_ref).sum(axis=1)
    np.testing.assert_allclose(out1, want, rtol=1e-12)

    v2 = rng.uniform(-0.5, 0.5, (4, 5))
    out2 = xb.mvm(v2)
    assert out2.shape == (2, 4, 3)
    for k in range(4):
        np.testing.assert_allclose(out2[:, k], iv_current(g, v2[k][None, :, None], beta, 0.2).sum(axis=1),
                                   rtol=1e-12)

    v3 = rng.uniform(-0.5, 0.5, (2, 4, 5))
    out3 = xb.mvm(v3)
    assert out3.shape == (2, 4, 3)
    for b in range(2):
        for k in range(4):
            np.testing.assert_allclose(out3[b, k], iv_current(g[b], v3[b, k][:, None], beta, 0.2).sum(axis=0),
                                       rtol=1e-12)
    np.testing.assert_array_equal(xb.true_conductance, g)


@pytest.mark.parametrize("shape", [(3,), (6,), (4, 3), (4, 6), (3, 4, 5), (1, 4, 5), (2, 2, 4, 5), ()])
def test_mvm_rejects_wrong_shapes(shape):
    xb = ideal(5, 3, n_chips=2)
    with pytest.raises(ValueError):
        xb.mvm(np.full(shape, 0.1))


# ------------------------------------------------------------------------------ energy & timing
def test_energy_and_duration_of_write_schemes():
    R, C, g, v, w = 6, 6, 300e-6, 1.5, 2e-6
    e = {}
    for scheme in ("v/2", "v/3"):
        xb = ideal(R, C)
        xb.set_conductances(g)
        res = xb.pulse([2, 4], [3, 0], [v, v], w, scheme=scheme, active=[True, False])
        assert res.energy[0, 1] == 0 and res.duration[0, 1] == 0 and not res.compliance[0, 1]
        assert res.duration[0, 0] == pytest.approx(w + xb.params.timing.pulse_overhead_s, rel=1e-15)
        e[scheme] = res.energy[0, 0]
    assert e["v/2"] == pytest.approx(w * g * (v ** 2 + (v / 2) ** 2 * (R + C - 2)), rel=1e-12)
    assert e["v/3"] == pytest.approx(w * g * (v ** 2 + (v / 3) ** 2 * (R * C - 1)), rel=1e-12)
    assert e["v/3"] > e["v/2"] > 0


def test_energy_positive_on_noisy_chip_and_grows_with_width():
    xb = SimulatedCrossbar(8, 8, seed=20)
    r1 = xb.pulse([0, 3], [1, 5], [-1.5, 1.5], 1e-6)
    r2 = xb.pulse([0, 3], [1, 5], [-1.5, 1.5], 1e-5)
    assert np.all(r1.energy > 0)
    assert np.all(r2.energy > 5 * r1.energy)
    assert xb.n_pulse_ops == 4


# ------------------------------------------------------------------------------ floating write
def test_floating_write_changes_selected_cell():
    R = C = 4
    g, v = 300e-6, 2.0
    xb = ideal(R, C)
    xb.set_conductances(g)
    res = xb.pulse([1], [1], v, W, scheme="float")
    d = xb.true_conductance[0] - g
    ref = ideal(R, C)
    ref.set_conductances(g)
    ref.pulse([1], [1], v, W, scheme="v/2")
    assert d[1, 1] > 50e-6
    assert d[1, 1] == ref.true_conductance[0, 1, 1] - g  # selected cell sees the full pulse
    d[1, 1] = 0
    np.testing.assert_array_equal(d, 0.0)  # uniform 4x4: others at 3V/7 or -V/7, below threshold
    e = W * g * (v ** 2 + 6 * (3 * v / 7) ** 2 + 9 * (v / 7) ** 2)
    assert res.energy[0, 0] == pytest.approx(e, rel=1e-9)


# ------------------------------------------------------------------------------ pulse steps
def _steps_case(case):
    """(preset, rows, cols, amplitudes) of K = 3 steps on 2 chips of 8x8 (rows/cols (K, 2, L))."""
    rng = np.random.default_rng(31)
    rows = np.stack([np.stack([rng.permutation(8)[:4] for _ in range(2)]) for _ in range(3)])
    cols = np.stack([np.stack([rng.permutation(8)[:4] for _ in range(2)]) for _ in range(3)])
    sign = rng.choice([-1.0, 1.0], size=rows.shape)
    if case == "plain":          # distinct lines, half-selects far below every threshold; without
        # relaxation draws a pass's one normal draw per pulse is the stream of one draw per step
        p = get_preset("asymmetric")
        return p.with_(device=p.device.with_(relax=0.0)), rows, cols, 1.35 * sign
    if case == "half-selects":   # V/2 of 2.4 V switches half-selected cells
        return "ideal", rows, cols, 2.4 * sign
    if case == "shared-lines":   # two lanes of a step on one row
        rows[1, 0, 1] = rows[1, 0, 0]
        return "asymmetric", rows, cols, 1.35 * sign
    return "tio2-3it", rows, cols, 2.2 * sign   # "loud": every pulse is a disturb event elsewhere


@pytest.mark.parametrize("case", ["plain", "half-selects", "shared-lines", "loud"])
def test_pulse_steps_equal_one_pulse_call_per_step(case):
    preset, rows, cols, amps = _steps_case(case)
    active = np.ones(rows.shape, bool)
    active[2, 1, 3] = False
    make = lambda: SimulatedCrossbar(8, 8, n_chips=2, preset=preset, seed=5)  # noqa: E731
    xb, ref = make(), make()
    per_step = Spy(xb, "_pulse")
    res = xb.pulse_steps(rows, cols, amps, 1e-7, active=active)
    ref_res = [ref.pulse(rows[k], cols[k], amps[k], 1e-7, active=active[k]) for k in range(3)]
    # bit for bit: same states, same later random draws, same energies and counters
    np.testing.assert_array_equal(xb.true_conductance, ref.true_conductance)
    np.testing.assert_array_equal(xb._n_disturb, ref._n_disturb)
    np.testing.assert_array_equal(xb._t_written, ref._t_written)
    assert xb._rng.random() == ref._rng.random()
    np.testing.assert_array_equal(res.energy, np.stack([r.energy for r in ref_res]))
    np.testing.assert_array_equal(res.duration, np.stack([r.duration for r in ref_res]))
    assert xb.n_pulse_ops == ref.n_pulse_ops == active.sum()
    assert xb.max_unselected_v == ref.max_unselected_v > 0      # the largest unselected-cell voltage
    assert not np.array_equal(xb.true_conductance, make().true_conductance)
    assert per_step.n == (0 if case == "plain" else 3), "plain steps in one go, the others step by step"


def test_pulse_steps_draw_the_same_switching_noise_as_one_pulse_call_per_step():
    """With relaxation on, plain steps draw every pulse's cycle-to-cycle and relaxation noise at
    once (one normal and one uniform draw for the whole call, not per step): another order of the
    same independent draws.  Each device pulsed once (so its step over the noise-free one is its
    own noise factor xi·(1 − 2·relax·u)), over 400 chips: the same distribution as one pulse call
    per step (two-sample KS, means within 4 standard errors)."""
    from scipy.stats import ks_2samp

    p = get_preset("asymmetric")
    quiet = p.with_(device=p.device.with_(c2c_sigma=0.0, relax=0.0))
    rng = np.random.default_rng(8)
    n_chips, K = 400, 3
    rows = np.zeros((K, n_chips, 3), np.intp)
    cols = np.zeros((K, n_chips, 3), np.intp)
    for k in range(K):                                   # three lanes per step on distinct lines
        r = np.stack([rng.permutation(8)[:3] for _ in range(n_chips)])
        c = np.stack([rng.permutation(8)[:3] for _ in range(n_chips)])
        rows[k], cols[k] = r, c
    amps = 1.35 * rng.choice([-1.0, 1.0], size=rows.shape)
    first = np.zeros(rows.shape, bool)                   # each (chip, cell) pulsed once: its first lane
    seen = [set() for _ in range(n_chips)]
    for k in range(K):
        for b in range(n_chips):
            for lane in range(3):
                cell = (rows[k, b, lane], cols[k, b, lane])
                first[k, b, lane] = cell not in seen[b]
                seen[b].add(cell)
    make = lambda params: SimulatedCrossbar(8, 8, n_chips=n_chips, preset=params, seed=9)  # noqa: E731
    steps, calls, nominal = make(p), make(p), make(quiet)
    g0 = steps.true_conductance
    steps.pulse_steps(rows, cols, amps, 1e-7, active=first)
    for xb in (calls, nominal):
        for k in range(K):
            xb.pulse(rows[k], cols[k], amps[k], 1e-7, active=first[k])
    b_idx = np.broadcast_to(np.arange(n_chips)[None, :, None], rows.shape)[first]
    at = (b_idx, rows[first], cols[first])
    d_nom = nominal.true_conductance[at] - g0[at]
    moved = np.abs(d_nom) > 1e-9
    factors = [((xb.true_conductance[at] - g0[at]) / np.where(moved, d_nom, 1.0))[moved] for xb in (steps, calls)]
    assert moved.sum() > 2000
    assert not np.array_equal(*factors)                  # other draws, ...
    assert ks_2samp(*factors).pvalue > 0.01              # ... the same distribution
    se = np.hypot(factors[0].std(), factors[1].std()) / np.sqrt(factors[0].size)
    assert abs(factors[0].mean() - factors[1].mean()) < 4 * se
    assert abs(factors[0].std() / factors[1].std() - 1) < 0.1
    assert abs(factors[0].mean() - 1) < 0.05             # xi has median 1, the relaxation a few %


def test_pulse_steps_validate_every_step_before_the_first():
    xb = SimulatedCrossbar(8, 8, preset="asymmetric", seed=5)
    g0 = xb.true_conductance
    amps = np.array([[1.3, -1.3], [1.3, 3.5]])             # the last step is over v_max
    with pytest.raises(LimitError, match="exceeds the limit v_max"):
        xb.pulse_steps([[0, 1], [2, 3]], [[0, 1], [2, 3]], amps, 1e-7)
    with pytest.raises(ValueError, match="outside the 8x8 array"):
        xb.pulse_steps([[0, 1], [2, 8]], [[0, 1], [2, 3]], 1.3, 1e-7)
    with pytest.raises(ValueError, match=r"shape \(K, L\) or \(K, n_chips, L\)"):
        xb.pulse_steps([0, 1], [0, 1], 1.3, 1e-7)
    np.testing.assert_array_equal(xb.true_conductance, g0)
    assert xb.n_pulse_ops == 0


def _as_list(rows, cols, amps, active):
    """The active lanes of steps (K, n_chips, L) as a pulse list, step after step, chip after chip,
    lane after lane, and where each sits."""
    at = np.nonzero(active)
    return (at[0], at[1], rows[at], cols[at], amps[at]), at


@pytest.mark.parametrize("case,lanes", [("plain", False), ("half-selects", False), ("shared-lines", False),
                                        ("plain", True), ("half-selects", True), ("shared-lines", True),
                                        ("loud", True)])
@pytest.mark.parametrize("through", ["simulator", "interface default"])
def test_pulse_list_equals_pulse_steps(case, lanes, through):
    """A pulse list is the steps' active lanes given one by one: bit for bit the same states, later
    random draws, energies and counters as :meth:`pulse_steps` (plain steps in one go, the others
    step by step), on the simulator and through the interface's default (lanes rebuilt, one
    ``_pulse`` per step, as a bench does).  Without their lanes, each chip's pulses of a step take
    its first lanes, which on resistive lines ("loud") pairs other pulses of the chips in a lane
    and so draws their noise in another order; with them, every case is the same."""
    from programming.crossbar import list_as_steps
    from tests.conftest import SpyCrossbar

    preset, rows, cols, amps = _steps_case(case)
    active = np.ones(rows.shape, bool)
    active[2, 1, 3] = active[0, 0, 1] = False
    make = lambda: SimulatedCrossbar(8, 8, n_chips=2, preset=preset, seed=5)  # noqa: E731
    xb, ref = make(), make()
    chip = xb if through == "simulator" else SpyCrossbar(xb)
    pulses, at = _as_list(rows, cols, amps, active)
    res = chip.pulse_list(*pulses, 1e-7, lanes=at[2] if lanes else None)
    ref_res = ref.pulse_steps(rows, cols, amps, 1e-7, active=active)
    np.testing.assert_array_equal(xb.true_conductance, ref.true_conductance)
    np.testing.assert_array_equal(xb._n_disturb, ref._n_disturb)
    np.testing.assert_array_equal(xb._t_written, ref._t_written)
    assert xb._rng.random() == ref._rng.random()
    np.testing.assert_array_equal(res.energy, ref_res.energy[at])
    np.testing.assert_array_equal(res.duration, ref_res.duration[at])
    np.testing.assert_array_equal(res.compliance, ref_res.compliance[at])
    assert xb.n_pulse_ops == ref.n_pulse_ops == active.sum()
    assert xb.max_unselected_v == ref.max_unselected_v > 0
    if through != "simulator":
        assert len(chip.pulses) == 3                     # one call per step
    # the lanes rebuilt from the list: each chip's pulses of a step in its first lanes, in order
    (r, c, a, w, act), where = list_as_steps(3, 2, *pulses, np.full(at[0].size, 1e-7))
    assert act.sum() == active.sum() and act.shape == (3, 2, 4)
    np.testing.assert_array_equal(list_as_steps(3, 2, *pulses, np.full(at[0].size, 1e-7), at[2])[0][4], active)
    np.testing.assert_array_equal(r[where], rows[at])
    for k in range(3):
        for b in range(2):
            np.testing.assert_array_equal(c[k, b][act[k, b]], cols[k, b][active[k, b]])
            np.testing.assert_array_equal(a[k, b][act[k, b]], amps[k, b][active[k, b]])


def test_pulse_list_validates_every_pulse_before_the_first():
    xb = SimulatedCrossbar(8, 8, n_chips=2, preset="asymmetric", seed=5)
    g0 = xb.true_conductance
    ok = dict(steps=[0, 0, 1], chips=[0, 1, 1], rows=[0, 1, 2], cols=[0, 1, 3], amplitude=[1.3, -1.3, 1.3],
              width=1e-7)
    cases = [(dict(amplitude=[1.3, -1.3, 3.5]), LimitError, "exceeds the limit v_max"),
             (dict(amplitude=[1.3, np.nan, 1.3]), LimitError, "not finite"),
             (dict(width=1e-9), LimitError, "pulse width"),
             (dict(rows=[0, 1, 8]), ValueError, "outside the 8x8 array"),
             (dict(cols=[0, -1, 3]), ValueError, "outside the 8x8 array"),
             (dict(chips=[0, 2, 1]), ValueError, "chip 2 is outside the crossbar's 2 chips"),
             (dict(chips=[0, -1, 1]), ValueError, "chip -1 is outside"),
             (dict(steps=[0, -1, 1]), ValueError, r"steps must lie in \[0, 3\)"),
             (dict(steps=[0, 0, 3]), ValueError, r"steps must lie in \[0, 3\)"),
             (dict(rows=[0.0, 1.0, 2.0]), ValueError, "must be integers"),
             (dict(rows=[0, 1]), ValueError, "1-D arrays of one length"),
             (dict(lanes=[0, 1, 64]), ValueError, r"lanes must lie in \[0, 64\)"),
             (dict(lanes=[0, -1, 0]), ValueError, r"lanes must lie in \[0, 64\)"),
             (dict(steps=[0, 1, 0], lanes=[0, 0, 1]), ValueError, "step after step, chip after chip"),
             (dict(chips=[0, 0, 1], lanes=[1, 1, 0]), ValueError, "one pulse per lane")]
    for change, err, msg in cases:
        with pytest.raises(err, match=msg):
            xb.pulse_list(**{**ok, **change})
    np.testing.assert_array_equal(xb.true_conductance, g0)
    assert xb.n_pulse_ops == 0
    assert xb.pulse_list([], [], [], [], 1.3, 1e-7).energy.shape == (0,)
    res = xb.pulse_list(**ok)
    assert xb.n_pulse_ops == 3 and res.energy.shape == (3,) and np.all(res.energy > 0)


@pytest.mark.parametrize("scheme,r_line", [("ground", 2.0), ("ground", 10.0), ("isolate", 10.0)])
def test_line_reads_and_pulse_energies_equal_the_dense_newton_reference(scheme, r_line):
    """On resistive lines with the cubic I-V (tio2-3it devices, no read noise), the chip's reads and
    V/2 pulse energies (each lane solved on the state at the start of the call) equal the dense
    Newton solution of each lane's biasing: on short lines (2 Ω on 6x7: plain chord iteration) and
    on lines long enough for the selected lines' Newton step (10 Ω: FOCUS_MIN_DROP)."""
    from mock_hw.nodal import solve_network
    from mock_hw.sim_chip import FOCUS_MIN_DROP
    p = get_preset("tio2-3it")
    p = p.with_(device=p.device.with_(read_noise=0.0), r_line=r_line)
    xb = SimulatedCrossbar(6, 7, n_chips=2, preset=p, seed=4)
    assert (r_line * 300e-6 * 28 >= FOCUS_MIN_DROP) == (r_line == 10.0)
    d = p.device
    rows, cols = np.array([[0, 3, 5], [2, 4, 1]]), np.array([[6, 1, 2], [0, 3, 5]])
    active = np.array([[True, True, True], [True, False, True]])
    g = xb.true_conductance
    res = xb.read(rows, cols, scheme=scheme, active=active)
    for b, k in zip(*np.nonzero(active)):
        fill = 0.0 if scheme == "ground" else xb.v_read
        row_v, col_v = np.zeros(6), np.full(7, fill)
        row_v[rows[b, k]], col_v[cols[b, k]] = xb.v_read, 0.0
        ref = solve_network(g[b:b + 1], row_v, col_v, d.beta, d.v_ref, r_line=r_line, newton=True)
        np.testing.assert_allclose(res.current[b, k], ref.col_current[0, cols[b, k]], rtol=1e-9)
    amp = np.array([[1.6, -1.8, 2.0], [-2.2, 1.0, 1.4]])
    out = xb.pulse(rows, cols, amp, W, active=active)
    for b, k in zip(*np.nonzero(active)):
        row_v, col_v = np.full(6, amp[b, k] / 2), np.full(7, amp[b, k] / 2)
        row_v[rows[b, k]], col_v[cols[b, k]] = amp[b, k], 0.0
        ref = solve_network(g[b:b + 1], row_v, col_v, d.beta, d.v_ref, r_line=r_line, newton=True)
        np.testing.assert_allclose(out.energy[b, k], (ref.v_cell * ref.i_cell).sum() * W, rtol=1e-6)


def test_relaxed_reads_of_the_active_lanes_only_give_the_whole_batch_readings_bit_for_bit():
    """Grounded reads on relaxed lines (many small chips) are worked on the active lanes only:
    the readings, currents and durations bit for bit those of the whole-batch formula (noise-free
    currents of every lane, NaN where idle) with the read noise of the active lanes drawn in lane
    order chip by chip, and the random stream left where those draws leave it."""
    a, b = (SimulatedCrossbar(8, 8, n_chips=40, seed=3) for _ in range(2))
    rng = np.random.default_rng(4)
    rows = np.array([rng.permutation(8) for _ in range(40)])
    cols = np.array([rng.permutation(8) for _ in range(40)])
    active = rng.random((40, 8)) < 0.3
    assert a._lines.relaxed(a._g)
    got = a.read(rows, cols, active=active)
    assert b._lines.relaxed(b._g)
    current = np.full(active.shape, np.nan)
    current[active] = b._noisy(b._relaxed_reads(rows, cols, b.v_read, active)[active])
    np.testing.assert_array_equal(got.current, current)
    np.testing.assert_array_equal(got.conductance, current / b.v_read)
    np.testing.assert_array_equal(got.duration, np.where(active, b.params.timing.read_s, 0.0))
    assert a.n_read_ops == active.sum()
    np.testing.assert_array_equal(a._rng.standard_normal(4), b._rng.standard_normal(4))


@pytest.mark.parametrize("chunk", [None, 50])
@pytest.mark.parametrize("shape, chips", [((24, 24), 1), ((8, 8), 40)])
def test_resistive_pulse_lanes_compiled_equal_the_lane_by_lane_definition(monkeypatch, shape, chips, chunk):
    """Resistive-line pulses switch their lanes and drift the loud lanes' chips in one compiled pass
    (:func:`mock_hw.device.switch_drift_lanes`): the same conductances, disturb counts, write times and
    random stream, bit for bit, as the numpy path (one switch_steps per run of quiet lanes, each loud
    lane's drift after its run), for quiet lanes, loud ones (2 V RESETs, at disturb_v) and a mix, on
    swept lines (one 24x24 chip) and relaxed ones (a batch of 8x8 chips); with the lanes worked out a
    few at a time too (a chunk of 50 pulses and draws: one lane each, mostly)."""
    import mock_hw.device as device
    import mock_hw.sim_chip as sim_chip

    if chunk is not None:
        monkeypatch.setattr(device, "LANES_CHUNK", chunk)

    used = []

    def run(compiled):
        def gate(pop, d):
            used.append(compiled)
            return compiled and device.lanes_compiled(pop, d)

        monkeypatch.setattr(sim_chip, "lanes_compiled", gate)
        xb = SimulatedCrossbar(*shape, n_chips=chips, seed=3, r_line=0.67)
        rng = np.random.default_rng(7)
        R, C = shape
        L = 4
        for amps in ([-2.0, -2.0, -2.0, -2.0], [1.7, -1.8, 1.9, -1.6], [-2.0, 1.8, -2.0, 1.9], [1.9, 1.9, -2.0, 1.9],
                     [-1.8, -2.0, 1.9, 1.95]):
            rows = np.stack([rng.permutation(R)[:L] for _ in range(chips)])
            cols = np.stack([rng.permutation(C)[:L] for _ in range(chips)])
            active = rng.random((chips, L)) < 0.8
            active[0] = True
            xb.pulse(rows, cols, np.array(amps), rng.choice([1e-6, 1e-4], L), "v/2", active)
        return xb.true_conductance, xb._n_disturb.copy(), xb._t_written.copy(), xb._rng.standard_normal(3)

    fast, plain = run(True), run(False)
    assert used and all(u is False for u in used[used.index(False):]) and used[0] is True
    assert fast[1].max() >= 2             # loud lanes drifted the other devices (their counts grew)
    for a, b in zip(fast, plain):
        np.testing.assert_array_equal(a, b)


def test_switch_drift_lanes_given_the_widths_shift_equals_given_the_widths(monkeypatch):
    """The relaxed pulses hand :func:`mock_hw.device.switch_drift_lanes` their hits' equivalent_shift
    (worked out once per point) instead of the widths: the same states, disturb counts, written
    devices and random stream as given the widths, bit for bit, whole and a chunk at a time."""
    import mock_hw.device as device

    xb = SimulatedCrossbar(8, 8, n_chips=30, seed=2, r_line=0.67)
    pop, d = xb.population, xb.params.device
    rng = np.random.default_rng(5)
    n_lanes, per = 4, 64
    sel = np.concatenate([np.arange(30) * per + rng.integers(0, per, 30) for _ in range(n_lanes)])
    sel_bounds = np.arange(n_lanes + 1) * 30
    flat = np.concatenate([rng.choice(30 * per, 150, replace=False) for _ in range(n_lanes)])   # unique in a lane
    lane_of = np.repeat(np.arange(n_lanes), 150)
    order = np.concatenate([np.flatnonzero(lane_of == q)[np.argsort(flat[lane_of == q], kind="stable")]
                            for q in range(n_lanes)])
    hit_bounds = np.searchsorted(lane_of, np.arange(n_lanes + 1))
    v = rng.choice([-2.0, -1.8, 1.7, 1.9], 600)
    width = rng.choice([1e-6, 1e-4], 600)
    v_sel = np.where(np.arange(sel.size) // 30 == 1, -2.0, 1.8)
    loud_sel = np.abs(v_sel) >= d.disturb_v
    loud = np.array([False, True, False, False])
    for chunk in (None, 50):
        runs = []
        for shift in (None, device.equivalent_shift(width, d)):
            g, n_ev = xb._g.reshape(-1).copy(), xb._n_disturb.reshape(-1).copy()
            touched, r = np.zeros(30, bool), np.random.default_rng(9)
            if chunk is not None:
                monkeypatch.setattr(device, "LANES_CHUNK", chunk)
            written = device.switch_drift_lanes(g, n_ev, flat, v, None if shift is not None else width, order,
                                                hit_bounds, sel, sel_bounds, loud_sel, loud, xb._working_flat(),
                                                per, xb._disturb_table(1), touched, pop, d, r, shift)
            runs.append((g, n_ev, touched, written, r.standard_normal(3)))
        assert runs[0][3].size > 100 and runs[0][2].any()
        for a, b in zip(*runs):
            np.testing.assert_array_equal(a, b)
