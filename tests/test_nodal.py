"""Physics tests for mock_hw.nodal (crossbar nodal analysis)."""
import numpy as np
import pytest

import mock_hw.nodal as nodal
from mock_hw.device import iv_current
from mock_hw.nodal import mvm_currents, read_rows_grounded, solve_network

BETA, VREF = 0.3, 0.2


def rand_g(rng, shape):
    return rng.uniform(20e-6, 500e-6, size=shape)


def floating_case(rng, B=1, R=5, C=4):
    g = rand_g(rng, (B, R, C))
    row_v = rng.uniform(-0.3, 0.4, (B, R))
    col_v = rng.uniform(-0.1, 0.1, (B, C))
    row_v[:, [1, 3]] = np.nan
    col_v[:, 2] = np.nan
    return g, row_v, col_v


def check_node_kcl(sol, row_v, col_v, r):
    """KCL at every row and column node of the ladder network (r_line = r > 0)."""
    vr, vc, i = sol.v_row, sol.v_col, sol.i_cell
    drv_r = np.where(np.isnan(row_v), vr[:, :, 0], row_v)  # floating terminal: no current
    left = np.concatenate([drv_r[:, :, None], vr[:, :, :-1]], axis=2)
    right = np.concatenate([vr[:, :, 1:], vr[:, :, -1:]], axis=2)
    f_row = (left - vr) / r - (vr - right) / r - i  # in from driver side - out - device
    drv_c = np.where(np.isnan(col_v), vc[:, -1, :], col_v)
    below = np.concatenate([vc[:, 1:, :], drv_c[:, None, :]], axis=1)  # towards the terminal
    above = np.concatenate([vc[:, :1, :], vc[:, :-1, :]], axis=1)
    f_col = i + (above - vc) / r - (vc - below) / r
    scale = np.abs(i).max()
    assert np.abs(f_row).max() < 1e-9 * scale
    assert np.abs(f_col).max() < 1e-9 * scale
    # terminal currents agree with the current through the first line segment
    np.testing.assert_allclose(np.where(np.isnan(row_v), 0, (drv_r - vr[:, :, 0]) / r), sol.row_current,
                               rtol=1e-6, atol=1e-9 * scale)
    np.testing.assert_allclose(np.where(np.isnan(col_v), 0, (vc[:, -1, :] - drv_c) / r), sol.col_current,
                               rtol=1e-6, atol=1e-9 * scale)


def test_ideal_all_driven_is_direct():
    rng = np.random.default_rng(1)
    g = rand_g(rng, (2, 4, 3))
    row_v, col_v = rng.uniform(-1, 1, (2, 4)), rng.uniform(-1, 1, (2, 3))
    sol = solve_network(g, row_v, col_v, BETA, VREF)
    v = row_v[:, :, None] - col_v[:, None, :]
    np.testing.assert_array_equal(sol.v_cell, v)
    np.testing.assert_allclose(sol.i_cell, iv_current(g, v, BETA, VREF), rtol=1e-15)
    np.testing.assert_allclose(sol.col_current, sol.i_cell.sum(1), rtol=1e-13)
    np.testing.assert_allclose(sol.row_current, sol.i_cell.sum(2), rtol=1e-13)
    assert sol.iterations == 0


@pytest.mark.parametrize("r_line", [0.0, 3.0])
def test_kcl_at_floating_lines_and_charge_conservation(r_line):
    rng = np.random.default_rng(2)
    g, row_v, col_v = floating_case(rng)
    sol = solve_network(g, row_v, col_v, BETA, VREF, r_line=r_line)
    scale = np.abs(sol.i_cell).max()
    assert scale > 1e-6
    assert np.abs(sol.i_cell[:, [1, 3], :].sum(axis=2)).max() < 1e-10 * scale  # floating rows
    assert np.abs(sol.i_cell[:, :, 2].sum(axis=1)).max() < 1e-10 * scale  # floating column
    assert np.all(sol.row_current[:, [1, 3]] == 0) and np.all(sol.col_current[:, 2] == 0)
    np.testing.assert_allclose(sol.row_current.sum(), sol.col_current.sum(), rtol=1e-9)
    np.testing.assert_allclose(sol.i_cell, iv_current(g, sol.v_cell, BETA, VREF), rtol=1e-14)
    if r_line > 0:
        check_node_kcl(sol, row_v, col_v, r_line)
        ideal = solve_network(g, row_v, col_v, BETA, VREF)
        assert not np.allclose(sol.v_cell, ideal.v_cell, rtol=1e-4)  # the lines matter


@pytest.mark.parametrize("r_line", [0.5, 4.0])
def test_charge_conservation_sparse_path(r_line):
    rng = np.random.default_rng(3)
    g, row_v, col_v = floating_case(rng, B=2, R=12, C=24)  # 576 nodes > DENSE_MAX
    assert 2 * 12 * 24 > nodal.DENSE_MAX
    sol = solve_network(g, row_v, col_v, BETA, VREF, r_line=r_line)
    np.testing.assert_allclose(sol.row_current.sum(1), sol.col_current.sum(1), rtol=1e-9)
    check_node_kcl(sol, row_v, col_v, r_line)


def test_dense_and_sparse_paths_agree(monkeypatch):
    rng = np.random.default_rng(4)
    g, row_v, col_v = floating_case(rng, B=2, R=6, C=5)
    dense = solve_network(g, row_v, col_v, BETA, VREF, r_line=2.0)
    monkeypatch.setattr(nodal, "DENSE_MAX", 0)
    sparse = solve_network(g, row_v, col_v, BETA, VREF, r_line=2.0)
    np.testing.assert_allclose(sparse.v_cell, dense.v_cell, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(sparse.col_current, dense.col_current, rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("r_line", [0.0, 1e-9])
def test_2x2_sneak_path_closed_form(r_line):
    g00, g01, g10, g11 = 100e-6, 300e-6, 50e-6, 200e-6
    g = np.array([[[g00, g01], [g10, g11]]])
    V = 0.2
    sol = solve_network(g, np.array([[V, np.nan]]), np.array([[0.0, np.nan]]), 0.0, VREF, r_line=r_line)
    g_sneak = 1.0 / (1 / g01 + 1 / g11 + 1 / g10)
    np.testing.assert_allclose(sol.col_current[0, 0], V * (g00 + g_sneak), rtol=1e-9)
    np.testing.assert_allclose(sol.row_current[0, 0], V * (g00 + g_sneak), rtol=1e-9)
    i_s = V * g_sneak  # the same current through the three sneak devices (1,1) conducts col -> row
    np.testing.assert_allclose(sol.i_cell[0, [0, 1, 1], [1, 1, 0]], [i_s, -i_s, i_s], rtol=1e-9)
    v_col1 = V - i_s / g01
    np.testing.assert_allclose(sol.v_col[0, 0, 1], v_col1, rtol=1e-9)
    np.testing.assert_allclose(sol.v_row[0, 1, 0], v_col1 - i_s / g11, rtol=1e-9)


def test_2x2_nonlinear_series_chain():
    g = np.array([[[100e-6, 300e-6], [50e-6, 200e-6]]])
    sol = solve_network(g, np.array([[1.0, np.nan]]), np.array([[0.0, np.nan]]), BETA, VREF)
    chain = sol.i_cell[0, [0, 1, 1], [1, 1, 0]] * [1, -1, 1]  # row0 -> col1 -> row1 -> col0
    np.testing.assert_allclose(chain, chain[0], rtol=1e-10)
    np.testing.assert_allclose((sol.v_cell[0, [0, 1, 1], [1, 1, 0]] * [1, -1, 1]).sum(), 1.0, rtol=1e-12)
    # each device's chord conductance lies between g/(1+beta v_ref^2) (at 0 V) and that times
    # (1 + beta * 1 V^2) (each device sees < 1 V), which bounds the chain current
    lo = 1.0 / (1 / 300e-6 + 1 / 200e-6 + 1 / 50e-6) / (1 + BETA * VREF ** 2)
    assert lo < chain[0] < lo * (1 + BETA)


def test_ir_drop_grounded_read():
    rng = np.random.default_rng(5)
    R, C = 8, 8
    g = np.full((1, R, C), 300e-6)
    ideal = read_rows_grounded(g, 0.2, BETA, VREF)
    np.testing.assert_allclose(ideal, iv_current(g, 0.2, BETA, VREF))
    r1 = read_rows_grounded(g, 0.2, BETA, VREF, r_line=1.0)
    r5 = read_rows_grounded(g, 0.2, BETA, VREF, r_line=5.0)
    assert np.all(r1 < ideal) and np.all(r5 < r1)
    d1, d5 = 1 - r1 / ideal, 1 - r5 / ideal
    far, near = (0, C - 1), (R - 1, 0)
    assert d1[0][far] > d1[0][near] and d5[0][far] > d5[0][near]
    assert d5[0][far] > d1[0][far]
    # deficit grows along the row (away from the row driver) and up the column (away from its sense)
    assert np.all(np.diff(d5[0], axis=1) > 0) and np.all(np.diff(d5[0], axis=0) < 0)
    g = rand_g(rng, (2, 5, 6))
    tiny = read_rows_grounded(g, 0.2, BETA, VREF, r_line=1e-9)
    np.testing.assert_allclose(tiny, read_rows_grounded(g, 0.2, BETA, VREF), rtol=1e-9)


def test_tiny_r_line_matches_ideal_with_floating_lines():
    rng = np.random.default_rng(6)
    g, row_v, col_v = floating_case(rng, B=2)
    a = solve_network(g, row_v, col_v, BETA, VREF, r_line=1e-9)
    b = solve_network(g, row_v, col_v, BETA, VREF, r_line=0.0)
    np.testing.assert_allclose(a.v_cell, b.v_cell, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.col_current, b.col_current, rtol=1e-9, atol=1e-15)


def test_mvm_currents():
    rng = np.random.default_rng(7)
    B, N, R, C = 2, 3, 5, 4
    g = rand_g(rng, (B, R, C))
    v = rng.uniform(-0.3, 0.3, (B, N, R))
    out = mvm_currents(g, v, BETA, VREF)
    explicit = np.zeros((B, N, C))
    for b in range(B):
        for n in range(N):
            for j in range(C):
                explicit[b, n, j] = sum(iv_current(g[b, i, j], v[b, n, i], BETA, VREF) for i in range(R))
    np.testing.assert_allclose(out, explicit, rtol=1e-12)
    vp = np.abs(v)
    full, half = mvm_currents(g, vp, BETA, VREF), mvm_currents(g, vp / 2, BETA, VREF)
    assert np.all(half < full / 2)
    np.testing.assert_allclose(mvm_currents(g, vp / 2, 0.0, VREF), mvm_currents(g, vp, 0.0, VREF) / 2)
    lined = mvm_currents(g, vp, BETA, VREF, r_line=2.0)
    assert np.all(lined < full)
    sol = solve_network(g, vp[:, 1], np.zeros((B, C)), BETA, VREF, r_line=2.0)
    np.testing.assert_allclose(lined[:, 1], sol.col_current, rtol=1e-12)
    np.testing.assert_allclose(mvm_currents(g, vp, BETA, VREF, r_line=1e-9), full, rtol=1e-9)


def test_no_return_path_raises():
    g = np.full((1, 3, 3), 1e-4)
    with pytest.raises(ValueError, match="no return path"):
        solve_network(g, np.full((1, 3), np.nan), np.zeros((1, 3)), BETA, VREF)
    with pytest.raises(ValueError, match="column"):
        solve_network(g, np.zeros((1, 3)), np.full((1, 3), np.nan), BETA, VREF, r_line=1.0)


def test_non_convergence_raises():
    rng = np.random.default_rng(8)
    g, row_v, col_v = floating_case(rng)
    with pytest.raises(RuntimeError, match="did not converge"):
        solve_network(g, 4 * row_v, col_v, 1.0, VREF, max_iter=1)


@pytest.mark.parametrize("r_line", [0.0, 1e-9])
def test_isolated_floating_line(r_line):
    g = np.full((1, 3, 3), 1e-4)
    g[0, 1, :] = 0.0  # row 1 touches nothing
    row_v = np.array([[0.2, np.nan, np.nan]])
    sol = solve_network(g, row_v, np.array([[0.0, np.nan, 0.0]]), BETA, VREF, r_line=r_line)
    assert np.all(np.isfinite(sol.v_cell)) and np.all(sol.i_cell[0, 1] == 0)
    assert sol.row_current[0, 1] == 0
    np.testing.assert_allclose(sol.row_current.sum(), sol.col_current.sum(), rtol=1e-9)


@pytest.mark.parametrize("r_line,R,C", [(0.0, 5, 4), (1.5, 5, 4), (1.5, 12, 24)])
def test_batched_equals_separate(r_line, R, C):
    rng = np.random.default_rng(9)
    g, row_v, col_v = floating_case(rng, B=3, R=R, C=C)
    col_v[1, :] = 0.0  # a chip with every column driven
    batch = solve_network(g, row_v, col_v, BETA, VREF, r_line=r_line)
    for b in range(3):
        one = solve_network(g[b:b + 1], row_v[b:b + 1], col_v[b:b + 1], BETA, VREF, r_line=r_line)
        np.testing.assert_allclose(batch.v_cell[b], one.v_cell[0], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(batch.col_current[b], one.col_current[0], rtol=1e-10, atol=1e-16)
        np.testing.assert_allclose(batch.row_current[b], one.row_current[0], rtol=1e-10, atol=1e-16)


# ------------------------------------------------------------------ fast path: kept factorization
def _driven_sets(rng, B, K, R, C, v):
    """K sets of all-driven terminal voltages per chip, up to ``v`` volts (reads to pulses)."""
    return rng.uniform(-v, v, (B, K, R)), rng.uniform(-v, v, (B, K, C))


@pytest.mark.parametrize("r_line,v", [(0.5, 0.2), (3.0, 0.2), (0.5, 2.0), (3.0, 2.0)])
def test_line_solver_equals_dense_newton_reference(r_line, v):
    rng = np.random.default_rng(11)
    B, K, R, C = 2, 3, 6, 7
    g = rand_g(rng, (B, R, C))
    row_v, col_v = _driven_sets(rng, B, K, R, C, v)
    fast = nodal.LineSolver(r_line, BETA, VREF).solve(g, row_v, col_v)
    for k in range(K):
        ref = solve_network(g, row_v[:, k], col_v[:, k], BETA, VREF, r_line=r_line, newton=True)
        assert ref.iterations > 0 and 2 * R * C <= nodal.DENSE_MAX  # the dense Newton reference
        for got, want in ((fast.col_current[:, k], ref.col_current), (fast.row_current[:, k], ref.row_current),
                          (fast.i_cell[:, k], ref.i_cell), (fast.v_cell[:, k], ref.v_cell)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
    # the default solve_network takes the fast path for all-driven terminals, with the same answer
    one = solve_network(g, row_v[:, 0], col_v[:, 0], BETA, VREF, r_line=r_line)
    np.testing.assert_allclose(one.col_current, fast.col_current[:, 0], rtol=1e-12)


def test_a_warm_line_solver_reuses_its_solutions_and_resolves_only_what_changed():
    """A line solver that keeps warm starts: the same conductances again give identical answers
    without a sweep; after one cell of chip 1 changes, the other chips' answers are identical and
    chip 1's are a cold solve's within the tolerance (both within it of the solution)."""
    rng = np.random.default_rng(12)
    B, K, R, C = 3, 4, 5, 6
    g = rand_g(rng, (B, R, C))
    row_v, col_v = _driven_sets(rng, B, K, R, C, 0.3)
    ls = nodal.LineSolver(1.0, BETA, VREF, warm=True)
    first = ls.solve(g, row_v, col_v)
    again = ls.solve(g.copy(), row_v, col_v)
    assert first.iterations > 0 and again.iterations == 0
    for a, b in ((first.col_current, again.col_current), (first.v_cell, again.v_cell)):
        np.testing.assert_array_equal(a, b)
    g2 = g.copy()
    g2[1, 2, 3] *= 1.5  # one cell of chip 1 changes
    changed = ls.solve(g2, row_v, col_v, tol=1e-12)
    fresh = nodal.LineSolver(1.0, BETA, VREF).solve(g2, row_v, col_v, tol=1e-12)
    np.testing.assert_allclose(changed.v_cell, fresh.v_cell, rtol=0, atol=2e-12 * 0.3)
    assert not np.allclose(changed.col_current[1], first.col_current[1], rtol=1e-9)
    np.testing.assert_array_equal(changed.col_current[[0, 2]], first.col_current[[0, 2]])
    # its kept starts carried to another solver give the same answers bit for bit
    other = nodal.LineSolver(1.0, BETA, VREF, warm=True)
    other.restore(ls.kept_state())
    g3 = g2 * 1.01
    np.testing.assert_array_equal(other.solve(g3, row_v, col_v).v_cell, ls.solve(g3, row_v, col_v).v_cell)


def test_access_resistance_adds_in_series_at_the_terminals():
    """One device between one row and one column: the current sees r_line twice (terminal to the
    crosspoint on each line) plus the access resistance at both terminals."""
    g = np.array([[[200e-6]]])
    ls = nodal.LineSolver(5.0, 0.0, VREF, r_access=20.0)
    sol = ls.solve(g, np.full((1, 1, 1), 0.2), np.zeros((1, 1, 1)))
    np.testing.assert_allclose(sol.col_current[0, 0, 0], 0.2 / (1 / 200e-6 + 2 * (5.0 + 20.0)), rtol=1e-12)


def _chord(g, r_line, row_v, col_v, tol=1e-12, r_access=0.0, focus=None):
    """The factorized network's chord iteration (:meth:`LineNetwork.solve_cubic`, the tuner's line
    model) of the operating points ``row_v`` / ``col_v``: a solution with ``v_cell``, currents,
    ``iterations`` and its ``net``."""
    from types import SimpleNamespace
    from programming.line_model import LineNetwork
    net = LineNetwork(g / (1 + BETA * VREF ** 2), r_line, r_access)
    x, it = net.solve_cubic(g, BETA, VREF, row_v, col_v, tol, focus=focus)
    vr, vc = net.split(x)
    row_current, col_current = net.terminal_currents(vr, vc, row_v, col_v)
    return SimpleNamespace(v_row=vr, v_col=vc, v_cell=vr - vc, i_cell=iv_current(g[:, None], vr - vc, BETA, VREF),
                           row_current=row_current, col_current=col_current, iterations=it, net=net)


def _pulse_and_read_sets(rng, B, K, R, C, v, unfocused=True):
    """Per lane a V/2 pulse of ``v`` on a random cell (selected row at v, column at 0, the other lines
    at v/2) except the last lane, a grounded read of a random row at ``v``/10; with the focus lines
    of each (a read's driven row only) and, if ``unfocused``, the first lane of the last chip left
    without focus."""
    rows, cols = rng.integers(0, R, (B, K)), rng.integers(0, C, (B, K))
    b, k = np.indices((B, K))
    row_v, col_v = np.full((B, K, R), v / 2), np.full((B, K, C), v / 2)
    row_v[b, k, rows] = v
    col_v[b, k, cols] = 0.0
    row_v[:, -1], col_v[:, -1] = 0.0, 0.0
    row_v[np.arange(B), -1, rows[:, -1]] = v / 10
    focus_rows, focus_cols = rows.copy(), np.where(k == K - 1, -1, cols)
    if unfocused:
        focus_rows[-1, 0] = focus_cols[-1, 0] = -1
    return row_v, col_v, (focus_rows, focus_cols)


@pytest.mark.parametrize("r_line,r_access,v", [(0.5, 0.0, 2.0), (3.0, 10.0, 2.0), (3.0, 0.0, -2.4), (0.5, 4.0, 0.4)])
def test_focus_lines_solve_equals_dense_newton_reference(r_line, r_access, v):
    """Pulses and reads solved with a Newton step on their selected lines (focus) in every chord
    iteration: the dense Newton reference's answer, and the plain chord iteration's."""
    rng = np.random.default_rng(14)
    B, K, R, C = 2, 4, 6, 7
    g = rand_g(rng, (B, R, C))
    row_v, col_v, focus = _pulse_and_read_sets(rng, B, K, R, C, v)
    fast = _chord(g, r_line, row_v, col_v, r_access=r_access, focus=focus)
    for k in range(K):
        ref = solve_network(g, row_v[:, k], col_v[:, k], BETA, VREF, r_line=r_line, newton=True, r_access=r_access)
        for got, want in ((fast.col_current[:, k], ref.col_current), (fast.row_current[:, k], ref.row_current),
                          (fast.i_cell[:, k], ref.i_cell), (fast.v_cell[:, k], ref.v_cell)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
    plain = _chord(g, r_line, row_v, col_v, r_access=r_access)
    np.testing.assert_allclose(fast.v_cell, plain.v_cell, rtol=1e-9, atol=1e-12 * abs(v))


def test_focus_lines_need_fewer_substitutions_and_leave_a_solution_unchanged():
    """On a 24x24 array with 1 Ω lines, V/2 pulses of 2 V converge in fewer chord iterations with
    their lines in focus (the same tolerance); a Newton step on the lines of the converged
    solution moves no node."""
    rng = np.random.default_rng(15)
    B, K, R, C = 1, 5, 24, 24
    g = rand_g(rng, (B, R, C))
    row_v, col_v, focus = _pulse_and_read_sets(rng, B, K, R, C, 2.0, unfocused=False)
    fast, plain = _chord(g, 1.0, row_v, col_v, tol=1e-7, focus=focus), _chord(g, 1.0, row_v, col_v, tol=1e-7)
    assert fast.iterations < plain.iterations
    np.testing.assert_allclose(fast.v_cell, plain.v_cell, rtol=0, atol=1e-6 * 2.0)
    exact = _chord(g, 1.0, row_v, col_v, tol=1e-14)
    x = np.concatenate([exact.v_row, exact.v_col], axis=2).reshape(B, K, -1)
    moved = exact.net.line_newton(x, g, BETA, VREF, row_v, col_v, *focus) - x
    assert np.abs(moved).max() <= 1e-12 * 2.0


def test_focus_lines_need_every_terminal_driven():
    from programming.line_model import LineNetwork
    rng = np.random.default_rng(16)
    g = rand_g(rng, (1, 3, 3))
    net = LineNetwork(g, 1.0, row_driven=[True, False, True])
    with pytest.raises(ValueError, match="every terminal driven"):
        net.solve_cubic(g, BETA, VREF, np.zeros((1, 1, 3)), np.zeros((1, 1, 3)), focus=(np.zeros((1, 1), int),) * 2)


@pytest.mark.parametrize("R,C,r_access", [(5, 7, 0.0), (7, 5, 10.0), (1, 6, 4.0), (6, 1, 0.0)])
def test_block_factorization_equals_the_sparse_lu(R, C, r_access, monkeypatch):
    """The line network's block factorization (row lines in closed form, column nodes by block
    elimination) gives the sparse LU's node voltages, with every terminal driven and with floating
    ones; above BLOCK_MAX the network keeps the sparse LU."""
    import programming.line_model as line_model
    rng = np.random.default_rng(17)
    B, K = 2, 3
    g = rand_g(rng, (B, R, C))
    rhs = rng.standard_normal((B, K, 2 * R * C)) * 1e-3
    masks = [(None, None), (np.arange(R) == R // 2, np.arange(C) == C - 1)]
    for rd, cd in masks:
        block = line_model.LineNetwork(g, 0.8, r_access, rd, cd)
        with monkeypatch.context() as m:
            m.setattr(line_model, "BLOCK_MAX", B * R * C * C - 1)
            sparse = line_model.LineNetwork(g, 0.8, r_access, rd, cd)
        assert block._blocks is not None and sparse._blocks is None
        want = sparse.solve(rhs)
        np.testing.assert_allclose(block.solve(rhs), want, rtol=0, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("r_access", [0.0, 4.0, 10.0])
def test_line_solver_on_64x64_equals_the_newton_reference(r_access):
    """A V/2 pulse (2 V, with its lines in focus) and a grounded read on a 64×64 chip with the
    default 0.67 Ω lines and β = 0.3: the full Newton solve's currents and cell voltages."""
    rng = np.random.default_rng(18)
    R = C = 64
    g = rand_g(rng, (1, R, C))
    row_v, col_v = np.full((1, 2, R), 1.0), np.full((1, 2, C), 1.0)
    row_v[0, 0, 40], col_v[0, 0, 9] = 2.0, 0.0          # pulse on cell (40, 9)
    row_v[0, 1], col_v[0, 1] = 0.0, 0.0
    row_v[0, 1, 5] = 0.2                                 # grounded read of row 5
    focus = (np.array([[40, 5]]), np.array([[9, -1]]))
    fast = nodal.LineSolver(0.67, BETA, VREF, r_access=r_access).solve(g, row_v, col_v, focus=focus)
    for k in range(2):
        ref = solve_network(g, row_v[:, k], col_v[:, k], BETA, VREF, r_line=0.67, newton=True, r_access=r_access)
        for got, want in ((fast.col_current[:, k], ref.col_current), (fast.v_cell[:, k], ref.v_cell)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("r_line", [0.67, 2.0])
def test_swept_solve_tolerance_bounds_the_error(r_line):
    """Reads and pulses on a 64×64 chip swept to the simulator's tolerances for large arrays, warm
    started from their solutions before a pulse's change (as the simulator solves them), are
    within that tolerance of the Newton reference (the proven bound: cell voltages within tol ×
    the drive); the read currents within 1e-5 relative, a hundredth of the 0.1 % read noise."""
    from mock_hw.sim_chip import FACTORED_PULSE_TOL, FACTORED_READ_TOL
    rng = np.random.default_rng(20)
    R = C = 64
    g = rand_g(rng, (1, R, C))
    ls = nodal.LineSolver(r_line, BETA, VREF, warm=True)
    pulse_r, pulse_c = np.full((1, 1, R), 1.0), np.full((1, 1, C), 1.0)
    pulse_r[0, 0, 50], pulse_c[0, 0, 3] = 2.0, 0.0
    read_r, read_c = np.zeros((1, 1, R)), np.zeros((1, 1, C))
    read_r[0, 0, 5] = 0.2
    cases = ((pulse_r, pulse_c, FACTORED_PULSE_TOL, 2.0), (read_r, read_c, FACTORED_READ_TOL, 0.2))
    for row_v, col_v, tol, _ in cases:
        ls.solve(g, row_v * 0.9, col_v * 0.9, tol=tol)     # the earlier pulse (lower) and read
    g[0, 40, 9] += 10e-6                                # a pulse's change since
    for row_v, col_v, tol, v in cases:
        got = ls.solve(g, row_v, col_v, tol=tol)
        ref = solve_network(g, row_v[:, 0], col_v[:, 0], BETA, VREF, r_line=r_line, newton=True)
        assert np.abs(got.v_cell[:, 0] - ref.v_cell).max() <= tol * v
        if v == 0.2:
            assert np.abs(got.col_current[:, 0] / ref.col_current - 1).max() <= 1e-5


def test_a_warm_read_after_a_small_change_gets_the_change_of_its_reading():
    """A cell changes by 0.05 % (a small pulse) after its row was read: the warm start's node
    voltages are already within the tolerance of the new solution, but its reading misses the
    cell's change; the terminal currents' own bound (``currents``) sweeps on until the reading is
    the Newton reference's within 1e-5 relative.  Without it the reading stays the old one."""
    rng = np.random.default_rng(22)
    R = C = 32
    g = rand_g(rng, (1, R, C))
    row_v, col_v = np.zeros((1, 1, R)), np.zeros((1, 1, C))
    row_v[0, 0, 7] = 0.2
    tol = 1e-5
    got = {}
    for currents in (True, False):
        ls = nodal.LineSolver(0.67, BETA, VREF, warm=True)
        ls.solve(g, row_v, col_v, tol=tol, currents=currents)
        g2 = g.copy()
        g2[0, 7, 11] *= 1.0005
        got[currents] = ls.solve(g2, row_v, col_v, tol=tol, currents=currents).col_current[0, 0, 11]
    ref = solve_network(g2, row_v[:, 0], col_v[:, 0], BETA, VREF, r_line=0.67, newton=True).col_current[0, 11]
    old = solve_network(g, row_v[:, 0], col_v[:, 0], BETA, VREF, r_line=0.67, newton=True).col_current[0, 11]
    assert abs(got[True] / ref - 1) <= 1e-5
    assert abs(got[False] / ref - 1) > 0.5 * abs(old / ref - 1) > 1e-4


def test_each_operating_point_stops_on_its_own_and_leaves_the_substitutions(monkeypatch):
    """A grounded read and a 2 V pulse solved together on a factorized 64×64 network: the read
    converges a substitution before the pulse and leaves the later substitutions (they carry the
    pulse alone); each answer is within the tolerance of the Newton reference, and equal within a
    hundredth of it to the answer it gets solved alone."""
    import programming.line_model as line_model
    rng = np.random.default_rng(21)
    R = C = 64
    g = rand_g(rng, (1, R, C))
    row_v, col_v = np.zeros((1, 2, R)), np.zeros((1, 2, C))
    row_v[0, 0, 5] = 0.2                                # grounded read of row 5
    row_v[0, 1], col_v[0, 1] = 2.0 / 3, 4.0 / 3         # V/3 pulse of 2 V on cell (50, 3)
    row_v[0, 1, 50], col_v[0, 1, 3] = 2.0, 0.0
    focus = (np.array([[5, 50]]), np.array([[-1, 3]]))
    tol = 1e-4
    widths = []
    solve = line_model.block_solve

    def counted(*args, **kw):
        widths.append(args[4].shape[1])
        return solve(*args, **kw)

    monkeypatch.setattr(line_model, "block_solve", counted)
    both = _chord(g, 0.67, row_v, col_v, tol=tol, focus=focus)
    assert widths[0] == 2 and widths[-1] == 1 and len(widths) >= 3      # the read left before the pulse
    for k, v in ((0, 0.2), (1, 2.0)):
        ref = solve_network(g, row_v[:, k], col_v[:, k], BETA, VREF, r_line=0.67, newton=True)
        assert np.abs(both.v_cell[:, k] - ref.v_cell).max() <= tol * v
        alone = _chord(g, 0.67, row_v[:, k:k + 1], col_v[:, k:k + 1], tol=tol, focus=tuple(f[:, k:k + 1] for f in focus))
        assert np.abs(both.v_cell[:, k] - alone.v_cell[:, 0]).max() <= 0.01 * tol * v


def test_line_sweeps_hand_a_network_they_barely_contract_to_the_factorization():
    """A cell of 100 S (a tuner's runaway trial estimate) ties its row and column lines: sweeps
    barely contract, so the point leaves them for the factorized chord iteration (reported as
    ``max_sweeps``) and gets the Newton reference's answer; a normal chip's point stays swept."""
    from programming.line_sweep import sweep_solve
    rng = np.random.default_rng(23)
    R = C = 8
    g = rand_g(rng, (2, R, C))
    g[1, 3, 4] = 100.0
    row_v, col_v = np.zeros((2, R)), np.zeros((2, C))
    row_v[:, 3] = 0.2
    x = np.empty((2, 2, R, C))
    x[:, 0], x[:, 1] = row_v[:, :, None], col_v[:, None, :]
    sweeps = sweep_solve(g, BETA, VREF, 1.0, 0.0, np.arange(2), row_v, col_v, x, 1e-12 * 0.2, max_sweeps=200)
    assert sweeps[0] < 50 and sweeps[1] == 200
    for b in range(2):
        ref = solve_network(g[b:b + 1], row_v[b:b + 1], col_v[b:b + 1], BETA, VREF, r_line=1.0, newton=True)
        np.testing.assert_allclose(x[b, 0] - x[b, 1], ref.v_cell[0], rtol=1e-9, atol=1e-9 * 0.2)


def _newton_x(g, row_v, col_v, r_line, r_access=0.0):
    """The Newton reference's node voltages (P, 2, R, C) of one chip's points ``row_v`` (P, R) / ``col_v`` (P, C)."""
    out = []
    for rv, cv in zip(row_v, col_v):
        ref = solve_network(g, rv[None], cv[None], BETA, VREF, r_line=r_line, newton=True, r_access=r_access)
        out.append(np.stack([ref.v_row[0], ref.v_col[0]]))
    return np.array(out)


@pytest.mark.parametrize("r_line, r_access, g_hi, top", [(0.67, 0.0, 500e-6, 2.0), (2.0, 4.0, 1e-3, 3.0),
                                                         (0.67, 0.0, 3e-3, 3.0)])
def test_the_lines_bound_holds_wherever_it_stops_a_solve(r_line, r_access, g_hi, top):
    """Reads and V/2 pulses on a 24×24 chip, warm started from the solutions before a pulse's change
    (and cold), each stopped at a tolerance from 1e-3 to 1e-7 of its drive with the lines' bound
    (``sharp``): every node voltage within the tolerance of the Newton reference and every terminal
    current (or every column terminal's, ``row_currents`` False) within its current tolerance — on lines
    whose devices couple them weakly (κ ~ 0.1), on
    resistive lines with access resistance and devices up to 1 mS at 3 V, and with devices up to
    3 mS (κ of a half-selected line above 1: the global bound alone)."""
    from programming.line_sweep import sweep_solve
    rng = np.random.default_rng(31)
    R = C = 24
    g = rng.uniform(20e-6, g_hi, (1, R, C))
    rows, cols = rng.integers(0, R, 6), rng.integers(0, C, 6)
    row_v, col_v = np.zeros((12, R)), np.zeros((12, C))
    for k, (i, j) in enumerate(zip(rows, cols)):
        v = rng.uniform(0.5, top)
        row_v[k], col_v[k] = v / 2, v / 2                   # V/2 pulse of cell (i, j)
        row_v[k, i], col_v[k, j] = v, 0.0
        row_v[6 + k, i] = 0.2                               # grounded read of row i
    g_before = g.copy()
    g_before[0, rows, cols] *= rng.uniform(0.9, 1.1, 6)
    warm = _newton_x(g_before, row_v, col_v, r_line, r_access)
    ref = _newton_x(g, row_v, col_v, r_line, r_access)
    g_term = 1.0 / (r_line + r_access)
    chip = np.zeros(12, np.int64)
    scale = np.abs(row_v).max(axis=1)
    for rel in (1e-3, 1e-5, 1e-7):
        for start, rows_i in ((warm, True), (None, True), (warm, False), (None, False)):
            x = warm.copy() if start is not None else np.concatenate(
                [np.broadcast_to(row_v[:, None, :, None], (12, 1, R, C)),
                 np.broadcast_to(col_v[:, None, None, :], (12, 1, R, C))], axis=1).copy()
            tol, i_tol = rel * scale, rel * scale * g.mean()
            sweep_solve(g, BETA, VREF, r_line, r_access, chip, row_v, col_v, x, tol, i_tol, sharp=True,
                        row_currents=rows_i)
            err = np.abs(x - ref).reshape(12, -1).max(axis=1)
            assert (err <= tol).all(), (rel, err / tol)
            i_err = g_term * np.abs(x[:, 1, -1, :] - ref[:, 1, -1, :]).max(axis=1)            # the column terminals
            if rows_i:                                                                         # and the rows'
                i_err = np.maximum(i_err, g_term * np.abs(x[:, 0, :, 0] - ref[:, 0, :, 0]).max(axis=1))
            assert (i_err <= i_tol).all(), (rel, rows_i, i_err / i_tol)


def test_the_lines_bound_on_the_column_currents_stops_warm_64x64_reads_earlier():
    """64×64 grounded reads of eight rows, warm started from their solutions before one cell of each
    row moved by 2 % (the line model's refresh reads after a cell is tuned), to the line model's
    read tolerances on the lines' bound: bounding the column terminals' currents only (its
    readings, ``row_currents`` False) stops them in fewer sweeps than bounding every terminal's,
    every node voltage and reading still within its tolerance of the Newton reference."""
    from programming.ir_correction import MODEL_READ_TOL
    from programming.line_sweep import sweep_solve
    rng = np.random.default_rng(32)
    R = C = 64
    g = rand_g(rng, (1, R, C))
    rows = np.arange(3, R, 8)
    row_v, col_v = np.zeros((rows.size, R)), np.zeros((rows.size, C))
    row_v[np.arange(rows.size), rows] = 0.2
    warm = _newton_x(g, row_v, col_v, 0.67)
    g[0, rows, rng.integers(0, C, rows.size)] *= 1.02
    ref = _newton_x(g, row_v, col_v, 0.67)
    tol, i_tol = MODEL_READ_TOL * 0.2, MODEL_READ_TOL * 0.2 * g.mean()
    chip = np.zeros(rows.size, np.int64)
    sweeps = {}
    for rows_i in (True, False):
        x = warm.copy()
        sweeps[rows_i] = sweep_solve(g, BETA, VREF, 0.67, 0.0, chip, row_v, col_v, x, tol, i_tol, sharp=True,
                                     row_currents=rows_i).sum()
        assert np.abs(x - ref).max() <= tol
        assert np.abs(x[:, 1, -1, :] - ref[:, 1, -1, :]).max() / 0.67 <= i_tol
    assert sweeps[False] < sweeps[True], sweeps


def test_warm_starts_read_and_kept_in_the_kernel_equal_the_numpy_starts(monkeypatch):
    """A warm-start pool of 16 points (its smallest) worked by the sweep kernel itself (starts read
    from it, solutions written into it) gives the same answers and keeps the same state, bit for
    bit, as the same pool filled and kept by numpy around the kernel, over calls that hit, add
    and evict points — a call of more points than the pool holds included (its newest ones are
    not kept: no point starts from a slot another point of the call has overwritten)."""
    import programming.line_sweep as line_sweep
    monkeypatch.setattr(line_sweep, "WARM_BYTES", 1)
    rng = np.random.default_rng(33)
    R, C = 6, 5
    g = rand_g(rng, (2, R, C))
    kernel, numpy_ = line_sweep.WarmStarts((R, C)), line_sweep.WarmStarts((R, C))
    assert kernel.most == 16
    for call in range(8):
        P = (5, 12, 20, 7, 16, 3, 18, 9)[call]
        chip = rng.integers(0, 2, P)
        cells = rng.integers(0, 6, P)               # a few operating points, met again and again
        amp = rng.uniform(0.5, 2.0, P)
        row_v = np.where(np.arange(R)[None] == cells[:, None] % R, amp[:, None], amp[:, None] / 2)
        col_v = np.where(np.arange(C)[None] == cells[:, None] % C, 0.0, amp[:, None] / 2)
        g = g * rng.uniform(0.999, 1.001, g.shape)
        x1, x2 = np.empty((P, 2, R, C)), np.empty((P, 2, R, C))
        line_sweep.sweep_solve(g, BETA, VREF, 1.0, 0.0, chip, row_v, col_v, x1, 1e-9, starts=kernel, sharp=True)
        slots = numpy_.start(x2, chip, row_v, col_v)
        line_sweep.sweep_solve(g, BETA, VREF, 1.0, 0.0, chip, row_v, col_v, x2, 1e-9, sharp=True)
        numpy_.keep(slots, x2)
        np.testing.assert_array_equal(x1, x2)
        a, b = kernel.state(), numpy_.state()
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_warm_start_keys_name_a_point_by_its_chip_and_its_drive_up_to_scale():
    """A V/3 pulse of a cell at another amplitude has the key of its kept start; another cell,
    another chip or another scheme has another key; a point with every terminal at 0 V has none.
    The kept starts' state gives a pool with the same keys, ages and node voltages."""
    from programming.line_sweep import WarmStarts
    R, C = 4, 3

    def v3(i, j, v):
        row_v, col_v = np.full(R, v / 3), np.full(C, 2 * v / 3)
        row_v[i], col_v[j] = v, 0.0
        return row_v, col_v

    pts = [v3(1, 2, 2.0), v3(1, 2, 1.3), v3(2, 2, 2.0), v3(1, 2, 2.0), (np.zeros(R), np.zeros(C)),
           (np.r_[2.0, np.full(R - 1, 1.0)], np.r_[0.0, np.full(C - 1, 1.0)])]
    chip = np.array([0, 0, 0, 1, 0, 0])
    row_v, col_v = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    warm = WarmStarts((R, C))
    keys, _, scale = warm.keys(chip, row_v, col_v)
    assert keys[0] == keys[1] and len({keys[0], keys[2], keys[3], keys[5]}) == 4 and keys[4] == -1
    np.testing.assert_allclose(scale, [2.0, 1.3, 2.0, 2.0, 0.0, 2.0])
    slot_in, ratio, slot_out = warm.assign(chip, row_v, col_v)
    assert (slot_in == -2).all() and slot_out[0] == slot_out[1] >= 0 and slot_out[4] == -1
    x = np.random.default_rng(34).uniform(0, 2, (6, 2, R, C))
    warm.keep(slot_out, x)
    slot_in, ratio, _ = warm.assign(chip[:1], row_v[1:2], col_v[1:2])        # the pulse at 1.3 V again
    assert slot_in[0] == slot_out[0] and ratio[0] == 1.0
    again = WarmStarts.from_state(warm.state())
    for k, v in warm.state().items():
        np.testing.assert_array_equal(again.state()[k], v)
    assert again.assign(chip[:1], row_v[:1], col_v[:1])[0][0] >= 0
    # the patterns of a tuner's points, whose bits are mostly those of 0, 1 and a third: every
    # grounded read of every row on 40 chips and every V/2 and V/3 pulse of every cell of a
    # 16×16 chip have keys of their own (a plain multiply-sum of their bits collided)
    n = 16
    w16 = WarmStarts((n, n))
    reads = np.concatenate([w16.keys(np.full(n, b), 0.2 * np.eye(n), np.zeros((n, n)))[0] for b in range(40)])
    pulses = []
    for f in (0.5, 1 / 3):
        row_v, col_v = np.full((n, n, n), f), np.full((n, n, n), 1 - f if f < 0.5 else f)
        row_v[np.arange(n), :, np.arange(n)] = 1.0                 # cell (i, j): row i at v, column j at 0
        col_v[:, np.arange(n), np.arange(n)] = 0.0
        pulses.append(w16.keys(np.zeros(n * n, np.int64), row_v.reshape(-1, n), col_v.reshape(-1, n))[0])
    assert np.unique(reads).size == 40 * n and np.unique(np.concatenate(pulses)).size == 2 * n * n


def test_a_pulse_of_the_opposite_polarity_starts_from_the_kept_solution_negated():
    """The network is odd (linear lines, odd device I-V): a V/2 pulse of a cell at −V has the key
    of its kept pulse at +V, a negative drive ratio, and on unchanged conductances it stops before
    any sweep on the exact negation of the kept solution; a cold solve agrees within the tolerance."""
    from programming.line_sweep import WarmStarts, sweep_solve
    rng = np.random.default_rng(41)
    R, C = 16, 12
    g = rand_g(rng, (1, R, C))
    row_v, col_v = np.full((1, R), 1.0), np.full((1, C), 1.0)
    row_v[0, 3], col_v[0, 7] = 2.0, 0.0
    warm = WarmStarts((R, C))
    keys, _, scale = warm.keys(np.zeros(2, np.int64), np.r_[row_v, -row_v], np.r_[col_v, -col_v])
    assert keys[0] == keys[1] and scale.tolist() == [2.0, -2.0]
    chip = np.zeros(1, np.int64)
    x_pos, x_neg, x_cold = (np.empty((1, 2, R, C)) for _ in range(3))
    sweep_solve(g, BETA, VREF, 0.67, 0.0, chip, row_v, col_v, x_pos, 1e-9, starts=warm)
    sweeps = sweep_solve(g, BETA, VREF, 0.67, 0.0, chip, -row_v, -col_v, x_neg, 1e-9, starts=warm)
    assert sweeps[0] == 0 and np.array_equal(x_neg, -x_pos)
    x_cold[:, 0], x_cold[:, 1] = -row_v[:, :, None], -col_v[:, None, :]
    sweep_solve(g, BETA, VREF, 0.67, 0.0, chip, -row_v, -col_v, x_cold, 1e-9)
    assert np.abs(x_cold - x_neg).max() <= 2e-9


def test_a_read_start_follows_its_sensed_cells_change_of_conductance():
    """A 64×64 chip's row read again and again while its sensed cell is pulsed between the reads
    (and other cells a little): given the sensed cell (``cells``), each read after the second
    starts from its kept solution plus its last change times the cell's change since over its
    change then, and takes fewer sweeps in all than the plain warm start, to the same proven
    tolerance (the reading within 1e-5 relative of the Newton reference).  The kept starts'
    state, changes included, gives another pool the same answers bit for bit."""
    from mock_hw.sim_chip import FACTORED_READ_TOL
    from programming.line_sweep import WarmStarts, sweep_solve
    rng = np.random.default_rng(42)
    R = C = 64
    gs = [rand_g(rng, (1, R, C))]
    for n in range(6):                  # the sensed cell's pulses, and 20 other cells' small changes
        g = gs[-1].copy()
        g[0, 5, 11] *= 1.0 + 0.03 * (1 + n % 2)
        g[0, rng.integers(0, R, 20), rng.integers(0, C, 20)] *= 1.001
        gs.append(g)
    row_v, col_v = np.zeros((1, R)), np.zeros((1, C))
    row_v[0, 5] = 0.2
    chip, focus = np.zeros(1, np.int64), np.array([5 * C + 11])
    tol, i_tol = FACTORED_READ_TOL * 0.2, FACTORED_READ_TOL * 0.2 * gs[0].mean()

    def read(g, warm, cells):
        x = np.empty((1, 2, R, C))
        sweeps = sweep_solve(g, BETA, VREF, 0.67, 0.0, chip, row_v, col_v, x, tol, i_tol, starts=warm, cells=cells)
        return x, int(sweeps[0])

    total = {}
    for cells in (None, focus):
        warm, total[cells is None] = WarmStarts((R, C)), 0
        for n, g in enumerate(gs):
            if n == 4 and cells is not None:
                mine = read(g, WarmStarts.from_state(warm.state()), cells)[0]
            x, sweeps = read(g, warm, cells)
            total[cells is None] += sweeps
            if n == 4 and cells is not None:
                np.testing.assert_array_equal(x, mine)
            ref = solve_network(g, row_v, col_v, BETA, VREF, r_line=0.67, newton=True).col_current[0, 11]
            assert abs((x[0, 1, -1, 11] - col_v[0, 11]) / 0.67 / ref - 1) <= 1e-5
    assert total[False] < total[True]
