"""Anchor adaptation does not depend on what ran before it in the process (the head's init is seeded)."""
from __future__ import annotations

import torch

from restnet.data import load_task
from restnet.training.adapt import AdaptConfig, adapt_anchor


def test_adapted_anchor_is_the_same_whatever_ran_before(tmp_path, monkeypatch):
    task = load_task("cifar10", train_size=64, val_size=32, test_size=32, resolution=32)
    cfg = AdaptConfig(method="probe", epochs=1, batch_size=32)
    weights = []
    for k, burn in enumerate((0, 1000)):
        monkeypatch.setenv("RESTNET_CACHE", str(tmp_path / f"c{k}"))
        torch.manual_seed(123)
        torch.rand(burn)  # another code path consumed the global RNG before adaptation
        a = adapt_anchor("tf_efficientnet_lite0", task, 32, cfg, pretrained=False)
        weights.append(torch.cat([p.detach().flatten() for p in a.model.parameters()]))
    assert torch.equal(weights[0], weights[1])
