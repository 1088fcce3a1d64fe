"""The paper's half moons (Drolet et al. 2023) are regenerated bit for bit, and the leak-free variant
keeps the test points out of training."""
import hashlib

import numpy as np
import pytest
import torch

from models.datasets import PAPER_TEST_INDEX, load_dataset
from models.train import TrainConfig

#: SHA-256 of the float32 points then float32 labels of dataset/train_moon_dataset.txt and
#: dataset/test_moon_dataset.txt of github 3it-inpaqt/Hardware-Aware-Article (commit 3fd4467)
SHIPPED_SHA256 = {"train": "986fdbb32d29e05ea1a08e42b6c074fc43a37763764ed8cbf055159c11fc45e6",
                  "test": "1fd0f1b7d2dacf9ef8650651f69b37543b69482b4e0982b583fc46351c9e71bf"}


def _sha(x: torch.Tensor, y: torch.Tensor) -> str:
    return hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()


def _rows(x: torch.Tensor) -> set:
    return {tuple(r) for r in x.numpy().tolist()}


def test_moons_paper_is_the_shipped_data_exactly():
    d = load_dataset("moons-paper", seed=7)                 # fixed data: the seed does not matter
    assert d.x_train.shape == (875, 2) and d.x_test.shape == (200, 2) and d.x_train.dtype == torch.float32
    assert _sha(d.x_train, d.y_train) == SHIPPED_SHA256["train"]
    assert _sha(d.x_test, d.y_test) == SHIPPED_SHA256["test"]
    assert len(_rows(d.x_test) & _rows(d.x_train)) == 172    # the published leak
    assert float(torch.cat([d.x_train, d.x_test]).min()) == 0.0 and float(torch.cat([d.x_train, d.x_test]).max()) == 1.0


def test_moons_paper_clean_has_the_same_test_points_and_no_leak():
    paper, clean = load_dataset("moons-paper"), load_dataset("moons-paper-clean")
    assert torch.equal(paper.x_test, clean.x_test) and torch.equal(paper.y_test, clean.y_test)
    assert clean.x_train.shape == (800, 2)
    assert not _rows(clean.x_test) & _rows(clean.x_train)
    assert len(set(PAPER_TEST_INDEX)) == 200 and max(PAPER_TEST_INDEX) < 1000
    # the noisier paper set is not today's noise-0.05 moons
    assert not torch.equal(load_dataset("moons").x_test, paper.x_test)


def test_train_config_knows_the_paper_datasets():
    assert TrainConfig(dataset="moons-paper").hidden == (8,)
    with pytest.raises(ValueError, match="unknown dataset"):
        TrainConfig(dataset="moons-papr")
