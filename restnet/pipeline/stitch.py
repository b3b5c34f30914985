"""The stitch-training stage (Algorithm 2): a stitching layer from front block i to back block j,
fitted by least squares, then trained; one checkpointed folder per variant, so training resumes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from restnet import __version__, cache
from restnet.anchors import get_anchor
from restnet.cost import CostModel
from restnet.data import InputSpec, Split, Task
from restnet.paths import cache_dir
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint
from restnet.training.adapt import TaskAnchor
from restnet.training.stitch import TrainConfig, TrainResult, least_squares_init, resumable_state, train_stitched


def train_config(front: str, back: str, seed: int, **overrides) -> TrainConfig:
    """The paper's settings for the pair's families (TrainConfig.for_pair), with ``overrides``."""
    return TrainConfig.for_pair(get_anchor(front).family, get_anchor(back).family, seed=seed, **overrides)


def stitch_layer(specs: CostModel, point: StitchPoint, kernel_size: int) -> StitchLayer:
    """A new layer from block ``point.i``'s output to block ``point.j``'s (shapes from any cost model)."""
    return StitchLayer(specs.front_specs[point.i], specs.back_specs[point.j], kernel_size)


def stitched(layer: StitchLayer, point: StitchPoint, front: TaskAnchor, back: TaskAnchor, task: Task, seed: int,
             ls_init: bool = True) -> StitchedModel:
    """The anchors joined by ``layer``; ``ls_init``: the layer fitted by least squares first (the start
    training needs; fitting takes minutes for wide stitches)."""
    model = StitchedModel(front.model, back.model, point, layer)
    if ls_init:
        least_squares_init(model, back.model, task, front.spec, back.spec, seed=seed)
    return model.eval()


def variant_dir(front: str, back: str, front_key: str, back_key: str, stitch_task: Task, point: StitchPoint,
                kernel_size: int, cfg: TrainConfig) -> Path:
    """The variant's checkpoint folder, keyed by everything its trained weights depend on."""
    key = cache.key_of(front=front_key, back=back_key, data=stitch_task.fingerprint(), point=point.to_dict(),
                       k=kernel_size, cfg=asdict(cfg), v=__version__)
    return cache_dir("variants", f"{front}--{back}-i{point.i}-j{point.j}-{key}")


def feature_cache(front: str, front_key: str, point: StitchPoint, train: Split, resolution: int) -> Path:
    """Where the front's block-i outputs on the stitch images are kept for the strategies that leave the
    front frozen: computed once, shared by every variant stitched after that block."""
    key = cache.key_of(front=front_key, i=point.i, data=train.fingerprint(), res=resolution)
    return cache_dir("front-features") / f"{front}-i{point.i}-{key}.npy"


def check_model(model: StitchedModel | None, point: StitchPoint) -> None:
    """A model handed to training must be stitched at the point it trains."""
    if model is not None and model.point != point:
        raise ValueError(f"the model given is stitched at {model.point}, not at {point}")


def train(cfg: TrainConfig, run_dir: Path, features: Path, task: Task, spec: InputSpec,
          build: Callable[[bool], StitchedModel], model: StitchedModel | None = None) -> TrainResult:
    """Train (or resume) the variant in ``run_dir``; ``build(ls_init)`` makes its model unless ``model``
    is given (already built, least-squares fitted for a probe, say)."""
    # A checkpoint overwrites the stitch weights, so least squares would be wasted work.
    if model is None:
        model = build(cfg.ls_init and resumable_state(run_dir, cfg) is None)
    return train_stitched(model, task, spec, cfg, run_dir, features)
