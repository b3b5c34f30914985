"""Turning stored images into a model's input, in batches.

PREPROCESS_VERSION names the exact recipe; it is part of every data
fingerprint, so changing the recipe invalidates every cache built on it.

Samples stay uint8 until a whole batch is collated; resizing then runs once
per batch (torch ``interpolate``), which is what keeps Fashion-MNIST at
224 px cheap on a 2-core CPU. Grayscale becomes three equal channels, then the
anchor's mean/std apply.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from restnet.anchors.registry import Preprocess
from toolkit.preprocess import open_rgb

PREPROCESS_VERSION = "aa-resize-1"
_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}
_PIL = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


@dataclass(frozen=True)
class InputSpec:
    """Everything a device needs to reproduce preprocessing (goes in manifests)."""

    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    @classmethod
    def from_preprocess(cls, p: Preprocess, resolution: int | None = None) -> "InputSpec":
        return cls(resolution or p.input_size, tuple(p.mean), tuple(p.std), p.interpolation)

    def __post_init__(self) -> None:
        if self.interpolation not in _MODES:
            raise ValueError(f"interpolation must be one of {sorted(_MODES)}, got {self.interpolation!r}")
        if self.resolution < 8:
            raise ValueError(f"resolution must be >= 8 px, got {self.resolution}")


def to_model_input(batch: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 [N,H,W] or [N,C,H,W] (C = 1 or 3) -> float32 [N,3,r,r] normalised."""
    if batch.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {batch.dtype}")
    x = batch.float().div_(255.0)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (spec.resolution, spec.resolution):
        mode = _MODES[spec.interpolation]
        # antialias=True also when enlarging: torch's antialiased kernels are Pillow's, so a device
        # reproduces these inputs exactly with Pillow's float resize (toolkit/preprocess.py).
        x = F.interpolate(x, size=(spec.resolution, spec.resolution), mode=mode,
                          align_corners=False if mode != "nearest" else None,
                          antialias=mode != "nearest")
        x = x.clamp_(0.0, 1.0)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return (x - mean) / std


def load_image(path, resolution: int, interpolation: str = "bilinear", crop_pct: float = 1.0) -> np.ndarray:
    """A file as uint8 [3, r, r]: shorter side to r / crop_pct, centre crop r."""
    with Image.fromarray(open_rgb(path)) as im:  # any mode, 16-bit included; PreprocessError if unreadable
        scale = resolution / crop_pct / min(im.size)
        w, h = max(resolution, round(im.width * scale)), max(resolution, round(im.height * scale))
        im = im.resize((w, h), _PIL[interpolation])
        left, top = (w - resolution) // 2, (h - resolution) // 2
        im = im.crop((left, top, left + resolution, top + resolution))
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
