"""Placement of a network's layer blocks on one crossbar array.

Each layer occupies a rectangular block (rows = inputs + bias row, cols = output pairs; see
:mod:`models.layers`).  Blocks never overlap, so every layer can run its matrix-vector product on
the shared array: its rows are driven, every other row is held at 0 V (contributing no current),
and only its columns are read.

Two arrangements are tried: **stacked** (blocks one below the other from column 0, the rows of
layer 1 first) and **side by side** (blocks left to right from row 0).  For a given chip the first
that fits is used (stacked first); with no chip given, the one with the smaller bounding box.

``align="bottom"`` (what a deployment on resistive lines uses, :func:`models.deploy.deployment_targets`)
moves every block down to the array's last rows: the column terminals sit at the row-(R−1) end of the
columns (:mod:`programming.line_model`), so there the product's currents take the shortest column paths
and the line drop a block's cells see is smallest.  On a 65×84 chip holding the digits network
(64-32-10, side by side) it moves the output layer's 33×20 block from the array's far corner (rows 0–32,
the end of the rows and of the columns) to rows 32–64: the largest boost pre-distortion needs falls
from 3.5× (layer 1) and 4.6× (layer 2) to 2.8× and 3.1× at 0.67 Ω (the line model, full window).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from programming.schedule import cell_rank

ARRANGEMENTS = ("stacked", "side-by-side")
ALIGNMENTS = ("top", "bottom")


class PlacementError(ValueError):
    """The network does not fit the chip."""


@dataclass(frozen=True)
class Block:
    """One layer's block: top-left ``(row, col)`` and size ``(rows, cols)`` on the array.
    ``order``: the block row (0 … rows−1) each of the layer's input rows (its inputs, then the
    bias) is driven on; None = in order.  Reordering a layer's inputs is a choice of wiring the
    driver makes (:func:`models.deploy.chip_layer`), so a deployment may move the inputs to put
    the devices the tuner found stuck where they do least harm
    (:func:`models.deploy.stuck_row_orders`)."""

    layer: int
    row: int
    col: int
    rows: int
    cols: int
    order: tuple[int, ...] | None = None

    @property
    def slices(self) -> tuple[slice, slice]:
        """The block's rectangle on the array (physical order)."""
        return slice(self.row, self.row + self.rows), slice(self.col, self.col + self.cols)

    @property
    def input_rows(self) -> np.ndarray:
        """The array row of each of the layer's input rows, in the layer's order."""
        return self.row + (np.arange(self.rows) if self.order is None else np.asarray(self.order))

    def to_dict(self) -> dict:
        d = {"layer": self.layer, "row": self.row, "col": self.col, "rows": self.rows, "cols": self.cols}
        return d if self.order is None else {**d, "order": list(self.order)}


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
        """Full-array targets (S), NaN outside the blocks, from per-layer block targets (each in
        the layer's row order)."""
        t = np.full(self.shape, np.nan)
        for b, lt in zip(self.blocks, layer_targets):
            lt = np.asarray(lt, float)
            if lt.shape != (b.rows, b.cols):
                raise PlacementError(f"layer {b.layer} targets have shape {lt.shape}, its block is {(b.rows, b.cols)}")
            t[b.input_rows, b.col:b.col + b.cols] = lt
        return t

    def occupied(self) -> np.ndarray:
        occ = np.zeros(self.shape, bool)
        for b in self.blocks:
            occ[b.slices] = True
        return occ

    def cut(self, array: np.ndarray, layer: int) -> np.ndarray:
        """The block of ``layer`` out of an array of shape (..., rows, cols), in the layer's row
        order (a view when the rows are in order, else a copy)."""
        b = self.blocks[layer]
        rs, cs = b.slices
        return array[..., rs, cs] if b.order is None else array[..., b.input_rows, cs]

    def with_orders(self, orders) -> "Placement":
        """This placement with each block's input rows in ``orders`` (per layer: a permutation of
        its block rows, or None)."""
        blocks = []
        for b, o in zip(self.blocks, orders):
            o = None if o is None else tuple(int(k) for k in o)
            if o is not None and sorted(o) != list(range(b.rows)):
                raise PlacementError(f"layer {b.layer}'s row order must be a permutation of its {b.rows} rows")
            blocks.append(replace(b, order=None if o == tuple(range(b.rows)) else o))
        return replace(self, blocks=tuple(blocks))

    def drift_counts(self, mode: str, order: str = "row") -> list[np.ndarray]:
        """Per-layer drift counts k (see :func:`models.variability.drift_counts`) when the
        tuner programs every block cell in ``order``."""
        from .variability import drift_counts

        k = drift_counts(self.occupied(), cell_rank(self.shape, order), mode)
        return [self.cut(k, i) for i in range(len(self.blocks))]

    def to_dict(self) -> dict:
        return {"chip": list(self.shape), "arrangement": self.arrangement, "extent": list(self.extent),
                "cells_used": int(self.occupied().sum()), "blocks": [b.to_dict() for b in self.blocks]}

    @classmethod
    def from_dict(cls, d: dict) -> "Placement":
        """The placement :meth:`to_dict` wrote (a deployment's report), checked: blocks inside the
        chip, numbered 0, 1, … and not overlapping (PlacementError naming what is wrong)."""
        try:
            shape = (int(d["chip"][0]), int(d["chip"][1]))
            blocks = tuple(Block(int(b["layer"]), int(b["row"]), int(b["col"]), int(b["rows"]), int(b["cols"]))
                           for b in d["blocks"])
            orders = [b.get("order") for b in d["blocks"]]
            arrangement = str(d["arrangement"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise PlacementError(f"a placement needs chip, arrangement and blocks (layer, row, col, rows, cols): {e!r}")
        occ = np.zeros(shape, int)
        for i, b in enumerate(blocks):
            if b.layer != i or b.rows < 1 or b.cols < 1 or b.row < 0 or b.col < 0 \
                    or b.row + b.rows > shape[0] or b.col + b.cols > shape[1]:
                raise PlacementError(f"placement block {b.to_dict()} is not layer {i} inside the {shape[0]}x{shape[1]} chip")
            occ[b.slices] += 1
        if not blocks or occ.max() > 1:
            raise PlacementError("a placement needs at least one block and its blocks must not overlap")
        return cls(shape, arrangement, blocks).with_orders(orders)


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


def _to_bottom(blocks, arrangement: str, rows: int) -> tuple[Block, ...]:
    """``blocks`` moved down as far as the array's ``rows`` allow, keeping their order: side by side
    each block to the last rows, stacked the whole stack."""
    shift = rows - max(b.row + b.rows for b in blocks)
    return tuple(Block(b.layer, rows - b.rows if arrangement == "side-by-side" else b.row + shift, b.col, b.rows,
                       b.cols) for b in blocks)


def plan_placement(block_sizes, chip_shape: tuple[int, int] | None = None, align: str = "top") -> Placement:
    """Place blocks of ``block_sizes`` [(rows, cols), ...] on ``chip_shape`` (or on the smallest
    array that holds them), at its first rows (``align="top"``) or its last (``"bottom"``, nearest
    the column terminals; see the module docstring).  Raises :class:`PlacementError` naming the
    sizes if nothing fits."""
    sizes = [(int(r), int(c)) for r, c in block_sizes]
    if not sizes or min(min(s) for s in sizes) < 1:
        raise PlacementError(f"invalid layer block sizes {sizes}")
    if align not in ALIGNMENTS:
        raise PlacementError(f"unknown placement alignment {align!r}; known: {', '.join(ALIGNMENTS)}")
    options = [(a, *_arrange(sizes, a)) for a in ARRANGEMENTS]
    if chip_shape is None:
        a, blocks, extent = min(options, key=lambda o: (o[2][0] * o[2][1], ARRANGEMENTS.index(o[0])))
        chip_shape = extent
        options = [(a, blocks, extent)]
    chip_shape = (int(chip_shape[0]), int(chip_shape[1]))
    for a, blocks, extent in options:
        if extent[0] <= chip_shape[0] and extent[1] <= chip_shape[1]:
            blocks = _to_bottom(blocks, a, chip_shape[0]) if align == "bottom" else tuple(blocks)
            return Placement(chip_shape, a, blocks)
    need = " or ".join(f"{e[0]}x{e[1]} ({a})" for a, _, e in options)
    raise PlacementError(f"the network's layers {['%dx%d' % s for s in sizes]} need an array of {need}; "
                         f"the chip is {chip_shape[0]}x{chip_shape[1]}")
