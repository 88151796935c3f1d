"""How many threads torch gets when the run does not say (`--torch-threads`).

torch's own default is one thread per core. On the 2-core machine with anything else
running, that is the slow choice by far: 300 updates took 98 s with torch's default and 6 s
with one thread at a load average near 3 (issue 28; benchmarks/torch_threads.py measures it
again), because threads that wait for a busy core stall every matrix product behind the
slowest. The rule: the cores this process may use, less the run's own env worker
processes, less what the rest of the machine keeps busy (the 1-minute load average,
rounded), and at least one.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (taskset, a cgroup's cpuset), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_load_average() -> float:
    """The 1-minute load average (0 where the system has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def default_torch_threads(env_workers: int, cores: int | None = None, load: float | None = None) -> int:
    """Threads for torch: ``cores`` (default: usable_cores()) less ``env_workers`` less the
    machine's ``load`` (default: the 1-minute load average, taken before the run's own
    processes add to it), at least 1."""
    cores = usable_cores() if cores is None else cores
    load = machine_load_average() if load is None else load
    return max(1, min(cores, cores - env_workers - round(load)))
