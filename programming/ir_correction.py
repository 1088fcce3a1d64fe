"""IR-drop correction of verify reads: what a grounded read measures, mapped back to the device.

On a chip with resistive lines a grounded read of cell (i, j) (row i at V_read, every other line at
0 V, current measured at column j's terminal) is biased: row i carries the current of every cell on
it, column j's current partly leaks into the other rows, and the cell sees less than V_read.  The
tuner cannot see the devices, only readings; with an *estimate* of the line resistance (measured by
``xbar calibrate-lines``, :mod:`procedures.calibrate_lines`) it models the chip as the linear
network of :class:`~programming.line_model.LineNetwork` with its own estimate of every cell's
conductance, and inverts each reading through that model:

* the model gives, for the estimate ``ĝ``, the reading ``m̂`` of every cell and its sensitivity to
  the cell's own conductance (an adjoint solve: one substitution per column for the whole array);
* locally ``m = m̂ + a·Δ/(1 + c·Δ)``, ``Δ = g − ĝ``, ``a`` the model's slope at ``ĝ`` and ``c`` the
  resistance the cell's own port sees through the lines to its two terminals (with the cell in
  parallel): by Sherman–Morrison a reading of a linear network is exactly this function of one
  conductance, ``c`` being the port's resistance, which every sneak path only lowers (Rayleigh), so
  the lines' bound is its nearest closed form.  A reading equal to the model's maps back to ``ĝ``
  exactly, nearby readings to first order, and far ones (a cell tuned from the window's bottom to its
  target between refreshes) within ~1 % of the model's own inversion (64×64 at 0.67 Ω, 10 → 600 µS;
  the form ``1/m = a'/g + c'``, a cell in series with a fixed resistance, missed by up to 90 %: it
  puts the reading of a cell at g = 0 at 0, where the other cells' currents leave ~10 µS);
* every corrected reading updates the estimate; the model is refreshed as the estimate moves;
* a read-back of the whole array is inverted jointly (:meth:`ReadCorrection.fit`): every cell's
  conductance such that the model reproduces every reading at once (a reading depends on the other
  cells of its row and column, whose estimates come from their own biased reads).

Nothing here uses a simulator's truth: inputs are readings, the line-resistance estimate and the
read voltage.  The devices carry the cubic I-V whose coefficient ``xbar calibrate-lines`` measures
(``beta``; linear without it).
"""
from __future__ import annotations

import numpy as np

from . import line_batch
from .line_batch import BatchLines
from .line_model import Anderson, LineNetwork
from .line_sweep import WarmStarts, relaxed_network, sweep_solve

#: chips modelled at once (bounds the memory of a batch's model: 1024 chips of 8×8, ~30 MB)
MODEL_CHIPS = 1024


#: the most sensitivities (chips × cells × (rows + cols)) :class:`ReadCorrection` keeps to follow
#: the other cells between refreshes (a 64×64 chip needs 5·10⁵; larger batches go without)
CROSS_MAX = 10_000_000

#: bytes of node voltages a relaxed adjoint solve works out at once (:meth:`ReadCorrection._adjoints`:
#: that many chips' answers at a time, every column of each)
ADJOINT_BYTES = 2 << 20

#: tolerance of the model's grounded reads on swept lines (:meth:`ReadCorrection.model`, every
#: chip whose lines do not relax: :func:`~programming.line_sweep.sweep_solve`, each from the
#: model's last solution of the same read): every node voltage proven within this fraction of the
#: read voltage, as the simulator's :data:`~mock_hw.sim_chip.FACTORED_READ_TOL`; readings and
#: slopes within 2e-6 relative of the exact solution (measured on 8×8 to 64×64 at 0.67 and 2 Ω),
#: two thousandths of the 0.1 % read noise and 1/5000 of a 1 % band
MODEL_READ_TOL = 1e-6
#: tolerance of the model's adjoint solves, swept and relaxed: every node voltage proven within this
#: fraction of the ``1/g_term`` by which a unit current at a column's terminal node raises it (a
#: relaxed solve's largest node voltage without devices).  The sensitivities only set the slope of
#: each cell's local inversion and the first-order follow of the other cells, so a relative error
#: of 1e-6 in them moves a corrected reading by ~1e-6 of its change since the last refresh, while
#: a fit's answer (the conductances whose modelled readings equal the readings) does not depend on
#: them.  (Relaxed lines solved them to 1e-9 until stop 28: 4 relaxation steps per column on
#: 10 000 x 8x8 at 0.67 ohm, 3 at 1e-6.)
ADJOINT_TOL = 1e-6


_KERNELS = {}


def _kernels() -> dict:
    """The line model's compiled passes over cells (:meth:`ReadCorrection.write_transfer`'s
    transfers, :meth:`ReadCorrection._invert`'s inversion), compiled on first use with one explicit
    signature each and cached on disk by numba; numba is imported only here (the line model runs on
    resistive lines only, whose solves load it anyway).  Each does the numpy formula's operations
    in its order, element by element (no fastmath: the same numbers)."""
    if not _KERNELS:
        from numba import float64, int64, njit, void

        @njit(void(int64[::1], int64, int64, int64, int64[::1], int64[::1], float64[::1], float64[::1], float64[::1],
                   float64[::1], float64, float64, float64, float64, float64, float64, float64[::1]), cache=True)
        def transfer(lanes, L, R, C, rows, cols, amplitude, phi, psi, sigma, ab, oa, b, half, beta,
                     norm, out):  # pragma: no cover - compiled
            """write_transfer's t of each lane ``lanes[i]`` (flat into the (B, L) lanes' ``rows`` and
            ``cols``: its cell ``(b·R + row)·C + col`` flat into the maps) driven at
            ``amplitude[i]``: ``ab`` = a − b, ``oa`` = 1 − a, ``half`` = max(1 − b, a),
            ``norm`` = 1 + β·V_read².  The maps' values gathered first (into ``out``), then the
            divisions over contiguous values, which the compiler vectorizes (a loop gathering and
            dividing at once stays scalar: 27 against 20 ns a cell)."""
            for i in range(lanes.size):
                q = lanes[i]
                k = ((q // L) * R + rows[q]) * C + cols[q]
                t_lin = ab * sigma[k] + oa * phi[k]
                out[i] = t_lin - b * psi[k]
            for i in range(lanes.size):
                t_lin = out[i]
                t_lin = t_lin if not t_lin < 1e-3 else 1e-3          # np.clip (NaN kept)
                t_lin = t_lin if not t_lin > 1.0 else 1.0
                t = t_lin
                v = amplitude[i]
                for _ in range(2):
                    x = v * (1.0 + 1.0 / t) / 2.0 * half
                    s = (1.0 + beta * x * x) / norm
                    t = 1.0 / (1.0 + s * (1.0 / t_lin - 1.0))
                out[i] = t

        @njit(float64(float64, float64, float64, float64, float64, float64), cache=True)
        def invert_one(x, m_hat, a, c, ref, fallback):  # pragma: no cover - compiled
            """_invert of one reading ``x`` (model reading ``m_hat``) of a cell linearized at ``ref``
            with ``a``, ``c``; ``fallback`` where it gives nothing."""
            if np.isfinite(x) and x > 0.0:
                d = x - m_hat
                den = a - c * d
                h = ref + d / den
                if den > 0.0 and h > 0.0:
                    return h
            return fallback

        global _invert_one          # (the kernels below call it as a module global: cached with them)
        _invert_one = invert_one

        @njit(void(int64[::1], float64[::1], float64[::1], float64[::1], float64[::1], float64[::1], float64[::1],
                   float64[::1]), cache=True)
        def invert(cell, m, m_hat, a, c, fallback, ref, out):  # pragma: no cover - compiled
            """_invert of readings ``m[i]`` (model readings ``m_hat[i]``) of the cells ``cell[i]``
            (flat into ``a``, ``c``, ``fallback`` and ``ref``)."""
            for i in range(cell.size):
                k = cell[i]
                out[i] = _invert_one(m[i], m_hat[i], a[k], c[k], ref[k], fallback[k])

        @njit(void(int64[::1], int64, int64, int64, int64[::1], int64[::1], float64[::1], float64[::1], float64[::1],
                   float64[::1], float64[::1], float64[::1], float64[::1]), cache=True)
        def correct_lanes(act, L, R, C, rows, cols, m, m_hat, a, c, est, ref, out):  # pragma: no cover - compiled
            """:meth:`ReadCorrection.correct` where the model keeps no shares: the lanes ``act`` (flat
            into the (B, L) lanes' ``rows``, ``cols``, readings ``m`` and ``out``), each lane's cell
            ``(b·R + row)·C + col`` (flat into the maps), inverted at the model's reading ``m_hat``
            of it with its estimate as the fallback, into ``out``; then the estimates updated (as
            est.put after every inversion)."""
            g = np.empty(act.size)
            for i in range(act.size):
                q = act[i]
                k = ((q // L) * R + rows[q]) * C + cols[q]
                g[i] = _invert_one(m[q], m_hat[k], a[k], c[k], ref[k], est[k])
            for i in range(act.size):
                q = act[i]
                est[((q // L) * R + rows[q]) * C + cols[q]] = g[i]
                out[q] = g[i]

        @njit(void(float64[:, :, :, :], float64[:, :, :, :], float64[:, :, ::1], float64[:, :, ::1]), cache=True)
        def cell_maps(xr, xc, v_cell, sigma):  # pragma: no cover - compiled
            """:meth:`ReadCorrection.model`'s two maps of the cells' voltages ``φ = xr − xc`` (B, R
            reads, R, C) of every cell in every grounded read, without ``φ`` itself: ``v_cell``
            (B, R, C) each cell's in its own row's read (``φ[:, i, i, :]``) and ``sigma`` (B, R, C)
            their sum over the reads (``φ.sum(axis=1)``: numpy adds the reads in their order, the
            first as the start, as here)."""
            B, R, _, C = xr.shape
            for b in range(B):
                for j in range(R):
                    for c in range(C):
                        v_cell[b, j, c] = xr[b, j, j, c] - xc[b, j, j, c]
                        sigma[b, j, c] = xr[b, 0, j, c] - xc[b, 0, j, c]
                for i in range(1, R):
                    for j in range(R):
                        for c in range(C):
                            sigma[b, j, c] += xr[b, i, j, c] - xc[b, i, j, c]

        @njit(void(float64[:, :, :, :], float64[:, :, :, :], float64[:, :, ::1]), cache=True)
        def own_adjoint(wr, wc, u):  # pragma: no cover - compiled
            """:meth:`ReadCorrection._own_adjoint`: ``u[b, i, j] = wr[b, j, i, j] − wc[b, j, i, j]``."""
            B, C, R, _ = wr.shape
            for b in range(B):
                for i in range(R):
                    for j in range(C):
                        u[b, i, j] = wr[b, j, i, j] - wc[b, j, i, j]

        _KERNELS.update(transfer=transfer, invert_one=invert_one, invert=invert, correct_lanes=correct_lanes,
                        cell_maps=cell_maps, own_adjoint=own_adjoint)
    return _KERNELS


def _flat(x, dtype=float) -> np.ndarray:
    """``x`` flat, C-contiguous and writable, of ``dtype`` (the kernels' one signature; a view where it is)."""
    return np.require(np.asarray(x, dtype), dtype, ("C", "W")).reshape(-1)

#: the refreshes between cells (:meth:`ReadCorrection.cells_finished`) stop their swept solves on
#: the lines' bound as well (:func:`~programming.line_sweep.sweep_solve`'s ``sharp``): readings and
#: slopes still within :data:`MODEL_READ_TOL` / :data:`ADJOINT_TOL` (the error left reaches up
#: to them, where the global bound leaves ~1/100), a millionth of a reading against the 1 % band the
#: verify reads decide on; their adjoints take 1.7 sweeps per point instead of 2.9 on the 64×64 tune,
#: and their reads bound the column terminals' currents only (the readings: ``row_currents``
#: False).  The fits' own evaluations keep the global bound: a fit compares evaluations far below
#: their tolerance (stop 20: 64 chips' line calibrations spread 0.15 Ω instead of 0.012 Ω with
#: readings on the lines' bound)
SHARP_REFRESH = True

#: past steps :meth:`ReadCorrection.fit` mixes (Anderson acceleration of the joint inversion)
FIT_ANDERSON_DEPTH = 4

#: the largest first step (in log g: 1 %) after which :meth:`ReadCorrection.fit` takes its measured
#: contraction as a bound (:meth:`ReadCorrection._fit_chips`): a read-back's estimates move by
#: about the read noise (0.1 %); a cell whose estimate crosses the window (64×64 at 0.67 Ω, 10 →
#: 600 µS) makes the map far from linear over the step, and its two-step ratio no bound (9e-5 of
#: its conductance left after two steps)
FIT_LINEAR_STEP = 1e-2

#: a fit's chip whose step (its largest relative move) is no smaller than its smallest so far for
#: :data:`FIT_STALL` steps running, that smallest at most :data:`FIT_FLOOR`, stops at the estimate
#: of that smallest step: it is at the floor of the model's evaluations, whose readings are within
#: ~2e-6 of the exact solution (:data:`MODEL_READ_TOL`), and below it the steps only wander.  A
#: ``tol`` below the floor (the default 1e-8) otherwise ran all of its evaluations with Anderson
#: mixing on rounding noise: on an AVX-512 machine an 8×8 fit at 0.7 Ω reached 6e-10 of the answer
#: after 4 steps, wandered at 1e-7, jumped to 1.6e-4 at the 10th and ended 60 steps later 0.29 %
#: off (tests/test_ir_correction.py).  A chip that runs out of evaluations also ends at its
#: smallest step's estimate, never at an unchecked last mix
FIT_STALL = 3
FIT_FLOOR = 1e-5

#: relative tolerance of the tuner's joint fits of read maps (its first map, its read-backs:
#: :meth:`ReadCorrection.correct_map`): a millionth, a thousandth of the 0.1 % read noise the
#: readings carry and a ten-thousandth of a 1 % tuning band; each decade is a model evaluation of
#: every chip (300 × 8×8 on the default lines: the same statuses and pulses as at 1e-8, 17 % less CPU)
MAP_FIT_TOL = 1e-6
#: relative tolerance of the line calibration's joint fits (:func:`line_mismatch`,
#: :func:`refine_lines`, :func:`correction_spread`): the tolerance the model's own grounded reads
#: are solved to (:data:`MODEL_READ_TOL`: readings within 2e-6 of the exact solution), below which
#: a fit's steps only wander.  Measured on an 8×8 chip at 0.67 Ω: a fit asked for 1e-8 ran all of
#: its 60 model evaluations and ended 1.7e-7 from the one that stops at 1e-6 after 3 (200 more
#: moved it another 1.7e-7); at 0.3 Ω both took 3.  In the line's estimate a fit's 1e-6 is a
#: mismatch's (the root's slope about 0.035 per Ω on 8×8): ~3e-5 Ω, a three-hundredth of one
#: chip's uncertainty from the read noise (0.01 Ω) and a third of the root's own tolerance
CALIBRATION_FIT_TOL = 1e-6


def _batch_of(maps, B: int) -> tuple:
    """Uninitialized arrays for ``B`` chips of the shape and type of each of a chunk's ``maps``
    (None stays None): :meth:`ReadCorrection.model` writes each chunk's part in place."""
    return tuple(None if m is None else np.empty((B, *np.shape(m)[1:]), np.asarray(m).dtype) for m in maps)


class ReadCorrection:
    """Inverts grounded reads of ``n_chips`` chips of ``shape`` through a line model.

    Args:
        shape: (rows, cols).
        n_chips: chips in the batch.
        v_read: read voltage, V.
        r_line: estimated line resistance per segment, Ω (> 0).
        r_access: estimated series resistance of each terminal's path (relay, leads), Ω.
        refresh_every: refresh the model after this many cells have finished tuning (their
            estimates moved to their targets).
        scheme: the read scheme corrected, ``ground`` or ``isolate``.
        beta: the devices' measured cubic I-V coefficient, 1/V² (``xbar calibrate-lines``;
            grounded reads): the model's devices then carry ``g·V·(1 + βV²)/(1 + βV_read²)`` at their
            own voltage (``g`` the chord conductance at the read voltage, what the tuner targets),
            so a selected cell that the lines leave below V_read is not read as if it saw it (on
            64×64 at 0.67 Ω a cell at 2/3 of V_read conducts 0.7 % less than its chord at V_read).
        v_ref: the voltage at which the conductances are chord conductances, V (default
            ``v_read``); a model of reads at another voltage (line calibration reads at half the
            read voltage to see the curvature) keeps the conductances of the reads at ``v_ref``.
    """

    def __init__(self, shape, n_chips: int, v_read: float, r_line: float, r_access: float = 0.0,
                 refresh_every: int = 8, scheme: str = "ground", beta: float = 0.0, v_ref: float | None = None):
        if not (np.isfinite(beta) and beta >= 0):
            raise ValueError(f"a read correction needs a device I-V coefficient beta >= 0 1/V^2, got {beta}")
        self.beta = float(beta)
        self.v_ref = float(v_read if v_ref is None else v_ref)
        if not r_line > 0:
            raise ValueError(f"a read correction needs an estimated line resistance > 0 Ω, got {r_line}")
        if scheme not in ("ground", "isolate"):
            raise ValueError(f"a read correction models the 'ground' and 'isolate' read schemes, not {scheme!r}")
        self.scheme = scheme
        self.shape = tuple(shape)
        self.n_chips = int(n_chips)
        self.v_read = float(v_read)
        self.r_line, self.r_access = float(r_line), float(r_access)
        self.est: np.ndarray | None = None       # estimated device conductances (B, R, C), S
        self._net: BatchLines | None = None      # the relaxed network, where the lines relax
        self._bounds: BatchLines | None = None   # every chip's linear conductances and bound (_relaxed)
        self._warm: WarmStarts | None = None     # the swept solves' last solutions (swept lines)
        self._a = self._c = None
        self._unit = None                        # each cell's current per unit g in its own read (refresh)
        self._stale = None                       # chips whose slopes lag their last refresh (refresh)
        # the model work a fit leaves owed (_defer): chips whose slopes are owed at _lag_g (their
        # _ref when the fit ended), chips owed a whole refresh at their estimate (_owed)
        self._lag = self._lag_g = self._owed = None
        self._m_hat = self._ref = self._cross = self._model_cross = None
        self._write = self._model_write = None   # the write-transfer maps (write_transfer)
        self.refreshes = 0
        self.refresh_every = max(1, int(refresh_every))
        self._finished = 0

    # ----------------------------------------------------------------------------- model
    def model(self, g, cross: bool = True, ids=None, slopes: bool = True, sharp: bool = False):
        """Model readings (B, R, C), S, of every cell for conductances ``g`` and their slopes
        d(reading)/d(own conductance) (dimensionless); with ``cross`` also every cell's share in
        every reading (kept as ``_model_cross`` within :data:`CROSS_MAX`).  ``ids``: the chips of
        the batch ``g`` is (default 0..B−1), whose own last solutions start swept solves.

        Without ``slopes`` (grounded reads only) the adjoint solves are left out: the slopes come
        back None, and so do the parts of the kept sensitivities and write-transfer maps that
        need them (``u`` of ``_model_cross``, ψ of ``_model_write``): the readings alone, the
        half of the model's solves that a fit's fixed point depends on.  ``sharp``: swept solves stop on
        the lines' bound as well (:data:`SHARP_REFRESH`)."""
        g = np.asarray(g, float)
        B, R, C = g.shape
        slopes = slopes or self.scheme != "ground"      # an isolating read is modelled through the adjoints
        if B > MODEL_CHIPS:        # many chips: chunk by chunk (the model's solves hold B·R·2RC)
            # the kept sensitivities of the whole batch, within the same bound as unchunked (a
            # batch beyond it computes none for its chunks either)
            whole = cross and B * R * C * (R + C) <= CROSS_MAX
            # each chunk's maps written into the whole batch's as they come (not kept, then joined:
            # 10 000 chips of 8x8 held every map twice, ~30 MB, at the end of a whole refresh)
            out = write = unit = share = g_term = None
            for k in range(0, B, MODEL_CHIPS):
                at = slice(k, min(B, k + MODEL_CHIPS))
                part = self.model(g[at], whole, np.arange(at.start, at.stop) if ids is None else ids[at], slopes, sharp)
                if out is None:
                    out, write, unit = _batch_of(part, B), _batch_of(self._model_write, B), _batch_of((self._model_unit,), B)
                    if whole and self._model_cross is not None:
                        share, g_term = _batch_of(self._model_cross[:2], B), self._model_cross[2]
                for kept, new in zip(out + write + unit, part + self._model_write + (self._model_unit,)):
                    if kept is not None:
                        kept[at] = new
                if share is not None and self._model_cross is not None:
                    for kept, new in zip(share, self._model_cross[:2]):
                        if kept is not None:
                            kept[at] = new
                else:
                    share = None
                del part
            self._model_unit, self._model_write = unit[0], write
            self._model_cross = (*share, g_term) if share is not None else None
            return out
        cubic, norm = self._device_norm()
        ids = np.arange(B) if ids is None else ids
        net = self._relaxed(g / norm, ids)
        if net is None:     # swept lines, each solve from the model's own last one (its estimates')
            xr, xc, g_term = self._swept_reads(g, cubic, ids, sharp)
            i_sense = g_term * xc[:, :, R - 1, :]                          # (B, R reads, C)
        else:
            g_term = net.g_term
            if cubic:       # the devices' own I-V around the linear network of their small-signal g
                # (each read from its row's own network, to the swept reads' tolerances: node
                # voltages within MODEL_READ_TOL of the read voltage, readings within MODEL_READ_TOL
                # of it times the chip's mean conductance)
                x, i_sense = net.read_rows(g, self.beta, self.v_ref, self.v_read, MODEL_READ_TOL,
                                           MODEL_READ_TOL * self.v_read * g.reshape(B, -1).mean(axis=1))
                xr, xc = net.split(x)                                      # (B, R reads, R, C)
            else:
                row_v = np.broadcast_to(np.eye(R) * self.v_read, (B, R, R))
                col_v = np.zeros((B, R, C))
                x = net.solve(net.injection(row_v, col_v))
                xr, xc = net.split(x)                                      # (B, R reads, R, C)
                # the column terminals' currents (net.terminal_currents' second half: every
                # terminal of a relaxed network is driven; the rows' currents are never used)
                i_sense = g_term * (xc[:, :, R - 1, :] - col_v)           # (B, R reads, C)
        # every cell's share in every reading is kept (_model_cross) for grounded reads within CROSS_MAX
        keep_cross = cross and self.scheme == "ground" and B * R * C * (R + C) <= CROSS_MAX
        # read i, cell (i, j): (B, R, C), C-contiguous (the gathers' result is a transposed view, and
        # every map of a cell derived from it — the write transfers, the inversion's a, the unit
        # currents — would be too: each flat ``reshape(-1)`` of them a copy of the whole map)
        v_cell, sigma = np.empty((B, R, C)), np.empty((B, R, C))
        if keep_cross:
            phi = xr - xc                                                  # every cell's voltage in every read
            v_cell[:] = phi[:, np.arange(R), np.arange(R), :]
            np.sum(phi, axis=1, out=sigma)
        else:               # the same two maps in one compiled pass, without φ (B·R times their size)
            _kernels()["cell_maps"](xr, xc, v_cell, sigma)
        # the write-transfer maps (write_transfer): a cell's voltage per volt on its own row's
        # terminal, per volt on its own column's (None without the adjoints), and per volt on
        # every row terminal at once
        self._model_write = (v_cell / self.v_read, None, sigma / self.v_read)
        if not slopes:
            if cubic:
                if keep_cross:          # (every cell's current per unit g: only where the shares are kept)
                    phi = phi * (1.0 + self.beta * phi * phi) / norm
                v_cell = v_cell * (1.0 + self.beta * v_cell * v_cell) / norm
            self._model_unit = v_cell
            self._model_cross = (phi, None, g_term) if keep_cross else None
            return i_sense / self.v_read, None
        wr, wc = self._adjoints(g, norm, net, ids, sharp)
        u_at = self._own_adjoint(wr, wc)
        self._model_write = (self._model_write[0], g_term * u_at, self._model_write[2])
        if self.scheme == "isolate":
            # cell (i, j) read with the other columns at V as well: by superposition the grounded
            # read of row i plus every column at V minus column j at V; a column terminal at 1 V
            # gives the node voltages g_term·w_j (A is symmetric)
            gt = g_term
            w_term = wc[:, :, R - 1, :]                                    # w_j at column k's terminal node
            all_r, all_c = gt * wr.sum(axis=1), gt * wc.sum(axis=1)        # every column at 1 V: (B, R, C)
            i_sense = i_sense + self.v_read * gt * (gt * w_term.sum(axis=1)[:, None, :]
                                                    - gt * np.diagonal(w_term, axis1=1, axis2=2)[:, None, :])
            v_cell = v_cell + self.v_read * ((all_r - all_c) - gt * u_at)
        if cubic:           # a device's current per unit g at its own voltage
            v_cell = v_cell * (1.0 + self.beta * v_cell * v_cell) / norm
        self._model_unit = v_cell
        slope = -g_term * v_cell * u_at / self.v_read  # d(I/V)/dg of cell (i, j)
        self._model_cross = None
        if keep_cross:
            # every cell's share in every reading: d(reading of (i, j))/d(g of (k, l)) is
            # −g_term·φ_i(k, l)·u_j(k, l)/V_read, φ_i the current per unit g of cell (k, l) in the
            # read of row i, u_j = w_j at its row node minus its column node (the adjoint)
            if cubic:
                phi = phi * (1.0 + self.beta * phi * phi) / norm
            self._model_cross = (phi, wr - wc, g_term)
        return i_sense / self.v_read, slope

    def _relaxed(self, g_lin, ids):
        """The relaxed network of the linear conductances ``g_lin`` (B, R, C), S, of the batch's
        chips ``ids`` (kept as ``_net``), or None where the model's solves sweep the lines.  A batch
        of many small chips (at least :data:`~programming.line_batch.BATCH_MIN_CHIPS`, whose whole
        refreshes and fits relax) relaxes its refreshes of a few chips too: its chips finish their
        cells a few at a time near the end of a pass (10 000 × 8×8 on the default lines: 238 of
        its 444 refreshes between cells had under 32 chips, 1256 chips in all, which swept at
        ~0.45 ms a chip against ~0.02 ms relaxed), and each chip's model is then solved the same way
        whatever chips it is refreshed with (a relaxed point's answer is its own in any batch).  A
        smaller batch (a few chips, a line calibration's one) keeps the sweeps below that count.

        Such a batch keeps every chip's conductances and contraction bound (:attr:`_bounds`, one
        network of the whole batch) and takes the chips' network from it
        (:meth:`~programming.line_batch.BatchLines.chips`): only the chips whose conductances
        changed since their last model are bounded again, once (a network of a new set of chips
        was bounded twice, by :func:`~programming.line_batch.batch_suits` and by its own
        construction, every chip of it) — the same bounds, so the same choice: relaxed where the
        chips' largest is at most :data:`~programming.line_batch.RHO_BATCH`, else swept."""
        if self.n_chips < line_batch.BATCH_MIN_CHIPS:
            self._net = relaxed_network(self._net, g_lin, self.r_line, self.r_access)
            return self._net
        ids = np.asarray(ids)
        if self._bounds is None:
            self._bounds = BatchLines(np.zeros((self.n_chips, *self.shape)), self.r_line, self.r_access)
        whole = self._bounds
        changed = (g_lin != whole._g[ids]).reshape(ids.size, -1).any(axis=1)
        whole.update_chips(ids[changed], g_lin[changed])
        self._net = whole.chips(ids) if g_lin.size and whole.rho_lin[ids].max() <= line_batch.RHO_BATCH else None
        return self._net

    def _swept_reads(self, g, cubic: bool, ids, sharp: bool = False):
        """The grounded reads of every row of the chips ``ids`` with conductances ``g`` (B, R, C),
        S, by line sweeps (:func:`~programming.line_sweep.sweep_solve`) from this model's last
        solutions of the same reads (its own estimates' network): their node voltages ``xr``, ``xc``
        (B, R reads, R, C) to :data:`MODEL_READ_TOL` of the read voltage (their terminal currents,
        the readings, to that fraction of the read voltage times the chip's mean conductance), and
        ``g_term``, S.  On the lines' bound (``sharp``) the readings' current bound holds the
        column terminals only (the row terminals' currents are never used)."""
        B, R, C = g.shape
        g_term = 1.0 / (self.r_line + self.r_access)
        reads_r = np.broadcast_to(np.eye(R) * self.v_read, (B, R, R)).reshape(B * R, R)
        x = np.empty((B * R, 2, R, C))
        g_mean = np.repeat(g.reshape(B, -1).mean(axis=1), R)
        self._sweep(g, self.beta if cubic else 0.0, ids, reads_r, np.zeros((B * R, C)), x, MODEL_READ_TOL * self.v_read,
                    MODEL_READ_TOL * self.v_read * g_mean, sharp, row_currents=False)
        x = x.reshape(B, R, 2, R, C)
        return x[:, :, 0], x[:, :, 1], g_term

    def _sweep(self, g, beta: float, ids, row_v, col_v, x, tol, i_tol=np.inf, sharp: bool = False,
               row_currents: bool = True) -> None:
        """:func:`~programming.line_sweep.sweep_solve` of the chips ``ids`` (conductances ``g`` (B, R, C),
        S), ``row_v.shape[0] // B`` points each (in chip order), each from this model's last solution
        of the same point of the same chip (kept and read inside the sweeps' kernel: :class:`WarmStarts`,
        keyed by the chip's index in the whole batch), into ``x``; ``sharp``: stopping on the lines'
        bound as well (``row_currents`` False: holding the column terminals' currents only to
        ``i_tol`` there, a grounded read's readings)."""
        B, R, C = g.shape
        if self._warm is None:
            self._warm = WarmStarts((R, C))
        ids = np.asarray(ids)
        per = row_v.shape[0] // B
        if not np.array_equal(ids, np.arange(B)):
            # the kernel indexes the conductances by the chips' own indices (which key the starts)
            whole = np.zeros((int(ids.max()) + 1, R, C))
            whole[ids] = g
            g = whole
        sweep_solve(g, beta, self.v_ref, self.r_line, self.r_access, np.repeat(ids, per), row_v, col_v, x, tol, i_tol,
                    starts=self._warm, sharp=sharp, row_currents=row_currents)

    def _adjoints(self, g, norm: float, net, ids, sharp: bool = False):
        """The adjoints of every column of the chips ``ids`` with conductances ``g`` (B, R, C), S
        (the linear network of ``g/norm``; ``net`` its relaxed network, None on swept lines):
        ``wr``, ``wc`` (B, C columns, R, C), the node voltages of a unit current into column j's
        node next to its terminal — A⁻¹e, A symmetric, so a reading's sensitivity to every cell.
        To :data:`ADJOINT_TOL` of the terminal's ``1/g_term``: relaxed, each from its column's own
        network; swept, each from this model's last solution of the same column (the sensitivities
        set the inversion's slope, not its fixed point, which the model's readings alone fix)."""
        B, R, C = g.shape
        if net is not None:
            # a few chips at a time, every column of each written in place (each point's answer is
            # its own in any batch): the unit injections and their solve's node voltages of every
            # chip at once were two more arrays the size of the answer (8 MB each for 1024 chips of
            # 8x8, at the peak of a 10 000-chip tune's read-back), and a few columns of every chip
            # at a time were copied into it
            w = np.empty((B, C, 2 * R * C))
            if not net.relaxes():       # (a factorized solve: every column in one call, as before)
                w[:] = net.solve_column_units(np.arange(C), ADJOINT_TOL)
                return net.split(w)
            chips = max(1, ADJOINT_BYTES // (8 * C * 2 * R * C))
            for b0 in range(0, B, chips):
                at = slice(b0, min(B, b0 + chips))
                net.chips(at).column_units(ADJOINT_TOL, out=w[at])     # (each from its column's own network)
            return net.split(w)
        g_term = 1.0 / (self.r_line + self.r_access)
        adj_c = np.broadcast_to(np.eye(C) / g_term, (B, C, C)).reshape(B * C, C)
        w = np.empty((B * C, 2, R, C))
        self._sweep(g / norm, 0.0, ids, np.zeros((B * C, R)), adj_c, w, ADJOINT_TOL / g_term, sharp=sharp)
        w = w.reshape(B, C, 2, R, C)
        return w[:, :, 0], w[:, :, 1]

    def fit(self, readings, iterations: int = 60, fixed=None, start=None, tol: float = 1e-8) -> np.ndarray:
        """Estimate every cell's conductance from a full map of grounded ``readings`` (B, R, C),
        S, jointly: the conductances whose modelled readings equal the readings, all cells at once.

        The map ``g ← inversion of each reading with the model at g`` (each cell inverted with the
        others held) is a contraction whose rate is the share of a reading the *other* cells'
        current through the shared lines takes (measured on 64×64: 0.53 per step at 2 Ω, so a
        dozen plain steps left errors of 0.5 %); Anderson mixing of the last
        :data:`FIT_ANDERSON_DEPTH` steps (per chip, on log g) removes those few slow modes.
        Each chip stops when none of its estimates moves by more than ``tol`` (relative) or after
        ``iterations`` model evaluations; a chip that has stopped leaves the working set (its fit
        does not depend on how many steps the others need, and a large batch is not iterated
        until its slowest chip is done); :data:`MODEL_CHIPS` chips are fitted at a time.  ``fixed`` (same shape, S, NaN = free): cells whose conductance is
        known and held (their readings are ignored).  ``start`` (same shape, S): the first
        estimate (default: the readings themselves; a nearby earlier fit needs fewer steps).
        Sets and returns :attr:`est`; :attr:`fit_steps` is the most steps any chip took."""
        m = np.asarray(readings, float)
        hold = None if fixed is None else np.broadcast_to(np.asarray(fixed, float), m.shape)

        def keep(g, chips):
            return g if hold is None else np.where(np.isfinite(hold[chips]), hold[chips], g)

        everyone = slice(None)
        first = m if start is None else np.asarray(start, float)
        est = keep(np.clip(np.where(np.isfinite(first), first, np.nanmean(m)), 1e-9, None), everyone)
        if self._lag is not None and self.est is not None and self.est.shape == est.shape:
            # the model work owed to a chip is done at the estimate it was owed at
            self._settle(np.flatnonzero((est != self.est).reshape(est.shape[0], -1).any(axis=1)))
        self.est = est
        B = m.shape[0]
        live = np.arange(B)
        # a warm fit (_fit_chips): from a given estimate, on a model fitted before (a read-back's)
        warm = start is not None and self._a is not None and self._a.shape[0] == B
        if self._a is None or self._a.shape[0] != B:
            self.refresh()                  # the first fit: every chip's model once
        elif start is not None and hold is None:
            # a chip with no reading keeps its estimate (a read-back's re-reads: a few chips)
            live = np.flatnonzero(np.isfinite(m).reshape(B, -1).any(axis=1))
        self.fit_steps = 0
        self._settle(live)
        for k in range(0, live.size, MODEL_CHIPS):      # chunk by chunk of chips (bounded memory)
            self._fit_chips(m, live[k:k + MODEL_CHIPS], keep, iterations, tol, warm)
        # any other chip whose estimate moved since its model was refreshed
        stale = np.ones(B, bool)
        stale[live] = False
        if self._owed is not None:
            stale &= ~self._owed                        # (owed one already, at the same estimate)
        stale = np.flatnonzero(stale & (self.est != self._ref).reshape(B, -1).any(axis=1))
        if stale.size:
            if self._defer(stale, self.est[stale]):      # (when the chips are next used)
                self._owed[stale] = True
            else:
                self.refresh(stale)
        return self.est

    def _defer(self, chips, g) -> bool:
        """Whether the model work a fit ends with for the chips ``chips`` (conductances ``g``, S) is
        left owed until they are next used (:meth:`_settle`), with the same numbers: in a batch of
        many chips whose model keeps no shares (10 000 × 8×8), where every one of them relaxes —
        each relaxed chip's model is its own in any batch and at any time, nothing of it kept
        between solves.  A read-back's chips that leave the tuner's run (most of a batch's, over
        its last passes) are then never modelled again: the slopes of their last fit and the whole
        refresh the next fit gave them, for an estimate no reading will need."""
        if self._cross is not None or self.n_chips < line_batch.BATCH_MIN_CHIPS:
            return False
        if self._relaxed(g / self._device_norm()[1], chips) is None:
            return False
        if self._lag is None:
            self._lag, self._owed = np.zeros(self.n_chips, bool), np.zeros(self.n_chips, bool)
            self._lag_g = np.empty_like(self.est)
        return True

    def _settle(self, chips=None) -> None:
        """Do the model work owed to the chips ``chips`` (indices, may repeat; default every chip)
        before they are used (:meth:`_defer`): their slopes at the estimate their fit ended at, or
        the whole refresh at their estimate that supersedes them."""
        if self._lag is None:
            return
        if chips is None:
            chips = np.arange(self.n_chips)
        chips = np.asarray(chips)
        if not (self._lag.take(chips).any() or self._owed.take(chips).any()):
            return
        chips = np.unique(chips)
        owed = chips[self._owed[chips]]
        lag = chips[self._lag[chips] & ~self._owed[chips]]
        self._owed[owed] = self._lag[owed] = self._lag[lag] = False
        if lag.size:
            self._refresh_slopes(lag, self._lag_g)
        if owed.size:
            self.refresh(owed)

    def _fit_chips(self, m, chips, keep, iterations: int, tol: float, warm: bool = False) -> None:
        """:meth:`fit`'s iteration on the chips ``chips`` (indices): each leaves it when its own
        estimates stop moving; their estimates end at the answer, their models linearized at the
        last iterate (within ``tol`` of it).  A ``warm`` fit (from the estimate of an earlier fit
        and its model, a read-back's) evaluates the model's readings only at each iteration (:meth:`refresh` without slopes: the
        adjoint solves, half a model evaluation, set how fast a fit converges, not where; each
        cell keeps its ``a`` from its chip's last refresh, so the map iterated does not change),
        and the slopes once, at the last iterate (:meth:`_refresh_slopes`): the fit ends with the
        model one whole refresh there gives (8×8 chips' read-back fits take 3–4 iterations).  A
        first fit (from the readings themselves, or a start of its own) takes the slopes at every
        iteration: its estimates travel
        tens of %, and a cell's ``a`` moves with its own conductance (64×64 at 0.67 Ω: up to 40 %
        for a cell set elsewhere in the window; from the readings of a 2 Ω 64×64 chip at a trial
        3 Ω the iteration on the first slopes diverged)."""
        shape = m.shape[1:]
        y = np.log(self.est[chips]).reshape(chips.size, -1)
        mix = Anderson(FIT_ANDERSON_DEPTH)
        at = np.arange(chips.size)          # the chips still iterating (positions in ``chips``)
        live = chips
        # each chip's smallest step so far, the estimate it gave, and the steps since (FIT_STALL)
        best_err, best_y, stall = np.full(chips.size, np.inf), y.copy(), np.zeros(chips.size, int)
        for k in range(iterations):
            todo = live
            if k == 0:      # a chip whose estimate has not moved since its last refresh keeps its model
                todo = live[(self.est[live] != self._ref[live]).reshape(live.size, -1).any(axis=1)]
            if todo.size:   # a warm fit: the readings only (the slopes set how fast it gets there)
                self.refresh(todo, slopes=not warm)
            gy = np.log(keep(self._invert(m[live], self._a[live], self._c[live], self.est[live], self._ref[live],
                                          self._m_hat[live]), live)).reshape(
                live.size, -1)
            f = gy - y[at]
            self.fit_steps = max(self.fit_steps, k + 1)
            err = np.max(np.abs(f), axis=1, initial=0.0)
            done = err <= tol
            better = err < best_err[at]
            best_err[at[better]], best_y[at[better]] = err[better], gy[better]
            stall[at] = np.where(better, 0, stall[at] + 1)
            stalled = ~done & (stall[at] >= FIT_STALL) & (best_err[at] <= FIT_FLOOR)
            if stalled.any():
                gy = np.where(stalled[:, None], best_y[at], gy)
                done |= stalled
            if k == 1:
                # two plain steps so far (Anderson's first is one): where the first moved every
                # estimate by less than FIT_LINEAR_STEP (the map about linear over the path), their
                # ratio is the map's contraction ρ near the answer, and the new value is within
                # ρ/(1 − ρ) of its step of the answer: below ``tol``, it is the answer (a read-back's
                # fit of 8×8 chips then takes 2 model evaluations instead of 3)
                with np.errstate(divide="ignore", invalid="ignore"):
                    rho = np.where(err_first > 0, np.minimum(err / err_first, 1.0), 0.0)
                done |= (err_first <= FIT_LINEAR_STEP) & (rho < 0.5) & (err * rho <= tol * (1.0 - rho))
            if done.any():
                y[at[done]] = gy[done]
                if done.all():
                    break
                go = ~done
                at, live, gy, f, err = at[go], live[go], gy[go], f[go], err[go]
                mix.keep(go)
            err_first = err
            y[at] = mix.step(gy, f)
            self.est[live] = keep(np.exp(y[at]).reshape(live.size, *shape), live)
        else:
            y[at] = best_y[at]      # out of evaluations: the estimate of the smallest step
        # the model stays linearized at the last iterate, within ``tol`` of the answer (no model
        # evaluation more per fit): an inversion around it is off by that distance squared; it is
        # taken as linearized at the answer (off by ``tol``, a millionth), so that the cells that
        # move after the fit are the only ones whose shares the verify reads follow (_shifted_m)
        self.est[chips] = keep(np.exp(y).reshape(chips.size, *shape), chips)
        stale = chips[self._stale[chips]]
        if stale.size:      # the slopes at the last iterate: the model whole there, as one refresh
            if self._defer(stale, self._ref[stale]):            # (when the chips are next used)
                self._lag[stale] = True
                self._lag_g[stale] = self._ref[stale]
            else:
                self._refresh_slopes(stale)
        est = self.est[chips]
        near = np.abs(np.log(est / self._ref[chips])).reshape(chips.size, -1).max(axis=1, initial=0.0) <= tol
        self._ref[chips[near]] = est[near]

    def refresh(self, chips=None, slopes: bool = True, sharp: bool = False) -> None:
        """Recompute the model's local inversion (a, c per cell) at the present estimate, of the
        chips ``chips`` only (an index array; default every chip).  Without ``slopes`` (``chips``
        given, grounded reads) the model's readings only (:meth:`model`): each cell's inversion
        goes through its new reading (and ``c`` at the new estimate), so a reading equal to the model's still maps to the
        estimate exactly, with the cell's last ``a`` (and the kept sensitivities' adjoint part, the
        write transfers' ψ) until :meth:`_refresh_slopes` takes them at the same estimate."""
        self._settle(chips)
        if chips is None or self._a is None:
            slopes = True
        g = self.est if chips is None else self.est[chips]
        m_hat, slope = self.model(g, cross=chips is None or self._cross is not None, ids=chips,   # (none kept: none needed)
                                  slopes=slopes, sharp=sharp)
        new_write, new_cross = self._model_write, self._model_cross
        if chips is None:
            self._a, self._c = self._linearized(g, m_hat, slope)
            self._m_hat, self._ref, self._cross = m_hat, g.copy(), new_cross
            self._write, self._unit = new_write, self._model_unit
            self._stale = np.zeros(g.shape[0], bool)
        else:
            a_kept = self._a[chips] if slope is None else None      # (a readings-only refresh)
            self._a[chips], self._c[chips] = self._linearized(g, m_hat, slope, a_kept)
            self._m_hat[chips], self._ref[chips], self._unit[chips] = m_hat, g, self._model_unit
            self._stale[chips] = slope is None
            for kept, new in zip(self._write, new_write):
                if new is not None:
                    kept[chips] = new
            if self._cross is not None and new_cross is not None:
                self._cross[0][chips] = new_cross[0]
                if new_cross[1] is not None:
                    self._cross[1][chips] = new_cross[1]
            else:
                self._cross = None
        self.refreshes += 1

    def _refresh_slopes(self, chips, at=None) -> None:
        """The adjoint half of :meth:`refresh` for the chips ``chips`` (indices) whose last refresh
        took the readings only: their slopes, ``a``, ``c``, the kept sensitivities' adjoint part and
        the write transfers' ψ at the estimate that refresh was made at (:attr:`_ref`, or ``at``
        (B, R, C) where kept there), with its readings — the same inversion as one whole refresh there."""
        _, norm = self._device_norm()
        at = self._ref if at is None else at
        for k in range(0, chips.size, MODEL_CHIPS):
            part = chips[k:k + MODEL_CHIPS]
            g = at[part]
            net = self._relaxed(g / norm, part)
            wr, wc = self._adjoints(g, norm, net, part)
            g_term = 1.0 / (self.r_line + self.r_access) if net is None else net.g_term
            u_at = self._own_adjoint(wr, wc)
            slope = -g_term * self._unit[part] * u_at / self.v_read
            self._a[part], self._c[part] = self._linearized(g, self._m_hat[part], slope)
            self._write[1][part] = g_term * u_at
            if self._cross is not None:
                self._cross[1][part] = wr - wc
            self._stale[part] = False

    def _shifted_m(self, b, rows, cols, cell=None) -> np.ndarray:
        """The model's readings (S) of cells (rows, cols) of chips ``b`` (index arrays of one shape)
        at their own linearization with the other cells' estimates as
        they are now: the model's reading of each cell moves, to first order, by every other
        cell's change since the last refresh times its share in that reading (the kept
        sensitivities).  A cell tuned right after a neighbour on its row finished (the scheduler
        loads the next cell of a freed row at once) is then not read against the neighbour's
        state before it was tuned (on 64×64 at 0.67 Ω one neighbour's swing across the window
        moves a reading by ~0.4 %).  ``cell``: their flat indices in the batch, where worked out."""
        R, C = self.shape
        if cell is None:
            cell = (b * R + rows) * C + cols
        m_hat = self._m_hat.reshape(-1).take(cell)
        if self._cross is None:
            return m_hat
        delta = self.est - self._ref
        moved = np.flatnonzero(delta)
        if not moved.size:
            return m_hat
        phi, u, gt = self._cross
        bb, km = np.divmod(moved, R * C)    # the cells moved since (few between refreshes: the lanes')
        if 4 * bb.size > delta.size:        # most moved (a fit's last iterate): every cell at once
            share = np.einsum("...km,...km,...km->...", phi[b, rows], u[b, cols], delta[b])
            share -= phi[b, rows, rows, cols] * u[b, cols, rows, cols] * delta[b, rows, cols]   # not its own
        else:                               # each lane against its chip's moved cells only
            per = np.bincount(bb, minlength=delta.shape[0])
            first = np.cumsum(per) - per
            n = per.take(b)
            lane = np.repeat(np.arange(b.size), n)
            at = np.arange(lane.size) - np.repeat(np.cumsum(n) - n, n) + np.repeat(first.take(b), n)
            other = km.take(at)                                             # the moved cell, in its chip
            own = rows * C + cols
            term = phi.reshape(-1).take(np.repeat((b * R + rows) * (R * C), n) + other)
            term *= u.reshape(-1).take(np.repeat((b * C + cols) * (R * C), n) + other)
            term *= delta.reshape(-1).take(np.repeat(b * (R * C), n) + other)
            term[other == np.repeat(own, n)] = 0.0                         # not its own
            share = np.bincount(lane, term, minlength=b.size)
        m_now = m_hat - gt * share / self.v_read
        return np.where(m_now > 0, m_now, m_hat)

    def _device_norm(self) -> tuple[bool, float]:
        """(cubic, norm): whether the model's devices carry the cubic I-V (grounded reads with
        β > 0) and the I-V's normalization ``1 + β v_ref²`` (1 without it); the linear network is
        that of ``g/norm``."""
        cubic = self.beta > 0 and self.scheme == "ground"
        return cubic, 1.0 + self.beta * self.v_ref ** 2 if cubic else 1.0

    @staticmethod
    def _own_adjoint(wr, wc) -> np.ndarray:
        """``u`` (B, R, C) of the adjoints ``wr``, ``wc`` (B, C columns, R, C): column j's adjoint
        at cell (i, j)'s row node minus at its column node (a reading's sensitivity to its own cell
        is ``−g_term·φ·u/V_read``)."""
        B, C, R, _ = wr.shape
        u = np.empty((B, R, C))                 # (C order: as v_cell; one compiled pass over the cells)
        _kernels()["own_adjoint"](wr, wc, u)
        return u

    def _port_lines(self) -> np.ndarray:
        """(R, C), Ω: each cell's resistance to its row's and its column's terminals along the
        lines alone, ``2(r_line + r_access) + r_line·(j + R − 1 − i)`` (row i's terminal at its
        column-0 end, column j's at its row-(R−1) end): the resistance its port sees with every
        device removed, so at least what it sees through the whole network."""
        R, C = self.shape
        i, j = np.indices((R, C))
        return 2.0 * (self.r_line + self.r_access) + self.r_line * (j + (R - 1 - i))

    def _linearized(self, g, m_hat, slope, a=None) -> tuple[np.ndarray, np.ndarray]:
        """``(a, c)`` of the local inversion ``m = m_hat + a·Δ/(1 + c·Δ)`` (:meth:`_invert`)
        linearized at conductances ``g`` (S) with model readings ``m_hat`` (S): ``a`` the slopes
        ``slope`` (d(reading)/d(own conductance), floored at 1e-6; given ``a``, a refresh of the
        readings only: kept), ``c`` the resistance the cell's port sees with the cell in parallel,
        ``R_l/(1 + g·R_l)`` with ``R_l`` that of the lines to its terminals (:meth:`_port_lines`,
        Ω; the sneak paths in parallel, which lower it, are left out: on 64×64 at 0.67 Ω a cell
        taken from 10 to 600 µS is then inverted within 1 % of the model, from 300 µS to 390 within
        3e-4, where the tangent alone leaves 4 % and 1e-3)."""
        if a is None:
            a = np.maximum(slope, 1e-6)
        r_l = self._port_lines()
        return a, r_l / (1.0 + g * r_l)

    @staticmethod
    def _invert(m, a, c, fallback, ref, m_hat):
        """Conductances (S) of readings ``m`` by the local inversion around ``ref`` (the
        conductances it was linearized at, with model readings ``m_hat``): ``m − m_hat = a·Δ/(1 +
        c·Δ)``, so ``g = ref + (m − m_hat)/(a − c·(m − m_hat))``; where it gives nothing (no reading,
        a reading beyond the pole ``m_hat + a/c``, ~10 mS above the window on 64×64, or g ≤ 0: a
        reading below what the model gives for the cell at 0 S), ``fallback``."""
        m, a, c, fallback, ref, m_hat = np.broadcast_arrays(*(np.asarray(x, float) for x in (m, a, c, fallback, ref,
                                                                                          m_hat)))
        g = np.empty(m.shape)
        _kernels()["invert"](np.arange(m.size), _flat(m), _flat(m_hat), _flat(a), _flat(c), _flat(fallback), _flat(ref),
                             g.reshape(-1))
        return g if g.ndim else g[()]

    def cells_finished(self, count: int, chips=None) -> None:
        """``count`` more cells finished tuning: refresh the model every ``refresh_every``.  With
        ``chips`` (the chip of each finished cell) every chip counts its own cells and only the chips
        that reach ``refresh_every`` are refreshed: a chip's correction does not depend on the batch
        it is tuned in, and a batch of many chips is not refreshed whole at every step."""
        if chips is not None:
            if not isinstance(self._finished, np.ndarray):
                self._finished = np.zeros(self.n_chips, np.intp)
            np.add.at(self._finished, np.asarray(chips), 1)
            due = np.flatnonzero(self._finished >= self.refresh_every)
            if due.size:
                self._finished[due] = 0
                self.refresh(due, sharp=SHARP_REFRESH)
            return
        self._finished += count
        if self._finished >= self.refresh_every:
            self._finished = 0
            self.refresh(sharp=SHARP_REFRESH)

    # --------------------------------------------------------------------------- writes
    def write_transfer(self, rows, cols, amplitude, row_share: float, col_share: float, lanes=None) -> np.ndarray:
        """The share of a write's drive that the model puts across its selected cell: (n_chips, L)
        for lanes (rows, cols) driven at ``amplitude`` (V, the selected cell's intended voltage:
        the transfer is evaluated at the devices' currents it implies) under a scheme that holds the
        unselected rows at ``row_share`` and the unselected columns at ``col_share`` of the drive
        (V/2: 1/2 and 1/2; V/3: 1/3 and 2/3), the selected row at the drive and the selected
        column at 0 V.  At the estimate of the last refresh, from the estimated line resistance.

        By superposition on the linear network of the model (devices at their chord conductance
        at the read voltage) the cell's voltage per volt of drive is
        ``(a − b)·Σ + (1 − a)·φ − b·ψ`` (a, b the row and column shares): φ its voltage per
        volt on its own row's terminal (the grounded read of its row), ψ per volt on its own
        column's (the adjoint of the read model), Σ per volt on every row terminal (the sum of
        every row's read; every column's is −Σ, as every terminal at one voltage leaves every cell
        at 0 V).  The devices are not linear: the cells that load the selected lines — half-selected
        at about ``share·amplitude`` — carry ``s = (1 + β x²)/(1 + β V_read²)`` times their chord
        current at the read voltage (β the measured I-V coefficient), so the lines' share
        ``1/t_lin − 1`` of a voltage divider grows by ``s``: ``t = 1/(1 + s·(1/t_lin − 1))``.
        Checked against the simulator's nonlinear solve on 32×32 at 2 Ω (transfers 0.66–1):
        within 0.8 % at 1.1 V and 2.7 % at 2.4 V, V/2 and V/3 alike, where the linear transfer
        is off by up to 6 %.

        ``lanes``: flat indices of the (n_chips, L) lanes wanted (a step's few pulsed lanes of a
        batch of many chips); ``amplitude`` is then theirs, and so is the result, (lanes.size,)."""
        self._settle(None if lanes is None else np.asarray(lanes) // np.shape(rows)[-1])
        phi, psi, sigma = self._write
        a, b = float(row_share), float(col_share)
        if lanes is None:           # every lane
            rows, cols = np.broadcast_arrays(rows, cols)
            shape, lanes = rows.shape, np.arange(rows.size)
        else:
            shape = np.shape(lanes)
        # t_lin = (a − b)·Σ + (1 − a)·φ − b·ψ clipped to [1e-3, 1]; then twice: x = amplitude·(1 + 1/t)/2·
        # max(1 − b, a) (the half-selected cells' voltage), s = (1 + β x²)/(1 + β V_read²),
        # t = 1/(1 + s·(1/t_lin − 1)); in one compiled pass over the lanes, each lane's cell worked out
        # there (_kernels' transfer)
        amp = np.broadcast_to(np.asarray(amplitude, float), shape)
        t = np.empty(shape)
        _kernels()["transfer"](_flat(lanes, np.int64), rows.shape[-1], *self.shape, _flat(rows, np.int64),
                               _flat(cols, np.int64), _flat(amp), _flat(phi), _flat(psi),
                               _flat(sigma), a - b, 1 - a, b, max(1 - b, a), float(self.beta),
                               float(1.0 + self.beta * self.v_ref ** 2), t.reshape(-1))
        return t

    # ------------------------------------------------------------------------- readings
    def correct(self, rows, cols, readings, active) -> np.ndarray:
        """Corrected conductances (n_chips, L), S, of lane readings ``readings`` (S) of cells
        (rows, cols); the estimate of every active lane's cell is updated to it."""
        R, C = self.shape
        act = np.flatnonzero(active)                                    # the active lanes only
        self._settle(act // rows.shape[-1])
        if self._cross is None and self.est.flags.c_contiguous:   # (each lane at the model's own reading: one compiled pass)
            g = np.full(rows.shape, np.nan)
            _kernels()["correct_lanes"](act.astype(np.int64, copy=False), rows.shape[-1], R, C, _flat(rows, np.int64),
                                        _flat(cols, np.int64), _flat(readings), _flat(self._m_hat), _flat(self._a),
                                        _flat(self._c), _flat(self.est), _flat(self._ref), g.reshape(-1))
            return g
        b = act // rows.shape[-1]
        r, c = rows.reshape(-1).take(act), cols.reshape(-1).take(act)
        g = np.full(rows.shape, np.nan)
        g.reshape(-1)[act] = self._correct_at(b, r, c, (b * R + r) * C + c, readings.reshape(-1).take(act))
        return g

    def _correct_at(self, b, r, c, cell, readings) -> np.ndarray:
        """Corrected conductances (S) of ``readings`` (S) of cells (``r``, ``c``) of chips ``b``
        (flat indices ``cell`` in the batch): each by its own local inversion at the model's
        linearization, the other cells followed (:meth:`_shifted_m`); their estimates are updated."""
        self._settle(b)
        m_now = self._shifted_m(b, r, c, cell)          # the model's reading, the other cells followed
        g_on = np.empty(np.shape(cell))                 # (_invert's kernel, gathering the cells' maps itself)
        _kernels()["invert"](_flat(cell, np.int64), _flat(readings), _flat(m_now), _flat(self._a), _flat(self._c),
                             _flat(self.est), _flat(self._ref), g_on.reshape(-1))
        self.est.put(cell, g_on)
        return g_on

    def correct_cells(self, readings) -> np.ndarray:
        """Corrected conductances (B, R, C), S, of readings of a few cells of a map (``readings``,
        NaN = not read) taken with every other cell as the model has it (a read-back's re-reads of
        the cells it doubts: nothing pulsed since its map was fitted): each cell inverted on its own
        (:meth:`correct`'s local inversion at the model's linearization, exact in its own
        conductance, the other re-read cells followed to first order where the model keeps their
        shares: twice, the second time with the first's moves followed) instead of a joint fit of the
        whole map (:meth:`correct_map`), whose every step is a model evaluation of every chip with a
        re-read cell (10 000 × 8×8 on the default lines: 3 of them for ~2 re-read cells a chip).  A
        re-read moves its cell by about the read noise (0.1 %): four cells moved by up to 0.3 % are
        found within 1.2e-6 of their conductances on 64×64 at 2 Ω (once: 6.8e-5; the joint fit
        1.6e-7), 1.2e-7 on 32×32 at 1 Ω, 3.5e-8 on 8×8 at 0.67 Ω."""
        m = np.asarray(readings, float)
        R, C = self.shape
        cell = np.flatnonzero(np.isfinite(m))
        b, rc = np.divmod(cell, R * C)
        r, c = np.divmod(rc, C)
        vals = m.reshape(-1).take(cell)
        g = np.full(m.shape, np.nan)
        for _ in range(2 if self._cross is not None else 1):
            g.reshape(-1)[cell] = self._correct_at(b, r, c, cell, vals)
        return g

    def correct_map(self, readings) -> np.ndarray:
        """Corrected conductances (B, R, C), S, of a full map of ``readings`` (NaN = not read):
        every read cell's estimate is fitted jointly to the map (:meth:`fit` to
        :data:`MAP_FIT_TOL`, from the present estimate — none: the readings; the cells not read
        keep theirs)."""
        m = np.asarray(readings, float)
        self.fit(m, start=self.est, tol=MAP_FIT_TOL)
        return np.where(np.isfinite(m), self.est, np.nan)


def estimate_beta(g_low, g_high, v_low: float, v_high: float) -> float:
    """The devices' cubic I-V coefficient β (1/V²) from chord conductances read at two voltages
    (same cells): I/V = g (1 + β V²)/(1 + β v_ref²), so the ratio ρ of the readings at ``v_high``
    and ``v_low`` gives β = (ρ − 1)/(v_high² − ρ v_low²).  Median over the cells."""
    rho = np.asarray(g_high, float) / np.asarray(g_low, float)
    beta = (rho - 1.0) / (v_high ** 2 - rho * v_low ** 2)
    return float(np.nanmedian(beta))


def estimate_line_resistance(ground_readings, float_readings, cells, v_read: float, r_access: float = 0.0,
                             r_max: float = 50.0, beta: float = 0.0, v_ref: float = 0.2,
                             scheme: str = "float") -> np.ndarray:
    """Line resistance per segment (Ω) of each chip, from reads under two biasings a bench can do:

    * ``ground_readings`` (B, R, C), S: every cell read with the unselected lines grounded;
    * ``float_readings`` (B, K), S: the ``cells`` (K (row, col) pairs) read with the unselected
      lines floating, so the sneak paths through the whole array add to the current.

    Grounded reads alone cannot tell line resistance from conductance (any line resistance fits
    them with some conductances); the two biasings route the current through the lines
    differently.  For a candidate resistance ``r`` the conductances are fitted to the grounded
    readings through the line model (:meth:`ReadCorrection.fit`) and the model's float readings
    compared with the measured ones; the root in ``r`` (:func:`bracketed_root` on [0, ``r_max``]) is the
    estimate.  ``r_access`` (Ω, known from the station) is the path in series with each terminal;
    ``beta`` (1/V², :func:`estimate_beta`) and ``v_ref`` (V) the devices' I-V curvature (the sneak
    paths put cells at about a third of the read voltage).  A chip whose float readings need no line
    resistance at all gets 0 Ω.  With ``scheme="isolate"`` the second biasing is the isolating
    read (``float_readings`` are then isolating reads of ``cells``), modelled through the same line
    network (its reverse-biased cells sit at the read voltage, where the fitted chord conductances
    hold)."""
    m = np.asarray(ground_readings, float)
    meas = np.asarray(float_readings, float)
    B = m.shape[0]
    beta = np.broadcast_to(np.asarray(beta, float), (B,))
    out = np.zeros(B)
    r_min = 1e-6
    # the mismatch rises with r while the fit holds; past the true value by far the fit itself
    # breaks down, so bracket each chip's root by stepping up a geometric grid from r_min: the
    # chips still stepping at each of the grid's resistances at once (:func:`line_mismatches`)
    seen = [{} for _ in range(B)]       # (the root search evaluates the bracket's ends again: the grid's values)
    step, lo_r, hi_r = np.arange(B), np.full(B, r_min), np.full(B, np.nan)
    for n, r in enumerate((r_min, *np.geomspace(0.05, r_max, 16))):
        if not step.size:
            break
        cur = line_mismatches(m[step], meas[step], cells, v_read, r, r_access, beta[step], v_ref, scheme)
        for k, value in zip(step.tolist(), cur.tolist()):
            seen[k][r] = value
        up = cur >= 0
        if n:
            hi_r[step[up]], lo_r[step[~up]] = r, r
        step = step[~up]            # (at r_min: a chip already there has no measurable IR drop, 0 Ω)
    if step.size:
        raise ValueError(f"chip {step[0]}: the float readings need a line resistance above {r_max:g} Ω "
                         "(check the wiring and the read schemes)")
    for k in np.flatnonzero(np.isfinite(hi_r)):
        def mismatch(r, k=k):
            if r not in seen[k]:
                seen[k][r] = float(line_mismatches(m[k:k + 1], meas[k:k + 1], cells, v_read, r, r_access, beta[k],
                                                   v_ref, scheme)[0])
            return seen[k][r]

        out[k] = bracketed_root(mismatch, lo_r[k], hi_r[k], xtol=1e-4, rtol=1e-4)
    return out


def bracketed_root(f, a: float, b: float, xtol: float, rtol: float, maxiter: int = 100) -> float:
    """A root of ``f`` in [``a``, ``b``] (``f(a)``, ``f(b)`` of opposite signs) by the ITP method
    (I. F. D. Oliveira and R. H. C. Takahashi, "An Enhancement of the Bisection Method Average
    Performance Preserving Minmax Optimality", ACM Trans. Math. Softw. 47(1), 2020): each step
    interpolates (regula falsi), truncates the step towards the midpoint by ``κ1·w^κ2`` and projects
    it into a range around the midpoint that shrinks like bisection's, so it never takes more than
    bisection's count plus ``n0`` evaluations and converges superlinearly on smooth functions (the
    paper's parameters ``κ1 = 0.2/(b − a)``, ``κ2 = 2``, ``n0 = 1``).  Written here rather than taken
    from ``scipy.optimize``, whose import loads ~170 modules (scipy.spatial, scipy.special, scipy.fft
    ...) and ~18 MB of the resident set that every simulated tune, which calibrates its lines
    through this, would otherwise hold for one 1-D root.  Returns the bracket's midpoint once the
    bracket is within ``xtol + rtol·|x|`` (or a point where ``f`` is 0); raises ``ValueError`` on a
    bracket without a sign change or a NaN value, ``RuntimeError`` after ``maxiter`` evaluations."""
    def value(x):
        fx = float(f(x))
        if np.isnan(fx):
            raise ValueError(f"the function value at x={x:g} is NaN; the root search cannot continue")
        return fx

    a, b = float(a), float(b)
    fa, fb = value(a), value(b)
    if fa == 0:
        return a
    if fb == 0:
        return b
    if np.signbit(fa) == np.signbit(fb):
        raise ValueError("f(a) and f(b) must have different signs")
    if fa > 0:                                   # oriented: f(a) < 0 < f(b)
        a, b, fa, fb = b, a, fb, fa
    width = abs(b - a)
    k1, k2, n0 = 0.2 / width, 2.0, 1
    n_max = max(0, int(np.ceil(np.log2(width / xtol)))) + n0      # bisection's count to xtol, plus n0
    for j in range(maxiter):
        width = abs(b - a)
        mid = (a + b) / 2
        if width <= xtol + rtol * abs(mid):
            return mid
        radius = xtol / 2 * 2.0 ** (n_max - j) - width / 2         # the projection's range around mid
        falsi = (fb * a - fa * b) / (fb - fa)
        toward = np.copysign(1.0, mid - falsi)
        trunc = k1 * width ** k2
        x = falsi + toward * trunc if trunc <= abs(mid - falsi) else mid
        if abs(x - mid) > radius:
            x = mid - toward * radius
        fx = value(x)
        if fx > 0:
            b, fb = x, fx
        elif fx < 0:
            a, fa = x, fx
        else:
            return x
    raise RuntimeError(f"the root search did not converge in {maxiter} steps")


#: chips whose line mismatches (:func:`line_mismatches`) one fit works out at once: fewer than
#: :data:`~programming.line_batch.BATCH_MIN_CHIPS`, so that their fits sweep their lines as one
#: chip's alone does (each point from its own last solution, each chip's fit its own): a batch's
#: chips on a trial resistance they share (:func:`estimate_line_resistance`'s bracketing grid) get
#: the numbers each would alone, at a fraction of the calls (8 chips' grid: 0.135 -> 0.038 s)
CALIBRATION_GROUP = line_batch.BATCH_MIN_CHIPS - 1


def line_mismatch(ground_readings, second_readings, cells, v_read: float, r: float, r_access: float = 0.0,
                  beta: float = 0.0, v_ref: float = 0.2, scheme: str = "float") -> float:
    """The mean log ratio of modelled to measured second-biasing readings of ``cells`` (one chip:
    ``ground_readings`` (1, R, C), ``second_readings`` (K,), S) for a candidate line resistance
    ``r`` (Ω): the conductances fitted to the grounded map through the line model at ``r``, then
    the second biasing modelled on them (:func:`estimate_line_resistance` finds its root)."""
    return float(line_mismatches(ground_readings, np.asarray(second_readings, float)[None], cells, v_read, r,
                                 r_access, beta, v_ref, scheme)[0])


def line_mismatches(ground_readings, second_readings, cells, v_read: float, r: float, r_access: float = 0.0,
                    beta=0.0, v_ref: float = 0.2, scheme: str = "float") -> np.ndarray:
    """:func:`line_mismatch` of each of ``B`` chips (``ground_readings`` (B, R, C), ``second_readings``
    (B, K), S; ``beta`` (B,) or one for all, 1/V²) on the same candidate ``r`` (Ω): (B,).  Up to
    :data:`CALIBRATION_GROUP` chips whose readings are all finite share a fit (each chip's fit its
    own: the same numbers as alone); a chip with a missing reading is fitted alone (a fit fills it
    with the mean of the readings it is given)."""
    from .line_model import float_read_currents

    m = np.asarray(ground_readings, float)
    second = np.asarray(second_readings, float)
    B = m.shape[0]
    beta = np.broadcast_to(np.asarray(beta, float), (B,))
    idx = (slice(None), *np.array(cells).T)
    whole = np.isfinite(m).reshape(B, -1).all(axis=1)
    good = np.flatnonzero(whole)
    groups = [good[k:k + CALIBRATION_GROUP] for k in range(0, good.size, CALIBRATION_GROUP)]
    out = np.empty(B)
    for chips in groups + [np.array([k]) for k in np.flatnonzero(~whole)]:
        corr = ReadCorrection(m.shape[1:], chips.size, v_read, r, r_access)
        est = corr.fit(m[chips], tol=CALIBRATION_FIT_TOL)
        if scheme == "isolate":
            corr.scheme = "isolate"
            model = corr.model(est)[0][idx]
        else:
            model = np.concatenate([float_read_currents(est[k:k + 1], cells, v_read, r, r_access, beta[c], v_ref)
                                    for k, c in enumerate(chips)]) / v_read
        out[chips] = np.mean(np.log(model / second[chips]), axis=1)
    return out


def driven_read_model(g, cells, v_read: float, r_line: float, r_access: float = 0.0, beta: float = 0.0,
                      v_ref: float | None = None, scheme: str = "isolate") -> np.ndarray:
    """Readings (B, K), S, the line model gives for reads of ``cells`` (K (row, col) pairs) of devices
    ``g`` (B, R, C), S — chord conductances at ``v_ref`` (V, default ``v_read``) with the cubic I-V
    of coefficient ``beta`` (1/V²) — at ``v_read`` (V) under a biasing that drives every terminal:
    ``ground`` (the cell's row at ``v_read``, every other line at 0 V) or ``isolate`` (the
    unselected columns at ``v_read`` as well).  One right-hand side per cell on one factorization;
    the devices' own I-V by the chord iteration (:meth:`LineNetwork.solve_cubic`)."""
    if scheme not in ("ground", "isolate"):
        raise ValueError(f"a driven read model knows the 'ground' and 'isolate' schemes, not {scheme!r}")
    g = np.asarray(g, float)
    B, R, C = g.shape
    v_ref = float(v_read if v_ref is None else v_ref)
    rows = np.array([c[0] for c in cells], np.intp)
    cols = np.array([c[1] for c in cells], np.intp)
    K = rows.size
    net = LineNetwork(g / (1.0 + beta * v_ref * v_ref), r_line, r_access)
    row_v = np.zeros((B, K, R))
    row_v[:, np.arange(K), rows] = v_read
    col_v = np.full((B, K, C), v_read if scheme == "isolate" else 0.0)
    col_v[:, np.arange(K), cols] = 0.0
    x = net.solve_cubic(g, beta, v_ref, row_v, col_v, tol=1e-10)[0]
    xr, xc = net.split(x)
    return net.terminal_currents(xr, xc, row_v, col_v)[1][:, np.arange(K), cols] / v_read


#: the largest step of :func:`refine_lines` in log r and in β (1/V²)
MAX_STEP = np.array([0.2, 0.5])


def refine_lines(ground_readings, low_readings, second_readings, cells, v_read: float, v_low: float,
                 r_line: float, beta: float, r_access: float = 0.0, scheme: str = "isolate",
                 max_steps: int = 6) -> tuple[float, float]:
    """The line resistance (Ω per segment) and device I-V coefficient β (1/V²) of one chip fitted
    *jointly* through the line model, from a first guess (``r_line``, ``beta``):

    * ``ground_readings`` (1, R, C), S: the grounded map at ``v_read`` (V);
    * ``low_readings`` (K,), S: grounded reads of ``cells`` at ``v_low`` (V): the curvature;
    * ``second_readings`` (K,), S: reads of ``cells`` under the second biasing ``scheme``
      (``isolate`` or ``float``): the line resistance.

    The per-cell ratio of two grounded readings (:func:`estimate_beta`) assumes each cell sees
    the voltage its row is driven at; through resistive lines it sees less (on 64×64 at 0.67 Ω
    about 3/4 of it), so that ratio underestimates β (0.17 for 0.3 there, 0.08 at 2 Ω) and the
    fitted conductances and the resistance inherit the bias (measured on a simulated 64×64 chip
    set to known conductances: a fit with those estimates was off by −0.5 % on average at
    0.67 Ω, −0.8 % at 2 Ω, against 0.00 % with the true parameters).  Here both are solved by
    Newton's method on the two mismatches — the mean log ratio of modelled to measured readings
    of the second biasing and of the low-voltage reads — each model on conductances fitted to the
    grounded map (:meth:`ReadCorrection.fit`, warm-started) with the candidate parameters.
    Returns (r_line, beta); the first guess where a step would leave r > 0, β >= 0."""
    from .line_model import float_read_currents

    m = np.asarray(ground_readings, float)
    low = np.asarray(low_readings, float).ravel()
    second = np.asarray(second_readings, float).ravel()
    idx = tuple(np.array(cells).T)
    shape = m.shape[1:]
    est = [None]

    def mismatch(x):
        r, b = float(np.exp(x[0])), float(x[1])
        corr = ReadCorrection(shape, 1, v_read, r, r_access, beta=b)
        g = corr.fit(m, start=est[0], tol=CALIBRATION_FIT_TOL)
        est[0] = g
        if scheme == "float":
            sec = float_read_currents(g, cells, v_read, r, r_access, b, v_read)[0] / v_read
        else:
            sec = driven_read_model(g, cells, v_read, r, r_access, b, v_read, scheme)[0]
        lo = ReadCorrection(shape, 1, v_low, r, r_access, beta=b, v_ref=v_read).model(g, slopes=False)[0][0][idx]
        return np.array([np.mean(np.log(sec / second)), np.mean(np.log(lo / low))])

    x = np.array([np.log(r_line), beta])
    step = np.array([0.01, 0.05])
    f = mismatch(x)
    jac = np.empty((2, 2))          # by forward differences once: the mismatches are nearly linear here
    for k in range(2):
        dx = np.zeros(2)
        dx[k] = step[k]
        jac[:, k] = (mismatch(x + dx) - f) / step[k]
    for _ in range(max_steps):
        try:
            delta = -np.linalg.solve(jac, f)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(delta)):
            break
        x_new = x + np.clip(delta, -MAX_STEP, MAX_STEP)       # a trust region: no wild first steps
        x_new[1] = max(x_new[1], 0.0)
        moved = np.abs(x_new - x)
        x = x_new
        if moved[0] < 2e-4 and moved[1] < 2e-3:
            break
        f = mismatch(x)
    return float(np.exp(x[0])), float(x[1])


def product_targets(targets, v_read: float, r_line: float, r_access: float = 0.0, fixed=None,
                    iterations: int = 12) -> np.ndarray:
    """Conductances (B, R, C), S, whose matrix-vector product through resistive lines carries the
    intended one: ``targets`` (B, R, C), S, NaN for cells not targeted.

    With its columns held at 0 V (virtual ground) and rows driven, a chip of linear devices is a
    linear network: column ``j``'s current is ``I_j = Σ_i T_ij v_i`` for any row voltages ``v``, and
    ``T_ij`` is exactly what a grounded read of cell (i, j) measures (row ``i`` driven, every other
    line at 0 V — the same terminals as the product's).  So the product's effective weights are the
    grounded-read map, and the conductances whose *modelled* grounded reads equal the targets give
    the intended product for every input, whatever rows drive it.  They are found by inverting the
    line model (:meth:`ReadCorrection.fit`) with the targets as readings, on the estimated line
    resistance ``r_line`` and access path ``r_access`` (Ω), at the read voltage ``v_read`` (V).
    ``fixed`` (same shape, S, NaN = free): the cells the product cannot move — those outside the
    targets (they load the lines too) and stuck devices — at their (corrected) read conductances;
    a cell neither targeted nor fixed is modelled at the mean target.  The result is not clipped: a
    target whose lines drop a share ``ε`` of its current needs ``≈ 1/(1 − ε)`` of it, so a mapping
    meant for pre-distortion leaves that headroom below the window's top."""
    tgt = np.asarray(targets, float)
    B, R, C = tgt.shape
    hold = np.full(tgt.shape, np.nan) if fixed is None else np.array(np.broadcast_to(fixed, tgt.shape), float)
    hold = np.where(np.isnan(tgt), hold, np.nan)                    # a targeted cell is never held
    est = ReadCorrection((R, C), B, v_read, r_line, r_access).fit(tgt, iterations, hold)
    return np.where(np.isnan(tgt), np.nan, est)


def calibration_cells(shape) -> list[tuple[int, int]]:
    """The cells line calibration reads: one per row, the column stepping by 3 (mod cols)."""
    rows, cols = shape
    return [(k % rows, (3 * k) % cols) for k in range(max(rows, cols))]


#: standard errors by which a batch's median line-resistance estimate must exceed zero to count
#: (:func:`line_estimate`): on ideal lines the median of 8 chips' estimates is noise (measured on
#: 8×8: up to 0.0065 Ω, every chip's estimate within about 0.01 Ω of 0), and a spurious estimate
#: switches on a correction that models lines that are not there; 3 standard errors is a one-sided
#: false-alarm rate of about 0.1 % on Gaussian noise
LINE_SIGNIFICANCE = 3.0


def significant_line_resistance(r, sigma: float, z: float = LINE_SIGNIFICANCE) -> float:
    """The median of the per-chip estimates ``r`` (Ω) if it exceeds ``z`` standard errors of that
    median (``sigma``/√n for one or two chips, whose median is their mean, else √(π/2)·``sigma``/√n,
    ``sigma`` the per-chip standard uncertainty, Ω), else 0.  The estimator clips a chip's estimate
    at 0 ("no measurable drop"), a monotone map, so the median of the clipped estimates is the
    clipped median and the test holds for it as it stands.  (One 3×3 chip at 0.67 Ω: ``sigma``
    about 0.46 Ω, so no single small chip's drop counts; 4×4: 0.18 Ω; 8×8: 0.01 Ω.)"""
    r = np.asarray(r, float).ravel()
    med = float(np.median(r))
    spread = 1.0 if r.size <= 2 else np.sqrt(np.pi / 2)
    return med if med > z * spread * float(sigma) / np.sqrt(r.size) else 0.0


def line_estimate(xb, r_access: float = 0.0, max_chips: int | None = 8) -> tuple[float, float]:
    """The line resistance per segment (Ω) and device I-V coefficient β (1/V²) to correct with on
    ``xb``: measured with reads only (:func:`measure_line_resistance`), the medians over a batch's
    chips — what ``xbar tune``, ``xbar deploy`` and ``xbar evaluate --mode tuned`` use with
    ``--line-estimate auto``.  The chips of a batch share one process (same lines), so the
    estimate is taken on the first ``max_chips`` of them (None: all).  The resistance counts only
    where it is significant (:func:`significant_line_resistance` with the measurement's own
    uncertainty, :func:`line_resistance_uncertainty`): else 0 Ω, no correction."""
    r, beta, sigma = measure_line_resistance(xb, r_access=r_access, max_chips=max_chips, uncertainty=True)
    return significant_line_resistance(r, sigma), float(np.median(beta))


def line_resistance_uncertainty(ground, high, second, cells, v_read: float, r_access: float = 0.0,
                                beta: float = 0.0, scheme: str = "isolate", dr: float = 0.05) -> float:
    """The standard uncertainty (Ω) of one chip's line-resistance estimate from the read noise,
    both measured by :func:`measure_line_resistance`'s own reads (no assumed noise figure):

    * the read noise σ (relative): the sampled cells are read twice at ``v_read`` under the same
      grounded biasing (``ground`` (n, R, C) at ``cells`` and ``high`` (n, K), S), so the spread of
      log(high/ground) over the n chips' K cells is σ·√2;
    * the estimate is the root in r of :func:`line_mismatch`, the mean over K cells of the log
      ratio of the second biasing's modelled to measured readings: its noise is about σ·√(2/K)
      (each cell's second reading, and the grounded reading its modelled one follows), and its
      slope in r is measured on the first chip between 0 and ``dr`` Ω;

    so the uncertainty is σ·√(2/K) / slope (checked against the spread of many chips' estimates
    at 0.67 Ω in the tests).  ``second`` (n, K): the second biasing's readings, ``scheme`` it."""
    cells = list(cells)
    rr = np.array([c[0] for c in cells])
    cc = np.array([c[1] for c in cells])
    n = len(high)
    ratio = np.log(np.asarray(high, float) / np.asarray(ground, float)[:n, rr, cc]).ravel()
    ratio = ratio[np.isfinite(ratio)]
    if ratio.size < 2:
        return 0.0
    sigma = float(np.std(ratio, ddof=1)) / np.sqrt(2)
    g0 = np.asarray(ground, float)[:1]
    lo = line_mismatch(g0, second[0], cells, v_read, 1e-6, r_access, beta, v_read, scheme)
    hi = line_mismatch(g0, second[0], cells, v_read, dr, r_access, beta, v_read, scheme)
    slope = (hi - lo) / (dr - 1e-6)
    if not slope > 0:
        return np.inf
    return sigma * np.sqrt(2.0 / len(cells)) / slope


#: the relative error (one standard deviation) of corrected readings that the line calibration's own
#: uncertainty may leave (:func:`measure_line_resistance`): a twentieth of the tuner's default 1 %
#: tolerance, so that an estimate two of its standard errors off moves every corrected reading by at
#: most 0.1 %, the margin the tuner's hold band (``hold_guard``) keeps for what a reading cannot see.
#: Where the sampled cells' reads leave more (8×8 through floating reads, the only second biasing of
#: a bench with one bias channel: 0.06–0.13 Ω per chip at 0.67 Ω, an estimate 0.14 Ω low biased
#: every corrected reading of the mock B2902A bench by −0.3 % and left 3 % of its cells 1.0–1.1 %
#: off), they are read again and averaged
CALIBRATION_SIGMA = 5e-4
#: the most reads of each sampled cell at each biasing the calibration averages
#: (:data:`CALIBRATION_SIGMA`); a chip whose estimate stays more uncertain keeps it, reported by
#: ``uncertainty``
CALIBRATION_READS_MAX = 16


def correction_spread(ground_readings, r_line: float, dr: float, v_read: float, r_access: float = 0.0,
                      beta: float = 0.0) -> float:
    """How far an error ``dr`` (Ω) of the line-resistance estimate ``r_line`` (Ω) moves the corrected
    readings of a chip: the largest relative change of the conductances fitted to its grounded map
    ``ground_readings`` (1, R, C), S, through the line model (:meth:`ReadCorrection.fit`) at
    ``r_line + dr`` against ``r_line`` (on ideal-line estimates, from 1 µΩ)."""
    m = np.asarray(ground_readings, float)[:1]
    r0 = max(float(r_line), 1e-6)
    a = ReadCorrection(m.shape[1:], 1, v_read, r0, r_access, beta=beta).fit(m, tol=CALIBRATION_FIT_TOL)
    b = ReadCorrection(m.shape[1:], 1, v_read, r0 + abs(float(dr)), r_access, beta=beta).fit(
        m, start=a, tol=CALIBRATION_FIT_TOL)
    return float(np.max(np.abs(np.log(b / a))))


def calibration_reads(spread: float, target: float = CALIBRATION_SIGMA, most: int = CALIBRATION_READS_MAX) -> int:
    """Reads of each sampled cell at each biasing that bring a correction ``spread`` (relative, one
    standard deviation of the estimate: :func:`correction_spread` of one read each) down to
    ``target``: the error falls as one over the square root of the reads averaged; 1 to ``most``
    (an infinite spread: ``most``)."""
    if not np.isfinite(spread):
        return int(most)
    return int(np.clip(np.ceil((spread / target) ** 2 - 1e-9), 1, most))


def measure_line_resistance(xb, v_read: float | None = None, r_access: float = 0.0, scheme: str | None = None,
                            max_chips: int | None = None, uncertainty: bool = False, reads: int | None = None):
    """Measure every chip's line resistance per segment (Ω) and I-V curvature β (1/V²) on any
    :class:`~programming.crossbar.Crossbar`, with reads only (below the switching threshold): the
    grounded map, the sampled cells at half and at the read voltage (β, first guess
    :func:`estimate_beta`) and under a second biasing (first guess :func:`estimate_line_resistance`),
    both then fitted jointly through the line model (:func:`refine_lines`): ``scheme``, by default the
    isolating read where the chip lists it (``xb.read_schemes``; measured on the simulated chip: 8×8
    at 0.5–2 Ω within 4 % where floating reads missed by up to 34 %, 16×16 alike, 3× faster),
    else floating.  ``r_access``: the known path resistance in
    series with every terminal, Ω.  ``max_chips``: estimate the first that many chips of a batch
    only (the reads are one call for all).

    ``reads``: rounds of reads averaged (each round the grounded map and the sampled cells at their
    three biasings; every other round in reverse order, so that a chip drifting steadily while it is
    read biases no biasing against another).  By default (None) one, then as many as
    :func:`calibration_reads` asks to bring the estimate's effect on corrected readings down to
    :data:`CALIBRATION_SIGMA` (the uncertainty of the first estimate,
    :func:`line_resistance_uncertainty`, through :func:`correction_spread` on the first chip),
    in whole pairs of rounds, and the estimate is made again on the averages — where the first
    round's estimate is significant (:func:`significant_line_resistance`: a correction will be
    made; a drop lost in one round's noise, as 0.67 Ω on a 3×3 chip, is left uncorrected as
    before).  Measured: the mock
    B2902A bench's 8×8 (floating reads) 10–16 rounds; the isolating reads
    of simulated 8×8, 16×16 and 64×64 chips and of the mock 2636B bench's 8×8, one.

    Returns (r_line (n,), beta (n,)), n the chips estimated; with ``uncertainty`` also the per-chip
    standard uncertainty of r_line from the same reads, Ω (:func:`line_resistance_uncertainty`,
    divided by the square root of the reads averaged)."""
    v = float(v_read or xb.v_read)
    v_high = v          # never above the read voltage: a calibration sources nothing a read does not
    cells = calibration_cells(xb.shape)
    rr = np.array([c[0] for c in cells])
    cc = np.array([c[1] for c in cells])
    if scheme is None:      # the isolating read where the chip's channels allow it
        scheme = "isolate" if "isolate" in getattr(xb, "read_schemes", ()) else "float"
    n = xb.n_chips if max_chips is None else max(1, min(int(max_chips), xb.n_chips))
    sums = [np.zeros((xb.n_chips, *xb.shape))] + [np.zeros((xb.n_chips, len(cells))) for _ in range(3)]
    if n == xb.n_chips:
        steps = [lambda: xb.read_array(v, "ground")] + [
            (lambda level=level, how=how: xb.read(rr, cc, level, how).conductance)
            for level, how in ((v / 2, "ground"), (v_high, "ground"), (v, scheme))]
    else:
        # the first n chips of a batch only (the others are not estimated): the map as every cell's
        # grounded read, the same reading as read_array's (a simulated batch draws its read noise
        # for every chip either way)
        on = np.arange(xb.n_chips) < n
        every = np.indices(xb.shape).reshape(2, -1)
        steps = [lambda: xb.read(every[0], every[1], v, "ground", active=np.repeat(on[:, None], every.shape[1], 1))
                 .conductance.reshape(xb.n_chips, *xb.shape)] + [
            (lambda level=level, how=how: xb.read(rr, cc, level, how,
                                                  active=np.repeat(on[:, None], rr.size, 1)).conductance)
            for level, how in ((v / 2, "ground"), (v_high, "ground"), (v, scheme))]

    def read_rounds(first: int, last: int) -> int:
        # every other round in reverse order (the map last): the reads of a pair of rounds have one
        # mean time, so a chip that drifts steadily while it is read (a bench's freshly written
        # cells relax) biases no biasing against another
        for k in range(first, last):
            order = range(len(steps)) if k % 2 == 0 else reversed(range(len(steps)))
            for i in order:
                sums[i] += steps[i]()
        return last

    done = read_rounds(0, 1 if reads is None else max(1, int(reads)))
    first = [x.copy() for x in sums]            # one read each: the read noise (the uncertainty)
    r, beta = _line_fit(*(x / done for x in sums), cells, v, v_high, r_access, scheme, n)
    sigma = line_resistance_uncertainty(first[0][:n], first[2][:n], first[3][:n], cells, v, r_access,
                                        float(np.median(beta)), scheme) if uncertainty or reads is None else 0.0
    if reads is None and significant_line_resistance(r, sigma) > 0:
        more = calibration_reads(correction_spread(first[0][:1], float(np.median(r[r > 0])), sigma, v, r_access,
                                                   float(np.median(beta))))
        if more > done:
            done = read_rounds(done, more + more % 2)     # whole pairs of rounds
            r, beta = _line_fit(*(x / done for x in sums), cells, v, v_high, r_access, scheme, n)
    if uncertainty:
        return r, beta, sigma / np.sqrt(done)
    return r, beta


def _line_fit(ground, low, high, second, cells, v, v_high, r_access, scheme, n):
    """:func:`measure_line_resistance`'s estimate of the first ``n`` chips from its reads (each
    the mean of the rounds read)."""
    rr = np.array([c[0] for c in cells])
    cc = np.array([c[1] for c in cells])
    beta = np.array([max(estimate_beta(low[k], high[k], v / 2, v_high), 0.0) for k in range(n)])
    r = estimate_line_resistance(ground[:n], second[:n], cells, v, r_access, beta=beta, v_ref=v, scheme=scheme)
    # the first guesses above see the curvature as if every cell saw its row's voltage: refine
    # both jointly through the line model (the sampled cells' two reads at v averaged)
    both = ground[:n].copy()
    both[:, rr, cc] = 0.5 * (both[:, rr, cc] + high[:n])
    for k in np.flatnonzero(r > 0):
        r[k], beta[k] = refine_lines(both[k:k + 1], low[k], second[k], cells, v, v / 2, r[k], beta[k],
                                     r_access, scheme)
    return r, beta
