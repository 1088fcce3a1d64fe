"""What an ex-situ transfer does to each programmed conductance: the variability model.

A transfer writes conductance targets ``g`` (S) into a crossbar with the write-verify tuner.  The
conductance a device ends up with is modelled, per device, as

    g' = g · (1 + o + σ_rel(g) · ε₁) + μ_d(k) + σ_d(k) · ε₂          (working device)
    g' = g_stuck                                                     (stuck device)

* **tuning imprecision**: σ_rel(g) = a + b·g, the relative spread left by write-verify, and a
  systematic offset ``o ~ N(offset_mean, offset_std)`` drawn per device (3IT TiO2:
  σ_rel = 0.691 % − 6.24e-4 %/µS · g, o ~ N(−0.589 %, 0.339 %); Drolet et al. 2023, their Fig. 2);
* **neighbour drift**: a device programmed before ``k`` others drifts by
  N(μ_d(k), σ_d(k)) with the power laws σ_d(k) = 6.78 µS · k^0.26 and μ_d(k) = −0.46 µS · k^0.95
  (weighted fits, k = 1..16, of the 17 692 drift samples of the 3IT 8×8 arrays published with
  Drolet et al. 2023; σ_d(1) = 6.8 µS, σ_d(30) = 16 µS).  k is clamped to ``drift_k_max`` (46, the
  last k measured with ≥ 30 samples) so the fits are never extrapolated;
* **stuck devices**: a share ``stuck_lrs_frac`` stuck at LRS, N(573, 99) µS, and ``stuck_hrs_frac``
  stuck at HRS, U(10, 100) µS (the 3IT failure data), whatever their target.

Which cells count toward ``k`` (``drift_count``):

* ``"all"`` (default): every later-programmed cell of the array.  The measured drift grows smoothly
  with this k (Drolet et al. 2023's samples, taken cell by cell on 8×8 arrays; half-select geometry
  alone would give a saw-tooth in k), and the digital twin reproduces it as a relaxation under
  programming activity anywhere in the array (:mod:`mock_hw.device`, ``disturb_*``), saturating at
  46 events as k is clamped here — so the preset and the simulated chip count drift the same way;
* ``"line"``: only the later-programmed cells that share the device's row or column (the cells
  whose V/2 writes half-select it).

The sampler is in torch, differentiable with respect to the targets (the reparametrization trick:
ε₁, ε₂ are drawn independently of ``g``), vectorized over any number of transfers.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields

from pathlib import Path

import numpy as np
import torch

from .fields_dict import FieldsDict
from .drolet2023 import DROLET2023, MEASURED_3IT, NAME as DROLET2023_NAME, Drolet2023Model
from .names import DRIFT_COUNTS, REL_DISTS, TRANSFER_MODEL_NAMES, VARIABILITY_PRESET_NAMES


@dataclass(frozen=True)
class Transfer:
    """One batch of sampled transfers: ``g`` conductances (S) and the ``stuck`` mask, both of shape
    ``(n, *target_shape)`` (or ``target_shape`` when no ``n`` was given)."""

    g: torch.Tensor
    stuck: torch.Tensor


@dataclass(frozen=True)
class VariabilityModel(FieldsDict):
    """Per-device statistics of a transfer (SI units: S; relative figures as fractions).

    Attributes:
        name: a label (the preset name, or ``"fitted"``).
        g_min, g_max: programming window, S.
        sigma_rel_a, sigma_rel_b: tuning imprecision σ_rel(g) = a + b·g (b in 1/S).
        offset_mean, offset_std: the per-device systematic relative offset o ~ N(mean, std).
        rel_dist: distribution of the tuning imprecision's unit draw: ``"normal"`` (ε ~ N(0, 1)) or
            ``"uniform"`` (ε ~ U(−√3, √3), also unit variance: a bounded error within
            ±√3·σ_rel(g), what a write-verify stop band of that half-width leaves).
        drift_sigma_a, drift_sigma_b: σ_d(k) = a·k^b, a in S.
        drift_mu_a, drift_mu_b: μ_d(k) = a·k^b, a in S.
        drift_k_max: k is clamped to this.
        drift_count: ``"all"`` or ``"line"`` (see the module docstring).
        stuck_lrs_frac, stuck_lrs_mean, stuck_lrs_std: share and N(mean, std) conductance (S) of
            devices stuck at LRS.
        stuck_hrs_frac, stuck_hrs_low, stuck_hrs_high: share and U(low, high) conductance (S) of
            devices stuck at HRS.
    """

    _kind = "variability model"

    name: str = "tio2-3it"
    g_min: float = MEASURED_3IT["g_min"]
    g_max: float = MEASURED_3IT["g_max"]
    sigma_rel_a: float = MEASURED_3IT["sigma_rel_a"]
    sigma_rel_b: float = MEASURED_3IT["sigma_rel_b"]
    offset_mean: float = MEASURED_3IT["offset_mean"]
    offset_std: float = MEASURED_3IT["offset_std"]
    rel_dist: str = "normal"
    drift_sigma_a: float = 6.78225e-6
    drift_sigma_b: float = 0.260443
    drift_mu_a: float = -0.460092e-6
    drift_mu_b: float = 0.949616
    drift_k_max: int = 46
    drift_count: str = "all"
    stuck_lrs_frac: float = MEASURED_3IT["stuck_lrs_frac"]
    stuck_lrs_mean: float = MEASURED_3IT["stuck_lrs_mean"]
    stuck_lrs_std: float = MEASURED_3IT["stuck_lrs_std"]
    stuck_hrs_frac: float = MEASURED_3IT["stuck_hrs_frac"]
    stuck_hrs_low: float = MEASURED_3IT["stuck_hrs_low"]
    stuck_hrs_high: float = MEASURED_3IT["stuck_hrs_high"]

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in ("name", "drift_count", "rel_dist") and not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"VariabilityModel.{f.name} must be a finite number, got {v!r}")
        if not 0 < self.g_min < self.g_max:
            raise ValueError(f"VariabilityModel window must satisfy 0 < g_min < g_max, got "
                             f"{self.g_min!r}..{self.g_max!r} S")
        for name in ("offset_std", "drift_sigma_a", "stuck_lrs_std", "stuck_lrs_frac", "stuck_hrs_frac"):
            if getattr(self, name) < 0:
                raise ValueError(f"VariabilityModel.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.stuck_lrs_frac + self.stuck_hrs_frac > 1:
            raise ValueError("VariabilityModel stuck fractions add up to more than 1")
        if not 0 <= self.stuck_hrs_low <= self.stuck_hrs_high:
            raise ValueError("VariabilityModel needs 0 <= stuck_hrs_low <= stuck_hrs_high")
        if self.rel_dist not in REL_DISTS:
            raise ValueError(f"VariabilityModel.rel_dist must be one of {REL_DISTS}, got {self.rel_dist!r}")
        if self.drift_count not in DRIFT_COUNTS:
            raise ValueError(f"VariabilityModel.drift_count must be one of {DRIFT_COUNTS}, got {self.drift_count!r}")
        if self.drift_k_max < 1:
            raise ValueError(f"VariabilityModel.drift_k_max must be >= 1, got {self.drift_k_max!r}")

    # ------------------------------------------------------------------------ statistics
    def sigma_rel(self, g):
        """Relative tuning spread at conductance ``g`` (S), never negative."""
        s = self.sigma_rel_a + self.sigma_rel_b * g
        return s.clamp(min=0.0) if isinstance(s, torch.Tensor) else np.maximum(s, 0.0)

    def drift_sigma(self, k):
        """σ_d(k), S; 0 where k == 0."""
        return self._power(self.drift_sigma_a, self.drift_sigma_b, k)

    def drift_mu(self, k):
        """μ_d(k), S; 0 where k == 0."""
        return self._power(self.drift_mu_a, self.drift_mu_b, k)

    def _power(self, a, b, k):
        if isinstance(k, torch.Tensor):
            kk = k.to(torch.float64).clamp(0, self.drift_k_max)
            return torch.where(kk > 0, a * kk.clamp(min=1) ** b, torch.zeros_like(kk))
        kk = np.clip(np.asarray(k, float), 0, self.drift_k_max)
        return np.where(kk > 0, a * np.maximum(kk, 1) ** b, 0.0)

    def unit_draw(self, shape, **kw) -> torch.Tensor:
        """Unit-variance draws of the tuning imprecision (``rel_dist``); ``kw``: generator, dtype, device."""
        if self.rel_dist == "uniform":
            return (2 * torch.rand(shape, **kw) - 1) * math.sqrt(3.0)
        return torch.randn(shape, **kw)

    @property
    def stuck_frac(self) -> float:
        return self.stuck_lrs_frac + self.stuck_hrs_frac

    # --------------------------------------------------------------------------- sampling
    def sample(self, g: torch.Tensor, k=None, n: int | None = None, generator: torch.Generator | None = None,
               stuck: bool = True, drift: bool = True) -> Transfer:
        """Sample transfers of the targets ``g`` (S, any shape; gradients flow through).

        Args:
            g: conductance targets, S.
            k: drift counts (broadcast to ``g``; e.g. from :func:`drift_counts`); None = no drift.
            n: number of independent transfers (a leading axis), or None for one without it.
            generator: torch RNG (seed it for reproducible draws).
            stuck, drift: include stuck devices / neighbour drift.
        """
        g = torch.as_tensor(g)
        shape = g.shape if n is None else (int(n), *g.shape)
        dt = g.dtype if g.is_floating_point() else torch.float64
        kw = dict(generator=generator, dtype=dt, device=g.device)
        rel = self.offset_mean + self.offset_std * torch.randn(shape, **kw) \
            + self.sigma_rel(g) * self.unit_draw(shape, **kw)
        out = g * (1 + rel)
        if drift and k is not None:
            kt = torch.as_tensor(np.asarray(k) if not isinstance(k, torch.Tensor) else k, device=g.device)
            mu = self.drift_mu(kt).to(dt)
            sd = self.drift_sigma(kt).to(dt)
            out = out + mu + sd * torch.randn(shape, **kw)
        out = out.clamp(min=0.0)
        mask = torch.zeros(shape, dtype=torch.bool, device=g.device)
        if stuck and self.stuck_frac > 0:
            u = torch.rand(shape, **kw)
            lrs = u < self.stuck_lrs_frac
            hrs = (u >= self.stuck_lrs_frac) & (u < self.stuck_frac)
            g_lrs = (self.stuck_lrs_mean + self.stuck_lrs_std * torch.randn(shape, **kw)).clamp(min=0.0)
            g_hrs = self.stuck_hrs_low + (self.stuck_hrs_high - self.stuck_hrs_low) * torch.rand(shape, **kw)
            mask = lrs | hrs
            out = torch.where(lrs, g_lrs, torch.where(hrs, g_hrs, out))
        return Transfer(out, mask)


VARIABILITY_PRESETS: dict[str, VariabilityModel] = {
    "tio2-3it": VariabilityModel(),
    "ideal": VariabilityModel(name="ideal", sigma_rel_a=0.0, sigma_rel_b=0.0, offset_mean=0.0, offset_std=0.0,
                              drift_sigma_a=0.0, drift_mu_a=0.0, stuck_lrs_frac=0.0, stuck_hrs_frac=0.0),
}
assert tuple(VARIABILITY_PRESETS) == VARIABILITY_PRESET_NAMES
#: transfer models that are not a :class:`VariabilityModel` (they sample whole tensors their own way)
TRANSFER_MODELS = {DROLET2023_NAME: DROLET2023}
assert tuple(TRANSFER_MODELS) == TRANSFER_MODEL_NAMES


def transfer_model_from_dict(d: dict) -> VariabilityModel | Drolet2023Model:
    """The transfer model a model file records (its ``to_dict``), whichever kind it is."""
    if d.get("name") == DROLET2023_NAME:
        return Drolet2023Model.from_dict(d)
    return VariabilityModel.from_dict(d)


def get_variability(spec: str | Path) -> VariabilityModel | Drolet2023Model:
    """A preset (:data:`VARIABILITY_PRESETS`) or transfer model (:data:`TRANSFER_MODELS`,
    ``drolet2023``) by name, or a JSON file of :meth:`VariabilityModel.to_dict` (e.g. written by
    ``xbar fit-variability``) or of :meth:`~models.drolet2023.Drolet2023Model.to_dict`; a clear
    ValueError otherwise."""
    text = str(spec)
    if text in VARIABILITY_PRESETS:
        return VARIABILITY_PRESETS[text]
    if text in TRANSFER_MODELS:
        return TRANSFER_MODELS[text]
    known = ", ".join(sorted([*VARIABILITY_PRESETS, *TRANSFER_MODELS]))
    path = Path(text)
    if not path.suffix and not path.exists():
        raise ValueError(f"unknown variability model {text!r}; known: {known} (or a JSON file)")
    if not path.is_file():
        raise ValueError(f"variability {text!r} is neither a preset ({known}) nor an existing JSON file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"variability file {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"variability file {path} must hold a JSON object of model fields")
    try:
        return transfer_model_from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"variability file {path} is not a valid variability model: {exc}") from None


def compensate_pairs(targets: torch.Tensor, transfer: Transfer, model: VariabilityModel,
                     generator: torch.Generator | None = None) -> Transfer:
    """Stuck-device compensation through the partner of a differential pair (what
    :func:`models.deploy.deploy` does after the tuner flags a stuck device).

    ``targets`` (..., rows, 2·out) are the pair targets (G+ in even, G- in odd columns) and
    ``transfer`` a sampled transfer of them.  Where exactly one device of a pair is stuck, its
    partner is re-targeted to restore the pair's difference, ``G- = g_stuck - (G+ - G-)_target`` (or
    ``G+ = g_stuck + ...``), clipped to the programming window, and re-tuned with the model's tuning
    imprecision (it is programmed last, so it sees no neighbour drift).
    """
    g, st = transfer.g, transfer.stuck
    gp, gn, sp, sn = g[..., 0::2], g[..., 1::2], st[..., 0::2], st[..., 1::2]
    d = targets[..., 0::2] - targets[..., 1::2]

    def retuned(target):
        kw = dict(generator=generator, dtype=target.dtype, device=target.device)
        rel = model.offset_mean + model.offset_std * torch.randn(target.shape, **kw) \
            + model.sigma_rel(target) * model.unit_draw(target.shape, **kw)
        return target * (1 + rel)

    gn = torch.where(sp & ~sn, retuned((gp - d).clamp(model.g_min, model.g_max)), gn)
    gp = torch.where(sn & ~sp, retuned((gn + d).clamp(model.g_min, model.g_max)), gp)
    return Transfer(torch.stack([gp, gn], dim=-1).reshape(g.shape), st)


def drift_counts(targeted: np.ndarray, rank: np.ndarray, mode: str = "line") -> np.ndarray:
    """Drift count k of every cell: how many targeted cells are programmed after it.

    Args:
        targeted: bool (rows, cols), the cells that are programmed.
        rank: programming priority of every cell (0 = first), e.g.
            :func:`programming.schedule.cell_rank` of the tuner's order.
        mode: ``"line"`` counts only later cells on the same row or column; ``"all"`` every later
            cell.
    Returns int (rows, cols), 0 for untargeted cells.
    """
    targeted = np.asarray(targeted, bool)
    rank = np.asarray(rank)
    if targeted.shape != rank.shape or targeted.ndim != 2:
        raise ValueError(f"targeted {targeted.shape} and rank {rank.shape} must be the same 2-D shape")
    if mode == "all":
        ranks = np.where(targeted, rank, -1).ravel()
        later = np.searchsorted(np.sort(ranks[ranks >= 0]), rank, side="right")
        k = int(targeted.sum()) - later
    elif mode == "line":
        r = np.where(targeted, rank, -1)
        same_row = (r[:, None, :] > r[:, :, None]).sum(axis=2)           # [i, j]: row i, cells after (i, j)
        same_col = (r.T[:, None, :] > r.T[:, :, None]).sum(axis=2).T
        k = same_row + same_col
    else:
        raise ValueError(f"unknown drift count mode {mode!r}; expected one of {DRIFT_COUNTS}")
    return np.where(targeted, k, 0).astype(np.int64)
