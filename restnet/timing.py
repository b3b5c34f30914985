"""Host latency: median wall time of a module's forward, threads set and recorded.

This shared 2-core machine is noisy, so every figure is a median after
warm-up, and the thread count it ran with goes with it.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator

import torch
from torch import nn


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


@torch.no_grad()
def measure_ms(module: nn.Module, x: torch.Tensor, runs: int = 15, warmup: int = 3) -> float:
    """Median wall time of one forward, in ms, with the current torch thread count."""
    module.eval()
    return measure_callable_ms(module, x, runs, warmup)


def measure_callable_ms(fn, x, runs: int = 20, warmup: int = 3, bursts: int = 1) -> float:
    """Median wall time of ``fn(x)`` in ms (exported-file runners: numpy in, numpy out).

    ``bursts`` > 1: ``runs`` calls in each of that many bursts, and the fastest burst's median. Another
    job on the cores only ever slows a burst down, so the fastest one is the program's own speed; a
    figure that is cached for good (restnet.package.latency.host_pte_ms) must not keep a slow spell."""
    for _ in range(warmup):
        fn(x)
    medians = []
    for _ in range(max(bursts, 1)):
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t) * 1e3)
        medians.append(statistics.median(times))
    return min(medians)
