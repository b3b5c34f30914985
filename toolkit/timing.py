"""Latency that holds from run to run: interleaved bursts, several fresh processes, one reference program.

Why not one fresh process per file, timed once: on the 2-core development host one
program's p50 moves by up to ~1.5x between fresh processes (the whole process runs
fast or slow: every program loaded in it moves together), so a table timed once
sits in whichever state its processes happened to start in, and a whole model
timed later in another state disagrees with the sum of its parts by tens of
percent. Phones and boards do the same with frequency scaling and thermal state.

So every program is timed in each of several fresh processes ("rounds"). Inside a
round all programs are loaded, and visited in a shuffled order in bursts (one
untimed call restores the program's own cache state, then ``burst`` timed calls),
so slow phases of the machine hit every program alike. Each round's speed is the
median over all its programs of (program's p50 in the round / its median p50 over
the rounds), and the round's times are divided by it: a whole process that ran
1.3x slow is put back, while one program's odd round moves only that program
(scaling by one reference program alone would let that program's own outlier
rounds move every figure). A program's figure is the median of its normalised times, and its
spread (how far the rounds disagree after normalising) says how far to trust it.
One program, the reference, is timed in every round and its normalised p50 is
recorded, so that another measurement can be put on the same level.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit.runtime import Loader

ROUNDS = 5  # fresh processes per table
BURST = 10  # timed calls per visit of one program


def example_input(shape: list[int], layout: str) -> np.ndarray:
    """The same seeded input for every file of a shape (random: no shortcuts through zeros)."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if layout == "NHWC":  # the manifest's shape is NCHW; this file wants channels last
        x = x.transpose(0, 2, 3, 1).copy()
    return x


def time_programs(files: list[dict], runs: int, burst: int, warmup: int, seed: int,
                  pte_fallback: Loader | None = None) -> tuple[list[list[float]], str]:
    """In this (fresh) process: every file loaded at once, warmed up, then visited in shuffled order, ``burst``
    timed calls per visit after one untimed call, until each has ``runs`` times (ms); and the runtime.
    ``files``: dicts with ``path``, ``format``, ``shape``, ``layout`` and optional ``method``, ``threads``."""
    from toolkit import runtime

    progs, version = [], "?"
    for f in files:
        run, version = runtime.load(Path(f["path"]), f["format"], f.get("threads"), pte_fallback,
                                    method=f.get("method"))
        x = example_input(f["shape"], f["layout"])
        for _ in range(warmup):
            run(x)
        progs.append((run, x))
    times: list[list[float]] = [[] for _ in progs]
    order = list(range(len(progs)))
    rng = random.Random(seed)
    while any(len(t) < runs for t in times):
        rng.shuffle(order)
        for k in order:
            run, x = progs[k]
            run(x)
            for _ in range(min(burst, runs - len(times[k]))):
                t = time.perf_counter()
                run(x)
                times[k].append((time.perf_counter() - t) * 1e3)
    return times, version


def _half_range(values: np.ndarray) -> float:
    """(max - min) / (2 x median): the +- fraction that covers every round."""
    med = float(np.median(values))
    return float((values.max() - values.min()) / (2 * med)) if med > 0 else 0.0


def round_speeds(p50: np.ndarray) -> np.ndarray:
    """How slow each round ran, from every program in it: per round, the median over programs of (the
    program's p50 in that round / its median p50 over the rounds). One program's odd round (the reference's
    included) moves its own figure, not everyone's."""
    return np.median(p50 / np.median(p50, axis=0, keepdims=True), axis=1)


def summarise(times: list[list[list[float]]], ref: int) -> tuple[list[dict], dict]:
    """times[round][file] -> (per file: percentiles of the round-normalised times and their spread; the
    reference's own record). Pure arithmetic, so it is tested on hand-made numbers."""
    p50 = np.array([[np.median(t) for t in rnd] for rnd in times])  # [rounds, files]
    speed = round_speeds(p50)
    level = float(np.median(p50[:, ref] / speed))
    out = []
    for k in range(p50.shape[1]):
        scaled = np.concatenate([np.asarray(rnd[k]) / s for rnd, s in zip(times, speed)])
        q50, q90, q99 = np.percentile(scaled, [50, 90, 99])
        out.append({"p50_ms": float(q50), "p90_ms": float(q90), "p99_ms": float(q99), "mean_ms": float(scaled.mean()),
                    "round_p50_ms": [round(float(v), 5) for v in p50[:, k]],
                    "spread": _half_range(p50[:, k] / speed), "raw_spread": _half_range(p50[:, k])})
    reference = {"p50_ms": level, "round_p50_ms": out[ref]["round_p50_ms"], "raw_spread": out[ref]["raw_spread"],
                 "round_speed": [round(float(v), 4) for v in speed]}
    return out, reference


def measure_rounds(files: list[dict], ref: int, rounds: int = ROUNDS, runs: int = 50, burst: int = BURST,
                   warmup: int = 10, pte_fallback: Loader | None = None,
                   progress: Callable[[str], None] = print) -> tuple[list[dict], dict]:
    """``rounds`` fresh processes, each timing every file (see ``time_programs``); returns ``summarise`` of
    them, with the method recorded beside the reference. ``ref``: the index of the reference file."""
    ctx = mp.get_context("spawn")
    per_round, version = [], "?"
    for r in range(rounds):
        t0 = time.perf_counter()
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            times, version = ex.submit(time_programs, files, runs, burst, warmup, r, pte_fallback).result()
        per_round.append(times)
        ref_p50 = float(np.median(per_round[-1][ref]))
        progress(f"round {r + 1}/{rounds}: {len(files)} programs interleaved, reference p50 {ref_p50:.3f} ms "
                 f"({time.perf_counter() - t0:.1f} s)")
    entries, reference = summarise(per_round, ref)
    return entries, {"method": "interleaved rounds, each normalised by its speed (median over its programs)",
                     "rounds": rounds, "runs": runs, "burst": burst, "warmup": warmup, "reference": reference,
                     "runtime": version}
