"""Datasets of the hardware-aware experiments, as float32 tensors with a fixed train/test split.

``moons``  — Drolet et al. 2023: ``make_moons(n=1000, noise=0.05)`` min-max scaled to [0, 1] per
             feature, 800 train / 200 test points, one binary target (float 0/1).
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

    ``n_samples`` and ``noise`` apply to ``moons`` only.
    """
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
