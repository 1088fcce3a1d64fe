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
   cross-check, in software with the read-back weights.

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
from programming.ir_correction import ReadCorrection, predistort_targets
from programming.mapping import ConductanceMapping, MappedWeights
from programming.tune_result import CONVERGED, STATUS_NAMES, STUCK, TuneResult
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
    map be corrected the same way; ``predistort`` also pre-distorts every layer's targets so that
    its matrix-vector product, with ``predistort_drive`` (fraction of the read voltage) on the
    layer's input rows and the read voltage on its bias row, carries the intended currents
    despite the lines' drop (:func:`programming.ir_correction.predistort_targets`)."""

    tolerance: float = 0.01
    compensate: bool = True
    order: str = "row"
    passes: int = 3
    initial_reset: bool = True
    seed: int = 0
    pulses: TunerConfig | None = None
    on_instrument: bool = False
    line_resistance: float = 0.0
    access_resistance: float = 0.0
    predistort: bool = False
    predistort_drive: float = 0.5

    def tuner(self, **changes) -> TunerConfig:
        """The tuner's settings: ``pulses`` (the pulse width and amplitude schedule, default the
        recipe's :class:`TunerConfig`) with this deployment's tolerance, order, passes, initial
        RESET and seed, and ``changes``."""
        kw = dict(tolerance=self.tolerance, order=self.order, passes=self.passes,
                  initial_reset=self.initial_reset, seed=self.seed, line_resistance=self.line_resistance,
                  access_resistance=self.access_resistance)
        kw.update(changes)
        return replace(self.pulses or TunerConfig(), **kw)


@dataclass
class Deployment:
    """What :func:`deploy` did: the mapping, placement, tuning records and the read-back map."""

    model: MLP
    mapped: list[MappedWeights]
    placement: Placement
    result: TuneResult
    conductances: np.ndarray                 # read-back map (n_chips, rows, cols), S
    compensated: np.ndarray                  # bool (n_chips, rows, cols): partners re-targeted
    wall_s: float
    report: dict = field(default_factory=dict)

    def layer_conductances(self, layer: int) -> np.ndarray:
        """Read-back conductances of one layer's block, (n_chips, rows, cols), S."""
        return self.placement.cut(self.conductances, layer)

    def readback_matrices(self) -> list[torch.Tensor]:
        """Per layer, the ``[W|b]`` the read-back conductances encode, (n_chips, out, in+1)."""
        return [torch.as_tensor(m.decode(self.layer_conductances(i)), dtype=torch.float32)
                for i, m in enumerate(self.mapped)]


def deployment_targets(model: MLP, xb: Crossbar) -> tuple[list[MappedWeights], Placement, np.ndarray]:
    """The mapping, the placement on ``xb`` and the array's targets (rows, cols), S, NaN outside
    the network's cells: what :func:`deploy` programs (deterministic for a model and a chip)."""
    mapped = map_model(model, xb.programming_window)
    placement = plan_placement([m.shape for m in mapped], xb.shape)
    return mapped, placement, placement.targets([m.targets for m in mapped])


def map_model(model: MLP, window: tuple[float, float]) -> list[MappedWeights]:
    """Conductance targets of every layer (checked model; window in S)."""
    check_model(model)
    mapping = ConductanceMapping(g_min=window[0], g_max=window[1], mode="differential", split="one-sided",
                                 per_output=model.scales == "output")
    return [mapping.encode(wb.numpy()) for wb in model.matrices()]


def predistorted_targets(targets: np.ndarray, placement: Placement, xb: Crossbar, cfg: DeployConfig) -> np.ndarray:
    """The array's targets (n_chips, rows, cols) with every layer's block pre-distorted for the IR
    drop of its own product (that layer's rows driven: its inputs at ``predistort_drive`` × the
    read voltage, its bias row — the block's last — at the read voltage; see
    :class:`DeployConfig`).  The other cells are modelled at their state read (and corrected) now."""
    full = np.broadcast_to(np.asarray(targets, float), (xb.n_chips, *xb.shape))
    # the cells outside the network load the lines too: model them at their (corrected) read state
    others = ReadCorrection(xb.shape, xb.n_chips, xb.v_read, cfg.line_resistance,
                            cfg.access_resistance).fit(xb.read_array())
    out = np.array(full)
    lo, hi = xb.programming_window
    v = min(xb.v_read, xb.limits.v_read_max)
    for block in placement.blocks:
        rows = np.zeros(xb.shape[0])
        rows[block.row:block.row + block.rows] = cfg.predistort_drive * v
        rows[block.row + block.rows - 1] = v
        rs, cs = block.slices
        want = full[:, rs, cs]
        g = predistort_targets(full, rows, cfg.line_resistance, cfg.access_resistance, None, others)[:, rs, cs]
        out[:, rs, cs] = _fit_pairs(want, g, lo, hi)
    return out


def _fit_pairs(want: np.ndarray, g: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Pre-distorted pair targets (G+ even, G- odd columns) brought into the window [lo, hi]
    keeping each pair's *difference* where one side would leave it: with attenuations
    ``f = want / g``, a side pushed above ``hi`` is set to ``hi`` and its partner moved so that
    ``g+ f+ − g- f-`` stays ``want+ − want-`` (as far as the window allows)."""
    f = want / g
    wp, wn, fp, fn = want[..., 0::2], want[..., 1::2], f[..., 0::2], f[..., 1::2]
    gp, gn = g[..., 0::2].copy(), g[..., 1::2].copy()
    d = wp - wn
    over_p, over_n = gp > hi, (gn > hi) & ~(g[..., 0::2] > hi)
    gp, gn = np.where(over_p, hi, gp), np.where(over_p, (hi * fp - d) / fn, gn)
    gn, gp = np.where(over_n, hi, gn), np.where(over_n, (hi * fn + d) / fp, gp)
    out = np.empty_like(g)
    out[..., 0::2], out[..., 1::2] = np.clip(gp, lo, hi), np.clip(gn, lo, hi)
    return out


def network_extent(model: MLP) -> tuple[int, int]:
    """The smallest array (rows, cols) that holds the network (see :func:`plan_placement`)."""
    return plan_placement([m.shape for m in map_model(model, (100e-6, 500e-6))]).extent


def pair_compensation(targets: np.ndarray, stuck: np.ndarray, g_read: np.ndarray, window) -> np.ndarray:
    """New targets (NaN = leave alone) for the partners of stuck devices, per pair block.

    ``targets``, ``stuck``, ``g_read``: (..., rows, 2·out) block arrays (G+ even, G- odd columns).
    """
    lo, hi = window
    d = targets[..., 0::2] - targets[..., 1::2]
    gp, gn, sp, sn = g_read[..., 0::2], g_read[..., 1::2], stuck[..., 0::2], stuck[..., 1::2]
    out = np.full(np.broadcast_shapes(targets.shape, stuck.shape), np.nan)
    out[..., 1::2] = np.where(sp & ~sn, np.clip(gp - d, lo, hi), np.nan)
    out[..., 0::2] = np.where(sn & ~sp, np.clip(gn + d, lo, hi), np.nan)
    return out


def chip_layer(xb: Crossbar, mapped: MappedWeights, block, a: np.ndarray, v_in: float | None = None) -> np.ndarray:
    """One layer's pre-activations ``[W|b]·[a, 1]`` measured through the chip's matrix-vector
    product: ``a`` (B, in) or (n_chips, B, in) → (n_chips, B, out).  The layer's ``block`` rows
    are driven (at most ``v_in``, default the read voltage), every other row is held at 0 V."""
    v = min(xb.v_read if v_in is None else float(v_in), xb.limits.v_read_max)
    a = np.asarray(a, dtype=float)
    aug = np.concatenate([a, np.ones((*a.shape[:-1], 1))], axis=-1)
    s = np.maximum(1.0, np.abs(aug).max(axis=-1, keepdims=True))
    volts = np.zeros((*aug.shape[:-1], xb.shape[0]))
    volts[..., block.row:block.row + block.rows] = aug / s * v
    current = xb.mvm(volts)                                          # (n_chips, B, cols)
    ib = current[..., block.col:block.col + block.cols]
    return mapped.scale * (ib[..., 0::2] - ib[..., 1::2]) * s / v


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
    w_read = dep.mapped[i].decode(g)                                 # (n_chips, out, in+1)
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


def deploy(model: MLP, xb: Crossbar, data: Dataset | None = None, config: DeployConfig | None = None,
           progress=False, log: TuneLog | None = None) -> Deployment:
    """Map, place, tune, compensate, read back and (with ``data``) measure accuracy; see the
    module docstring.  Works on any crossbar: one bench chip or a batch of simulated chips.

    ``progress`` is passed to the tuner (True for a bar, or a callable).  ``log`` journals the
    tuning stages ``"main"`` and ``"compensation"`` and resumes them after an interruption."""
    cfg = config or DeployConfig()
    log = log or TuneLog()
    t0 = time.perf_counter()
    mapped, placement, targets = deployment_targets(model, xb)
    if cfg.predistort and cfg.line_resistance > 0:
        targets = predistorted_targets(targets, placement, xb, cfg)        # (n_chips, rows, cols)
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
            for name in ("pulses", "reads", "energy", "time"):      # the costs of both runs add up
                getattr(result, name)[...] += getattr(second, name)
            result.status[compensated] = second.status[compensated]
            result.targets = np.where(compensated, new, result.targets)
    g_read = xb.read_array()
    if cfg.line_resistance > 0:         # the read-back map, corrected for the lines like the tuner's reads
        g_read = ReadCorrection(xb.shape, xb.n_chips, xb.v_read, cfg.line_resistance,
                                cfg.access_resistance).fit(g_read)
    tgt = result.targets
    result.final = np.where(np.isnan(tgt), np.nan, g_read)
    result.rel_error = (result.final - tgt) / tgt
    dep = Deployment(model, mapped, placement, result, g_read, compensated, 0.0)
    software = [wb.numpy() for wb in model.matrices()]
    report = {
        "chips": xb.n_chips, "chip_shape": list(xb.shape), "placement": placement.to_dict(),
        "tolerance": cfg.tolerance, "compensate": cfg.compensate,
        "tuning": result.summary(xb),
        "layers": [_layer_report(i, dep, software[i]) for i in range(len(mapped))],
    }
    if xb.n_chips == 1:
        bad = np.argwhere(~np.isnan(tgt[0]) & (result.status[0] != CONVERGED))
        report["unconverged_cells"] = [
            {"row": int(r), "col": int(c), "status": STATUS_NAMES[int(result.status[0, r, c])],
             "target_uS": float(tgt[0, r, c] * 1e6), "read_uS": float(g_read[0, r, c] * 1e6)} for r, c in bad]
    if data is not None:
        report["accuracy"] = accuracy_report(dep, xb, data)
    dep.wall_s = time.perf_counter() - t0
    report["wall_s"] = dep.wall_s
    dep.report = report
    return dep


def per_point_correct(outputs, data: Dataset) -> np.ndarray:
    """Correctness of every test point, (n_chips, B) bool, from outputs (n_chips, B, out)."""
    pred = predictions(torch.as_tensor(np.asarray(outputs, dtype=np.float32)), data.n_classes)
    return (pred == data.y_test.long()).numpy()


def accuracy_report(dep: Deployment, xb: Crossbar, data: Dataset) -> dict:
    """Software accuracy, chip (matrix-vector product) accuracy and read-back-weights accuracy."""
    with torch.no_grad():
        software = float(per_point_correct(dep.model.eval()(data.x_test)[None], data).mean())
        chip = per_point_correct(chip_forward(xb, dep, data.x_test), data).mean(axis=1)
        readback = per_point_correct(_readback_outputs(dep, data), data).mean(axis=1)
    return {"software": software, "chip_mvm": float(chip.mean()), "readback": float(readback.mean()),
            "chip_mvm_per_chip": [float(a) for a in chip[:100]], "test_points": int(data.y_test.shape[0])}


def _readback_outputs(dep: Deployment, data: Dataset) -> torch.Tensor:
    return dep.model.forward_with(data.x_test, dep.readback_matrices())
