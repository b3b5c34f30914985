"""restnet._compat's fixes to the pinned environment change speed only, never a result."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import restnet.export  # noqa: F401  (applies collect_cia_ops_once, as every export does)
from restnet.export.base import capture
from restnet.export.pte import lower

utils = pytest.importorskip("torch._export.utils")
needs_patch = pytest.mark.skipif(not hasattr(utils._collect_all_valid_cia_ops, "torch_own"),
                                 reason="this torch is not the one the fix was read against")


def _users():
    import torch.export.decomp_utils as decomp_utils
    import torch.export.exported_program as exported_program

    return (utils, exported_program, decomp_utils)


@needs_patch
def test_the_one_pass_collector_finds_torchs_own_set():
    ours = utils._collect_all_valid_cia_ops()
    theirs = utils._collect_all_valid_cia_ops.torch_own()
    assert ours == theirs and len(ours) > 100


class _Small(nn.Module):
    """Ops that CompositeImplicitAutograd decomposes or preserves: linear, hardswish, adaptive pooling, flatten."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = nn.functional.hardswish(self.bn(self.conv(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@needs_patch
def test_the_lowered_program_is_byte_identical_with_torchs_collector(monkeypatch):
    torch.manual_seed(0)
    model, x = _Small().eval(), torch.randn(1, 3, 16, 16)
    ours = lower(capture(model, x)).buffer
    torch_own = utils._collect_all_valid_cia_ops.torch_own
    for m in _users():  # every module that calls the collector calls torch's own
        monkeypatch.setattr(m, "_collect_all_valid_cia_ops", torch_own)
    theirs = lower(capture(model, x)).buffer
    assert ours == theirs
