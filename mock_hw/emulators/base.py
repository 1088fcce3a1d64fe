"""Emulated instruments: message handling, error queues, fault injection and a loopback TCP server.

An :class:`EmulatedInstrument` turns one received message (a line of text, terminator stripped)
into zero or more reply lines.  It never evaluates received text as code: subclasses match
commands against tables of patterns (:mod:`.scpi`, :mod:`.tsp`) and call Python handlers.  Any
unknown or malformed command — and any exception a handler raises — becomes an entry in the
instrument's error queue, as on the real instrument; the emulator itself never crashes on input.

Handling a message has two phases: :meth:`EmulatedInstrument.parse` turns the text into actions
(pure, linear-time pattern matching, **without** the instrument lock), then the actions run under
:attr:`EmulatedInstrument.lock` (state changes and readings only).  So a client sending long or
pathological text never makes another client wait on the lock.

:class:`InstrumentServer` serves one instrument on ``127.0.0.1`` (never another interface) over TCP,
newline-terminated, as a VISA ``TCPIP::host::port::SOCKET`` resource or a pyserial
``socket://host:port`` URL expects.  Its memory is bounded by construction: a line longer than
the instrument's ``max_line`` (default :data:`MAX_LINE` bytes) is an error and is discarded as it arrives (also when no newline ever
comes), the message log keeps only the latest messages, finished connections are pruned, and at
most :data:`MAX_CONNECTIONS` are served at once.  Every reply is 7-bit ASCII.
"""
from __future__ import annotations

import os
import re
import select
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: longest accepted line, bytes (terminator excluded).  Real instruments' input buffers are of
#: this order; an emulator needs no more (the longest line xbarlab sends is a trigger-model
#: sweep list of a few kB)
MAX_LINE = 65536
#: connections served at once; further clients wait in the listen backlog until one leaves (real
#: LAN instruments allow a handful of sessions)
MAX_CONNECTIONS = 32
#: a client that does not read its replies for this long is disconnected, s
SEND_TIMEOUT_S = 30.0
#: a client is not read while this many bytes of its lines wait to be handled ...
READ_AHEAD = 131072
#: ... or this many bytes of replies wait to be sent (TCP flow control holds the rest)
OUT_AHEAD = 262144
#: lines of one client handled before the next client's turn ...
LINES_PER_TURN = 16
#: ... or once its turn has taken this long, s (whichever comes first; a turn handles at least one
#: line): a client whose lines are costly delays the others by one line plus this, not by 16 lines
TURN_S = 0.002
#: every this many turns (at the next turn of one line with no other client waiting: a lock-step
#: client) the server's thread checks on which CPU that client's line was sent (``SO_INCOMING_CPU``)
#: and, if on another than its own, moves there (and may run anywhere again at once): the client
#: and the server then wake each other on one CPU instead of across two, which on a virtual
#: machine costs both sides tens of microseconds per wake-up
FOLLOW_TURNS = 256
#: commands one message may hold (';'-separated); a message with more is refused whole with
#: :attr:`EmulatedInstrument.too_much_error`, nothing of it run.  An emulator bound on the work one
#: line can cause (drivers send a few; xbarlab's longest, the 2600B pulse set-up, ~20)
MAX_COMMANDS = 128
#: error-queue depth (the 2450, 2600B and B2900 keep tens of entries; the SCPI standard, 1999,
#: vol. 2 §21.8, requires at least two, the last being -350 on overflow)
ERROR_QUEUE_DEPTH = 64
#: the log keeps this many latest messages, each cut to LOG_WIDTH characters
LOG_KEEP, LOG_WIDTH = 2048, 256
#: an instrument remembers the actions of up to PARSED_KEEP messages of at most PARSED_WIDTH
#: characters (emptied when full: bounded whatever arrives): a driver repeats a few messages
#: (``*IDN?``, ``:MEAS:CURR?``, ``print(smua.measure.i())``), which are then parsed once
PARSED_KEEP, PARSED_WIDTH = 256, 128


#: Standard Event Status Register bits (IEEE 488.2-1992 §11.5.1)
ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME, ESR_PON = 1, 4, 8, 16, 32, 128
#: Status Byte bits (IEEE 488.2 §11.2; SCPI 1999 vol. 1 §9: bit 2 = error/event queue not empty)
STB_EAV, STB_ESB, STB_MSS = 4, 32, 64


def esr_bit(code: int) -> int:
    """The event-status bit an error sets: SCPI error classes -1xx command, -2xx execution,
    -3xx (and instrument-specific positive codes) device-dependent, -4xx query."""
    if -199 <= code <= -100:
        return ESR_CME
    if -299 <= code <= -200:
        return ESR_EXE
    if -499 <= code <= -400:
        return ESR_QYE
    return ESR_DDE


class CommandError(Exception):
    """A command the instrument rejects; ``code`` is the instrument's own error number."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Faults:
    """Fault injection, set by tests.  Each ``*_next`` counter applies to that many replies."""

    no_reply_next: int = 0          # swallow replies (the client times out)
    garbled_next: int = 0           # reply with garbage instead
    error_next: int = 0             # the next commands fail with an instrument error
    latency_s: float = 0.0          # added before every reply
    delay_s: float = 0.0            # added before every message is handled (its writes take effect late)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n]")


def _hex(m: re.Match) -> str:
    return f"\\x{ord(m.group()):02x}"


def ascii_text(text: str, printable: bool = False) -> str:
    """``text`` as 7-bit ASCII without line breaks: non-ASCII characters, ``\\n`` and ``\\r`` (and
    with ``printable``, every control character) become ``\\xNN`` (``\\uNNNN``) escapes — so an
    error message quoting received bytes stays a valid IEEE 488.2 reply of one line."""
    if not text.isascii():
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    if printable:
        return text if text.isprintable() else _CONTROL.sub(_hex, text)
    return _LINE_BREAK.sub(_hex, text) if ("\n" in text or "\r" in text) else text


_ARG_MARKS = re.compile(r"[\"',]")
_ARG_MARKS_NESTING = re.compile(r"[\"',(){}\[\]]")
_BRACKETS = frozenset("(){}[]")


def split_args(text: str, nesting: bool = False, limit: int | None = None) -> list[str]:
    """An argument list split on the commas outside quotes (and with ``nesting``, outside
    ``()``, ``{}``, ``[]``), each part stripped; one pass, linear time.  Empty text -> [].
    With ``limit``, splitting stops after ``limit + 1`` parts (the caller refuses so many): the
    work is then bounded by the parts it needs, not by the text's length."""
    if "\"" not in text and "'" not in text and not (nesting and not _BRACKETS.isdisjoint(text)):
        pieces = text.split(",", limit) if limit is not None else text.split(",")   # no quotes: C speed
        if len(pieces) == 1 and not pieces[0].strip():
            return []
        if limit is not None and len(pieces) > limit:
            pieces[limit] = pieces[limit].split(",", 1)[0]
        return [piece.strip() for piece in pieces]
    parts, depth, quote, start = [], 0, None, 0
    for m in (_ARG_MARKS_NESTING if nesting else _ARG_MARKS).finditer(text):
        ch = m.group()
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif depth == 0:                  # a comma outside quotes and brackets
            i = m.start()
            parts.append(text[start:i].strip())
            start = i + 1
            if limit is not None and len(parts) > limit:
                return parts
    last = text[start:].strip()
    if parts or last:
        parts.append(last)
    return parts


class MessageLog:
    """The latest :data:`LOG_KEEP` received messages (each cut to :data:`LOG_WIDTH` characters).

    ``len(log)`` counts every message ever received; ``log[n:]`` is the retained messages from the
    ``n``-th received on (older ones are gone); iterating gives the retained ones."""

    def __init__(self, keep: int = LOG_KEEP, width: int = LOG_WIDTH):
        self._items: deque[str] = deque(maxlen=keep)
        self._width = width
        self.count = 0

    def append(self, message: str) -> None:
        self._items.append(message[: self._width])
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return iter(list(self._items))

    def __getitem__(self, index):
        first = self.count - len(self._items)     # number of the oldest retained message
        items = list(self._items)
        if isinstance(index, slice):
            if index.step not in (None, 1):
                raise ValueError("MessageLog slices take no step")
            start, stop, _ = index.indices(self.count)
            return items[max(start - first, 0): max(stop - first, 0)]
        i = index + self.count if index < 0 else index
        if not first <= i < self.count:
            raise IndexError(f"message {index} is not retained (the log keeps the latest {len(items)})")
        return items[i - first]


Action = Callable[[], "str | None"]


def failing(error: CommandError) -> Action:
    """An action that reports ``error`` when it runs (a parse error keeps its place in the order).

    It raises a new exception each time and keeps no reference to ``error``: a caught exception
    holds its traceback, whose frames hold the action list, so keeping it would make a reference
    cycle per rejected command — garbage only the cyclic collector frees, in pauses that grow
    with the process's heap (a garbage flood then triggered 15-100 ms full collections)."""
    code, message = error.code, error.message

    def action():
        raise CommandError(code, message)
    return action


class EmulatedInstrument:
    """Base class: subclasses set :attr:`idn` and implement :meth:`compile` (parse one command into
    an action) or :meth:`execute` (parse and run in one go, under the lock).

    An action takes no argument, runs under :attr:`lock`, returns a reply string or None and raises
    :class:`CommandError` for the instrument's own errors.
    """

    idn = "xbarlab,Emulated instrument,0,0"
    #: error reported for a command no pattern matches: (code, message)
    unknown_command = (-113, "Undefined header")
    #: error reported for a line longer than MAX_LINE (SCPI -363 "Input buffer overrun")
    overlong_error = (-363, "Input buffer overrun")
    #: error reported for a message of more than MAX_COMMANDS commands (SCPI -223 "Too much data")
    too_much_error = (-223, "Too much data")
    #: the entry that replaces the newest when the queue is full (SCPI -350 "Queue overflow")
    overflow_error = (-350, "Queue overflow")
    #: the text a query of the empty error queue returns
    no_error = '0,"No error"'
    #: longest line accepted, bytes (terminator excluded); longer ones are discarded as they arrive
    max_line = MAX_LINE

    def __init__(self, name: str):
        self.name = name
        self.errors: deque[tuple[int, str]] = deque()
        self.faults = Faults()
        self.log = MessageLog()
        self._parsed: dict[str, list[Action]] = {}     # message -> its actions (see PARSED_KEEP)
        self.lock = threading.RLock()
        self.esr = ESR_PON      # IEEE 488.2 status: event status register (power on)
        self.ese = 0            # its enable register
        self.sre = 0            # the service request enable register

    # ---------------------------------------------------------------------------- messages
    def split(self, message: str) -> list[str]:
        """Split a received message into commands (SCPI: on ';'); subclasses override."""
        return [message]

    def parse(self, message: str) -> list[Action]:
        """The actions of one message (no lock held: pattern matching only, linear time).

        Parsing is pure: the actions depend on the text only (never on the instrument's state,
        which they read when they run), and running them leaves them as they were — so
        :meth:`process` runs a repeated message's actions again instead of parsing it again."""
        commands = self.split(message)
        if len(commands) > MAX_COMMANDS:
            code, text = self.too_much_error
            return [failing(CommandError(code, f"{text}: more than {MAX_COMMANDS} commands in one message"))]
        actions = []
        for command in commands:
            command = command.strip()
            if not command:
                continue
            try:
                actions.append(self.compile(command))
            except CommandError as exc:
                actions.append(failing(exc))
            except Exception as exc:  # a parser bug must not take the instrument down
                actions.append(failing(CommandError(-300, f"Device-specific error: {type(exc).__name__}")))
        return actions

    def compile(self, command: str) -> Action:
        """One command -> its action.  The default runs :meth:`execute` under the lock."""
        return lambda: self.execute(command)

    def bind(self, message: str, actions: list[Action]) -> list[Action]:
        """Under the lock, before running: subclasses whose parsing depends on state (a TSP
        script being loaded) replace the actions here."""
        return actions

    def process(self, message: str) -> list[str]:
        """Handle one received message; returns the reply lines (possibly none), 7-bit ASCII."""
        faults = self.faults
        if faults.delay_s:
            time.sleep(faults.delay_s)
        parsed = self._parsed.get(message)
        if parsed is None:
            parsed = self.parse(message)
            if len(message) <= PARSED_WIDTH:
                if len(self._parsed) >= PARSED_KEEP:
                    self._parsed.clear()
                self._parsed[message] = parsed
        delay = 0.0
        with self.lock:
            self.log.append(message)
            replies = []
            for action in self.bind(message, parsed):
                try:
                    if faults.error_next > 0:
                        faults.error_next -= 1
                        raise CommandError(-300, "Device-specific error (injected)")
                    reply = action()
                except CommandError as exc:
                    self.push_error(exc.code, exc.message)
                    continue
                except Exception as exc:  # a handler bug must not take the instrument down
                    self.push_error(-300, f"Device-specific error: {type(exc).__name__}: {exc}")
                    continue
                if reply is not None:
                    replies.append(reply if reply.__class__ is str else str(reply))
            if replies:
                if len(replies) > 1 and self.combine_replies():
                    replies = [";".join(replies)]
                if faults.no_reply_next > 0 or faults.garbled_next > 0 or faults.latency_s:
                    replies, delay = self._apply_faults(replies)
        if delay:
            time.sleep(delay)
        if len(replies) == 1:
            return [ascii_text(replies[0])]
        return [ascii_text(r) for r in replies]

    def overlong_line(self, length: int) -> list[str]:
        """A line longer than :attr:`max_line` arrived (and was discarded): queue the error;
        returns the reply lines (none for SCPI / TSP instruments)."""
        with self.lock:
            self.push_error(self.overlong_error[0], f"{self.overlong_error[1]}: line longer than {self.max_line} bytes")
        return []

    def combine_replies(self) -> bool:
        """SCPI joins the replies of a compound message with ';' into one line."""
        return True

    def _apply_faults(self, replies: list[str]) -> tuple[list[str], float]:
        if not replies:
            return replies, 0.0
        if self.faults.no_reply_next > 0:
            self.faults.no_reply_next -= 1
            return [], self.faults.latency_s
        if self.faults.garbled_next > 0:
            self.faults.garbled_next -= 1
            return ["\x15#?garbled?#"], self.faults.latency_s
        return replies, self.faults.latency_s

    def reset(self) -> None:
        """The instrument's reset: subclasses restore their defaults (outputs off, relays open)."""

    def execute(self, command: str) -> str | None:  # pragma: no cover - abstract
        raise CommandError(*self.unknown_command)

    # ------------------------------------------------------------------------------ errors
    def push_error(self, code: int, message: str) -> None:
        """Queue an error; a full queue keeps its entries and its newest becomes :attr:`overflow_error`."""
        entry = (int(code), ascii_text(message, printable=True))
        if len(self.errors) >= ERROR_QUEUE_DEPTH:
            self.errors[-1] = self.overflow_error
        else:
            self.errors.append(entry)
        self.esr |= esr_bit(self.errors[-1][0])

    def pop_error(self) -> tuple[int, str]:
        return self.errors.popleft() if self.errors else (0, "No error")

    # ----------------------------------------------------------- IEEE 488.2 status reporting
    def clear_status(self) -> None:
        """``*CLS``: empty the error queue and the event status register."""
        self.errors.clear()
        self.esr = 0

    def status_byte(self) -> int:
        """``*STB?``: bit 2 error queue not empty, bit 5 ESB (ESR & ESE), bit 6 MSS (STB & SRE)."""
        stb = (STB_EAV if self.errors else 0) | (STB_ESB if self.esr & self.ese else 0)
        return stb | (STB_MSS if stb & self.sre & ~STB_MSS else 0)

    def read_esr(self) -> int:
        """``*ESR?``: the event status register, which the read clears."""
        value, self.esr = self.esr, 0
        return value

    def set_register(self, name: str, value: int) -> None:
        """``*ESE`` / ``*SRE`` (0..255; the SRE's bit 6 is ignored, IEEE 488.2 §11.3.2.3)."""
        if not 0 <= value <= 255:
            raise CommandError(-222, f"Data out of range: {name.upper()} {value}")
        setattr(self, name, value & ~STB_MSS if name == "sre" else value)


if hasattr(select, "epoll"):
    _IN, _OUT = select.EPOLLIN, select.EPOLLOUT
    _Poller = select.epoll
else:   # pragma: no cover - platforms without epoll (the CI runs Linux)
    _IN, _OUT = 1, 4

    class _Poller:
        """:class:`select.epoll`'s interface (file numbers, EPOLLIN / EPOLLOUT masks) over
        :mod:`selectors`, where the platform has no epoll."""

        def __init__(self):
            self._selector = selectors.DefaultSelector()

        @staticmethod
        def _events(mask: int) -> int:
            return (selectors.EVENT_READ if mask & _IN else 0) | (selectors.EVENT_WRITE if mask & _OUT else 0)

        def register(self, fd: int, mask: int) -> None:
            self._selector.register(fd, self._events(mask))

        def modify(self, fd: int, mask: int) -> None:
            self._selector.modify(fd, self._events(mask))

        def unregister(self, fd: int) -> None:
            self._selector.unregister(fd)

        def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
            return [(key.fd, (_IN if ev & selectors.EVENT_READ else 0) | (_OUT if ev & selectors.EVENT_WRITE else 0))
                    for key, ev in self._selector.select(timeout)]

        def close(self) -> None:
            self._selector.close()


#: SO_INCOMING_CPU (Linux 3.19; Python names it from 3.11 on); FOLLOW_TURNS needs it and /proc
_SO_INCOMING_CPU = getattr(socket, "SO_INCOMING_CPU", 49)
_FOLLOW = sys.platform.startswith("linux") and hasattr(os, "sched_setaffinity")


class _Connection:
    """One client of an :class:`InstrumentServer`: its partial line, queued lines and unsent replies."""

    __slots__ = ("sock", "fd", "pending", "discarding", "lines", "queued", "out", "eof", "stalled_since",
                 "events", "since")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.fd = sock.fileno()
        self.pending = bytearray()      # the start of a line whose newline has not come yet
        self.discarding = False         # inside an over-long line: drop bytes up to its newline
        self.lines: deque = deque()     # complete lines to handle (None = an over-long line), in order
        self.queued = 0                 # bytes in ``lines``
        self.out = bytearray()          # replies not yet sent
        self.eof = False                # the client has finished sending
        self.stalled_since = None       # when replies began to wait on a client that does not read
        self.events = _IN               # what the poller waits for on this socket (EPOLLIN / EPOLLOUT)
        self.since = 0                  # server's lines handled when the first queued line began to wait


class InstrumentServer:
    """Serve an :class:`EmulatedInstrument` on 127.0.0.1:``port`` (0 = any free port).

    One thread runs an event loop (:func:`select.epoll`; :mod:`selectors` where there is none) over
    the listening socket and every client:
    it reads newline-terminated messages (``\\r`` is ignored), hands them to the instrument one at
    a time, and writes each reply line followed by ``\\n``.  Clients with lines to handle are served
    in turn (round robin), each turn at most :data:`LINES_PER_TURN` lines and at most
    :data:`TURN_S` (a turn handles at least one line; one message's work is bounded by
    :data:`MAX_LINE` and :data:`MAX_COMMANDS`), so a client pipelining thousands of commands or
    flooding garbage delays another client's query by one turn, not by its whole burst.
    :attr:`max_wait_lines` records the most lines of other clients handled while a client's line
    waited (the fairness bound, in lines: at most ``LINES_PER_TURN`` per other busy client).

    Bounded by construction: a line longer than the instrument's ``max_line`` is discarded as it
    arrives (with or without a newline) and reported once through
    :meth:`EmulatedInstrument.overlong_line`; a client is not read while :data:`READ_AHEAD` bytes
    of its lines wait to be handled or :data:`OUT_AHEAD` bytes of replies wait to be sent (TCP
    flow control holds the rest in the client); at most :data:`MAX_CONNECTIONS` clients at once
    (the next waits, connected, in the listen backlog until one leaves).
    Received bytes are decoded as Latin-1 (nothing received can fail to decode); replies are 7-bit
    ASCII.  A client whose replies make no progress for :data:`SEND_TIMEOUT_S` is disconnected;
    nothing a client sends ends its connection or the server.  A client that shuts down its
    sending side still gets the replies to everything it sent, then the server closes.

    Accepted sockets have Nagle's algorithm off (``TCP_NODELAY``): a reply goes out at once, in one
    segment, instead of waiting for the client's acknowledgement of the previous one.  Per
    lock-step query the loop makes three system calls (wait, receive, send: the turn's replies
    leave in one ``send``), changes a socket's registration only when what it waits for changes,
    and reads the clock twice (the turn's time limit).  Every :data:`FOLLOW_TURNS` turns its thread
    moves to the CPU a lock-step client sends from, if that is another one (:meth:`_follow`): lock-step
    round trips then wake both sides on one CPU (measured on the 2-vCPU CI VM: 9 + 5 us of server and
    client CPU per query on one CPU, 55 + 42 us across two; a bare echo server 4.5 + 4.5 us vs 43 + 43).
    """

    def __init__(self, instrument: EmulatedInstrument, port: int = 0):
        self.instrument = instrument
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(socket.SOMAXCONN)
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._poller = _Poller()
        self._listen_fd, self._wake_fd = self._sock.fileno(), self._wake_r.fileno()
        self._poller.register(self._listen_fd, _IN)
        self._poller.register(self._wake_fd, _IN)
        self._clients: dict[socket.socket, _Connection] = {}
        self._by_fd: dict[int, _Connection] = {}
        # clients with lines to handle, in the order of their next turn (a dict as an ordered set)
        self._busy: dict[_Connection, None] = {}
        # clients with replies waiting to be sent (checked once a second for SEND_TIMEOUT_S)
        self._unsent: set[_Connection] = set()
        self._listening = True
        self._count = threading.Condition()
        self.connections = 0      # connections accepted in all
        self.dropped = 0          # clients disconnected for not reading their replies
        self.replies = 0          # reply lines sent: one per round trip of a query
        self.busy_s = 0.0         # time spent processing messages (the "instrument" side), s
        self.handled = 0          # lines handled in all (over-long ones included)
        self.max_wait_lines = 0   # most lines of other clients handled while one client's line waited
        self.moves = 0            # times the server's thread moved to its client's CPU (FOLLOW_TURNS)
        self._turns = 0
        self._next_follow = FOLLOW_TURNS if _FOLLOW else float("inf")
        self._thread = threading.Thread(target=self._run, name=f"emu-{instrument.name}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def open_connections(self) -> int:
        with self._count:
            return len(self._clients)

    def wait_connections(self, at_most: int, timeout: float) -> bool:
        """Block until at most ``at_most`` connections are open (woken by each one that ends), or
        ``timeout`` s pass; returns whether the count got there."""
        with self._count:
            return self._count.wait_for(lambda: len(self._clients) <= at_most, timeout)

    # -------------------------------------------------------------------------- event loop
    def _run(self) -> None:
        poll, by_fd, busy, unsent = self._poller.poll, self._by_fd, self._busy, self._unsent
        stopping, monotonic = self._stop.is_set, time.monotonic
        sweep = monotonic()
        while not stopping():
            for fd, ev in poll(0 if busy else (1.0 if unsent else None)):
                conn = by_fd.get(fd)
                if conn is not None:
                    # what the socket is registered for, of what it reports (a hang-up or an error
                    # is both: the receive or the send then finds out)
                    if ev & ~_IN and conn.events & _OUT:
                        self._flush(conn)
                    if ev & ~_OUT and conn.events & _IN and conn.fd in by_fd:
                        self._receive(conn)
                    if conn not in busy and conn.fd in by_fd:      # (a busy one is settled after its turn)
                        self._settle(conn)
                elif fd == self._wake_fd:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                elif fd == self._listen_fd:
                    self._accept()
            for conn in list(busy):
                self._serve_turn(conn)
                if conn.fd in by_fd:
                    self._settle(conn)
            if unsent and monotonic() - sweep > 1.0:
                # clients not reading their replies are checked once a second (SEND_TIMEOUT_S)
                sweep = monotonic()
                for conn in list(unsent):
                    self._settle(conn)
        for conn in list(self._clients.values()):
            self._drop(conn)

    def _accept(self) -> None:
        while len(self._clients) < MAX_CONNECTIONS:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.connections += 1
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock)
            with self._count:
                self._clients[sock] = conn
            self._by_fd[conn.fd] = conn
            self._poller.register(conn.fd, conn.events)
        # full: further clients wait in the listen backlog until one leaves
        self._poller.unregister(self._listen_fd)
        self._listening = False

    def _receive(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            conn.eof = True
            return
        lines = conn.lines
        if not lines:
            conn.since = self.handled
        limit = self.instrument.max_line
        parts = data.split(b"\n")
        tail = parts.pop()
        if parts and not conn.pending and not conn.discarding and (len(data) <= limit or max(map(len, parts)) <= limit):
            lines.extend(parts)                  # complete lines, none over-long: the usual case
            conn.queued += len(data) - len(tail)
        else:
            for part in parts:
                if conn.discarding:
                    conn.discarding = False      # the end of an over-long line, already reported
                    conn.pending.clear()
                    continue
                if conn.pending:
                    if len(conn.pending) + len(part) > limit:
                        conn.pending.clear()
                        lines.append(None)
                        continue
                    part = bytes(conn.pending) + part
                    conn.pending.clear()
                elif len(part) > limit:
                    lines.append(None)
                    continue
                lines.append(part)
                conn.queued += len(part) + 1
        if tail and not conn.discarding:
            if len(conn.pending) + len(tail) > limit:
                conn.pending.clear()
                conn.discarding = True
                lines.append(None)
            else:
                conn.pending += tail
        if lines:
            self._busy[conn] = None

    def _serve_turn(self, conn: _Connection) -> None:
        """Handle the client's next lines: up to LINES_PER_TURN, for up to TURN_S (at least one),
        while its replies are not piling up.  Then the client goes to the end of the order."""
        self._busy.pop(conn, None)
        lines, out, instrument = conn.lines, [], self.instrument
        process = instrument.process
        wait = self.handled - conn.since
        if wait > self.max_wait_lines:
            self.max_wait_lines = wait
        clock = time.perf_counter
        t0 = clock()
        end = t0 + TURN_S
        n, t1 = 0, t0
        while lines and len(conn.out) <= OUT_AHEAD:
            line = lines.popleft()
            n += 1
            try:
                if line is None:
                    out += instrument.overlong_line(instrument.max_line + 1)
                else:
                    conn.queued -= len(line) + 1
                    out += process((line.replace(b"\r", b"") if b"\r" in line else line).decode("latin-1"))
            except Exception as exc:     # an emulator bug must not end the server's thread
                with instrument.lock:
                    instrument.push_error(-300, f"Device-specific error: {type(exc).__name__}")
            t1 = clock()
            if n >= LINES_PER_TURN or t1 > end:
                break
        self.busy_s += t1 - t0
        self.handled += n
        if lines:
            conn.since = self.handled
            if len(conn.out) <= OUT_AHEAD:
                self._busy[conn] = None       # the next turn after every other busy client's
        self._turns += 1
        if self._turns >= self._next_follow and n == 1 and not self._busy:
            self._follow(conn)          # a lock-step client, alone: worth a move (a flood is not)
        if out:
            self.replies += len(out)
            data = (out[0] + "\n" if len(out) == 1 else "\n".join(out) + "\n").encode("ascii", "backslashreplace")
            if conn.out:
                conn.out += data
                self._flush(conn)
            else:
                self._send(conn, data)

    def _follow(self, conn: _Connection) -> None:
        """Move the server's thread to the CPU the client's lines were last sent from, if that is
        another one; its CPU set is left as it was (the scheduler may move it again).  Where the
        system cannot tell (no ``SO_INCOMING_CPU``, no ``/proc``, a fixed CPU set), never again."""
        self._next_follow = self._turns + FOLLOW_TURNS
        try:
            there = conn.sock.getsockopt(socket.SOL_SOCKET, _SO_INCOMING_CPU)
            if there == self._cpu_now():
                return
            cpus = os.sched_getaffinity(0)
            if there not in cpus:
                return
            try:
                os.sched_setaffinity(0, {there})    # the move ...
            finally:
                os.sched_setaffinity(0, cpus)       # ... and free to run anywhere again
            self.moves += 1
        except (OSError, ValueError, IndexError, AttributeError):
            self._next_follow = float("inf")

    @staticmethod
    def _cpu_now() -> int:
        """The CPU the calling thread runs on (field 39 of its /proc stat)."""
        with open("/proc/thread-self/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[36])

    def _send(self, conn: _Connection, data: bytes) -> None:
        """Send the turn's replies to a client that has none waiting: one ``send``; what the socket
        does not take waits in ``conn.out``."""
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(conn)
            return
        if sent < len(data):
            conn.out += data[sent:]
            conn.stalled_since = time.monotonic()
            self._unsent.add(conn)

    def _flush(self, conn: _Connection) -> None:
        if not conn.out:
            return
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(conn)
            return
        if sent == len(conn.out):
            conn.out.clear()
            conn.stalled_since = None
            self._unsent.discard(conn)
        else:
            self._unsent.add(conn)
            if sent:
                del conn.out[:sent]
                conn.stalled_since = time.monotonic()    # progress: the wait restarts
            elif conn.stalled_since is None:
                conn.stalled_since = time.monotonic()
        if not conn.out and conn.lines and conn not in self._busy:
            conn.since = self.handled    # its replies had piled up: its lines wait for a turn again
            self._busy[conn] = None

    def _settle(self, conn: _Connection) -> None:
        """Choose what to wait for on this client; close it when it is done or stalled too long."""
        if conn.out:
            if conn.stalled_since is not None and time.monotonic() - conn.stalled_since > SEND_TIMEOUT_S:
                self.dropped += 1
                self._drop(conn)
                return
        elif conn.eof and not conn.lines:
            self._drop(conn)
            return
        events = _IN if not conn.eof and conn.queued < READ_AHEAD and len(conn.out) <= OUT_AHEAD else 0
        if conn.out:
            events |= _OUT
        if events == 0:
            # not read until its queued lines are handled (the loop is busy with them meanwhile):
            # a registration needs some event, and an idle socket is writable
            events = _OUT
        if conn.events != events:
            conn.events = events
            self._poller.modify(conn.fd, events)

    def _drop(self, conn: _Connection) -> None:
        self._busy.pop(conn, None)
        self._unsent.discard(conn)
        if self._by_fd.pop(conn.fd, None) is not None:
            try:
                self._poller.unregister(conn.fd)
            except (KeyError, ValueError, OSError):
                pass
        conn.fd = -1                    # closed (its number may be reused by the next client)
        try:
            conn.sock.close()
        except OSError:
            pass
        with self._count:
            self._clients.pop(conn.sock, None)
            self._count.notify_all()
        if not self._listening and len(self._clients) < MAX_CONNECTIONS and not self._stop.is_set():
            self._poller.register(self._listen_fd, _IN)
            self._listening = True

    def close(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(timeout=5)
        for sock in (self._sock, self._wake_r, self._wake_w):
            try:
                sock.close()
            except OSError:
                pass
        self._poller.close()
