"""Crossbar-aware layers: mapping, sampled transfers, hardware dropout, noise injection, KL."""
import numpy as np
import pytest
import torch

from models.layers import MLP, CrossbarLinear, conductances_to_weights, weights_to_conductances
from models.variability import VariabilityModel, get_variability
from programming.mapping import ConductanceMapping

torch.manual_seed(0)


@pytest.mark.parametrize("scales", ["output", "layer"])
def test_torch_mapping_is_the_programming_mapping(scales):
    wb = torch.randn(3, 5, dtype=torch.float64)
    g, scale = weights_to_conductances(wb, 100e-6, 500e-6, scales)
    mapped = ConductanceMapping(100e-6, 500e-6, per_output=scales == "output").encode(wb.numpy())
    np.testing.assert_allclose(g.numpy(), mapped.targets, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(scale.numpy(), mapped.scale, rtol=1e-12)
    torch.testing.assert_close(conductances_to_weights(g, scale), wb)
    np.testing.assert_allclose(mapped.decode(g.numpy()), wb.numpy(), rtol=1e-9)


def test_every_output_uses_the_whole_window():
    """One scale per output: a row of small weights still spans g_min..g_max (not a sliver)."""
    wb = torch.tensor([[10.0, -5.0, 2.0], [0.1, -0.05, 0.02], [0.0, 0.0, 0.0]], dtype=torch.float64)
    g, scale = weights_to_conductances(wb, 100e-6, 500e-6)
    assert scale.tolist() == pytest.approx([10.0 / 400e-6, 0.1 / 400e-6, 1.0 / 400e-6])
    assert g[:, 0].max().item() == pytest.approx(500e-6) and g[:, 2].max().item() == pytest.approx(500e-6)
    assert g[:, 1].max().item() == pytest.approx(300e-6)          # G- of -5: half of output 0's range
    assert torch.all(g[:, 4:] == 100e-6)                            # an all-zero output: both devices idle
    # the same absolute conductance error is the same *relative* weight error for both outputs
    err = conductances_to_weights(g + 4e-6 * torch.tensor([1.0, 0, 1.0, 0, 0, 0]), scale) - wb
    assert (err[0] / wb[0, 0]).tolist() == pytest.approx((err[1] / wb[1, 0]).tolist())
    # one scale per layer: the small output sits in 1 % of the window, its error 100× larger
    g, scale = weights_to_conductances(wb, 100e-6, 500e-6, "layer")
    assert scale.tolist() == pytest.approx([10.0 / 400e-6] * 3) and g[:, 2].max().item() == pytest.approx(104e-6)
    with pytest.raises(ValueError, match="unknown scales"):
        weights_to_conductances(wb, 100e-6, 500e-6, "column")


def test_eval_forward_is_the_plain_linear_map():
    layer = CrossbarLinear(4, 3).eval()
    x = torch.rand(7, 4)
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias)


def test_training_forward_samples_transfers_around_the_weights():
    layer = CrossbarLinear(4, 3, variability=VariabilityModel(stuck_lrs_frac=0, stuck_hrs_frac=0), transfers=1)
    layer.train()
    x = torch.rand(5, 4)
    a, b = layer(x), layer(x)
    ideal = x @ layer.weight.T + layer.bias
    assert not torch.allclose(a, b)                               # every forward is a new transfer
    assert (a - ideal).abs().max() < 0.2 * ideal.abs().max()      # ... near the mean weights


def test_transfers_axis_runs_every_example_through_every_sampled_chip():
    layer = CrossbarLinear(4, 3, transfers=6).train()
    out = layer(torch.rand(10, 4))
    assert out.shape == (6, 10, 3)
    mlp = MLP([4, 5, 2], transfers=6).train()
    assert mlp(torch.rand(10, 4)).shape == (6, 10, 2)
    assert mlp.eval()(torch.rand(10, 4)).shape == (10, 2)


def test_hardware_dropout_suppresses_updates_of_stuck_devices():
    layer = CrossbarLinear(3, 2, compensate=False, variability=get_variability("ideal"), transfers=1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.3, 0.2], [0.1, 0.4, -0.6]]))
        layer.bias.copy_(torch.tensor([0.05, -0.05]))
    rows, cols = layer.crossbar_shape
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    mask[0, 0] = True            # G+ of weight (0, 0) (positive: its G- idles at g_min)
    layer.set_stuck(mask, torch.full((rows, cols), 573e-6))
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.weight.detach().clone()
    layer.train()
    loss = layer(torch.rand(16, 3)).pow(2).sum()
    loss.backward()
    assert layer.weight.grad[0, 0] == 0                           # no gradient through the stuck device
    assert (layer.weight.grad.abs() > 0).sum() == 5
    opt.step()
    assert layer.weight[0, 0] == before[0, 0]
    # the stuck device's value is what the forward uses (also in evaluation)
    eff = layer.eval().effective_matrix()
    scale = layer.matrix()[0].abs().max().item() / 400e-6          # output 0's own scale
    assert eff[0, 0].item() == pytest.approx(scale * (573e-6 - 100e-6), rel=1e-5)


def test_sampled_stuck_devices_get_no_gradient():
    always_stuck = VariabilityModel(stuck_lrs_frac=0.5, stuck_hrs_frac=0.5)
    layer = CrossbarLinear(3, 2, variability=always_stuck, compensate=False, transfers=1).train()
    layer(torch.rand(8, 3)).sum().backward()
    assert torch.count_nonzero(layer.weight.grad) == 0 and torch.count_nonzero(layer.bias.grad) == 0


def test_noise_injection_only_in_training():
    layer = CrossbarLinear(4, 3, aware=False, noise=0.1, transfers=1)
    x = torch.rand(5, 4)
    layer.train()
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


def test_kl_uses_the_hardware_sigma_and_regularizes():
    layer = CrossbarLinear(4, 3)
    with torch.no_grad():                       # weights beyond the prior's scale
        layer.weight.copy_(2 + torch.rand(3, 4))
        layer.bias.fill_(-2.0)
    kl = layer.kl_divergence(prior_sigma=1.0)
    assert torch.isfinite(kl) and kl > 0
    kl.backward()
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0
    with torch.no_grad():
        layer.weight.mul_(3)
        layer.bias.mul_(3)
    assert layer.kl_divergence(1.0) > kl                          # larger weights cost more


def test_bad_layer_settings_are_refused():
    with pytest.raises(ValueError, match="noise"):
        CrossbarLinear(2, 2, noise=1.5)
    with pytest.raises(ValueError, match="transfers"):
        CrossbarLinear(2, 2, transfers=0)
    with pytest.raises(ValueError, match="activation"):
        MLP([2, 3, 1], activation="softplus")
    with pytest.raises(ValueError, match="features"):
        CrossbarLinear(3, 2)(torch.rand(4, 5))
    with pytest.raises(ValueError, match="stuck mask"):
        CrossbarLinear(3, 2).set_stuck(torch.zeros(2, 2, dtype=torch.bool), torch.zeros(2, 2))
