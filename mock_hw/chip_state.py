"""Save and restore a simulated chip's complete state (resume after a crash).

A state is a ``dict[str, np.ndarray]`` (plain arrays only, so ``np.load(..., allow_pickle=False)``
reads it back):

* ``meta`` — 0-d unicode array, JSON: format version, preset name, shape, ``n_chips``, and the
  device parameters and line resistance (a state only loads into a chip with the same physics);
* ``g`` — conductances, S; ``t_written`` — virtual time each device was last written, s;
  ``n_disturb`` — half-select disturb events each device saw since it was last programmed;
  ``clock`` — virtual time, s (0-d);
* population: ``vth_set``, ``vth_reset`` (V), ``rate``, ``stuck``, ``stuck_g`` (S), ``v_form`` (V),
  ``unformed`` (bool; all False on a formed chip), ``nu``;
* ``n_read_ops``, ``n_pulse_ops`` — op counters (0-d int64);
* ``rng_state`` — 0-d unicode array, JSON of the run-time RNG's bit-generator state;
* ``warm_chip``, ``warm_pattern``, ``warm_scale``, ``warm_x`` — only on resistive lines
  solved by line sweeps: the warm starts the line solver keeps (a swept solve's answer depends on
  its start, to its tolerance: :meth:`mock_hw.nodal.LineSolver.kept_state`).

After :func:`load_chip_state_dict` the chip produces exactly the reads, pulses and waits the saved
chip would have.

On disk (format 2) :func:`save_chip_state` writes two ``.npz`` files, each atomically (``.tmp``,
fsync, ``os.replace``): the static population (``vth_set``, ``vth_reset``, ``rate``, ``stuck``,
``stuck_g``, ``v_form``, ``nu``: about 30 MB of a 10 000-chip batch of 8x8, which a tune never
changes) in ``STEM.population-DIGEST.npz`` next to ``path``, named by the CRC-32 of each of its
arrays, and everything else in ``path``, whose ``meta`` names that file and its digests.  A save
whose population has the digests of a file already there writes only ``path``; a changed one
(forming changes ``unformed``, which stays in ``path``; anything that replaces or edits a
population array) gets a new file, written before ``path``, so a crash between the two writes
leaves the old ``path`` with its own population file; files no longer named by ``path`` are
removed after it is replaced.  :func:`load_chip_state` checks the population file's digests, and
still reads format 1 (one file holding the population too).
"""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np

from programming.durable import fsync

FORMAT_VERSION = 2
#: the formats :func:`load_chip_state` reads: 1 (before stop 24: the population inside the one
#: file, as :func:`chip_state_dict` returns it) stays readable, so run folders saved by earlier
#: versions still resume and serve as ``--chip-from``
READABLE_VERSIONS = (1, FORMAT_VERSION)
_POPULATION = ("vth_set", "vth_reset", "rate", "stuck", "stuck_g", "v_form", "unformed", "nu")
#: the population arrays saved in their own file (``unformed`` changes as devices form: in the main one)
_STATIC = tuple(n for n in _POPULATION if n != "unformed")
_POP_TAG = ".population-"
_CELL_ARRAYS = ("g", "t_written", "n_disturb") + _POPULATION


def _meta(xb) -> dict:
    return {"version": FORMAT_VERSION, "preset": xb.params.name, "shape": list(xb.shape),
            "n_chips": xb.n_chips, "device": repr(xb.params.device), "r_line": xb.params.r_line}


def chip_state_dict(xb, copy: bool = True) -> dict[str, np.ndarray]:
    """The complete state of the simulated crossbar ``xb`` (copies), see the module docstring.
    ``copy=False``: the chip's own arrays, for a caller that only reads them before the chip
    changes (:func:`save_chip_state`: a 10 000-chip batch of 8x8 holds about 47 MB of them)."""
    pop = xb.population
    take = (lambda a: np.array(a, copy=True)) if copy else np.asarray
    out = {"meta": np.array(json.dumps(_meta(xb))), "g": take(xb._g), "t_written": take(xb._t_written),
           "n_disturb": take(xb._n_disturb),
           "clock": np.array(float(xb._clock)), "n_read_ops": np.array(xb.n_read_ops, np.int64),
           "n_pulse_ops": np.array(xb.n_pulse_ops, np.int64),
           "rng_state": np.array(json.dumps(xb._rng.bit_generator.state))}
    for name in _POPULATION:
        value = getattr(pop, name)
        if name == "unformed" and value is None:
            value = np.zeros(xb._g.shape, bool)
        out[name] = take(value)
    if xb._lines is not None:
        out.update(xb._lines.kept_state())
    return out


def load_chip_state_dict(xb, state: dict) -> None:
    """Restore ``state`` (from :func:`chip_state_dict`) into ``xb``.  Raises ValueError, changing
    nothing, when a key is missing or the preset, shape, ``n_chips`` or physics differ."""
    missing = [k for k in ("meta", "clock", "n_read_ops", "n_pulse_ops", "rng_state") + _CELL_ARRAYS
               if k not in state]
    if missing:
        raise ValueError(f"chip state lacks {', '.join(missing)}")
    try:
        meta = json.loads(str(np.asarray(state["meta"])[()]))
        rng_state = json.loads(str(np.asarray(state["rng_state"])[()]))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"chip state metadata is unreadable: {exc}") from None
    mine = _meta(xb)
    if meta.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"chip state format {meta.get('version')!r}, expected one of "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    for key, what in (("preset", "preset"), ("shape", "shape"), ("n_chips", "n_chips")):
        if meta.get(key) != mine[key]:
            raise ValueError(f"chip state is for {what} {meta.get(key)!r}, this chip has {mine[key]!r}")
    for key, what in (("device", "device parameters"), ("r_line", "line resistance")):
        if meta.get(key) != mine[key]:
            raise ValueError(f"chip state was saved with different {what} (preset {mine['preset']!r})")
    full = xb._g.shape
    arrays = {}
    for name in _CELL_ARRAYS:
        arr = np.asarray(state[name])
        if arr.shape != full:
            raise ValueError(f"chip state array {name!r} has shape {arr.shape}, expected {full}")
        arrays[name] = np.array(arr, dtype=bool if name in ("stuck", "unformed") else float, copy=True, order="C")
    if not isinstance(rng_state, dict) or rng_state.get("bit_generator") != xb._rng.bit_generator.state["bit_generator"]:
        raise ValueError("chip state's RNG state is for a different bit generator")
    warm = {k: np.asarray(v) for k, v in state.items() if k.startswith("warm_")}
    if warm:
        x = warm.get("warm_x")
        if xb._lines is None or x is None or x.ndim != 4 or tuple(x.shape[1:]) != (2, *full[1:]) or \
                any(warm.get(k) is None or len(warm[k]) != len(x) for k in ("warm_chip", "warm_pattern", "warm_scale")):
            raise ValueError(f"chip state's line warm starts have shape {None if x is None else x.shape}, "
                             f"expected (n, 2, {full[1]}, {full[2]}) on resistive lines")
    # validated: apply
    xb._rng.bit_generator.state = rng_state
    xb._g, xb._t_written, xb._n_disturb = arrays.pop("g"), arrays.pop("t_written"), arrays.pop("n_disturb")
    if not arrays["unformed"].any():
        arrays["unformed"] = None
    for name, value in arrays.items():
        setattr(xb.population, name, value)
    xb._clock = float(np.asarray(state["clock"]))
    if xb._lines is not None:
        xb._lines.restore(warm)
    xb.n_read_ops = int(np.asarray(state["n_read_ops"]))
    xb.n_pulse_ops = int(np.asarray(state["n_pulse_ops"]))


def _digests(arrays: dict) -> dict[str, str]:
    """CRC-32 of each array's dtype, shape and bytes (hex), by name: tells whether a population
    changed since it was saved (a change escapes it with probability 2**-32 per array)."""
    out = {}
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        head = f"{a.dtype.str}{a.shape}".encode()
        out[name] = f"{zlib.crc32(a.data if a.size else b'', zlib.crc32(head)):08x}"
    return out


def _plain_name(name) -> bool:
    """Whether ``name``, a population file's name read from a saved state, names a file in the
    state's own folder (a string without a path separator: nothing elsewhere is opened)."""
    return isinstance(name, str) and "/" not in name and "\\" not in name


def _population_name(path: Path, digests: dict) -> str:
    return f"{path.stem}{_POP_TAG}{zlib.crc32(json.dumps(digests, sort_keys=True).encode()):08x}.npz"


def _write_npz(path: Path, arrays: dict) -> None:
    """``np.savez`` of ``arrays`` to ``path`` atomically: ``path.tmp`` first, flushed to disk, then
    renamed over ``path`` (the rename itself flushed) — a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        fsync(fh.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_chip_state(xb, path) -> Path:
    """Write ``xb.state_dict()`` to ``path`` (``.npz``) and its population file (see the module
    docstring), each atomically: a crash at any instant leaves a loadable pair, old or new."""
    path = Path(path)
    state = chip_state_dict(xb, copy=False)      # written before the chip changes: no copies
    static = {name: state.pop(name) for name in _STATIC}
    digests = _digests(static)
    name = _population_name(path, digests)
    side = path.parent / name
    if not _population_file_matches(side, digests):
        _write_npz(side, {**static, "crc32": np.array(json.dumps(digests, sort_keys=True))})
    meta = json.loads(str(state["meta"][()]))
    meta["population"] = {"file": name, "crc32": digests}
    state["meta"] = np.array(json.dumps(meta))
    _write_npz(path, state)
    prefix = path.stem + _POP_TAG
    for old in os.listdir(path.parent):          # population files no longer named by ``path``
        if old.startswith(prefix) and old != name and (old.endswith(".npz") or old.endswith(".npz.tmp")):
            try:
                os.unlink(path.parent / old)
            except OSError:
                pass
    return path


def _population_file_matches(side: Path, digests: dict) -> bool:
    """Whether ``side`` is a population file saved with ``digests`` (its ``crc32`` entry; the
    arrays themselves are checked when it is loaded)."""
    try:
        with np.load(side, allow_pickle=False) as data:
            return "crc32" in data.files and json.loads(str(data["crc32"][()])) == digests
    except (OSError, ValueError, KeyError):
        return False


def missing_population_file(path) -> str | None:
    """The name of the population file the state at ``path`` names when that file is missing
    (None when it is there, or the state names none or cannot be read: loading reports those)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            ref = json.loads(str(data["meta"][()])).get("population")
        name = ref["file"]
    except Exception:  # noqa: BLE001 - an unreadable state is reported by load_chip_state
        return None
    if not _plain_name(name):
        return None
    return None if (path.parent / name).is_file() else name


def load_chip_state(xb, path) -> None:
    """Restore a state written by :func:`save_chip_state` into ``xb`` (ValueError on mismatch,
    on a missing population file or on one whose arrays are not the ones saved)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        state = {k: data[k] for k in data.files}
    try:
        ref = json.loads(str(np.asarray(state["meta"])[()])).get("population")
    except (KeyError, json.JSONDecodeError, TypeError, AttributeError):
        ref = None
    if isinstance(ref, dict):
        name, digests = ref.get("file"), ref.get("crc32")
        if not _plain_name(name) or not isinstance(digests, dict):
            raise ValueError("chip state's population reference is unreadable")
        side = path.parent / name
        if not side.is_file():
            raise ValueError(f"chip state's population file {name} is missing")
        with np.load(side, allow_pickle=False) as data:
            static = {k: data[k] for k in _STATIC if k in data.files}
        if set(static) != set(_STATIC) or _digests(static) != digests:
            raise ValueError(f"chip state's population file {name} does not hold the population saved")
        state.update(static)
    xb.load_state_dict(state)
