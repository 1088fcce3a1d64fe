"""Mapping of neural-network weights onto crossbar conductances, and back.

A weight matrix ``W`` of shape ``(n_out, n_in)`` is stored on a crossbar whose **rows are inputs**
and **columns are outputs**.  Conductances are in siemens throughout; ``scale`` is in weight units
per siemens, so ``w = scale * (G - G_other)``.

Modes
-----
* ``differential``: two devices per weight, ``w = scale * (G+ - G-)``; layout ``(n_in, 2*n_out)``
  with ``G+`` of output ``o`` in column ``2*o`` and ``G-`` in column ``2*o + 1``.  ``split`` picks
  ``one-sided`` (the unused device of a pair sits at ``g_min``) or ``balanced``
  (``G± = g_mid ± w/(2*scale)``).  ``|w| = w_max`` maps to ``|G+ - G-| = g_max - g_min``.
* ``reference``: one device per weight plus one shared reference column at
  ``g_ref = (g_min + g_max)/2`` as the last column, ``w = scale * (G - G_ref)``; layout
  ``(n_in, n_out + 1)``.  ``|w| = w_max`` maps to ``|G - G_ref| = (g_max - g_min)/2``.

Scales
------
By default one ``w_max`` (and ``scale``) serves the whole matrix.  With ``per_output=True`` every
output has its own, ``w_max[o] = max_i |W[o, i]|``: each column (pair) uses the full window, so an
output whose weights are small is not left with a sliver of it, where the conductance errors of a
transfer (absolute, in S) would be large in its own weight units.  The periphery then multiplies
each column's current by its own gain ``scale[o]`` (a per-column digital gain after the ADC), and
``scale`` / ``w_max`` are arrays of shape ``(n_out,)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MODES = ("differential", "reference")
SPLITS = ("one-sided", "balanced")


class MappingError(ValueError):
    """Weights or conductances cannot be mapped (bad shape, non-finite, out of range)."""


def _us(x: float) -> str:
    """Format a conductance in siemens as µS text (no unit)."""
    v = float(x) * 1e6
    return f"{v:.1f}" if abs(v) >= 0.1 else f"{v:.3g}"


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _nonfinite(a: np.ndarray, what: str, allow_nan: bool = False) -> None:
    """Raise MappingError naming NaN/Inf and the first offending index."""
    for bad, name in ((np.isnan(a), "NaN"), (np.isinf(a), "Inf")):
        if name == "NaN" and allow_nan:
            continue
        if bad.any():
            raise MappingError(f"{what} contain {name} at index {_first(bad)}")


def _as_real_array(x, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor (possibly requiring grad / on GPU)
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if np.iscomplexobj(a):
        raise MappingError(f"{what} must be real, got complex dtype {a.dtype}")
    try:
        return a.astype(float)
    except (TypeError, ValueError) as e:
        raise MappingError(f"{what} must be numeric, got dtype {a.dtype}") from e


def check_targets(targets, g_min: float, g_max: float, shape: tuple[int, ...] | None = None,
                  *, allow_nan: bool = False, atol: float = 0.0) -> np.ndarray:
    """Validate conductance targets (S, any ndim) against the window ``[g_min - atol, g_max + atol]``.

    NaN means "cell not targeted" and is accepted only when ``allow_nan``; Inf is always rejected.
    ``shape``, if given, must equal ``targets.shape`` exactly.  Returns the targets as a float array.
    """
    t = _as_real_array(targets, "targets")
    if shape is not None and t.shape != tuple(shape):
        raise MappingError(f"targets have shape {t.shape}, expected {tuple(shape)}")
    _nonfinite(t, "targets", allow_nan=allow_nan)
    with np.errstate(invalid="ignore"):
        out = (t < g_min - atol) | (t > g_max + atol)  # NaN compares False -> accepted here
    if out.any():
        idx = _first(out)
        raise MappingError(
            f"target {_us(t[idx])} µS at {idx} is outside the programming window "
            f"{float(g_min) * 1e6:g}–{float(g_max) * 1e6:g} µS")
    return t


def _per_output_column(x):
    """A float as it is; one value per output ``(n_out,)`` as a column ``(n_out, 1)``."""
    return x if np.ndim(x) == 0 else np.reshape(x, (-1, 1))


@dataclass(frozen=True, eq=False)
class MappedWeights:
    """Result of :meth:`ConductanceMapping.encode`.

    ``targets``: conductance targets in S, shape ``(n_in, n_cols)``; ``scale``: weight units per S;
    ``w_max``: weight magnitude mapped to the full range — floats, or arrays ``(n_out,)`` (one per
    output) for a ``per_output`` mapping.
    """

    targets: np.ndarray
    scale: float | np.ndarray
    w_max: float | np.ndarray
    n_in: int
    n_out: int
    mode: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.targets.shape

    def decode(self, conductances) -> np.ndarray:
        """Effective weights, shape ``(..., n_out, n_in)``, from conductances (S) of shape
        ``(..., n_in, n_cols)`` (leading axes are e.g. a batch of chips)."""
        g = _as_real_array(conductances, "conductances")
        if g.ndim < 2 or g.shape[-2:] != self.targets.shape:
            raise MappingError(f"conductances must have shape (..., {self.targets.shape[0]}, "
                               f"{self.targets.shape[1]}), got {g.shape}")
        _nonfinite(g, "conductances")
        if self.mode == "differential":
            dg = g[..., 0::2] - g[..., 1::2]
        else:
            dg = g[..., :self.n_out] - g[..., self.n_out:]
        return self.scale_column * np.swapaxes(dg, -1, -2)

    @property
    def scale_column(self) -> float | np.ndarray:
        """``scale`` shaped to multiply an ``(..., n_out, n_in)`` array: a float, or ``(n_out, 1)``."""
        return _per_output_column(self.scale)

    @property
    def w_max_column(self) -> float | np.ndarray:
        """``w_max`` shaped like :attr:`scale_column`."""
        return _per_output_column(self.w_max)


@dataclass(frozen=True)
class ConductanceMapping:
    """Linear weight -> conductance mapping within the programming window ``[g_min, g_max]`` (S).

    ``w_max=None`` uses ``max|W|`` of the matrix being encoded (1.0 if it is all zero); with
    ``per_output`` the maximum of each output's weights (row of ``W``), and a given ``w_max`` may
    then be one value per output.  With ``clip=False`` a weight beyond ``±w_max`` raises
    :class:`MappingError`; with ``clip=True`` it is clipped.
    """

    g_min: float = 100e-6
    g_max: float = 500e-6
    mode: str = "differential"
    split: str = "one-sided"
    w_max: float | tuple[float, ...] | None = None
    clip: bool = False
    per_output: bool = False

    def __post_init__(self) -> None:
        for name in ("g_min", "g_max"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v) and v > 0):
                raise MappingError(f"{name} must be a finite positive conductance in S, got {v!r}")
        if not self.g_min < self.g_max:
            raise MappingError(f"g_min ({self.g_min!r} S) must be < g_max ({self.g_max!r} S)")
        if self.mode not in MODES:
            raise MappingError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.split not in SPLITS:
            raise MappingError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.w_max is not None:
            w = np.asarray(self.w_max, dtype=float)
            if w.ndim > 1 or w.size == 0 or not (np.isfinite(w).all() and (w > 0).all()):
                raise MappingError(f"w_max must be finite and > 0 (or None), got {self.w_max!r}")
            if w.ndim == 1 and not self.per_output:
                raise MappingError("one w_max per output needs per_output=True")

    @property
    def g_mid(self) -> float:
        """Mid-window conductance (S); the reference column's value in ``reference`` mode."""
        return 0.5 * (self.g_min + self.g_max)

    def layout_shape(self, n_out: int, n_in: int) -> tuple[int, int]:
        """Crossbar (rows, cols) used to store an ``(n_out, n_in)`` weight matrix."""
        return (n_in, 2 * n_out) if self.mode == "differential" else (n_in, n_out + 1)

    def scale_for(self, w_max):
        """Weight units per siemens for a given ``w_max`` (a float, or an array of them)."""
        span = self.g_max - self.g_min
        return w_max / (span if self.mode == "differential" else span / 2)

    def encode(self, weights) -> MappedWeights:
        """Map a real 2-D weight matrix ``(n_out, n_in)`` to conductance targets (S)."""
        w = _as_real_array(weights, "weights")
        if w.ndim != 2:
            raise MappingError(f"weights must be 2-D (n_out, n_in), got shape {w.shape}")
        _nonfinite(w, "weights")
        n_out, n_in = w.shape
        w_max = self._w_max(w)
        limit = w_max if np.ndim(w_max) == 0 else w_max[:, None]
        over = np.abs(w) > limit
        if over.any():
            if not self.clip:
                idx = _first(over)
                bound = float(np.broadcast_to(limit, w.shape)[idx])
                raise MappingError(f"weight {float(w[idx])!r} at {idx} exceeds w_max={bound!r} "
                                   "(set clip=True to clip)")
            w = np.clip(w, -limit, limit)
        scale = self.scale_for(w_max)
        wt = w.T  # (n_in, n_out)
        if self.mode == "differential":
            t = np.empty((n_in, 2 * n_out))
            if self.split == "one-sided":
                t[:, 0::2] = self.g_min + np.maximum(wt, 0.0) / scale
                t[:, 1::2] = self.g_min + np.maximum(-wt, 0.0) / scale
            else:
                t[:, 0::2] = self.g_mid + wt / (2 * scale)
                t[:, 1::2] = self.g_mid - wt / (2 * scale)
        else:
            t = np.empty((n_in, n_out + 1))
            t[:, :n_out] = self.g_mid + wt / scale
            t[:, n_out] = self.g_mid
        np.clip(t, self.g_min, self.g_max, out=t)  # float rounding only
        return MappedWeights(targets=t, scale=scale, w_max=w_max, n_in=n_in, n_out=n_out,
                             mode=self.mode)

    def _w_max(self, w: np.ndarray) -> float | np.ndarray:
        """The full-range weight: a float, or one per output (``per_output``)."""
        if not self.per_output:
            if self.w_max is not None:
                return float(self.w_max)
            m = float(np.abs(w).max()) if w.size else 0.0
            return m if m > 0 else 1.0
        if self.w_max is not None:
            given = np.asarray(self.w_max, dtype=float)
            if given.ndim == 1 and given.size != w.shape[0]:
                raise MappingError(f"{given.size} w_max values for {w.shape[0]} outputs")
            return np.broadcast_to(given, (w.shape[0],)).copy()
        m = np.abs(w).max(axis=1) if w.size else np.zeros(w.shape[0])
        return np.where(m > 0, m, 1.0)

    def decode(self, conductances, mapped: MappedWeights) -> np.ndarray:
        """Effective weights ``(..., n_out, n_in)`` from conductances (S) ``(..., n_in, n_cols)``,
        using the scale and layout recorded in ``mapped``."""
        if mapped.mode != self.mode:
            raise MappingError(f"mapped weights use mode {mapped.mode!r}, mapping is {self.mode!r}")
        return mapped.decode(conductances)
