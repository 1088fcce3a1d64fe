"""The mock bench's emulated chip ages with the bench's clock: before every read, pulse and DC
settle :class:`~mock_hw.bench_physics.PhysicalBench` advances its chip through the chip's own
``wait`` (retention loss), by the clock's elapsed time times ``time_scale``.  A fake clock keeps
these tests deterministic and instant."""
from __future__ import annotations

import numpy as np
import pytest

from mock_hw import mock_bench
from mock_hw.bench_physics import GROUND, PhysicalBench
from mock_hw.sim_chip import SimulatedCrossbar
from procedures.cli import main
from procedures.storage.run_data import load_run

PRESET, SEED = "tio2-3it", 5


class FakeClock:
    """A clock (s) that moves only when the test says so."""

    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def wired_bench(clock, **kw) -> PhysicalBench:
    """A 4x4 bench whose source SRC reaches row 0 and ground column 0 through matrix M."""
    bench = PhysicalBench(SimulatedCrossbar(4, 4, preset=PRESET, seed=SEED), clock=clock, **kw)
    bench.wire_input("M", "A", "SRC")
    bench.wire_input("M", "G", GROUND)
    bench.wire_pin("M", "r0", ("row", 0))
    bench.wire_pin("M", "c0", ("col", 0))
    bench.set_relay("M", "A", "r0", True)
    bench.set_relay("M", "G", "c0", True)
    return bench


def program_and_read(bench) -> float:
    """Pulse cell (0, 0) (a SET well above threshold), then read it at 0.2 V and turn the source off
    (the idle state a bench waits in); returns the reading, A."""
    bench.pulse("SRC", 1.6, 1e-5)
    bench.set_source("SRC", level=0.2, on=True)
    current = bench.measure_current("SRC")
    bench.set_source("SRC", level=0.0, on=False)
    return current


def twin(chip: SimulatedCrossbar) -> SimulatedCrossbar:
    """An identical chip in the same state (conductances, ages, virtual clock, RNG)."""
    other = SimulatedCrossbar(*chip.shape, preset=PRESET, seed=SEED)
    other.load_state_dict(chip.state_dict())
    return other


def test_a_programmed_device_relaxes_exactly_as_the_chip_would_wait():
    clock = FakeClock()
    bench = wired_bench(clock)
    g_before = bench.chip.true_conductance
    i0 = program_and_read(bench)
    assert bench.pulses == 1 and bench.chip.true_conductance[0, 0, 0] > g_before[0, 0, 0], "the SET wrote (0, 0)"
    ref = twin(bench.chip)
    g0 = bench.chip.true_conductance

    clock.advance(1e4)
    bench.set_source("SRC", level=0.2, on=True)   # the first event after the wait ages the chip
    i1 = bench.measure_current("SRC")
    ref.wait(1e4)

    assert bench.chip.clock == pytest.approx(1e4, rel=1e-12)
    np.testing.assert_allclose(bench.chip.true_conductance, ref.true_conductance, rtol=1e-12)
    g1, g_rest = bench.chip.true_conductance, ref.params.device.g_rest
    working = bench.chip.working_mask
    assert np.all(np.abs(g1 - g_rest)[working] < np.abs(g0 - g_rest)[working]), "every working device relaxed"
    loss = 1 - (g1[0, 0, 0] - g_rest) / (g0[0, 0, 0] - g_rest)
    assert 0.005 < loss < 0.2, loss       # ~3.6 % of the distance to g_rest in 1e4 s at ν = 0.004
    assert i1 < i0 * (1 - 0.5 * loss), (i0, i1)   # and the bench's ammeter sees it


def test_no_aging_while_the_clock_stands_still():
    clock = FakeClock()
    bench = wired_bench(clock)
    program_and_read(bench)
    g = bench.chip.true_conductance
    bench.set_source("SRC", level=0.2, on=True)
    for _ in range(20):
        bench.measure_current("SRC")
    bench.set_source("SRC", level=0.0, on=False)
    bench.open_all("M")
    assert bench.age_chip() == 0.0 and bench.chip.clock == 0.0
    np.testing.assert_array_equal(bench.chip.true_conductance, g)


def test_time_scale_multiplies_the_aging_and_zero_freezes_it():
    clock = FakeClock()
    fast = wired_bench(clock, time_scale=100.0)
    frozen = wired_bench(clock, time_scale=0.0)
    for bench in (fast, frozen):
        program_and_read(bench)
    ref, g_frozen = twin(fast.chip), frozen.chip.true_conductance
    clock.advance(100.0)                          # 100 bench seconds ...
    fast.set_source("SRC", level=0.2, on=True)
    frozen.set_source("SRC", level=0.2, on=True)
    ref.wait(1e4)                                 # ... are 1e4 chip seconds at time_scale 100
    assert fast.chip.clock == pytest.approx(1e4, rel=1e-12)
    np.testing.assert_allclose(fast.chip.true_conductance, ref.true_conductance, rtol=1e-12)
    assert frozen.chip.clock == 0.0
    np.testing.assert_array_equal(frozen.chip.true_conductance, g_frozen)


def test_changing_time_scale_counts_from_the_change():
    clock = FakeClock()
    bench = wired_bench(clock)
    clock.advance(10.0)
    bench.time_scale = 3.0          # the 10 s before the change age at the old scale (1)
    clock.advance(10.0)
    assert bench.age_chip() == pytest.approx(10.0 + 30.0, rel=1e-12)


def test_tiny_steps_accumulate_and_a_pulse_applies_them_first():
    clock = FakeClock()
    bench = wired_bench(clock, min_age_step=1e-3)
    ref = twin(bench.chip)
    bench.set_source("SRC", level=0.2, on=True)
    for _ in range(2):
        clock.advance(4e-4)
        bench.measure_current("SRC")
    assert bench.chip.clock == 0.0, "0.8 ms is still pending"
    clock.advance(4e-4)
    bench.measure_current("SRC")
    assert bench.chip.clock == pytest.approx(1.2e-3, rel=1e-9), "1.2 ms reaches min_age_step: applied"
    ref.wait(1.2e-3)
    np.testing.assert_allclose(bench.chip.true_conductance, ref.true_conductance, rtol=1e-12)
    bench.set_source("SRC", level=0.0, on=False)
    clock.advance(1e-4)
    bench.pulse("SRC", 1.6, 1e-5)
    assert bench.chip.clock == pytest.approx(1.3e-3, rel=1e-9), "a pulse ages the chip fully first"


def test_bad_time_scales_are_refused():
    chip = SimulatedCrossbar(2, 2, preset="ideal")
    for bad in (-1.0, float("nan"), float("inf"), "fast"):
        with pytest.raises(ValueError, match="time_scale"):
            PhysicalBench(chip, time_scale=bad)
        with pytest.raises(ValueError, match="time_scale"):
            mock_bench.MockBench(2, 2, preset="ideal", time_scale=bad)
    bench = PhysicalBench(chip)
    with pytest.raises(ValueError, match="time_scale"):
        bench.time_scale = -2.0
    assert bench.time_scale == 1.0


@pytest.mark.parametrize("bad", ["-1", "nan", "inf"])
def test_cli_refuses_a_bad_time_scale_naming_the_option(bad, tmp_path, capsys):
    path = tmp_path / "st.toml"
    assert main(["mock-bench", "--station-out", str(path), "--time-scale", bad, "--duration", "0"]) == 2
    err = capsys.readouterr().err
    assert "--time-scale must be a finite number of chip seconds per wall second >= 0" in err, err
    assert not path.exists(), "refused before any instrument is served"


def test_cli_time_scale_reaches_the_bench_and_is_documented(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exc:
        main(["mock-bench", "--help"])
    assert exc.value.code == 0
    assert "--time-scale" in capsys.readouterr().out
    seen = {}

    class Spy(mock_bench.MockBench):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["time_scale"] = self.bench.time_scale

    monkeypatch.setattr(mock_bench, "MockBench", Spy)
    assert main(["mock-bench", "--station-out", str(tmp_path / "st.toml"), "--size", "2x2", "--preset", "ideal",
                 "--time-scale", "1000", "--duration", "0"]) == 0
    assert seen == {"time_scale": 1000.0}
    assert "aging x1000" in capsys.readouterr().out


def test_retention_through_the_instruments_matches_the_simulated_chip(tmp_path, monkeypatch):
    """``xbar retention --station`` on the mock bench: the bench's ``wait`` (idle state, then
    sleep) advances the fake clock instead of sleeping, so the run is instant and exact."""
    from instruments.hardware_crossbar import HardwareCrossbar

    clock = FakeClock()
    idle = HardwareCrossbar._wait

    def fake_wait(self, seconds):
        idle(self, 0.0)             # outputs off, relays open, as before a real wait
        clock.advance(seconds)

    monkeypatch.setattr(HardwareCrossbar, "_wait", fake_wait)
    args = ["retention", "--size", "4x4", "--interval", "1e4", "--reads", "3", "--quiet", "--no-plots"]
    with mock_bench.MockBench(4, 4, preset=PRESET, seed=SEED, clock=clock) as bench:
        station = bench.write_station(tmp_path / "st.toml", timeout_ms=30000)
        assert main([*args, "--station", str(station), "--out", str(tmp_path / "bench")]) == 0
        assert bench.violations == [] and bench.bench.all_off()
        assert bench.bench.age_chip() == pytest.approx(2e4, rel=1e-12)
        ref = SimulatedCrossbar(4, 4, preset=PRESET, seed=SEED)
        ref.wait(2e4)               # reads below threshold change nothing: only the waits count
        np.testing.assert_allclose(bench.chip.true_conductance, ref.true_conductance, rtol=1e-12)
    assert main([*args, "--chip", "sim", "--preset", PRESET, "--seed", str(SEED), "--out", str(tmp_path / "sim")]) == 0
    on_bench, on_sim = load_run(tmp_path / "bench"), load_run(tmp_path / "sim")
    rel_bench = on_bench.report["mean_relative_change"]
    rel_sim = on_sim.report["mean_relative_change"]
    assert rel_sim < -0.02, "the simulated chip loses a few % in 2e4 s"
    assert rel_bench == pytest.approx(rel_sim, abs=2e-3), (rel_bench, rel_sim)
    np.testing.assert_allclose(on_bench.series["maps"], on_sim.series["maps"], rtol=5e-3)


def _tune_on_bench(tmp_path, variant: str, width: float, slow: dict[str, tuple[float, float]], scheme: str = "v/2"):
    """Tune a 2x2 bench (aging on: time_scale 1) at ``width`` pulses with the instruments in ``slow``
    (emulator name -> (s before handling each message, s before each reply)) slow, as on a loaded
    host; returns the readings, the chip's true conductances, its age and the write records."""
    from instruments.hardware_crossbar import HardwareCrossbar
    from instruments.station import load_station
    from programming.auto_schedule import with_width
    from programming.tuner import TunerConfig, tune

    with mock_bench.MockBench(2, 2, preset=PRESET, seed=SEED) as bench:
        for name, (delay, latency) in slow.items():
            bench.emulators[name].faults.delay_s = delay
            bench.emulators[name].faults.latency_s = latency
        path = bench.write_station(tmp_path / "st.toml", variant=variant, timeout_ms=10000, write_scheme=scheme)
        targets = np.random.default_rng(2).uniform(150e-6, 450e-6, (2, 2))
        cfg = with_width(TunerConfig(v_set_start=0.8, v_reset_start=0.8, v_set_max=1.6, v_reset_max=1.9,
                                     reset_amplitude=1.5, passes=1, write_scheme=scheme), width)
        with HardwareCrossbar(load_station(path)) as xb:
            res = tune(xb, targets, cfg)
        return res.final, bench.chip.true_conductance, bench.bench.age_chip(), bench.bench.writes


def test_bench_results_are_bit_identical_whatever_the_hosts_timing(tmp_path):
    """The same seeded tune on the same bench, once with every instrument prompt and once with some
    slow to act on their messages or to reply: bit-identical readings, true conductances, chip age
    and write records.  Instruments process their messages on their own, so this holds only if
    the host confirms each instrument's change before another instrument acts (the drive's return
    to 0 V after a read, before the next write's held levels) and the bench's clock is instrument
    time alone (its chip ages by it here)."""
    prompt = _tune_on_bench(tmp_path / "prompt", "b2900-board", 5e-5, {})   # the B2902A drives, the 2450 senses
    for k, slow in enumerate(({"B2900": (5e-4, 0.0)}, {"K2450": (5e-4, 5e-4), "BOARD": (0.0, 1e-3)})):
        late = _tune_on_bench(tmp_path / f"late{k}", "b2900-board", 5e-5, slow)
        for a, b in zip(prompt[:3], late[:3]):
            np.testing.assert_array_equal(a, b)
        assert prompt[3] == late[3], "the same writes with the same voltages"
    age = prompt[2]
    assert 0.05 < age < 30, f"the run's instrument time ages the chip ({age} s)"


def test_v3_levels_reach_the_array_in_one_order_whatever_the_hosts_timing(tmp_path, monkeypatch):
    """V/3 from the 2636B station holds the selected column at -V/3 on the 2636B and the
    unselected columns at +V/3 on the B2902A: the host sets and confirms one instrument's levels
    before the other's, so the array sees every level change in one order however slow either
    instrument is, and the same tune gives bit-identical results.  Set together and confirmed
    after, the order (and the level held alone between them, 50 µs of DC stress) followed the
    threads' timing: the mock bench's 2636B V/3 row gave 222-241 round trips per cell on one seed."""
    from mock_hw import bench_physics

    events, real = [], bench_physics.PhysicalBench.set_source

    def logged(self, name, level=None, on=None, compliance=None):
        real(self, name, level, on, compliance)
        if level:
            events.append((name, level))

    monkeypatch.setattr(bench_physics.PhysicalBench, "set_source", logged)
    prompt = _tune_on_bench(tmp_path / "prompt", "k2600-707b-smu", 1e-4, {}, scheme="v/3")
    order = list(events)
    assert {n for n, _ in order} >= {"K2600.b", "B2900.2"}, "both instruments hold V/3 levels"
    for k, slow in enumerate(({"B2900": (5e-4, 0.0)}, {"K2600": (5e-4, 0.0)})):
        events.clear()
        late = _tune_on_bench(tmp_path / f"late{k}", "k2600-707b-smu", 1e-4, slow, scheme="v/3")
        assert events == order, slow
        for a, b in zip(prompt[:3], late[:3]):
            np.testing.assert_array_equal(a, b)
        assert prompt[3] == late[3], "the same writes with the same voltages"


def test_emulated_clock_counts_instrument_durations_and_explicit_waits_only(monkeypatch):
    """Each event advances the emulated clock by its instrument duration and an explicit
    :meth:`~mock_hw.bench_physics.PhysicalBench.wait` by its length; the host's clock is never
    read (here it jumps 1000 s at every look), so host pauses count nothing."""
    import time

    from mock_hw import bench_physics
    from mock_hw.bench_physics import BenchTiming, EmulatedClock

    host = FakeClock(0.0)

    def jumping():
        host.advance(1000.0)
        return host.t

    monkeypatch.setattr(bench_physics, "time", type("Host", (), {"monotonic": staticmethod(jumping),
                                                                 "sleep": staticmethod(time.sleep)}))
    times = BenchTiming(measure_s=2e-3, relay_s=3e-3, pulse_overhead_s=1e-4, settle_s=5e-5)
    clock = EmulatedClock()
    bench = PhysicalBench(SimulatedCrossbar(2, 2, preset=PRESET, seed=SEED), clock=clock, times=times)
    bench.wire_input("M", "A", "SRC")
    bench.wire_pin("M", "r0", ("row", 0))
    bench.wire_pin("M", "r1", ("row", 1))
    bench.set_relay("M", "A", "r0", True)                  # 3 ms: the relays of one command
    bench.set_relay("M", "A", "r1", True)                  # operate together
    bench.set_relay("M", "A", "r1", False)
    bench.set_source("SRC", level=0.2, on=True)            # 50 µs
    bench.measure_current("SRC")                           # 2 ms
    bench.pulse("SRC", 1.2, 1e-4)                          # 100 µs + 100 µs
    assert clock() == pytest.approx(3e-3 + 5e-5 + 2e-3 + 2e-4, rel=1e-12)
    bench.set_source("SRC", level=0.0, on=False)           # 50 µs
    bench.set_relay("M", "A", "r0", False)                 # 3 ms; now idle
    t_idle = clock()
    bench.set_source("SRC", level=0.2)                     # however long the host paused: 50 µs
    assert clock() == pytest.approx(t_idle + 5e-5, rel=1e-12)
    bench.wait(10.0)                                       # an explicit wait
    bench.set_relay("M", "A", "r0", True)                  # 3 ms
    assert clock() == pytest.approx(t_idle + 5e-5 + 10.0 + 3e-3, rel=1e-12)
    assert bench.age_chip() == pytest.approx(clock(), rel=1e-12), "the chip aged with it"
    assert host.t == 0.0, "the host's clock was never read"


def test_cli_clock_option_reaches_the_bench(tmp_path, capsys, monkeypatch):
    """``xbar mock-bench --clock wall`` keeps the host's wall clock; the default is emulated."""
    import time

    from mock_hw.bench_physics import EmulatedClock
    seen = []

    class Spy(mock_bench.MockBench):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.bench.clock)

    monkeypatch.setattr(mock_bench, "MockBench", Spy)
    base = ["mock-bench", "--station-out", str(tmp_path / "st.toml"), "--size", "2x2", "--preset", "ideal",
            "--duration", "0"]
    assert main(base) == 0 and main([*base, "--clock", "wall"]) == 0
    assert isinstance(seen[0], EmulatedClock) and seen[1] is time.monotonic
    assert "wall clock" in capsys.readouterr().out


def test_the_host_reads_the_benchs_clock_from_the_2600bs_timer(tmp_path):
    """``HardwareCrossbar.bench_time`` is the drive 2600B's ``timer.measure.t()``: on the mock
    bench the emulated instrument time its chip ages by (a read moves it by the read's instrument
    durations, whatever the host did meanwhile), one round trip.  A station whose drive has no
    timer the driver reads (the B2902A of ``b2900-board``) gives None: the tuner then learns no
    relaxation rates (``programming.tuner._Run.learn_retention``)."""
    from instruments.hardware_crossbar import HardwareCrossbar
    from instruments.station import load_station

    with mock_bench.MockBench(2, 2, preset=PRESET, seed=SEED) as bench:
        clock = bench.bench.clock
        with HardwareCrossbar(load_station(bench.write_station(tmp_path / "k.toml", variant="k2600-707b-smu"))) as xb:
            trips, t0 = xb.round_trips, xb.bench_time()
            assert xb.round_trips == trips + 1 and t0 == pytest.approx(clock(), abs=1e-5)
            xb.read(np.array([0]), np.array([1]))
            t1 = xb.bench_time()
            assert t1 == pytest.approx(clock(), abs=1e-5) and t1 > t0 + 1e-3, "the read's relays and measurement"
    with mock_bench.MockBench(2, 2, preset=PRESET, seed=SEED) as bench:
        with HardwareCrossbar(load_station(bench.write_station(tmp_path / "b.toml", variant="b2900-board"))) as xb:
            assert xb.bench_time() is None
