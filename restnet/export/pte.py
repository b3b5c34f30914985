"""ExecuTorch .pte lowered to XNNPACK: torch.export -> to_edge_transform_and_lower -> serialise."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def capture(model: nn.Module, example: torch.Tensor):
    return torch.export.export(model, (example,))


def lower(exported):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = lower(capture(model, example))
    path.write_bytes(program.buffer)


def run(path: Path, x: np.ndarray) -> np.ndarray:
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return method.execute([torch.from_numpy(np.ascontiguousarray(x))])[0].numpy()


def _format():
    from restnet.export import Format

    return Format("pte", ".pte", "executorch (XNNPACK)", export, run)


FORMAT = _format()
