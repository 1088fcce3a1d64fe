"""Nodal analysis of a passive memristor crossbar (SI units: S, V, A, ohm).

Geometry: ``R`` row lines x ``C`` column lines; device (i, j) joins row line i to column line j and
carries ``iv_current(g, v_row - v_col)`` from the row to the column.  Row i's terminal (driver) sits
at its column-0 end, column j's terminal (driver / sense amplifier) at its row-(R-1) end.  A terminal
is DRIVEN at a known voltage or FLOATING (NaN).  With ``r_line`` > 0 every line is a ladder of
``r_line`` segments: terminal -> first crosspoint -> ... -> last crosspoint, so each crosspoint has its
own row node and column node (2*R*C unknowns).  With ``r_line == 0`` each line is a single node.

KCL is solved by Newton's method on the device I-V of :mod:`mock_hw.device`, starting from the
linear (beta = 0) solution.  Lines in a part of the network with no conductive path to any driven
terminal carry no current; they are pinned at 0 V so the equations stay non-singular.

Fast path (:class:`LineSolver`): with resistive lines and every terminal driven (grounded reads,
V/2 and V/3 writes, matrix-vector products) many small chips are relaxed together
(:mod:`programming.line_batch`); every other chip is solved by line sweeps in compiled code
(:mod:`programming.line_sweep`: block Gauss-Seidel over the row and column lines, each line's
Newton step a tridiagonal solve, stopped on a proven bound of every node voltage's error), each
operating point from its own last solution (a read of the same row, a pulse of the same cell).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mock_hw.device import iv_current, iv_slope
from programming.blas import BLAS_ONE_THREAD_MIN, blas_held, blas_one_thread
from programming.line_batch import BatchLines, batch_suits, enough_chips
from programming.line_sweep import WarmStarts, relaxed_network, sweep_solve

DENSE_MAX = 512  # largest node count (r_line > 0) solved as a batched dense system


@dataclass
class NetworkSolution:
    """Solved operating point of a batch of ``B`` crossbars.

    Attributes:
        v_cell: (B, R, C) voltage across each device, row node minus column node, V.
        i_cell: (B, R, C) device currents, row -> column, A.
        col_current: (B, C) current flowing out of each column terminal into its driver (what a
            virtual-ground ammeter on that column reads), A; 0 for floating columns.
        row_current: (B, R) current supplied by each row driver, A; 0 for floating rows.
        iterations: Newton iterations (linear solves) used.
        v_row, v_col: (B, R, C) row-line and column-line node voltages at each crosspoint, V.
    """

    v_cell: np.ndarray
    i_cell: np.ndarray
    col_current: np.ndarray
    row_current: np.ndarray
    iterations: int
    v_row: np.ndarray
    v_col: np.ndarray


def _pin_isolated(g, row_v, col_v):
    """Copies of ``row_v``/``col_v`` with floating lines that have no conductive path to a driven
    terminal set to 0 V (they carry no current, so the physical solution is unchanged)."""
    B, R, C = g.shape
    row_v, col_v = row_v.copy(), col_v.copy()
    if np.all(g > 0):  # complete bipartite graph: everything reaches a driven terminal
        return row_v, col_v
    import scipy.sparse as sp       # (here: many small chips never take a sparse path; ~5 MB of RSS)
    from scipy.sparse.csgraph import connected_components

    for b in range(B):
        i, j = np.nonzero(g[b] > 0)
        adj = sp.csr_matrix((np.ones(i.size), (i, R + j)), shape=(R + C, R + C))
        n, lab = connected_components(adj, directed=False)
        v = np.concatenate([row_v[b], col_v[b]])
        ok = np.bincount(lab, weights=~np.isnan(v), minlength=n) > 0
        v[~ok[lab]] = 0.0
        row_v[b], col_v[b] = v[:R], v[R:]
    return row_v, col_v


def _newton(x, residual, step, tol, max_iter, i_scale, v_scale):
    """Newton iteration ``x += step(x, F)``; converged when max|F| <= tol*i_scale (A) or the last
    step max|dx| <= tol*v_scale (V).  Returns (x, iterations)."""
    for it in range(max_iter + 1):
        F = residual(x)
        err = np.max(np.abs(F), initial=0.0)
        if not np.isfinite(err):
            raise RuntimeError("nodal solve diverged (non-finite KCL residual)")
        if err <= tol * i_scale:
            return x, it
        if it == max_iter:
            break
        dx = step(x, F)
        if not np.all(np.isfinite(dx)):
            raise RuntimeError("nodal solve: singular Jacobian (floating lines without a path to a driver?)")
        x = x + dx
        if np.max(np.abs(dx), initial=0.0) <= tol * v_scale:
            return x, it + 1
    raise RuntimeError(f"nodal Newton solve did not converge in {max_iter} iterations "
                       f"(max KCL residual {err:.3e} A, tolerance {tol * i_scale:.3e} A)")


def _solve_ideal(g, rv, cv, beta, v_ref, tol, max_iter, scales):
    """r_line == 0: one node per line.  Returns line voltages (B, R+C) and iterations."""
    B, R, C = g.shape
    N = R + C
    v = np.concatenate([rv, cv], axis=1)
    fl = np.isnan(v)
    x = np.where(fl, 0.0, v)
    if not fl.any():
        return x, 0
    eye = np.eye(N, dtype=bool)
    diag = np.arange(N)

    def vcell(x):
        return x[:, :R, None] - x[:, None, R:]

    def residual(x, b=beta):  # net current leaving each line through its devices, A
        i = iv_current(g, vcell(x), b, v_ref)
        return np.where(fl, np.concatenate([i.sum(2), -i.sum(1)], axis=1), 0.0)

    def step(x, F, b=beta):
        s = iv_slope(g, vcell(x), b, v_ref)
        J = np.zeros((B, N, N))
        J[:, :R, R:] = -s
        J[:, R:, :R] = -s.transpose(0, 2, 1)
        J[:, diag, diag] = np.concatenate([s.sum(2), s.sum(1)], axis=1)
        J = np.where(fl[:, :, None], J, eye)  # driven lines: identity rows, zero residual
        return np.linalg.solve(J, -F[..., None])[..., 0]

    x = x + step(x, residual(x, 0.0), 0.0)  # exact linear solution as the initial guess
    x, it = _newton(x, residual, step, tol, max_iter, *scales)
    return x, it + 1


def _solve_lines(g, rv, cv, beta, v_ref, r_line, tol, max_iter, scales, r_access=0.0):
    """r_line > 0: full nodal analysis.  Returns row and column node voltages (B, R, C), iterations."""
    B, R, C = g.shape
    M = R * C
    N = 2 * M
    G = 1.0 / r_line
    Gt = 1.0 / (r_line + r_access)  # terminal -> first crosspoint: access path plus one segment
    rd, cd = ~np.isnan(rv), ~np.isnan(cv)
    rv0, cv0 = np.where(rd, rv, 0.0), np.where(cd, cv, 0.0)
    x0, it0 = _solve_ideal(g, rv, cv, beta, v_ref, tol, max_iter, scales)
    x = np.concatenate([np.repeat(x0[:, :R], C, axis=1), np.tile(x0[:, R:], (1, R))], axis=1)

    ir = np.arange(M).reshape(R, C)  # row node (i, j); column node (i, j) is ir + M
    ic = ir + M
    a = np.concatenate([ir[:, :-1].ravel(), ic[:-1, :].ravel()])  # line segments a -- b
    b = np.concatenate([ir[:, 1:].ravel(), ic[1:, :].ravel()])
    t = np.concatenate([ir[:, 0], ic[R - 1, :]])  # nodes next to a terminal
    rr, cc = ir.ravel(), ic.ravel()
    I_idx = np.concatenate([a, b, a, b, t, rr, cc, rr, cc])
    J_idx = np.concatenate([a, b, b, a, t, rr, cc, cc, rr])
    seg = np.broadcast_to(np.repeat([G, G, -G, -G], a.size), (B, 4 * a.size))
    term = Gt * np.concatenate([rd, cd], axis=1).astype(float)

    def split(x):
        return x[:, :M].reshape(B, R, C), x[:, M:].reshape(B, R, C)

    def residual(x):  # current leaving each node, A
        vr, vc = split(x)
        i = iv_current(g, vr - vc, beta, v_ref)
        fr, fc = i.copy(), -i
        s = G * (vr[:, :, :-1] - vr[:, :, 1:])
        fr[:, :, :-1] += s
        fr[:, :, 1:] -= s
        s = G * (vc[:, :-1, :] - vc[:, 1:, :])
        fc[:, :-1, :] += s
        fc[:, 1:, :] -= s
        fr[:, :, 0] += Gt * rd * (vr[:, :, 0] - rv0)
        fc[:, -1, :] += Gt * cd * (vc[:, -1, :] - cv0)
        return np.concatenate([fr.reshape(B, M), fc.reshape(B, M)], axis=1)

    lus, last_err = [], [np.inf]

    def step(x, F):
        vr, vc = split(x)
        s = iv_slope(g, vr - vc, beta, v_ref).reshape(B, M)
        vals = np.concatenate([seg, term, s, s, -s, -s], axis=1)
        if N <= DENSE_MAX:
            flat = (np.arange(B)[:, None] * (N * N) + (I_idx * N + J_idx)[None, :]).ravel()
            J = np.bincount(flat, weights=vals.ravel(), minlength=B * N * N).reshape(B, N, N)
            with blas_one_thread():  # threads only slow a batch of small dense solves down
                return np.linalg.solve(J, -F[..., None])[..., 0]
        # Sparse path: reuse the LU factors while the residual keeps falling >= 20x per step
        # (chord Newton); refactor at the current point otherwise.
        err = np.max(np.abs(F))
        if not lus or err > 0.05 * last_err[0]:
            import scipy.sparse as sp
            from scipy.sparse.linalg import splu

            lus.clear()
            for k in range(B):
                J = sp.csc_matrix((vals[k], (I_idx, J_idx)), shape=(N, N))
                try:
                    lus.append(splu(J, permc_spec="MMD_AT_PLUS_A"))
                except RuntimeError as e:  # "Factor is exactly singular"
                    raise RuntimeError(f"nodal solve: singular Jacobian for chip {k}: {e}") from e
        last_err[0] = err
        return np.stack([lu.solve(-F[k]) for k, lu in enumerate(lus)])

    x, it = _newton(x, residual, step, tol, max_iter, *scales)
    vr, vc = split(x)
    return vr, vc, it0 + it


class DrivenSolution:
    """Solved operating points of ``B`` crossbars under ``K`` sets of terminal voltages each (every
    terminal driven).  v_cell, i_cell: (B, K, R, C), V and A (worked out when first read: a read
    needs only the terminal currents); row_current (B, K, R): out of each row driver, A;
    col_current (B, K, C): out of each column into its driver, A; iterations: chord iterations
    (each one substitution with the kept factorization); v_row, v_col: (B, K, R, C) row-line and
    column-line node voltages, V."""

    def __init__(self, v_row, v_col, row_current, col_current, iterations, g, beta, v_ref):
        self.v_row, self.v_col = v_row, v_col
        self.row_current, self.col_current = row_current, col_current
        self.iterations = iterations
        self._g, self._beta, self._v_ref = g, beta, v_ref
        self._v_cell = self._i_cell = None
        self.nodes = None       # swept lines: (B, K, 2, R, C) row and column node voltages together

    @property
    def v_cell(self) -> np.ndarray:
        if self._v_cell is None:
            self._v_cell = self.v_row - self.v_col
        return self._v_cell

    @property
    def i_cell(self) -> np.ndarray:
        if self._i_cell is None:
            self._i_cell = iv_current(self._g[:, None], self.v_cell, self._beta, self._v_ref)
        return self._i_cell


class SweptSolution(DrivenSolution):
    """:class:`DrivenSolution` of swept lines (:meth:`LineSolver._swept`): its node voltages ``nodes``
    (B, K, 2, R, C) together, and its terminal currents worked out when first read, from the
    terminal nodes, the terminals' voltages ``row_v`` / ``col_v`` and their conductance ``g_term``
    (a pulse's caller reads neither; a read's only the columns')."""

    def __init__(self, nodes, row_v, col_v, g_term, iterations, g, beta, v_ref):
        self.nodes = nodes
        self.v_row, self.v_col = nodes[:, :, 0], nodes[:, :, 1]
        self._row_v, self._col_v, self._g_term = row_v, col_v, g_term
        self._row_current = self._col_current = None
        self.iterations = iterations
        self._g, self._beta, self._v_ref = g, beta, v_ref
        self._v_cell = self._i_cell = None

    @property
    def row_current(self) -> np.ndarray:
        if self._row_current is None:
            self._row_current = self._g_term * (self._row_v - self.v_row[..., :, 0])
        return self._row_current

    @property
    def col_current(self) -> np.ndarray:
        if self._col_current is None:
            self._col_current = self._g_term * (self.v_col[..., -1, :] - self._col_v)
        return self._col_current


class LineSolver:
    """Crossbars with resistive lines and every terminal driven.

    Where the lines barely load the devices (many small chips, :func:`~programming.line_batch.batch_suits`)
    the network is relaxed (:class:`~programming.line_batch.BatchLines`).  Otherwise every operating
    point is solved by line sweeps (:func:`~programming.line_sweep.sweep_solve`: block Gauss-Seidel
    over the row and column lines, each line's Newton step a tridiagonal solve, in compiled code)
    until every node voltage is proven within the tolerance of the solution, starting from the
    point's last solution (:class:`~programming.line_sweep.WarmStarts`: a read of the same row, a
    pulse of the same cell at another amplitude) — no factorization.

    Args:
        r_line: line resistance per segment, Ω (> 0).
        beta, v_ref: device I-V nonlinearity (1/V², ≥ 0) and reference voltage (V).
        r_access: series resistance between each terminal and its line, Ω.
        warm: keep each swept operating point's solution as the start of its next solve (else
            every solve starts at its terminals' voltages, and its answer depends on nothing
            earlier).
    """

    def __init__(self, r_line: float, beta: float, v_ref: float, r_access: float = 0.0, warm: bool = False):
        self.r_line, self.beta, self.v_ref, self.r_access = float(r_line), float(beta), float(v_ref), float(r_access)
        self._norm = 1.0 + self.beta * self.v_ref ** 2
        self.net: BatchLines | None = None     # the relaxed network, where the lines relax
        self._seen: np.ndarray | None = None   # the conductances it was last brought to (network)
        self._versions = np.zeros(0, np.int64)
        self._epoch = 0
        self.warm = bool(warm)
        self._warm: WarmStarts | None = None

    def network(self, g, among=None) -> BatchLines | None:
        """The relaxed network of conductances ``g`` (B, R, C), S (kept, updated to them) where
        the lines relax, else None (the solves sweep the lines).  A kept relaxed network is brought
        to ``g`` chip by chip: only the chips whose conductances differ from those it last saw
        (one compiled pass) are divided out and bounded again, and their :attr:`versions` counted
        up (a chip's version names the conductances it was solved on: :meth:`versions`).
        ``among``: optional chip indices (int64, ascending), the only chips whose conductances may
        differ from those the kept network last saw (the caller knows every other chip unchanged
        since): only those are compared."""
        g = np.asarray(g, float)
        net = self.net
        if type(net) is BatchLines and self._seen is not None and self._seen.shape == g.shape:
            from programming.relax_kernels import changed_chips     # numba: the network is relaxed

            g = np.ascontiguousarray(g)        # (the kernel's layout; a batch's own g already is)
            changed = changed_chips(g, self._seen, np.arange(g.shape[0]) if among is None else among)
            net.update_chips(changed, g[changed] / self._norm)
            self._versions[changed] += 1
            if batch_suits(net._g, self.r_line, self.r_access, rho=net.rho_lin):
                return net
            self.net = None             # too resistive now: the factorized or swept solves take over
        elif net is None and not enough_chips(g.shape[0]):
            self.net = None             # too few chips to relax (batch_suits' first test): swept, nothing divided out
        else:
            self.net = relaxed_network(net, g / self._norm, self.r_line, self.r_access)
        self._seen = g.copy() if self.net is not None else None
        self._versions = np.zeros(g.shape[0], np.int64)
        self._epoch += 1
        return self.net

    def versions(self, g, brought: bool = False) -> tuple[int, np.ndarray] | None:
        """The relaxed network brought to conductances ``g`` (:meth:`network`), and then
        (epoch, versions (B,)): a chip whose epoch and version are those of an earlier call has the
        same conductances as then (bit for bit: any change counts its version up; a new network
        starts a new epoch).  None where the lines do not relax.  ``brought``: the caller brought
        the network to ``g`` in this call (:meth:`relaxed` or :meth:`network` of the same, unchanged
        ``g``): not compared again (a pass over the whole batch's conductances)."""
        if (self.net if brought else self.network(g)) is None:
            return None
        return self._epoch, self._versions

    def kept_state(self) -> dict[str, np.ndarray]:
        """The warm starts this solver keeps, as plain arrays (:meth:`restore` of them makes
        another solver give the same answers bit for bit: a swept solve's answer depends on its
        start, to its tolerance); empty where it keeps none."""
        return {} if self._warm is None else self._warm.state()

    def restore(self, state) -> None:
        """Take the warm starts of :meth:`kept_state` (an empty or None state: none)."""
        self._warm = None
        if state:
            self._warm = WarmStarts.from_state(state)

    def relaxed(self, g, among=None) -> bool:
        """Whether solves on conductances ``g`` relax the lines (many small arrays,
        :mod:`programming.line_batch`: an operating point costs only while it has current) rather
        than sweep them (the network brought to ``g``; ``among``: as :meth:`network`)."""
        return self.network(g, among) is not None

    def read_points(self, g, chip, row, v_read: float, tol: float) -> np.ndarray:
        """Grounded reads of single rows on the relaxed network, which the caller has brought to
        ``g`` in this call (:meth:`relaxed`, :meth:`network` or :meth:`versions` of ``g``; the
        kernel reads its linear conductances, not compared with ``g`` again): current (P, C), A, out of every
        column of chip ``chip[p]`` when its row ``row[p]`` is at ``v_read`` (V), every other line at
        0 V (:meth:`~programming.line_batch.BatchLines.read_points`)."""
        return self._net_of(g).read_points(g, self.beta, self.v_ref, chip, row, v_read, tol)

    def pulse_points(self, g, chip, sel_r, sel_c, v, fracs, shift, vth, tol: float):
        """Pulses of single cells on the relaxed network (as :meth:`read_points`): power, the
        devices beyond a threshold and the largest unselected cell voltage
        (:meth:`~programming.line_batch.BatchLines.pulse_points`)."""
        return self._net_of(g).pulse_points(g, self.beta, self.v_ref, chip, sel_r, sel_c, v, fracs, shift, vth, tol)

    def _net_of(self, g) -> BatchLines:
        """The kept relaxed network (brought to ``g`` where none is kept yet)."""
        return self.net if self.net is not None else self.network(g)

    def solve(self, g, row_v, col_v, tol: float = 1e-12, max_iter: int = 200, focus=None,
              chips: slice | None = None, checked: bool = False, currents: bool = True, cells=None) -> DrivenSolution:
        """Solve ``K`` operating points per chip: ``row_v`` (B, K, R) and ``col_v`` (B, K, C), V,
        all finite, to ``tol`` times each point's largest terminal voltage (swept lines: every
        node voltage proven within it, and with ``currents`` every terminal current within ``tol``
        times that voltage times the chip's mean conductance — a reading's bound; relaxed lines:
        their proven bound).  ``focus``: optional
        (rows, cols), (B, K) ints (−1: none), the lines of each operating point whose devices
        carry the strong nonlinearity, for a relaxed network's factorized fallback
        (:meth:`~programming.line_model.LineNetwork.solve_cubic`).  ``chips``: solve only the
        chips ``chips`` (a slice) of the batch ``g`` on its kept relaxed network — ``row_v``,
        ``col_v`` and ``focus`` are then those chips' (a large batch solved chunk by chunk).
        ``checked``: the caller has brought the kept network to ``g`` in this call
        (:meth:`network`), so a batch solved chunk by chunk is not compared whole with the kept
        conductances for every chunk.  ``cells``: optional (B, K) ints, each operating point's focus
        cell (its chip's flat cell index, −1: none) for swept lines' warm starts (``cells`` of
        :func:`~programming.line_sweep.sweep_solve`)."""
        g = np.asarray(g, float)
        row_v, col_v = np.asarray(row_v, float), np.asarray(col_v, float)
        if not (np.isfinite(row_v).all() and np.isfinite(col_v).all()):
            raise ValueError("LineSolver needs every terminal driven (finite voltages)")
        net = self.net if checked and self.net is not None else self.network(g)
        if net is None:     # swept lines: compiled sweeps, no BLAS (sweep_solve pins it for its rare factorized points)
            return self._swept(g, row_v, col_v, tol, currents, cells)
        with blas_one_thread():  # one pinning for every substitution of the iteration
            return self._solve(g, row_v, col_v, tol, max_iter, focus, chips, net)

    def _solve(self, g, row_v, col_v, tol, max_iter, focus, chips, net) -> DrivenSolution:
        """:meth:`solve` on the kept relaxed network ``net`` (brought to ``g``)."""
        if chips is not None:
            net, g = net.chips(chips), g[chips]
        if focus is not None:
            focus = tuple(np.broadcast_to(np.asarray(f, np.intp), row_v.shape[:2]) for f in focus)
        x, it = net.solve_cubic(g, self.beta, self.v_ref, row_v, col_v, tol, max_iter, focus=focus)
        vr, vc = net.split(x)
        row_current, col_current = net.terminal_currents(vr, vc, row_v, col_v)
        return DrivenSolution(vr, vc, row_current, col_current, it, g, self.beta, self.v_ref)

    def _swept(self, g, row_v, col_v, tol, currents, cells=None) -> DrivenSolution:
        """:meth:`solve` by line sweeps from the kept warm starts (which it updates)."""
        B, R, C = g.shape
        K = row_v.shape[1]
        chip = np.repeat(np.arange(B), K)
        rv, cv = row_v.reshape(B * K, R), col_v.reshape(B * K, C)
        x = np.empty((B * K, 2, R, C))
        starts = None
        if self.warm:
            if self._warm is None or self._warm.shape != (R, C):
                self._warm = WarmStarts((R, C))
            starts = self._warm
        else:
            x[:, 0], x[:, 1] = rv[:, :, None], cv[:, None, :]
        scale = np.abs(np.concatenate((rv, cv), axis=1)).max(axis=1)     # each point's largest |terminal voltage|
        g_mean = g.reshape(B, -1).mean(axis=1)
        i_tol = tol * scale * g_mean[chip] if currents else np.inf
        # pulses stop on the lines' bound (their error reaches up to the tolerance); reads keep the
        # global bound, whose answers are ~1/100 of it off: a line calibration averages a chip's
        # readings down to ~1e-5 and fits the I-V's cubic term on them (on the lines' bound, readings
        # off by up to 1.5e-5, a 32x32 chip at 2 ohm measured beta 0 instead of 0.32 and tuned 68.9 %)
        sweeps = sweep_solve(g, self.beta, self.v_ref, self.r_line, self.r_access, chip, rv, cv, x, tol * scale, i_tol,
                             starts=starts, sharp=not currents,
                             cells=None if cells is None else np.broadcast_to(cells, (B, K)).reshape(B * K),
                             g_mean=g_mean)
        return SweptSolution(x.reshape(B, K, 2, R, C), row_v, col_v, 1.0 / (self.r_line + self.r_access),
                             int(sweeps.max(initial=0)), g, self.beta, self.v_ref)


def solve_network(g, row_v, col_v, beta: float, v_ref: float, r_line: float = 0.0,
                  tol: float = 1e-12, max_iter: int = 50, solver: LineSolver | None = None,
                  newton: bool = False, r_access: float = 0.0) -> NetworkSolution:
    """Solve a batch of crossbars.

    Args:
        g: (B, R, C) device read conductances, S.
        row_v: (B, R) row terminal voltages, V; NaN = floating.
        col_v: (B, C) column terminal voltages, V; NaN = floating.
        beta: I-V nonlinearity, 1/V^2;  v_ref: reference read voltage, V.
        r_line: line resistance per segment, ohm (0 = ideal lines).
        tol: relative Newton tolerance (KCL residual vs. V_max * largest line conductance, or the
            voltage step vs. V_max).
        max_iter: Newton iteration limit (RuntimeError beyond it).
        solver: with resistive lines and every terminal driven, solve on this
            :class:`LineSolver`'s kept factorization (the fast path; by default a new one).
        newton: solve by full Newton (batched dense below ``DENSE_MAX`` nodes, else sparse) even
            where the fast path applies: the reference the fast path is tested against.
        r_access: series resistance between each terminal and its line (a bench's relay and
            leads), ohm; only with resistive lines (r_line > 0).
    Raises:
        ValueError: bad shapes, negative r_line, or a chip whose rows (or columns) all float.
    """
    g = np.asarray(g, dtype=float)
    if g.ndim != 3:
        raise ValueError(f"g must have shape (B, R, C), got {g.shape}")
    B, R, C = g.shape
    row_v = np.array(np.broadcast_to(np.asarray(row_v, dtype=float), (B, R)))
    col_v = np.array(np.broadcast_to(np.asarray(col_v, dtype=float), (B, C)))
    if r_line < 0:
        raise ValueError(f"r_line must be >= 0, got {r_line}")
    rd, cd = ~np.isnan(row_v), ~np.isnan(col_v)
    for name, drv in (("row", rd), ("column", cd)):
        bad = np.nonzero(~drv.any(axis=1))[0]
        if bad.size:
            raise ValueError(f"every {name} line floats on chip(s) {bad.tolist()}: the network has "
                             "no return path (drive at least one row and one column)")
    if r_line > 0 and rd.all() and cd.all() and not newton:
        ls = solver if solver is not None and (solver.r_line, solver.r_access) == (r_line, r_access) \
            else LineSolver(r_line, beta, v_ref, r_access)
        sol = ls.solve(g, row_v[:, None], col_v[:, None], tol=tol)
        return NetworkSolution(sol.v_cell[:, 0], sol.i_cell[:, 0], sol.col_current[:, 0], sol.row_current[:, 0],
                               sol.iterations, sol.v_row[:, 0], sol.v_col[:, 0])
    rv, cv = _pin_isolated(g, row_v, col_v)
    vd = np.concatenate([rv, cv], axis=1)
    v_scale = max(np.abs(vd[~np.isnan(vd)]).max(initial=0.0), 1e-300)
    i_scale = v_scale * max(g.sum(axis=2).max(initial=0.0), g.sum(axis=1).max(initial=0.0))
    scales = (i_scale, v_scale)
    if r_line == 0:
        x, it = _solve_ideal(g, rv, cv, beta, v_ref, tol, max_iter, scales)
        vr = np.repeat(x[:, :R, None], C, axis=2)
        vc = np.repeat(x[:, None, R:], R, axis=1)
    else:
        vr, vc, it = _solve_lines(g, rv, cv, beta, v_ref, float(r_line), tol, max_iter, scales, float(r_access))
    v_cell = vr - vc
    i_cell = iv_current(g, v_cell, beta, v_ref)
    # Terminal currents by KCL over the whole line (line segments are internal to it).
    row_current = np.where(rd, i_cell.sum(axis=2), 0.0)
    col_current = np.where(cd, i_cell.sum(axis=1), 0.0)
    return NetworkSolution(v_cell, i_cell, col_current, row_current, int(it), vr, vc)


def row_drive(v_rows, beta: float, v_ref: float) -> np.ndarray:
    """Current per siemens, A/S, of a cell at ``v_rows`` (V) on ideal lines:
    f = iv_current(1.0, v, ...) = v·((1 + β·v·v)/(1 + β·v_ref²)), worked out in place (0 at 0 V)."""
    f = beta * v_rows
    f *= v_rows
    f += 1.0
    f /= 1.0 + beta * v_ref * v_ref
    f *= v_rows
    return f


def drive_product(f, g) -> np.ndarray:
    """Column currents (B, N, C), A, of row drives ``f`` (B, N, R) (:func:`row_drive`) on ``g``
    (B, R, C), S: I_j = Σ_i g_ij f_i, BLAS on one thread for large products."""
    if f.shape[-2] * g.shape[-2] * g.shape[-1] < BLAS_ONE_THREAD_MIN or blas_held():
        return np.matmul(f, g)
    with blas_one_thread():
        return np.matmul(f, g)


def mvm_currents(g, v_rows, beta: float, v_ref: float, r_line: float = 0.0) -> np.ndarray:
    """Column currents (B, N, C), A, for ``N`` input vectors ``v_rows`` (B, N, R), V, applied to the
    rows with every column held at 0 V.  ``g``: (B, R, C), S; ``r_line``: ohm per segment."""
    g = np.asarray(g, dtype=float)
    v_rows = np.asarray(v_rows, dtype=float)
    if r_line == 0:  # cell voltage = row voltage: I_j = sum_i g_ij f(v_i)
        return drive_product(row_drive(v_rows, beta, v_ref), g)
    B, n, _ = v_rows.shape
    return LineSolver(r_line, beta, v_ref).solve(g, v_rows, np.zeros((B, n, g.shape[2]))).col_current


def read_rows_grounded(g, v_read: float, beta: float, v_ref: float, r_line: float = 0.0) -> np.ndarray:
    """Measured current (B, R, C), A, of cell (i, j) when row i is driven at ``v_read`` (V) and every
    other line is held at 0 V, read at column j's terminal.  ``g``: (B, R, C), S; ``r_line``: ohm."""
    g = np.asarray(g, dtype=float)
    if r_line == 0:
        return iv_current(g, v_read, beta, v_ref)
    B, R, C = g.shape
    row_v = np.broadcast_to(np.eye(R) * v_read, (B, R, R))
    return LineSolver(r_line, beta, v_ref).solve(g, row_v, np.zeros((B, R, C))).col_current
