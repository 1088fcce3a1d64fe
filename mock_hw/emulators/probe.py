"""A raw-socket client for the emulators' servers (tests and benchmarks): no VISA, no driver.

:class:`LineClient` writes bytes and reads newline-terminated reply lines with a timeout (a reply
that never comes raises ``socket.timeout``: nothing here sleeps).  :data:`PROBES` gives, per kind
of emulator, the identification query, a query whose reply
says whether the queue holds an entry, and a line the instrument always rejects.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from .base import EmulatedInstrument
from .scpi import ScpiInstrument
from .switch_board import SwitchBoardEmulator
from .tsp import TspInstrument


class LineClient:
    """One TCP connection to ``127.0.0.1:port``."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode("ascii") if isinstance(data, str) else data)

    def readline(self) -> str:
        """The next reply line (terminator stripped), decoded as ASCII (a non-ASCII byte raises)."""
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the emulator closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("ascii")

    def finish(self) -> int:
        """Stop sending and read until the server closes: when this returns, every line sent has
        been handled.  Returns the number of reply bytes read."""
        self.sock.shutdown(socket.SHUT_WR)
        n = len(self._buf)
        self._buf = b""
        while chunk := self.sock.recv(65536):
            n += len(chunk)
        return n

    def query(self, text: str) -> str:
        self.send(text + "\n")
        return self.readline()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass(frozen=True)
class Probe:
    idn: str             # the identification query
    has_error: str       # a query whose reply tells whether the queue holds an entry
    bad: str             # lines the instrument always rejects (also while a TSP script is loading)

    def error_queued(self, reply: str) -> bool:
        """Whether ``reply`` to :attr:`has_error` says an entry is queued."""
        if self is PROBES["board"]:
            return not reply.startswith("0,")
        return float(reply) > 0


PROBES = {
    "scpi": Probe("*IDN?", ":SYST:ERR:COUN?", ":XBARLAB:UNDEFINED"),
    "tsp": Probe("*IDN?", "print(errorqueue.count)", "endscript\nxbarlab_undefined()"),
    "board": Probe("*IDN?", "ERR?", "XBARLAB_UNDEFINED"),
}


def probe_for(instrument: EmulatedInstrument) -> Probe:
    if isinstance(instrument, ScpiInstrument):
        return PROBES["scpi"]
    if isinstance(instrument, TspInstrument):
        return PROBES["tsp"]
    if isinstance(instrument, SwitchBoardEmulator):
        return PROBES["board"]
    raise TypeError(f"no probe for {type(instrument).__name__}")
