"""The manifest's preprocessing, in numpy + Pillow (no torch).

Manifest 1.4 (``resize.output: uint8``): the uint8 image is resized by
Pillow's own uint8 resampling (``resize_uint8``), which restnet calls too, so
a device reproduces the workstation's inputs to the bit; a resized image of
whole grey levels is also what an int8 program can take without loss.
Packages before 1.4 were prepared on float pixels in [0, 1] with torch's
antialiased interpolation; Pillow's float ('F' mode) resize computes the same
thing (measured: max difference 4e-7 for bicubic, up- and downscaling).

The ``spec`` these functions take is a manifest's ``input`` section (the
package's, or a variant's own), read from the JSON: the toolkit never imports
restnet. Its keys (shape, layout, dtype, color, scale, mean, std and resize:
size, interpolation, antialias, grayscale, output) are written by restnet's
``InputSpec.to_manifest()`` (restnet/input_spec.py) through the manifest's
``InputInfo`` model, from which toolkit/manifest.schema.json is generated.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from toolkit.errors import DataInvalid

_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
MAX_SIDE = 1 << 14  # larger images are refused (memory), not resized


class PreprocessError(DataInvalid, ValueError, TypeError):
    """An image (or input spec) this preprocessing cannot take; the message says what it got."""


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: grayscale replicated, alpha dropped, palette expanded, and
    16-bit grayscale (PNG) scaled to 8 bits (Pillow's own convert would clip it to white)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im, dtype=np.int64 if im.mode == "I" else np.uint16).astype(np.float64)
        im = Image.fromarray(np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8), mode="L")
    elif im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        im = Image.fromarray(np.clip(np.rint(a * 255.0 if a.max(initial=0) <= 1.0 else a), 0, 255).astype(np.uint8))
    return im if im.mode == "RGB" else im.convert("RGB")


def open_rgb(path: str | Path) -> np.ndarray:
    """A file as uint8 H x W x 3; an unreadable, truncated or oversized one raises PreprocessError."""
    try:
        with Image.open(path) as im:
            if max(im.size) > MAX_SIDE:
                raise PreprocessError(f"{path}: {im.width}x{im.height} px is larger than {MAX_SIDE} px a side")
            return np.asarray(to_rgb(im))
    except PreprocessError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow's decoders raise many types on a damaged file
        raise PreprocessError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None


def as_uint8_rgb(image) -> np.ndarray:
    """A path, PIL image or uint8 array (H x W, H x W x 1/3/4) -> uint8 H x W x C (C = 1 or 3)."""
    if isinstance(image, (str, Path)):
        image = open_rgb(image)
    elif isinstance(image, Image.Image):
        image = np.asarray(image.convert("L") if image.mode in ("L", "1") else to_rgb(image))
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise PreprocessError(f"expected uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or 0 in a.shape[:2] or max(a.shape[:2]) > MAX_SIDE:
        raise PreprocessError(f"expected an H x W or H x W x 1/3/4 image of 1..{MAX_SIDE} px a side, "
                              f"got shape {a.shape}")
    return a[..., :3] if a.shape[2] == 4 else a


def resize_uint8(a: np.ndarray, h: int, w: int, interpolation: str) -> np.ndarray:
    """uint8 H x W x C (C = 1 or 3) -> uint8 h x w x C, by Pillow's uint8 resampling (antialiased when
    shrinking). restnet resizes with this very function, so both sides get the same pixels."""
    if a.shape[:2] == (h, w):
        return a
    im = Image.fromarray(np.ascontiguousarray(a[..., 0] if a.shape[2] == 1 else a))
    out = np.asarray(im.resize((w, h), _FILTERS[interpolation]))
    return out[..., None] if out.ndim == 2 else out


def _resize_float(ch: np.ndarray, h: int, w: int, filt: int) -> np.ndarray:
    im = Image.fromarray(ch, mode="F")
    if im.size != (w, h):
        im = im.resize((w, h), filt)
    return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)


def preprocess(image, spec: dict, layout: str | None = None) -> np.ndarray:
    """One image -> the float32 input tensor the manifest's ``input`` describes (batch of 1)."""
    a = as_uint8_rgb(image)
    h, w, filt, scale, mean, std, spec_layout = _read_spec(spec)
    if spec["resize"].get("output", "float32") == "uint8":  # 1.4
        a = resize_uint8(a, h, w, spec["resize"]["interpolation"])
        chans = [a[..., c].astype(np.float32) * scale for c in range(a.shape[2])]
    else:  # before 1.4: float pixels resized
        chans = [_resize_float(a[..., c].astype(np.float32) * scale, h, w, filt) for c in range(a.shape[2])]
    if len(chans) == 1:  # grayscale: replicate to three channels
        chans = chans * 3
    x = np.stack(chans)  # C, H, W
    x = ((x - mean) / std)[None]
    if (layout or spec_layout) == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def _read_spec(spec: dict) -> tuple[int, int, int, np.float32, np.ndarray, np.ndarray, str]:
    """(h, w, filter, scale, mean, std, layout) from the manifest's ``input`` block, or PreprocessError."""
    try:
        layout = spec["layout"]
        h, w = (int(v) for v in spec["resize"]["size"])
        filt = _FILTERS[spec["resize"]["interpolation"]]
        if spec["resize"].get("output", "float32") not in ("float32", "uint8"):
            raise ValueError(f"resize output {spec['resize']['output']!r} is not 'float32' or 'uint8'")
        scale = np.float32(float(spec["scale"]))  # a number: float([]) fails here, np.float32([]) would not
        mean = np.asarray(spec["mean"], np.float32).reshape(3, 1, 1)
        std = np.asarray(spec["std"], np.float32).reshape(3, 1, 1)
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise PreprocessError(f"input spec is not a manifest 'input' block ({type(err).__name__}: {err})") from None
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE) or not np.all(np.isfinite(std)) or np.any(std == 0):
        raise PreprocessError(f"input spec: size {h}x{w} must be 1..{MAX_SIDE} px and std finite and non-zero")
    if layout not in ("NCHW", "NHWC"):
        raise PreprocessError(f"input spec: layout {layout!r} is not NCHW or NHWC")
    return h, w, filt, scale, mean, std, layout


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)
