"""In-situ training on simulated chips: layout, pulsed updates, transfers, training, bad input."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mock_hw.sim_chip import SimulatedCrossbar
from models.datasets import Dataset, load_dataset
from models.insitu import (InSituConfig, _initialise, _Transfer, chip_shape_for, evaluate_on_chip,
                           gradient_pulses, train_in_situ, train_software, transfer_pulses)
from models.insitu_arrays import layout_arrays, required_shape
from models.insitu_net import ChipNetwork
from tests.conftest import SpyCrossbar


@pytest.fixture(scope="module")
def moons():
    return load_dataset("moons", seed=0, n_samples=200)  # 160 train / 40 test points


def chip(cfg, hidden=4, preset="asymmetric", n_chips=1, seed=0, n_out=1, n_features=2):
    return SimulatedCrossbar(*chip_shape_for(n_features, hidden, n_out, cfg), n_chips=n_chips, preset=preset,
                             seed=seed)


class GuardSpy(SpyCrossbar):
    """Records every pulse call and checks that nothing but a pulse changes a conductance."""

    def _unchanged(self, fn, *args):
        before = self.inner.true_conductance
        out = fn(*args)
        assert np.array_equal(before, self.inner.true_conductance), f"{fn.__name__} changed a conductance"
        return out

    def _mvm(self, v_rows):
        return self._unchanged(self.inner._mvm, v_rows)

    def _mvm_needed(self, v_rows, need):
        return self._unchanged(self.inner._mvm_needed, v_rows, need)

    def _read(self, *args):
        return self._unchanged(self.inner._read, *args)

    def _read_array(self, *args):
        return self._unchanged(self.inner._read_array, *args)


# ------------------------------------------------------------------------------------ layout
def test_layout_colours_never_share_a_line_and_tiles_do_not_overlap():
    specs = [("C1", 3, 8), ("C2", 9, 1), ("A1", 3, 8), ("A2", 9, 1)]
    arrays, n_colors = layout_arrays(specs, (64, 64), tile=4)
    assert n_colors == 4
    assert required_shape(specs, 4) == (42, 44)
    rows = np.concatenate([a.rows.ravel() for a in arrays])
    cols = np.concatenate([a.cols.ravel() for a in arrays])
    colors = np.concatenate([a.colors.ravel() for a in arrays])
    assert np.unique(rows * 1000 + cols).size == rows.size, "two devices on one cell"
    for c in range(n_colors):
        sel = colors == c
        # within one tile a colour is a matching; tiles sit on disjoint lines, so globally too
        tile_of = np.concatenate([np.full(a.rows.size, i) for i, a in enumerate(arrays)])[sel]
        for t in np.unique(tile_of):
            r, k = rows[sel][tile_of == t], cols[sel][tile_of == t]
            assert np.unique(r).size == r.size and np.unique(k).size == k.size
    # a row belongs to one tile only (so one-hot reads never see another tile's devices)
    tiles = [(t.row0, t.in1 - t.in0, t.col0, t.dev1 - t.dev0) for a in arrays for t in a.tiles]
    row_owner = np.full(64, -1)
    for i, (r0, nr, _, _) in enumerate(tiles):
        assert np.all(row_owner[r0:r0 + nr] == -1)
        row_owner[r0:r0 + nr] = i


@pytest.mark.parametrize("tile, n_chips", [(4, 1), (4, 3), (None, 2)])
def test_colour_steps_schedule_every_pulse_of_a_pass_in_its_colours_turn(tile, n_chips):
    """The pass schedule, checked against the rule written out tile by tile: each tile takes its
    colours in order, each for as many steps as its largest count on that chip; a device with n
    pulses is in the first n steps of its colour's turn, with its polarity's amplitude."""
    cfg = InSituConfig(rule="tiki-taka", tile=tile)
    net = ChipNetwork(chip(cfg, hidden=8, n_chips=n_chips), 2, 8, 1, cfg)
    io, arrays = net.io, net.hid
    rng = np.random.default_rng(4)
    dev = rng.integers(-5, 6, (n_chips, sum(a.n_in * a.n_dev for a in arrays))) * (rng.random((n_chips, 1)) < 0.9)
    plan = io._plan(arrays)
    at_step, chip_of, rows, cols, amp, lanes = plan.pulse_list(dev)
    want = {}                                             # (step, chip) -> {(row, col, amplitude)}
    r_all, c_all, tile_of, colour, _, n_tiles = io._tile_table(arrays)
    K = 0
    for b in range(n_chips):
        for t in range(n_tiles):
            step = 0
            for c in range(io.n_colors):
                sel = np.flatnonzero((tile_of == t) & (colour == c))
                n = np.abs(dev[b, sel])
                for d, k in zip(sel, n):
                    for j in range(k):
                        amp_d = io.amplitude if dev[b, d] > 0 else -io.amplitude
                        want.setdefault((step + j, b), set()).add((r_all[d], c_all[d], amp_d))
                step += int(n.max(initial=0))
            K = max(K, step)
    assert at_step[-1] + 1 == K > 0
    got = {}
    for k, b, r, c, a in zip(at_step, chip_of, rows, cols, amp):
        got.setdefault((k, b), set()).add((r, c, a))
    assert got == want and len(at_step) == sum(len(cells) for cells in want.values())
    for (k, b), cells in got.items():       # a step's lanes never share a line on a chip
        assert len({r for r, _, _ in cells}) == len(cells) == len({c for _, c, _ in cells})
    # listed step after step, chip after chip, lane (= row) after lane
    key = (at_step * n_chips + chip_of) * 10_000 + rows
    assert np.all(np.diff(key) > 0)
    assert np.all(np.diff((at_step * n_chips + chip_of) * 10_000 + lanes) > 0)
    assert plan.pulse_list(np.zeros_like(dev)) is None


def test_reads_with_kept_one_hot_row_voltages_equal_reads_of_the_same_inputs_given_afresh():
    """One-hot inputs drive their rows from row voltages built once per layout; the same inputs
    passed as new arrays take the general path: the same currents bit for bit (same noise draws)."""
    cfg = InSituConfig(rule="tiki-taka")
    net = ChipNetwork(chip(cfg, hidden=8, n_chips=2), 2, 8, 1, cfg)
    io = net.io
    x = np.random.default_rng(0).random((2, 5, 3))
    runs = []
    for fresh in (False, True, False):
        io.xb._rng = np.random.default_rng(1)
        one_hot = (lambda a: np.array(io.one_hot(a))) if fresh else io.one_hot
        runs.append(io.currents([(net.vis[0], x)] + [(a, one_hot(a)) for a in net.all]
                                + [(net.hid[1], one_hot(net.hid[1])[:, 2:3])]))
    for kept, given, again in zip(*runs):
        np.testing.assert_array_equal(kept, given)
        np.testing.assert_array_equal(kept, again)
    assert np.all(np.isfinite(runs[0][1])) and np.any(runs[0][1] > 0)


def test_a_large_read_on_one_chip_in_runs_of_its_vectors_equals_one_product(monkeypatch):
    """An evaluation-sized read on one chip goes to the chip as consecutive runs of its input
    vectors: the same currents, bit for bit (the same read noise, drawn in the same order), one
    ``mvm`` call per run."""
    import models.insitu_arrays as insitu_arrays

    cfg = InSituConfig(rule="tiki-taka")
    x = np.random.default_rng(0).random((1, 900, 3))
    x2 = np.random.default_rng(1).random((1, 900, 9))
    runs, calls = [], []
    for chunk in (insitu_arrays.READ_CHUNK, 1 << 62):
        monkeypatch.setattr(insitu_arrays, "READ_CHUNK", chunk)
        net = ChipNetwork(chip(cfg, hidden=8, seed=3), 2, 8, 1, cfg)
        runs.append(net.io.currents([(net.vis[0], x), (net.hid[0], x), (net.vis[1], x2)]))
        calls.append(net.io.mvm_calls)
    assert calls[0] > 1 and calls[1] == 1
    for chunked, whole in zip(*runs):
        np.testing.assert_array_equal(chunked, whole)
        assert np.all(np.isfinite(chunked))


def test_chip_too_small_is_refused_naming_the_size(moons):
    cfg = InSituConfig(rule="tiki-taka", epochs=1)
    xb = GuardSpy(SimulatedCrossbar(16, 16, preset="asymmetric", seed=0))
    with pytest.raises(ValueError, match=r"chip of 16x16 is too small.*need at least 42x44"):
        train_in_situ(xb, moons, hidden=8, config=cfg)
    assert xb.pulses == []


# ------------------------------------------------------------------------------------ bad input
def test_unknown_rule_names_the_rule():
    with pytest.raises(ValueError, match=r"unknown in-situ rule 'adam'.*sgd, manhattan, tiki-taka, shd"):
        InSituConfig(rule="adam")


@pytest.mark.parametrize("field, value, msg", [("epochs", 0, "epochs"), ("amplitude", float("nan"), "amplitude"),
                                               ("max_pulses", 1.5, "max_pulses"), ("lr", -1.0, "lr")])
def test_bad_settings_are_named(field, value, msg):
    with pytest.raises(ValueError, match=msg):
        InSituConfig(**{field: value})


def test_nan_and_out_of_range_data_are_refused_before_any_pulse(moons):
    x = moons.x_train.clone()
    x[5, 1] = float("nan")
    bad = dataclasses.replace(moons, x_train=x)
    xb = GuardSpy(chip(InSituConfig(rule="sgd"), hidden=4))
    with pytest.raises(ValueError, match=r"dataset x_train contains NaN/Inf at index \(5, 1\)"):
        train_in_situ(xb, bad, hidden=4, config=InSituConfig(rule="sgd"))
    big = dataclasses.replace(moons, x_test=moons.x_test * 3)
    with pytest.raises(ValueError, match=r"x_test must lie in \[0, 1\]"):
        train_in_situ(xb, big, hidden=4, config=InSituConfig(rule="sgd"))
    assert xb.pulses == []


def test_pulse_beyond_the_chip_limits_is_refused_before_any_pulse(moons):
    cfg = InSituConfig(rule="sgd", amplitude=3.5)
    xb = GuardSpy(chip(cfg))
    with pytest.raises(ValueError, match=r"amplitude 3.5 V must be in \(0, v_max=3\] V"):
        train_in_situ(xb, moons, hidden=4, config=cfg)
    with pytest.raises(ValueError, match="v_in"):
        train_in_situ(xb, moons, hidden=4, config=InSituConfig(rule="sgd", v_in=0.8))
    assert xb.pulses == []


# ------------------------------------------------------------------------------------ update rules
def test_gradient_pulses_manhattan_is_the_sign_and_sgd_is_unbiased():
    g = np.array([[[0.3, -0.2], [0.0, 0.05]]])
    dw = np.array([0.1])
    rng = np.random.default_rng(0)
    man = gradient_pulses(InSituConfig(rule="manhattan", manhattan_pulses=2), [g], dw, rng)[0]
    assert np.array_equal(man, [[[-2, 2], [0, -2]]])
    cfg = InSituConfig(rule="sgd", lr=1.0, max_pulses=8)
    draws = np.stack([gradient_pulses(cfg, [g], dw, rng)[0] for _ in range(4000)])
    np.testing.assert_allclose(draws.mean(0) * dw[0], -g, atol=0.01)   # E[k]·dw = −η g
    assert draws.min() >= -3 and draws.max() <= 2                       # |k| ≤ ⌈η|g|/dw⌉
    capped = gradient_pulses(dataclasses.replace(cfg, max_pulses=1), [g * 100], dw, rng)[0]
    assert np.abs(capped).max() == 1


def test_transfer_pulses_buffer_keeps_the_remainder():
    res = [np.zeros((1, 1, 3))]
    want = [np.array([[[0.4, -0.7, 2.6]]])]
    k1 = transfer_pulses(want, res, None, cap=8)[0]
    assert np.array_equal(k1, [[[0, -1, 3]]])
    np.testing.assert_allclose(res[0], [[[0.4, 0.3, -0.4]]])
    k2 = transfer_pulses(want, res, None, cap=8)[0]                      # 0.8 → 1, −0.4 → 0, 2.2 → 2
    assert np.array_equal(k2, [[[1, 0, 2]]])
    assert np.array_equal(k1 + k2 + np.round(res[0]), [[[1, -1, 5]]])   # Σ pulses tracks Σ want


def test_manhattan_step_moves_every_weight_against_its_gradient():
    cfg = InSituConfig(rule="manhattan", center_cycles=10, center_fine_cycles=4)
    xb = chip(cfg, n_chips=2)
    net = ChipNetwork(xb, 2, 4, 1, cfg)
    dw = _initialise(net, np.random.default_rng(1), cfg)
    assert np.all((dw > 0.2) & (dw < 0.8)), "a 1.35 V / 100 ns push-pull pulse moves ~0.4 weight units"
    g = net.read()
    before = [net.w(a.name, g[a.name]) for a in net.vis]
    grads = [np.random.default_rng(2).standard_normal(b.shape) for b in before]
    ks = gradient_pulses(cfg, grads, dw, np.random.default_rng(3))
    net.io.pulse_weights([(a, k, g[a.name]) for a, k in zip(net.vis, ks)])
    g = net.read()
    for a, b, gr in zip(net.vis, before, grads):
        moved = net.w(a.name, g[a.name]) - b
        assert np.all(np.sign(moved) == -np.sign(gr))


def _buffered_net(rule: str, transfer_lr: float):
    """A 2-4-1 two-array network of ``rule`` on an ideal chip, centred: (cfg, net, dw)."""
    cfg = InSituConfig(rule=rule, transfer_lr=transfer_lr, buffered_transfer=True, center_cycles=10,
                       center_fine_cycles=4, max_pulses=16)
    net = ChipNetwork(chip(cfg, preset="ideal"), 2, 4, 1, cfg)
    return cfg, net, _initialise(net, np.random.default_rng(0), cfg)


def test_tiki_taka_transfers_a_row_of_a_into_c():
    cfg, net, dw = _buffered_net("tiki-taka", 1.0)
    a1, c1 = net.hid[0], net.vis[0]
    k = np.zeros((1, a1.n_in, a1.n_out), np.int64)
    k[0, 0] = [4, -4, 2, 0]                                             # A1 row 0 ← (4, −4, 2, 0)·dw
    g = net.read()
    net.io.pulse_weights([(a1, k, g[a1.name])])
    g = net.read()
    a_row = net.w(a1.name, g[a1.name])[0, 0]
    np.testing.assert_allclose(a_row / dw[0], [4, -4, 2, 0], atol=0.6)
    c_before = net.w(c1.name, g[c1.name])
    _Transfer(net, cfg, dw, np.random.default_rng(0))(g)                # λ = 1: C1[0] += A1[0]
    g = net.read()
    moved = net.w(c1.name, g[c1.name]) - c_before
    np.testing.assert_allclose(moved[0, 0], a_row, atol=0.7 * dw[0])
    np.testing.assert_allclose(moved[0, 1:], 0, atol=1e-9)              # the other rows untouched


def test_shd_moves_all_of_w_by_lambda_p_and_leaves_p():
    cfg, net, dw = _buffered_net("shd", 0.5)
    g = net.read()
    ks = [np.random.default_rng(5).integers(-6, 7, (1, a.n_in, a.n_out)) for a in net.hid]
    net.io.pulse_weights([(a, k, g[a.name]) for a, k in zip(net.hid, ks)])  # P ≈ k·dw
    g = net.read()
    p = [net.w(a.name, g[a.name]) for a in net.hid]
    w0 = [net.w(a.name, g[a.name]) for a in net.vis]
    _Transfer(net, cfg, dw, np.random.default_rng(0))(g)
    g = net.read()
    for a, pp, ww, hid in zip(net.vis, p, w0, net.hid):
        moved = net.w(a.name, g[a.name]) - ww
        np.testing.assert_allclose(moved, 0.5 * pp, atol=0.6 * dw[0])   # W ← W + λP, in whole pulses
        np.testing.assert_allclose(net.w(hid.name, g[hid.name]), pp)    # reading P does not change it


# ------------------------------------------------------------------------------------ training
def test_training_changes_weights_only_by_v2_pulses_within_limits(moons):
    cfg = InSituConfig(rule="shd", epochs=1, batch_size=20, center_cycles=6, center_fine_cycles=2, seed=3)
    inner = chip(cfg)
    xb = GuardSpy(inner)
    res = train_in_situ(xb, moons, hidden=4, config=cfg)
    assert inner.n_pulse_ops == int(res.pulses.sum() + res.init_pulses.sum()) > 0
    assert len(xb.pulses) == res.pulse_calls
    amps = np.unique(np.abs(xb.amplitudes()))
    np.testing.assert_allclose(amps, [cfg.amplitude])                   # one fixed pulse, half-select 0.75 V
    for rows, cols, _, act in xb.pulses:                                # every call on distinct lines
        r, c = rows[act], cols[act]
        assert np.unique(r).size == r.size and np.unique(c).size == c.size


def test_pulse_sgd_learns_on_an_ideal_chip(moons):
    cfg = InSituConfig(rule="sgd", lr=2.0, epochs=5, center_cycles=6, center_fine_cycles=2, seed=2)
    res = train_in_situ(chip(cfg, preset="ideal", n_chips=2, seed=2), moons, hidden=4, config=cfg)
    assert res.train_loss.shape == (6, 2) and res.test_accuracy.shape == (6, 2)
    assert np.all(res.train_loss[-1] < 0.6 * res.train_loss[0])
    assert np.all(res.final_accuracy >= 0.75)


def test_tiki_taka_learns_on_the_asymmetric_chip_and_evaluates(moons):
    cfg = InSituConfig(rule="tiki-taka", epochs=4, center_cycles=6, center_fine_cycles=2, seed=2)
    res = train_in_situ(chip(cfg, n_chips=2, seed=2), moons, hidden=4, config=cfg)
    assert np.all(res.train_loss[-1] < 0.6 * res.train_loss[0])
    acc = evaluate_on_chip(res.network, moons.x_test, moons.y_test)
    # same chip, same test set; the products carry read noise, so a borderline point or two may flip
    np.testing.assert_allclose(acc, res.final_accuracy, atol=0.05)
    assert np.all(acc >= 0.75)
    with pytest.raises(ValueError, match="inputs contains NaN"):
        evaluate_on_chip(res.network, np.full((3, 2), np.nan), np.zeros(3))


def test_same_seed_same_run(moons):
    cfg = InSituConfig(rule="manhattan", epochs=1, batch_size=40, center_cycles=4, center_fine_cycles=2, seed=4)
    a = train_in_situ(chip(cfg, seed=9), moons, hidden=4, config=cfg)
    b = train_in_situ(chip(cfg, seed=9), moons, hidden=4, config=cfg)
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    np.testing.assert_array_equal(a.pulses, b.pulses)


def test_multiclass_softmax_runs_and_learns():
    rng = np.random.default_rng(0)
    centers = np.array([[0.2, 0.2], [0.8, 0.3], [0.5, 0.85]])
    y = rng.integers(0, 3, 150)
    x = np.clip(centers[y] + 0.07 * rng.standard_normal((150, 2)), 0, 1)
    ds = Dataset("blobs", torch.tensor(x[:120]), torch.tensor(y[:120]), torch.tensor(x[120:]),
                 torch.tensor(y[120:]), 3)
    cfg = InSituConfig(rule="tiki-taka", epochs=3, center_cycles=6, center_fine_cycles=2)
    res = train_in_situ(chip(cfg, n_out=3), ds, hidden=4, config=cfg)
    assert res.weights[1].shape == (1, 5, 3)
    assert res.train_loss[-1, 0] < 0.5 * res.train_loss[0, 0]
    assert res.final_accuracy[0] >= 0.9


def test_software_sgd_baseline_solves_moons():
    res = train_software(load_dataset("moons"), hidden=8, config=InSituConfig(rule="sgd", epochs=20), runs=2)
    assert res.rule == "float" and np.all(res.final_accuracy >= 0.97)


@pytest.mark.parametrize("rule", ["sgd", "manhattan", "tiki-taka", "shd"])
def test_batched_pulse_steps_equal_one_pulse_call_per_step(moons, rule):
    """The simulated chip applies a pass's pulse calls as the steps of one ``pulse_steps``; the
    spy forwards them one ``_pulse`` at a time (the interface's default): bit for bit the same run.
    (Without relaxation draws: a pass draws each pulse's noise at once, one normal draw per pulse,
    which is then the stream of one draw per call; with them, the same independent draws in
    another order, tested in test_sim_chip.)"""
    from mock_hw.presets import get_preset

    p = get_preset("asymmetric")
    p = p.with_(device=p.device.with_(relax=0.0))
    cfg = InSituConfig(rule=rule, epochs=1, batch_size=20, center_cycles=4, center_fine_cycles=2, seed=5)
    fast = train_in_situ(chip(cfg, n_chips=2, seed=6, preset=p), moons, hidden=4, config=cfg)
    ref_chip = SpyCrossbar(chip(cfg, n_chips=2, seed=6, preset=p))
    ref = train_in_situ(ref_chip, moons, hidden=4, config=cfg)
    assert len(ref_chip.pulses) == ref.pulse_calls == fast.pulse_calls
    np.testing.assert_array_equal(fast.train_loss, ref.train_loss)
    np.testing.assert_array_equal(fast.pulses, ref.pulses)
    for a, b in zip(fast.weights, ref.weights):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast.network.io.xb.true_conductance, ref_chip.inner.true_conductance)
