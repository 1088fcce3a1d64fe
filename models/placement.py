"""Placement of a network's layer blocks on one crossbar array.

Each layer occupies a rectangular block (rows = inputs + bias row, cols = output pairs; see
:mod:`models.layers`).  Blocks never overlap, so every layer can run its matrix-vector product on
the shared array: its rows are driven, every other row is held at 0 V (contributing no current),
and only its columns are read.

Two arrangements are tried: **stacked** (blocks one below the other from column 0, the rows of
layer 1 first) and **side by side** (blocks left to right from row 0).  For a given chip the first
that fits is used (stacked first); with no chip given, the one with the smaller bounding box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from programming.schedule import cell_rank

ARRANGEMENTS = ("stacked", "side-by-side")


class PlacementError(ValueError):
    """The network does not fit the chip."""


@dataclass(frozen=True)
class Block:
    """One layer's block: top-left ``(row, col)`` and size ``(rows, cols)`` on the array."""

    layer: int
    row: int
    col: int
    rows: int
    cols: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.rows), slice(self.col, self.col + self.cols)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "row": self.row, "col": self.col, "rows": self.rows, "cols": self.cols}


@dataclass(frozen=True)
class Placement:
    """Blocks of every layer on an array of ``shape`` (rows, cols)."""

    shape: tuple[int, int]
    arrangement: str
    blocks: tuple[Block, ...]

    @property
    def extent(self) -> tuple[int, int]:
        """Rows and columns actually used (the bounding box of the blocks)."""
        return (max(b.row + b.rows for b in self.blocks), max(b.col + b.cols for b in self.blocks))

    def targets(self, layer_targets) -> np.ndarray:
        """Full-array targets (S), NaN outside the blocks, from per-layer block targets."""
        t = np.full(self.shape, np.nan)
        for b, lt in zip(self.blocks, layer_targets):
            lt = np.asarray(lt, float)
            if lt.shape != (b.rows, b.cols):
                raise PlacementError(f"layer {b.layer} targets have shape {lt.shape}, its block is {(b.rows, b.cols)}")
            t[b.slices] = lt
        return t

    def occupied(self) -> np.ndarray:
        occ = np.zeros(self.shape, bool)
        for b in self.blocks:
            occ[b.slices] = True
        return occ

    def cut(self, array: np.ndarray, layer: int) -> np.ndarray:
        """The block of ``layer`` out of an array of shape (..., rows, cols)."""
        rs, cs = self.blocks[layer].slices
        return array[..., rs, cs]

    def drift_counts(self, mode: str, order: str = "row") -> list[np.ndarray]:
        """Per-layer drift counts k (see :func:`models.variability.drift_counts`) when the
        tuner programs every block cell in ``order``."""
        from .variability import drift_counts

        k = drift_counts(self.occupied(), cell_rank(self.shape, order), mode)
        return [self.cut(k, i) for i in range(len(self.blocks))]

    def to_dict(self) -> dict:
        return {"chip": list(self.shape), "arrangement": self.arrangement, "extent": list(self.extent),
                "cells_used": int(self.occupied().sum()), "blocks": [b.to_dict() for b in self.blocks]}


def _arrange(sizes, arrangement: str) -> tuple[list[Block], tuple[int, int]]:
    blocks, r, c = [], 0, 0
    for i, (rows, cols) in enumerate(sizes):
        if arrangement == "stacked":
            blocks.append(Block(i, r, 0, rows, cols))
            r += rows
        else:
            blocks.append(Block(i, 0, c, rows, cols))
            c += cols
    extent = (r, max(s[1] for s in sizes)) if arrangement == "stacked" else (max(s[0] for s in sizes), c)
    return blocks, extent


def plan_placement(block_sizes, chip_shape: tuple[int, int] | None = None) -> Placement:
    """Place blocks of ``block_sizes`` [(rows, cols), ...] on ``chip_shape`` (or on the smallest
    array that holds them).  Raises :class:`PlacementError` naming the sizes if nothing fits."""
    sizes = [(int(r), int(c)) for r, c in block_sizes]
    if not sizes or min(min(s) for s in sizes) < 1:
        raise PlacementError(f"invalid layer block sizes {sizes}")
    options = [(a, *_arrange(sizes, a)) for a in ARRANGEMENTS]
    if chip_shape is None:
        a, blocks, extent = min(options, key=lambda o: (o[2][0] * o[2][1], ARRANGEMENTS.index(o[0])))
        return Placement(extent, a, tuple(blocks))
    chip_shape = (int(chip_shape[0]), int(chip_shape[1]))
    for a, blocks, extent in options:
        if extent[0] <= chip_shape[0] and extent[1] <= chip_shape[1]:
            return Placement(chip_shape, a, tuple(blocks))
    need = " or ".join(f"{e[0]}x{e[1]} ({a})" for a, _, e in options)
    raise PlacementError(f"the network's layers {['%dx%d' % s for s in sizes]} need an array of {need}; "
                         f"the chip is {chip_shape[0]}x{chip_shape[1]}")
