"""Top-1 accuracy and host latency of a model (anchor or stitched variant)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Iterable

import torch
from torch import nn
from restnet.progress import bar


@torch.no_grad()
def predictions(model: nn.Module, batches: Iterable, desc: str = "evaluate") -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, label) for every example."""
    model.eval()
    preds, labels = [], []
    for x, y in bar(batches, desc=desc):
        preds.append(model(x).argmax(-1))
        labels.append(y)
    return torch.cat(preds), torch.cat(labels)


def accuracy(model: nn.Module, batches: Iterable, desc: str = "evaluate") -> float:
    p, y = predictions(model, batches, desc)
    return float((p == y).float().mean())


@torch.no_grad()
def host_latency_ms(model: nn.Module, example: torch.Tensor, runs: int = 20, warmup: int = 3,
                    threads: int | None = None) -> dict:
    """Median eager latency on this host for one input, with the thread count recorded."""
    model.eval()
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            model(example)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            model(example)
            times.append((time.perf_counter() - t) * 1e3)
        return {"median_ms": statistics.median(times), "runs": runs, "threads": torch.get_num_threads(),
                "batch": int(example.shape[0]), "runtime": f"torch {torch.__version__} eager"}
    finally:
        torch.set_num_threads(old)
