"""The variants a package ships: stitched models and both anchors, evaluated, sorted and named."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from restnet.data import InputSpec
from restnet.selection import Selection


@dataclass
class Built:
    """One variant (stitched or anchor) with everything the manifest needs."""

    kind: str
    model: nn.Module
    name: str
    cost: float
    accuracy: float
    params: int
    flops: int
    trainable: int
    spec: InputSpec  # what its input is prepared with: the back anchor's own, else the front's
    role: str | None = None  # an anchor's role ("front" or "back")
    selection: Selection | None = None
    files: list[dict] = field(default_factory=list)
    activation_bytes: int = 0


@contextlib.contextmanager
def output_bytes(model: nn.Module) -> Iterator[list[int]]:
    """While open, the size in bytes of every tensor any submodule of ``model`` outputs, in order."""
    sizes: list[int] = []

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        yield sizes
    finally:
        for h in handles:
            h.remove()


def largest_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """The largest tensor any submodule outputs for ``x`` (float32): the peak-RAM estimate's core."""
    with output_bytes(model) as sizes, torch.no_grad():
        model(x)
    return max([x.numel() * 4, *sizes])


def variant_ids(profile: str, metric: str, built: list[Built]) -> list[str]:
    """Self-describing ids, <profile>_<metric>@<cost>_top1@<accuracy>, made unique with -2, -3, ..."""
    taken: set[str] = set()
    return [_variant_id(profile, metric, b.cost, b.accuracy, taken) for b in built]


def _variant_id(profile: str, metric: str, cost: float, acc: float, taken: set[str]) -> str:
    c = {"params": f"params@{cost / 1e6:.2f}M", "flops": f"flops@{cost / 1e6:.0f}M",
         "latency": f"lat@{cost:.1f}ms"}[metric]
    base = f"{profile}_{c}_top1@{acc * 100:.1f}"
    vid, k = base, 2
    while vid in taken:
        vid, k = f"{base}-{k}", k + 1
    taken.add(vid)
    return vid
