"""Named chip presets: device physics + array parameters of a simulated crossbar.

``tio2-3it`` (default)
    Calibrated to the Sherbrooke 3IT passive TiO2 8×8 arrays (Drolet et al. 2023, figures in
    ``shared/data/tio2_3it_drift.json``; fitted numbers embedded here, no data file shipped):

    * window 100–500 µS inside a physical range 10–600 µS; stuck devices 0.5 % at LRS
      (N(573, 99) µS, the failure-data fit) and 0.5 % at HRS (U(10, 100) µS);
    * SET/RESET thresholds ±1.0 V with 10 % device-to-device CoV, so the lab's tuning recipe
      (start ±1.1 V, +20 mV steps, caps +2.1 / −2.4 V, 1 µs pulses) first moves a typical device with
      ~0.1 V overdrive (sub-µS steps: fine landing) and crosses the whole window in ~20–40 pulses
      as the amplitude ramps ((od/1 V)³ law, k = 110 µS at 1 V overdrive);
    * 30 % log-normal cycle-to-cycle noise, 20 % device-to-device rate spread, 0.1 % read noise,
      2 % mean post-write relaxation;
    * half-select disturbance is the same switching law at V/2: it appears only when the selected
      cell's amplitude exceeds twice a neighbour's threshold (the initial RESET, large moves, and
      the ramps on stuck cells), which is what drives the neighbour-drift table.
    ``benchmarks/calibrate_tio2.py`` prints the matched figures (residual σ_rel vs G after tuning,
    and neighbour drift σ versus the number of later-programmed cells on 8×8 arrays) next to the
    measured ones.

``ideal``
    No noise of any kind, no stuck devices, no device-to-device spread, linear I-V, ideal lines.

``asymmetric``
    For in-situ training studies (Onen et al. 2022): linear soft bounds with SET steps 1.6× the
    RESET steps, so pulses drift every device toward a symmetry point
    g_sp = (k_set·g_max + k_reset·g_min)/(k_set + k_reset) ≈ 371 µS; moderate noise, no stuck devices.

Line resistance: ``r_line`` is per segment (Ω).  See the note on :data:`TIO2_3IT_R_LINE`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from programming.crossbar import SafetyLimits

from .device import DeviceParams

#: Line resistance of the ``tio2-3it`` preset, Ω per segment.  With the default grounded-unselected
#: read, every cell of the selected row conducts, and the row's IR drop biases reads by
#: roughly r·I_row·C/2: at 2 Ω on an 8×8 TiO2 array (100–500 µS) that is ~2 %, on 64×64 tens of %,
#: far beyond a 1 % write-verify tolerance.  The preset therefore keeps ideal lines and the
#: simulator exposes ``r_line`` (``--line-resistance`` on the command line) for IR-drop studies.
TIO2_3IT_R_LINE = 0.0


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
                    stuck_lrs_frac=0.0, stuck_hrs_frac=0.0),
        r_line=0.0,
    ),
    "asymmetric": ChipParams(
        "asymmetric",
        _TIO2.with_(k_set=176e-6, k_reset=110e-6, p_set=1.0, p_reset=1.0, c2c_sigma=0.1,
                    vth_cov=0.05, k_cov=0.1, stuck_lrs_frac=0.0, stuck_hrs_frac=0.0),
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
