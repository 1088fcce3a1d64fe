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

The mini-batch orders of all epochs are drawn at once (one seeded generator per network), and the
networks of several seeds train together (stacked parameters), so the loop does nothing but the steps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .datasets import Dataset
from .drolet2023 import DROLET2023, Drolet2023Model
from .layers import MLP
from .runtime import torch_threads


#: epochs whose transfers are drawn at once (the draws do not depend on the weights)
CHUNK_EPOCHS = 50


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


def train_paper_recipe(data: Dataset, aware: bool, seeds, recipe: PaperRecipe = PaperRecipe(),
                       transfer: Drolet2023Model = DROLET2023) -> tuple[list[MLP], float]:
    """Train one network per seed of ``seeds`` with the published recipe, all at once (their
    parameters stacked on a leading axis: Adam and weight decay act per element, the losses add,
    so every network trains exactly as if alone, with its own initialization, batch order and
    transfers).  Returns the networks (xbarlab :class:`MLP` of plain ``Linear`` layers, per-layer
    scales as in the paper) and the wall time, s."""
    if data.n_classes != 1:
        raise ValueError("the published recipe trains a one-output binary classifier")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("train_paper_recipe needs at least one seed")
    t0 = time.perf_counter()
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    sizes = [(recipe.hidden, data.n_features), (recipe.hidden,), (1, recipe.hidden), (1,)]

    def xavier(shape, g):                      # torch.nn.init.xavier_uniform_ with the seed's generator
        bound = math.sqrt(6.0 / (shape[0] + shape[1]))
        return (2 * torch.rand(shape, generator=g) - 1) * bound

    params = [torch.nn.Parameter(torch.stack([xavier(sz, g) if len(sz) == 2 else torch.full(sz, 0.01)
                                              for g in gens])) for sz in sizes]
    is_bias = [False, True, False, True]
    opt = torch.optim.Adam(params, lr=recipe.lr,
                           weight_decay=recipe.weight_decay_aware if aware else recipe.weight_decay_regular)
    x, y = data.x_train, data.y_train
    n, bs, S = x.shape[0], recipe.batch_size, len(seeds)
    orders = torch.stack([torch.argsort(torch.rand(recipe.epochs, n, generator=g), dim=1) for g in gens], dim=1)
    batches = [(a, min(a + bs, n)) for a in range(0, n, bs)]
    gen = gens[0]
    chunk = CHUNK_EPOCHS * len(batches)                                     # transfers drawn at once
    step = 0
    with torch_threads(1):
        for epoch in range(recipe.epochs):
            xe, ye = x[orders[epoch]], y[orders[epoch]]                     # (S, n, in), (S, n)
            for a, b in batches:
                if aware:
                    if step % chunk == 0:
                        ahead = [transfer.draws_for(p.shape, chunk, gen, bias=ib, nets=True)
                                 for p, ib in zip(params, is_bias)]
                    i = step % chunk
                    drawn = [transfer.sample_tensor_stuck(p.detach(), 1, bias=ib, nets=True,
                                                          draws=tuple(d.step(i) for d in dr))
                             for p, ib, dr in zip(params, is_bias, ahead)]
                    step += 1
                    eff = [p + (w[0].to(p.dtype) - p).detach() for p, (w, _) in zip(params, drawn)]
                    stuck = [m[0] for _, m in drawn]
                    kept = [p.detach()[m].clone() for p, m in zip(params, stuck)]
                else:
                    eff = params
                w1, b1, w2, b2 = eff
                h = torch.sigmoid(xe[:, a:b] @ w1.transpose(1, 2) + b1[:, None, :])
                out = (h @ w2.transpose(1, 2))[..., 0] + b2
                loss = F.binary_cross_entropy_with_logits(out, ye[:, a:b], reduction="none").mean(dim=1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if aware:
                    with torch.no_grad():
                        for p, m, v in zip(params, stuck, kept):
                            p[m] = v
    models = []
    for i in range(S):
        model = MLP([data.n_features, recipe.hidden, 1], "sigmoid", "linear", "layer")
        with torch.no_grad():
            for layer, (w, b) in zip(model.layers, ((params[0], params[1]), (params[2], params[3]))):
                layer.weight.copy_(w[i])
                layer.bias.copy_(b[i])
        models.append(model.eval())
    return models, time.perf_counter() - t0
