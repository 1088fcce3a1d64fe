"""Line sweeps: the nonlinear crossbar network with every terminal driven, solved by block
Gauss-Seidel over its lines in compiled code (numba), from a warm start (SI units: S, V, A, Ω).

The network is :class:`programming.line_model.LineNetwork`'s (row i's terminal at its column-0
end, column j's at its row-(R−1) end, ``r_line`` per segment, ``r_access`` in series with each
terminal, device (i, j) between row node (i, j) and column node (i, j) with the cubic I-V
``I = g·V·(1 + β V²)/(1 + β v_ref²)``).  A sweep takes one Newton step of KCL on every row line
with the column nodes held (each line a tridiagonal system: its segments, its terminal and the
slopes of its devices; every row at once by the Thomas algorithm), then on every column line with
the row nodes held.  On a 64×64 chip at 0.67 Ω a sweep gains a factor ~15 (the lines' own drop is
solved exactly by their Newton steps; what is left is the weak coupling of a line to the others
through the devices), and it costs ~8·10⁴ node updates, against ~10⁶ multiply-adds per operating
point for a substitution in the block factorization — and no factorization at all.

**Stop, a proven bound.**  Before each sweep the KCL residual ``F`` of every node is evaluated; a
point stops when ``z·Σ|F| ≤ tol``, ``z = r_line + r_access + r_line·(max(R, C) − 1)``.  Why it
bounds the error of every node voltage: ``F(x) = J̄ (x − x*)`` with ``J̄`` the mean of the KCL
Jacobians along the segment from ``x`` to the solution ``x*``; each is a conductance matrix (line
segments, terminal paths to the driven terminals, devices at their slopes dI/dV > 0 for β ≥ 0), a
symmetric M-matrix, so ``J̄⁻¹`` is entrywise positive and its largest entry of column k is its
diagonal (a current fed into one node raises no node above it) ≤ the resistance from node k to its
own line's terminal along the line alone (every other path only lowers it), at most ``z``.  Hence
``|x − x*|_m ≤ Σ_k (J̄⁻¹)_mk |F_k| ≤ z·Σ|F|``.  The bound is pessimistic (the residual is spread
over many nodes whose transfer resistances to one another are far below ``z``): measured on 64×64
at 0.67 Ω the node error left is ~1/100 of it.

**The lines' bound** (``sharp``: the simulator's pulses), ~1/70 of the global one and within ~1.3×
of the error left (a sweep less per point on 64×64).  Line l's rows of ``J̄ e = F`` (``e = x − x*``)
read ``(L_l + D_l) e_l = F_l + D_l e'_l``: ``L_l`` the line alone (its segments and its terminal
path), ``D_l`` the diagonal of its devices' mean slopes ``d̄``, ``e'_l`` the errors of the crossing
lines' nodes at its devices.  ``L_l`` is a nonsingular M-matrix and ``L_l + D_l ≥ L_l`` a Z-matrix,
so ``0 ≤ (L_l + D_l)⁻¹ ≤ L_l⁻¹`` (M-matrix comparison), and ``(L_l⁻¹)_mk = r_t + r·min(p_m, p_k) ≤ z_k``
(``p`` the position from the terminal, ``r_t = r_line + r_access``, ``z_k = r_t + r·p_k``).  With
``E_l`` the largest error on line l: ``E_l ≤ A_l + Σ_{k∈l} z_k d̄_k E_cross(k)``, ``A_l = Σ_{k∈l} z_k|F_k|``.
With ``κ_l = Σ_{k∈l} z_k d̄_k``, the largest row error ``M_R ≤ max A_R + max κ_R · M_C`` and likewise
``M_C``; where ``max κ_R · max κ_C < 1``: ``M_R ≤ (max A_R + max κ_R · max A_C)/(1 − max κ_R · max κ_C)``,
``M_C ≤ max A_C + max κ_C · M_R``.  Then each line through the crossing lines' own ``A``:
``E_C,j ≤ A_C,j + Σ_i z_i d̄_ij (A_R,i + κ_R,i M_C) ≤ A_C,j + B_C,j + max κ_R · κ_C,j · M_C``
(``B_C,j = Σ_i z_i d̄_ij A_R,i``), likewise ``E_R,i``; a read's residual sits on a few lines (its
own row, its changed cells'), which the maxima alone spread over every line.  A terminal current's
error is ``g_term`` times its terminal node's and ``(L_l⁻¹)_{0k} = r_t``: at most
``Σ_{k∈l}|F_k| + Σ_{k∈l} d̄_k E_cross(k) ≤ S_l + Σ_k d̄_k A_cross(k) + max κ_cross · max E_l' · Σ_k d̄_k``
(``row_currents`` False: the column terminals' only, a grounded read's readings).  The slopes:
``d̄ = g·(1 + 3β v²)/(1 + β v_ref²)`` at some ``v`` between a cell's voltage now and at the
solution, which differ by at most twice the global bound ``z·Σ|F|``.  The answers' errors then
reach up to the tolerance (with the global bound alone ~1/100 of it), which readings cannot
afford: a line calibration averages a chip's readings far below their tolerance (and the tuner's
line model's fits compare evaluations far below theirs), so reads keep the global bound.

**Warm starts.**  A solve starts from the caller's node voltages (``x`` in and out): the solution
of the same operating point on the conductances of an earlier call, scaled to the new drive, sits
within a few 1e-5 of the new one when only a few cells changed (a tuner's next read of a cell after
one pulse, its next pulse a ramp step higher), so one or two sweeps reach the tolerance.
:class:`WarmStarts` keeps them, one per operating point up to its drive's scale and sign (the
network is odd: a pulse of the opposite polarity starts from the negated solution).  A point whose
solution moves mostly with one cell's conductance (a read's sensed cell: the cell is pulsed
between two reads of its row) starts from its kept solution plus its last change, times that
cell's change of conductance since over its change then: the response of the linear network to
one cell's change δg is a fixed vector times δg/(1 + δg·R), R the resistance the network shows
the cell (≲ 50 Ω at 0.67 Ω on 64×64: linear to ~1e-3 for a pulse's 10 µS).  On a 64×64 tune at
0.67 Ω a read then takes 2.4 sweeps instead of 3.0.  What is then left of a read's start residual
sits at the other lanes' pulsed cells (each ~1/200 of its effect on a read, ~30 of them: 1/6 to
1/2 of the start residual before, over 90 % after its own cell's extrapolation).  The same vector
is the response of *any* read to that cell's change of current (the linear network's, up to the
devices' slopes at the read's own voltages), and the other points of the call whose focus cell
it is carry it in their kept changes: a point's start also takes, for each other point's focus
cell (k, l) whose kept change is known, that change on its two lines (row k's row nodes, column
l's column nodes, where the response sits), times the cell's change of current here over its
change there — its voltage in this point's start over that in the other's kept solution, and its
change of conductance since the kept solutions less what this point's own extrapolation already
carries (``a`` times the change then) over the change then.  Measured on 750 sweep calls captured
from a 64×64 tune at 0.67 Ω (steps 400–900), the start residuals of reads fall ~5× (median) and a
read takes 2.19 sweeps instead of 2.65 there.

numba is imported when a solve is first made (never on the command line's ``--help`` path); the
kernel is compiled once and cached on disk (``cache=True``).
"""
from __future__ import annotations

import numpy as np

from .line_batch import BatchLines, batch_suits, kept_network

_KERNEL = {}
_keep = None        # the sweep kernel's compiled keep of a solution (:func:`_kernel`)
#: sweeps after which a point whose residual fell less than 2× in its last four sweeps leaves the
#: sweeps for the factorized chord iteration (:func:`sweep_solve`)
SLOW_AFTER = 8
#: rounding of a node's KCL residual relative to g_seg times the largest terminal voltage (a few
#: double-precision roundings of its terms): the floor of the proven stop
ROUNDING = 8 * np.finfo(float).eps
#: the largest share of a reading (its chip's mean conductance times the point's voltage) the
#: rounding floor of the current bound may reach before a point is solved by the factorized
#: network instead (:func:`sweep_solve`): a thousandth of the 0.1 % read noise
FLOOR_REL = 1e-6
#: the largest factor a kept start's last change is extrapolated by (:class:`WarmStarts`: its focus
#: cell's change of conductance since, over its change between the start's last two solves)
EXTRAPOLATE = 4.0
#: the residual a sweep is expected to leave at most, as a share of the one before it, for the
#: pass after it to only check the stop (:func:`sweep_solve`'s kernel; a sweep leaves ~1/15 on a
#: 64×64 chip at 0.67 Ω): a guess, which changes no answer, only the work
CHECK_RATE = 0.125


def _kernel():
    """The compiled sweep kernel (compiled on first use, cached on disk by numba)."""
    if "sweep" not in _KERNEL:
        from numba import njit

        global _keep            # a module global, not a closure cell: numba caches what calls it

        @njit(cache=True, error_model="numpy")
        def _keep(p, s_out, x, pool, delta, cells, chip, gl, slot_in, ratio, k_cell, k_g, k_dg):  # pragma: no cover
            """Keep point p's solution ``x[p]`` in pool slot ``s_out``, with its change since the
            slot's last solve where its focus cell is the same (``delta``, ``k_dg``; else none
            known), the focus cell and that cell's linear coefficient now."""
            R, C = x.shape[2], x.shape[3]
            cell = cells[p]
            g_now = gl[chip[p], cell // C, cell % C] if cell >= 0 else 0.0
            if cell >= 0 and slot_in[p] == s_out and k_cell[s_out] == cell:
                # the change of the point's solution since its last solve, at this drive, and the
                # solution kept, in one pass over the slot
                q = ratio[p]
                for i in range(R):
                    for j in range(C):
                        x0, x1 = x[p, 0, i, j], x[p, 1, i, j]
                        delta[s_out, 0, i, j] = x0 - q * pool[s_out, 0, i, j]
                        delta[s_out, 1, i, j] = x1 - q * pool[s_out, 1, i, j]
                        pool[s_out, 0, i, j] = x0
                        pool[s_out, 1, i, j] = x1
                k_dg[s_out] = g_now - k_g[s_out]
            else:
                k_dg[s_out] = 0.0
                for i in range(R):
                    for j in range(C):
                        pool[s_out, 0, i, j] = x[p, 0, i, j]
                        pool[s_out, 1, i, j] = x[p, 1, i, j]
            k_cell[s_out] = cell
            k_g[s_out] = g_now

        # reassociation and contraction let the compiler vectorize the lines' sums across the
        # lines (the same machine code every run: deterministic); NaN and infinity keep their meaning.
        # error_model "numpy": a division is IEEE's (never a raised ZeroDivisionError, whose test
        # kept every Thomas division scalar: ~10 % of the kernel; the pivots are positive anyway,
        # each line's matrix an M-matrix), the same answers bit for bit
        @njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp", "nsz"})
        def sweep_points(gl, gc, chip, g_seg, g_term, row_v, col_v, x, pool, slot_in, ratio, slot_out, lim, lim_i,
                         lim_l, lim_il, rows_i, z, max_sweeps, sweeps, cells, delta, k_cell, k_g, k_dg):  # pragma: no cover - compiled
            """Solve each point p (chip ``chip[p]``, terminals ``row_v[p]`` (R,) / ``col_v[p]``
            (C,)) from ``x[p]`` (2, R, C), in place, until every node voltage is proven within
            ``lim[p]`` and every terminal current within ``lim_i[p]`` (the global bound
            ``z·Σ|F|``, ``Σ|F|``, or the lines' bound, on the row terminals' currents too where
            ``rows_i``: :func:`sweep_solve`); ``gl``, ``gc``
            (B, R, C): the devices' linear and cubic coefficients (I = v·(gl + gc·v²)).  Writes the
            sweeps taken into ``sweeps[p]`` (−1: not converged in ``max_sweeps``).  The row lines
            are worked on in a transposed copy (the row index contiguous) and the column lines in
            place (the column index contiguous), so that both solve their lines side by side.
            ``cells[p]``: the flat index of point p's focus cell (−1: none), along whose last change
            of conductance its kept start's last change ``delta`` is extrapolated (``k_cell``,
            ``k_g``, ``k_dg``: each slot's focus cell, that cell's linear coefficient when kept and
            its change since the slot's solve before: :class:`WarmStarts`)."""
            P = x.shape[0]
            R, C = x.shape[2], x.shape[3]
            n = max(R, C)
            cp, dp = np.empty((C, R)), np.empty((C, R))      # row lines' Thomas pivots and steps (transposed)
            cq, dq = np.empty((R, C)), np.empty((R, C))      # column lines'
            vrT, vcT = np.empty((C, R)), np.empty((C, R))
            glT, gcT = np.empty((C, R)), np.empty((C, R))
            F, D = np.empty(n), np.empty(n)
            # each node's resistance to its own line's terminal along that line
            r_seg, r_t = 1.0 / g_seg, 1.0 / g_term
            zr, zc = np.empty(C), np.empty(R)
            for j in range(C):
                zr[j] = r_t + r_seg * j
            for i in range(R):
                zc[i] = r_t + r_seg * (R - 1 - i)
            AR, KR, GR, BR, HR = np.empty(R), np.empty(R), np.empty(R), np.empty(R), np.empty(R)
            AC, SC, KC, GC, BC, HC = np.empty(C), np.empty(C), np.empty(C), np.empty(C), np.empty(C), np.empty(C)
            hist = np.empty(4)
            # a point whose kept slot no other point of the call starts from or keeps in keeps its
            # solution as soon as it is solved (while its node voltages are in cache); the others
            # after every point has read its start, in point order
            uses = np.zeros(pool.shape[0], np.int64)
            for p in range(P):
                if slot_in[p] >= 0:
                    uses[slot_in[p]] += 1
                if slot_out[p] >= 0 and slot_out[p] != slot_in[p]:
                    uses[slot_out[p]] += 1
            # a point's start follows the other points' focus cells too (module docstring): each
            # such point's kept change on its focus cell's two lines (row k's row nodes, column l's
            # column nodes), its cell's voltage in its kept solution and the cell's change then and
            # coefficient when kept; taken before any point of the call keeps its solution
            nx = 0
            x_cell, x_chip = np.empty(P, np.int64), np.empty(P, np.int64)
            x_g, x_dg, x_v = np.empty(P), np.empty(P), np.empty(P)
            x_row, x_col = np.empty((P, C)), np.empty((P, R))
            if delta.shape[0] > 0:
                for p2 in range(P):
                    c2, s2 = cells[p2], slot_in[p2]
                    if c2 >= 0 and s2 >= 0 and ratio[p2] == 1.0 and k_cell[s2] == c2 and k_dg[s2] != 0.0:
                        k2, l2 = c2 // C, c2 % C
                        v2 = pool[s2, 0, k2, l2] - pool[s2, 1, k2, l2]
                        if v2 != 0.0:
                            x_cell[nx], x_chip[nx], x_g[nx], x_dg[nx], x_v[nx] = c2, chip[p2], k_g[s2], k_dg[s2], v2
                            for j in range(C):
                                x_row[nx, j] = delta[s2, 0, k2, j]
                            for i in range(R):
                                x_col[nx, i] = delta[s2, 1, i, l2]
                            nx += 1
            last = -1
            for p in range(P):
                b = chip[p]
                vr, vc = x[p, 0], x[p, 1]
                gl_b, gc_b = gl[b], gc[b]
                rv, cv = row_v[p], col_v[p]
                if b != last:
                    for i in range(R):
                        for j in range(C):
                            glT[j, i] = gl_b[i, j]
                            gcT[j, i] = gc_b[i, j]
                    last = b
                s_in = slot_in[p]
                cell = cells[p]
                if s_in >= 0:           # a kept solution, scaled to this drive
                    q = ratio[p]
                    a = 0.0             # its focus cell's change since, over its change before
                    if cell >= 0 and k_cell[s_in] == cell and k_dg[s_in] != 0.0:
                        a = min(EXTRAPOLATE, max(-EXTRAPOLATE, (gl_b[cell // C, cell % C] - k_g[s_in]) / k_dg[s_in]))
                    if a != 0.0:        # the kept solution's last change, extrapolated along
                        for i in range(R):
                            for j in range(C):
                                vr[i, j] = (pool[s_in, 0, i, j] + a * delta[s_in, 0, i, j]) * q
                                vc[i, j] = (pool[s_in, 1, i, j] + a * delta[s_in, 1, i, j]) * q
                    else:
                        for i in range(R):
                            for j in range(C):
                                vr[i, j] = pool[s_in, 0, i, j] * q
                                vc[i, j] = pool[s_in, 1, i, j] * q
                    if cell >= 0 and nx > 0:
                        # the other focus cells' changes since, less what the extrapolation above
                        # carries of their changes then, times their response on their two lines
                        i0 = cell // C
                        for t in range(nx):
                            k2, l2 = x_cell[t] // C, x_cell[t] % C
                            if x_chip[t] != b or k2 == i0:
                                continue
                            num = gl_b[k2, l2] - x_g[t] - a * x_dg[t]
                            if num != 0.0:
                                f = (vr[k2, l2] - vc[k2, l2]) / x_v[t] * (num / x_dg[t])
                                for j in range(C):
                                    vr[k2, j] += f * x_row[t, j]
                                for i in range(R):
                                    vc[i, l2] += f * x_col[t, i]
                elif s_in == -2:        # the terminals' voltages (ideal lines)
                    for i in range(R):
                        for j in range(C):
                            vr[i, j] = rv[i]
                            vc[i, j] = cv[j]
                for i in range(R):
                    for j in range(C):
                        vrT[j, i] = vr[i, j]
                        vcT[j, i] = vc[i, j]
                sweeps[p] = -1
                # a pass predicted to be the point's last (its residual before the sweep times
                # CHECK_RATE within the global bound's) only checks the stop: no row elimination,
                # which only a sweep after it would use; where the point turns out not done, the
                # same pass is made again with it (the same sums: the same iterates, bit for bit)
                l_glob = min(lim[p] / z, lim_i[p])
                check = False
                it = 0
                while True:
                    # every node's KCL residual (|F| summed per column line, plain (S) and weighted
                    # by the node's resistance to its terminal (A); per row line weighted only: a
                    # row's S is at most its A / r_t), and the row lines' Newton step (forward)
                    res = 0.0
                    # the weighted sums (A) feed the lines' bound only: a point on the global bound
                    # alone (reads) sums the plain residuals (S) in the middle of the lines without
                    # them (the same sums, in their own loops: ~1/8 of a read's kernel time)
                    sharp_p = lim_l[p] >= 0.0
                    for i in range(R):
                        AR[i] = 0.0
                    for j in range(C):
                        for i in range(R):
                            v = vrT[j, i] - vcT[j, i]
                            a = glT[j, i]
                            c3 = gcT[j, i] * v * v
                            F[i] = v * (a + c3)
                            D[i] = a + 3.0 * c3
                        # the column nodes of this row of crosspoints (column j's line runs along i)
                        if R == 1:
                            t = abs(g_term * (vcT[j, 0] - cv[j]) - F[0])
                            s_c, a_c = t, zc[0] * t
                        else:
                            t = abs(g_seg * (vcT[j, 0] - vcT[j, 1]) - F[0])
                            s_c, a_c = t, zc[0] * t
                            if sharp_p:
                                for i in range(1, R - 1):
                                    t = abs(g_seg * (2.0 * vcT[j, i] - vcT[j, i - 1] - vcT[j, i + 1]) - F[i])
                                    s_c += t
                                    a_c += zc[i] * t
                            else:
                                for i in range(1, R - 1):
                                    s_c += abs(g_seg * (2.0 * vcT[j, i] - vcT[j, i - 1] - vcT[j, i + 1]) - F[i])
                            t = abs(g_seg * (vcT[j, R - 1] - vcT[j, R - 2]) + g_term * (vcT[j, R - 1] - cv[j])
                                    - F[R - 1])
                            s_c += t
                            a_c += zc[R - 1] * t
                        SC[j], AC[j] = s_c, a_c
                        res += s_c
                        # the row nodes: their segments (or terminal) on both sides, their residuals
                        # summed, and the Thomas elimination along the rows
                        zj = zr[j]
                        s_r = 0.0
                        if check:
                            if j == 0:
                                for i in range(R):
                                    f = F[i] + g_term * (vrT[0, i] - rv[i])
                                    if C > 1:
                                        f += g_seg * (vrT[0, i] - vrT[1, i])
                                    t = abs(f)
                                    s_r += t
                                    AR[i] += zj * t
                            elif j < C - 1:
                                for i in range(R):
                                    s_r += abs(F[i] + g_seg * (2.0 * vrT[j, i] - vrT[j - 1, i] - vrT[j + 1, i]))
                                if sharp_p:
                                    for i in range(R):
                                        AR[i] += zj * abs(F[i] + g_seg * (2.0 * vrT[j, i] - vrT[j - 1, i] - vrT[j + 1, i]))
                            else:
                                for i in range(R):
                                    t = abs(F[i] + g_seg * (vrT[j, i] - vrT[j - 1, i]))
                                    s_r += t
                                    AR[i] += zj * t
                        elif j == 0:
                            g_right = g_seg if C > 1 else 0.0
                            for i in range(R):
                                f = F[i] + g_term * (vrT[0, i] - rv[i])
                                if C > 1:
                                    f += g_seg * (vrT[0, i] - vrT[1, i])
                                d = D[i] + g_term + g_right
                                t = abs(f)
                                s_r += t
                                AR[i] += zj * t
                                cp[0, i] = -g_seg / d
                                dp[0, i] = -f / d
                        elif j < C - 1 and sharp_p:
                            # (the weighted sums in a loop of their own, their residuals worked out
                            # again: the Thomas loop then stores only its pivots and steps, and
                            # vectorizes; the same values)
                            for i in range(R):
                                f = F[i] + g_seg * (2.0 * vrT[j, i] - vrT[j - 1, i] - vrT[j + 1, i])
                                s_r += abs(f)
                                m = 1.0 / (D[i] + 2.0 * g_seg + g_seg * cp[j - 1, i])
                                cp[j, i] = -g_seg * m
                                dp[j, i] = (g_seg * dp[j - 1, i] - f) * m
                            for i in range(R):
                                AR[i] += zj * abs(F[i] + g_seg * (2.0 * vrT[j, i] - vrT[j - 1, i] - vrT[j + 1, i]))
                        elif j < C - 1:
                            for i in range(R):
                                f = F[i] + g_seg * (2.0 * vrT[j, i] - vrT[j - 1, i] - vrT[j + 1, i])
                                s_r += abs(f)
                                m = 1.0 / (D[i] + 2.0 * g_seg + g_seg * cp[j - 1, i])
                                cp[j, i] = -g_seg * m
                                dp[j, i] = (g_seg * dp[j - 1, i] - f) * m
                        else:
                            for i in range(R):
                                f = F[i] + g_seg * (vrT[j, i] - vrT[j - 1, i])
                                t = abs(f)
                                s_r += t
                                AR[i] += zj * t
                                m = 1.0 / (D[i] + g_seg + g_seg * cp[j - 1, i])
                                cp[j, i] = -g_seg * m
                                dp[j, i] = (g_seg * dp[j - 1, i] - f) * m
                        res += s_r
                    ar, sr, ac, sc = 0.0, 0.0, 0.0, 0.0
                    for i in range(R):
                        ar = max(ar, AR[i])
                    sr = ar * g_term
                    for j in range(C):
                        ac = max(ac, AC[j])
                        sc = max(sc, SC[j])
                    done = z * res <= lim[p] and res <= lim_i[p]
                    if not done and max(ar, ac) <= lim_l[p] and (sr if rows_i else 0.0) <= lim_il[p] \
                            and sc <= lim_il[p]:
                        # the lines' bound (sweep_solve): each line's coupling κ (Σ z·slope), Σ slope,
                        # and the crossing lines' A through its devices (Σ z·slope·A, Σ slope·A),
                        # the slopes bounded along the way to the solution (each cell's voltage
                        # within 2·z·Σ|F| of the iterate's)
                        e0 = z * res
                        for i in range(R):
                            KR[i] = 0.0
                            GR[i] = 0.0
                            BR[i] = 0.0
                            HR[i] = 0.0
                        for j in range(C):
                            k_c, s_d, b_c, h_c = 0.0, 0.0, 0.0, 0.0
                            zj, a_j = zr[j], AC[j]
                            for i in range(R):
                                v = abs(vrT[j, i] - vcT[j, i]) + 2.0 * e0
                                d_ = glT[j, i] + 3.0 * gcT[j, i] * v * v
                                k_c += zc[i] * d_
                                s_d += d_
                                b_c += zc[i] * d_ * AR[i]
                                h_c += d_ * AR[i]
                                KR[i] += zj * d_
                                GR[i] += d_
                                BR[i] += zj * d_ * a_j
                                HR[i] += d_ * a_j
                            KC[j], GC[j], BC[j], HC[j] = k_c, s_d, b_c, h_c
                        kr, kc = 0.0, 0.0
                        for i in range(R):
                            kr = max(kr, KR[i])
                        for j in range(C):
                            kc = max(kc, KC[j])
                        if kr * kc < 1.0:
                            # the largest row and column errors, then each line's through the
                            # crossing lines' own A
                            m_r = (ar + kr * ac) / (1.0 - kr * kc)
                            m_c = ac + kc * m_r
                            m_r2, m_c2 = 0.0, 0.0
                            for i in range(R):
                                m_r2 = max(m_r2, AR[i] + BR[i] + m_r * kc * KR[i])
                            for j in range(C):
                                m_c2 = max(m_c2, AC[j] + BC[j] + m_c * kr * KC[j])
                            m_r2, m_c2 = min(m_r, m_r2), min(m_c, m_c2)
                            i_max = 0.0
                            if rows_i:
                                for i in range(R):
                                    i_max = max(i_max, AR[i] * g_term + HR[i] + m_r2 * kc * GR[i])
                            for j in range(C):
                                i_max = max(i_max, SC[j] + HC[j] + m_c2 * kr * GC[j])
                            done = max(m_r2, m_c2) <= lim_l[p] and i_max <= lim_il[p]
                    if done:
                        sweeps[p] = it
                        break
                    if check:           # not the last after all: the same pass again, eliminating
                        check = False
                        continue
                    # too slow for sweeps (lines too resistive against their devices): less than
                    # half the residual gone in four sweeps; the caller factorizes instead
                    if it == max_sweeps or (it >= SLOW_AFTER and res > 0.5 * hist[it % 4]):
                        break
                    hist[it % 4] = res
                    # the row lines' step (back substitution), into both copies
                    for j in range(C - 2, -1, -1):
                        for i in range(R):
                            dp[j, i] -= cp[j, i] * dp[j + 1, i]
                    for j in range(C):
                        for i in range(R):
                            vrT[j, i] += dp[j, i]
                    for i in range(R):
                        for j in range(C):
                            vr[i, j] += dp[j, i]
                    # every column line's Newton step with the row nodes held
                    for i in range(R):
                        for j in range(C):
                            v = vr[i, j] - vc[i, j]
                            a = gl_b[i, j]
                            c3 = gc_b[i, j] * v * v
                            F[j] = -v * (a + c3)
                            D[j] = a + 3.0 * c3
                        if i > 0:
                            for j in range(C):
                                F[j] += g_seg * (vc[i, j] - vc[i - 1, j])
                                D[j] += g_seg
                        if i < R - 1:
                            for j in range(C):
                                F[j] += g_seg * (vc[i, j] - vc[i + 1, j])
                                D[j] += g_seg
                        else:
                            for j in range(C):
                                F[j] += g_term * (vc[i, j] - cv[j])
                                D[j] += g_term
                        if i == 0:
                            for j in range(C):
                                cq[0, j] = -g_seg / D[j]
                                dq[0, j] = -F[j] / D[j]
                        else:
                            for j in range(C):
                                m = 1.0 / (D[j] + g_seg * cq[i - 1, j])
                                cq[i, j] = -g_seg * m
                                dq[i, j] = (g_seg * dq[i - 1, j] - F[j]) * m
                    for i in range(R - 2, -1, -1):
                        for j in range(C):
                            dq[i, j] -= cq[i, j] * dq[i + 1, j]
                    for i in range(R):
                        for j in range(C):
                            vc[i, j] += dq[i, j]
                    for j in range(C):
                        for i in range(R):
                            vcT[j, i] += dq[i, j]
                    it += 1
                    check = res * CHECK_RATE <= l_glob
                s_out = slot_out[p]
                if s_out >= 0 and uses[s_out] == 1:
                    _keep(p, s_out, x, pool, delta, cells, chip, gl, slot_in, ratio, k_cell, k_g, k_dg)
            for p in range(P):
                s_out = slot_out[p]
                if s_out >= 0 and uses[s_out] != 1:
                    _keep(p, s_out, x, pool, delta, cells, chip, gl, slot_in, ratio, k_cell, k_g, k_dg)

        @njit(cache=True)
        def limits(row_v, col_v, tol, i_tol, c_floor, z, c_line, sharp, g_mean, chip, lim, lim_i, lim_l, lim_il,
                   factor):  # pragma: no cover - compiled
            """Each point's stops (:func:`sweep_solve`): ``lim`` / ``lim_i`` its tolerances ``tol`` /
            ``i_tol`` ((P,) or (1,)) raised to the rounding floor ``c_floor`` times its largest terminal
            |voltage| (``/ z`` for the currents), ``lim_l`` / ``lim_il`` the lines' bound's (that floor
            times ``c_line``; −1 where not ``sharp``), and ``factor[p]`` whether the current floor
            exceeds FLOOR_REL of its reading (its chip's mean conductance ``g_mean[chip[p]]`` at that
            voltage) — as numpy's operations of the same order did, bit for bit."""
            for p in range(row_v.shape[0]):
                v = 0.0
                for k in range(row_v.shape[1]):
                    v = max(v, abs(row_v[p, k]))
                for k in range(col_v.shape[1]):
                    v = max(v, abs(col_v[p, k]))
                floor = c_floor * v
                t = tol[0] if tol.size == 1 else tol[p]
                t_i = i_tol[0] if i_tol.size == 1 else i_tol[p]
                lim[p] = np.maximum(t, floor)
                lim_i[p] = np.maximum(t_i, floor / z)
                if sharp:
                    floor_l = floor * c_line[0] / c_line[1]
                    lim_l[p] = np.maximum(t, floor_l)
                    lim_il[p] = np.maximum(t_i, floor_l / z)
                else:
                    lim_l[p] = lim_il[p] = -1.0
                factor[p] = floor / z > FLOOR_REL * v * g_mean[chip[p]]

        _KERNEL["limits"] = limits
        _KERNEL["sweep"] = sweep_points
    return _KERNEL["sweep"]


def error_scale(shape, r_line: float, r_access: float = 0.0) -> float:
    """``z`` (Ω) of the proven stop: the largest resistance from any node to its own line's terminal
    along that line, ``r_line + r_access + r_line·(max(R, C) − 1)``; a state's node voltages are
    within ``z·Σ|F|`` of the solution (``F`` its KCL residuals)."""
    R, C = shape[-2:]
    return float(r_line) + float(r_access) + float(r_line) * (max(R, C) - 1)


def sweep_solve(g, beta: float, v_ref: float, r_line: float, r_access: float, chip, row_v, col_v, x, tol,
                i_tol=np.inf, max_sweeps: int = 200, starts: "WarmStarts | None" = None,
                sharp: bool = False, row_currents: bool = True, cells=None, g_mean=None) -> np.ndarray:
    """Solve operating points in place by line sweeps: point p on chip ``chip[p]`` of the devices
    ``g`` (B, R, C), S (cubic I-V with ``beta`` ≥ 0, 1/V², around ``v_ref``, V), terminals at
    ``row_v`` (P, R) and ``col_v`` (P, C), V, from the node voltages ``x`` (P, 2, R, C) (row nodes,
    column nodes; overwritten with the solution) until every node voltage is proven within
    ``tol`` (V, (P,) or a scalar) of the solution, and every terminal current within ``i_tol`` (A,
    (P,) or a scalar; default: no bound).  Returns the sweeps each point took.  A point the sweeps
    do not bring there (``max_sweeps``, or less than half its residual gone in four sweeps after
    :data:`SLOW_AFTER`) is solved by the factorized network instead (``max_sweeps`` returned).
    ``starts``: a :class:`WarmStarts` each point starts from (its kept solution of the same point,
    else its terminals' voltages) and keeps its solution in; ``x`` is then only written.
    ``sharp``: stop on the lines' bound as well (module docstring): about a sweep fewer per point,
    answers whose errors reach up to the tolerances (the global bound alone leaves ~1/100 of them).
    ``row_currents``: on the lines' bound, ``i_tol`` holds the row terminals' currents too (False:
    the column terminals' only — the readings of a grounded or isolating read, all the tuner's line
    model takes from its reads; its node voltages stay within ``tol``); the global bound holds
    every terminal to it either way.
    ``cells``: with ``starts``, each point's focus cell (P,) (its chip's flat cell index; −1: none),
    the cell whose change of conductance moves its solution most between its solves (a read's
    sensed cell, a pulse's selected one): a point whose focus cell changed between its last two
    solves starts from its kept solution plus the change between them times that cell's change
    since over its change then (:class:`WarmStarts`), and from the other points' focus cells'
    changes on those cells' two lines (module docstring).
    ``g_mean``: each chip's mean conductance (B,), S, where the caller has it (else worked out here).

    A terminal current is ``g_term`` times its terminal node's voltage difference to the terminal,
    and that node's transfer resistance to any node is at most its own driving-point resistance,
    at most ``1/g_term`` (its path to the terminal alone): its error is at most ``Σ|F|`` itself.
    A reading needs this bound: it is ~1/(r·g) times more sensitive to its terminal node than a
    cell's voltage is to its nodes, and a warm start whose node voltages already meet ``tol`` still
    carries the whole change of a cell's current since (a read right after a small pulse)."""
    if not beta >= 0:
        raise ValueError(f"line sweeps need a device I-V coefficient beta >= 0 1/V^2, got {beta}")
    g = np.ascontiguousarray(g, dtype=float)
    norm = 1.0 + beta * v_ref * v_ref
    gl = g / norm
    gc = g * (beta / norm)
    P = x.shape[0]
    g_seg, g_term = 1.0 / r_line, 1.0 / (r_line + r_access)
    # the rounding of the residuals (each node's KCL terms ~ g_seg·V with V the largest terminal
    # voltage, eps relative, a few terms per node) floors what the bound can show: a tolerance
    # below it is raised to it (64×64 at 0.67 Ω: ~2e-10 of the drive; the node voltages are then
    # far closer than that, the iteration having contracted through it); the lines' bound sums a
    # line's residuals, not all of them: its floor is that of 2·max(R, C) nodes.  Where the floor of
    # the current bound exceeds FLOOR_REL of a reading (the chip's mean conductance at the point's
    # voltage), a stop on it may leave readings that far off: lines far less resistive than the
    # path to their terminals (a line calibration's trial 1e-6 Ω behind a 1 Ω relay path puts it at
    # ~1e-3 of an 8×8 chip's readings, whose joint fits, iterated to 1e-8, drifted to 3x the
    # conductances: 0 Ω measured on a mock bench).  Those points are solved by the factorized
    # network after the sweeps as well (at 0.67 Ω the floor is ~1e-9 of a reading on 8×8, ~1e-7 on
    # 64×64: never).  Every point's stops and that test in one compiled pass (``limits``), instead
    # of ~30 numpy operations a call (~5000 calls in a 64×64 tune)
    z = error_scale(g.shape, r_line, r_access)
    # writable C arrays whatever the caller passes (a broadcast view is read-only): numba compiles a
    # kernel once per argument type, read-only included, and a process loads each from the disk
    # cache on first use (~0.1 s each for the sweep kernel's 0.7 MB of code: a 64×64 tune's
    # callers made four of it, three of limits and of the keys kernel)
    chip = np.require(chip, np.int64, ("C", "W"))
    row_v, col_v = np.require(row_v, float, ("C", "W")), np.require(col_v, float, ("C", "W"))
    kernel = _kernel()
    lim, lim_i, lim_l, lim_il = np.empty(P), np.empty(P), np.empty(P), np.empty(P)
    factored = np.empty(P, np.bool_)
    R, C = g.shape[1], g.shape[2]
    tol, i_tol = np.asarray(tol, float).reshape(-1), np.asarray(i_tol, float).reshape(-1)
    if tol.size not in (1, P) or i_tol.size not in (1, P):
        raise ValueError(f"tol and i_tol: a scalar or one per point ({P}), got {tol.size} and {i_tol.size}")
    _KERNEL["limits"](row_v, col_v, tol, i_tol,
                      ROUNDING * z * (2 * R * C) * max(g_seg, g_term), z, np.array([max(R, C), R * C], float),
                      bool(sharp), g.reshape(g.shape[0], -1).mean(axis=1) if g_mean is None else g_mean, chip, lim,
                      lim_i, lim_l, lim_il, factored)
    sweeps = np.empty(P, np.int64)
    if starts is None:      # from x as given, nothing kept
        pool = delta = np.empty((0, 2) + x.shape[2:])
        slot_in, ratio, slot_out = np.full(P, -1, np.int64), np.ones(P), np.full(P, -1, np.int64)
        k_cell, k_g = np.full(0, -1, np.int64), np.zeros(0)
        k_dg = k_g
    else:
        slot_in, ratio, slot_out = starts.assign(chip, row_v, col_v)
        pool = starts.pool()
        delta = starts.deltas() if cells is not None else np.empty((0, 2) + x.shape[2:])
        k_cell, k_g, k_dg = starts.changes()
    cells = np.full(P, -1, np.int64) if cells is None or starts is None else \
        np.require(np.broadcast_to(cells, (P,)), np.int64, ("C", "W"))
    kernel(gl, gc, chip, g_seg, g_term, row_v, col_v, x, pool, slot_in, ratio, slot_out, lim, lim_i, lim_l, lim_il,
           bool(row_currents), z, int(max_sweeps), sweeps, cells, delta, k_cell, k_g, k_dg)
    slow = np.flatnonzero((sweeps < 0) | factored)
    if slow.size:
        from .blas import blas_one_thread

        v = np.maximum(np.abs(row_v).max(axis=-1, initial=0.0), np.abs(col_v).max(axis=-1, initial=0.0))
        with blas_one_thread():         # (LineSolver pins BLAS only around relaxed solves)
            _factorized(g, beta, v_ref, r_line, r_access, chip, row_v, col_v, x, slow, lim / np.maximum(v, 1e-300))
        sweeps[slow] = max_sweeps
        if starts is not None:
            starts.keep(slot_out[slow], x[slow])
    return sweeps


def _factorized(g, beta, v_ref, r_line, r_access, chip, row_v, col_v, x, points, rel) -> None:
    """Solve the ``points`` the sweeps left (lines too resistive against their devices: a tuner's
    trial fit can put hundreds of siemens in a cell) by the factorized network's chord iteration
    (:meth:`~programming.line_model.LineNetwork.solve_cubic`), each chip's at once, to a
    hundredth of their relative tolerance ``rel`` (its stop is on the step, not a bound); into ``x``."""
    from .line_model import LineNetwork

    R, C = g.shape[1:]
    norm = 1.0 + beta * v_ref * v_ref
    for b in np.unique(chip[points]):
        pts = points[chip[points] == b]
        net = LineNetwork(g[b:b + 1] / norm, r_line, r_access)
        got = net.solve_cubic(g[b:b + 1], beta, v_ref, row_v[pts][None], col_v[pts][None],
                              tol=0.01 * float(rel[pts].min()), max_iter=500)[0]
        x[pts] = got[0].reshape(pts.size, 2, R, C)


def _key_kernels():
    """The compiled keys of :class:`WarmStarts` (compiled on first use, cached on disk by numba):
    ``keys_of`` (each point's pattern, scale and key from its terminal voltages) and ``hash_of``
    (the keys of given patterns), sharing one hash (``_hash_row``)."""
    if "keys" not in _KERNEL:
        from numba import njit

        global _splitmix, _hash_row     # module globals, not closure cells: numba caches what calls them

        @njit(cache=True)
        def _splitmix(z):  # pragma: no cover - compiled
            """splitmix64's finalizer of a uint64 word (a bijection; wraps modulo 2⁶⁴)."""
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            return z ^ (z >> np.uint64(31))

        @njit(cache=True)
        def _hash_row(chip, bits, mix):  # pragma: no cover - compiled
            """The key (int64 ≥ 0) of one point on chip ``chip`` whose rounded pattern's bits are
            ``bits`` (uint64, R + C): each terminal's bits offset by its own word of ``mix`` and
            mixed, summed modulo 2⁶⁴ with the chip's mixed word, mixed once more, top bit dropped."""
            key = np.uint64(0)
            for k in range(bits.size):
                key += _splitmix(bits[k] + mix[k])
            key += _splitmix(np.uint64(chip) + mix[bits.size])
            return np.int64(_splitmix(key) >> np.uint64(1))

        @njit(cache=True)
        def hash_of(chip, pattern, mix, keys):  # pragma: no cover - compiled
            """``keys[p]`` of points on chips ``chip`` (P,) with rounded patterns ``pattern`` (P, R + C)."""
            bits = pattern.view(np.uint64)
            for p in range(pattern.shape[0]):
                keys[p] = _hash_row(chip[p], bits[p], mix)

        @njit(cache=True)
        def keys_of(chip, row_v, col_v, mix, keys, pattern, top):  # pragma: no cover - compiled
            """Each point's terminal voltages (``row_v`` (P, R), ``col_v`` (P, C)) over the first of
            largest magnitude (``top[p]``, signed), rounded to 12 digits as numpy rounds (times 1e12,
            to the nearest even integer, over 1e12), no negative zeros (``pattern`` (P, R + C)), and
            its key (``keys[p]``, −1 where every terminal is at 0 V)."""
            R, C = row_v.shape[1], col_v.shape[1]
            bits = pattern.view(np.uint64)
            for p in range(row_v.shape[0]):
                t, m = 0.0, -1.0
                for k in range(R):
                    if abs(row_v[p, k]) > m:
                        t, m = row_v[p, k], abs(row_v[p, k])
                for k in range(C):
                    if abs(col_v[p, k]) > m:
                        t, m = col_v[p, k], abs(col_v[p, k])
                top[p] = t
                inv = 1.0 / (t if t != 0 else 1.0)
                for k in range(R):
                    pattern[p, k] = np.rint(row_v[p, k] * inv * 1e12) / 1e12 + 0.0
                for k in range(C):
                    pattern[p, R + k] = np.rint(col_v[p, k] * inv * 1e12) / 1e12 + 0.0
                keys[p] = _hash_row(chip[p], bits[p], mix) if t != 0 else -1

        _KERNEL["keys"] = keys_of
        _KERNEL["hash"] = hash_of
    return _KERNEL["keys"], _KERNEL["hash"]


#: bytes of node voltages :class:`WarmStarts` keeps (16 MB: 256 operating points of a 64×64 chip)
WARM_BYTES = 16 << 20


class WarmStarts:
    """The last solution of each operating point (chip, terminal voltages up to their scale) a
    :func:`sweep_solve` caller has solved, as the start of its next solve of that point: a read of
    the same row, a pulse of the same cell under the same scheme at another amplitude or polarity (its node
    voltages scaled by the new drive over the old: exact for the linear part of the network, and
    a sign exactly: the network is odd).
    The points solved longest ago leave first, beyond :data:`WARM_BYTES` (one preallocated pool).
    A point never solved starts at its terminals' voltages (ideal lines)."""

    def __init__(self, shape):
        self.shape = tuple(shape)           # (R, C)
        R, C = self.shape
        self.most = max(16, WARM_BYTES // (16 * R * C))
        self._slot: dict = {}               # key (:meth:`keys`) -> pool slot; insertion order = age
        self._pool = None                   # (most, 2, R, C) node voltages, allocated when first kept
        self._scale = np.zeros(self.most)   # the terminal voltage of largest magnitude each slot was solved at (signed)
        self._chip = np.zeros(self.most, np.int64)          # each slot's chip and rounded pattern
        self._pattern = np.zeros((self.most, R + C))
        self._mix = None                    # the hash's offsets (:meth:`_hash`)
        self._used = 0                      # slots handed out so far
        # each slot's focus cell (−1: none), its linear coefficient when kept, its change since the
        # slot's solve before (0: none known) and the solution's change then (:func:`sweep_solve`'s
        # ``cells``; allocated when first used)
        self._cell = np.full(self.most, -1, np.int64)
        self._g = np.zeros(self.most)
        self._dg = np.zeros(self.most)
        self._delta = None

    def keys(self, chip, row_v, col_v):
        """(keys, patterns, scales) of points (``chip`` (P,), ``row_v`` (P, R), ``col_v`` (P, C), V):
        each point's terminal voltages over its terminal voltage of largest magnitude, sign
        included (``scales``: that voltage, the first such terminal's), rounded to 12 digits
        (``patterns`` (P, R + C): a V/3 drive's thirds at any amplitude, of either polarity, give
        one pattern — the network is odd, its devices' I-V odd and its lines linear, so the
        solution at the opposite drive is the negated solution exactly), and its key, an integer
        naming its chip and pattern (a 64-bit hash of the pattern's bits, :meth:`_hash`, for every
        point at once; −1: a point with every terminal at 0 V, which has none).  Two patterns
        sharing a hash (odds ~P²/2⁶⁴) would only give a point another's start: every answer is
        proven from wherever it starts."""
        row_v, col_v = np.asarray(row_v, float), np.asarray(col_v, float)
        P = row_v.shape[0]
        keys, pattern, top = np.empty(P, np.int64), np.empty((P, row_v.shape[1] + col_v.shape[1])), np.empty(P)
        _key_kernels()[0](np.ascontiguousarray(chip, dtype=np.int64), row_v, col_v, self._words(), keys, pattern, top)
        return keys, pattern, top

    def _hash(self, chip, pattern) -> np.ndarray:
        """The keys (P,) int64 ≥ 0 of points on chips ``chip`` (P,) with rounded terminal
        ``pattern`` (P, R + C): each terminal's bits offset by a fixed 64-bit word of its own
        (seeded) and mixed (splitmix64's finalizer: every input bit moves about half the output
        bits; a pattern's bits alone, as 1.0's, would reach only the top 12 of a product), summed
        modulo 2⁶⁴ with the chip's word."""
        keys = np.empty(len(chip), np.int64)
        _key_kernels()[1](np.ascontiguousarray(chip, dtype=np.int64), np.ascontiguousarray(pattern, dtype=float),
                          self._words(), keys)
        return keys

    def _words(self) -> np.ndarray:
        """The hash's offsets (:meth:`_hash`): one fixed (seeded) 64-bit word per terminal and one for the chip."""
        if self._mix is None:
            R, C = self.shape
            self._mix = np.random.default_rng(18).integers(0, 2 ** 63, R + C + 1, dtype=np.uint64)
        return self._mix

    def assign(self, chip, row_v, col_v):
        """The slots of points (``chip`` (P,), ``row_v`` (P, R), ``col_v`` (P, C), V), for a solve
        that reads and writes the pool itself (:func:`sweep_solve`): see :meth:`_assign`."""
        return self._assign(chip, *self.keys(chip, row_v, col_v))

    def _assign(self, chip, keys, patterns, scales):
        """For points on chips ``chip`` of ``keys``, ``patterns`` and ``scales`` (:meth:`keys`): the slot each starts
        from (−2: none, it starts at its terminals' voltages), its drive over that slot's (the
        start's scale), and the slot its solution is kept in (−1: none) — a kept point's own, a
        new point's a free one or the oldest's not solved in this call (which leaves); the kept
        points of this call become the newest, in point order, then the new ones.  No slot a point
        starts from is given to another point's solution (the pool's keys stay one per slot);
        :func:`sweep_solve` writes the solutions after every point has read its start, as
        :meth:`start` and :meth:`keep` do."""
        P = len(keys)
        if self._pool is None:
            self._pool = np.empty((self.most, 2, *self.shape))
        key_list = keys.tolist()
        table = self._slot
        pop = table.pop
        held = [-2] * P                     # (plain lists: a point's slot set without numpy's per-item cost)
        new = []
        for p, k in enumerate(key_list):
            if k >= 0:
                slot = pop(k, None)
                if slot is not None:
                    table[k] = slot
                    held[p] = slot
                else:
                    new.append(p)
        slot_in = np.array(held, np.int64)
        if not new and -2 not in held:     # every point kept already (a tuner's step of reads): the same, fewer passes
            ratio = scales / self._scale[slot_in]
            self._scale[slot_in] = scales
            self._pattern[slot_in] = patterns
            self._chip[slot_in] = chip
            return slot_in, ratio, slot_in.copy()
        slot_out = np.where(slot_in >= 0, slot_in, -1)
        mine = set(held)
        mine.discard(-2)
        ratio = np.ones(P)
        hit = np.flatnonzero(slot_in >= 0)
        ratio[hit] = scales[hit] / self._scale[slot_in[hit]]
        for p in new:
            k = key_list[p]
            slot = table.get(k)                     # a point new to the pool twice in this call
            if slot is None:
                slot = self._free_slot(mine)
                if slot < 0:                        # every slot holds a start of this call
                    continue
                table[k] = slot
                mine.add(slot)
            slot_out[p] = slot
        out = np.flatnonzero(slot_out >= 0)
        self._scale[slot_out[out]] = scales[out]
        self._pattern[slot_out[out]] = patterns[out]
        self._chip[slot_out[out]] = np.asarray(chip)[out]
        return slot_in, ratio, slot_out

    def start(self, x, chip, row_v, col_v) -> np.ndarray:
        """Fill ``x`` (P, 2, R, C) with the start of each point (``chip`` (P,), ``row_v`` (P, R),
        ``col_v`` (P, C), V) as :func:`sweep_solve` without ``cells`` starts it (the kept
        solution, scaled; no change extrapolated); returns the slots their solutions go to (for
        :meth:`keep`)."""
        slot_in, ratio, slot_out = self.assign(chip, row_v, col_v)
        cold = slot_in < 0
        if cold.any():
            at = np.flatnonzero(cold)
            x[at, 0] = row_v[at][:, :, None]
            x[at, 1] = col_v[at][:, None, :]
        if not cold.all():
            at = np.flatnonzero(~cold)
            x[at] = self._pool[slot_in[at]] * ratio[at, None, None, None]
        return slot_out

    def keep(self, slots, x) -> None:
        """Keep the solutions ``x`` (P, 2, R, C) in their ``slots`` (from :meth:`start`), with no
        change known (a start of theirs is not extrapolated)."""
        at = np.flatnonzero(slots >= 0)
        if at.size:
            self._pool[slots[at]] = x[at]
            self._dg[slots[at]] = 0.0

    def pool(self) -> np.ndarray:
        """The kept node voltages (slots, 2, R, C), as :func:`sweep_solve` reads and writes them."""
        if self._pool is None:
            self._pool = np.empty((self.most, 2, *self.shape))
        return self._pool

    def deltas(self) -> np.ndarray:
        """Each slot's last change of its solution (slots, 2, R, C), at its kept drive: the change
        between its last two solves where their focus cell (:meth:`changes`) is the same."""
        if self._delta is None:
            self._delta = np.zeros((self.most, 2, *self.shape))
        return self._delta

    def changes(self):
        """(cells, g, dg) (slots,): each slot's focus cell (−1: none), that cell's linear
        coefficient at the slot's last solve and its change since the solve before (0: none known,
        the start is not extrapolated), as :func:`sweep_solve` reads and writes them."""
        return self._cell, self._g, self._dg

    def _free_slot(self, busy) -> int:
        """A pool slot for a new point: an unused one, else the oldest point's whose slot is not
        in ``busy`` (which leaves); −1 where there is none."""
        if self._used < self.most:
            self._used += 1
            return self._used - 1
        for k, slot in self._slot.items():
            if slot not in busy:
                del self._slot[k]
                return slot
        return -1

    def state(self) -> dict[str, np.ndarray]:
        """The kept starts as plain arrays, oldest first (:meth:`from_state`); their last changes
        (``warm_delta``) where any is kept."""
        slots = np.fromiter(self._slot.values(), np.int64, len(self._slot))
        out = {"warm_chip": self._chip[slots], "warm_pattern": self._pattern[slots], "warm_scale": self._scale[slots],
               "warm_x": self._pool[slots] if slots.size else np.empty((0, 2, *self.shape)),
               "warm_cell": self._cell[slots], "warm_g": self._g[slots], "warm_dg": self._dg[slots]}
        if self._delta is not None:
            out["warm_delta"] = self._delta[slots]
        return out

    @classmethod
    def from_state(cls, state) -> "WarmStarts":
        """The starts of :meth:`state` (the same keys, ages, node voltages and changes; a state
        without changes, as saved before they were kept, has none known)."""
        x = np.asarray(state["warm_x"], float)
        warm = cls(x.shape[2:])
        chip = np.asarray(state["warm_chip"], np.int64)
        pattern = np.asarray(state["warm_pattern"], float).reshape(chip.size, -1)
        slots = warm._assign(chip, warm._hash(chip, pattern), pattern, np.asarray(state["warm_scale"], float))[2]
        warm.keep(slots, x)
        if state.get("warm_dg") is not None:
            at = np.flatnonzero(slots >= 0)
            warm._cell[slots[at]] = np.asarray(state["warm_cell"], np.int64)[at]
            warm._g[slots[at]] = np.asarray(state["warm_g"], float)[at]
            warm._dg[slots[at]] = np.asarray(state["warm_dg"], float)[at]
            if state.get("warm_delta") is not None:
                warm.deltas()[slots[at]] = np.asarray(state["warm_delta"], float)[at]
            else:
                warm._dg[:] = 0.0
        return warm


def relaxed_network(net, g_lin, r_line: float, r_access: float = 0.0,
                    min_chips: int | None = None) -> BatchLines | None:
    """The relaxed network (:class:`~programming.line_batch.BatchLines`, ``net`` kept and updated
    when it is one) of the linear conductances ``g_lin`` (B, R, C), S, where the lines relax
    (:func:`~programming.line_batch.batch_suits`: small chips, from ``min_chips`` chips, by
    default :data:`~programming.line_batch.BATCH_MIN_CHIPS`); else None, the solves sweep the
    lines (:func:`sweep_solve`)."""
    if type(net) is BatchLines or batch_suits(g_lin, r_line, r_access, min_chips=min_chips):
        net = kept_network(net, g_lin, r_line, r_access, min_chips)
        if type(net) is BatchLines:
            return net
    return None
