"""Cost of a stitch point, as in Algorithm 1: cost(back part) + cost(S) + cost(front part).

Three metrics behind one interface:
  ``params``   parameter count;
  ``flops``    fvcore multiply-adds at the task resolution (see restnet.anchors.stats);
  ``latency``  milliseconds, the sum of per-part latencies from a table: measured
               here on this host (every part and stitching layer timed
               interleaved, in bursts another job did not starve:
               toolkit.cleantime; thread count recorded), or a table measured
               on the device. Summing per-block latencies is the look-up-table
               method of Once-for-All / nn-Meter. When the host is too busy to
               time some part, every part is estimated alike from its MACs at
               the measured parts' ms per MAC, and the source and note say so.
               A table every part of which was timed is cached per pair of
               architectures: a proxy that ranks points has to rank them the
               same way in every pack, and measured again on this host a
               point's cost moves by 1-5 % (up to 25 % for the cheapest points,
               benchmarks/busy_latency.py), enough to turn a pick among points
               of near-equal cost.

Part costs are computed once per block and once per distinct stitching-layer
shape, so costing every (i, j) pair is cheap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from math import sqrt
from typing import Protocol

import torch

from restnet.anchors.blocks import BlockModel
from restnet.anchors.stats import ModelStats, count_flops, count_params
from restnet.paths import cache_dir
from restnet.stitching import FeatureSpec, StitchLayer, StitchPoint, feature_spec
from restnet.timing import clean_modules_ms, torch_threads
from restnet.training import checkpoint
from toolkit.cleantime import busy_note

METRICS = ("params", "flops", "latency")
UNITS = {"params": "params", "flops": "MACs", "latency": "ms"}


@dataclass
class PartCosts:
    """Per-part costs of one anchor in one metric: stem, each block, head."""

    stem: float
    blocks: list[float]
    head: float

    def front(self, i: int) -> float:
        return self.stem + sum(self.blocks[: i + 1])

    def back(self, j: int) -> float:
        return sum(self.blocks[j + 1:]) + self.head

    @property
    def total(self) -> float:
        return self.stem + sum(self.blocks) + self.head


def static_part_costs(stats: ModelStats, metric: str) -> PartCosts:
    get = (lambda b: float(b.params)) if metric == "params" else (lambda b: float(b.flops))
    return PartCosts(get(stats.stem), [get(b) for b in stats.blocks], get(stats.head))


class Correction(Protocol):
    """A cost a whole model pays beyond its parts (restnet.package.latency.MemoryTerm)."""

    def point(self, p: StitchPoint) -> float: ...

    def anchor(self, role: str) -> float: ...


@dataclass
class CostModel:
    """cost(i, j) for a (front, back) pair in one metric."""

    metric: str
    front: PartCosts
    back: PartCosts
    front_specs: list[FeatureSpec]
    back_specs: list[FeatureSpec]
    kernel_size: int = 3
    source: str = "computed"  # computed | measured (host) | estimated | predicted (device table)
    threads: int | None = None
    scale: float = 1.0  # measured-here latency x scale = estimated device latency
    offset: float = 0.0  # added once per model (per-program overhead correction of a device table)
    stitch_table: dict | None = None  # (src spec, dst spec) -> cost; every latency model has one
    note: str | None = None  # a warning for the log: the host was too busy to time some part
    tolerance: float = 0.0  # +- fraction a point's cost may move when measured again (0: exact)
    correction: Correction | None = None  # a per-model term beyond the parts (a device table's memory term)
    _stitch_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"cost metric must be one of {METRICS}, got {self.metric!r}")

    @property
    def unit(self) -> str:
        return UNITS[self.metric]

    def stitch(self, p: StitchPoint) -> float:
        key = (self.front_specs[p.i], self.back_specs[p.j])
        if self.stitch_table is not None:
            if key not in self.stitch_table:
                raise KeyError(f"the latency table has no stitching layer {key[0].shape} -> {key[1].shape}")
            return self.stitch_table[key]
        if key not in self._stitch_cache:
            layer = StitchLayer(*key, kernel_size=self.kernel_size).eval()
            x = torch.zeros(1, *key[0].shape)
            if self.metric == "params":
                c = float(count_params(layer))
            elif self.metric == "flops":
                c = float(count_flops(layer, x).get("", 0))
            else:
                raise KeyError("a latency cost model needs its stitching layers' latencies in stitch_table")
            self._stitch_cache[key] = c * self.scale
        return self._stitch_cache[key]

    def __call__(self, p: StitchPoint) -> float:
        extra = self.correction.point(p) if self.correction else 0.0
        return self.back.back(p.j) + self.stitch(p) + self.front.front(p.i) + self.offset + extra

    def anchor_cost(self, role: str) -> float:
        """A whole anchor in this metric ('front' or 'back')."""
        extra = self.correction.anchor(role) if self.correction else 0.0
        return (self.front if role == "front" else self.back).total + self.offset + extra

    def matrix(self) -> torch.Tensor:
        """cost(i, j) for every pair [La, Lb] (float64)."""
        la, lb = len(self.front.blocks), len(self.back.blocks)
        return torch.tensor([[self(StitchPoint(i, j)) for j in range(lb)] for i in range(la)], dtype=torch.float64)


def _scaled(p: PartCosts, k: float) -> PartCosts:
    return PartCosts(p.stem * k, [b * k for b in p.blocks], p.head * k)


LATENCY_DEADLINE_S = 60.0  # the retry bound for timing every part on a busy host
# The eager proxy is timed on one thread unless asked otherwise: a 2-thread eager call needs both cores at once, so
# with another job on a 2-core host almost every burst waits at a barrier for a descheduled thread (measured: 90
# of 90 parts too busy to time within 60 s at 2 threads, all of them timed within 5 s at 1), while at the pack's
# resolutions a second thread hardly speeds a block (0.248 ms at 2 threads against 0.223 ms at 1 for a lite0
# block at 64 px, both clean). The device's own threads are the .pte figures'.
PROXY_THREADS = 1
TOLERANCE_SIGMAS = 2.0  # a cost's tolerance, in standard errors of the sum of its parts


@dataclass
class _Program:
    label: str
    module: torch.nn.Module
    x: torch.Tensor
    macs: float


@torch.no_grad()
def _latency_programs(model: BlockModel, stats: ModelStats) -> list[_Program]:
    """Stem, each block and head of one anchor, each on its real input (batch 1)."""
    x = torch.zeros(1, 3, stats.input_size, stats.input_size)
    out = []
    parts = [("stem", model.stem, stats.stem)] + [(f"block {k}", b, s) for k, (b, s) in
                                                   enumerate(zip(model.blocks, stats.blocks))]
    for label, part, info in [*parts, ("head", model.head, stats.head)]:
        out.append(_Program(f"{model.name} {label}", part.eval(), x, float(info.flops)))
        x = part(x)
    return out


def _stitch_programs(fspecs: list[FeatureSpec], bspecs: list[FeatureSpec], kernel_size: int) -> list[_Program]:
    out = []
    for src, dst in dict.fromkeys(product(fspecs, bspecs)):
        layer = StitchLayer(src, dst, kernel_size=kernel_size).eval()
        x = torch.zeros(1, *src.shape)
        out.append(_Program(f"stitching layer {tuple(src.shape)} -> {tuple(dst.shape)}", layer, x,
                            float(count_flops(layer, x).get("", 0))))
    return out


@dataclass
class Timed:
    """Every program's figure (ms), and what the cost model says about them."""

    ms: list[float]
    source: str
    note: str | None  # the host was too busy to time some part: which, and what was done instead
    tolerance: float  # +- fraction an anchor-sized sum of these figures may move when timed again


def timed_latency(programs: list[_Program], threads: int, sums: list[list[int]],
                  deadline_s: float = LATENCY_DEADLINE_S) -> Timed:
    """Every program timed interleaved on this host (toolkit.cleantime). If the host was too busy to time any of
    them, all are estimated alike as MACs x the timed ones' ms per MAC (mixing timed and estimated parts would
    rank points by how they were costed), and the note says which figure failed and why.

    The tolerance is TOLERANCE_SIGMAS x the largest relative error of the sums of ``sums`` (the anchors' parts:
    the size of a point's cost), each part's error taken as its spread and the errors as independent, so that
    a sum of n similar parts moves by about 1/sqrt(n) of one part's spread."""
    with torch_threads(threads):
        est = clean_modules_ms([(p.module, p.x) for p in programs], deadline_s=deadline_s)
    busy = [k for k, e in enumerate(est) if e.busy]
    if not busy:
        tol = TOLERANCE_SIGMAS * max(sqrt(sum((est[k].spread * est[k].ms) ** 2 for k in ks)) /
                                     max(sum(est[k].ms for k in ks), 1e-12) for ks in sums)
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


TABLE_METHOD = "cleantime-1"  # in the cache key: a table timed another way is timed again


def _table(front: BlockModel, back: BlockModel, fstats: ModelStats, bstats: ModelStats, programs: list[_Program],
           threads: int, sums: list[list[int]], cache: bool) -> Timed:
    """``timed_latency`` of the programs, from the cache when this pair of architectures (every part's shape,
    params and MACs), kernel size and thread count was timed before; stored only when every part was timed."""
    parts = [[list(b.out_shape), b.params, b.flops] for st in (fstats, bstats) for b in (st.stem, *st.blocks, st.head)]
    key = checkpoint.key_of(front=front.name, back=back.name, res=fstats.input_size, parts=parts,
                            stitches=[p.label for p in programs if p.label.startswith("stitching")], threads=threads,
                            torch=torch.__version__, method=TABLE_METHOD)
    path = cache_dir("latency-tables") / f"{front.name}--{back.name}-{key}.json"
    if cache and (hit := checkpoint.cached(path)) is not None and len(hit["ms"]) == len(programs):
        return Timed(hit["ms"], hit["source"][:-1] + "; timed before, from the cache)", None, hit["tolerance"])
    t = timed_latency(programs, threads, sums)
    if cache and t.note is None:
        checkpoint.atomic_write_json({"ms": t.ms, "source": t.source, "tolerance": t.tolerance,
                                      "labels": [p.label for p in programs]}, path)
    return t


def _parts(values: list[float]) -> PartCosts:
    return PartCosts(values[0], values[1:-1], values[-1])


def build_cost_model(metric: str, front: BlockModel, back: BlockModel, front_stats: ModelStats,
                     back_stats: ModelStats, kernel_size: int = 3, threads: int | None = None,
                     latency_scale: float | None = None, cache: bool = True) -> CostModel:
    """Static metrics from the stats; latency measured on this host, on ``threads`` (default PROXY_THREADS), or
    its table from the cache (``cache=False``: timed now, not stored) (times ``latency_scale`` when the device
    is not this host: an estimate, and the source says so)."""
    fspecs = [feature_spec(front, b.out_shape) for b in front_stats.blocks]
    bspecs = [feature_spec(back, b.out_shape) for b in back_stats.blocks]
    if metric in ("params", "flops"):
        return CostModel(metric, static_part_costs(front_stats, metric), static_part_costs(back_stats, metric),
                         fspecs, bspecs, kernel_size)
    if metric != "latency":
        raise ValueError(f"cost metric must be one of {METRICS}, got {metric!r}")
    threads = threads or PROXY_THREADS
    k = latency_scale or 1.0
    fp, bp = _latency_programs(front, front_stats), _latency_programs(back, back_stats)
    sp = _stitch_programs(fspecs, bspecs, kernel_size)
    t = _table(front, back, front_stats, back_stats, fp + bp + sp, threads,
               [list(range(len(fp))), list(range(len(fp), len(fp) + len(bp)))], cache)
    ms = [v * k for v in t.ms]
    source = t.source if latency_scale is None else f"estimated (host x {k:g}; host {t.source})"
    stitches = dict(zip(dict.fromkeys(product(fspecs, bspecs)), ms[len(fp) + len(bp):]))
    return CostModel(metric, _parts(ms[:len(fp)]), _parts(ms[len(fp):len(fp) + len(bp)]), fspecs, bspecs,
                     kernel_size, source=source, threads=threads, scale=k, stitch_table=stitches, note=t.note,
                     tolerance=t.tolerance)
