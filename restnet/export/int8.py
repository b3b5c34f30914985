"""int8 routes: one per device format that has one, each with the same two stages.

  quantize(model, example, calibration) -> quantized   PT2E: capture, prepare, calibrate, convert
  export(quantized, example, path)                     lower + serialise to ``path``

The written file runs in its fp32 format's runtime (``get_format(route.format).load``),
so it is checked the same way as an fp32 export; it is not held to the fp32 1e-4
gate: its top-1 agreement with the fp32 model on the validation split is
reported, and below ``AGREEMENT_FLAG`` the file is flagged.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

AGREEMENT_FLAG = 0.98


@dataclass(frozen=True)
class Int8Route:
    format: str  # the fp32 format whose runtime runs the file
    suffix: str
    quantizer: str  # what quantised it (manifests, docs)
    quantize: Callable[[nn.Module, torch.Tensor, Iterable[torch.Tensor]], Any]
    export: Callable[[Any, torch.Tensor, Path], None]


def routes() -> dict[str, Int8Route]:
    from restnet.export import pte_int8, tflite_int8

    return {r.format: r for r in (pte_int8.ROUTE, tflite_int8.ROUTE)}


def get_route(fmt: str) -> Int8Route:
    table = routes()
    if fmt not in table:
        raise ValueError(f"no int8 export for format {fmt!r}; int8 is available for {', '.join(table)}")
    return table[fmt]


@torch.no_grad()
def calibrate(prepared: nn.Module, calibration: Iterable[torch.Tensor], batch: int) -> None:
    """Run the observers over the calibration batches, in slices of the exported batch size."""
    for x in calibration:
        for k in range(0, len(x), batch):
            prepared(x[k:k + batch])
