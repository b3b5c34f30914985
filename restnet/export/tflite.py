"""TFLite through litert-torch (keeps NCHW input), run by the LiteRT interpreter.

litert-torch converts straight from torch.export (~9 s for lite0 here, no
TensorFlow in the loop). The onnx -> onnx2tf route (NHWC input, 6-7x slower
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


def load(path: Path, threads: int | None = None) -> Infer:
    """The device toolkit's LiteRT loader (torch-free): one implementation for both sides."""
    return device_load(Path(path), "tflite", threads)[0]


def runtime_version() -> str:
    return f"ai-edge-litert {version('ai-edge-litert')} interpreter"


FORMAT = Format("tflite", ".tflite", "LiteRT interpreter", export, load, runtime_version)
