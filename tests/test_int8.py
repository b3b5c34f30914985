"""int8: a stitched model's stitch is quantised for what it really outputs.

A stitched model's back part starts on the stitch's output, not on the back anchor's own features; its
int8 ranges are only right if calibration images ran through the front and the stitch. These tests
quantise a stitched lite2 -> lite0 (real timm models) with each int8 route and read the range the
converted program gives the stitch's output; it must cover the stitch's real outputs on photos the
calibration never saw, and not waste the int8 levels on values that never occur.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restnet.anchors import create_anchor
from restnet.anchors.stats import describe
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint, feature_spec

RES = 64


@pytest.fixture(scope="module")
def stitched() -> StitchedModel:
    torch.manual_seed(0)
    a = create_anchor("tf_efficientnet_lite2", pretrained=False)
    b = create_anchor("tf_efficientnet_lite0", pretrained=False)
    sa, sb = describe(a, RES), describe(b, RES)
    p = StitchPoint(10, 8)
    return StitchedModel(a, b, p, StitchLayer(feature_spec(a, sa.blocks[10].out_shape),
                                               feature_spec(b, sb.blocks[8].out_shape))).eval()


def photos(n: int, seed: int) -> torch.Tensor:
    """``n`` random crops (with flips) of scikit-image's photos as model inputs (mean = std = 0.5)."""
    from PIL import Image
    from skimage import data as skdata

    rng = np.random.default_rng(seed)
    pics = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    out = []
    for _ in range(n):
        im = pics[rng.integers(len(pics))]
        s = int(rng.integers(64, min(im.shape[:2])))
        y, x = rng.integers(0, im.shape[0] - s + 1), rng.integers(0, im.shape[1] - s + 1)
        crop = Image.fromarray(im[y:y + s, x:x + s]).resize((RES, RES), Image.BICUBIC)
        arr = np.asarray(crop, dtype=np.float32) / 255.0
        out.append(arr[:, ::-1] if rng.random() < 0.5 else arr)
    x = torch.from_numpy(np.stack(out).copy()).permute(0, 3, 1, 2)
    return (x - 0.5) / 0.5


def stitch_output_range(program: torch.fx.GraphModule) -> tuple[float, float]:
    """The float range [lo, hi] the converted program's int8 stitch output can hold."""
    conv = [n for n in program.graph.nodes if n.op == "call_function" and "conv" in str(n.target)
            and any("stitch" in path for path, _ in (n.meta.get("nn_module_stack") or {}).values())]
    assert len(conv) == 1, f"expected one stitch conv, found {len(conv)}"
    q = [u for u in conv[0].users if "quantize_per_tensor" in str(u.target) and "dequantize" not in str(u.target)]
    assert len(q) == 1, f"the stitch output is not quantised: users {list(conv[0].users)}"
    _, scale, zero, qmin, qmax, _ = q[0].args
    return (qmin - zero) * scale, (qmax - zero) * scale


def range_error(lo: float, hi: float, real: torch.Tensor) -> str | None:
    """Why [lo, hi] is the wrong int8 range for ``real`` (the stitch's fp32 outputs), or None."""
    clipped = float(((real < lo) | (real > hi)).float().mean())
    span = float(real.max() - real.min())
    if clipped > 0.01:
        return f"{clipped:.2%} of the stitch's real outputs fall outside [{lo:.3g}, {hi:.3g}]"
    if hi - lo > 2.0 * span:
        return f"range [{lo:.3g}, {hi:.3g}] is {(hi - lo) / span:.1f}x the real outputs' span {span:.3g}"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pte", "tflite"])
def test_stitch_quantised_with_its_real_output_range(stitched, fmt):
    """Calibrated on photos through the whole stitched model, the stitch's int8 range fits its real
    outputs on other photos; calibrated on a distribution the stitch does not see in use (the same
    photos at a quarter of their contrast), the same check fails: it catches wrong stitch ranges."""
    from restnet.export.int8 import get_route

    route = get_route(fmt)
    calib, held_out = photos(48, seed=1), photos(48, seed=2)
    with torch.no_grad():
        real = stitched.stitch(stitched.forward_front(held_out))

    def lo_hi(images: torch.Tensor) -> tuple[float, float]:
        q = route.quantize(stitched, images[:1], [images])
        return stitch_output_range(q.program)

    assert range_error(*lo_hi(calib), real) is None
    wrong = range_error(*lo_hi(calib * 0.25), real)
    assert wrong is not None and "outside" in wrong, wrong


def converted(model: torch.nn.Module, images: torch.Tensor) -> torch.fx.GraphModule:
    """The XNNPACK route's converted program (weights still fp32 behind their quantisers), batch-dynamic."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from restnet.export.base import calibrate
    from restnet.export.int8_recipe import DEFAULT, xnnpack_quantizer

    batch = torch.export.Dim("batch", min=1, max=256)
    cap = torch.export.export(model, (images[:2],), dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(cap, xnnpack_quantizer(DEFAULT, cap))
    calibrate(prepared, [images], 16)
    return convert_pt2e(prepared, fold_quantize=False)


def kl_to(teacher: torch.Tensor, out: torch.Tensor) -> float:
    return float(torch.nn.functional.kl_div(out.log_softmax(-1), teacher.log_softmax(-1), log_target=True,
                                            reduction="batchmean"))


@pytest.mark.slow
@pytest.mark.weights
def test_finetuning_trains_the_int8_program_itself():
    """Fine-tuning swaps the quantize ops for float copies with a straight-through gradient: those must
    compute the same program (else it trains another model than the one shipped); trained on some photos,
    the int8 logits of pretrained lite0 must come closer to fp32 on photos it never saw (measured here:
    KL 0.165 -> 0.100); folding the weights afterwards must not change them."""
    import copy

    from restnet.export.int8_finetune import Finetune, _float_ops, _swap, finetune, fold_weights

    torch.manual_seed(0)
    model = create_anchor("tf_efficientnet_lite0", pretrained=True).eval()
    train, held_out = photos(64, seed=3), photos(64, seed=4)
    with torch.no_grad():
        teacher, held_teacher = model(train), model(held_out)
    program = converted(model, train)
    with torch.no_grad():
        before = program(held_out)
        float_ops = copy.deepcopy(program)
        _swap(float_ops, _float_ops())
        assert torch.allclose(float_ops(held_out), before, atol=1e-5), "float quantisers compute another program"
    finetune(program, train, teacher, Finetune(images=64, epochs=4, lr=1e-6, batch=8))
    assert not [n for n in program.graph.nodes if n.op == "call_function" and n.target in _float_ops().values()]
    with torch.no_grad():
        after = program(held_out)
        assert kl_to(held_teacher, after) < 0.8 * kl_to(held_teacher, before)
        assert torch.allclose(fold_weights(program)(held_out), after, atol=1e-5)


@pytest.mark.slow
def test_finetuning_leaves_the_fp32_model_alone(stitched):
    """The converted program shares the tensors PT2E did not rewrite with the fp32 model; fine-tuning them
    in place would change the model every other file of the variant is exported from."""
    from restnet.cache import state_digest
    from restnet.export.int8 import get_route, quantize
    from restnet.export.int8_finetune import Finetune
    from restnet.export.int8_recipe import Recipe

    images = photos(32, seed=5)
    before = state_digest(stitched)
    quantize(get_route("pte"), stitched, images[:1], [images], Recipe(finetune=Finetune(32, 1, 1e-4)), images)
    assert state_digest(stitched) == before


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pte", "tflite"])
def test_int8_input_takes_whole_grey_levels_exactly(stitched, fmt, tmp_path):
    """Given the input spec, the route's image quantiser is pinned to the grid of whole grey levels
    (EfficientNet-Lite: scale 1/128, zero point -1), not left at the calibrated range, which rounds every
    pixel; the written .tflite's int8 input tensor carries that very grid, so a device feeding it the
    manifest's inputs loses nothing before the first layer."""
    from restnet.anchors.registry import LITE_MEAN, LITE_STD
    from restnet.data import InputSpec, to_model_input
    from restnet.export.int8 import get_route, quantize
    from restnet.export.int8_finetune import Finetune
    from restnet.export.int8_input import image_quantizer, on_grid
    from restnet.export.int8_recipe import Recipe

    spec = InputSpec(RES, LITE_MEAN, LITE_STD, "bicubic")
    rng = np.random.default_rng(6)
    raw = torch.from_numpy(rng.integers(0, 256, (24, 3, 32, 32), dtype=np.uint8))
    x = to_model_input(raw, spec)
    assert on_grid(x, (1 / 128, -1))
    route, recipe = get_route(fmt), Recipe(fp32=(), finetune=Finetune(images=0))  # fully integer
    calibrated = image_quantizer(route.quantize(stitched, x[:1], [x], recipe).program)
    assert calibrated is not None and tuple(calibrated.args[1:3]) != (1 / 128, -1)  # what pinning replaces
    q = quantize(route, stitched, x[:1], [x], recipe, spec=spec)
    node = image_quantizer(q.program)
    assert tuple(node.args[1:3]) == (1 / 128, -1)
    assert all(tuple(u.args[1:3]) == (1 / 128, -1) for u in node.users)
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        path = tmp_path / "m.int8.tflite"
        route.export(q, x[:1], path)
        (inp,) = Interpreter(model_path=str(path)).get_input_details()
        assert inp["dtype"] == np.int8 and inp["quantization"] == (1 / 128, -1), inp["quantization"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pte", "tflite"])
def test_float_parts_stay_float_in_both_routes(stitched, fmt, tmp_path):
    """The default recipe leaves the entry convs (up to the first depthwise one) and the classifier float
    in both routes: no weight of theirs is quantised, nothing before the first depthwise conv's output and
    nothing after the classifier is rounded, and the .tflite then takes and returns float32. A fully
    integer recipe quantises them (so the check can fail), and its .tflite has int8 tensors at both ends."""
    from restnet.export.int8 import get_route
    from restnet.export.int8_finetune import Finetune
    from restnet.export.int8_input import activation_quantize_nodes
    from restnet.export.int8_recipe import Recipe, part_of

    route, x = get_route(fmt), photos(8, seed=7)
    for recipe, float_io in ((Recipe(finetune=Finetune(images=0)), True),
                             (Recipe(fp32=(), finetune=Finetune(images=0)), False)):
        q = route.quantize(stitched, x[:1], [x], recipe)
        g, in_part = q.program.graph, part_of(q.program)
        convs = [n for n in g.nodes if n.op == "call_function" and "conv" in str(n.target)]
        entry = [n for n in convs if in_part(n, "entry")]
        (cls,) = [n for n in g.nodes if n.op == "call_function" and in_part(n, "classifier")]
        assert len(entry) == 2, entry  # lite2's stem conv and its first block's depthwise conv
        for node in (*entry, cls):
            weight_dq = "dequantize" in str(node.args[1].target) if node.args[1].op == "call_function" else False
            assert weight_dq != float_io, (node.name, node.args[1])
        assert any("quantize" in str(u.target) for u in cls.users) != float_io
        order = {n: k for k, n in enumerate(g.nodes)}
        first_rounding = order[activation_quantize_nodes(q.program)[0]]
        assert (first_rounding > order[entry[-1]]) == float_io  # float entry: no activation rounded inside it
        if fmt == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            path = tmp_path / f"m{int(float_io)}.int8.tflite"
            route.export(q, x[:1], path)
            it = Interpreter(model_path=str(path))
            ends = [d["dtype"] for d in (*it.get_input_details(), *it.get_output_details())]
            assert ends == ([np.float32] * 2 if float_io else [np.int8] * 2), ends


def test_recipe_knobs_set_the_finetuning_and_refuse_unknown_ones():
    """int8_diagnose's recipe names build the very Finetune the pack would run; a typo in a recipe name
    or a loss must stop the benchmark, not quietly measure the default."""
    from restnet.export.int8_finetune import Finetune
    from restnet.export.int8_recipe import parse

    r = parse("clamp+ft30000+mse+flip+ep2")
    assert r.clamp and r.finetune == Finetune(images=30000, epochs=2, loss="mse", flip=True)
    assert parse("clamp+ft").finetune == Finetune()
    assert parse("clamp+ft+kl").finetune.loss == "kl"
    assert parse("clamp+ft+ep2+lr2.5e-6").finetune == Finetune(epochs=2, lr=2.5e-6)
    assert "mirrored" in r.finetune.describe() and "mse" in r.finetune.describe()
    with pytest.raises(ValueError, match="losses: kl, mse"):
        Finetune(loss="l1")
    # profiles.py names the losses itself (it must load without torch); the two lists must stay one set
    from typing import get_args

    from restnet.export.int8_finetune import LOSSES
    from restnet.profiles import Int8
    assert set(get_args(Int8.model_fields["finetune_loss"].annotation)) == set(LOSSES)
    from restnet.export.int8_recipe import DEFAULT, PARTS
    (parts,) = get_args(Int8.model_fields["float_parts"].annotation)
    assert set(get_args(parts)) <= set(PARTS)
    assert tuple(Int8().float_parts) == DEFAULT.fp32
    assert parse("clamp+fp32=entry+fp32=classifier+ft") == DEFAULT
    assert parse("clamp+ft").fp32 == ()  # knobs build from the stock (fully integer) quantizer
    with pytest.raises(ValueError, match="unknown int8 recipe knob"):
        parse("clamp+fliped")
    with pytest.raises(ValueError, match="unknown int8 recipe knob"):
        parse("clamp+ft+lr0")
