"""Deployment onto chips, model files, and Monte Carlo evaluation."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from mock_hw.sim_chip import SimulatedCrossbar
from models.deploy import DeployConfig, chip_forward, deploy, pair_compensation
from models.evaluate import evaluate_statistical, evaluate_tuned
from models.layers import MLP
from models.model_io import ModelError, check_model, load_model, save_model
from models.placement import Placement, PlacementError, plan_placement
from models.train import TrainConfig, train
from models.variability import get_variability


@pytest.fixture(scope="module")
def moons_net():
    # a short regular run (the stuck-cell scenario below is chosen to hurt this network)
    return train(TrainConfig(aware=False, epochs=300, lr=0.3, lr_schedule="constant", weight_decay=1e-4, seed=0))


def test_placement_stacks_or_goes_side_by_side_and_names_sizes():
    p = plan_placement([(3, 16), (9, 2)])                         # the smaller bounding box
    assert p.arrangement == "side-by-side" and p.extent == (9, 18) == p.shape
    p = plan_placement([(3, 16), (9, 2)], (12, 16))
    assert p.arrangement == "stacked" and [b.row for b in p.blocks] == [0, 3]
    p = plan_placement([(3, 16), (9, 2)], (9, 20))               # too few rows to stack
    assert p.arrangement == "side-by-side" and [b.col for b in p.blocks] == [0, 16]
    with pytest.raises(PlacementError, match="chip is 8x8"):
        plan_placement([(3, 16), (9, 2)], (8, 8))


def test_placement_aligned_to_the_bottom_rows_and_read_back_from_its_dict():
    # nearest the column terminals (row R-1): side by side every block ends on the last row,
    # stacked the whole stack moves down; columns and order unchanged
    p = plan_placement([(3, 16), (9, 2)], (9, 18), "bottom")
    assert [(b.row, b.col) for b in p.blocks] == [(6, 0), (0, 16)]
    p = plan_placement([(3, 16), (9, 2)], (14, 16), "bottom")
    assert p.arrangement == "stacked" and [(b.row, b.col) for b in p.blocks] == [(2, 0), (5, 0)]
    targets = p.targets([np.full((3, 16), 1.0), np.full((9, 2), 2.0)])
    assert np.isnan(targets[:2]).all() and (targets[2:5] == 1).all() and (targets[5:, :2] == 2).all()
    assert Placement.from_dict(p.to_dict()) == p
    bad = p.to_dict()
    bad["blocks"][1]["row"] = 4                                  # overlaps layer 0's block
    with pytest.raises(PlacementError, match="overlap"):
        Placement.from_dict(bad)
    bad["blocks"][1]["row"] = 6                                  # past the chip's last row
    with pytest.raises(PlacementError, match="inside the 14x16 chip"):
        Placement.from_dict(bad)
    with pytest.raises(PlacementError, match="alignment 'left'"):
        plan_placement([(3, 16)], (9, 18), "left")


def test_a_layers_inputs_reordered_on_its_block_give_the_same_product():
    # input k driven on block row order[k]: targets, cut and the chip's product follow the order
    from models.deploy import chip_layer, map_model

    model, _ = _tiny_net([3, 4, 2])
    xb = SimulatedCrossbar(6, 12, preset="ideal", seed=0)
    mapped = map_model(model, xb.programming_window)
    plain = plan_placement([m.shape for m in mapped], xb.shape, "bottom")
    moved = plain.with_orders([(3, 0, 2, 1), None])
    assert moved.blocks[1].order is None and Placement.from_dict(moved.to_dict()) == moved
    t = moved.targets([m.targets for m in mapped])
    assert np.array_equal(t[2 + 3, :8], mapped[0].targets[0]) and np.array_equal(moved.cut(t, 0), mapped[0].targets)
    x = np.random.default_rng(0).uniform(-1, 1, (5, 3))
    xb.set_conductances(np.where(np.isnan(t), 100e-6, t))
    z = chip_layer(xb, mapped[0], moved.blocks[0], x)[0]
    wb = model.matrices()[0].double().numpy()
    assert np.allclose(z, x @ wb[:, :-1].T + wb[:, -1], rtol=1e-9, atol=1e-9)
    with pytest.raises(PlacementError, match="permutation of its 4 rows"):
        plain.with_orders([(0, 0, 1, 2), None])


def test_stuck_row_orders_put_a_stuck_device_on_a_rarely_driven_input():
    from models.deploy import input_moments, map_model, stuck_row_orders

    model, _ = _tiny_net([3, 2, 2])
    window = (100e-6, 500e-6)
    mapped = map_model(model, window)
    p = plan_placement([m.shape for m in mapped], (4, 8))
    stuck = np.zeros((1, 4, 8), bool)
    stuck[0, 0, 0] = True                          # layer 0's first input row, a G+ stuck above the window
    g = np.full((1, 4, 8), 300e-6)
    g[0, 0, 0] = 600e-6
    x = torch.tensor([[1.0, 0.0, 1.0], [-1.0, 0.0, 0.5]])   # input 1 is never driven
    moments = input_moments(model, x)
    assert moments[0].tolist() == pytest.approx([1.0, 0.0, 0.625, 1.0])
    orders = stuck_row_orders(mapped, p, stuck, g, window, moments)
    assert orders[1] is None                       # no stuck device in layer 1: in order
    assert orders[0] is not None and orders[0][1] == 0           # input 1 takes the stuck row
    assert sorted(orders[0]) == [0, 1, 2, 3]
    assert stuck_row_orders(mapped, p, np.zeros_like(stuck), g, window, moments) == [None, None]


def _tiny_net(sizes):
    torch.manual_seed(0)
    model = MLP(sizes, "sigmoid", "linear", "output").eval()
    return model, None


def _with_scales(model: MLP, scales: str) -> MLP:
    twin = MLP(model.sizes, model.activation, "linear", scales)
    twin.load_state_dict(model.state_dict())
    return twin.eval()


@pytest.mark.parametrize("scales", ["output", "layer"])
def test_ideal_chip_round_trip_reproduces_software_accuracy(moons_net, scales):
    xb = SimulatedCrossbar(12, 16, preset="ideal", seed=0)
    dep = deploy(_with_scales(moons_net.model, scales), xb, moons_net.dataset)
    w_max = [np.abs(m.numpy()).max(axis=1) for m in moons_net.model.matrices()]
    for layer, wm in zip(dep.report["layers"], w_max):             # the mapping's full range per output
        assert layer["w_max"] == pytest.approx(wm.tolist() if scales == "output" else [wm.max()])
    acc = dep.report["accuracy"]
    assert acc["software"] == pytest.approx(moons_net.test_accuracy)
    assert abs(acc["chip_mvm"] - acc["software"]) <= 0.01
    assert abs(acc["readback"] - acc["software"]) <= 0.01
    for layer in dep.report["layers"]:
        assert layer["status"]["converged"] == layer["cells"]
        assert layer["rel_error_max"] <= 0.01
        assert layer["weight_error_rms"] < 0.01
    # the chip's outputs track the software logits
    out = chip_forward(xb, dep, moons_net.dataset.x_test[:20])[0]
    ref = moons_net.model.eval()(moons_net.dataset.x_test[:20]).detach().numpy()
    np.testing.assert_allclose(out, ref, atol=0.05 * np.abs(ref).max())


def test_deploy_reports_placement_and_unconverged_cells(moons_net):
    xb = SimulatedCrossbar(12, 16, preset="tio2-3it", seed=5)
    dep = deploy(moons_net.model, xb, moons_net.dataset)
    rep = dep.report
    assert rep["placement"]["blocks"][1] == {"layer": 1, "row": 3, "col": 0, "rows": 9, "cols": 2}
    n_bad = sum(c for L in rep["layers"] for k, c in L["status"].items() if k != "converged")
    assert len(rep["unconverged_cells"]) == n_bad
    assert 0.5 <= rep["accuracy"]["chip_mvm"] <= 1.0


def test_pair_compensation_targets_the_partner():
    targets = np.array([[300e-6, 100e-6, 100e-6, 400e-6]])
    stuck = np.array([[True, False, False, False]])
    read = np.array([[560e-6, 100e-6, 100e-6, 400e-6]])
    new = pair_compensation(targets, stuck, read, (100e-6, 500e-6))
    assert new[0, 1] == pytest.approx(360e-6) and np.isnan(new[0, [0, 2, 3]]).all()
    # each partner's own top (through lines: the read a device at the window's top gives there)
    reach = np.array([[500e-6, 300e-6, 500e-6, 500e-6]])
    assert pair_compensation(targets, stuck, read, (100e-6, reach))[0, 1] == pytest.approx(300e-6)


def test_deploy_compensates_stuck_devices_on_a_chip():
    net = MLP([2, 3, 1], kind="linear")
    xb = SimulatedCrossbar(8, 8, preset="ideal", seed=0)
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 0, 0] = True                                          # G+ of weight (0, 0)
    xb.population.stuck[:] = mask
    xb.population.stuck_g[:] = 560e-6
    xb._g = np.where(mask, 560e-6, xb._g)
    with torch.no_grad():
        net.layers[0].weight[0, 0] = 0.5 * net.layers[0].weight.abs().max() + 0.01
    dep = deploy(net, xb)
    assert dep.compensated.sum() == 1 and dep.compensated[0, 0, 1]
    g = dep.conductances[0]
    target = dep.mapped[0].targets
    assert g[0, 0] - g[0, 1] == pytest.approx(target[0, 0] - target[0, 1], rel=0.03)


def test_model_file_round_trip(tmp_path, moons_net):
    path = save_model(tmp_path / "m.pt", moons_net.model, moons_net.config.to_dict(), {"test_accuracy": 1.0})
    model, meta = load_model(path)
    x = moons_net.dataset.x_test
    torch.testing.assert_close(model(x), moons_net.model.eval()(x))
    assert meta["train"]["dataset"] == "moons" and meta["arch"]["sizes"] == [2, 8, 1]
    assert model.scales == "output" == meta["arch"]["scales"]
    aware = MLP([2, 4, 1], noise=0.05, scales="layer")
    model, meta = load_model(save_model(tmp_path / "a.pt", aware))
    assert model.layers[0].noise == 0.05 and meta["layer_options"]["variability"]["name"] == "tio2-3it"
    assert model.scales == "layer" == model.layers[1].scales


def test_bad_models_are_refused(tmp_path, moons_net):
    net = MLP([2, 3, 1], kind="linear")
    with torch.no_grad():
        net.layers[1].weight[0, 2] = float("nan")
    with pytest.raises(ModelError, match=r"layer 1 weight has a non-finite value .* at \(0, 2\)"):
        deploy(net, SimulatedCrossbar(8, 8, preset="ideal"))
    odd = MLP([2, 3, 1], kind="linear")
    odd.layers[0] = nn.Conv1d(2, 3, 1)
    with pytest.raises(ModelError, match="layer 0 is a Conv1d"):
        check_model(odd)
    with pytest.raises(ModelError, match="expected an xbarlab MLP"):
        check_model(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(PlacementError, match="the chip is 4x4"):
        deploy(moons_net.model, SimulatedCrossbar(4, 4, preset="ideal"))
    # a weights file that does not match its architecture
    path = save_model(tmp_path / "m.pt", moons_net.model, moons_net.config.to_dict())
    payload = torch.load(path, weights_only=True)
    payload["arch"]["sizes"] = [2, 5, 1]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="do not match the architecture"):
        load_model(tmp_path / "bad.pt")
    payload["arch"]["layers"] = ["Conv2d", "Conv2d"]
    torch.save(payload, tmp_path / "bad2.pt")
    with pytest.raises(ModelError, match="unknown layer type"):
        load_model(tmp_path / "bad2.pt")
    # arbitrary pickled objects are never unpickled
    torch.save({"format": "xbarlab-model", "obj": np.dtype}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="not an xbarlab model file"):
        load_model(tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_statistical_evaluation(moons_net):
    m, d = moons_net.model, moons_net.dataset
    ideal = evaluate_statistical(m, d, get_variability("ideal"), 50, seed=0)
    assert (ideal.accuracies == moons_net.test_accuracy).all()
    rep = ideal.report()
    assert rep["frac_points_ge_95"] == pytest.approx(moons_net.test_accuracy)
    a = evaluate_statistical(m, d, get_variability("tio2-3it"), 400, seed=3)
    b = evaluate_statistical(m, d, get_variability("tio2-3it"), 400, seed=3)
    assert np.array_equal(a.correct, b.correct)                    # seeded
    r = a.report()
    assert set(r) >= {"transfers", "mean_accuracy", "std_accuracy", "frac_points_ge_95", "wall_s"}
    assert r["transfers"] == 400 and r["std_accuracy"] > 0 and r["mean_accuracy"] < moons_net.test_accuracy
    with pytest.raises(ValueError, match="transfers"):
        evaluate_statistical(m, d, get_variability("ideal"), 0)


def test_tuned_evaluation_on_a_batch_of_chips(moons_net):
    chips = SimulatedCrossbar(12, 16, n_chips=4, preset="ideal", seed=1)
    stats, report = evaluate_tuned(moons_net.model, moons_net.dataset, chips, DeployConfig(seed=1))
    assert stats.correct.shape == (4, 200)
    assert np.all(np.abs(stats.accuracies - moons_net.test_accuracy) <= 0.01)
    assert report["tuning"]["cells"] == 4 * 66


def test_chip_in_the_loop_finetuning_recovers_accuracy_on_a_chip_with_stuck_cells(moons_net):
    from models.finetune import FinetuneConfig, finetune_on_chip

    xb = SimulatedCrossbar(9, 18, preset="ideal", seed=0)
    mask = np.zeros((1, 9, 18), bool)
    for r, c in [(0, 2), (1, 5), (2, 12), (4, 16), (7, 17)]:
        mask[0, r, c] = True
    stuck_g = np.where(np.random.default_rng(0).random((1, 9, 18)) < 0.5, 573e-6, 40e-6)
    xb.population.stuck[:] = mask
    xb.population.stuck_g[:] = stuck_g
    xb._g = np.where(mask, stuck_g, xb._g)
    dep = deploy(moons_net.model, xb, moons_net.dataset)
    before = dep.report["accuracy"]["chip_mvm"]
    stuck_before = xb.true_conductance[mask]
    model, rep = finetune_on_chip(dep, xb, moons_net.dataset, FinetuneConfig(rounds=4, steps=30, lr=0.05))
    assert rep["stuck_devices"] == 5 and rep["accuracy_before"] == before
    assert before < 0.8                                           # the stuck cells hurt ...
    assert rep["accuracy_after"] >= 0.97                          # ... and fine-tuning recovers
    assert 0 < rep["cells_retuned"] < 4 * 66                      # only moved cells were re-tuned
    np.testing.assert_array_equal(xb.true_conductance[mask], stuck_before)
    with pytest.raises(ValueError, match="one chip"):
        finetune_on_chip(dep, SimulatedCrossbar(9, 18, n_chips=2), moons_net.dataset)
