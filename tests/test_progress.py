"""Progress and summaries: each bar's total is known when it starts and never grows, a one-shot
step shows no meaningless rate, summaries give the wall time of the whole command, and station
runs are labelled by station and chip ID."""
from __future__ import annotations

import numpy as np

from procedures.cli import main
from procedures.ops.chips import open_chip
from procedures.storage.run_data import load_run
from procedures.storage.runner import _Bar
from programming.tuner import TunerConfig, tune


def test_tune_progress_totals_are_known_up_front_per_pass():
    calls = []
    with open_chip("sim", (6, 6), "tio2-3it", 3) as xb:
        targets = np.random.default_rng(3).uniform(120e-6, 480e-6, (6, 6))
        # each RESET just before its cell: the later cells' RESETs drift the earlier ones, so these
        # targets need a re-verify pass (with the default sweep first, one pass holds on this chip)
        result = tune(xb, targets, TunerConfig(passes=3, seed=3, reset_sweep=False),
                      progress=lambda d, t, s: calls.append((d, t, s)))
    stages = list(dict.fromkeys(s for _, _, s in calls))
    assert stages[0] == "pass 1" and all(s.endswith("(re-verify)") for s in stages[1:])
    assert len(stages) == result.passes_run >= 2               # these targets need a re-verify pass
    for stage in stages:
        seen = [(d, t) for d, t, s in calls if s == stage]
        assert seen[0][0] == 0 and len({t for _, t in seen}) == 1       # announced with its total; never grown
        assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == seen[-1][1]
    assert calls[0][1] == 36


def test_a_one_shot_bar_shows_elapsed_time_not_a_rate(capsys):
    bar = _Bar(True, "read")
    bar.update(64, 64, "cell")
    bar.close()
    err = capsys.readouterr().err.split("\r")[-1]
    assert "64/64 cell" in err and "cell/s" not in err
    bar = _Bar(True, "tune")                                    # measured over several updates: a rate
    for done in range(1, 5):
        bar.update(done, 4, "cell", "pass 1")
    bar.close()
    assert "tune pass 1" in capsys.readouterr().err


def test_summary_gives_the_whole_commands_wall_time(tmp_path, capsys):
    assert main(["read", "--size", "4x4", "--quiet", "--no-plots", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "wall time, command" in out and "(start-up, run, run folder and plots)" in out


def test_station_runs_are_labelled_by_station_and_chip_id(bench, station, tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", "--station", str(station), "--size", "2x2", "--quiet", "--no-plots", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"chip {bench.chip_id}, " in text and "mock bench" in text and "tio2-3it (" not in text
    assert load_run(out).meta["chip_id"].startswith(bench.chip_id)
