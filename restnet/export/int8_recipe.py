"""How a model is quantised to int8 (PT2E), shared by both int8 routes.

The stock XNNPACK and litert-torch quantizers fuse conv + ReLU but not conv + ReLU6: a ReLU6
(``hardtanh(0, 6)``) shares its input's observer, so the conv output is quantised over its whole
pre-clamp range (BN-folded, often tens of units wide and half negative) and the [0, 6] the next layer
sees gets a fraction of the 256 levels. ``clamp`` moves the output observer to after the clamp, as
both quantizers already do for ReLU; XNNPACK and the TFLite converter fuse the clamp into the conv.

A ``Recipe`` also says which parts stay float (by default the entry convs and the classifier: where
one rounding reaches every later layer, and where it rounds the logits themselves) and carries the knobs
benchmarks/int8_diagnose.py measures (calibration size, activation observer, per-tensor weights).
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.fx import GraphModule, Node

from restnet.export.int8_finetune import LOSSES, Finetune

CLAMPS = ("hardtanh.default", "hardtanh_.default", "clamp.default")
FUSABLE = ("conv2d.default", "convolution.default", "linear.default", "add.Tensor")
PARTS = ("stem", "front", "stitch", "back", "head", "dw", "first", "entry", "classifier")


@dataclass(frozen=True)
class Recipe:
    clamp: bool = True  # observe after ReLU6, not before it
    calibration: int = 256  # images
    observer: str = "hist"  # hist | minmax | ma | pct
    per_channel: bool = True
    # Parts left float. "entry": the image's first rounding (the stem's ReLU6 output) reaches every later
    # layer; on the rpi4 44M member it was the largest single error of all 88 activation quantisers (a
    # quarter of the logit error's variance). "classifier": the logits are not rounded to an int8 grid
    # (step 0.08 there; 0.3 % of val images tie or flip on that alone). Both cost a few per cent of the
    # MACs (docs/int8.md, "What each step bought"). () = a fully integer program.
    fp32: tuple[str, ...] = ("entry", "classifier")
    only: str | None = None  # quantise this part only
    batch1: bool = True  # calibrate one image at a time (as the pack does)
    tensors: str = "both"  # both | weights | activations: which tensors are quantised (diagnosis only)
    finetune: Finetune = Finetune()  # weights fine-tuned through the quantisers afterwards (images=0: off)

    def describe(self) -> str:
        bits = [f"{self.calibration} calibration images", f"{self.observer} observer",
                "per-channel weights" if self.per_channel else "per-tensor weights"]
        if self.clamp:
            bits.append("ReLU6 output observed after the clamp")
        bits.append(f"left float: {', '.join(self.fp32)}" if self.fp32 else "fully integer")
        if self.finetune.images:
            bits.append(self.finetune.describe())
        return ", ".join(bits)


DEFAULT = Recipe()  # what --int8 uses: ReLU6 observed after the clamp, 256 images, histogram, per-channel,
# the entry and the classifier float, fine-tuned


def _tuned(r: Recipe, **changes) -> Recipe:
    """``r`` with its fine-tuning settings changed, the others kept (knobs combine in any order)."""
    return dataclasses.replace(r, finetune=dataclasses.replace(r.finetune, **changes))


def parse(name: str) -> Recipe:
    """'base' = the stock quantizer (fully integer); else '+'-joined knobs (see benchmarks/int8_diagnose.py).
    The pack's default is 'clamp+fp32=entry+fp32=classifier+ft'."""
    r = Recipe(clamp=False, fp32=(), finetune=Finetune(images=0))
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


def _shape(gm: GraphModule, n: Node) -> tuple[int, ...] | None:
    """A weight's shape: from the node's traced value, its attribute, or through its (de)quantize ops
    (a converted program's weights have no traced value)."""
    if (val := n.meta.get("val")) is not None:
        return tuple(val.shape)
    if n.op == "get_attr":
        return tuple(functools.reduce(getattr, n.target.split("."), gm).shape)
    if n.op == "call_function" and "quantize" in str(n.target) and n.args and isinstance(n.args[0], Node):
        return _shape(gm, n.args[0])
    return None


def _depthwise(gm: GraphModule, conv: Node) -> bool:
    w = _shape(gm, conv.args[1]) if isinstance(conv.args[1], Node) else None
    return w is not None and w[1] == 1 and w[0] > 1


def module_path(n: Node) -> str | None:
    """The innermost module a traced node came from ("front_blocks.0.conv_pw"), None for nodes of none."""
    stack = n.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else None


def part_of(gm: GraphModule) -> Callable[[Node, str], bool | None]:
    """``in_part(node, part)``: True/False, or None for nodes no part claims (weights, constants).
    By graph, for any model: ``first`` the first conv, ``entry`` every conv up to and including the first
    depthwise one (none when there is none), ``dw`` the depthwise convs, ``classifier`` the last linear.
    By module name, for stitched members: ``stem``, ``front``, ``stitch``, ``back``, ``head``."""
    convs = [n for n in gm.graph.nodes if _target(n) in ("conv2d.default", "convolution.default")]
    first = convs[0] if convs else None
    linears = [n for n in gm.graph.nodes if _target(n) == "linear.default"]
    dws = [n for n in convs if _depthwise(gm, n)]
    entry = set(convs[:convs.index(dws[0]) + 1]) if dws else set()

    def in_part(n: Node, part: str) -> bool | None:
        if part == "dw":
            return None if n not in convs else _depthwise(gm, n)
        if part == "first":
            return None if n not in convs else n is first
        if part == "entry":
            return None if n not in convs else n in entry
        if part == "classifier":
            return None if n.op != "call_function" else bool(linears) and n is linears[-1]
        path = module_path(n)
        if path is None:
            return None
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
    """litert-torch's PT2EQuantizer set up for ``recipe``. It has no public filter hook, so the recipe's part
    filter is joined to the filter its pattern annotators already take (every static pattern passes through
    ``_annotate_all_static_patterns``; litert-torch is pinned in pyproject.toml)."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    base = get_symmetric_quantization_config(is_per_channel=recipe.per_channel, is_dynamic=False)

    class Filtered(_clamped(PT2EQuantizer, recipe)):
        def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
            keep = node_filter(recipe, model)
            if keep is not None:
                outer = filter_fn
                filter_fn = keep if outer is None else (lambda n: outer(n) and keep(n))
            return super()._annotate_all_static_patterns(model, quantization_config, filter_fn)

    return Filtered().set_global(_config(base, recipe))
