"""TFLite through the other converter the design names: ONNX -> onnx2tf (TensorFlow) -> .tflite.

The file takes NHWC input (onnx2tf transposes the whole graph), so the
manifest marks ``input_layout: NHWC``; ``load`` accepts NCHW like every other
runner and transposes, so verification compares the same inputs as eager. It
gets the same TFLite metadata as the litert-torch files
(restnet.export.tflite_metadata).
Measured against litert-torch in benchmarks/tflite_converters.py; litert-torch
is the default `tflite` format (docs/latency.md, "The .pte against other runtimes").
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restnet.export import onnx_format, tflite, tflite_metadata
from restnet.export.base import Format
from toolkit.runtime import Infer


SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


@contextlib.contextmanager
def _cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    import onnx2tf

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        onnx_format.export(model, example, onnx_path)
        out = Path(tmp) / "tf"
        # onnx2tf validates op by op on sample images that it downloads from GitHub unless the file
        # sits in the working directory: give it seeded local data instead (no network at run time).
        sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
        np.save(Path(tmp) / SAMPLE_FILE, sample)
        # onnx2tf prints a per-op log to stdout; keep it out of restnet's output.
        with _cwd(tmp), contextlib.redirect_stdout(io.StringIO()):
            onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(out), non_verbose=True,
                            copy_onnx_input_output_names_to_tflite=True)
        produced = out / "model_float32.tflite"
        if not produced.is_file():
            raise RuntimeError(f"onnx2tf wrote no float32 model in {out} (files: {sorted(p.name for p in out.iterdir())})")
        path.write_bytes(produced.read_bytes())


def load(path: Path, threads: int | None = None) -> Infer:
    """NCHW in, as every runner: tflite.load transposes to the file's NHWC."""
    return tflite.load(path, threads)


_README = """**LiteRT / TFLite through ONNX and onnx2tf (`.onnx2tf.tflite`).** The runtime of a `.tflite`:
C++ `tflite::FlatBufferModel::BuildFromFile`, then an `InterpreterBuilder` with `num_threads`; Python:
`ai_edge_litert.interpreter.Interpreter(model_path=..., num_threads=N)`. NHWC input (the image as N x H x W x 3);
the file carries the same TFLite metadata as a litert-torch `.tflite` (labels, input normalisation), so
MediaPipe's ImageClassifier runs it as it is."""

# onnx2tf's and TensorFlow's own versions are not in the cache key: a new onnx2tf reuses files the old one
# converted (they are still checked against eager when made).
FORMAT = Format("tflite-onnx2tf", ".onnx2tf.tflite", "LiteRT interpreter (onnx2tf, NHWC input)", export, load,
                tflite.runtime_version, input_layout="NHWC", annotate=tflite_metadata.write,
                tools=("onnx", "ai-edge-litert"), readme=_README, device="litert")
