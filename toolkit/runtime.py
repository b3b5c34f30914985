"""Run an exported file with the runtime its format needs, without torch.

``.pte``: the torch-free ``executorch_numpy_runtime`` when installed (the
device case); otherwise the loader the caller passes as ``pte_fallback`` (on a
workstation, restnet's own: ``restnet.export.pte.device_loader``, executorch
with torch). The toolkit never imports restnet, so it is passed in, not looked
up. ``.tflite``: the LiteRT interpreter (``ai_edge_litert``), which imports no
torch. A file is opened once as a ``Program``; each of its methods (.pte) or
signatures (.tflite) is an ``Infer``: numpy in, numpy out. A file that holds a
whole family (``restnet-pack --bundle shared``) is thus read once, and switching
members is asking the same program for another method.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from toolkit.errors import ExportFailed

Infer = Callable[[np.ndarray], np.ndarray]
# A loaded file's methods: name (None = its default: .pte 'forward', a .tflite's only signature) -> infer.
Methods = Callable[["str | None"], Infer]
# (path, threads) -> (methods, runtime description): what a format's opener (and a .pte fallback) returns.
Loader = Callable[[Path, "int | None"], "tuple[Methods, str]"]


class RuntimeUnavailable(ExportFailed, RuntimeError):
    """The runtime a file needs is not installed; the message says what to install."""


@dataclass
class Program:
    """One file, loaded once; ``method(name)`` is loaded on first use and then held."""

    path: Path
    runtime: str
    _open: Methods
    _held: dict = field(default_factory=dict)

    def method(self, name: str | None = None) -> Infer:
        if name not in self._held:
            self._held[name] = self._open(name)
        return self._held[name]

    @property
    def methods_loaded(self) -> list[str | None]:
        return list(self._held)


def _pte(path: Path, threads: int | None, fallback: Loader | None) -> tuple[Methods, str]:
    try:
        import executorch_numpy_runtime as en
    except ImportError:
        en = None
    if en is not None:
        program = en.Runtime.get().load_program(str(path))

        def method(name: str | None = None) -> Infer:
            m = program.load_method(name or "forward")
            return lambda x: m([np.ascontiguousarray(x, dtype=np.float32)])[0]

        return method, \
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


def _tflite(path: Path, threads: int | None, _fallback: Loader | None = None) -> tuple[Methods, str]:
    """A float32 tensor is passed as is; an int8 one (a fully integer model) is fed and read through the
    scale and zero point stored in the file, so every loaded file takes and returns float32. One
    interpreter per file: its signatures share the file's tensors."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise RuntimeUnavailable(f"{path.name}: a .tflite needs `pip install ai-edge-litert`") from None
    it = Interpreter(model_path=str(path), num_threads=threads)

    def signature(name: str | None = None) -> Infer:
        runner = it.get_signature_runner(name)
        (key, inp), = runner.get_input_details().items()
        (_, out), = runner.get_output_details().items()
        quant, dequant = _quantizer(inp), _dequantizer(out)
        return lambda x: dequant(next(iter(runner(**{key: quant(x)}).values())))

    return signature, f"ai-edge-litert {metadata.version('ai-edge-litert')} interpreter"


# The device runtimes, by the name a format gives (restnet's Format.device).
OPENERS = {"executorch": _pte, "litert": _tflite}
# Format -> the runtime that opens its files on a device. restnet.export.FORMATS states it (Format.device); the
# toolkit never imports restnet, so this is a copy, which tests/test_format_table.py holds equal to it.
DEVICE_RUNTIMES = {"pte": "executorch", "tflite": "litert", "tflite-onnx2tf": "litert"}
BACKENDS = {fmt: OPENERS[name] for fmt, name in DEVICE_RUNTIMES.items()}


def open_program(path: Path, fmt: str, threads: int | None = None, pte_fallback: Loader | None = None) -> Program:
    """One verified file, loaded once; ``pte_fallback`` opens a .pte when the torch-free runtime is not
    installed."""
    if fmt not in BACKENDS:
        raise RuntimeUnavailable(f"{Path(path).name}: format {fmt!r} has no device runtime in the toolkit "
                                 f"(supported: {', '.join(BACKENDS)})")
    methods, version = BACKENDS[fmt](Path(path), threads, pte_fallback)
    return Program(Path(path), version, methods)


def load(path: Path, fmt: str, threads: int | None = None, pte_fallback: Loader | None = None,
         method: str | None = None) -> tuple[Infer, str]:
    """(infer, runtime description) for one method (None: the file's default) of one verified file."""
    program = open_program(path, fmt, threads, pte_fallback)
    return program.method(method), program.runtime
