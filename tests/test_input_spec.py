"""One input spec (restnet.input_spec.InputSpec): the anchors take it from timm's pretrained config, the
data transforms take it, and its ``to_manifest()`` is the manifest's ``input`` section the toolkit reads.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restnet._compat import import_timm
from restnet.anchors.registry import ANCHORS, LITE_MEAN, LITE_STD, timm_input
from restnet.data import to_model_input
from restnet.input_spec import InputSpec
from restnet.package import manifest as mf
from restnet.training.adapt import input_spec
from toolkit.preprocess import preprocess

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
LITE = (LITE_MEAN, LITE_STD)
# What each anchor is fed with: its pretrained size, mean, std, interpolation and timm's centre crop. The
# first four key every adapted anchor's cache (restnet.training.adapt) and are written into every
# manifest, so a timm release that changed one would show here before it orphaned a cache.
FED = {
    "tf_efficientnet_lite0": (224, *LITE, "bicubic", 0.875),
    "tf_efficientnet_lite1": (240, *LITE, "bicubic", 0.882),
    "tf_efficientnet_lite2": (260, *LITE, "bicubic", 0.89),
    "mobilenetv2_100": (224, *IMAGENET, "bilinear", 0.875),
    "resnet18": (224, *IMAGENET, "bicubic", 0.95),
    "resnet34": (224, *IMAGENET, "bicubic", 0.95),
    "vgg11_bn": (224, *IMAGENET, "bilinear", 0.875),
    "deit_tiny_patch16_224": (224, *IMAGENET, "bicubic", 0.9),
    "deit_small_patch16_224": (224, *IMAGENET, "bicubic", 0.9),
    "swin_tiny_patch4_window7_224": (224, *IMAGENET, "bicubic", 0.9),
}


def test_every_anchor_is_listed_here():
    assert list(FED) == list(ANCHORS)


@pytest.mark.parametrize("name", list(ANCHORS))
def test_an_anchors_input_is_timms_pretrained_config_but_what_it_says_differs(name):
    """Every anchor is a timm model with a pretrained config; the registry states only where restnet
    differs from it (EfficientNet-Lite: TensorFlow's normalisation, for an exact int8 input;
    mobilenetv2_100: torchvision's weights, resized bilinear), and each stated difference is one."""
    a = ANCHORS[name]
    cfg = import_timm().models.get_pretrained_cfg(a.pretrained_tag)
    assert cfg is not None and a.pretrained_tag.startswith(a.arch + ".")
    theirs = InputSpec.from_timm(cfg)
    differs = a.input_differs
    given = {} if differs is None else {k: v for k in ("mean", "std", "interpolation")
                                        if (v := getattr(differs, k)) is not None}
    assert {k: getattr(a.preprocess, k) for k in given} == given
    assert all(getattr(theirs, k) != v for k, v in given.items())
    assert differs is None or differs.why
    for k in ("resolution", "mean", "std", "interpolation", "crop_pct"):
        if k not in given:
            assert getattr(a.preprocess, k) == getattr(theirs, k), k


@pytest.mark.parametrize("name", list(ANCHORS))
def test_an_anchor_is_fed_as_pinned_resized_whole_at_the_tasks_resolution(name):
    p = ANCHORS[name].preprocess
    assert (p.resolution, p.mean, p.std, p.interpolation, p.crop_pct) == FED[name]
    s = input_spec(name, 32)
    assert (s.resolution, s.mean, s.std, s.interpolation, s.crop_pct) == (32, *FED[name][1:4], 1.0)


def test_anchors_with_one_normalisation_have_one_spec():
    """The manifest states a variant's own input only where its spec differs from the package's: anchors
    whose timm crops differ (lite0 0.875, lite2 0.89) are still fed alike."""
    assert input_spec("tf_efficientnet_lite2", 64) == input_spec("tf_efficientnet_lite0", 64)
    assert input_spec("resnet18", 64) != input_spec("vgg11_bn", 64)  # bicubic, bilinear


def test_to_manifest_is_the_manifests_input_section_to_the_byte():
    spec = input_spec("tf_efficientnet_lite0", 32)
    section = spec.to_manifest()
    assert mf.InputInfo(**section).model_dump(mode="json", exclude_unset=True) == section
    want = ('{"shape": [1, 3, 32, 32], "layout": "NCHW", "dtype": "float32", "color": "RGB", '
            '"scale": 0.00392156862745098, "mean": [0.4980392156862745, 0.4980392156862745, 0.4980392156862745], '
            '"std": [0.5019607843137255, 0.5019607843137255, 0.5019607843137255], "resize": {"size": [32, 32], '
            '"interpolation": "bicubic", "antialias": true, "grayscale": "replicate to 3 channels", '
            '"output": "uint8"}}')
    assert json.dumps(mf.InputInfo(**section).model_dump(mode="json", exclude_unset=True)) == want
    assert InputSpec.from_manifest(json.loads(want)) == spec


def test_the_toolkit_reads_to_manifest_as_the_data_transforms_read_the_spec():
    spec = input_spec("mobilenetv2_100", 40)
    image = np.random.default_rng(4).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    want = to_model_input(torch.from_numpy(image).permute(2, 0, 1)[None], spec).numpy()
    got = preprocess(image, json.loads(json.dumps(spec.to_manifest())))
    assert np.abs(got - want).max() <= 1e-6 / min(spec.std)


def test_a_name_timm_has_no_pretrained_config_for_says_so():
    with pytest.raises(LookupError, match="no pretrained config for 'no_such_model'"):
        timm_input("no_such_model")


def test_a_spec_refuses_what_no_side_can_do():
    with pytest.raises(ValueError, match="interpolation"):
        InputSpec(32, *IMAGENET, "lanczos")
    with pytest.raises(ValueError, match="crop_pct"):
        InputSpec(32, *IMAGENET, crop_pct=0)
    with pytest.raises(ValueError, match="square"):
        InputSpec.from_manifest({"mean": [0.5] * 3, "std": [0.5] * 3,
                                 "resize": {"size": [32, 40], "interpolation": "bilinear"}})
