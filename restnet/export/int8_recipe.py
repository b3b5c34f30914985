"""How a model is quantised to int8 (PT2E), shared by both int8 routes.

The stock XNNPACK and litert-torch quantizers fuse conv + ReLU but not conv + ReLU6: a ReLU6
(``hardtanh(0, 6)``) shares its input's observer, so the conv output is quantised over its whole
pre-clamp range (BN-folded, often tens of units wide and half negative) and the [0, 6] the next layer
sees gets a fraction of the 256 levels. ``clamp`` moves the output observer to after the clamp, as
both quantizers already do for ReLU; XNNPACK and the TFLite converter fuse the clamp into the conv.

A ``Recipe`` also carries the knobs benchmarks/int8_diagnose.py measures (calibration size, activation
observer, per-tensor weights, parts left fp32).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.fx import GraphModule, Node

from restnet.export.int8_finetune import LOSSES, Finetune

CLAMPS = ("hardtanh.default", "hardtanh_.default", "clamp.default")
FUSABLE = ("conv2d.default", "convolution.default", "linear.default", "add.Tensor")
PARTS = ("stem", "front", "stitch", "back", "head", "dw", "first", "classifier")


@dataclass(frozen=True)
class Recipe:
    clamp: bool = True  # observe after ReLU6, not before it
    calibration: int = 256  # images
    observer: str = "hist"  # hist | minmax | ma | pct
    per_channel: bool = True
    fp32: tuple[str, ...] = ()  # parts left unquantised
    only: str | None = None  # quantise this part only
    batch1: bool = True  # calibrate one image at a time (as the pack does)
    tensors: str = "both"  # both | weights | activations: which tensors are quantised (diagnosis only)
    finetune: Finetune = Finetune()  # weights fine-tuned through the quantisers afterwards (images=0: off)

    def describe(self) -> str:
        bits = [f"{self.calibration} calibration images", f"{self.observer} observer",
                "per-channel weights" if self.per_channel else "per-tensor weights"]
        if self.clamp:
            bits.append("ReLU6 output observed after the clamp")
        if self.finetune.images:
            bits.append(self.finetune.describe())
        return ", ".join(bits)


DEFAULT = Recipe()  # what --int8 uses: ReLU6 observed after the clamp, 256 images, histogram, per-channel


def _tuned(r: Recipe, **changes) -> Recipe:
    """``r`` with its fine-tuning settings changed, the others kept (knobs combine in any order)."""
    return dataclasses.replace(r, finetune=dataclasses.replace(r.finetune, **changes))


def parse(name: str) -> Recipe:
    """'base' = the stock quantizer; else '+'-joined knobs (see benchmarks/int8_diagnose.py)."""
    r = Recipe(clamp=False, finetune=Finetune(images=0))
    for knob in name.split("+"):
        if knob == "base":
            continue
        elif knob == "clamp":
            r = dataclasses.replace(r, clamp=True)
        elif knob == "pt":
            r = dataclasses.replace(r, per_channel=False)
        elif knob in ("weights", "activations"):
            r = dataclasses.replace(r, tensors=knob)
        elif knob == "ft" or (knob.startswith("ft") and knob[2:].isdigit()):
            r = _tuned(r, images=int(knob[2:] or Finetune().images))
        elif knob in LOSSES:
            r = _tuned(r, loss=knob)
        elif knob == "flip":
            r = _tuned(r, flip=True)
        elif knob.startswith("ep") and knob[2:].isdigit():
            r = _tuned(r, epochs=int(knob[2:]))
        elif knob.startswith("lr") and _positive(knob[2:]):
            r = _tuned(r, lr=float(knob[2:]))
        elif knob == "b64":
            r = dataclasses.replace(r, batch1=False)
        elif knob.startswith("c") and knob[1:].isdigit():
            r = dataclasses.replace(r, calibration=int(knob[1:]))
        elif knob.startswith("obs="):
            r = dataclasses.replace(r, observer=knob[4:])
        elif knob.startswith("fp32="):
            r = dataclasses.replace(r, fp32=r.fp32 + (knob[5:],))
        elif knob.startswith("only="):
            r = dataclasses.replace(r, only=knob[5:])
        else:
            raise ValueError(f"unknown int8 recipe knob {knob!r} in {name!r}")
    for p in r.fp32 + ((r.only,) if r.only else ()):
        if p not in PARTS:
            raise ValueError(f"unknown part {p!r}; parts: {', '.join(PARTS)}")
    return r


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _target(n: Node) -> str:
    return str(n.target).removeprefix("aten.") if n.op == "call_function" else ""


def quantize_after_clamp(gm: GraphModule) -> int:
    """Move each fusable op's output observer to the ReLU6 (clamp) that is its only user; returns how
    many moved. Runs after the quantizer's own annotation (and its propagation, which made the clamp
    share the op's observer)."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    moved = 0
    for n in gm.graph.nodes:
        prev = n.args[0] if _target(n) in CLAMPS and n.args else None
        if not isinstance(prev, Node) or _target(prev) not in FUSABLE or len(prev.users) != 1:
            continue
        ann = prev.meta.get(Q_ANNOTATION_KEY)
        if ann is None or ann.output_qspec is None or isinstance(ann.output_qspec, SharedQuantizationSpec):
            continue
        n.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=ann.output_qspec, _annotated=True)
        ann.output_qspec = None
        moved += 1
    return moved


def _observers() -> dict[str, Callable]:
    from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver

    class Percentile(MinMaxObserver):
        """min/max of the 0.01st and 99.99th percentiles of each batch: outliers do not set the range."""

        def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
            x = x_orig.detach().flatten().float()
            if x.numel() > 2 ** 20:
                x = x[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))[:2 ** 20]]
            lo, hi = torch.quantile(x, torch.tensor([1e-4, 1 - 1e-4]))
            self.min_val.copy_(torch.minimum(self.min_val, lo))
            self.max_val.copy_(torch.maximum(self.max_val, hi))
            return x_orig

    return {"hist": HistogramObserver, "minmax": MinMaxObserver, "ma": MovingAverageMinMaxObserver,
            "pct": Percentile}


def _config(base, recipe: Recipe):
    """``base`` (a quantizer's QuantizationConfig) with the recipe's activation observer."""
    if recipe.tensors == "weights":
        base = dataclasses.replace(base, input_activation=None, output_activation=None)
    elif recipe.tensors == "activations":
        base = dataclasses.replace(base, weight=None)
    if recipe.observer == "hist" or recipe.tensors == "weights":
        return base
    obs = _observers().get(recipe.observer)
    if obs is None:
        raise ValueError(f"unknown observer {recipe.observer!r}; choose from hist, minmax, ma, pct")
    act = dataclasses.replace(base.input_activation, observer_or_fake_quant_ctr=obs.with_args(eps=2 ** -12))
    return dataclasses.replace(base, input_activation=act, output_activation=act)


def part_of(gm: GraphModule) -> Callable[[Node, str], bool | None]:
    """``in_part(node, part)``: True/False, or None for nodes no part claims (weights, constants)."""
    convs = [n for n in gm.graph.nodes if _target(n) in ("conv2d.default", "convolution.default")]
    first = convs[0] if convs else None

    def in_part(n: Node, part: str) -> bool | None:
        if part == "dw":
            if n not in convs:
                return None
            w = n.args[1].meta.get("val") if isinstance(n.args[1], Node) else None
            return w is not None and w.shape[1] == 1 and w.shape[0] > 1
        if part == "first":
            return None if n not in convs else n is first
        if part == "classifier":
            return None if n.op != "call_function" else _target(n) == "linear.default"
        stack = n.meta.get("nn_module_stack")
        if not stack:
            return None
        path = list(stack.values())[-1][0]
        root = path.split(".")[0].removeprefix("L['self'].").removeprefix("L__self___")
        names = {"front": ("front_blocks",), "back": ("back_blocks",)}.get(part, (part,))
        return any(path.startswith(p) or root.startswith(p) for p in names)

    return in_part


def node_filter(recipe: Recipe, gm: GraphModule) -> Callable[[Node], bool] | None:
    if not recipe.fp32 and not recipe.only:
        return None
    in_part = part_of(gm)

    def keep(n: Node) -> bool:
        if recipe.only and in_part(n, recipe.only) is False:
            return False
        return not any(in_part(n, p) is True for p in recipe.fp32)

    return keep


def _clamped(base: type, recipe: Recipe) -> type:
    """``base`` (a PT2E quantizer class) whose annotation, when the recipe says so, then moves each ReLU6's
    observer after the clamp (quantize_after_clamp); both routes' quantizers need the same step."""

    class Quantizer(base):
        def annotate(self, model: GraphModule) -> GraphModule:
            model = super().annotate(model)
            if recipe.clamp:
                quantize_after_clamp(model)
            return model

    return Quantizer


def xnnpack_quantizer(recipe: Recipe, gm: GraphModule | None = None):
    """ExecuTorch's XNNPACKQuantizer set up for ``recipe`` (``gm``: the captured graph, for part filters)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    q = _clamped(XNNPACKQuantizer, recipe)().set_global(_config(get_symmetric_quantization_config(is_per_channel=recipe.per_channel), recipe))
    if gm is not None and (f := node_filter(recipe, gm)) is not None:
        q.set_filter_function(f)
    return q


def litert_quantizer(recipe: Recipe):
    """litert-torch's PT2EQuantizer set up for ``recipe`` (no part filters: it has no filter hook)."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    if recipe.fp32 or recipe.only:
        raise ValueError("the litert-torch route cannot leave parts fp32")

    base = get_symmetric_quantization_config(is_per_channel=recipe.per_channel, is_dynamic=False)
    return _clamped(PT2EQuantizer, recipe)().set_global(_config(base, recipe))
