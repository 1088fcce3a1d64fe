"""Which cell is tuned when: cell priorities and the slot scheduler of the write-verify tuner.

The tuner keeps ``parallel`` *slots* per chip.  Each slot owns a fixed set of "major" lines (the
rows when rows ≤ columns, else the columns; slot s owns lines s, s + P, s + 2P, ...) and tunes one
of their cells at a time; when its cell finishes it takes the highest-priority remaining cell on its
lines whose "minor" line (column, or row) no other busy slot is using.  So at every moment the busy
cells of a chip share no row and no column: under V/2 or V/3 biasing no busy cell is ever the
half-selected neighbour of another (and a simulated chip can apply their pulses concurrently,
exactly).  With ``parallel == 1`` one slot owns every line and the cells are tuned strictly one
after another in priority order — what a bench does.
"""
from __future__ import annotations

import numpy as np

ORDERS = ("row", "column", "diagonal", "random", "reach")
_NO_RANK = np.iinfo(np.int64).max      # the key of a cell that cannot be picked


def cell_rank(shape: tuple[int, int], order: str = "row", rng: np.random.Generator | None = None,
              need=None) -> np.ndarray:
    """Priority of every cell (0 = first), shape ``shape``: row-major, column-major, by diagonal
    ((col − row) mod cols, then row), random, or by ``reach``: the cells with the largest ``need``
    (shape ``shape``: the drive a write needs per volt across the cell, from the tuner's line model)
    first, row-major among equals; without ``need`` (ideal lines) row-major."""
    n_rows, n_cols = shape
    rr, cc = np.indices(shape)
    if order == "reach" and need is not None:
        key = np.lexsort(((rr * n_cols + cc).ravel(), -np.asarray(need, float).ravel()))
        key = np.argsort(key).reshape(shape)
    elif order in ("row", "reach"):
        key = rr * n_cols + cc
    elif order == "column":
        key = cc * n_rows + rr
    elif order == "diagonal":
        key = ((cc - rr) % n_cols) * n_rows + rr
    elif order == "random":
        key = (rng or np.random.default_rng(0)).permutation(n_rows * n_cols).reshape(shape)
    else:
        raise ValueError(f"unknown cell order {order!r}; expected one of {ORDERS}")
    return np.argsort(np.argsort(key, axis=None)).reshape(shape)


def cell_order(shape: tuple[int, int], order: str = "row", rng: np.random.Generator | None = None):
    """(rows, cols) of every cell in priority order."""
    flat = np.argsort(cell_rank(shape, order, rng), axis=None)
    return np.unravel_index(flat, shape)


class SlotScheduler:
    """Hands cells to the idle slots of ``n_chips`` chips (vectorized over chips and slots).

    Args:
        shape: array (rows, cols).
        todo: bool (n_chips, rows, cols), the cells to tune.
        rank: cell priorities from :func:`cell_rank`.
        parallel: slots per chip (capped at the number of major lines).
    """

    def __init__(self, shape, todo: np.ndarray, rank: np.ndarray, parallel: int):
        if int(parallel) < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.shape = shape
        self.major_is_row = shape[0] <= shape[1]
        n_major = shape[0] if self.major_is_row else shape[1]
        self.parallel = min(int(parallel), n_major)
        # work in (chip, major, minor) coordinates
        self.remaining = todo.copy() if self.major_is_row else todo.transpose(0, 2, 1).copy()
        rank = rank if self.major_is_row else rank.T
        self.n_chips, self.n_major, self.n_minor = self.remaining.shape
        k = -(-self.n_major // self.parallel)  # major lines per slot (padded)
        # candidate table per slot: (slot, k*minor) → (major, minor) and rank, each slot's
        # candidates in priority order (so a search takes the first one free)
        major = np.arange(k * self.parallel).reshape(k, self.parallel).T  # slot s owns s, s+P, ...
        major = np.repeat(major, self.n_minor, axis=1)                      # (P, k*minor)
        minor = np.tile(np.arange(self.n_minor), k)[None, :].repeat(self.parallel, 0)
        valid = major < self.n_major           # the padding beyond the last major line: never a candidate
        major = np.minimum(major, self.n_major - 1)
        rank = np.where(valid, rank[major, minor], _NO_RANK)
        by_rank = np.argsort(rank, axis=1, kind="stable")      # (the padding last)
        self._major, self._minor, self._rank = (np.take_along_axis(a, by_rank, axis=1) for a in (major, minor, rank))
        # where the slots' lines are padded, the padding's candidates (never free)
        self._valid = None if valid.all() else np.take_along_axis(valid, by_rank, axis=1)
        # the span of the candidates' priorities: (chip, minor line, priority) as one sort key
        # (None where it would not fit in an int64: sorted by the three keys)
        span = int(rank[valid].max(initial=0)) + 1
        fits = rank[valid].min(initial=0) >= 0 and self.n_chips * self.n_minor * span < 2 ** 62
        self._span = span if fits else None
        self.busy_minor = np.zeros((self.n_chips, self.n_minor), bool)
        # each chip's slots' candidates as flat indices into remaining and busy_minor, by flat slot
        # (chip·P + slot), for one gather each
        cell = self._major * self.n_minor + self._minor
        chip = np.arange(self.n_chips)[:, None, None]
        self._cell = (chip * (self.n_major * self.n_minor) + cell).reshape(-1, cell.shape[1])
        self._line = (chip * self.n_minor + self._minor).reshape(-1, cell.shape[1])
        self._chip_of = np.repeat(np.arange(self.n_chips), self.parallel)     # by flat slot
        self._slot_of = np.tile(np.arange(self.parallel), self.n_chips)
        # cells left on each slot's lines: a slot with none is never searched again
        per_major = np.zeros((self.n_chips, k * self.parallel), np.int64)
        per_major[:, :self.n_major] = self.remaining.sum(axis=2)
        self.slot_left = per_major.reshape(self.n_chips, k, self.parallel).sum(axis=1)
        self.left = int(self.slot_left.sum())
        # slots searched in vain: every cell left on their lines sits on a busy minor line, so a
        # search gives them nothing until a release frees one of those lines
        self._vain = np.zeros((self.n_chips, self.parallel), bool)

    def has_work(self) -> bool:
        return self.left > 0

    def assign(self, idle: np.ndarray):
        """Pick cells for the ``idle`` slots (bool (n_chips, P)).  Returns (chip, slot, row, col)
        index arrays of the slots that got a cell; marks those cells taken and their lines busy.
        Only idle slots with cells left on their lines are searched (the others could get none),
        and not those searched in vain since (:meth:`release` frees them when it frees a minor line
        one of their cells is on): what a search of every idle slot would give."""
        want = idle & (self.slot_left > 0)
        want &= ~self._vain
        flat = want.reshape(-1).nonzero()[0]    # chip·P + slot (the slot arrays are C-contiguous)
        if flat.size == 0:
            return (np.empty(0, np.intp),) * 4
        slot = self._slot_of.take(flat)
        # (n, k*minor) candidates in priority order: left to tune, their minor line free; each
        # slot takes its first (argmax: the first True), where it has one
        ok = self.remaining.reshape(-1).take(self._cell[flat])
        ok &= ~self.busy_minor.reshape(-1).take(self._line[flat])
        if self._valid is not None:
            ok &= self._valid[slot]
        pick = ok.argmax(axis=1)
        at = slot * self._major.shape[1]
        at += pick
        got = np.logical_or.reduce(ok, axis=1)
        if np.count_nonzero(got) < got.size:
            self._vain.reshape(-1)[flat[~got]] = True
            flat, slot, at = flat[got], slot[got], at[got]
        key = self._rank.reshape(-1).take(at)   # the pick's priority
        chip = self._chip_of.take(flat)
        maj = self._major.reshape(-1).take(at)
        mnr = self._minor.reshape(-1).take(at)
        if chip.size > 1:
            # two slots of a chip wanting the same minor line: the higher-priority cell wins
            if self._span is None:
                order = np.lexsort((key, mnr, chip))
            else:       # (the same order: one key)
                order = np.argsort((chip * self.n_minor + mnr) * self._span + key, kind="stable")
            cs, ms = chip.take(order), mnr.take(order)
            first = np.ones(order.size, bool)
            first[1:] = (cs[1:] != cs[:-1]) | (ms[1:] != ms[:-1])
            keep = order[first]
            chip, slot, maj, mnr, flat = chip[keep], slot[keep], maj[keep], mnr[keep], flat[keep]
        self.remaining[chip, maj, mnr] = False
        self.busy_minor[chip, mnr] = True
        self.slot_left.reshape(-1)[flat] -= 1       # (one cell per slot)
        self.left -= chip.size
        rows, cols = (maj, mnr) if self.major_is_row else (mnr, maj)
        return chip, slot, rows, cols

    def release(self, chip: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        """The slots tuning these cells are done with them: free their minor lines."""
        minor = cols if self.major_is_row else rows
        self.busy_minor[chip, minor] = False
        # the slots with a cell left on a freed minor line may be served again
        i, major = np.nonzero(self.remaining[chip, :, minor])
        if i.size:
            self._vain[chip[i], major % self.parallel] = False
