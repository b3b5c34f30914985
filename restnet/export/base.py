"""What every export format shares; the format modules import it, and nothing here imports them.

Kept apart from ``restnet.export`` (the table of formats) so that a format module
never has to import the package that imports it: the dependency only points down.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

# The gates are defined in toolkit.formats: the device-side crosscheck applies the same ones.
from toolkit.errors import ExportFailed
from toolkit.formats import AGREEMENT_FLAG, AGREEMENT_FLOOR, TOLERANCE  # noqa: F401
from toolkit.runtime import Infer  # one callable type for every runtime, both sides


def percent(share: float) -> str:
    """A gate as prose (0.999 -> '99.9 %'), so that docs and messages print the constant, not a copy."""
    return f"{share * 100:.4g} %"


def scientific(x: float) -> str:
    """A tolerance as prose (1e-4 -> '1e-4')."""
    mantissa, exp = f"{x:e}".split("e")
    return f"{float(mantissa):g}e{int(exp)}"


@dataclass(frozen=True)
class Format:
    """One export format: its stages, with the same signatures in every format module, and every fact the
    rest of restnet needs about it. restnet.export.FORMATS holds one per format; the manifest's types, the
    profile backends, ``--format``, the package README and the export cache key are all read from there,
    so that adding a format is writing its module and its row (docs/architecture.md, "Add an export format").

    Stages:
      export(model, example, path)   capture + lower + serialise to ``path``
      load(path, threads, method=None) -> infer   the written file in its own runtime (one method or
                                     signature of it when it holds several); ``infer(x: np.ndarray) -> logits``
      runtime_version()              what ran it (goes in manifests)
      export_many({name: model}, example, path)   several models as the methods (signatures) of one
                                     file, for formats that can hold them with shared weights; else None
      annotate(path, info)           write an image classifier's metadata (labels, normalisation,
                                     description: restnet.export.tflite_metadata.ClassifierInfo) into the
                                     written file, for formats whose apps read it; else None
      part                           the format for a program whose input is a feature map rather than an
                                     image (per-block probes), where that differs; None = this one

    Facts (keyword-only):
      tools          the packages besides torch whose versions change the written bytes: each goes into
                     every export's cache key (restnet.package.exports.export_key)
      readme         how to load a file of this format, for the package README's "Loading" section
      readme_shared  with ``export_many``: how to load one method of a file shared by a family, with
                     ``{path}`` for the file (the README's section on that file)
      backends       the names a device profile may give as its ``backend`` to get this format
      device         the toolkit's runtime that opens the file on a device (``toolkit.runtime.DEVICE_RUNTIMES``,
                     which mirrors it); None = no device runtime
      int8           the int8 route whose files run in this format's runtime (restnet.export.int8); None = none
    """

    name: str
    suffix: str
    runtime: str  # what runs the file (manifests, docs)
    export: Callable[[nn.Module, torch.Tensor, Path], None]
    load: Callable[..., Infer]
    runtime_version: Callable[[], str]
    input_layout: str = "NCHW"
    export_many: Callable[[dict[str, nn.Module], torch.Tensor, Path], None] | None = None
    annotate: Callable[[Path, Any], None] | None = None
    part: Format | None = None
    tools: tuple[str, ...] = field(kw_only=True)
    readme: str = field(kw_only=True)
    readme_shared: str | None = field(default=None, kw_only=True)
    backends: tuple[str, ...] = field(default=(), kw_only=True)
    device: str | None = field(default=None, kw_only=True)
    int8: Int8Route | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if (self.export_many is None) != (self.readme_shared is None):
            raise ValueError(f"format {self.name!r}: give readme_shared exactly when it has export_many "
                             "(the README says how to load one method of the shared file)")
        if self.int8 is not None and self.int8.format != self.name:
            raise ValueError(f"format {self.name!r}: its int8 route is for {self.int8.format!r}")

    def with_int8(self, route: Int8Route) -> Format:
        """This format with its int8 route: the route's module imports the format's, so the table joins them."""
        return dataclasses.replace(self, int8=route)

    def run(self, path: Path, x: np.ndarray) -> np.ndarray:
        return self.load(path)(x)


@dataclass(frozen=True)
class Quantized:
    """A converted PT2E program, weights still fp32 behind their quantize ops (fold_quantize=False), so
    restnet.export.int8_finetune can train them; ``quantizer``: what the route's converter needs again."""

    program: nn.Module
    quantizer: Any = None


@dataclass(frozen=True)
class Int8Route:
    """int8 for one device format, in stages; the file runs in that format's runtime.

      quantize(model, example, calibration, recipe) -> Quantized   PT2E: capture, prepare, calibrate, convert
      (restnet.export.int8.quantize adds the optional stage: fine-tune the weights through the quantisers)
      export(quantized, example, path)                              lower + serialise to ``path``
    """

    format: str  # the fp32 format whose runtime runs the file
    suffix: str
    quantizer: str  # what quantised it (manifests, docs)
    quantize: Callable[..., Quantized]
    export: Callable[[Quantized, torch.Tensor, Path], None]


def capture(model: nn.Module, example: torch.Tensor, dynamic_batch: bool = False):
    """torch.export of ``model`` on ``example`` made contiguous: an exported program keeps the
    example's dim order, and a permuted (channels-last) example would give a program that refuses
    the NCHW-contiguous inputs every runtime passes. ``dynamic_batch``: any batch size (the int8
    routes fine-tune in batches; the file itself is captured again at the example's batch)."""
    if not dynamic_batch:
        return torch.export.export(model, (example.contiguous(),))
    x = example.contiguous() if len(example) > 1 else torch.cat([example, example]).contiguous()  # 1 would specialise
    return torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))


@torch.no_grad()
def calibrate(prepared: nn.Module, calibration: Iterable[torch.Tensor], batch: int) -> None:
    """Run the observers over the calibration batches, in slices of the exported batch size."""
    for x in calibration:
        for k in range(0, len(x), batch):
            prepared(x[k:k + batch])


class ExportMismatch(ExportFailed, RuntimeError):
    """The exported file's outputs differ from eager beyond the tolerance."""


@dataclass(frozen=True)
class Exported:
    format: str
    path: Path
    size: int
    sha256: str
    max_abs_diff: float  # over every checked input
    top1_agreement: float = 1.0
    checked: int = 0  # inputs compared with eager
    max_abs_logit: float = 0.0  # the scale the tolerance is relative to

    @property
    def scaled_diff(self) -> float:
        return self.max_abs_diff / max(1.0, self.max_abs_logit)


@dataclass(frozen=True)
class Comparison:
    max_abs_diff: float  # max |file logit - eager logit|
    max_abs_logit: float  # max |eager logit|
    agreement: float  # share of inputs with the same top-1
    n: int
    accuracy: float | None = None  # the file's top-1 against labels, when batches carry them

    @property
    def scaled_diff(self) -> float:
        return self.max_abs_diff / max(1.0, self.max_abs_logit)


@torch.no_grad()
def compare_with_eager(model: nn.Module, run: Infer, batches: Iterable, batch: int) -> Comparison:
    """The file (run ``batch`` inputs at a time) against eager ``model``; ``batches`` holds input
    tensors, or (input, label) pairs to also get the file's own accuracy."""
    worst, scale, same, correct, n, labelled = 0.0, 0.0, 0, 0, 0, False
    for item in batches:
        x, y = item if isinstance(item, (tuple, list)) else (item, None)
        want = model(x).numpy()
        got = np.concatenate([run(x[k:k + batch].numpy()) for k in range(0, len(x), batch)])
        worst = max(worst, float(np.abs(got - want).max()))
        scale = max(scale, float(np.abs(want).max()))
        same += int((got.argmax(-1) == want.argmax(-1)).sum())
        if y is not None:
            labelled = True
            correct += int((got.argmax(-1) == y.numpy()).sum())
        n += len(x)
    return Comparison(worst, scale, same / max(n, 1), n, correct / max(n, 1) if labelled else None)
