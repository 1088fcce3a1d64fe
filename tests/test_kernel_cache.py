"""The line solver's compiled kernels are compiled once per checkout and then loaded from numba's
disk cache (``cache=True``): a new process compiles none of them.  A kernel numba cannot cache (a
closure over a local helper, a dynamic global) compiles again in every process, ~10 s of CPU on a
64×64 tune's first solve (3b9af62 did that to the sweep kernel until dcca7ad): the mock bench's
first replies and every `xbar` run would pay it."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# drives a swept (32×32) and a small chip's lines the ways a bench does and pulses each once
# (mock_bench.warm_solver), loads the line model's kernels (eager: one signature each), then prints each cached
# kernel's (cache hits, cache misses) in this process
_PROBE = "\n".join([
    "import json",
    "from numba.core.registry import CPUDispatcher",
    "from mock_hw.mock_bench import warm_solver",
    "import programming.line_sweep as line_sweep",
    "warm_solver(32, 32, 'tio2-3it', 0, False, 0.0)",
    "warm_solver(8, 8, 'tio2-3it', 0, False, 0.0)",
    "import programming.relax_kernels as rk",
    "import mock_hw.device as device",
    "kernels = dict(line_sweep._KERNEL)",
    "kernels.update(device._LANES_KERNEL)",
    "import programming.ir_correction as ir_correction",
    "kernels.update(ir_correction._kernels())",
    "kernels.update((n, f) for n, f in vars(rk).items() if isinstance(f, CPUDispatcher) and f.stats.cache_path)",
    "print(json.dumps({n: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]"
    " for n, f in kernels.items()}))",
])


def _probe() -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_new_process_loads_every_line_kernel_from_the_disk_cache():
    _probe()                               # a cold cache (a fresh clone) is filled here
    stats = _probe()
    used = {"sweep", "relax_reads", "relax_pulses", "relax_points", "given_pulses", "lanes", "transfer", "invert",
            "cell_maps", "own_adjoint", "invert_one", "correct_lanes"}
    assert used <= set(stats)
    # every kernel the probe called came from the cache ('hash', built with 'keys', runs only when
    # a saved chip state's warm starts are restored: never called here, so neither hit nor missed)
    compiled = {name: misses for name, (hits, misses) in stats.items() if misses or (name in used and not hits)}
    assert not compiled, f"kernels compiled again in a new process (not cached): {compiled}"
