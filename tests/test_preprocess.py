"""The device's preprocessing (toolkit, numpy + Pillow) equals the workstation's (torch), from the manifest.

The manifest's ``input`` block is all a device gets; feeding it to the toolkit must give the very tensors
that restnet trained, evaluated and verified on, or every accuracy in the package is off on the device.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restnet.data import InputSpec, to_model_input
from restnet.package.assemble import input_info
from toolkit.preprocess import preprocess

LITE = ((127 / 255,) * 3, (128 / 255,) * 3)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("shape, resolution", [((28, 28), 64), ((28, 28), 20), ((50, 70, 3), 32),
                                               ((50, 70, 3), 96), ((40, 40, 3), 40)])
@pytest.mark.parametrize("norm", [LITE, IMAGENET], ids=["lite", "imagenet"])
def test_toolkit_input_equals_the_workstations(interpolation, shape, resolution, norm):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    spec = InputSpec(resolution, *norm, interpolation)
    batch = torch.from_numpy(image)[None] if image.ndim == 2 else torch.from_numpy(image).permute(2, 0, 1)[None]
    want = to_model_input(batch, spec).numpy()
    got = preprocess(image, input_info(spec, resolution).model_dump())
    assert got.shape == want.shape == (1, 3, resolution, resolution) and got.dtype == np.float32
    # Both resize with the toolkit's resize_uint8, so the pixels are the same; what is left is float32
    # scaling (x * (1/255) there, x / 255 here: one ulp). One uint8 level is 3.9e-3.
    assert np.abs(got - want).max() <= 1e-6 / min(norm[1])


def test_lite_inputs_lie_on_one_int8_grid():
    """Whole grey levels under EfficientNet-Lite's normalisation are int8 levels: an int8 file's image
    quantiser (pinned to this grid) loses nothing, so it sees what the fp32 file sees."""
    from restnet.export.int8_input import input_grid, on_grid

    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image[0, 0], image[0, 1] = 0, 255  # both ends of the range
    spec = InputSpec(64, *LITE, "bicubic")
    x = to_model_input(torch.from_numpy(image).permute(2, 0, 1)[None], spec)
    assert input_grid(spec) == (1 / 128, -1) and on_grid(x, input_grid(spec))
    assert not on_grid(x + 0.25 / 128, input_grid(spec))  # the check itself can fail
    assert input_grid(InputSpec(64, *IMAGENET)) is None  # a mean between grey levels has no exact grid


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_manifests_before_1_4_keep_the_float_resize(interpolation):
    """Packages made before 1.4 were prepared by torch's antialiased interpolation on float pixels; a
    manifest without ``resize.output`` must still get those inputs (Pillow's float resize equals it)."""
    import torch.nn.functional as F

    image = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    spec = InputSpec(64, *LITE, interpolation)
    info = input_info(spec, 64).model_dump()
    del info["resize"]["output"]
    x = F.interpolate(torch.from_numpy(image)[None, None].float().div(255).expand(-1, 3, -1, -1), size=(64, 64),
                      mode=interpolation, align_corners=False, antialias=True).clamp(0, 1)
    want = ((x - torch.tensor(LITE[0]).view(1, 3, 1, 1)) / torch.tensor(LITE[1]).view(1, 3, 1, 1)).numpy()
    got = preprocess(image, info)
    assert np.abs(got - want).max() <= 1e-5 / min(LITE[1])
    assert np.abs(got - preprocess(image, input_info(spec, 64).model_dump())).max() > 1e-3  # 1.4 differs


def test_nhwc_files_get_the_same_values_transposed():
    image = np.random.default_rng(1).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    info = input_info(InputSpec(32, *LITE, "bicubic"), 32).model_dump()
    assert np.array_equal(preprocess(image, info, "NHWC"), preprocess(image, info).transpose(0, 2, 3, 1))
