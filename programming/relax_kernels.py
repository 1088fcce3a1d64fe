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
:func:`_relax_one` is the iteration :mod:`programming.line_batch` states,
``u ← (L_r⁻¹ + L_c⁻¹) I(v0 − u)`` from ``u = 0``, each point's 2·R·C node values staying in the
cache while it relaxes (the numpy iteration it replaced streamed each step of a chunk of points
through memory, ~0.3 µs per point per step on 8×8).  Its entries differ only in what they read
and write around it: :func:`relax_points` node voltages of any device-free voltages (a solve's
terminals as broadcast views); :func:`relax_reads` a grounded read's column currents and
:func:`relax_pulses` a pulse's power, threshold hits and largest unselected cell voltage, read from
the whole batch's arrays by chip index (no per-point node voltages written: the simulated chip's
reads and pulses on many small chips).
"""
from __future__ import annotations

import numpy as np
from numba import njit, types

_IN = {n: types.Array(types.float64, n, "A", readonly=True) for n in (1, 2, 3, 4, 5)}
_INI = {n: types.Array(types.int64, n, "A", readonly=True) for n in (1,)}
_OUT = {n: types.Array(types.float64, n, "A") for n in (1, 2, 3, 4, 5)}
_OUTI = {n: types.Array(types.int64, n, "A") for n in (1,)}
_C = {n: types.Array(types.float64, n, "C", readonly=True) for n in (3,)}
_OUTC = {n: types.Array(types.float64, n, "C") for n in (5,)}
_F, _I = types.float64, types.int64


@njit(inline="always")
def _row_drop(cur, R, C, r0, r, acc, first, drop):  # pragma: no cover - compiled
    """``drop`` (R·C, flat) of the currents ``cur`` (R·C) along every row line (each row's two scans
    along its contiguous nodes; the rows' chains overlap in the pipeline); ``r0 = r_t − r``; ``acc``,
    ``first``: (R,) work arrays (not needed by the scans)."""
    for i in range(R):
        a = 0.0
        for j in range(C - 1, -1, -1):
            a += cur[i * C + j]
            drop[i * C + j] = a
        f = r0 * a
        a = 0.0
        for j in range(C):
            a += drop[i * C + j]
            drop[i * C + j] = r * a + f


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
def _work(R, C):  # pragma: no cover - compiled
    """One point's working arrays (flat, cell (i, j) at i·C + j): its cell voltages on ideal lines
    ``v0``, its devices' linear conductances ``gl``, the drop plus rise ``u``, the currents, the drop
    and the rise; and the ladders' (R,) / (C,) accumulators."""
    n = R * C
    return (np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n),
            np.empty(R), np.empty(R), np.empty(C), np.empty(C), np.empty(C), np.empty(C))


@njit(inline="always")
def _relax_one(beta, rho_lin, hi, lo, atol, r_t, r, max_iter, R, C, w):  # pragma: no cover - compiled
    """Relax one point (its ideal-line cell voltages ``v0`` and conductances ``gl`` in ``w``, as
    :func:`_work` lays it out) from ``u = 0`` until its error bound ``ρ/(1 − ρ)·max|Δu|`` is at
    most ``atol``, V: ρ its chip's bound ``rho_lin`` with the devices' slopes at the largest cell
    voltage it can have, ``rho_lin·(1 + 3|β|·span²)``, span its terminals' spread ``hi − lo`` plus
    1 % (a network of monotone devices keeps its node voltages between its terminals'; the margin
    covers the iterates).  Leaves its drop and rise in ``w``.  Returns (steps, status, worst) as
    :func:`relax_points`."""
    v0, gl, u, cur, drop, rise, acc_r, first, acc_c, last, top, tots = w
    n = R * C
    r0 = r_t - r
    span = 1.01 * (hi - lo)
    rho = rho_lin * (1.0 + 3.0 * abs(beta) * span * span)
    b = rho / (1.0 - rho)
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
        # kept per column (independent lanes the compiler vectorizes; a max is exact in any order)
        for j in range(C):
            top[j] = 0.0
            tots[j] = 0.0
        for i in range(R):
            for j in range(C):
                q = i * C + j
                new = drop[q] + rise[q]
                d = abs(new - u[q])
                top[j] = d if d > top[j] else top[j]
                tots[j] += new
                u[q] = new
        step = 0.0
        tot = 0.0
        for j in range(C):
            step = max(step, top[j])
            tot += tots[j]
        if not (tot - tot == 0.0 and step < np.inf):
            return it, 1, step
        if b * step <= atol:
            return it, 0, 0.0
        if it >= max_iter:
            return it, 2, b * step


@njit(inline="always")
def _idle(R, C, w):  # pragma: no cover - compiled
    """A point whose devices all see 0 V carries no current: no drop, no rise."""
    drop, rise = w[4], w[5]
    for q in range(R * C):
        drop[q] = 0.0
        rise[q] = 0.0


@njit(types.Tuple((_I, _I, _F))(_IN[4], _IN[4], _C[3], _F, _IN[1], _F, _F, _F, _I, _OUTC[5]),
      cache=True, nogil=True)
def relax_points(base_r, base_c, g_lin, beta, rho_lin, tol, r_t, r, max_iter, out):  # pragma: no cover - compiled
    """Relax each operating point (p, k) on its own and write its row and column node voltages.

    Args:
        base_r, base_c: (P, K, R, C) row / column node voltages with no devices, V (may be
            broadcast views: a solve of terminal voltages passes them so).
        g_lin: (P, R, C) the devices' linear conductances, S; beta: their cubic coefficient, 1/V²
            (``I = g_lin·v·(1 + β v²)``; 0: linear devices).
        rho_lin: (P,) each chip's contraction bound at the conductances ``g_lin``.
        tol: each point's error bound, relative to its largest |device-free node voltage|.
        r_t, r: terminal-to-first-node and segment resistance of every line, Ω.
        max_iter: most steps.
        out: (P, K, 2, R, C) written: base_r minus the drop, base_c plus the rise, at the first
            step where the point's error bound (:func:`_relax_one`, span its device-free node
            voltages' spread) is at most ``tol`` times its largest |device-free node voltage|.

    Returns:
        (steps, status, worst): the most steps any point took; 0 converged, 1 non-finite node
        voltages, 2 a point not converged in ``max_iter`` steps (``worst`` its last error bound, V).
    """
    P, K, R, C = base_r.shape
    w = _work(R, C)
    v0, gl, drop, rise = w[0], w[1], w[4], w[5]
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
            if live:
                it, status, worst = _relax_one(beta, rho_lin[p], hi, lo, tol * scale, r_t, r, max_iter, R, C, w)
                if status:
                    return max(steps, it), status, worst
                steps = max(steps, it)
            else:               # no device sees a voltage: the lines stay at their terminals'
                _idle(R, C, w)
            for i in range(R):
                for j in range(C):
                    out[p, k, 0, i, j] = base_r[p, k, i, j] - drop[i * C + j]
                    out[p, k, 1, i, j] = base_c[p, k, i, j] + rise[i * C + j]
    return steps, 0, 0.0


@njit(types.Tuple((_I, _I, _F))(_IN[3], _INI[1], _INI[1], _F, _F, _IN[1], _F, _F, _F, _F, _I, _OUT[2]),
      cache=True, nogil=True)
def relax_reads(g_lin, chip, row, v_read, beta, rho_lin, tol, r_t, r, g_term, max_iter, out):  # pragma: no cover - compiled
    """Grounded reads, each relaxed on its own as :func:`relax_points` relaxes it (bit for bit):
    read ``p`` drives row ``row[p]`` of chip ``chip[p]`` at ``v_read``, V, every other line at
    0 V, on devices ``I = g_lin·v·(1 + β v²)`` (``g_lin`` (B, R, C), S: the chips' linear
    conductances, the relaxed network's; ``rho_lin`` (B,) their bounds); writes the current out of
    every column into its driver, A, ``out`` (P, C): ``g_term`` (S) times its terminal node's rise."""
    B, R, C = g_lin.shape
    P = chip.shape[0]
    w = _work(R, C)
    v0, gl, rise = w[0], w[1], w[5]
    hi, lo, scale = max(v_read, 0.0), min(v_read, 0.0), abs(v_read)
    steps = 1
    for p in range(P):
        c, rr = chip[p], row[p]
        for i in range(R):
            a = v_read if i == rr else 0.0
            for j in range(C):
                v0[i * C + j] = a - 0.0
                gl[i * C + j] = g_lin[c, i, j]
        if v_read != 0.0:
            it, status, worst = _relax_one(beta, rho_lin[c], hi, lo, tol * scale, r_t, r, max_iter, R, C, w)
            if status:
                return max(steps, it), status, worst
            steps = max(steps, it)
        else:
            _idle(R, C, w)
        for j in range(C):
            out[p, j] = g_term * ((0.0 + rise[(R - 1) * C + j]) - 0.0)
    return steps, 0, 0.0


@njit(types.Tuple((_I, _I, _F, _I, _F))(_IN[3], _IN[3], _F, _INI[1], _INI[1], _INI[1], _IN[1], _F, _F, _IN[1], _IN[3],
                                        _IN[3], _F, _IN[1], _F, _F, _F, _I, _IN[4], _OUT[1], _OUTI[1],
                                        _OUTI[1], _OUT[1]),
      cache=True, nogil=True)
def relax_pulses(g, g_lin, norm, chip, sel_r, sel_c, v, frac_row, frac_col, shift, vth_set, vth_reset, beta, rho_lin, tol,
                 r_t, r, max_iter, given, energy, hit_point, hit_flat, hit_v):  # pragma: no cover - compiled
    """V/2 or V/3 pulses, each relaxed on its own as :func:`relax_points` relaxes it (bit for bit),
    and what the caller needs of each, in one pass (no node voltages kept).

    Pulse ``p`` on chip ``chip[p]`` drives row ``sel_r[p]`` at ``v[p]`` and column ``sel_c[p]`` at
    0 V, every other row at ``frac_row·v[p]`` and column at ``frac_col·v[p]``, V, on devices
    ``I = g·v·(1 + β v²)/norm`` (``g`` (B, R, C), S: the chips' read conductances, and
    ``g_lin = g/norm`` the relaxed network's; ``rho_lin`` (B,) the chips' bounds).
    ``given``: (P, 2, R, C) row / column node voltages of the pulses solved elsewhere (a
    factorized solve, where the relaxation would be slow), used instead of relaxing; (0, 2, R, C)
    to relax.  Writes ``energy`` (P,): each pulse's power Σ v_cell·i_cell, W; and, in pulse then
    cell order, each device the pulse's cell voltage reaches beyond a threshold — ``v_eq > vth_set``
    or ``−v_eq > vth_reset`` of its chip (``v_eq = sign(v)·max(|v| + shift[p], 0)``: the equivalent
    voltage of :func:`mock_hw.device.equivalent_voltage`, ``shift`` its width term) — as its
    pulse, its flat index in its chip (i·C + j) and its cell voltage, V.

    Returns:
        (steps, status, worst, hits, top): as :func:`relax_points`, the number of devices
        written, and the largest |cell voltage| of any unselected cell, V (0 without pulses).
    """
    B, R, C = g.shape
    P = chip.shape[0]
    w = _work(R, C)
    v0, gl, drop, rise = w[0], w[1], w[4], w[5]
    a_t, c_t = np.empty(R), np.empty(C)
    solved = given.shape[0] == P and P > 0
    steps, n_hit, top = 1, 0, 0.0
    for p in range(P):
        c, sr, sc, vp = chip[p], sel_r[p], sel_c[p], v[p]
        if not solved:      # the relaxation's terminals, cell voltages on ideal lines and conductances
            a_un, c_un = vp * frac_row, vp * frac_col
            hi, lo, scale = -np.inf, np.inf, 0.0
            for i in range(R):
                a_t[i] = vp if i == sr else a_un
                hi, lo, scale = max(hi, a_t[i]), min(lo, a_t[i]), max(scale, abs(a_t[i]))
            for j in range(C):
                c_t[j] = 0.0 if j == sc else c_un
                hi, lo, scale = max(hi, c_t[j]), min(lo, c_t[j]), max(scale, abs(c_t[j]))
            live = False
            for i in range(R):
                for j in range(C):
                    x = a_t[i] - c_t[j]
                    v0[i * C + j] = x
                    gl[i * C + j] = g_lin[c, i, j]
                    if x != 0.0:
                        live = True
            if live:
                it, status, worst = _relax_one(beta, rho_lin[c], hi, lo, tol * scale, r_t, r, max_iter, R, C, w)
                if status:
                    return max(steps, it), status, worst, n_hit, top
                steps = max(steps, it)
            else:
                _idle(R, C, w)
        e = 0.0
        s = shift[p]
        for i in range(R):
            for j in range(C):
                q = i * C + j
                if solved:
                    x = given[p, 0, i, j] - given[p, 1, i, j]
                else:
                    x = (a_t[i] - drop[q]) - (c_t[j] + rise[q])
                e += x * (g[c, i, j] * x * ((1.0 + beta * x * x) / norm))
                if i != sr or j != sc:
                    top = max(top, abs(x))
                m = max(abs(x) + s, 0.0)
                v_eq = m if x > 0.0 else (-m if x < 0.0 else 0.0)
                if v_eq > vth_set[c, i, j] or -v_eq > vth_reset[c, i, j]:
                    hit_point[n_hit], hit_flat[n_hit], hit_v[n_hit] = p, q, x
                    n_hit += 1
        energy[p] = e
    return steps, 0, 0.0, n_hit, top


@njit(types.Array(types.int64, 1, "C")(_IN[3], _OUT[3]), cache=True, nogil=True)
def changed_chips(g, seen):  # pragma: no cover - compiled
    """The chips (indices, ascending) whose values ``g`` (B, R, C) differ anywhere from ``seen``
    (same shape), whose chips are then brought to ``g``: one pass, no whole-batch temporaries."""
    B, R, C = g.shape
    out = np.empty(B, np.int64)
    n = 0
    for b in range(B):
        diff = False
        for i in range(R):
            for j in range(C):
                if g[b, i, j] != seen[b, i, j]:
                    diff = True
        if diff:
            for i in range(R):
                for j in range(C):
                    seen[b, i, j] = g[b, i, j]
            out[n] = b
            n += 1
    return out[:n].copy()
