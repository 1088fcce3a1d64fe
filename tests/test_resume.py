"""Interrupted tune/deploy runs resume without losing data or re-pulsing finished cells."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from procedures.cli import main
from procedures.storage.journal import repair_tails
from procedures.storage.run_data import load_run


def _rows(path, stage="tune"):
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.startswith(stage + ","))


def _trace_len(run_dir, stage="tune"):
    from procedures.storage.journal import TRACE_DTYPE
    path = run_dir / "journal" / f"trace-{stage}.bin"
    return path.stat().st_size // TRACE_DTYPE.itemsize if path.is_file() else 0


def _check_resumed(run_dir, stage, cells, killed_rows, trace_start):
    r = load_run(run_dir)
    assert r.status == "finished" and r.meta["resumes"] == 1
    d = r.data[r.data["Stage"] == stage]
    # every (pass, cell) is reported once; pass 0 covers every cell exactly once
    assert not d[["Pass", "Chip", "Row", "Col"]].duplicated().any()
    p0 = d[d["Pass"] == 0]
    assert len(p0) == cells
    # cells finished before the kill were not pulsed again in pass 0 (only re-verify passes may)
    done = {tuple(x) for x in killed_rows[["Row", "Col"]].to_numpy()}
    assert done <= {tuple(x) for x in p0[["Row", "Col"]].to_numpy()}
    tr = {k: v[r.trace["stage"] == 0][trace_start:] for k, v in r.trace.items()}
    after = {(int(a), int(b)) for a, b, k, p in zip(tr["row"], tr["col"], tr["kind"], tr["pass"]) if k == 1 and p == 0}
    assert after and not after & done
    return r


def test_tune_killed_with_sigkill_resumes(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "procedures.cli", "tune", "--size", "10x10", "--seed", "4", "--parallel", "1",
           "--out", str(run_dir), "--quiet", "--no-plots"]
    # the run SIGKILLs itself right after its 20th data.csv record (the runner's test hook):
    # a deterministic crash point, whatever the machine's speed
    env = {**os.environ, "XBAR_KILL_AFTER_RECORDS": "20"}
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert load_run(run_dir).status == "running"          # killed: nobody wrote an end
    repair_tails(run_dir)
    killed = load_run(run_dir).data
    killed = killed[killed["Pass"] == 0]
    assert len(killed) == 20
    # the simulated chip's state was saved with the records it already holds
    assert (run_dir / "chip_state.npz").is_file()

    start = _trace_len(run_dir)
    assert main(["tune", "--resume", str(run_dir), "--quiet", "--no-plots"]) == 0
    r = _check_resumed(run_dir, "tune", 100, killed, start)
    # the records of both runs add up in the maps; the final report covers all cells
    assert r.maps["pulses"].sum() == r.data["Pulses"].sum()
    assert r.report["cells"] == 100 and (r.maps["status"] != 0).all()
    assert r.report["yield"] > 0.9


def test_resume_refuses_finished_or_foreign_runs(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["tune", "--size", "3x3", "--out", str(out), "--quiet", "--no-plots"]) == 0
    assert main(["tune", "--resume", str(out), "--quiet"]) == 2
    assert "already finished" in capsys.readouterr().err
    rd = tmp_path / "r"
    assert main(["read", "--size", "2x2", "--out", str(rd), "--quiet", "--no-plots"]) == 0
    assert main(["tune", "--resume", str(rd), "--quiet"]) == 2
    assert "is a 'read'" in capsys.readouterr().err
    assert main(["tune", "--resume", str(tmp_path / "none"), "--quiet"]) == 2


def test_stop_request_interrupts_then_resume_completes(tmp_path, stop_after, capsys):
    """Ctrl-C (a stop request between steps) ends the run as interrupted with a resume hint;
    --resume finishes it."""
    stop_after(150)
    out = tmp_path / "t"
    assert main(["tune", "--size", "8x8", "--parallel", "1", "--out", str(out), "--quiet", "--no-plots"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and f"--resume {out}" in err
    r = load_run(out)
    assert r.status == "interrupted" and 0 < len(r.data) < 64
    assert r.report["status"] == "interrupted" and r.report["cells_finished"] == len(r.data)
    stop_after(None)
    start = _trace_len(out)
    assert main(["tune", "--resume", str(out), "--quiet", "--no-plots"]) == 0
    _check_resumed(out, "tune", 64, r.data, start)


def test_deploy_interrupted_and_resumed(tmp_path, stop_after, model_file_small):
    stop_after(40)
    out = tmp_path / "d"
    assert main(["deploy", str(model_file_small), "--out", str(out), "--quiet", "--no-plots"]) == 130
    r = load_run(out)
    assert r.status == "interrupted" and (out / "model.pt").is_file()
    killed = r.data
    stop_after(None)
    start = _trace_len(out, "main")
    assert main(["deploy", "--resume", str(out), "--quiet", "--no-plots"]) == 0
    r = _check_resumed(out, "main", int(np.isfinite(r.maps["targets"]).sum()), killed, start)
    assert r.report["accuracy"]["chip_mvm"] > 0.8


@pytest.fixture
def model_file_small(tmp_path):
    from models.train import TrainConfig, train
    from models.model_io import save_model

    cfg = TrainConfig.for_dataset("moons", aware=False, epochs=200, seed=0)
    res = train(cfg)
    path = tmp_path / "m.pt"
    save_model(path, res.model, cfg.to_dict(), {"test_accuracy": res.test_accuracy})
    return path


def _pass0_pulsed_after(run_dir, start, stage="tune"):
    from procedures.storage.journal import read_trace

    tr = {k: v[start:] for k, v in read_trace(run_dir, [stage]).items()}
    return {(int(a), int(b)) for a, b, k, p in zip(tr["row"], tr["col"], tr["kind"], tr["pass"]) if k == 1 and p == 0}


def _finished_pass0(run_dir, stage="tune"):
    from procedures.storage.run_data import read_data_csv

    d = read_data_csv(run_dir / "data.csv")
    d = d[(d["Stage"] == stage) & (d["Pass"] == 0)]
    return {tuple(x) for x in d[["Row", "Col"]].to_numpy()}


@pytest.mark.parametrize("kill_at", [1, 37])
def test_sigkill_at_a_record_and_again_during_the_resume(tmp_path, kill_at):
    """SIGKILL right after record ``kill_at`` (deterministic: the runner's hook), then again after
    the 5th record of the resume itself; the last resume reports every cell once and no cell
    finished before a kill is pulsed again in its pass."""
    run_dir = tmp_path / "run"
    base = [sys.executable, "-m", "procedures.cli", "tune", "--quiet", "--no-plots"]

    def killed_run(args, n):
        env = {**os.environ, "XBAR_KILL_AFTER_RECORDS": str(n)}
        p = subprocess.run(base + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, env=env)
        assert p.returncode == -signal.SIGKILL, p.stderr.decode()

    killed_run(["--size", "8x8", "--seed", "5", "--out", str(run_dir)], kill_at)
    done1, start1 = _finished_pass0(run_dir), _trace_len(run_dir)
    assert len(done1) == kill_at
    killed_run(["--resume", str(run_dir)], 5)
    done2, start2 = _finished_pass0(run_dir), _trace_len(run_dir)
    assert done1 < done2 and not _pass0_pulsed_after(run_dir, start1) & done1
    assert main(["tune", "--resume", str(run_dir), "--quiet", "--no-plots"]) == 0
    r = load_run(run_dir)
    d = r.data[r.data["Stage"] == "tune"]
    assert r.status == "finished" and r.meta["resumes"] == 2
    assert not d[["Pass", "Chip", "Row", "Col"]].duplicated().any() and len(d[d["Pass"] == 0]) == 64
    assert not _pass0_pulsed_after(run_dir, start2) & done2
