"""What every xbarlab driver shares: connection set-up and timeouts that name the culprit.

* :func:`adapter_for` builds a pymeasure adapter from a resource string: a VISA resource
  (``TCPIP::host::port::SOCKET`` gets both terminations set, as raw sockets need), a serial port
  name or a pyserial URL (``socket://host:port``, ``loop://``).
* :class:`TimeoutNamingMixin` (put it first in a driver's bases) turns a timeout — a VISA timeout or
  an empty read on a serial port — into :class:`~instruments.roles.InstrumentTimeout` naming the
  instrument and the command that got no answer.
"""
from __future__ import annotations

import contextlib
import re

from pymeasure.adapters import SerialAdapter, VISAAdapter

from .roles import InstrumentConnectionError, InstrumentError, InstrumentTimeout

DEFAULT_TIMEOUT_MS = 2000


def is_serial(resource: str) -> bool:
    r = resource.strip()
    return r.startswith(("socket://", "loop://", "rfc2217://", "/dev/", "COM")) or r.upper().startswith("ASRL")


def adapter_for(resource, timeout_ms: int = DEFAULT_TIMEOUT_MS, termination: str = "\n"):
    """A pymeasure adapter for ``resource`` (or ``resource`` itself if it is already an adapter)."""
    if not isinstance(resource, str):
        return resource
    if is_serial(resource) and not resource.upper().startswith("ASRL"):
        import serial

        conn = serial.serial_for_url(resource, timeout=timeout_ms / 1000, baudrate=115200)
        return SerialAdapter(conn, write_termination=termination, read_termination=termination)
    adapter = VISAAdapter(resource, visa_library="@py", read_termination=termination,
                          write_termination=termination, timeout=timeout_ms)
    if resource.upper().endswith("::SOCKET"):
        _tcp_no_delay(adapter.connection)
    return adapter


def _tcp_no_delay(resource) -> None:
    """Disable Nagle's algorithm: a command followed by a query otherwise waits for Nagle plus the
    peer's delayed ACK (~40 ms per exchange).  Only a speed setting: failure is harmless."""
    import socket

    import pyvisa.constants as c

    try:
        resource.set_visa_attribute(c.ResourceAttribute.tcpip_nodelay, c.VI_TRUE)
        return
    except Exception:  # noqa: BLE001 - pyvisa-py does not dispatch this attribute (yet)
        pass
    sock = getattr(getattr(resource.visalib, "sessions", {}).get(resource.session), "interface", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TimeoutNamingMixin:
    """Raise :class:`InstrumentTimeout` ("<name>: no reply to '<command>' within <t> s") and, for a
    dropped or refused connection (broken pipe, reset, a VISA "connection lost"),
    :class:`~instruments.roles.InstrumentConnectionError` naming the instrument, its resource and
    the command."""

    _last_command = ""
    #: the resource string the driver was opened on (set by the driver or the station's opener)
    resource_name = ""

    def write(self, command: str, **kwargs) -> None:
        self._last_command = command
        try:
            super().write(command, **kwargs)
        except Exception as exc:  # noqa: BLE001 - pyvisa VisaIOError or OSError from a dead socket
            if _is_timeout(exc) or not _is_connection_loss(exc):
                raise
            raise InstrumentConnectionError(self._connection_message("sending", command, exc)) from exc

    def read(self, **kwargs) -> str:
        try:
            reply = super().read(**kwargs)
        except Exception as exc:  # pyvisa VisaIOError (timeout) or OSError from a dead socket
            if _is_timeout(exc):
                raise InstrumentTimeout(self._timeout_message()) from exc
            if _is_connection_loss(exc):
                raise InstrumentConnectionError(self._connection_message("reading the reply to",
                                                                         self._last_command, exc)) from exc
            raise
        if reply == "" and isinstance(getattr(self, "adapter", None), SerialAdapter):
            raise InstrumentTimeout(self._timeout_message())
        return reply

    @contextlib.contextmanager
    def _timeout(self, seconds: float):
        """Temporarily set the read timeout of a VISA or serial adapter (others: unchanged)."""
        conn = getattr(self.adapter, "connection", None)
        old = getattr(conn, "timeout", None) if conn is not None else None
        if not isinstance(old, (int, float)):
            yield
            return
        visa = type(self.adapter).__name__ == "VISAAdapter"
        conn.timeout = seconds * 1000 if visa else seconds
        try:
            yield
        finally:
            conn.timeout = old

    def _timeout_message(self) -> str:
        return f"{getattr(self, 'name', type(self).__name__)}: no reply to {self._last_command!r} (timeout)"

    def _connection_message(self, doing: str, command: str, exc: Exception) -> str:
        name = getattr(self, "name", type(self).__name__)
        where = f" at {self.resource_name}" if self.resource_name else ""
        return f"{name}{where}: connection lost {doing} {command[:60]!r} ({short_reason(exc)})"


def short_reason(exc: BaseException) -> str:
    """A one-line cause: ``[Errno 32] Broken pipe`` -> ``Broken pipe``."""
    text = getattr(exc, "strerror", None) or getattr(exc, "description", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0][:160]


def _is_connection_loss(exc: BaseException) -> bool:
    """A socket/serial connection that is gone (not a timeout)."""
    if isinstance(exc, (BrokenPipeError, ConnectionError, EOFError)):
        return True
    try:
        import pyvisa

        if isinstance(exc, pyvisa.errors.VisaIOError):
            return exc.error_code in (pyvisa.constants.StatusCode.error_connection_lost,
                                      pyvisa.constants.StatusCode.error_io,
                                      pyvisa.constants.StatusCode.error_resource_not_found)
    except ImportError:  # pragma: no cover
        pass
    try:
        import serial

        if isinstance(exc, serial.SerialException):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, OSError) and not isinstance(exc, TimeoutError)


def _is_timeout(exc: Exception) -> bool:
    try:
        import pyvisa

        if isinstance(exc, pyvisa.errors.VisaIOError):
            return exc.error_code == pyvisa.constants.StatusCode.error_timeout
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, TimeoutError)


MAX_ERRORS = 100
_SCPI_ERROR = re.compile(r'^\s*([+-]?\d+)\s*,\s*"?(.*?)"?\s*$')


def parse_scpi_error(reply: str) -> tuple[int, str]:
    """``'-113,"Undefined header"'`` → (-113, 'Undefined header'); quotes optional
    (``'0,No error'``, the switch board's form); ValueError when unreadable."""
    m = _SCPI_ERROR.match(str(reply))
    if not m:
        raise ValueError(f"unreadable error reply {str(reply)[:60]!r}")
    return int(m.group(1)), m.group(2)


def parse_tsp_error(reply: str) -> tuple[int, str]:
    """``print(errorqueue.next())``: ``'-2.85000e+02\\tmessage\\tseverity\\tnode'`` → (code, message)."""
    fields = str(reply).strip().split("\t")
    if len(fields) < 2:
        raise ValueError(f"unreadable error reply {str(reply)[:60]!r}")
    return int(float(fields[0])), fields[1]


class ErrorQueueMixin:
    """``identity()`` and ``drain_errors()`` (the Identified role) for any driver.

    Subclasses set :attr:`error_query` and :attr:`parse_error_reply` for their dialect."""

    error_query = ":SYST:ERR:NEXT?"
    parse_error_reply = staticmethod(parse_scpi_error)

    def identity(self) -> str:
        return str(self.ask("*IDN?")).strip()

    def drain_errors(self) -> list[tuple[int, str]]:
        """Read the error queue until it reports code 0; [(code, message), ...]."""
        errors = []
        for _ in range(MAX_ERRORS):
            reply = str(self.ask(self.error_query)).strip()
            try:
                code, message = self.parse_error_reply(reply)
            except ValueError:
                raise InstrumentError(f"{self.name}: unexpected error-queue reply {reply[:60]!r}") from None
            if code == 0:
                return errors
            errors.append((code, message))
        raise InstrumentError(f"{self.name}: error queue still not empty after {MAX_ERRORS} reads")

    def check_errors(self) -> list:
        return self.drain_errors()


class LevelOutputMixin:
    """The SourceChannel level/output/measure methods for a channel that has the properties
    ``source_voltage`` (V), ``source_enabled`` (bool) and ``current`` (A) — pymeasure's names for
    them (``Keithley2400``/``Keithley2450``), shared by every xbarlab SMU driver."""

    def set_level(self, volts: float) -> None:
        """DC source level, V."""
        self.source_voltage = volts

    def enable(self) -> None:
        self.source_enabled = True

    def disable(self) -> None:
        """Level 0 V, then output off."""
        self.source_voltage = 0.0
        self.source_enabled = False

    def output_enabled(self) -> bool:
        return bool(self.source_enabled)

    def measure_current(self) -> float:
        """One current reading, A."""
        return float(self.current)


def channel_list_validator(model: str, pattern: re.Pattern, expected: str):
    """A pymeasure validator for a matrix's channel list: a comma-separated string or an iterable
    of channel names → the comma-separated string; ValueError names the first bad channel."""
    def validate(value, values=()):
        names = value.split(",") if isinstance(value, str) else [str(v) for v in value]
        names = [n.strip() for n in names]
        if not names or names == [""]:
            raise ValueError(f"{model} channel list is empty")
        for n in names:
            if not pattern.match(n):
                raise ValueError(f"invalid {model} channel {n!r} (expected {expected})")
        return ",".join(names)
    return validate


def on_off(value) -> str:
    """pymeasure set_process for SCPI booleans: True → ``ON``, False → ``OFF``."""
    return "ON" if value else "OFF"
