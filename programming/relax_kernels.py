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
:func:`_step` is the iteration :mod:`programming.line_batch` states,
``u ← (L_r⁻¹ + L_c⁻¹) I(v0 − u)`` from ``u = 0`` (:func:`_take`) until each point's own proven
bound (:func:`_settle`), for :data:`W` points side by side, their node values staying in the cache
while they relax (8×8 at 0.67 Ω: ~0.12 µs per point per step; one point at a time, ~0.24 µs;
the numpy iteration before that streamed each step of a chunk of points through memory,
~0.3 µs).  Its entries differ only in what they read and write around it: :func:`relax_points`
node voltages of any device-free voltages (a solve's terminals as broadcast views);
:func:`relax_reads` a grounded read's column currents (from its row's own network, until its
readings are proven) and :func:`relax_pulses` a pulse's power, threshold hits and largest
unselected cell voltage, read from the whole batch's arrays by chip index (no per-point node
voltages written: the simulated chip's reads and pulses on many small chips).
:func:`given_pulses` keeps the same of pulses whose node voltages a swept solve gave (the
simulated chip's large arrays), on contiguous arrays.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types

_IN = {n: types.Array(types.float64, n, "A", readonly=True) for n in (1, 2, 3, 4, 5)}
_INI = {n: types.Array(types.int64, n, "A", readonly=True) for n in (1,)}
_OUT = {n: types.Array(types.float64, n, "A") for n in (1, 2, 3, 4, 5)}
_OUTI = {n: types.Array(types.int64, n, "A") for n in (1,)}
_C = {n: types.Array(types.float64, n, "C", readonly=True) for n in (3, 4)}
_OUTC = {n: types.Array(types.float64, n, "C") for n in (3, 5)}
_F, _I = types.float64, types.int64


#: operating points relaxed side by side, one per SIMD lane: every working array holds a node's
#: value for ``W`` points contiguously (node (i, j) of lane l at ``(i·C + j)·W + l``), so each loop
#: of the iteration — the devices' currents, the ladders' scans, the error bound — runs over
#: contiguous lanes in vector registers (the row scans on a transposed copy, node (i, j) at
#: ``(j·R + i)·W + l``, so that they too run along contiguous memory).  Each lane performs exactly
#: the scalar iteration of its own point (the same operations in the same order: the same answer
#: bit for bit, and no lane's answer depends on its neighbours'); a lane whose point has converged
#: takes the next point.  8: one AVX-512 register, and a working set of 8×8 chips (6 arrays of
#: 4 kB) that stays in the L1 cache (the copies between the layouts are written for 8)
W = 8


@njit(inline="always")
def _copy_w(src, o, dst, p):  # pragma: no cover - compiled
    """``dst[p:p + W] = src[o:o + W]`` (W = 8), every load before any store: the compiler
    then moves the lanes as one vector (loads and stores interleaved, it cannot: the arrays
    might overlap)."""
    x0, x1, x2, x3 = src[o], src[o + 1], src[o + 2], src[o + 3]
    x4, x5, x6, x7 = src[o + 4], src[o + 5], src[o + 6], src[o + 7]
    dst[p], dst[p + 1], dst[p + 2], dst[p + 3] = x0, x1, x2, x3
    dst[p + 4], dst[p + 5], dst[p + 6], dst[p + 7] = x4, x5, x6, x7


@njit(inline="always")
def _row_drop(cur, R, C, r0, r, acc, first, by_col, drop):  # pragma: no cover - compiled
    """``drop`` (R·C·W, lane-interleaved) of the currents ``cur`` along every row line of every
    lane: per row a suffix sum ``S_s`` (from column C − 1 down), then ``r·Σ_{s≤k} S_s + r0·S₀``;
    ``r0 = r_t − r``.  Worked on ``by_col`` (R·C·W: ``cur`` transposed, each column's rows and
    lanes contiguous); ``acc``, ``first``: (R·W,) work arrays."""
    RW = R * W
    for i in range(R):
        for j in range(C):
            _copy_w(cur, (i * C + j) * W, by_col, (j * R + i) * W)
    for x in range(RW):
        acc[x] = 0.0
    for j in range(C - 1, -1, -1):
        cj = by_col[j * RW:(j + 1) * RW]
        for x in range(RW):
            a = acc[x] + cj[x]
            acc[x] = a
            cj[x] = a
    for x in range(RW):
        first[x] = r0 * acc[x]
        acc[x] = 0.0
    for j in range(C):
        cj = by_col[j * RW:(j + 1) * RW]
        for x in range(RW):
            a = acc[x] + cj[x]
            acc[x] = a
            cj[x] = r * a + first[x]
    for i in range(R):
        for j in range(C):
            _copy_w(by_col, (j * R + i) * W, drop, (i * C + j) * W)


@njit(inline="always")
def _col_rise(cur, R, C, r0, r, acc, last):  # pragma: no cover - compiled
    """The rise (R·C·W, lane-interleaved) of the currents ``cur`` along every column line of every
    lane, written over ``cur``; ``acc``, ``last``: (C·W,) work arrays."""
    CW = C * W
    for q in range(CW):
        acc[q] = 0.0
    for i in range(R):
        ci = cur[i * CW:(i + 1) * CW]
        for q in range(CW):
            a = acc[q] + ci[q]
            acc[q] = a
            ci[q] = a
    for q in range(CW):
        last[q] = r0 * acc[q]
        acc[q] = 0.0
    for i in range(R - 1, -1, -1):
        ci = cur[i * CW:(i + 1) * CW]
        for q in range(CW):
            a = acc[q] + ci[q]
            acc[q] = a
            ci[q] = r * a + last[q]


@njit(inline="always")
def _ladders(R, C):  # pragma: no cover - compiled
    """The ladders' work arrays for W lanes: (R·W,) ×2, (C·W,) ×2, and the transposed copy (R·C·W,)."""
    return np.empty(R * W), np.empty(R * W), np.empty(C * W), np.empty(C * W), np.empty(R * C * W)


@njit(_F[:](_IN[3], _F, _F), cache=True, nogil=True)
def ladder_bound(slope, r_t, r):  # pragma: no cover - compiled
    """Per chip the largest node value of ``(L_r⁻¹ + L_c⁻¹)·slope`` (``slope`` (B, R, C), S):
    the contraction bound of :func:`programming.line_batch.contraction` (W chips at a time)."""
    B, R, C = slope.shape
    n = R * C
    s, drop = np.zeros(n * W), np.empty(n * W)
    acc_r, first, acc_c, last, by_col = _ladders(R, C)
    out = np.empty(B)
    for b0 in range(0, B, W):
        m = min(W, B - b0)
        for ln in range(m):
            for i in range(R):
                for j in range(C):
                    s[(i * C + j) * W + ln] = slope[b0 + ln, i, j]
        _row_drop(s, R, C, r_t - r, r, acc_r, first, by_col, drop)
        _col_rise(s, R, C, r_t - r, r, acc_c, last)       # (s is the rise now)
        for ln in range(m):
            top = -np.inf
            for q in range(n):
                x = drop[q * W + ln] + s[q * W + ln]
                if x > top:
                    top = x
            out[b0 + ln] = top
    return out


@njit(types.void(_IN[5], _F, _F, _OUT[5]), cache=True, nogil=True)
def device_free(inj, r_t, r, out):  # pragma: no cover - compiled
    """Node voltages with no devices, V, of node current injections ``inj`` (P, K, 2, R, C), A
    (row nodes, column nodes): the row injections' drop and the column injections' rise (W
    points at a time)."""
    P, K, _, R, C = inj.shape
    n = R * C
    a, b, drop = np.zeros(n * W), np.zeros(n * W), np.empty(n * W)
    acc_r, first, acc_c, last, by_col = _ladders(R, C)
    for t0 in range(0, P * K, W):
        m = min(W, P * K - t0)
        for ln in range(m):
            p, k = divmod(t0 + ln, K)
            for i in range(R):
                for j in range(C):
                    a[(i * C + j) * W + ln] = inj[p, k, 0, i, j]
                    b[(i * C + j) * W + ln] = inj[p, k, 1, i, j]
        _row_drop(a, R, C, r_t - r, r, acc_r, first, by_col, drop)
        _col_rise(b, R, C, r_t - r, r, acc_c, last)       # (b is the rise now)
        for ln in range(m):
            p, k = divmod(t0 + ln, K)
            for i in range(R):
                for j in range(C):
                    out[p, k, 0, i, j] = drop[(i * C + j) * W + ln]
                    out[p, k, 1, i, j] = b[(i * C + j) * W + ln]


@njit(inline="always")
def _work(R, C):  # pragma: no cover - compiled
    """The lanes' working arrays (R·C·W each, lane-interleaved: node (i, j) of lane l at
    ``(i·C + j)·W + l``): cell voltages on ideal lines ``v0``, the devices' linear conductances
    ``gl``, the drop plus rise ``u``, the currents and then (written over them) the rise, and the
    drop (a lane that never took a point holds zeros: no current; a lane whose point has left
    goes on relaxing it, unread); the ladders' work arrays; per column and lane the largest move
    and the sum of ``u`` (C·W); and per lane (W,) its point (−1: free), its steps, its bound's
    factor ``ρ/(1 − ρ)``, its tolerance (V), its largest move and its sum."""
    n = R * C * W
    acc_r, first, acc_c, last, by_col = _ladders(R, C)
    return (np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n),
            acc_r, first, acc_c, last, np.empty(C * W), np.empty(C * W),
            np.full(W, -1, np.int64), np.zeros(W, np.int64), np.zeros(W), np.zeros(W), np.zeros(W), np.zeros(W),
            by_col)


@njit(inline="always")
def _slope_bound(beta, hi, lo):  # pragma: no cover - compiled
    """``1 + 3|β|·span²``: the devices' largest slope over their linear one for cell voltages within
    ``span``, the terminals' spread ``hi − lo`` plus 1 % (a network of monotone devices keeps its
    node voltages between its terminals'; the margin covers the iterates).  A point's contraction
    bound is its chip's ``rho_lin`` times it."""
    span = 1.01 * (hi - lo)
    return 1.0 + 3.0 * abs(beta) * span * span


@njit(inline="always")
def _take(w, ln, p, beta, rho_lin, hi, lo, atol, R, C):  # pragma: no cover - compiled
    """Lane ``ln`` takes point ``p`` (its ``v0`` and ``gl`` already written) from ``u = 0``: its
    bound ``ρ = rho_lin·``:func:`_slope_bound` and its tolerance ``atol``, V."""
    u, point, steps, fac, tol = w[2], w[12], w[13], w[14], w[15]
    rho = rho_lin * _slope_bound(beta, hi, lo)
    for q in range(R * C):
        u[q * W + ln] = 0.0
    point[ln], steps[ln], fac[ln], tol[ln] = p, 0, rho / (1.0 - rho), atol


@njit(inline="always")
def _free(w, ln):  # pragma: no cover - compiled
    """Lane ``ln`` leaves its point (it goes on relaxing it, unread, until it takes another)."""
    w[12][ln] = -1


@njit(inline="always")
def _step(w, beta, r_t, r, R, C):  # pragma: no cover - compiled
    """One relaxation step of every lane, ``u ← (L_r⁻¹ + L_c⁻¹) I(v0 − u)`` (devices
    ``I = gl·v·(1 + β v²)``), leaving the step's drop and rise in ``w`` and per lane its largest
    move of ``u`` and a sum that is finite only if every node is (per column, then over the columns:
    a max is exact in any order)."""
    v0, gl, u, rise, drop, _, acc_r, first, acc_c, last, top, tots = w[:12]
    move, total, by_col = w[16], w[17], w[18]
    n = R * C
    CW = C * W
    for q in range(n * W):
        v = v0[q] - u[q]
        rise[q] = gl[q] * (v * (1.0 + beta * v * v))     # the currents
    _row_drop(rise, R, C, r_t - r, r, acc_r, first, by_col, drop)
    _col_rise(rise, R, C, r_t - r, r, acc_c, last)
    for q in range(CW):
        top[q] = 0.0
        tots[q] = 0.0
    for i in range(R):
        di, ri, ui = drop[i * CW:(i + 1) * CW], rise[i * CW:(i + 1) * CW], u[i * CW:(i + 1) * CW]
        for q in range(CW):
            new = di[q] + ri[q]
            d = abs(new - ui[q])
            t = top[q]
            top[q] = d if d > t else t
            tots[q] += new
            ui[q] = new
    for ln in range(W):
        move[ln] = 0.0
        total[ln] = 0.0
    for j in range(C):
        for ln in range(W):
            move[ln] = max(move[ln], top[j * W + ln])
            total[ln] += tots[j * W + ln]


@njit(inline="always")
def _settle(w, ln, max_iter):  # pragma: no cover - compiled
    """After a step, lane ``ln``'s state: 0 converged (its error bound ``ρ/(1 − ρ)·max|Δu|`` at
    most its tolerance), 1 non-finite node voltages, 2 not converged in ``max_iter`` steps, 3 going
    on; and its error bound, V."""
    steps, fac, tol, move, total = w[13], w[14], w[15], w[16], w[17]
    steps[ln] += 1
    step, tot = move[ln], total[ln]
    if not (tot - tot == 0.0 and step < np.inf):
        return 1, step
    if fac[ln] * step <= tol[ln]:
        return 0, 0.0
    if steps[ln] >= max_iter:
        return 2, fac[ln] * step
    return 3, 0.0


@njit(inline="always")
def _step_settled(w, busy, beta, r_t, r, R, C, max_iter, steps, fin):  # pragma: no cover - compiled
    """The lanes' next step where ``busy`` of them hold a point: one :func:`_step` of every lane,
    then every busy lane's state (:func:`_settle`), the lanes whose points it proved listed in
    ``fin`` (W,), in lane order.  Returns (their count, the most steps any point took, status,
    worst): status 1 or 2 of the first lane that failed (:func:`_settle`); −1 with no busy lane
    (no step: the caller is done); else 0."""
    if busy == 0:
        return 0, steps, -1, 0.0
    point, steps_of = w[12], w[13]
    _step(w, beta, r_t, r, R, C)
    n = 0
    for ln in range(W):
        if point[ln] < 0:
            continue
        status, worst = _settle(w, ln, max_iter)
        if status == 3:
            continue
        steps = max(steps, steps_of[ln])
        if status:
            return n, steps, status, worst
        fin[n] = ln
        n += 1
    return n, steps, 0, 0.0


@njit(inline="always")
def _lanes_sums(w, beta, by_power, out, R, C):  # pragma: no cover - compiled
    """Per column and lane (C·W, into ``out``) the sum over the rows of every lane's devices'
    currents at its iterate (cell voltages ``x = v0 − u``, the relaxation's device currents
    ``I = gl·x·(1 + β x²)``: a grounded read's readings), or with ``by_power`` of their powers
    ``x·I``; worked across the lanes at once, each row's nodes as one run of contiguous memory (as
    :func:`_step`), the rows in order."""
    v0, gl, u = w[0], w[1], w[2]
    CW = C * W
    for k in range(CW):
        out[k] = 0.0
    for i in range(R):
        vi, ui, gi = v0[i * CW:(i + 1) * CW], u[i * CW:(i + 1) * CW], gl[i * CW:(i + 1) * CW]
        for k in range(CW):
            x = vi[k] - ui[k]
            cur = gi[k] * (x * (1.0 + beta * x * x))
            out[k] += x * cur if by_power else cur


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
            step where the point's error bound (:func:`_take`, span its device-free node
            voltages' spread) is at most ``tol`` times its largest |device-free node voltage|.

    Returns:
        (steps, status, worst): the most steps any point took; 0 converged, 1 non-finite node
        voltages, 2 a point not converged in ``max_iter`` steps (``worst`` its last error bound, V).
    """
    P, K, R, C = base_r.shape
    w = _work(R, C)
    fin = np.zeros(W, np.int64)         # the lanes a step proved
    v0, gl, rise, drop, point, steps_of = w[0], w[1], w[3], w[4], w[12], w[13]
    steps, nxt, busy = 1, 0, 0
    while True:
        for ln in range(W):         # free lanes take the next points (a point with no voltage at once)
            while point[ln] < 0 and nxt < P * K:
                p, k = divmod(nxt, K)
                hi, lo, scale, live = -np.inf, np.inf, 0.0, False
                for i in range(R):
                    for j in range(C):
                        a, c = base_r[p, k, i, j], base_c[p, k, i, j]
                        hi = max(hi, a, c)
                        lo = min(lo, a, c)
                        scale = max(scale, abs(a), abs(c))
                        q = (i * C + j) * W + ln
                        v0[q] = a - c
                        gl[q] = g_lin[p, i, j]
                        if a - c != 0.0:
                            live = True
                if live:
                    _take(w, ln, nxt, beta, rho_lin[p], hi, lo, tol * scale, R, C)
                    busy += 1
                else:       # no device sees a voltage: the lines stay at their terminals'
                    for i in range(R):
                        for j in range(C):
                            out[p, k, 0, i, j] = base_r[p, k, i, j] - 0.0
                            out[p, k, 1, i, j] = base_c[p, k, i, j] + 0.0
                nxt += 1
        n_fin, steps, status, worst = _step_settled(w, busy, beta, r_t, r, R, C, max_iter, steps, fin)
        if status:      # (−1: every point done)
            return steps, max(status, 0), worst
        for ln in fin[:n_fin]:
            p, k = divmod(point[ln], K)
            for i in range(R):
                for j in range(C):
                    q = (i * C + j) * W + ln
                    out[p, k, 0, i, j] = base_r[p, k, i, j] - drop[q]
                    out[p, k, 1, i, j] = base_c[p, k, i, j] + rise[q]
            _free(w, ln)
            busy -= 1


#: relaxations of the network in which only the read row's devices carry current that start a
#: grounded read (:func:`relax_reads`, :func:`relax_rows`; a column's adjoint, :func:`relax_columns`,
#: alike): each takes that row's ladder and its cells' column paths one contraction further (~1e-3
#: a pass on 8×8 at 0.67 Ω), three leave the sneak paths' share (~1 % of the IR drop) to the
#: relaxation, which then mostly proves a reading in one step
READ_START_PASSES = 3


@njit(inline="always")
def _row_starts(w, rr_of, on, v_read, beta, r_t, r, passes, cur, drop, grow, lw, R, C):  # pragma: no cover - compiled
    """The lanes ``on`` (W,)'s ``u`` (their ``gl`` written) set to the solution of the network in
    which only row ``rr_of[ln]``'s devices carry current, ``passes`` relaxations of that row's ladder:
    each cell of the row at ``v_read`` minus its row's drop minus its column's rise
    ``(r_t + r·(R − 1 − rr))·I_j``; every column's rise below and at that row from its one current
    (what the sneak paths add, ~1 % of the IR drop on 8×8 at 0.67 Ω, is left to the relaxation).
    The start of a grounded read (:func:`relax_reads`: every lane at once, worked across the lanes;
    :func:`relax_rows`: the lanes that took a read in one refill).  ``cur``, ``drop``, ``grow``:
    (C·W,) and ``lw`` (2·C·W + W,: each lane's column paths, the ladder's prefix sums and its
    first term) work arrays: each lane's row of devices and column paths are gathered once, and
    the passes run over every lane's values as one run of contiguous memory (a lane not ``on``
    relaxes whatever its arrays hold, unread; each lane's arithmetic is its own, in
    the same order as lane by lane: the same answers bit for bit, and on 23 calls captured from a
    10 000 × 8×8 tune the reads 0.435 → 0.39 µs each, with the rise written row by row)."""
    gl, u = w[1], w[2]
    r0 = r_t - r
    CW = C * W
    colr, pre, first = lw[:CW], lw[CW:2 * CW], lw[2 * CW:]
    for ln in range(W):
        if not on[ln]:
            continue
        rr = rr_of[ln]
        cr = r_t + r * (R - 1 - rr)             # the read row's cells' column paths to their terminals
        for j in range(C):
            grow[j * W + ln] = gl[(rr * C + j) * W + ln]
            colr[j * W + ln] = cr
    for k in range(CW):
        cur[k] = 0.0
        drop[k] = 0.0
    for _ in range(passes):
        for k in range(CW):
            x = v_read - drop[k] - colr[k] * cur[k]
            cur[k] = grow[k] * (x * (1.0 + beta * x * x))
        for k in range(CW - W, CW):             # suffix sums S_j
            drop[k] = 0.0 + cur[k]
        for k in range(CW - W - 1, -1, -1):
            drop[k] = drop[k + W] + cur[k]
        for k in range(W):                      # the ladder's drop, r·Σ_{s≤j} S_s + (r_t − r)·S_0
            first[k] = r0 * drop[k]
        for k in range(W):
            a = 0.0 + drop[k]
            pre[k] = a
            drop[k] = r * a + first[k]
        for k in range(W, CW):
            a = pre[k - W] + drop[k]
            pre[k] = a
            drop[k] = r * a + first[k % W]
    for ln in range(W):
        if not on[ln]:
            continue
        rr = rr_of[ln]
        for i in range(R):
            tail = r0 + r * (R - max(i, rr))     # column j's rise at row i per unit current
            if i == rr:
                for j in range(C):
                    u[(i * C + j) * W + ln] = tail * cur[j * W + ln] + drop[j * W + ln]
            else:
                for j in range(C):
                    u[(i * C + j) * W + ln] = tail * cur[j * W + ln] + 0.0




@njit(types.Tuple((_I, _I, _F))(_C[3], _F, _IN[1], _F, _F, _IN[1], _F, _F, _I, _OUTC[5], _OUTC[3]),
      cache=True, nogil=True)
def relax_rows(g_lin, beta, rho_lin, v_read, tol, i_tol, r_t, r, max_iter, out, reads):  # pragma: no cover - compiled
    """The grounded reads of every row of every chip (the line model's readings,
    :meth:`~programming.ir_correction.ReadCorrection.model`), each relaxed on its own: read k of
    chip b drives row k at ``v_read``, V, every other line at 0 V, on devices
    ``I = g_lin·v·(1 + β v²)`` (``g_lin`` (B, R, C), S; ``rho_lin`` (B,) their bounds).

    Each read starts from the network in which only its row's devices carry current
    (:func:`_row_starts`), takes the steps of :func:`_step` and stops at the first iterate ``u``
    within ``tol·|v_read|`` of the solution at every node (bound ``ρ/(1 − ρ)·|Δu|``, as
    :func:`relax_points`) whose readings are within ``i_tol[b]``, A: each column's reading, the sum
    of its devices' currents at that iterate, is within ``Σ_i g_ij·k·ρ/(1 − ρ)·|Δu|`` of the
    solution's (mean-value theorem; ``k = 1 + 3|β|·span²`` the devices' largest slope over their
    linear one, ``ρ = rho_lin·k``), so the node bound at most ``i_tol/(k·G)`` holds it (``G`` the
    chip's largest column sum of ``g_lin``).  Writes ``out`` (B, R, 2, R, C): each read's row and
    column node voltages (``−drop``, ``+rise``), and ``reads`` (B, R, C): its column currents, A.

    Returns:
        (steps, status, worst): as :func:`relax_points`.
    """
    B, R, C = g_lin.shape
    P = B * R
    w = _work(R, C)
    fin = np.zeros(W, np.int64)         # the lanes a step proved
    v0, gl, u, rise, drop, point, steps_of = w[0], w[1], w[2], w[3], w[4], w[12], w[13]
    cur, rdrop, rr_of = np.zeros(C * W), np.zeros(C * W), np.zeros(W, np.int64)
    grow, lw = np.zeros(C * W), np.zeros(2 * C * W + W)      # (:func:`_row_starts`' work arrays)
    start = np.zeros(W, np.bool_)       # the lanes that took a read since the last step
    hi, lo = max(v_read, 0.0), min(v_read, 0.0)
    k_dev = _slope_bound(beta, hi, lo)
    steps, nxt, busy = 1, 0, 0
    while True:
        for ln in range(W):         # free lanes take the next reads
            while point[ln] < 0 and nxt < P:
                b, k = divmod(nxt, R)
                top = 0.0
                for j in range(C):
                    s = 0.0
                    for i in range(R):
                        s += g_lin[b, i, j]
                    top = max(top, s)
                for i in range(R):
                    a = v_read if i == k else 0.0
                    for j in range(C):
                        q = (i * C + j) * W + ln
                        v0[q] = a
                        gl[q] = g_lin[b, i, j]
                atol = tol * abs(v_read)
                if top > 0.0:
                    atol = min(atol, i_tol[b] / (k_dev * top))
                if v_read != 0.0:
                    _take(w, ln, nxt, beta, rho_lin[b], hi, lo, atol, R, C)
                    rr_of[ln] = k
                    start[ln] = True
                    busy += 1
                else:       # no device sees a voltage: the lines stay at 0 V, no current
                    for i in range(R):
                        for j in range(C):
                            out[b, k, 0, i, j] = 0.0
                            out[b, k, 1, i, j] = 0.0
                    for j in range(C):
                        reads[b, k, j] = 0.0
                nxt += 1
        if start.any():     # the reads just taken start together (their passes across the lanes at once)
            _row_starts(w, rr_of, start, v_read, beta, r_t, r, READ_START_PASSES, cur, rdrop, grow, lw, R, C)
            start[:] = False
        n_fin, steps, status, worst = _step_settled(w, busy, beta, r_t, r, R, C, max_iter, steps, fin)
        if status:      # (−1: every point done)
            return steps, max(status, 0), worst
        for ln in fin[:n_fin]:
            b, k = divmod(point[ln], R)
            for j in range(C):
                cur[j] = 0.0
            for i in range(R):
                for j in range(C):
                    q = (i * C + j) * W + ln
                    out[b, k, 0, i, j] = (v_read if i == k else 0.0) - drop[q]
                    out[b, k, 1, i, j] = 0.0 + rise[q]
                    x = v0[q] - u[q]
                    cur[j] += gl[q] * (x * (1.0 + beta * x * x))
            for j in range(C):
                reads[b, k, j] = cur[j]
            _free(w, ln)
            busy -= 1


@njit(inline="always")
def _column_start(w, ln, cj, v_col, r_t, r, passes, cur, rise, R, C):  # pragma: no cover - compiled
    """Lane ``ln``'s ``u`` (its ``v0`` and ``gl`` written; linear devices) set to the solution of
    the network in which only column ``cj``'s devices carry current, ``passes`` relaxations of that
    column's ladder (:func:`_row_starts` with rows and columns exchanged): each cell of column
    ``cj`` at ``v_col`` (its voltage with no devices) minus its row's drop ``(r_t + r·cj)·I_i`` minus
    its column's rise; every row's drop from its one current.  ``cur``, ``rise``: (R,) work arrays."""
    gl, u = w[1], w[2]
    r0 = r_t - r
    rr = r_t + r * cj
    for i in range(R):
        cur[i] = 0.0
        rise[i] = 0.0
    for _ in range(passes):
        for i in range(R):
            cur[i] = gl[(i * C + cj) * W + ln] * (v_col - rise[i] - rr * cur[i])
        acc = 0.0
        for i in range(R):                  # prefix sums P_i, then the ladder's rise
            acc += cur[i]
            rise[i] = acc
        last = r0 * rise[R - 1]
        acc = 0.0
        for i in range(R - 1, -1, -1):
            acc += rise[i]
            rise[i] = r * acc + last
    for i in range(R):
        for j in range(C):
            tail = r0 + r * (min(j, cj) + 1)     # row i's drop at column j per unit current
            u[(i * C + j) * W + ln] = tail * cur[i] + (rise[i] if j == cj else 0.0)


@njit(types.Tuple((_I, _I, _F))(_C[3], _IN[1], _F, _F, _F, _I, _OUTC[5]), cache=True, nogil=True)
def relax_columns(g_lin, rho_lin, tol, r_t, r, max_iter, out):  # pragma: no cover - compiled
    """:meth:`~programming.line_batch.BatchLines.solve_column_units` of every column of every chip
    (the line model's adjoints): point j of chip b a unit current (1 A) into column j's node next
    to its terminal, linear devices ``g_lin`` (B, R, C), S (``rho_lin`` (B,) their bounds); each
    relaxed on its own from the network in which only its column's devices carry current
    (:func:`_column_start`) until its node voltages are proven within ``tol`` of their largest
    value with no devices (``r_t``·1 A), as :func:`relax_points`.  Writes ``out`` (B, C, 2, R, C):
    row and column node voltages, V.  Returns (steps, status, worst) as :func:`relax_points`."""
    B, R, C = g_lin.shape
    P = B * C
    w = _work(R, C)
    fin = np.zeros(W, np.int64)         # the lanes a step proved
    v0, gl, rise, drop, point, steps_of = w[0], w[1], w[3], w[4], w[12], w[13]
    cur, crise = np.zeros(R), np.zeros(R)
    unit = r * 1.0 + (r_t - r) * 1.0                      # the column's rise with no devices (solve_column_units')
    steps, nxt, busy = 1, 0, 0
    while True:
        for ln in range(W):
            while point[ln] < 0 and nxt < P:
                b, cj = divmod(nxt, C)
                for i in range(R):
                    for j in range(C):
                        q = (i * C + j) * W + ln
                        v0[q] = 0.0 - (unit if j == cj else 0.0)
                        gl[q] = g_lin[b, i, j]
                _take(w, ln, nxt, 0.0, rho_lin[b], max(unit, 0.0), min(unit, 0.0), tol * abs(unit), R, C)
                _column_start(w, ln, cj, -unit, r_t, r, READ_START_PASSES, cur, crise, R, C)
                busy += 1
                nxt += 1
        n_fin, steps, status, worst = _step_settled(w, busy, 0.0, r_t, r, R, C, max_iter, steps, fin)
        if status:      # (−1: every point done)
            return steps, max(status, 0), worst
        for ln in fin[:n_fin]:
            b, cj = divmod(point[ln], C)
            for i in range(R):
                for j in range(C):
                    q = (i * C + j) * W + ln
                    out[b, cj, 0, i, j] = 0.0 - drop[q]
                    out[b, cj, 1, i, j] = (unit if j == cj else 0.0) + rise[q]
            _free(w, ln)
            busy -= 1


@njit(types.Tuple((_I, _I, _F))(_IN[3], _INI[1], _INI[1], _F, _F, _IN[1], _F, _F, _F, _I, _OUT[2]),
      cache=True, nogil=True)
def relax_reads(g_lin, chip, row, v_read, beta, rho_lin, tol, r_t, r, max_iter, out):  # pragma: no cover - compiled
    """Grounded reads, each relaxed on its own until its readings are proven: read ``p`` drives row
    ``row[p]`` of chip ``chip[p]`` at ``v_read``, V, every other line at 0 V, on devices
    ``I = g_lin·v·(1 + β v²)`` (``g_lin`` (B, R, C), S: the chips' linear conductances, the relaxed
    network's; ``rho_lin`` (B,) their bounds); writes the current out of every column into its
    driver, A, ``out`` (P, C).

    Each read starts from the solution of the network in which only its row's devices carry
    current (:data:`READ_START_PASSES` relaxations of that row's ladder, each cell through its
    column's path ``r_t + r·(R − 1 − row)``: what the sneak paths leave out is ~1 % of the IR drop),
    then takes the steps ``u ← (L_r⁻¹ + L_c⁻¹) I(v0 − u)`` of :func:`_step` until its readings'
    bound holds, and reads each column as the sum of its devices' currents at the last iterate.
    Bound: with the step's largest move ``|Δu|`` and the contraction ``ρ = rho_lin·k``
    (``k = 1 + 3|β|·span²``, the devices' largest slope over their linear one for cell voltages
    within the terminals' spread plus 1 %), the iterate is within ``ρ/(1 − ρ)·|Δu|`` of the
    solution at every node, so column j's reading within ``Σ_i g_ij·k·ρ/(1 − ρ)·|Δu|`` (mean-value
    theorem); a read stops when that is at most ``tol`` times ``|v_read|`` times its chip's mean
    ``g_lin`` for every column (the swept path's bound on readings, FACTORED_READ_TOL).  The reads
    run W at a time, side by side (their starts' row scans and their readings worked across the
    lanes at once); each read's answer is its own (its own start and steps: the same in any batch).

    Returns:
        (steps, status, worst): the most steps any read took; 0 proven, 1 non-finite node
        voltages, 2 a read not proven in ``max_iter`` steps (``worst`` its last reading bound, A).
    """
    B, R, C = g_lin.shape
    P = chip.shape[0]
    if v_read == 0.0:       # no device sees a voltage: no current
        for p in range(P):
            for j in range(C):
                out[p, j] = 0.0
        return 1, 0, 0.0
    w = _work(R, C)
    v0, gl, u, move, total = w[0], w[1], w[2], w[16], w[17]
    k_dev = _slope_bound(beta, max(v_read, 0.0), min(v_read, 0.0))
    rr_of, fac, lim, done = np.zeros(W, np.int64), np.zeros(W), np.zeros(W), np.zeros(W, np.bool_)
    cur, drop = np.zeros(C * W), np.zeros(C * W)
    grow, lw = np.zeros(C * W), np.zeros(2 * C * W + W)      # (:func:`_row_starts`' work arrays)
    c_of, g_col, rd = np.zeros(W, np.int64), np.zeros(C * W), np.zeros(C * W)
    every = np.ones(W, np.bool_)        # (every lane starts: an idle one has no device, no voltage)
    steps = 1
    for p0 in range(0, P, W):
        m = min(W, P - p0)
        for ln in range(W):
            if ln < m:
                c_of[ln], rr_of[ln], done[ln] = chip[p0 + ln], row[p0 + ln], False
            else:           # an idle lane: no device, no voltage, nothing to prove
                c_of[ln], rr_of[ln], done[ln] = -1, 0, True
        for ln in range(W):         # every lane's devices (an idle lane's: none)
            c = c_of[ln]
            if c >= 0:
                for i in range(R):
                    for j in range(C):
                        gl[(i * C + j) * W + ln] = g_lin[c, i, j]
            else:
                for q in range(R * C):
                    gl[q * W + ln] = 0.0
        CW = C * W
        for x in range(CW):
            g_col[x] = 0.0
        for i in range(R):          # their column sums, every lane's row at once
            gi = gl[i * CW:(i + 1) * CW]
            for x in range(CW):
                g_col[x] += gi[x]
        for x in range(R * CW):     # their terminals' voltages: v_read on each lane's read row
            v0[x] = 0.0
        for ln in range(W):
            if c_of[ln] >= 0:
                for j in range(C):
                    v0[(rr_of[ln] * C + j) * W + ln] = v_read
        for ln in range(m):         # (an idle lane is never checked)
            top_g, tot_g = 0.0, 0.0
            for j in range(C):
                top_g = max(top_g, g_col[j * W + ln])
                tot_g += g_col[j * W + ln]
            rho = rho_lin[c_of[ln]] * k_dev
            fac[ln] = k_dev * top_g * rho / (1.0 - rho)
            lim[ln] = tol * abs(v_read) * (tot_g / (R * C))
        # the starts: the read rows' own network relaxed, every lane at once
        _row_starts(w, rr_of, every, v_read, beta, r_t, r, READ_START_PASSES, cur, drop, grow, lw, R, C)
        n_left, n = m, 0
        while n_left:
            _step(w, beta, r_t, r, R, C)
            n += 1
            fresh = False
            for ln in range(m):
                if done[ln]:
                    continue
                tot, step = total[ln], move[ln]
                if not (tot - tot == 0.0 and step < np.inf):
                    return max(steps, n), 1, step
                bound = fac[ln] * step
                if bound > lim[ln]:
                    if n >= max_iter:
                        return max(steps, n), 2, bound
                    continue
                done[ln] = True
                n_left -= 1
                if not fresh:       # every lane's readings at this iterate, at once
                    fresh = True
                    _lanes_sums(w, beta, False, rd, R, C)
                for j in range(C):
                    out[p0 + ln, j] = rd[j * W + ln]
        steps = max(steps, n)
    return steps, 0, 0.0


@njit(inline="always")
def _cell_power(x, gv, beta, norm):  # pragma: no cover - compiled
    """The power into a device of read conductance ``gv`` at cell voltage ``x``, W."""
    return x * (gv * x * ((1.0 + beta * x * x) / norm))


@njit(inline="always")
def _beyond(x, s, vs, vr):  # pragma: no cover - compiled
    """Whether cell voltage ``x`` with the width term ``s`` is beyond a threshold (``vs`` SET,
    ``vr`` RESET): ``v_eq = sign(x)·max(|x| + s, 0)`` above ``vs`` or below ``−vr``; with positive
    thresholds (as every population draws them) the same test as on v_eq, without the branches
    on the sign of x that the unselected cells' near-0 V mispredict."""
    m = max(abs(x) + s, 0.0)
    return ((x > 0.0) & (m > vs)) | ((x < 0.0) & (m > vr))


@njit(inline="always")
def _lowest(vth_set, vth_reset, c, R, C):  # pragma: no cover - compiled
    """The lowest threshold of chip ``c`` (SET or RESET, V; +inf if none is a number): a cell voltage
    whose ``max(|x| + s, 0)`` is at most it is beyond no threshold of the chip (:func:`_beyond`)."""
    lo = np.inf
    for i in range(R):
        for j in range(C):
            t = min(vth_set[c, i, j], vth_reset[c, i, j])
            if t < lo:          # (a NaN threshold is beyond no voltage: never the lowest)
                lo = t
    return lo


@njit(inline="always")
def _pulse_done(p, ln, chip, sel_r, sel_c, shift, vth_set, vth_reset, a_t, c_t, drop, rise, R, C,
                hit_point, hit_flat, hit_v, n_hit, top, lowest):  # pragma: no cover - compiled
    """What :func:`relax_pulses` keeps of pulse ``p`` relaxed in lane ``ln`` (its terminals ``a_t``,
    ``c_t`` (R·W, C·W) and the lane's drop and rise) but its power (:func:`_lanes_power`): its
    devices beyond a threshold from ``n_hit`` on, in cell order; returns the new ``n_hit`` and
    ``top``.  ``lowest``: the chip's lowest threshold (:func:`_lowest`), so that only the cells
    that reach it (the selected cell and a few half-selected ones) load their own two thresholds."""
    c, sr, sc = chip[p], sel_r[p], sel_c[p]
    s = shift[p]
    for i in range(R):
        for j in range(C):
            q = i * C + j
            x = (a_t[i * W + ln] - drop[q * W + ln]) - (c_t[j * W + ln] + rise[q * W + ln])
            if i != sr or j != sc:
                top = max(top, abs(x))
            if max(abs(x) + s, 0.0) > lowest and _beyond(x, s, vth_set[c, i, j], vth_reset[c, i, j]):
                hit_point[n_hit], hit_flat[n_hit], hit_v[n_hit] = p, q, x
                n_hit += 1
    return n_hit, top


@njit(inline="always")
def _lanes_power(w, beta, pw, e_of, R, C):  # pragma: no cover - compiled
    """Every lane's power into its devices at its iterate, ``Σ x·I(x)`` over its cells
    (:func:`_lanes_sums` by power, then over the columns), into ``e_of`` (W,), W; ``pw`` (C·W,) a
    work array.  (The power cell by cell in each pulse's own scalar pass cost ~0.1 µs of a 0.66 µs
    pulse on 8×8 chips; this pass, ~0.05 µs: 105 calls captured from a 10 000 × 8×8 tune, best of
    11.  The sum differs from that one's only in its rounding, ~1e-15 relative.)"""
    _lanes_sums(w, beta, True, pw, R, C)
    for ln in range(W):
        e_of[ln] = 0.0
    for j in range(C):
        for ln in range(W):
            e_of[ln] += pw[j * W + ln]


@njit(inline="always")
def _given_pulses(g, chip, sel_r, sel_c, norm, shift, vth_set, vth_reset, beta, given, energy, hit_point, hit_flat,
                  hit_v):  # pragma: no cover - compiled
    """What :func:`relax_pulses` keeps of pulses whose node voltages are ``given`` (P, 2, R, C):
    each one's power into ``energy``, its devices beyond a threshold (pulse then cell order) and
    the largest |cell voltage| of any unselected cell.  Row by row: the row's cell voltages,
    powers and count of devices beyond a threshold in one loop without a branch (which the
    compiler vectorizes where the arrays are contiguous: :func:`given_pulses`), then the powers
    summed in cell order and the largest |voltage| taken (a pulse's sum cell by cell, as one loop
    doing all three adds them: the same answers bit for bit), and the row's devices beyond a
    threshold listed only where it has some.  Returns (hits, top)."""
    B, R, C = g.shape
    n_hit, top = 0, 0.0
    xs, pw = np.empty(C), np.empty(C)
    for p in range(given.shape[0]):
        c, sr, sc = chip[p], sel_r[p], sel_c[p]
        e = 0.0
        s = shift[p]
        for i in range(R):
            beyond = 0
            for j in range(C):
                x = given[p, 0, i, j] - given[p, 1, i, j]
                xs[j] = x
                pw[j] = _cell_power(x, g[c, i, j], beta, norm)
                beyond += _beyond(x, s, vth_set[c, i, j], vth_reset[c, i, j])
            if i == sr:
                for j in range(C):
                    e += pw[j]
                    if j != sc:
                        top = max(top, abs(xs[j]))
            else:
                for j in range(C):
                    e += pw[j]
                    top = max(top, abs(xs[j]))
            if beyond:
                for j in range(C):
                    if _beyond(xs[j], s, vth_set[c, i, j], vth_reset[c, i, j]):
                        hit_point[n_hit], hit_flat[n_hit], hit_v[n_hit] = p, i * C + j, xs[j]
                        n_hit += 1
        energy[p] = e
    return n_hit, top


@njit(types.Tuple((_I, _F))(_C[3], _INI[1], _INI[1], _INI[1], _F, _IN[1], _C[3], _C[3], _F, _C[4], _OUT[1],
                            _OUTI[1], _OUTI[1], _OUT[1]), cache=True, nogil=True)
def given_pulses(g, chip, sel_r, sel_c, norm, shift, vth_set, vth_reset, beta, given, energy, hit_point, hit_flat,
                 hit_v):  # pragma: no cover - compiled
    """:func:`relax_pulses` of V/2 or V/3 pulses whose node voltages are ``given`` (P, 2, R, C),
    with the chips' conductances ``g``, thresholds and ``given`` C-contiguous (a swept solve's:
    the simulated chip's large arrays), so that each row's cells are worked as vectors
    (:func:`_given_pulses`; the same answers bit for bit).  Measured on a 64×64 tune at 0.67 Ω
    (65 138 pulses, ~27 a call): 0.34 s against relax_pulses' 0.83 s for the same pulses (its
    arrays of any layout keep every loop scalar).  Returns (hits, top)."""
    return _given_pulses(g, chip, sel_r, sel_c, norm, shift, vth_set, vth_reset, beta, given, energy, hit_point,
                         hit_flat, hit_v)


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
    voltage of :func:`mock_hw.device.equivalent_voltage`, ``shift`` its width term; thresholds
    positive) — as its pulse, its flat index in its chip (i·C + j) and its cell voltage, V.

    The pulses relax W at a time in lockstep: a group's lanes are set up together, stepped until
    every one of them is proven (each stops being read at its own first proven step), then the
    next W (pulses mostly all stop after the same 1-2 steps; lanes that each took the next pulse
    as they finished spent more on their bookkeeping than the few steps they saved: measured on
    105 captured calls of a 10 000 × 8×8 tune, 0.649 against 0.740 µs a pulse, best of 11).

    Returns:
        (steps, status, worst, hits, top): as :func:`relax_points`, the number of devices
        written, and the largest |cell voltage| of any unselected cell, V (0 without pulses).
    """
    B, R, C = g.shape
    P = chip.shape[0]
    n_hit, top = 0, 0.0
    if given.shape[0] == P and P > 0:
        # (no lanes' working arrays: ~1.8 MB a call on 64×64, 1.5 MB of it zeroed, none of it read here)
        n_hit, top = _given_pulses(g, chip, sel_r, sel_c, norm, shift, vth_set, vth_reset, beta, given, energy,
                                   hit_point, hit_flat, hit_v)
        return 1, 0, 0.0, n_hit, top
    w = _work(R, C)
    v0, gl, u, rise, drop, move, total = w[0], w[1], w[2], w[3], w[4], w[16], w[17]
    a_t, c_t = np.zeros(R * W), np.zeros(C * W)
    lowest, low_chip, low = np.empty(W), -1, np.inf      # per lane its chip's lowest threshold
    pw, e_of = np.empty(C * W), np.zeros(W)              # (:func:`_lanes_power`)
    fac, lim, done = np.zeros(W), np.zeros(W), np.zeros(W, np.bool_)
    # lanes finish out of order: each pulse's devices are written where it finishes, then put in
    # pulse order (first, count: where its run of devices starts and how many)
    first, count = np.empty(P, np.int64), np.zeros(P, np.int64)
    steps, in_order, last = 1, True, -1
    for p0 in range(0, P, W):       # W pulses side by side, each from u = 0 until it is proven
        m = min(W, P - p0)
        n_left = 0
        for ln in range(W):
            done[ln] = True
            if ln >= m:         # an idle lane: no device, no voltage
                for q in range(R * C):
                    v0[q * W + ln] = 0.0
                    gl[q * W + ln] = 0.0
                    u[q * W + ln] = 0.0
                continue
            p = p0 + ln
            c, sr, sc, vp = chip[p], sel_r[p], sel_c[p], v[p]
            if c != low_chip:       # (pulses come chip by chip: once per chip, mostly)
                low_chip, low = c, _lowest(vth_set, vth_reset, c, R, C)
            lowest[ln] = low
            a_un, c_un = vp * frac_row, vp * frac_col
            hi, lo, scale = -np.inf, np.inf, 0.0
            for i in range(R):
                x = vp if i == sr else a_un
                a_t[i * W + ln] = x
                hi, lo, scale = max(hi, x), min(lo, x), max(scale, abs(x))
            for j in range(C):
                x = 0.0 if j == sc else c_un
                c_t[j * W + ln] = x
                hi, lo, scale = max(hi, x), min(lo, x), max(scale, abs(x))
            live = False
            for i in range(R):
                for j in range(C):
                    x = a_t[i * W + ln] - c_t[j * W + ln]
                    q = (i * C + j) * W + ln
                    v0[q] = x
                    gl[q] = g_lin[c, i, j]
                    u[q] = 0.0
                    if x != 0.0:
                        live = True
            if live:
                rho = rho_lin[c] * _slope_bound(beta, hi, lo)
                fac[ln], lim[ln], done[ln] = rho / (1.0 - rho), tol * scale, False
                n_left += 1
                continue
            for q in range(R * C):      # no device sees a voltage: no drop, no rise
                drop[q * W + ln] = 0.0
                rise[q * W + ln] = 0.0
            in_order = in_order and p > last
            last, first[p] = p, n_hit
            energy[p] = 0.0
            n_hit, top = _pulse_done(p, ln, chip, sel_r, sel_c, shift, vth_set, vth_reset, a_t, c_t, drop, rise,
                                     R, C, hit_point, hit_flat, hit_v, n_hit, top, lowest[ln])
            count[p] = n_hit - first[p]
        n = 0
        while n_left:
            _step(w, beta, r_t, r, R, C)
            n += 1
            powered = False
            for ln in range(m):
                if done[ln]:
                    continue
                tot, step = total[ln], move[ln]
                if not (tot - tot == 0.0 and step < np.inf):
                    return max(steps, n), 1, step, n_hit, top
                if not fac[ln] * step <= lim[ln]:
                    if n >= max_iter:
                        return max(steps, n), 2, fac[ln] * step, n_hit, top
                    continue
                p = p0 + ln
                in_order = in_order and p > last
                last, first[p] = p, n_hit
                if not powered:     # (every lane's power at this iterate, at once)
                    powered = True
                    _lanes_power(w, beta, pw, e_of, R, C)
                energy[p] = e_of[ln]
                n_hit, top = _pulse_done(p, ln, chip, sel_r, sel_c, shift, vth_set, vth_reset, a_t, c_t, drop, rise,
                                         R, C, hit_point, hit_flat, hit_v, n_hit, top, lowest[ln])
                count[p] = n_hit - first[p]
                done[ln] = True
                n_left -= 1
        steps = max(steps, n)
    if not in_order:        # the devices in pulse then cell order
        hp, hf, hv = hit_point[:n_hit].copy(), hit_flat[:n_hit].copy(), hit_v[:n_hit].copy()
        at = 0
        for p in range(P):
            for h in range(first[p], first[p] + count[p]):
                hit_point[at], hit_flat[at], hit_v[at] = hp[h], hf[h], hv[h]
                at += 1
    return steps, 0, 0.0, n_hit, top


@njit(types.Array(types.int64, 1, "C")(_C[3], _OUTC[3], _INI[1]), cache=True, nogil=True)
def changed_chips(g, seen, chips):  # pragma: no cover - compiled
    """The chips among ``chips`` (indices, ascending; every other chip is known to be unchanged)
    whose values ``g`` (B, R, C) differ anywhere from ``seen`` (same shape), in that order; their
    chips of ``seen`` are then brought to ``g``: one pass, no whole-batch temporaries.  Both
    C-contiguous: each chip's values are compared as one flat run, counting the differing ones (a
    reduction the compiler vectorizes; 4x faster than a flag set per value)."""
    B, R, C = g.shape
    n_ = R * C
    gf, sf = g.reshape(B * n_), seen.reshape(B * n_)
    out = np.empty(chips.size, np.int64)
    n = 0
    for b in chips:
        o = b * n_
        nd = 0
        for q in range(n_):
            nd += gf[o + q] != sf[o + q]
        if nd:
            for q in range(n_):
                sf[o + q] = gf[o + q]
            out[n] = b
            n += 1
    return out[:n].copy()
