"""Garbage against every port of the mock bench (figures, not a timed test).

Starts ``MockBench`` in a child process, then attacks each emulator's port in turn with:

* ``long``: over-long lines (1 MiB each, newline-terminated) and one stream without any newline;
* ``bytes``: random bytes (with newlines: short garbage lines, non-ASCII, control characters);
* ``digits``: lines of 60 000 digits in a command (the old TSP number pattern was quadratic);
* ``burst``: pipelined valid queries, written without waiting for replies (a reader drains them);
* ``churn``: connections opened, sent a line, closed.

While an attack runs, a second connection sends the identification query and waits for its reply
in a loop: its worst round trip is the "concurrent *IDN?" latency.  Every attack connection ends by
sending the identification query and reading until its reply: a connection the emulator closed,
reset or left unanswered counts as a death.  Printed per port: bytes and messages sent,
connections opened, RSS growth of the bench process over the attacks, worst concurrent latency,
deaths; then the raw-socket throughput of lock-step queries on one connection.

Targets (issue 14): RSS growth <= 10 MB after 100 MB of garbage; concurrent *IDN? <= 50 ms;
0 connection deaths; raw-socket throughput >= 10 000 queries/s.

Usage: python benchmarks/emulator_fuzz.py [--megabytes 100] [--seed 0] [--ports K2450,...]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

from mock_hw.emulators.probe import LineClient

PROBE = {"K2450": "scpi", "B2900": "scpi", "B2200": "scpi", "K2600": "tsp", "M707B": "tsp", "BOARD": "board"}
IDN_PREFIX = {"K2450": "KEITHLEY", "B2900": "Keysight", "B2200": "Agilent", "K2600": "Keithley",
              "M707B": "Keithley", "BOARD": "XBARLAB"}
DIGITS = {"scpi": ":SOUR:VOLT ", "tsp": "smua.source.levelv = ", "board": "CONN A R"}
BURST = {"scpi": ":SYST:ERR?", "tsp": "print(errorqueue.count)", "board": "STATE?"}


def serve() -> None:
    """Child process: run the bench, print its ports as JSON, stop when stdin closes."""
    from mock_hw.mock_bench import MockBench
    with MockBench(4, 4, seed=0) as bench:
        print(json.dumps({name: s.port for name, s in bench.servers.items()}), flush=True)
        sys.stdin.read()


def cpu_s(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, s."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Stats:
    def __init__(self):
        self.bytes = self.messages = self.connections = self.deaths = 0
        self.lock = threading.Lock()
        self.phase = "start"
        self.worst: dict[str, float] = {}       # worst concurrent *IDN? round trip per attack, s
        self.latencies: list[float] = []        # every concurrent *IDN? round trip, s

    def add(self, nbytes, messages, connections=0):
        with self.lock:
            self.bytes += nbytes
            self.messages += messages
            self.connections += connections


def synced(port: int, name: str, send, stats: Stats) -> None:
    """Open a connection, let ``send(sock)`` attack through it, then end the line, ask for the
    identification and read until it comes (a reader thread drains replies meanwhile)."""
    stats.add(0, 0, 1)
    c = LineClient(port, timeout=60)
    done = threading.Event()
    got = {"idn": False, "dead": False}

    def reader():
        try:
            while True:
                line = c.readline()
                if done.is_set() and line.startswith(IDN_PREFIX[name]):
                    got["idn"] = True
                    return
        except (OSError, ConnectionError, UnicodeDecodeError):
            got["dead"] = True

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        send(c)
        done.set()
        c.send(b"\n*IDN?\n")
    except OSError:
        got["dead"] = True
    t.join(120)
    c.close()
    if got["dead"] or not got["idn"]:
        stats.deaths += 1


def attack(port: int, name: str, megabytes: float, rng: random.Random, stats: Stats) -> None:
    kind = PROBE[name]
    mib = 1 << 20
    long_line = bytes(rng.getrandbits(8) | 0x20 for _ in range(4096)).replace(b"\n", b"x") * 256   # 1 MiB
    n_long = max(1, int(megabytes * 0.45))

    def long_lines(c):
        for _ in range(n_long):
            c.send(long_line + b"\n")
        stats.add(n_long * (mib + 1), n_long)

    def no_newline(c):
        for _ in range(n_long):
            c.send(long_line)
        stats.add(n_long * mib, 1)

    blob = bytes(rng.getrandbits(8) for _ in range(mib))
    n_blob = max(1, int(megabytes * 0.08))

    def random_bytes(c):
        for _ in range(n_blob):
            c.send(blob)
        stats.add(n_blob * mib, n_blob * blob.count(b"\n"))

    digit_line = (DIGITS[kind] + "1" * 60_000 + "x\n").encode()

    def digits(c):
        for _ in range(8):
            c.send(digit_line)
        stats.add(8 * len(digit_line), 8)

    query = (BURST[kind] + "\n").encode()

    def burst(c):
        c.send(query * 20_000)
        stats.add(20_000 * len(query), 20_000)

    for send in (long_lines, no_newline, random_bytes, digits, burst):
        stats.phase = send.__name__
        synced(port, name, send, stats)
    stats.phase = "churn"
    for _ in range(200):                          # connection churn
        stats.add(len(query), 1, 1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(query)
        except OSError:
            stats.deaths += 1


def latency_probe(port: int, stop: threading.Event, stats: Stats, failures: list) -> None:
    try:
        with LineClient(port, timeout=10) as c:
            c.query("*IDN?")                      # connected and warm before timing
            while not stop.is_set():
                phase = stats.phase
                t0 = time.perf_counter()
                c.query("*IDN?")
                dt = time.perf_counter() - t0
                stats.worst[phase] = max(stats.worst.get(phase, 0.0), dt)
                stats.latencies.append(dt)
    except (OSError, ConnectionError) as exc:
        failures.append(exc)


def throughput(port: int, pid: int, n: int = 20_000) -> tuple[float, float]:
    """Lock-step *IDN? round trips on one raw socket: (queries per wall second, queries per CPU
    second of the bench process — the figure a loaded machine does not distort)."""
    with LineClient(port) as c:
        c0, t0 = cpu_s(pid), time.perf_counter()
        for _ in range(n):
            c.send(b"*IDN?\n")
            c.readline()
        wall, cpu = time.perf_counter() - t0, cpu_s(pid) - c0
        return n / wall, n / max(cpu, 1e-9)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megabytes", type=float, default=100.0, help="garbage per port, MB (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ports", default=",".join(PROBE), help="comma-separated emulator names")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve()
        return 0
    # the measuring side: its attack, reader and probe threads share one interpreter, so switch
    # between them often (a probe waiting on the GIL would count against the emulator)
    sys.setswitchinterval(0.0005)
    names = [n.strip() for n in args.ports.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROBE]
    if unknown:
        print(f"error: unknown port(s) {unknown}; choose from {list(PROBE)}", file=sys.stderr)
        return 2
    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=dict(os.environ))
    try:
        ports = json.loads(child.stdout.readline())
        rng = random.Random(args.seed)
        rss0 = rss_mb(child.pid)
        print(f"load average: {os.getloadavg()}")
        print(f"bench process RSS at start: {rss0:.1f} MB")
        print("concurrent *IDN? round trip during the attacks: worst, 99th percentile, median (ms); "
              "raw-socket lock-step *IDN?: per wall second and per CPU second of the bench process")
        print(f"{'port':6} {'MB sent':>8} {'messages':>9} {'conns':>6} {'RSS +MB':>8} {'worst':>8} {'p99':>6} "
              f"{'p50':>6} {'deaths':>6}  {'q/s wall':>9} {'q/s CPU':>9}   worst ms per attack")
        ok = True
        for name in names:
            stats = Stats()
            before = rss_mb(child.pid)
            stop, failures = threading.Event(), []
            probe = threading.Thread(target=latency_probe, args=(ports[name], stop, stats, failures), daemon=True)
            probe.start()
            attack(ports[name], name, args.megabytes, rng, stats)
            stop.set()
            probe.join(30)
            growth = rss_mb(child.pid) - before
            deaths = stats.deaths + len(failures)
            qps, qps_cpu = throughput(ports[name], child.pid)
            worst = max(stats.worst.values(), default=0.0)
            lat = sorted(stats.latencies) or [0.0]
            p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.99 * len(lat)))]
            ok &= growth <= 10 and worst <= 0.050 and deaths == 0 and qps >= 10_000
            print(f"{name:6} {stats.bytes / 1e6:8.1f} {stats.messages:9d} {stats.connections:6d} {growth:8.1f} "
                  f"{worst * 1e3:8.1f} {p99 * 1e3:6.1f} {p50 * 1e3:6.2f} {deaths:6d}  {qps:9.0f} {qps_cpu:9.0f}   "
                  + " ".join(f"{k}:{v * 1e3:.0f}" for k, v in stats.worst.items()))
        print(f"bench process RSS at end: {rss_mb(child.pid):.1f} MB (growth {rss_mb(child.pid) - rss0:.1f} MB)")
        print(f"load average: {os.getloadavg()}")
        print("targets (RSS <= 10 MB per port, IDN <= 50 ms, 0 deaths, >= 10000 queries/s):",
              "met" if ok else "MISSED")
    finally:
        child.stdin.close()
        child.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
