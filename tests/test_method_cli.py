"""The method verbs end to end on small random-weight anchors (real timm models, real data)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import TINY, restnet_cache

from restnet.cli import main


# One pair per kind of stitch. The CNN pair is resnet34 -> resnet18: vgg11_bn (133 M parameters) made the same
# stages take 72 s instead of 13 s; its blocks and its stitch are checked in test_blocks and test_stitching.
PAIRS = {
    "cnn-cnn": (["--front", "resnet34", "--back", "resnet18"], ["--budget", "1.5e7", "--budget", "2e7"]),
    "vit-vit": (["--front", "deit_small_patch16_224", "--back", "deit_tiny_patch16_224"], ["--budgets-between", "2"]),
    "cnn-vit": (["--front", "resnet18", "--back", "deit_tiny_patch16_224"], ["--budget", "1.2e7"]),
}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    with restnet_cache(tmp_path_factory.mktemp("cache")) as path:
        yield path


def _run(args):
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.mark.slow
@pytest.mark.parametrize("pair", list(PAIRS))
def test_cka_select_train_evaluate(pair, shared_cache):
    anchors, budgets = PAIRS[pair]
    out = _run(["cka", *anchors, *TINY])
    assert "top 5 stitch pairs" in out
    cka_files = list((shared_cache / "cka").glob("*.json"))
    assert cka_files
    sel = json.loads(_run(["select", *anchors, *TINY, *budgets, "--json"]))
    assert sel and all(s["cost"] <= s["budget"] for s in sel)
    _run(["train", *anchors, *TINY, *budgets, "--epochs", "1"])
    rows = json.loads(_run(["evaluate", *anchors, *TINY, *budgets, "--epochs", "1", "--json"]))
    assert len(rows) == len(sel) + 2
    variants = [r for r in rows if r["point"] != "anchor"]
    for v in variants:
        assert 0.0 <= v["accuracy"] <= 1.0 and v["trainable_params"] > 0 and v["flops"] > 0
        assert v["trainable_params"] < v["params"]


def test_cka_reuses_the_cached_matrix(shared_cache):
    anchors = ["--front", "resnet18", "--back", "resnet18"]
    _run(["cka", *anchors, *TINY])
    files = sorted((shared_cache / "cka").glob("resnet18--resnet18-*.json"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    saved = json.loads(files[0].read_text())
    assert saved["estimator"] == "hsic" and len(saved["front_blocks"]) == 8 and "shape" in saved["front_blocks"][0]
    _run(["cka", *anchors, *TINY])
    assert files[0].stat().st_mtime_ns == stamp
    _run(["cka", *anchors, *TINY, "--cka-estimator", "unbiased"])
    assert len(list((shared_cache / "cka").glob("resnet18--resnet18-*.json"))) == 2


def test_rerank_reports_beside_the_cka_pick(shared_cache):
    res = CliRunner().invoke(main, ["select", "--front", "resnet18", "--back", "resnet18", *TINY,
                                    "--budget", "2e7", "--rerank", "3", "--kernel-size", "1"])
    assert res.exit_code == 0, res.output
    assert "CKA pick" in res.stdout and "rerank pick" in res.stdout and "%" in res.stdout


def test_infeasible_budget_is_one_clear_error(shared_cache):
    res = CliRunner().invoke(main, ["select", "--front", "resnet18", "--back", "resnet18", *TINY, "--budget", "1000"])
    assert res.exit_code != 0
    assert "cheapest possible variant is resnet18[" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_killed_training_resumes_from_last_checkpoint(tmp_path):
    env = dict(os.environ, RESTNET_CACHE=str(tmp_path / "cache"))
    args = [sys.executable, "-m", "restnet.cli", "train", "--front", "resnet18", "--back", "resnet18", *TINY,
            "--budget", "2e7", "--epochs", "12", "--batch-size", "32", "--kernel-size", "1"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "cache").glob("variants/*/checkpoint.pt"))
        if found:
            ckpt = found[0]
            break
        time.sleep(0.05)
    assert ckpt is not None, "no checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    import torch

    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= done < 12
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"resumed after epoch {done}" in out.stdout
    final = torch.load(ckpt, weights_only=True)
    assert final["epoch"] == 12 and [h["epoch"] for h in final["history"]] == list(range(1, 13))
    assert not list(Path(ckpt.parent).glob(".*.tmp"))
