"""The evaluation stage: accuracies, cached per weights, split and resolution, and a model's costs.

The cache lets a pack, `restnet evaluate` and the benchmarks score one model once, and lets a warm
pack skip every accuracy it already reported.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from restnet import cache
from restnet.anchors.stats import count_flops, count_params
from restnet.data import InputSpec, Split, Task
from restnet.paths import cache_dir
from restnet.pipeline.records import cached_json
from restnet.stitching import StitchedModel
from restnet.training.evaluate import accuracy, host_latency_ms, predictions
from restnet.training.stitch import trainable_params


def report_accuracy(model: torch.nn.Module, spec: InputSpec, task: Task, resolution: int,
                    digest: str | None = None) -> float:
    """Top-1 on the report split (test where there is one); ``digest``: the weights' if known (else computed)."""
    def compute() -> dict:
        split = task.report
        return {"accuracy": accuracy(model, task.loader(split, spec, 128), desc=f"{task.report_name} accuracy")}

    return _cached_eval(model, digest, task.report, resolution, "", compute)["accuracy"]


def val_correct(model: torch.nn.Module, spec: InputSpec, task: Task, resolution: int,
                digest: str | None = None) -> np.ndarray:
    """Per validation image, whether the model's top-1 is right (what restnet.package.dominance compares)."""
    def compute() -> dict:
        pred, label = predictions(model, task.loader(task.val, spec, 128), desc="val accuracy")
        return {"correct": "".join("1" if c else "0" for c in (pred == label).tolist())}

    hit = _cached_eval(model, digest, task.val, resolution, "-correct", compute)
    return np.frombuffer(hit["correct"].encode(), dtype=np.uint8) == ord("1")


def _cached_eval(model: torch.nn.Module, digest: str | None, split: Split, resolution: int, kind: str,
                 compute: Callable[[], dict]) -> dict:
    """An evaluation's record, keyed by the weights, the split's images and the resolution: every rank
    evaluates the whole split, one writes."""
    digest = digest or cache.state_digest(model)
    return cached_json(cache_dir("evals") / f"{digest}-{split.fingerprint()}-{resolution}{kind}.json", compute)


def evaluate(model: torch.nn.Module, spec: InputSpec, task: Task, resolution: int, latency_runs: int = 20,
             threads: int = 1, strategy: str = "stitch") -> dict:
    """Validation and report (test) accuracy, params, FLOPs and host latency (batch 1)."""
    x = torch.zeros(1, 3, resolution, resolution)
    return {
        "val_accuracy": accuracy(model, task.loader(task.val, spec, 128), desc="val accuracy"),
        "accuracy": report_accuracy(model, spec, task, resolution),
        "split": task.report_name,
        "params": count_params(model),
        "flops": int(count_flops(model, x)[""]),
        "trainable_params": trainable_params(model, strategy) if isinstance(model, StitchedModel) else 0,
        "latency": host_latency_ms(model, x, runs=latency_runs, threads=threads),
    }
