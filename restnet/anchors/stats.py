"""Per-block output shapes, parameters and FLOPs.

FLOPs convention (used everywhere in restnet, manifests included): fvcore's
count, where one fused multiply-add is one "flop", i.e. these are MACs, the
unit timm and the ReStNet paper's tables quote as FLOPs (lite0: 0.399 G at
224 px). Convolutions, linear layers, matmuls/einsums (attention included)
and normalisations are counted; element-wise add/mul, activations, softmax
and pooling are not. timm's fused attention (scaled_dot_product_attention) is
invisible to fvcore, so it is switched off while counting.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from restnet.anchors.blocks import BlockInfo, BlockModel


@dataclass(frozen=True)
class ModelStats:
    input_size: int
    stem: BlockInfo
    blocks: list[BlockInfo]
    head: BlockInfo

    @property
    def params(self) -> int:
        return self.stem.params + sum(b.params for b in self.blocks) + self.head.params

    @property
    def flops(self) -> int:
        return self.stem.flops + sum(b.flops for b in self.blocks) + self.head.flops


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@contextlib.contextmanager
def unfused_attention(model: nn.Module) -> Iterator[None]:
    """Make timm attention use explicit matmuls so fvcore sees them."""
    saved = [(m, m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")]
    for m, _ in saved:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, v in saved:
            m.fused_attn = v


def count_flops(module: nn.Module, *inputs: torch.Tensor) -> dict[str, int]:
    """fvcore counts (MACs) per submodule name ('' = total) for one example."""
    from fvcore.nn import FlopCountAnalysis

    with unfused_attention(module), torch.no_grad():
        fca = FlopCountAnalysis(module, inputs)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        return dict(fca.by_module())


def describe(model: BlockModel, input_size: int) -> ModelStats:
    """Shapes, params and FLOPs of every part at ``input_size`` (batch of 1)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, input_size, input_size)
    try:
        flops = count_flops(model, x)
        with torch.no_grad():
            h = model.stem(x)
            stem = BlockInfo(-1, "stem", tuple(h.shape[1:]), count_params(model.stem), int(flops.get("stem", 0)))
            infos = []
            for i, blk in enumerate(model.blocks):
                h = blk(h)
                infos.append(BlockInfo(i, f"blocks.{i}", tuple(h.shape[1:]), count_params(blk),
                                       int(flops.get(f"blocks.{i}", 0))))
            out = model.head(h)
            head = BlockInfo(len(infos), "head", tuple(out.shape[1:]), count_params(model.head),
                             int(flops.get("head", 0)))
    finally:
        model.train(was_training)
    return ModelStats(input_size, stem, infos, head)
