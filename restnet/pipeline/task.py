"""The experiment's data: the task every stage reads, and the smaller set the stitches train on."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from restnet.data import Task, load_task
from restnet.data.image_folder import describe_skipped
from restnet.pipeline.experiment import Experiment


def experiment_task(exp: Experiment, log: Callable[[str], None]) -> Task:
    """The seeded train/val/test splits of ``exp.data``; an ImageFolder's unreadable files are named in the log."""
    task = load_task(exp.data, exp.train_size, exp.val_size, exp.seed, exp.resolution, test_size=exp.test_size)
    if task.skipped:
        log(describe_skipped(task.skipped))
    return task


def stitch_subset(task: Task, size: int | None, seed: int) -> Task:
    """The task with the stitches' training subset of ``size`` images (the same val and test): a stitch
    has thousands of parameters, an anchor millions."""
    return replace(task, train=task.train.subset(size, seed + 3))
