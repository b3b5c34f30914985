"""ONNX via torch.onnx (dynamo exporter), run by onnxruntime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                      dynamo=True, external_data=False)


def run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _format():
    from restnet.export import Format

    return Format("onnx", ".onnx", "onnxruntime", export, run)


FORMAT = _format()
