"""Cost of a stitch point, as in Algorithm 1: cost(back part) + cost(S) + cost(front part).

Three metrics behind one interface:
  ``params``   parameter count;
  ``flops``    fvcore multiply-adds at the task resolution (see restnet.anchors.stats);
  ``latency``  milliseconds, the sum of per-part latencies from a table: measured
               here on this host (median of repeated runs, thread count recorded),
               or, later, a table measured on the device. Summing per-block
               latencies is the look-up-table method of Once-for-All / nn-Meter.

Part costs are computed once per block and once per distinct stitching-layer
shape, so costing every (i, j) pair is cheap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from restnet.anchors.blocks import BlockModel
from restnet.anchors.stats import ModelStats, count_flops, count_params
from restnet.stitching import FeatureSpec, StitchLayer, StitchPoint, feature_spec
from restnet.timing import measure_ms, torch_threads

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


@torch.no_grad()
def measured_part_costs(model: BlockModel, input_size: int, runs: int = 15, threads: int | None = None) -> PartCosts:
    """Host latency per part, each timed on its real input (batch 1)."""
    with torch_threads(threads):
        x = torch.zeros(1, 3, input_size, input_size)
        stem = measure_ms(model.stem, x, runs)
        h = model.stem(x)
        blocks = []
        for blk in model.blocks:
            blocks.append(measure_ms(blk, h, runs))
            h = blk(h)
        return PartCosts(stem, blocks, measure_ms(model.head, h, runs))


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
    stitch_table: dict | None = None  # (src spec, dst spec) -> cost, when stitch costs come from a table
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
                with torch_threads(self.threads):
                    c = measure_ms(layer, x)
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


def build_cost_model(metric: str, front: BlockModel, back: BlockModel, front_stats: ModelStats,
                     back_stats: ModelStats, kernel_size: int = 3, threads: int | None = None,
                     latency_scale: float | None = None) -> CostModel:
    """Static metrics from the stats; latency measured on this host now (times ``latency_scale``
    when the device is not this host: an estimate, and the source says so)."""
    fspecs = [feature_spec(front, b.out_shape) for b in front_stats.blocks]
    bspecs = [feature_spec(back, b.out_shape) for b in back_stats.blocks]
    if metric in ("params", "flops"):
        return CostModel(metric, static_part_costs(front_stats, metric), static_part_costs(back_stats, metric),
                         fspecs, bspecs, kernel_size)
    if metric != "latency":
        raise ValueError(f"cost metric must be one of {METRICS}, got {metric!r}")
    threads = threads or torch.get_num_threads()
    k = latency_scale or 1.0
    source = "measured (host, sum of parts)" if latency_scale is None else \
        f"estimated (host sum of parts x {k:g})"
    return CostModel(metric, _scaled(measured_part_costs(front, front_stats.input_size, threads=threads), k),
                     _scaled(measured_part_costs(back, back_stats.input_size, threads=threads), k), fspecs, bspecs,
                     kernel_size, source=source, threads=threads, scale=k)
