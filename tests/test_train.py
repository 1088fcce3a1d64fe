"""Training configs: the learning-rate schedule, per-dataset defaults, refused settings."""
import math

import pytest

from models.train import COSINE_FLOOR, DATASET_DEFAULTS, TrainConfig, train


@pytest.mark.parametrize("schedule, factor", [("cosine", COSINE_FLOOR), ("constant", 1.0)])
def test_the_learning_rate_follows_the_schedule(schedule, factor):
    r = train(TrainConfig(aware=False, hidden=(2,), epochs=20, lr=0.2, lr_schedule=schedule, seed=0))
    assert r.final_lr == pytest.approx(0.2 * factor)
    assert len(r.history) == 10 and all(math.isfinite(h) for h in r.history)


def test_the_schedule_changes_the_trained_weights():
    runs = [train(TrainConfig(aware=False, hidden=(2,), epochs=30, lr_schedule=s, seed=0)) for s in ("cosine", "constant")]
    a, b = (r.model.matrices()[0] for r in runs)
    assert not (a == b).all()


def test_dataset_defaults_do_not_leak_between_datasets():
    moons, digits = TrainConfig.for_dataset("moons"), TrainConfig.for_dataset("digits")
    assert (moons.lr_schedule, moons.weight_decay, moons.epochs) == ("cosine", 1e-5, 3000)
    for key, value in DATASET_DEFAULTS["digits"].items():
        assert getattr(digits, key) == value
    assert TrainConfig.for_dataset("digits", weight_decay=0.0).weight_decay == 0.0     # explicit wins


@pytest.mark.parametrize("changes, message", [
    ({"lr_schedule": "step"}, "unknown lr_schedule 'step'"),
    ({"weight_decay": float("nan")}, "weight_decay must be >= 0, got nan"),
    ({"kl_weight": -1.0}, "kl_weight must be >= 0"),
    ({"lr": 0.0}, "lr must be > 0, got 0.0"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
])
def test_bad_settings_are_refused_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_the_tail_loss_averages_each_examples_worst_transfers():
    import torch

    from models.train import TrainConfig, loss_fn

    # 4 transfers x 2 examples: logits for the positive class
    out = torch.tensor([[[3.0], [-1.0]], [[2.0], [0.0]], [[-2.0], [1.0]], [[1.0], [2.0]]])
    y = torch.ones(2)
    per = torch.nn.functional.binary_cross_entropy_with_logits(out[..., 0], y.expand(4, 2), reduction="none")
    assert float(loss_fn(out, y, 1)) == pytest.approx(float(per.mean()))
    worst = per.topk(2, dim=0).values                    # each example's two worst transfers
    assert float(loss_fn(out, y, 1, tail=0.5)) == pytest.approx(float(worst.mean()))
    assert float(loss_fn(out, y, 1, tail=0.5)) > float(loss_fn(out, y, 1))
    with pytest.raises(ValueError, match="tail"):
        TrainConfig(tail=0.0)
