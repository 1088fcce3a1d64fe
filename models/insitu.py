"""In-situ training on a crossbar: pulse SGD, Manhattan, Tiki-Taka and Stochastic Hamiltonian Descent.

The weights live on the chip and change only by write pulses through the
:class:`~programming.crossbar.Crossbar` interface: differential pairs, push-pull writes and
symmetry-point references in :mod:`models.insitu_arrays`; the network, its forward pass through
``xb.mvm`` and the software backward pass in :mod:`models.insitu_net`.  Every chip of ``xb``
(``xb.n_chips``) trains its own network in lockstep, with its own initial weights and data order.

Update equations
----------------
``ĝ = ∂E/∂W`` is the mini-batch-mean gradient from the chip's measured forward pass; ``dw`` the
measured mean weight change of one push-pull pulse (calibrated at start-up); ``sr(u) = ⌊u + ξ⌋``,
ξ ~ U[0, 1), stochastic rounding; every pulse count is capped at ``±max_pulses``.  A pulsed change
``u`` of a soft-bounds device really delivers ``u − |u|·(w − w_sp)/τ``: an asymmetric term
∝ |update| that pulls toward the symmetry point ``w_sp`` (Gokmen & Haensch 2020, §2; Onen et al.
2022).  That term is what separates the rules:

* ``sgd`` (pulse SGD): ``k = sr(−η ĝ/dw)`` pulses on W, i.e. ``W ← W − η ĝ``.  With noisy
  mini-batch gradients ``|u|`` never vanishes, so W settles where ``⟨u⟩ = ⟨|u|⟩(w − w_sp)/τ``,
  biased toward the devices' symmetry points (the "implicit cost term" of Gokmen & Haensch 2020).
* ``manhattan``: ``k = −n_M · sign(ĝ)``: a fixed number of identical pulses per weight and
  mini-batch (batch Manhattan rule, Zamanidoost et al., IEEE WISP 2015; used with fixed V/2
  pulses on a TiO2 crossbar by Prezioso et al., Nature 521, 61 (2015)).
* ``tiki-taka`` (Gokmen & Haensch, "Algorithm for training neural networks on resistive device
  arrays", Front. Neurosci. 14:103 (2020); public reference aihwkit ``TransferCompound`` with
  ``n_reads_per_transfer=1``, sequential rows, ``transfer_columns=True``): a fast array A whose
  zero is its symmetry point, and C; forward and backward through ``W = γA + C``::

      A ← A − η ĝ(W)                     every mini-batch, k = sr(−η ĝ/dw) pulses on A
      a = A e_i                          every ``transfer_every`` mini-batches: forward pass of
      C[i, :] ← C[i, :] + λ a            the one-hot input e_i, i = next input row (cyclic)

  A's asymmetric term makes it a leaky accumulator around zero; C moves only while A ≠ 0, so
  the minima of E are fixed points.  γ = 0.3 by default (aihwkit's default is γ = 0).
* ``shd`` (Stochastic Hamiltonian Descent, Onen, Gokmen, Todorov, Nowicki, del Alamo, Rozen,
  Haensch & Kim, arXiv:2201.13377; Front. AI 5:891624 (2022)): a momentum array P whose zero is
  its symmetry point, and the weights W; forward and backward through W::

      P ← P − η ĝ(W)                     every mini-batch (pulsed)
      W ← W + λ P                        every ``transfer_every`` mini-batches: the whole of P
                                         is read (one-hot forward passes) and transferred

  In continuous time ``dW/dt = λP, dP/dt = −η∇E(W)`` conserves ``H = ηE(W) + λ|P|²/2``.  P's
  asymmetric term ``−|ηĝ|·P/τ_P`` is a friction that dissipates H (the device asymmetry put to
  use), and W's asymmetric term, ∝ |λP|, vanishes as P → 0, so the minima of E are stationary.
  We could consult only the paper's abstract, not its full text: these are the equations of the
  damped Hamiltonian system it describes (weights W as position, P as momentum, friction from
  the asymmetry), written by us.  ``gamma > 0`` for SHD (forward through ``W + γP``) is our
  look-ahead extension, not part of the paper.

Transfer rounding: ``buffered_transfer=False`` turns ``λa/dw`` into pulses by stochastic rounding
(TTv1, aihwkit ``TransferCompound``; the Tiki-Taka default); ``True`` accumulates it in a digital
residual per weight and pulses the rounded value, keeping the rest (Gokmen, Front. AI 4:699148
(2021), aihwkit ``BufferedTransferCompound`` with momentum 0; the SHD default), so zero-mean noise
on A / P no longer pulses C / W, whose own asymmetric term would otherwise keep acting.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from models.insitu_net import (ChipNetwork, accuracy, augment, chip_shape_for, evaluate_on_chip, gradients,
                               mean_loss, minibatches, prepare_data, sigmoid)
from programming.blas import blas_one_thread
from programming.crossbar import Crossbar

if TYPE_CHECKING:
    from models.datasets import Dataset

__all__ = ["RULES", "InSituConfig", "InSituResult", "ChipNetwork", "train_in_situ", "train_software",
           "evaluate_on_chip", "chip_shape_for", "gradient_pulses", "transfer_pulses"]

RULES = ("sgd", "manhattan", "tiki-taka", "shd")
#: defaults per rule (tuned on moons on the ``asymmetric`` preset): η (weight units per unit of
#: gradient; Manhattan ignores it), λ, transfer period (mini-batches) and γ
DEFAULT_LR = {"sgd": 6.0, "manhattan": 0.0, "tiki-taka": 16.0, "shd": 16.0}
DEFAULT_TRANSFER_LR = {"tiki-taka": 0.1, "shd": 0.02}
DEFAULT_TRANSFER_EVERY = {"tiki-taka": 1, "shd": 2}
DEFAULT_GAMMA = {"tiki-taka": 0.3, "shd": 0.0}
DEFAULT_BUFFERED = {"tiki-taka": False, "shd": True}


@dataclass(frozen=True)
class InSituConfig:
    """Settings of :func:`train_in_situ` (SI units).

    Attributes:
        rule: ``sgd`` | ``manhattan`` | ``tiki-taka`` | ``shd``.
        epochs, batch_size: training length.
        lr, transfer_lr, transfer_every, gamma: η, λ, transfer period and γ (None: the rule's
            default from :data:`DEFAULT_LR`, ...).
        buffered_transfer: round transfers through a digital residual instead of stochastically
            (None: the rule's default, :data:`DEFAULT_BUFFERED`).
        manhattan_pulses: pulses per weight and mini-batch of the Manhattan rule.
        max_pulses: cap on the pulses one weight gets per update or transfer.
        amplitude, width: the one fixed write pulse, V (magnitude; SET +, RESET −) and s.  Under
            V/2 the half-selected devices see amplitude/2, which must stay below the switching
            thresholds (~1.0 V at 1 µs on the TiO2 presets, 0.1 V higher at 100 ns: so amplitude
            ≲ 1.8 V).  1.35 V, 100 ns (which acts like 1.25 V at 1 µs, see :mod:`mock_hw.device`'s
            width law) moves an ``asymmetric`` device by ~4 µS near its symmetry point (~1 % of the
            window).
        v_in: input voltage for an input of 1, V (None: ``xb.v_read``).
        w_max: weight held by ``G+ − G− = g_hi − g_lo`` (the width of ``xb.programming_window``);
            scale = w_max/(g_hi − g_lo) weight units per S.
        init_scale: initial visible weights uniform in ±init_scale.
        center_cycles, center_fine_cycles, center_width: symmetry-point initialisation
            (:meth:`~models.insitu_arrays.ChipArrays.center`), width in s.
        tile: tile size of the layout (None: one tile per array).
        seed: seeds every random draw (initial weights, data order, stochastic rounding).
    """

    rule: str = "tiki-taka"
    epochs: int = 20
    batch_size: int = 10
    lr: float | None = None
    transfer_lr: float | None = None
    transfer_every: int | None = None
    gamma: float | None = None
    buffered_transfer: bool | None = None
    manhattan_pulses: int = 1
    max_pulses: int = 8
    amplitude: float = 1.35
    width: float = 1e-7
    v_in: float | None = None
    w_max: float = 20.0
    init_scale: float = 3.0
    center_cycles: int = 25
    center_fine_cycles: int = 10
    center_width: float = 1e-6
    tile: int | None = 4
    seed: int = 0

    def __post_init__(self):
        rule = str(self.rule).lower().replace("_", "-")
        if rule not in RULES:
            raise ValueError(f"unknown in-situ rule {self.rule!r}; expected one of {', '.join(RULES)}")
        object.__setattr__(self, "rule", rule)
        ints = {"epochs": 1, "batch_size": 1, "transfer_every": 1, "manhattan_pulses": 1, "max_pulses": 1,
                "center_cycles": 0, "center_fine_cycles": 0}
        for name, low in ints.items():
            v = getattr(self, name)
            if v is None and name == "transfer_every":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"InSituConfig.{name} must be an integer >= {low}, got {v!r}")
        for name in ("lr", "transfer_lr", "gamma", "init_scale"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v >= 0):
                raise ValueError(f"InSituConfig.{name} must be a finite number >= 0, got {v!r}")
        for name in ("amplitude", "width", "w_max", "center_width"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"InSituConfig.{name} must be a finite number > 0, got {v!r}")
        if self.v_in is not None and not (np.isfinite(self.v_in) and self.v_in > 0):
            raise ValueError(f"InSituConfig.v_in must be a positive voltage, got {self.v_in!r}")

    @property
    def eta(self) -> float:
        """η in use."""
        return DEFAULT_LR[self.rule] if self.lr is None else float(self.lr)

    @property
    def lam(self) -> float:
        """λ in use (0 for the single-array rules)."""
        return DEFAULT_TRANSFER_LR.get(self.rule, 0.0) if self.transfer_lr is None else float(self.transfer_lr)

    @property
    def period(self) -> int:
        """Transfer period in use, mini-batches."""
        return DEFAULT_TRANSFER_EVERY.get(self.rule, 1) if self.transfer_every is None else int(self.transfer_every)

    @property
    def buffered(self) -> bool:
        """Whether transfers go through the digital residual."""
        if self.buffered_transfer is None:
            return DEFAULT_BUFFERED.get(self.rule, False)
        return bool(self.buffered_transfer)

    @property
    def gam(self) -> float:
        """γ in use (0 for the single-array rules)."""
        return DEFAULT_GAMMA.get(self.rule, 0.0) if self.gamma is None else float(self.gamma)


@dataclass
class InSituResult:
    """Outcome of a training run; arrays are per chip (or per software run).

    train_loss, test_accuracy: shape (epochs + 1, n_chips): after initialisation, then after each
    epoch.  pulses: device pulses sourced while training; init_pulses: for centring, calibration
    and the initial weights.  pulse_calls, mvm_calls: ``xb.pulse`` / ``xb.mvm`` calls in all.
    dw: measured weight change of one push-pull pulse.  weights: final effective weights per
    layer, (n_chips, n_in, n_out), read from the chip.  network: the trained
    :class:`~models.insitu_net.ChipNetwork` (None for software runs).
    """

    rule: str
    config: InSituConfig
    train_loss: np.ndarray
    test_accuracy: np.ndarray
    pulses: np.ndarray
    init_pulses: np.ndarray
    pulse_calls: int
    mvm_calls: int
    dw: np.ndarray
    weights: list
    wall_s: float
    network: ChipNetwork | None = field(default=None, repr=False)

    @property
    def final_accuracy(self) -> np.ndarray:
        return self.test_accuracy[-1]

    @property
    def mean_accuracy(self) -> float:
        return float(self.final_accuracy.mean())

    def summary(self) -> dict:
        """JSON-ready figures."""
        return {"rule": self.rule, "test_accuracy": self.final_accuracy.tolist(),
                "mean_test_accuracy": self.mean_accuracy, "final_train_loss": self.train_loss[-1].tolist(),
                "pulses": self.pulses.tolist(), "init_pulses": self.init_pulses.tolist(),
                "pulse_calls": self.pulse_calls, "mvm_calls": self.mvm_calls, "dw": self.dw.tolist(),
                "wall_s": self.wall_s, "config": asdict(self.config)}


# ------------------------------------------------------------------------------------ training
def _sr(u: np.ndarray, rng: np.random.Generator, cap: int) -> np.ndarray:
    """Stochastic rounding ⌊u + ξ⌋ (unbiased), clipped to ±cap, as integer pulse counts."""
    k = rng.random(u.shape)
    k += u                                   # (u + ξ: the same sum)
    np.floor(k, out=k)
    np.maximum(k, -cap, out=k)
    return np.minimum(k, cap, out=k).astype(np.int64)


def _sr_each(us: list[np.ndarray], rng: np.random.Generator, cap: int) -> list[np.ndarray]:
    """:func:`_sr` of each array of ``us`` in turn, worked out at once: the same draws (one uniform
    per element, array after array) and the same counts."""
    if len(us) == 1:
        return [_sr(us[0], rng, cap)]
    flat = _sr(np.concatenate([u.reshape(-1) for u in us]), rng, cap)
    out, a = [], 0
    for u in us:
        out.append(flat[a:a + u.size].reshape(u.shape))
        a += u.size
    return out


def gradient_pulses(cfg: InSituConfig, grads: list[np.ndarray], dw: np.ndarray,
                    rng: np.random.Generator) -> list[np.ndarray]:
    """Signed push-pull pulse counts of one gradient step, per layer (B, n_in, n_out): Manhattan
    ``−n_M·sign(ĝ)``; every other rule ``sr(−η ĝ/dw)`` capped at ±max_pulses (onto W for pulse
    SGD, onto A / P for Tiki-Taka / SHD).  ``dw`` (B,) is the weight step of one pulse."""
    if cfg.rule == "manhattan":
        return [(-cfg.manhattan_pulses * np.sign(g)).astype(np.int64) for g in grads]
    return _sr_each([-cfg.eta * g / dw[:, None, None] for g in grads], rng, cfg.max_pulses)


def transfer_pulses(want: list[np.ndarray], residual: list[np.ndarray] | None, rng: np.random.Generator,
                    cap: int) -> list[np.ndarray]:
    """Pulse counts of a transfer ``λa/dw`` (pulse units) per layer: stochastic rounding, or with
    ``residual`` (updated in place) the rounded value of residual + want, the rest kept."""
    if residual is None:
        return _sr_each(want, rng, cap)
    out = []
    for res, u in zip(residual, want):
        res += u
        k = np.minimum(np.maximum(np.round(res), -cap), cap)
        res -= k
        out.append(k.astype(np.int64))
    return out


def _initialise(net: ChipNetwork, rng: np.random.Generator, cfg: InSituConfig) -> np.ndarray:
    """Centre every device on its symmetry point; measure ``dw`` from one push-pull pulse up and
    one down; take the hidden arrays' references there; program the visible weights to
    U(±init_scale) open loop (two read-and-correct rounds).  Returns dw per chip."""
    io = net.io
    lim = io.xb.limits
    io.center(net.all, cfg.center_cycles, float(np.clip(cfg.center_width, lim.width_min, lim.width_max)),
              cfg.center_fine_cycles)
    g0 = net.read()
    ones = [(a, np.ones((io.B, a.n_in, a.n_out), np.int64), None) for a in net.all]
    io.pulse_weights(ones)
    g1 = net.read()
    io.pulse_weights([(a, -k, None) for a, k, _ in ones])
    g2 = net.read()
    w0, w1, w2 = ({n: io.weights(g[n]) for n in g} for g in (g0, g1, g2))
    dw = np.concatenate([((w1[n] - w0[n]) + (w1[n] - w2[n])).reshape(io.B, -1) / 2 for n in w0], axis=1).mean(1)
    if np.any(~(dw > 0)):
        raise RuntimeError(f"pulses of {cfg.amplitude:g} V, {cfg.width:g} s do not move the devices "
                           f"(measured weight step {dw.min():.3g}); raise the amplitude or width")
    for a in net.hid:
        net.ref[a.name] = w2[a.name]
    targets = {a.name: rng.uniform(-cfg.init_scale, cfg.init_scale, (io.B, a.n_in, a.n_out)) for a in net.vis}
    g = g2
    for _ in range(2):
        k = {a.name: np.clip(np.round((targets[a.name] - net.w(a.name, g[a.name])) / dw[:, None, None]), -64, 64)
             for a in net.vis}
        io.pulse_weights([(a, k[a.name].astype(np.int64), g[a.name]) for a in net.vis])
        g = net.read(net.vis)
    return dw


class _Transfer:
    """Tiki-Taka / SHD transfer from the hidden arrays (A, P) into the visible ones (C, W)."""

    def __init__(self, net: ChipNetwork, cfg: InSituConfig, dw: np.ndarray, rng: np.random.Generator):
        self.net, self.cfg, self.dw, self.rng = net, cfg, dw, rng
        self.row = 0
        self.residual = [np.zeros((net.io.B, a.n_in, a.n_out)) for a in net.vis]

    def wanted(self) -> list[np.ndarray]:
        """λ·a/dw per visible weight (pulse units): Tiki-Taka one input row of A per layer (read
        by a one-hot forward pass), SHD all of P."""
        net, io, lam = self.net, self.net.io, self.cfg.lam
        if self.cfg.rule == "shd":
            p = net.read(net.hid)
            return [lam * net.w(a.name, p[a.name]) / self.dw[:, None, None] for a in net.hid]
        rows = [self.row % a.n_in for a in net.hid]
        got = io.currents([(a, io.one_hot(a, [r])) for a, r in zip(net.hid, rows)])
        self.row += 1
        out = []
        for a, r, s in zip(net.hid, rows, got):
            u = np.zeros((io.B, a.n_in, a.n_out))
            u[:, r] = lam * (io.weights(s[:, 0]) - net.ref[a.name][:, r]) / self.dw[:, None]
            out.append(u)
        return out

    def __call__(self, g: dict) -> None:
        """One transfer event; ``g``: the visible arrays' last conductance reads (window guard)."""
        ks = transfer_pulses(self.wanted(), self.residual if self.cfg.buffered else None, self.rng,
                             self.cfg.max_pulses)
        self.net.io.pulse_weights([(a, k, g[a.name]) for a, k in zip(self.net.vis, ks)])


def train_in_situ(xb: Crossbar, dataset: Dataset, hidden: int = 8, config: InSituConfig | None = None,
                  log: Callable[[str], None] | None = None) -> InSituResult:
    """Train a ``F → hidden (sigmoid) → n_out`` network on every chip of ``xb`` by pulses only.

    Initialises the arrays (:func:`_initialise`), then for every mini-batch: forward pass on the
    chip (the same ``mvm`` call also reads every array), backward pass in software, and the
    rule's pulsed update (module docstring).  ``log`` gets one line per epoch.  Returns the
    per-epoch train loss and test accuracy, pulses and calls used, the measured pulse step and the
    trained network.  Raises ValueError, before any pulse, for a bad dataset or ``hidden``, a chip
    too small for the network, or pulse / read settings outside the chip's limits.
    """
    cfg = InSituConfig() if config is None else config
    if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 1:
        raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
    data = prepare_data(dataset)
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    net = ChipNetwork(xb, data.x_train.shape[1], int(hidden), data.t_train.shape[1], cfg)
    io, B = net.io, xb.n_chips
    dw = _initialise(net, rng, cfg)
    init_pulses = io.pulses.copy()
    transfer = _Transfer(net, cfg, dw, rng) if net.hid else None
    targets = net.vis if transfer is None else net.hid
    x_tr, t_tr, x_te, t_te = (np.broadcast_to(a, (B, *a.shape))
                              for a in (data.x_train, data.t_train, data.x_test, data.t_test))

    def evaluate():
        return mean_loss(net.forward(x_tr)[3], t_tr), accuracy(net.forward(x_te)[3], t_te)

    with blas_one_thread():      # once for the run: the chip's products enter it at every read
        hist = _train_epochs(net, data, cfg, dw, rng, transfer, targets, evaluate, log, init_pulses)
    g = net.read()
    return InSituResult(cfg.rule, cfg, np.array([h for h, _ in hist]), np.array([a for _, a in hist]),
                        io.pulses - init_pulses, init_pulses, io.pulse_calls, io.mvm_calls, dw,
                        [net.effective(layer, g) for layer in range(2)], time.perf_counter() - t0, net)


def _train_epochs(net: ChipNetwork, data, cfg: InSituConfig, dw: np.ndarray, rng: np.random.Generator,
                  transfer: _Transfer | None, targets, evaluate, log, init_pulses) -> list:
    """The epochs of :func:`train_in_situ`; returns its history of (train loss, test accuracy)."""
    io, B = net.io, net.io.B
    hist = [evaluate()]
    step = 0
    for epoch in range(cfg.epochs):
        for idx in minibatches(rng, B, len(data.x_train), cfg.batch_size):
            x1, h, x2, z2, g = net.forward(data.x_train[idx], read=True)
            grads = gradients(x1, h, x2, z2, data.t_train[idx], net.effective(1, g))
            ks = gradient_pulses(cfg, grads, dw, rng)
            io.pulse_weights([(a, k, g[a.name]) for a, k in zip(targets, ks)])
            step += 1
            if transfer is not None and step % cfg.period == 0:
                transfer(g)
        hist.append(evaluate())
        if log is not None:
            log(f"{cfg.rule} epoch {epoch + 1}: train loss {hist[-1][0].mean():.4f}, "
                f"test accuracy {hist[-1][1].mean():.4f}, pulses {int((io.pulses - init_pulses).mean())}")
    return hist


def train_software(dataset: Dataset, hidden: int = 8, config: InSituConfig | None = None,
                   runs: int = 1) -> InSituResult:
    """Ideal floating-point mini-batch SGD of the same network, ``runs`` independent runs seeded
    from ``config.seed``: same epochs, batch size and initial distribution; η is ``config.lr``, or
    the pulse-SGD default.  Rule label ``float``."""
    cfg = InSituConfig(rule="sgd") if config is None else config
    data = prepare_data(dataset)
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    eta = DEFAULT_LR["sgd"] if cfg.lr is None else float(cfg.lr)
    dims = [(data.x_train.shape[1] + 1, hidden), (hidden + 1, data.t_train.shape[1])]
    ws = [rng.uniform(-cfg.init_scale, cfg.init_scale, (runs, n_in, n_out)) for n_in, n_out in dims]

    def forward(x):
        x1 = augment(x)
        h = sigmoid(x1 @ ws[0])
        x2 = augment(h)
        return x1, h, x2, x2 @ ws[1]

    def evaluate():
        x_tr, x_te = (np.broadcast_to(x, (runs, *x.shape)) for x in (data.x_train, data.x_test))
        return mean_loss(forward(x_tr)[3], data.t_train[None]), accuracy(forward(x_te)[3], data.t_test[None])

    hist = [evaluate()]
    for _ in range(cfg.epochs):
        for idx in minibatches(rng, runs, len(data.x_train), cfg.batch_size):
            x1, h, x2, z2 = forward(data.x_train[idx])
            for w, gr in zip(ws, gradients(x1, h, x2, z2, data.t_train[idx], ws[1])):
                w -= eta * gr
        hist.append(evaluate())
    zeros = np.zeros(runs, np.int64)
    return InSituResult("float", cfg, np.array([h for h, _ in hist]), np.array([a for _, a in hist]),
                        zeros, zeros, 0, 0, np.zeros(runs), [w.copy() for w in ws], time.perf_counter() - t0)
