"""ExecuTorch .pte lowered to XNNPACK: torch.export -> to_edge_transform_and_lower -> serialise.

One file may hold several models as its methods (``export_methods``): XNNPACK stores delegate
constants as named data keyed by their content, so weights the models share (a family's anchor
blocks) are stored once, and a runtime loads the file once and each method from it.
"""
from __future__ import annotations

from collections.abc import Callable
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


def export_methods(models: dict[str, nn.Module], example: torch.Tensor, path: Path) -> None:
    """``models`` as the methods of one program, named by their keys (``to_edge_transform_and_lower``
    takes a dict of method name -> ExportedProgram)."""
    program = lower({name: capture(m, example) for name, m in models.items()})
    path.write_bytes(program.buffer)


def set_threads(threads: int | None) -> None:
    """XNNPACK's thread pool is process-wide in the Python runtime; resize it when asked."""
    if threads:
        from executorch.extension.pybindings import portable_lib

        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)


def open_methods(path: Path, threads: int | None = None) -> tuple[Callable[[str | None], Infer], str]:
    """(method name -> infer, runtime) for one program loaded once; None is ``forward``. The program
    keeps every method it loaded, so asking again for one costs nothing."""
    from executorch.runtime import Runtime

    set_threads(threads)
    program = Runtime.get().load_program(str(path))

    def method(name: str | None = None) -> Infer:
        m = program.load_method(name or "forward")
        return lambda x: m.execute([torch.from_numpy(np.ascontiguousarray(x))])[0].numpy()

    return method, runtime_version()


def load(path: Path, threads: int | None = None, method: str | None = None) -> Infer:
    return open_methods(path, threads)[0](method)


def runtime_version() -> str:
    return f"executorch {version('executorch')} (XNNPACK)"


def device_loader(path: Path, threads: int | None = None) -> tuple[Callable[[str | None], Infer], str]:
    """The toolkit's .pte fallback on a workstation (``toolkit.runtime.open_program(..., pte_fallback=)``): the
    toolkit never imports restnet, so restnet hands this in where the torch-free runtime is missing."""
    return open_methods(path, threads)


_README = """**ExecuTorch (`.pte`, XNNPACK delegate).** C++: `executorch::extension::Module m("variants/ID.pte");
m.forward(input_tensor)` with the XNNPACK backend linked in. Python, without torch:
`executorch-numpy-runtime`, or restnet's `toolkit`: `Package(path).classify(image, "ID")` gives labels and
probabilities (`toolkit.switcher`; `Package(path).run("ID", x)` takes an already preprocessed input)."""
_README_SHARED = """C++: `executorch::extension::Module m("{path}"); m.load_method("METHOD"); m.execute("METHOD", {{input}})`;
Python without torch: `executorch_numpy_runtime.Runtime.get().load_program("{path}").load_method("METHOD")`."""

FORMAT = Format("pte", ".pte", "executorch (XNNPACK)", export, load, runtime_version, export_many=export_methods,
                tools=("executorch",), readme=_README, readme_shared=_README_SHARED,
                backends=("executorch-xnnpack",), device="executorch")
