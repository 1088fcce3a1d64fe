"""The network held on a crossbar for in-situ training, and the periphery maths around it.

``F`` inputs in [0, 1] plus a bias input held at 1 → ``hidden`` sigmoid units plus a bias unit →
``n_out`` logits: one for a binary task (sigmoid, binary cross-entropy), ``n_classes`` otherwise
(softmax cross-entropy).  Each layer's weights sit in differential-pair arrays on the chip
(:mod:`models.insitu_arrays`): inputs and hidden activations drive the rows at ``v_in · x`` (V)
through ``xb.mvm`` and the column currents ``I`` give the pre-activations
``z = scale · (I+ − I−)/v_in − x · w_ref``.  The backward pass runs in software from the measured
activations, with the output layer's weights read from the chip by one-hot forward passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.insitu_arrays import ChipArrays, layout_arrays, required_shape
from programming.crossbar import Crossbar

if TYPE_CHECKING:  # pragma: no cover
    from models.datasets import Dataset
    from models.insitu import InSituConfig

#: array names per rule: (visible weights, hidden accumulator or None)
ROLES = {"sgd": ("W", None), "manhattan": ("W", None), "tiki-taka": ("C", "A"), "shd": ("W", "P")}


# ------------------------------------------------------------------------------ data and maths
@dataclass(frozen=True)
class TrainData:
    x_train: np.ndarray
    t_train: np.ndarray  # targets (N, n_out): 0/1, one-hot for n_classes > 1
    x_test: np.ndarray
    t_test: np.ndarray
    n_classes: int


def prepare_data(dataset: Dataset) -> TrainData:
    """The dataset as float64 numpy arrays with targets; ValueError naming NaN/Inf, inputs outside
    [0, 1], bad shapes or labels."""
    arrs = {name: _as_array(getattr(dataset, name), f"dataset {name}")
            for name in ("x_train", "y_train", "x_test", "y_test")}
    for name in ("x_train", "x_test"):
        a = arrs[name]
        if a.ndim != 2 or a.shape[0] < 1:
            raise ValueError(f"dataset {name} must have shape (N, features), got {a.shape}")
        _check_inputs(a, f"dataset {name}")
    if arrs["x_train"].shape[1] != arrs["x_test"].shape[1]:
        raise ValueError("dataset x_train and x_test have different numbers of features")
    n_classes = int(dataset.n_classes)
    targets = []
    for name, x in (("y_train", "x_train"), ("y_test", "x_test")):
        y = arrs[name].reshape(-1)
        if y.size != arrs[x].shape[0]:
            raise ValueError(f"dataset {name} has {y.size} labels for {arrs[x].shape[0]} inputs")
        top = 1 if n_classes == 1 else n_classes - 1
        if np.any((y != np.round(y)) | (y < 0) | (y > top)):
            raise ValueError(f"dataset {name} labels must be integers in [0, {top}]")
        targets.append(y[:, None] if n_classes == 1 else np.eye(n_classes)[y.astype(int)])
    return TrainData(arrs["x_train"], targets[0], arrs["x_test"], targets[1], n_classes)


def sigmoid(z):
    """Logistic function, overflow-free."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def augment(x):
    """Append the bias input (a constant 1) to the last axis."""
    return np.concatenate([x, np.ones((*x.shape[:-1], 1))], axis=-1)


def _probs(z):
    if z.shape[-1] == 1:
        return sigmoid(z)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def mean_loss(z, t):
    """Mean BCE (one logit) or softmax cross-entropy, per chip: z, t (B, N, n_out) → (B,)."""
    if z.shape[-1] == 1:
        return (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean(axis=(1, 2))
    m = z.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(z - m).sum(axis=-1))
    return (lse - (z * t).sum(axis=-1)).mean(axis=1)


def accuracy(z, t):
    """Share of correct predictions per chip: logits z and targets t (B, N, n_out) → (B,)."""
    if z.shape[-1] == 1:
        return ((z[..., 0] > 0) == (t[..., 0] > 0.5)).mean(axis=-1)
    return (z.argmax(-1) == t.argmax(-1)).mean(axis=-1)


def gradients(x1, h, x2, z2, t, w2):
    """Batch-mean gradients ∂E/∂W of both layers, (B, n_in, n_out) each, by backpropagation from
    the augmented inputs x1, hidden activations h, augmented hidden x2, logits z2, targets t and
    the output layer's weights w2 (B, hidden + 1, n_out)."""
    d2 = (_probs(z2) - t) / z2.shape[1]
    dh = np.einsum("bno,bho->bnh", d2, w2[:, :h.shape[-1], :]) * h * (1 - h)
    return [np.einsum("bni,bnh->bih", x1, dh), np.einsum("bnh,bno->bho", x2, d2)]


def minibatches(rng, n_runs, n, size):
    """Index arrays (n_runs, ≤size) of one epoch: an independent shuffle of ``n`` per run."""
    perm = np.stack([rng.permutation(n) for _ in range(n_runs)])
    return [perm[:, a:a + size] for a in range(0, n, size)]


# ------------------------------------------------------------------------------ chip network
class ChipNetwork:
    """The two-layer network held on ``xb``: per layer a visible array (W, or C for Tiki-Taka) and,
    for Tiki-Taka and SHD, a hidden one (A or P) with a digital reference ``ref[name]`` (weight
    units, the pair's symmetry point).  Raises ValueError if the chip is too small."""

    def __init__(self, xb: Crossbar, n_features: int, hidden: int, n_out: int, config: "InSituConfig"):
        self.config = config
        self.dims = [(n_features + 1, hidden), (hidden + 1, n_out)]
        vis, hid = ROLES[config.rule]
        specs = [(f"{vis}{i + 1}", n_in, n_o) for i, (n_in, n_o) in enumerate(self.dims)]
        if hid is not None:
            specs += [(f"{hid}{i + 1}", n_in, n_o) for i, (n_in, n_o) in enumerate(self.dims)]
        arrays, n_colors = layout_arrays(specs, xb.shape, config.tile)
        lo, hi = xb.programming_window
        self.io = ChipArrays(xb, arrays, n_colors, v_in=xb.v_read if config.v_in is None else config.v_in,
                             scale=config.w_max / (hi - lo), amplitude=config.amplitude, width=config.width)
        self.vis = arrays[:2]
        self.hid = arrays[2:]
        self.all = arrays
        self.ref = {a.name: np.zeros((xb.n_chips, a.n_in, a.n_out)) for a in arrays}
        self.gamma = config.gam if self.hid else 0.0

    @property
    def n_out(self) -> int:
        return self.dims[1][1]

    def read(self, arrays=None) -> dict[str, np.ndarray]:
        """Device conductances (S), ``(B, n_in, 2·n_out)``, of ``arrays`` (default all), by
        one-hot forward passes in one ``mvm`` call."""
        arrays = self.all if arrays is None else arrays
        return dict(zip([a.name for a in arrays], self.io.currents([(a, self.io.one_hot(a)) for a in arrays])))

    def w(self, name: str, g: np.ndarray) -> np.ndarray:
        """Weights of array ``name`` from its conductances ``g``: scale·(G+ − G−) − ref."""
        return self.io.weights(g) - self.ref[name]

    def effective(self, layer: int, g: dict) -> np.ndarray:
        """The weights the forward pass of ``layer`` uses, from conductances ``g``: W, or W + γ·A."""
        w = self.w(self.vis[layer].name, g[self.vis[layer].name])
        if self.gamma:
            w = w + self.gamma * self.w(self.hid[layer].name, g[self.hid[layer].name])
        return w

    def _layer(self, layer: int, x: np.ndarray, extra=()):
        reqs = [(self.vis[layer], x)] + ([(self.hid[layer], x)] if self.gamma else []) + list(extra)
        out = self.io.currents(reqs)
        z = self.io.weights(out[0])
        if self.gamma:
            z = z + self.gamma * (self.io.weights(out[1]) - x @ self.ref[self.hid[layer].name])
        return z, out[1 + bool(self.gamma):]

    def forward(self, x: np.ndarray, read: bool = False):
        """Forward pass of inputs ``x`` (B, N, F) in [0, 1] on the chip: two ``mvm`` calls; with
        ``read`` the first also reads every array.  Returns (x1, h, x2, logits, conductances):
        the augmented inputs, hidden activations, augmented hidden activations, the logits
        (B, N, n_out) and the reads by array name (empty without ``read``)."""
        x1 = augment(x)
        extra = [(a, self.io.one_hot(a)) for a in self.all] if read else []
        z1, reads = self._layer(0, x1, extra)
        h = sigmoid(z1)
        x2 = augment(h)
        z2, _ = self._layer(1, x2)
        return x1, h, x2, z2, dict(zip([a.name for a in self.all], reads))

    def logits(self, x) -> np.ndarray:
        """Network outputs (B, N, n_out) for inputs ``x`` in [0, 1] of shape (N, F) or (B, N, F)."""
        x = _as_array(x, "inputs")
        if x.ndim not in (2, 3) or x.shape[-1] != self.dims[0][0] - 1:
            raise ValueError(f"inputs must have shape (N, {self.dims[0][0] - 1}) or (n_chips, N, "
                             f"{self.dims[0][0] - 1}), got {x.shape}")
        _check_inputs(x, "inputs")
        return self.forward(np.broadcast_to(x, (self.io.B, *x.shape[-2:])))[3]


def _as_array(a, name: str) -> np.ndarray:
    a = np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a, dtype=float)
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{name} contains NaN/Inf at index {tuple(int(i) for i in np.argwhere(bad)[0])}")
    return a


def _check_inputs(x: np.ndarray, name: str) -> None:
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] (inputs drive the rows at 0..v_in), "
                         f"got values in [{x.min():.3g}, {x.max():.3g}]")


def evaluate_on_chip(network: ChipNetwork, x, y) -> np.ndarray:
    """Accuracy per chip of the chip network on inputs ``x`` (N, F) in [0, 1] with labels ``y``
    (N,): 0/1 for one output, class indices otherwise."""
    y = _as_array(y, "labels").reshape(-1)
    n_out = network.n_out
    top = 1 if n_out == 1 else n_out - 1
    if np.any((y != np.round(y)) | (y < 0) | (y > top)):
        raise ValueError(f"labels must be integers in [0, {top}]")
    t = y[:, None] if n_out == 1 else np.eye(n_out)[y.astype(int)]
    z = network.logits(x)
    if z.shape[1] != t.shape[0]:
        raise ValueError(f"{z.shape[1]} inputs but {t.shape[0]} labels")
    return accuracy(z, np.broadcast_to(t, (network.io.B, *t.shape)))


def chip_shape_for(n_features: int, hidden: int, n_out: int, config: "InSituConfig") -> tuple[int, int]:
    """Smallest chip (rows, cols) that holds the network of ``config`` (its rule and tile)."""
    dims = [(n_features + 1, hidden), (hidden + 1, n_out)]
    copies = 1 if ROLES[config.rule][1] is None else 2
    return required_shape([("", n_in, n_o) for n_in, n_o in dims] * copies, config.tile)
