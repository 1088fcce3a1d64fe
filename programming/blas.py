"""Keep BLAS on one thread around the small products and solves of the simulator and the tuner's
line model (threadpoolctl).  A threaded BLAS gains nothing on them and its spinning worker threads
slow everything that runs next."""
from __future__ import annotations

import threading
from contextlib import contextmanager

#: smallest per-chip product size (N·R·C multiply-adds) for which :func:`mvm_currents` pins BLAS to
#: one thread; below it BLAS libraries stay on one thread by themselves (OpenBLAS: up to 262144)
BLAS_ONE_THREAD_MIN = 1 << 16

_blas_state = {"libs": None, "depth": 0, "saved": []}
_blas_lock = threading.Lock()


def _blas_libs() -> list:
    """threadpoolctl's controllers of the BLAS libraries numpy loaded (empty when it cannot
    control them)."""
    if _blas_state["libs"] is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas_state["libs"] = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # noqa: BLE001 - an unknown BLAS (or no threadpoolctl): leave BLAS as it is
            _blas_state["libs"] = []
    return _blas_state["libs"]


def blas_held() -> bool:
    """Whether some :func:`blas_one_thread` block is open (BLAS is on one thread already)."""
    return _blas_state["depth"] > 0


@contextmanager
def blas_one_thread():
    """Run BLAS on one thread inside the block (re-entrant, thread-safe; restored on exit).

    The simulator's products are small: (N × R) @ (R × C) per chip with R, C ~ 10–100.  A threaded
    BLAS (OpenBLAS by default) splits such a product over its threads once N·R·C passes its
    threshold and gains little, but its worker threads then spin waiting for more work and slow
    the single-threaded numpy code that runs next (measured in ``benchmarks/insitu_moons.py``:
    a sim ``mvm`` of 800 inputs on 3 chips of 42x44 took ~6x longer).  The threads split the rows
    and columns of the output, never the sums, so results are the same bit for bit."""
    libs = _blas_libs()
    if not libs:
        yield
        return
    with _blas_lock:
        if _blas_state["depth"] == 0:
            _blas_state["saved"] = [lib.get_num_threads() for lib in libs]
            for lib, n in zip(libs, _blas_state["saved"]):
                if isinstance(n, int) and n != 1:
                    lib.set_num_threads(1)
        _blas_state["depth"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_state["depth"] -= 1
            if _blas_state["depth"] == 0:
                for lib, n in zip(libs, _blas_state["saved"]):
                    if isinstance(n, int) and n != 1:
                        lib.set_num_threads(n)
