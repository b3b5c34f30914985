"""Export: one table of formats, each a small module with the same stages and facts (see ``base.Format``).

``FORMATS`` is the one place a format is registered. What other modules need to know about the
formats (the manifest's and profiles' allowed values, the profile backend -> format mapping, the
tool packages in the export cache key, the int8 routes, the package README's loading text) is read
from it, through the functions below or the rows themselves, when those modules are imported or
called: none of them lists formats by hand. ``export_verified`` runs a format's stages in turn and
compares the written file with eager on the same inputs; it fails with the figure unless both fp32
gates in ``base`` hold.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from restnet._compat import collect_cia_ops_once
from restnet.export import onnx_format, pte, pte_int8, tflite, tflite_int8, tflite_onnx2tf, torchscript
from restnet.export.tflite_metadata import ClassifierInfo
from restnet.export.base import (
    AGREEMENT_FLAG,
    AGREEMENT_FLOOR,
    TOLERANCE,
    Comparison,
    ExportMismatch,
    Exported,
    Format,
    capture,
    compare_with_eager,
)
from toolkit.package import sha256_of  # one copy, torch-free, shared with the device side

collect_cia_ops_once()  # every route below lowers through torch.export's decompositions

__all__ = ["AGREEMENT_FLAG", "AGREEMENT_FLOOR", "FORMATS", "TOLERANCE", "ClassifierInfo", "Comparison",
           "ExportMismatch", "Exported", "Format", "annotate", "backends", "capture", "compare_with_eager",
           "export_verified", "export_verified_many", "formats", "get_format", "literal", "names", "require_info",
           "sha256_of", "stages", "tool_packages"]

# The order is the order of every listing derived from it (error messages, --format help, schema enums).
FORMATS: dict[str, Format] = {f.name: f for f in (pte.FORMAT.with_int8(pte_int8.ROUTE),
                                                  tflite.FORMAT.with_int8(tflite_int8.ROUTE),
                                                  tflite_onnx2tf.FORMAT, onnx_format.FORMAT, torchscript.FORMAT)}


def formats() -> dict[str, Format]:
    return dict(FORMATS)


def names(where: Callable[[Format], object] | None = None) -> tuple[str, ...]:
    """The formats' names in table order; ``where``: only the formats it holds true for (e.g.
    ``lambda f: f.export_many``: those that can hold a family in one file)."""
    return tuple(name for name, f in FORMATS.items() if where is None or where(f))


def backends() -> dict[str, str]:
    """Each backend name a device profile may give -> the format it selects (``Format.backends``); a name
    two formats claim would make a profile ambiguous, so it is refused."""
    out: dict[str, str] = {}
    for f in FORMATS.values():
        for b in f.backends:
            if b in out:
                raise ValueError(f"profile backend {b!r} is claimed by formats {out[b]!r} and {f.name!r}")
            out[b] = f.name
    return out


def tool_packages() -> tuple[str, ...]:
    """torch and every format's ``tools``, once each: the packages whose versions are in every export's
    cache key, whatever its format (restnet.package.exports.export_key)."""
    return tuple(dict.fromkeys(("torch", *(t for f in FORMATS.values() for t in f.tools))))


def literal(values: Iterable[str]) -> Any:
    """``Literal[...]`` of ``values``: a pydantic field that takes one of the table's names, whose JSON
    schema lists them in this order."""
    return Literal[tuple(values)]


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise ValueError(f"unknown export format {name!r}; choose from {', '.join(FORMATS)}")
    return FORMATS[name]


def stages(fmt: str, part: bool = False) -> Format:
    """The format's stages; ``part``: for a program whose input is a feature map (see ``Format.part``)."""
    f = get_format(fmt)
    return (f.part or f) if part else f


def require_info(fmt: str, path: Path, info: ClassifierInfo | None) -> None:
    """A format that carries classifier metadata refuses to go without it, so that no file of it ships
    without its labels and normalisation; checked before anything is converted."""
    if get_format(fmt).annotate is not None and info is None:
        raise ValueError(f"format {fmt!r} writes classifier metadata into its files: pass the ClassifierInfo "
                         f"(labels, normalisation, description) for {Path(path).name}")


def annotate(fmt: str, path: Path, info: ClassifierInfo | None) -> None:
    """Write ``info`` into the file at ``path`` when ``fmt`` carries classifier metadata (see require_info)."""
    require_info(fmt, path, info)
    if (f := get_format(fmt)).annotate is not None:
        f.annotate(path, info)


def export_verified(model: nn.Module, example: torch.Tensor, fmt: str, path: Path,
                    check_inputs: torch.Tensor | Iterable | None = None,
                    tolerance: float = TOLERANCE, threads: int | None = None,
                    agreement_floor: float = AGREEMENT_FLOOR, info: ClassifierInfo | None = None,
                    part: bool = False) -> Exported:
    """Export ``model`` to ``path`` in ``fmt`` and prove the file computes what eager does.

    ``check_inputs`` is one tensor or an iterable of batches or (batch, labels)
    pairs (e.g. the whole validation split); by default the example alone. Two gates, both must pass
    over every check input: max |Δ| <= ``tolerance`` x max(1, max |logit|), and
    top-1 agreement >= ``agreement_floor``. Why relative to the logit scale
    (for logits within ±1 it is the plain tolerance): fp32 results depend on the
    order of summation. Measured on task-trained lite0/lite2 and real
    Fashion-MNIST images (logits up to ~15), XNNPACK differs from eager by up
    to 3e-4 on ~1 % of images while eager fp32 is itself 4e-5 away from a
    float64 reference; an absolute 1e-4 would fail correct files at random.

    ``info``: the classifier metadata a format with ``annotate`` writes into the file before it is checked
    (required there, see ``annotate``); ``part``: a per-block probe (see ``stages``), which has none."""
    f = stages(fmt, part)
    if not part:
        require_info(fmt, path, info)
    model = model.eval()
    f.export(model, example, path)
    if not part:
        annotate(fmt, path, info)
    checks = [example] if check_inputs is None else (
        [check_inputs] if isinstance(check_inputs, torch.Tensor) else check_inputs)
    c = compare_with_eager(model, f.load(path, threads), checks, example.shape[0])
    _gate(c, f"{fmt} export {path.name}", tolerance, agreement_floor)
    return Exported(fmt, path, path.stat().st_size, sha256_of(path), c.max_abs_diff, c.agreement, c.n,
                    c.max_abs_logit)


def export_verified_many(models: dict[str, nn.Module], example: torch.Tensor, fmt: str, path: Path,
                         check_inputs: dict[str, Iterable], tolerance: float = TOLERANCE, threads: int | None = None,
                         agreement_floor: float = AGREEMENT_FLOOR,
                         info: ClassifierInfo | None = None) -> dict[str, Exported]:
    """``models`` as the methods (signatures) of one file, each checked like ``export_verified``: the
    file is loaded once and every method run on its own ``check_inputs``; any method off the gates fails it.
    ``info``: the file's classifier metadata, as for ``export_verified``."""
    f = get_format(fmt)
    if f.export_many is None:
        raise ValueError(f"format {fmt!r} cannot hold several models in one file; formats that can: "
                         f"{', '.join(n for n, g in FORMATS.items() if g.export_many is not None)}")
    require_info(fmt, path, info)
    models = {name: m.eval() for name, m in models.items()}
    f.export_many(models, example, path)
    annotate(fmt, path, info)
    size, digest, out = path.stat().st_size, sha256_of(path), {}
    for name, model in models.items():
        c = compare_with_eager(model, f.load(path, threads, method=name), check_inputs[name], example.shape[0])
        _gate(c, f"{fmt} export {path.name}, method {name}", tolerance, agreement_floor)
        out[name] = Exported(fmt, path, size, digest, c.max_abs_diff, c.agreement, c.n, c.max_abs_logit)
    return out


def _gate(c: Comparison, what: str, tolerance: float, agreement_floor: float) -> None:
    """Both fp32 gates, or ExportMismatch with the figure."""
    diff, scale, agree, n = c.max_abs_diff, c.max_abs_logit, c.agreement, c.n
    allowed = tolerance * max(1.0, scale)
    if not diff <= allowed:
        raise ExportMismatch(f"{what}: max |Δ| vs eager = {diff:.3g} > {allowed:.3g} "
                             f"({tolerance:g} x max(1, max |logit| = {scale:.3g})) over {n} inputs")
    if agree < agreement_floor:
        raise ExportMismatch(f"{what}: top-1 agrees with eager on only {agree:.2%} of "
                             f"{n} inputs (< {agreement_floor:.1%}); max |Δ| {diff:.3g}")
