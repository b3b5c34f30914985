"""TFLite metadata (restnet.export.tflite_metadata): what MediaPipe's writer puts into a .tflite, made
reproducible, and the stand-in for the compiled version helper its wheel lacks, checked against the rule of
mediapipe/tasks/cc/metadata/metadata_version.cc member by member."""
from __future__ import annotations

import zipfile

import flatbuffers
import numpy as np
import pytest
import torch
from torch import nn

from restnet.export import ClassifierInfo, export_verified, tflite, tflite_metadata
from restnet.export.tflite_metadata_version import minimum_parser_version

LABELS = ["cat", "dog", "ship"]


def _buffer(**subgraph) -> bytes:
    """A metadata flatbuffer whose one subgraph has the given members (object API of MediaPipe's schema)."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    sg = fb.SubGraphMetadataT()
    sg.inputTensorMetadata, sg.outputTensorMetadata = [fb.TensorMetadataT()], [fb.TensorMetadataT()]
    for k, v in subgraph.items():
        setattr(sg, k, v)
    m = fb.ModelMetadataT()
    m.subgraphMetadata = [sg]
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), b"M001")
    return bytes(b.Output())


def _file(kind: str, version: str | None = None):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    f = fb.AssociatedFileT()
    f.name, f.type, f.version = "x.txt", getattr(fb.AssociatedFileType, kind), version
    return f


def _tensor(**fields):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    t = fb.TensorMetadataT()
    for k, v in fields.items():
        setattr(t, k, v)
    return t


def _unit(kind: str):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    u = fb.ProcessUnitT()
    u.optionsType = getattr(fb.ProcessUnitOptions, kind)
    u.options = getattr(fb, f"{kind}T")()
    return u


def _audio_content():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    c = fb.ContentT()
    c.contentPropertiesType, c.contentProperties = fb.ContentProperties.AudioProperties, fb.AudioPropertiesT()
    return c


@pytest.mark.parametrize("members, want", [
    ({}, "1.0.0"),
    ({"associatedFiles": [_file("TENSOR_AXIS_LABELS")]}, "1.0.0"),
    ({"associatedFiles": [_file("VOCABULARY")]}, "1.0.1"),
    ({"inputProcessUnits": [_unit("NormalizationOptions")]}, "1.1.0"),
    ({"outputProcessUnits": []}, "1.1.0"),  # present though empty: the C++ tests the vector, not its length
    ({"inputProcessUnits": [_unit("BertTokenizerOptions")]}, "1.1.0"),
    ({"outputTensorGroups": []}, "1.2.0"),
    ({"inputProcessUnits": [_unit("RegexTokenizerOptions")]}, "1.2.1"),
    ({"outputTensorMetadata": [_tensor(content=_audio_content())]}, "1.3.0"),
    ({"associatedFiles": [_file("SCANN_INDEX_FILE")]}, "1.4.0"),
    ({"outputTensorMetadata": [_tensor(associatedFiles=[_file("TENSOR_AXIS_LABELS", "v2")])]}, "1.4.1"),
    ({"inputTensorMetadata": [_tensor(processUnits=[_unit("RegexTokenizerOptions")])]}, "1.2.1"),
    ({"customMetadata": [], "associatedFiles": [_file("VOCABULARY")]}, "1.5.0"),
])
def test_minimum_parser_version_follows_the_schema_members(members, want):
    assert minimum_parser_version(_buffer(**members)) == want


def test_minimum_parser_version_refuses_what_is_not_metadata():
    with pytest.raises(ValueError, match="not a TFLite model metadata buffer"):
        minimum_parser_version(b"\0" * 64)


@pytest.mark.parametrize("args, needle", [
    (dict(labels=[]), "labels must be non-empty"),
    (dict(labels=["a", "b\nc"]), "single-line"),
    (dict(std=[0.5, 0.0, 0.5]), "positive stds"),
    (dict(mean=[0.5, 0.5]), "1 or 3 means"),
    (dict(scale=0.0), "positive scale"),
])
def test_classifier_info_refuses_bad_figures(args, needle):
    base = dict(name="v", description="d", labels=LABELS, scale=1 / 255, mean=[0.5] * 3, std=[0.25] * 3)
    with pytest.raises(ValueError, match=needle):
        ClassifierInfo.of(**{**base, **args})


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, len(LABELS))).eval()


def test_a_tflite_export_carries_labels_normalisation_and_description(model, tmp_path):
    """The written file holds what ImageClassifier reads, in pixel units (x = (p/255 - 0.5) / 0.25 is
    (p - 127.5) / 63.75), takes N x H x W x C, and two exports of the same weights are the same bytes (the
    zip of associated files is stamped with a fixed date, not the writing time)."""
    info = ClassifierInfo.of("v1", "a test classifier", LABELS, 1 / 255, [0.5] * 3, [0.25] * 3)
    x = torch.randn(1, 3, 16, 16)
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    export_verified(model, x, "tflite", a, [torch.randn(8, 3, 16, 16)], info=info)
    export_verified(model, x, "tflite", b, [x], info=info)
    assert a.read_bytes() == b.read_bytes()
    md = tflite_metadata.read(a)
    assert (md["name"], md["description"], md["min_parser_version"]) == ("v1", "a test classifier", "1.0.0")
    (sg,) = md["subgraph_metadata"]
    (inp,), (out,) = sg["input_tensor_metadata"], sg["output_tensor_metadata"]
    (unit,) = inp["process_units"]
    assert unit["options"]["mean"] == pytest.approx([127.5] * 3)
    assert unit["options"]["std"] == pytest.approx([63.75] * 3)
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    assert out["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    with zipfile.ZipFile(a) as z:
        assert z.read("labels.txt").decode().splitlines() == LABELS
        assert {i.date_time for i in z.infolist()} == {tflite_metadata.ZIP_DATE}
    from ai_edge_litert.interpreter import Interpreter

    (d,) = Interpreter(model_path=str(a)).get_input_details()
    assert list(d["shape"]) == [1, 16, 16, 3] and d["dtype"] == np.float32


def test_a_tflite_export_without_its_metadata_is_refused_before_converting(model, tmp_path):
    with pytest.raises(ValueError, match="writes classifier metadata into its files: pass the ClassifierInfo"):
        export_verified(model, torch.randn(1, 3, 16, 16), "tflite", tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()


def test_mediapipe_needs_the_metadata_and_the_nhwc_input(model, tmp_path):
    """Why the pack writes both: ImageClassifier refuses a float file without normalisation metadata and a
    file that takes N x C x H x W, and runs the file the pack writes, giving the model's logits as scores."""
    from toolkit.app_check import mediapipe_classifier, mediapipe_top1

    x = torch.randn(1, 3, 16, 16)
    bare = tmp_path / "bare.tflite"
    tflite.export(model, x, bare)
    with pytest.raises(Exception, match="NormalizationOptions"):
        mediapipe_classifier(bare)
    info = ClassifierInfo.of("v1", "d", LABELS, 1 / 255, [0.5] * 3, [0.25] * 3)
    nchw = tmp_path / "nchw.tflite"
    tflite.export_part(model, x, nchw)
    tflite_metadata.write(nchw, info)
    with pytest.raises(Exception, match="depth = 3 or 4"):
        mediapipe_classifier(nchw)
    good = tmp_path / "good.tflite"
    export_verified(model, x, "tflite", good, [x], info=info)
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    with mediapipe_classifier(good) as classifier:
        k, name, scores = mediapipe_top1(classifier, image)
    want = model(torch.from_numpy((image / 255.0 - 0.5) / 0.25).float().permute(2, 0, 1)[None])[0].detach().numpy()
    assert k == int(want.argmax()) and name == LABELS[k]
    np.testing.assert_allclose(scores, want, atol=1e-4)


def test_a_fully_integer_file_gets_metadata_and_is_named_as_not_for_mediapipe(model, tmp_path):
    """int8 input and output tensors (profile ``int8.float_parts: []``): the writer still describes the file,
    the int8 input stays int8 and channels last, and toolkit.app_check says why ImageClassifier cannot take it."""
    from ai_edge_litert.interpreter import Interpreter

    from restnet.export.int8 import get_route
    from restnet.export.int8_finetune import Finetune
    from restnet.export.int8_recipe import Recipe
    from toolkit.app_check import why_not

    x = torch.rand(16, 3, 16, 16) * 2 - 1
    route, path = get_route("tflite"), tmp_path / "m.int8.tflite"
    route.export(route.quantize(model, x[:1], [x], Recipe(fp32=(), finetune=Finetune(images=0))), x[:1], path)
    tflite_metadata.write(path, ClassifierInfo.of("q", "fully integer", LABELS, 1 / 255, [0.5] * 3, [0.25] * 3))
    assert tflite_metadata.read(path)["name"] == "q"
    (d,) = Interpreter(model_path=str(path)).get_input_details()
    assert d["dtype"] == np.int8 and list(d["shape"]) == [1, 16, 16, 3]
    assert "int8 input tensor" in why_not({}, d["dtype"]) and why_not({}, np.float32) is None
    assert "single-subgraph" in why_not({"method": "m"}, np.float32)
