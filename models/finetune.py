"""Chip-in-the-loop fine-tuning of a deployed network.

After :func:`models.deploy.deploy`, the chip differs from the software network: stuck devices,
tuning errors, the I-V nonlinearity.  Fine-tuning runs rounds of

1. **forward on the chip**: every layer's pre-activations ``z_chip`` are measured through the
   chip's matrix-vector product, each layer fed with the *chip's* activations of the layer below;
2. **backward in software** (a straight-through estimator): the loss is taken on
   ``z = z_sw(W) + (z_chip − z_sw(W₀))``, the software pre-activations at the current weights ``W``
   plus the measured mismatch at the round's start ``W₀`` — so the loss value is the chip's, and the
   gradients come from the software model.  Devices the tuner flagged stuck are substituted (with
   their measured conductances) in the software model, so their updates are suppressed, and their
   partners are compensated as at deployment;
3. a few Adam steps on ``W``, then **re-tune only the cells whose targets moved** by more than the
   tolerance (the mapping's scale is kept from the deployment, so unchanged weights keep their
   targets), and read back.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from programming.crossbar import Crossbar
from programming.mapping import ConductanceMapping
from programming.tune_result import STUCK
from programming.tuner import tune

from .datasets import Dataset
from .deploy import DeployConfig, Deployment, accuracy_report, chip_layer, pair_compensation
from .layers import ACTIVATIONS, MLP, linear_with
from .runtime import torch_threads
from .train import loss_fn


@dataclass
class FinetuneConfig:
    """``rounds`` of (chip forward, ``steps`` Adam steps at ``lr``, re-tune); training examples
    per chip forward ``batch`` (0 = the whole training set); ``seed`` for the tuner."""

    rounds: int = 5
    steps: int = 20
    lr: float = 0.02
    batch: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.rounds < 1 or self.steps < 1 or self.lr <= 0 or self.batch < 0:
            raise ValueError("fine-tuning needs rounds >= 1, steps >= 1, lr > 0 and batch >= 0")


def _software_twin(dep: Deployment, stuck: np.ndarray, window) -> MLP:
    """A trainable copy of the deployed network as CrossbarLinear layers (no sampling) with the
    chip's stuck devices (bool (rows, cols) of the array) substituted by their read-back values."""
    src = dep.model
    twin = MLP(src.sizes, src.activation, "crossbar", src.scales, aware=False, noise=0.0, transfers=1)
    for i, (dst, layer) in enumerate(zip(twin.layers, src.layers)):
        with torch.no_grad():
            dst.weight.copy_(layer.weight)
            dst.bias.copy_(layer.bias)
        dst.variability = dst.variability.with_(g_min=window[0], g_max=window[1])
        dst.set_stuck(torch.as_tensor(dep.placement.cut(stuck, i)),
                      torch.as_tensor(dep.layer_conductances(i)[0], dtype=torch.float32))
    return twin


def finetune_on_chip(dep: Deployment, xb: Crossbar, data: Dataset, config: FinetuneConfig | None = None,
                     deploy_config: DeployConfig | None = None) -> tuple[MLP, dict]:
    """Fine-tune ``dep`` (deployed on ``xb``, one chip) on ``data``'s training set; returns the
    fine-tuned software model and a report with the accuracy before and after each round."""
    cfg = config or FinetuneConfig()
    dcfg = deploy_config or DeployConfig()
    if xb.n_chips != 1:
        raise ValueError(f"chip-in-the-loop fine-tuning runs on one chip, got a batch of {xb.n_chips}")
    t0 = time.perf_counter()
    window = xb.programming_window
    stuck = dep.result.status == STUCK
    model = _software_twin(dep, stuck[0], window)
    lo, top = dep.window or window             # the deployment's mapping (headroom under pre-distortion)
    mappings = [ConductanceMapping(lo, top, w_max=m.w_max, clip=True, per_output=np.ndim(m.w_max) > 0)
                for m in dep.mapped]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    act = ACTIVATIONS[model.activation]
    last = len(model.layers) - 1
    history = [{"round": 0, **_accuracies(dep, xb, data)}]
    retuned_total = 0
    for rnd in range(1, cfg.rounds + 1):
        n = data.x_train.shape[0]
        idx = torch.randperm(n, generator=gen)[:cfg.batch] if 0 < cfg.batch < n else torch.arange(n)
        x, y = data.x_train[idx], data.y_train[idx]
        z_chip, a_chip = _chip_preactivations(xb, dep, x)
        model.eval()
        with torch.no_grad():   # the chip's measured mismatch at the round's start, per layer
            mismatch = [z - linear_with(a0, l.effective_matrix()) for z, a0, l in zip(z_chip, a_chip, model.layers)]
        with torch_threads(1):
            for _ in range(cfg.steps):
                a = x
                for i, layer in enumerate(model.layers):
                    z = linear_with(a, layer.effective_matrix()) + mismatch[i]
                    a = z if i == last else act(z)
                loss = loss_fn(a, y, data.n_classes)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        retuned_total += _reprogram(dep, xb, model, mappings, stuck, dcfg, rnd)
        history.append({"round": rnd, "loss": float(loss.detach()), **_accuracies(dep, xb, data)})
    report = {"rounds": cfg.rounds, "steps_per_round": cfg.steps, "cells_retuned": int(retuned_total),
              "stuck_devices": int(stuck.sum()), "history": history,
              "accuracy_before": history[0]["chip_mvm"], "accuracy_after": history[-1]["chip_mvm"],
              "wall_s": time.perf_counter() - t0}
    return model, report


def _chip_preactivations(xb: Crossbar, dep: Deployment, x: torch.Tensor):
    """Per layer, the chip-measured pre-activations and the (chip) inputs that produced them."""
    act = ACTIVATIONS[dep.model.activation]
    a = x
    z_list, a_list = [], []
    for m, block in zip(dep.mapped, dep.placement.blocks):
        z = torch.as_tensor(chip_layer(xb, m, block, a)[0], dtype=torch.float32)
        z_list.append(z)
        a_list.append(a)
        a = act(z)
    return z_list, a_list


def _reprogram(dep: Deployment, xb: Crossbar, model: MLP, mappings, stuck, dcfg: DeployConfig, rnd: int) -> int:
    """Re-tune the cells whose targets moved (beyond the tolerance); update ``dep`` in place."""
    p = dep.placement
    old = dep.result.targets[0]
    new_full = np.full(old.shape, np.nan)
    for i, (layer, mapping) in enumerate(zip(model.layers, mappings)):
        m = mapping.encode(layer.matrix().detach().numpy())
        dep.mapped[i] = m
        block = p.blocks[i]
        tgt = m.targets.copy()
        st = p.cut(stuck[0], i)                                      # (in the layer's row order)
        comp = pair_compensation(tgt, st, p.cut(dep.conductances[0], i), xb.programming_window)
        tgt = np.where(np.isnan(comp), tgt, comp)
        tgt[st] = np.nan
        new_full[block.input_rows, block.col:block.col + block.cols] = tgt
    moved = ~np.isnan(new_full) & (np.isnan(old) | (np.abs(new_full - old) > dcfg.tolerance * new_full))
    if moved.any():
        targets = np.where(moved, new_full, np.nan)
        tune(xb, targets, dcfg.tuner(initial_reset=False, seed=dcfg.seed + 100 + rnd))
    keep = ~np.isnan(new_full)
    dep.result.targets[0] = np.where(keep, new_full, old)
    dep.conductances = xb.read_array()
    dep.model = copy.deepcopy(model).eval()
    return int(moved.sum())


def _accuracies(dep: Deployment, xb: Crossbar, data: Dataset) -> dict:
    a = accuracy_report(dep, xb, data)
    return {"chip_mvm": a["chip_mvm"], "software": a["software"]}
