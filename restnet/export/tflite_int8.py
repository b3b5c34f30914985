"""int8 TFLite: PT2E static quantisation with litert-torch's quantizer, converted by litert-torch.

capture (torch.export) -> prepare_pt2e with litert-torch's PT2EQuantizer
(symmetric, per-channel weights, per-tensor activations) -> calibrate on task
images -> convert_pt2e (quantize ops kept unfolded, as litert-torch expects)
-> [fine-tune, restnet.export.int8_finetune] -> litert_torch.convert with the same quantizer, NHWC input like
the fp32 .tflite -> serialise.

With the default recipe the entry convs and the classifier stay float, so the file takes and returns
float32 like the fp32 .tflite. A fully integer recipe (profile ``int8.float_parts: []``) gives int8 input
and output tensors, each with its own scale and zero point in the model (firmware can then feed quantised
pixels directly). toolkit.runtime reads the tensor types and quantises/dequantises where needed, so
callers always pass float32 and get float32 logits.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from restnet.export.base import Int8Route, Quantized, calibrate, capture
from restnet.export.int8_recipe import DEFAULT, Recipe, litert_quantizer
from restnet.export.tflite import channels_last


def quantize(model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor],
             recipe: Recipe = DEFAULT) -> Quantized:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = litert_quantizer(recipe)
    captured = capture(model.eval(), example, dynamic_batch=True).module()
    prepared = prepare_pt2e(captured, quantizer)
    calibrate(prepared, calibration, example.shape[0])
    return Quantized(convert_pt2e(prepared, fold_quantize=False), quantizer)


def export(q: Quantized, example: torch.Tensor, path: Path) -> None:
    """N x H x W x C in, like the fp32 .tflite (restnet.export.tflite.channels_last); a fully integer file
    keeps its int8 input tensor (the transpose folds into the first convolution)."""
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    config = QuantConfig(pt2e_quantizer=q.quantizer)
    program, x = channels_last(q.program, example)
    litert_torch.convert(program, (x,), quant_config=config).export(str(path))


ROUTE = Int8Route("tflite", ".int8.tflite", "PT2E litert-torch PT2EQuantizer (symmetric, per-channel weights)",
                  quantize, export)
