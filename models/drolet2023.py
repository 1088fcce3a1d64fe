"""The transfer model of Drolet et al. 2023 as their public code simulates it (``--variability drolet2023``).

Reproduces the transfer simulation of github 3it-inpaqt/Hardware-Aware-Article (commit 3fd4467, MIT;
``hardaware_pytorch_layers/hardaware_linear.py``), read and re-implemented vectorized here (no code
copied), so that a network can be judged the way P. Drolet et al., arXiv:2305.18495 (2023) judged
theirs (79.5 % of test points correct in ≥ 95 % of transfers, hardware-aware; 18.5 %, regular).

Every tensor of a layer — its weight matrix and, *separately*, its bias vector — is transferred on
its own:

* a tensor of **one element** (the output bias of a one-output network) is left unperturbed;
* a tensor of **mixed signs** uses a differential pair per element (the code's "DoubleColumn"):
  ``w_max = max|w|``; ``G± = −S + 2S·relu(±w)/w_max`` on the span −S…+S with
  S = 1/(2 kΩ) − 1/(10 kΩ) = 400 µS (the code's MinMaxScaler fit on [0, w_max]; a zero weight sits
  at −400 µS); read back as ``w' = (G+ − G−)·w_max/(2S)``;
* a tensor of **one sign** uses one device per element ("SingleColumn"): ``G = 100 µS + 400 µS·(w −
  w_lo)/(w_hi − w_lo)`` over the tensor's own range, read back by the inverse map.

Each device then sees, in this order:

1. a programming **offset** ``G ← G·(1 + o)``, o ~ N(−0.589 %, 0.339 %) per device (the single-column
   path subtracts it, ``G·(1 − o)``, as the code does);
2. **tuning imprecision** ``G ← G + σ_rel(G)·G·ε``, σ_rel(G) = 0.691 % − 6.24e-4 %/µS·G (evaluated
   on the offset conductance, negative G included; ε ~ N(0, 1));
3. **neighbour drift** bootstrapped from the 17 692 measured samples
   (:mod:`models.drolet2023_drift`): the element at 0-based programming position p of a tensor of
   ``numel`` elements draws from key ``k = numel − p``; positions run column-major (output index
   fastest — the code walks the 8 rows of its array, which for its 2-8-1 network is the hidden
   index); the last-programmed element gets no drift; so k ≤ 16 for the 2-8-1 network.  G+ and G−
   draw independently.  For weight matrices (not biases) a draw with ``|d| > 4·σ_dict(k)`` is
   replaced by +60 µS (the code's outlier rule).  Keys beyond the measured 54 are clamped to 54
   (the code would fail there);
4. **stuck devices**: 0.5 % stuck at LRS, N(573, 99) µS, and 0.5 % at HRS, U(10, 100) µS, written
   over the mapped value (in the same −400…+400 µS span for differential pairs), with no
   compensation.

Sampling is differentiable with respect to the weights (the conductances are drawn by the
reparametrization trick; ``w_max`` and the single-column range are held fixed per draw), and
vectorized over any number of transfers.  Units: S in code, as everywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from .fields_dict import FieldsDict
from .drolet2023_drift import DRIFT_QUANTILES_US, LEVELS, SIGMA_DICT_US

#: the name of this transfer model (``--variability drolet2023``)
NAME = "drolet2023"
#: largest drift key with measured samples
K_MAX = max(DRIFT_QUANTILES_US)


#: The measured 3IT TiO2 device figures both transfer models start from (Drolet et al. 2023, their Fig. 2
#: and failure data; shared/papers.md): programming window, S; tuning imprecision
#: σ_rel(g) = a + b·g (b in 1/S) and relative offset; stuck-at-LRS and stuck-at-HRS fractions and values, S.
MEASURED_3IT = dict(
    g_min=100e-6, g_max=500e-6,
    sigma_rel_a=0.691e-2, sigma_rel_b=-6.24, offset_mean=-0.589e-2, offset_std=0.339e-2,
    stuck_lrs_frac=0.005, stuck_lrs_mean=573e-6, stuck_lrs_std=99e-6,
    stuck_hrs_frac=0.005, stuck_hrs_low=10e-6, stuck_hrs_high=100e-6,
)


@dataclass(frozen=True)
class Drolet2023Model(FieldsDict):
    """The published transfer simulation's constants (SI units; fractions for relative figures).
    Sources: Drolet et al. 2023 (their Fig. 2 and failure data) and their code's defaults.

    Attributes:
        name: ``"drolet2023"``.
        g_min, g_max: the single-column window, S (HRS 10 kΩ, LRS 2 kΩ).
        sigma_rel_a, sigma_rel_b: tuning imprecision σ_rel(G) = a + b·G (b in 1/S).
        offset_mean, offset_std: per-device relative programming offset o ~ N(mean, std).
        stuck_lrs_frac, stuck_lrs_mean, stuck_lrs_std: share and N(mean, std) (S) of devices stuck at LRS.
        stuck_hrs_frac, stuck_hrs_low, stuck_hrs_high: share and U(low, high) (S) of devices stuck at HRS.
        outlier_sigmas, outlier_value: a weight-matrix drift draw larger in magnitude than
            ``outlier_sigmas · σ_dict(k)`` is replaced by ``outlier_value`` (S).
        drift: include the neighbour drift.
    """

    _kind = "drolet2023 model"

    name: str = NAME
    g_min: float = MEASURED_3IT["g_min"]
    g_max: float = MEASURED_3IT["g_max"]
    sigma_rel_a: float = MEASURED_3IT["sigma_rel_a"]
    sigma_rel_b: float = MEASURED_3IT["sigma_rel_b"]
    offset_mean: float = MEASURED_3IT["offset_mean"]
    offset_std: float = MEASURED_3IT["offset_std"]
    stuck_lrs_frac: float = MEASURED_3IT["stuck_lrs_frac"]
    stuck_lrs_mean: float = MEASURED_3IT["stuck_lrs_mean"]
    stuck_lrs_std: float = MEASURED_3IT["stuck_lrs_std"]
    stuck_hrs_frac: float = MEASURED_3IT["stuck_hrs_frac"]
    stuck_hrs_low: float = MEASURED_3IT["stuck_hrs_low"]
    stuck_hrs_high: float = MEASURED_3IT["stuck_hrs_high"]
    outlier_sigmas: float = 4.0
    outlier_value: float = 60e-6
    drift: bool = True

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in ("name", "drift") and not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"Drolet2023Model.{f.name} must be a finite number, got {v!r}")
        if not 0 < self.g_min < self.g_max:
            raise ValueError(f"Drolet2023Model window must satisfy 0 < g_min < g_max, got {self.g_min!r}..{self.g_max!r}")
        for name in ("offset_std", "stuck_lrs_std", "stuck_lrs_frac", "stuck_hrs_frac", "outlier_sigmas"):
            if getattr(self, name) < 0:
                raise ValueError(f"Drolet2023Model.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.stuck_lrs_frac + self.stuck_hrs_frac > 1:
            raise ValueError("Drolet2023Model stuck fractions add up to more than 1")

    @property
    def span(self) -> float:
        """Half-width S of the differential span −S…+S, S (400 µS)."""
        return self.g_max - self.g_min

    @property
    def stuck_frac(self) -> float:
        return self.stuck_lrs_frac + self.stuck_hrs_frac

    # ------------------------------------------------------------------------------ drift
    @staticmethod
    def drift_keys(shape) -> torch.Tensor:
        """Drift key k of every element of a tensor of ``shape`` (int64, same shape): ``numel − p``
        for the column-major programming position p, 0 (no drift) for the last-programmed one."""
        shape = tuple(int(s) for s in shape)
        numel = math.prod(shape)
        if len(shape) == 2:
            rows, cols = shape
            p = torch.arange(cols)[None, :] * rows + torch.arange(rows)[:, None]
        else:
            p = torch.arange(numel).reshape(shape)
        k = numel - p
        return torch.where(p == numel - 1, torch.zeros_like(k), k.clamp(max=K_MAX))

    def sample_drift(self, keys: torch.Tensor, n: int, generator: torch.Generator | None = None,
                     outliers: bool = True, dtype=torch.float64, shape=None) -> torch.Tensor:
        """Bootstrapped drift (S), shape ``(n, *keys.shape)`` (or ``shape``, which ``keys``
        broadcasts to): the inverse CDF of key k's measured samples at a uniform draw (0 where
        k == 0); ``outliers``: the weight matrices' outlier rule."""
        levels = torch.tensor(LEVELS, dtype=dtype)
        q = _quantile_table(dtype)                                  # (K_MAX + 1, L), µS
        u = torch.rand(shape or (int(n), *keys.shape), generator=generator, dtype=dtype)
        j = torch.searchsorted(levels, u.contiguous(), right=True).clamp(1, len(LEVELS) - 1)
        p0, p1 = levels[j - 1], levels[j]
        kk = keys.expand(u.shape)
        q0, q1 = q[kk, j - 1], q[kk, j]
        d = q0 + (u - p0) / (p1 - p0) * (q1 - q0)
        if outliers:
            sd = _sigma_dict(dtype)[kk]
            d = torch.where(d.abs() > self.outlier_sigmas * sd, torch.full_like(d, self.outlier_value * 1e6), d)
        return torch.where(kk > 0, d, torch.zeros_like(d)) * 1e-6

    # --------------------------------------------------------------------------- devices
    def draw(self, shape, keys: torch.Tensor, outliers: bool, generator: torch.Generator | None = None,
             dtype=torch.float64) -> "Draws":
        """The random part of steps 1-4 for devices of ``shape`` (n, ...): independent of the
        conductances, so it can be drawn ahead (e.g. for many training steps at once)."""
        kw = dict(generator=generator, dtype=dtype)
        o = self.offset_mean + self.offset_std * torch.randn(shape, **kw)
        eps = torch.randn(shape, **kw)
        drift = self.sample_drift(keys, shape[0], generator, outliers, dtype, shape) if self.drift else None
        stuck = None
        if self.stuck_frac > 0:
            u = torch.rand(shape, **kw)
            lrs = u < self.stuck_lrs_frac
            hrs = (u >= self.stuck_lrs_frac) & (u < self.stuck_frac)
            g_lrs = self.stuck_lrs_mean + self.stuck_lrs_std * torch.randn(shape, **kw)
            g_hrs = self.stuck_hrs_low + (self.stuck_hrs_high - self.stuck_hrs_low) * torch.rand(shape, **kw)
            stuck = (lrs, hrs, g_lrs, g_hrs)
        return Draws(o, eps, drift, stuck)

    def _apply(self, g: torch.Tensor, d: "Draws", sign: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 1-4 of the module docstring on conductances ``g`` (S) with the draws ``d``;
        returns them and the stuck mask."""
        g = g * (1 + sign * d.offset)
        g = g + (self.sigma_rel_a + self.sigma_rel_b * g) * g * d.eps
        if d.drift is not None:
            g = g + d.drift
        if d.stuck is None:
            return g, torch.zeros(g.shape, dtype=torch.bool)
        lrs, hrs, g_lrs, g_hrs = d.stuck
        return torch.where(lrs, g_lrs, torch.where(hrs, g_hrs, g)), lrs | hrs

    def draws_for(self, w_shape, n: int, generator: torch.Generator | None = None, bias: bool = False,
                  nets: bool = False) -> tuple:
        """Draws for ``n`` transfers of a tensor of ``w_shape`` on any path: single column, G+,
        G− (the ``draws`` of :meth:`sample_tensor_stuck`)."""
        tshape = tuple(w_shape[1:]) if nets else tuple(w_shape)
        keys = self.drift_keys(tshape)
        shape = (int(n), *w_shape)
        return tuple(self.draw(shape, keys, not bias, generator) for _ in range(3))

    def sample_tensor(self, w: torch.Tensor, n: int, generator: torch.Generator | None = None,
                      bias: bool = False) -> torch.Tensor:
        """``n`` transfers of the tensor ``w`` (a weight matrix, or a bias vector with ``bias``):
        (n, *w.shape), float64, differentiable with respect to ``w``."""
        return self.sample_tensor_stuck(w, n, generator, bias)[0]

    def sample_tensor_stuck(self, w: torch.Tensor, n: int, generator: torch.Generator | None = None,
                            bias: bool = False, nets: bool = False,
                            draws: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sample_tensor` and the mask (n, *w.shape) of elements with a stuck device.

        ``nets=True``: ``w`` holds the same tensor of several independent networks along its first
        axis (each mapped with its own scale and path), e.g. to train several seeds at once.
        ``draws``: pre-drawn randomness from :meth:`draws_for` (n transfers), else drawn here."""
        wd = w.to(torch.float64)
        tshape = tuple(w.shape[1:]) if nets else tuple(w.shape)
        shape = (int(n), *w.shape)
        if math.prod(tshape) == 1:
            return wd.expand(shape), torch.zeros(shape, dtype=torch.bool)
        keys = self.drift_keys(tshape)
        outliers = not bias

        def take(i):
            return draws[i] if draws is not None else self.draw(shape, keys, outliers, generator)
        mag = wd.detach()
        dims = tuple(range(1 if nets else 0, w.dim()))
        lo, hi = mag.amin(dim=dims, keepdim=True), mag.amax(dim=dims, keepdim=True)
        single = (lo >= 0) | (hi <= 0)                                     # one sign: single column
        parts = []
        if bool(single.any()):
            r = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
            g = self.g_min + (wd - lo) * (self.span / r)
            g, stuck = self._apply(g.expand(shape), take(0), -1.0)
            parts.append((lo + (g - self.g_min) * (r / self.span), stuck))
        if not bool(single.all()):                                         # differential pairs
            w_max = torch.maximum(hi, -lo)
            s = self.span
            gp = -s + 2 * s * torch.relu(wd) / w_max
            gn = -s + 2 * s * torch.relu(-wd) / w_max
            gp, sp = self._apply(gp.expand(shape), take(1), 1.0)
            gn, sn = self._apply(gn.expand(shape), take(2), 1.0)
            parts.append(((gp - gn) * (w_max / (2 * s)), sp | sn))
        if len(parts) == 1:
            return parts[0]
        (w_sc, st_sc), (w_dc, st_dc) = parts
        return torch.where(single, w_sc, w_dc), torch.where(single, st_sc, st_dc)

    def sample_layer(self, weight: torch.Tensor, bias: torch.Tensor, n: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` transfers of a layer: the augmented ``[W'|b']`` (n, out, in+1), float64."""
        w = self.sample_tensor(weight, n, generator)
        b = self.sample_tensor(bias, n, generator, bias=True)
        return torch.cat([w, b[..., None]], dim=-1)

    def sample_network(self, layers, n: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """``n`` transfers of every layer (anything with ``weight`` and ``bias``), as
        ``[W'|b']`` matrices for :meth:`models.layers.MLP.forward_with`."""
        return [self.sample_layer(l.weight, l.bias, n, generator) for l in layers]


@dataclass(frozen=True)
class Draws:
    """Pre-drawn randomness of one device per element: the relative ``offset``, the unit tuning
    draw ``eps``, the ``drift`` (S, or None) and ``stuck`` = (LRS mask, HRS mask, LRS value, HRS
    value in S) or None."""

    offset: torch.Tensor
    eps: torch.Tensor
    drift: torch.Tensor | None
    stuck: tuple | None

    def step(self, i: int) -> "Draws":
        """The draws of transfer ``i`` (keeping a leading axis of 1)."""
        sl = slice(i, i + 1)
        return Draws(self.offset[sl], self.eps[sl], None if self.drift is None else self.drift[sl],
                     None if self.stuck is None else tuple(t[sl] for t in self.stuck))


_TABLES: dict = {}


def _quantile_table(dtype) -> torch.Tensor:
    """(K_MAX + 1, len(LEVELS)) quantiles in µS (row 0 unused: no drift)."""
    key = ("q", dtype)
    if key not in _TABLES:
        t = torch.zeros(K_MAX + 1, len(LEVELS), dtype=dtype)
        for k, q in DRIFT_QUANTILES_US.items():
            t[k] = torch.tensor(q, dtype=dtype)
        _TABLES[key] = t
    return _TABLES[key]


def _sigma_dict(dtype) -> torch.Tensor:
    key = ("s", dtype)
    if key not in _TABLES:
        t = torch.full((K_MAX + 1,), math.inf, dtype=dtype)
        for k, s in SIGMA_DICT_US.items():
            t[k] = s
        _TABLES[key] = t
    return _TABLES[key]


#: the model as published
DROLET2023 = Drolet2023Model()
