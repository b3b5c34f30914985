"""Every format is exported, then run by its own runtime and compared with eager."""
from __future__ import annotations

import pytest
import torch

from restnet.anchors import create_anchor
from restnet.anchors.stats import describe
from restnet.export import ExportMismatch, export_verified, formats
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint, feature_spec


@pytest.fixture(scope="module")
def stitched():
    torch.manual_seed(0)
    a = create_anchor("tf_efficientnet_lite2", pretrained=False)
    b = create_anchor("tf_efficientnet_lite0", pretrained=False)
    sa, sb = describe(a, 64), describe(b, 64)
    p = StitchPoint(10, 8)
    return StitchedModel(a, b, p, StitchLayer(feature_spec(a, sa.blocks[10].out_shape),
                                               feature_spec(b, sb.blocks[8].out_shape))).eval()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pte", "tflite", "tflite-onnx2tf", "onnx", "torchscript"])
def test_export_runs_in_own_runtime_and_matches_eager(stitched, fmt, tmp_path):
    g = torch.Generator().manual_seed(1)
    example = torch.randn(1, 3, 64, 64, generator=g)
    checks = torch.randn(3, 3, 64, 64, generator=g)
    out = export_verified(stitched, example, fmt, tmp_path / f"m{formats()[fmt].suffix}", checks)
    assert out.path.is_file() and out.size > 1_000_000 and len(out.sha256) == 64
    assert out.max_abs_diff <= 1e-4


def test_mismatch_fails_with_the_figure(stitched, tmp_path, monkeypatch):
    """If the file computed something else, the export must fail, saying by how much."""
    import dataclasses

    import restnet.export as ex

    table = ex.formats()
    ts = table["torchscript"]
    broken = dataclasses.replace(ts, load=lambda path, threads=None: (lambda x: ts.load(path)(x) + 1e-2))
    monkeypatch.setattr(ex, "_formats", lambda: {**table, "torchscript": broken})
    with pytest.raises(ExportMismatch, match=r"max \|Δ\| vs eager = 0\.01 > "):
        export_verified(stitched, torch.randn(1, 3, 64, 64), "torchscript", tmp_path / "m.pt")


def test_unknown_format(stitched, tmp_path):
    with pytest.raises(ValueError, match="choose from pte, tflite, tflite-onnx2tf, onnx, torchscript"):
        export_verified(stitched, torch.randn(1, 3, 64, 64), "coreml", tmp_path / "m")
