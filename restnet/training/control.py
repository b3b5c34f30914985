"""The control every stitched member is measured against: an anchor given the members' extra training.

Every stitched member gets stitch training on top of the task anchors. An
anchor given the very same training (cut after its middle block and stitched
to *itself*, A[:i+1] -> stitch -> A[i+1:], the stitch least-squares-initialised,
which makes it the identity up to numerics, then trained with the members'
TrainConfig on the members' images) shows what that training alone buys. A
member's edge over an anchor beyond it is the stitching's own; a member below
the small anchor trained alike is no reason to ship a family (SN-Net's users
ask the same of its families: would the small model trained as long not do
better?).
"""
from __future__ import annotations

from dataclasses import dataclass

from restnet import cache
from restnet.data import Task
from restnet.paths import cache_dir
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint
from restnet.training.adapt import TaskAnchor
from restnet.training.stitch import TrainConfig, least_squares_init, resumable_state, train_stitched

GAIN_WARNING = 0.003  # an anchor this much more accurate once trained alike: the family's edge may be training


@dataclass(frozen=True)
class Control:
    """One anchor trained alike: where it was cut and the model to evaluate."""

    role: str  # "front" or "back"
    after_block: int
    model: StitchedModel


def middle_block(anchor: TaskAnchor) -> int:
    """The cut: the anchor's middle block (a point every anchor has, away from stem and head)."""
    return anchor.model.num_blocks // 2


def trained_alike(role: str, anchor: TaskAnchor, block_specs: list, task: Task, cfg: TrainConfig,
                  kernel_size: int, seed: int, i: int | None = None) -> Control:
    """``anchor`` cut after block ``i`` (default: the middle one) and stitched to itself, trained with
    ``cfg`` on ``task``'s training images; cached (resumable) like a member's training.

    ``block_specs``: the anchor's per-block output specs (what a StitchLayer is built from)."""
    i = middle_block(anchor) if i is None else i
    if not 0 <= i < anchor.model.num_blocks - 1:
        raise ValueError(f"block {i} is outside 0..{anchor.model.num_blocks - 2} for {anchor.model.name}")
    stitch = StitchLayer(block_specs[i], block_specs[i], kernel_size)
    model = StitchedModel(anchor.model, anchor.model, StitchPoint(i, i), stitch)
    key = cache.key_of(anchor=anchor.key, i=i, data=task.fingerprint(), cfg=str(cfg), k=kernel_size)
    run_dir = cache_dir("self-stitch", f"{role}-i{i}-{key}")
    if cfg.ls_init and resumable_state(run_dir, cfg) is None:  # a checkpoint overwrites the stitch anyway
        least_squares_init(model, anchor.model, task, anchor.spec, anchor.spec, seed=seed)
    feats = cache_dir("front-features") / f"self-{role}-i{i}-{key}.npy"
    return Control(role, i, train_stitched(model, task, anchor.spec, cfg, run_dir, feats).model)
