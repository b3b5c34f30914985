"""Anchors: registered timm models, cut into blocks, with offline weights."""
from __future__ import annotations

import os

import torch

from restnet._compat import import_timm
from restnet.anchors.blocks import BlockInfo, BlockModel, cut
from restnet.anchors.registry import ANCHORS, AnchorSpec, get_anchor
from restnet.anchors.weights import WeightsUnavailable, load_pretrained

__all__ = [
    "ANCHORS", "AnchorSpec", "BlockInfo", "BlockModel", "WeightsUnavailable",
    "create_anchor", "get_anchor", "load_pretrained",
]


def create_anchor(
    name: str,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    img_size: int | None = None,
) -> BlockModel:
    """A registered anchor as a BlockModel in eval mode.

    ``img_size`` only matters for ViT/Swin (their position tables depend on
    it); CNNs take any size. ``model.weights_source`` records where the
    weights came from ("random" when not pretrained).
    """
    spec = get_anchor(name)
    timm = import_timm()
    kwargs = {}
    if img_size is not None and spec.family in ("vit", "swin"):
        kwargs["img_size"] = img_size
    with torch.device("cpu"):
        net = timm.create_model(spec.arch, pretrained=False, num_classes=spec.num_classes, **kwargs)
    source = "random"
    if pretrained or weights is not None:
        source = load_pretrained(spec, net, weights)
    model = cut(net.eval(), spec.name, spec.family)
    model.weights_source = source
    return model.eval()
