"""TFLite through litert-torch (keeps NCHW input), run by the LiteRT interpreter.

litert-torch converts straight from torch.export (~9 s for lite0 here, no
TensorFlow in the loop). Several models convert into one file as its signatures
(``export_signatures``); litert-torch stores constants the signatures share once
(a probe here: lite0, two stitched members and lite2 as four signatures, 1000
classes: 41.17 MB against 17.66 + 23.11 MB for the two anchors alone). The onnx -> onnx2tf route (NHWC input, 6-7x slower
to convert) is the ``tflite-onnx2tf`` format; int8 is restnet.export.tflite_int8.
"""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import torch
from torch import nn

from restnet.export.base import Format
from toolkit.runtime import Infer
from toolkit.runtime import load as device_load


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    import litert_torch

    litert_torch.convert(model, (example.contiguous(),)).export(str(path))  # see restnet.export.capture


def export_signatures(models: dict[str, nn.Module], example: torch.Tensor, path: Path) -> None:
    """``models`` as the signatures of one .tflite, named by their keys (litert-torch's
    ``signature(...).signature(...).convert()``)."""
    import litert_torch

    converter = litert_torch
    for name, m in models.items():
        converter = converter.signature(name, m, (example.contiguous(),))
    converter.convert().export(str(path))


def load(path: Path, threads: int | None = None, method: str | None = None) -> Infer:
    """The device toolkit's LiteRT loader (torch-free): one implementation for both sides."""
    return device_load(Path(path), "tflite", threads, method=method)[0]


def runtime_version() -> str:
    return f"ai-edge-litert {version('ai-edge-litert')} interpreter"


FORMAT = Format("tflite", ".tflite", "LiteRT interpreter", export, load, runtime_version,
                export_many=export_signatures)
