"""Products of a fixed layout read again and again: which currents are needed, and the inputs that never change.

A :class:`ReadPlan` describes a matrix-vector product of N input vectors (:meth:`~programming.crossbar.Crossbar.mvm`)
whose needed currents (``need``, (N, cols), the same on every chip) and *fixed* vectors (their row
voltages given once, e.g. the one-hot inputs that read a weight array's rows) do not change from
call to call; only the *varying* vectors' voltages are given with each product
(:meth:`~programming.crossbar.Crossbar.mvm_plan`).  Everything fixed is checked once, when the plan
is made (:meth:`~programming.crossbar.Crossbar.read_plan`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class ReadPlan:
    """Made and checked by :meth:`~programming.crossbar.Crossbar.read_plan`, not directly.

    ``need`` (N, cols) bool; ``varying`` (N,) bool, the vectors given with each product (in order);
    ``fixed`` (n_chips, N, rows) the row voltages (V) of the others (zero on the varying ones), None
    when every vector varies; ``at`` (M,) the flat positions in the (N, cols) plane of the needed
    currents, in order; ``leading``: whether the varying vectors are the first ones; ``drive``
    (P,) the flat positions in the varying vectors' (n_varying, rows) plane that their inputs may
    drive (the rest at 0 V; None: any)."""

    need: np.ndarray
    varying: np.ndarray
    fixed: np.ndarray | None
    at: np.ndarray
    leading: bool
    drive: np.ndarray | None
    shape: tuple
    n_chips: int
    limits: object
    _t: dict = field(default_factory=dict, repr=False)

    @property
    def n_vectors(self) -> int:
        return int(self.need.shape[0])

    @property
    def n_varying(self) -> int:
        return int(self.varying.sum())

    @property
    def size(self) -> int:
        """M, the number of needed currents per chip."""
        return int(self.at.size)

    def varying_input(self, v: np.ndarray) -> np.ndarray:
        """The varying vectors' row voltages (n_chips, n_varying, rows), V, from the input ``v`` of
        :meth:`~programming.crossbar.Crossbar.mvm_plan` (with :attr:`drive`: the voltages at those
        positions, 0 V elsewhere)."""
        if self.drive is None:
            return v
        full = np.zeros((self.n_chips, self.n_varying * self.shape[0]))
        full[:, self.drive] = v
        return full.reshape(self.n_chips, self.n_varying, self.shape[0])

    def product_input(self, v: np.ndarray) -> np.ndarray:
        """The whole product's input (n_chips, N, rows), V: the fixed vectors and the varying ones
        from the input ``v`` of :meth:`~programming.crossbar.Crossbar.mvm_plan`."""
        v_rows = self.varying_input(v)
        if self.fixed is None:
            return v_rows
        v = self.fixed.copy()
        v[:, self.varying] = v_rows
        return v

    def need_mask(self) -> np.ndarray:
        """``need`` broadcast to the product's output shape (n_chips, N, cols) (kept)."""
        if "need" not in self._t:
            self._t["need"] = np.broadcast_to(self.need, (self.n_chips, *self.need.shape))
        return self._t["need"]
