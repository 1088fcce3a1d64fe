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

#: peak memory of a simulated chip during a tune, bytes per cell (measured with tracemalloc on a
#: 64x64 tio2-3it chip: ~0.5 KiB; doubled for headroom) and with line resistance (nodal analysis:
#: two nodes per crosspoint and the sparse factor's fill-in)
SIM_BYTES_PER_CELL = 1024
SIM_BYTES_PER_CELL_RLINE = 8192


def memory_cap() -> int:
    """The most memory a run may plan to use, bytes: half the machine's physical memory."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 * 2**30


def check_memory(size: tuple[int, int], n_chips: int = 1, r_line: float | None = None) -> int:
    """Estimated bytes for a simulated chip of ``size`` x ``n_chips``; ValueError above
    :func:`memory_cap` (before anything is allocated)."""
    per_cell = SIM_BYTES_PER_CELL_RLINE if r_line else SIM_BYTES_PER_CELL
    need = int(size[0]) * int(size[1]) * max(int(n_chips), 1) * per_cell
    cap = memory_cap()
    if need > cap:
        raise ValueError(f"--size {size[0]}x{size[1]}" + (f" x {n_chips} chips" if n_chips > 1 else "")
                         + f" would need about {_gib(need)} of memory; this machine allows {_gib(cap)} "
                           f"(half its RAM): choose a smaller array")
    return need


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def read_npy(path: str | Path, what: str, shapes: tuple[tuple[int, ...], ...] | None = None,
             max_bytes: int | None = None) -> np.ndarray:
    """A plain numeric ``.npy`` array, checked from its header before anything is allocated:
    refused (one ValueError line naming ``what`` and the file) when it is not a .npy file, holds
    Python objects (never unpickled), has a shape not in ``shapes``, or is larger than
    ``max_bytes`` (default :func:`memory_cap`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)                  # the header only: no allocation
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise ValueError(f"{what} {path} is not a .npy array file ({_first_line(exc)}); "
                         f"save the array with numpy.save") from None
    if dtype.hasobject:
        raise ValueError(f"{what} {path} holds Python objects, which xbarlab never loads; save plain "
                         f"numbers (a float array) with numpy.save")
    if dtype.kind not in "fiub":
        raise ValueError(f"{what} {path} holds {dtype} values; expected numbers (float, in SI units)")
    if shapes is not None and tuple(shape) not in shapes:
        raise ValueError(f"{what} {path} has shape {tuple(shape)}; expected "
                         + " or ".join(str(s) for s in shapes))
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > (memory_cap() if max_bytes is None else max_bytes):
        raise ValueError(f"{what} {path} declares {_gib(nbytes)} of data ({tuple(shape)}); too large")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{what} {path} is damaged ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The first line of a library's message, without its advice (numpy suggests allow_pickle)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(". ")[0].split("allow_pickle")[0].rstrip(" ;,:")[:120]


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


def planned_limits(preset: str | None = None, station=None, on_instrument: bool = False):
    """The :class:`~programming.crossbar.SafetyLimits` of the chip a run will open, known before
    opening it: the ``station``'s (a file or a loaded station; pulse widths narrowed to what its
    drive instrument sources; ``on_instrument``: the 2600B's, whose script writes, never a pulse
    generator's), else the simulated ``preset``'s."""
    if station is not None:
        from instruments.hardware_crossbar import station_limits

        st = station if hasattr(station, "limits") else load_station(station)
        return station_limits(st.without_pulse_generator() if on_instrument else st)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[preset].limits


def open_chip(chip: str, size: tuple[int, int], preset: str, seed: int, n_chips: int = 1,
              r_line: float | None = None, station: str | Path | None = None, pristine: bool = False,
              i_compliance: float | None = None, on_instrument: bool = False) -> Crossbar:
    """A crossbar: ``--station FILE`` opens the bench it describes (a real one, or the mock bench);
    otherwise ``--chip sim`` is the simulated TiO2 chip (the embedded default).  ``pristine``: a
    simulated chip whose devices still need forming.  ``i_compliance`` (A) lowers the current
    compliance below the chip's or station's limit (never raises it).  ``on_instrument``: the
    bench for the 2600B's write-verify script, which writes with its SMU: a station's pulse
    generator is left out (:meth:`~instruments.station.Station.without_pulse_generator`), so the
    widths, the schedule's probe pulses and the routing are the SMU's."""
    if i_compliance is not None and not (np.isfinite(i_compliance) and i_compliance > 0):
        raise ValueError(f"compliance must be a positive current in A, got {i_compliance!r}")
    if r_line is not None and not (np.isfinite(r_line) and r_line >= 0):
        raise ValueError(f"--line-resistance {r_line!r}: must be a finite resistance >= 0 Ω")
    if station is not None:
        from dataclasses import replace

        from instruments.hardware_crossbar import HardwareCrossbar

        st = load_station(station)
        if on_instrument:
            st = st.without_pulse_generator()
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
    check_memory(size, n_chips, r_line)
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
    return read_targets(spec, xb.shape, xb.n_chips, (lo, hi))


def read_targets(spec: str, shape: tuple[int, int], n_chips: int, window: tuple[float, float]) -> np.ndarray:
    """A targets file (``.npy``, conductances in S, the array's ``shape`` or one per chip) checked
    against the programming ``window`` (S); one ValueError line naming the file otherwise, with a
    unit hint when the values look like µS rather than S."""
    path = Path(spec)
    if path.suffix != ".npy":
        raise ValueError(f"--targets must be 'random' or a .npy file of conductances in S, got {spec!r}")
    shape = tuple(int(x) for x in shape)
    data = read_npy(path, "targets file", (shape, (int(n_chips), *shape)))
    if data.dtype.kind == "f" and data.size and np.isnan(data).all():
        raise ValueError(f"targets file {spec}: no cell has a finite target (NaN marks a cell not to tune)")
    try:
        return check_targets(np.broadcast_to(data, (n_chips, *shape)), *window, allow_nan=True)
    except ValueError as exc:
        finite = np.abs(data[np.isfinite(data)]) if data.dtype.kind == "f" else np.abs(data).ravel()
        hint = ""
        if finite.size and np.median(finite) > 1e-2:
            med = float(np.median(finite))
            hint = (f"; target files hold siemens (S) and these values look like µS ({med:g} µS would be "
                    f"{med * 1e-6:g} S): divide them by 1e6")
        raise ValueError(f"targets file {spec}: {exc}{hint}") from None
