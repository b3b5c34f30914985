"""ExecuTorch .pte lowered to XNNPACK: torch.export -> to_edge_transform_and_lower -> serialise."""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restnet.export.base import Format, capture
from toolkit.runtime import Infer


def lower(exported):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = lower(capture(model, example))
    path.write_bytes(program.buffer)


def set_threads(threads: int | None) -> None:
    """XNNPACK's thread pool is process-wide in the Python runtime; resize it when asked."""
    if threads:
        from executorch.extension.pybindings import portable_lib

        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)


def load(path: Path, threads: int | None = None) -> Infer:
    from executorch.runtime import Runtime

    set_threads(threads)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return lambda x: method.execute([torch.from_numpy(np.ascontiguousarray(x))])[0].numpy()


def runtime_version() -> str:
    return f"executorch {version('executorch')} (XNNPACK)"


def device_loader(path: Path, threads: int | None = None) -> tuple[Infer, str]:
    """The toolkit's .pte fallback on a workstation (``toolkit.runtime.load(..., pte_fallback=)``): the
    toolkit never imports restnet, so restnet hands this in where the torch-free runtime is missing."""
    return load(path, threads), runtime_version()


FORMAT = Format("pte", ".pte", "executorch (XNNPACK)", export, load, runtime_version)
