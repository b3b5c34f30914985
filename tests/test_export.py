"""Every format is exported, then run by its own runtime and compared with eager."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restnet.anchors import create_anchor
from restnet.anchors.stats import describe
from restnet.export import ClassifierInfo, ExportMismatch, export_verified, formats
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint, feature_spec


@pytest.fixture(scope="module")
def stitched():
    """lite2's first three blocks (a depthwise-separable one, inverted residuals with and without the skip), a
    stitching layer that pools 16x16 down to 2x2, lite0's last block and its head: every kind of layer the
    family's members hold, in a small part of their operators (converters take time per operator: onnx2tf took
    154 s for a member of 18 blocks, 101 s for this model with two more of lite0's blocks)."""
    torch.manual_seed(0)
    a = create_anchor("tf_efficientnet_lite2", pretrained=False)
    b = create_anchor("tf_efficientnet_lite0", pretrained=False)
    sa, sb = describe(a, 64), describe(b, 64)
    p = StitchPoint(2, 14)
    return StitchedModel(a, b, p, StitchLayer(feature_spec(a, sa.blocks[p.i].out_shape),
                                               feature_spec(b, sb.blocks[p.j].out_shape))).eval()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pte", "tflite", "tflite-onnx2tf", "onnx", "torchscript"])
def test_export_runs_in_own_runtime_and_matches_eager(stitched, fmt, tmp_path):
    g = torch.Generator().manual_seed(1)
    example = torch.randn(1, 3, 64, 64, generator=g)
    checks = torch.randn(3, 3, 64, 64, generator=g)
    info = ClassifierInfo.of("m", "a test", [f"c{k}" for k in range(1000)], 1 / 255, [0.5] * 3, [0.5] * 3)
    out = export_verified(stitched, example, fmt, tmp_path / f"m{formats()[fmt].suffix}", checks, info=info)
    assert out.path.is_file() and out.size > 1_000_000 and len(out.sha256) == 64
    assert out.max_abs_diff <= 1e-4


def test_mismatch_fails_with_the_figure(stitched, tmp_path, monkeypatch):
    """If the file computed something else, the export must fail, saying by how much."""
    import dataclasses

    import restnet.export as ex

    ts = ex.get_format("torchscript")
    broken = dataclasses.replace(ts, load=lambda path, threads=None: (lambda x: ts.load(path)(x) + 1e-2))
    monkeypatch.setitem(ex.FORMATS, "torchscript", broken)
    with pytest.raises(ExportMismatch, match=r"max \|Δ\| vs eager = 0\.01 > "):
        export_verified(stitched, torch.randn(1, 3, 64, 64), "torchscript", tmp_path / "m.pt")


def test_unknown_format(stitched, tmp_path):
    with pytest.raises(ValueError, match="choose from pte, tflite, tflite-onnx2tf, onnx, torchscript"):
        export_verified(stitched, torch.randn(1, 3, 64, 64), "coreml", tmp_path / "m")


def _photo(image, size: int = 224) -> torch.Tensor:
    """An RGB uint8 photo as lite0 input (mean = std = 0.5)."""
    from PIL import Image

    im = Image.fromarray(image).resize((size, size), Image.BICUBIC)
    return (torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None] - 0.5) / 0.5


@pytest.mark.slow
@pytest.mark.weights
@pytest.mark.parametrize("fmt", ["pte", "tflite"])
def test_int8_file_keeps_real_predictions(fmt, tmp_path):
    """Real lite0 weights and real photos: the int8 file, run by its device runtime with float32 in
    and out (the .tflite has int8 tensors at its edges), still sees the cat and the espresso, and its
    logits stay close to eager's. A wrong scale or zero point, or a broken calibration, fails this."""
    from skimage import data as skdata

    from restnet.export import get_format
    from restnet.export.int8 import get_route

    model = create_anchor("tf_efficientnet_lite0", pretrained=True).eval()
    cat, cup = _photo(skdata.chelsea()), _photo(skdata.coffee())
    calib = [torch.cat([p, p.flip(-1)]) for p in (_photo(skdata.astronaut()), _photo(skdata.rocket()), cat, cup)]
    route = get_route(fmt)
    path = tmp_path / f"m{route.suffix}"
    route.export(route.quantize(model, cat, calib), cat, path)
    run = get_format(fmt).load(path)
    with torch.no_grad():
        for x, ok in ((cat, lambda k: 281 <= k <= 285), (cup, lambda k: k == 967)):
            want, got = model(x).numpy()[0], run(x.numpy())[0]
            assert got.dtype == want.dtype and ok(int(got.argmax())), int(got.argmax())
            # Measured here: correlation 0.96 (.pte) / 0.88 (.tflite), mean |Δ| 0.3-0.5 of mean |logit|,
            # mean offset < 0.001. A missing dequantisation scales the logits by ~1/scale, a wrong zero
            # point shifts them all by ~zero x scale: argmax survives both, these bounds do not.
            assert np.corrcoef(got, want)[0, 1] >= 0.8
            assert abs(got - want).mean() <= 0.7 * abs(want).mean()
            assert abs(got.mean() - want.mean()) <= 0.1 * abs(want).mean()
