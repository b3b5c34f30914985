"""Shipped task anchors: loaded only for the experiment they were made for, checked before use."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from helpers import TINY

from restnet.anchors import shipped
from restnet.anchors.weights import WeightsError
from restnet.cli import main
from restnet.pipeline import Experiment, Runner
from restnet.training.adapt import AdaptConfig


@pytest.fixture
def made(tmp_path, cache, monkeypatch):
    """A tiny lite0 written by `restnet adapt` into a folder that stands in for data/anchors/."""
    out = tmp_path / "anchors"
    res = CliRunner().invoke(main, ["adapt", *TINY, "--only", "back", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    monkeypatch.setattr(shipped, "SHIPPED_DIR", out)
    return out


def _runner(**over) -> Runner:
    exp = Experiment(train_size=128, val_size=48, test_size=48, resolution=32, adapt=AdaptConfig(method="probe"))
    return Runner(replace(exp, **over), log=lambda m: None)


def test_the_pack_loads_the_shipped_anchor_made_for_its_experiment(made):
    rec = json.loads((made / "tf_efficientnet_lite0-cifar10-32px.json").read_text())
    back = _runner().back
    assert back.source == f"shipped:{rec['file']}" and back.curve == rec["curve"] and back.stopped == rec["stopped"]
    state = shipped.find("tf_efficientnet_lite0", "cifar10", 32, rec["val_fingerprint"]).verified()
    from safetensors.torch import load_file
    for k, v in load_file(str(state)).items():
        assert torch.equal(back.net.state_dict()[k].to(v.dtype), v), k


@pytest.mark.parametrize("over", [{"seed": 1}, {"val_size": 40}, {"resolution": 48}, {"shipped": False}])
def test_another_validation_split_resolution_or_opt_out_adapts_instead(made, over):
    """With another carve the validation images could be ones the shipped anchor trained on."""
    assert not _runner(**over).back.source.startswith("shipped:")


def test_a_tampered_file_is_refused_naming_both_checksums(made):
    rec = json.loads((made / "tf_efficientnet_lite0-cifar10-32px.json").read_text())
    path = made / rec["file"]
    path.write_bytes(path.read_bytes()[:-2] + b"\0\0")
    with pytest.raises(WeightsError, match=rf"sha256 .* but its record says {rec['size']} / {rec['sha256'][:16]}"):
        _runner().back


def test_a_record_cannot_point_outside_its_folder(made, tmp_path):
    rec_path = made / "tf_efficientnet_lite0-cifar10-32px.json"
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps(rec | {"file": f"../../{rec['file']}"}))
    assert shipped.available()[0].path == made / rec["file"]


def test_every_shipped_anchor_matches_its_record_and_the_default_experiment():
    """The files in data/anchors/ are intact, and the default experiment (CLI defaults) finds both anchors."""
    found = shipped.available()
    assert {s.anchor for s in found} >= {Experiment().front, Experiment().back}
    for s in found:
        s.verified()
        assert s.record["command"].startswith("restnet adapt ") and s.record["stopped"] == "converged"
    r = Runner(Experiment(), log=lambda m: None)
    for name in (r.exp.front, r.exp.back):
        assert shipped.find(name, r.exp.data, r.exp.resolution, r.task.val.fingerprint()) is not None, name
