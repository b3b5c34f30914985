"""MediaPipe's ImageClassifier against the toolkit on a task-trained anchor's .tflite, CIFAR-10 test JPEGs.

The anchor is a task-trained state dict: by default the converged anchor restnet ships for the default
experiment (data/anchors/, see data/README.md), or any file ``restnet adapt --out`` writes; it is exported as the pack exports a variant (litert-torch, NHWC, TFLite metadata; and
an int8 file, post-training quantised, with ``--int8``). Each image is then classified three ways: by the
toolkit (manifest preprocessing: Pillow resize to the input size, scale, mean, std), by MediaPipe given
the decoded image (it resizes to the input size itself), and by MediaPipe given the image already resized
as the manifest says. Prints top-1 agreement with the toolkit and each one's accuracy against the labels.

  python benchmarks/mediapipe_parity.py [--name tf_efficientnet_lite0] [--checkpoint FILE] [--resolution 64] \
      [--images 10000] [--int8] [--json out.json]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit

from restnet.anchors.shipped import SHIPPED_DIR
from restnet.anchors.weights import load_state, load_weights_file
from restnet.export import ClassifierInfo, export_verified
from restnet.firmware_parity import cifar_test_jpegs
from restnet.training.adapt import input_spec, timm_for_task
from toolkit import runtime
from toolkit.app_check import mediapipe_classifier, mediapipe_top1
from toolkit.preprocess import as_uint8_rgb, preprocess, resize_uint8

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def export(name: str, checkpoint: Path, resolution: int, out: Path, int8: bool, calibration: list[np.ndarray]):
    """(spec, {dtype: path}) of the anchor's fp32 (and int8) .tflite with the pack's metadata."""
    from restnet.data import InputSpec, to_model_input
    from restnet.export.int8 import get_route, quantize
    from restnet.export.int8_finetune import Finetune
    from restnet.export.int8_recipe import Recipe
    from restnet.export.tflite_metadata import write

    spec: InputSpec = input_spec(name, resolution)
    net = timm_for_task(name, len(CLASSES), resolution)
    load_state(net, load_weights_file(checkpoint), str(checkpoint))
    net.eval()
    info = ClassifierInfo.of(name, f"{name} on CIFAR-10", CLASSES, 1 / 255, spec.mean, spec.std)
    x = to_model_input(torch.from_numpy(np.stack(calibration)).permute(0, 3, 1, 2), spec)
    files = {"fp32": out / "fp32.tflite"}
    export_verified(net, x[:1], "tflite", files["fp32"], [x], info=info)
    if int8:
        route = get_route("tflite")
        files["int8"] = out / "int8.tflite"
        route.export(quantize(route, net, x[:1], [x], Recipe(finetune=Finetune(images=0)), spec=spec), x[:1],
                     files["int8"])
        write(files["int8"], info)
    return spec, files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="task-trained weights (default: the shipped converged anchor for --name and --resolution)")
    ap.add_argument("--name", default="tf_efficientnet_lite0")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--json", dest="out")
    a = ap.parse_args()
    a.checkpoint = a.checkpoint or SHIPPED_DIR / f"{a.name}-cifar10-{a.resolution}px.safetensors"
    if not a.checkpoint.is_file():
        ap.error(f"{a.checkpoint}: no such weights file; pass --checkpoint (e.g. a file `restnet adapt --out` wrote)")
    tmp = Path(tempfile.mkdtemp())
    paths = cifar_test_jpegs(tmp / "cifar", a.images)
    labels = np.array([CLASSES.index(p.name.split("_")[0]) for p in paths])
    images = [as_uint8_rgb(p) for p in paths]
    spec, files = export(a.name, a.checkpoint, a.resolution, tmp, a.int8, images[::max(1, len(images) // 256)])
    manifest_spec = {"resize": {"size": [a.resolution] * 2, "interpolation": spec.interpolation, "output": "uint8"},
                     "scale": 1 / 255, "mean": list(spec.mean), "std": list(spec.std), "layout": "NHWC"}
    rows = []
    for dtype, path in files.items():
        run, _ = runtime.load(path, "tflite")
        t = time.perf_counter()
        mine = np.array([int(run(preprocess(im, manifest_spec))[0].argmax()) for im in images])
        with mediapipe_classifier(path) as clf:
            raw = np.array([mediapipe_top1(clf, im)[0] for im in images])
            sized = np.array([mediapipe_top1(clf, resize_uint8(im, a.resolution, a.resolution, spec.interpolation))[0]
                              for im in images])
        rows.append({"file": dtype, "MB": path.stat().st_size / 2**20, "images": len(images),
                     "toolkit top-1": float((mine == labels).mean()),
                     "MediaPipe (own resize) top-1": float((raw == labels).mean()),
                     "agree (own resize)": float((raw == mine).mean()),
                     "MediaPipe (manifest resize) top-1": float((sized == labels).mean()),
                     "agree (manifest resize)": float((sized == mine).mean()), "seconds": time.perf_counter() - t})
    emit("mediapipe_parity", rows, {"checkpoint": str(a.checkpoint), "resolution": a.resolution}, a.out)


if __name__ == "__main__":
    main()
