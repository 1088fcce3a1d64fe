"""The one place that opens chips and stations: the simulated chip, or the bench a station file
describes (a real one or the mock bench); the limits of either known before opening it; and the
targets of a tune.  The command line, the window and the procedures all come here."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mock_hw.presets import PRESETS
from mock_hw.sim_chip import SimulatedCrossbar
from programming.crossbar import Crossbar
from programming.mapping import check_targets

CHIPS = ("sim",)


def parse_size(text: str) -> tuple[int, int]:
    """'64x64' → (64, 64); a clear error otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"array size must look like ROWSxCOLS (e.g. 8x8), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def load_station(path: str | Path):
    """The :class:`~instruments.station.Station` a station file describes (a bad file is refused
    with a ValueError naming what is wrong); nothing is connected."""
    from instruments.station import load_station as _load

    return _load(path)


def planned_limits(preset: str | None = None, station=None):
    """The :class:`~programming.crossbar.SafetyLimits` of the chip a run will open, known before
    opening it: the ``station``'s (a file or a loaded station; pulse widths narrowed to what its
    drive instrument sources), else the simulated ``preset``'s."""
    if station is not None:
        from instruments.hardware_crossbar import station_limits

        return station_limits(station if hasattr(station, "limits") else load_station(station))
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[preset].limits


def open_chip(chip: str, size: tuple[int, int], preset: str, seed: int, n_chips: int = 1,
              r_line: float | None = None, station: str | Path | None = None, pristine: bool = False,
              i_compliance: float | None = None) -> Crossbar:
    """A crossbar: ``--station FILE`` opens the bench it describes (a real one, or the mock bench);
    otherwise ``--chip sim`` is the simulated TiO2 chip (the embedded default).  ``pristine``: a
    simulated chip whose devices still need forming.  ``i_compliance`` (A) lowers the current
    compliance below the chip's or station's limit (never raises it)."""
    if i_compliance is not None and not (np.isfinite(i_compliance) and i_compliance > 0):
        raise ValueError(f"compliance must be a positive current in A, got {i_compliance!r}")
    if station is not None:
        from dataclasses import replace

        from instruments.hardware_crossbar import HardwareCrossbar

        st = load_station(station)
        if size[0] > st.rows or size[1] > st.cols:
            raise ValueError(f"--size {size[0]}x{size[1]} is larger than the station's {st.rows}x{st.cols} array")
        if i_compliance is not None:
            if i_compliance > st.limits.i_compliance:
                raise ValueError(f"compliance {i_compliance:g} A exceeds the station's limit "
                                 f"{st.limits.i_compliance:g} A")
            st = replace(st, limits=replace(st.limits, i_compliance=float(i_compliance)))
        return HardwareCrossbar(st)
    if chip != "sim":
        raise ValueError(f"unknown chip {chip!r}; available: {', '.join(CHIPS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(sorted(PRESETS))}")
    limits = None
    if i_compliance is not None:
        from dataclasses import replace

        base = PRESETS[preset].limits
        if i_compliance > base.i_compliance:
            raise ValueError(f"compliance {i_compliance:g} A exceeds the chip's limit {base.i_compliance:g} A")
        limits = replace(base, i_compliance=float(i_compliance))
    extra = {"pristine": True} if pristine else {}
    return SimulatedCrossbar(*size, n_chips=n_chips, preset=preset, seed=seed, r_line=r_line, limits=limits, **extra)


def make_targets(spec: str, xb: Crossbar, seed: int, block: tuple[int, int] | None = None) -> np.ndarray:
    """Targets (S) from ``random`` (uniform in the programming window, seeded; only the top-left
    ``block`` when given) or a ``.npy`` file of conductances in S with the array's shape (or one
    per chip)."""
    lo, hi = xb.programming_window
    if spec == "random":
        rng = np.random.default_rng([seed, 0x7A2])
        targets = rng.uniform(lo, hi, size=(xb.n_chips, *xb.shape))
        if block is not None and tuple(block) != xb.shape:
            keep = np.zeros(xb.shape, bool)
            keep[:block[0], :block[1]] = True
            targets[:, ~keep] = np.nan  # tune the top-left block of a larger bench array
        return targets
    path = Path(spec)
    if path.suffix != ".npy":
        raise ValueError(f"--targets must be 'random' or a .npy file of conductances in S, got {spec!r}")
    if not path.is_file():
        raise ValueError(f"targets file {spec} does not exist")
    data = np.load(path, allow_pickle=False)
    if data.shape not in (xb.shape, (xb.n_chips, *xb.shape)):
        raise ValueError(f"targets file {spec} has shape {data.shape}, the array is {xb.shape[0]}x{xb.shape[1]}"
                         + (f" with {xb.n_chips} chips" if xb.n_chips > 1 else ""))
    return check_targets(np.broadcast_to(data, (xb.n_chips, *xb.shape)), lo, hi, allow_nan=True)
