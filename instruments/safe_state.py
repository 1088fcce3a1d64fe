"""The bench's safe-state sequence and what it confirmed.

Every exception, abort, Ctrl-C or SIGTERM ends with this sequence (outputs off, then relays open,
each confirmed by querying the instrument).  Three properties make it trustworthy:

* **not interruptible** — :func:`deferred_signals` holds SIGINT and SIGTERM while it runs and
  delivers them afterwards (a second Ctrl-C 0.05 s after the first once left eight relays
  closed while the message claimed "relays open");
* **bounded in time** — an instrument whose connection is lost or that timed out is not asked
  again, and no step starts after :data:`SAFE_STATE_BUDGET_S`;
* **honest** — :class:`SafeStateReport` lists what was queried and confirmed and names what
  could not be confirmed, with the reason ("could not confirm smu outputs off: connection lost").
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from .roles import InstrumentConnectionError, InstrumentTimeout

#: longest the safe-state sequence keeps starting steps, s: a few instrument timeouts (2–5 s each
#: in the sample station files) on a bench whose instruments all stopped answering
SAFE_STATE_BUDGET_S = 30.0

_DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred_signals(signums=_DEFERRED):
    """Hold ``signums`` (SIGINT, SIGTERM) until the block ends, then deliver them in order to the
    handlers that were in place.  A no-op outside the main thread (Python delivers signals only
    there)."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    pending: list[int] = []
    old = {}

    def hold(signum, frame):
        pending.append(signum)

    for s in signums:
        try:
            old[s] = signal.signal(s, hold)
        except (ValueError, OSError):  # pragma: no cover - not settable here
            pass
    try:
        yield pending
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)


@dataclass
class SafeStateReport:
    """What the safe-state sequence confirmed by querying, and what it could not confirm."""

    confirmed: list[str] = field(default_factory=list)      # e.g. "smu outputs off (a, b)"
    unconfirmed: list[str] = field(default_factory=list)    # e.g. "smu outputs off: connection lost"
    errors: list[BaseException] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unconfirmed

    def text(self) -> str:
        """One line for the operator."""
        parts = []
        if self.confirmed:
            parts.append("confirmed " + ", ".join(self.confirmed))
        parts += [f"could not confirm {u}" for u in self.unconfirmed]
        return "; ".join(parts) if parts else "nothing confirmed"


class SafeSequence:
    """Run safe-state steps grouped by instrument: a step of an instrument that already lost its
    connection (or timed out) is skipped, and no step starts after the time budget."""

    def __init__(self, budget_s: float = SAFE_STATE_BUDGET_S, clock: Callable[[], float] = time.monotonic):
        self.report = SafeStateReport()
        self._dead: dict[str, str] = {}
        self._clock = clock
        self._deadline = clock() + budget_s
        self._budget = budget_s

    def attempt(self, instrument: str, fn: Callable[[], object]) -> tuple[bool, object]:
        """(True, result) if ``fn`` ran; (False, reason) if it failed or was not attempted."""
        if instrument in self._dead:
            return False, self._dead[instrument]
        if self._clock() > self._deadline:
            return False, f"not attempted (the safe-state time budget of {self._budget:g} s was spent)"
        try:
            return True, fn()
        except Exception as exc:  # noqa: BLE001 - keep making the bench safe
            self.report.errors.append(exc)
            if isinstance(exc, InstrumentConnectionError):
                self._dead[instrument] = "connection lost"
            elif isinstance(exc, InstrumentTimeout):
                self._dead[instrument] = "no reply (timeout)"
            return False, self._dead.get(instrument, str(exc).splitlines()[0][:160])

    def confirm(self, what: str, ok: bool, reason: str = "") -> None:
        if ok:
            self.report.confirmed.append(what)
        else:
            self.report.unconfirmed.append(f"{what}: {reason}")
