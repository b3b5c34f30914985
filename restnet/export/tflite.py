"""TFLite through litert-torch, NHWC image input, run by the LiteRT interpreter.

litert-torch converts straight from torch.export (~9 s for lite0 here, no
TensorFlow in the loop). The model is wrapped by litert-torch's
``to_channel_last_io`` first, so the file takes the image as N x H x W x C:
what MediaPipe's ImageClassifier and Android image pipelines hand a model
(NCHW files are refused there). litert-torch lays convolutions out NHWC
anyway, so the wrapper's transpose cancels against the one it would put at the
input (measured on a small conv net, fp32 and fully integer int8: no
TRANSPOSE op, and the int8 file keeps its int8 input). Every file then gets TFLite metadata (labels, normalisation,
description; restnet.export.tflite_metadata). Several models convert into one
file as its signatures (``export_signatures``); litert-torch stores constants
the signatures share once (a probe here: lite0, two stitched members and lite2
as four signatures, 1000 classes: 41.17 MB against 17.66 + 23.11 MB for the
two anchors alone). The onnx -> onnx2tf route (NHWC too, 6-7x slower to
convert) is the ``tflite-onnx2tf`` format; int8 is restnet.export.tflite_int8.

``PART``: the same runtime for a program whose input is a feature map, not an
image (the per-block probes restnet-bench times): NCHW as captured, no
metadata, so that the parts' times add up to a member's without a layout
change at every cut.
"""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restnet.export import tflite_metadata
from restnet.export.base import Format
from toolkit.runtime import Infer
from toolkit.runtime import load as device_load


def channels_last(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """``model`` taking its image N x H x W x C, and ``example`` laid out so (see restnet.export.capture)."""
    import litert_torch

    return litert_torch.to_channel_last_io(model, args=[0]), example.permute(0, 2, 3, 1).contiguous()


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    import litert_torch

    litert_torch.convert(*_nhwc(model, example)).export(str(path))


def _nhwc(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, tuple[torch.Tensor]]:
    wrapped, x = channels_last(model, example)
    return wrapped, (x,)


def export_signatures(models: dict[str, nn.Module], example: torch.Tensor, path: Path) -> None:
    """``models`` as the signatures of one .tflite, named by their keys (litert-torch's
    ``signature(...).signature(...).convert()``), each taking N x H x W x C."""
    import litert_torch

    converter = litert_torch
    for name, m in models.items():
        converter = converter.signature(name, *_nhwc(m, example))
    converter.convert().export(str(path))


def load(path: Path, threads: int | None = None, method: str | None = None) -> Infer:
    """The device toolkit's LiteRT loader (torch-free), fed NCHW like every other format's runner: the
    input is transposed to the file's NHWC, so verification compares the same inputs as eager."""
    run = device_load(Path(path), "tflite", threads, method=method)[0]
    return lambda x: run(np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))))


def export_part(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    import litert_torch

    litert_torch.convert(model, (example.contiguous(),)).export(str(path))  # see restnet.export.capture


def load_part(path: Path, threads: int | None = None, method: str | None = None) -> Infer:
    return device_load(Path(path), "tflite", threads, method=method)[0]


def runtime_version() -> str:
    return f"ai-edge-litert {version('ai-edge-litert')} interpreter"


_TOOLS = ("litert-torch", "ai-edge-litert")  # the converter and the interpreter the check runs
_README = """**LiteRT / TFLite (`.tflite`).** C++: `tflite::FlatBufferModel::BuildFromFile`, then an
`InterpreterBuilder` with `num_threads`; Python: `ai_edge_litert.interpreter.Interpreter(model_path=...,
num_threads=N)` and its signature runner (`serving_default`). Input layout per file: see `input_layout`
(`NHWC` for every `.tflite`: the image as N x H x W x 3).

**Apps: MediaPipe Tasks' ImageClassifier.** Every `.tflite` carries TFLite metadata: the variant id, a
description, the input normalisation in pixel units and `labels.txt` attached to the scores. An Android app
(Gradle `com.google.mediapipe:tasks-vision`) passes a variant's file and a bitmap and gets the labels:
`ImageClassifier.createFromOptions(context, ImageClassifierOptions.builder().setBaseOptions(BaseOptions.builder()
.setModelAssetPath("model.tflite").build()).build())`, then `classify(BitmapImageBuilder(bitmap).build())`.
Scores are logits. MediaPipe resizes the bitmap with its own resampling; resize it to the input size as below
first for this package's figures exactly. Not for MediaPipe: a file shared by several variants (one subgraph each)
and a fully integer `.int8.tflite` (int8 input tensor)."""
_README_SHARED = """C++: one `tflite::Interpreter` for the file, `interpreter->GetSignatureRunner("METHOD")` per member;
Python: `Interpreter(model_path="{path}").get_signature_runner("METHOD")`."""

PART = Format("tflite", ".tflite", "LiteRT interpreter", export_part, load_part, runtime_version, tools=_TOOLS,
              readme=_README)
FORMAT = Format("tflite", ".tflite", "LiteRT interpreter", export, load, runtime_version, input_layout="NHWC",
                export_many=export_signatures, annotate=tflite_metadata.write, part=PART, tools=_TOOLS,
                readme=_README, readme_shared=_README_SHARED, backends=("tflite",), device="litert")
