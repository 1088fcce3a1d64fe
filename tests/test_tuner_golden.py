"""The tuner's outcome on seeded ideal-line runs is pinned bit for bit: statuses, pulse and read
counts, energies, instrument times, final readings, the chip's true conductances afterwards and
every read and pulse (the trace), hashed.  The digests were taken on the tree before the step's
overhead was cut (main at bbd6164, issue 17 item 1), and re-pinned for '12x20 ramps', '40 x 8x8' and
'20 x 8x8 trace' when the relaxation compensation came to be learnt from every pass's moves instead of
the last pass's alone (issue 13: the same shares within 1 %, 0.1-0.4 % fewer pulses in the 8x8 batches,
one pass fewer in '12x20 ramps'), and for '40 x 8x8' and '20 x 8x8 trace' when a cell found relaxed out of
the hold band twice got its own shift and every cell at risk came to join whatever pass runs (issue 13:
the same shares within 1 %, 0.02-0.04 % fewer pulses, 0.1-8 % fewer reads, 8 -> 6 passes in '20 x 8x8
trace'), and for '40 x 8x8' and '20 x 8x8 trace' when a chip whose cells all hold came to leave the run
(issue 17: no later read-back of it, its cells at risk no longer re-tuned for the other chips' passes; the
same converged cells and 100 % truly within, 0.08 / 0.2 % fewer pulses, 23 / 17 % fewer reads, 8 -> 5 and
6 -> 4 passes), and again when such a chip came to be read back once more before it leaves (against the
loop that read every chip at every pass: the same converged cells and 100 % truly within, 0.02 / 0.16 %
fewer pulses, 19 / 11 % fewer reads, 8 -> 4 and 6 -> 5 passes); a change to the tuner's
bookkeeping that alters any number fails here.  (A change of the physics or of numpy's random
streams changes them too: then re-pin, stating why.)

The digests depend on the CPU's class, not only on the code: on a CPU with AVX-512 (numpy's
``AVX512_SKX`` dispatch) numpy computes float64 ``exp``, ``log``, ``power`` and the like with its
AVX-512 loops (Intel's SVML), whose last bits differ from the C library's that every other x86 CPU
uses; those bits reach the true conductances and energies.  So each case has two pinned digests,
one per class, and the test compares with the one of the CPU it runs on; a change to the tuner
alters both.  The second class's digests were taken on an AMD EPYC without AVX-512 (numpy 2.4.6,
X86_V3) at 9c98db4, bit for bit the code of cb93402, which gave the AVX-512 digests on stop 25's
AVX-512 machine; disabling numpy's AVX2 loops there (``NPY_DISABLE_CPU_FEATURES=X86_V3``) leaves
them as they are."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mock_hw.sim_chip import SimulatedCrossbar
from programming.tuner import TunerConfig, tune


def _digest(rows, cols, chips, seed, trace, **cfg) -> str:
    xb = SimulatedCrossbar(rows, cols, n_chips=chips, seed=seed, r_line=0.0)
    targets = np.random.default_rng(seed + 100).uniform(*xb.programming_window, size=(chips, rows, cols))
    if chips > 1:
        targets[np.random.default_rng(seed).random(targets.shape) < 0.1] = np.nan   # untargeted cells
    res = tune(xb, targets, TunerConfig(**cfg), record_trace=trace)
    h = hashlib.sha256()
    for a in (res.status, res.pulses, res.reads, res.energy, res.time, res.final, xb.true_conductance):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(str((res.compliance_events, res.passes_run, res.verify_reads)).encode())
    if trace:
        for key in sorted(res.trace):
            h.update(key.encode())
            h.update(np.ascontiguousarray(res.trace[key]).tobytes())
    return h.hexdigest()[:16]


CASES = {
    "16x16": ((16, 16, 1, 0, False), {}),
    "16x16 trace": ((16, 16, 1, 1, True), {}),
    "16x16 reset per cell": ((16, 16, 1, 2, True), {"reset_sweep": False}),
    "12x20 ramps": ((12, 20, 1, 3, True), {"width_ramp": 2.0, "width_max": 1e-5, "v_reset_start": 1.2}),
    "40 x 8x8": ((8, 8, 40, 4, False), {}),
    "20 x 8x8 trace": ((8, 8, 20, 5, True), {"parallel": 3}),
}
PINNED = {
    # CPUs with AVX-512 (numpy's AVX512_SKX loops)
    "avx512": {'16x16': 'db785bc46ae63310', '16x16 trace': '126ccd9573f3ad34', '16x16 reset per cell': '60f48ce022cefbb8',
               '12x20 ramps': '6aa3adefd7f7ecab', '40 x 8x8': '65ab8d9195aebb29', '20 x 8x8 trace': '979f97a00af04b16'},
    # every other CPU (the C library's float64 functions)
    "libm": {'16x16': 'e889b10ce242967c', '16x16 trace': 'ce0ef6810182d7fc', '16x16 reset per cell': 'e009cf37c917573c',
             '12x20 ramps': 'c74b65b0b7c618d8', '40 x 8x8': '5118394a01508360', '20 x 8x8 trace': '6b4f27d69c04eeaf'},
}


def cpu_class() -> str:
    """The class of this CPU for the digests: 'avx512' where numpy dispatches its AVX512_SKX loops."""
    from numpy._core._multiarray_umath import __cpu_features__

    return "avx512" if __cpu_features__.get("AVX512_SKX", False) else "libm"


@pytest.mark.parametrize("name", list(CASES))
def test_seeded_tune_is_bit_identical_to_the_pinned_outcome(name):
    args, cfg = CASES[name]
    assert _digest(*args, **cfg) == PINNED[cpu_class()][name], f"CPU class {cpu_class()}"
