"""One experiment's stages wired together; the stages themselves are restnet.pipeline's other modules.

The Runner makes each input once, on first use (the task, the anchors, their architectures), and
hands every stage the inputs it takes, so a verb computes only what it needs: reading
``runner.front`` adapts (or loads) the front anchor, ``runner.cka()`` computes (or reads) the
matrix. Where an input is first made can matter: making an architecture reseeds torch's global
generator and a new stitch layer draws from it; the two places where that decides an order say so.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from restnet.anchors.blocks import BlockModel
from restnet.anchors.stats import ModelStats, describe
from restnet.constraints import Constraint
from restnet.cost import CostModel, build_cost_model
from restnet.data import InputSpec, Task
from restnet.pipeline import evaluation, stitch
from restnet.pipeline.anchors import architecture, task_anchor
from restnet.pipeline.cka import cka_key, cka_path, cka_record, cka_tensor, measure_cka
from restnet.pipeline.experiment import Experiment
from restnet.pipeline.records import cached_json
from restnet.pipeline.rerank import rerank_by_probe
from restnet.pipeline.task import experiment_task, stitch_subset
from restnet.selection import Selection, select_family, top_feasible
from restnet.stitching import StitchedModel, StitchPoint
from restnet.training.adapt import TaskAnchor
from restnet.training.stitch import TrainConfig, TrainResult


class Runner:
    """The stages of one Experiment, each input made once and on first use."""

    def __init__(self, exp: Experiment, log: Callable[[str], None] = print):
        self.exp = exp
        self.log = log
        self._costs: dict[tuple, CostModel] = {}

    # ---- inputs ----
    @cached_property
    def task(self) -> Task:
        return experiment_task(self.exp, self.log)

    @cached_property
    def stitch_task(self) -> Task:
        """The task with the stitches' training subset (the same val and test)."""
        return stitch_subset(self.task, self.exp.stitch_train_size, self.exp.seed)

    @cached_property
    def front(self) -> TaskAnchor:
        e = self.exp
        return task_anchor(e.front, e.front_weights, e.front_classes, e, self.task, self.log)

    @cached_property
    def back(self) -> TaskAnchor:
        e = self.exp
        return task_anchor(e.back, e.back_weights, e.back_classes, e, self.task, self.log)

    @cached_property
    def front_arch(self) -> BlockModel:
        return architecture(self.exp.front, self.task.num_classes, self.exp.resolution)

    @cached_property
    def back_arch(self) -> BlockModel:
        return architecture(self.exp.back, self.task.num_classes, self.exp.resolution)

    @cached_property
    def front_stats(self) -> ModelStats:
        return describe(self.front_arch, self.exp.resolution)

    @cached_property
    def back_stats(self) -> ModelStats:
        return describe(self.back_arch, self.exp.resolution)

    # ---- CKA ----
    def cka(self) -> dict:
        """The CKA matrix with block names and shapes (restnet.pipeline.cka); computed once per inputs."""
        key = cka_key(self.front.key, self.back.key, self.task, self.exp.cka, self.exp.seed)
        path = cka_path(self.exp.front, self.exp.back, key)

        def compute() -> dict:
            res, seconds = measure_cka(self.front, self.back, self.task, self.exp.cka, self.exp.seed)
            # The architectures after the matrix: making one reseeds torch's global generator, which what
            # runs next draws from.
            return cka_record(self.exp, res, seconds, self.task, self.front_stats, self.back_stats)

        return cached_json(path, compute)

    # ---- cost and selection ----
    def cost_model(self, metric: str, threads: int | None = None, latency_scale: float | None = None) -> CostModel:
        """One cost model per (metric, threads, scale) and run: latency is measured once, not per verb step."""
        key = (metric, threads, latency_scale)
        if key not in self._costs:
            self._costs[key] = build_cost_model(metric, self.front_arch, self.back_arch, self.front_stats,
                                                self.back_stats, self.exp.kernel_size, threads, latency_scale)
        return self._costs[key]

    def select(self, budgets: list[float], cm: CostModel, constraints: Sequence[Constraint] = ()) -> list[Selection]:
        """Algorithm 1 per budget under ``constraints`` (restnet.selection, restnet.constraints)."""
        return select_family(cka_tensor(self.cka()), cm, budgets, cm.unit, (self.exp.front, self.exp.back),
                             constraints, min(cm.anchor_costs()))

    def rerank(self, budget: float, cm: CostModel, k: int, n: int = 500, constraints: Sequence[Constraint] = (),
               among: Sequence[float] | None = None) -> list[tuple[Selection, float]]:
        """The top-k CKA candidates within budget (one of the budgets ``among``, for the rules), best first by
        their untrained stitch's accuracy on n validation images (restnet.pipeline.rerank)."""
        cands = top_feasible(cka_tensor(self.cka()), cm, budget, k, cm.unit, (self.exp.front, self.exp.back),
                             constraints, among, min(cm.anchor_costs()))
        return rerank_by_probe(cands, self.build, self.task, self.front.spec, n, self.exp.seed)

    # ---- stitched variants ----
    def build(self, point: StitchPoint, ls_init: bool = True) -> StitchedModel:
        # The layer before the anchors: its random init draws from torch's global generator, which making
        # (or loading) an anchor moves.
        layer = stitch.stitch_layer(self.cost_model("params"), point, self.exp.kernel_size)
        return stitch.stitched(layer, point, self.front, self.back, self.task, self.exp.seed, ls_init)

    def variant_dir(self, point: StitchPoint, cfg: TrainConfig) -> Path:
        e = self.exp
        return stitch.variant_dir(e.front, e.back, self.front.key, self.back.key, self.stitch_task, point,
                                  e.kernel_size, cfg)

    def train_config(self, **overrides) -> TrainConfig:
        return stitch.train_config(self.exp.front, self.exp.back, self.exp.seed, **overrides)

    def train(self, point: StitchPoint, cfg: TrainConfig, model: StitchedModel | None = None) -> TrainResult:
        """``model``: this point's model already built (least-squares fitted for a probe, say), so the fit,
        which takes minutes for wide stitches, is not done twice."""
        stitch.check_model(model, point)
        return stitch.train(cfg, run_dir=self.variant_dir(point, cfg),
                            features=stitch.feature_cache(self.exp.front, self.front.key, point,
                                                          self.stitch_task.train, self.exp.resolution),
                            task=self.stitch_task, spec=self.front.spec,
                            build=lambda ls_init: self.build(point, ls_init), model=model)

    # ---- evaluation ----
    def report_accuracy(self, model: torch.nn.Module, spec: InputSpec, digest: str | None = None) -> float:
        """Top-1 on the report split (test where there is one); cached by the weights' digest."""
        return evaluation.report_accuracy(model, spec, self.task, self.exp.resolution, digest)

    def val_correct(self, model: torch.nn.Module, spec: InputSpec, digest: str | None = None) -> np.ndarray:
        """Per validation image, whether the model's top-1 is right; cached by the weights' digest."""
        return evaluation.val_correct(model, spec, self.task, self.exp.resolution, digest)

    def evaluate(self, model: torch.nn.Module, spec: InputSpec, latency_runs: int = 20, threads: int = 1,
                 strategy: str = "stitch") -> dict:
        """Validation and report (test) accuracy, params, FLOPs and host latency (batch 1)."""
        return evaluation.evaluate(model, spec, self.task, self.exp.resolution, latency_runs, threads, strategy)
