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
        return stitch_output_range(getattr(q, "module", q))

    assert range_error(*lo_hi(calib), real) is None
    wrong = range_error(*lo_hi(calib * 0.25), real)
    assert wrong is not None and "outside" in wrong, wrong
