"""The CKA stage: how alike every front block's output is to every back block's, on the task's images.

One record per anchors' weights, task, CKA settings and seed, so `restnet cka`, `restnet select` and
a pack all read the one computation.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from restnet import __version__, cache, distributed
from restnet.anchors.stats import ModelStats
from restnet.cka import CKAResult, cka_matrix
from restnet.data import Task, to_model_input
from restnet.paths import cache_dir
from restnet.pipeline.experiment import CKAConfig, Experiment
from restnet.training.adapt import TaskAnchor


def cka_key(front_key: str, back_key: str, task: Task, cfg: CKAConfig, seed: int) -> str:
    return cache.key_of(front=front_key, back=back_key, data=task.fingerprint(), cka=asdict(cfg), seed=seed,
                        v=__version__)


def cka_path(front: str, back: str, key: str) -> Path:
    return cache_dir("cka") / f"{front}--{back}-{key}.json"


def measure_cka(front: TaskAnchor, back: TaskAnchor, task: Task, cfg: CKAConfig,
                seed: int) -> tuple[CKAResult, float]:
    """The matrix over ``cfg.repeats`` batches of the task's training images (a seeded sample), and the
    seconds it took."""
    n = min(cfg.batch_size * cfg.repeats, len(task.train))
    sample = task.train.subset(n, seed + 11)
    fs, bs, dev = front.spec, back.spec, distributed.device()
    # Under torchrun each rank takes every world-th batch; cka_matrix adds the sums over ranks.
    batches = ((to_model_input(imgs, fs).to(dev), to_model_input(imgs, bs).to(dev)) for imgs, _ in
               distributed.shard(task.raw_loader(sample, min(cfg.batch_size, n), drop_last=True)))
    t = time.perf_counter()
    res = cka_matrix(front.model.to(dev), back.model.to(dev), batches, cfg.estimator)
    front.model.to("cpu"), back.model.to("cpu")
    return res, time.perf_counter() - t


def cka_record(exp: Experiment, res: CKAResult, seconds: float, task: Task, front_stats: ModelStats,
               back_stats: ModelStats) -> dict:
    """What is cached and what the report plots: the matrix with the blocks' names and output shapes."""
    return {
        "front": exp.front, "back": exp.back, "estimator": res.estimator,
        "batch_size": res.batch_size, "repeats": res.repeats, "data": task.fingerprint(),
        "resolution": exp.resolution, "seconds": seconds,
        "front_blocks": [{"name": b.name, "shape": list(b.out_shape)} for b in front_stats.blocks],
        "back_blocks": [{"name": b.name, "shape": list(b.out_shape)} for b in back_stats.blocks],
        "matrix": res.matrix.tolist(),
    }


def cka_tensor(record: dict) -> torch.Tensor:
    """A CKA record's matrix, [front blocks, back blocks] (float64)."""
    return torch.tensor(record["matrix"], dtype=torch.float64)
