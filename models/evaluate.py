"""Monte Carlo transfer evaluation: how robust is a network to being programmed onto chips?

Two modes, both vectorized over transfers:

* :func:`evaluate_statistical` samples ``n`` transfers from a
  :class:`~models.variability.VariabilityModel` (tuning imprecision, neighbour drift from the
  placement's programming order, stuck devices, and the deployment's stuck compensation) and runs
  the test set through every sampled network at once;
* with the :class:`~models.drolet2023.Drolet2023Model` (``drolet2023``) it samples the published
  transfer simulation of Drolet et al. 2023 instead (:func:`evaluate_drolet2023`: per-tensor
  scaling, bootstrapped drift, no compensation; ``chip_shape``, ``compensate`` and ``order`` do not
  apply);
* :func:`evaluate_tuned` deploys the network with the pulse-level write-verify tuner onto a batch of
  ``n`` simulated chips (a :class:`~programming.crossbar.Crossbar` with ``n_chips = n``, built by the
  caller) and infers through each chip's matrix-vector product.

Both return a :class:`TransferStats` whose report has ``transfers``, ``mean_accuracy``,
``std_accuracy``, ``frac_points_ge_95`` — the share of test points classified correctly in at least
95 % of transfers (Drolet et al. 2023) — and ``wall_s``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from programming.crossbar import Crossbar

from .datasets import Dataset
from .deploy import DeployConfig, deploy, map_model, per_point_correct
from .layers import MLP, conductances_to_weights
from .placement import plan_placement
from .runtime import torch_threads
from .drolet2023 import Drolet2023Model
from .variability import VariabilityModel, compensate_pairs

#: transfers sampled per chunk (bounds memory: chunk × rows × cols doubles per layer)
CHUNK = 2000


@dataclass
class TransferStats:
    """Correctness of every test point in every transfer, (transfers, points) bool."""

    correct: np.ndarray
    wall_s: float
    mode: str

    @property
    def accuracies(self) -> np.ndarray:
        return self.correct.mean(axis=1)

    def report(self) -> dict:
        acc = self.accuracies
        per_point = self.correct.mean(axis=0)
        return {
            "mode": self.mode,
            "transfers": int(self.correct.shape[0]),
            "test_points": int(self.correct.shape[1]),
            "mean_accuracy": float(acc.mean()),
            "std_accuracy": float(acc.std()),
            "min_accuracy": float(acc.min()),
            "frac_points_ge_95": float((per_point >= 0.95).mean()),
            "wall_s": float(self.wall_s),
        }


def evaluate_statistical(model: MLP, data: Dataset, variability: VariabilityModel | Drolet2023Model, n: int,
                         seed: int = 0, chip_shape: tuple[int, int] | None = None, compensate: bool = True,
                         order: str = "row") -> TransferStats:
    """``n`` transfers sampled from ``variability``, the layers placed as :func:`deploy` would
    place them on ``chip_shape`` (default: the smallest array that holds them)."""
    if n < 1:
        raise ValueError(f"the number of transfers must be >= 1, got {n}")
    if isinstance(variability, Drolet2023Model):
        return evaluate_drolet2023(model, data, variability, n, seed)
    t0 = time.perf_counter()
    model.eval()
    mapped = map_model(model, (variability.g_min, variability.g_max))
    placement = plan_placement([m.shape for m in mapped], chip_shape)
    ks = placement.drift_counts(variability.drift_count, order)
    targets = [torch.as_tensor(m.targets, dtype=torch.float64) for m in mapped]
    gen = torch.Generator().manual_seed(int(seed))
    chunks = []
    with torch.no_grad(), torch_threads(1):
        for start in range(0, n, CHUNK):
            m_chunk = min(CHUNK, n - start)
            mats = []
            for g, k, mw in zip(targets, ks, mapped):
                t = variability.sample(g, k, n=m_chunk, generator=gen)
                if compensate:
                    t = compensate_pairs(g, t, variability, gen)
                mats.append(conductances_to_weights(t.g, mw.scale).to(torch.float32))
            chunks.append(per_point_correct(model.forward_with(data.x_test, mats), data))
    return TransferStats(np.concatenate(chunks), time.perf_counter() - t0, "statistical")


def evaluate_drolet2023(model: MLP, data: Dataset, transfer: Drolet2023Model, n: int,
                        seed: int = 0) -> TransferStats:
    """``n`` transfers of ``model`` under Drolet et al. 2023's transfer simulation (every weight
    matrix and bias vector scaled and perturbed on its own; see :mod:`models.drolet2023`)."""
    if n < 1:
        raise ValueError(f"the number of transfers must be >= 1, got {n}")
    t0 = time.perf_counter()
    model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    chunks = []
    with torch.no_grad(), torch_threads(1):
        for start in range(0, n, CHUNK):
            mats = [m.to(torch.float32) for m in transfer.sample_network(model.layers, min(CHUNK, n - start), gen)]
            chunks.append(per_point_correct(model.forward_with(data.x_test, mats), data))
    return TransferStats(np.concatenate(chunks), time.perf_counter() - t0, "drolet2023")


def evaluate_tuned(model: MLP, data: Dataset, chips: Crossbar, config: DeployConfig | None = None,
                   progress: bool = False) -> tuple[TransferStats, dict]:
    """Deploy onto every chip of ``chips`` (one transfer per chip) with the write-verify tuner and
    infer through the chips' matrix-vector products; returns the statistics and the deployment
    report.  On resistive lines with pre-distortion (:func:`~models.deploy.deploy`), the report's
    ``without_predistortion`` holds the statistics of the same chips measured before it."""
    t0 = time.perf_counter()
    dep = deploy(model, chips, data, config, progress=progress)
    wall = time.perf_counter() - t0
    report = dict(dep.report)
    if "without_predistortion" in dep.correct:
        report["without_predistortion"] = TransferStats(dep.correct["without_predistortion"], wall, "tuned").report()
    return TransferStats(dep.correct["final"], wall, "tuned"), report
