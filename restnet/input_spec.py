"""How an image becomes a model's input, stated once: ``InputSpec``.

Three places need the same facts and read them from here: the anchors' registry fills one per anchor
from timm's pretrained config (restnet.anchors.registry), the data transforms take it
(restnet.data.transforms.to_model_input), and the manifest's ``input`` section is its ``to_manifest()``
(restnet.package.assemble), which a device reads with the torch-free toolkit (toolkit.preprocess). With one
type, what the workstation trained on and what a device is told cannot drift apart.

Torch-free and importing nothing of restnet, so that every layer that needs it can import it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

PIXEL_SCALE = 1 / 255  # uint8 pixel -> 0..1, before mean and std (to_model_input; the manifest's input.scale)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # what Pillow's uint8 resize offers both sides


@dataclass(frozen=True)
class InputSpec:
    """A square RGB input: resized to ``resolution`` with ``interpolation``, scaled by PIXEL_SCALE, then
    ``(x - mean) / std`` per channel.

    ``crop_pct`` is the share of the shorter side a centre crop keeps, as timm's evaluation does; restnet
    resizes a task's images whole (``at``), so every spec a model is fed with has 1.0 and none is cropped.
    ``interpolation`` is bilinear when not given (hand-made specs: tests, tools); an anchor's comes from
    timm's pretrained config."""

    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.resolution < 8:
            raise ValueError(f"resolution must be >= 8 px, got {self.resolution}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    @classmethod
    def from_timm(cls, cfg) -> "InputSpec":
        """What timm's ``PretrainedCfg`` (``timm.models.get_pretrained_cfg``) says the weights expect at
        evaluation: its input size, normalisation, interpolation and centre crop."""
        _, h, w = cfg.input_size
        if h != w:
            raise ValueError(f"timm's input size {h}x{w} is not square; restnet's inputs are")
        return cls(int(h), tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std),
                   cfg.interpolation, float(cfg.crop_pct))

    def at(self, resolution: int) -> "InputSpec":
        """The same normalisation and interpolation at ``resolution``, the image resized whole (no crop):
        how restnet feeds a task's images to a model whose weights expect ``self``."""
        return replace(self, resolution=resolution, crop_pct=1.0)

    def to_manifest(self) -> dict:
        """The manifest's ``input`` section (restnet.package.manifest.InputInfo): every key a device needs
        to reproduce ``to_model_input``, which toolkit.preprocess reads. The resize is Pillow's on uint8
        pixels, antialiased when shrinking, a grayscale image replicated to three channels."""
        r = self.resolution
        return {"shape": [1, 3, r, r], "layout": "NCHW", "dtype": "float32", "color": "RGB", "scale": PIXEL_SCALE,
                "mean": list(self.mean), "std": list(self.std),
                "resize": {"size": [r, r], "interpolation": self.interpolation, "antialias": True,
                           "grayscale": "replicate to 3 channels", "output": "uint8"}}

    @classmethod
    def from_manifest(cls, section: dict) -> "InputSpec":
        """A manifest's ``input`` section (a package's, or one variant's) as the spec it was written from."""
        h, w = section["resize"]["size"]
        if h != w:
            raise ValueError(f"input size {h}x{w} is not square; restnet writes square inputs")
        return cls(int(h), tuple(section["mean"]), tuple(section["std"]), section["resize"]["interpolation"])
