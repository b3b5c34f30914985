"""Export: one table of formats, each a small module with the same stages.

  export(model, example, path)   capture + lower + serialise to ``path``
  load(path, threads) -> run     load the written file in its own runtime;
                                 ``run(x: np.ndarray) -> logits``
  runtime_version()              what ran it (goes in manifests)

``export_verified`` runs them in turn and compares with eager on the same
inputs: fp32 max |Δ| on logits must be <= 1e-4, or the export fails with the
figure. With labelled-free check data it also reports top-1 agreement.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from toolkit.package import sha256_of  # one copy, torch-free, shared with the device side

TOLERANCE = 1e-4
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    runtime: str  # what runs the file (manifests, docs)
    export: Callable[[nn.Module, torch.Tensor, Path], None]
    load: Callable[..., Runner]
    runtime_version: Callable[[], str]
    input_layout: str = "NCHW"

    def run(self, path: Path, x: np.ndarray) -> np.ndarray:
        return self.load(path)(x)


def _formats() -> dict[str, Format]:
    from restnet.export import onnx_format, pte, tflite, tflite_onnx2tf, torchscript

    table = [pte.FORMAT, tflite.FORMAT, tflite_onnx2tf.FORMAT, onnx_format.FORMAT, torchscript.FORMAT]
    return {f.name: f for f in table}


def formats() -> dict[str, Format]:
    return _formats()


def get_format(name: str) -> Format:
    table = formats()
    if name not in table:
        raise ValueError(f"unknown export format {name!r}; choose from {', '.join(table)}")
    return table[name]


class ExportMismatch(RuntimeError):
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


AGREEMENT_FLOOR = 0.999


def capture(model: nn.Module, example: torch.Tensor):
    """torch.export of ``model`` on ``example`` made contiguous: an exported program keeps the
    example's dim order, and a permuted (channels-last) example would give a program that refuses
    the NCHW-contiguous inputs every runtime passes."""
    return torch.export.export(model, (example.contiguous(),))


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
def compare_with_eager(model: nn.Module, run: Runner, batches: Iterable, batch: int) -> Comparison:
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


def export_verified(model: nn.Module, example: torch.Tensor, fmt: str, path: Path,
                    check_inputs: torch.Tensor | Iterable | None = None,
                    tolerance: float = TOLERANCE, threads: int | None = None,
                    agreement_floor: float = AGREEMENT_FLOOR) -> Exported:
    """Export ``model`` to ``path`` in ``fmt`` and prove the file computes what eager does.

    ``check_inputs`` is one tensor or an iterable of batches or (batch, labels)
    pairs (e.g. the whole validation split); by default the example alone. Two gates, both must pass
    over every check input: max |Δ| <= ``tolerance`` x max(1, max |logit|), and
    top-1 agreement >= ``agreement_floor``. Why relative to the logit scale
    (for logits within ±1 it is the plain 1e-4): fp32 results depend on the
    order of summation. Measured on task-trained lite0/lite2 and real
    Fashion-MNIST images (logits up to ~15), XNNPACK differs from eager by up
    to 3e-4 on ~1 % of images while eager fp32 is itself 4e-5 away from a
    float64 reference; an absolute 1e-4 would fail correct files at random."""
    f = get_format(fmt)
    model = model.eval()
    f.export(model, example, path)
    checks = [example] if check_inputs is None else (
        [check_inputs] if isinstance(check_inputs, torch.Tensor) else check_inputs)
    c = compare_with_eager(model, f.load(path, threads), checks, example.shape[0])
    diff, scale, agree, n = c.max_abs_diff, c.max_abs_logit, c.agreement, c.n
    allowed = tolerance * max(1.0, scale)
    if not diff <= allowed:
        raise ExportMismatch(f"{fmt} export {path.name}: max |Δ| vs eager = {diff:.3g} > {allowed:.3g} "
                             f"({tolerance:g} x max(1, max |logit| = {scale:.3g})) over {n} inputs")
    if agree < agreement_floor:
        raise ExportMismatch(f"{fmt} export {path.name}: top-1 agrees with eager on only {agree:.2%} of "
                             f"{n} inputs (< {agreement_floor:.1%}); max |Δ| {diff:.3g}")
    return Exported(fmt, path, path.stat().st_size, sha256_of(path), diff, agree, n, scale)
