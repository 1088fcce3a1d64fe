"""The relaxed line solver for many small arrays (programming.line_batch) against the references."""
import gc
import tracemalloc

import numpy as np
import pytest

import mock_hw.nodal as nodal
from programming import line_batch
from programming.ir_correction import ReadCorrection
from programming.line_batch import BatchLines, kept_network
from programming.line_model import LineNetwork

BETA, VREF = 0.3, 0.2


@pytest.fixture(autouse=True)
def relax_few_chips(monkeypatch):
    """The tests' small batches take the relaxed path (a run relaxes from BATCH_MIN_CHIPS on)."""
    monkeypatch.setattr(line_batch, "BATCH_MIN_CHIPS", 1)


@pytest.mark.parametrize("r_line,r_access,v", [(0.67, 0.0, 0.2), (0.67, 4.0, 0.2), (2.0, 1.0, 2.0)])
def test_relaxed_solve_equals_the_dense_newton_reference(r_line, r_access, v):
    rng = np.random.default_rng(21)
    B, K, R, C = 3, 4, 5, 6
    g = rng.uniform(10e-6, 600e-6, (B, R, C))
    row_v, col_v = rng.uniform(-v, v, (B, K, R)), rng.uniform(-v, v, (B, K, C))
    ls = nodal.LineSolver(r_line, BETA, VREF, r_access)
    fast = ls.solve(g, row_v, col_v)
    assert isinstance(ls.net, BatchLines) and fast.iterations > 1
    for k in range(K):
        ref = nodal.solve_network(g, row_v[:, k], col_v[:, k], BETA, VREF, r_line=r_line, newton=True,
                                  r_access=r_access)
        for got, want in ((fast.col_current[:, k], ref.col_current), (fast.row_current[:, k], ref.row_current),
                          (fast.i_cell[:, k], ref.i_cell), (fast.v_row[:, k], ref.v_row)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


def test_linear_solves_equal_the_factorization_and_the_read_model_is_unchanged(monkeypatch):
    rng = np.random.default_rng(22)
    g = rng.uniform(10e-6, 600e-6, (4, 8, 8))
    rhs = rng.normal(0.0, 1e-4, (4, 5, 128))
    want = LineNetwork(g, 0.67, 2.0).solve(rhs)
    np.testing.assert_allclose(BatchLines(g, 0.67, 2.0).solve(rhs), want, rtol=0, atol=1e-12 * np.abs(want).max())
    # the tuner's IR-drop model (grounded reads with the devices' curvature, and the adjoint slopes)
    relaxed = ReadCorrection((8, 8), 4, 0.2, 0.67, beta=BETA).model(g)
    assert isinstance(ReadCorrection((8, 8), 4, 0.2, 0.67)._net or kept_network(None, g, 0.67), BatchLines)
    monkeypatch.setattr(line_batch, "RHO_BATCH", -1.0)          # the factorized path
    factorized = ReadCorrection((8, 8), 4, 0.2, 0.67, beta=BETA).model(g)
    # the relaxed model's readings are proven within MODEL_READ_TOL (1e-6) of the chip's mean
    # conductance (relax_rows), its slopes within ~1e-6 relative (the adjoints to ADJOINT_TOL)
    g_mean = g.mean(axis=(1, 2))[:, None, None]
    assert np.all(np.abs(relaxed[0] - factorized[0]) <= 1e-6 * g_mean)
    np.testing.assert_allclose(relaxed[1], factorized[1], rtol=2e-6)


def test_unit_column_currents_solve_as_their_injections_bit_for_bit(monkeypatch):
    """The line model's adjoints (a unit current into a column's node next to its terminal) from
    their device-free node voltages worked out in closed form: the solve of the injections
    themselves, bit for bit, with and without an access path, for any subset of columns; and the
    factorized fallback where the lines relax slowly."""
    rng = np.random.default_rng(24)
    for B, R, C, r_line, r_access in ((40, 8, 8, 0.67, 0.0), (35, 6, 9, 0.5, 0.3), (33, 7, 5, 3.0, 1.0)):
        g = rng.uniform(10e-6, 600e-6, (B, R, C))
        net = BatchLines(g, r_line, r_access)
        for cols in (np.arange(C), np.array([1, 3])):
            unit = np.zeros((B, cols.size, 2, R, C))
            unit[:, np.arange(cols.size), 1, R - 1, cols] = 1.0
            want = net.solve(unit.reshape(B, cols.size, -1), 1e-9)
            assert want[:, :, R * C:].max() > 0       # (a rise on every column node of the unit's column)
            np.testing.assert_array_equal(net.solve_column_units(cols, 1e-9), want)
    monkeypatch.setattr(line_batch, "RHO_SOLVE", -1.0)          # the factorized fallback
    unit = np.zeros((B, 2, 2, R, C))
    unit[:, [0, 1], 1, R - 1, [0, 2]] = 1.0
    np.testing.assert_array_equal(net.solve_column_units(np.array([0, 2]), 1e-9),
                                  net.solve(unit.reshape(B, 2, -1), 1e-9))


def test_the_slow_points_screen_misses_none():
    """BatchLines._slow skips the per-point bound only where no point can exceed RHO_SOLVE: across
    networks from fast to slow, with spans around the edge, the per-point bound then names none."""
    rng = np.random.default_rng(25)
    skipped = named = 0
    for r_line in (0.67, 5.0, 20.0, 60.0):
        net = BatchLines(rng.uniform(10e-6, 600e-6, (40, 8, 8)), r_line)
        chip = rng.integers(0, 40, 200)
        for top in (0.2, 1.0, 2.0, 4.0):
            span = rng.uniform(0.0, top, 200)
            direct = net.rho_lin[chip] * (1.0 + 3.0 * BETA * (1.01 * span) ** 2) > line_batch.RHO_SOLVE
            slow = net._slow(chip, BETA, span)
            if slow is None:
                skipped += 1
                assert not direct.any()
            else:
                named += int(slow.any())
                np.testing.assert_array_equal(slow, direct)
    assert skipped and named        # (both outcomes seen)


def test_each_operating_point_is_solved_on_its_own():
    """A chip's answer does not depend on the other chips or right-hand sides of the call."""
    rng = np.random.default_rng(23)
    g = rng.uniform(10e-6, 600e-6, (5, 8, 8))
    row_v, col_v = rng.uniform(-2, 2, (5, 3, 8)), rng.uniform(-2, 2, (5, 3, 8))
    net = BatchLines(g / (1 + BETA * VREF ** 2), 0.67)
    full, _ = net.solve_cubic(g, BETA, VREF, row_v, col_v, tol=1e-10)
    one = BatchLines(g[2:3] / (1 + BETA * VREF ** 2), 0.67)
    alone, _ = one.solve_cubic(g[2:3], BETA, VREF, row_v[2:3, 1:2], col_v[2:3, 1:2], tol=1e-10)
    np.testing.assert_array_equal(alone[0, 0], full[2, 1])


def test_dispatch_relaxes_small_arrays_and_factorizes_large_ones(monkeypatch):
    g8 = np.full((2, 8, 8), 600e-6)
    g64 = np.full((1, 64, 64), 300e-6)
    assert type(kept_network(None, g8, 0.67)) is BatchLines
    assert type(kept_network(None, g64, 0.67)) is LineNetwork
    monkeypatch.setattr(line_batch, "BATCH_MIN_CHIPS", 32)      # as in a run: a few chips factorize
    assert type(kept_network(None, g8, 0.67)) is LineNetwork
    assert type(kept_network(None, np.full((32, 8, 8), 600e-6), 0.67)) is BatchLines
    # a solve past the relaxation's reach is handed to a factorization, same answer
    rng = np.random.default_rng(24)
    g = rng.uniform(10e-6, 600e-6, (1, 8, 8))
    net = BatchLines(g, 40.0)                 # bound far above RHO_SOLVE
    rhs = rng.normal(0.0, 1e-4, (1, 2, 128))
    np.testing.assert_allclose(net.solve(rhs), LineNetwork(g, 40.0).solve(rhs), rtol=1e-12)


def test_memory_holds_no_per_chip_objects_and_stays_bounded():
    """The network keeps a fixed set of arrays whatever the chip count (no factorization per chip),
    and a solve's peak allocation is its output plus a bounded working chunk."""
    def objects(B):
        net = BatchLines(np.full((B, 8, 8), 300e-6), 0.67)
        return sorted((k, type(v).__name__) for k, v in vars(net).items()), net

    few, _ = objects(2)
    many, net = objects(3000)
    assert few == many and all(t in ("ndarray", "float", "int", "tuple") for _, t in many)
    B, K = 3000, 8
    row_v = np.broadcast_to(np.eye(8) * 0.2, (B, K, 8))
    col_v = np.zeros((B, K, 8))
    gc.collect()
    tracemalloc.start()
    x, _ = net.solve_cubic(np.full((B, 8, 8), 300e-6), BETA, VREF, row_v, col_v, tol=1e-10)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out = x.nbytes                                    # B·K·2·R·C doubles
    # the output, a working chunk, per-point scalars and the conductances' linear and cubic parts
    assert peak < out + 40 * line_batch.CHUNK * 8 + B * K * 8 * 8 + 3 * B * 8 * 8 * 8, (peak, out)


def test_the_read_correction_refreshes_each_chip_on_its_own_count():
    """Finished cells of other chips neither refresh a chip's model nor change it."""
    rng = np.random.default_rng(25)
    g = rng.uniform(50e-6, 500e-6, (2, 6, 6))
    pair = ReadCorrection((6, 6), 2, 0.2, 0.67, refresh_every=2)
    alone = ReadCorrection((6, 6), 1, 0.2, 0.67, refresh_every=2)
    pair.fit(g)
    alone.fit(g[:1])
    fitted = alone.refreshes
    step = rng.uniform(0.98, 1.02, g.shape)
    for k in range(4):
        pair.est, alone.est = pair.est * step, alone.est * step[:1]
        pair.cells_finished(5, np.array([1, 1, 1, 1, 0]))     # chip 1 finishes more cells
        alone.cells_finished(1, np.array([0]))
    assert alone.refreshes == fitted + 2                      # chip 0 twice
    np.testing.assert_array_equal(pair._a[0], alone._a[0])
    np.testing.assert_array_equal(pair._c[0], alone._c[0])
    assert pair.refreshes > alone.refreshes


def test_the_tuner_s_correction_modelled_in_chunks_of_chips_gives_the_same_run(monkeypatch):
    """More chips than MODEL_CHIPS: the read model (and its kept sensitivities) in chunks of chips
    is the whole batch's, bit for bit."""
    from mock_hw.sim_chip import SimulatedCrossbar
    from programming import ir_correction
    from programming.tuner import TunerConfig, tune

    runs = []
    for chunk in (5, 100):
        monkeypatch.setattr(ir_correction, "MODEL_CHIPS", chunk)
        xb = SimulatedCrossbar(6, 6, n_chips=12, seed=3)
        lo, hi = xb.programming_window
        tgt = np.random.default_rng(0).uniform(lo, hi, (12, 6, 6))
        runs.append((tune(xb, tgt, TunerConfig(line_resistance=0.67, device_beta=BETA, passes=2)),
                     xb.true_conductance))
    (a, ga), (b, gb) = runs
    np.testing.assert_array_equal(a.final, b.final)
    np.testing.assert_array_equal(ga, gb)


def test_a_large_batch_is_solved_in_chunks_of_chips_bit_for_bit(monkeypatch):
    """Pulses and reads (grounded, isolating, the full map) of a batch larger than LINE_CHIPS are
    solved chunk by chunk of chips, and the chip ends in the same state with the same readings as
    solved whole: the chunks hold a part of the batch's node voltages, nothing else changes."""
    import mock_hw.sim_chip as sim_chip

    def run(chunk):
        monkeypatch.setattr(sim_chip, "LINE_CHIPS", chunk)
        xb = sim_chip.SimulatedCrossbar(8, 8, n_chips=70, seed=3)
        rng = np.random.default_rng(5)
        out = []
        for _ in range(3):
            rows = np.array([rng.permutation(8) for _ in range(70)])
            cols = np.array([rng.permutation(8) for _ in range(70)])
            act = rng.random((70, 8)) < 0.7
            amp = rng.uniform(1.1, 2.1, (70, 8)) * rng.choice([-1, 1], (70, 8))
            res = xb.pulse(rows, cols, amp, 1e-6, "v/2", active=act)
            out += [res.energy, res.compliance, xb.read(rows, cols, active=act).conductance,
                    xb.read(rows[:, :3], cols[:, :3], scheme="isolate").conductance]
        return out + [xb.read_array(), xb.true_conductance]

    whole, chunked = run(10_000), run(30)
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a, b)


def test_the_joint_fit_stops_each_chip_on_its_own():
    """A chip's fit is the same alone as beside a chip that needs more steps (each chip leaves the
    iteration when its own estimates stop moving)."""
    from programming.line_model import grounded_read_currents

    rng = np.random.default_rng(26)
    g = rng.uniform(50e-6, 500e-6, (2, 8, 8))
    readings = grounded_read_currents(g, 0.2, 0.67) / 0.2
    start = readings.copy()
    start[1] *= 0.3                                        # far from its answer: more steps
    both = ReadCorrection((8, 8), 2, 0.2, 0.67)
    alone = ReadCorrection((8, 8), 1, 0.2, 0.67)
    np.testing.assert_array_equal(both.fit(readings, start=start)[0], alone.fit(readings[:1])[0])
    assert both.fit_steps > alone.fit_steps
    np.testing.assert_allclose(both.est, g, rtol=1e-7)


def test_reads_of_unchanged_chips_reuse_their_rows_bit_for_bit(monkeypatch):
    """Grounded reads on relaxed lines solve only the rows of the chips whose conductances changed
    since the row was last read, and only those chips go through the solve; the others' currents
    are the kept ones, bit for bit what a new solve gives (each operating point is relaxed on its
    own).  A read at another voltage, or a chip changed in any way, solves again."""
    import mock_hw.sim_chip as sim_chip
    B = 6
    xb = sim_chip.SimulatedCrossbar(8, 8, n_chips=B, seed=7)
    rng = np.random.default_rng(8)
    rows = np.array([rng.permutation(8) for _ in range(B)])
    cols = np.array([rng.permutation(8) for _ in range(B)])
    every = np.ones((B, 8), bool)
    first = xb._relaxed_reads(rows, cols, xb.v_read, every)
    solved = []
    read_points = xb._lines.read_points

    def counting(g, chip, row, *args, **kw):
        solved.append((len(chip), sorted(set(chip.tolist()))))          # points (each a driven row), chips
        return read_points(g, chip, row, *args, **kw)
    monkeypatch.setattr(xb._lines, "read_points", counting)
    np.testing.assert_array_equal(xb._relaxed_reads(rows, cols, xb.v_read, every), first)
    assert solved == []                                                # nothing changed: nothing solved
    hit = np.zeros((B, 8), bool)
    hit[[0, 3], 0] = True                                              # one cell of chips 0 and 3
    xb.pulse(rows, cols, np.full((B, 8), 1.4), 1e-6, "v/2", active=hit)
    solved.clear()
    got = xb._relaxed_reads(rows, cols, xb.v_read, every)
    assert solved == [(16, [0, 3])]                 # the 8 rows of the two pulsed chips, alone (one point each)
    assert not np.array_equal(got[[0, 3]], first[[0, 3]])
    np.testing.assert_array_equal(got[[1, 2, 4, 5]], first[[1, 2, 4, 5]])
    xb._rows_kept = None                                               # every row solved anew
    np.testing.assert_array_equal(xb._relaxed_reads(rows, cols, xb.v_read, every), got)
    solved.clear()
    xb._relaxed_reads(rows, cols, 0.5 * xb.v_read, every)
    assert solved == [(B * 8, list(range(B)))]
    # the full map reuses them too, and equals the lanes' reads
    np.testing.assert_array_equal(xb._grounded_rows(xb.v_read)[np.arange(B)[:, None], rows, cols], got)


def test_changed_chips_names_every_chip_with_any_value_changed_and_brings_it_up_to_date():
    """The compiled compare of a batch's conductances with those last seen: every chip with a
    value changed anywhere (its first, last or a middle cell; by the least step; to NaN), in
    ascending order, and only those; their seen values brought to the new ones, the others
    untouched.  Non-contiguous conductances are taken through LineSolver.network."""
    from programming.relax_kernels import changed_chips

    rng = np.random.default_rng(3)
    g = rng.uniform(10e-6, 600e-6, (9, 8, 8))
    seen = g.copy()
    every = np.arange(9)
    assert changed_chips(g, seen, every).size == 0
    new = g.copy()
    new[1, 0, 0] = np.nextafter(new[1, 0, 0], 1.0)
    new[4, 7, 7] *= 1.5
    new[5, 3, 2] = np.nan
    new[8, 2, 6] = 0.0
    before = seen.copy()
    # only the chips named are compared (and brought up to date)
    np.testing.assert_array_equal(changed_chips(new, seen, np.array([0, 4, 7])), [4])
    np.testing.assert_array_equal(seen[[1, 8]], before[[1, 8]])
    seen[4] = before[4]
    np.testing.assert_array_equal(changed_chips(new, seen, every), [1, 4, 5, 8])
    np.testing.assert_array_equal(seen[[1, 4, 8]], new[[1, 4, 8]])
    assert np.isnan(seen[5, 3, 2])
    np.testing.assert_array_equal(seen[[0, 2, 3, 6, 7]], before[[0, 2, 3, 6, 7]])
    ls = nodal.LineSolver(0.67, BETA, VREF)
    ls.network(g)
    wide = np.zeros((9, 8, 16))
    wide[:, :, ::2] = g
    wide[2, 5, 4] *= 2.0                    # (chip 2's cell (5, 2))
    ls.network(wide[:, :, ::2])
    np.testing.assert_array_equal(ls.versions(wide[:, :, ::2], brought=True)[1], [0, 0, 1, 0, 0, 0, 0, 0, 0])


def test_the_simulator_compares_only_the_chips_it_touched_and_misses_none(monkeypatch):
    """A relaxed batch brings its network to the chips' conductances comparing only the chips
    written (pulses, quiet and loud) or drifted since the last time (SimulatedCrossbar._lines_relaxed):
    through a tune, reads and retention waits, every chip whose conductances changed since the
    network last saw them is among those; after a write the simulator does not mark (a new
    conductance array), every chip is compared."""
    import mock_hw.sim_chip as sim_chip
    from programming.tuner import tune
    B = 12
    seen = {"among": 0, "fewer": 0, "all": 0}
    network = nodal.LineSolver.network

    def checked(self, g, among=None):
        if type(self.net) is BatchLines and self._seen is not None and self._seen.shape == np.shape(g):
            changed = np.flatnonzero((np.asarray(g) != self._seen).reshape(len(g), -1).any(axis=1))
            if among is None:
                seen["all"] += 1
            else:
                assert np.isin(changed, among).all(), (changed, among)
                seen["among"] += 1
                seen["fewer"] += among.size < B
        return network(self, g, among)
    monkeypatch.setattr(nodal.LineSolver, "network", checked)
    xb = sim_chip.SimulatedCrossbar(8, 8, n_chips=B, seed=4)
    targets = np.random.default_rng(5).uniform(100e-6, 500e-6, (B, 8, 8))
    tune(xb, targets)
    assert seen["among"] > 50 and seen["fewer"] > 10
    xb.wait(1e3)                            # retention: a new conductance array
    xb.set_conductances(np.full((B, 8, 8), 200e-6))
    before = seen["all"]
    xb.read(np.zeros((B, 1), np.intp), np.zeros((B, 1), np.intp), active=np.ones((B, 1), bool))
    assert seen["all"] == before + 1
    tune(xb, targets[::-1])
    assert seen["among"] > 100
    # a loud pulse on a stuck device: nothing written, the other devices of its chip drift
    b, r, c = np.argwhere(xb.stuck_mask)[0]
    rows, cols, on = np.full((B, 1), r), np.full((B, 1), c), np.zeros((B, 1), bool)
    on[b] = True
    g0 = xb.true_conductance
    xb.pulse(rows, cols, np.full((B, 1), -2.2), 1e-6, "v/3", active=on)    # (V/3: no half-select switching)
    drifted = np.flatnonzero((xb.true_conductance != g0).reshape(B, -1).any(axis=1))
    assert drifted.tolist() == [b]
    before = seen["among"]
    xb.read(rows, cols, active=on)
    assert seen["among"] == before + 1


def test_relaxed_pulses_and_reads_solve_each_busy_lane_on_its_own_bit_for_bit(monkeypatch):
    """Pulses and reads on relaxed lines solve one operating point per busy lane (the lanes idle
    on a chip cost nothing); the chip ends in the same state, with the same energies and readings,
    bit for bit, when every point is solved alone (LINE_POINTS = 1) as when they are solved
    together."""
    import mock_hw.sim_chip as sim_chip
    B = 6

    def run():
        xb = sim_chip.SimulatedCrossbar(8, 8, n_chips=B, seed=9)
        assert xb._lines.relaxed(xb._g)
        rng = np.random.default_rng(10)
        out = []
        for step in range(4):
            rows = np.array([rng.permutation(8) for _ in range(B)])
            cols = np.array([rng.permutation(8) for _ in range(B)])
            act = np.zeros((B, 8), bool)
            act[[1, 4] if step % 2 else [0, 2, 5]] = rng.random(8) < 0.6
            amp = rng.uniform(1.1, 2.1, (B, 8)) * rng.choice([-1, 1], (B, 8))
            res = xb.pulse(rows, cols, amp, 1e-6, "v/2", active=act)
            out += [res.energy, xb.read(rows, cols, active=act[::-1]).conductance, xb.true_conductance]
        return out + [xb.read_array(), np.array(xb.max_unselected_v)]

    together = run()
    with monkeypatch.context() as m:
        m.setattr(sim_chip, "LINE_POINTS", 1)
        alone = run()
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)
    # a read's points equal the same lanes solved as every chip's operating points (idle ones at 0 V)
    xb = sim_chip.SimulatedCrossbar(8, 8, n_chips=B, seed=9)
    rng = np.random.default_rng(11)
    rows = np.array([rng.permutation(8) for _ in range(B)])
    cols = np.array([rng.permutation(8) for _ in range(B)])
    act = rng.random((B, 8)) < 0.4
    got = xb._relaxed_reads(rows, cols, xb.v_read, act)
    row_v = np.zeros((B, 8, 8))
    row_v[np.arange(B)[:, None], np.arange(8), rows] = np.where(act, xb.v_read, 0.0)
    dense = xb._relaxed_chips_solve(np.arange(B), row_v, np.zeros((B, 8, 8)), 1e-14,
                                    lambda sol, idx: (sol.col_current,))[0]
    want = np.where(act, np.take_along_axis(dense, cols[:, :, None], 2)[:, :, 0], 0.0)
    bound = sim_chip.RELAXED_READ_TOL * xb.v_read * xb._lines.network(xb._g)._g.mean(axis=(1, 2))
    assert np.all(np.abs(got - want) <= bound[:, None]) and np.all(got[~act] == 0.0)


def test_relaxed_pulses_stay_within_their_stated_error_bound(monkeypatch):
    """On relaxed lines pulses stop at RELAXED_TOL[PULSE_TOL] (looser than the factorized path's
    PULSE_TOL): every cell voltage of a pulse is within that tolerance times its drive of a solve to
    1e-14, and the chip's pulse path solves to it (reads to RELAXED_READ_TOL)."""
    import mock_hw.sim_chip as sim_chip
    B = 40
    xb = sim_chip.SimulatedCrossbar(8, 8, n_chips=B, seed=11)
    rng = np.random.default_rng(12)
    xb.set_conductances(rng.uniform(10e-6, 600e-6, (B, 8, 8)))
    g = xb.true_conductance
    amp = rng.uniform(1.0, 2.0, (B, 1))
    row_v, col_v = np.repeat(amp[:, :, None] / 2, 8, 2), np.repeat(amp[:, :, None] / 2, 8, 2)
    row_v[:, 0, 2], col_v[:, 0, 6] = amp[:, 0], 0.0
    tol = sim_chip.RELAXED_TOL[sim_chip.PULSE_TOL]
    assert tol > sim_chip.PULSE_TOL and sim_chip.READ_TOL not in sim_chip.RELAXED_TOL
    sol = {t: xb._lines.solve(g, row_v, col_v, tol=t) for t in (tol, 1e-14)}
    err = np.abs(sol[tol].v_cell - sol[1e-14].v_cell).max(axis=(1, 2, 3))
    assert np.all(err <= tol * amp[:, 0]) and err.max() > 0
    tols = []
    for name in ("pulse_points", "read_points"):
        def spy(*args, _f=getattr(xb._lines, name)):
            tols.append(args[-1])                               # the tolerance, last
            return _f(*args)
        monkeypatch.setattr(xb._lines, name, spy)
    xb.pulse(np.zeros((B, 1), int) + 2, np.zeros((B, 1), int) + 6, amp, 1e-6, "v/2")
    xb.read(np.zeros((B, 1), int), np.zeros((B, 1), int))
    assert tols == [tol, sim_chip.RELAXED_READ_TOL]


def test_relaxed_reads_stay_within_their_stated_error_bound():
    """Grounded reads on relaxed lines stop on a proven bound of their readings (RELAXED_READ_TOL
    times the read voltage times the chip's mean linear conductance, the swept path's
    FACTORED_READ_TOL): every reading is within it of a solve to 1e-14, at 0.67 Ω and at 1 Ω, with
    and without the devices' cubic term, on every row of every chip (each read from its row's own
    network: the row's place sets its column paths); that bound is at most a fifth of the 0.1 %
    read noise of a cell at the programming window's bottom (the lowest target); and the
    tolerance is used (the readings differ from the strict ones)."""
    import mock_hw.sim_chip as sim_chip
    B = 200
    rng = np.random.default_rng(22)
    g0 = rng.uniform(10e-6, 600e-6, (B, 8, 8))
    g0[:20] = rng.uniform(450e-6, 600e-6, (20, 8, 8))                  # chips of high conductance
    from mock_hw.presets import DEFAULT_PRESET, get_preset
    base = get_preset(DEFAULT_PRESET)
    for r_line, beta in ((None, None), (1.0, None), (0.67, 0.0)):
        params = base if beta is None else base.with_(device=base.device.with_(beta=beta))
        xb = sim_chip.SimulatedCrossbar(8, 8, n_chips=B, seed=21, preset=params, r_line=r_line)
        xb.set_conductances(g0)
        g = xb.true_conductance
        assert xb._lines.relaxed(g)
        pc, pr = np.divmod(np.arange(B * 8), 8)
        v = xb.v_read
        tol = sim_chip.RELAXED_READ_TOL
        g_mean = xb._lines.network(g)._g.mean(axis=(1, 2))
        assert tol * g_mean.max() <= 0.2 * xb.params.device.read_noise * xb.params.programming_window[0] * 2.5
        cur = xb._lines.read_points(g, pc, pr, v, tol)
        strict = xb._lines.solve(g, np.broadcast_to(np.eye(8) * v, (B, 8, 8)), np.zeros((B, 8, 8)),
                                 tol=1e-14).col_current
        err = np.abs(cur - strict.reshape(B * 8, 8))
        assert np.all(err <= tol * v * g_mean[pc, None]) and err.max() > 1e-4 * tol * v * g_mean.min()


def test_relaxed_reads_are_each_their_own_in_any_batch():
    """A relaxed read's answer depends only on its chip, row and voltage: the same reads in
    another order, alone, or among others (lanes filled or idle) give the same readings bit for
    bit; a read at 0 V reads 0."""
    from programming.line_batch import BatchLines
    rng = np.random.default_rng(5)
    B, R, C = 9, 8, 8
    g = rng.uniform(10e-6, 600e-6, (B, R, C))
    net = BatchLines(g, 0.67)
    P = 37
    chip, row = rng.integers(0, B, P), rng.integers(0, R, P)
    whole = net.read_points(g, 0.3, 0.2, chip, row, 0.2, 1e-5)
    order = rng.permutation(P)
    np.testing.assert_array_equal(net.read_points(g, 0.3, 0.2, chip[order], row[order], 0.2, 1e-5), whole[order])
    for p in (0, 5, 36):
        alone = net.read_points(g, 0.3, 0.2, chip[p:p + 1], row[p:p + 1], 0.2, 1e-5)
        np.testing.assert_array_equal(alone, whole[p:p + 1])
    assert np.all(net.read_points(g, 0.3, 0.2, chip, row, 0.0, 1e-5) == 0.0)


def test_relaxed_pulses_switch_as_a_strict_solve_far_within_the_cycle_noise(monkeypatch):
    """Pulses on relaxed lines solved to RELAXED_TOL[PULSE_TOL] (1e-4 of the drive) move the devices
    as pulses solved to 1e-12 do, with the same random draws, to well under 1 % of each move
    (the cycle-to-cycle noise is 30 %): the solve's error is invisible to the switching."""
    import mock_hw.sim_chip as sim_chip
    B = 48
    rng = np.random.default_rng(33)
    g0 = rng.uniform(10e-6, 600e-6, (B, 8, 8))
    rows = np.array([rng.permutation(8) for _ in range(B)])
    cols = np.array([rng.permutation(8) for _ in range(B)])
    amp = rng.uniform(1.2, 2.0, (B, 8)) * rng.choice([-1, 1], (B, 8))

    def moves(tol):
        with monkeypatch.context() as m:
            m.setattr(sim_chip, "RELAXED_TOL", {sim_chip.PULSE_TOL: tol})
            xb = sim_chip.SimulatedCrossbar(8, 8, n_chips=B, seed=34)
            xb.set_conductances(g0)
            assert xb._lines.relaxed(xb._g)
            before = xb.true_conductance
            xb.pulse(rows, cols, amp, 1e-6, "v/2")
            return xb.true_conductance - before

    loose, strict = moves(1e-4), moves(1e-12)
    moved = np.abs(strict) > 1e-9
    assert moved.sum() >= B * 4
    assert np.array_equal(np.abs(loose) > 1e-9, moved)
    np.testing.assert_allclose(loose[moved], strict[moved], rtol=1e-2)


def test_fused_pulse_and_read_kernels_equal_the_node_voltage_solve(monkeypatch):
    """A relaxed pulse's power, threshold hits and largest unselected cell voltage from the fused
    kernel are those worked out from the same points' node voltages (the relaxed solve, itself
    tested against the dense Newton reference above): hits and voltages bit for bit, power to
    rounding; a read's column currents bit for bit.  Points whose bound is above RHO_SOLVE go to the
    factorized network and give the same answers to the tolerance."""
    from mock_hw.device import DeviceParams, equivalent_shift, equivalent_voltage, iv_current

    rng = np.random.default_rng(41)
    B, R, C, P = 7, 6, 5, 40
    g = rng.uniform(10e-6, 600e-6, (B, R, C))
    chip, sel_r, sel_c = rng.integers(0, B, P), rng.integers(0, R, P), rng.integers(0, C, P)
    v = rng.uniform(0.8, 2.4, P) * rng.choice([-1, 1], P)
    v[3] = 0.0                                                         # an idle point
    width = rng.choice([1e-7, 1e-6, 1e-5], P)
    d = DeviceParams()
    vth = (rng.normal(1.0, 0.15, (B, R, C)), rng.normal(1.0, 0.15, (B, R, C)))
    fracs = (1 / 3, 2 / 3)
    ls = nodal.LineSolver(0.67, BETA, VREF)
    assert ls.relaxed(g)
    row_v = np.repeat((v * fracs[0])[:, None], R, 1)
    col_v = np.repeat((v * fracs[1])[:, None], C, 1)
    row_v[np.arange(P), sel_r], col_v[np.arange(P), sel_c] = v, 0.0
    sol = ls.solve(g, row_v[:, None], col_v[:, None], tol=1e-4, chips=chip, checked=True)
    v_cell = sol.v_cell[:, 0]
    v_eq = equivalent_voltage(v_cell, width[:, None, None], d)
    hit = (v_eq > vth[0][chip]) | (-v_eq > vth[1][chip])
    q, i, j = np.nonzero(hit)
    mag = np.abs(v_cell)
    mag[np.arange(P), sel_r, sel_c] = 0.0
    power, hp, hf, hv, top = ls.pulse_points(g, chip, sel_r, sel_c, v, fracs, equivalent_shift(width, d), vth, 1e-4)
    assert q.size > P // 2 and top == mag.max()
    np.testing.assert_array_equal(hp, q)
    np.testing.assert_array_equal(hf, i * C + j)
    np.testing.assert_array_equal(hv, v_cell[q, i, j])
    np.testing.assert_allclose(power, (v_cell * iv_current(g[chip], v_cell, BETA, VREF)).sum(axis=(1, 2)), rtol=1e-13)
    assert power[3] == 0.0
    # reads: the column currents of the same rows solved as node voltages
    rows = rng.integers(0, R, P)
    rv = np.zeros((P, 1, R))
    rv[np.arange(P), 0, rows] = 0.2
    want = ls.solve(g, rv, np.zeros((P, 1, C)), tol=1e-14, chips=chip, checked=True).col_current[:, 0]
    g_mean = ls.network(g)._g.mean(axis=(1, 2))[chip][:, None]      # (a reading's bound: tol·V·ḡ)
    got = ls.read_points(g, chip, rows, 0.2, 1e-10)
    assert np.all(np.abs(got - want) <= 1e-10 * 0.2 * g_mean) and not np.array_equal(got, want)
    # every point past RHO_SOLVE: the factorized network's answers, within the tolerances
    monkeypatch.setattr(line_batch, "RHO_SOLVE", -1.0)
    f_power, f_hp, f_hf, f_hv, f_top = ls.pulse_points(g, chip, sel_r, sel_c, v, fracs, equivalent_shift(width, d),
                                                       vth, 1e-12)
    np.testing.assert_array_equal(f_hp, q)
    np.testing.assert_allclose(f_hv, hv, rtol=0, atol=1e-4 * 2.4)
    np.testing.assert_allclose(f_power, power, rtol=1e-3)
    # (the factorized reads' node tolerance bounds their readings as much)
    assert np.all(np.abs(ls.read_points(g, chip, rows, 0.2, 1e-10) - want) <= 1e-10 * 0.2 * g_mean)


@pytest.mark.parametrize("r_line, beta", [(0.67, 0.3), (1.0, 0.3), (0.67, 0.0)])
def test_the_line_models_row_reads_stay_within_their_stated_bounds(r_line, beta):
    """The line model's grounded reads of every row (BatchLines.read_rows: each from its row's own
    network, stopped on a proven bound of its node voltages and of its readings) are within
    ``tol`` of the read voltage at every node and within ``i_tol`` at every column's current of a
    solve to 1e-14, on random chips with and without the devices' cubic term, for loose and tight
    tolerances; the readings bound is used (the readings differ from the strict ones), and each
    chip's reads are the same bit for bit alone as in the batch."""
    B, R, C = 40, 8, 8
    rng = np.random.default_rng(31)
    g = rng.uniform(5e-6, 400e-6, (B, R, C))
    norm = 1.0 + beta * 0.2 ** 2
    net = BatchLines(g / norm, r_line)
    assert net.relaxes()
    row_v = np.broadcast_to(np.eye(R) * 0.2, (B, R, R))
    col_v = np.zeros((B, R, C))
    strict = net.solve_cubic(g, beta, 0.2, row_v, col_v, tol=1e-14)[0]
    strict_reads = net.terminal_currents(*net.split(strict), row_v, col_v)[1]
    for tol, rel in ((1e-6, 1e-5), (1e-6, 1e-6), (1e-9, 1e-8)):
        i_tol = rel * 0.2 * g.mean(axis=(1, 2))
        x, reads = net.read_rows(g, beta, 0.2, 0.2, tol, i_tol)
        assert np.abs(x - strict).max() <= tol * 0.2
        err = np.abs(reads - strict_reads)
        assert np.all(err <= i_tol[:, None, None]) and err.max() > 1e-4 * i_tol.min()
        for b in (0, 17):
            alone = net.chips(slice(b, b + 1)).read_rows(g[b:b + 1], beta, 0.2, 0.2, tol, i_tol[b:b + 1])
            np.testing.assert_array_equal(alone[0], x[b:b + 1])
            np.testing.assert_array_equal(alone[1], reads[b:b + 1])


@pytest.mark.parametrize("r_line, r_access", [(0.67, 0.0), (1.0, 0.5)])
def test_every_columns_unit_solve_from_its_columns_own_network_stays_within_its_bound(r_line, r_access):
    """The line model's adjoints (BatchLines.column_units: a unit current into every column's node
    next to its terminal, each relaxed from the network in which only that column's devices carry
    current) are within ``tol`` of the 1/g_term that current raises its column by, at every node,
    of a solve to 1e-14, for loose and tight tolerances (the bound used); each chip's are the same
    bit for bit alone as in the batch."""
    B, R, C = 40, 8, 8
    rng = np.random.default_rng(32)
    g = rng.uniform(5e-6, 400e-6, (B, R, C))
    net = BatchLines(g, r_line, r_access)
    assert net.relaxes()
    strict = net.solve_column_units(np.arange(C), 1e-14)
    r_t = r_line + r_access
    for tol in (1e-5, 1e-6, 1e-9):
        x = net.column_units(tol)
        err = np.abs(x - strict)
        assert err.max() <= tol * r_t and err.max() > 1e-4 * tol * r_t
        out = np.empty_like(x)
        assert np.shares_memory(net.column_units(tol, out=out), out)       # written in place
        np.testing.assert_array_equal(out, x)
        for b in (0, 23):
            np.testing.assert_array_equal(net.chips(slice(b, b + 1)).column_units(tol), x[b:b + 1])
