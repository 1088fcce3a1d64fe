"""Datasets of the hardware-aware experiments, as float32 tensors with a fixed train/test split.

``moons``  — ``make_moons(n=1000, noise=0.05, random_state=seed)`` min-max scaled to [0, 1] per
             feature, 800 train / 200 test points (a seeded partition), one binary target (float 0/1).
             The noise Drolet et al. 2023's code *states*; an easier set than the one it ships.
``moons-paper`` — the half moons Drolet et al. 2023 actually trained and tested on (the data files
             of their public code, github 3it-inpaqt/Hardware-Aware-Article, commit 3fd4467, MIT):
             ``make_moons(1000, noise=0.2, random_state=42)``, scaled to [0, 1] by scikit-learn's
             ``MinMaxScaler`` over all 1000 points, then float32; training set = the 875 points of
             ``train_test_split(..., test_size=0.125, random_state=1)`` (its 125-point validation
             part is never used in training), test set = the 200 points at :data:`PAPER_TEST_INDEX`
             (drawn from all 1000 with an unrecorded seed, so they are listed here), 172 of which are
             also training points.  Seed-independent.
``moons-paper-clean`` — the same 1000 points and the same 200 test points, trained on the 800 other
             points: no test point among the training points.
``digits`` — scikit-learn's 8×8 handwritten digits (1797 images), pixels scaled to [0, 1]
             (÷16), 80 % / 20 % stratified split, 10 classes (int64 labels).

Every split is seeded, so a model file that records ``(name, seed)`` can rebuild its test set.
Inputs are non-negative and at most 1, which is what a crossbar's row drivers take (inputs are
mapped to read-level voltages at deployment).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .names import DATASETS

#: indices (into ``make_moons(1000, noise=0.2, random_state=42)``) of the 200 test points of Drolet et
#: al. 2023's shipped ``dataset/test_moon_dataset.txt`` (github 3it-inpaqt/Hardware-Aware-Article,
#: commit 3fd44671408819999de8708d27ce08899ae3265e, MIT License, Copyright (c) 2023 Philippe Drolet),
#: in the file's order; found by matching its float32 points to the regenerated ones (all exact).
PAPER_TEST_INDEX = (
    272, 294, 73, 333, 143, 169, 632, 688, 279, 33, 106, 751, 171, 382, 707, 138, 351, 639, 529, 214, 940, 829,
    193, 677, 575, 885, 965, 678, 562, 367, 399, 964, 521, 832, 343, 514, 560, 647, 387, 933, 70, 262, 22, 313,
    833, 357, 250, 761, 116, 860, 902, 876, 642, 383, 88, 319, 574, 616, 564, 172, 659, 673, 777, 811, 723, 753,
    567, 354, 519, 510, 687, 287, 679, 858, 7, 318, 204, 515, 795, 30, 758, 431, 136, 124, 794, 967, 434, 684,
    379, 504, 536, 374, 773, 274, 414, 87, 300, 822, 548, 317, 603, 467, 943, 541, 256, 331, 651, 282, 295, 702,
    705, 711, 212, 768, 337, 623, 826, 480, 775, 206, 491, 461, 724, 305, 693, 920, 952, 646, 285, 251, 878, 323,
    277, 34, 782, 810, 611, 619, 867, 827, 686, 507, 821, 271, 970, 550, 126, 613, 236, 8, 395, 373, 992, 640,
    649, 654, 846, 435, 118, 662, 503, 194, 223, 243, 774, 428, 624, 218, 152, 731, 559, 421, 626, 334, 249, 92,
    830, 736, 886, 186, 420, 734, 591, 497, 107, 925, 545, 264, 520, 963, 240, 994, 267, 293, 26, 630, 237, 861,
    951, 466)
#: the paper's data generation and training split (see the module docstring)
PAPER_MOONS = dict(n_samples=1000, noise=0.2, random_state=42)
PAPER_VALIDATION = dict(test_size=0.125, random_state=1)



@dataclass(frozen=True)
class Dataset:
    """A train/test split.  ``n_classes == 1`` means a binary task with one sigmoid output."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def _split(x: np.ndarray, y: np.ndarray, test_size, seed: int, stratify: bool):
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y if stratify else None)


def load_dataset(name: str, seed: int = 0, n_samples: int = 1000, noise: float = 0.05) -> Dataset:
    """Load ``name`` (one of :data:`DATASETS`) with its seeded split.

    ``n_samples`` and ``noise`` apply to ``moons`` only; the ``moons-paper`` sets ignore ``seed``.
    """
    if name in ("moons-paper", "moons-paper-clean"):
        return _paper_moons(name)
    if name == "moons":
        from sklearn.datasets import make_moons

        if n_samples < 10:
            raise ValueError(f"moons needs n_samples >= 10, got {n_samples}")
        x, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
        x = (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0))
        xtr, xte, ytr, yte = _split(x, y, 0.2, seed, stratify=False)
        return Dataset(name, torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr, dtype=torch.float32),
                       torch.tensor(xte, dtype=torch.float32), torch.tensor(yte, dtype=torch.float32), 1)
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = d.data / 16.0
        xtr, xte, ytr, yte = _split(x, d.target, 0.2, seed, stratify=True)
        return Dataset(name, torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr, dtype=torch.int64),
                       torch.tensor(xte, dtype=torch.float32), torch.tensor(yte, dtype=torch.int64), 10)
    raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")


def _paper_moons(name: str) -> Dataset:
    """Drolet et al. 2023's half moons (module docstring), reproduced bit for bit."""
    from sklearn.datasets import make_moons
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    x, y = make_moons(**PAPER_MOONS)
    x = torch.tensor(MinMaxScaler().fit_transform(x)).float()
    y = torch.tensor(y).float()
    test = np.asarray(PAPER_TEST_INDEX)
    if name == "moons-paper":
        train, _validation = train_test_split(np.arange(len(y)), **PAPER_VALIDATION)
    else:
        train = np.setdiff1d(np.arange(len(y)), test)
    return Dataset(name, x[train], y[train], x[test], y[test], 1)


def predictions(outputs: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class predictions from network outputs ``(..., n_out)`` (logits): threshold 0 for a binary
    task (one output), argmax otherwise."""
    if n_classes == 1:
        return (outputs[..., 0] > 0).long()
    return outputs.argmax(dim=-1)


def dataset_of(meta: dict) -> Dataset:
    """The dataset a saved model was trained on (from its file's ``train`` config)."""
    train = meta.get("train") or {}
    if "dataset" not in train:
        raise ValueError("the model file does not record its dataset (train config missing)")
    return load_dataset(train["dataset"], int(train.get("data_seed", 0)))
