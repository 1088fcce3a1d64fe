"""Crossbar-aware torch layers: a ``Linear`` whose training forward samples a transfer onto a chip.

Storage on a crossbar
---------------------
A layer ``y = x Wᵀ + b`` with ``W`` of shape (out, in) is stored as the augmented matrix
``[W | b]`` (out, in + 1): **inputs on rows** (the bias is one more row, driven at the full input
level), **outputs on column pairs** — ``G+`` of output ``o`` in column ``2o``, ``G-`` in column
``2o + 1``, one-sided split (the unused device of a pair sits at ``g_min``).  Scales (``scales``):

* ``"output"`` (default): one scale per output, ``w_max[o] = max_i |[W|b][o, i]|`` mapped to
  ``g_max − g_min``, so every column pair uses the whole window and the periphery multiplies its
  current by its own gain ``scale[o]``.  A transfer's conductance errors are absolute (S); with one
  scale for the whole layer an output whose weights are small holds them in a sliver of the window
  and suffers those errors magnified in its own weight units;
* ``"layer"``: one scale for the layer, ``w_max = max|[W|b]|`` (Drolet et al. 2023).

This is :class:`programming.mapping.ConductanceMapping` in ``differential`` / ``one-sided`` mode
(``per_output`` for ``"output"``); :func:`weights_to_conductances` is its differentiable twin.

Training forward of :class:`CrossbarLinear` (``aware=True``)
-----------------------------------------------------------
1. map ``[W|b]`` to conductance targets G (S), differentiably;
2. **reparametrization**: sample a transfer G' = G·(1 + o + σ_rel(G)ε₁) + μ_d(k) + σ_d(k)ε₂ from the
   :class:`~models.variability.VariabilityModel` (ε drawn independently of G, so gradients reach
   W through G);
3. **hardware dropout**: each device is stuck with the model's probabilities; a stuck device's
   conductance is *substituted* by its stuck value, a constant, so no gradient reaches W through
   it (its update is suppressed); with ``compensate`` the partner device of the pair is re-targeted
   as deployment does.  Devices known to be stuck on a real chip (``set_stuck``) are
   substituted in every forward, training or not;
4. **noise injection** (any mode, ``noise > 0``): G'' = G'·(1 + noise·ε₃), the multiplicative
   conductance noise of Eslami et al. 2024;
5. decode ``[W'|b'] = scale·(G''+ − G''-)`` and apply it.

With ``transfers`` = T > 1 every training step runs the batch through T independently sampled chips
(outputs gain a leading axis of T; the loss averages over it).
In evaluation mode the layer uses the mean weights (plus known stuck devices).
Regularization: weight decay (the optimizer's) and :meth:`CrossbarLinear.kl_divergence`, the KL
term of a variational posterior N(w, σ_hw(w)²) whose σ is the hardware's transfer spread.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from programming.schedule import cell_rank

from .drolet2023 import Drolet2023Model
from .names import SCALES
from .variability import Transfer, VariabilityModel, compensate_pairs, drift_counts

ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


def check_scales(scales: str) -> str:
    if scales not in SCALES:
        raise ValueError(f"unknown scales {scales!r}; expected one of {SCALES}")
    return scales


def weights_to_conductances(wb: torch.Tensor, g_min: float, g_max: float, scales: str = "output"):
    """Differentiable one-sided differential mapping of ``wb`` (out, in+1) → (G (in+1, 2·out) S,
    scale (out,) in weight units per S).  ``w_max`` — per output, ``max|wb[o]|``, or for the
    whole layer, ``max|wb|`` (``scales``) — is detached (fixed scales per forward); an all-zero
    output or layer gets ``w_max = 1``."""
    mag = wb.detach().abs()
    w_max = mag.amax(dim=1) if check_scales(scales) == "output" else mag.max().expand(wb.shape[0])
    w_max = torch.where(w_max > 0, w_max, torch.ones_like(w_max))
    scale = w_max / (g_max - g_min)
    gp = g_min + F.relu(wb) / scale[:, None]
    gn = g_min + F.relu(-wb) / scale[:, None]
    g = torch.stack([gp.T, gn.T], dim=-1).reshape(wb.shape[1], 2 * wb.shape[0])
    return g, scale


def conductances_to_weights(g: torch.Tensor, scale) -> torch.Tensor:
    """Effective ``[W|b]`` (..., out, in+1) from conductances (..., in+1, 2·out) (S) and the
    output scales (out,) (or one scale for all)."""
    scale = torch.as_tensor(scale, dtype=g.dtype, device=g.device)
    return (scale[:, None] if scale.ndim == 1 else scale) * (g[..., 0::2] - g[..., 1::2]).transpose(-1, -2)


def linear_with(x: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """``x Wᵀ + b`` for an augmented ``wb`` (..., out, in+1); batches of matrices broadcast."""
    return x @ wb[..., :-1].transpose(-1, -2) + wb[..., -1].unsqueeze(-2)


def _exact(v: VariabilityModel) -> VariabilityModel:
    """``v`` without tuning imprecision (a deterministic re-target of stuck devices' partners)."""
    return v.with_(offset_mean=0.0, offset_std=0.0, sigma_rel_a=0.0, sigma_rel_b=0.0)


class CrossbarLinear(nn.Module):
    """A ``Linear`` trained for transfer onto a crossbar (see the module docstring).

    Args:
        in_features, out_features: sizes.
        aware: sample a transfer in every training forward (False: plain weights, noise only).
        variability: the transfer model (default: the 3IT TiO2 figures).
        noise: multiplicative conductance noise injected in training, as a fraction (≤ 0.15
            recommended; 0 = off).
        transfers: independent transfers sampled per training forward (every example runs through
            each of them).
        stuck_dropout: include stuck devices in the sampled transfers.
        compensate: the sampled transfers include the deployment's stuck compensation through the
            partner device (:func:`~models.variability.compensate_pairs`).
        order: the tuner's cell order on the layer's own block (sets the drift counts k).
        scales: ``"output"`` or ``"layer"`` (see the module docstring).
    """

    def __init__(self, in_features: int, out_features: int, *, aware: bool = True,
                 variability: VariabilityModel | None = None, noise: float = 0.0, transfers: int = 1,
                 stuck_dropout: bool = True, compensate: bool = True, order: str = "row",
                 scales: str = "output"):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"layer sizes must be >= 1, got {in_features} -> {out_features}")
        if not 0 <= noise < 1:
            raise ValueError(f"noise must be a fraction in [0, 1), got {noise!r}")
        if transfers < 1:
            raise ValueError(f"transfers must be >= 1, got {transfers!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.aware = bool(aware)
        self.variability = variability or VariabilityModel()
        self.noise = float(noise)
        self.transfers = int(transfers)
        self.stuck_dropout = bool(stuck_dropout)
        self.compensate = bool(compensate)
        self.scales = check_scales(scales)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        shape = self.crossbar_shape
        k = torch.zeros(shape, dtype=torch.int64) if self.published else \
            drift_counts(torch.ones(shape, dtype=torch.bool).numpy(), cell_rank(shape, order),
                         self.variability.drift_count)
        self.register_buffer("drift_k", torch.as_tensor(k))
        self.register_buffer("stuck_mask", torch.zeros(shape, dtype=torch.bool))
        self.register_buffer("stuck_g", torch.zeros(shape, dtype=torch.float32))
        self.generator: torch.Generator | None = None

    @property
    def published(self) -> bool:
        """The layer samples Drolet et al. 2023's transfer simulation (``drolet2023``), which maps
        its weight matrix and bias vector separately (:mod:`models.drolet2023`)."""
        return isinstance(self.variability, Drolet2023Model)

    @property
    def crossbar_shape(self) -> tuple[int, int]:
        """(rows, cols) of the layer's block: inputs + bias row, output column pairs."""
        return self.in_features + 1, 2 * self.out_features

    def matrix(self) -> torch.Tensor:
        """The augmented ``[W | b]`` (out, in+1)."""
        return torch.cat([self.weight, self.bias[:, None]], dim=1)

    def set_drift_counts(self, k) -> None:
        """Drift counts of the layer's cells as placed on a chip (int (rows, cols))."""
        k = torch.as_tensor(k, dtype=torch.int64)
        if tuple(k.shape) != self.crossbar_shape:
            raise ValueError(f"drift counts of shape {tuple(k.shape)}, layer block is {self.crossbar_shape}")
        self.drift_k.copy_(k)

    def set_stuck(self, mask, g) -> None:
        """Devices known to be stuck (bool (rows, cols)) and their measured conductances (S)."""
        mask = torch.as_tensor(mask, dtype=torch.bool)
        g = torch.as_tensor(g, dtype=torch.float32)
        if tuple(mask.shape) != self.crossbar_shape or tuple(g.shape) != self.crossbar_shape:
            raise ValueError(f"stuck mask {tuple(mask.shape)} / values {tuple(g.shape)} must match the layer "
                             f"block {self.crossbar_shape}")
        self.stuck_mask.copy_(mask)
        self.stuck_g.copy_(torch.where(mask, g, torch.zeros_like(g)))

    # ----------------------------------------------------------------------------- forward
    def effective_matrix(self, n: int | None = None) -> torch.Tensor:
        """``[W|b]`` as the forward uses it: sampled transfers (n of them, a leading axis) in
        aware training, the mean weights otherwise; known stuck devices substituted always (and
        compensated through their partners when ``compensate``)."""
        v = self.variability
        wb = self.matrix()
        sampling = self.training and (self.aware or self.noise > 0)
        if sampling and self.aware and self.published:
            sampled = v.sample_layer(self.weight, self.bias, 1 if n is None else n, self.generator).to(wb.dtype)
            return sampled[0] if n is None else sampled
        known = self.stuck_mask
        if not sampling and not bool(known.any()):
            return wb if n is None else wb.expand(n, *wb.shape)
        g, scale = weights_to_conductances(wb, v.g_min, v.g_max, self.scales)
        if sampling and self.aware:
            t = v.sample(g, self.drift_k, n=n, generator=self.generator, stuck=self.stuck_dropout)
            gs, stuck, model = torch.where(known, self.stuck_g.to(g.dtype), t.g), t.stuck | known, v
        else:
            gs = torch.where(known, self.stuck_g.to(g.dtype), g)
            gs, stuck, model = (gs if n is None else gs.expand(n, *gs.shape)), known, _exact(v)
        if self.compensate and bool(stuck.any()):
            gs = compensate_pairs(g, Transfer(gs, stuck), model, self.generator).g
        if sampling and self.noise > 0:
            gs = gs * (1 + self.noise * torch.randn(gs.shape, generator=self.generator, dtype=gs.dtype))
        return conductances_to_weights(gs, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, in) → (B, out); in training with ``transfers = T > 1`` every example runs
        through T sampled chips: (B, in) or (T, B, in) → (T, B, out)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features, layer expects {self.in_features}")
        if not (self.training and self.transfers > 1):
            return linear_with(x, self.effective_matrix())
        t = self.transfers
        if x.dim() == 3 and x.shape[0] != t:
            raise ValueError(f"input carries {x.shape[0]} transfers, layer samples {t}")
        return linear_with(x, self.effective_matrix(t))

    # ---------------------------------------------------------------------- regularization
    def kl_divergence(self, prior_sigma: float = 1.0) -> torch.Tensor:
        """KL(q‖p) of q(w) = N(w, σ_hw(w)²) against p = N(0, prior_sigma²), summed over [W|b]:
        σ_hw is the hardware's transfer spread in weight units (tuning imprecision and offset
        spread of both devices of the pair, and the drift of each cell)."""
        v = self.variability
        if self.published:
            raise ValueError("the KL regularizer needs a variability model's spreads; drolet2023 has none")
        wb = self.matrix()
        g, scale = weights_to_conductances(wb, v.g_min, v.g_max, self.scales)
        var_g = (g * v.sigma_rel(g)) ** 2 + (g * v.offset_std) ** 2 + v.drift_sigma(self.drift_k).to(g.dtype) ** 2
        var_w = scale[:, None] ** 2 * (var_g[:, 0::2] + var_g[:, 1::2]).T
        var_w = var_w.clamp(min=1e-12)
        p2 = prior_sigma ** 2
        return 0.5 * (var_w / p2 + wb ** 2 / p2 - 1 - torch.log(var_w / p2)).sum()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, aware={self.aware}, "
                f"noise={self.noise}, transfers={self.transfers}, variability={self.variability.name}")


class MLP(nn.Module):
    """A multilayer perceptron of :class:`CrossbarLinear` (``kind="crossbar"``) or ``nn.Linear``
    (``kind="linear"``, regular training) layers; the activation after every layer but the last,
    which outputs logits.  ``scales``: how deployment (and aware training) scales each layer's
    weights onto conductances, ``"output"`` or ``"layer"`` (module docstring)."""

    def __init__(self, sizes, activation: str = "sigmoid", kind: str = "crossbar", scales: str = "output",
                 **layer_kwargs):
        super().__init__()
        self.scales = check_scales(scales)
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"an MLP needs at least two positive layer sizes, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        if kind not in ("crossbar", "linear"):
            raise ValueError(f"unknown layer kind {kind!r}; expected 'crossbar' or 'linear'")
        self.sizes, self.activation, self.kind = sizes, activation, kind
        if kind == "crossbar":
            layers = [CrossbarLinear(a, b, scales=scales, **layer_kwargs) for a, b in zip(sizes[:-1], sizes[1:])]
        else:
            layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = act(x)
        return x

    def kl_divergence(self, prior_sigma: float = 1.0) -> torch.Tensor:
        return sum((l.kl_divergence(prior_sigma) for l in self.layers if isinstance(l, CrossbarLinear)),
                   torch.zeros(()))

    def matrices(self) -> list[torch.Tensor]:
        """The augmented ``[W|b]`` of every layer (detached)."""
        return [torch.cat([l.weight, l.bias[:, None]], dim=1).detach() for l in self.layers]

    def forward_with(self, x: torch.Tensor, matrices) -> torch.Tensor:
        """Forward with given ``[W|b]`` per layer, each (..., out, in+1) — e.g. a stack of sampled
        transfers (n, out, in+1) gives outputs (n, batch, out)."""
        act = ACTIVATIONS[self.activation]
        for i, wb in enumerate(matrices):
            x = linear_with(x, wb)
            if i < len(matrices) - 1:
                x = act(x)
        return x
