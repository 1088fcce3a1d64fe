"""The variability model: its samples follow the configured statistics."""
import numpy as np
import pytest
import torch

from models.variability import (Transfer, VariabilityModel, compensate_pairs, drift_counts, get_variability)
from programming.schedule import cell_rank

N = 200_000


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("g_us", [100.0, 300.0, 500.0])
def test_tuning_imprecision_matches_the_3it_figures(g_us):
    m = VariabilityModel(stuck_lrs_frac=0, stuck_hrs_frac=0)
    g = torch.full((N,), g_us * 1e-6, dtype=torch.float64)
    rel = m.sample(g, generator=_gen()).g / g - 1
    sigma_rel = (0.691 - 6.24e-4 * g_us) / 100          # the published fit, in %/µS
    assert rel.mean().item() == pytest.approx(-0.589e-2, abs=3e-5)
    assert rel.std().item() == pytest.approx(np.hypot(0.339e-2, sigma_rel), rel=0.01)


@pytest.mark.parametrize("k", [1, 10, 30])
def test_neighbour_drift_follows_the_power_laws(k):
    m = VariabilityModel(sigma_rel_a=0, sigma_rel_b=0, offset_mean=0, offset_std=0, stuck_lrs_frac=0,
                         stuck_hrs_frac=0)
    g = torch.full((N,), 300e-6, dtype=torch.float64)
    d = (m.sample(g, k=torch.full((N,), k), generator=_gen(1)).g - g) * 1e6   # µS
    assert d.mean().item() == pytest.approx(-0.460092 * k ** 0.949616, abs=0.05)
    assert d.std().item() == pytest.approx(6.78225 * k ** 0.260443, rel=0.01)


def test_drift_is_zero_for_the_last_cell_and_clamped_beyond_the_fit():
    m = VariabilityModel()
    assert m.drift_sigma(0) == 0 and m.drift_mu(0) == 0
    assert m.drift_sigma(500) == pytest.approx(m.drift_sigma(m.drift_k_max))


def test_stuck_devices_have_the_configured_shares_and_values():
    m = VariabilityModel()
    g = torch.full((N,), 300e-6, dtype=torch.float64)
    t = m.sample(g, generator=_gen(2))
    lrs = t.stuck & (t.g > 300e-6 + 0.05e-3)
    hrs = t.stuck & (t.g <= 100e-6)
    assert t.stuck.float().mean().item() == pytest.approx(0.01, abs=0.001)
    assert lrs.float().mean().item() == pytest.approx(0.005, abs=0.0008)
    assert hrs.float().mean().item() == pytest.approx(0.005, abs=0.0008)
    assert t.g[hrs].min().item() >= 10e-6 and t.g[hrs].max().item() <= 100e-6
    assert t.g[t.stuck & (t.g > 100e-6)].mean().item() == pytest.approx(573e-6, rel=0.05)


def test_ideal_model_reproduces_the_targets_exactly():
    g = torch.rand(50, 8, dtype=torch.float64) * 400e-6 + 100e-6
    t = get_variability("ideal").sample(g, k=torch.randint(0, 20, (50, 8)), n=3, generator=_gen())
    assert torch.equal(t.g, g.expand(3, 50, 8)) and not t.stuck.any()


def test_samples_are_differentiable_in_the_targets():
    g = torch.full((4, 6), 300e-6, dtype=torch.float64, requires_grad=True)
    VariabilityModel(stuck_lrs_frac=0, stuck_hrs_frac=0).sample(g, generator=_gen()).g.sum().backward()
    assert torch.all(g.grad > 0.9) and torch.all(g.grad < 1.1)


def test_drift_counts_line_and_all():
    t = np.ones((3, 4), bool)
    r = cell_rank((3, 4), "row")
    line = drift_counts(t, r, "line")
    # cell (0, 0): 3 later cells on its row, 2 later cells on its column
    assert line[0, 0] == 5 and line[2, 3] == 0 and line[1, 2] == 1 + 1
    assert drift_counts(t, r, "all")[0, 0] == 11
    t[0, 1] = False                                         # untargeted cells neither count nor drift
    line = drift_counts(t, r, "line")
    assert line[0, 0] == 4 and line[0, 1] == 0


def test_compensation_restores_the_pair_difference():
    m = get_variability("ideal")
    targets = torch.tensor([[300e-6, 100e-6, 100e-6, 400e-6]], dtype=torch.float64)
    g = torch.tensor([[573e-6, 100e-6, 100e-6, 40e-6]], dtype=torch.float64)       # G+ of pair 0 stuck
    stuck = torch.tensor([[True, False, False, True]])                              # G- of pair 1 stuck
    out = compensate_pairs(targets, Transfer(g, stuck), m).g
    assert out[0, 0].item() == 573e-6 and out[0, 1].item() == pytest.approx(373e-6)   # 573 - (300 - 100)
    assert out[0, 2].item() == pytest.approx(100e-6)        # 40 - 300 is below the window: clipped
    assert out[0, 3].item() == 40e-6


def test_invalid_models_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="offset_std"):
        VariabilityModel(offset_std=-1)
    with pytest.raises(ValueError, match="drift_count"):
        VariabilityModel(drift_count="diagonal")
    with pytest.raises(ValueError, match="finite"):
        VariabilityModel(sigma_rel_a=float("nan"))
    with pytest.raises(ValueError, match="known"):
        get_variability("nope")
    with pytest.raises(ValueError, match="unknown variability model fields"):
        VariabilityModel.from_dict({"bogus": 1})


def test_uniform_tuning_error_is_bounded_with_the_configured_spread():
    """``rel_dist="uniform"``: a ±10 % stop band is σ_rel = 10 %/√3, every error inside it."""
    band = VariabilityModel(name="band", sigma_rel_a=0.10 / np.sqrt(3), sigma_rel_b=0.0, offset_mean=0.0,
                            offset_std=0.0, rel_dist="uniform", drift_sigma_a=0.0, drift_mu_a=0.0,
                            stuck_lrs_frac=0.0, stuck_hrs_frac=0.0)
    g = torch.full((50, 40), 300e-6, dtype=torch.float64)
    rel = (band.sample(g, n=20, generator=torch.Generator().manual_seed(1)).g / g - 1).numpy()
    assert np.abs(rel).max() <= 0.10 + 1e-12 and np.abs(rel).max() > 0.099
    assert rel.std() == pytest.approx(0.10 / np.sqrt(3), rel=0.02)
    assert abs(rel.mean()) < 1e-3
    normal = band.with_(rel_dist="normal").sample(g, n=20, generator=torch.Generator().manual_seed(1)).g / g - 1
    assert float(normal.abs().max()) > 0.15                      # a Gaussian of the same σ is not bounded
    with pytest.raises(ValueError, match="rel_dist"):
        VariabilityModel(rel_dist="lognormal")
