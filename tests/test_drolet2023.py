"""Drolet et al. 2023's transfer model: its samples follow its definition (per-tensor mapping, tuning
imprecision, bootstrapped drift with the code's keys and outlier rule, stuck devices, untouched
output bias), and it plugs into training, evaluation and model files."""
import numpy as np
import pytest
import torch

from models.datasets import load_dataset
from models.drolet2023 import DROLET2023, K_MAX, Drolet2023Model
from models.drolet2023_drift import DRIFT_QUANTILES_US, LEVELS, SIGMA_DICT_US
from models.evaluate import evaluate_statistical
from models.layers import MLP
from models.model_io import load_model, save_model
from models.train import TrainConfig, train
from models.variability import get_variability

N = 100_000
QUIET = dict(offset_mean=0.0, offset_std=0.0, sigma_rel_a=0.0, sigma_rel_b=0.0, drift=False,
             stuck_lrs_frac=0.0, stuck_hrs_frac=0.0)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_drift_keys_count_later_cells_column_major_and_spare_the_last():
    k = Drolet2023Model.drift_keys((8, 2))
    assert k[0, 0] == 16 and k[7, 0] == 9 and k[0, 1] == 8 and k[6, 1] == 2 and k[7, 1] == 0
    assert sorted(k.flatten().tolist()) == [0, *range(2, 17)]
    assert Drolet2023Model.drift_keys((8,)).tolist() == [8, 7, 6, 5, 4, 3, 2, 0]
    assert Drolet2023Model.drift_keys((1, 100)).max() == K_MAX        # beyond the measured keys: clamped


@pytest.mark.parametrize("k", [2, 5, 16, 30])
def test_drift_bootstraps_the_measured_quantiles(k):
    keys = torch.full((N,), k)
    d = DROLET2023.sample_drift(keys, 1, _gen(k), outliers=False)[0].numpy() * 1e6
    q = np.asarray(DRIFT_QUANTILES_US[k])
    for p in (0.05, 0.25, 0.5, 0.75, 0.95):                      # the draws' CDF at the table's quantiles
        assert np.mean(d <= np.interp(p, LEVELS, q)) == pytest.approx(p, abs=0.005)
    mean = np.sum((q[1:] + q[:-1]) / 2 * np.diff(LEVELS))                                    # mean of the piecewise-linear inverse CDF
    assert d.mean() == pytest.approx(mean, abs=0.1)
    assert d.min() >= q[0] and d.max() <= q[-1]


def test_outlier_rule_replaces_large_weight_drifts_by_60_uS():
    keys = torch.full((N,), 1)
    thr = 4 * SIGMA_DICT_US[1]
    levels, q = np.asarray(LEVELS), np.asarray(DRIFT_QUANTILES_US[1])
    u = np.linspace(0, 1, 200_001)
    expected = np.mean(np.abs(np.interp(u, levels, q)) > thr)
    assert expected > 0.001                                          # the rule matters at k = 1
    d = DROLET2023.sample_drift(keys, 1, _gen(2))[0].numpy() * 1e6
    replaced = np.isclose(d, 60.0)
    assert np.mean(replaced) == pytest.approx(expected, abs=0.002)
    assert np.all(np.abs(d[~replaced]) <= thr)
    assert not np.any(np.isclose(DROLET2023.sample_drift(keys, 1, _gen(2), outliers=False)[0].numpy() * 1e6, 60.0))


def test_a_quiet_transfer_returns_the_weights_on_both_mappings():
    m = DROLET2023.with_(**QUIET)
    mixed = torch.tensor([[0.3, -1.2], [0.0, 0.7]])
    positive = torch.tensor([0.1, 0.4, 0.25])
    for w in (mixed, positive, -positive):
        assert torch.allclose(m.sample_tensor(w, 3, _gen())[1].float(), w, atol=1e-6)


def test_the_offset_follows_each_mapping():
    m = DROLET2023.with_(**{**QUIET, "offset_mean": 0.01})
    # differential pair: w_max maps to G+ = +400 µS, G- = -400 µS; both gain 1 %, so w' = 1.01 w
    w = torch.tensor([-0.5, 1.0])
    assert m.sample_tensor(w, 1)[0].tolist() == pytest.approx([-0.505, 1.01])
    # single column over the tensor's own range onto 100-500 µS, offset subtracted: G = 100 µS -> 99
    w = torch.tensor([1.0, 3.0])
    lo_g, hi_g = 100e-6 * 0.99, 500e-6 * 0.99
    assert m.sample_tensor(w, 1)[0].tolist() == pytest.approx([1 + (lo_g - 100e-6) / 400e-6 * 2,
                                                                1 + (hi_g - 100e-6) / 400e-6 * 2])


def test_tuning_imprecision_has_the_published_spread_on_the_span():
    m = DROLET2023.with_(drift=False, stuck_lrs_frac=0.0, stuck_hrs_frac=0.0)
    w = torch.tensor([1.0, -1.0, 0.0])                 # G+/G-: +400/-400, -400/+400, -400/-400 µS
    err = (m.sample_tensor(w, N, _gen(3)) - w).numpy() * 800e-6          # in S of G+ - G-

    def device(g):                                      # std of one device: offset and imprecision
        return np.hypot(g * 0.339e-2, (0.691e-2 - 6.24 * g) * g)
    both = np.hypot(device(400e-6), device(-400e-6))
    assert err[:, 0].std() == pytest.approx(both, rel=0.02)
    assert err[:, 2].std() == pytest.approx(np.sqrt(2) * device(-400e-6), rel=0.02)
    assert err[:, 0].mean() == pytest.approx(-0.589e-2 * 800e-6, rel=0.02)


def test_stuck_devices_have_the_published_shares_and_values():
    m = DROLET2023.with_(drift=False, offset_std=0.0, offset_mean=0.0, sigma_rel_a=0.0, sigma_rel_b=0.0)
    w = torch.tensor([1.0, 0.9])                       # single column: 500 and 100 µS... unless stuck
    g, stuck = m.sample_tensor_stuck(w, N, _gen(4))
    g = 100e-6 + (g - 0.9) / 0.1 * 400e-6              # back to conductances
    assert stuck.double().mean().item() == pytest.approx(0.01, abs=0.0015)
    gs = g[stuck].numpy()
    lrs, hrs = gs[gs > 150e-6], gs[gs <= 150e-6]
    assert len(lrs) / len(gs) == pytest.approx(0.5, abs=0.05)
    assert lrs.mean() == pytest.approx(573e-6, rel=0.03) and lrs.std() == pytest.approx(99e-6, rel=0.15)
    assert hrs.min() >= 10e-6 and hrs.max() <= 100e-6 and hrs.mean() == pytest.approx(55e-6, rel=0.05)
    assert torch.allclose(g[~stuck], torch.tensor([500e-6, 100e-6], dtype=g.dtype).expand(N, 2)[~stuck])


def test_the_output_bias_and_the_last_cell_are_left_alone():
    torch.manual_seed(0)
    net = MLP([2, 8, 1], "sigmoid", "linear", "layer")
    mats = DROLET2023.sample_network(net.layers, 50, _gen(5))
    assert mats[0].shape == (50, 8, 3) and mats[1].shape == (50, 1, 9)
    assert torch.all(mats[1][:, 0, -1] == net.layers[1].bias.detach().double())
    only_drift = DROLET2023.with_(offset_std=0.0, offset_mean=0.0, sigma_rel_a=0.0, sigma_rel_b=0.0,
                                  stuck_lrs_frac=0.0, stuck_hrs_frac=0.0)
    w = net.layers[0].weight.detach()
    drawn = only_drift.sample_tensor(w, 50, _gen(6))
    assert torch.allclose(drawn[:, 7, 1].float(), w[7, 1].expand(50))            # programmed last
    assert (drawn[:, 0, 0].float() != w[0, 0]).all()


def test_evaluation_is_seeded_and_aware_training_samples_the_published_model(tmp_path):
    assert get_variability("drolet2023") is DROLET2023
    data = load_dataset("moons-paper")
    r = train(TrainConfig(dataset="moons-paper", variability="drolet2023", epochs=5, transfers=4))
    layer = r.model.layers[0]
    assert layer.published and layer.drift_k.abs().sum() == 0
    layer.train()
    assert not torch.equal(layer.effective_matrix(), layer.matrix())             # training samples
    layer.eval()
    assert torch.equal(layer.effective_matrix(), layer.matrix())
    a = evaluate_statistical(r.model, data, DROLET2023, 300, seed=1)
    b = evaluate_statistical(r.model, data, DROLET2023, 300, seed=1)
    assert a.mode == "drolet2023" and np.array_equal(a.correct, b.correct) and a.correct.shape == (300, 200)
    path = save_model(tmp_path / "m.pt", r.model, r.config.to_dict())
    model, meta = load_model(path)
    assert model.layers[0].variability == DROLET2023 and meta["train"]["dataset"] == "moons-paper"
    with pytest.raises(ValueError, match="drolet2023"):
        TrainConfig(variability="drolet2023", kl_weight=0.1)
