"""ONNX via torch.onnx (dynamo exporter), run by onnxruntime."""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restnet.export.base import Format
from toolkit.runtime import Infer


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                      dynamo=True, external_data=False)


def load(path: Path, threads: int | None = None) -> Infer:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def runtime_version() -> str:
    return f"onnxruntime {version('onnxruntime')}"


_README = """**ONNX (`.onnx`).** `onnxruntime.InferenceSession(path)`; one input, one output (`logits`)."""

FORMAT = Format("onnx", ".onnx", "onnxruntime", export, load, runtime_version, tools=("onnx", "onnxruntime"),
                readme=_README)
