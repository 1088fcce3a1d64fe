"""The self-calibrating amplitude schedule (programming.auto_schedule): it finds, from the cells'
own measured response, where they start to switch at the width the station gives, and tuning
converges there."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mock_hw.sim_chip import SimulatedCrossbar
from programming.auto_schedule import ProbeSettings, auto_schedule, probe_cells, with_width
from programming.tuner import TunerConfig, tune


def test_probe_cells_use_distinct_rows_and_columns():
    for shape, n in (((8, 8), 4), ((3, 9), 8), ((64, 64), 8), ((1, 5), 3)):
        r, c = probe_cells(shape, n)
        assert r.size == c.size == min(n, *shape)
        assert np.unique(r).size == r.size and np.unique(c).size == c.size
        assert r.max() < shape[0] and c.max() < shape[1]


@pytest.mark.parametrize("width", [1e-6, 1e-4])
def test_auto_schedule_finds_the_turn_on_amplitude_at_each_width(width):
    """At the recipe's 1 µs it lands near the recipe's 1.1 V; at 100 µs (what a 2636B gives) about
    0.2 V lower — and tuning with it converges."""
    xb = SimulatedCrossbar(16, 16, preset="tio2-3it", seed=4, r_line=0.0)   # ideal lines: the schedule alone
    cfg, rep = auto_schedule(xb, with_width(TunerConfig(seed=1), width))
    expected = 1.1 - 0.1 * np.log10(width / 1e-6)          # the recipe's start, moved by the device's width law
    assert abs(cfg.v_set_start - expected) <= 0.1 and abs(cfg.v_reset_start - expected) <= 0.15, rep
    assert cfg.width == cfg.reset_width == width
    assert cfg.v_set_max <= 2 * cfg.v_set_start + 1e-9, "half-selected cells stay below turn-on"
    assert cfg.v_set_start == np.nanmedian(rep["v_on_set"])
    assert rep["pulses"] > 0 and rep["schedule"]["v_set_start"] == cfg.v_set_start
    targets = np.random.default_rng(0).uniform(120e-6, 480e-6, xb.shape)
    res = tune(xb, targets, cfg)
    working = xb.working_mask[0]
    ok = np.abs(xb.true_conductance[0] - targets) <= 0.01 * targets
    assert ok[working].mean() >= 0.95
    assert np.median(res.pulses[0][working]) <= 30


def test_recipe_amplitudes_overshoot_at_long_widths():
    """Why the schedule must adapt: at 100 µs the recipe's 1.1 V start moves cells by several
    percent per pulse, several times the auto schedule's first step."""
    def first_step(v):
        xb = SimulatedCrossbar(16, 16, preset="ideal", seed=0)
        g0 = xb.true_conductance[0, 0, 0]
        xb.pulse(0, 0, v, 1e-4)
        return abs(xb.true_conductance[0, 0, 0] - g0) / g0

    auto, _ = auto_schedule(SimulatedCrossbar(16, 16, preset="ideal", seed=0), with_width(TunerConfig(), 1e-4))
    assert first_step(1.1) > 3 * first_step(auto.v_set_start)


def test_auto_schedule_says_clearly_when_nothing_switches():
    xb = SimulatedCrossbar(8, 8, preset="tio2-3it", seed=0)
    cfg = with_width(TunerConfig(v_set_max=0.5, v_reset_max=0.5, v_set_start=0.3, v_reset_start=0.3,
                                 reset_amplitude=0.5), 1e-6)
    with pytest.raises(ValueError, match="none of the 4 probed cells changed"):
        auto_schedule(xb, cfg, ProbeSettings(cells=4))


def test_procedures_take_the_chips_shortest_pulse_and_the_schedule_options():
    """tune/deploy/form/endurance: width 0 = the chip's shortest (a 2636B station: 100 µs), never
    below their own default; the schedule is auto at any width but the recipe's; form's ramp
    answers to the schedule's option names too."""
    from procedures.cli.registry import build_parser
    from procedures.ops.endurance import EnduranceProcedure
    from procedures.ops.forming import FormingProcedure
    from procedures.ops.tune_array import TuneProcedure
    from programming.crossbar import SafetyLimits

    bench = SafetyLimits(width_min=1e-4, width_max=1e-2)
    tp = TuneProcedure()
    assert tp.pulse_width(bench) == 1e-4 and tp.schedule_mode(bench) == "auto"
    assert tp.pulse_width(SafetyLimits()) == 1e-6 and tp.schedule_mode(SafetyLimits()) == "recipe"
    cfg = tp.config(bench)
    assert (cfg.width, cfg.reset_width) == (1e-4, 1e-4)
    tp.amplitude_start, tp.amplitude_max = 0.9, 1.6
    cfg = tp.config(bench)
    assert (cfg.v_set_start, cfg.v_reset_start, cfg.v_set_max, cfg.v_reset_max) == (0.9, 0.9, 1.6, 1.6)
    assert cfg.reset_amplitude <= 1.6
    tp.schedule = "sometimes"
    with pytest.raises(ValueError, match="--schedule must be one of auto, recipe"):
        tp.config(bench)
    assert FormingProcedure().pulse_width(bench) == 1e-4 and FormingProcedure().pulse_width(SafetyLimits()) == 1e-5
    assert EnduranceProcedure().pulse_width(bench) == 1e-4
    args = build_parser().parse_args(["form", "--amplitude-start", "1.7", "--amplitude-max", "2.5"])
    assert (args.v_start, args.v_stop) == (1.7, 2.5)


def test_compensated_schedule_starts_at_what_reached_the_probed_cells():
    """Through resistive lines (12×12 at 14 Ω: far cells get ~70 % of a drive) with compensated
    writes the schedule's amplitudes are what a cell gets: each probed turn-on drive is taken times
    the line model's share of it, so the start is below the drives' median (uncompensated: the
    drives' median, as on ideal lines)."""
    from programming.ir_correction import line_estimate

    base = SimulatedCrossbar(12, 12, seed=0, r_line=14.0)
    r_est, beta = line_estimate(base)
    cfg = with_width(TunerConfig(line_resistance=r_est, device_beta=beta, write_scheme="v/2"), 1e-4)
    comp, rep = auto_schedule(SimulatedCrossbar(12, 12, seed=0, r_line=14.0), cfg)
    plain, rep0 = auto_schedule(SimulatedCrossbar(12, 12, seed=0, r_line=14.0), replace(cfg, write_compensation=False))
    assert rep["drive_on_set"] == rep0["v_on_set"]                  # the same probe, the same drives
    assert plain.v_set_start == np.nanmedian(rep0["v_on_set"])
    ratio = np.array(rep["v_on_set"]) / np.array(rep["drive_on_set"])
    assert np.nanmax(ratio) <= 1.0 and np.nanmin(ratio) < 0.85     # the far probed cells got much less
    assert comp.v_set_start == np.nanmedian(rep["v_on_set"]) < plain.v_set_start
