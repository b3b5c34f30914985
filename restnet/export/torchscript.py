"""TorchScript by tracing (the model is static-shaped), run by torch.jit.load."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restnet.export.base import Format
from restnet.timing import torch_threads
from toolkit.runtime import Infer


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (example,))
    traced.save(str(path))


def load(path: Path, threads: int | None = None) -> Infer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch_threads(threads), torch.no_grad():
            return m(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return run


def runtime_version() -> str:
    return f"torch.jit {torch.__version__}"


_README = """**TorchScript (`.pt`).** `torch::jit::load(path)` (LibTorch) or `torch.jit.load` in Python."""

FORMAT = Format("torchscript", ".pt", "torch.jit", export, load, runtime_version, tools=(),  # torch: in every key
                readme=_README)
