"""Forming and retention of TiO2 devices: pure functions over numpy arrays (SI units).

Forming voltages (:func:`sample_forming_voltage`)
-------------------------------------------------
Each device's forming voltage is drawn once at manufacture, Normal with mean ``v_form_mean`` (V)
and coefficient of variation ``v_form_cov``, truncated at ±4σ and floored at half the mean.  With
the defaults (2.2 V, 7 %) every forming voltage lies in 1.58–2.82 V: above the 1.5 V a V/2
half-select reaches at the default v_max of 3 V, and below v_max.  The forming event itself is
part of the switching path (:func:`mock_hw.device.switch_at`).

Retention (:func:`retention_relax`)
-----------------------------------
A written device relaxes toward a rest conductance ``g_rest`` with a power law in the time since it
was last written (its *age* a, s):

    g(a₁) = g_rest + (g(a₀) − g_rest) · ((1 + a₁/τ) / (1 + a₀/τ))^(−ν)

The ratio form composes exactly over successive waits (the factors telescope), so waiting 10 s
twice is the same as waiting 20 s once.  ν is per device (log-normal around ``retention_nu`` with
coefficient of variation ``retention_nu_cov``), drawn at manufacture by :func:`sample_retention_nu`.
With ν = 0.004 and τ = 1 s a device loses ~1.8 % of its distance to g_rest in 10² s, ~3.6 % in
10⁴ s and ~5.4 % in 10⁶ s.
"""
from __future__ import annotations

import numpy as np

from .device import DeviceParams


def sample_forming_voltage(shape, p: DeviceParams, rng: np.random.Generator) -> np.ndarray:
    """Per-device forming voltages, V (positive polarity): Normal(v_form_mean, cov·mean) truncated
    at ±4σ, floored at half the mean."""
    v = p.v_form_mean * (1.0 + p.v_form_cov * np.clip(rng.standard_normal(shape), -4.0, 4.0))
    return np.maximum(v, 0.5 * p.v_form_mean)


def sample_retention_nu(shape, p: DeviceParams, rng: np.random.Generator) -> np.ndarray:
    """Per-device retention exponents ν (dimensionless): log-normal with mean ``retention_nu`` and
    coefficient of variation ``retention_nu_cov``.  Always draws (so the stream does not depend on
    the values); all zero when ``retention_nu`` is 0."""
    sig = np.sqrt(np.log1p(p.retention_nu_cov ** 2))
    return p.retention_nu * np.exp(sig * rng.standard_normal(shape) - 0.5 * sig * sig)


def retention_factor(age_before, age_after, nu, tau: float) -> np.ndarray:
    """The factor ((1 + a₁/τ)/(1 + a₀/τ))^(−ν) by which a device's distance to g_rest shrinks
    while its age goes from ``age_before`` to ``age_after`` (s); 1 where ν = 0 or a₁ = a₀."""
    ratio = (1.0 + np.asarray(age_after, float) / tau) / (1.0 + np.asarray(age_before, float) / tau)
    return np.exp(-np.asarray(nu, float) * np.log(ratio))


def retention_relax(g, age_before, age_after, nu, tau: float, g_rest: float, mask=None) -> np.ndarray:
    """New conductances (S) of devices ``g`` (S) whose age goes from ``age_before`` to
    ``age_after`` (s), with exponents ``nu`` and time constant ``tau`` (s), relaxing toward
    ``g_rest`` (S).  Devices outside ``mask`` (stuck or unformed ones) are left alone."""
    g = np.asarray(g, float)
    new = g_rest + (g - g_rest) * retention_factor(age_before, age_after, nu, tau)
    return new if mask is None else np.where(mask, new, g)
