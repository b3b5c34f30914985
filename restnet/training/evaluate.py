"""Top-1 accuracy and host latency of a model (anchor or stitched variant)."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from restnet.progress import bar
from restnet.timing import measure_ms, torch_threads


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


def host_latency_ms(model: nn.Module, example: torch.Tensor, runs: int = 20, warmup: int = 3,
                    threads: int | None = None) -> dict:
    """Median eager latency on this host for one input, with the thread count recorded."""
    with torch_threads(threads) as n:
        ms = measure_ms(model, example, runs, warmup)
    return {"median_ms": ms, "runs": runs, "threads": n, "batch": int(example.shape[0]),
            "runtime": f"torch {torch.__version__} eager"}
