"""Host latency: what a pack records (``clean_ms``, ``clean_modules_ms``) and what benchmarks print (medians).

A pack's figures go into cost models, budgets and cached export records, and the
workstation that makes them is rarely idle, so they come from toolkit.cleantime:
short interleaved bursts, the ones another job starved dropped, a low quantile
of the rest, and a verdict when too few were clean. The benchmarks time on a
machine they were told is quiet and report the median of N runs, their own
documented statistic (``measure_ms``, ``measure_callable_ms``).
"""
from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from toolkit import cleantime
from toolkit.cleantime import Estimate

FILE_DEADLINE_S = 10.0  # one exported file on a busy host: a package times up to ~100 of them (probes)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` intra-op threads (None: leave as is); yields the count in force."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def clean_ms(fn, x, warmup: int = 3, deadline_s: float = FILE_DEADLINE_S) -> Estimate:
    """``fn(x)``'s figure on a possibly busy host (exported-file runners: numpy in, numpy out)."""
    return cleantime.measure([lambda: fn(x)], warmup, deadline_s=deadline_s)[0]


@torch.no_grad()
def clean_modules_ms(programs: Sequence[tuple[nn.Module, torch.Tensor]], warmup: int = 3,
                     deadline_s: float = cleantime.DEADLINE_S) -> list[Estimate]:
    """Each eager module's figure on its input, all timed interleaved (one slow phase of the machine hits every
    module alike), with the current torch thread count."""
    for m, _ in programs:
        m.eval()
    return cleantime.measure([lambda m=m, x=x: m(x) for m, x in programs], warmup, deadline_s=deadline_s)


@torch.no_grad()
def measure_ms(module: nn.Module, x: torch.Tensor, runs: int = 15, warmup: int = 3) -> float:
    """Median wall time of one forward, in ms, with the current torch thread count (benchmarks)."""
    module.eval()
    return measure_callable_ms(module, x, runs, warmup)


def measure_callable_ms(fn, x, runs: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn(x)`` in ms (benchmarks; exported-file runners: numpy in, numpy out)."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


@contextlib.contextmanager
def busy_cores(limit_s: float = 1200.0) -> Iterator[int]:
    """A CPU-bound process on every core at this process's priority while the block runs: the busy workstation
    that tests and benchmarks/busy_latency.py measure under. Each stops at the block's end, and by itself after
    ``limit_s``, so a run killed midway leaves no load behind for long. Yields how many run."""
    spin = f"import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    try:
        yield len(procs)
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
