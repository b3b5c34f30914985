"""Device limits: which stitch points a device can run, and the ladder of budgets they allow.

A profile states four limits: a latency target, a compute budget (MACs per
inference), a RAM share and storage for models. Each is turned into a figure
per stitch point from the architectures alone (no weights, no training), so
a device whose limits no variant meets is refused in seconds:

  latency  the best device-latency source there is: a device table's
           per-block prediction, else the profile's host estimate (host .pte
           latency x host_scale, spread over the blocks in proportion to
           their eager latency), else unknown (not checked);
  compute  fvcore MACs (the manifest's ``flops``);
  ram      the manifest's peak-RAM estimate: the file + 2 x the largest
           activation (float32, batch 1) + the runtime overhead;
  storage  the file (the package's total is checked again on the real files
           when it is written).
The file is estimated as 4 bytes per parameter (x FILE_OVERHEAD).

The ladder ("budgets: ladder: N") then places N budgets in the selection
metric from the small anchor's cost up to the costliest point that fits every
limit (the large anchor's cost when the large anchor fits); points that break
a limit are masked out of the CKA matrix, and an anchor that breaks one does
not ship. The binding limit is the one that stops the ladder: the limit broken
by the cheapest point above its top.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from restnet.cost import CostModel, PartCosts
from restnet.package.manifest import RUNTIME_OVERHEAD_MB
from restnet.package.variants import output_bytes
from restnet.profiles import Profile, ProfileError
from restnet.stitching import StitchPoint

LIMITS = ("latency", "compute", "ram", "storage")
# An XNNPACK .pte of these models is 0.997 x 4 bytes per parameter (lite0 and four stitched members at 64 px,
# measured); the estimate rounds that up.
FILE_OVERHEAD = 1.0
UNIT = {"latency": "ms", "compute": "MACs", "ram": "MB", "storage": "MB"}
FIELD = {"latency": "latency_target_ms", "compute": "compute_gmacs", "ram": "ram_mb x model_ram_share",
         "storage": "storage_mb"}


def limit_values(p: Profile) -> dict[str, float]:
    """The profile's limits in the units of UNIT; absent ones are left out."""
    out = {"ram": p.model_ram_mb, "storage": float(p.storage_mb)}
    if p.latency_target_ms is not None:
        out["latency"] = p.latency_target_ms
    if p.compute_gmacs is not None:
        out["compute"] = p.compute_gmacs * 1e9
    return out


@torch.no_grad()
def activation_peaks(model: nn.Module, resolution: int) -> tuple[int, list[int], int]:
    """(stem, per block, head): the most float32 bytes any submodule of that part outputs (batch 1)."""
    x = torch.zeros(1, 3, resolution, resolution)
    with output_bytes(model) as sizes:
        parts = []
        sizes.append(x.numel() * 4)
        h = model.stem(x)
        parts.append(max(sizes))
        for blk in model.blocks:
            sizes.clear()
            h = blk(h)
            parts.append(max(sizes))
        sizes.clear()
        model.head(h)
        parts.append(max(sizes))
    return parts[0], parts[1:-1], parts[-1]


@dataclass
class Figures:
    """Per stitch point and per anchor, the figure each limit is checked against."""

    latency: CostModel | None  # device ms; None = no source
    flops: CostModel
    params: CostModel
    front_act: tuple[int, list[int], int]
    back_act: tuple[int, list[int], int]

    @staticmethod
    def _file_mb(params: float) -> float:
        return params * 4 * FILE_OVERHEAD / 2**20

    def point(self, p: StitchPoint) -> dict[str, float | None]:
        (fs, fb, _), (_, bb, bh) = self.front_act, self.back_act
        stitch = self.params.back_specs[p.j]
        act = max(fs, *fb[: p.i + 1], 4 * math.prod(stitch.shape), *bb[p.j + 1:], bh)
        return self._figures(self.latency(p) if self.latency else None, self.flops(p), self.params(p), act)

    def anchor(self, role: str) -> dict[str, float | None]:
        s, b, h = self.front_act if role == "front" else self.back_act
        return self._figures(self.latency.anchor_cost(role) if self.latency else None,
                             self.flops.anchor_cost(role), self.params.anchor_cost(role), max(s, *b, h))

    def _figures(self, ms: float | None, macs: float, params: float, act: int) -> dict[str, float | None]:
        file = self._file_mb(params)
        return {"latency": ms, "compute": macs, "ram": file + 2 * act / 2**20 + RUNTIME_OVERHEAD_MB, "storage": file}


def broken(figures: dict[str, float | None], limits: dict[str, float]) -> list[str]:
    """The limits these figures exceed (unknown figures break nothing)."""
    return [k for k in LIMITS if k in limits and figures.get(k) is not None and figures[k] > limits[k]]


def headroom(figures: dict[str, float | None], limits: dict[str, float]) -> dict[str, float | None]:
    """Per limit, the share left: 1 - figure / limit (negative = over; None = unknown or no limit)."""
    return {k: (None if k not in limits or figures.get(k) is None else round(1 - figures[k] / limits[k], 4))
            for k in LIMITS}


@dataclass
class Ladder:
    budgets: list[float]
    mask: torch.Tensor  # True where a stitch point fits every limit
    binding: str  # a LIMITS name, or "anchor" when the large anchor fits and ends the ladder
    anchors: dict[str, bool]  # role -> fits every limit (ships)
    limits: dict[str, float]
    unchecked: list[str]  # limits the profile sets but no figure exists for (latency without a source)


def plan_ladder(p: Profile, n: int, cm: CostModel, fig: Figures, names: tuple[str, str]) -> Ladder:
    """N budgets in ``cm``'s metric from the small anchor up to the costliest point that fits."""
    limits = limit_values(p)
    la, lb = len(cm.front.blocks), len(cm.back.blocks)
    pts = [StitchPoint(i, j) for i in range(la) for j in range(lb)]
    figures = {q: fig.point(q) for q in pts}
    fits = {q: not broken(figures[q], limits) for q in pts}
    anchors = {r: not broken(fig.anchor(r), limits) for r in ("front", "back")}
    small, large = sorted(("front", "back"), key=cm.anchor_cost)
    ok_costs = [cm(q) for q in pts if fits[q]] + [cm.anchor_cost(r) for r in anchors if anchors[r]]
    if not ok_costs:
        name = names[("front", "back").index(small)]
        raise ProfileError(_nothing_fits(p, limits, fig.anchor(small), figures, name))
    low = cm.anchor_cost(small) if anchors[small] else min(ok_costs)
    if anchors[large]:
        top, binding = cm.anchor_cost(large), "anchor"
        budgets = [low + (top - low) * (k + 1) / (n + 1) for k in range(n)]
    else:
        top = max((c for c in ok_costs if c <= cm.anchor_cost(large)), default=min(ok_costs))
        above = sorted((q for q in pts if not fits[q] and cm(q) > top), key=cm)
        figs = figures[above[0]] if above else fig.anchor(large)
        binding = max(broken(figs, limits), key=lambda k: figs[k] / limits[k])  # the most exceeded
        budgets = [low + (top - low) * (k + 1) / n for k in range(n)]
    mask = torch.tensor([[fits[StitchPoint(i, j)] for j in range(lb)] for i in range(la)])
    unchecked = ["latency"] if "latency" in limits and fig.latency is None else []
    return Ladder(budgets, mask, binding, anchors, limits, unchecked)


def _nothing_fits(p: Profile, limits: dict[str, float], small: dict[str, float | None],
                  points: dict[StitchPoint, dict[str, float | None]], name: str) -> str:
    """The message when no variant fits: per broken limit, the small anchor's figure and the cheapest point's."""
    over = broken(small, limits)
    lines = [f"profile {p.name}: no variant fits the device's limits; the small anchor {name} breaks "
             f"{', '.join(over)}:"]
    for k in over:
        cheapest = min((f[k] for f in points.values()), default=small[k])
        lines.append(f"  {k} ({FIELD[k]}): limit {format_limit(limits[k], k)}, small anchor "
                     f"{format_limit(small[k], k)}, cheapest stitch point {format_limit(cheapest, k)}")
    lines.append("raise the limit in the profile, lower its resolution, or pick smaller anchors (--back)")
    return "\n".join(lines)


def format_limit(v: float, k: str) -> str:
    """A limit's value or a figure in its unit, as the log, errors and the package README print it."""
    return f"{v / 1e6:.1f} M MACs" if k == "compute" else f"{v:.3g} {UNIT[k]}"


def latency_figures(part_ms: CostModel, anchor_pte_ms: Callable[[str], float], scale: float) -> CostModel:
    """Device-ms per point from the host: each anchor's .pte latency x ``scale``, spread over its blocks in
    proportion to their eager latency (``part_ms``); stitches at the anchors' mean .pte/eager ratio."""
    ratios = {r: anchor_pte_ms(r) / part_ms.anchor_cost(r) for r in ("front", "back")}
    sc = lambda pc, k: PartCosts(pc.stem * k, [b * k for b in pc.blocks], pc.head * k)  # noqa: E731
    stitch = (ratios["front"] + ratios["back"]) / 2 * scale
    return CostModel("latency", sc(part_ms.front, ratios["front"] * scale), sc(part_ms.back, ratios["back"] * scale),
                     part_ms.front_specs, part_ms.back_specs, part_ms.kernel_size,
                     source=f"estimated (host .pte x {scale:g}, spread over blocks by eager latency)",
                     threads=part_ms.threads, scale=stitch,
                     stitch_table={k: v * stitch for k, v in (part_ms.stitch_table or {}).items()})


def describe_ladder(lad: Ladder, names: tuple[str, str]) -> str:
    """One line for the log: the limits, which one binds, which anchors ship."""
    lims = ", ".join(f"{k} {format_limit(v, k)}" for k, v in lad.limits.items())
    bind = ("none: the large anchor fits every limit" if lad.binding == "anchor"
            else f"{lad.binding} ({FIELD[lad.binding]})")
    left = [n for r, n in zip(("front", "back"), names) if not lad.anchors[r]]
    note = "".join(f"; {k}: no device figure (no latency table or estimate), not checked" for k in lad.unchecked)
    return (f"device limits: {lims}; binding: {bind}" + (f"; not shipped (over a limit): {', '.join(left)}"
                                                          if left else "") + note)


def check_storage(p: Profile, folder: Path) -> float:
    """The package's size in MB; refuses one larger than the profile's storage_mb (before it replaces anything)."""
    total = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2**20
    if total > p.storage_mb:
        raise ProfileError(f"profile {p.name}: the package is {total:.1f} MB, over storage_mb {p.storage_mb}; "
                           "ship fewer members (ladder/between), --no-anchors, or raise storage_mb")
    return total
