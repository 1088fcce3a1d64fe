"""Bigger mock benches: several 707B cards and B2200 cards, up to 64x64 on the switch board, and the
default 2-8-1 moons network (9x18 with differential pairs) deployed on the mock bench."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from instruments.hardware_crossbar import HardwareCrossbar
from instruments.station import load_station
from mock_hw.mock_bench import MockBench


@pytest.fixture(scope="module")
def bench_9x18():
    with MockBench(9, 18, preset="tio2-3it", seed=4, time_scale=0) as b:
        yield b


def test_sizes_take_the_cards_they_need(bench_9x18):
    b = bench_9x18
    assert (b.slots_707b, b.cards_b2200) == (3, 3)          # rows on slot 1, columns on slots 2-3
    assert b.pin_707b("col", 17) == "306" and b.pin_b2200("col", 17) == "303"   # output 27 = card 3, 03


@pytest.mark.parametrize("variant", ["k2600-707b", "k2600-b2200"])
def test_cells_on_every_card_are_routed(bench_9x18, tmp_path, variant):
    b = bench_9x18
    with HardwareCrossbar(load_station(b.write_station(tmp_path / "s.toml", variant=variant))) as xb:
        for r, c in ((0, 0), (8, 17), (4, 12)):             # first card, last card, the middle one
            g = xb.read(r, c).conductance[0, 0]
            assert g == pytest.approx(b.chip.true_conductance[0, r, c], rel=0.05)
        before = b.chip.true_conductance[0, 8, 17]
        xb.pulse(8, 17, 1.6, 1e-6)                          # the 33512B through the last card
        assert b.chip.true_conductance[0, 8, 17] > before
    assert b.violations == [] and b.bench.all_off()


def test_64x64_is_served_by_the_switch_board(tmp_path):
    # ideal lines: what is asserted is the routing to the far corner, not the IR drop along 64-cell
    # lines (tests/test_ir_correction.py)
    with MockBench(64, 64, preset="ideal", seed=1, time_scale=0) as b:
        assert not b.has_707b and not b.has_b2200
        with pytest.raises(ValueError, match="needs 12 707B slots.*b2900-board"):
            b.station_toml("k2600-707b")
        with pytest.raises(ValueError, match="needs 128 B2200 outputs"):
            b.station_toml("k2600-b2200")
        with HardwareCrossbar(load_station(b.write_station(tmp_path / "s.toml", variant="b2900-board"))) as xb:
            assert xb.read(63, 63).conductance[0, 0] == pytest.approx(b.chip.true_conductance[0, 63, 63], rel=0.05)
        assert b.violations == [] and b.bench.all_off()
    with pytest.raises(ValueError, match="1..64"):
        MockBench(65, 8)


def test_default_moons_network_deploys_on_the_mock_bench(tmp_path):
    """The 2-8-1 network's two layers (3x16 and 9x2 with differential pairs) side by side on a
    9x18 mock bench, through the 707B's three cards, pulses from the 33512B."""
    from models.deploy import DeployConfig, deploy
    from models.layers import MLP
    from models.train import DEFAULT_HIDDEN

    torch.manual_seed(0)
    net = MLP([2, *DEFAULT_HIDDEN["moons"], 1]).eval()
    with MockBench(9, 18, preset="tio2-3it", seed=4, time_scale=0) as b:
        with HardwareCrossbar(load_station(b.write_station(tmp_path / "s.toml"))) as xb:
            dep = deploy(net, xb, None, DeployConfig(passes=1, initial_reset=False))
        rep = dep.report
        assert rep["placement"]["extent"] == [9, 18] and rep["placement"]["cells_used"] == 66
        tuned = rep["tuning"]
        assert tuned["cells"] == 66 and tuned["rel_error_mean"] < 0.02
        assert b.violations == [] and b.bench.all_off()
        used = np.zeros((9, 18), bool)
        for block in rep["placement"]["blocks"]:
            used[block["row"]:block["row"] + block["rows"], block["col"]:block["col"] + block["cols"]] = True
        assert np.isfinite(dep.conductances[0][used]).all()
