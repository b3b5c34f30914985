"""A stitched model: front blocks of one anchor, a stitching layer, back blocks of another.

Slow-to-Fast (the paper's default): front = the large anchor, back = the
small one. Fast-to-Slow swaps them. ``StitchPoint(i, j)`` keeps the front's
stem and blocks 0..i and the back's blocks j+1.. and head, so the stitching
layer maps front block i's output onto what back block j would have produced
(CKA matrix entry M[i, j]). Indices are 0-based; block i is the (i+1)-th.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from restnet.anchors.blocks import BlockModel
from restnet.stitching.layers import StitchLayer

DIRECTIONS = ("slow-to-fast", "fast-to-slow")


@dataclass(frozen=True, order=True)
class StitchPoint:
    i: int  # last front block kept
    j: int  # back block whose output space the stitch maps into

    def label(self, front: str = "front", back: str = "back") -> str:
        return f"{front}[:{self.i + 1}]→{back}[{self.j + 1}:]"

    def to_dict(self) -> dict:
        return asdict(self)


class StitchedModel(nn.Module):
    """A plain nn.Module: torch.export and every exporter see ordinary submodules."""

    def __init__(self, front: BlockModel, back: BlockModel, point: StitchPoint, stitch: StitchLayer):
        super().__init__()
        if not 0 <= point.i < front.num_blocks or not 0 <= point.j < back.num_blocks:
            raise ValueError(f"stitch point {point} outside {front.name} ({front.num_blocks} blocks) / "
                             f"{back.name} ({back.num_blocks} blocks)")
        self.front_name, self.back_name, self.point = front.name, back.name, point
        self.stem = front.stem
        self.front_blocks = nn.Sequential(*front.blocks[: point.i + 1])
        self.stitch = stitch
        self.back_blocks = nn.Sequential(*back.blocks[point.j + 1:])
        self.head = back.head

    def forward_front(self, x: torch.Tensor) -> torch.Tensor:
        """What stitch-only training caches: the frozen front's output."""
        return self.front_blocks(self.stem(x))

    def forward_from_front(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.back_blocks(self.stitch(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_front(self.forward_front(x))

    def parts(self) -> dict[str, nn.Module]:
        return {"front": nn.ModuleList([self.stem, self.front_blocks]), "stitch": self.stitch,
                "back": nn.ModuleList([self.back_blocks, self.head])}

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def describe(self) -> str:
        return f"{self.point.label(self.front_name, self.back_name)} ({self.stitch.kind}, k={self.stitch.kernel_size})"
