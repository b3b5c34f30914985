"""Cost of a stitch point, as in Algorithm 1: cost(back part) + cost(S) + cost(front part).

Three metrics behind one interface:
  ``params``   parameter count;
  ``flops``    fvcore multiply-adds at the task resolution (see restnet.anchors.stats);
  ``latency``  milliseconds, the sum of per-part latencies from a table: measured
               here on this host (every part and stitching layer timed
               interleaved, in bursts another job did not starve:
               toolkit.cleantime; thread count recorded), or a table measured
               on the device. Summing per-block latencies is the look-up-table
               method of Once-for-All / nn-Meter. How the host's table is timed,
               estimated when the host is too busy, and cached: restnet.part_timing.

Part costs are computed once per block and once per distinct stitching-layer
shape, so costing every (i, j) pair is cheap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Protocol

import torch

from restnet.anchors.blocks import BlockModel
from restnet.anchors.stats import ModelStats, count_flops, count_params
from restnet.part_timing import PROXY_THREADS, host_table, part_programs, stitch_programs
from restnet.stitching import FeatureSpec, StitchLayer, StitchPoint, feature_spec

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

    def anchor_costs(self) -> tuple[float, float]:
        """(front, back): the two ends of the range the budgets lie in."""
        return self.anchor_cost("front"), self.anchor_cost("back")

    def matrix(self) -> torch.Tensor:
        """cost(i, j) for every pair [La, Lb] (float64)."""
        la, lb = len(self.front.blocks), len(self.back.blocks)
        return torch.tensor([[self(StitchPoint(i, j)) for j in range(lb)] for i in range(la)], dtype=torch.float64)


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
    fp, bp = part_programs(front, front_stats), part_programs(back, back_stats)
    sp = stitch_programs(fspecs, bspecs, kernel_size)
    t = host_table(front, back, front_stats, back_stats, fp + bp + sp, threads,
                   [list(range(len(fp))), list(range(len(fp), len(fp) + len(bp)))], cache)
    ms = [v * k for v in t.ms]
    source = t.source if latency_scale is None else f"estimated (host x {k:g}; host {t.source})"
    stitches = dict(zip(dict.fromkeys(product(fspecs, bspecs)), ms[len(fp) + len(bp):]))
    return CostModel(metric, _parts(ms[:len(fp)]), _parts(ms[len(fp):len(fp) + len(bp)]), fspecs, bspecs,
                     kernel_size, source=source, threads=threads, scale=k, stitch_table=stitches, note=t.note,
                     tolerance=t.tolerance)
