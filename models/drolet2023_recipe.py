"""Drolet et al. 2023's training recipe, re-implemented: the networks their public code trains.

Their code (github 3it-inpaqt/Hardware-Aware-Article, commit 3fd4467, MIT; ``main.py``,
``train_standard.py``, ``networks/*feed_forward.py``), read and re-implemented here without copying:
a 2 → 8 (sigmoid) → 1 network, Xavier-uniform weights and biases of 0.01, binary cross-entropy on
the logit, 10 000 epochs of Adam at lr 0.1 over shuffled mini-batches of 256 (the last one smaller).

* **hardware-aware**: weight decay 1e-4; every forward samples one transfer of every tensor from
  :class:`~models.drolet2023.Drolet2023Model` and the gradient passes *straight through* to the
  weights (their ``weight + (w_transferred − weight).detach()``); after each step the elements
  whose device was stuck in that step's transfer get their previous values back;
* **regular**: plain weights, no weight decay (their ``FeedForward`` gives Adam none).

The mini-batch orders of all epochs are drawn at once (one seeded generator), so the loop does
nothing but the steps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .datasets import Dataset
from .drolet2023 import DROLET2023, Drolet2023Model
from .layers import MLP
from .runtime import torch_threads


@dataclass(frozen=True)
class PaperRecipe:
    """The published recipe's settings (their ``utils/settings.py`` defaults).

    Attributes:
        hidden: hidden units; epochs; batch_size; lr: Adam learning rate;
        weight_decay_aware / weight_decay_regular: Adam weight decay of each kind of network.
    """

    hidden: int = 8
    epochs: int = 10_000
    batch_size: int = 256
    lr: float = 0.1
    weight_decay_aware: float = 1e-4
    weight_decay_regular: float = 0.0


def train_paper_recipe(data: Dataset, aware: bool, seed: int, recipe: PaperRecipe = PaperRecipe(),
                       transfer: Drolet2023Model = DROLET2023) -> tuple[MLP, float]:
    """Train one network with the published recipe; returns it (an xbarlab :class:`MLP` of plain
    ``Linear`` layers, per-layer scales as in the paper) and the wall time, s."""
    if data.n_classes != 1:
        raise ValueError("the published recipe trains a one-output binary classifier")
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    model = MLP([data.n_features, recipe.hidden, 1], "sigmoid", "linear", "layer")
    for layer in model.layers:
        torch.nn.init.xavier_uniform_(layer.weight)
        torch.nn.init.constant_(layer.bias, 0.01)
    params = [t for layer in model.layers for t in (layer.weight, layer.bias)]
    is_bias = [False, True] * len(model.layers)
    opt = torch.optim.Adam(params, lr=recipe.lr,
                           weight_decay=recipe.weight_decay_aware if aware else recipe.weight_decay_regular)
    x, y = data.x_train, data.y_train
    n, bs = x.shape[0], recipe.batch_size
    orders = torch.argsort(torch.rand(recipe.epochs, n, generator=gen), dim=1)
    batches = [(s, min(s + bs, n)) for s in range(0, n, bs)]
    with torch_threads(1):
        for epoch in range(recipe.epochs):
            xe, ye = x[orders[epoch]], y[orders[epoch]]
            for a, b in batches:
                if aware:
                    drawn = [transfer.sample_tensor_stuck(p.detach(), 1, gen, bias=ib) for p, ib in zip(params, is_bias)]
                    eff = [p + (w[0].to(p.dtype) - p).detach() for p, (w, _) in zip(params, drawn)]
                    stuck = [m[0] for _, m in drawn]
                    kept = [p.detach()[m].clone() for p, m in zip(params, stuck)]
                else:
                    eff = params
                w1, b1, w2, b2 = eff
                out = torch.sigmoid(xe[a:b] @ w1.T + b1) @ w2.T + b2
                loss = F.binary_cross_entropy_with_logits(out[:, 0], ye[a:b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if aware:
                    with torch.no_grad():
                        for p, m, v in zip(params, stuck, kept):
                            p[m] = v
    model.eval()
    return model, time.perf_counter() - t0
