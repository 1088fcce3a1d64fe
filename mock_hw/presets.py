"""Named chip presets: device physics + array parameters of a simulated crossbar.

``tio2-3it`` (default)
    Calibrated to the Sherbrooke 3IT passive TiO2 8×8 arrays (Drolet et al. 2023, figures in
    ``shared/data/tio2_3it_drift.json``; fitted numbers embedded here, no data file shipped):

    * window 100–500 µS inside a physical range 10–600 µS; stuck devices 0.5 % at LRS
      (N(573, 99) µS, the failure-data fit) and 0.5 % at HRS (U(10, 100) µS);
    * SET/RESET thresholds ±1.0 V with 10 % device-to-device CoV (the low end of the measured
      10–25 %: a wider spread gives low-threshold devices steps too coarse to land within 1 % at the
      recipe's start amplitude, and heavy-tailed half-select damage);
    * switching step k·(od/1 V)²·(w/1 µs)^0.6 with k = 300 µS at full window, so the lab recipe
      (start ±1.1 V, +20–50 mV steps, caps +2.1 / −2.4 V, 1 µs pulses) first moves a typical device
      by ~1–3 µS (0.1 V overdrive: fine landing) and crosses the window in ~10–30 pulses as the
      amplitude ramps;
    * 30 % log-normal cycle-to-cycle noise, 20 % device-to-device rate spread, 0.1 % read noise,
      2 % mean post-write relaxation;
    * half-select disturbance is the same switching law at V/2: it appears only when the selected
      cell's amplitude exceeds twice a neighbour's threshold — the initial RESET, large moves, and
      ramps on stuck cells.

    Matched (``benchmarks/calibrate_tio2.py``, 8×8 arrays programmed cell by cell, column-major):
    the residual spread right after tuning, σ_rel ≈ 0.44 % across 100–500 µS (measured
    0.60 % → 0.41 % across the same bins: same level, our spread does not fall with G); the
    neighbour drift after one and two later-programmed cells, σ ≈ 4 and 9 µS with a negative mean
    (measured 6.7 and 8.2 µS) when the initial RESET is −2.2 V (V/2 = −1.1 V half-selects the
    neighbours just past their RESET threshold).  The smooth growth of the measured drift with k
    (σ ≈ 18 µS at k = 30) comes from the relaxation under programming activity of
    :mod:`mock_hw.device` (``disturb_*``): ``fit_variability`` on 8×8 chips tuned cell by cell,
    column-major, one pass, counting all later cells, recovers the measured σ(k) = 6.78 µS·k^0.26
    within 20 % at k = 1, 5, 15, 30, while re-verify passes repair it (fine pulses below 2 V do
    not advance the relaxation; it saturates after 46 events).  The cost is pulses: on a 64×64
    array with the initial RESET nearly every cell is re-tuned (median ~29 pulses per cell, was 19).

    Forming (chips made ``pristine``): unformed devices at 1 µS, forming voltage 2.2 V ± 7 %
    (positive; below the default v_max = 3 V, above a V/2 half-select), as-formed state
    U(150, 450) µS.  Retention: power-law relaxation toward g_min with τ = 1 s and a per-device
    exponent ν log-normal around 0.004 (50 % spread) — on average ~1.8 %, ~3.7 % and ~5.4 % of the distance to
    g_min lost in 10², 10⁴ and 10⁶ s (see :mod:`mock_hw.aging`; not fitted to the 3IT data).

``ideal``
    No noise of any kind, no stuck devices, no device-to-device spread (forming voltages
    included), no retention loss, no relaxation under programming activity, linear I-V, ideal
    (zero-resistance) lines.

``asymmetric``
    For in-situ training studies (Onen et al. 2022): linear soft bounds with SET steps 1.6× the
    RESET steps, so pulses drift every device toward a symmetry point
    g_sp = (k_set·g_max + k_reset·g_min)/(k_set + k_reset) ≈ 373 µS; moderate noise, no stuck devices,
    no relaxation under programming activity.

Line resistance: ``r_line`` is per segment (Ω).  ``tio2-3it`` has realistic lines, 0.67 Ω per
segment, derived from a line geometry (700 nm wide lines of the 3IT process, assumed pitch, thickness
and resistivity; see :data:`TIO2_3IT_R_LINE`); ``ideal`` keeps perfect lines; ``asymmetric`` (an
in-situ training study of device asymmetry) keeps ideal lines too.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from programming.crossbar import SafetyLimits

from .device import DeviceParams

#: Line resistance of the ``tio2-3it`` preset, Ω per segment (rows and columns alike), derived
#: from a line geometry, not measured: R = ρ·pitch/(width·thickness) with
#:
#: * width 700 nm — the electrode width of the 3IT CMOS-compatible passive TiO2 crossbars
#:   (El Mesoudy et al., Microelectron. Eng. 2022, arXiv:2106.11808);
#: * pitch 1.4 µm (line = space) and thickness 150 nm — assumed, typical of that process;
#: * ρ = 5·10⁻⁸ Ω·m — an assumed thin-film resistivity for an Al-based line with its barrier
#:   (bulk Al 2.65·10⁻⁸ Ω·m; thin lines and Ti/TiN barriers roughly double it).
#:
#: 5e-8 · 1.4e-6 / (0.7e-6 · 1.5e-7) = 0.67 Ω.  With the default grounded-unselected read every
#: cell of the selected row loads the row line, so even this biases reads (random 100–500 µS
#: targets, mean bias: −1 % on 8×8, −4 % on 16×16, −12 % on 32×32, −34 % on 64×64): the tuner
#: corrects its reads through a line model with an estimate measured by ``xbar calibrate-lines``
#: (``TunerConfig.line_resistance``).  A bench adds its relay and lead
#: resistance in series with every line (:data:`mock_hw.bench_physics.R_RELAY_PATH`).
TIO2_3IT_R_LINE = 0.67


@dataclass(frozen=True)
class SimTiming:
    """Instrument-time model of the simulated bench, s: a read (SMU integration plus settling) and
    the per-pulse overhead added to the pulse width."""

    read_s: float = 1e-3
    pulse_overhead_s: float = 2e-4


@dataclass(frozen=True)
class ChipParams:
    """Everything that defines a simulated chip except its size and seed."""

    name: str
    device: DeviceParams
    r_line: float = 0.0
    programming_window: tuple[float, float] = (100e-6, 500e-6)
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    timing: SimTiming = field(default_factory=SimTiming)
    v_read: float = 0.2

    def __post_init__(self):
        lo, hi = self.programming_window
        if not (self.device.g_min <= lo < hi <= self.device.g_max):
            raise ValueError("programming_window must lie inside the device's physical range")
        if self.r_line < 0:
            raise ValueError(f"r_line must be >= 0 Ω, got {self.r_line}")

    def with_(self, **changes) -> "ChipParams":
        return replace(self, **changes)


_TIO2 = DeviceParams()

PRESETS: dict[str, ChipParams] = {
    "tio2-3it": ChipParams("tio2-3it", _TIO2, r_line=TIO2_3IT_R_LINE),
    "ideal": ChipParams(
        "ideal",
        _TIO2.with_(beta=0.0, vth_cov=0.0, k_cov=0.0, c2c_sigma=0.0, relax=0.0, read_noise=0.0,
                    stuck_lrs_frac=0.0, stuck_hrs_frac=0.0, v_form_cov=0.0, retention_nu=0.0,
                    disturb_sigma=0.0, disturb_mu=0.0),
        r_line=0.0,
    ),
    "asymmetric": ChipParams(
        "asymmetric",
        _TIO2.with_(k_set=176e-6, k_reset=110e-6, p_set=1.0, p_reset=1.0, c2c_sigma=0.1,
                    vth_cov=0.05, k_cov=0.1, stuck_lrs_frac=0.0, stuck_hrs_frac=0.0,
                    disturb_sigma=0.0, disturb_mu=0.0),
        r_line=0.0,
    ),
}

DEFAULT_PRESET = "tio2-3it"


def get_preset(name: str) -> ChipParams:
    """The preset called ``name``; a clear error lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown chip preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None
