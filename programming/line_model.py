"""The linear resistive network of crossbars with resistive lines (SI units: S, V, A, Ω).

One definition of the network, used by the simulator (:mod:`mock_hw.nodal` solves its nonlinear
devices around this linear network) and by the write-verify tuner's IR-drop correction
(:mod:`programming.ir_correction`), which models the chip with its *estimated* conductances and
line resistance.

Geometry (as in :mod:`mock_hw.nodal`): ``R`` row lines × ``C`` column lines; device (i, j) joins row
node (i, j) to column node (i, j).  Row i's terminal sits at its column-0 end, column j's at its
row-(R−1) end.  Every line is a ladder of ``r_line`` segments (terminal → first crosspoint → … →
last crosspoint); ``r_access`` (Ω) adds in series between each terminal and its line (a switch
matrix's relay and the instrument's leads on a bench).  Here every terminal is *driven* (held at a
known voltage): grounded reads, V/2 and V/3 writes and matrix-vector products.  Then the
conductance matrix depends only on the conductances, not on the terminal voltages, so one
factorization serves every read, pulse and product that sees the same conductances: each is one
forward/back substitution (many at once as the columns of one right-hand side).

The factorization follows the network's structure (:func:`block_factor`): every row line is a
tridiagonal ladder, so it is eliminated exactly (its inverse in closed form), which leaves the
column nodes coupled row by row (a dense C×C block per row of crosspoints) and along each column
line to the next row (a diagonal −1/r_line): a block-tridiagonal system, solved by block
elimination with the blocks' inverses kept.  A substitution is then two sweeps of small dense
products over the rows of crosspoints, every right-hand side at once (BLAS-3), 3–10× faster than a
general sparse LU's triangular solves on the same network and exact to rounding.  Networks too
large for dense blocks (:data:`BLOCK_MAX`) keep the sparse LU.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dgetrf as getrf
from scipy.linalg.lapack import dgetri as getri
from scipy.linalg.lapack import dgtsv as gtsv

from .blas import blas_one_thread

#: past iterates the chord iteration of :meth:`LineNetwork.solve_cubic` mixes (Anderson acceleration)
ANDERSON_DEPTH = 2
#: largest block factorization (chips × R × C² numbers in each of its two arrays, 8 bytes each:
#: 128 MB) :class:`LineNetwork` keeps; larger networks are factorized by a sparse LU (SuperLU)
BLOCK_MAX = 1 << 24


def _tridiagonal_inverse(d, off: float) -> np.ndarray:
    """Inverses (..., n, n) of the symmetric tridiagonal matrices with diagonals ``d`` (..., n) and
    every off-diagonal ``-off`` (``off`` > 0, diagonally dominant: ``d`` ≥ 2·off inside, ≥ off at
    the ends), in closed form: with the forward and backward elimination pivots ``p``, ``q``,
    ``(T⁻¹)_kk = 1/(p_k + q_k − d_k)`` and each column decays away from its diagonal by the
    factors ``off/p`` (above) and ``off/q`` (below) — every term positive, no cancellation."""
    d = np.asarray(d, float)
    n = d.shape[-1]
    p, q = np.empty_like(d), np.empty_like(d)
    p[..., 0], q[..., -1] = d[..., 0], d[..., -1]
    o2 = off * off
    for k in range(1, n):
        p[..., k] = d[..., k] - o2 / p[..., k - 1]
        q[..., n - 1 - k] = d[..., n - 1 - k] - o2 / q[..., n - k]
    diag = 1.0 / (p + q - d)
    # up[..., k] = Π_{m<k} off/p_m: entry (j, k), j < k, is diag_k · up_k / up_j; likewise below
    up = np.ones_like(d)
    np.cumprod(off / p[..., :-1], axis=-1, out=up[..., 1:])
    down = np.ones_like(d)
    np.cumprod((off / q[..., :0:-1]), axis=-1, out=down[..., -2::-1])
    ratio_up = up[..., None, :] / up[..., :, None]            # (j, k): up_k / up_j
    ratio_dn = down[..., None, :] / down[..., :, None]        # (j, k): down_k / down_j
    upper = np.triu(np.ones((n, n), bool))
    inv = np.where(upper, ratio_up, ratio_dn) * diag[..., None, :]
    return inv


def _inverse(D) -> np.ndarray:
    """Inverses of the matrices ``D`` (b, n, n): LAPACK's LU inverse called directly for a few
    (numpy's batched inverse costs more per call than a 32×32 inverse itself), batched for many.
    Raises RuntimeError for a singular one."""
    if D.shape[0] > 4:
        try:
            return np.linalg.inv(D)
        except np.linalg.LinAlgError as e:
            raise RuntimeError(f"line network: singular conductance matrix ({e})") from e
    out = np.empty_like(D)
    for k in range(D.shape[0]):
        lu, piv, info = getrf(D[k])
        if info == 0:
            out[k], info = getri(lu, piv)
        if info != 0:
            raise RuntimeError(f"line network: singular conductance matrix (LAPACK info {info})")
    return out


def block_factor(g, g_seg: float, g_term: float, row_driven, col_driven):
    """Block factorization of the network of conductances ``g`` (B, R, C), S, with line segments
    of ``g_seg`` and terminal paths of ``g_term`` (S) on the driven rows / columns (``(R,)`` /
    ``(C,)`` masks): ``(tinv, dinv)``, each (B, R, C, C).  ``tinv[b, i]`` is the inverse of row
    line i's own matrix (its ladder, its terminal, its devices to the column nodes); eliminating
    the row lines leaves the column nodes of crosspoint row i coupled by
    ``S_i = E_i − G_i T_i⁻¹ G_i`` (``E_i`` their diagonal, ``G_i`` the devices) and to rows i ± 1
    by −g_seg; ``dinv[b, i]`` is the inverse of that block-tridiagonal system's i-th pivot block
    ``D_i = S_i − g_seg² D_{i−1}⁻¹``.  Raises RuntimeError if a pivot block is singular (a part
    of the network with no path to a driven terminal)."""
    g = np.asarray(g, float)
    B, R, C = g.shape
    deg_r = np.full(C, 2.0)
    deg_r[[0, -1]] = 1.0
    deg_c = np.full(R, 2.0)
    deg_c[[0, -1]] = 1.0
    if C == 1:
        deg_r[:] = 0.0
    if R == 1:
        deg_c[:] = 0.0
    d = g + g_seg * deg_r
    d[:, :, 0] += g_term * np.asarray(row_driven, bool)
    tinv = _tridiagonal_inverse(d, g_seg)
    jj = np.arange(C)
    S = tinv * g[..., :, None]
    S *= g[..., None, :]
    np.negative(S, out=S)
    e = g + g_seg * deg_c[:, None]
    e[:, R - 1, :] += g_term * np.asarray(col_driven, bool)
    S[..., jj, jj] += e
    dinv = S            # overwritten block by block: D_i needs S_i and D_{i−1}⁻¹ only
    o2 = g_seg * g_seg
    for i in range(R):
        D = S[:, i] if i == 0 else S[:, i] - o2 * dinv[:, i - 1]
        dinv[:, i] = _inverse(D)
    if not (np.all(np.isfinite(dinv)) and np.all(np.isfinite(tinv))):
        raise RuntimeError("line network: singular conductance matrix (a part with no driven terminal)")
    return tinv, dinv


def block_solve(g, tinv, dinv, g_seg: float, rhs, cell=None) -> np.ndarray:
    """Node voltages (B, K, N), V, of the network factorized by :func:`block_factor` (``g``
    (B, R, C), S; ``tinv``, ``dinv``) for node current injections ``rhs`` (B, K, N), A: the row
    lines' injections moved onto the column nodes through ``T⁻¹``, the block-tridiagonal system
    of the column nodes swept forward and back over the rows of crosspoints, then each row line
    from its column nodes — every right-hand side at once (small dense products).

    ``cell``: optional (B, K, R·C) currents, A, each injected into a cell's row node and drawn
    from its column node (less the devices' current beyond the linear part, in a chord
    iteration), with ``rhs`` then zero away from the terminals' nodes
    (:meth:`LineNetwork.injection`): the right-hand side is ``rhs`` plus those currents, without
    forming it."""
    B, R, C = g.shape
    K = rhs.shape[1]
    b = np.asarray(rhs, float).reshape(B, K, 2, R, C)
    out = np.empty((B, K, 2, R, C))
    x_r, x_c = out[:, :, 0], out[:, :, 1]               # row and column nodes (B, K, R, C)
    t_r = x_r.transpose(0, 2, 1, 3)                     # the same, per row line i: (B, R, K, C)
    gk = g[:, None]
    if cell is None:
        np.matmul(b[:, :, 0].transpose(0, 2, 1, 3), tinv, out=t_r)      # T_i⁻¹ b_row
        np.multiply(x_r, gk, out=x_c)
        x_c += b[:, :, 1]                                               # the column nodes' right-hand side
    else:
        e = cell.reshape(B, K, R, C)
        np.copyto(x_c, e)                               # scratch: the row nodes' injections
        x_c[:, :, :, 0] += b[:, :, 0, :, 0]             # row terminals: each row line's node 0 only
        np.matmul(x_c.transpose(0, 2, 1, 3), tinv, out=t_r)
        np.multiply(x_r, gk, out=x_c)
        x_c -= e
        x_c[:, :, R - 1] += b[:, :, 1, R - 1]                           # column terminals: row R−1's nodes only
    for i in range(1, R):                                               # forward: y_i += g_seg D_{i−1}⁻¹ y_{i−1}
        x_c[:, :, i] += g_seg * np.matmul(x_c[:, :, i - 1], dinv[:, i - 1])
    x_c[:, :, R - 1] = np.matmul(x_c[:, :, R - 1], dinv[:, R - 1])      # back: c_i = D_i⁻¹(y_i + g_seg c_{i+1})
    for i in range(R - 2, -1, -1):
        y = x_c[:, :, i + 1] * g_seg
        y += x_c[:, :, i]
        np.matmul(y, dinv[:, i], out=x_c[:, :, i])
    gc = x_c * gk                                                       # row nodes: T_i⁻¹ (b_row + G_i c_i)
    t_r += np.matmul(gc.transpose(0, 2, 1, 3), tinv)
    return out.reshape(B, K, 2 * R * C)


class Anderson:
    """Anderson mixing of a fixed-point iteration ``x ← G(x)`` (depth ``depth``), each of ``S``
    independent problems (rows) with its own mixing coefficients: the next iterate is the
    combination of the last ``depth + 1`` values of ``G`` whose residuals ``G(x) − x`` cancel best
    (a regularised least-squares fit per row); a non-finite mix falls back to the plain step."""

    def __init__(self, depth: int):
        self.depth = depth
        self._dG: list[np.ndarray] = []
        self._dF: list[np.ndarray] = []
        self._prev = None

    def step(self, gx, f) -> np.ndarray:
        """The next iterate (S, N) from the map's value ``gx`` (S, N) at the present iterate and
        its residual ``f = gx − x`` (S, N)."""
        if self._prev is not None:
            g_prev, f_prev = self._prev
            self._dG.append(gx - g_prev)
            self._dF.append(f - f_prev)
            del self._dG[:-self.depth], self._dF[:-self.depth]
        self._prev = (gx, f)
        if not self._dF:
            return gx
        Fm, Gm = np.stack(self._dF, axis=1), np.stack(self._dG, axis=1)          # (S, m, N)
        M = np.einsum("smn,stn->smt", Fm, Fm)
        M += np.eye(len(self._dF)) * (1e-12 * np.trace(M, axis1=1, axis2=2)[:, None, None] + 1e-300)
        gamma = np.linalg.solve(M, np.einsum("smn,sn->sm", Fm, f)[..., None])[..., 0]
        x = gx - np.einsum("sm,smn->sn", gamma, Gm)
        return x if np.all(np.isfinite(x)) else gx

    def keep(self, rows) -> None:
        """Go on with the problems ``rows`` (an index or mask of the rows) only: the others left
        (converged); their history is dropped."""
        self._dG = [d[rows] for d in self._dG]
        self._dF = [d[rows] for d in self._dF]
        if self._prev is not None:
            self._prev = (self._prev[0][rows], self._prev[1][rows])


def init_lines(net, g, r_line: float, r_access: float) -> np.ndarray:
    """Check a line network's arguments and set what every kind of network keeps (``shape``,
    ``r_line``, ``r_access`` in Ω; ``g_seg``, ``g_term`` in S); returns ``g`` (B, R, C) as floats, S."""
    g = np.asarray(g, dtype=float)
    if g.ndim != 3:
        raise ValueError(f"g must have shape (B, R, C), got {g.shape}")
    if not r_line > 0:
        raise ValueError(f"a line network needs r_line > 0 Ω, got {r_line}")
    if not r_access >= 0:
        raise ValueError(f"r_access must be >= 0 Ω, got {r_access}")
    net.shape = g.shape
    net.r_line, net.r_access = float(r_line), float(r_access)
    net.g_seg = 1.0 / net.r_line
    net.g_term = 1.0 / (net.r_line + net.r_access)
    return g


class LineNetwork:
    """Factorized conductance matrices of ``B`` crossbars with every terminal driven.

    Args:
        g: (B, R, C) device conductances, S (a linear device: I = g·V).
        r_line: line resistance per segment, Ω (> 0).
        r_access: series resistance between each terminal and its line, Ω (>= 0).
        row_driven, col_driven: optional (R,) / (C,) masks of the terminals that are driven
            (default: all); a terminal that is not driven floats (no current through it), so the
            network is that of one biasing (e.g. a read with the unselected lines floating).

    Node order per chip: row nodes (i, j) at ``i·C + j``, column nodes at ``R·C + i·C + j``.
    """

    def __init__(self, g, r_line: float, r_access: float = 0.0, row_driven=None, col_driven=None):
        g = init_lines(self, g, r_line, r_access)
        B, R, C = g.shape
        M = R * C
        ir = np.arange(M).reshape(R, C)
        ic = ir + M
        a = np.concatenate([ir[:, :-1].ravel(), ic[:-1, :].ravel()])   # line segments a -- b
        b = np.concatenate([ir[:, 1:].ravel(), ic[1:, :].ravel()])
        t = np.concatenate([ir[:, 0], ic[R - 1, :]])                   # nodes next to a terminal
        self._t = t
        rr, cc = ir.ravel(), ic.ravel()
        self._I = np.concatenate([a, b, a, b, t, rr, cc, rr, cc])
        self._J = np.concatenate([a, b, b, a, t, rr, cc, cc, rr])
        rd = np.ones(R, bool) if row_driven is None else np.asarray(row_driven, bool)
        cd = np.ones(C, bool) if col_driven is None else np.asarray(col_driven, bool)
        self.driven = (rd, cd)
        self._fixed = np.concatenate([np.full(2 * a.size, self.g_seg), np.full(2 * a.size, -self.g_seg),
                                      self.g_term * np.concatenate([rd, cd])])
        self._lu: list = [None] * B
        # dense blocks (block_factor) where they fit, else one sparse LU per chip
        self._blocks = None if B * R * C * C > BLOCK_MAX else (np.empty((B, R, C, C)), np.empty((B, R, C, C)))
        self._g = np.full(g.shape, np.nan)
        self.factorizations = 0
        self.update(g)

    def update(self, g) -> int:
        """Refactor the chips whose conductances differ from the factorized ones (others keep
        their factors).  Returns how many chips were refactored."""
        g = np.asarray(g, dtype=float)
        if g.shape != self.shape:
            raise ValueError(f"conductances of shape {g.shape}, network built for {self.shape}")
        N = 2 * self.shape[1] * self.shape[2]
        done = 0
        with blas_one_thread():
            done = self._refactor(g, N)
        self.factorizations += done
        return done

    def _refactor(self, g, N) -> int:
        if self._blocks is not None:
            # the kept conductances start as NaN: every chip is factorized the first time
            todo = np.flatnonzero((g != self._g).reshape(self.shape[0], -1).any(axis=1))
            if todo.size:
                tinv, dinv = block_factor(g[todo], self.g_seg, self.g_term, *self.driven)
                self._blocks[0][todo], self._blocks[1][todo] = tinv, dinv
                self._g[todo] = g[todo]
            return int(todo.size)
        import scipy.sparse as sp       # (here: many small chips never take a sparse path; ~5 MB of RSS)
        from scipy.sparse.linalg import splu

        done = 0
        for k in range(self.shape[0]):
            if self._lu[k] is not None and np.array_equal(g[k], self._g[k]):
                continue
            s = g[k].ravel()
            vals = np.concatenate([self._fixed, s, s, -s, -s])
            A = sp.csc_matrix((vals, (self._I, self._J)), shape=(N, N))
            try:
                self._lu[k] = splu(A, permc_spec="MMD_AT_PLUS_A")
            except RuntimeError as e:  # "Factor is exactly singular"
                raise RuntimeError(f"line network: singular conductance matrix for chip {k}: {e}") from e
            self._g[k] = g[k]
            done += 1
        return done

    def injection(self, row_v, col_v) -> np.ndarray:
        """Right-hand sides (B, K, N), A: the current the terminals at ``row_v`` (B, K, R) and
        ``col_v`` (B, K, C), V, inject into the nodes next to them."""
        B, R, C = self.shape
        row_v, col_v = np.asarray(row_v, float), np.asarray(col_v, float)
        K = row_v.shape[1]
        rd, cd = self.driven
        rhs = np.zeros((B, K, 2, R, C))
        rhs[:, :, 0, :, 0] = self.g_term * np.where(rd, row_v, 0.0)
        rhs[:, :, 1, R - 1, :] = self.g_term * np.where(cd, col_v, 0.0)
        return rhs.reshape(B, K, 2 * R * C)

    def solve(self, rhs) -> np.ndarray:
        """Node voltages (B, K, N), V, for node current injections ``rhs`` (B, K, N), A."""
        rhs = np.asarray(rhs, float)
        with blas_one_thread():  # small products, and SuperLU's substitutions: threads only slow them
            if self._blocks is not None:
                return block_solve(self._g, *self._blocks, self.g_seg, rhs)
            if len(self._lu) == 1:      # the (N, K) Fortran-order solution's transpose, no copy
                return self._lu[0].solve(np.asfortranarray(rhs[0].T)).T[None]
            out = np.empty_like(rhs)
            for k, lu in enumerate(self._lu):
                out[k] = lu.solve(np.asfortranarray(rhs[k].T)).T
        return out

    def solve_cubic(self, g, beta: float, v_ref: float, row_v, col_v, tol: float = 1e-12,
                    max_iter: int = 200, focus=None):
        """Node voltages (B, K, N), V, and iterations, of devices with the cubic I-V
        ``I = g·V·(1 + β V²)/(1 + β v_ref²)`` (``g`` (B, R, C), S; β in 1/V²) when this network was
        built on their small-signal conductances ``g / (1 + β v_ref²)``: the chord iteration
        ``x ← A⁻¹ (b − n(x))``, ``n`` the devices' current beyond the linear part, on the kept
        factorization, started from the cubic part at the cell voltages of ideal lines (every terminal
        driven) and accelerated by Anderson mixing of the last ``ANDERSON_DEPTH`` iterates.
        Each operating point (chip, right-hand side) has converged when its last chord step moved
        none of its nodes by more than ``tol`` times the largest terminal voltage, or when its error
        bound ρ/(1 − ρ)·step (ρ its contraction measured on its first two steps, < 0.5) is below
        it; it keeps that answer, and a right-hand side converged on every chip leaves the later
        substitutions (RuntimeError after ``max_iter`` steps).

        ``focus``: optional (rows, cols), each (B, K) ints (−1: none), the row line and the column
        line of each operating point that carry its strongly nonlinear devices (a pulse's selected
        row and column, a grounded read's driven row).  Every iterate then also takes one Newton
        step of KCL on those lines' nodes with every other node held (:meth:`line_newton`: a
        tridiagonal solve per line), which removes the slow mode of the chord iteration — the
        devices along one line drawing more (or less) than their small-signal current through the
        same line resistance.  The solution is the same (a Newton step at the solution moves
        nothing); it converges in fewer substitutions."""
        b = self.injection(row_v, col_v)
        if beta == 0:
            return self.solve(b), 1
        row_v, col_v = np.asarray(row_v, float), np.asarray(col_v, float)
        v_scale = max(np.abs(row_v).max(initial=0.0), np.abs(col_v).max(initial=0.0), 1e-300)
        c = beta / (1.0 + beta * v_ref * v_ref)
        B, R, C = self.shape
        n_c = R * C
        gc = np.asarray(g, float).reshape(B, 1, n_c) * c
        neg_gc = -gc
        t = self._t

        # the operating points still iterated: their lanes (right-hand sides) and those lanes'
        # injections, terminal voltages and focus lines (every lane at first)
        cur = {"b": b, "row_v": row_v, "col_v": col_v, "focus": focus}

        def chord(v):       # A⁻¹ (b − n): node voltages for the devices' current beyond the linear part at v
            bl = cur["b"]
            e = v * v       # v: (B, K, R·C) cell voltages
            e *= v
            if self._blocks is not None:        # b is zero away from the terminals' nodes
                e *= neg_gc
                return block_solve(self._g, *self._blocks, self.g_seg, bl, cell=e)
            e *= gc
            out = np.empty(bl.shape)
            np.negative(e, out=out[..., :n_c])
            out[..., n_c:] = e
            out[..., t] += bl[..., t]
            return self.solve(out)

        def cells(x):       # row node minus column node of every cell, (B, K, R·C)
            return x[..., :n_c] - x[..., n_c:]

        rd, cd = self.driven
        if focus is not None and not (rd.all() and cd.all()):
            raise ValueError("solve_cubic: focus lines need every terminal driven")

        def fix(x):         # the focus lines' Newton step, in place (none without focus)
            f = cur["focus"]
            return x if f is None else self.line_newton(x, g, beta, v_ref, cur["row_v"], cur["col_v"], *f, copy=False)

        if rd.all() and cd.all():
            # start from the cubic part at the cell voltages of ideal lines (terminal differences),
            # with the focus lines' own drop already solved: the IR drop then only perturbs a small
            # correction
            if focus is None:
                v0 = (row_v[..., :, None] - col_v[..., None, :]).reshape(B, -1, n_c)
            else:
                x0 = np.empty(b.shape).reshape(B, -1, 2, R, C)
                x0[:, :, 0] = row_v[..., :, None]
                x0[:, :, 1] = col_v[..., None, :]
                v0 = cells(fix(x0.reshape(b.shape)))
            x = fix(chord(v0))
        else:
            x = self.solve(b)
        # Anderson acceleration (depth ANDERSON_DEPTH) of the chord map G(x) = A⁻¹ (b − n(x)), each
        # operating point (chip, right-hand side) with its own mixing coefficients.  Each operating
        # point stops on its own test; a lane (right-hand side) leaves the substitutions once it has
        # stopped on every chip (a converged point of a lane still iterated keeps its answer).
        K = x.shape[1]
        out = None                                  # the answers of the points converged so far
        lanes = np.arange(K)
        live = np.ones((B, K), bool)                # (chip, lane) not yet converged
        mix = Anderson(ANDERSON_DEPTH)
        rho = err_first = None
        lim = tol * v_scale
        for it in range(2, max_iter + 2):
            gx = fix(chord(cells(x)))
            f = gx - x
            err = np.maximum(f.max(axis=2, initial=0.0), -f.min(axis=2, initial=0.0))     # (B, lanes)
            if not np.all(np.isfinite(err)):
                raise RuntimeError("line solve diverged (non-finite node voltages)")
            # G(x) is within ρ/(1 − ρ)·|G(x) − x| of the solution (a contraction); before ρ is
            # known, and for a slow contraction, the step itself must be below the tolerance
            if it == 2:
                err_first = err
            elif it == 3:   # two plain chord steps so far: their ratio is the map's contraction ρ
                with np.errstate(divide="ignore", invalid="ignore"):
                    rho = np.where(err_first > 0, np.minimum(err / err_first, 1.0), 0.0)
            done = err <= lim
            if rho is not None:
                done |= (rho < 0.5) & (err * rho <= lim * (1.0 - rho))
            if out is None and done.all():          # every point at once (no lane has left)
                return gx, it
            now = done & live[:, lanes]
            if now.any():
                if out is None:                     # (every lane is still here)
                    out = np.empty((B, K, gx.shape[2]))
                bb, kk = np.nonzero(now)
                out[bb, lanes[kk]] = gx[bb, kk]
                live[bb, lanes[kk]] = False
            going = live[:, lanes].any(axis=0)
            if not going.any():
                return out, it
            S = B * lanes.size
            x = mix.step(gx.reshape(S, -1), f.reshape(S, -1)).reshape(gx.shape)
            if not going.all():                     # the lanes done on every chip leave
                mix.keep(np.broadcast_to(going, (B, lanes.size)).ravel())
                x, err_first, lanes = x[:, going], err_first[:, going], lanes[going]
                if rho is not None:
                    rho = rho[:, going]
                cur["b"], cur["row_v"], cur["col_v"] = b[:, lanes], row_v[:, lanes], col_v[:, lanes]
                if focus is not None:
                    cur["focus"] = tuple(fl[:, lanes] for fl in focus)
        raise RuntimeError(f"line solve did not converge in {max_iter} chord iterations (last step {err.max():.3e} V)")

    def line_newton(self, x, g, beta: float, v_ref: float, row_v, col_v, rows, cols, copy: bool = True) -> np.ndarray:
        """Node voltages ``x`` (B, K, N), V, after one Newton step of KCL on row line ``rows[b, k]``
        and then on column line ``cols[b, k]`` of each operating point (−1: that line is left as
        it is), every other node held: each line is a ladder (its segments, its terminal at
        ``row_v``/``col_v``, V, behind ``g_term``, and its devices ``g`` (B, R, C), S, with the
        cubic I-V of β, 1/V², around ``v_ref``, V, to the held nodes), so its Jacobian is
        tridiagonal; all the lines are solved by one tridiagonal solve (LAPACK ``gtsv``).  With
        ``copy=False`` a C-contiguous ``x`` is updated in place."""
        B, R, C = self.shape
        x = (np.array if copy else np.asarray)(x, dtype=float).reshape(B, -1, 2, R, C)
        g = np.asarray(g, float)
        norm = 1.0 + beta * v_ref * v_ref
        for axis, lines, term in ((0, np.asarray(rows), row_v), (1, np.asarray(cols), col_v)):
            bb, kk = np.nonzero(lines >= 0)
            if not bb.size:
                continue
            ln = lines[bb, kk]
            if axis == 0:       # row line: its nodes (i, 0..C-1), terminal before node 0
                own, other, gg = x[bb, kk, 0, ln, :], x[bb, kk, 1, ln, :], g[bb, ln, :]
                v = own - other
                sign, t_end = 1.0, 0
            else:               # column line: its nodes (0..R-1, j), terminal after node R-1
                own, other, gg = x[bb, kk, 1, :, ln], x[bb, kk, 0, :, ln], g[bb, :, ln]
                v = other - own
                sign, t_end = -1.0, -1
            v2 = v * v
            F = sign * gg * v * (1.0 + beta * v2) / norm          # device current leaving the node, A
            d = gg * (1.0 + 3.0 * beta * v2) / norm                # its derivative in the node voltage
            seg = self.g_seg * (own[:, :-1] - own[:, 1:])
            F[:, :-1] += seg
            F[:, 1:] -= seg
            F[:, t_end] += self.g_term * (own[:, t_end] - term[bb, kk, ln])
            d[:, :-1] += self.g_seg
            d[:, 1:] += self.g_seg
            d[:, t_end] += self.g_term
            n = own.shape[1]
            off = np.full(d.size - 1, -self.g_seg)
            off[n - 1::n] = 0.0                                    # no coupling between lines
            _, _, _, step, info = gtsv(off, d.ravel(), off.copy(), -F.reshape(-1, 1))
            if info != 0:
                raise RuntimeError(f"line Newton step: singular tridiagonal system (info {info})")
            own = own + step.reshape(own.shape)
            if axis == 0:
                x[bb, kk, 0, ln, :] = own
            else:
                x[bb, kk, 1, :, ln] = own
        return x.reshape(B, -1, 2 * R * C)

    def split(self, x):
        """Row-node and column-node voltages (B, K, R, C) of node voltages ``x`` (B, K, N)."""
        B, R, C = self.shape
        x = x.reshape(x.shape[0], x.shape[1], 2, R, C)
        return x[:, :, 0], x[:, :, 1]

    def terminal_currents(self, v_row, v_col, row_v, col_v):
        """Currents (A) out of each row driver into its line (B, K, R) and out of each column line
        into its driver (B, K, C), from the node voltages next to the terminals."""
        rd, cd = self.driven
        return (np.where(rd, self.g_term * (row_v - v_row[..., :, 0]), 0.0),
                np.where(cd, self.g_term * (v_col[..., -1, :] - col_v), 0.0))


def grounded_read_currents(g, v_read: float, r_line: float, r_access: float = 0.0,
                           network: LineNetwork | None = None) -> np.ndarray:
    """Currents (B, R, C), A, a grounded read measures on linear devices ``g`` (B, R, C), S: cell
    (i, j) read with row i at ``v_read`` (V), every other line at 0 V, at column j's terminal.
    One factorization and one multi-column substitution for the whole array."""
    g = np.asarray(g, float)
    B, R, C = g.shape
    net = network or LineNetwork(g, r_line, r_access)
    row_v = np.broadcast_to(np.eye(R) * v_read, (B, R, R))
    col_v = np.zeros((B, R, C))
    v_row, v_col = net.split(net.solve(net.injection(row_v, col_v)))
    return net.terminal_currents(v_row, v_col, row_v, col_v)[1]



def float_read_currents(g, cells, v_read: float, r_line: float, r_access: float = 0.0,
                        beta: float = 0.0, v_ref: float = 0.2) -> np.ndarray:
    """Currents (B, K), A, float reads measure on devices ``g`` (B, R, C), S (cubic I-V with ``beta``,
    1/V², around ``v_ref``, V): for each of the ``K`` cells (row, col) in ``cells``, that row at
    ``v_read`` (V) and that column at 0 V, every other line floating; the current at the column's
    terminal.  One factorization per cell."""
    g = np.asarray(g, float)
    B, R, C = g.shape
    out = np.empty((B, len(cells)))
    for k, (i, j) in enumerate(cells):
        rd, cd = np.arange(R) == i, np.arange(C) == j
        net = LineNetwork(g / (1.0 + beta * v_ref * v_ref), r_line, r_access, rd, cd)
        row_v = np.broadcast_to(np.where(rd, float(v_read), 0.0), (B, 1, R))
        col_v = np.zeros((B, 1, C))
        v_row, v_col = net.split(net.solve_cubic(g, beta, v_ref, row_v, col_v, tol=1e-10)[0])
        out[:, k] = net.terminal_currents(v_row, v_col, row_v, col_v)[1][:, 0, j]
    return out
