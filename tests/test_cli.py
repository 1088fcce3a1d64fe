"""The xbar command line on the simulated chip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from procedures.cli import main

REPORT_KEYS = {"cells", "working", "converged", "failed", "stuck_flagged", "yield", "rel_error_mean",
               "rel_error_max", "pulses_per_cell", "reads_per_cell", "energy_j", "instrument_time_s",
               "wall_s", "true_within_tol"}


def test_tune_writes_report_and_prints_summary(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["tune", "--chip", "sim", "--size", "6x5", "--seed", "3", "--json", str(out), "--quiet"]) == 0
    rep = json.loads(out.read_text())
    assert REPORT_KEYS <= rep.keys()
    assert rep["cells"] == 30 and rep["size"] == [6, 5]
    assert set(rep["pulses_per_cell"]) == {"mean", "median", "p95"}
    assert rep["true_within_tol"] >= 0.9
    text = capsys.readouterr().out
    assert "truly within tolerance" in text and "converged" in text


def test_tune_is_reproducible_and_no_reset_changes_the_run(tmp_path):
    paths = [tmp_path / f"{i}.json" for i in range(3)]
    args = ["tune", "--size", "4x4", "--seed", "9", "--quiet", "--preset", "ideal"]
    main(args + ["--json", str(paths[0])])
    main(args + ["--json", str(paths[1])])
    main(args + ["--no-reset", "--json", str(paths[2])])
    a, b, c = (json.loads(p.read_text()) for p in paths)
    for key in ("converged", "pulses_per_cell", "energy_j"):
        assert a[key] == b[key]
    assert c["initial_reset"] is False and a["initial_reset"] is True
    assert c["energy_j"] != a["energy_j"]


def test_tune_from_targets_file(tmp_path):
    targets = np.full((3, 3), 250e-6)
    targets[1, 1] = np.nan  # left alone
    np.save(tmp_path / "t.npy", targets)
    out = tmp_path / "r.json"
    assert main(["tune", "--size", "3x3", "--targets", str(tmp_path / "t.npy"), "--json", str(out),
                 "--quiet", "--preset", "ideal"]) == 0
    assert json.loads(out.read_text())["cells"] == 8


@pytest.mark.parametrize("args, message", [
    (["--targets", "nope.npy"], "does not exist"),
    (["--targets", "x.txt"], "'random' or a .npy"),
    (["--tolerance", "-1"], "tolerance"),
])
def test_tune_bad_arguments_fail_clearly(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "--quiet", "--size", "4x4", *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_size_is_refused_clearly(capsys):
    assert main(["tune", "--size", "8by8"]) == 2
    assert "ROWSxCOLS" in capsys.readouterr().err


def test_tune_targets_file_errors(tmp_path, capsys):
    np.save(tmp_path / "wrong.npy", np.full((2, 2), 250e-6))
    np.save(tmp_path / "hot.npy", np.full((4, 4), 900e-6))
    assert main(["tune", "--size", "4x4", "--quiet", "--targets", str(tmp_path / "wrong.npy")]) == 2
    assert "has shape (2, 2)" in capsys.readouterr().err
    assert main(["tune", "--size", "4x4", "--quiet", "--targets", str(tmp_path / "hot.npy")]) == 2
    assert "outside the programming window" in capsys.readouterr().err


def test_read_saves_map(tmp_path, capsys):
    out = tmp_path / "map.npy"
    assert main(["read", "--chip", "sim", "--size", "5x7", "--seed", "2", "--map-file", str(out),
                 "--out", str(tmp_path / "run"), "--no-plots"]) == 0
    g = np.load(out)
    assert g.shape == (5, 7)
    assert np.all((g > 5e-6) & (g < 700e-6))
    text = capsys.readouterr().out
    assert "min / median / max" in text and "µS" in text


def test_unknown_preset_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--preset", "nonesuch"])
    assert "nonesuch" in capsys.readouterr().err


def test_the_command_line_starts_without_importing_torch():
    """Building the parser (``xbar --help``, every procedure) must not pay for importing torch;
    the network commands import it when they run."""
    import subprocess
    import sys

    code = ("import sys; from procedures.cli import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_xbar_help_imports_nothing_heavy():
    """``xbar --help`` (and a command's own --help) load no simulator, pymeasure.experiment,
    pandas, pint, scipy.sparse or torch: the commands import them when they run (issue 17:
    start-up <= 0.4 s of CPU)."""
    import subprocess
    import sys

    heavy = ("pandas", "pint", "pymeasure.experiment", "scipy.sparse", "torch", "mock_hw.sim_chip")
    code = ("import sys\nfrom procedures.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, check=True)
    assert "tune" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"
    # a command's help builds only that command's options (tune's come from its pymeasure parameters)
    out = subprocess.run([sys.executable, "-c", code, "evaluate", "--help"], capture_output=True, text=True,
                         check=True)
    assert "--transfers" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"
    out = subprocess.run([sys.executable, "-c", code, "tune", "--help"], capture_output=True, text=True, check=True)
    assert "--max-pulses" in out.stdout and "Write-verify tuning" in out.stdout
