"""A cut model must compute exactly what timm's model computes."""
from __future__ import annotations

import pytest
import torch

from restnet._compat import import_timm
from restnet.anchors import ANCHORS, create_anchor
from restnet.anchors.blocks import cut
from restnet.anchors.stats import count_params, describe

EXPECTED_BLOCKS = {
    "tf_efficientnet_lite0": 16, "tf_efficientnet_lite1": 21, "tf_efficientnet_lite2": 21,
    "mobilenetv2_100": 17, "resnet18": 8, "resnet34": 16, "vgg11_bn": 8,
    "deit_tiny_patch16_224": 12, "deit_small_patch16_224": 12, "swin_tiny_patch4_window7_224": 12,
}


def _random_timm(name: str):
    """timm model with random weights and non-trivial BatchNorm statistics and scales."""
    timm = import_timm()
    torch.manual_seed(0)
    net = timm.create_model(ANCHORS[name].arch, pretrained=False)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)  # timm zero-inits some: blocks would be identities
    return net.eval()


def _input(name: str) -> torch.Tensor:
    spec = ANCHORS[name]
    size = 64 if spec.family == "cnn" else spec.preprocess.resolution
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_every_registered_anchor_is_covered():
    assert set(EXPECTED_BLOCKS) == set(ANCHORS)


@pytest.mark.parametrize("name", list(EXPECTED_BLOCKS))
def test_blocks_in_order_equal_timm_forward(name):
    net = _random_timm(name)
    x = _input(name)
    with torch.no_grad():
        ref = net(x)
        bm = cut(net, name, ANCHORS[name].family)
        out = bm(x)
        feats = bm.block_outputs(x)
    assert bm.num_blocks == EXPECTED_BLOCKS[name]
    assert len(feats) == bm.num_blocks
    assert (out - ref).abs().max().item() <= 1e-5
    # Every parameter of the timm model lives in exactly one part.
    assert count_params(bm) == count_params(net)
    # The last block feeds the head: running the head on it reproduces the logits.
    with torch.no_grad():
        assert torch.equal(bm.head(feats[-1]), out)


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18", "deit_tiny_patch16_224"])
def test_equality_check_can_fail(name):
    """Skipping one block changes the output, so the equality test has teeth."""
    net = _random_timm(name)
    x = _input(name)
    bm = cut(net, name, ANCHORS[name].family)
    skipped = False
    with torch.no_grad():
        h = bm.stem(x)
        for blk in bm.blocks:
            y = blk(h)
            if not skipped and y.shape == h.shape:
                skipped = True  # leave this shape-preserving block out
                continue
            h = y
        assert skipped
        assert (bm.head(h) - net(x)).abs().max().item() > 1e-3


def test_lite0_stats():
    st = describe(create_anchor("tf_efficientnet_lite0", pretrained=False), 224)
    assert len(st.blocks) == 16
    assert abs(st.params - 4.65e6) < 0.01e6
    assert abs(st.flops - 0.399e9) < 0.005e9  # fvcore multiply-adds
    assert st.blocks[-1].out_shape == (320, 7, 7)
    assert st.head.out_shape == (1000,)


def test_vit_flops_count_attention():
    """fvcore misses fused attention; restnet unfuses it while counting (1.258 G, not 1.08 G)."""
    st = describe(create_anchor("deit_tiny_patch16_224", pretrained=False), 224)
    assert abs(st.flops - 1.258e9) < 0.01e9
    assert st.blocks[0].out_shape == (197, 192)


def test_unknown_anchor_names_choices():
    with pytest.raises(KeyError, match="registered anchors: .*tf_efficientnet_lite0"):
        create_anchor("no_such_model")
