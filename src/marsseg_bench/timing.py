"""How the benchmarks time and where: the median of repeated calls, and the one-line machine description.

Every figure is a median inside one invocation (the machine is shared and noisy), and every block of
BENCHMARKS.md names the machine it was measured on.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from marsseg_bench.gpu import nvidia_gpu_names


def median_seconds(fn, repeats: int) -> tuple[float, list[float]]:
    """The median wall-clock seconds of `repeats` calls of `fn`, and every call's seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def machine_description() -> str:
    """CPU, cores, memory, GPUs (nvidia-smi), OS, Python and NumPy, on one line."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        kb = int(next(row for row in meminfo if row.startswith("MemTotal")).split()[1])
        memory = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    names = nvidia_gpu_names()
    gpu = f", GPU {' + '.join(names)}" if names else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}{gpu}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, NumPy {np.__version__}"
    )
