"""The host's latency table for the cost model: every part and stitching layer of a pair, timed on this host.

The latency cost of a stitch point is the sum of its parts' figures (restnet.cost). On a workstation those are
timed next to whatever else runs there, so: every part and every distinct stitching layer is one program, all
of them timed interleaved in one toolkit.cleantime measurement (bursts another job starved are dropped); when
the host is too busy to time some part, every part is estimated alike from its MACs and the note says so; and a
table every part of which was timed is cached per pair of architectures, because a proxy that ranks points has
to rank them the same way in every pack: timed again on this host a point's cost moves by 1-5 % (up to 25 %
for the cheapest points, benchmarks/busy_latency.py), enough to turn a pick among points of near-equal cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import sqrt

import torch

from restnet import cache
from restnet.anchors.blocks import BlockModel
from restnet.anchors.stats import ModelStats, count_flops
from restnet.paths import cache_dir
from restnet.stitching import FeatureSpec, StitchLayer
from restnet.timing import clean_modules_ms, torch_threads
from toolkit.cleantime import busy_note

LATENCY_DEADLINE_S = 60.0  # the retry bound for timing every part on a busy host
# The eager proxy is timed on one thread unless asked otherwise: a 2-thread eager call needs both cores at once, so
# with another job on a 2-core host almost every burst waits at a barrier for a descheduled thread (measured: 90
# of 90 parts too busy to time within 60 s at 2 threads, all of them timed within 5 s at 1), while at the pack's
# resolutions a second thread hardly speeds a block (0.248 ms at 2 threads against 0.223 ms at 1 for a lite0
# block at 64 px, both clean). The device's own threads are the .pte figures'.
PROXY_THREADS = 1
TOLERANCE_SIGMAS = 2.0  # a cost's tolerance, in standard errors of the sum of its parts
# The least a cost's tolerance may be. A table timed again in a fresh process moves more than its bursts' spread
# says (memory layout, clock, what the other core runs): on the 2-core development machine, quiet, one point's
# cost moved 5.0 % (median) and 7.3 % (95th percentile) between three fresh processes against a stated 2.6-4.4 %
# (benchmarks/busy_latency.py; docs/reliability.md, "Busy machine").
BETWEEN_PROCESSES = 0.075  # the 95th percentile above, rounded up


@dataclass
class Program:
    """One part (or stitching layer) as a program: its input and MACs (what an estimate scales)."""

    label: str
    module: torch.nn.Module
    x: torch.Tensor
    macs: float


@torch.no_grad()
def part_programs(model: BlockModel, stats: ModelStats) -> list[Program]:
    """Stem, each block and head of one anchor, each on its real input (batch 1)."""
    x = torch.zeros(1, 3, stats.input_size, stats.input_size)
    out = []
    parts = [("stem", model.stem, stats.stem)] + [(f"block {k}", b, s) for k, (b, s) in
                                                   enumerate(zip(model.blocks, stats.blocks))]
    for label, part, info in [*parts, ("head", model.head, stats.head)]:
        out.append(Program(f"{model.name} {label}", part.eval(), x, float(info.flops)))
        x = part(x)
    return out


def stitch_programs(fspecs: list[FeatureSpec], bspecs: list[FeatureSpec], kernel_size: int) -> list[Program]:
    """One stitching layer per distinct (front spec, back spec), in the order of ``product(fspecs, bspecs)``."""
    out = []
    for src, dst in dict.fromkeys(product(fspecs, bspecs)):
        layer = StitchLayer(src, dst, kernel_size=kernel_size).eval()
        x = torch.zeros(1, *src.shape)
        out.append(Program(f"stitching layer {tuple(src.shape)} -> {tuple(dst.shape)}", layer, x,
                            float(count_flops(layer, x).get("", 0))))
    return out


@dataclass
class Timed:
    """Every program's figure (ms), and what the cost model says about them."""

    ms: list[float]
    source: str
    note: str | None  # the host was too busy to time some part: which, and what was done instead
    tolerance: float  # +- fraction an anchor-sized sum of these figures may move when timed again


def timed_latency(programs: list[Program], threads: int, sums: list[list[int]],
                  deadline_s: float = LATENCY_DEADLINE_S) -> Timed:
    """Every program timed interleaved on this host (toolkit.cleantime). If the host was too busy to time any of
    them, all are estimated alike as MACs x the timed ones' ms per MAC (mixing timed and estimated parts would
    rank points by how they were costed), and the note says which figure failed and why.

    The tolerance is TOLERANCE_SIGMAS x the largest relative error of the sums of ``sums`` (the anchors' parts:
    the size of a point's cost), each part's error taken as its spread and the errors as independent, so that
    a sum of n similar parts moves by about 1/sqrt(n) of one part's spread; at least BETWEEN_PROCESSES."""
    with torch_threads(threads):
        est = clean_modules_ms([(p.module, p.x) for p in programs], deadline_s=deadline_s)
    busy = [k for k, e in enumerate(est) if e.busy]
    if not busy:
        tol = max(BETWEEN_PROCESSES, TOLERANCE_SIGMAS * max(sqrt(sum((est[k].spread * est[k].ms) ** 2 for k in ks)) /
                                                            max(sum(est[k].ms for k in ks), 1e-12) for ks in sums))
        return Timed([e.ms for e in est], f"measured (host, sum of parts, {threads} thread{'s' * (threads > 1)}; "
                                          f"tolerance +-{tol:.1%})", None, tol)
    ok = [k for k in range(len(est)) if k not in busy] or list(range(len(est)))
    per_mac = sum(est[k].ms for k in ok) / max(sum(programs[k].macs for k in ok), 1.0)
    worst = min(busy, key=lambda k: (est[k].clean, -est[k].bursts))
    source = (f"estimated (host too busy to time {len(busy)} of {len(est)} parts: MACs x {per_mac * 1e9:.4g} ms "
              f"per GMAC, the {'timed parts' if len(ok) < len(est) else 'parts'}' ratio)")
    note = (busy_note(f"host latency of {programs[worst].label}", est[worst]) +
            f"; latency costs estimated as MACs x {per_mac * 1e9:.4g} ms per GMAC instead")
    return Timed([p.macs * per_mac for p in programs], source, note, 0.0)


TABLE_METHOD = "cleantime-2"  # in the cache key: a table timed another way is timed again


def host_table(front: BlockModel, back: BlockModel, fstats: ModelStats, bstats: ModelStats, programs: list[Program],
           threads: int, sums: list[list[int]], use_cache: bool) -> Timed:
    """``timed_latency`` of the programs, from the cache when this pair of architectures (every part's shape,
    params and MACs), kernel size and thread count was timed before; stored only when every part was timed."""
    parts = [[list(b.out_shape), b.params, b.flops] for st in (fstats, bstats) for b in (st.stem, *st.blocks, st.head)]
    key = cache.key_of(front=front.name, back=back.name, res=fstats.input_size, parts=parts,
                       stitches=[p.label for p in programs if p.label.startswith("stitching")], threads=threads,
                       torch=torch.__version__, method=TABLE_METHOD)
    path = cache_dir("latency-tables") / f"{front.name}--{back.name}-{key}.json"
    if use_cache and (hit := cache.cached(path)) is not None and len(hit["ms"]) == len(programs):
        return Timed(hit["ms"], hit["source"][:-1] + "; timed before, from the cache)", None, hit["tolerance"])
    t = timed_latency(programs, threads, sums)
    if use_cache and t.note is None:
        cache.atomic_write_json({"ms": t.ms, "source": t.source, "tolerance": t.tolerance,
                                 "labels": [p.label for p in programs]}, path)
    return t
