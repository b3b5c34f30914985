"""The method end to end, one cached stage at a time.

An ``Experiment`` is the set of inputs every stage depends on (anchors, data,
resolution, sizes, seeds). Each stage's result is cached on disk under a key
made of exactly those inputs, so `restnet cka`, `select`, `train` and
`evaluate` can each run alone: a verb computes what is missing and reuses
what exists, and a second run of anything is cheap.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from restnet import __version__, cache, distributed
from restnet.anchors import get_anchor, shipped
from restnet.anchors.stats import ModelStats, count_params, describe
from restnet.cka import cka_matrix
from restnet.cost import CostModel, build_cost_model
from restnet.data import Task, load_task, to_model_input
from restnet.data.image_folder import describe_skipped
from restnet.paths import cache_dir
from restnet.selection import Selection, select_family
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint
from restnet.training.adapt import AdaptConfig, TaskAnchor, adapt_anchor
from restnet.training.converge import describe_curve
from restnet.training.evaluate import accuracy, host_latency_ms, predictions
from restnet.training.stitch import (
    TrainConfig,
    TrainResult,
    least_squares_init,
    resumable_state,
    train_stitched,
    trainable_params,
)


@dataclass(frozen=True)
class CKAConfig:
    estimator: str = "hsic"
    batch_size: int = 256  # the paper's b
    repeats: int = 5  # the paper's 5 repeats


@dataclass(frozen=True)
class Experiment:
    """Defaults: the default pair on CIFAR-10, sized for a 2-core CPU (see docs/results.md).

    ``train_size`` images adapt the anchors; stitches train on a seeded subset of
    ``stitch_train_size`` of them (a stitch has thousands of parameters, an
    anchor millions). ``val_size`` images are carved from the training split
    for every decision; accuracies are reported on ``test_size`` images of the
    official test split (None = all).
    """

    front: str = "tf_efficientnet_lite2"
    back: str = "tf_efficientnet_lite0"
    data: str = "cifar10"
    resolution: int = 64
    train_size: int | None = 30000
    val_size: int | None = 5000
    test_size: int | None = None
    stitch_train_size: int | None = 15000
    seed: int = 0
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    front_weights: str | None = None
    front_classes: int | None = None
    back_weights: str | None = None
    back_classes: int | None = None
    cka: CKAConfig = field(default_factory=CKAConfig)
    kernel_size: int = 3
    pretrained: bool = True
    shipped: bool = True  # load restnet's converged task anchors where one was made for this experiment

    def __post_init__(self) -> None:
        get_anchor(self.front)
        get_anchor(self.back)


class Runner:
    """Runs and caches the stages of one Experiment."""

    def __init__(self, exp: Experiment, log=print):
        self.exp = exp
        self.log = log
        self._costs: dict[tuple, CostModel] = {}

    # ---- inputs ----
    @cached_property
    def task(self) -> Task:
        e = self.exp
        task = load_task(e.data, e.train_size, e.val_size, e.seed, e.resolution, test_size=e.test_size)
        if task.skipped:
            self.log(describe_skipped(task.skipped))
        return task

    @cached_property
    def stitch_task(self) -> Task:
        """The task with the stitches' training subset (the same val and test)."""
        t = self.task
        return replace(t, train=t.train.subset(self.exp.stitch_train_size, self.exp.seed + 3))

    def report_accuracy(self, model: torch.nn.Module, spec, digest: str | None = None) -> float:
        """Top-1 on the report split (test where there is one); cached by the weights' digest."""
        def compute() -> dict:
            split = self.task.report
            return {"accuracy": accuracy(model, self.task.loader(split, spec, 128),
                                         desc=f"{self.task.report_name} accuracy")}

        return self._cached_eval(model, digest, self.task.report, "", compute)["accuracy"]

    def val_correct(self, model: torch.nn.Module, spec, digest: str | None = None) -> np.ndarray:
        """Per validation image, whether the model's top-1 is right (what restnet.package.dominance compares);
        cached by the weights' digest."""
        def compute() -> dict:
            pred, label = predictions(model, self.task.loader(self.task.val, spec, 128), desc="val accuracy")
            return {"correct": "".join("1" if c else "0" for c in (pred == label).tolist())}

        hit = self._cached_eval(model, digest, self.task.val, "-correct", compute)
        return np.frombuffer(hit["correct"].encode(), dtype=np.uint8) == ord("1")

    def _cached_eval(self, model: torch.nn.Module, digest: str | None, split, kind: str,
                     compute: Callable[[], dict]) -> dict:
        """An evaluation's JSON record, from the cache (keyed by weights, split and resolution) or computed:
        every rank evaluates the whole split, one writes."""
        digest = digest or cache.state_digest(model)
        path = cache_dir("evals") / f"{digest}-{split.fingerprint()}-{self.exp.resolution}{kind}.json"
        if (hit := cache.cached(path)) is not None:
            return hit
        record = compute()
        if distributed.is_main():
            cache.atomic_write_json(record, path)
        distributed.barrier()
        return record

    def _anchor(self, name: str, weights, classes) -> TaskAnchor:
        t = time.perf_counter()
        made = None
        if weights is None and self.exp.shipped and self.exp.pretrained:
            made = shipped.find(name, self.exp.data, self.exp.resolution, self.task.val.fingerprint())
            if made is not None:
                weights, classes = made.verified(), self.task.num_classes
        a = adapt_anchor(name, self.task, self.exp.resolution, self.exp.adapt, weights, classes, self.exp.pretrained,
                         self.log)
        if made is not None:  # how the shipped file was made is its adaptation: the report shows that curve
            a.source, a.curve, a.stopped = f"shipped:{made.path.name}", made.record.get("curve"), made.record.get("stopped")
        self.log(f"anchor {name}: val accuracy {a.accuracy:.2%} ({a.source}; {time.perf_counter() - t:.0f} s)")
        if a.curve:
            self.log(f"anchor {name}: {describe_curve(a.curve, a.stopped)}")
        return a

    @cached_property
    def front(self) -> TaskAnchor:
        return self._anchor(self.exp.front, self.exp.front_weights, self.exp.front_classes)

    @cached_property
    def back(self) -> TaskAnchor:
        return self._anchor(self.exp.back, self.exp.back_weights, self.exp.back_classes)

    def _arch(self, name: str):
        """The anchor's architecture for this task with random weights: what costs and shapes need.
        Params, FLOPs and latency do not depend on the weights, so budgets can be checked
        (and refused) before any adaptation runs."""
        from restnet.anchors.blocks import cut
        from restnet.training.adapt import timm_for_task

        torch.manual_seed(0)
        net = timm_for_task(name, self.task.num_classes, self.exp.resolution).eval()
        return cut(net, name, get_anchor(name).family).eval()

    @cached_property
    def front_arch(self):
        return self._arch(self.exp.front)

    @cached_property
    def back_arch(self):
        return self._arch(self.exp.back)

    @cached_property
    def front_stats(self) -> ModelStats:
        return describe(self.front_arch, self.exp.resolution)

    @cached_property
    def back_stats(self) -> ModelStats:
        return describe(self.back_arch, self.exp.resolution)

    # ---- CKA ----
    def cka_key(self) -> str:
        return cache.key_of(front=self.front.key, back=self.back.key, data=self.task.fingerprint(),
                                 cka=asdict(self.exp.cka), seed=self.exp.seed, v=__version__)

    def cka(self) -> dict:
        """The CKA matrix with block names and shapes; computed once per inputs."""
        path = cache_dir("cka") / f"{self.exp.front}--{self.exp.back}-{self.cka_key()}.json"
        if (hit := cache.cached(path)) is not None:
            return hit
        c = self.exp.cka
        n = min(c.batch_size * c.repeats, len(self.task.train))
        sample = self.task.train.subset(n, self.exp.seed + 11)
        fs, bs, dev = self.front.spec, self.back.spec, distributed.device()
        # Under torchrun each rank takes every world-th batch; cka_matrix adds the sums over ranks.
        batches = ((to_model_input(imgs, fs).to(dev), to_model_input(imgs, bs).to(dev)) for imgs, _ in
                   distributed.shard(self.task.raw_loader(sample, min(c.batch_size, n), drop_last=True)))
        t = time.perf_counter()
        res = cka_matrix(self.front.model.to(dev), self.back.model.to(dev), batches, c.estimator)
        self.front.model.to("cpu"), self.back.model.to("cpu")
        out = {
            "front": self.exp.front, "back": self.exp.back, "estimator": res.estimator,
            "batch_size": res.batch_size, "repeats": res.repeats, "data": self.task.fingerprint(),
            "resolution": self.exp.resolution, "seconds": time.perf_counter() - t,
            "front_blocks": [{"name": b.name, "shape": list(b.out_shape)} for b in self.front_stats.blocks],
            "back_blocks": [{"name": b.name, "shape": list(b.out_shape)} for b in self.back_stats.blocks],
            "matrix": res.matrix.tolist(),
        }
        if distributed.is_main():
            cache.atomic_write_json(out, path)
        distributed.barrier()
        return out

    def cka_matrix(self) -> torch.Tensor:
        return torch.tensor(self.cka()["matrix"], dtype=torch.float64)

    # ---- cost and selection ----
    def cost_model(self, metric: str, threads: int | None = None, latency_scale: float | None = None) -> CostModel:
        """One cost model per (metric, threads, scale) and run: latency is measured once, not per verb step."""
        key = (metric, threads, latency_scale)
        if key not in self._costs:
            self._costs[key] = build_cost_model(metric, self.front_arch, self.back_arch, self.front_stats,
                                                self.back_stats, self.exp.kernel_size, threads, latency_scale)
        return self._costs[key]

    def anchor_costs(self, cm: CostModel) -> tuple[float, float]:
        return cm.anchor_cost("front"), cm.anchor_cost("back")

    def select(self, budgets: list[float], cm: CostModel, band: float = 0.0, window: float = 0.0,
               mask=None) -> list[Selection]:
        """``mask``: a function that returns the CKA matrix with the points to skip set to NaN."""
        m = self.cka_matrix() if mask is None else mask(self.cka_matrix())
        return select_family(m, cm, budgets, cm.unit, (self.exp.front, self.exp.back), band,
                             window, min(self.anchor_costs(cm)))

    def rerank(self, budget: float, cm: CostModel, k: int, n: int = 500,
               band: float = 0.0, floor: float | None = None) -> list[tuple[Selection, float]]:
        """Beyond the paper: the top-k CKA candidates within budget, each scored by the accuracy of
        its least-squares-initialised (untrained) stitch on n validation images; best first.
        CKA and stitchability can disagree (Bansal et al. 2021), this checks cheaply."""
        from restnet.selection import top_feasible

        cands = top_feasible(self.cka_matrix(), cm, budget, k, cm.unit, (self.exp.front, self.exp.back), band,
                             floor)
        probe = self.task.val.subset(n, self.exp.seed + 13)
        scored = []
        for s in cands:
            model = self.build(s.point)
            scored.append((s, accuracy(model, self.task.loader(probe, self.front.spec, 128),
                                       desc=f"rerank {s.point.label()}")))
        return sorted(scored, key=lambda t: (-t[1], -t[0].cka))

    # ---- variants ----
    def build(self, point: StitchPoint, ls_init: bool = True) -> StitchedModel:
        cm_specs = self.cost_model("params")
        stitch = StitchLayer(cm_specs.front_specs[point.i], cm_specs.back_specs[point.j], self.exp.kernel_size)
        model = StitchedModel(self.front.model, self.back.model, point, stitch)
        if ls_init:
            least_squares_init(model, self.back.model, self.task, self.front.spec, self.back.spec, seed=self.exp.seed)
        return model.eval()

    def variant_dir(self, point: StitchPoint, cfg: TrainConfig) -> Path:
        key = cache.key_of(front=self.front.key, back=self.back.key, data=self.stitch_task.fingerprint(),
                                point=point.to_dict(), k=self.exp.kernel_size, cfg=asdict(cfg), v=__version__)
        return cache_dir("variants", f"{self.exp.front}--{self.exp.back}-i{point.i}-j{point.j}-{key}")

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig.for_pair(get_anchor(self.exp.front).family, get_anchor(self.exp.back).family,
                                    seed=self.exp.seed, **overrides)

    def train(self, point: StitchPoint, cfg: TrainConfig, model: StitchedModel | None = None) -> TrainResult:
        """``model``: this point's model already built (least-squares fitted for a probe, say), so the fit,
        which takes minutes for wide stitches, is not done twice."""
        if model is not None and model.point != point:
            raise ValueError(f"the model given is stitched at {model.point}, not at {point}")
        run_dir = self.variant_dir(point, cfg)
        task = self.stitch_task
        feat_key = cache.key_of(front=self.front.key, i=point.i, data=task.train.fingerprint(),
                                     res=self.exp.resolution)
        feature_cache = cache_dir("front-features") / f"{self.exp.front}-i{point.i}-{feat_key}.npy"
        # A checkpoint overwrites the stitch weights, so least squares would be wasted work.
        if model is None:
            model = self.build(point, ls_init=cfg.ls_init and resumable_state(run_dir, cfg) is None)
        return train_stitched(model, task, self.front.spec, cfg, run_dir, feature_cache)

    def evaluate(self, model: torch.nn.Module, spec, latency_runs: int = 20, threads: int = 1,
                 strategy: str = "stitch") -> dict:
        """Validation and report (test) accuracy, params, FLOPs and host latency (batch 1)."""
        from restnet.anchors.stats import count_flops

        r = self.exp.resolution
        x = torch.zeros(1, 3, r, r)
        return {
            "val_accuracy": accuracy(model, self.task.loader(self.task.val, spec, 128), desc="val accuracy"),
            "accuracy": self.report_accuracy(model, spec),
            "split": self.task.report_name,
            "params": count_params(model),
            "flops": int(count_flops(model, x)[""]),
            "trainable_params": trainable_params(model, strategy) if isinstance(model, StitchedModel) else 0,
            "latency": host_latency_ms(model, x, runs=latency_runs, threads=threads),
        }


def with_overrides(exp: Experiment, **kw) -> Experiment:
    return replace(exp, **{k: v for k, v in kw.items() if v is not None})
