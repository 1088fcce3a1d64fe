"""The README's walkthrough runs: its mock-bench commands, extracted from README.md, run against a
mock bench built from the walkthrough's own ``xbar mock-bench`` line."""
from __future__ import annotations

import shlex
from pathlib import Path

from procedures.cli import build_parser, main
from procedures.cli.bench import start_mock_bench
from procedures.storage.run_data import load_run

README = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough() -> dict[str, list[str]]:
    """The walkthrough's commands by section number ("1", "2", "3"): comments dropped, ``a && b``
    split, a trailing ``&`` (run in the background) dropped."""
    text = README.read_text(encoding="utf-8").split("### Walkthrough", 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    sections: dict[str, list[str]] = {}
    current = None
    for line in block.splitlines():
        stripped = line.strip()
        if stripped.startswith("# ") and stripped[2:3].isdigit():
            current = stripped[2]
            sections[current] = []
            continue
        command = line.split(" #", 1)[0].strip()
        if command and current is not None:
            sections[current] += [c.strip().removesuffix("&").strip() for c in command.split("&&")]
    return sections


def test_the_mock_bench_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    commands = [shlex.split(c) for c in walkthrough()["2"]]
    assert all(argv[0] == "xbar" for argv in commands)
    assert commands[0][1] == "mock-bench" and len(commands) >= 4
    # the station's reply timeout raised from 2 s: a loaded test machine must not fail the walkthrough
    bench, station = start_mock_bench(build_parser().parse_args(commands[0][1:]), timeout_ms=120_000)
    with bench:
        for argv in commands[1:]:
            assert main(argv[1:]) == 0, " ".join(argv) + "\n" + capsys.readouterr().err
        assert bench.violations == []
    runs = [Path(a[a.index("--out") + 1]) for a in commands if "--out" in a]
    for run in runs:
        r = load_run(run)
        assert r.status == "finished" and (run / "report.html").is_file(), run
    form = next(load_run(r) for r in runs if load_run(r).procedure == "form")
    assert form.report["not_formed"] == 0 and form.report["formed"] == form.report["cells"]


def test_the_readme_sample_tune_output_is_what_the_command_prints(tmp_path, capsys):
    """The "What you see" sample is the output of set-up command 1 (wall times and rates vary)."""
    text = README.read_text(encoding="utf-8")
    command = text.split("## Set-up", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].split("&& xbar ", 1)[1].strip()
    sample = text.split("## What you see", 1)[1].split("```\n", 1)[1].split("```", 1)[0].splitlines()
    expected = [line for line in sample if line.startswith("  ") and not line.startswith("  wall time")]
    assert main([*shlex.split(command), "--quiet", "--no-plots", "--out", str(tmp_path / "t")]) == 0
    got = [line for line in capsys.readouterr().out.splitlines()
           if line.startswith("  ") and not line.startswith("  wall time")]
    assert got == expected, "README's sample output is stale: run `xbar " + command + "` and paste its output"
