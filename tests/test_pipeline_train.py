"""Runner.train with a model already built: the least-squares fit (minutes for wide stitches) is not redone."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import restnet_cache

from restnet.pipeline import CKAConfig, Experiment, Runner
from restnet.stitching import StitchPoint
from restnet.training.adapt import AdaptConfig


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    with restnet_cache(tmp_path_factory.mktemp("cache")):
        exp = replace(Experiment(), pretrained=False, adapt=AdaptConfig(method="probe"), train_size=128,
                      val_size=48, test_size=48, stitch_train_size=64, cka=CKAConfig("hsic", 16, 2), resolution=32)
        yield Runner(exp, log=lambda m: None)


def test_train_starts_from_the_model_given(runner):
    point = StitchPoint(3, 3)
    built = runner.build(point)
    with torch.no_grad():  # a start no least-squares fit would give: training must begin from it
        built.stitch.proj.weight.fill_(0.5)
    res = runner.train(point, runner.train_config(epochs=0), model=built)
    assert res.model is built
    assert torch.all(res.model.stitch.proj.weight == 0.5)


def test_a_model_for_another_point_is_refused(runner):
    with pytest.raises(ValueError, match="stitched at StitchPoint\\(i=2, j=3\\), not at StitchPoint\\(i=3, j=3\\)"):
        runner.train(StitchPoint(3, 3), runner.train_config(epochs=0), model=runner.build(StitchPoint(2, 3)))
