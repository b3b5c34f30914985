"""Run an exported file with the runtime its format needs, without torch.

``.pte``: the torch-free ``executorch_numpy_runtime`` when installed (the
device case); otherwise the loader the caller passes as ``pte_fallback`` (on a
workstation, restnet's own: ``restnet.export.pte.device_loader``, executorch
with torch). The toolkit never imports restnet, so it is passed in, not looked
up. ``.tflite``: the LiteRT interpreter (``ai_edge_litert``), which imports no
torch. Every loaded file is an ``Infer``: numpy in, numpy out.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from toolkit.errors import ExportFailed

Infer = Callable[[np.ndarray], np.ndarray]
# (path, threads) -> (infer, runtime description): what a format's loader returns.
Loader = Callable[[Path, "int | None"], "tuple[Infer, str]"]


class RuntimeUnavailable(ExportFailed, RuntimeError):
    """The runtime a file needs is not installed; the message says what to install."""


def _pte(path: Path, threads: int | None, fallback: Loader | None) -> tuple[Infer, str]:
    try:
        import executorch_numpy_runtime as en
    except ImportError:
        en = None
    if en is not None:
        method = en.Runtime.get().load_program(str(path)).load_method("forward")
        return (lambda x: method([np.ascontiguousarray(x, dtype=np.float32)])[0]), \
            f"executorch-numpy-runtime {metadata.version('executorch-numpy-runtime')} (XNNPACK, default threads)"
    if fallback is None:
        raise RuntimeUnavailable(f"{path.name}: a .pte needs `pip install executorch-numpy-runtime` "
                                 "(Python >= 3.12, no torch); on a workstation, pass "
                                 "pte_fallback=restnet.export.pte.device_loader")
    return fallback(path, threads)


def _quantizer(detail: dict) -> Callable[[np.ndarray], np.ndarray]:
    """float32 -> the tensor's dtype: identity for a float tensor, else round(x / scale) + zero point."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return lambda x: np.ascontiguousarray(x, dtype=np.float32)
    scale, zero = detail["quantization"]
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    return lambda x: np.clip(np.round(np.asarray(x, np.float32) / scale) + zero, lo, hi).astype(dtype)


def _dequantizer(detail: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The tensor's dtype -> float32: (q - zero point) x scale for an integer tensor."""
    if np.dtype(detail["dtype"]).kind == "f":
        return lambda y: y
    scale, zero = detail["quantization"]
    return lambda y: (y.astype(np.float32) - zero) * np.float32(scale)


def _tflite(path: Path, threads: int | None, _fallback: Loader | None = None) -> tuple[Infer, str]:
    """A fully integer model (int8 input/output tensors) is fed and read through the scale and zero
    point stored in the file, so every loaded file takes and returns float32."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise RuntimeUnavailable(f"{path.name}: a .tflite needs `pip install ai-edge-litert`") from None
    it = Interpreter(model_path=str(path), num_threads=threads)
    runner = it.get_signature_runner()
    (name, inp), = runner.get_input_details().items()
    (_, out), = runner.get_output_details().items()
    quant, dequant = _quantizer(inp), _dequantizer(out)
    return (lambda x: dequant(next(iter(runner(**{name: quant(x)}).values())))), \
        f"ai-edge-litert {metadata.version('ai-edge-litert')} interpreter"


BACKENDS = {"pte": _pte, "tflite": _tflite, "tflite-onnx2tf": _tflite}


def load(path: Path, fmt: str, threads: int | None = None, pte_fallback: Loader | None = None) -> tuple[Infer, str]:
    """(infer, runtime description) for one verified file; ``pte_fallback`` runs a .pte when the
    torch-free runtime is not installed."""
    if fmt not in BACKENDS:
        raise RuntimeUnavailable(f"{path.name}: format {fmt!r} has no device runtime in the toolkit "
                                 f"(supported: {', '.join(BACKENDS)})")
    return BACKENDS[fmt](Path(path), threads, pte_fallback)
