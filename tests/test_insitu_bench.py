"""In-situ training through the instruments: the mock bench (drivers → VISA → emulators → physics)
behind :class:`~instruments.hardware_crossbar.HardwareCrossbar`, and ``xbar insitu --station``.

Every bench here is sized to its network and trains on 10 moons points (2 mini-batches of 5) with
one centring cycle of each kind, so a run costs a few seconds of loopback round trips.  The
2636B that drives these benches sources pulses of 1 µs or longer, so the write pulse is 1.3 V,
1 µs (a push-pull step of ~0.65 weight units, against ~0.43 for the 1.35 V, 100 ns default)."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from instruments.hardware_crossbar import HardwareCrossbar, station_limits
from instruments.roles import InstrumentError
from instruments.station import load_station
from mock_hw.mock_bench import MockBench
from mock_hw.sim_chip import SimulatedCrossbar
from models.datasets import load_dataset
from models.insitu import InSituConfig, chip_shape_for, train_in_situ
from models.insitu_net import augment, mean_loss, sigmoid
from procedures.cli import main

PULSE = {"amplitude": 1.3, "width": 1e-6}
FAST = ["--epochs", "1", "--batch-size", "5", "--train-points", "10", "--test-points", "4", "--center-cycles", "1",
        "--center-fine-cycles", "1", "--amplitude", "1.3", "--width", "1e-6", "--quiet"]


@pytest.fixture(scope="module")
def moons():
    d = load_dataset("moons", seed=0, n_samples=200)
    return replace(d, x_train=d.x_train[:10], y_train=d.y_train[:10], x_test=d.x_test[:4], y_test=d.y_test[:4])


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A 10x8 ``asymmetric`` bench for the tests that only need a corner of it or check that
    nothing happens (a bench takes ~1 s to shut down); tests compare its counters before/after.
    Its chip does not age (``time_scale=0``): "nothing happened" is checked on exact conductances."""
    with MockBench(10, 8, preset="asymmetric", seed=2, time_scale=0) as bench:
        yield bench, bench.write_station(tmp_path_factory.mktemp("shared") / "st.toml")


def config(rule: str, **kw) -> InSituConfig:
    return InSituConfig(rule=rule, epochs=1, batch_size=5, center_cycles=1, center_fine_cycles=1, seed=0,
                        **{**PULSE, **kw})


def bench_for(cfg: InSituConfig, hidden: int, preset: str, seed: int) -> MockBench:
    """A bench sized to the network.  Its chip does not age (``time_scale=0``): the tests compare
    exact conductances (cells the run never writes keep theirs; bench vs simulated chip), which
    retention loss over the run's wall-clock seconds would change."""
    return MockBench(*chip_shape_for(2, hidden, 1, cfg), preset=preset, seed=seed, time_scale=0)


def sent(bench) -> dict:
    return {name: len(emu.log) for name, emu in bench.emulators.items()}


def layout_mask(net, shape) -> np.ndarray:
    used = np.zeros(shape, bool)
    for a in net.all:
        used[a.rows, a.cols] = True
    return used


# ------------------------------------------------------------------------------ training
def test_tiki_taka_trains_through_the_instruments(moons, tmp_path):
    cfg = config("tiki-taka")
    with bench_for(cfg, 2, "asymmetric", seed=1) as bench:
        assert bench.chip.shape == (12, 12)
        g0 = bench.chip.true_conductance[0]
        with HardwareCrossbar(load_station(bench.write_station(tmp_path / "st.toml"))) as xb:
            res = train_in_situ(xb, moons, 2, cfg)
        g1 = bench.chip.true_conductance[0]
        assert bench.violations == []
        assert bench.bench.all_off(), "outputs must be off and relays open after training"
        # every pulse the trainer counted went through the instruments, and nothing else was pulsed
        assert res.pulses[0] > 0 and bench.bench.pulses == res.pulses[0] + res.init_pulses[0]
        net = res.network
        used = layout_mask(net, g0.shape)
        assert np.all(g1[used] != g0[used]), "every device of C and A was pulsed"
        assert np.array_equal(g1[~used], g0[~used]), "cells outside the layout only ever saw half-selects"
        # the weights the run reports are what the emulated chip holds (read back through the bench)
        g_true = {a.name: g1[a.rows, a.cols][None] for a in net.all}
        for layer in range(2):
            np.testing.assert_allclose(res.weights[layer], net.effective(layer, g_true), atol=0.05)
        # ... and they are a better network than the one training started from
        assert res.train_loss[-1, 0] < 0.85 * res.train_loss[0, 0], res.train_loss[:, 0]
        w1, w2 = (net.effective(layer, g_true)[0] for layer in range(2))
        x = moons.x_train.numpy().astype(float)
        z = augment(sigmoid(augment(x) @ w1)) @ w2
        soft = mean_loss(z[None], moons.y_train.numpy().astype(float)[None, :, None])[0]
        assert soft == pytest.approx(res.train_loss[-1, 0], rel=0.02), "the chip's forward pass is the network's"


def test_bench_and_simulated_chip_agree_on_an_ideal_chip(moons, tmp_path):
    """On the noise-free ``ideal`` preset the run is deterministic: the bench (one cell at a time,
    mvm by superposition of single-cell reads) and the simulated chip (vectorized) give the same
    pulses, the same devices and the same network (readings differ only in the 2600B's 6 digits)."""
    cfg = config("manhattan")
    shape = chip_shape_for(2, 2, 1, cfg)
    sim = SimulatedCrossbar(*shape, preset="ideal", seed=3)
    ref = train_in_situ(sim, moons, 2, cfg)
    with bench_for(cfg, 2, "ideal", seed=3) as bench:
        with HardwareCrossbar(load_station(bench.write_station(tmp_path / "st.toml"))) as xb:
            res = train_in_situ(xb, moons, 2, cfg)
        assert bench.violations == [] and bench.bench.all_off()
        assert bench.bench.pulses == res.pulses[0] + res.init_pulses[0]
        np.testing.assert_allclose(bench.chip.true_conductance, sim.true_conductance, rtol=1e-9)
    assert res.pulses[0] > 0 and np.array_equal(res.pulses, ref.pulses)
    assert np.array_equal(res.init_pulses, ref.init_pulses)
    assert res.mvm_calls == ref.mvm_calls
    assert res.pulse_calls < ref.pulse_calls, "the bench pulses device after device, in fewer calls"
    np.testing.assert_allclose(res.train_loss, ref.train_loss, rtol=1e-4)
    np.testing.assert_array_equal(res.test_accuracy, ref.test_accuracy)
    for w, w_ref in zip(res.weights, ref.weights):
        np.testing.assert_allclose(w, w_ref, atol=1e-3)
    assert ref.train_loss[-1, 0] < 0.8 * ref.train_loss[0, 0], "Manhattan steps lowered the loss"


def test_mvm_need_mask_skips_cells_on_a_bench_and_measures_only_the_needed_currents_on_a_sim(shared):
    v = np.zeros((3, 10))
    v[0, :2] = [0.1, 0.2]
    v[1, :2] = [0.1, 0.05]
    v[2, 5] = 0.2
    need = np.zeros((3, 8), bool)
    need[0, [0, 1]] = need[1, 1] = need[2, 7] = True
    a, b = (SimulatedCrossbar(10, 8, preset="asymmetric", seed=4) for _ in range(2))
    full, masked = a.mvm(v), b.mvm(v, need=need)
    # the same currents up to their read noise (drawn for the needed currents only)
    sigma = a.params.device.read_noise
    np.testing.assert_allclose(masked[0][need], full[0][need], rtol=12 * sigma)
    assert np.isnan(masked[0][~need]).all()
    with pytest.raises(ValueError, match="does not broadcast"):
        b.mvm(v, need=need[:, :3])
    bench, path = shared
    with HardwareCrossbar(load_station(path)) as xb:
        k2600 = bench.emulators["K2600"]
        n0 = len(k2600.log)
        out = xb.mvm(v, need=need)
        reads = sum("measure.i()" in m for m in k2600.log[n0:])
        np.testing.assert_allclose(out[0][need], xb.mvm(v)[0][need], rtol=0.01)
    # cell (row, col) at each level a needed current uses: row 0 at 0.1 V for columns 0 and 1,
    # row 1 at 0.2 V for columns 0, 1 and at 0.05 V for column 1, row 5 at 0.2 V for column 7
    assert reads == 6, "a bench measures only the cells that feed a needed current"
    assert np.isnan(out[0][~need]).all()
    assert bench.violations == [] and bench.bench.all_off()


# ------------------------------------------------------------------------------ safety
def test_widths_the_drive_cannot_source_are_refused_before_any_pulse(moons, shared, tmp_path):
    bench, _ = shared
    cfg = config("sgd", width=1e-7)   # the InSituConfig default: 100 ns
    st = load_station(bench.write_station(tmp_path / "smu.toml", variant="k2600-707b-smu"))
    assert st.limits.width_min == 1e-7, "the station file allows 100 ns ..."
    assert station_limits(st).width_min == 1e-4, "... the 2636B that pulses does not (from 100 µs)"
    assert station_limits(replace(st, limits=replace(st.limits, width_min=2e-4))).width_min == 2e-4
    pulses, g0 = bench.bench.pulses, bench.chip.true_conductance
    with HardwareCrossbar(st) as xb:
        assert xb.limits.width_min == 1e-4
        with pytest.raises(ValueError, match=r"pulse width 1e-07 s outside the chip's limits \[0.0001, 0.001\]"):
            train_in_situ(xb, moons, 1, cfg)
    assert bench.bench.pulses == pulses and np.array_equal(bench.chip.true_conductance, g0)
    assert bench.violations == [] and bench.bench.all_off()


def test_an_instrument_fault_mid_training_leaves_the_bench_safe(moons, shared):
    bench, path = shared
    sense_relays = {("M707B", "B", bench.pin_707b("col", j)) for j in range(bench.cols)}

    class FaultAfter(HardwareCrossbar):
        products = 0

        def _mvm_needed(self, v_rows, need):
            self.products += 1
            if self.products == 10:    # set-up: 5 products, first evaluation: 4; then training
                self.pulses_before = bench.bench.pulses
                bench.bench.stuck_open |= sense_relays     # the sense channel's relays stop closing
            return super()._mvm_needed(v_rows, need)

    start = bench.bench.pulses
    try:
        with FaultAfter(load_station(path)) as xb:
            with pytest.raises(InstrumentError, match="relays did not close"):
                train_in_situ(xb, moons, 1, config("sgd"))
            assert xb.products == 10 and xb.pulses_before > start
            assert bench.bench.all_off(), "safe at once, not only after close()"
    finally:
        bench.bench.stuck_open -= sense_relays
    assert bench.bench.pulses == xb.pulses_before, "nothing was pulsed after the fault"
    assert bench.violations == []


# ------------------------------------------------------------------------------ command line
def test_xbar_insitu_on_a_station_writes_a_report(shared, tmp_path, capsys):
    """On a station whose 2636B gives the pulses, the width defaults to its shortest (100 µs)."""
    bench, _ = shared
    path = bench.write_station(tmp_path / "smu.toml", variant="k2600-707b-smu")
    out = tmp_path / "insitu.json"
    pulses = bench.bench.pulses
    fast = [a for k, a in enumerate(FAST) if "--width" not in FAST[max(k - 1, 0):k + 1]]
    assert main(["insitu", "--station", str(path), "--rule", "shd", "--hidden", "1", "--seed", "0", *fast,
                 "--json", str(out)]) == 0
    assert bench.violations == [] and bench.bench.all_off()
    rep = json.loads(out.read_text())
    assert bench.bench.pulses - pulses == sum(rep["pulses"]) + sum(rep["init_pulses"]) and sum(rep["pulses"]) > 0
    assert rep["chip"] == f"station {path}" and rep["preset"] is None
    assert rep["station"] == {"file": str(path), "name": "mock bench (k2600-707b-smu)", "array": [10, 8]}
    assert rep["chip_shape"] == [10, 8] and rep["train_points"] == 10 and rep["test_points"] == 4
    assert rep["rule"] == "shd" and rep["config"]["width"] == 1e-4 and 0 <= rep["mean_test_accuracy"] <= 1
    assert "on station mock bench (k2600-707b-smu)" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--width", "1e-8"], r"pulse width 1e-08 s outside station .*'s limits \[1e-07, 0.001\] s"),
    (["--amplitude", "2.6"], r"pulse amplitude 2.6 V must be in \(0, v_max=2.5\] V \(station .*'s limits\)"),
    (["--hidden", "3"], r"needs a 20x16 array; station .* has 10x8"),
    (["--size", "10x8"], r"--size and --chips apply to the simulated chip"),
])
def test_xbar_insitu_refuses_bad_settings_before_touching_the_bench(shared, capsys, extra, message):
    bench, path = shared
    before, pulses = sent(bench), bench.bench.pulses
    assert main(["insitu", "--station", str(path), "--rule", "shd", "--hidden", "1", *FAST, *extra]) == 2
    assert sent(bench) == before, "nothing was written to any instrument"
    assert bench.bench.pulses == pulses
    assert re.search(message, capsys.readouterr().err)


def test_ctrl_c_in_xbar_insitu_leaves_the_bench_safe(shared, capsys, monkeypatch):
    bench, path = shared
    calls = {"n": 0}
    original = HardwareCrossbar._read_cell

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 40:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(HardwareCrossbar, "_read_cell", interrupted)
    pulses = bench.bench.pulses
    assert main(["insitu", "--station", str(path), "--rule", "sgd", "--hidden", "1", *FAST]) == 130
    assert calls["n"] == 40 and bench.bench.pulses > pulses, "interrupted mid-run"
    assert bench.violations == [] and bench.bench.all_off()
    assert "interrupted" in capsys.readouterr().err


def test_xbar_insitu_on_the_simulated_chip_names_it(tmp_path, capsys):
    out = tmp_path / "sim.json"
    assert main(["insitu", "--rule", "sgd", "--hidden", "2", "--chips", "2", "--size", "8x8", "--seed", "1", *FAST,
                 "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["chip"] == "sim" and rep["preset"] == "asymmetric" and rep["chips"] == 2 and rep["array"] == [8, 8]
    assert rep["chip_shape"] == [6, 6] and len(rep["pulses"]) == 2
    assert main(["insitu", "--rule", "tiki-taka", "--size", "8x8", *FAST]) == 2
    assert re.search(r"needs a 42x44 array; --size is 8x8", capsys.readouterr().err)
