"""Compiled kernel of the relaxed line solve (:mod:`programming.line_batch`), one operating point at a time.

numba is imported here, and this module only by :meth:`programming.line_batch.BatchLines._relax`
when a relaxed solve runs (never on ``xbar --help``'s path).  Compiled once and cached on disk
(``cache=True``); no ``parallel`` (results are deterministic, and the machines it runs on share their
cores).

:func:`relax_points` is the iteration :mod:`programming.line_batch` states,
``u ← (L_r⁻¹ + L_c⁻¹) I(v0 − u)`` from ``u = 0``, for every operating point on its own: a point's
node voltages (2·R·C numbers) and currents stay in the cache while it relaxes, where the numpy
iteration it replaces streamed each step of a chunk of points through memory (bound by numpy's
element-wise throughput: ~0.3 µs per point per step on 8×8).  ``L⁻¹ I`` is the ladders' two
cumulative sums along each line (:func:`programming.line_batch._row_t`, ``_col_t``: O(R·C) per
point, where the transfer matrices' products were O(R·C·(R + C))).
"""
from __future__ import annotations

import numpy as np
from numba import njit, types

_IN = {n: types.Array(types.float64, n, "A", readonly=True) for n in (2, 3, 4)}
#: one compiled signature for every call (broadcast views, slices and contiguous arrays alike):
#: a new layout or read-only flag would otherwise compile the kernel again (~4 s each)
_SIGNATURE = types.Tuple((types.int64, types.int64, types.float64))(
    _IN[4], _IN[4], _IN[3], types.float64, _IN[2], _IN[2], types.float64, types.float64, types.int64,
    types.Array(types.float64, 5, "A"))


@njit(_SIGNATURE, cache=True, nogil=True)
def relax_points(base_r, base_c, g_lin, beta, bound, atol, r_t, r, max_iter, out):
    """Relax each operating point (p, k) on its own and write its row and column node voltages.

    Args:
        base_r, base_c: (P, K, R, C) row / column node voltages with no devices, V (may be
            broadcast views).
        g_lin: (P, R, C) the devices' linear conductances, S; beta: their cubic coefficient, 1/V²
            (``I = g_lin·v·(1 + β v²)``; 0: linear devices).
        bound: (P, K) error per unit step, ρ/(1 − ρ); atol: (P, K) the error each point must reach, V.
        r_t, r: terminal-to-first-node and segment resistance of every line, Ω.
        max_iter: most steps.
        out: (P, K, 2, R, C) written: base_r minus the drop, base_c plus the rise, at the step
            where the point's error bound ``bound·max|Δu|`` is at most ``atol``.

    Returns:
        (steps, status, worst): the most steps any point took; 0 converged, 1 non-finite node
        voltages, 2 a point not converged in ``max_iter`` steps (``worst`` its last error bound, V).
    """
    P, K, R, C = base_r.shape
    n = R * C
    # one point's working arrays, flat (cell (i, j) at i·C + j): its cell voltages on ideal lines,
    # the drop plus rise u, the currents, the drop and the rise; its chip's coefficients
    v0, u, cur, drop, rise = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    gl = np.empty(n)
    acc_r, first_r, acc_c, last_c = np.empty(R), np.empty(R), np.empty(C), np.empty(C)
    steps = 1
    r0 = r_t - r
    for p in range(P):
        for i in range(R):
            for j in range(C):
                gl[i * C + j] = g_lin[p, i, j]
        for k in range(K):
            live = False
            for i in range(R):
                for j in range(C):
                    x = base_r[p, k, i, j] - base_c[p, k, i, j]
                    v0[i * C + j] = x
                    u[i * C + j] = 0.0
                    if x != 0.0:
                        live = True
            if not live:            # no device sees a voltage: the lines stay at their terminals'
                for i in range(R):
                    for j in range(C):
                        out[p, k, 0, i, j] = base_r[p, k, i, j]
                        out[p, k, 1, i, j] = base_c[p, k, i, j]
                continue
            b, tol = bound[p, k], atol[p, k]
            it = 0
            while True:
                it += 1
                for q in range(n):
                    v = v0[q] - u[q]
                    cur[q] = gl[q] * (v * (1.0 + beta * v * v))
                # the drop along each row line (terminal at column 0): (r_t − r)·S₀ + r·Σ_{s≤k} S_s,
                # S_s = Σ_{m≥s} i_m (the rows' sums side by side: independent chains)
                for i in range(R):
                    acc_r[i] = 0.0
                for j in range(C - 1, -1, -1):
                    for i in range(R):
                        acc_r[i] += cur[i * C + j]
                        drop[i * C + j] = acc_r[i]
                for i in range(R):
                    first_r[i] = r0 * acc_r[i]
                    acc_r[i] = 0.0
                for j in range(C):
                    for i in range(R):
                        acc_r[i] += drop[i * C + j]
                        drop[i * C + j] = r * acc_r[i] + first_r[i]
                # the rise along each column line (terminal at row R − 1): (r_t − r)·P_{R−1} +
                # r·Σ_{s≥k} P_s, P_s = Σ_{m≤s} i_m
                for j in range(C):
                    acc_c[j] = 0.0
                for i in range(R):
                    for j in range(C):
                        acc_c[j] += cur[i * C + j]
                        rise[i * C + j] = acc_c[j]
                for j in range(C):
                    last_c[j] = r0 * acc_c[j]
                    acc_c[j] = 0.0
                for i in range(R - 1, -1, -1):
                    for j in range(C):
                        acc_c[j] += rise[i * C + j]
                        rise[i * C + j] = r * acc_c[j] + last_c[j]
                # the largest move of u, and a sum that is finite only if every node is
                step = 0.0
                tot = 0.0
                for q in range(n):
                    new = drop[q] + rise[q]
                    step = max(step, abs(new - u[q]))
                    tot += new
                    u[q] = new
                if not (tot - tot == 0.0 and step < np.inf):
                    return steps, 1, step
                if b * step <= tol:
                    for i in range(R):
                        for j in range(C):
                            out[p, k, 0, i, j] = base_r[p, k, i, j] - drop[i * C + j]
                            out[p, k, 1, i, j] = base_c[p, k, i, j] + rise[i * C + j]
                    break
                if it >= max_iter:
                    return steps, 2, b * step
            if it > steps:
                steps = it
    return steps, 0, 0.0
