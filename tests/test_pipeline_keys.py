"""The pipeline's cache keys and file names: what goes into each one is pinned here, because a change
silently orphans every cache a user has (a warm pack that takes a minute would adapt and train again).

No model runs: the Runner gets a tiny real Task and two stand-in anchors (only their keys and specs are
read), and the cache is asked for records instead of computing them.
"""
from __future__ import annotations

import types
from dataclasses import asdict, replace

import numpy as np
import pytest

from restnet import __version__
from restnet.cache import key_of
from restnet.data import Split, Task
from restnet.pipeline import CKAConfig, Experiment, Runner
from restnet.stitching import StitchPoint
from restnet.training.adapt import TaskAnchor

PAIR = "tf_efficientnet_lite2--tf_efficientnet_lite0"
POINT = StitchPoint(3, 4)


def _split(rng: np.random.Generator, n: int) -> Split:
    return Split(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), rng.integers(0, 10, n))


@pytest.fixture
def runner(cache) -> Runner:
    rng = np.random.default_rng(0)
    exp = replace(Experiment(), seed=2, cka=CKAConfig("unbiased", 16, 2), kernel_size=5, stitch_train_size=20,
                  resolution=32)
    r = Runner(exp, log=lambda m: None)
    # Set, a cached_property is never computed: no data set loads and no anchor adapts.
    r.__dict__.update(task=Task("cifar10", [str(c) for c in range(10)], _split(rng, 40), _split(rng, 12),
                                _split(rng, 12)),
                      front=TaskAnchor(None, "front spec", 0.0, "stand-in", 0.0, "front-key"),
                      back=TaskAnchor(None, "back spec", 0.0, "stand-in", 0.0, "back-key"))
    return r


@pytest.fixture
def asked(monkeypatch) -> list:
    """Every path the stages look up in the cache; each lookup is a hit with a small record."""
    paths = []

    def hit(path):
        paths.append(path)
        return {"matrix": [[1.0]], "accuracy": 0.5, "correct": "101"}

    monkeypatch.setattr("restnet.cache.cached", hit)
    return paths


def test_the_stitches_train_on_a_seeded_subset_with_the_same_val_and_test(runner):
    t, s = runner.task, runner.stitch_task
    assert s.train.fingerprint() == t.train.subset(20, 2 + 3).fingerprint() != t.train.fingerprint()
    assert (s.val, s.test) == (t.val, t.test)


def test_cka_is_keyed_by_the_anchors_the_task_its_settings_and_the_seed(runner, cache, asked):
    assert runner.cka()["matrix"] == [[1.0]]
    key = key_of(front="front-key", back="back-key", data=runner.task.fingerprint(),
                            cka={"estimator": "unbiased", "batch_size": 16, "repeats": 2}, seed=2, v=__version__)
    assert asked == [cache / "cka" / f"{PAIR}-{key}.json"]


def test_a_variant_is_keyed_by_the_anchors_the_stitch_images_point_kernel_and_config(runner, cache):
    cfg = runner.train_config(epochs=2)
    assert cfg.seed == 2 and cfg.epochs == 2
    key = key_of(front="front-key", back="back-key", data=runner.stitch_task.fingerprint(),
                            point={"i": 3, "j": 4}, k=5, cfg=asdict(cfg), v=__version__)
    assert runner.variant_dir(POINT, cfg) == cache / "variants" / f"{PAIR}-i3-j4-{key}"


def test_training_gets_the_variant_folder_and_the_front_features_file(runner, cache, monkeypatch):
    got = {}

    def train_stitched(model, task, spec, cfg, run_dir, feature_cache=None):
        got.update(task=task, spec=spec, run_dir=run_dir, features=feature_cache)
        return "trained"

    monkeypatch.setattr("restnet.pipeline.stitch.train_stitched", train_stitched)
    cfg = runner.train_config(epochs=2)
    assert runner.train(POINT, cfg, model=types.SimpleNamespace(point=POINT)) == "trained"
    key = key_of(front="front-key", i=3, data=runner.stitch_task.train.fingerprint(), res=32)
    assert got == {"task": runner.stitch_task, "spec": "front spec", "run_dir": runner.variant_dir(POINT, cfg),
                   "features": cache / "front-features" / f"tf_efficientnet_lite2-i3-{key}.npy"}


def test_evaluations_are_keyed_by_the_weights_the_split_and_the_resolution(runner, cache, asked):
    assert runner.report_accuracy("a model", "spec", digest="weights") == 0.5
    assert runner.val_correct("a model", "spec", digest="weights").tolist() == [True, False, True]
    assert asked == [cache / "evals" / f"weights-{runner.task.test.fingerprint()}-32.json",
                     cache / "evals" / f"weights-{runner.task.val.fingerprint()}-32-correct.json"]
