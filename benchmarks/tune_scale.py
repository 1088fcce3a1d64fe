"""Many small chips end to end through the CLI: ``xbar tune --chips N --size RxC`` in a subprocess.

Prints, per run, the child's peak RSS, its CPU time (user + sys, and the system part), the wall time and the machine's
load average around it (run with ``nice -n 10``; the CPU time is what the targets are about, the
wall time follows the load).  Issue 17, item 2: 10 000 x 8x8 chips in <= 500 MB RSS and <= 30 s
of CPU at the default preset (``tio2-3it``: resistive lines, 0.67 ohm per segment); ``--lines
both`` also runs the same chips on ideal lines (``--line-resistance 0``) for comparison.

    nice -n 10 python benchmarks/tune_scale.py                  # 10 000 x 8x8, default preset
    nice -n 10 python benchmarks/tune_scale.py --lines both --chips 2000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(chips: int, size: str, seed: int, ideal: bool, out: Path) -> dict:
    """One ``xbar tune`` in a child process: its rusage (peak RSS, CPU), wall time and output."""
    cmd = [sys.executable, "-m", "procedures.cli", "tune", "--size", size, "--chips", str(chips),
           "--seed", str(seed), "--quiet", "--no-plots", "--out", str(out)]
    if ideal:
        cmd += ["--line-resistance", "0"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        log.seek(0)
        text = log.read()
    if proc.returncode != 0:
        raise SystemExit(f"xbar tune failed ({proc.returncode}):\n{text[-2000:]}")
    pick = [line.strip() for line in text.splitlines()
            if line.strip().startswith(("converged", "truly within", "wall time, tuning"))]
    return {"rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime, "wall_s": wall, "load": (load0, os.getloadavg()[0]), "lines": pick}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chips", type=int, default=10000)
    p.add_argument("--size", default="8x8")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lines", choices=("preset", "ideal", "both"), default="preset",
                   help="the preset's resistive lines, ideal lines (--line-resistance 0), or both")
    args = p.parse_args(argv)
    kinds = {"preset": [False], "ideal": [True], "both": [False, True]}[args.lines]
    print(f"xbar tune --chips {args.chips} --size {args.size} --seed {args.seed} (default preset), in a subprocess")
    print(f"{'lines':<22}{'peak RSS':>10}{'CPU':>9}{'(sys)':>9}{'wall':>9}   load (before/after)   "
          "target: <= 500 MB, <= 30 s CPU")
    with tempfile.TemporaryDirectory() as tmp:
        for ideal in kinds:
            r = run(args.chips, args.size, args.seed, ideal, Path(tmp) / ("ideal" if ideal else "preset"))
            name = "ideal (0 ohm)" if ideal else "preset (0.67 ohm)"
            met = "met" if r["rss_mb"] <= 500 and r["cpu_s"] <= 30 else "missed"
            print(f"{name:<22}{r['rss_mb']:>7.0f} MB{r['cpu_s']:>7.1f} s{r['sys_s']:>7.1f} s{r['wall_s']:>7.1f} s   "
                  f"{r['load'][0]:.1f} / {r['load'][1]:.1f}   {met}")
            for line in r["lines"]:
                print(f"    {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
