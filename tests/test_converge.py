"""Adaptation until converged: the plateau rule, its limits, the curve, and resuming an interrupted run."""
from __future__ import annotations

import pytest
import torch

from restnet.commands.method import adapt_epochs
from restnet.data import load_task
from restnet.training import converge
from restnet.training.adapt import AdaptConfig, adapt_anchor


def test_plateau_drops_the_rate_once_then_stops():
    rule = converge.Plateau(min_gain=0.003, max_epochs=100)
    verdicts = [rule.update(a, e, 0.0) for e, a in enumerate([0.50, 0.60, 0.605, 0.62, 0.621], start=1)]
    # +10 points, then +0.5 (continue), then +1.5, then +0.1: the first plateau drops the rate ...
    assert verdicts == [converge.CONTINUE, converge.CONTINUE, converge.CONTINUE, converge.CONTINUE, converge.DROP]
    assert rule.update(0.622, 6, 0.0) == converge.CONVERGED  # ... the second ends it
    assert rule.best == pytest.approx(0.622) and rule.best_round == 5
    assert rule.gains[0] is None and rule.gains[1] == pytest.approx(0.10)


def test_plateau_counts_a_worse_round_as_no_gain_and_keeps_the_best():
    rule = converge.Plateau(min_gain=0.003, max_epochs=100)
    assert rule.update(0.70, 1, 0.0) == converge.CONTINUE
    assert rule.update(0.65, 2, 0.0) == converge.DROP
    assert rule.update(0.69, 3, 0.0) == converge.CONVERGED  # still below the best: no gain
    assert rule.best_round == 0


def test_plateau_limits():
    assert converge.Plateau(0.003, max_epochs=4).update(0.5, 3, 0.0, next_round_epochs=2) == converge.EPOCH_LIMIT
    assert converge.Plateau(0.003, max_epochs=4).update(0.5, 2, 0.0, next_round_epochs=2) == converge.CONTINUE
    assert converge.Plateau(0.003, 100, max_seconds=60).update(0.5, 1, 61.0) == converge.TIME_LIMIT


def test_small_data_gets_rounds_of_several_epochs():
    assert converge.epochs_per_round(steps_per_epoch=30, round_steps=300) == 10
    assert converge.epochs_per_round(steps_per_epoch=469, round_steps=300) == 1


def test_fixed_epochs_keep_their_cache_key():
    """Anchors adapted for a fixed number of epochs are found in the cache as before the convergence settings."""
    key = AdaptConfig().cache_key()
    assert key == {"method": "finetune", "epochs": 1, "lr": 1e-3, "weight_decay": 0.05, "batch_size": 64, "seed": 0}
    assert "max_epochs" in AdaptConfig(epochs=None).cache_key()


def test_the_cli_default_is_until_converged():
    assert adapt_epochs(None) is None and adapt_epochs("auto") is None and adapt_epochs(3) == 3


def _adapt(cfg, log=lambda m: None):
    task = load_task("cifar10", train_size=64, val_size=32, test_size=32, resolution=32)
    return adapt_anchor("tf_efficientnet_lite0", task, 32, cfg, pretrained=False, log=log)


def _weights(anchor):
    return torch.cat([p.detach().flatten() for p in anchor.model.parameters()])


CFG = AdaptConfig(method="probe", epochs=None, batch_size=32, round_steps=2, max_epochs=4, lr=0.05)


def test_until_converged_records_its_curve_and_keeps_the_best_round(cache):
    lines = []
    a = _adapt(CFG, lines.append)
    assert a.stopped in (converge.CONVERGED, converge.EPOCH_LIMIT)
    assert [c["epochs"] for c in a.curve] == list(range(1, len(a.curve) + 1))
    assert a.accuracy == pytest.approx(max(c["val_accuracy"] for c in a.curve))  # the best round's weights
    assert sum("adapt tf_efficientnet_lite0: epoch" in m for m in lines) == len(a.curve)
    again = _adapt(CFG)  # from the cache, curve included
    assert again.curve == a.curve and again.stopped == a.stopped and torch.equal(_weights(again), _weights(a))


def test_an_interrupted_adaptation_resumes_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTNET_CACHE", str(tmp_path / "whole"))
    whole = _adapt(CFG)
    assert len(whole.curve) >= 3, "the interruption must leave rounds to resume"
    monkeypatch.setenv("RESTNET_CACHE", str(tmp_path / "cut"))
    real, calls = converge.Plateau.update, []

    def interrupted(self, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # after the first round's checkpoint, inside the second round
        return real(self, *args, **kw)

    monkeypatch.setattr(converge.Plateau, "update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _adapt(CFG)
    monkeypatch.setattr(converge.Plateau, "update", real)
    lines = []
    resumed = _adapt(CFG, lines.append)
    assert any("resuming after epoch 1" in m for m in lines)
    assert not list((tmp_path / "cut").rglob("*.partial.pt*")), "the finished run left its resume point behind"
    assert resumed.curve[0] == whole.curve[0] | {"seconds": resumed.curve[0]["seconds"]}
    assert [c["val_accuracy"] for c in resumed.curve] == [c["val_accuracy"] for c in whole.curve]
    assert torch.equal(_weights(resumed), _weights(whole))


def test_restnet_adapt_writes_files_the_pack_loads_as_task_trained(tmp_path, cache):
    """`restnet adapt` writes fp16 safetensors with a checksummed record; --front-weights takes the file as is."""
    import json

    from click.testing import CliRunner
    from helpers import TINY

    from restnet.anchors.weights import load_weights_file
    from restnet.cli import main
    from toolkit.package import sha256_of

    out = tmp_path / "anchors"
    res = CliRunner().invoke(main, ["adapt", *TINY, "--only", "back", "--adapt-epochs", "auto",
                                    "--adapt-max-epochs", "2", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "tf_efficientnet_lite0-cifar10-32px.json").read_text())
    path = out / rec["file"]
    assert rec["sha256"] == sha256_of(path) and rec["size"] == path.stat().st_size
    # 128 images are 2 steps an epoch: a round would be 150 epochs, the limit makes it 2
    assert rec["stopped"] == converge.EPOCH_LIMIT and [c["epochs"] for c in rec["curve"]] == [2]
    assert all(v.dtype == torch.float16 for v in load_weights_file(path).values() if v.is_floating_point())
    assert not (out / "tf_efficientnet_lite2-cifar10-32px.json").exists()  # --only back
    assert sorted(p.name for p in out.iterdir()) == sorted([rec["file"], "tf_efficientnet_lite0-cifar10-32px.json"])
    evaluated = CliRunner().invoke(main, ["evaluate", *TINY, "--back-weights", str(path), "--back-classes", "10",
                                          "--budgets-between", "1", "--epochs", "0", "--json"],
                                   catch_exceptions=False)
    assert evaluated.exit_code == 0, evaluated.output
    back = [r for r in json.loads(evaluated.stdout) if r["name"] == "tf_efficientnet_lite0"][0]
    assert abs(back["val_accuracy"] - rec["val_accuracy"]) <= 2 / 48  # fp16 rounding may flip an image or two


def test_the_curve_line_reports_the_last_round_against_the_best_before_it():
    curve = [{"epochs": e, "val_accuracy": a} for e, a in [(14, 0.9666), (28, 0.9777), (42, 0.9889), (56, 0.9833),
                                                             (70, 0.9889)]]
    line = converge.describe_curve(curve, converge.CONVERGED)
    assert "70: 98.89%" in line and "the last round +0.00 points over the best before it" in line
