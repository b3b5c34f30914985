"""The two anchors: trained for the task (the "adapt anchors" stage), and as bare architectures.

The trained anchor feeds CKA, the stitches and every accuracy; the architecture, with random
weights, is all that costs and shapes need, so budgets are checked before any training runs.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

from restnet.anchors import get_anchor, shipped
from restnet.anchors.blocks import BlockModel, cut
from restnet.data import Task
from restnet.pipeline.experiment import Experiment
from restnet.training.adapt import TaskAnchor, adapt_anchor, timm_for_task
from restnet.training.converge import describe_curve


def task_anchor(name: str, weights: str | None, classes: int | None, exp: Experiment, task: Task,
                log: Callable[[str], None]) -> TaskAnchor:
    """``name`` trained for the task: the anchor restnet ships for this experiment where there is one
    and no weights were given, else adapted (restnet.training.adapt, which caches it)."""
    t = time.perf_counter()
    made = _shipped(name, exp, task) if weights is None else None
    if made is not None:
        weights, classes = made.verified(), task.num_classes
    a = adapt_anchor(name, task, exp.resolution, exp.adapt, weights, classes, exp.pretrained, log)
    if made is not None:  # how the shipped file was made is its adaptation: the report shows that curve
        a.source, a.curve, a.stopped = f"shipped:{made.path.name}", made.record.get("curve"), made.record.get("stopped")
    log(f"anchor {name}: val accuracy {a.accuracy:.2%} ({a.source}; {time.perf_counter() - t:.0f} s)")
    if a.curve:
        log(f"anchor {name}: {describe_curve(a.curve, a.stopped)}")
    return a


def _shipped(name: str, exp: Experiment, task: Task) -> shipped.ShippedAnchor | None:
    """The shipped anchor made for this data, resolution and validation split (another split could hold
    images it trained on), unless the experiment opts out or asks for random starting weights."""
    if not (exp.shipped and exp.pretrained):
        return None
    return shipped.find(name, exp.data, exp.resolution, task.val.fingerprint())


def architecture(name: str, num_classes: int, resolution: int) -> BlockModel:
    """The anchor's architecture for this task with random (seeded) weights: params, FLOPs, latency and
    block shapes do not depend on the weights."""
    torch.manual_seed(0)
    net = timm_for_task(name, num_classes, resolution).eval()
    return cut(net, name, get_anchor(name).family).eval()
