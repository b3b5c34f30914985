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

LITE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
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
    # Measured in [0, 1] pixel units: <= 6e-7 when both sides scale alike, up to 5.3e-6 when they scale by
    # different factors (float32 rounding of the kernel weights); one uint8 level is 3.9e-3. Here / std.
    assert np.abs(got - want).max() <= 1e-5 / min(norm[1])


def test_nhwc_files_get_the_same_values_transposed():
    image = np.random.default_rng(1).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    info = input_info(InputSpec(32, *LITE, "bicubic"), 32).model_dump()
    assert np.array_equal(preprocess(image, info, "NHWC"), preprocess(image, info).transpose(0, 2, 3, 1))
