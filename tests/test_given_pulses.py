"""What the compiled pass keeps of pulses whose node voltages are given (a swept solve's: the
simulated chip's large arrays) against the definition worked cell by cell in Python: each pulse's
power summed in cell order, its devices beyond a threshold in cell order and the largest |voltage|
of an unselected cell, to the last bit, through both entries (``given_pulses``, C-contiguous
arrays; ``relax_pulses`` with the voltages given, any layout)."""
import numpy as np

from programming.relax_kernels import given_pulses, relax_pulses

BETA, V_REF = 0.3, 0.2


def _reference(g, chip, sel_r, sel_c, norm, shift, vth_set, vth_reset, given):
    """Power (P,), hits [(pulse, flat, voltage)] and top, one cell at a time in Python floats."""
    P, _, R, C = given.shape
    power, hits, top = [], [], 0.0
    for p in range(P):
        c, e = chip[p], 0.0
        for i in range(R):
            for j in range(C):
                x = float(given[p, 0, i, j]) - float(given[p, 1, i, j])
                e += x * (float(g[c, i, j]) * x * ((1.0 + BETA * x * x) / norm))
                if (i, j) != (sel_r[p], sel_c[p]):
                    top = max(top, abs(x))
                m = max(abs(x) + float(shift[p]), 0.0)
                if (x > 0.0 and m > vth_set[c, i, j]) or (x < 0.0 and m > vth_reset[c, i, j]):
                    hits.append((p, i * C + j, x))
        power.append(e)
    return power, hits, top


def _case(seed):
    """Pulses of 1.4-2.1 V (V/3) on 2 chips of 9x11 with the lines' drop added to every node."""
    rng = np.random.default_rng(seed)
    B, R, C, P = 2, 9, 11, 7
    g = rng.uniform(10e-6, 600e-6, (B, R, C))
    chip = rng.integers(0, B, P).astype(np.int64)
    sel_r, sel_c = rng.integers(0, R, P).astype(np.int64), rng.integers(0, C, P).astype(np.int64)
    v = rng.uniform(1.4, 2.1, P) * rng.choice([-1.0, 1.0], P)
    given = np.empty((P, 2, R, C))
    given[:, 0] = (v / 3)[:, None, None]
    given[:, 1] = (2 * v / 3)[:, None, None]
    given[np.arange(P), 0, sel_r, :] = v[:, None]
    given[np.arange(P), 1, :, sel_c] = 0.0
    given += rng.normal(0.0, 0.02, given.shape)
    vth_set, vth_reset = rng.uniform(0.6, 1.4, (B, R, C)), rng.uniform(0.6, 1.4, (B, R, C))
    shift = rng.uniform(-0.05, 0.1, P)
    return g, chip, sel_r, sel_c, 1.0 + BETA * V_REF ** 2, shift, vth_set, vth_reset, given


def test_given_pulses_keep_what_one_cell_at_a_time_keeps_bit_for_bit():
    for seed in range(4):
        g, chip, sel_r, sel_c, norm, shift, vth_set, vth_reset, given = _case(seed)
        power, hits, top = _reference(g, chip, sel_r, sel_c, norm, shift, vth_set, vth_reset, given)
        assert hits and any(p for p, _, _ in hits)      # devices beyond a threshold, on several pulses
        P, n = given.shape[0], given[0].size
        e, hp, hf, hv = np.empty(P), np.empty(P * n, np.int64), np.empty(P * n, np.int64), np.empty(P * n)
        k, t = given_pulses(g, chip, sel_r, sel_c, norm, shift, vth_set, vth_reset, BETA, given, e, hp, hf, hv)
        assert e.tolist() == power and t == top
        assert list(zip(hp[:k].tolist(), hf[:k].tolist(), hv[:k].tolist())) == hits
        # the relaxed pulses' entry with the voltages given (any layout: a strided view here)
        e2, hp2, hf2, hv2 = np.empty(P), np.empty(P * n, np.int64), np.empty(P * n, np.int64), np.empty(P * n)
        wide = np.zeros(given.shape[:3] + (2 * given.shape[3],))
        wide[..., ::2] = given
        _, status, _, k2, t2 = relax_pulses(g, g / norm, norm, chip, sel_r, sel_c, np.zeros(P), 0.0, 0.0, shift,
                                            vth_set, vth_reset, BETA, np.zeros(g.shape[0]), 0.0, 1.0, 1.0, 0,
                                            wide[..., ::2], e2, hp2, hf2, hv2)
        assert status == 0 and k2 == k and t2 == t
        assert e2.tolist() == power
        assert list(zip(hp2[:k2].tolist(), hf2[:k2].tolist(), hv2[:k2].tolist())) == hits


def test_relaxed_pulses_keep_what_their_node_voltages_give_bit_for_bit(monkeypatch):
    """The relaxed pulses' pass (each chip's lowest threshold screening the cells whose own two
    thresholds are tested) keeps what the definition keeps of the same node voltages (a relaxed
    solve's, the same bits): devices beyond a threshold and the largest unselected |voltage| bit
    for bit, and the power to rounding (the relaxed pass sums every lane's devices' power across
    the lanes at once, from the relaxation's own currents: the same sum, rounded otherwise).  Chips whose lowest threshold is far below the drive (hits in every row), ordinary,
    with thresholds that are not numbers, or out of reach; V/2 and V/3, idle points, and enough
    pulses that the lanes finish out of order."""
    import mock_hw.nodal as nodal
    from programming import line_batch

    monkeypatch.setattr(line_batch, "BATCH_MIN_CHIPS", 1)
    rng = np.random.default_rng(5)
    B, R, C, P = 5, 6, 7, 90
    g = rng.uniform(10e-6, 600e-6, (B, R, C))
    vth_set, vth_reset = rng.uniform(0.7, 1.3, (B, R, C)), rng.uniform(0.7, 1.3, (B, R, C))
    vth_set[0], vth_reset[0] = rng.uniform(0.05, 0.3, (R, C)), rng.uniform(0.05, 0.3, (R, C))  # every row hits
    vth_set[2, 1, :3], vth_reset[2, 4, 2:], vth_set[2, -1, -1], vth_reset[2, -1, -1] = np.nan, np.nan, np.nan, np.nan
    vth_set[3], vth_reset[3] = np.inf, np.inf
    vth_reset[4, 2, 3] = 0.45                                 # one low threshold: half-selected cells tested
    chip = np.sort(rng.integers(0, B, P))
    sel_r, sel_c = rng.integers(0, R, P), rng.integers(0, C, P)
    v = rng.uniform(0.8, 2.2, P) * rng.choice([-1.0, 1.0], P)
    v[[7, 40, 41]] = 0.0                                       # idle points
    shift = rng.uniform(-0.05, 0.1, P)
    ls = nodal.LineSolver(0.67, BETA, V_REF)
    assert ls.relaxed(g)
    seen_hit_rows = set()
    for fracs in ((0.5, 0.5), (1 / 3, 2 / 3)):
        power, hp, hf, hv, top = ls.pulse_points(g, chip, sel_r, sel_c, v, fracs, shift, (vth_set, vth_reset), 1e-4)
        row_v = np.repeat((v * fracs[0])[:, None], R, 1)
        col_v = np.repeat((v * fracs[1])[:, None], C, 1)
        row_v[np.arange(P), sel_r], col_v[np.arange(P), sel_c] = v, 0.0
        sol = ls.solve(g, row_v[:, None], col_v[:, None], tol=1e-4, chips=chip, checked=True)
        given = np.ascontiguousarray(np.stack([sol.v_row[:, 0], sol.v_col[:, 0]], axis=1))
        n = R * C
        e, hp2, hf2, hv2 = np.empty(P), np.empty(P * n, np.int64), np.empty(P * n, np.int64), np.empty(P * n)
        k, t = given_pulses(g, chip, sel_r, sel_c, 1.0 + BETA * V_REF ** 2, shift, vth_set, vth_reset, BETA, given,
                            e, hp2, hf2, hv2)
        assert top == t and not np.array_equal(power, 0.0 * power)
        np.testing.assert_allclose(power, e, rtol=1e-13, atol=0.0)
        assert (hp.tolist(), hf.tolist(), hv.tolist()) == (hp2[:k].tolist(), hf2[:k].tolist(), hv2[:k].tolist())
        assert set(chip[hp]) == {0, 1, 2, 4} and power[[7, 40, 41]].tolist() == [0.0] * 3
        seen_hit_rows |= {(int(p), int(f) // C) for p, f in zip(hp, hf) if chip[p] == 0}
    assert {r for _, r in seen_hit_rows} == set(range(R))
