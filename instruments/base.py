"""What every xbarlab driver shares: connection set-up and timeouts that name the culprit.

* :func:`adapter_for` builds a pymeasure adapter from a resource string: a VISA resource
  (``TCPIP::host::port::SOCKET`` gets both terminations set, as raw sockets need), a serial port
  name or a pyserial URL (``socket://host:port``, ``loop://``).
* :class:`TimeoutNamingMixin` (put it first in a driver's bases) turns a timeout — a VISA timeout or
  an empty read on a serial port — into :class:`~instruments.roles.InstrumentTimeout` naming the
  instrument and the command that got no answer.
"""
from __future__ import annotations

from pymeasure.adapters import SerialAdapter, VISAAdapter

from .roles import InstrumentTimeout

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
    """Raise :class:`InstrumentTimeout` ("<name>: no reply to '<command>' within <t> s")."""

    _last_command = ""

    def write(self, command: str, **kwargs) -> None:
        self._last_command = command
        super().write(command, **kwargs)

    def read(self, **kwargs) -> str:
        try:
            reply = super().read(**kwargs)
        except Exception as exc:  # pyvisa VisaIOError (timeout) or OSError from a dead socket
            if _is_timeout(exc):
                raise InstrumentTimeout(self._timeout_message()) from exc
            raise
        if reply == "" and isinstance(getattr(self, "adapter", None), SerialAdapter):
            raise InstrumentTimeout(self._timeout_message())
        return reply

    def _timeout_message(self) -> str:
        return f"{getattr(self, 'name', type(self).__name__)}: no reply to {self._last_command!r} (timeout)"


def _is_timeout(exc: Exception) -> bool:
    try:
        import pyvisa

        if isinstance(exc, pyvisa.errors.VisaIOError):
            return exc.error_code == pyvisa.constants.StatusCode.error_timeout
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, TimeoutError)
