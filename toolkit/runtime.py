"""Run an exported file with the runtime its format needs, without torch.

``.pte``: the torch-free ``executorch_numpy_runtime`` when installed (the
device case); otherwise ``executorch.runtime`` (workstation; it imports
torch). ``.tflite``: the LiteRT interpreter (``ai_edge_litert``), which
imports no torch. Every runner takes and returns numpy arrays.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


class RuntimeUnavailable(RuntimeError):
    """The runtime a file needs is not installed; the message says what to install."""


def _pte(path: Path, threads: int | None) -> tuple[Runner, str]:
    try:
        import executorch_numpy_runtime as en
    except ImportError:
        en = None
    if en is not None:
        method = en.Runtime.get().load_program(str(path)).load_method("forward")
        return (lambda x: method([np.ascontiguousarray(x, dtype=np.float32)])[0]), \
            f"executorch-numpy-runtime {metadata.version('executorch-numpy-runtime')} (XNNPACK, default threads)"
    try:
        from executorch.runtime import Runtime
    except ImportError:
        raise RuntimeUnavailable(f"{path.name}: a .pte needs `pip install executorch-numpy-runtime` "
                                 "(Python >= 3.12, no torch) or executorch") from None
    import torch  # only on a workstation that has executorch (and so torch) anyway

    if threads:
        from executorch.extension.pybindings import portable_lib

        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return (lambda x: method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])[0].numpy()), \
        f"executorch {metadata.version('executorch')} (XNNPACK)"


def _tflite(path: Path, threads: int | None) -> tuple[Runner, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise RuntimeUnavailable(f"{path.name}: a .tflite needs `pip install ai-edge-litert`") from None
    it = Interpreter(model_path=str(path), num_threads=threads)
    runner = it.get_signature_runner()
    name = next(iter(it.get_signature_list()["serving_default"]["inputs"]))
    return (lambda x: next(iter(runner(**{name: np.ascontiguousarray(x, dtype=np.float32)}).values()))), \
        f"ai-edge-litert {metadata.version('ai-edge-litert')} interpreter"


BACKENDS = {"pte": _pte, "tflite": _tflite, "tflite-onnx2tf": _tflite}


def load(path: Path, fmt: str, threads: int | None = None) -> tuple[Runner, str]:
    """(runner, runtime description) for one verified file."""
    if fmt not in BACKENDS:
        raise RuntimeUnavailable(f"{path.name}: format {fmt!r} has no device runtime in the toolkit "
                                 f"(supported: {', '.join(BACKENDS)})")
    return BACKENDS[fmt](Path(path), threads)
