"""`restnet train` under `torchrun --nproc-per-node 2` (gloo, CPU) gives what one process gives.

The same command runs twice on the tiny experiment (real timm architectures, random weights, real
CIFAR-10 images), once in this process and once as two ranks, each run with its own cache: the
anchors' adaptation (a linear probe), the CKA matrix and every step's training loss must agree up to
floating-point noise. The global batch (45) splits unevenly over two ranks (23 + 22) and the last
batch of an epoch is short (38 of 128 images), so the loss scaling and the sharding are both tested.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import TINY

from restnet.cli import main
from restnet.timing import torch_threads

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", *TINY, "--cka-repeats", "3", "--budget", "4.2e6", "--epochs", "2", "--batch-size", "45",
        "--lr", "0.2"]  # a high rate: a wrong gradient (e.g. not scaled for DDP's average) shows within 6 steps


def _torchrun(cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RESTNET_CACHE": str(cache), "RESTNET_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "restnet.cli", *ARGS]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _one(cache: Path, pattern: str) -> Path:
    found = sorted(cache.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {cache}, found {found}"
    return found[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    single, multi = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("torchrun")
    # One thread, as each torchrun worker has (OMP_NUM_THREADS=1): the same kernels, and no idle-spinning
    # OpenMP threads on a busy machine (two threads once made this run 10x slower than the two ranks).
    with pytest.MonkeyPatch.context() as mp, torch_threads(1):
        mp.setenv("RESTNET_CACHE", str(single))
        res = CliRunner().invoke(main, ARGS, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    proc = _torchrun(multi)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert proc.stdout.count("trained ") == 1, proc.stdout  # rank 0 reports, rank 1 stays silent
    return single, multi


def test_cka_matrix_equals_one_process(runs):
    one, two = (json.loads(_one(c, "cka/*.json").read_text()) for c in runs)
    assert (one["repeats"], two["repeats"]) == (3, 3)  # all three batches counted: two on rank 0, one on rank 1
    diff = (torch.tensor(one["matrix"]) - torch.tensor(two["matrix"])).abs().max().item()
    assert diff <= 1e-6, f"CKA differs by {diff:.2e} between one process and two ranks"


def test_every_training_step_loss_equals_one_process(runs):
    one, two = (json.loads(_one(c, "variants/*/train-log.json").read_text()) for c in runs)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    a = [x for e in one["history"] for x in e["step_losses"]]
    b = [x for e in two["history"] for x in e["step_losses"]]
    assert len(a) == len(b) == 6  # 2 epochs x ceil(128 / 45)
    diff = max(abs(x - y) for x, y in zip(a, b))
    assert diff <= 1e-4, f"per-step loss differs by {diff:.2e}: one process {a}, two ranks {b}"
    assert a[0] != a[-1]  # it trained


def test_adapted_anchors_equal_one_process(runs):
    for name in ("tf_efficientnet_lite0", "tf_efficientnet_lite2"):
        one, two = (torch.load(_one(c, f"task-anchors/{name}-*.pt"), weights_only=True)["state_dict"]
                    for c in runs)
        diff = max((one[k].double() - two[k].double()).abs().max().item() for k in one if one[k].is_floating_point())
        assert diff <= 1e-5, f"{name}: adapted weights differ by {diff:.2e}"
