"""int8 ExecuTorch .pte: PT2E static quantisation for XNNPACK, calibrated on task images.

capture (torch.export) -> prepare_pt2e with XNNPACKQuantizer (symmetric,
per-channel weights, per-tensor activations) -> calibrate on task images ->
convert_pt2e -> re-export -> lower to XNNPACK -> serialise. An int8 file is
not held to the fp32 1e-4 gate: its top-1 agreement with the fp32 model on the
validation split is reported, and below 98 % the variant is flagged.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from restnet.export import pte

AGREEMENT_FLAG = 0.98


def quantize(model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor]) -> nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = torch.export.export(model.eval(), (example,)).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for x in calibration:
            for k in range(0, len(x), example.shape[0]):
                prepared(x[k:k + example.shape[0]])
    return convert_pt2e(prepared)


def export(quantized: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = pte.lower(torch.export.export(quantized, (example,)))
    path.write_bytes(program.buffer)
