"""Export: one table of formats, each a small module with the same two stages.

  export(model, example, path)  capture + lower + serialise to ``path``
  run(path, inputs)             load the written file in its own runtime, return logits

``export_verified`` runs both and compares with eager on the same inputs:
fp32 max |Δ| on logits must be <= 1e-4, or the export fails with the figure.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

TOLERANCE = 1e-4


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    runtime: str  # what runs the file (manifests, docs)
    export: Callable[[nn.Module, torch.Tensor, Path], None]
    run: Callable[[Path, np.ndarray], np.ndarray]


def _formats() -> dict[str, Format]:
    from restnet.export import onnx_format, pte, tflite, torchscript

    table = [pte.FORMAT, tflite.FORMAT, onnx_format.FORMAT, torchscript.FORMAT]
    return {f.name: f for f in table}


def formats() -> dict[str, Format]:
    return _formats()


class ExportMismatch(RuntimeError):
    """The exported file's outputs differ from eager beyond the tolerance."""


@dataclass(frozen=True)
class Exported:
    format: str
    path: Path
    size: int
    sha256: str
    max_abs_diff: float


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_verified(model: nn.Module, example: torch.Tensor, fmt: str, path: Path,
                    check_inputs: torch.Tensor | None = None, tolerance: float = TOLERANCE) -> Exported:
    """Export ``model`` to ``path`` in ``fmt`` and prove the file computes what eager does."""
    table = formats()
    if fmt not in table:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(table)}")
    f = table[fmt]
    model = model.eval()
    f.export(model, example, path)
    x = example if check_inputs is None else check_inputs
    with torch.no_grad():
        want = model(x).numpy()
    got = np.concatenate([f.run(path, x[k:k + example.shape[0]].numpy()) for k in range(0, len(x), example.shape[0])])
    diff = float(np.abs(got - want).max())
    if not diff <= tolerance:
        raise ExportMismatch(f"{fmt} export {path.name}: max |Δ| vs eager = {diff:.3g} > {tolerance:g}")
    return Exported(fmt, path, path.stat().st_size, sha256_of(path), diff)
