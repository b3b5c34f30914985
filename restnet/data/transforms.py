"""Turning stored images into a model's input, in batches.

PREPROCESS_VERSION names the exact recipe; it is part of every data
fingerprint, so changing the recipe invalidates every cache built on it.

Samples stay uint8 until a whole batch is collated; resizing then runs once
per batch. Images are resized as uint8 by Pillow (the toolkit's
``resize_uint8``, so a device reproduces them to the bit), as a device resizes
a camera frame: every input is then an image of whole grey levels, which an
int8 program holds exactly (restnet.export.int8_input), so an int8 file sees
what its fp32 file sees. Grayscale becomes three equal channels, then the
spec's mean/std apply (an ``InputSpec``, restnet.input_spec: for an anchor,
what its pretrained weights expect, at the task's resolution).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from restnet.input_spec import InputSpec
from toolkit.preprocess import open_rgb, resize_uint8

PREPROCESS_VERSION = "aa-resize-uint8-2"
_PIL = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def to_model_input(batch: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 [N,H,W] or [N,C,H,W] (C = 1 or 3) -> float32 [N,3,r,r] normalised."""
    if batch.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {batch.dtype}")
    if batch.ndim == 3:
        batch = batch.unsqueeze(1)
    r = spec.resolution
    if batch.shape[-2:] != (r, r):
        # The toolkit's own function, image by image: a device gets these very pixels (manifest 1.4).
        hwc = batch.permute(0, 2, 3, 1).numpy()
        batch = torch.from_numpy(np.stack([resize_uint8(im, r, r, spec.interpolation) for im in hwc])
                                 ).permute(0, 3, 1, 2)
    x = batch.float().div_(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
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
