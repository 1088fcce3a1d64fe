"""Line solves for many small crossbars at once, without a factorization per chip (SI units).

The same network as :class:`programming.line_model.LineNetwork` (every terminal driven; row i's
terminal at its column-0 end, column j's at its row-(R−1) end; ``r_line`` per segment, ``r_access``
in series with each terminal), solved by relaxation of the lines against the devices, each
operating point on its own in a compiled kernel (:mod:`programming.relax_kernels`, numba, imported
only when a relaxed solve runs): memory O(B·K·R·C) in chunks of chips, no per-chip objects and no
Python loop over chips.

With the terminals at ``V_r`` (rows) and ``V_c`` (columns) every row node sits at its terminal's
voltage minus the drop the devices' currents cause along its line, and every column node at its
terminal's voltage plus the rise:

    v_row = V_r − L_r⁻¹ I(v_row − v_col),    v_col = V_c + L_c⁻¹ I(v_row − v_col),

``I`` the devices' currents (row → column) and ``L⁻¹`` a ladder's resistance matrix: node k of a
line (counted from its terminal) and node m share the path ``r_line + r_access + r_line·min(k, m)``,
so ``L⁻¹ I`` is two cumulative sums along the line.  Only the sum of the drop and the rise,
``u = L_r⁻¹ I + L_c⁻¹ I``, enters the cell voltages ``v_cell = (V_r − V_c) − u``: the iteration is
``u ← (L_r⁻¹ + L_c⁻¹) I(V_r − V_c − u)`` from ``u = 0`` (ideal lines).  It is a contraction with
constant ρ ≤ max over nodes of ``(L_r⁻¹ + L_c⁻¹)·s`` (:func:`contraction`, ``s`` the largest slope
dI/dV any device can have in the solve), so after a step ``Δu`` the error is at most
``ρ/(1 − ρ)·|Δu|``: each operating point stops when that bound is below the tolerance (a proven
tolerance, each point on its own: its answer does not depend on what else is in the batch).  On
small arrays the lines barely load the devices (r·g ~ 3e-4 per segment: ρ ~ 0.02 on 8×8 at
0.67 Ω), so a point converges to 1e-10 in about five steps from ``u = 0`` (a grounded read,
started from its row's own network and stopped on its readings' bound, mostly in one).  Where ρ
is not small (large arrays, high resistances) :func:`kept_network` keeps the factorized
:class:`LineNetwork`.
"""
from __future__ import annotations

import numpy as np

from .line_model import LineNetwork, init_lines

#: largest contraction bound of the linear network (devices at their small-signal conductance)
#: for which :func:`kept_network` relaxes instead of factorizing; 8×8 at 0.67 Ω and 600 µS per
#: device is 0.03, 16×16 0.11
RHO_BATCH = 0.05
#: fewest chips relaxed: a few chips factorize faster than they relax (one sparse LU each)
BATCH_MIN_CHIPS = 32
#: a solve whose bound (with the devices' cubic slope at the solve's voltages) is above this is
#: handed to a factorized :class:`LineNetwork` (relaxation would need too many steps); the bound
#: is pessimistic (6×7 at 3 Ω and 2 V: bound 0.47, 14 steps to 1e-12)
RHO_SOLVE = 0.8
#: node values (chips × right-hand sides × R × C) relaxed per call of the compiled kernel: bounds
#: the memory of a linear solve's device-free node voltages (1024 operating points of 8×8, 512 kB
#: per array); each point relaxes in its own few kB
CHUNK = 1 << 16
#: tolerance of the linear solves (:meth:`BatchLines.solve`), relative to the largest voltage the
#: injections give the nodes; the factorized network's substitution is exact to rounding
LINEAR_TOL = 1e-13


def contraction(slope, r_line: float, r_access: float = 0.0) -> np.ndarray:
    """Contraction bound ρ (B,) of the relaxation on chips whose devices have slopes dI/dV of at
    most ``slope`` (B, R, C), S: the largest row sum of ``(L_r⁻¹ + L_c⁻¹)·diag(slope)``."""
    from .relax_kernels import ladder_bound     # numba: only where relaxed lines are considered

    return ladder_bound(np.asarray(slope, float), float(r_line) + float(r_access), float(r_line))


def enough_chips(n_chips: int, min_chips: int | None = None) -> bool:
    """Whether a batch of ``n_chips`` chips is large enough to relax (:func:`batch_suits`' first
    test: ``min_chips``, default :data:`BATCH_MIN_CHIPS`)."""
    return n_chips >= (BATCH_MIN_CHIPS if min_chips is None else min_chips)


def batch_suits(g_lin, r_line: float, r_access: float = 0.0, rho=None, min_chips: int | None = None) -> bool:
    """Whether :class:`BatchLines` solves the network of linear conductances ``g_lin`` (B, R, C),
    S, in few steps (:data:`RHO_BATCH`) and for enough chips (``min_chips``, default
    :data:`BATCH_MIN_CHIPS`); ``rho`` (B,): their :func:`contraction` bounds when already known."""
    g_lin = np.asarray(g_lin, float)
    if not (enough_chips(g_lin.shape[0], min_chips) and g_lin.size > 0):
        return False
    return float((contraction(g_lin, r_line, r_access) if rho is None else rho).max()) <= RHO_BATCH


def kept_network(net: LineNetwork | None, g_lin, r_line: float, r_access: float = 0.0,
                 min_chips: int | None = None) -> LineNetwork:
    """The network of linear conductances ``g_lin`` (B, R, C), S: relaxed (:class:`BatchLines`)
    where the lines barely load the devices (:func:`batch_suits`, from ``min_chips`` chips), else
    factorized (:class:`LineNetwork`) — ``net`` updated to them when it is of that kind (a relaxed
    network keeps its contraction bound, computed once per set of conductances), else a new one."""
    g_lin = np.asarray(g_lin, float)
    same = net is not None and net.shape == g_lin.shape and (net.r_line, net.r_access) == (r_line, r_access)
    if same and type(net) is BatchLines:
        net.update(g_lin)
        if batch_suits(g_lin, r_line, r_access, rho=net.rho_lin, min_chips=min_chips):
            return net
        return LineNetwork(g_lin, r_line, r_access)
    if batch_suits(g_lin, r_line, r_access, min_chips=min_chips):
        return BatchLines(g_lin, r_line, r_access)
    if same and type(net) is LineNetwork:
        net.update(g_lin)
        return net
    return LineNetwork(g_lin, r_line, r_access)


def _raise_on(status: int, worst: float, max_iter: int, unit: str = "V") -> None:
    """The error of a relaxation kernel's status (0: converged); ``worst`` in ``unit``."""
    if status == 1:
        raise RuntimeError("line relaxation diverged (non-finite node voltages)")
    if status == 2:
        raise RuntimeError(f"line relaxation did not converge in {max_iter} steps "
                           f"(largest error bound {worst:.3e} {unit})")


class BatchLines(LineNetwork):
    """:class:`LineNetwork`'s interface (every terminal driven) solved by relaxation: keeps the
    conductances only (B·R·C numbers), never a factorization per chip.

    Args:
        g: (B, R, C) linear device conductances, S.
        r_line: line resistance per segment, Ω (> 0).
        r_access: series resistance between each terminal and its line, Ω (>= 0).
    """

    def __init__(self, g, r_line: float, r_access: float = 0.0):  # noqa: D107 - no factorization
        g = init_lines(self, g, r_line, r_access)
        self.driven = (np.ones(g.shape[1], bool), np.ones(g.shape[2], bool))
        self.factorizations = 0
        self.update(g)

    def update(self, g) -> int:
        """Take new conductances (B, R, C), S, and their contraction bound :attr:`rho_lin` (B,);
        nothing is factorized (returns 0)."""
        g = np.asarray(g, dtype=float)
        if g.shape != self.shape:
            raise ValueError(f"conductances of shape {g.shape}, network built for {self.shape}")
        if getattr(self, "_g", None) is None:
            self._g = g.copy()
            self.rho_lin = contraction(g, self.r_line, self.r_access)
        else:
            # only the chips whose conductances changed (a chip's bound is its own): a large batch
            # with a few chips at work is not bounded anew whole at every call
            changed = np.flatnonzero((g != self._g).reshape(g.shape[0], -1).any(axis=1))
            self.update_chips(changed, g[changed])
        return 0

    def update_chips(self, changed, g_new) -> None:
        """Take new conductances ``g_new`` (len(changed), R, C), S, of the chips ``changed``
        (indices), and their contraction bounds."""
        if changed.size:
            self._g[changed] = g_new
            self.rho_lin[changed] = contraction(g_new, self.r_line, self.r_access)

    def chips(self, sl: slice) -> "BatchLines":
        """The network of chips ``sl`` (a slice, or indices: a chip may repeat, one network per
        operating point) of this batch, sharing its conductances and bounds (nothing is
        recomputed): a batch solved chip chunk by chip chunk never holds the node voltages of all
        its operating points at once."""
        sub = object.__new__(BatchLines)
        sub.__dict__.update(self.__dict__)
        sub._g, sub.rho_lin = self._g[sl], self.rho_lin[sl]
        sub.shape = sub._g.shape
        return sub

    def _factorized(self) -> LineNetwork:
        """The factorized network of the same conductances (for a solve that would relax slowly)."""
        return LineNetwork(self._g, self.r_line, self.r_access)

    # ------------------------------------------------------------------------------ solves
    def relaxes(self) -> bool:
        """Whether :meth:`solve` relaxes (each point's answer its own, in any batch) rather than
        handing the call to the factorized network (lines too resistive to relax fast)."""
        return not self.rho_lin.max(initial=0.0) > RHO_SOLVE

    def solve(self, rhs, tol: float = LINEAR_TOL) -> np.ndarray:
        """Node voltages (B, K, N), V, for node current injections ``rhs`` (B, K, N), A (linear
        devices), to ``tol`` of each operating point's largest device-free node voltage."""
        rhs = np.asarray(rhs, float)
        B, R, C = self.shape
        if not self.relaxes():
            return self._factorized().solve(rhs)
        from .relax_kernels import device_free

        inj = rhs.reshape(B, rhs.shape[1], 2, R, C)
        r_t = self.r_line + self.r_access

        def bases(sl):          # node voltages with no devices, chunk by chunk (bounded memory)
            base = np.empty(inj[sl].shape)
            device_free(inj[sl], r_t, self.r_line, base)
            return base[:, :, 0], base[:, :, 1]

        return self._relax(self._g, 0.0, tol, 200, rhs.shape[1], bases=bases)[0]

    def solve_column_units(self, cols, tol: float = LINEAR_TOL, out=None) -> np.ndarray:
        """:meth:`solve` of a unit current (1 A) into column ``cols[k]``'s node next to its
        terminal (row R − 1) as right-hand side k of every chip: node voltages (B, K, N), V,
        the same bit for bit, without building the injections or passing them through the
        device-free ladders (:func:`~programming.relax_kernels.device_free`): that current rises
        every node of its column by ``(r_t − r)·1 + r·1`` (the column ladder's sums, as the kernel
        works them out: ``r_t`` the terminal path, ``r`` a segment) and leaves every other node
        at 0 V (the line model's adjoints, :meth:`~programming.ir_correction.ReadCorrection._adjoints`).
        ``out``: a C-contiguous (B, K, N) array the relaxed answer is written into (and returned)."""
        cols = np.asarray(cols, np.intp)
        B, R, C = self.shape
        if not self.relaxes():
            unit = np.zeros((B, cols.size, 2, R, C))
            unit[:, np.arange(cols.size), 1, R - 1, cols] = 1.0
            return self.solve(unit.reshape(B, cols.size, 2 * R * C), tol)
        r_t = self.r_line + self.r_access
        rise = self.r_line * 1.0 + (r_t - self.r_line) * 1.0
        base_c = np.zeros((cols.size, R, C))
        base_c[np.arange(cols.size), :, cols] = rise
        base_r = np.zeros((1, 1, 1, 1))

        def bases(sl):          # (every chip's the same: broadcast views)
            return base_r, base_c[None]

        return self._relax(self._g, 0.0, tol, 200, cols.size, bases=bases, out=out)[0]

    def column_units(self, tol: float, out=None) -> np.ndarray:
        """:meth:`solve_column_units` of every column (right-hand side j a unit current into column
        j's node next to its terminal; node voltages (B, C, N), V, into ``out`` where given), each
        relaxed from the network in which only its column's devices carry current
        (:func:`~programming.relax_kernels.relax_columns`) to the same proven bound ``tol``; where
        the lines would relax slowly, :meth:`solve_column_units`."""
        B, R, C = self.shape
        if not self.relaxes():
            x = self.solve_column_units(np.arange(C), tol)
            if out is not None:
                out[...] = x
                return out
            return x
        from .relax_kernels import relax_columns      # numba: only where a relaxed solve runs

        x = np.empty((B, C, 2, R, C)) if out is None else out.reshape(B, C, 2, R, C)
        _, status, worst = relax_columns(self._g, self.rho_lin, float(tol), self.r_line + self.r_access, self.r_line,
                                         200, x)
        _raise_on(status, worst, 200)
        return x.reshape(B, C, 2 * R * C)

    def solve_cubic(self, g, beta: float, v_ref: float, row_v, col_v, tol: float = 1e-12,
                    max_iter: int = 200, focus=None):
        """:meth:`LineNetwork.solve_cubic` by relaxation: node voltages (B, K, N), V, and steps, of
        devices ``I = g·V·(1 + β V²)/(1 + β v_ref²)`` (``g`` (B, R, C), S) with terminals at
        ``row_v`` (B, K, R) and ``col_v`` (B, K, C), V; converged when the proven error bound
        ρ/(1 − ρ)·|Δu| of every node is below ``tol`` times the largest terminal voltage of its
        operating point (each point on its own, so its answer is the same in any batch).
        ``focus`` (the factorized network's Newton lines) is not needed: every device's
        nonlinearity is relaxed with the lines."""
        row_v, col_v = np.asarray(row_v, float), np.asarray(col_v, float)
        g = np.asarray(g, float)
        norm = 1.0 + beta * v_ref * v_ref
        # each point's bound is linear in the slopes g_lin·(1 + 3·β·v²) at its largest cell voltage,
        # its terminals' span (a network of monotone devices has its node voltages between its
        # terminals'), 1 % margin for the iterates (relax_points works it out per point); the
        # largest of them, from the call's whole span, decides whether any point would relax slowly
        rho_top = 0.0
        if row_v.size and self.rho_lin.size:
            hi, lo = max(row_v.max(), col_v.max(initial=-np.inf)), min(row_v.min(), col_v.min(initial=np.inf))
            rho_top = self.rho_lin.max() * (1.0 + 3.0 * abs(beta) * (1.01 * (hi - lo)) ** 2)
        if rho_top > RHO_SOLVE:
            span = 1.01 * (np.maximum(row_v.max(axis=2), col_v.max(axis=2))
                           - np.minimum(row_v.min(axis=2), col_v.min(axis=2)))
            if (self.rho_lin[:, None] * (1.0 + 3.0 * abs(beta) * span ** 2)).max(initial=0.0) > RHO_SOLVE:
                return self._factorized().solve_cubic(g, beta, v_ref, row_v, col_v, tol, max_iter, focus=focus)
        return self._relax(g / norm, beta, tol, max_iter, row_v.shape[1], terminals=(row_v, col_v))

    def read_rows(self, g, beta: float, v_ref: float, v_read: float, tol: float, i_tol):
        """The grounded reads of every row of every chip (read k drives row k at ``v_read``, V, every
        other line at 0 V) on devices ``I = g·V·(1 + β V²)/(1 + β v_ref²)`` (``g`` (B, R, C), S,
        whose linear parts this network holds): node voltages (B, R, N), V, and column currents
        (B, R, C), A (into each column's driver), each read relaxed on its own from its row's own
        network (:func:`~programming.relax_kernels.relax_rows`) until its node voltages are within
        ``tol`` of ``|v_read|`` and its currents within ``i_tol`` (B,), A, of the solution's (both
        proven); where the lines would relax slowly, :meth:`solve_cubic`'s factorized solve to
        ``tol`` and its terminal currents."""
        g = np.asarray(g, float)
        B, R, C = self.shape
        k = 1.0 + 3.0 * abs(beta) * (1.01 * abs(v_read)) ** 2
        if self.rho_lin.max(initial=0.0) * k > RHO_SOLVE:
            row_v = np.broadcast_to(np.eye(R) * v_read, (B, R, R))
            col_v = np.zeros((B, R, C))
            x = self.solve_cubic(g, beta, v_ref, row_v, col_v, tol)[0]
            xr, xc = self.split(x)
            return x, self.terminal_currents(xr, xc, row_v, col_v)[1]
        from .relax_kernels import relax_rows      # numba: only where a relaxed solve runs

        x = np.empty((B, R, 2, R, C))
        reads = np.empty((B, R, C))
        _, status, worst = relax_rows(self._g, float(beta), self.rho_lin, float(v_read), float(tol),
                                      np.asarray(i_tol, float), self.r_line + self.r_access, self.r_line, 200, x,
                                      reads)
        _raise_on(status, worst, 200)
        return x.reshape(B, R, 2 * R * C), reads

    def _slow(self, chip, beta: float, span) -> np.ndarray | None:
        """Which points on chips ``chip`` whose terminals span ``span`` (V) would relax slowly: their
        bound with the devices' cubic slope (as :func:`~programming.relax_kernels._take` works
        it out) above :data:`RHO_SOLVE` (they are solved on a factorization instead); None where
        none can be: the same bound of the network's largest ``rho_lin`` at the largest span is
        at most RHO_SOLVE (every operation of the bound is monotone, so no point's exceeds it; a
        call of many points on a large batch is then not bounded point by point)."""
        def bound(rho, s):
            return rho * (1.0 + 3.0 * abs(beta) * (1.01 * s) ** 2)

        span = np.asarray(span, float)
        if span.size and self.rho_lin.size and bound(self.rho_lin.max(), span.max()) <= RHO_SOLVE:
            return None
        return bound(self.rho_lin[chip], span) > RHO_SOLVE

    def _factorized_points(self, g, beta: float, v_ref: float, chip, row_v, col_v, tol: float, max_iter: int):
        """Row and column node voltages (P, R, C) each, V, of single operating points (point p on chip
        ``chip[p]`` at terminals ``row_v[p]`` (R,), ``col_v[p]`` (C,)) on the factorized network of
        their chips' conductances (:meth:`solve_cubic`'s fallback)."""
        sub = self.chips(chip)
        x, _ = sub._factorized().solve_cubic(g[chip], beta, v_ref, row_v[:, None], col_v[:, None], tol, max_iter)
        vr, vc = sub.split(x)
        return vr[:, 0], vc[:, 0]

    def read_points(self, g, beta: float, v_ref: float, chip, row, v_read: float, tol: float,
                    max_iter: int = 200) -> np.ndarray:
        """Grounded reads of single rows: current (P, C), A, out of every column into its driver when
        row ``row[p]`` of chip ``chip[p]`` is at ``v_read`` (V) and every other line at 0 V, on
        devices ``I = g·V·(1 + β V²)/(1 + β v_ref²)`` (``g`` (B, R, C), S: the whole batch's, whose
        linear parts ``g/(1 + β v_ref²)`` this network holds: brought to them by :meth:`update`).
        Every reading within ``tol`` times ``|v_read|`` times its chip's mean linear conductance (a
        proven bound): each read relaxed on its own from its row's own network
        (:func:`~programming.relax_kernels.relax_reads`); a read whose bound is above
        :data:`RHO_SOLVE` solved on a factorization, its node voltages to the tolerance that bounds
        its readings as much (a reading is ``g_term`` times its column's terminal node's rise)."""
        from .relax_kernels import relax_reads      # numba: only where a relaxed solve runs

        g = np.asarray(g, float)
        chip, row = np.asarray(chip, np.int64), np.asarray(row, np.int64)
        B, R, C = self.shape
        out = np.empty((chip.size, C))
        slow = self._slow(chip, beta, abs(v_read))
        if slow is not None and slow.any():
            idx = np.flatnonzero(slow)
            row_v = np.zeros((idx.size, R))
            row_v[np.arange(idx.size), row[idx]] = v_read
            col_v = np.zeros((idx.size, C))
            g_mean = self._g[chip[idx]].reshape(idx.size, -1).mean(axis=1).min()
            vr, vc = self._factorized_points(g, beta, v_ref, chip[idx], row_v, col_v, tol * g_mean / self.g_term,
                                             max_iter)
            out[idx] = self.g_term * (vc[:, -1, :] - col_v)
            chip, row, out_fast = chip[~slow], row[~slow], np.empty((chip.size - idx.size, C))
        else:
            out_fast = out
        status, worst = 0, 0.0
        if chip.size:
            _, status, worst = relax_reads(self._g, chip, row, float(v_read), float(beta), self.rho_lin, float(tol),
                                           self.r_line + self.r_access, self.r_line, int(max_iter), out_fast)
        _raise_on(status, worst, max_iter, "A")
        if out_fast is not out:
            out[~slow] = out_fast
        return out

    def pulse_points(self, g, beta: float, v_ref: float, chip, sel_r, sel_c, v, fracs, shift, vth, tol: float,
                     max_iter: int = 200):
        """V/2 or V/3 pulses of single cells, each relaxed on its own
        (:func:`~programming.relax_kernels.relax_pulses`, to :meth:`solve_cubic`'s bound ``tol``,
        the same cell voltages bit for bit; a pulse whose bound is above :data:`RHO_SOLVE` solved on
        a factorization): pulse p on chip ``chip[p]`` drives row ``sel_r[p]`` at ``v[p]`` (V) and
        column ``sel_c[p]`` at 0 V, the other rows and columns at ``fracs`` (row, column) of
        ``v[p]``; devices as :meth:`read_points`.  ``shift`` (P,): each pulse's width term of the
        equivalent voltage, V; ``vth`` = (vth_set, vth_reset) (B, R, C), V.

        Returns:
            power (P,), W; the devices some pulse's cell voltage reaches beyond a threshold, in
            pulse then flat order: their pulse (H,), flat index in their chip (H,) and cell voltage
            (H,), V; and the largest |cell voltage| of any unselected cell, V.
        """
        from .relax_kernels import relax_pulses      # numba: only where a relaxed solve runs

        g = np.asarray(g, float)
        chip, sel_r, sel_c = (np.asarray(a, np.int64) for a in (chip, sel_r, sel_c))
        v = np.asarray(v, float)
        B, R, C = self.shape
        P = chip.size
        given = np.empty((0, 2, R, C))
        slow = self._slow(chip, beta, np.abs(v))
        if slow is not None and slow.any():
            # every pulse solved on the factorization where one would relax slowly (its node
            # voltages given to the kernel, which then only works out what the caller needs)
            row_v = np.repeat((v * fracs[0])[:, None], R, axis=1)
            col_v = np.repeat((v * fracs[1])[:, None], C, axis=1)
            row_v[np.arange(P), sel_r] = v
            col_v[np.arange(P), sel_c] = 0.0
            given = np.stack(self._factorized_points(g, beta, v_ref, chip, row_v, col_v, tol, max_iter), axis=1)
        energy = np.empty(P)
        hit_p, hit_f, hit_v = np.empty(P * R * C, np.int64), np.empty(P * R * C, np.int64), np.empty(P * R * C)
        _, status, worst, n, top = relax_pulses(g, self._g, 1.0 + beta * v_ref * v_ref, chip, sel_r, sel_c, v,
                                                float(fracs[0]), float(fracs[1]), np.asarray(shift, float), vth[0],
                                                vth[1], float(beta), self.rho_lin, float(tol),
                                                self.r_line + self.r_access, self.r_line, int(max_iter), given, energy,
                                                hit_p, hit_f, hit_v)
        _raise_on(status, worst, max_iter)
        return energy, hit_p[:n].copy(), hit_f[:n].copy(), hit_v[:n].copy(), top

    def _relax(self, g_lin, beta: float, tol: float, max_iter: int, K: int, bases=None, terminals=None, out=None):
        """Relax every chip's ``K`` operating points, each on its own (the compiled
        :mod:`programming.relax_kernels`), chunk by chunk of chips: their row / column node
        voltages without devices, V, are ``bases(chips)`` (broadcastable to (chips, K, R, C)) or
        those of the terminal voltages ``terminals`` = (row_v (B, K, R), col_v (B, K, C)); each
        point stops when its proven error bound is ``tol`` times its largest device-free node
        voltage (the devices carry ``I = g_lin·v·(1 + β v²)``, ``beta`` 0: linear).  A point's
        answer is the drop and rise of the step at which its own bound is met (the same in any
        batch); a point whose devices all see 0 V carries no current, so its lines stay at their
        terminals'.  Returns node voltages (B, K, N) (written into ``out``, a C-contiguous array of
        that shape, where given) and the most steps any point took."""
        from .relax_kernels import relax_points      # numba: only where a relaxed solve runs

        B, R, C = self.shape
        x = np.empty((B, K, 2, R, C)) if out is None else out.reshape(B, K, 2, R, C)
        per_chip = max(1, CHUNK // max(1, K * R * C))
        g_lin = np.ascontiguousarray(g_lin, dtype=float)
        r_t = self.r_line + self.r_access
        steps = 1
        for b0 in range(0, B, per_chip):
            sl = slice(b0, b0 + per_chip)
            shape = (min(B, b0 + per_chip) - b0, K, R, C)
            if terminals is not None:       # every row node of row i at row_v[..., i], every column node at col_v
                base_r, base_c = terminals[0][sl][..., :, None], terminals[1][sl][..., None, :]
            else:
                base_r, base_c = bases(sl)
            took, status, worst = relax_points(np.broadcast_to(base_r, shape), np.broadcast_to(base_c, shape),
                                               g_lin[sl], float(beta), self.rho_lin[sl], float(tol), r_t, self.r_line,
                                               int(max_iter), x[sl])
            _raise_on(status, worst, max_iter)
            steps = max(steps, took)
        return x.reshape(B, K, 2 * R * C), steps
