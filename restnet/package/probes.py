"""Per-block probes: each anchor part and each stitching-layer shape as its own small program.

A device measures them (`restnet-bench --blocks`) and the workstation predicts
the latency of any stitch point without building it: the sum of its parts,
corrected for the per-program call overhead that a single fused program does
not pay and for weights too large to stay in cache (the look-up-table method
of Once-for-All / nn-Meter; restnet.package.latency). A few whole stitched
programs (``stitched.iII.jJJ``) are timed beside the parts to fit those two
corrections on the device itself. Probe names are
a pure function of the pair and resolution, so a table measured on the device
maps back onto the cost model by name.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from restnet.anchors.blocks import BlockModel
from restnet.cost import CostModel
from restnet.export import stages
from restnet.package.exports import verified_file
from restnet.package.request import CALIBRATION_POINTS
from restnet.stitching import FeatureSpec, StitchedModel, StitchLayer, StitchPoint
from toolkit.formats import part_name, stitch_name, stitched_name


def anchor_parts(role: str, model: BlockModel, resolution: int) -> Iterator[tuple[str, str, int | None, nn.Module,
                                                                                    torch.Tensor]]:
    """(name, part, index, module, example input) for stem, every block and head."""
    model.eval()  # batch-1 examples through BatchNorm
    x = torch.zeros(1, 3, resolution, resolution)
    with torch.no_grad():
        yield part_name(role, "stem"), "stem", None, model.stem, x
        h = model.stem(x)
        for k, blk in enumerate(model.blocks):
            yield part_name(role, "block", k), "block", k, blk, h
            h = blk(h)
        yield part_name(role, "head"), "head", None, model.head, h


def all_probes(front: BlockModel, back: BlockModel, front_specs: list[FeatureSpec], back_specs: list[FeatureSpec],
               resolution: int, kernel_size: int) -> Iterator[tuple[str, str, str, int | None, nn.Module,
                                                                    torch.Tensor]]:
    """Every anchor part of both anchors, and one stitching layer per distinct (source, target) shape."""
    for role, model in (("front", front), ("back", back)):
        for name, part, idx, mod, x in anchor_parts(role, model, resolution):
            yield name, role, part, idx, mod, x
    seen = set()
    for s in front_specs:
        for d in back_specs:
            if (s, d) in seen:
                continue
            seen.add((s, d))
            torch.manual_seed(0)
            yield stitch_name(s, d), "stitch", "stitch", None, StitchLayer(s, d, kernel_size).eval(), \
                torch.zeros(1, *s.shape)


def calibration_points(shapes: CostModel, count: int = CALIBRATION_POINTS) -> list[StitchPoint]:
    """``count`` stitch points evenly spaced in parameter count (``shapes``: the pair's params cost model): the
    memory term of the prediction has a knee in weight size, so the calibration programs must straddle it."""
    pts = sorted((shapes(StitchPoint(i, j)), i, j) for i in range(len(shapes.front.blocks))
                 for j in range(len(shapes.back.blocks)))
    picks = sorted({round((k + 0.5) * len(pts) / count - 0.5) for k in range(count)})
    return [StitchPoint(pts[k][1], pts[k][2]) for k in picks]


def calibration_probes(front: BlockModel, back: BlockModel, shapes: CostModel, resolution: int,
                       count: int) -> Iterator[tuple[str, str, str, int | None, nn.Module, torch.Tensor]]:
    """``count`` calibration programs, as ``all_probes`` yields its parts."""
    x = torch.zeros(1, 3, resolution, resolution)
    for p in calibration_points(shapes, count):
        torch.manual_seed(0)
        stitch = StitchLayer(shapes.front_specs[p.i], shapes.back_specs[p.j], shapes.kernel_size)
        yield stitched_name(p.i, p.j), "stitch", "stitch", None, StitchedModel(front, back, p, stitch).eval(), x


def export_probes(front: BlockModel, back: BlockModel, shapes: CostModel, resolution: int, fmt: str, root: Path,
                  threads: int, log: Callable[[str], None], calibration: int) -> list[dict]:
    """Write every probe under ``root/probes/`` (verified, cached) and return their manifest entries.
    ``front``/``back``: the anchors' architectures (timing does not depend on the weights); ``shapes``: any
    cost model of the pair, for its feature specs and stitching kernel size; ``calibration``: how many whole
    stitched programs go with the parts."""
    f = stages(fmt, part=True)
    (root / "probes").mkdir(exist_ok=True)
    out = []
    probes = list(all_probes(front, back, shapes.front_specs, shapes.back_specs, resolution, shapes.kernel_size))
    probes += calibration_probes(front, back, shapes, resolution, calibration)
    keys = [same_program(mod, x) for *_, mod, x in probes]
    files: dict[tuple, dict] = {}  # same_program key -> the file written for it
    for key, (name, *_) in zip(keys, probes):
        files.setdefault(key, {"name": name})
    log(f"export {len(probes)} per-block probes -> {fmt} ({len(files)} distinct programs)")
    for key, (name, role, part, idx, mod, x) in zip(keys, probes):
        file = files[key]
        if "path" not in file:
            file["path"] = f"probes/{file['name']}{f.suffix}"
            x = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))  # no ties, unlike zeros
            rec = verified_file(_Wrap(mod).eval(), fmt, x, [x], "probe", threads, root / file["path"],
                                agreement_floor=0.0, part=True)
            file.update(size=rec["size"], sha256=rec["sha256"], host_ms=rec["host_ms"])
        out.append({"name": name, "role": role, "part": part, "index": idx, "in_shape": list(x.shape),
                    "format": fmt, "path": file["path"], "size": file["size"], "sha256": file["sha256"],
                    "host_ms": file["host_ms"]})
    return out


def same_program(mod: nn.Module, x: torch.Tensor) -> tuple:
    """What a probe's program is, weights aside: its layers as printed (types, channels, kernels, strides,
    activations), its parameters' and buffers' names and shapes, and its input shape. Parts equal in all of
    these (the repeated blocks of a stage: 17 of lite2's and lite0's 41 parts at 32 px) run the same
    operators on the same shapes, so they share one file: its timing does not depend on the weights."""
    tensors = [(n, tuple(t.shape)) for n, t in [*mod.named_parameters(), *mod.named_buffers()]]
    return repr(mod), tuple(tensors), tuple(x.shape)


class _Wrap(nn.Module):
    """A part as a standalone program (parts are shared with the anchor; exporting must not change them)."""

    def __init__(self, mod: nn.Module):
        super().__init__()
        self.mod = mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mod(x)
