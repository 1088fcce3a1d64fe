"""Weight arrays on a crossbar for in-situ training: layout, analog reads and pulsed writes.

Everything here talks to the chip through the public :class:`~programming.crossbar.Crossbar` API
only (``mvm_plan`` over a read plan to read, ``pulse_counts`` over a colour plan or ``pulse`` to
write); the conductances are never set any other way.  Units are SI: siemens, volts, seconds.

Weight encoding (differential pairs)
------------------------------------
A logical weight matrix ``W`` of shape ``(n_in, n_out)`` (rows are inputs, as on the chip) is held
by ``n_in × 2·n_out`` devices: output ``o`` uses device column ``2o`` (G+) and ``2o + 1`` (G−), the
layout of :mod:`programming.mapping`'s differential mode, and

    w = scale · (G+ − G−) − w_ref                                      (scale in weight units / S)

``w_ref`` is a digital reference held in the periphery: zero for the arrays that carry the
network's weights, and the pair's measured symmetry point for the gradient-accumulating arrays of
Tiki-Taka and SHD (Gokmen & Haensch 2020 program a reference array to the symmetry point of A;
``w_ref`` plays that array's role).  A weight is moved *push-pull*: one "up" pulse is a SET pulse
(+V) on G+ and a RESET pulse (−V) on G−, one "down" pulse the reverse, so the pair responds
symmetrically around the point where both devices sit at their own symmetry points.

Tiles and layout
----------------
Each device matrix is cut into tiles of at most ``tile × tile`` devices, and every tile of every
array gets its own rows and its own columns of the chip (tiles sit block-diagonally).  Hence:

* a read drives only one tile's rows per input vector (all tiles' vectors go in one product, an
  ``mvm_plan`` over the layout's read plan: its needed currents, the fixed one-hot inputs and the
  rows the varying inputs drive, :mod:`programming.read_plan`), so unused devices elsewhere on
  those lines never add current; partial sums of tiles that split an array's inputs are added in
  the periphery;
* within a tile the devices split into ``tile`` *colours* ``(col − row) mod tile`` (tile-local
  indices) that share no row and no column, and distinct tiles share no line at all.  So one
  ``pulse`` call can carry one colour of every tile (each tile, and each chip, at its own point in
  its list of colours), the lanes of a call never share a line, and the simulated chip takes its
  fast V/2 path.  A device needing n pulses appears in n calls; a pass costs, over the tiles, the
  largest sum over colours of the colour's largest pulse count (``tile`` calls for one pulse each).
  A pass goes to the chip as one ``pulse_counts`` over the arrays' colour plan
  (:mod:`programming.colour_plan`), whose cells and pulse are checked once.
* a bench (``xb.preferred_parallel == 1``) works one cell at a time and switches relays whenever
  the cell changes: there one call carries every pulse of a pass, device after device, and a read
  passes the ``need`` mask of the tiles' columns (the read plan's), so the bench measures only
  those cells.

V/2 biasing: half-selected devices see ±amplitude/2, which must stay below the switching
thresholds (about ±1.0 V on the TiO2 presets, so amplitudes up to ~1.8 V).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from programming.crossbar import Crossbar, WriteScheme

#: a read of varying inputs on one chip wider than this many elements (input vectors × the larger of
#: rows and columns) goes to the chip as consecutive runs of its vectors of at most this size
#: (:meth:`ChipArrays._currents_in_chunks`): 512 KB per input and output, memory reused call after call,
#: where a whole evaluation set's 2 MB arrays are fresh memory on every call
READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Tile:
    """Devices ``[in0:in1] × [dev0:dev1]`` of an array, placed with their top-left device at chip
    cell ``(row0, col0)``."""

    in0: int
    in1: int
    dev0: int
    dev1: int
    row0: int
    col0: int


@dataclass(frozen=True, eq=False)
class WeightArray:
    """A logical ``n_in × n_out`` weight matrix held as differential pairs on the chip.

    ``rows``, ``cols``, ``colors``: chip row, chip column and pulse colour of every device, shape
    ``(n_in, 2·n_out)``.
    """

    name: str
    n_in: int
    n_out: int
    tiles: tuple[Tile, ...]
    rows: np.ndarray
    cols: np.ndarray
    colors: np.ndarray

    @property
    def n_dev(self) -> int:
        return 2 * self.n_out


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def required_shape(specs: Sequence[tuple[str, int, int]], tile: int | None) -> tuple[int, int]:
    """Chip rows and columns needed by arrays ``(name, n_in, n_out)`` cut into ``tile``-sized tiles
    (``None``: one tile per array)."""
    rows = cols = 0
    for _, n_in, n_out in specs:
        n_dev = 2 * n_out
        t_in, t_dev = (n_in, n_dev) if tile is None else (tile, tile)
        rows += n_in * len(_chunks(n_dev, t_dev))
        cols += n_dev * len(_chunks(n_in, t_in))
    return rows, cols


def layout_arrays(specs: Sequence[tuple[str, int, int]], chip_shape: tuple[int, int],
                  tile: int | None = 4) -> tuple[list[WeightArray], int]:
    """Place arrays ``(name, n_in, n_out)`` on a chip of ``chip_shape``; returns the arrays and the
    number of pulse colours.  Raises ValueError naming the needed size if the chip is too small."""
    if tile is not None and (int(tile) != tile or tile < 1):
        raise ValueError(f"tile must be a positive integer or None, got {tile!r}")
    for name, n_in, n_out in specs:
        if n_in < 1 or n_out < 1:
            raise ValueError(f"array {name} needs n_in, n_out >= 1, got {n_in}x{n_out}")
    need = required_shape(specs, tile)
    if need[0] > chip_shape[0] or need[1] > chip_shape[1]:
        what = ", ".join(f"{name} {n_in}x{n_out}" for name, n_in, n_out in specs)
        raise ValueError(f"chip of {chip_shape[0]}x{chip_shape[1]} is too small: the weight arrays ({what}; "
                         f"differential pairs, tile={tile}) need at least {need[0]}x{need[1]} devices")
    n_colors = max(max(n_in, 2 * n_out) for _, n_in, n_out in specs) if tile is None else int(tile)
    arrays, r0, c0 = [], 0, 0
    for name, n_in, n_out in specs:
        n_dev = 2 * n_out
        rows = np.empty((n_in, n_dev), np.intp)
        cols = np.empty((n_in, n_dev), np.intp)
        colors = np.empty((n_in, n_dev), np.intp)
        tiles = []
        t_in, t_dev = (n_in, n_dev) if tile is None else (tile, tile)
        for a, b in _chunks(n_in, t_in):
            for c, d in _chunks(n_dev, t_dev):
                tiles.append(Tile(a, b, c, d, r0, c0))
                li, lj = np.meshgrid(np.arange(b - a), np.arange(d - c), indexing="ij")
                rows[a:b, c:d] = r0 + li
                cols[a:b, c:d] = c0 + lj
                colors[a:b, c:d] = (lj - li) % n_colors
                r0 += b - a
                c0 += d - c
        arrays.append(WeightArray(name, n_in, n_out, tuple(tiles), rows, cols, colors))
    return arrays, n_colors


def check_pulse_settings(limits, *, v_in: float | None, amplitude: float, width: float,
                         where: str = "the chip's") -> None:
    """Refuse an input voltage (V; None: not known yet), write amplitude (V) or pulse width (s) that
    ``limits`` (:class:`~programming.crossbar.SafetyLimits`) forbid, naming the setting."""
    if v_in is not None and not (np.isfinite(v_in) and 0 < v_in <= limits.v_read_max):
        raise ValueError(f"input voltage v_in={v_in!r} V must be in (0, v_read_max={limits.v_read_max:g}] V "
                         f"({where} limits)")
    if not (np.isfinite(amplitude) and 0 < amplitude <= limits.v_max):
        raise ValueError(f"pulse amplitude {amplitude!r} V must be in (0, v_max={limits.v_max:g}] V ({where} limits)")
    if not (np.isfinite(width) and limits.width_min <= width <= limits.width_max):
        raise ValueError(f"pulse width {width!r} s outside {where} limits "
                         f"[{limits.width_min:g}, {limits.width_max:g}] s")


class ChipArrays:
    """The periphery of the weight arrays: analog reads through ``xb.mvm_plan`` and push-pull writes
    through ``xb.pulse_counts`` (``xb.pulse`` on a chip that works one cell at a time).

    Args:
        xb: the chip (all ``xb.n_chips`` chips are driven in lockstep, one network each).
        arrays, n_colors: from :func:`layout_arrays`.
        v_in: read / input voltage for an input of 1, V (``0 < v_in <= xb.limits.v_read_max``).
        scale: weight units per siemens.
        amplitude, width: the fixed write pulse, V (magnitude; SET +, RESET −) and s.

    Counters: ``pulses`` (per chip, device pulses sourced), ``pulse_calls``, ``mvm_calls``.
    """

    def __init__(self, xb: Crossbar, arrays: list[WeightArray], n_colors: int, *, v_in: float,
                 scale: float, amplitude: float, width: float):
        check_pulse_settings(xb.limits, v_in=v_in, amplitude=amplitude, width=width)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"weight scale must be a positive number of weight units per siemens, got {scale!r}")
        self.xb = xb
        self.arrays = {a.name: a for a in arrays}
        self.n_colors = n_colors
        self.v_in = float(v_in)
        self.scale = float(scale)
        self.amplitude = float(amplitude)
        self.width = float(width)
        self.window = tuple(float(g) for g in xb.programming_window)
        self.B = xb.n_chips
        self.pulses = np.zeros(self.B, np.int64)
        self.pulse_calls = 0
        self.mvm_calls = 0
        self._tables: dict = {}
        self._fixed_inputs: dict = {}     # the one-hot inputs (cached, never changed) by id

    # ---------------------------------------------------------------------------------- reads
    def currents(self, requests: Sequence[tuple[WeightArray, np.ndarray]]) -> list[np.ndarray]:
        """Analog products of inputs and device conductances, in one product (``mvm_plan``; a large
        read of varying inputs on one chip in runs of its vectors).

        Each request is ``(array, x)`` with inputs ``x`` in [0, 1] of shape ``(B, N, n_in)``; the
        rows of each tile are driven at ``v_in · x`` (one input vector per tile, other rows at
        0 V).  Returns, per request, the column currents divided by ``v_in``, summed over the
        tiles that split the inputs: ``Σ_i x_i G_ij`` (S), shape ``(B, N, 2·n_out)``.
        """
        fixed = self._fixed_inputs
        key = tuple((a, x.shape[1], id(x) if id(x) in fixed else None) for a, x in requests)
        B = self.B
        xs = [x for a, x in requests if id(x) not in fixed]
        x_all = None
        if xs:
            x_all = xs[0].reshape(B, -1) if len(xs) == 1 else np.concatenate([x.reshape(B, -1) for x in xs], axis=1)
        drive, gather, plan, gather_at = self._read_plan(key)
        if plan is None:               # a large read of varying inputs on one chip: in runs of its vectors
            parts = self._currents_in_chunks(key, drive, gather, x_all)
        else:
            # the varying inputs at their drive positions; the fixed ones (one-hot reads) are in the read plan
            v = self.v_in * x_all[:, drive[1]] if xs else np.zeros((B, 0))
            out = self.xb.mvm_plan(plan, v)
            self.mvm_calls += 1
            parts = out[:, gather_at] / self.v_in     # every request's currents, one gather
        results = []
        for sl, shape in gather[1]:             # (tiles splitting the inputs, N, 2·n_out) each
            part = parts[:, sl].reshape(B, *shape)
            if shape[0] == 1:
                results.append(part[:, 0])
                continue
            s = np.add(part[:, 0], part[:, 1], order="C")    # partial sums added in the periphery, tile by tile
            for k in range(2, shape[0]):
                s += part[:, k]
            results.append(s)
        return results

    def _currents_in_chunks(self, key, drive, gather, x_all) -> np.ndarray:
        """The gathered currents (divided by ``v_in``) of a large read of varying inputs on one
        chip, as :meth:`currents` takes them from one product, taken from products of consecutive
        runs of its input vectors, each at most :data:`READ_CHUNK` elements wide: the same currents
        and read noise, drawn in the same order (the chip draws one per needed current, vector
        after vector), with inputs and outputs small enough to stay in cache.  ``drive``, ``need``,
        ``gather``: the read's layout (:meth:`_read_layout` of ``key``, which also keys the runs),
        each run's products through its read plan."""
        n_rows, n_cols = self.xb.shape
        ck = ("chunks", key)
        if ck not in self._tables:
            need = self._read_layout(key)[1][0]
            total, size = need.shape[0], max(1, READ_CHUNK // max(n_rows, n_cols))
            chunks = []
            for a in range(0, total, size):
                b = min(a + size, total)
                d = (drive[0] >= a * n_rows) & (drive[0] < b * n_rows)
                g = np.flatnonzero((gather[0] >= a * n_cols) & (gather[0] < b * n_cols))
                plan = self.xb.read_plan(need[a:b], drive=drive[0][d] - a * n_rows)
                chunks.append((plan, drive[1][d], g, np.searchsorted(plan.at, gather[0][g] - a * n_cols)))
            self._tables[ck] = chunks
        parts = np.empty((self.B, gather[0].size))
        for plan, d_src, g_sel, g_at in self._tables[ck]:
            out = self.xb.mvm_plan(plan, self.v_in * x_all[:, d_src])
            parts[:, g_sel] = out[:, g_at] / self.v_in
            self.mvm_calls += 1
        return parts

    def _read_plan(self, key):
        """A read's layout (:meth:`_read_layout` of ``key``: where its inputs drive the rows and where
        its currents are gathered), with its :meth:`~programming.crossbar.Crossbar.read_plan` (its
        needed currents, its fixed inputs' row voltages, which vectors vary and where their inputs
        drive the rows) and where the gathered currents sit among the plan's needed currents; the
        plan None for a large read of varying inputs on one chip, read in runs of its vectors
        (:meth:`_currents_in_chunks`).  Kept per key."""
        pk = ("read plan", key)
        if pk not in self._tables:
            drive, need, gather, v0 = self._read_layout(key)
            n_rows = self.xb.shape[0]
            large = need.shape[1] * max(self.xb.shape) > READ_CHUNK
            if v0 is None and self.B == 1 and large and not self.one_at_a_time:
                self._tables[pk] = (drive, gather, None, None)          # in runs (_currents_in_chunks)
                return self._tables[pk]
            varying = np.concatenate([np.full(n * len(a.tiles), fixed is None) for a, n, fixed in key])
            fixed = None if v0 is None else v0.reshape(self.B, -1, n_rows)
            rank = np.cumsum(varying) - 1                       # each vector's place among the varying ones
            drive_var = np.zeros(0, np.intp) if drive is None else rank[drive[0] // n_rows] * n_rows + drive[0] % n_rows
            plan = self.xb.read_plan(need[0], fixed=fixed, varying=varying, drive=drive_var)
            self._tables[pk] = (drive, gather, plan, np.searchsorted(plan.at, gather[0]))
        return self._tables[pk]

    def _read_layout(self, key):
        """For requests ``(array, N, id of a fixed x or None)``: where the inputs drive the rows
        (flat positions in the ``(vectors, rows)`` plane and in the concatenated inputs of the requests without a
        fixed ``x``), the ``need`` mask of the tiles' columns in the product's shape (a bench
        measures nothing else), the flat positions of the requests' currents in the ``(vectors,
        cols)`` plane, concatenated, with each request's slice of them and its shape ``(tiles
        splitting the inputs, N, 2·n_out)``, and the row voltages (B, vectors·rows) of the fixed
        inputs ``x`` (:meth:`one_hot`), zero elsewhere."""
        if key not in self._tables:
            n_rows, n_cols = self.xb.shape
            total = sum(n * len(a.tiles) for a, n, _ in key)
            need = np.zeros((total, n_cols), bool)
            v0 = np.zeros((self.B, total * n_rows)) if any(fixed is not None for _, _, fixed in key) else None
            pos, src, gather = [], [], []
            m = base = 0
            for a, n, fixed in key:
                in_starts = sorted({t.in0 for t in a.tiles})
                idx = np.zeros((len(in_starts), n, a.n_dev), np.intp)
                j = np.arange(n)[:, None]
                for t in a.tiles:
                    i = np.arange(t.in0, t.in1)[None, :]
                    at = ((m + j) * n_rows + t.row0 + i - t.in0).ravel()
                    if fixed is None:
                        pos.append(at)
                        src.append((base + j * a.n_in + i).ravel())
                    else:                       # the same products as for any input, once
                        x = self._fixed_inputs[fixed].reshape(self.B, -1)
                        v0[:, at] = self.v_in * x[:, (j * a.n_in + i).ravel()]
                    need[m:m + n, t.col0:t.col0 + t.dev1 - t.dev0] = True
                    idx[in_starts.index(t.in0), :, t.dev0:t.dev1] = (m + j) * n_cols + t.col0 + np.arange(t.dev1 - t.dev0)
                    m += n
                gather.append(idx)
                if fixed is None:
                    base += n * a.n_in
            ends = np.cumsum([0] + [idx.size for idx in gather])
            gather = (np.concatenate([idx.ravel() for idx in gather]),
                      [(slice(a, b), idx.shape) for a, b, idx in zip(ends[:-1], ends[1:], gather)])
            need = np.broadcast_to(need, (self.B, *need.shape))    # the shape of the product: used as is
            drive = (np.concatenate(pos), np.concatenate(src)) if pos else None
            self._tables[key] = (drive, need, gather, v0)
        return self._tables[key]

    def weights(self, s: np.ndarray) -> np.ndarray:
        """Weight-unit values ``scale · (S+ − S−)`` of device-column quantities ``s (..., 2·n_out)``."""
        return self.scale * (s[..., 0::2] - s[..., 1::2])

    def one_hot(self, a: WeightArray, rows: np.ndarray | None = None) -> np.ndarray:
        """Inputs that read rows ``rows`` (default all) of ``a``: shape ``(B, len(rows), n_in)``
        (read-only, kept for the next call)."""
        if rows is not None:
            rows = tuple(rows) if isinstance(rows, list) else tuple(int(r) for r in np.ravel(rows))
        key = ("one-hot", a.n_in, rows)
        if key not in self._tables:
            eye = np.eye(a.n_in)
            sel = eye if rows is None else eye[np.asarray(rows)]
            self._tables[key] = np.broadcast_to(sel, (self.B, *sel.shape))
            self._fixed_inputs[id(self._tables[key])] = self._tables[key]    # kept for the object's life
        return self._tables[key]

    # --------------------------------------------------------------------------------- writes
    def _tile_table(self, arrays: Sequence[WeightArray]):
        """For the devices of ``arrays`` concatenated (D of them): chip rows and columns, and for
        each device its tile (numbered over the arrays), colour and lane (``tile · n_colors +``
        its place among the tile's devices of its colour)."""
        key = tuple(a.name for a in arrays)
        if key not in self._tables:
            rows = np.concatenate([a.rows.ravel() for a in arrays])
            cols = np.concatenate([a.cols.ravel() for a in arrays])
            tile = np.empty(rows.size, np.intp)
            color = np.empty(rows.size, np.intp)
            lane = np.empty(rows.size, np.intp)
            n_tiles, base = 0, 0
            for a in arrays:
                flat = np.arange(a.n_in * a.n_dev).reshape(a.n_in, a.n_dev) + base
                for t in a.tiles:
                    f = flat[t.in0:t.in1, t.dev0:t.dev1].ravel()
                    col = a.colors[t.in0:t.in1, t.dev0:t.dev1].ravel()
                    tile[f] = n_tiles
                    color[f] = col
                    for c in range(self.n_colors):  # at most n_colors devices per colour and tile
                        sel = f[col == c]
                        lane[sel] = n_tiles * self.n_colors + np.arange(sel.size)
                    n_tiles += 1
                base += a.n_in * a.n_dev
            self._tables[key] = (rows, cols, tile, color, lane, n_tiles)
        return self._tables[key]

    def pulse_devices(self, items: Sequence[tuple[WeightArray, np.ndarray, np.ndarray]]) -> None:
        """Apply ``counts`` pulses of polarity ``sign`` (+1 SET, −1 RESET) to the devices of each
        ``(array, counts, sign)`` item (arrays ``(B, n_in, 2·n_out)``).

        Each tile works through its colours one after another, a colour as many times as its
        largest count (a device needing n pulses is in n calls); tiles (and chips) are
        independent, so one call carries one colour of every tile, and a pass costs
        max over tiles of Σ_colours max count calls.  A pass goes to the chip as one
        :meth:`~programming.crossbar.Crossbar.pulse_counts` over the arrays' colour plan
        (:mod:`programming.colour_plan`).  On a chip that works one cell at a time
        (:attr:`one_at_a_time`) one call carries every pulse instead, device after device.
        """
        if not items:
            return
        B = self.B
        counts = np.concatenate([np.asarray(c).reshape(B, -1) for _, c, _ in items], axis=1)
        sign = np.concatenate([np.asarray(s).reshape(B, -1) for _, _, s in items], axis=1)
        counts = np.maximum(counts, 0).astype(np.int64)
        self._pulse_signed([a for a, _, _ in items], np.where(sign >= 0, counts, -counts))

    def _pulse_signed(self, arrays: Sequence[WeightArray], dev: np.ndarray) -> None:
        """:meth:`pulse_devices` for the devices of ``arrays`` concatenated, with signed pulse
        counts ``dev`` (B, D) integers: ``dev > 0`` SET pulses, ``dev < 0`` RESET pulses."""
        if self.one_at_a_time:
            counts = np.abs(dev)
            if counts.max(initial=0) <= 0:
                return
            rows, cols = self._tile_table(arrays)[:2]
            self._pulse_in_turn(rows, cols, counts, np.where(dev >= 0, self.amplitude, -self.amplitude))
            return
        done = self.xb.pulse_counts(self._plan(arrays), dev)
        self.pulses += done.pulses
        self.pulse_calls += done.steps

    def _plan(self, arrays: Sequence[WeightArray]):
        """The :meth:`~programming.crossbar.Crossbar.colour_plan` of the devices of ``arrays``
        concatenated (:meth:`_tile_table`: each tile takes its colours one after another; lane
        order is row order) for the pulse in use (kept per arrays and pulse)."""
        key = ("plan", self.amplitude, self.width) + tuple(a.name for a in arrays)
        if key not in self._tables:
            rows, cols, tile, color = self._tile_table(arrays)[:4]
            self._tables[key] = self.xb.colour_plan(rows, cols, tile, color, self.amplitude, self.width,
                                                    scheme=WriteScheme.V2)
        return self._tables[key]

    @property
    def one_at_a_time(self) -> bool:
        """Whether the chip works strictly one cell at a time (``xb.preferred_parallel == 1``, a
        bench): a bench changes relays whenever the cell changes, so there every device takes all
        its pulses back to back (one routing per device) instead of the colours being interleaved.
        Under V/2 biasing below the switching thresholds the order does not change what a device
        receives."""
        return self.xb.preferred_parallel == 1

    def _pulse_in_turn(self, rows, cols, counts, amp) -> None:
        """One ``xb.pulse`` call: device after device, each with all its ``counts`` (B, D) pulses
        of amplitude ``amp`` (B, D), V; lanes of chips with fewer pulses are inactive."""
        seqs = [np.repeat(np.arange(counts.shape[1]), counts[b]) for b in range(self.B)]
        n_lanes = max(seq.size for seq in seqs)
        if n_lanes == 0:
            return
        devs = np.zeros((self.B, n_lanes), np.intp)
        act = np.zeros((self.B, n_lanes), bool)
        for b, seq in enumerate(seqs):
            devs[b, :seq.size] = seq
            act[b, :seq.size] = True
        self.xb.pulse(rows[devs], cols[devs], np.take_along_axis(amp, devs, axis=1), self.width, scheme="v/2",
                      active=act)
        self.pulses += act.sum(axis=1)
        self.pulse_calls += 1

    def pulse_weights(self, items: Sequence[tuple[WeightArray, np.ndarray, np.ndarray | None]]) -> None:
        """Move weights by signed pulse counts ``k`` (``(B, n_in, n_out)`` integers) push-pull.

        ``k > 0``: k SET pulses on G+ and k RESET pulses on G−; ``k < 0`` the reverse.  With the
        devices' last read conductances ``g`` (``(B, n_in, 2·n_out)``, S), a device already at or
        beyond an edge of ``xb.programming_window`` is not pulsed further out of it.
        """
        if not items:
            return
        B = self.B
        ks = [np.asarray(k).reshape(B, -1) for _, k, _ in items]
        dev = np.repeat(ks[0] if len(ks) == 1 else np.concatenate(ks, axis=1), 2, axis=1).astype(np.int64, copy=False)
        dev[:, 1::2] *= -1                               # device order G+, G−: G− takes the opposite pulses
        if any(g is not None for _, _, g in items):
            g = np.concatenate([np.full((B, 2 * np.size(k) // B), np.nan) if g is None else np.asarray(g).reshape(B, -1)
                                for _, k, g in items], axis=1)
            lo, hi = self.window
            # no SET at or above the window, no RESET at or below it (NaN: not known, not held);
            # nothing to hold where every device is inside it
            if not (float(g.min()) > lo and float(g.max()) < hi):
                np.maximum(dev, np.where(g <= lo, 0, dev), out=dev)
                np.minimum(dev, np.where(g >= hi, 0, dev), out=dev)
        self._pulse_signed([a for a, _, _ in items], dev)

    def center(self, arrays: Sequence[WeightArray], cycles: int, coarse_width: float, fine_cycles: int) -> None:
        """Bring every device of ``arrays`` to its own symmetry point: alternate one SET and one
        RESET pulse per device, ``cycles`` times with ``coarse_width`` pulses (same amplitude, so
        the same symmetry point, but larger steps), then ``fine_cycles`` times with the training
        pulse.  On a soft-bounds device the SET step shrinks and the RESET step grows with G, so
        alternating pulses converge to where they are equal.  One cell at a time
        (:attr:`one_at_a_time`), each device gets its whole sequence in turn, in one call."""
        if self.one_at_a_time:
            n = cycles + fine_cycles
            if n == 0 or not arrays:
                return
            rows, cols = self._tile_table(arrays)[:2]
            sign = np.tile([1.0, -1.0], n)                                  # SET, RESET, SET, ...
            width = np.repeat([coarse_width] * cycles + [self.width] * fine_cycles, 2)
            dev = np.repeat(np.arange(rows.size), sign.size)
            self.xb.pulse(rows[dev], cols[dev], np.tile(sign, rows.size) * self.amplitude,
                          np.tile(width, rows.size), scheme="v/2")
            self.pulses += dev.size
            self.pulse_calls += 1
            return
        ones = [np.ones((self.B, a.n_in, a.n_dev), np.int64) for a in arrays]
        width = self.width
        try:
            for cycle in range(cycles + fine_cycles):
                self.width = coarse_width if cycle < cycles else width
                for sign in (1, -1):
                    self.pulse_devices([(a, o, np.full_like(o, sign)) for a, o in zip(arrays, ones)])
        finally:
            self.width = width
