"""Durable file writes: ``fsync`` after writing, and the one switch that leaves it out.

Run folders, chip snapshots and journals are flushed to the disk (``os.fsync``) so a crash or a
power cut leaves whole files.  A sweep point runs its command in a temporary folder that is
deleted as soon as its report is read: there the flushes only cost time (several ms each on a
disk, tens per point), so the point runs inside :func:`skipped`.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_skipping = [0]


def fsync(fd: int) -> None:
    """``os.fsync(fd)``, unless inside :func:`skipped`."""
    if not _skipping[0]:
        os.fsync(fd)


@contextmanager
def skipped():
    """Leave out the flushes of :func:`fsync` inside the block (re-entrant; for files that are
    thrown away right after, e.g. a sweep point's temporary run folder)."""
    with _lock:
        _skipping[0] += 1
    try:
        yield
    finally:
        with _lock:
            _skipping[0] -= 1
