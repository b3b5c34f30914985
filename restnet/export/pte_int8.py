"""int8 ExecuTorch .pte: PT2E static quantisation for XNNPACK, calibrated on task images.

capture (torch.export) -> prepare_pt2e with XNNPACKQuantizer (symmetric,
per-channel weights, per-tensor activations; restnet.export.int8_recipe) -> calibrate
on task images -> convert_pt2e -> [fine-tune, restnet.export.int8_finetune] -> fold
the weights into int8 constants -> re-export -> lower to XNNPACK -> serialise. Input and output
stay float32 (the quantise/dequantise steps are inside the program).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from restnet.export import pte
from restnet.export.base import Int8Route, Quantized, calibrate, capture
from restnet.export.int8_finetune import fold_weights
from restnet.export.int8_recipe import DEFAULT, Recipe, xnnpack_quantizer


def quantize(model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor],
             recipe: Recipe = DEFAULT) -> Quantized:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = capture(model.eval(), example, dynamic_batch=True).module()
    prepared = prepare_pt2e(captured, xnnpack_quantizer(recipe, captured))
    calibrate(prepared, calibration, example.shape[0])
    return Quantized(convert_pt2e(prepared, fold_quantize=False))


def export(q: Quantized, example: torch.Tensor, path: Path) -> None:
    program = pte.lower(capture(fold_weights(q.program), example))
    path.write_bytes(program.buffer)


ROUTE = Int8Route("pte", ".int8.pte", "PT2E XNNPACKQuantizer (symmetric, per-channel weights)", quantize, export)
