"""Fault-injection campaign (issue 12): bad input, broken files, bench faults, storage faults and
SIGKILL at many moments, against the real command line and the mock bench.

Prints, per group and in total: faults injected, survived with nothing lost, unsafe end states,
unclear messages, tracebacks.  Targets: at least 150 injected, 0 unsafe, 0 tracebacks, 0 lost.

* **survived with nothing lost**: a refusal left no run folder (or left the run's records as they
  were); a failed or killed run, once resumed, reports every cell once and pulsed no cell again in
  the pass that had finished it (its journal's trace);
* **unsafe**: the mock bench's safety record shows a violation (hot switch, short, limit), or an
  output on / a relay closed after the run ended while the message claimed the bench safe;
* **unclear**: the error is not one line naming what is wrong (file, key, option, instrument),
  or advises an unsafe option (allow_pickle, weights_only=False), or claims a safe state the
  instruments did not confirm;
* **traceback**: a Python traceback reached the operator (or an exception escaped ``main``).

Kill points are deterministic (``XBAR_KILL_AFTER_RECORDS``: the run SIGKILLs itself after its Nth
journal record), not timed.

Usage: nice python benchmarks/faults.py [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from procedures.cli import main  # noqa: E402

UNSAFE_ADVICE = ("allow_pickle", "weights_only")


class Tally:
    def __init__(self):
        self.groups: dict[str, dict[str, int]] = {}
        self.notes: list[str] = []

    def add(self, group, name, survived=True, unsafe=False, unclear=False, traceback=False, why=""):
        g = self.groups.setdefault(group, dict(injected=0, survived=0, unsafe=0, unclear=0, tracebacks=0))
        g["injected"] += 1
        g["survived"] += bool(survived and not traceback)
        g["unsafe"] += bool(unsafe)
        g["unclear"] += bool(unclear)
        g["tracebacks"] += bool(traceback)
        if not survived or unsafe or unclear or traceback:
            self.notes.append(f"{group}/{name}: lost={not survived} unsafe={unsafe} unclear={unclear} "
                              f"traceback={traceback} {why}"[:300])

    def print(self):
        cols = ("injected", "survived", "unsafe", "unclear", "tracebacks")
        print(f"{'group':<22}" + "".join(f"{c:>11}" for c in cols))
        total = dict.fromkeys(cols, 0)
        for name, g in self.groups.items():
            print(f"{name:<22}" + "".join(f"{g[c]:>11}" for c in cols))
            for c in cols:
                total[c] += g[c]
        print(f"{'total':<22}" + "".join(f"{total[c]:>11}" for c in cols))
        for n in self.notes[:40]:
            print("  " + n)
        lost = total["injected"] - total["survived"]
        ok = total["injected"] >= 150 and not (total["unsafe"] or total["tracebacks"] or lost)
        print(f"faults injected {total['injected']} (target >= 150), survived with nothing lost "
              f"{total['survived']}, lost {lost} (target 0), unsafe end states {total['unsafe']} (target 0), "
              f"unclear messages {total['unclear']}, tracebacks {total['tracebacks']} (target 0): "
              f"{'targets met' if ok else 'TARGETS MISSED'}")


def run_cli(args) -> tuple[int, str, str, bool]:
    """``xbar ARGS`` in this process: (exit code, stdout, stderr, traceback?)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:         # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:      # noqa: BLE001 - an escaped exception is what we count
            return -1, out.getvalue(), err.getvalue() + f"Traceback: {type(exc).__name__}: {exc}", True
    return rc, out.getvalue(), err.getvalue(), "Traceback" in err.getvalue()


def run_sub(args, cwd, kill_after=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("XBAR_KILL_AFTER_RECORDS", None)
    if kill_after is not None:
        env["XBAR_KILL_AFTER_RECORDS"] = str(kill_after)
    return subprocess.run([sys.executable, "-m", "procedures.cli", *map(str, args)], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=900)


def one_line_error(err: str, *must) -> bool:
    """The operator's error: the last line of stderr, naming what is wrong; no unsafe advice."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if not lines or any(a in err for a in UNSAFE_ADVICE):
        return False
    last = lines[-1]
    return ": error: " in last and all(m in last for m in must)


# ----------------------------------------------------------------------------------- bad input
def bad_input(t: Tally, tmp: Path):
    d = tmp / "inputs"
    d.mkdir()
    files = {}
    for name, arr in (("shape", np.full((3, 4), 3e-4)), ("inf", np.full((4, 4), np.inf)),
                      ("nan-all", np.full((4, 4), np.nan)), ("microsiemens", np.full((4, 4), 300.0)),
                      ("negative", np.full((4, 4), -3e-4)), ("window", np.full((4, 4), 9e-3)),
                      ("int", np.full((4, 4), 3)), ("strings", np.array(["a"] * 16).reshape(4, 4))):
        np.save(d / f"{name}.npy", arr)
        files[name] = d / f"{name}.npy"
    np.save(d / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    files["objects"] = d / "objects.npy"
    (d / "text.npy").write_text("300e-6 300e-6\n")
    files["text"] = d / "text.npy"
    (d / "t.csv").write_text("1,2\n")
    files["csv"] = d / "t.csv"
    hdr = "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }"
    hdr += " " * (63 - (len(hdr) + 10) % 64) + "\n"
    (d / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    files["huge"] = d / "huge.npy"
    files["missing"] = d / "missing.npy"
    raw = np.save(d / "ok.npy", np.full((4, 4), 3e-4)) or (d / "ok.npy").read_bytes()
    (d / "truncated.npy").write_bytes(raw[:-20])
    files["truncated"] = d / "truncated.npy"
    cases = [(f"targets-{k}", ["--targets", v], str(v)) for k, v in files.items()]
    cases += [
        ("size-huge", ["--size", "100000x100000"], "--size"), ("size-zero", ["--size", "0x4"], "size"),
        ("size-text", ["--size", "big"], "size"), ("chips-huge", ["--chips", "100000", "--size", "64x64"], "--size"),
        ("tolerance-neg", ["--tolerance", "-0.1"], "--tolerance"), ("tolerance-big", ["--tolerance", "5"], "--tolerance"),
        ("r-nan", ["--line-resistance", "nan"], "--line-resistance"),
        ("r-inf", ["--line-resistance", "inf"], "--line-resistance"),
        ("r-neg", ["--line-resistance", "-1"], "--line-resistance"), ("passes-0", ["--passes", "0"], "--passes"),
        ("max-pulses-0", ["--max-pulses", "0"], "--max-pulses"), ("seed-neg", ["--seed", "-1"], "--seed"),
        ("chip-from-missing", ["--chip-from", str(d / "nope")], "--chip-from"),
        ("resume-missing", ["--resume", str(d / "nope")], "--resume"),
        ("scheme-bogus", ["--scheme", "v/5"], "--scheme"), ("order-bogus", ["--order", "spiral"], "--order"),
    ]
    for k, (name, extra, token) in enumerate(cases):
        out = tmp / f"bad{k}"
        rc, _, err, tb = run_cli(["tune", "--size", "4x4", "--out", out, "--quiet", "--no-plots", *extra]
                                 if "--size" not in extra and "--resume" not in extra else
                                 ["tune", "--out", out, "--quiet", "--no-plots", *extra])
        t.add("bad input", name, survived=rc == 2 and not out.exists(), traceback=tb,
              unclear=not one_line_error(err, token) or "--resume " + str(out) in err, why=err[-200:])


def station_files(t: Tally, tmp: Path, n: int):
    """Seeded random mutations of a valid station file; each run as ``xbar read --station``.  Its
    resources point at closed ports: an accepted file must fail to connect, naming the resource."""
    from tests.test_fuzz_inputs import GOOD

    rng = random.Random(12)
    lines = GOOD.replace("5025", "9").replace("5026", "9").replace('"GPIB0::18::INSTR"',
                                                                      '"TCPIP::127.0.0.1::9::SOCKET"').splitlines()
    value_lines = [i for i, line in enumerate(lines) if " = " in line]
    values = ["0", "-1", "1e308", "250", "nan", "inf", '""', '"x"', "true", "[]", "{}", '"/etc/passwd"', '"smu.a"',
              '"smu.b"', '"bias.1"', '"v/3"', '"float"', '"999"', "1e-15", '"socket://127.0.0.1:9"', "3.0"]
    for k in range(n):
        text = list(lines)
        for _ in range(rng.randint(1, 3)):
            i = rng.choice(value_lines)
            key = text[i].split(" = ", 1)[0]
            text[i] = rng.choice([f"{key} = {rng.choice(values)}", "", "]]garbage[[" * rng.randint(0, 1)])
        path = tmp / f"station{k}.toml"
        path.write_text("\n".join(text) + "\n")
        out = tmp / f"st{k}"
        rc, _, err, tb = run_cli(["read", "--station", path, "--out", out, "--quiet", "--no-plots"])
        last = err.strip().splitlines()[-1] if err.strip() else ""
        named = str(path) in last or "127.0.0.1" in last
        t.add("station files", f"mutation{k}", survived=rc == 2, traceback=tb,
              unclear=not (one_line_error(err) and named), why=last)


def model_files(t: Tally, tmp: Path, model: Path):
    import torch

    data = model.read_bytes()
    variants = {"empty": b"", "text": b"hello\n" * 20, "half": data[: len(data) // 2], "head": data[:64],
                "tail": data[-64:], "random": np.random.default_rng(1).bytes(2000)}
    for k in (100, 700, 1500):
        b = bytearray(data)
        b[k % len(b)] ^= 0xFF
        variants[f"flip{k}"] = bytes(b)
    for name, raw in variants.items():
        (tmp / f"{name}.pt").write_bytes(raw)
    torch.save({"format": "xbarlab-model", "obj": np.dtype}, tmp / "pickled.pt")
    torch.save({"format": "other"}, tmp / "foreign.pt")
    torch.save([1, 2, 3], tmp / "list.pt")
    np.save(tmp / "array.npy", np.ones(3))
    names = [*variants, "pickled", "foreign", "list"]
    paths = [tmp / f"{n}.pt" for n in names] + [tmp / "array.npy", tmp / "missing.pt"]
    for path in paths:
        out = tmp / f"dep-{path.stem}"
        rc, _, err, tb = run_cli(["deploy", path, "--out", out, "--quiet", "--no-plots"])
        ok = rc == 0 or (rc == 2 and not out.exists())
        t.add("model files", path.name, survived=ok, traceback=tb,
              unclear=rc != 0 and not one_line_error(err, str(path)), why=err[-200:])


# ---------------------------------------------------------------------------------- the bench
def bench_state(bench) -> tuple[bool, dict]:
    rec = bench.bench.safety_record()
    off = not rec["outputs_on"] and not rec["relays_closed"]
    return off, rec


def bench_faults(t: Tally, tmp: Path, quick: bool):
    import procedures.storage.runner as runner
    from instruments.hardware_crossbar import HardwareCrossbar
    from instruments.station import load_station
    from mock_hw.mock_bench import MockBench
    from procedures.storage.run_data import load_run

    # a second Ctrl-C at each step of the safe-state sequence
    steps = [("disable", "ch"), ("output_enabled", "ch"), ("open_all", "matrix"), ("closed", "matrix")]
    for variant in ("k2600-707b", "b2900-board"):
        for step, owner in steps:
            with MockBench(4, 4, seed=1) as bench:
                st = load_station(bench.write_station(tmp / "s.toml", variant=variant, timeout_ms=30000))
                xb = HardwareCrossbar(st)
                xb.read(1, 2)
                obj = xb.ch["drive"] if owner == "ch" else xb.matrix
                cls = type(obj)
                real = getattr(cls, step)

                def interrupted(self, *a, _real=real, **kw):
                    signal.raise_signal(signal.SIGINT)
                    return _real(self, *a, **kw)

                setattr(cls, step, interrupted)
                got_ki = False
                try:
                    xb.close()
                except KeyboardInterrupt:
                    got_ki = True
                finally:
                    setattr(cls, step, real)
                off, rec = bench_state(bench)
                t.add("bench: 2nd Ctrl-C", f"{variant}/{step}", survived=got_ki,
                      unsafe=not off or bool(rec["violations"]), unclear=not xb.safe_report.ok, why=str(rec)[:200])

    # the instruments disappear after N records / stop answering once after N records
    for kind, n in [("gone", 1), ("gone", 4), ("gone", 9), ("timeout", 2), ("timeout", 7)]:
        with MockBench(4, 4, seed=2) as bench:
            station = bench.write_station(tmp / f"{kind}{n}.toml", timeout_ms=2000 if kind == "timeout" else 30000)
            out = tmp / f"bench-{kind}{n}"
            fired = []

            def hook(k, n=n, kind=kind, bench=bench, fired=fired):
                if k == n and not fired:
                    fired.append(k)
                    if kind == "gone":
                        for s in bench.servers.values():
                            s.close()
                    else:
                        bench.emulators["K2600"].faults.no_reply_next = 1

            runner.after_record, saved = hook, runner.after_record
            try:
                rc, _, err, tb = run_cli(["tune", "--station", station, "--size", "4x4", "--parallel", "1",
                                          "--out", out, "--quiet", "--no-plots"])
            finally:
                runner.after_record = saved
            off, rec = bench_state(bench)
            claimed = "could not confirm" not in err and "confirmed" in err
            if kind == "gone":
                clear = one_line_error(err, "connection lost") and "could not confirm" in err
                t.add("bench: instruments lost", f"after{n}", survived=rc == 2 and load_run(out).status == "failed",
                      traceback=tb, unsafe=bool(rec["violations"]) or (not off and claimed), unclear=not clear,
                      why=err[-250:])
                continue
            rc2, _, err2, tb2 = run_cli(["tune", "--resume", out, "--quiet", "--no-plots"])
            r = load_run(out)
            p0 = r.data[r.data["Pass"] == 0]
            ok = rc == 2 and rc2 == 0 and len(p0) == 16 and not p0[["Row", "Col"]].duplicated().any()
            off, rec = bench_state(bench)
            t.add("bench: no reply", f"after{n}", survived=ok, traceback=tb or tb2,
                  unsafe=not off or bool(rec["violations"]), unclear=not one_line_error(err, "no reply"),
                  why=(err + err2)[-250:])

    # station problems found before anything is sourced
    with MockBench(4, 4, seed=3) as bench:
        good = bench.station_toml(timeout_ms=30000)
        cases = {
            "identity": (good.replace('identity = "2636B"', 'identity = "2450"'), ["read"], "identity"),
            "v_max-250": (good.replace("v_max = 2.5", "v_max = 250"), ["read"], "v_max"),
            "no-v_max": (good.replace("v_max = 2.5\n", ""), ["read"], "v_max"),
            "sense=drive": (good.replace('sense = "smu.b"', 'sense = "smu.a"'), ["read"], "sense"),
            "file-resource": (good.replace(bench.resource("K2600"), "/home/me/x.toml"), ["read"], "resource"),
            "v3-one-bias": (bench.station_toml(variant="b2900-board", timeout_ms=30000),
                            ["tune", "--scheme", "v/3"], "--scheme"),
            "size-too-big": (good, ["tune", "--size", "16x16"], "--size"),
        }
        for name, (text, cmd, token) in cases.items():
            path = tmp / f"bad-{name}.toml"
            path.write_text(text)
            out = tmp / f"badst-{name}"
            before = bench.bench.pulses
            rc, _, err, tb = run_cli([*cmd, "--station", path, "--out", out, "--quiet", "--no-plots"])
            off, rec = bench_state(bench)
            t.add("bench: bad station", name, survived=rc == 2, traceback=tb,
                  unsafe=not off or bool(rec["violations"]) or bench.bench.pulses != before,
                  unclear=not one_line_error(err, token) or "continue with" in err, why=err[-200:])
        for s in list(bench.servers.values())[:1]:
            s.close()                                    # one instrument refuses connections
        out = tmp / "refused"
        rc, _, err, tb = run_cli(["read", "--station", tmp / "bad-size-too-big.toml", "--out", out, "--quiet",
                                  "--no-plots"])
        t.add("bench: bad station", "refused", survived=rc == 2, traceback=tb,
              unclear=not (one_line_error(err) and ("cannot connect" in err or "connection lost" in err)),
              why=err[-200:])

    # SIGKILL of `xbar tune --station` (8x8 bench) at 10 moments, each resumed
    points = [1, 3, 7, 12, 18, 25, 33, 41, 50, 60][: 4 if quick else 10]
    for n in points:
        with MockBench(8, 8, seed=4, time_scale=0) as bench:
            station = bench.write_station(tmp / f"k{n}.toml", timeout_ms=30000)
            out = tmp / f"bench-kill{n}"
            p = run_sub(["tune", "--station", station, "--parallel", "1", "--out", out, "--quiet", "--no-plots"],
                        tmp, kill_after=n)
            killed_ok = p.returncode == -signal.SIGKILL
            lost, why = resumed_cleanly(out, "tune", 64, n, tmp)
            off, rec = bench_state(bench)
            t.add("kill: bench 8x8 tune", f"after{n}", survived=killed_ok and not lost,
                  traceback="Traceback" in p.stderr, unsafe=not off or bool(rec["violations"]), why=why)


def resumed_cleanly(out: Path, stage: str, cells: int | None, killed_at: int, cwd, command="tune",
                    kill_resume_at=None) -> tuple[bool, str]:
    """Resume ``out`` (killing the resume itself once if asked); (lost?, why).  ``cells``: how many
    cells pass 0 must report (None: the run's targeted cells)."""
    from procedures.storage.journal import TRACE_DTYPE, read_trace
    from procedures.storage.run_data import load_run, read_data_csv

    def finished():
        d = read_data_csv(out / "data.csv")
        d = d[(d["Stage"] == stage)] if len(d) else d
        return {(int(p), int(r), int(c)) for p, r, c in d[["Pass", "Row", "Col"]].to_numpy()} if len(d) else set()

    def trace_len():
        path = out / "journal" / f"trace-{stage}.bin"
        return path.stat().st_size // TRACE_DTYPE.itemsize if path.is_file() else 0

    checks = []
    if kill_resume_at is not None:
        before, start = finished(), trace_len()
        p = run_sub([command, "--resume", out, "--quiet", "--no-plots"], cwd, kill_after=kill_resume_at)
        if p.returncode != -signal.SIGKILL:
            return True, f"resume not killed: rc {p.returncode} {p.stderr[-200:]}"
        checks.append((before, start))
    before, start = finished(), trace_len()
    checks.append((before, start))
    p = run_sub([command, "--resume", out, "--quiet", "--no-plots"], cwd)
    if p.returncode != 0:
        return True, f"resume failed: {p.stderr[-300:]}"
    r = load_run(out)
    d = r.data[r.data["Stage"] == stage]
    if d[["Pass", "Chip", "Row", "Col"]].duplicated().any():
        return True, "a cell reported twice in one pass"
    if cells is None:
        cells = int(np.isfinite(r.maps["targets"]).sum())
    if len(d[d["Pass"] == 0]) != cells:
        return True, f"pass 0 reports {len(d[d['Pass'] == 0])} of {cells} cells"
    tr = read_trace(out, [stage])
    for done, start in checks:
        pulsed = {(int(p), int(a), int(b)) for a, b, k, p in zip(tr["row"][start:], tr["col"][start:],
                                                                tr["kind"][start:], tr["pass"][start:]) if k == 1}
        again = {c for c in done if c in pulsed}
        if again:
            return True, f"finished cells pulsed again in their pass: {sorted(again)[:3]}"
    return False, ""


# ---------------------------------------------------------------------------- kills on the sim
def kills_sim(t: Tally, tmp: Path, model: Path, quick: bool):
    points = [1, 20, 80, 150, 300, 450, 600, 750, 900, 1000][: 4 if quick else 10]
    for n in points:
        out = tmp / f"sim-kill{n}"
        p = run_sub(["tune", "--size", "32x32", "--seed", "6", "--out", out, "--quiet", "--no-plots"], tmp,
                    kill_after=n)
        lost, why = resumed_cleanly(out, "tune", 1024, n, tmp) if p.returncode == -signal.SIGKILL else (True, "")
        t.add("kill: sim 32x32 tune", f"after{n}", survived=p.returncode == -signal.SIGKILL and not lost,
              traceback="Traceback" in p.stderr, why=why or p.stderr[-200:])
    for n, m in [(5, 3), (200, 40), (700, 100)][: 1 if quick else 3]:
        out = tmp / f"sim-kill-resume{n}"
        p = run_sub(["tune", "--size", "32x32", "--seed", "7", "--out", out, "--quiet", "--no-plots"], tmp,
                    kill_after=n)
        lost, why = resumed_cleanly(out, "tune", 1024, n, tmp, kill_resume_at=m)
        t.add("kill: during a resume", f"after{n}+{m}", survived=p.returncode == -signal.SIGKILL and not lost,
              traceback="Traceback" in p.stderr, why=why)
    for n in [1, 4, 9, 14, 20, 27, 33, 40, 48, 55][: 3 if quick else 10]:
        out = tmp / f"deploy-kill{n}"
        p = run_sub(["deploy", model, "--out", out, "--quiet", "--no-plots"], tmp, kill_after=n)
        if p.returncode != -signal.SIGKILL:
            t.add("kill: deploy", f"after{n}", survived=p.returncode == 0, traceback="Traceback" in p.stderr,
                  why=f"not killed (rc {p.returncode}; fewer records?) {p.stderr[-150:]}")
            continue
        lost, why = resumed_cleanly(out, "main", None, n, tmp, command="deploy")
        t.add("kill: deploy", f"after{n}", survived=not lost, traceback="Traceback" in p.stderr, why=why)


# ------------------------------------------------------------------------------------ storage
@contextlib.contextmanager
def stop_after(n: int):
    """The runner's stop request (a Ctrl-C) turns true after ``n`` polls: a deterministic stop."""
    import procedures.storage.runner as rn

    orig, calls = rn._Stopper, {"n": 0}

    class StopAfter(orig):
        def __call__(self):
            calls["n"] += 1
            return calls["n"] > n

    rn._Stopper = StopAfter
    try:
        yield
    finally:
        rn._Stopper = orig


def storage(t: Tally, tmp: Path):
    from collections import namedtuple

    import procedures.storage.run_data as run_data
    import procedures.storage.runner as runner
    from procedures.storage.run_data import RunFolderError, load_run
    from procedures.storage.runner import run_lock

    usage = namedtuple("usage", "total used free")
    base = ["tune", "--size", "4x4", "--seed", "3", "--parallel", "1", "--passes", "1", "--quiet", "--no-plots"]
    for n in (1, 5, 11):
        out = tmp / f"full{n}"
        full = []
        real_open, real_usage, saved = open, shutil.disk_usage, runner.after_record

        def hook(k, n=n, full=full):
            if k == n:
                full.append(True)
                raise OSError(errno.ENOSPC, "No space left on device")

        def fake_open(path, mode="r", *a, full=full, **kw):
            if full and ("w" in mode or "a" in mode) and not Path(path).exists():
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real_open(path, mode, *a, **kw)

        runner.after_record, run_data.open = hook, fake_open
        shutil.disk_usage = lambda p, full=full: usage(1, 1, 0) if full else real_usage(p)
        try:
            rc, _, err, tb = run_cli([*base, "--out", out])
        finally:
            runner.after_record, shutil.disk_usage = saved, real_usage
            del run_data.open
        meta = json.loads((out / "run.json").read_text())
        rc2, _, err2, tb2 = run_cli(["tune", "--resume", out, "--quiet", "--no-plots"])
        r = load_run(out)
        p0 = r.data[r.data["Pass"] == 0]
        ok = (rc == 2 and meta["status"] == "failed" and not list(out.rglob("*.tmp")) and rc2 == 0
              and len(p0) == 16 and not p0[["Row", "Col"]].duplicated().any())
        t.add("storage", f"disk-full-after{n}", survived=ok, traceback=tb or tb2,
              unclear=not one_line_error(err, "No space left on device"), why=(err + err2)[-200:])

    for journal, line in [("data.csv", 0), ("data.csv", 2), ("data.csv", -1), ("journal/passes-tune.jsonl", 0),
                          ("journal/passes-tune.jsonl", 1)]:
        out = tmp / f"corrupt-{journal.replace('/', '-')}-{line}"
        with stop_after(60):
            run_cli(["tune", "--size", "6x6", "--seed", "8", "--parallel", "1", "--passes", "2", "--out", out,
                     "--quiet", "--no-plots"])
        path = out / journal
        lines = path.read_bytes().split(b"\n")
        data_lines = [i for i, b in enumerate(lines) if b and not b.startswith(b"#") and not b.startswith(b"Stage")]
        k = data_lines[line] if data_lines and line < len(data_lines) else (len(lines) - 2)
        lines[k] = b"\xff\x00" + os.urandom(12).replace(b"\n", b"?") + lines[k][3:]
        path.write_bytes(b"\n".join(lines))
        rc2, _, err, tb = run_cli(["tune", "--resume", out, "--quiet", "--no-plots"])
        r = load_run(out)
        p0 = r.data[(r.data["Stage"] == "tune") & (r.data["Pass"] == 0)]
        ok = rc2 == 0 and len(p0) == 36 and not p0[["Row", "Col"]].duplicated().any()
        t.add("storage", f"corrupt-{journal}-line{k + 1}", survived=ok, traceback=tb,
              unclear=f"{path.name}: dropped unreadable line {k + 1}" not in err, why=err[-200:])

    out = tmp / "h5"
    run_cli([*base, "--out", out])
    data = (out / "run.h5").read_bytes()
    (out / "run.h5").write_bytes(data[: len(data) // 3])
    try:
        load_run(out)
        t.add("storage", "truncated-run.h5", survived=False, why="accepted")
    except RunFolderError as exc:
        t.add("storage", "truncated-run.h5", unclear="run.h5" not in str(exc))

    for name in ("deleted-chip-state", "locked"):
        out = tmp / name
        with stop_after(20):
            run_cli([*base, "--out", out])
        before = (out / "data.csv").read_bytes()
        if name == "deleted-chip-state":
            (out / "chip_state.npz").unlink()
            rc, _, err, tb = run_cli(["tune", "--resume", out, "--quiet", "--no-plots"])
            t.add("storage", name, survived=rc == 2 and (out / "data.csv").read_bytes() == before, traceback=tb,
                  unclear=not one_line_error(err, "chip_state.npz") or "continue with" in err, why=err[-200:])
        else:
            with run_lock(out):
                rc, _, err, tb = run_cli(["tune", "--resume", out, "--quiet", "--no-plots"])
            t.add("storage", name, survived=rc == 2 and (out / "data.csv").read_bytes() == before, traceback=tb,
                  unclear=not one_line_error(err, "another xbar process"), why=err[-200:])


def main_campaign():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer kill points (a smoke run)")
    args = ap.parse_args()
    t = Tally()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["XBAR_RUNS"] = str(tmp / "runs")
        from models.model_io import save_model
        from models.train import TrainConfig, train

        cfg = TrainConfig.for_dataset("moons", aware=False, epochs=150, seed=0)
        model = tmp / "model.pt"
        save_model(model, train(cfg).model, cfg.to_dict(), {})
        for group, fn, fargs in (("bad input", bad_input, ()), ("station files", station_files, (60,)),
                                 ("model files", model_files, (model,)), ("storage", storage, ()),
                                 ("bench", bench_faults, (args.quick,)), ("kills", kills_sim, (model, args.quick))):
            sub = tmp / group.replace(" ", "-")
            sub.mkdir()
            g0 = time.perf_counter()
            fn(t, sub, *fargs)
            print(f"[{group}: {time.perf_counter() - g0:.0f} s]", flush=True)
    print(f"\nfault campaign ({time.perf_counter() - t0:.0f} s wall; load average {os.getloadavg()[0]:.1f})")
    t.print()


if __name__ == "__main__":
    main_campaign()
