"""Compiled kernels of the relaxed line solve (:mod:`programming.line_batch`): the ladders' sums and
the relaxation of each operating point on its own.

numba is imported here, and this module only by :mod:`programming.line_batch` when a relaxed
network is built or solved (never on ``xbar --help``'s path).  Compiled once and cached on disk
(``cache=True``, one explicit signature per kernel); no ``parallel`` (results are deterministic,
and the machines it runs on share their cores).

A line is a ladder: node k (counted from its terminal) and node m share the path
``r_t + r·min(k, m)`` (``r_t = r_line + r_access``), so the drop currents ``i`` drawn along a row
line cause, and the rise currents fed into a column line cause, are two cumulative sums:

* rows (terminal at column 0): ``drop_k = (r_t − r)·S₀ + r·Σ_{s≤k} S_s``, ``S_s = Σ_{m≥s} i_m``;
* columns (terminal at row R − 1): ``rise_k = (r_t − r)·P_{R−1} + r·Σ_{s≥k} P_s``, ``P_s = Σ_{m≤s} i_m``.

:func:`_row_drop` and :func:`_col_rise` are those sums (the one definition: the relaxation, the
contraction bound and the device-free node voltages of a linear solve all use them).
:func:`relax_points` is the iteration :mod:`programming.line_batch` states,
``u ← (L_r⁻¹ + L_c⁻¹) I(v0 − u)`` from ``u = 0``, each point's 2·R·C node values staying in the
cache while it relaxes (the numpy iteration it replaced streamed each step of a chunk of points
through memory, ~0.3 µs per point per step on 8×8).
"""
from __future__ import annotations

import numpy as np
from numba import njit, types

_IN = {n: types.Array(types.float64, n, "A", readonly=True) for n in (1, 2, 3, 4, 5)}
_OUT = {n: types.Array(types.float64, n, "A") for n in (1, 4, 5)}
_C = {n: types.Array(types.float64, n, "C", readonly=True) for n in (3,)}
_OUTC = {n: types.Array(types.float64, n, "C") for n in (5,)}
_F, _I = types.float64, types.int64


@njit(inline="always")
def _row_drop(cur, R, C, r0, r, acc, first, drop):  # pragma: no cover - compiled
    """``drop`` (R·C, flat) of the currents ``cur`` (R·C) along every row line (the rows' sums side
    by side: independent chains); ``r0 = r_t − r``; ``acc``, ``first``: (R,) work arrays."""
    for i in range(R):
        acc[i] = 0.0
    for j in range(C - 1, -1, -1):
        for i in range(R):
            acc[i] += cur[i * C + j]
            drop[i * C + j] = acc[i]
    for i in range(R):
        first[i] = r0 * acc[i]
        acc[i] = 0.0
    for j in range(C):
        for i in range(R):
            acc[i] += drop[i * C + j]
            drop[i * C + j] = r * acc[i] + first[i]


@njit(inline="always")
def _col_rise(cur, R, C, r0, r, acc, last, rise):  # pragma: no cover - compiled
    """``rise`` (R·C, flat) of the currents ``cur`` (R·C) along every column line; ``acc``,
    ``last``: (C,) work arrays."""
    for j in range(C):
        acc[j] = 0.0
    for i in range(R):
        for j in range(C):
            acc[j] += cur[i * C + j]
            rise[i * C + j] = acc[j]
    for j in range(C):
        last[j] = r0 * acc[j]
        acc[j] = 0.0
    for i in range(R - 1, -1, -1):
        for j in range(C):
            acc[j] += rise[i * C + j]
            rise[i * C + j] = r * acc[j] + last[j]


@njit(_F[:](_IN[3], _F, _F), cache=True, nogil=True)
def ladder_bound(slope, r_t, r):  # pragma: no cover - compiled
    """Per chip the largest node value of ``(L_r⁻¹ + L_c⁻¹)·slope`` (``slope`` (B, R, C), S):
    the contraction bound of :func:`programming.line_batch.contraction`."""
    B, R, C = slope.shape
    n = R * C
    s, drop, rise = np.empty(n), np.empty(n), np.empty(n)
    acc_r, first, acc_c, last = np.empty(R), np.empty(R), np.empty(C), np.empty(C)
    out = np.empty(B)
    for b in range(B):
        for i in range(R):
            for j in range(C):
                s[i * C + j] = slope[b, i, j]
        _row_drop(s, R, C, r_t - r, r, acc_r, first, drop)
        _col_rise(s, R, C, r_t - r, r, acc_c, last, rise)
        top = -np.inf
        for q in range(n):
            x = drop[q] + rise[q]
            if x > top:
                top = x
        out[b] = top
    return out


@njit(types.void(_IN[5], _F, _F, _OUT[5]), cache=True, nogil=True)
def device_free(inj, r_t, r, out):  # pragma: no cover - compiled
    """Node voltages with no devices, V, of node current injections ``inj`` (P, K, 2, R, C), A
    (row nodes, column nodes): the row injections' drop and the column injections' rise."""
    P, K, _, R, C = inj.shape
    n = R * C
    a, b, drop, rise = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    acc_r, first, acc_c, last = np.empty(R), np.empty(R), np.empty(C), np.empty(C)
    for p in range(P):
        for k in range(K):
            for i in range(R):
                for j in range(C):
                    a[i * C + j] = inj[p, k, 0, i, j]
                    b[i * C + j] = inj[p, k, 1, i, j]
            _row_drop(a, R, C, r_t - r, r, acc_r, first, drop)
            _col_rise(b, R, C, r_t - r, r, acc_c, last, rise)
            for i in range(R):
                for j in range(C):
                    out[p, k, 0, i, j] = drop[i * C + j]
                    out[p, k, 1, i, j] = rise[i * C + j]


@njit(inline="always")
def _relax_one(v0, gl, beta, b, atol, r0, r, max_iter, n, R, C, u, cur, drop, rise, acc_r, first, acc_c, last):  # pragma: no cover - compiled
    """Relax one point from ``u = 0`` (its cell voltages on ideal lines ``v0``, its devices'
    linear conductances ``gl``, flat R·C) until ``b·max|Δu| <= atol``; leaves its drop and rise
    in ``drop`` and ``rise``.  Returns (steps, status, worst) as :func:`relax_points`."""
    for q in range(n):
        u[q] = 0.0
    it = 0
    while True:
        it += 1
        for q in range(n):
            v = v0[q] - u[q]
            cur[q] = gl[q] * (v * (1.0 + beta * v * v))
        _row_drop(cur, R, C, r0, r, acc_r, first, drop)
        _col_rise(cur, R, C, r0, r, acc_c, last, rise)
        # the largest move of u, and a sum that is finite only if every node is
        step = 0.0
        tot = 0.0
        for q in range(n):
            new = drop[q] + rise[q]
            step = max(step, abs(new - u[q]))
            tot += new
            u[q] = new
        if not (tot - tot == 0.0 and step < np.inf):
            return it, 1, step
        if b * step <= atol:
            return it, 0, 0.0
        if it >= max_iter:
            return it, 2, b * step


@njit(types.Tuple((_I, _I, _F))(_IN[4], _IN[4], _C[3], _F, _IN[1], _F, _F, _F, _I, _OUTC[5]),
      cache=True, nogil=True)
def relax_points(base_r, base_c, g_lin, beta, rho_lin, tol, r_t, r, max_iter, out):  # pragma: no cover - compiled
    """Relax each operating point (p, k) on its own and write its row and column node voltages.

    Args:
        base_r, base_c: (P, K, R, C) row / column node voltages with no devices, V (may be
            broadcast views).
        g_lin: (P, R, C) the devices' linear conductances, S; beta: their cubic coefficient, 1/V²
            (``I = g_lin·v·(1 + β v²)``; 0: linear devices).
        rho_lin: (P,) each chip's contraction bound at the conductances ``g_lin``.
        tol: each point's error bound, relative to its largest device-free node voltage.
        r_t, r: terminal-to-first-node and segment resistance of every line, Ω.
        max_iter: most steps.
        out: (P, K, 2, R, C) written: base_r minus the drop, base_c plus the rise, at the first
            step where the point's error bound ``ρ/(1 − ρ)·max|Δu|`` is at most ``tol`` times its
            largest |device-free node voltage|.  ρ is the chip's bound with the devices' slopes
            at the largest cell voltage the point can have: ``rho_lin·(1 + 3|β|·span²)``, span its
            device-free node voltages' spread plus 1 % (a network of monotone devices keeps its
            node voltages between its terminals'; the margin covers the iterates).

    Returns:
        (steps, status, worst): the most steps any point took; 0 converged, 1 non-finite node
        voltages, 2 a point not converged in ``max_iter`` steps (``worst`` its last error bound, V).
    """
    P, K, R, C = base_r.shape
    n = R * C
    # one point's working arrays, flat (cell (i, j) at i·C + j): its cell voltages on ideal lines,
    # the drop plus rise u, the currents, the drop and the rise; its chip's conductances
    v0, u, cur, drop, rise, gl = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    acc_r, first, acc_c, last = np.empty(R), np.empty(R), np.empty(C), np.empty(C)
    steps = 1
    for p in range(P):
        for i in range(R):
            for j in range(C):
                gl[i * C + j] = g_lin[p, i, j]
        for k in range(K):
            live = False
            hi, lo, scale = -np.inf, np.inf, 0.0
            for i in range(R):
                for j in range(C):
                    a, c = base_r[p, k, i, j], base_c[p, k, i, j]
                    x = a - c
                    v0[i * C + j] = x
                    if x != 0.0:
                        live = True
                    hi = max(hi, a, c)
                    lo = min(lo, a, c)
                    scale = max(scale, abs(a), abs(c))
            if not live:            # no device sees a voltage: the lines stay at their terminals'
                for i in range(R):
                    for j in range(C):
                        out[p, k, 0, i, j] = base_r[p, k, i, j]
                        out[p, k, 1, i, j] = base_c[p, k, i, j]
                continue
            span = 1.01 * (hi - lo)
            rho = rho_lin[p] * (1.0 + 3.0 * abs(beta) * span * span)
            it, status, worst = _relax_one(v0, gl, beta, rho / (1.0 - rho), tol * scale, r_t - r, r, max_iter, n,
                                           R, C, u, cur, drop, rise, acc_r, first, acc_c, last)
            if status:
                return max(steps, it), status, worst
            for i in range(R):
                for j in range(C):
                    out[p, k, 0, i, j] = base_r[p, k, i, j] - drop[i * C + j]
                    out[p, k, 1, i, j] = base_c[p, k, i, j] + rise[i * C + j]
            steps = max(steps, it)
    return steps, 0, 0.0


@njit(types.Tuple((_I, _I, _F))(_IN[3], _IN[3], _C[3], _F, _IN[1], _F, _F, _F, _I, _OUTC[5]),
      cache=True, nogil=True)
def relax_terminals(row_v, col_v, g_lin, beta, rho_lin, tol, r_t, r, max_iter, out):  # pragma: no cover - compiled
    """:func:`relax_points` of terminal voltages ``row_v`` (P, K, R) and ``col_v`` (P, K, C), V
    (every row node of row i at ``row_v[..., i]`` and every column node of column j at
    ``col_v[..., j]`` with no devices): the same answers bit for bit, without reading R·C
    device-free values per point."""
    P, K, R = row_v.shape
    C = col_v.shape[2]
    n = R * C
    v0, u, cur, drop, rise, gl = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    acc_r, first, acc_c, last = np.empty(R), np.empty(R), np.empty(C), np.empty(C)
    steps = 1
    for p in range(P):
        for i in range(R):
            for j in range(C):
                gl[i * C + j] = g_lin[p, i, j]
        for k in range(K):
            live = False
            hi, lo, scale = -np.inf, np.inf, 0.0
            for i in range(R):
                a = row_v[p, k, i]
                hi, lo, scale = max(hi, a), min(lo, a), max(scale, abs(a))
            for j in range(C):
                c = col_v[p, k, j]
                hi, lo, scale = max(hi, c), min(lo, c), max(scale, abs(c))
            for i in range(R):
                a = row_v[p, k, i]
                for j in range(C):
                    x = a - col_v[p, k, j]
                    v0[i * C + j] = x
                    if x != 0.0:
                        live = True
            if not live:
                for i in range(R):
                    for j in range(C):
                        out[p, k, 0, i, j] = row_v[p, k, i]
                        out[p, k, 1, i, j] = col_v[p, k, j]
                continue
            span = 1.01 * (hi - lo)
            rho = rho_lin[p] * (1.0 + 3.0 * abs(beta) * span * span)
            it, status, worst = _relax_one(v0, gl, beta, rho / (1.0 - rho), tol * scale, r_t - r, r, max_iter, n,
                                           R, C, u, cur, drop, rise, acc_r, first, acc_c, last)
            if status:
                return max(steps, it), status, worst
            for i in range(R):
                a = row_v[p, k, i]
                for j in range(C):
                    out[p, k, 0, i, j] = a - drop[i * C + j]
                    out[p, k, 1, i, j] = col_v[p, k, j] + rise[i * C + j]
            steps = max(steps, it)
    return steps, 0, 0.0
