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
