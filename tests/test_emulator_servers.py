"""The emulators' servers and common protocol layer: IEEE 488.2 common commands and status
reporting, bounded error queues, 7-bit ASCII replies, line limits, pruned connections, and
property-based fuzzing (hypothesis, seeded, few examples) of every port of the mock bench."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mock_hw.emulators.base import (
    ERROR_QUEUE_DEPTH, LINES_PER_TURN, MAX_COMMANDS, MAX_CONNECTIONS, MAX_LINE, PARSED_KEEP, PARSED_WIDTH,
    SEND_TIMEOUT_S, MessageLog, ascii_text, split_args,
)
from mock_hw.emulators.probe import LineClient, probe_for
from mock_hw.mock_bench import MOCK_TIMEOUT_MS, MockBench

SCPI = ("K2450", "B2900", "B2200")
TSP = ("K2600", "M707B")
ALL = SCPI + TSP + ("BOARD",)


@pytest.fixture(scope="module")
def mock():
    with MockBench(4, 4, seed=0) as b:
        yield b


def client(mock, name) -> LineClient:
    """A connection whose replies may take the mock bench's timeout (20 s; LineClient's own is 5 s):
    they wait for the host's scheduler, not only for the server."""
    return LineClient(mock.servers[name].port, timeout=MOCK_TIMEOUT_MS / 1000)


def drain_errors(emu) -> None:
    with emu.lock:
        emu.clear_status()


# ------------------------------------------------------------------ IEEE 488.2 (SCPI ports)
@pytest.mark.parametrize("name", SCPI)
def test_ieee488_common_commands_and_status(mock, name):
    emu = mock.emulators[name]
    with client(mock, name) as c:
        c.send("*CLS\n")
        assert c.query("*ESR?") == "0" and c.query("*STB?") == "0"
        assert c.query("*IDN?") == emu.idn and c.query("*OPC?") == "1" and c.query("*TST?") == "0"
        c.send("*ESE 60;*SRE 36\n")                       # enable CME|EXE|DDE|QYE; ESB|EAV
        assert (c.query("*ESE?"), c.query("*SRE?")) == ("60", "36")
        c.send("*OPC\n")
        assert c.query("*ESR?") == "1"                    # OPC set, then cleared by the read
        c.send(":NO:SUCH:HEADER\n")                        # a command error
        stb = int(c.query("*STB?"))
        assert stb == 4 | 32 | 64, stb                     # EAV, ESB, MSS
        assert int(c.query("*ESR?")) == 32                 # CME
        assert c.query(":SYST:ERR?").startswith("-113,")
        assert c.query("*STB?") == "0"
        c.send("*ESE 0;*SRE 0;*WAI;*RST\n")
        assert c.query("*ESR?") == "0" and c.query(":SYST:ERR?") == '+0,"No error"'


@pytest.mark.parametrize("name", SCPI + TSP)
def test_error_queue_overflow_reports_350(mock, name):
    emu = mock.emulators[name]
    drain_errors(emu)
    probe = probe_for(emu)
    with client(mock, name) as c:
        c.send((probe.bad + "\n") * (ERROR_QUEUE_DEPTH + 5))
        assert probe.error_queued(c.query(probe.has_error))
        codes = [code for code, _ in list(emu.errors)]
    assert len(codes) == ERROR_QUEUE_DEPTH
    assert codes[-1] == -350 and -350 not in codes[:-1]
    drain_errors(emu)


@pytest.mark.parametrize("name", SCPI)
def test_non_ascii_bytes_are_an_error_answered_in_ascii(mock, name):
    emu = mock.emulators[name]
    drain_errors(emu)
    with client(mock, name) as c:
        c.send(":SOUR:VOLT 1\xb5V\n".encode("utf-8") + b"\xff\xfe:\x80?\n")
        first = c.query(":SYST:ERR?")                     # readline decodes ASCII: raises otherwise
        second = c.query(":SYST:ERR?")
        assert first.startswith("-") and second.startswith("-")
        assert "\\x" in first + second                    # the bytes are quoted as escapes
        assert c.query("*IDN?") == emu.idn                 # the connection lives on


@pytest.mark.parametrize("name", TSP)
def test_tsp_common_commands_and_non_ascii(mock, name):
    emu = mock.emulators[name]
    drain_errors(emu)
    with client(mock, name) as c:
        c.send("*CLS\n")
        assert c.query("*IDN?") == emu.idn and c.query("*OPC?") == "1" and c.query("*TST?") == "0"
        c.send("print(\xb5)\n".encode("utf-8"))
        reply = c.query("print(errorqueue.next())")
        assert reply.startswith("-2.85000e+02\t") and "\\x" in reply
        assert c.query("*STB?") == "0" and int(c.query("*ESR?")) == 16     # -285: execution error class
        assert c.query("print(localnode.model)") == emu.idn.split(",")[1].strip().replace("Model ", "")


def test_switch_board_answers_every_line(mock):
    with client(mock, "BOARD") as c:
        assert c.query("") == "ERR 101,Empty line"
        c.send(b"\xff\x00\n")
        assert c.readline() == "ERR 100,Unknown command \\xff\\x00"
        c.send(b"CONN A R\xb5\n")
        assert c.readline() == "ERR 103,Invalid pin 'R\\xb5'"
        c.send(b"x" * 2000 + b"\n")
        assert c.readline() == "ERR 104,Line too long (max 1024 characters)"
        assert c.query("*IDN?") == mock.emulators["BOARD"].idn


# ------------------------------------------------------------------------ server bounds
@pytest.mark.parametrize("name", ("K2450", "K2600"))
def test_overlong_line_is_discarded_and_reported_once(mock, name):
    emu = mock.emulators[name]
    drain_errors(emu)
    n0 = len(emu.log)
    with client(mock, name) as c:
        for _ in range(4):                        # 4 × 48 KiB without a newline, then one
            c.send(b"9" * 49152)
        c.send(b"\n*IDN?\n")
        assert c.readline() == emu.idn
        c.send(b"A" * (MAX_LINE + 1) + b"\n")      # a complete line one byte too long
        assert c.query("*IDN?") == emu.idn
        assert [code for code, _ in emu.errors] == [-363, -363]
    assert len(emu.log) - n0 == 2                 # only the two *IDN? were messages
    drain_errors(emu)


def test_log_is_bounded_and_counts_everything():
    log = MessageLog(keep=3, width=4)
    for k in range(10):
        log.append(f"message {k}")
    assert len(log) == 10 and list(log) == ["mess"] * 3
    assert log[8:] == ["mess", "mess"] and log[:7] == []
    with pytest.raises(IndexError):
        log[2]


def test_ascii_text():
    assert ascii_text("a\tb") == "a\tb"
    assert ascii_text("1 \xb5A\n") == "1 \\xb5A\\x0a"
    assert ascii_text("x\x00", printable=True) == "x\\x00"


def test_dead_connections_are_pruned_and_connections_bounded(mock):
    server = mock.servers["M707B"]
    assert server.wait_connections(0, timeout=120)        # a safety net: the server's thread prunes them
    for _ in range(3 * MAX_CONNECTIONS):
        with client(mock, "M707B") as c:
            c.send(b"print(localnode.model)\n")
            assert c.readline() == "707B"
    assert server.wait_connections(0, timeout=120), "closed connections are pruned"
    conns = [client(mock, "M707B") for _ in range(MAX_CONNECTIONS)]
    try:
        for c in conns:
            assert c.query("*IDN?") == mock.emulators["M707B"].idn
        extra = LineClient(server.port, timeout=0.5)
        extra.send("*IDN?\n")
        with pytest.raises(TimeoutError):
            extra.readline()                      # waits in the backlog: the server is full ...
        conns.pop().close()
        extra.sock.settimeout(MOCK_TIMEOUT_MS / 1000)
        assert extra.readline() == mock.emulators["M707B"].idn      # ... until a client leaves
        extra.close()
    finally:
        for c in conns:
            c.close()


def test_accepted_sockets_send_at_once(mock):
    """Nagle's algorithm is off on every accepted socket (TCP_NODELAY): a reply is not held back
    waiting for the client's acknowledgement of the previous one."""
    import socket

    server = mock.servers["K2450"]
    with client(mock, "K2450") as a, client(mock, "K2450") as b:
        assert a.query("*IDN?") == b.query("*IDN?")          # both accepted
        socks = [c.sock for c in list(server._clients.values())]
        assert len(socks) >= 2
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in socks)


@pytest.mark.parametrize("chunk", [1, 5, 13, 64, 4096, 1 << 20])
def test_lines_are_assembled_whatever_the_chunking(chunk):
    """The server cuts a byte stream into the same lines however the network splits it: lines up to
    the instrument's ``max_line`` as they are, longer ones (with or without a newline yet) as one
    over-long mark each, ``\\r\\n`` endings included."""
    import select
    import socket

    from mock_hw.emulators.base import EmulatedInstrument, InstrumentServer, _Connection

    emu = EmulatedInstrument("chunks")
    emu.max_line = 8
    server = InstrumentServer(emu)
    server.close()                                # its loop stopped: _receive is driven by hand
    stream = (b"*IDN?\n" + b"12345678\n" + b"123456789\n" + b"\n" + b"ab\r\n" + b"x" * 30 + b"\n"
              + b"12345678" + b"9" * 20 + b"\n" + b"tail\n" + b"y" * 20)
    expected = [b"*IDN?", b"12345678", None, b"", b"ab\r", None, None, b"tail", None]
    here, there = socket.socketpair()
    there.setblocking(False)
    conn = _Connection(there)
    try:
        for i in range(0, len(stream), chunk):
            here.sendall(stream[i:i + chunk])
            while select.select([there], [], [], 0)[0]:      # everything sent so far, read
                server._receive(conn)
        assert list(conn.lines) == expected
        assert conn.queued == sum(len(line) + 1 for line in expected if line is not None)
    finally:
        here.close()
        there.close()


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity")
                    or len(__import__("os").sched_getaffinity(0)) < 2, reason="needs Linux and two CPUs")
def test_the_server_thread_follows_its_client_to_its_cpu(mock):
    """Every FOLLOW_TURNS turns the server's thread moves to the CPU its client's lines were sent
    from (SO_INCOMING_CPU) if that is another one; its CPU set is left as it was (it is never left
    pinned to one CPU)."""
    import os
    import socket
    import threading

    from mock_hw.emulators.base import FOLLOW_TURNS, EmulatedInstrument, InstrumentServer, _Connection

    cpus = os.sched_getaffinity(0)
    first, second = sorted(cpus)[:2]
    server = InstrumentServer(EmulatedInstrument("follow"))
    server.close()                               # its loop stopped: _follow is called by hand
    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    conn = _Connection(accepted)

    def send_from(cpu):
        def run():
            os.sched_setaffinity(0, {cpu})
            sender.sendall(b"*IDN?\n")
        t = threading.Thread(target=run)
        t.start()
        t.join()
        assert accepted.recv(64) == b"*IDN?\n"

    server._cpu_now = lambda: first              # the thread that calls _follow runs on `first`
    try:
        send_from(first)
        server._follow(conn)
        assert server.moves == 0                 # the client is on the server's CPU already
        send_from(second)
        server._follow(conn)
        assert server.moves == 1                 # it was not: the server's thread moved to it
        assert os.sched_getaffinity(0) == cpus
        assert server._next_follow == server._turns + FOLLOW_TURNS
    finally:
        os.sched_setaffinity(0, cpus)
        for sock in (sender, accepted, listener):
            sock.close()
    # a real server: after many lock-step queries its thread may still run on every CPU
    live = mock.servers["B2200"]
    with client(mock, "B2200") as c:
        for _ in range(3 * FOLLOW_TURNS):
            assert c.query("*IDN?") == mock.emulators["B2200"].idn
    assert os.sched_getaffinity(live._thread.native_id) == cpus
    assert live.moves <= live._turns // FOLLOW_TURNS


def test_unread_replies_do_not_end_the_connection(mock):
    """A client that sends a burst of queries and reads the replies only afterwards gets them all
    (the server blocks on the full socket instead of dropping the client; it waits up to
    SEND_TIMEOUT_S for a reader)."""
    assert SEND_TIMEOUT_S >= 10
    emu = mock.emulators["B2900"]
    n = 40_000                                    # ~2 MB of replies: more than the socket buffers
    with client(mock, "B2900") as c:
        c.send(b"*IDN?\n" * n)
        assert all(c.readline() == emu.idn for _ in range(n))


def test_a_flooding_client_delays_another_by_one_turn(mock):
    """Client A has thousands of garbage lines queued when client B asks ``*IDN?``: B is answered
    after at most two turns of A's (the one in progress and one more: 2 x LINES_PER_TURN lines),
    and waits at most one turn from its line's arrival — counted in lines handled, not in time.
    The server is held at A's first line until B's query has reached B's server socket, so the
    order of events is fixed whatever the machine's speed."""
    import select
    import threading

    name = "K2450"
    emu, server = mock.emulators[name], mock.servers[name]
    handled: list[str] = []
    started, go = threading.Event(), threading.Event()
    process = emu.process

    def recording(message):             # runs in the server's thread
        handled.append(message)
        if len(handled) == 1:
            started.set()
            go.wait(30)
        return process(message)

    flood = b"".join(b":XBARLAB:GARBAGE%d\n" % k for k in range(3000))
    with client(mock, name) as a, client(mock, name) as b:
        assert a.query("*IDN?") == b.query("*IDN?") == emu.idn         # both connected
        b_there = next(c.sock for c in list(server._clients.values())
                       if c.sock.getpeername() == b.sock.getsockname())
        emu.process = recording
        server.max_wait_lines = 0
        try:
            a.send(flood + b"*IDN?\n")
            assert started.wait(30)                         # the server is in A's first turn
            b.send("*IDN?\n")
            assert select.select([b_there], [], [], 30)[0]   # B's query has reached the server
            go.set()
            assert b.readline() == emu.idn
            assert a.readline() == emu.idn                  # after A's whole flood
        finally:
            go.set()
            del emu.process                                  # the class's method again
    assert len(handled) == 3002 and handled[-1] == "*IDN?"
    a_before_b = handled.index("*IDN?")
    assert 0 < a_before_b <= 2 * LINES_PER_TURN, a_before_b
    assert 0 < server.max_wait_lines <= LINES_PER_TURN, server.max_wait_lines
    drain_errors(emu)


@pytest.mark.parametrize("name", ALL)
def test_rejected_input_leaves_no_cyclic_garbage(mock, name):
    """Rejected commands are freed as they are handled: none is left for the cyclic collector (whose
    full passes over a big heap paused every client for tens of ms during a garbage flood)."""
    import gc
    import random

    emu = mock.emulators[name]
    lines = bytes(random.Random(3).randbytes(20_000)).split(b"\n")
    lines += [b":XBARLAB:UNDEFINED;*IDN?;:SOUR:NOSUCH 1", b"print(1, nosuch)", b"CONN A R999", b"a;" * 200]
    # no garbage to start from: earlier tests' (e.g. a pyvisa ResourceManager), and what its finalizers
    # free during the collection (ResourceManager.__del__ closes its sessions: cyclic garbage made
    # after the pass, which a single collect left to be counted below: seen in a reversed-order run)
    assert any(gc.collect() == 0 for _ in range(10)), "garbage keeps appearing before the test"
    gc.disable()
    try:
        for line in lines:
            emu.process(line.decode("latin-1"))
        assert gc.collect() == 0
    finally:
        gc.enable()
        drain_errors(emu)


@pytest.mark.parametrize("name", SCPI + TSP)
def test_too_many_commands_in_one_message_are_refused_whole(mock, name):
    emu = mock.emulators[name]
    drain_errors(emu)
    assert emu.process(";".join(["*IDN?"] * MAX_COMMANDS)) != []          # the most accepted
    assert emu.process(";".join(["*IDN?"] * (MAX_COMMANDS + 1))) == []    # refused, nothing run
    assert [code for code, _ in emu.errors] == [-223]
    drain_errors(emu)


@pytest.mark.parametrize("name, query, setting", [
    ("K2450", ":SOUR:VOLT:LEV?", ":SOUR:VOLT:LEV {}"),
    ("K2600", "print(smua.source.levelv)", "smua.source.levelv = {}"),
])
def test_a_repeated_message_is_parsed_once_and_runs_every_time(mock, name, query, setting):
    """A short message's actions are kept and run again when it comes again: its reply follows the
    instrument's state, its error is queued each time; the memo is bounded whatever arrives, and a
    long message is parsed every time."""
    emu = mock.emulators[name]
    drain_errors(emu)
    parsed: list[str] = []
    parse = emu.parse
    emu.parse = lambda message: (parsed.append(message), parse(message))[1]
    try:
        for volts in (0.25, -0.5, 0.125):
            emu.process(setting.format(volts))
            assert float(emu.process(query)[0]) == volts
        assert parsed.count(query) == 1
        emu.process("xbarlab_nosuch_command")
        emu.process("xbarlab_nosuch_command")
        assert len(emu.errors) == 2 and parsed.count("xbarlab_nosuch_command") == 1
        for k in range(3 * PARSED_KEEP):
            emu.process(f"xbarlab_nosuch_{k}")
        assert 0 < len(emu._parsed) <= PARSED_KEEP
        long = setting.format("0." + "0" * PARSED_WIDTH + "1")
        emu.process(long)
        emu.process(long)
        assert parsed.count(long) == 2
    finally:
        del emu.parse                               # the class's method again
        with emu.lock:
            emu.reset()
        drain_errors(emu)


def test_bounded_argument_lists(mock):
    """A TSP print takes at most 250 values (Lua's register limit); a B2200 channel list names at
    most the matrix's channels; split_args stops after the parts its caller accepts."""
    k2600, b2200 = mock.emulators["K2600"], mock.emulators["B2200"]
    drain_errors(k2600)
    assert k2600.process("print(" + ",".join(["1"] * 250) + ")")[0].count("\t") == 249
    assert k2600.process("print(" + "1," * 30_000 + "1)") == []
    assert [code for code, _ in k2600.errors] == [-285] and "too complex" in k2600.errors[0][1]
    drain_errors(b2200)
    b2200.process(":ROUT:CLOS (@" + "10101:11412," * 2 + "10101)")
    assert [code for code, _ in b2200.errors] == [-223] and b2200.closed_channels() == []
    drain_errors(b2200)
    assert split_args("a, b ,c,d", limit=2) == ["a", "b", "c"]
    assert split_args('"x,y", (1,2), z', nesting=True, limit=1) == ['"x,y"', "(1,2)"]
    assert split_args(" ") == [] and split_args("a,") == ["a", ""]


# ------------------------------------------------------------------------------ fuzzing
FUZZ = settings(max_examples=12, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

VOCABULARY = st.sampled_from([
    b"*IDN?", b"*RST", b"*CLS", b"*ESR?", b"*STB?", b":SYST:ERR?", b":SOUR:VOLT 0.1", b":READ?",
    b":OUTP?", b"print(errorqueue.next())", b"print(smua.source.levelv)", b"smua.measure.i()",
    b"print(localnode.linefreq)", b"loadscript junk", b"endscript", b"channel.getclose(\"allslots\")",
    b"STATE?", b"ERR?", b"CONN A R0", b":CLOS? (@10101)", b";;;", b"", b"\r", b"\xff\xfe", b"\xc2\xb5",
    b"print(" + b"9" * 3000 + b")", b"smua.source.levelv = " + b"1" * 5000 + b"x",
])
GARBAGE = st.one_of(
    st.binary(max_size=4096),
    st.lists(VOCABULARY, max_size=60).map(b"\n".join),
    st.builds(lambda n, b: bytes([b]) * n, st.integers(MAX_LINE - 4, MAX_LINE + 4096),
              st.integers(0, 255)),
)


def _survives(mock, name, garbage: bytes) -> None:
    emu = mock.emulators[name]
    probe = probe_for(emu)
    drain_errors(emu)
    with client(mock, name) as c:
        c.send(garbage)
        # end any line (an over-long one included), then lines always rejected; then wait until
        # the server has handled everything (it closes after the end of the stream)
        c.send(b"\n" + probe.bad.encode() + b"\n")
        c.finish()
    with client(mock, name) as fresh:
        assert fresh.query(probe.idn) == emu.idn
        assert probe.error_queued(fresh.query(probe.has_error))
    with emu.lock:
        emu.reset()


@pytest.mark.parametrize("name", ALL)
@FUZZ
@given(garbage=GARBAGE)
def test_fuzz_every_port(mock, name, garbage):
    _survives(mock, name, garbage)


@pytest.mark.parametrize("name, text", [("K2600", "print(" + "9" * 60_000 + "x)"),
                                        ("K2600", "smua.source.levelv = " + "1" * 60_000 + "x"),
                                        ("K2450", ":SOUR:VOLT " + "1" * 60_000 + "x"),
                                        ("BOARD", "CONN A " + "R1," * 20_000)],
                         ids=["tsp-print", "tsp-assign", "scpi", "board"])
def test_parsing_never_takes_the_instrument_lock(mock, name, text):
    """Parsing runs without the lock: it completes while another thread holds it (the actions
    then run under the lock, one reported error)."""
    import threading

    emu = mock.emulators[name]
    held, release = threading.Event(), threading.Event()

    def holder():
        with emu.lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(30)
    parsed = []
    worker = threading.Thread(target=lambda: parsed.append(emu.parse(text)))
    worker.start()
    worker.join(30)
    finished = not worker.is_alive()
    release.set()
    t.join(30)
    worker.join(30)
    assert finished, "parse() waited for the instrument lock"
    assert len(parsed[0]) == 1
    drain_errors(emu)
    emu.process(text)
    assert len(emu.errors) == 1           # rejected as a whole, once
    drain_errors(emu)


def test_tsp_anonymous_script_is_refused_whole(mock):
    """QCoDeS's 2600 fast sweep sends `loadandrunscript` + Lua + `endscript` in one write: the
    emulator runs no Lua, so the script is refused as a whole — none of its lines (here one that
    would turn the output on) is executed on its own."""
    emu = mock.emulators["K2600"]
    drain_errors(emu)
    with client(mock, "K2600") as c:
        c.send("loadandrunscript\r\nsmua.source.output = 1\r\nfor i = 1, 3 do\r\nend\r\nendscript\n")
        assert c.query("print(smua.source.output)") == "0.00000e+00"
        reply = c.query("print(errorqueue.next())")
        assert reply.startswith("-2.86000e+02\t") and "anonymous script" in reply
        assert c.query("print(errorqueue.count)") == "0.00000e+00"


def test_frozen_heap_freezes_while_serving_only():
    """``xbar mock-bench`` serves with its start-up heap frozen out of the cyclic collector's reach,
    and gives it back when it stops (a process that goes on is left as it was)."""
    import gc

    from mock_hw.mock_bench import frozen_heap

    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() > 1000
    assert gc.get_freeze_count() == 0


def test_an_emulator_bug_does_not_end_the_server(mock):
    """An exception escaping the instrument (a bug) is queued as -300; the connection and the
    server's thread go on."""
    emu = mock.emulators["B2900"]
    drain_errors(emu)
    process = emu.process

    def buggy(message):
        if message == "XBARLAB_BUG":
            raise RuntimeError("a handler bug")
        return process(message)

    emu.process = buggy
    try:
        with client(mock, "B2900") as c:
            c.send("XBARLAB_BUG\n")
            assert c.query("*IDN?") == emu.idn
            assert c.query(":SYST:ERR?") == '-300,"Device-specific error: RuntimeError"'
    finally:
        del emu.process
