"""Training of regular and hardware-aware networks (full-batch or mini-batch Adam).

``aware=True`` builds :class:`~models.layers.CrossbarLinear` layers that sample a transfer in every
training forward; ``aware=False`` builds plain ``nn.Linear`` layers — the regular baseline —
optionally with multiplicative noise injection (``noise``) through ``CrossbarLinear(aware=False)``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F

from .drolet2023 import Drolet2023Model
from .datasets import DATASETS, Dataset, load_dataset, predictions
from .layers import ACTIVATIONS, MLP, check_scales
from .names import LR_SCHEDULES
from .placement import plan_placement
from .robust_train import base_hidden, positive_output_weights, replicate_hidden, robust_loss
from .runtime import torch_threads
from .variability import get_variability

#: default architecture per dataset: hidden sizes (Drolet et al. 2023 for moons)
DEFAULT_HIDDEN = {"moons": (8,), "moons-paper": (8,), "moons-paper-clean": (8,), "digits": (32,)}
#: per-dataset training defaults that differ from :class:`TrainConfig`'s
DATASET_DEFAULTS = {"moons": {}, "moons-paper": {}, "moons-paper-clean": {},
                    "digits": {"epochs": 150, "lr": 0.01, "batch_size": 128, "weight_decay": 1e-4,
                               "lr_schedule": "constant"}}
#: the cosine schedule decays the learning rate to this share of ``lr`` by the last epoch
COSINE_FLOOR = 0.05
#: restart r of a run seeded s is seeded s + RESTART_STRIDE·r
RESTART_STRIDE = 1000
#: transfers sampled to score a restart on the training points
SELECT_TRANSFERS = 1000


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with the model).

    Attributes:
        dataset: one of :data:`~models.names.DATASETS` (``moons``, ``moons-paper``,
            ``moons-paper-clean``, ``digits``); data_seed: seed of the dataset draw and split (the
            ``moons-paper`` sets are fixed and ignore it).
        hidden: hidden layer sizes (None: the dataset's default); activation: hidden activation.
        aware: hardware-aware (transfer sampled in every forward) or regular training.
        scales: how weights are scaled onto conductances at deployment (and in aware training):
            ``"output"`` (one scale per output column pair) or ``"layer"``.
        noise: multiplicative conductance noise injected in training (fraction; 0 = off).
        variability: name of the variability model sampled by aware training.
        transfers: transfers sampled per training step (every example runs through each).
        epochs, batch_size (0 = full batch), lr (Adam), weight_decay, kl_weight (weight of the
        variational KL term, per training example), seed (initialization and sampling).
        tail: share of each example's sampled transfers its loss averages, the worst ones (1 = all
            of them; e.g. 0.25 = the worst quarter — see :func:`loss_fn`).
        lr_schedule: ``"cosine"`` (the learning rate decays from ``lr`` to ``COSINE_FLOOR · lr``
            over the epochs) or ``"constant"``.
        replicas: hidden units trained as this many copies of each (one hidden layer): a regular
            network of ``ceil(hidden / replicas)`` units is trained first (these settings, no
            transfer), then each unit is copied (:func:`models.robust_train.replicate_hidden`);
            1 = off.
        robust_epochs: full-batch epochs of fine-tuning on the robust share after the training
            above (:mod:`models.robust_train`), judged per step by ``transfers`` transfers of
            ``variability`` (under ``drolet2023``: transfers with no stuck device plus every
            single-stuck event enumerated, and the output weights kept non-negative); 0 = off.
            Needs aware training and one output.
        robust_lr: Adam learning rate of that fine-tuning (cosine decay to ``COSINE_FLOOR`` of it).
        finish_variability: a second robust-share fine-tuning after everything above, judged by
            this transfer model instead of ``variability`` (e.g. train against xbarlab's own
            pipeline, ``tio2-3it``, then finish against the published one, ``drolet2023``); ""
            = none.  Same loss, learning rate and schedule as the first.
        finish_epochs: its full-batch epochs (needed with ``finish_variability``, >= 1).
        finish_transfers: transfers per step of it (under ``drolet2023``: the transfers with no
            stuck device, beside every single-stuck event enumerated).
        robust_share: the robust-share fine-tunings count a training point when it is correct in at
            least this share of the transfers (0.95, the evaluator's; higher aims at a margin).
        placed_drift: aware training samples each cell's neighbour drift with the drift count ``k``
            the deployment gives it — the layers placed on the smallest array that holds them, as
            ``xbar evaluate`` and ``--chip sim`` place them, every cell of the array counted
            (:func:`place_drift_counts`) — instead of counting each layer's own block alone, which
            gives the hidden layer's bias row k of 0–31 where the deployed 2-16-1 network has 29–61.
        restarts: train this many networks, restart r seeded :func:`restart_seed` (seed, r), and keep
            the one with the highest robust share on the *training* points (:func:`training_share`,
            1000 transfers of the last stage's model); 1 = off.  Needs aware training.

    The moons defaults (3000 epochs of full-batch Adam at 0.3 with a cosine decay, weight decay
    1e-5) are what makes the hardware-aware 2-8-1 network robust: its sigmoid hidden units grow
    into saturation, so a sampled transfer's weight errors rarely move a decision (see
    ``benchmarks/moons_transfer.py``).
    """

    dataset: str = "moons"
    data_seed: int = 0
    hidden: tuple[int, ...] | None = None
    activation: str = "sigmoid"
    aware: bool = True
    scales: str = "output"
    noise: float = 0.0
    variability: str = "tio2-3it"
    transfers: int = 8
    epochs: int = 3000
    batch_size: int = 0
    lr: float = 0.3
    lr_schedule: str = "cosine"
    weight_decay: float = 1e-5
    kl_weight: float = 0.0
    tail: float = 1.0
    replicas: int = 1
    robust_epochs: int = 0
    robust_lr: float = 0.03
    finish_variability: str = ""
    finish_epochs: int = 0
    finish_transfers: int = 16
    robust_share: float = 0.95
    placed_drift: bool = False
    restarts: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        if self.hidden is None:
            self.hidden = DEFAULT_HIDDEN[self.dataset]
        self.hidden = tuple(int(h) for h in self.hidden)
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}")
        check_scales(self.scales)
        if not 0 <= self.noise < 1:
            raise ValueError(f"noise must be a fraction in [0, 1), got {self.noise!r}")
        for name in ("epochs", "transfers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.replicas < 1 or self.robust_epochs < 0:
            raise ValueError(f"replicas must be >= 1 and robust_epochs >= 0, got {self.replicas!r}, "
                             f"{self.robust_epochs!r}")
        if self.replicas > 1 and len(self.hidden) != 1:
            raise ValueError(f"replicas needs one hidden layer, got hidden sizes {self.hidden}")
        if not self.robust_lr > 0:
            raise ValueError(f"robust_lr must be > 0, got {self.robust_lr!r}")
        if self.robust_epochs and not self.aware:
            raise ValueError("robust_epochs needs aware training (the fine-tuning samples the variability "
                             "model's transfers)")
        if bool(self.finish_variability) != (self.finish_epochs > 0) or self.finish_epochs < 0:
            raise ValueError(f"finish_variability and finish_epochs >= 1 go together, got "
                             f"{self.finish_variability!r} and {self.finish_epochs!r}")
        if self.finish_variability:
            fin = get_variability(self.finish_variability)   # an unknown model is named before training
            if not isinstance(fin, Drolet2023Model) and self.finish_variability != self.variability:
                raise ValueError(f"finish_variability {self.finish_variability!r} must be drolet2023 or the network's "
                                 f"own variability {self.variability!r} (its layers sample that one)")
            if not self.aware:
                raise ValueError("finish_variability needs aware training (the fine-tuning samples transfers)")
        if self.placed_drift and (not self.aware or isinstance(get_variability(self.variability), Drolet2023Model)):
            raise ValueError("placed_drift needs aware training against a variability model that counts drift on "
                             f"the array (not {'regular training' if not self.aware else self.variability!r})")
        if self.restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {self.restarts!r}")
        if self.restarts > 1 and not self.aware:
            raise ValueError("restarts choose by the robust share under transfers; they need aware training")
        if not 0.5 <= self.robust_share < 1:
            raise ValueError(f"robust_share must be a share in [0.5, 1), got {self.robust_share!r}")
        if self.finish_transfers < 1:
            raise ValueError(f"finish_transfers must be >= 1, got {self.finish_transfers!r}")
        for name in ("batch_size", "weight_decay", "kl_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.tail <= 1:
            raise ValueError(f"tail must be a share in (0, 1], got {self.tail!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; expected one of {LR_SCHEDULES}")
        if getattr(get_variability(self.variability), "name", None) == "drolet2023" and self.kl_weight > 0:
            raise ValueError("kl_weight needs a variability model's spreads; the drolet2023 transfer model has none")

    @classmethod
    def for_dataset(cls, dataset: str = "moons", **changes) -> "TrainConfig":
        """A config with ``dataset``'s defaults (:data:`DATASET_DEFAULTS`), then ``changes``."""
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")
        return cls(dataset=dataset, **{**DATASET_DEFAULTS[dataset], **changes})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

@dataclass
class TrainResult:
    model: MLP
    config: TrainConfig
    dataset: Dataset
    train_accuracy: float
    test_accuracy: float
    wall_s: float
    history: list[float] = field(default_factory=list)   # loss every 10 % of the epochs
    final_lr: float = float("nan")                         # the learning rate the schedule ended at
    selection: dict | None = None                          # restarts: the one kept and every one's score


def build_model(cfg: TrainConfig, n_features: int, n_classes: int) -> MLP:
    """The network of ``cfg`` for a dataset of ``n_features`` inputs and ``n_classes`` classes."""
    sizes = [n_features, *cfg.hidden, 1 if n_classes == 1 else n_classes]
    if cfg.aware or cfg.noise > 0:
        return MLP(sizes, cfg.activation, "crossbar", cfg.scales, aware=cfg.aware,
                   variability=get_variability(cfg.variability),
                   noise=cfg.noise, transfers=cfg.transfers)
    return MLP(sizes, cfg.activation, "linear", cfg.scales)


def place_drift_counts(model: MLP) -> None:
    """Set every crossbar layer's drift counts to those of the deployment: the layers placed as
    :func:`models.evaluate.evaluate_statistical` and ``--chip sim`` place them (the smallest array
    that holds them), every block cell programmed in row order, k counted by the variability
    model's ``drift_count`` (by default each layer's own block alone is counted)."""
    layers = list(model.layers)
    v = layers[0].variability
    placement = plan_placement([layer.crossbar_shape for layer in layers])
    for layer, k in zip(layers, placement.drift_counts(v.drift_count, "row")):
        layer.set_drift_counts(k)


def loss_fn(outputs: torch.Tensor, y: torch.Tensor, n_classes: int, tail: float = 1.0) -> torch.Tensor:
    """Mean loss of logits ``outputs`` (..., B, out) — any leading axes (sampled transfers)
    share the targets ``y`` (B,).  ``tail`` < 1 (with a leading axis of T transfers): each
    example's loss is the mean over its worst ``ceil(tail·T)`` transfers (the conditional value at
    risk), so training cares about the transfers that break an example, not the average one."""
    if n_classes == 1:
        logits = outputs[..., 0]
        per = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype).expand_as(logits), reduction="none")
    else:
        per = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), y.expand(outputs.shape[:-1]).reshape(-1),
                              reduction="none").reshape(outputs.shape[:-1])
    if tail < 1 and per.dim() > 1:
        worst = max(1, math.ceil(tail * per.shape[0]))
        per = per.topk(worst, dim=0).values
    return per.mean()


@torch.no_grad()
def accuracy(model: MLP, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    model.eval()
    return float((predictions(model(x), n_classes) == y.long()).double().mean())


def restart_seed(seed: int, restart: int) -> int:
    """The seed of restart ``restart`` (0, 1, ...) of a run seeded ``seed``: restart 0 is the run
    itself."""
    return int(seed) + RESTART_STRIDE * int(restart)


def training_share(model: MLP, data: Dataset, transfer, n: int = SELECT_TRANSFERS, seed: int = 0) -> float:
    """The robust share of ``model`` on the *training* points: the share of them classified
    correctly in at least 95 % of ``n`` transfers sampled from ``transfer``, by the evaluator
    (:func:`models.evaluate.evaluate_statistical`: the deployment's placement, scales and stuck
    compensation).  What restarts are chosen by; no test point enters it."""
    from .evaluate import evaluate_statistical

    train_only = Dataset(data.name, data.x_train, data.y_train, data.x_train, data.y_train, data.n_classes)
    return float(evaluate_statistical(model, train_only, transfer, n, seed=seed).report()["frac_points_ge_95"])


def _train_restarts(cfg: TrainConfig, data: Dataset) -> TrainResult:
    """``cfg.restarts`` networks, restart r seeded :func:`restart_seed` (cfg.seed, r), each trained
    by ``cfg`` otherwise; keeps the one with the highest :func:`training_share` under the last
    stage's transfer model (the first on a tie)."""
    judge = get_variability(cfg.finish_variability or cfg.variability)
    t0 = time.perf_counter()
    results, shares = [], []
    for r in range(cfg.restarts):
        res = train(replace(cfg, restarts=1, seed=restart_seed(cfg.seed, r)), data)
        results.append(res)
        shares.append(training_share(res.model, data, judge, seed=cfg.seed))
    best = max(range(cfg.restarts), key=lambda r: (shares[r], -r))
    kept = results[best]
    return replace(kept, config=cfg, wall_s=time.perf_counter() - t0,
                   selection={"restart": best, "seed": restart_seed(cfg.seed, best), "judge": judge.name,
                              "transfers": SELECT_TRANSFERS, "training_shares": shares})


def train(cfg: TrainConfig, dataset: Dataset | None = None) -> TrainResult:
    """Train the network ``cfg`` describes; deterministic for a given config."""
    data = dataset or load_dataset(cfg.dataset, cfg.data_seed)
    if cfg.restarts > 1:
        return _train_restarts(cfg, data)
    if (cfg.robust_epochs or cfg.finish_epochs) and data.n_classes != 1:
        raise ValueError("robust_epochs and finish_epochs train a one-output binary classifier; "
                         f"dataset {cfg.dataset!r} has {data.n_classes} classes")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.n_features, data.n_classes)
    if cfg.placed_drift:
        place_drift_counts(model)
    history = []
    if cfg.replicas > 1:
        base = train(replace(cfg, hidden=(base_hidden(cfg.hidden[0], cfg.replicas),), aware=False, noise=0.0,
                             replicas=1, robust_epochs=0, finish_variability="", finish_epochs=0, placed_drift=False),
                     data)
        replicate_hidden(base.model, model, cfg.replicas)
        history, final_lr = list(base.history), base.final_lr
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = data.x_train.shape[0]
        bs = n if cfg.batch_size in (0, None) or cfg.batch_size >= n else cfg.batch_size
        model.train()
        with torch_threads(1):
            final_lr = _fit(model, opt, cfg, data, bs, history)
    if cfg.robust_epochs:
        with torch_threads(1):
            final_lr = _fit_robust(model, cfg, data, history, cfg.variability, cfg.robust_epochs, cfg.transfers)
    if cfg.finish_epochs:
        final_lr = finish(model, cfg, data, history)
    wall = time.perf_counter() - t0
    return TrainResult(model, cfg, data, accuracy(model, data.x_train, data.y_train, data.n_classes),
                       accuracy(model, data.x_test, data.y_test, data.n_classes), wall, history, final_lr)


def finish(model: MLP, cfg: TrainConfig, data: Dataset, history: list | None = None) -> float:
    """The last stage of :func:`train`: ``cfg.finish_epochs`` of robust-share fine-tuning of
    ``model`` (in place) against ``cfg.finish_variability`` — so a network trained by ``cfg``
    without its finish (e.g. shared by several recipes) can be finished exactly as :func:`train`
    would; returns the learning rate the schedule ended at."""
    if not cfg.finish_epochs:
        raise ValueError("the config has no finish stage (finish_variability, finish_epochs)")
    with torch_threads(1):
        return _fit_robust(model, cfg, data, [] if history is None else history, cfg.finish_variability,
                           cfg.finish_epochs, cfg.finish_transfers)


def _fit_robust(model: MLP, cfg: TrainConfig, data: Dataset, history: list, variability: str, epochs: int,
                transfers: int) -> float:
    """``epochs`` of fine-tuning on the robust share (:func:`models.robust_train.robust_loss`) judged
    by ``transfers`` transfers of ``variability`` per step, full batch; returns the learning rate
    the schedule ended at."""
    transfer = get_variability(variability)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.robust_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs, eta_min=COSINE_FLOOR * cfg.robust_lr)
    x, y = data.x_train, data.y_train
    model.train()
    canon = isinstance(transfer, Drolet2023Model) and cfg.activation == "sigmoid" and len(cfg.hidden) == 1
    if canon:
        positive_output_weights(model)
    for epoch in range(epochs):
        loss = robust_loss(model, x, y, transfer, transfers, gen, share=cfg.robust_share)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if canon:
            with torch.no_grad():
                model.layers[-1].weight.clamp_(min=0.0)
        sched.step()
        if (epoch + 1) % max(1, epochs // 10) == 0:
            history.append(float(loss.detach()))
    return float(opt.param_groups[0]["lr"])


def _fit(model: MLP, opt, cfg: TrainConfig, data: Dataset, bs: int, history: list) -> float:
    """The training loop; returns the learning rate the schedule ended at."""
    x, y = data.x_train, data.y_train
    n = x.shape[0]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs, eta_min=COSINE_FLOOR * cfg.lr) \
        if cfg.lr_schedule == "cosine" else None
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n) if bs < n else None
        for start in range(0, n, bs):
            idx = perm[start:start + bs] if perm is not None else slice(None)
            loss = loss_fn(model(x[idx]), y[idx], data.n_classes, cfg.tail)
            if cfg.kl_weight > 0:
                loss = loss + cfg.kl_weight * model.kl_divergence() / n
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
        if (epoch + 1) % max(1, cfg.epochs // 10) == 0:
            history.append(float(loss.detach()))
    return float(opt.param_groups[0]["lr"])
