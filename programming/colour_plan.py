"""Passes of pulse counts over fixed cells coloured so that the pulses of a step never share a line.

A :class:`ColourPlan` holds D cells of a chip (the same cells on every chip of a crossbar), each in
a *tile* and of a *colour*: the cells of one colour of one tile share no row and no column, and
cells of different tiles share no line at all (:meth:`~programming.crossbar.Crossbar.colour_plan`
checks this, the cells' addresses and the pulse's amplitude and width once, when the plan is made).

A *pass* gives every cell of every chip a signed pulse count: ``n > 0`` is n pulses of
``+amplitude`` (SET), ``n < 0`` |n| pulses of ``−amplitude`` (RESET).  Each tile works through its
colours one after another, colour c for as many steps as its largest count on that chip, and a cell
with n pulses is pulsed in the first n steps of its colour's turn; tiles and chips go at once.  Step
k is one pulse call whose pulses never share a line on a chip, and a pass costs, over the tiles,
the largest sum over colours of the colour's largest count.  In a step, lane ``tile · S + p``
(S: the largest number of cells of one colour in one tile, at least the number of colours) carries
the cell at place p (in the order the cells were given) of the colour its tile is working on.

:meth:`ColourPlan.pulse_list` lists a pass as the pulses of
:meth:`~programming.crossbar.Crossbar.pulse_list`; :meth:`~programming.crossbar.Crossbar.pulse_counts`
applies one (a simulated chip without building the list).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PassResult:
    """What a pass sourced: ``steps``, the number of pulse calls (steps) it took, and ``pulses``,
    the pulses per chip, shape (n_chips,)."""

    steps: int
    pulses: np.ndarray


@dataclass(frozen=True, eq=False)
class ColourPlan:
    """D cells ``(rows[d], cols[d])`` with their ``tiles`` and ``colours`` (integer arrays of shape
    (D,)), for passes of ``amplitude`` (V, magnitude) and ``width`` (s) pulses under ``scheme`` on
    the ``n_chips`` chips of ``shape`` with ``limits``: made and checked by
    :meth:`~programming.crossbar.Crossbar.colour_plan`, not directly."""

    rows: np.ndarray
    cols: np.ndarray
    tiles: np.ndarray
    colours: np.ndarray
    n_colours: int
    amplitude: float
    width: float
    scheme: object
    shape: tuple
    n_chips: int
    limits: object
    _t: dict = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        """D, the number of cells."""
        return int(self.rows.size)

    def _tables(self):
        """Over the flat positions of a (n_chips, D + 1) array (column D is never pulsed):
        ``per`` (B · n_tiles · T · S) the position of the cell at each (chip, tile, colour, place),
        column D where the colour has fewer cells; per position, ``turn`` the flat index of its
        (chip, tile, colour) in a (B, n_tiles, T) array, ``lane_key`` chip · L + its lane,
        ``row_key`` chip · rows + its row, and its lane, row and column; T, S and L = n_tiles · S."""
        if not self._t:
            D, B, T = self.size, self.n_chips, self.n_colours
            tile, colour = self.tiles, self.colours
            n_tiles = int(tile.max(initial=-1)) + 1
            group = tile * T + colour
            order = np.argsort(group, kind="stable")             # each (tile, colour) in the given order
            sorted_group = group[order]
            first = np.ones(D, bool)
            first[1:] = sorted_group[1:] != sorted_group[:-1]
            place = np.empty(D, np.intp)
            place[order] = np.arange(D) - np.maximum.accumulate(np.where(first, np.arange(D), 0))
            S = max(T, int(place.max(initial=-1)) + 1)
            L = n_tiles * S
            lane = tile * S + place
            slots = np.full((n_tiles, T, S), D, np.intp)
            slots[tile, colour, place] = np.arange(D)
            chip = np.arange(B)[:, None]
            pad = lambda a: np.append(a, 0)  # noqa: E731 - column D: a pulse never lands there
            self._t.update(
                per=(chip * (D + 1) + slots.reshape(1, -1)).ravel(), turn=(chip * (n_tiles * T) + pad(group)).ravel(),
                lane_key=(chip * L + pad(lane)).ravel(), row_key=(chip * self.shape[0] + pad(self.rows)).ravel(),
                lane=np.tile(pad(lane), B), row=np.tile(pad(self.rows), B), col=np.tile(pad(self.cols), B),
                T=T, S=S, L=L, n_tiles=n_tiles)
        return self._t

    def schedule(self, counts: np.ndarray):
        """The pulses of a pass of signed counts ``counts`` (n_chips, D), integers, device by
        device: ``(signed, at, cnt, ends, pos, step)`` with ``signed`` the counts over the flat
        positions of a (n_chips, D + 1) array, ``at`` the positions with pulses, ``cnt`` their
        pulse counts and ``ends`` its cumulative sum, and per pulse its position ``pos`` (a
        position's pulses together, in step order) and ``step``; None when nothing is pulsed."""
        t = self._tables()
        B, D = counts.shape
        T, S = t["T"], t["S"]
        signed = np.zeros((B, D + 1), np.int64)
        signed[:, :D] = counts
        signed = signed.reshape(-1)
        n = np.abs(signed)
        at = np.flatnonzero(n)                                 # (chip, cell) positions with pulses
        if not at.size:
            return None
        need = n.take(t["per"]).reshape(B, -1, T, S).max(axis=3)   # steps per (chip, tile, colour)
        first = np.cumsum(need, axis=2)                        # each tile's colours one after another
        first -= need                                          # the first step of each colour's turn
        cnt = n.take(at)
        ends = np.cumsum(cnt)
        # a cell's pulses: its colour's first step + its place among its pulses (0, 1, ...)
        start = first.reshape(-1).take(t["turn"].take(at))
        if int(ends[-1]) == at.size:                           # one pulse per cell
            return signed, at, cnt, ends, at, start
        start -= ends
        start += cnt
        step = np.repeat(start, cnt)
        step += np.arange(int(ends[-1]))
        return signed, at, cnt, ends, np.repeat(at, cnt), step

    def pulse_list(self, counts: np.ndarray):
        """A pass of signed counts ``counts`` (n_chips, D) as the pulses of
        :meth:`~programming.crossbar.Crossbar.pulse_list`: step, chip, row, column, amplitude (V)
        and lane of every pulse, listed step after step, chip after chip, lane after lane; None
        when nothing is pulsed."""
        got = self.schedule(counts)
        if got is None:
            return None
        t = self._tables()
        signed, _, _, _, pos, step = got
        order = np.argsort(step * (self.n_chips * t["L"]) + t["lane_key"].take(pos))
        pos = pos.take(order)
        amp = np.where(signed.take(pos) > 0, self.amplitude, -self.amplitude)
        return (step.take(order), pos // (self.size + 1), t["row"].take(pos), t["col"].take(pos), amp,
                t["lane"].take(pos))
