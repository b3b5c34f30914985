"""A timm model cut into stem -> ordered blocks -> head.

Stitching needs to run "the first m blocks of one model" and "the blocks after
n of another" as separate, exportable modules. Each supported timm class gets
one small cutter below; the pieces it returns are the model's own submodules
(same parameter objects, no copies), so loading weights into the timm model
before or after cutting is the same thing.

Granularity is what the paper stitches at: every inverted-residual block of an
EfficientNet/MobileNet, every residual block of a ResNet, every conv(+bn+relu,
+pool) unit of a VGG, every transformer block of a ViT, and every Swin block
(a stage's patch-merging goes with that stage's first block).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from restnet._compat import import_timm

LAYOUTS = {"cnn": "nchw", "vit": "nlc", "swin": "nhwc"}


class BlockModel(nn.Module):
    """stem -> blocks[0..L-1] -> head; ``forward`` equals the timm model's.

    ``layout`` is how block outputs are laid out (per example): ``nchw`` maps
    for CNNs, ``nlc`` tokens for ViTs (``num_prefix_tokens`` class/register
    tokens first), ``nhwc`` maps for Swin.
    """

    def __init__(self, name: str, family: str, stem: nn.Module, blocks: list[nn.Module], head: nn.Module,
                 num_prefix_tokens: int = 0):
        super().__init__()
        self.name = name
        self.family = family
        self.layout = LAYOUTS[family]
        self.num_prefix_tokens = num_prefix_tokens
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def forward_blocks(self, x: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        for blk in self.blocks[start:end]:
            x = blk(x)
        return x

    def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output from one forward pass (what CKA compares)."""
        x = self.stem(x)
        outs = []
        for blk in self.blocks:
            x = blk(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_blocks(self.stem(x)))


class _Borrowed(nn.Module):
    """Some submodules/parameters of a timm model run by one of timm's own methods.

    Used where timm's stem or head is a method (ViT's position embedding and
    pooling) rather than a module: the method runs with this object as
    ``self``, which carries exactly the attributes it reads.
    """

    def __init__(self, src: nn.Module, fn: Callable, modules: list[str], params: list[str], attrs: list[str]):
        super().__init__()
        self._fn = fn
        for n in modules:
            setattr(self, n, getattr(src, n))
        for n in params:
            p = getattr(src, n)
            if p is None:
                setattr(self, n, None)
            else:
                self.register_parameter(n, p)
        for n in attrs:
            setattr(self, n, getattr(src, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(self, x)


class Dropout(nn.Dropout):
    """timm applies ``drop_rate`` inline in forward_head; this keeps it a module."""


def _cut_efficientnet(m: nn.Module) -> tuple[nn.Module, list[nn.Module], nn.Module]:
    stem = nn.Sequential(m.conv_stem, m.bn1)
    blocks = [b for stage in m.blocks for b in stage]
    head = nn.Sequential(m.conv_head, m.bn2, m.global_pool, Dropout(m.drop_rate), m.classifier)
    return stem, blocks, head


def _cut_resnet(m: nn.Module) -> tuple[nn.Module, list[nn.Module], nn.Module]:
    stem = nn.Sequential(m.conv1, m.bn1, m.act1, m.maxpool)
    blocks = [b for layer in (m.layer1, m.layer2, m.layer3, m.layer4) for b in layer]
    head = nn.Sequential(m.global_pool, Dropout(m.drop_rate), m.fc)
    return stem, blocks, head


def _cut_vgg(m: nn.Module) -> tuple[nn.Module, list[nn.Module], nn.Module]:
    # A block starts at each conv and takes the bn/relu/pool layers after it.
    groups: list[list[nn.Module]] = []
    for layer in m.features:
        if isinstance(layer, nn.Conv2d) or not groups:
            groups.append([])
        groups[-1].append(layer)
    blocks = [nn.Sequential(*g) for g in groups]
    return nn.Identity(), blocks, nn.Sequential(m.pre_logits, m.head)


def _vit_stem(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    timm = import_timm()
    x = self.patch_embed(x)
    x = timm.models.vision_transformer.VisionTransformer._pos_embed(self, x)
    x = self.patch_drop(x)
    return self.norm_pre(x)


def _vit_head(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    timm = import_timm()
    x = self.norm(x)
    x = timm.models.vision_transformer.VisionTransformer.pool(self, x)
    x = self.fc_norm(x)
    x = self.head_drop(x)
    return self.head(x)


def _cut_vit(m: nn.Module) -> tuple[nn.Module, list[nn.Module], nn.Module]:
    stem = _Borrowed(
        m, _vit_stem,
        modules=["patch_embed", "pos_drop", "patch_drop", "norm_pre"],
        params=["cls_token", "reg_token", "pos_embed"],
        attrs=["no_embed_class", "dynamic_img_size", "num_prefix_tokens"],
    )
    head = _Borrowed(
        m, _vit_head,
        modules=["norm", "fc_norm", "head_drop", "head", "attn_pool"],
        params=[],
        attrs=["global_pool", "num_prefix_tokens", "pool_include_prefix"],
    )
    return stem, list(m.blocks), head


def _cut_swin(m: nn.Module) -> tuple[nn.Module, list[nn.Module], nn.Module]:
    blocks: list[nn.Module] = []
    for stage in m.layers:
        stage_blocks = list(stage.blocks)
        if not isinstance(stage.downsample, nn.Identity):
            stage_blocks[0] = nn.Sequential(stage.downsample, stage_blocks[0])
        blocks.extend(stage_blocks)
    return m.patch_embed, blocks, nn.Sequential(m.norm, m.head)


def _cutters() -> dict[type, Callable]:
    timm = import_timm()
    tm = timm.models
    return {
        tm.efficientnet.EfficientNet: _cut_efficientnet,
        tm.resnet.ResNet: _cut_resnet,
        tm.vgg.VGG: _cut_vgg,
        tm.vision_transformer.VisionTransformer: _cut_vit,
        tm.swin_transformer.SwinTransformer: _cut_swin,
    }


def cut(model: nn.Module, name: str, family: str) -> BlockModel:
    """Cut a timm model into a BlockModel sharing its parameters."""
    for cls, fn in _cutters().items():
        if isinstance(model, cls):
            stem, blocks, head = fn(model)
            return BlockModel(name, family, stem, blocks, head, int(getattr(model, "num_prefix_tokens", 0)))
    known = ", ".join(c.__name__ for c in _cutters())
    raise TypeError(f"{name}: timm class {type(model).__name__} has no block cutter (known: {known})")


@dataclass(frozen=True)
class BlockInfo:
    """One block at a given input size. ``flops`` follows fvcore (see restnet.anchors.cost)."""

    index: int
    name: str
    out_shape: tuple[int, ...]  # without the batch dimension
    params: int
    flops: int
