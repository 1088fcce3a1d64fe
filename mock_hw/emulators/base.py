"""Emulated instruments: message handling, error queues, fault injection and a loopback TCP server.

An :class:`EmulatedInstrument` turns one received message (a line of text, terminator stripped)
into zero or more reply lines.  It never evaluates received text as code: subclasses match
commands against tables of patterns (:mod:`.scpi`, :mod:`.tsp`) and call Python handlers.  Any
unknown or malformed command — and any exception a handler raises — becomes an entry in the
instrument's error queue, as on the real instrument; the emulator itself never crashes on input.

:class:`InstrumentServer` serves one instrument on ``127.0.0.1`` (never another interface) over TCP,
newline-terminated, as a VISA ``TCPIP::host::port::SOCKET`` resource or a pyserial
``socket://host:port`` URL expects.
"""
from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass


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


class EmulatedInstrument:
    """Base class: subclasses set :attr:`idn` and implement :meth:`execute`.

    :meth:`execute` gets one command (already split from a compound message) and returns a reply
    string or None; it raises :class:`CommandError` for the instrument's own errors.
    """

    idn = "xbarlab,Emulated instrument,0,0"
    #: error reported for a command no pattern matches: (code, message)
    unknown_command = (-113, "Undefined header")
    #: the text a query of the empty error queue returns
    no_error = '0,"No error"'

    def __init__(self, name: str):
        self.name = name
        self.errors: deque[tuple[int, str]] = deque(maxlen=64)
        self.faults = Faults()
        self.log: list[str] = []
        self.lock = threading.RLock()

    # ---------------------------------------------------------------------------- messages
    def split(self, message: str) -> list[str]:
        """Split a received message into commands (SCPI: on ';'); subclasses override."""
        return [message]

    def process(self, message: str) -> list[str]:
        """Handle one received message; returns the reply lines (possibly none)."""
        with self.lock:
            self.log.append(message)
            replies = []
            for command in self.split(message):
                command = command.strip()
                if not command:
                    continue
                try:
                    if self.faults.error_next > 0:
                        self.faults.error_next -= 1
                        raise CommandError(-300, "Device-specific error (injected)")
                    reply = self.execute(command)
                except CommandError as exc:
                    self.push_error(exc.code, exc.message)
                    continue
                except Exception as exc:  # a handler bug must not take the instrument down
                    self.push_error(-300, f"Device-specific error: {type(exc).__name__}: {exc}")
                    continue
                if reply is not None:
                    replies.append(str(reply))
            if replies and self.combine_replies():
                replies = [";".join(replies)]
            return self._apply_faults(replies)

    def combine_replies(self) -> bool:
        """SCPI joins the replies of a compound message with ';' into one line."""
        return True

    def _apply_faults(self, replies: list[str]) -> list[str]:
        if not replies:
            return replies
        if self.faults.latency_s:
            time.sleep(self.faults.latency_s)
        if self.faults.no_reply_next > 0:
            self.faults.no_reply_next -= 1
            return []
        if self.faults.garbled_next > 0:
            self.faults.garbled_next -= 1
            return ["\x15#?garbled?#"]
        return replies

    def execute(self, command: str) -> str | None:  # pragma: no cover - abstract
        raise CommandError(*self.unknown_command)

    # ------------------------------------------------------------------------------ errors
    def push_error(self, code: int, message: str) -> None:
        self.errors.append((int(code), message))

    def pop_error(self) -> tuple[int, str]:
        return self.errors.popleft() if self.errors else (0, "No error")


class InstrumentServer:
    """Serve an :class:`EmulatedInstrument` on 127.0.0.1:``port`` (0 = any free port).

    One thread accepts connections; each connection gets a thread that reads newline-terminated
    messages (``\\r`` is ignored) and writes each reply line followed by ``\\n``.
    """

    def __init__(self, instrument: EmulatedInstrument, port: int = 0):
        self.instrument = instrument
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(8)
        self._sock.settimeout(0.2)  # before the accept thread starts: close() may come at once
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self.replies = 0          # reply lines sent: one per round trip of a query
        self.busy_s = 0.0         # time spent processing messages (the "instrument" side), s
        self._accept = threading.Thread(target=self._serve, name=f"emu-{instrument.name}", daemon=True)
        self._accept.start()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(conn)
            t = threading.Thread(target=self._client, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _client(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(0.2)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.replace(b"\r", b"").decode("latin-1")
                    t0 = time.perf_counter()
                    replies = self.instrument.process(text)
                    self.busy_s += time.perf_counter() - t0
                    if replies:
                        self.replies += len(replies)
                        try:
                            conn.sendall("".join(r + "\n" for r in replies).encode("latin-1"))
                        except OSError:
                            return

    def close(self) -> None:
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accept.join(timeout=2)
