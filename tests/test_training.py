"""Algorithm 2 and the other strategies on a toy pair: what trains, and that a resumed run ends where an
uninterrupted one does (same weights, bit for bit)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from restnet import cache
from restnet.anchors.blocks import BlockModel
from restnet.stitching import FeatureSpec, StitchedModel, StitchLayer, StitchPoint
from restnet.training.stitch import STRATEGIES, TrainConfig, resumable_state, train_stitched, trainable_params


def _toy(name: str, width: int) -> BlockModel:
    blocks = [nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU()),
              nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 3))
    return BlockModel(name, "cnn", nn.Conv2d(3, width, 3, stride=2, padding=1), blocks, head)


def _stitched() -> StitchedModel:
    torch.manual_seed(0)
    front, back = _toy("front", 4), _toy("back", 6)
    stitch = StitchLayer(FeatureSpec("nchw", (4, 8, 8)), FeatureSpec("nchw", (6, 8, 8)), kernel_size=1)
    return StitchedModel(front, back, StitchPoint(0, 0), stitch)


class _Task:
    """The two calls training makes of a restnet.data.Task, on 24 fixed random images."""

    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.x, self.y = torch.randn(24, 3, 16, 16, generator=g), torch.randint(0, 3, (24,), generator=g)
        self.train = list(range(24))

    def loader(self, split, spec, batch_size, shuffle=False, seed=0):
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed)) if shuffle \
            else torch.arange(len(split))
        return [(self.x[idx], self.y[idx]) for idx in order.split(batch_size)]


class Killed(Exception):
    """Stands in for the process dying."""


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 8, "ls_init": False, **kw})


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_trains_exactly_its_parts(strategy, tmp_path):
    model = _stitched()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train_stitched(model, _Task(), None, _cfg(strategy=strategy), tmp_path)
    changed = {k.split(".")[0] for k, v in res.model.state_dict().items() if not torch.equal(v, before[k])}
    want = {"stitch": {"stitch"}, "stitch+back": {"stitch", "back_blocks", "head"},
            "stitch+front": {"stem", "front_blocks", "stitch"}, "whole": {"stem", "front_blocks", "stitch",
                                                                          "back_blocks", "head"}}[strategy]
    assert changed == want
    assert [h["epoch"] for h in res.history] == [1, 2, 3] and res.resumed_from == 0
    assert not any(p.requires_grad for p in res.model.parameters()) and not res.model.training
    if strategy != "stitch":  # anchors are shared by every variant: other strategies train a copy
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_trainable_params_count_what_each_strategy_trains():
    model = _stitched()
    count = lambda *mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
    parts = model.parts()
    assert trainable_params(model, "stitch") == count(parts["stitch"])
    assert trainable_params(model, "stitch+back") == count(parts["stitch"], parts["back"])
    assert trainable_params(model, "stitch+front") == count(parts["front"], parts["stitch"])
    assert trainable_params(model, "whole") == count(model)


@pytest.mark.parametrize("strategy", ["stitch", "whole"])
def test_a_killed_run_resumes_to_the_same_weights(strategy, tmp_path, monkeypatch):
    cfg = _cfg(strategy=strategy)
    straight = train_stitched(_stitched(), _Task(), None, cfg, tmp_path / "straight").model.state_dict()

    saves = []
    real_save = cache.atomic_save

    def killed_after_first_epoch(obj, path):
        if path.name != "checkpoint.pt":  # other entries (the front features' labels) save as usual
            return real_save(obj, path)
        if saves:
            raise Killed("during epoch 2")
        saves.append(path)
        real_save(obj, path)

    monkeypatch.setattr(cache, "atomic_save", killed_after_first_epoch)
    with pytest.raises(Killed):
        train_stitched(_stitched(), _Task(), None, cfg, tmp_path / "resumed")
    monkeypatch.setattr(cache, "atomic_save", real_save)
    torch.manual_seed(123)  # a new process: the global RNG must come from the checkpoint, not from here
    res = train_stitched(_stitched(), _Task(), None, cfg, tmp_path / "resumed")
    assert res.resumed_from == 1 and [h["epoch"] for h in res.history] == [1, 2, 3]
    assert all(torch.equal(v, straight[k]) for k, v in res.model.state_dict().items())


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    train_stitched(_stitched(), _Task(), None, _cfg(epochs=1), tmp_path)
    assert resumable_state(tmp_path, _cfg(epochs=1)) is not None
    assert resumable_state(tmp_path, _cfg(epochs=1, lr=0.5)) is None
    res = train_stitched(_stitched(), _Task(), None, _cfg(epochs=1, lr=0.5), tmp_path)
    assert res.resumed_from == 0


def test_config_checks_and_the_papers_settings_per_pair():
    with pytest.raises(ValueError, match="strategy"):
        TrainConfig(strategy="front")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1)
    assert TrainConfig.for_pair("cnn", "cnn").lr == 0.01
    vit = TrainConfig.for_pair("cnn", "vit", epochs=2)
    assert (vit.lr, vit.weight_decay, vit.batch_size, vit.epochs) == (0.00375, 0.05, 128, 2)


def test_front_features_stream_through_a_file_in_the_order_training_asks(tmp_path):
    """The feature file gives back exactly the front's outputs, row by row in any order, and an epoch's
    batches are the rows the in-memory tensor it replaced gave (so trained weights do not change)."""
    from restnet.training.stitch import _Batches, front_features

    model, task = _stitched(), _Task()
    ff = front_features(model, task, None, tmp_path / "f.npy", batch_size=5)
    with torch.no_grad():
        want = model.forward_front(task.x)
    idx = torch.randperm(24)[:9]
    got, labels = ff.rows(idx)
    assert torch.equal(got, want[idx]) and torch.equal(labels, task.y[idx])

    cfg = _cfg(strategy="stitch")
    data = _Batches(_stitched(), task, None, cfg, tmp_path / "f.npy")
    torch.manual_seed(5)
    streamed = list(data.epoch(0))
    torch.manual_seed(5)  # the in-memory batches the file replaced: same permutation, same rows
    for (h, y), b in zip(streamed, torch.randperm(24).split(cfg.batch_size), strict=True):
        assert torch.equal(h, want[b]) and torch.equal(y, task.y[b])


def test_a_damaged_feature_file_is_recomputed_not_trained_on(tmp_path):
    from restnet.training import features
    from restnet.training.stitch import front_features

    model, task, path = _stitched(), _Task(), tmp_path / "f.npy"
    good = front_features(model, task, None, path).rows(torch.arange(24))[0]
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x40  # one flipped bit in the last row
    path.write_bytes(bytes(data))
    assert features.open_cached(path) is None and not path.exists()  # discarded, not trusted
    again = front_features(model, task, None, path).rows(torch.arange(24))[0]
    assert torch.equal(again, good)
