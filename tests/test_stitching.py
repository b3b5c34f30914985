"""Stitching layers for every pair type, least-squares init, stitched models."""
from __future__ import annotations

import pytest
import torch

from restnet.anchors import create_anchor
from restnet.anchors.stats import describe
from restnet.stitching import FeatureSpec, StitchedModel, StitchLayer, StitchPoint, feature_spec


def test_least_squares_recovers_a_known_conv():
    g = torch.Generator().manual_seed(0)
    src, dst = FeatureSpec("nchw", (6, 8, 8)), FeatureSpec("nchw", (5, 8, 8))
    truth = torch.nn.Conv2d(6, 5, 3, padding=1)
    with torch.no_grad():
        truth.weight.copy_(torch.randn(5, 6, 3, 3, generator=g))
        truth.bias.copy_(torch.randn(5, generator=g))
        x = torch.randn(40, 6, 8, 8, generator=g)
        y = truth(x)
    layer = StitchLayer(src, dst, kernel_size=3)
    resid = layer.init_least_squares(x, y)
    assert resid < 1e-5
    assert torch.allclose(layer.proj.weight, truth.weight, atol=1e-4)
    assert torch.allclose(layer.proj.bias, truth.bias, atol=1e-4)


def test_least_squares_recovers_a_known_linear_map_on_tokens():
    g = torch.Generator().manual_seed(1)
    w, b = torch.randn(12, 7, generator=g), torch.randn(12, generator=g)
    x = torch.randn(30, 17, 7, generator=g)
    layer = StitchLayer(FeatureSpec("nlc", (17, 7), 1), FeatureSpec("nlc", (17, 12), 1))
    assert layer.kind == "linear"
    assert layer.init_least_squares(x, x @ w.T + b) < 1e-5
    assert torch.allclose(layer.proj.weight, w, atol=1e-4) and torch.allclose(layer.proj.bias, b, atol=1e-4)


def test_least_squares_is_not_trivially_perfect():
    """A non-linear target leaves a residual: the fit is a real fit."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 4, 6, 6, generator=g)
    layer = StitchLayer(FeatureSpec("nchw", (4, 6, 6)), FeatureSpec("nchw", (4, 6, 6)), kernel_size=1)
    assert layer.init_least_squares(x, x.abs()) > 0.1


@pytest.mark.parametrize("src,dst,kind", [
    (FeatureSpec("nchw", (16, 14, 14)), FeatureSpec("nchw", (24, 7, 7)), "conv"),        # downsample x2
    (FeatureSpec("nchw", (16, 7, 7)), FeatureSpec("nchw", (24, 10, 10)), "conv"),        # bilinear up
    (FeatureSpec("nlc", (50, 32), 1), FeatureSpec("nlc", (50, 48), 1), "linear"),
    (FeatureSpec("nlc", (50, 32), 1), FeatureSpec("nlc", (17, 48), 1), "tokens_to_tokens"),
    (FeatureSpec("nchw", (16, 14, 14)), FeatureSpec("nlc", (50, 48), 1), "conv_to_tokens"),
    (FeatureSpec("nlc", (197, 32), 1), FeatureSpec("nchw", (24, 28, 28)), "tokens_to_conv"),
    (FeatureSpec("nhwc", (14, 14, 16)), FeatureSpec("nlc", (50, 48), 1), "conv_to_tokens"),
    (FeatureSpec("nchw", (16, 14, 14)), FeatureSpec("nhwc", (7, 7, 24)), "conv"),
])
def test_every_pair_type_maps_shapes_and_initialises(src, dst, kind):
    layer = StitchLayer(src, dst)
    assert layer.kind == kind
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, *src.shape, generator=g)
    y = torch.randn(8, *dst.shape, generator=g)
    assert layer(x).shape == (8, *dst.shape)
    before = (layer(x) - y).norm()
    layer.init_least_squares(x, y)
    assert (layer(x) - y).norm() < before


def test_conv_to_tokens_fits_class_token():
    """The class token is mean(tokens) + a fitted offset, recovered exactly for a linear target."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(20, 8, 4, 4, generator=g)
    w = torch.randn(6, 8, generator=g)
    grid = torch.einsum("oc,bchw->bhwo", w, x).reshape(20, 16, 6)
    cls = grid.mean(1, keepdim=True) + torch.randn(1, 1, 6, generator=g)
    y = torch.cat([cls, grid], dim=1)
    layer = StitchLayer(FeatureSpec("nchw", (8, 4, 4)), FeatureSpec("nlc", (17, 6), 1), kernel_size=1)
    assert layer.init_least_squares(x, y) < 1e-5


def _pair(front, back, size):
    a = create_anchor(front, pretrained=False)
    b = create_anchor(back, pretrained=False)
    return a, b, describe(a, size), describe(b, size)


@pytest.mark.parametrize("front,back,size", [
    ("tf_efficientnet_lite2", "tf_efficientnet_lite0", 64),
    ("resnet18", "vgg11_bn", 64),
    ("deit_small_patch16_224", "deit_tiny_patch16_224", 224),
    ("resnet18", "deit_tiny_patch16_224", 224),
    ("deit_tiny_patch16_224", "resnet18", 224),
])
def test_stitched_model_runs_and_exports(front, back, size):
    a, b, sa, sb = _pair(front, back, size)
    p = StitchPoint(a.num_blocks // 2, b.num_blocks // 2)
    stitch = StitchLayer(feature_spec(a, sa.blocks[p.i].out_shape), feature_spec(b, sb.blocks[p.j].out_shape))
    m = StitchedModel(a, b, p, stitch).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        out = m(x)
        assert out.shape == (2, 1000)
        assert torch.equal(m.forward_from_front(m.forward_front(x)), out)
    ep = torch.export.export(m, (x,))
    assert torch.allclose(ep.module()(x), out, atol=1e-5)
    # Only the kept parts are inside: fewer params than the two anchors together.
    total = sum(q.numel() for q in m.parameters())
    assert total < sum(q.numel() for q in a.parameters()) + sum(q.numel() for q in b.parameters())


def test_stitch_point_bounds():
    a = create_anchor("tf_efficientnet_lite0", pretrained=False)
    with pytest.raises(ValueError, match="outside"):
        StitchedModel(a, a, StitchPoint(16, 0), torch.nn.Identity())
