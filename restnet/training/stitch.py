"""Algorithm 2 (train only the stitching layer) and the paper's three other strategies.

  stitch        stitching layer only (Algorithm 2, the default)
  stitch+back   stitching layer and the back part ("+ latter part")
  stitch+front  stitching layer and the front part
  whole         every parameter

When the front is frozen (the first two) its outputs are computed once for the
training subset and cached on disk, so epochs never re-run the front: an
epoch costs stitch + back only. Strategies that change anchor weights train a
copy, so other variants sharing the anchors are untouched.

Every epoch ends with an atomic checkpoint (trainable weights, optimiser,
scheduler, RNG, history); a run started again with the same inputs resumes
after the last finished epoch.
"""
from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from restnet import cache, distributed
from restnet.data import InputSpec, Task, to_model_input
from restnet.progress import bar
from restnet.stitching import StitchedModel
from restnet.training import features

STRATEGIES = ("stitch", "stitch+back", "stitch+front", "whole")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings are the paper's (CNN pairs: SGD, lr 0.01, momentum 0.9,
    wd 5e-3, batch 256; transformer pairs use lr 0.00375, wd 0.05, batch 128).
    Epochs and data sizes are CPU-sized: the paper trains 150-300 epochs. Two epochs
    over the pack's 15,000 stitch images = the 30,000 images an anchor's adaptation
    sees: with 3 the members' extra training lifted the top members onto the front
    anchor, with 2 over 10,000 they stayed near the back one (docs/results.md, "The family rises with cost")."""

    strategy: str = "stitch"
    epochs: int = 2
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-3
    batch_size: int = 256
    seed: int = 0
    ls_init: bool = True
    calib_size: int = 256

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"training strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")

    @classmethod
    def for_pair(cls, front_family: str, back_family: str, **overrides) -> "TrainConfig":
        if "vit" in (front_family, back_family) or "swin" in (front_family, back_family):
            base = {"lr": 0.00375, "weight_decay": 0.05, "batch_size": 128}
        else:
            base = {}
        return cls(**{**base, **overrides})


def _trainable(model: StitchedModel, strategy: str) -> list[nn.Module]:
    parts = model.parts()
    return {"stitch": [parts["stitch"]], "stitch+back": [parts["stitch"], parts["back"]],
            "stitch+front": [parts["front"], parts["stitch"]], "whole": [model]}[strategy]


def resumable_state(run_dir: Path, cfg: TrainConfig) -> dict | None:
    """The checkpoint in ``run_dir`` if it was written with this exact config, else None."""
    state = cache.cached(run_dir / "checkpoint.pt")
    return state if state is not None and state["config"] == asdict(cfg) else None


def trainable_params(model: StitchedModel, strategy: str = "stitch") -> int:
    """Parameters a strategy trains (the paper's "trainable params" column)."""
    return sum(p.numel() for m in _trainable(model, strategy) for p in m.parameters())


@torch.no_grad()
def front_features(model: StitchedModel, task: Task, spec: InputSpec, cache: Path,
                   batch_size: int = 128) -> features.FeatureFile:
    """The frozen front's outputs for every training example, in a feature file at ``cache`` (.npy)
    that training reads a batch at a time; under torchrun rank 0 computes and writes it first, the
    others then find it (or, with a private cache folder each, write their own)."""
    with distributed.main_first():
        if (saved := features.open_cached(cache)) is not None:
            return saved
        model.eval()
        dev = next(model.parameters()).device
        batches = ((model.forward_front(x.to(dev)).cpu(), y)
                   for x, y in bar(task.loader(task.train, spec, batch_size), desc="front features (once)"))
        return features.write(cache, batches, len(task.train))


@torch.no_grad()
def least_squares_init(model: StitchedModel, back_model, task: Task, front_spec: InputSpec, back_spec: InputSpec,
                       n: int = 256, seed: int = 0) -> float:
    """Fit the stitch on calibration images: front block i output -> back block j output."""
    calib = task.train.subset(n, seed + 7)
    xs, ys = [], []
    for imgs, _ in task.raw_loader(calib, 64):
        xs.append(model.forward_front(to_model_input(imgs, front_spec)))
        h = back_model.stem(to_model_input(imgs, back_spec))
        ys.append(back_model.forward_blocks(h, 0, model.point.j + 1))
    return model.stitch.init_least_squares(torch.cat(xs), torch.cat(ys), seed=seed)


@dataclass
class TrainResult:
    model: StitchedModel
    history: list[dict]
    resumed_from: int  # epochs already done when this call started
    seconds: float


def train_stitched(model: StitchedModel, task: Task, spec: InputSpec, cfg: TrainConfig, run_dir: Path,
                   feature_cache: Path | None = None) -> TrainResult:
    """Train per ``cfg.strategy``; checkpoints in ``run_dir``; resumes from the last epoch there.

    Under torchrun every rank trains its share of each global batch (DDP averages the gradients) and
    rank 0 alone writes the checkpoint and ``train-log.json`` (every step's loss)."""
    t0 = time.perf_counter()
    plain = model
    if cfg.strategy != "stitch":  # trains anchor weights: a copy (GPUs under torchrun: with SyncBatchNorm)
        plain = copy.deepcopy(model)
        model = distributed.sync_batchnorm(plain)
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = _trainable(model, cfg.strategy)
    params = [p for m in trainable for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    model.to(distributed.device())
    data = _Batches(model, task, spec, cfg, feature_cache)
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * data.steps))
    start, history = _resume(run_dir, cfg, model, opt, sched)
    net = distributed.wrap(_FromFront(model) if data.cached else model)
    for epoch in range(start, cfg.epochs):
        history.append(_train_epoch(model, net, trainable, data, opt, sched, epoch))
        _save(run_dir, cfg, model, opt, sched, epoch, history)
    del net
    model.to("cpu")
    if model is not plain:
        plain.load_state_dict(model.state_dict())
    for p in plain.parameters():
        p.requires_grad_(False)
    plain.eval()
    return TrainResult(plain, history, start, time.perf_counter() - t0)


def _save(run_dir: Path, cfg: TrainConfig, model: StitchedModel, opt: torch.optim.Optimizer,
          sched: torch.optim.lr_scheduler.LRScheduler, epoch: int, history: list[dict]) -> None:
    """The epoch's checkpoint and the human-readable log (rank 0 only; the others wait for it)."""
    if distributed.is_main():
        trainable_state = {k: v.cpu() for k, v in model.state_dict().items()
                           if any(k.startswith(prefix) for prefix in _prefixes(cfg.strategy))}
        cache.atomic_save({"config": asdict(cfg), "epoch": epoch + 1, "model": trainable_state,
                                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                "rng": torch.get_rng_state(), "history": history}, run_dir / "checkpoint.pt")
        cache.atomic_write_json({"config": asdict(cfg), "world_size": distributed.world_size(),
                                      "history": history}, run_dir / "train-log.json")
    distributed.barrier()


class _FromFront(nn.Module):
    """The model from the cached front features on: what DDP wraps when the front is frozen."""

    def __init__(self, model: StitchedModel):
        super().__init__()
        self.model = model

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.forward_from_front(h)


class _Batches:
    """An epoch's (input, label) batches: the cached front features when the front is frozen (the
    front never runs again), else the images through the whole model. Under torchrun, this rank's
    share of each global batch (restnet.distributed.share)."""

    def __init__(self, model: StitchedModel, task: Task, spec: InputSpec, cfg: TrainConfig,
                 feature_cache: Path | None):
        self.task, self.spec, self.cfg = task, spec, cfg
        self.cached = cfg.strategy in ("stitch", "stitch+back")
        if self.cached:
            if feature_cache is None:  # no cache folder given: a private one for this run
                self._tmp = tempfile.TemporaryDirectory(prefix="restnet-features-")
                feature_cache = Path(self._tmp.name) / "front.npy"
            self.feats = front_features(model, task, spec, feature_cache)
            self.n = len(self.feats)
        else:
            self.n = len(task.train)
        self.steps = max(1, (self.n + cfg.batch_size - 1) // cfg.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(self.n)  # drawn in both cases, as always: the same seed gives the same weights
        if self.cached:
            return (self.feats.rows(idx) for idx in map(distributed.share, order.split(self.cfg.batch_size)))
        if not distributed.requested():  # one process: exactly as before
            return iter(self.task.loader(self.task.train, self.spec, self.cfg.batch_size, shuffle=True,
                                         seed=self.cfg.seed + epoch))
        return iter(self.task.loader(self.task.train, self.spec, self.cfg.batch_size, shuffle=True,
                                     seed=self.cfg.seed + epoch, shard=True))


def _resume(run_dir: Path, cfg: TrainConfig, model: StitchedModel, opt: torch.optim.Optimizer,
            sched: torch.optim.lr_scheduler.LRScheduler) -> tuple[int, list[dict]]:
    """(epochs already done, their history): restored from a checkpoint of this exact config, else a
    seeded fresh start."""
    state = resumable_state(run_dir, cfg)
    if state is None:
        torch.manual_seed(cfg.seed)
        return 0, []
    model.load_state_dict(state["model"], strict=False)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if state["epoch"] == 0:
        torch.manual_seed(cfg.seed)
    return state["epoch"], state["history"]


def _train_epoch(model: StitchedModel, net: nn.Module, trainable: list[nn.Module], data: _Batches,
                 opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, epoch: int) -> dict:
    """One pass over the training data; returns the epoch's history entry (mean loss, train accuracy,
    every step's loss over its global batch, wall time)."""
    model.eval()  # frozen parts keep their BatchNorm statistics
    for m in trainable:
        m.train()
    dev, world, t0 = distributed.device(), distributed.world_size(), time.perf_counter()
    total, correct, seen, steps = 0.0, 0, 0, []
    desc = f"train {model.describe()} epoch {epoch + 1}/{data.cfg.epochs}"
    for k, (h, y) in enumerate(bar(data.epoch(epoch), desc, total=data.steps)):
        h, y = h.to(dev), y.to(dev)
        out = net(h)
        if world == 1:  # one process: exactly as before
            loss = nn.functional.cross_entropy(out, y)
            step = (float(loss.detach()) * len(y), int((out.argmax(-1) == y).sum()), len(y))
        else:  # DDP averages gradients over ranks: scale so the average is the global batch's mean
            n = distributed.global_batch_size(k, data.cfg.batch_size, data.n)
            loss_sum = nn.functional.cross_entropy(out, y, reduction="sum")
            loss = loss_sum * (world / n)
            stats = torch.tensor([float(loss_sum.detach()), float((out.argmax(-1) == y).sum()), len(y)],
                                 dtype=torch.float64)
            step = tuple(distributed.all_reduce(stats).tolist())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total, correct, seen = total + step[0], correct + int(step[1]), seen + int(step[2])
        steps.append(step[0] / step[2])
    return {"epoch": epoch + 1, "loss": total / seen, "train_acc": correct / seen, "step_losses": steps,
            "seconds": time.perf_counter() - t0}


def _prefixes(strategy: str) -> tuple[str, ...]:
    return {"stitch": ("stitch.",), "stitch+back": ("stitch.", "back_blocks.", "head."),
            "stitch+front": ("stem.", "front_blocks.", "stitch."), "whole": ("",)}[strategy]
