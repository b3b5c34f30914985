"""int8 ExecuTorch .pte: PT2E static quantisation for XNNPACK, calibrated on task images.

capture (torch.export) -> prepare_pt2e with XNNPACKQuantizer (symmetric,
per-channel weights, per-tensor activations) -> calibrate on task images ->
convert_pt2e -> re-export -> lower to XNNPACK -> serialise. Input and output
stay float32 (the quantise/dequantise steps are inside the program).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from restnet.export import pte
from restnet.export.base import Int8Route, calibrate, capture
from restnet.export.int8_recipe import DEFAULT, Recipe, xnnpack_quantizer


def quantize(model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor],
             recipe: Recipe = DEFAULT) -> nn.Module:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = capture(model.eval(), example).module()
    prepared = prepare_pt2e(captured, xnnpack_quantizer(recipe, captured))
    calibrate(prepared, calibration, example.shape[0])
    return convert_pt2e(prepared)


def export(quantized: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = pte.lower(capture(quantized, example))
    path.write_bytes(program.buffer)


ROUTE = Int8Route("pte", ".int8.pte", "PT2E XNNPACKQuantizer (symmetric, per-channel weights)", quantize, export)
