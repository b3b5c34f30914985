"""Latency on a busy machine: time short bursts, drop the ones another job starved, estimate from the rest.

Why: on a 2-core workstation where another job holds the cores, a thread of the
timed program waits on the run queue for a whole scheduler slice (several ms)
at a time, so a 0.4 ms block times at 9-150 ms in some calls, and a median over
a long burst of such calls is whatever share of them the other job took. A
burst that no thread of this process spent waiting for a CPU ran at the
program's own speed; one that waited did not, however long it was.

The detector (``Counters``, ``starved``): the kernel's own account, read around
each burst, of how long this process's threads were runnable but not running
(Linux: /proc/self/task/*/schedstat) and how often one was preempted
(getrusage's involuntary context switches, everywhere). CPU time against wall
time alone cannot tell: a quiet eager block at 64 px uses one thread (CPU time
= wall time), and a thread that spins at a barrier while its partner waits runs
up CPU time at full rate. It does tell one thing the kernel's account misses:
a 2-thread XNNPACK call whose second thread was woken but never got a CPU
before the first had done its share too records no wait and runs at one
thread's speed (1.24 ms against 0.95 ms, CPU time 1.0 x wall against 1.9 x).
So a burst also counts as clean only when its CPU time per wall second is at
least CPU_FLOOR of the best among the program's wait-free bursts: on a quiet
machine they are all alike, and a one-thread program's are all 1.

The estimator (``estimate``): bursts are short (about BURST_MS: a scheduler
slice takes all or none of one) and interleaved over the programs (``measure``),
so slow phases of the machine hit every program alike; a program's figure is
the LOW_QUANTILE of its clean bursts' medians, and its spread the half
inter-quartile range of them over that figure. Every program collects the same
number of clean bursts, quiet or loaded, so the figure is the same statistic
either way. A program that has fewer than MIN_CLEAN clean bursts when the time
is up, or fewer than MIN_CLEAN_SHARE of whose bursts were clean, could not be
measured: ``Estimate.busy``. The second rule is measured, not assumed: with
another job on both cores a 2-thread XNNPACK call waited for a CPU in 94-100 %
of bursts, and the few clean ones ran at 1.24 ms against 0.8 ms quiet (its
second thread never got a CPU: no wait recorded, its share of the work done by
the first), so when nearly all bursts starve the clean ones are suspect too;
one-thread programs under the same load had 40-97 % clean. A busy figure (from the
clean bursts there were, else the fastest burst's median) is an upper bound
that callers replace by an estimate and say so.
"""
from __future__ import annotations

import math
import os
import random
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

BURST_MS = 1.5  # a burst's target length: shorter than a scheduler slice on a contended core
MAX_CALLS = 100  # calls per burst at most (a 30 us stitching layer still fills a burst: see ``measure``)
CLEAN_BURSTS = 9  # clean bursts each program collects
MIN_CLEAN = 5  # fewer than this when the time is up: too busy to measure
MIN_CLEAN_SHARE = 0.25  # a smaller share of clean bursts: too busy to measure (see the module)
LOW_QUANTILE = 0.25  # of the clean bursts' medians: the figure
WAIT_SHARE = 0.05  # run-queue wait over this share of a burst's wall time: starved
CPU_FLOOR = 0.75  # a wait-free burst with less CPU time per wall second than this x its program's best: not clean
DEADLINE_S = 30.0  # default bound on one measurement, warm-up excluded


@dataclass(frozen=True)
class Counters:
    """What ``starved`` compares: wall time, run-queue wait of every thread (ns; None: not available) and
    involuntary context switches of the process."""

    wall: float
    wait_ns: int | None
    preempted: int

    @staticmethod
    def now() -> "Counters":
        return Counters(time.perf_counter(), _wait_ns(), resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw)


def _wait_ns() -> int | None:
    """Nanoseconds this process's threads have spent runnable but not running (Linux schedstat)."""
    total = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended since the listing, or a kernel without schedstat
    return total


def starved(before: Counters, after: Counters) -> bool:
    """Whether another job took a CPU from this process between the two readings."""
    if after.preempted > before.preempted:
        return True
    if before.wait_ns is None or after.wait_ns is None:
        return False
    return (after.wait_ns - before.wait_ns) / 1e9 > WAIT_SHARE * (after.wall - before.wall)


@dataclass(frozen=True)
class Burst:
    median_ms: float
    starved: bool
    cpu: float = 1.0  # the process's CPU seconds per wall second over the burst (every thread)


def burst(fn: Callable[[], object], calls: int) -> Burst:
    """``calls`` timed calls of ``fn``: their median (ms), whether the detector saw them starved, and the CPU
    time the process used per wall second."""
    times = []
    before = Counters.now()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Burst(statistics.median(times), starved(before, Counters.now()), cpu / max(wall, 1e-9))


@dataclass(frozen=True)
class Estimate:
    ms: float
    spread: float | None  # +- fraction: half the inter-quartile range of the clean bursts' medians / ms
    clean: int  # (None: fewer than two clean bursts)
    bursts: int

    @property
    def busy(self) -> bool:
        """Too few clean bursts, or mostly starved ones: the machine was too busy to measure this program."""
        return self.clean < MIN_CLEAN or self.clean < MIN_CLEAN_SHARE * self.bursts

    def describe(self) -> str:
        """'0.412 ms +-1.8% (9 of 12 bursts clean)', as logs word it."""
        spread = "spread unknown" if self.spread is None else f"+-{self.spread:.1%}"
        return f"{self.ms:.4g} ms {spread} ({self.clean} of {self.bursts} bursts clean)"


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default), without numpy."""
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def estimate(bursts: Sequence[Burst]) -> Estimate:
    """The figure from a program's bursts: the LOW_QUANTILE of the clean ones' medians (see the module)."""
    if not bursts:
        raise ValueError("no bursts to estimate from")
    waitfree = [b for b in bursts if not b.starved]
    best = max((b.cpu for b in waitfree), default=0.0)
    clean = sorted(b.median_ms for b in waitfree if b.cpu >= CPU_FLOOR * best)
    if not clean:
        return Estimate(min(b.median_ms for b in bursts), None, 0, len(bursts))
    ms = _quantile(clean, LOW_QUANTILE)
    spread = (_quantile(clean, 0.75) - _quantile(clean, 0.25)) / (2 * ms) if ms > 0 and len(clean) > 1 else None
    return Estimate(ms, spread, len(clean), len(bursts))


def measure(programs: Sequence[Callable[[], object]], warmup: int = 3, clean_bursts: int = CLEAN_BURSTS,
            deadline_s: float = DEADLINE_S, seed: int = 0) -> list[Estimate]:
    """Each program's ``Estimate``: every program warmed up, then visited in shuffled order, one short burst
    per visit, until each has ``clean_bursts`` clean bursts or ``deadline_s`` has passed (the retry bound on
    a busy machine). A program still short of them after clean_bursts / MIN_CLEAN_SHARE bursts is given up:
    whenever it got them, under MIN_CLEAN_SHARE of its bursts would be clean, so it is busy either way.

    Bursts last about BURST_MS whatever the program: the counters are read around a burst, and around a few
    calls of a 30 us program the reading itself would be most of the window a wait is measured against."""
    calls = []
    for fn in programs:
        fastest = float("inf")
        for _ in range(max(warmup, 1)):
            t = time.perf_counter()
            fn()
            fastest = min(fastest, (time.perf_counter() - t) * 1e3)
        calls.append(max(1, min(MAX_CALLS, round(BURST_MS / max(fastest, 1e-6)))))
    bursts: list[list[Burst]] = [[] for _ in programs]
    todo = list(range(len(programs)))
    rng = random.Random(seed)
    end = time.perf_counter() + deadline_s
    give_up = math.ceil(clean_bursts / MIN_CLEAN_SHARE)
    while todo and time.perf_counter() < end:
        rng.shuffle(todo)
        for k in todo:
            bursts[k].append(burst(programs[k], calls[k]))
        todo = [k for k in todo if estimate(bursts[k]).clean < clean_bursts and len(bursts[k]) < give_up]
    return [estimate(b) for b in bursts]


def busy_note(what: str, e: Estimate) -> str:
    """One line for a figure the machine was too busy to measure: which, its spread, and why."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    spread = "unknown" if e.spread is None else f"+-{e.spread:.0%}"
    return (f"{what}: only {e.clean} of {e.bursts} timed bursts ran without waiting for a CPU (spread {spread}); "
            f"another job holds the CPU (load average {load:.1f} on {os.cpu_count()} cores)")
