"""Fine-tune a converted int8 program's weights through its own quantisers, towards the fp32 model.

Why: after calibration (int8_recipe) the int8 program still changes ~5 % of the fp32 model's top-1
decisions, and about half of that is weight rounding. The converted PT2E program (quantize ops kept
unfolded) is exactly the arithmetic the device runs; while its quantize / dequantize ops are swapped for
float copies that round with a straight-through gradient, its fp32 weights can learn to absorb the
rounding, with the fp32 model's logits as the target (distillation: no labels needed). Scales and zero
points stay the calibrated ones, so afterwards it is the same program with other weight values, and the
ops are put back before the route lowers it. This is quantisation-aware fine-tuning with frozen
quantisers; PT2E's own QAT (prepare_qat_pt2e) re-learns the ranges with moving averages and, on
EfficientNet-Lite with the clamp recipe, its converted program did not match its fake-quantised one.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.fx import GraphModule

from restnet.progress import bar


@dataclass(frozen=True)
class Finetune:
    """How long and how hard; ``images == 0`` turns fine-tuning off."""

    # More images lower the error most; a second epoch, a larger or a decayed rate, or a weight average did
    # not (they drift or overfit). 20,000 of the default pack's 30,000 training images: all of them cost 1.5x
    # the time and gave no lower error (docs/int8.md, "Fine-tuning trials" and the loss trial).
    images: int = 20000  # training images (never validation ones), fp32 logits as targets
    epochs: int = 1
    lr: float = 5e-6  # Adam; weights are already close, a larger step un-learns the fp32 model
    batch: int = 32
    # mse: squared logit error (top-1 agreement depends on the logits near the top-2 margin, which KL at
    # temperature 1 weighs little on confident images) | kl: KL(fp32 softmax || int8 softmax). mse agreed
    # more and erred less on every pixel-7 member (docs/int8.md, "Fully integer files").
    loss: str = "mse"
    flip: bool = False  # also the mirrored images (twice the steps): more distinct images without new data

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown int8 fine-tuning loss {self.loss!r}; losses: {', '.join(LOSSES)}")

    def describe(self) -> str:
        if not self.images:
            return "no fine-tuning"
        extra = (", mirrored too" if self.flip else "") + f", {self.loss} loss"
        return (f"weights fine-tuned through the int8 quantisers ({self.images} images x {self.epochs} epochs, "
                f"lr {self.lr:g}{extra})")


def _kl(out: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(out, -1), F.log_softmax(teacher, -1), log_target=True, reduction="batchmean")


def _mse(out: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, teacher)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"kl": _kl, "mse": _mse}


def _round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()  # straight-through: round forward, identity backward


def _q_tensor(x, scale, zero_point, qmin, qmax, dtype):
    return torch.clamp(_round(x * (1.0 / scale)) + zero_point, qmin, qmax)


def _dq_tensor(x, scale, zero_point, qmin, qmax, dtype, *, out_dtype=None):
    return (x - zero_point) * scale


def _channel_view(t: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[axis] = -1
    return t.view(shape)


def _q_channel(x, scales, zero_points, axis, qmin, qmax, dtype):
    s, z = _channel_view(scales, x, axis), _channel_view(zero_points, x, axis)
    return torch.clamp(_round(x * (1.0 / s)) + z, qmin, qmax)


def _dq_channel(x, scales, zero_points, axis, qmin, qmax, dtype, *, out_dtype=None):
    return (x - _channel_view(zero_points, x, axis)) * _channel_view(scales, x, axis)


def _float_ops() -> dict:
    qd = torch.ops.quantized_decomposed
    return {qd.quantize_per_tensor.default: _q_tensor, qd.dequantize_per_tensor.default: _dq_tensor,
            qd.quantize_per_channel.default: _q_channel, qd.dequantize_per_channel.default: _dq_channel}


def _swap(gm: GraphModule, table: dict) -> dict:
    """Retarget every node whose op is in ``table``; returns {node: original op} to swap back."""
    swapped = {}
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target in table:
            swapped[n] = n.target
            n.target = table[n.target]
    gm.recompile()
    return swapped


def finetune(program: GraphModule, images: torch.Tensor, teacher: torch.Tensor, cfg: Finetune,
             seed: int = 0, log: Callable[[str], None] | None = None) -> None:
    """Train ``program``'s parameters in place so its int8 logits follow ``teacher`` (fp32 logits of
    ``images``). ``program``: convert_pt2e(..., fold_quantize=False), every weight still an fp32 parameter."""
    params = [p for p in program.parameters() if p.is_floating_point()]
    if not params:
        raise ValueError("the int8 program has no float parameters: convert it with fold_quantize=False")
    originals = _swap(program, _float_ops())
    try:
        for p in params:
            p.requires_grad_(True)
        opt, loss_of = torch.optim.Adam(params, lr=cfg.lr), LOSSES[cfg.loss]
        g = torch.Generator().manual_seed(seed)
        with torch.enable_grad():
            for epoch in range(cfg.epochs):
                order, total = torch.randperm(len(images), generator=g), 0.0
                for k in bar(range(0, len(images), cfg.batch), f"int8 fine-tune, epoch {epoch + 1}/{cfg.epochs}"):
                    i = order[k:k + cfg.batch]
                    out = program(images[i])
                    loss = loss_of(out, teacher[i])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(i)
                if not math.isfinite(total):
                    raise FloatingPointError(f"int8 fine-tuning diverged in epoch {epoch + 1} (loss {total})")
                if log:
                    log(f"int8 fine-tune epoch {epoch + 1}/{cfg.epochs}: {cfg.loss} to fp32 {total / len(images):.4f}")
    finally:
        for p in params:
            p.requires_grad_(False)
        for n, op in originals.items():
            n.target = op
        program.recompile()


def fold_weights(program: GraphModule) -> GraphModule:
    """Quantise the (fine-tuned) weights into int8 constants, as convert_pt2e(fold_quantize=True) does."""
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    constant_fold(program, _quant_node_constraint)
    return program
