"""One input spec (restnet.input_spec.InputSpec): the anchors state it, the data transforms take it."""
from __future__ import annotations

import pytest

from restnet.anchors.registry import ANCHORS, LITE_MEAN, LITE_STD
from restnet.input_spec import InputSpec
from restnet.training.adapt import input_spec

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
LITE = (LITE_MEAN, LITE_STD)
# What each anchor is fed with: its pretrained size, mean, std, interpolation and centre crop. The
# first four key every adapted anchor's cache (restnet.training.adapt) and are written into every
# manifest, so a change to one must show here before it orphans a cache.
FED = {
    "tf_efficientnet_lite0": (224, *LITE, "bicubic", 0.875),
    "tf_efficientnet_lite1": (240, *LITE, "bicubic", 0.882),
    "tf_efficientnet_lite2": (260, *LITE, "bicubic", 0.89),
    "mobilenetv2_100": (224, *IMAGENET, "bilinear", 0.875),
    "resnet18": (224, *IMAGENET, "bicubic", 0.95),
    "resnet34": (224, *IMAGENET, "bicubic", 0.95),
    "vgg11_bn": (224, *IMAGENET, "bilinear", 0.875),
    "deit_tiny_patch16_224": (224, *IMAGENET, "bicubic", 0.875),
    "deit_small_patch16_224": (224, *IMAGENET, "bicubic", 0.875),
    "swin_tiny_patch4_window7_224": (224, *IMAGENET, "bicubic", 0.9),
}


def test_every_anchor_is_listed_here():
    assert list(FED) == list(ANCHORS)


@pytest.mark.parametrize("name", list(ANCHORS))
def test_an_anchor_is_fed_as_pinned_resized_whole_at_the_tasks_resolution(name):
    p = ANCHORS[name].preprocess
    assert (p.resolution, p.mean, p.std, p.interpolation, p.crop_pct) == FED[name]
    s = input_spec(name, 32)
    assert (s.resolution, s.mean, s.std, s.interpolation, s.crop_pct) == (32, *FED[name][1:4], 1.0)


def test_anchors_with_one_normalisation_have_one_spec():
    """The manifest states a variant's own input only where its spec differs from the package's: anchors
    whose pretrained crops differ (lite0 0.875, lite2 0.89) are still fed alike."""
    assert input_spec("tf_efficientnet_lite2", 64) == input_spec("tf_efficientnet_lite0", 64)
    assert input_spec("resnet18", 64) != input_spec("vgg11_bn", 64)  # bicubic, bilinear


def test_a_spec_refuses_what_no_side_can_do():
    with pytest.raises(ValueError, match="interpolation"):
        InputSpec(32, *IMAGENET, "lanczos")
    with pytest.raises(ValueError, match="crop_pct"):
        InputSpec(32, *IMAGENET, crop_pct=0)
