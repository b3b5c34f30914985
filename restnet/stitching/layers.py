"""Stitching layers: map one block's output into another model's block space.

One class covers every pair type, because every pair reduces to "view the
source as a map, resample to the destination grid, project channels, view as
the destination layout":

  CNN -> CNN    map -> resample -> Conv2d(k) -> map            (paper: conv)
  ViT -> ViT    tokens -> Linear on the channel dim -> tokens  (paper: linear)
                (same token grid; otherwise the map path below)
  CNN -> ViT    map -> resample to the token grid -> Conv2d(k) -> flatten to
                tokens, class token(s) = mean of the new tokens + a learnt offset
  ViT -> CNN    drop prefix tokens -> tokens to a map -> resample -> Conv2d(k)
  Swin          is a channels-last map; it goes through the map path.

Default kernel: 3x3. The paper's trainable-parameter counts (Table I, e.g.
0.59 M = 256*256*9 for VGG19->VGG11) fit 3x3 convolutions, and a 3x3 kernel
can repair small spatial misalignments that a 1x1 cannot. ``kernel_size=1``
gives SN-Net's cheaper linear stitch. Resampling: integer down-factors use
average pooling (exact, cheap, every exporter supports it); anything else is
bilinear interpolation.

Least-squares initialisation (SN-Net): with design matrix A = [X, 1] built from
calibration features (unfolded k x k patches for convolutions) and targets Y,
the weights are pinv(A) @ Y, computed in float64 as pinv(AᵀA) @ AᵀY (the same
minimum-norm solution) so that rows can be accumulated in chunks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MAP_LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class FeatureSpec:
    """A block output per example: layout, shape and, for tokens, prefix tokens."""

    layout: str  # nchw | nhwc | nlc
    shape: tuple[int, ...]
    num_prefix_tokens: int = 0

    @property
    def channels(self) -> int:
        return self.shape[0] if self.layout == "nchw" else self.shape[-1]

    @property
    def grid(self) -> tuple[int, int]:
        if self.layout == "nchw":
            return self.shape[1], self.shape[2]
        if self.layout == "nhwc":
            return self.shape[0], self.shape[1]
        n = self.shape[0] - self.num_prefix_tokens
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} patch tokens do not form a square grid")
        return side, side


def to_map(x: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """[B, *spec.shape] -> [B, C, H, W] (prefix tokens dropped)."""
    if spec.layout == "nchw":
        return x
    if spec.layout == "nhwc":
        return x.permute(0, 3, 1, 2)
    h, w = spec.grid
    tokens = x[:, spec.num_prefix_tokens:]
    return tokens.transpose(1, 2).reshape(x.shape[0], spec.channels, h, w)


def resample(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = m.shape[-2:]
    if (h, w) == tuple(size):
        return m
    if h % size[0] == 0 and w % size[1] == 0 and h // size[0] == w // size[1]:
        f = h // size[0]
        return F.avg_pool2d(m, kernel_size=f, stride=f)
    return F.interpolate(m, size=size, mode="bilinear", align_corners=False)


class StitchLayer(nn.Module):
    """The only trainable part of a stitched model."""

    def __init__(self, src: FeatureSpec, dst: FeatureSpec, kernel_size: int = 3):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"stitch kernel size must be odd and >= 1, got {kernel_size}")
        self.src, self.dst = src, dst
        cs, cd = src.channels, dst.channels
        if src.layout == "nlc" and dst.layout == "nlc" and src.shape[0] == dst.shape[0] \
                and src.num_prefix_tokens == dst.num_prefix_tokens:
            self.kind = "linear"
            self.kernel_size = 1
            self.proj = nn.Linear(cs, cd)
        else:
            s_tok, d_tok = src.layout == "nlc", dst.layout == "nlc"
            self.kind = {(False, False): "conv", (False, True): "conv_to_tokens",
                         (True, False): "tokens_to_conv", (True, True): "tokens_to_tokens"}[(s_tok, d_tok)]
            self.kernel_size = kernel_size
            self.proj = nn.Conv2d(cs, cd, kernel_size, padding=kernel_size // 2)
        self.prefix = nn.Parameter(torch.zeros(dst.num_prefix_tokens, cd)) if (
            self.kind != "linear" and dst.layout == "nlc" and dst.num_prefix_tokens) else None

    def extra_repr(self) -> str:
        return f"kind={self.kind}, src={self.src.layout}{self.src.shape}, dst={self.dst.layout}{self.dst.shape}"

    def _source_map(self, x: torch.Tensor) -> torch.Tensor:
        return resample(to_map(x, self.src), self.dst.grid)

    def _to_dst(self, y: torch.Tensor) -> torch.Tensor:
        if self.dst.layout == "nchw":
            return y
        if self.dst.layout == "nhwc":
            return y.permute(0, 2, 3, 1)
        tokens = y.flatten(2).transpose(1, 2)
        if self.prefix is None:
            return tokens
        pooled = tokens.mean(1, keepdim=True)
        return torch.cat([pooled + self.prefix.unsqueeze(0), tokens], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return self.proj(x)
        return self._to_dst(self.proj(self._source_map(x)))

    # ---- least-squares initialisation ----
    def _design(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of the design matrix (without the ones column) for inputs x."""
        if self.kind == "linear":
            return x.reshape(-1, self.src.channels)
        m = self._source_map(x)
        k = self.kernel_size
        cols = F.unfold(m, k, padding=k // 2)  # [B, C*k*k, H*W]
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])

    def _targets(self, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return y.reshape(-1, self.dst.channels)
        return to_map(y, self.dst).permute(0, 2, 3, 1).reshape(-1, self.dst.channels)

    @torch.no_grad()
    def init_least_squares(self, src_feats: torch.Tensor, dst_feats: torch.Tensor,
                           max_rows: int = 200_000, chunk: int = 16, seed: int = 0) -> float:
        """Fit the projection to map src_feats onto dst_feats; returns the relative residual."""
        if src_feats.shape[0] != dst_feats.shape[0]:
            raise ValueError("calibration features must cover the same examples")
        n = src_feats.shape[0]
        rows_per_example = self._design(src_feats[:1]).shape[0]
        keep = min(rows_per_example, max(1, max_rows // n))
        gen = torch.Generator().manual_seed(seed)
        ata = aty = None
        for s in range(0, n, chunk):
            a = self._design(src_feats[s:s + chunk]).double()
            y = self._targets(dst_feats[s:s + chunk]).double()
            if keep < rows_per_example:  # same random positions in every example
                b = a.shape[0] // rows_per_example
                idx = torch.randperm(rows_per_example, generator=gen)[:keep]
                idx = (idx[None, :] + rows_per_example * torch.arange(b)[:, None]).reshape(-1)
                a, y = a[idx], y[idx]
            a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], dim=1)
            ata = a.T @ a if ata is None else ata + a.T @ a
            aty = a.T @ y if aty is None else aty + a.T @ y
        w = torch.linalg.pinv(ata, hermitian=True) @ aty  # [(in + 1), out]
        weight, bias = w[:-1].T, w[-1]
        self.proj.weight.copy_(weight.reshape(self.proj.weight.shape).to(self.proj.weight.dtype))
        self.proj.bias.copy_(bias.to(self.proj.bias.dtype))
        if self.prefix is not None:
            p = self.dst.num_prefix_tokens
            tokens = self._to_dst(self.proj(self._source_map(src_feats)))[:, p:]
            self.prefix.copy_((dst_feats[:, :p] - tokens.mean(1, keepdim=True)).mean(0))
        pred = self(src_feats)
        return float((pred - dst_feats).norm() / dst_feats.norm().clamp_min(1e-12))


def feature_spec(model, out_shape: tuple[int, ...]) -> FeatureSpec:
    """The FeatureSpec of one of ``model``'s block outputs (shape from restnet.anchors.stats)."""
    prefix = model.num_prefix_tokens if model.layout == "nlc" else 0
    return FeatureSpec(model.layout, tuple(out_shape), prefix)
