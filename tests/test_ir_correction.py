"""IR drop: the tuner reaches the true conductance through resistive lines using only readings.

The line resistance the tuner uses is *measured* (``xbar calibrate-lines``' estimator on grounded
and floating reads), never taken from the simulator."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mock_hw.sim_chip import SimulatedCrossbar
from programming.ir_correction import ReadCorrection, measure_line_resistance
from programming.line_model import grounded_read_currents
from programming.tuner import TunerConfig, tune


def truly_within(xb, tgt, tol=0.01) -> float:
    ok = np.abs(xb.true_conductance - tgt) <= tol * tgt
    return float(ok[xb.working_mask].mean())


def _exact_model(monkeypatch):
    """The read correction's swept model solved to rounding (its tolerances are a test of their own)."""
    import programming.ir_correction as ir
    monkeypatch.setattr(ir, "MODEL_READ_TOL", 1e-14)
    monkeypatch.setattr(ir, "ADJOINT_TOL", 1e-14)


def test_correction_inverts_the_line_model_exactly(monkeypatch):
    _exact_model(monkeypatch)
    rng = np.random.default_rng(0)
    g = rng.uniform(100e-6, 500e-6, (2, 6, 7))
    corr = ReadCorrection((6, 7), 2, 0.2, r_line=2.0)
    readings = grounded_read_currents(g, 0.2, 2.0) / 0.2
    assert np.abs(readings / g - 1).max() > 0.01            # the lines bias the readings
    np.testing.assert_allclose(corr.fit(readings), g, rtol=1e-9)
    g2 = g.copy()
    g2[1, 2, 3] *= 1.2                                         # one cell moves: its new reading
    m2 = grounded_read_currents(g2, 0.2, 2.0)[1, 2, 3] / 0.2
    got = corr.correct(np.array([[2], [2]]), np.array([[3], [3]]), np.array([[np.nan], [m2]]),
                       np.array([[False], [True]]))
    assert abs(got[1, 0] / g2[1, 2, 3] - 1) < 1e-4 and np.isnan(got[0, 0])


def test_fit_is_joint_where_the_lines_couple_every_cell_of_a_row(monkeypatch):
    """On 32×32 at 5 Ω a reading is half its device's current: inverting each cell with the others
    held converges slowly (a dozen plain steps leave 1e-4); the joint fit reaches 1e-7."""
    _exact_model(monkeypatch)
    rng = np.random.default_rng(1)
    g = rng.uniform(100e-6, 500e-6, (1, 32, 32))
    readings = grounded_read_currents(g, 0.2, 5.0) / 0.2
    assert np.mean(readings / g - 1) < -0.4
    corr = ReadCorrection((32, 32), 1, 0.2, r_line=5.0)
    np.testing.assert_allclose(corr.fit(readings), g, rtol=1e-7)
    assert corr.fit_steps <= 20
    again = corr.fit(readings, start=g * 1.01)               # warm start from near the answer
    np.testing.assert_allclose(again, g, rtol=1e-7)


def test_correction_follows_neighbours_tuned_since_the_last_refresh():
    """Eight cells of a row move to the window's top after the model was refreshed (each corrected
    from its own reading): a later cell of that row is corrected against them as they are now
    (without the neighbours' shares a 32×32 chip at 1 Ω read it 0.56 % low)."""
    rng = np.random.default_rng(3)
    g = rng.uniform(100e-6, 500e-6, (1, 32, 32))
    corr = ReadCorrection((32, 32), 1, 0.2, r_line=1.0)
    corr.fit(grounded_read_currents(g, 0.2, 1.0) / 0.2)
    g[0, 3, :8] = 480e-6
    m = grounded_read_currents(g, 0.2, 1.0)[0] / 0.2
    corr.correct(np.full((1, 8), 3), np.arange(8)[None], m[None, 3, :8], np.ones((1, 8), bool))
    got = corr.correct(np.array([[3]]), np.array([[20]]), m[None, 3:4, 20], np.ones((1, 1), bool))
    assert abs(got[0, 0] / g[0, 3, 20] - 1) < 2e-4


def test_neighbours_shares_over_the_moved_cells_only_equal_the_whole_sum():
    """The first-order follow of the other cells (:meth:`ReadCorrection._shifted_m`) sums each
    lane's shares over its chip's moved cells only: the same as over every cell (to rounding), for
    lanes of several chips, a lane whose own cell moved, and a chip with none moved."""
    rng = np.random.default_rng(5)
    g = rng.uniform(100e-6, 500e-6, (3, 9, 7))
    corr = ReadCorrection((9, 7), 3, 0.2, r_line=1.5)
    corr.fit(grounded_read_currents(g, 0.2, 1.5) / 0.2)
    corr.refresh()                                                  # linearized at the estimate itself
    moved = [(0, 1, 2), (0, 4, 6), (2, 8, 0), (0, 3, 3)]
    for b, i, j in moved:
        corr.est[b, i, j] *= 1.3
    b = np.array([0, 0, 1, 2, 2, 0])
    rows, cols = np.array([3, 5, 2, 8, 1, 4]), np.array([3, 0, 4, 6, 0, 6])
    got = corr._shifted_m(b, rows, cols)
    phi, u, gt = corr._cross
    delta = corr.est - corr._ref
    share = np.einsum("...km,...km,...km->...", phi[b, rows], u[b, cols], delta[b])
    share -= phi[b, rows, rows, cols] * u[b, cols, rows, cols] * delta[b, rows, cols]
    m_hat = corr._m_hat[b, rows, cols]
    want = m_hat - gt * share / 0.2
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.abs(got - m_hat).max() > 0                            # the moved cells do shift some lanes
    assert got[2] == corr._m_hat[1, 2, 4]                           # chip 1: nothing moved


def test_a_large_batch_relaxes_its_refreshes_of_a_few_chips():
    """A batch of many small chips relaxes its model's refreshes of fewer than BATCH_MIN_CHIPS
    chips too (no sweeps, no kept sweep starts), and a chip's refreshed model is then the same,
    bit for bit, whatever chips it is refreshed with; a batch of a few chips keeps its sweeps."""
    from programming.line_batch import BATCH_MIN_CHIPS

    rng = np.random.default_rng(12)
    B = BATCH_MIN_CHIPS + 8
    g = rng.uniform(5e-6, 500e-6, (B, 8, 8))
    m = grounded_read_currents(g, 0.2, 0.67) / 0.2
    models = []
    for chips in (np.array([5]), np.arange(B)):
        corr = ReadCorrection((8, 8), B, 0.2, r_line=0.67, beta=0.3)
        corr.fit(m, tol=1e-6)
        corr.est[5, 2, 3] *= 1.2
        corr.refresh(chips)
        assert corr._net is not None and corr._warm is None
        models.append((corr._m_hat[5].copy(), corr._a[5].copy()))
    for a, b in zip(*models):
        np.testing.assert_array_equal(a, b)
    few = ReadCorrection((8, 8), 4, 0.2, r_line=0.67, beta=0.3)
    few.fit(m[:4], tol=1e-6)
    few.est[1, 2, 3] *= 1.2
    few.refresh(np.array([1]))
    assert few._net is None and few._warm is not None


@pytest.mark.parametrize("n, chips, r_line", [(8, 3, 0.67), (32, 1, 1.0)])
def test_re_reads_of_a_few_cells_are_corrected_cell_by_cell_as_the_joint_fit(n, chips, r_line):
    """A read-back's re-reads of a few cells (correct_cells: each inverted on its own at the
    fitted model, the others followed where their shares are kept) land within 1e-6 of the joint
    fit of the same map (correct_map) and of the true conductances (a thousandth of the read
    noise); the estimates of the re-read cells move to them, the others stay."""
    import copy

    rng = np.random.default_rng(13)
    g = rng.uniform(20e-6, 500e-6, (chips, n, n))
    corr = ReadCorrection((n, n), chips, 0.2, r_line=r_line)
    corr.correct_map(grounded_read_currents(g, 0.2, r_line) / 0.2)
    doubt = np.zeros(g.shape, bool)
    doubt[0, 1, 2] = doubt[0, 5, 2] = doubt[-1, n - 1, 0] = doubt[-1, 3, n - 2] = True
    g[doubt] *= rng.uniform(0.997, 1.003, doubt.sum())              # ~ the read noise's moves
    again = np.where(doubt, grounded_read_currents(g, 0.2, r_line) / 0.2, np.nan)
    joint = copy.deepcopy(corr)
    before = corr.est.copy()
    got = corr.correct_cells(again)
    want = joint.correct_map(again)
    assert np.array_equal(np.isfinite(got), doubt)
    np.testing.assert_allclose(got[doubt], want[doubt], rtol=1e-6)
    np.testing.assert_allclose(got[doubt], g[doubt], rtol=1e-6)
    np.testing.assert_array_equal(corr.est[doubt], got[doubt])
    np.testing.assert_array_equal(corr.est[~doubt], before[~doubt])


def test_a_read_back_fit_of_small_chips_stops_on_its_contraction_bound():
    """A read-back's fit of 8×8 chips (cells moved by ~0.3 % since the last fit) stops after two
    model evaluations, where its measured contraction proves the new value within the tolerance of
    the answer, and lands there (checked against the true conductances and a fit to 1e-12)."""
    import copy

    rng = np.random.default_rng(14)
    g = rng.uniform(20e-6, 500e-6, (6, 8, 8))
    corr = ReadCorrection((8, 8), 6, 0.2, r_line=0.67)
    corr.correct_map(grounded_read_currents(g, 0.2, 0.67) / 0.2)
    g *= rng.uniform(0.997, 1.003, g.shape)
    m = grounded_read_currents(g, 0.2, 0.67) / 0.2
    strict = copy.deepcopy(corr)
    got = corr.correct_map(m)
    assert corr.fit_steps == 2
    want = strict.fit(m, start=strict.est, tol=1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got, g, rtol=1e-6)


@pytest.mark.parametrize("n, r_line, chips", [(32, 1.0, 1), (6, 2.0, 3)])
def test_a_fit_ends_with_the_whole_model_at_its_answer(n, r_line, chips, monkeypatch):
    """A fit evaluates the model's readings only while it iterates and the slopes once at its end:
    its inversion ends as one whole refresh at the answer makes it (slopes, a, c, the kept
    sensitivities, the write transfers), on swept lines (32×32) and relaxed ones (6×6 chips)."""
    _exact_model(monkeypatch)
    rng = np.random.default_rng(7)
    g = rng.uniform(100e-6, 500e-6, (chips, n, n))
    corr = ReadCorrection((n, n), chips, 0.2, r_line=r_line, beta=0.3)
    m = corr.model(g)[0]
    corr.fit(m * np.exp(0.01 * rng.standard_normal(m.shape)), tol=1e-10)       # the first fit
    corr.fit(m, start=corr.est, tol=1e-10)                                    # a read-back's
    assert not corr._stale.any()
    whole = ReadCorrection((n, n), chips, 0.2, r_line=r_line, beta=0.3)
    whole.est = corr._ref.copy()
    whole.refresh()
    for got, want in [(corr._a, whole._a), (corr._m_hat, whole._m_hat),
                      *zip(corr._write, whole._write), *zip(corr._cross[:2], whole._cross[:2])]:
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-12 * np.abs(want).max())
    np.testing.assert_allclose(corr._c, whole._c, rtol=1e-7)       # (the port's resistance at the estimate)
    np.testing.assert_allclose(corr.est, g, rtol=1e-8)


@pytest.mark.parametrize("n, r_line, cell", [(32, 2.0, (16, 16)), (64, 0.67, (2, 60)), (64, 0.67, (60, 3))])
def test_a_cell_tuned_far_from_its_linearization_is_corrected_within_a_percent(n, r_line, cell):
    """A cell linearized at the window's bottom (10 µS, as the RESET sweep leaves it), then read by
    the model at 70, 300 and 600 µS (a cell tuned to its target between two refreshes): corrected
    within 1 % of the conductance (the 64×64 far corner within 1.1 %), 30 % up within 1e-4.  (The
    form ``1/m = a/g + c`` of a cell in series with a fixed resistance missed these by up to 90 %:
    it puts the reading of the cell at 0 S at 0, where the other cells leave ~10 µS; its pole lay
    at ~35 µS.)"""
    g = np.random.default_rng(0).uniform(100e-6, 500e-6, (1, n, n))
    i, j = cell
    g[0, i, j] = 10e-6
    corr = ReadCorrection((n, n), 1, 0.2, r_line=r_line, beta=0.3)
    corr.fit(corr.model(g)[0])
    for g1, rel in ((13e-6, 1e-4), (70e-6, 0.01), (300e-6, 0.01), (600e-6, 0.011)):
        moved = g.copy()
        moved[0, i, j] = g1
        m = ReadCorrection((n, n), 1, 0.2, r_line=r_line, beta=0.3).model(moved)[0]
        got = corr._invert(m[0, i, j], corr._a[0, i, j], corr._c[0, i, j], np.nan, corr._ref[0, i, j],
                           corr._m_hat[0, i, j])
        assert got == pytest.approx(g1, rel=rel)
    got = corr.correct(np.array([[i]]), np.array([[j]]), m[:, i, j][:, None], np.ones((1, 1), bool))
    assert got[0, 0] == pytest.approx(600e-6, rel=0.011) and corr.est[0, i, j] == got[0, 0]
    corr.fit(corr.model(g)[0])                              # a read-back's joint fit from there
    assert corr.correct_map(m)[0, i, j] == pytest.approx(600e-6, rel=1e-6)


def test_read_back_reads_every_cell_when_correcting(monkeypatch):
    """Untargeted cells load the same lines and drift: with a correction the read-back reads them
    too, so the joint inversion sees them as they are."""
    import programming.tuner as tuner_mod
    xb = SimulatedCrossbar(8, 8, seed=1, r_line=1.0)
    tgt = np.full((8, 8), np.nan)
    tgt[2, 3] = 300e-6
    seen = []
    original = tuner_mod._read_back

    def spy(xb_, tgt_, targeted, cfg, rec, corr=None, **kw):
        out = original(xb_, tgt_, targeted, cfg, rec, corr, **kw)
        seen.append(rec["reads"].copy())
        return out

    monkeypatch.setattr(tuner_mod, "_read_back", spy)
    res = tune(xb, tgt, TunerConfig(line_resistance=1.0, passes=1, initial_reset=False))
    assert (seen[0][0] >= 2).all()                 # the start's read plus the read-back, every cell
    assert np.isnan(res.final[0][np.isnan(tgt)]).all() and np.isfinite(res.final[0, 2, 3])


def test_line_calibration_measures_resistance_and_curvature_jointly_through_the_lines():
    """24×24 at 2 Ω: the ratio of two grounded reads alone underestimates the curvature (the cells
    see less than their row's voltage: β 0.22 for 0.3, the resistance 0.9 % low and conductances
    fitted with them 0.25 % low on average); the joint fit measures both, and a noisy read map
    corrected with them is unbiased."""
    xb = SimulatedCrossbar(24, 24, seed=5, r_line=2.0)
    r_est, beta = (float(x[0]) for x in measure_line_resistance(xb))
    assert abs(r_est / 2.0 - 1) < 0.004, r_est
    assert abs(beta - xb.params.device.beta) < 0.04, beta
    tgt = np.random.default_rng(6).uniform(*xb.programming_window, size=xb.shape)
    xb.set_conductances(np.where(xb.working_mask, tgt, xb.true_conductance))   # known devices (a test)
    g = xb.true_conductance[0]
    est = ReadCorrection(xb.shape, 1, xb.v_read, r_est, beta=beta).fit(xb.read_array())[0]
    assert abs(np.mean(est / g - 1)) < 0.001
    assert np.abs(est / g - 1).max() < 0.006                  # read noise 0.1 %: no cell near 1 %


@pytest.mark.parametrize("r_line", [None, 1.0], ids=["default-preset", "1-ohm"])
def test_tuner_with_measured_line_resistance_ends_truly_within_tolerance(r_line):
    xb = SimulatedCrossbar(16, 16, seed=2, r_line=r_line)
    r_true = xb.params.r_line
    assert r_true > 0                                          # the default preset has resistive lines
    r_est = measure_line_resistance(xb)[0][0]                  # xbar calibrate-lines' measurement
    assert abs(r_est / r_true - 1) < 0.15, (r_est, r_true)
    tgt = np.random.default_rng(7).uniform(*xb.programming_window, size=xb.shape)
    res = tune(xb, tgt, TunerConfig(line_resistance=r_est))
    assert truly_within(xb, tgt) >= 0.99
    reported = np.abs(res.rel_error[0]) <= 0.01
    assert reported[xb.working_mask[0]].mean() >= 0.97
    # a plain grounded read of the tuned array is biased by the lines: the correction mattered
    raw = xb.read_array()[0]
    assert np.mean(np.abs(raw / xb.true_conductance[0] - 1) > 0.01) > (0.3 if r_line else 0.05)


def test_line_resistance_estimate_needs_a_line_resistance_config_for_driven_reads_only():
    with pytest.raises(ValueError, match="read_scheme 'ground' or 'isolate'"):
        TunerConfig(line_resistance=1.0, read_scheme="float")
    TunerConfig(line_resistance=1.0, read_scheme="isolate")
    with pytest.raises(ValueError, match="line_resistance"):
        TunerConfig(line_resistance=-1.0)


def test_mock_bench_8x8_with_line_resistance_agrees_with_the_simulated_chip(tmp_path):
    """The same 8×8 chip on the mock bench (lines plus the bench's relay and lead path) and as a
    simulated chip: measured line resistance, corrected tuning of 16 cells spread over the array,
    the same outcome."""
    from instruments.hardware_crossbar import HardwareCrossbar
    from instruments.station import load_station
    from mock_hw.mock_bench import MockBench
    tgt = np.full((8, 8), np.nan)
    cells = (np.arange(16) // 2, (np.arange(16) * 3) % 8)
    tgt[cells] = np.random.default_rng(4).uniform(120e-6, 480e-6, 16)
    cfg = dict(initial_reset=False, passes=2, parallel=1)
    sim = SimulatedCrossbar(8, 8, seed=3)
    r_sim = measure_line_resistance(sim)[0][0]
    res_sim = tune(sim, tgt, TunerConfig(line_resistance=r_sim, **cfg))
    with MockBench(8, 8, seed=3, time_scale=0.0) as bench:   # no retention drift between the reads
        r_access = bench.bench.r_access                    # the station's known path resistance
        station = bench.write_station(tmp_path / "s.toml", timeout_ms=20000)   # a loaded CI machine
        with HardwareCrossbar(load_station(station)) as xb:
            r_bench = measure_line_resistance(xb, r_access=r_access)[0][0]
            res_bench = tune(xb, tgt, TunerConfig(line_resistance=r_bench, access_resistance=r_access, **cfg))
        truth = bench.chip.true_conductance[0]
        working = bench.chip.working_mask[0]
        assert bench.violations == []
    ok_sim = (np.abs(sim.true_conductance[0] - tgt) <= 0.01 * tgt)[cells][sim.working_mask[0][cells]]
    ok_bench = (np.abs(truth - tgt) <= 0.01 * tgt)[cells][working[cells]]
    assert ok_sim.mean() >= 0.9 and ok_bench.mean() >= 0.85
    assert abs(ok_sim.mean() - ok_bench.mean()) <= 0.15
    ratio = np.nanmean(res_bench.pulses[0][cells]) / np.nanmean(res_sim.pulses[0][cells])
    assert 0.5 < ratio < 2.0
    assert abs(r_bench - r_sim) < 0.5                       # both see the same lines


def test_xbar_calibrate_lines_writes_the_estimate(tmp_path, capsys):
    import json

    from procedures.cli import main

    out = tmp_path / "cal"
    assert main(["calibrate-lines", "--size", "8x8", "--seed", "2", "--line-resistance", "2", "--out", str(out),
                 "--quiet", "--no-plots"]) == 0
    lines = json.loads((out / "lines.json").read_text())
    assert abs(lines["line_resistance_ohm"] / 2.0 - 1) < 0.15
    assert 0.15 < lines["beta_per_v2"] < 0.45               # the preset's devices: beta = 0.3 / V^2
    assert "line resistance" in capsys.readouterr().out
    assert lines["chip"] == {"preset": "tio2-3it", "seed": 2, "rows": 8, "cols": 8, "chips": 1,
                             "line_resistance": 2.0, "pristine": False}
    # the next run on that chip uses the stored estimate instead of measuring again
    tuned = tmp_path / "tuned"
    assert main(["tune", "--chip-from", str(out), "--line-estimate", "stored", "--targets", "random",
                 "--passes", "1", "--out", str(tuned), "--quiet", "--no-plots"]) == 0
    report = json.loads((tuned / "report.json").read_text())
    assert report["line_estimate_ohm"] == lines["line_resistance_ohm"]
    assert report["line_estimate_source"].startswith("stored")
    capsys.readouterr()
    none = tmp_path / "none"                # a fresh chip has nothing stored: refused before a run folder
    assert main(["tune", "--size", "2x2", "--line-estimate", "stored", "--quiet", "--no-plots",
                 "--out", str(none)]) == 2
    assert "no estimate is stored" in capsys.readouterr().err and not none.exists()
    bad = tmp_path / "t"
    assert main(["tune", "--line-estimate", "fast", "--size", "2x2", "--quiet", "--no-plots", "--out", str(bad)]) == 2
    assert "--line-estimate" in capsys.readouterr().err and not bad.exists()


def test_product_targets_give_the_intended_product_for_any_drive_through_the_line_model():
    from programming.ir_correction import product_targets
    from programming.line_model import LineNetwork

    rng = np.random.default_rng(5)
    tgt = np.full((1, 10, 12), np.nan)
    tgt[0, :4] = rng.uniform(100e-6, 400e-6, (4, 12))            # a 4-row block; the rest idle
    others = rng.uniform(100e-6, 500e-6, tgt.shape)

    def product(g, v):
        net = LineNetwork(np.where(np.isnan(tgt), others, g), 2.0, 0.5)
        rv, cv = v[None, :, :], np.zeros((1, len(v), 12))
        xr, xc = net.split(net.solve(net.injection(rv, cv)))
        return net.terminal_currents(xr, xc, rv, cv)[1][0]

    v = np.zeros((3, 10))
    v[:, :4] = [[0.1, 0.05, 0.1, 0.2], [0.2, 0.2, 0.2, 0.2], [0.0, 0.15, 0.02, 0.2]]   # any drive of the block
    ideal = v[:, :4] @ tgt[0, :4]
    assert np.abs(product(tgt, v) / ideal - 1).max() > 0.02             # the lines' drop and leak
    pd = product_targets(tgt, 0.2, 2.0, 0.5, others)
    np.testing.assert_allclose(product(pd, v), ideal, rtol=1e-6)
    assert np.isnan(pd[0, 4:]).all() and (pd[0, :4] > tgt[0, :4]).all()


def _tiny_task(sizes, seed=0):
    """A network with random weights and a test set it classifies perfectly in software."""
    import torch

    from models.datasets import Dataset
    from models.layers import MLP

    torch.manual_seed(seed)
    model = MLP(sizes, "relu", "linear", "output").eval()
    x = torch.rand(100, sizes[0]) * 2 - 1
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, Dataset("tiny", x, y, x, y, sizes[-1])


def test_predistortion_makes_the_chips_product_carry_the_weights_through_ir_drop():
    from models.deploy import DeployConfig, deploy
    from programming.ir_correction import line_estimate

    model, data = _tiny_task([3, 3, 2])
    xb = SimulatedCrossbar(8, 8, seed=1, r_line=2.0)
    r_est, beta = line_estimate(xb)                              # measured with reads, as xbar deploy does
    assert abs(r_est / 2.0 - 1) < 0.1
    dep = deploy(model, xb, data, DeployConfig(line_resistance=r_est, device_beta=beta, seed=1))
    acc = dep.report["accuracy"]
    # both figures through the chip's own product: as tuned (true conductances on target), then
    # re-targeted for the lines' drop
    without, with_ = acc["product_error_without_predistortion"], acc["product_error"]
    assert min(without) > 0.01                                   # the lines' drop shows in the product
    # with: down to the floor of the devices' I-V curvature at the product's lower voltages (~1 %)
    assert all(w < 0.6 * wo for w, wo in zip(with_, without)) and max(with_) < 0.012, (with_, without)
    assert {"chip_mvm", "chip_mvm_without_predistortion", "software"} <= acc.keys()
    lo, top = dep.window                                         # the range the search kept
    assert lo == xb.programming_window[0] and lo < top < xb.programming_window[1]
    rep = dep.report["predistortion"]
    assert rep["applied"] is True and rep["mapping_window_uS"] == [1e6 * lo, 1e6 * top]
    # applied because the line model expected less error than the chip's product as tuned
    modelled = rep["modelled_product_error"]
    assert sum(e ** 2 for e in modelled["predistorted"]) < sum(e ** 2 for e in modelled["as_tuned"])
    # every cell of the first round landed: no second round
    assert [r["applied"] for r in rep["rounds"]] == [True] and dep.result.summary()["failed"] == 0
    from models.deploy import PREDISTORT_PEAK
    tgt = dep.result.targets[~np.isnan(dep.result.targets)]
    assert (tgt >= lo).all() and (tgt <= PREDISTORT_PEAK * xb.programming_window[1] * (1 + 1e-9)).all()
    # without a line resistance nothing is pre-distorted and the report has one figure
    ideal = deploy(model, SimulatedCrossbar(8, 8, seed=1, r_line=0.0), data, DeployConfig(seed=1))
    assert "chip_mvm_without_predistortion" not in ideal.report["accuracy"]
    assert ideal.report["predistortion"]["applied"] is False


def test_predistortion_fit_beats_boosting_then_clipping_where_the_boosts_do_not_fit():
    """Where the lines' drop needs boosts beyond the window, the projected fit of the pairs'
    differences (:func:`models.deploy.product_fit`) leaves a smaller modelled product error than the
    exact boosts of :func:`product_targets` clipped to the window, and than no pre-distortion."""
    from models.deploy import (PREDISTORT_PEAK, DeployConfig, deployment_targets, modelled_product_error,
                               product_fit)
    from programming.ir_correction import ReadCorrection, product_targets

    model, _ = _tiny_task([11, 6, 3], seed=2)
    xb = SimulatedCrossbar(12, 18, seed=0, r_line=0.0)          # its shape, window and read voltage only
    cfg = DeployConfig(line_resistance=12.0)
    lo, hi = xb.programming_window
    mapped, placement, tgt = deployment_targets(model, xb, align="bottom")
    others = np.where(np.isnan(tgt), 300e-6, tgt)[None]          # the array as tuned to the plain mapping
    model_reads = ReadCorrection(xb.shape, 1, xb.v_read, 12.0).model

    def error(g):
        return sum(e ** 2 for e in modelled_product_error(mapped, placement, model_reads(g, cross=False, slopes=False)[0]))

    boosted = product_targets(tgt[None], xb.v_read, 12.0, 0.0, np.where(np.isnan(tgt), others, np.nan))
    assert np.nanmax(boosted) > hi                                # the exact boosts do not fit
    clipped = np.where(np.isnan(tgt), others, np.clip(boosted, lo, PREDISTORT_PEAK * hi))
    fitted, reads = product_fit(mapped, placement, xb, cfg, others, (lo, PREDISTORT_PEAK * hi))
    assert np.nanmin(fitted) >= lo and np.nanmax(fitted) <= PREDISTORT_PEAK * hi * (1 + 1e-12)
    np.testing.assert_allclose(reads, model_reads(fitted, cross=False, slopes=False)[0], rtol=1e-5)
    assert error(fitted) < 0.5 * error(clipped) and error(fitted) < 0.85 * error(others), \
        (error(fitted), error(clipped), error(others))


def test_predistortion_is_applied_only_where_the_line_model_expects_a_better_product():
    """Lines whose drop is below the tuner's tolerance: re-tuning every cell cannot improve the
    product, so the deployment is left as tuned (one figure, both in the report), and says why; on
    lines whose boosts do not fit the window (12×18 at 8 Ω) the default is never worse than without
    it (the chip's own product, the simulator's truth)."""
    from models.deploy import DeployConfig, deploy

    model, data = _tiny_task([3, 3, 2])
    xb = SimulatedCrossbar(8, 8, seed=1, r_line=0.05)
    dep = deploy(model, xb, data, DeployConfig(line_resistance=0.05, seed=1))
    rep, acc = dep.report["predistortion"], dep.report["accuracy"]
    assert rep["applied"] is False and rep["mapping_window_uS"] == [1e6 * w for w in xb.programming_window]
    modelled = rep["modelled_product_error"]
    assert sum(e ** 2 for e in modelled["predistorted"]) >= sum(e ** 2 for e in modelled["as_tuned"])
    # the same chip measured twice (the product's read noise only)
    np.testing.assert_allclose(acc["product_error"], acc["product_error_without_predistortion"], rtol=0.1)
    assert abs(acc["chip_mvm"] - acc["chip_mvm_without_predistortion"]) <= 0.02

    model, data = _tiny_task([11, 6, 3], seed=2)
    xb = SimulatedCrossbar(12, 18, seed=2, r_line=8.0)
    dep = deploy(model, xb, data, DeployConfig(line_resistance=8.0, seed=1))
    acc = dep.report["accuracy"]
    assert max(acc["product_error_without_predistortion"]) > 0.05        # the drop shows
    assert sum(e ** 2 for e in acc["product_error"]) <= sum(e ** 2 for e in acc["product_error_without_predistortion"]), acc


def test_evaluate_refuses_a_bad_line_estimate(tmp_path, capsys):
    from procedures.cli import main

    assert main(["evaluate", str(tmp_path / "m.pt"), "--mode", "tuned", "--line-estimate", "-3"]) == 2
    assert "--line-estimate" in capsys.readouterr().err


def test_the_estimate_is_stored_with_the_station_and_validated_on_load(tmp_path):
    """calibrate-lines on a station writes STATION.lines.json; tune's --line-estimate stored/auto
    read it back for the same chip only, and a damaged or foreign file is named and refused."""
    import json
    import shutil

    from procedures.ops.calibrate_lines import CalibrateLinesProcedure, load_line_store, station_store
    from procedures.ops.tune_array import TuneProcedure

    station = tmp_path / "bench.toml"
    shutil.copy(Path(__file__).parents[1] / "instruments" / "stations" / "k2636b_707b.toml", station)
    cal = CalibrateLinesProcedure(chip="station", station=str(station), access_resistance=1.2)
    cal.r_line, cal.beta, cal.cells_sampled = np.array([0.7]), np.array([0.3]), [(0, 0)] * 8
    cal.finalize()                                        # what the procedure writes when it ends
    store = station_store(station)
    assert store == tmp_path / "bench.lines.json" and cal.report["stored_with_station"] == str(store)

    def estimate(choice):
        return TuneProcedure(chip="station", station=str(station), line_estimate=choice).line_estimate_ohm()

    assert estimate("stored") == estimate("auto") == 0.7
    assert estimate("measure") is None and estimate("0.4") == 0.4
    station.write_text(station.read_text().replace('chip_id = "W01-D07"', 'chip_id = "W01-D08"'))
    with pytest.raises(ValueError, match="another chip.*chip_id"):
        estimate("stored")
    assert estimate("auto") is None                       # another chip on the bench: measured anew
    data = json.loads(store.read_text())
    for key, value, what in (("line_resistance_ohm", -1.0, "line_resistance_ohm"),
                             ("line_resistance_ohm", float("nan"), "line_resistance_ohm"),
                             ("pickle", 1, "unknown key 'pickle'")):
        store.write_text(json.dumps({**data, key: value}))
        with pytest.raises(ValueError, match=what):
            load_line_store(store, data["chip"])
    store.write_text("not json")
    with pytest.raises(ValueError, match="bench.lines.json: not a readable"):
        load_line_store(store, data["chip"])


def test_isolating_read_on_the_mock_bench_matches_the_line_model(tmp_path):
    """The isolating read (unselected rows at 0 V, unselected columns at V_read) through the
    station's two bias channels measures what the line model of that biasing gives (lines plus
    the bench's access path), not what a grounded read gives; a station with one bias channel
    cannot list it."""
    from instruments.hardware_crossbar import HardwareCrossbar
    from instruments.station import StationError, load_station
    from mock_hw import nodal
    from mock_hw.mock_bench import MockBench

    rows, cols = np.arange(8), (3 * np.arange(8)) % 8
    with MockBench(8, 8, seed=3, time_scale=0.0) as bench:
        st = load_station(bench.write_station(tmp_path / "s.toml", timeout_ms=20000))
        assert st.read_schemes == ("ground", "float", "isolate")
        with HardwareCrossbar(st) as xb:
            iso = xb.read(rows, cols, scheme="isolate").conductance[0]
            gnd = xb.read(rows, cols, scheme="ground").conductance[0]
        assert bench.violations == []
        chip = bench.chip
        d = chip.params.device
        want = []
        for r, c in zip(rows, cols):
            rv, cv = np.where(np.arange(8) == r, 0.2, 0.0), np.where(np.arange(8) == c, 0.0, 0.2)
            sol = nodal.solve_network(chip.true_conductance[:1], rv[None], cv[None], d.beta, d.v_ref,
                                      chip.params.r_line, r_access=bench.bench.r_access)
            want.append(sol.col_current[0, c] / 0.2)
    np.testing.assert_allclose(iso, want, rtol=5e-3)               # the chip's 0.1 % read noise
    assert np.abs(iso / gnd - 1).mean() > 0.01                     # the biasing made a difference
    text = st.source and Path(st.source).read_text()
    one = text.replace('bias_cols = "bias.2"', 'bias_cols = "bias.1"')
    (tmp_path / "one.toml").write_text(one)
    with pytest.raises(StationError, match="read_schemes lists 'isolate'"):
        load_station(tmp_path / "one.toml")


def test_isolating_read_model_and_its_sensitivity(monkeypatch):
    """The correction's model of isolating reads (superposed unit responses: R + C solves for the
    whole array) equals a solve of every cell's own biasing, and its slope the finite difference;
    the simulated chip reads the same through its nonlinear devices on ideal lines."""
    from programming.line_model import LineNetwork

    _exact_model(monkeypatch)
    rng = np.random.default_rng(0)
    R, C, r, ra, V = 5, 7, 2.0, 1.0, 0.2
    g = rng.uniform(100e-6, 500e-6, (1, R, C))
    m, slope = ReadCorrection((R, C), 1, V, r, ra, scheme="isolate").model(g)
    net = LineNetwork(g, r, ra)

    def reads(gg):
        net.update(gg)
        rv = np.zeros((1, R * C, R))
        cv = np.full((1, R * C, C), V)
        k = np.arange(R * C)
        rv[0, k, k // C] = V
        cv[0, k, k % C] = 0.0
        xr, xc = net.split(net.solve(net.injection(rv, cv)))
        return net.terminal_currents(xr, xc, rv, cv)[1][0, k, k % C].reshape(R, C) / V

    ref = reads(g)
    np.testing.assert_allclose(m[0], ref, rtol=1e-9)
    assert np.abs(ref / ReadCorrection((R, C), 1, V, r, ra).model(g)[0][0] - 1).max() > 0.01   # not a grounded read
    h = 1e-10
    num = np.empty((R, C))
    for i in range(R):
        for j in range(C):
            gp = g.copy()
            gp[0, i, j] += h
            num[i, j] = (reads(gp)[i, j] - ref[i, j]) / h
    np.testing.assert_allclose(slope[0], num, rtol=1e-5)
    with pytest.raises(ValueError, match="'ground' and 'isolate'"):
        ReadCorrection((R, C), 1, V, r, scheme="float")
    ideal = SimulatedCrossbar(4, 4, seed=1, r_line=0.0, preset="ideal")
    rows, cols = np.arange(4), np.array([2, 0, 3, 1])
    np.testing.assert_allclose(ideal.read(rows, cols, scheme="isolate").conductance,
                               ideal.true_conductance[0, rows, cols][None], rtol=1e-12)


def test_correction_model_with_the_devices_curvature_is_the_chip_s_grounded_read():
    """With the measured I-V curvature the correction's model of a grounded read is the
    simulator's nonlinear read of the same conductances (what a chip with those devices gives);
    the linear model misses it by the selected cells' own IR-drop-lowered chord conductance."""
    from mock_hw.nodal import read_rows_grounded

    rng = np.random.default_rng(2)
    g = rng.uniform(100e-6, 500e-6, (1, 12, 12))
    truth = read_rows_grounded(g, 0.2, 0.3, 0.2, r_line=3.0) / 0.2
    cubic = ReadCorrection((12, 12), 1, 0.2, 3.0, beta=0.3).model(g)[0]
    linear = ReadCorrection((12, 12), 1, 0.2, 3.0).model(g)[0]
    np.testing.assert_allclose(cubic, truth, rtol=2e-6)       # the model's reads to MODEL_READ_TOL: within 2e-6
    assert np.abs(linear / truth - 1).max() > 1e-3
    with pytest.raises(ValueError, match="beta"):
        ReadCorrection((12, 12), 1, 0.2, 3.0, beta=-1.0)


def test_line_estimate_counts_only_a_significant_resistance():
    """Ideal lines: the 8 chips' estimates are read noise (their median 0.0065 Ω at 10 000 chips,
    seed 1, which switched the read correction on); their own measured uncertainty rules them out,
    so the estimate is 0 and the tuner corrects nothing.  Lines of 0.67 Ω are still measured."""
    from programming.ir_correction import line_estimate, significant_line_resistance

    xb = SimulatedCrossbar(8, 8, n_chips=10000, seed=1, r_line=0.0)
    r, _, sigma = measure_line_resistance(xb, max_chips=8, uncertainty=True)
    assert np.median(r) > 0                              # the noise the rule is for
    assert 0.004 < sigma < 0.02                          # about 0.01 Ω per 8×8 chip
    assert significant_line_resistance(r, sigma) == 0.0
    assert line_estimate(xb)[0] == 0.0
    assert significant_line_resistance([0.0065] * 8, 0.0) == 0.0065          # noiseless reads: any drop counts
    for seed in (1, 2):
        r_est = line_estimate(SimulatedCrossbar(8, 8, n_chips=8, seed=seed, r_line=0.67))[0]
        assert abs(r_est / 0.67 - 1) < 0.03, r_est
    r_est = line_estimate(SimulatedCrossbar(8, 8, seed=1, r_line=0.67))[0]   # one chip (a station's)
    assert abs(r_est / 0.67 - 1) < 0.05, r_est
    # one 3x3 chip: 0.67 ohm is within its own noise (about 0.46 ohm per chip), nothing to correct
    assert line_estimate(SimulatedCrossbar(3, 3, seed=2, r_line=0.67))[0] == 0.0


def test_line_resistance_uncertainty_predicts_the_spread_between_chips():
    """The uncertainty propagated from the calibration's own repeated reads agrees with the spread
    of 64 chips' estimates of the same 0.67 Ω lines (measured 0.0101 against 0.0117 Ω)."""
    xb = SimulatedCrossbar(8, 8, n_chips=64, seed=3, r_line=0.67)
    r, _, sigma = measure_line_resistance(xb, uncertainty=True)
    assert 0.7 < sigma / np.std(r, ddof=1) < 1.3, (sigma, np.std(r, ddof=1))


class _PacedChip(SimulatedCrossbar):
    """A simulated chip read at a bench's pace: every cell read takes :attr:`PACE` of chip time
    (a relay's operate time and an integration, :class:`~mock_hw.bench_physics.BenchTiming`), and
    its freshly written devices relax meanwhile, as on the mock bench at ``time_scale`` 1."""

    PACE = 6e-3

    def _read(self, rows, cols, v_read, scheme, active):
        self._wait(self.PACE * int(np.count_nonzero(active)) / self.n_chips)
        return super()._read(rows, cols, v_read, scheme, active)

    def _read_array(self, v_read, scheme):
        self._wait(self.PACE * self.shape[0] * self.shape[1])
        return super()._read_array(v_read, scheme)


@pytest.mark.parametrize("seed", [0, 2])
def test_line_calibration_through_floating_reads_reads_until_its_correction_is_certain(seed):
    """A bench with one bias channel (the B2902A board) calibrates through floating reads only:
    on 8×8 one read of each sampled cell leaves the estimate 0.06–0.09 Ω uncertain, and while the
    map and the sampled cells are read in turn the fresh chip relaxes, so the estimate came out
    0.48–0.50 Ω for 0.67 Ω lines and biased every corrected reading by −0.2 % (on the mock bench
    −0.3 %: 3 % of its cells tuned 1.0–1.1 % off).  The calibration reads again, in pairs of rounds of
    opposite order, until the estimate moves corrected readings by at most 0.05 % (one standard
    deviation): the corrected map is then unbiased to 0.1 %."""
    def bias(r, beta, xb):
        est = ReadCorrection(xb.shape, 1, xb.v_read, r, beta=beta).fit(xb.read_array())[0]
        return float(np.mean((est / xb.true_conductance[0] - 1)[xb.working_mask[0]]))

    one = _PacedChip(8, 8, seed=seed)
    r1, beta1 = (float(x[0]) for x in measure_line_resistance(one, scheme="float", reads=1))
    assert abs(bias(r1, beta1, one)) > 0.0015, r1               # what one read each leaves
    xb = _PacedChip(8, 8, seed=seed)
    r, beta, sigma = measure_line_resistance(xb, scheme="float", uncertainty=True)
    assert sigma < 0.03, sigma                                  # averaged (one read each: 0.06-0.07 ohm)
    assert abs(float(r[0]) / 0.67 - 1) < 0.1, r
    assert abs(bias(float(r[0]), float(beta[0]), xb)) < 0.001


@pytest.mark.parametrize("n,r_line", [(8, 2.0), (32, 0.67), (64, 0.67), (64, 2.0)])
def test_the_models_reads_to_their_tolerance_are_within_two_millionths(n, r_line, monkeypatch):
    """The read correction's model of grounded reads with the devices' cubic I-V, swept to
    MODEL_READ_TOL (cold, and warm from the model of conductances before a cell moved), gives every
    reading and slope within 2e-6 relative (two thousandths of the 0.1 % read noise) of the model
    solved to rounding; so does the model the refreshes between cells take (``sharp``: the lines'
    bound, measured up to 1.3e-6 on 64x64 at 0.67 ohm)."""
    import programming.ir_correction as ir
    rng = np.random.default_rng(40)
    g = rng.uniform(100e-6, 500e-6, (1, n, n))
    g2 = g.copy()
    g2[0, n // 2, n // 3] *= 1.01                          # one cell moves by 1 %
    got = []
    for sharp in (False, True):
        got += ReadCorrection((n, n), 1, 0.2, r_line, beta=0.3).model(g, sharp=sharp)
        warm = ReadCorrection((n, n), 1, 0.2, r_line, beta=0.3)
        warm.model(g)
        got += warm.model(g2, sharp=sharp)
    monkeypatch.setattr(ir, "MODEL_READ_TOL", 1e-14)
    monkeypatch.setattr(ir, "ADJOINT_TOL", 1e-14)
    want = ReadCorrection((n, n), 1, 0.2, r_line, beta=0.3).model(g)
    want2 = ReadCorrection((n, n), 1, 0.2, r_line, beta=0.3).model(g2)
    for a, b in zip(got, 2 * (want + want2)):
        assert np.abs(a / b - 1).max() <= 2e-6


@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("r_line", [0.67, 1.5])
def test_the_relaxed_models_reads_and_adjoints_are_within_two_millionths(r_line, beta, monkeypatch):
    """The model of a batch of many small chips (relaxed lines: its grounded reads from their row's
    own network to MODEL_READ_TOL on nodes and readings, linear devices by the linear solve; its
    adjoints from their column's own network to ADJOINT_TOL of 1/g_term) gives every reading within
    2e-6 of its chip's mean conductance of the model solved to rounding (swept, a few chips at a
    time), every slope within 2e-6 relative, and the write transfers' maps (each cell's voltage per
    volt on its own row's and its own column's terminal and on every row's) and the V/2 and V/3
    transfers built from them within 2e-6 (measured: up to 6.8e-7, 5.5e-7, 5.5e-7)."""
    import programming.ir_correction as ir
    from programming.line_batch import BATCH_MIN_CHIPS

    rng = np.random.default_rng(7)
    B = BATCH_MIN_CHIPS
    g = rng.uniform(5e-6, 300e-6, (B, 8, 8))
    corr = ReadCorrection((8, 8), B, 0.2, r_line, beta=beta)
    m, a = corr.model(g)
    assert corr._net is not None and corr._net.relaxes()
    write = corr._model_write
    monkeypatch.setattr(ir, "MODEL_READ_TOL", 1e-14)
    monkeypatch.setattr(ir, "ADJOINT_TOL", 1e-14)
    exact = []
    for k in range(0, B, 8):
        ref = ReadCorrection((8, 8), 8, 0.2, r_line, beta=beta)
        exact.append((*ref.model(g[k:k + 8]), *ref._model_write))
        assert ref._net is None                                  # (swept)
    m_x, a_x, phi_x, psi_x, sigma_x = (np.concatenate(x) for x in zip(*exact))
    g_mean = g.reshape(B, -1).mean(axis=1)[:, None, None]
    assert np.abs((m - m_x) / g_mean).max() <= 2e-6
    assert np.abs(a / a_x - 1).max() <= 2e-6
    for got, want in zip(write, (phi_x, psi_x, sigma_x)):
        assert np.abs(got - want).max() <= 2e-6
    for row, col in ((0.5, 0.5), (1 / 3, 2 / 3)):             # V/2, V/3: (a − b)·Σ + (1 − a)·φ − b·ψ
        def t(phi, psi, sigma):
            return (row - col) * sigma + (1 - row) * phi - col * psi
        assert np.abs(t(*write) - t(phi_x, psi_x, sigma_x)).max() <= 2e-6


def test_fit_through_nearly_ideal_lines_behind_a_relay_path():
    """A line calibration's first trial resistance (1e-6 Ω per segment) behind the bench's 1 Ω
    relay path: the joint fit recovers the conductances that made the readings.  The swept
    model's proven bound cannot show its tolerance there (its rounding floor is ~1e-3 of a
    reading), so those solves go to the factorized network; fitted on the bound alone they drifted
    to 3x the conductances and a mock bench's calibration measured 0 Ω (6e-5 off here)."""
    import programming.ir_correction as ir

    rng = np.random.default_rng(11)
    g = rng.uniform(100e-6, 400e-6, (1, 8, 8))
    cells = [(i, j) for i in range(8) for j in range(8)]
    for r in (1e-6, 0.7):
        m = ir.driven_read_model(g, cells, 0.2, r, 1.0, scheme="ground").reshape(g.shape)
        est = ir.ReadCorrection((8, 8), 1, 0.2, r, 1.0).fit(m)
        np.testing.assert_allclose(est, g, rtol=2e-5)      # the model to MODEL_READ_TOL: 8e-6 seen


def test_a_fit_asked_below_its_model_s_floor_stops_at_the_floor_and_never_ends_on_a_wandering_mix(monkeypatch):
    """The model's evaluations carry a rounding floor (~1e-7 of a reading on an AVX-512 machine,
    where the 8×8 fit above at 0.7 Ω wandered for 60 steps and ended 0.29 % off).  Here the floor
    is injected (each inversion's answer off by a seeded 1e-7 relative), so the test does not
    depend on the machine: a fit asked for 1e-9 stops a few steps after reaching the floor (FIT_STALL),
    and without that stop, out of evaluations, it ends at its smallest step's estimate."""
    import programming.ir_correction as ir

    rng = np.random.default_rng(3)
    g = rng.uniform(100e-6, 400e-6, (2, 8, 8))
    cells = [(i, j) for i in range(8) for j in range(8)]
    m = ir.driven_read_model(g, cells, 0.2, 0.7, 1.0, scheme="ground").reshape(g.shape)
    invert, noise = ir.ReadCorrection._invert, np.random.default_rng(5)

    def rounded(*args):
        out = invert(*args)
        return out * (1.0 + 1e-7 * noise.uniform(-1.0, 1.0, out.shape))

    monkeypatch.setattr(ir.ReadCorrection, "_invert", staticmethod(rounded))
    fit = ir.ReadCorrection((8, 8), 2, 0.2, 0.7, 1.0)
    est = fit.fit(m, tol=1e-9)
    assert fit.fit_steps < 20                                    # not all 60 evaluations
    np.testing.assert_allclose(est, g, rtol=1e-6)
    monkeypatch.setattr(ir, "FIT_FLOOR", 0.0)                    # no stop at the floor
    fit = ir.ReadCorrection((8, 8), 2, 0.2, 0.7, 1.0)
    est = fit.fit(m, tol=1e-9, iterations=40)
    assert fit.fit_steps == 40
    np.testing.assert_allclose(est, g, rtol=1e-6)                # the smallest step's estimate


def test_the_line_estimate_s_root_search_is_within_tolerance_in_bisection_s_count():
    """The line estimate's root search (:func:`bracketed_root`, ITP; not imported from
    scipy.optimize to spare the tune ~18 MB): on smooth, steep and flat functions, every root within
    ``(xtol + rtol·|x|)/2`` of the true one, never more evaluations than bisection's count plus
    one (the method's guarantee) and, on the smooth monotone functions the line calibration meets
    (a bracket from its geometric grid), superlinear: a fraction of bisection's count."""
    from programming.ir_correction import bracketed_root

    rng = np.random.default_rng(5)
    cases = [(lambda x: np.log(x / 0.67), 1e-6, 50.0, 0.67), (lambda x: np.exp(x) - 10, 0.0, 5.0, np.log(10)),
             (lambda x: np.tanh(40 * (x - 0.3)), -1.0, 1.0, 0.3), (lambda x: (x - 0.4) ** 3, 0.0, 1.0, 0.4),
             (lambda x: 1.0 - x, 0.5, 2.0, 1.0)]                 # decreasing
    for _ in range(40):
        c = rng.normal(size=4)
        root = rng.uniform(0.1, 0.9)
        cases.append((lambda x, c=c, root=root: (x - root) * (1 + c[0] ** 2 + c[1] ** 2 * (x - root) ** 2)
                      + abs(c[2]) * (x - root) ** 3, 0.0, 1.0 + abs(c[3]), root))
    for f, a, b, root in cases:
        for xtol, rtol in ((1e-4, 1e-4), (2e-12, 1e-15), (1e-2, 1e-6)):
            seen = []
            got = bracketed_root(lambda x: seen.append(x) or f(x), a, b, xtol=xtol, rtol=rtol)
            assert abs(got - root) <= (xtol + rtol * abs(root)) / 2 * (1 + 1e-9) + 1e-15
            assert len(seen) <= 2 + np.ceil(np.log2((b - a) / xtol)) + 1
    for r_true in (0.3, 0.67, 1.0, 2.0):                         # the calibration's brackets: grid neighbours
        grid = np.geomspace(0.05, 50.0, 16)
        hi = grid[np.searchsorted(grid, r_true)]
        lo = grid[np.searchsorted(grid, r_true) - 1]
        seen = []
        got = bracketed_root(lambda x: seen.append(x) or np.log(x / r_true) + 0.1 * (x - r_true) ** 2, lo, hi,
                             xtol=1e-4, rtol=1e-4)
        assert abs(got - r_true) <= 1e-4 and len(seen) <= 8 < 2 + np.ceil(np.log2((hi - lo) / 1e-4))
    with pytest.raises(ValueError, match="different signs"):
        bracketed_root(lambda x: x * x + 1, -1.0, 1.0, xtol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="NaN"):
        bracketed_root(lambda x: np.nan if 0 < x < 1 else x - 0.5, -1.0, 2.0, xtol=1e-4, rtol=1e-4)
    with pytest.raises(RuntimeError, match="converge"):
        bracketed_root(lambda x: np.tanh(40 * (x - 0.3)), -1.0, 1.0, xtol=1e-12, rtol=1e-12, maxiter=3)


@pytest.mark.parametrize("r_line", [0.67, 40.0])        # relaxed lines; lines too resistive to relax (swept)
def test_a_chunked_model_is_its_chunks_models_written_in_place(r_line, monkeypatch):
    """A model of more than MODEL_CHIPS chips is each chunk's model, bit for bit, written into the
    batch's maps (readings, slopes, write transfers, unit currents, kept sensitivities), with no
    map held twice: the chunks' own arrays are not the batch's."""
    import programming.ir_correction as ir

    rng = np.random.default_rng(3)
    g = rng.uniform(5e-6, 1e-4, (5, 6, 7))

    def fresh():
        return ReadCorrection((6, 7), 5, 0.2, r_line=r_line, beta=0.3)

    monkeypatch.setattr(ir, "MODEL_CHIPS", 2)
    corr = fresh()
    got = corr.model(g, cross=True)
    maps = (*got, *corr._model_write, corr._model_unit, *corr._model_cross[:2])
    monkeypatch.setattr(ir, "MODEL_CHIPS", 1024)
    chunks = []
    for k in range(0, 5, 2):
        c = fresh()
        part = c.model(g[k:k + 2], True, np.arange(k, min(5, k + 2)))
        chunks.append((*part, *c._model_write, c._model_unit, *c._model_cross[:2]))
    for i, m in enumerate(maps):
        if m is None:
            assert all(ch[i] is None for ch in chunks)
            continue
        assert m.shape[0] == 5 and m.flags.c_contiguous and m.base is None      # the batch's own array
        np.testing.assert_array_equal(m, np.concatenate([ch[i] for ch in chunks]))


def test_relaxed_adjoints_a_few_chips_at_a_time_are_every_chip_at_once_bit_for_bit(monkeypatch):
    """The relaxed adjoint solves work a few chips at a time (ADJOINT_BYTES), written in place:
    each column's node voltages are those of one call with every chip, bit for bit."""
    import programming.ir_correction as ir

    from programming.line_batch import BATCH_MIN_CHIPS

    B = BATCH_MIN_CHIPS
    rng = np.random.default_rng(4)
    g = rng.uniform(5e-6, 1e-4, (B, 5, 7))
    corr = ReadCorrection((5, 7), B, 0.2, r_line=0.67)
    _, norm = corr._device_norm()
    net = ir.relaxed_network(None, g / norm, corr.r_line, corr.r_access)
    assert net is not None and net.relaxes()
    monkeypatch.setattr(ir, "ADJOINT_BYTES", 1 << 40)
    whole = corr._adjoints(g, norm, net, np.arange(B))
    monkeypatch.setattr(ir, "ADJOINT_BYTES", 8 * 7 * 2 * 5 * 7 * 13)      # 13 chips a call
    parts = corr._adjoints(g, norm, net, np.arange(B))
    for a, b in zip(whole, parts):
        np.testing.assert_array_equal(a, b)
        assert np.abs(a).max() > 0


def test_compiled_transfer_and_inversion_equal_the_numpy_formulas():
    """The line model's write transfers and local inversions are worked out cell by cell in compiled
    passes (:func:`programming.ir_correction._kernels`): the same numbers, bit for bit, as the formulas
    written with numpy (those of 85103a2, where they were), on a fitted 8×8 batch's maps at random
    lanes and amplitudes, V/2 and V/3 shares, and at readings that hit each of the inversion's
    fallbacks (NaN, 0, negative, beyond the pole, far below the model's reading at 0 S)."""
    rng = np.random.default_rng(3)
    g = rng.uniform(20e-6, 500e-6, (5, 8, 8))
    corr = ReadCorrection((8, 8), 5, 0.2, r_line=0.67, beta=0.3)
    corr.fit(corr.model(g)[0])
    rows, cols = rng.integers(0, 8, (5, 6)), rng.integers(0, 8, (5, 6))
    phi, psi, sigma = corr._write
    for a, b in ((0.5, 0.5), (1 / 3, 2 / 3)):
        amp = rng.uniform(0.5, 3.0, rows.shape)
        cell = (np.arange(5)[:, None] * 8 + rows) * 8 + cols
        t_lin = np.clip((a - b) * sigma.reshape(-1)[cell] + (1 - a) * phi.reshape(-1)[cell]
                        - b * psi.reshape(-1)[cell], 1e-3, 1.0)
        want = t_lin
        for _ in range(2):
            x = amp * (1 + 1 / want) / 2 * max(1 - b, a)
            want = 1.0 / (1.0 + (1.0 + corr.beta * x * x) / (1.0 + corr.beta * corr.v_ref ** 2) * (1.0 / t_lin - 1.0))
        assert np.array_equal(corr.write_transfer(rows, cols, amp, a, b), want)
        lanes = np.array([0, 7, 12, 29])
        assert np.array_equal(corr.write_transfer(rows, cols, amp.reshape(-1)[lanes], a, b, lanes=lanes),
                              want.reshape(-1)[lanes])
        assert np.array_equal(corr.write_transfer(rows, cols, 1.2, a, b).shape, rows.shape)
    m_hat, a_, c_, ref = corr._m_hat, corr._a, corr._c, corr._ref.copy()
    m = m_hat * rng.uniform(0.9, 1.1, m_hat.shape)
    m[0, 0, :5] = [np.nan, 0.0, -1e-6, np.inf, 1.0]     # no reading, none, negative, beyond the pole
    ref[1, 2, 3], m[1, 2, 3] = 1e-9, m_hat[1, 2, 3] / 2  # far below a linearization near 0 S: g <= 0
    fallback = rng.uniform(1e-6, 1e-3, m.shape)
    read = np.isfinite(m) & (m > 0)
    d = np.where(read, m, np.nan) - m_hat
    den = a_ - c_ * d
    want = np.where(read & (den > 0) & (ref + d / den > 0), ref + d / den, fallback)
    assert (want == fallback).sum() >= 6
    assert np.array_equal(corr._invert(m, a_, c_, fallback, ref, m_hat), want)


@pytest.mark.parametrize("B, shape, r_line", [(40, (8, 8), 0.67), (2, (6, 9), 1.0)])
def test_compiled_cell_maps_equal_the_numpy_formulas(B, shape, r_line):
    """Without the kept shares (a batch beyond CROSS_MAX, as 10 000 × 8×8) the model's cell maps —
    each cell's voltage in its own row's read, their sum over the reads, and each cell's own adjoint
    — come from compiled passes (:func:`programming.ir_correction._kernels`' ``cell_maps``,
    ``own_adjoint``) instead of the whole ``φ = xr − xc`` of every cell in every read: the same
    numbers, bit for bit, as the numpy formulas (those of 4e7a1b6), on relaxed (40 chips) and swept
    (2 chips, a non-square array) lines; and the model's maps equal those with the shares kept."""
    import programming.ir_correction as ir

    R, C = shape
    rng = np.random.default_rng(11)
    g = rng.uniform(10e-6, 400e-6, (B, R, C))
    corr = ReadCorrection(shape, B, 0.2, r_line=r_line, beta=0.3)
    _, norm = corr._device_norm()
    net = corr._relaxed(g / norm, np.arange(B))
    assert (net is not None) == (B >= 32)
    xr, xc, _ = corr._swept_reads(g, True, np.arange(B)) if net is None else (
        *net.split(net.read_rows(g, 0.3, 0.2, 0.2, 1e-6, np.full(B, 1e-12))[0]), None)
    phi = xr - xc
    v_cell, sigma = np.empty((B, R, C)), np.empty((B, R, C))
    ir._kernels()["cell_maps"](xr, xc, v_cell, sigma)
    assert np.array_equal(v_cell, phi[:, np.arange(R), np.arange(R), :])
    assert np.array_equal(sigma, phi.sum(axis=1))
    wr, wc = corr._adjoints(g, norm, net, np.arange(B))
    assert np.array_equal(corr._own_adjoint(wr, wc), np.diagonal(wr.transpose(0, 2, 1, 3), axis1=2, axis2=3)
                          - np.diagonal(wc.transpose(0, 2, 1, 3), axis1=2, axis2=3))
    kept, alone = ReadCorrection(shape, B, 0.2, r_line, beta=0.3), ReadCorrection(shape, B, 0.2, r_line, beta=0.3)
    want, got = kept.model(g, cross=True), alone.model(g, cross=False)
    assert kept._model_cross is not None and alone._model_cross is None
    for a, b in zip((*want, *kept._model_write, kept._model_unit), (*got, *alone._model_write, alone._model_unit)):
        assert np.array_equal(a, b)


def test_a_large_batch_bounds_each_chip_once_per_change(monkeypatch):
    """A batch of at least BATCH_MIN_CHIPS chips keeps every chip's contraction bound: a network of
    some of its chips holds their conductances and the same bounds, bit for bit, as a new network of
    them (:func:`~programming.line_sweep.relaxed_network`), makes the same choice (relaxed, or swept
    above RHO_BATCH), and bounds again only the chips whose conductances changed, once each."""
    import programming.line_batch as lb
    from programming.line_sweep import relaxed_network

    bounded = []
    real = lb.contraction
    monkeypatch.setattr(lb, "contraction", lambda g, *a, **k: bounded.append(len(g)) or real(g, *a, **k))
    rng = np.random.default_rng(4)
    B = lb.BATCH_MIN_CHIPS + 8
    g = rng.uniform(10e-6, 400e-6, (B, 8, 8))
    corr = ReadCorrection((8, 8), B, 0.2, r_line=0.67, beta=0.3)
    for ids in (np.array([3, 5, 7]), np.arange(B), np.array([5])):
        bounded.clear()
        net = corr._relaxed(g[ids], ids)
        new = relaxed_network(None, g[ids], 0.67, min_chips=1)
        assert type(net) is type(new) is lb.BatchLines and net.shape == new.shape
        assert np.array_equal(net._g, new._g) and np.array_equal(net.rho_lin, new.rho_lin)
    bounded.clear()
    corr._relaxed(g[[3, 5, 7]], np.array([3, 5, 7]))
    assert bounded == []                                       # nothing changed: nothing bounded
    g[5, 1, 1] *= 2
    corr._relaxed(g[[3, 5, 7]], np.array([3, 5, 7]))
    assert bounded == [1]                                      # chip 5 only, once
    steep = ReadCorrection((8, 8), B, 0.2, r_line=20.0)         # lines too resistive to relax
    assert steep._relaxed(g[:4], np.arange(4)) is None
    assert relaxed_network(None, g[:4], 20.0, min_chips=1) is None


@pytest.mark.parametrize("scheme", ["isolate", "float"])
def test_a_batch_brackets_its_line_resistances_together_as_each_chip_alone(scheme):
    """estimate_line_resistance steps every chip of a batch up the bracketing grid at once (one fit
    of the chips still stepping per trial resistance, in groups below BATCH_MIN_CHIPS): each chip's
    estimate, bit for bit, what it gets alone — one with a missing reading (fitted alone), one whose
    second readings need no line resistance (0 Ω), and per-chip curvatures."""
    from programming.ir_correction import calibration_cells, estimate_line_resistance, line_mismatches

    xb = SimulatedCrossbar(8, 8, n_chips=4, seed=3, r_line=0.67)
    cells = calibration_cells(xb.shape)
    rr, cc = np.array(cells).T
    ground = xb.read_array(xb.v_read, "ground")
    second = xb.read(rr, cc, xb.v_read, scheme).conductance
    second[2] *= 0.5                                            # no line resistance needed: 0 Ω
    ground[3, 4, 5] = np.nan                                     # a missing reading
    beta = np.array([0.3, 0.25, 0.3, 0.35])
    both = estimate_line_resistance(ground, second, cells, xb.v_read, beta=beta, v_ref=xb.v_read, scheme=scheme)
    alone = [estimate_line_resistance(ground[k:k + 1], second[k:k + 1], cells, xb.v_read, beta=beta[k],
                                      v_ref=xb.v_read, scheme=scheme)[0] for k in range(4)]
    assert np.array_equal(both, alone)
    assert both[2] == 0 and (both[[0, 1, 3]] > 0).all()
    each = [line_mismatches(ground[k:k + 1], second[k:k + 1], cells, xb.v_read, 0.3, beta=beta[k],
                            v_ref=xb.v_read, scheme=scheme)[0] for k in range(4)]
    assert np.array_equal(line_mismatches(ground, second, cells, xb.v_read, 0.3, beta=beta, v_ref=xb.v_read,
                                          scheme=scheme), each)


def test_lanes_corrected_in_one_compiled_pass_as_cell_by_cell(monkeypatch):
    """Where the model keeps no shares (a batch beyond CROSS_MAX, as 10 000 × 8×8), correct()
    inverts its lanes in one compiled pass (``correct_lanes``): the same conductances and estimates,
    bit for bit, as each lane's cell inverted by :meth:`ReadCorrection._correct_at` — inactive lanes
    NaN, and readings at the inversion's fallbacks (NaN, 0, negative) keeping the estimate."""
    import copy

    import programming.ir_correction as ir

    monkeypatch.setattr(ir, "CROSS_MAX", 0)                       # no shares kept
    rng = np.random.default_rng(8)
    B, L = 6, 5
    g = rng.uniform(20e-6, 500e-6, (B, 8, 8))
    corr = ReadCorrection((8, 8), B, 0.2, r_line=0.67, beta=0.3)
    corr.fit(corr.model(g)[0], tol=1e-6)
    assert corr._cross is None
    rows, cols = rng.integers(0, 8, (B, L)), rng.integers(0, 8, (B, L))
    active = rng.random((B, L)) < 0.7
    readings = g[np.arange(B)[:, None], rows, cols] * rng.uniform(0.9, 1.1, (B, L))
    readings[0, :3] = [np.nan, 0.0, -1e-6]
    active[0, :3] = True
    ref = copy.deepcopy(corr)
    got = corr.correct(rows, cols, readings, active)
    act = np.flatnonzero(active)
    b, r, c = act // L, rows.reshape(-1)[act], cols.reshape(-1)[act]
    want = np.full((B, L), np.nan)
    want.reshape(-1)[act] = ref._correct_at(b, r, c, (b * 8 + r) * 8 + c, readings.reshape(-1)[act])
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(corr.est, ref.est)
    assert np.isnan(got[~active]).all() and np.array_equal(got[0, :3], ref.est[0, rows[0, :3], cols[0, :3]])


def test_a_fit_leaves_the_model_work_of_its_chips_owed_until_they_are_used(monkeypatch):
    """In a batch of many relaxed chips whose model keeps no shares (10 000 × 8×8), a fit leaves the
    slopes of its last iterate and the whole refresh of a chip it did not read (a read-back's chips
    that have left the run) owed until the chip is next used: then its corrections, write transfers
    and model are those of doing the work at once, bit for bit; a chip never used again costs
    nothing."""
    import programming.ir_correction as ir
    from programming.line_batch import BATCH_MIN_CHIPS

    monkeypatch.setattr(ir, "CROSS_MAX", 0)
    rng = np.random.default_rng(21)
    B, L = BATCH_MIN_CHIPS + 4, 4
    g = rng.uniform(20e-6, 400e-6, (B, 8, 8))
    m = grounded_read_currents(g, 0.2, 0.67) / 0.2
    lazy = ReadCorrection((8, 8), B, 0.2, r_line=0.67, beta=0.3)
    eager = ReadCorrection((8, 8), B, 0.2, r_line=0.67, beta=0.3)
    monkeypatch.setattr(eager, "_defer", lambda chips, g: False)
    rows, cols = rng.integers(0, 8, (B, L)), rng.integers(0, 8, (B, L))
    for corr in (lazy, eager):
        corr.fit(m, tol=1e-6)
        corr.correct(rows, cols, m[np.arange(B)[:, None], rows, cols] * 1.01, np.ones((B, L), bool))
    back = m * rng.uniform(0.999, 1.001, m.shape)
    back[:3] = np.nan                                            # chips 0-2 have left: not read back
    for corr in (lazy, eager):
        corr.correct_map(back)
    assert lazy._owed[:3].all() and not lazy._owed[3:].any() and lazy._lag[3:].all()
    assert lazy.refreshes == eager.refreshes - 1                  # (the refresh of chips 0-2: owed)
    active = np.zeros((B, L), bool)
    active[[0, 5]] = True                                        # chip 0 (owed) and chip 5 (its slopes owed)
    again = m[np.arange(B)[:, None], rows, cols] * 0.99
    assert np.array_equal(lazy.correct(rows, cols, again, active), eager.correct(rows, cols, again, active),
                          equal_nan=True)
    lanes = np.array([4 * L + 1, 7 * L + 2, 1 * L])               # chips 4, 7 (slopes owed), 1 (owed)
    for share in ((0.5, 0.5), (1 / 3, 2 / 3)):
        assert np.array_equal(lazy.write_transfer(rows, cols, np.full(3, 1.5), *share, lanes=lanes),
                              eager.write_transfer(rows, cols, np.full(3, 1.5), *share, lanes=lanes))
    done = [0, 1, 4, 5, 7]
    assert not lazy._owed[done].any() and not lazy._lag[done].any() and lazy._owed[2]
    for name in ("est", "_a", "_c", "_m_hat", "_ref", "_unit"):
        assert np.array_equal(getattr(lazy, name)[done], getattr(eager, name)[done]), name
    lazy.refresh()                                               # everything owed is done first
    eager.refresh()
    assert not lazy._owed.any() and not lazy._lag.any()
    for name in ("est", "_a", "_c", "_m_hat", "_ref", "_unit"):
        assert np.array_equal(getattr(lazy, name), getattr(eager, name)), name
