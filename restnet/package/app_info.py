"""What a package's files tell an app about themselves (TFLite metadata, restnet.export.tflite_metadata).

Built from the same facts the manifest states (task classes, each variant's input spec, PIXEL_SCALE), so
that a file's labels and normalisation cannot disagree with the package it ships in.
"""
from __future__ import annotations

from restnet.data import InputSpec, Task
from restnet.input_spec import PIXEL_SCALE
from restnet.export.tflite_metadata import ClassifierInfo


def _input_text(spec: InputSpec) -> str:
    r = spec.resolution
    return (f"Input: an RGB image resized to {r}x{r} ({spec.interpolation} on uint8 pixels, antialiased when "
            "shrinking, as Pillow's Image.resize), normalised as this metadata says. Scores are logits: apply "
            "softmax for probabilities.")


def classifier_info(vid: str, spec: InputSpec, task: Task, profile: str) -> ClassifierInfo:
    """One variant's file."""
    text = (f"restnet package {profile}, variant {vid}: classifies an image into {task.num_classes} {task.name} "
            f"classes (labels.txt packed in this file, score k = line k). {_input_text(spec)}")
    return ClassifierInfo.of(vid, text, task.classes, PIXEL_SCALE, spec.mean, spec.std)


def family_info(ids: list[str], specs: list[InputSpec], task: Task, profile: str) -> ClassifierInfo:
    """A file holding the family, one signature per variant (``--bundle shared``). TFLite metadata describes
    the first subgraph (the cheapest variant), and MediaPipe's ImageClassifier opens single-subgraph files
    only, so this metadata serves readers of labels and normalisation; where the variants' inputs differ,
    the description says that the figures are the first signature's."""
    same = len(set(specs)) == 1
    which = "" if same else (f" The normalisation is {ids[0]}'s; the other signatures take other inputs: see "
                             "each variant's input in manifest.json.")
    text = (f"restnet package {profile}: the whole family as one signature per variant ({', '.join(ids)}), "
            f"each classifying an image into {task.num_classes} {task.name} classes (labels.txt packed in this "
            f"file, score k = line k). {_input_text(specs[0])}{which} An image classifier that opens one "
            "subgraph (MediaPipe's) needs the per-variant files (--bundle files).")
    return ClassifierInfo.of(f"{profile}.family", text, task.classes, PIXEL_SCALE, specs[0].mean, specs[0].std)
