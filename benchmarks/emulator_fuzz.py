"""Garbage against every port of the mock bench, and lock-step throughput (figures, not a timed test).

Starts ``xbar mock-bench`` (4x4) in a child process, as a user runs it, then attacks each emulator's
port in turn with:

* ``long``: over-long lines (1 MiB each, newline-terminated) and one stream without any newline;
* ``bytes``: random bytes (with newlines: short garbage lines, non-ASCII, control characters);
* ``digits``: lines of 60 000 digits in a command (the old TSP number pattern was quadratic);
* ``burst``: pipelined valid queries, written without waiting for replies (a reader drains them);
* ``churn``: connections opened, sent a line, closed.

While an attack runs, a probe in a separate process (so the attacker's threads never delay it)
sends the identification query on its own connection and waits for the reply, in a loop: its
round trips are the "concurrent *IDN?" latency (worst, 99th percentile, median; worst per attack).
Every attack connection ends by sending the identification query and reading until its reply: a
connection the emulator closed, reset or left unanswered counts as a death.  Printed per port: bytes
and messages sent, connections opened, RSS growth of the bench process, the latencies, deaths, the
load average before and after.

Then, in a table of its own, each port's raw-socket lock-step throughput (measured after that
port's attacks): one client sends ``*IDN?``, reads the reply, repeats, in three windows; printed
per wall second (median window, and the lowest and highest) and per CPU second of the bench
process (which a loaded machine distorts far less), the bench process's and the client's CPU per
query (the client is a minimal one: blocking socket, TCP_NODELAY, one send and one receive per
query, so that it is not what limits the figure), receives per reply (1.00: every reply came in one
segment), and the load average when the port's throughput run began.

With ``--baseline DIR`` a second mock bench runs from the source tree DIR (e.g. a worktree of an
older commit) and every port is measured on both, alternately, so the two are compared under the
same load.

Targets (issue 14): RSS growth <= 10 MB after 100 MB of garbage; concurrent *IDN? <= 50 ms during
any attack; 0 connection deaths; raw-socket throughput >= 10 000 queries/s.

Usage: python benchmarks/emulator_fuzz.py [--quick] [--megabytes 100] [--seed 0] [--ports K2450,...]
       [--baseline DIR]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

PROBE = {"K2450": "scpi", "B2900": "scpi", "B2200": "scpi", "K2600": "tsp", "M707B": "tsp", "BOARD": "board"}
IDN_PREFIX = {"K2450": b"KEITHLEY", "B2900": b"Keysight", "B2200": b"Agilent", "K2600": b"Keithley",
              "M707B": b"Keithley", "BOARD": b"XBARLAB"}
DIGITS = {"scpi": ":SOUR:VOLT ", "tsp": "smua.source.levelv = ", "board": "CONN A R"}
BURST = {"scpi": ":SYST:ERR?", "tsp": "print(errorqueue.count)", "board": "STATE?"}
QUERY = b"*IDN?\n"
#: lock-step queries per wall second every port must sustain (issue 14)
THROUGHPUT_TARGET = 10_000


# ------------------------------------------------------------------------------ helpers
def connect(port: int, timeout: float = 60.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # no Nagle wait on small queries
    return sock


class Lines:
    """Buffered reading of newline-terminated replies (one recv serves many lines)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                return line
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the emulator closed the connection")
            self.buf += chunk


def cpu_s(pid: int) -> float:
    """CPU time of every thread of process ``pid`` so far, s (scheduler nanoseconds where the kernel
    gives them, else clock ticks)."""
    total, found = 0, False
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
            found = True
        except (OSError, ValueError, IndexError):
            pass
    if found:
        return total / 1e9
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- the bench
class Bench:
    """``xbar mock-bench`` from source tree ``tree`` in a child process; ``ports`` by name."""

    def __init__(self, tree: str, workdir: str, label: str):
        self.label = label
        env = dict(os.environ, PYTHONPATH=tree)
        station = os.path.join(workdir, f"station-{label}.toml")
        self.proc = subprocess.Popen([sys.executable, "-m", "procedures.cli", "mock-bench", "--size", "4x4",
                                      "--station-out", station], stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=workdir)
        self.ports: dict[str, int] = {}
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) == 2 and parts[0] in PROBE:
                self.ports[parts[0]] = int(parts[1].replace("::SOCKET", "").rsplit(":", 1)[1])
            if line.startswith("Ctrl-C to stop"):
                break
        if len(self.ports) < len(PROBE):
            self.close()
            raise RuntimeError(f"xbar mock-bench ({tree}) did not start: ports {self.ports}")
        self.pid = self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


# ------------------------------------------------------------------------ the probe
def probe_main(port: int) -> None:
    """Child process: lock-step ``*IDN?`` until stdin closes; then print [start, round trip] pairs
    (monotonic clock, s) as JSON."""
    sock = connect(port, timeout=30)
    lines = Lines(sock)
    sock.sendall(QUERY)
    lines.readline()                          # connected and warm before timing
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    samples, failure = [], None
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            sock.sendall(QUERY)
            lines.readline()
            samples.append((t0, time.monotonic() - t0))
    except (OSError, ConnectionError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"samples": samples, "failure": failure}), flush=True)


class Probe:
    def __init__(self, port: int):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--probe", str(port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.proc.stdout.readline()               # "ready"

    def finish(self) -> dict:
        self.proc.stdin.close()
        out = json.loads(self.proc.stdout.readline())
        self.proc.wait(30)
        return out


# ------------------------------------------------------------------------------ attacks
class Stats:
    def __init__(self):
        self.bytes = self.messages = self.connections = self.deaths = 0
        self.phases: list[tuple[str, float, float]] = []     # (attack, start, end), monotonic s

    def add(self, nbytes, messages, connections=0):
        self.bytes += nbytes
        self.messages += messages
        self.connections += connections


def synced(port: int, prefix: bytes, send, stats: Stats) -> None:
    """Open a connection, let ``send(sock)`` attack through it, then end the line, ask for the
    identification and read until it comes (a reader thread drains replies meanwhile, in bulk)."""
    stats.add(0, 0, 1)
    sock = connect(port)
    done = threading.Event()
    got = {"idn": False, "dead": False}

    def reader():
        tail = b""
        try:
            while True:
                chunk = sock.recv(1 << 17)
                if not chunk:
                    got["dead"] = True
                    return
                if done.is_set():
                    data = tail + chunk
                    if data.startswith(prefix) or (b"\n" + prefix) in data:
                        got["idn"] = True
                        return
                    tail = data[-len(prefix) - 1:]
                else:
                    tail = chunk[-len(prefix) - 1:]
        except OSError:
            got["dead"] = True

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        send(sock)
        done.set()
        sock.sendall(b"\n" + QUERY)
    except OSError:
        got["dead"] = True
    t.join(120)
    sock.close()
    if got["dead"] or not got["idn"]:
        stats.deaths += 1


def attack(port: int, name: str, megabytes: float, rng: random.Random, stats: Stats) -> None:
    kind, prefix = PROBE[name], IDN_PREFIX[name]
    mib = 1 << 20
    long_line = bytes(rng.getrandbits(8) | 0x20 for _ in range(4096)).replace(b"\n", b"x") * 256   # 1 MiB
    n_long = max(1, int(megabytes * 0.45))

    def long_lines(s):
        for _ in range(n_long):
            s.sendall(long_line + b"\n")
        stats.add(n_long * (mib + 1), n_long)

    def no_newline(s):
        for _ in range(n_long):
            s.sendall(long_line)
        stats.add(n_long * mib, 1)

    blob = rng.randbytes(mib)
    n_blob = max(1, int(megabytes * 0.08))

    def random_bytes(s):
        for _ in range(n_blob):
            s.sendall(blob)
        stats.add(n_blob * mib, n_blob * blob.count(b"\n"))

    digit_line = (DIGITS[kind] + "1" * 60_000 + "x\n").encode()

    def digits(s):
        for _ in range(8):
            s.sendall(digit_line)
        stats.add(8 * len(digit_line), 8)

    query = (BURST[kind] + "\n").encode()

    def burst(s):
        s.sendall(query * 20_000)
        stats.add(20_000 * len(query), 20_000)

    for send in (long_lines, no_newline, random_bytes, digits, burst):
        t0 = time.monotonic()
        synced(port, prefix, send, stats)
        stats.phases.append((send.__name__, t0, time.monotonic()))
    t0 = time.monotonic()
    for _ in range(200):                          # connection churn
        stats.add(len(query), 1, 1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(query)
        except OSError:
            stats.deaths += 1
    stats.phases.append(("churn", t0, time.monotonic()))


def threads(pid: int) -> dict[int, tuple[float, int]]:
    """Every thread of process ``pid``: thread id -> (CPU time so far, s; the CPU it last ran on)."""
    out = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/schedstat") as f:
                run = int(f.read().split()[0]) / 1e9
            out[int(os.path.basename(task))] = (run, last_cpu(f"{task}/stat"))
        except (OSError, ValueError, IndexError):
            pass
    return out


def last_cpu(stat_path: str) -> int:
    """The CPU a thread last ran on (field 39 of /proc/.../stat)."""
    with open(stat_path) as f:
        return int(f.read().rsplit(")", 1)[1].split()[36])


def throughput(port: int, pid: int, n: int, windows: int = 3, pinned: bool = False) -> dict:
    """Lock-step ``*IDN?`` round trips on one raw socket, ``windows`` windows of ``n``: queries per
    wall second (median, lowest and highest window), per CPU second of the bench process (all
    windows), the bench process's and the client's CPU per query (us), receives per reply, and
    the share of samples (every 250 queries) that found the client and the emulator's thread on
    the same CPU.

    The client is as lean as a client gets, so that it is not what is measured: a blocking socket
    (a socket with a Python timeout polls before every send and receive: two more system calls
    per query; the kernel's receive timeout, SO_RCVTIMEO, guards against a hung server instead),
    TCP_NODELAY, one ``send`` and (when the reply comes in one segment) one ``recv`` per query.

    ``pinned``: the client and every thread of the bench process run on one CPU (the client's)
    meanwhile, so every wake-up stays on that CPU; their CPU sets are restored afterwards."""
    load0 = load()
    sock = connect(port)
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 60, 0))
    send, recv = sock.sendall, sock.recv
    me = f"/proc/self/task/{threading.get_native_id()}/stat"
    restore: dict[int, set] = {}
    if pinned:
        cpu = {last_cpu(me)}
        for tid in [0, *threads(pid)]:
            try:
                restore[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, cpu)
            except OSError:
                pass
    try:
        before = threads(pid)
        for _ in range(200):                          # warm
            send(QUERY)
            recv(65536)
        after = threads(pid)
        # the emulator's thread: the bench process's thread that worked during the warm-up
        server = max(after, key=lambda t: after[t][0] - before.get(t, (0.0, 0))[0])
        server_stat = f"/proc/{pid}/task/{server}/stat"
        rates, cpu_time, client, receives, together, samples = [], 0.0, 0.0, 0, 0, 0
        for _ in range(windows):
            c0, k0, t0 = cpu_s(pid), time.thread_time(), time.perf_counter()
            for k in range(n):
                send(QUERY)
                reply = recv(65536)
                while reply[-1:] != b"\n":           # the reply came in pieces (or not at all)
                    more = recv(65536)
                    if not more:
                        raise ConnectionError("the emulator closed the connection")
                    reply += more
                    receives += 1
                if k % 250 == 125:
                    samples += 1
                    together += last_cpu(me) == last_cpu(server_stat)
            rates.append(n / (time.perf_counter() - t0))
            client += time.thread_time() - k0
            cpu_time += cpu_s(pid) - c0
    finally:
        sock.close()
        for tid, cpus in restore.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass
    rates.sort()
    queries = windows * n
    return {"wall": rates[len(rates) // 2], "wall_min": rates[0], "wall_max": rates[-1],
            "cpu": queries / max(cpu_time, 1e-9), "server_us": cpu_time / queries * 1e6,
            "client_us": client / queries * 1e6, "recvs": 1 + receives / queries,
            "same_cpu": together / max(samples, 1), "load": load0}


def measure(bench: Bench, name: str, megabytes: float, seed: int, n_queries: int) -> dict:
    port, stats = bench.ports[name], Stats()
    load0, before = load(), rss_mb(bench.pid)
    probe = Probe(port)
    attack(port, name, megabytes, random.Random(seed), stats)
    result = probe.finish()
    growth = rss_mb(bench.pid) - before
    samples = result["samples"]
    worst: dict[str, float] = {}
    for t0, dt in samples:
        phase = next((p for p, a, b in stats.phases if a <= t0 <= b), "between")
        worst[phase] = max(worst.get(phase, 0.0), dt)
    lat = sorted(dt for _, dt in samples) or [0.0]
    tp = {"free": throughput(port, bench.pid, n_queries)}     # pinned: after every port's free run (main)
    return {"bytes": stats.bytes, "messages": stats.messages, "connections": stats.connections, "rss": growth,
            "worst": lat[-1], "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))], "p50": lat[len(lat) // 2],
            "probes": len(samples), "deaths": stats.deaths + (result["failure"] is not None),
            "by_attack": worst, "load": (load0, load()), **tp}


def row(label: str, r: dict) -> str:
    return (f"{label:15} {r['bytes'] / 1e6:7.1f} {r['messages']:8d} {r['connections']:5d} {r['rss']:7.1f} "
            f"{r['worst'] * 1e3:7.1f} {r['p99'] * 1e3:6.1f} {r['p50'] * 1e3:5.2f} {r['deaths']:6d}  "
            f"{r['load'][0]:>14} -> {r['load'][1]:<14} "
            + " ".join(f"{k}:{v * 1e3:.0f}" for k, v in r["by_attack"].items()))


THROUGHPUT_HEAD = (f"{'port':15} {'mode':6} {'q/s wall':>9} {'(min-max)':>15} {'same CPU':>8} {'q/s CPU':>9} "
                   f"{'bench us/q':>10} {'client us/q':>11} {'recv/reply':>10}  load")


def throughput_rows(label: str, r: dict) -> list[str]:
    rows = []
    for mode in ("free", "pinned"):
        t = r[mode]
        rows.append(f"{label:15} {mode:6} {t['wall']:9.0f} {t['wall_min']:7.0f}-{t['wall_max']:<7.0f} "
                    f"{t['same_cpu']:8.0%} {t['cpu']:9.0f} {t['server_us']:10.1f} {t['client_us']:11.1f} "
                    f"{t['recvs']:10.2f}  {t['load']}  "
                    f"{'ok' if t['wall'] >= THROUGHPUT_TARGET else f'BELOW {THROUGHPUT_TARGET}'}")
    return rows


def _label(name: str, bench: Bench, benches: list[Bench]) -> str:
    return name if len(benches) == 1 else f"{name} {bench.label[:8]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 MB of garbage and 3 x 2000 queries per port")
    ap.add_argument("--megabytes", type=float, default=None, help="garbage per port, MB (default 100)")
    ap.add_argument("--queries", type=int, default=None, help="lock-step queries per window (default 5000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ports", default=",".join(PROBE), help="comma-separated emulator names")
    ap.add_argument("--baseline", default=None, metavar="DIR",
                    help="also measure a mock bench run from source tree DIR, alternately (same load)")
    ap.add_argument("--probe", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe is not None:
        probe_main(args.probe)
        return 0
    megabytes = args.megabytes if args.megabytes is not None else (10.0 if args.quick else 100.0)
    n_queries = args.queries if args.queries is not None else (2000 if args.quick else 5000)
    names = [n.strip() for n in args.ports.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROBE]
    if unknown:
        print(f"error: unknown port(s) {unknown}; choose from {list(PROBE)}", file=sys.stderr)
        return 2
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.baseline is not None and not os.path.isdir(os.path.join(args.baseline, "mock_hw")):
        print(f"error: --baseline {args.baseline}: not a source tree (no mock_hw/ in it)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="emulator_fuzz-") as workdir:
        benches = [Bench(here, workdir, "this tree")]
        try:
            if args.baseline is not None:
                benches.append(Bench(os.path.abspath(args.baseline), workdir, "baseline"))
            print(f"load average at start: {load()}; {os.cpu_count()} CPUs; {megabytes:g} MB of garbage per port; "
                  f"3 x {n_queries} lock-step queries")
            for b in benches:
                print(f"bench process ({b.label}) RSS at start: {rss_mb(b.pid):.1f} MB")
            print("latency: round trip of a concurrent *IDN? (another process, own connection) during the attacks, ms")
            print(f"{'port':15} {'MB sent':>7} {'messages':>8} {'conns':>5} {'RSS +MB':>7} {'worst':>7} {'p99':>6} "
                  f"{'p50':>5} {'deaths':>6}  {'load before -> after':^32} worst ms per attack")
            results: dict[tuple[str, str], dict] = {}
            for i, name in enumerate(names):
                order = benches if i % 2 == 0 else benches[::-1]      # alternate which goes first
                for b in order:
                    r = measure(b, name, megabytes, args.seed, n_queries)
                    results[(name, b.label)] = r
                    print(row(_label(name, b, benches), r), flush=True)
            for b in benches:
                print(f"bench process ({b.label}) RSS at end: {rss_mb(b.pid):.1f} MB")
            # the pinned runs last: a pinned run leaves the threads where it put them, which would
            # decide the next port's free run
            for name in names:
                for b in benches:
                    results[(name, b.label)]["pinned"] = throughput(b.ports[name], b.pid, n_queries, pinned=True)
            print(f"\nlock-step throughput, raw socket, *IDN? (free: after each port's attacks; pinned: after all ports), 3 windows of {n_queries} "
                  "queries: mode free = client and bench placed by the scheduler, as a user runs them; pinned = "
                  "client and every thread of the bench on one CPU meanwhile; q/s wall = queries per wall second "
                  "(median window; lowest-highest); same CPU = share of samples finding the client and the "
                  "emulator's thread on one CPU (on this VM a wake-up across CPUs costs both sides tens of us); "
                  "q/s CPU = per CPU second of the bench process (what a busy machine distorts least); bench / "
                  "client us/q = CPU per query of the bench process / of the client; recv/reply = receives per "
                  "reply (1: each reply in one segment); load = 1/5/15-min load average when the run began")
            print(THROUGHPUT_HEAD)
            for name in names:
                for b in benches:
                    print("\n".join(throughput_rows(_label(name, b, benches), results[(name, b.label)])))
            if len(benches) == 2:
                print("this tree / baseline, per port: q/s wall and q/s CPU (free), q/s wall and q/s CPU (pinned), "
                      "worst latency")
                for name in names:
                    a, z = results[(name, "this tree")], results[(name, "baseline")]
                    ratios = [a[m][k] / z[m][k] for m in ("free", "pinned") for k in ("wall", "cpu")]
                    print(f"  {name:6} " + " ".join(f"{x:5.2f}" for x in ratios)
                          + f" {a['worst'] / max(z['worst'], 1e-9):5.2f}")
            print(f"load average at end: {load()}; {time.perf_counter() - started:.0f} s")
            mine = [results[(name, benches[0].label)] for name in names]
            verdicts = [("RSS growth <= 10 MB per port", all(r["rss"] <= 10 for r in mine)),
                        ("concurrent *IDN? <= 50 ms", all(r["worst"] <= 0.050 for r in mine)),
                        ("0 connection deaths", all(r["deaths"] == 0 for r in mine)),
                        (f">= {THROUGHPUT_TARGET} lock-step queries per wall second (client free)",
                         all(r["free"]["wall"] >= THROUGHPUT_TARGET for r in mine)),
                        ("(client and bench on one CPU)", all(r["pinned"]["wall"] >= THROUGHPUT_TARGET for r in mine))]
            print("targets (issue 14):", "; ".join(f"{what}: {'met' if met else 'MISSED'}" for what, met in verdicts))
        finally:
            for b in benches:
                b.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
