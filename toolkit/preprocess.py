"""The manifest's preprocessing, in numpy + Pillow (no torch).

restnet prepares inputs with torch's antialiased interpolation on float
pixels in [0, 1]; Pillow's float ('F' mode) resize computes the same thing
(measured: max difference 4e-7 for bicubic, up- and downscaling), so a
device reproduces the workstation's inputs, not an approximation of them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def as_uint8_rgb(image) -> np.ndarray:
    """A path, PIL image or uint8 array (H x W, H x W x 1/3/4) -> uint8 H x W x C (C = 1 or 3)."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            image = np.asarray(im.convert("RGB"))
    elif isinstance(image, Image.Image):
        image = np.asarray(image.convert("L" if image.mode in ("L", "1") else "RGB"))
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an H x W or H x W x 1/3/4 image, got shape {a.shape}")
    return a[..., :3] if a.shape[2] == 4 else a


def preprocess(image, spec: dict, layout: str | None = None) -> np.ndarray:
    """One image -> the float32 input tensor the manifest's ``input`` describes (batch of 1)."""
    a = as_uint8_rgb(image)
    h, w = spec["resize"]["size"]
    filt = _FILTERS[spec["resize"]["interpolation"]]
    chans = []
    for c in range(a.shape[2]):
        ch = Image.fromarray(a[..., c].astype(np.float32) * np.float32(spec["scale"]), mode="F")
        if ch.size != (w, h):
            ch = ch.resize((w, h), filt)
        chans.append(np.clip(np.asarray(ch, dtype=np.float32), 0.0, 1.0))
    if len(chans) == 1:  # grayscale: replicate to three channels
        chans = chans * 3
    x = np.stack(chans)  # C, H, W
    mean = np.asarray(spec["mean"], np.float32).reshape(3, 1, 1)
    std = np.asarray(spec["std"], np.float32).reshape(3, 1, 1)
    x = ((x - mean) / std)[None]
    if (layout or spec["layout"]) == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)
