"""Run-time settings for the small tensors of crossbar-sized networks."""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run a block with ``n`` torch intra-op threads (restored afterwards).

    Crossbar-sized layers are tiny: thread hand-off costs more than it saves (measured 3–5× slower
    with 2 threads on a 2-core machine), so training and Monte Carlo evaluation run single-threaded.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
