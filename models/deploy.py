"""Deployment of a trained network onto any :class:`~programming.crossbar.Crossbar`.

Steps (:func:`deploy`):

1. **map** every layer's ``[W|b]`` to differential-pair conductance targets
   (:class:`programming.mapping.ConductanceMapping`, one-sided, the model's ``scales``: one
   ``w_max[o] = max|[W|b][o]|`` per output or one ``max|[W|b]|`` per layer — see
   :mod:`models.layers` — in the chip's programming window);
2. **place** the layer blocks on the array (:func:`models.placement.plan_placement`);
3. **tune** every block cell with the write-verify tuner (one call for all chips of a batch);
4. **compensate stuck devices** (``compensate=True``): where the tuner flagged one device of a pair
   stuck, the partner is re-targeted to ``g_stuck ∓ (G+ − G-)_target`` (clipped to the window) and
   tuned again, restoring the pair's difference as far as the window allows;
5. **read back** the array and report per-layer programming error and weight error;
6. **infer** through the chip's analog matrix-vector product (:func:`chip_forward`) and, as a
   cross-check, in software with the read-back weights;
7. on resistive lines, **pre-distort** (``predistort``, the default): the product's accuracy is
   measured as tuned so far (the figure *without* pre-distortion), then every network cell is
   re-targeted so that the product carries the intended weights despite the lines' IR drop as
   closely as the window allows (:func:`predistortion`) and tuned again from where it is — only
   where the line model expects a smaller product error than the chip's as tuned; before that,
   with ``data``, each layer's inputs are moved to the block rows where the stuck devices hurt
   least (:func:`stuck_row_orders`); the accuracy is measured again (*with*).  Both figures go in
   the report, with the modelled errors that decided it.

Inputs reach the rows as voltages: an augmented input ``[a, 1]`` (the 1 drives the bias row) is
divided by ``s = max(1, max|a|)`` per example and multiplied by ``v_in`` (the chip's read voltage,
at which its conductances are defined), so no row ever exceeds ``v_in``; the column currents give
``[W|b]·[a, 1] = scale · s / v_in · (I+ − I-)``, with each output's own ``scale``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from programming.crossbar import Crossbar
from programming.ir_correction import ReadCorrection, line_estimate
from programming.mapping import ConductanceMapping, MappedWeights
from programming.tune_result import CONVERGED, FAILED, STATUS_NAMES, STUCK, TuneResult
from programming.tune_state import TuneLog
from programming.tuner import TunerConfig, tune

from .datasets import Dataset, predictions
from .layers import ACTIVATIONS, MLP
from .model_io import check_model
from .placement import Placement, plan_placement


@dataclass
class DeployConfig:
    """Deployment settings: write-verify ``tolerance`` (relative), stuck ``compensate``, the
    tuner's cell ``order``, ``passes``, ``initial_reset`` and ``seed``; ``pulses``, a
    :class:`TunerConfig` whose pulse width and amplitudes the tuner uses (None: the recipe's);
    ``on_instrument``: each cell's loop runs on the bench's instrument (see :func:`tune`).

    IR drop: ``line_resistance`` (Ω per segment, measured by ``xbar calibrate-lines``; 0 = none)
    and ``access_resistance`` (Ω) make the tuner correct its reads for the lines and the read-back
    map be corrected the same way (``device_beta``, 1/V²: the devices' measured I-V curvature); with a line resistance, ``predistort`` (default on) then
    re-targets the network so that its matrix-vector products carry the intended weights despite
    the lines' drop (:func:`predistortion`), measuring the accuracy before and after; ``reorder``
    (default on, with pre-distortion and data) first moves each layer's inputs to the block rows
    where the devices the tuner flagged stuck hurt least (:func:`stuck_row_orders`, on the
    training set's statistics), since pre-distortion re-tunes every cell anyway."""

    tolerance: float = 0.01
    compensate: bool = True
    order: str = "row"
    passes: int = 3
    initial_reset: bool = True
    #: the initial RESETs as one sweep before tuning (the tuner's default) or each just before its
    #: cell (False, the default here): with the sweep the pre-distorted product error on 8×8 chips
    #: at 2 Ω was higher on chips 1–3 (1.11 / 1.24 %, 0.71 / 0.88 %, 1.07 / 0.57 % per layer against
    #: 0.70 / 0.61 %, 0.74 / 0.57 %, 0.87 / 0.62 %), but over chips 1–11 the means differ by less than
    #: the chips' spread (0.94 / 0.61 % without the sweep, 1.00 / 0.58 % with; 0.2–1.3 % chip to chip);
    #: kept False because one chip (seed 2) reaches 1.30 % with the sweep
    reset_sweep: bool = False
    seed: int = 0
    pulses: TunerConfig | None = None
    on_instrument: bool = False
    line_resistance: float = 0.0
    access_resistance: float = 0.0
    device_beta: float = 0.0
    predistort: bool = True
    reorder: bool = True

    def tuner(self, **changes) -> TunerConfig:
        """The tuner's settings: ``pulses`` (the pulse width and amplitude schedule, default the
        recipe's :class:`TunerConfig`) with this deployment's tolerance, order, passes, initial
        RESET and seed, and ``changes``."""
        kw = dict(tolerance=self.tolerance, order=self.order, passes=self.passes,
                  initial_reset=self.initial_reset, reset_sweep=self.reset_sweep, seed=self.seed,
                  line_resistance=self.line_resistance,
                  access_resistance=self.access_resistance, device_beta=self.device_beta)
        kw.update(changes)
        return replace(self.pulses or TunerConfig(), **kw)


def with_line_estimate(cfg: DeployConfig, xb: Crossbar) -> DeployConfig:
    """``cfg`` with the line resistance and device I-V curvature measured on ``xb`` with reads only
    (:func:`programming.ir_correction.line_estimate`, the access path ``cfg.access_resistance``):
    what ``xbar deploy`` and ``xbar evaluate --mode tuned`` do with ``--line-estimate auto``."""
    r_line, beta = line_estimate(xb, cfg.access_resistance)
    return replace(cfg, line_resistance=r_line, device_beta=beta)


@dataclass
class Deployment:
    """What :func:`deploy` did: the mapping, placement, tuning records and the read-back map."""

    model: MLP
    mapped: list[MappedWeights]
    placement: Placement
    result: TuneResult
    conductances: np.ndarray                 # read-back map (n_chips, rows, cols), S (corrected for the lines)
    compensated: np.ndarray                  # bool (n_chips, rows, cols): partners re-targeted
    wall_s: float
    report: dict = field(default_factory=dict)
    #: the grounded-read map as measured (n_chips, rows, cols), S: on resistive lines the weights
    #: the chip's product carries (:func:`programming.ir_correction.product_targets`); None = ``conductances``
    product_conductances: np.ndarray | None = None
    #: correctness of every test point through the chip's product (n_chips, B) bool, per stage:
    #: ``"final"`` and, when pre-distorted, ``"without_predistortion"``
    correct: dict = field(default_factory=dict)
    #: the conductance window (lo, hi), S, the weights are mapped onto: the chip's programming
    #: window, or with its top lowered where pre-distortion needs headroom (:func:`predistortion`)
    window: tuple[float, float] | None = None

    def layer_conductances(self, layer: int) -> np.ndarray:
        """Read-back conductances of one layer's block, (n_chips, rows, cols), S."""
        return self.placement.cut(self.conductances, layer)

    def readback_matrices(self) -> list[torch.Tensor]:
        """Per layer, the ``[W|b]`` the chip's product carries as the grounded reads measure it
        (on ideal lines, the read-back conductances), (n_chips, out, in+1)."""
        g = self.conductances if self.product_conductances is None else self.product_conductances
        return [torch.as_tensor(m.decode(self.placement.cut(g, i)), dtype=torch.float32)
                for i, m in enumerate(self.mapped)]


def deployment_targets(model: MLP, xb: Crossbar, window: tuple[float, float] | None = None, align: str = "top"
                       ) -> tuple[list[MappedWeights], Placement, np.ndarray]:
    """The mapping, the placement on ``xb`` and the array's targets (rows, cols), S, NaN outside
    the network's cells: what :func:`deploy` programs first (deterministic for a model, a chip and
    ``align``, :func:`alignment`).  ``window``: map onto this window (S) instead of the chip's (a
    pre-distorted deployment's :attr:`Deployment.window`)."""
    mapped = map_model(model, xb.programming_window if window is None else window)
    placement = plan_placement([m.shape for m in mapped], xb.shape, align)
    return mapped, placement, placement.targets([m.targets for m in mapped])


def alignment(cfg: DeployConfig) -> str:
    """Where :func:`deploy` places the layer blocks (:func:`models.placement.plan_placement`): on
    resistive lines (a line-resistance estimate) at the array's last rows, nearest the column
    terminals, where the product's currents see the least drop; on ideal lines at its first rows."""
    return "bottom" if cfg.line_resistance > 0 else "top"


def map_model(model: MLP, window: tuple[float, float]) -> list[MappedWeights]:
    """Conductance targets of every layer (checked model; window (lo, hi) in S: each output's
    largest weight maps onto ``hi − lo``)."""
    check_model(model)
    mapping = ConductanceMapping(g_min=window[0], g_max=window[1], mode="differential", split="one-sided",
                                 per_output=model.scales == "output")
    return [mapping.encode(wb.numpy()) for wb in model.matrices()]


#: the ranges (share of the window above its bottom) pre-distortion tries for the mapping's top
#: (:func:`predistortion`): the one whose modelled product error, tuning tolerance included, is least
#: is kept.  On the digits chip (65×84) at 2 Ω the least error was at about a quarter of the window
#: (top 200 µS), at 0.67 Ω near half of it; below a tenth the tuner's tolerance, relative to each
#: target, is most of a weight's range
PREDISTORT_RANGES = (1.0, 0.8, 0.65, 0.5, 0.4, 0.33, 0.27, 0.22, 0.18, 0.15, 0.12, 0.1)
#: the largest pre-distorted target, as a share of the window's top: targets right at the top land
#: poorly (8×8 at 2 Ω, the test: a peak at 0.985 of the top left layer 2's product error at 1.24 %,
#: at 0.95 it is 0.33 %)
PREDISTORT_PEAK = 0.95
#: at most this many line-model evaluations per fit of a top (:func:`product_fit`); a fit stops
#: once no conductance moves by more than :data:`PREDISTORT_FIT_TOL` (relative) in a step (digits
#: 65×84 at 2 Ω: 5–8 steps, the lines' coupling contracting by about half a step)
PREDISTORT_FIT_STEPS = 40
#: pre-distortion's first round keeps a cell the tuner gave up on within the reach its read-back
#: shows (:func:`reach_bounds`); the later rounds always do, with the last round's tune
PREDISTORT_REACH = True
#: the tuning stages of pre-distortion's rounds (:func:`deploy`): each round fits the targets again
#: from the read-back of the last, the cells the last tune gave up on within their reach, and is
#: tuned only where the line model expects a smaller product error than measured; no round follows
#: one whose cells all landed
PREDISTORT_STAGES = ("predistortion", "predistortion_2")
PREDISTORT_FIT_TOL = 1e-5


def product_fit(mapped: list[MappedWeights], placement: Placement, xb: Crossbar, cfg: DeployConfig,
                g_read: np.ndarray, bounds) -> tuple[np.ndarray, np.ndarray]:
    """Conductances (n_chips, rows, cols), S, whose *modelled* matrix-vector product carries
    ``mapped`` as closely as the cells' ``bounds`` allow, and their modelled product weights
    (grounded reads, same shape).

    The product's weight of a pair is the difference of its two cells' grounded reads
    (:func:`programming.ir_correction.product_targets`: through resistive lines a product's
    effective weights are the grounded-read map); only that difference is fitted, each pair's lower
    cell kept at its bound (the least current, so the least drop), and every cell kept within
    ``bounds`` = (low, high), arrays of the chip's shape: the window, a stuck device's or a held
    cell's own read-back, the reach of a cell the tuner gave up on.  Each step models the grounded
    reads of every cell (the tuner's line estimate ``cfg.line_resistance``, access path and device
    curvature; the cells outside the network at their corrected read-backs ``g_read``), moves every
    pair's difference by its remaining error over the pair's transfer (read over conductance) and
    projects onto the bounds: a projected fixed point, so a difference the window cannot carry is
    left as close as it can be instead of boosted and clipped afterwards (which, at 2 Ω on the
    digits chip, clipped half the cells at the window's top and raised the drop on every other)."""
    low, high = (np.broadcast_to(np.asarray(b, float), g_read.shape) for b in bounds)
    model = ReadCorrection(xb.shape, xb.n_chips, xb.v_read, cfg.line_resistance, cfg.access_resistance,
                           beta=cfg.device_beta)
    tgt = np.broadcast_to(placement.targets([m.targets for m in mapped]), g_read.shape)
    g = np.where(np.isnan(tgt), g_read, np.clip(np.where(np.isnan(tgt), 0.0, tgt), low, high))
    fixed = low >= high
    for _ in range(PREDISTORT_FIT_STEPS):
        reads = model.model(g, cross=False, slopes=False)[0]
        new = g.copy()
        for m, block in zip(mapped, placement.blocks):
            rows, cols = block.input_rows, block.slices[1]
            gb, rb, lb, hb, fb = (x[:, rows, cols] for x in (g, reads, low, high, fixed))
            gp, gn, rp, rn = gb[..., 0::2], gb[..., 1::2], rb[..., 0::2], rb[..., 1::2]
            want = m.targets[:, 0::2] - m.targets[:, 1::2]
            u = (gp - gn) + (want - (rp - rn)) / (0.5 * (rp / np.maximum(gp, 1e-12) + rn / np.maximum(gn, 1e-12)))      # the pair's new difference
            lp, ln = lb[..., 0::2], lb[..., 1::2]
            # the lower cell at its floor, the other carrying the difference; a fixed cell's partner
            # carries it from the fixed one's value
            up = np.where(fb[..., 1::2], gn + u, np.where(u >= 0, ln + u, lp))
            un = np.where(fb[..., 0::2], gp - u, np.where(u >= 0, ln, lp - u))
            out = np.empty_like(gb)
            out[..., 0::2] = np.where(fb[..., 0::2], gp, up)
            out[..., 1::2] = np.where(fb[..., 1::2], gn, un)
            new[:, rows, cols] = np.clip(out, lb, hb)
        moved = float(np.max(np.abs(new / g - 1)))
        g = new
        if moved <= PREDISTORT_FIT_TOL:
            break
    return g, model.model(g, cross=False, slopes=False)[0]


def modelled_product_error(mapped: list[MappedWeights], placement: Placement, reads: np.ndarray,
                           moments: list[np.ndarray] | None = None, tolerance: float = 0.0) -> list[float]:
    """Per layer, the relative rms error of the product weights ``reads`` (grounded reads,
    (n_chips, rows, cols), S, measured or modelled) against the intended ones, each input row
    weighted by its ``moments`` (:func:`input_moments`; None: equally), as :func:`product_error`
    weighs them for uncorrelated inputs.  ``tolerance``: the tuner's relative tolerance still to
    come (cells not yet tuned to these reads): a uniform error within it on every cell adds
    ``tolerance²/3`` of each read's square."""
    out = []
    for i, m in enumerate(mapped):
        r = placement.cut(reads, i)
        w = np.ones(m.n_in) if moments is None else moments[i]
        sc = np.broadcast_to(np.atleast_1d(m.scale), (m.n_out,))
        want = m.targets[:, 0::2] - m.targets[:, 1::2]                        # (in, out)
        err = (r[..., 0::2] - r[..., 1::2] - want) ** 2 + tolerance ** 2 / 3 * (r[..., 0::2] ** 2 + r[..., 1::2] ** 2)
        num = float((w[:, None] * sc ** 2 * err).sum())
        den = float((w[:, None] * sc ** 2 * want ** 2).sum()) * r.shape[0]
        out.append(np.sqrt(num / den) if den > 0 else 0.0)
    return out


def predistortion(model: MLP, placement: Placement, xb: Crossbar, cfg: DeployConfig, g_read: np.ndarray,
                  stuck: np.ndarray, bounds=None, moments: list[np.ndarray] | None = None
                  ) -> tuple[list[MappedWeights], np.ndarray, tuple, list[float]]:
    """Mapping and targets (n_chips, rows, cols), S (NaN: not tuned), that make every layer's
    matrix-vector product carry the intended weights through resistive lines as closely as the
    window allows, the window (lo, top), S, the weights are mapped onto, and the product error
    per layer the line model expects of them (:func:`modelled_product_error`, the tuner's tolerance
    included).

    Through the lines the product's effective weights are the grounded-read map, not the devices'
    conductances (:func:`programming.ir_correction.product_targets`).  For each top of
    :data:`PREDISTORT_RANGES` the weights are mapped onto ``[lo, top]`` and the targets fitted on
    the tuner's own line model (:func:`product_fit`: the measured line estimate, the corrected
    read-back ``g_read`` of every cell, never the simulator's truth); the top whose modelled error
    is least is kept (each output's gain ``scale`` grows as the top falls — a digital gain after the
    ADC, see :mod:`programming.mapping`).  A narrower range needs less boost and carries less drop,
    a wider one keeps the tuner's tolerance, relative to each target, small against the weights.
    ``stuck`` devices stay at their read-back and their partners carry the pair's difference;
    ``bounds`` (low, high), arrays of the chip's shape or numbers (default the window): each cell's
    range (a cell the tuner gave up on below its target cannot be set above its read-back);
    free cells never above :data:`PREDISTORT_PEAK` of the window's top.  ``moments``: the input
    rows' weights (:func:`input_moments`).  Returns (mapped, targets, window, modelled error)."""
    lo, hi = xb.programming_window
    low, high = (lo, PREDISTORT_PEAK * hi) if bounds is None else bounds
    low = np.where(stuck, g_read, np.broadcast_to(low, g_read.shape))
    high = np.where(stuck, g_read, np.minimum(np.broadcast_to(high, g_read.shape), PREDISTORT_PEAK * hi))
    best = None
    for share in PREDISTORT_RANGES:
        top = lo + share * (hi - lo)
        mapped = map_model(model, (lo, top))
        g, reads = product_fit(mapped, placement, xb, cfg, g_read, (low, high))
        err = modelled_product_error(mapped, placement, reads, moments, cfg.tolerance)
        if best is None or float(np.sum(np.square(err))) < float(np.sum(np.square(best[3]))):
            best = (mapped, g, top, err)
    mapped, g, top, err = best
    net = ~np.isnan(np.broadcast_to(placement.targets([m.targets for m in mapped]), g.shape))
    return mapped, np.where(net & ~stuck, g, np.nan), (lo, top), err


def product_reach(g_raw: np.ndarray, g_read: np.ndarray, hi: float) -> np.ndarray:
    """Each cell's largest product weight (grounded read), S: a device at the window's top ``hi``
    scaled by the cell's measured transfer, its grounded read ``g_raw`` over its (corrected)
    conductance ``g_read`` — through resistive lines a far cell's read is a share of its conductance."""
    ratio = np.divide(g_raw, g_read, out=np.ones(np.shape(g_raw)), where=np.asarray(g_read) > 0)
    return hi * np.clip(ratio, 0.0, 1.0)


def input_moments(model: MLP, x: torch.Tensor) -> list[np.ndarray]:
    """Per layer, the mean square of each of its input rows (its inputs, then the bias row's 1)
    over the inputs ``x`` (B, in) — the training set: how much a weight error on that row moves
    the layer's pre-activations (the software network's activations feed the later layers)."""
    act = ACTIVATIONS[model.activation]
    a = np.asarray(x, dtype=float)
    out = []
    for wb in model.matrices():
        wb = wb.detach().double().numpy()
        out.append(np.append((a ** 2).mean(axis=0), 1.0))
        a = act(torch.as_tensor(a @ wb[:, :-1].T + wb[:, -1])).numpy()
    return out


def stuck_row_orders(mapped: list[MappedWeights], placement: Placement, stuck: np.ndarray, g_stuck: np.ndarray,
                     window, moments: list[np.ndarray]) -> list[tuple[int, ...] | None]:
    """Per layer, the block row each of its input rows goes on (None: in order) so that the
    devices the tuner flagged ``stuck`` (n_chips, rows, cols) hurt the product least.

    A stuck device's pair keeps its weight only where the partner can make up the difference in
    the ``window`` (:func:`pair_compensation`; ``hi`` may be an array of the chip's shape, each
    device's own top): which weight meets the stuck device decides it.
    Input ``i`` on block row ``r`` costs ``E[a_i²] · Σ_o (scale_o · Δg_o)²``, ``Δg`` the
    difference left by row ``r``'s stuck devices (measured values ``g_stuck``) against input ``i``'s
    targets, and ``E[a_i²]`` its ``moments`` (:func:`input_moments`) — a rarely driven input
    (a border pixel) takes a stuck device for free.  The total over the batch's chips is minimized
    over the block's row permutations (an assignment problem, solved exactly); a layer without
    stuck devices, or whose order cannot do better, stays in order."""
    from scipy.optimize import linear_sum_assignment

    orders = []
    lo, hi = window
    hi = np.broadcast_to(np.asarray(hi, float), stuck.shape)
    for m, block, w in zip(mapped, placement.blocks, moments):
        rs, cs = block.slices
        st, gs, top = stuck[:, rs, cs], g_stuck[:, rs, cs], hi[:, rs, cs]   # (n_chips, rows, cols), physical rows
        rows = np.flatnonzero(st.any(axis=(0, 2)))
        if rows.size == 0:
            orders.append(None)
            continue
        scale = np.broadcast_to(np.atleast_1d(m.scale), (m.n_out,))
        cost = np.zeros((block.rows, block.rows))                     # (input row i, block row r)
        t = m.targets
        for r in rows:
            comp = pair_compensation(t, st[:, r][:, None, :], gs[:, r][:, None, :], (lo, top[:, r][:, None, :]))
            g = np.where(st[:, r][:, None, :], gs[:, r][:, None, :], np.where(np.isnan(comp), t, comp))
            err = (g[..., 0::2] - g[..., 1::2]) - (t[:, 0::2] - t[:, 1::2])
            cost[:, r] = w * ((scale * err) ** 2).sum(axis=(0, 2))
        stay = np.trace(cost)
        cost += np.where(np.eye(block.rows, dtype=bool), 0.0, 1e-9 * (cost.max() + 1e-300))   # ties: stay
        _, order = linear_sum_assignment(cost)
        better = cost[np.arange(block.rows), order].sum() < stay * (1 - 1e-6)
        orders.append(tuple(int(k) for k in order) if better else None)
    return orders


def reordered(model: MLP, placement: Placement, xb: Crossbar, cfg: DeployConfig, g_read: np.ndarray,
              g_raw: np.ndarray, stuck: np.ndarray, x_train: torch.Tensor, bounds=None) -> Placement:
    """``placement`` with every layer's inputs reordered for the ``stuck`` devices
    (:func:`stuck_row_orders`) on the range pre-distortion maps the weights onto (searched first,
    in order, with the cells' ``bounds``) and the product weights the cells can reach
    (:func:`product_reach`); ``g_read``, ``g_raw``: the corrected and the measured read-back, S;
    ``x_train``: the training inputs."""
    lo, hi = xb.programming_window
    moments = input_moments(model, x_train)
    top = predistortion(model, placement, xb, cfg, g_read, stuck, bounds, moments)[2][1]
    return placement.with_orders(stuck_row_orders(map_model(model, (lo, top)), placement, stuck, g_raw,
                                                  (lo, product_reach(g_raw, g_read, hi)), moments))


def reach_bounds(result: TuneResult, g_read: np.ndarray, window) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's range (low, high), S, for pre-distortion's fit (:func:`predistortion`): the
    ``window``, except that a cell the tuner gave up on (*failed*) below its target is not asked to
    go above its read-back ``g_read``, nor one given up above its target below it: through
    resistive lines the writes' drive is capped (``compensation_max``) and a far cell of a large
    array may get too little of it to move further, so re-tuning it to a farther target fails again
    and its pair's difference is better carried by its partner (digits, 65×84 at 2 Ω: 544 working
    cells off their targets after the first tune, 243 below and 325 above; their read-backs are
    what the bench measured)."""
    lo, hi = window
    failed = (result.status == FAILED) & ~np.isnan(result.targets)
    tgt = np.where(np.isnan(result.targets), 0.0, result.targets)
    low = np.where(failed & (g_read > tgt), np.maximum(g_read, lo), lo)
    high = np.where(failed & (g_read < tgt), np.clip(g_read, lo, hi), hi)
    return low, high


def network_extent(model: MLP) -> tuple[int, int]:
    """The smallest array (rows, cols) that holds the network (see :func:`plan_placement`)."""
    return plan_placement([m.shape for m in map_model(model, (100e-6, 500e-6))]).extent


def pair_compensation(targets: np.ndarray, stuck: np.ndarray, g_read: np.ndarray, window) -> np.ndarray:
    """New targets (NaN = leave alone) for the partners of stuck devices, per pair block.

    ``targets``, ``stuck``, ``g_read``: (..., rows, 2·out) block arrays (G+ even, G- odd columns);
    ``window`` (lo, hi), S: the partners' range, ``hi`` a number or a block array (each partner's
    own top: through resistive lines the largest read a device at the window's top gives).
    """
    lo, hi = window
    hi = np.asarray(hi, float)                  # (a block array: each partner's own top)
    hp, hn = (hi[..., 0::2], hi[..., 1::2]) if hi.ndim else (hi, hi)
    d = targets[..., 0::2] - targets[..., 1::2]
    gp, gn, sp, sn = g_read[..., 0::2], g_read[..., 1::2], stuck[..., 0::2], stuck[..., 1::2]
    out = np.full(np.broadcast_shapes(targets.shape, stuck.shape), np.nan)
    out[..., 1::2] = np.where(sp & ~sn, np.clip(gp - d, lo, hn), np.nan)
    out[..., 0::2] = np.where(sn & ~sp, np.clip(gn + d, lo, hp), np.nan)
    return out


def chip_layer(xb: Crossbar, mapped: MappedWeights, block, a: np.ndarray, v_in: float | None = None) -> np.ndarray:
    """One layer's pre-activations ``[W|b]·[a, 1]`` measured through the chip's matrix-vector
    product: ``a`` (B, in) or (n_chips, B, in) → (n_chips, B, out).  The layer's ``block`` rows
    are driven (at most ``v_in``, default the read voltage; input ``k`` on the block's row
    ``order[k]``), every other row is held at 0 V."""
    v = min(xb.v_read if v_in is None else float(v_in), xb.limits.v_read_max)
    a = np.asarray(a, dtype=float)
    aug = np.concatenate([a, np.ones((*a.shape[:-1], 1))], axis=-1)
    s = np.maximum(1.0, np.abs(aug).max(axis=-1, keepdims=True))
    volts = np.zeros((*aug.shape[:-1], xb.shape[0]))
    volts[..., block.input_rows] = aug / s * v
    current = xb.mvm(volts)                                          # (n_chips, B, cols)
    ib = current[..., block.col:block.col + block.cols]
    return mapped.scale * (ib[..., 0::2] - ib[..., 1::2]) * s / v


def product_error(xb: Crossbar, dep: Deployment, x: torch.Tensor) -> list[float]:
    """Per layer, the relative rms error of the chip's matrix-vector product: every layer fed
    with the software network's activations of ``x`` (B, in), its pre-activations measured through
    the chip (:func:`chip_layer`) against the software ones, rms over chips, points and outputs
    divided by the rms of the software pre-activations."""
    act = ACTIVATIONS[dep.model.activation]
    a = np.asarray(x, dtype=float)
    out = []
    for i, (wb, m, block) in enumerate(zip(dep.model.matrices(), dep.mapped, dep.placement.blocks)):
        wb = wb.detach().double().numpy()
        z_sw = a @ wb[:, :-1].T + wb[:, -1]
        z_chip = chip_layer(xb, m, block, a)
        out.append(float(np.sqrt(((z_chip - z_sw) ** 2).mean() / (z_sw ** 2).mean())))
        a = act(torch.as_tensor(z_sw)).numpy()
    return out


def chip_forward(xb: Crossbar, dep: Deployment, x: torch.Tensor, v_in: float | None = None) -> np.ndarray:
    """Network outputs computed by the chip's analog matrix-vector products, (n_chips, B, out)."""
    act = ACTIVATIONS[dep.model.activation]
    a = np.asarray(x, dtype=float)                                   # (B, in) or (n_chips, B, in)
    for i, (m, block) in enumerate(zip(dep.mapped, dep.placement.blocks)):
        a = chip_layer(xb, m, block, a, v_in)
        if i < len(dep.mapped) - 1:
            a = act(torch.as_tensor(a)).numpy()
    return a


def _layer_report(i: int, dep: Deployment, software_wb: np.ndarray) -> dict:
    p, r = dep.placement, dep.result
    tgt = p.cut(r.targets, i)
    status = p.cut(r.status, i)
    g = dep.layer_conductances(i)
    rel = np.abs(g - tgt) / tgt
    product = dep.conductances if dep.product_conductances is None else dep.product_conductances
    w_read = dep.mapped[i].decode(p.cut(product, i))                 # (n_chips, out, in+1): the product's
    w_max = dep.mapped[i].w_max
    counts = {name: int((status == code).sum()) for code, name in STATUS_NAMES.items() if code}
    return {
        "layer": i, "block": p.blocks[i].to_dict(), "w_max": np.atleast_1d(w_max).tolist(),
        "cells": int(tgt[0].size), "status": counts,
        "compensated": int(p.cut(dep.compensated, i).sum()),
        "rel_error_mean": float(rel.mean()), "rel_error_median": float(np.median(rel)),
        "rel_error_max": float(rel.max()),
        "within_tolerance": float((rel <= r.config.tolerance).mean()),
        "weight_error_rms": float(np.sqrt((((w_read - software_wb) / dep.mapped[i].w_max_column) ** 2).mean())),
    }


def _read_back(xb: Crossbar, cfg: DeployConfig) -> tuple[np.ndarray, np.ndarray]:
    """The array read (grounded), as measured and corrected for the lines (n_chips, rows, cols), S."""
    raw = xb.read_array()
    if cfg.line_resistance > 0:         # corrected for the lines like the tuner's reads
        return raw, ReadCorrection(xb.shape, xb.n_chips, xb.v_read, cfg.line_resistance, cfg.access_resistance,
                                   beta=cfg.device_beta).fit(raw)
    return raw, raw


def _add_costs(result: TuneResult, other: TuneResult) -> None:
    for name in ("pulses", "reads", "energy", "time"):          # the costs of both runs add up
        getattr(result, name)[...] += getattr(other, name)


def deploy(model: MLP, xb: Crossbar, data: Dataset | None = None, config: DeployConfig | None = None,
           progress=False, log: TuneLog | None = None) -> Deployment:
    """Map, place, tune, compensate, read back, (on resistive lines) pre-distort, and (with
    ``data``) measure accuracy; see the module docstring.  Works on any crossbar: one bench chip or
    a batch of simulated chips.

    ``progress`` is passed to the tuner (True for a bar, or a callable).  ``log`` journals the
    tuning stages ``"main"``, ``"compensation"`` and ``"predistortion"`` and resumes them after an
    interruption (a deployment resumed within its pre-distortion has no figure without it)."""
    cfg = config or DeployConfig()
    log = log or TuneLog()
    t0 = time.perf_counter()
    mapped, placement, targets = deployment_targets(model, xb, align=alignment(cfg))
    full = (xb.n_chips, *xb.shape)
    result = tune(xb, targets, cfg.tuner(), progress=progress, on_instrument=cfg.on_instrument,
                  **log.tune_kwargs("main", np.broadcast_to(targets, full)))
    compensated = np.zeros(full, bool)
    if cfg.compensate and (result.status == STUCK).any():
        new = np.full(full, np.nan)
        stuck = result.status == STUCK
        for i in range(len(mapped)):
            rs, cs = placement.blocks[i].slices
            new[:, rs, cs] = pair_compensation(np.broadcast_to(targets[..., rs, cs], stuck[:, rs, cs].shape),
                                               stuck[:, rs, cs], result.final[:, rs, cs], xb.programming_window)
        compensated = ~np.isnan(new)
        if compensated.any():
            second = tune(xb, new, cfg.tuner(initial_reset=False, seed=cfg.seed + 1), progress=progress,
                          on_instrument=cfg.on_instrument, **log.tune_kwargs("compensation", new))
            _add_costs(result, second)
            result.status[compensated] = second.status[compensated]
            result.targets = np.where(compensated, new, result.targets)
    g_raw, g_read = _read_back(xb, cfg)
    dep = Deployment(model, mapped, placement, result, g_read, compensated, 0.0, product_conductances=g_raw,
                     window=tuple(xb.programming_window))
    predistorting = cfg.predistort and cfg.line_resistance > 0
    pre = {}
    if predistorting:
        if data is not None and not log.started("predistortion"):
            dep.correct["without_predistortion"] = chip_correct(xb, dep, data)
            pre.update(readback=readback_accuracy(dep, data), product_error=product_error(xb, dep, data.x_test))
        moments = input_moments(model, data.x_train) if data is not None else None
        rounds = []
        for rnd, stage in enumerate(PREDISTORT_STAGES):
            stuck = (result.status == STUCK) & ~np.isnan(result.targets)
            # the reach of the cells the last tune gave up on (the first round's from the tuning as
            # mapped: with PREDISTORT_REACH)
            bounds = reach_bounds(result, g_read, xb.programming_window) if (rnd or PREDISTORT_REACH) else None
            # as tuned, the product's error as the grounded reads measure it (the same figure the
            # line model gives of the corrected read-back)
            as_tuned = modelled_product_error(mapped, placement, g_raw, moments)
            moved_placement = placement
            if rnd == 0 and cfg.reorder and data is not None and stuck.any():   # every cell is re-tuned: move the inputs too
                moved_placement = reordered(model, placement, xb, cfg, g_read, g_raw, stuck, data.x_train, bounds)
            new_mapped, new, window, expected = predistortion(model, moved_placement, xb, cfg, g_read, stuck,
                                                              bounds, moments)
            # applied only where the line model expects a smaller product error than the chip's as
            # tuned (measured): else re-tuning would make the deployment worse
            applied = float(np.sum(np.square(expected))) < float(np.sum(np.square(as_tuned)))
            applied = applied or log.started(stage)     # resumed within it: the chip is part way there
            rounds.append({"as_tuned": as_tuned, "predistorted": expected, "applied": bool(applied),
                           "window_uS": [1e6 * w for w in window]})
            if not applied:
                break
            mapped, placement = new_mapped, moved_placement
            third = tune(xb, new, cfg.tuner(initial_reset=False, seed=cfg.seed + 2 + rnd), progress=progress,
                         on_instrument=cfg.on_instrument, **log.tune_kwargs(stage, new))
            _add_costs(result, third)
            moved = ~np.isnan(new)
            result.status[moved] = third.status[moved]
            result.targets = np.where(moved, new, result.targets)
            g_raw, g_read = _read_back(xb, cfg)
            dep = replace(dep, mapped=mapped, placement=placement, conductances=g_read, product_conductances=g_raw,
                          window=window)
            if not ((third.status == FAILED) | (third.status == STUCK))[moved].any():
                break                   # every cell landed: nothing for another round to bound
        pre.update(modelled={"as_tuned": rounds[0]["as_tuned"], "predistorted": rounds[0]["predistorted"]},
                   applied=rounds[0]["applied"], considered_window_uS=rounds[0]["window_uS"], rounds=rounds)
    tgt = result.targets
    result.final = np.where(np.isnan(tgt), np.nan, g_read)
    result.rel_error = (result.final - tgt) / tgt
    software = [wb.numpy() for wb in model.matrices()]
    report = {
        "chips": xb.n_chips, "chip_shape": list(xb.shape), "placement": placement.to_dict(),
        "tolerance": cfg.tolerance, "compensate": cfg.compensate,
        "tuning": result.summary(xb),
        "layers": [_layer_report(i, dep, software[i]) for i in range(len(mapped))],
        "line_resistance_ohm": cfg.line_resistance,
        "predistortion": {"applied": bool(pre.get("applied", False)),
                          "mapping_window_uS": [1e6 * w for w in dep.window]},
    }
    if "modelled" in pre:       # the line model's figures that decided it (relative rms product error per layer)
        report["predistortion"].update(modelled_product_error=pre["modelled"],
                                       considered_window_uS=pre["considered_window_uS"], rounds=pre["rounds"])
    if xb.n_chips == 1:
        bad = np.argwhere(~np.isnan(tgt[0]) & (result.status[0] != CONVERGED))
        report["unconverged_cells"] = [
            {"row": int(r), "col": int(c), "status": STATUS_NAMES[int(result.status[0, r, c])],
             "target_uS": float(tgt[0, r, c] * 1e6), "read_uS": float(g_read[0, r, c] * 1e6)} for r, c in bad]
    if data is not None:
        dep.correct["final"] = chip_correct(xb, dep, data)
        report["accuracy"] = accuracy_report(dep, xb, data, dep.correct["final"])
        if "without_predistortion" in dep.correct:
            acc = dep.correct["without_predistortion"].mean(axis=1)
            report["accuracy"].update(chip_mvm_without_predistortion=float(acc.mean()),
                                      chip_mvm_without_predistortion_per_chip=[float(a) for a in acc[:100]],
                                      readback_without_predistortion=pre["readback"],
                                      product_error_without_predistortion=pre["product_error"])
    dep.wall_s = time.perf_counter() - t0
    report["wall_s"] = dep.wall_s
    dep.report = report
    return dep


def per_point_correct(outputs, data: Dataset) -> np.ndarray:
    """Correctness of every test point, (n_chips, B) bool, from outputs (n_chips, B, out)."""
    pred = predictions(torch.as_tensor(np.asarray(outputs, dtype=np.float32)), data.n_classes)
    return (pred == data.y_test.long()).numpy()


def chip_correct(xb: Crossbar, dep: Deployment, data: Dataset) -> np.ndarray:
    """Correctness of every test point through the chip's matrix-vector products, (n_chips, B)."""
    with torch.no_grad():
        return per_point_correct(chip_forward(xb, dep, data.x_test), data)


def readback_accuracy(dep: Deployment, data: Dataset) -> float:
    """Mean accuracy, in software, of the weights the read-back map encodes (the product's)."""
    with torch.no_grad():
        return float(per_point_correct(dep.model.eval().forward_with(data.x_test, dep.readback_matrices()), data).mean())


def accuracy_report(dep: Deployment, xb: Crossbar, data: Dataset, correct: np.ndarray | None = None) -> dict:
    """Software accuracy, chip (matrix-vector product) accuracy and read-back-weights accuracy;
    ``correct``: the chip's per-point correctness if measured already (else measured now)."""
    with torch.no_grad():
        software = float(per_point_correct(dep.model.eval()(data.x_test)[None], data).mean())
    chip = (chip_correct(xb, dep, data) if correct is None else correct).mean(axis=1)
    return {"software": software, "chip_mvm": float(chip.mean()), "readback": readback_accuracy(dep, data),
            "product_error": product_error(xb, dep, data.x_test),
            "chip_mvm_per_chip": [float(a) for a in chip[:100]], "test_points": int(data.y_test.shape[0])}
