"""TorchScript by tracing (the model is static-shaped), run by torch.jit.load."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (example,))
    traced.save(str(path))


def run(path: Path, x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return m(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def _format():
    from restnet.export import Format

    return Format("torchscript", ".pt", "torch.jit", export, run)


FORMAT = _format()
