"""python -m toolkit.app_check PACKAGE IMAGE...: a package's .tflite files in MediaPipe's ImageClassifier, top-1
against the toolkit's own runner.

What an app team does with a file (MediaPipe Tasks; its Python API stands in for Android's, the same C++
underneath): hand it the file and a decoded RGB image, nothing else. The classifier then reads everything
it needs from the file's TFLite metadata (input normalisation, labels; restnet.export.tflite_metadata),
resizes the image to the input tensor with its own resampling, and returns scored categories. The
toolkit runs the same file with the manifest's preprocessing (toolkit.preprocess). Per file: top-1
agreement, whether MediaPipe's category names are the manifest's classes, and the largest score
difference. Images already at the model's input size reach both sides as the same pixels, so the two
must agree (the gate: ``--min-agreement``, by default the export's own), up to ties: MediaPipe normalises
with the metadata's mean and std in pixel units, the toolkit with the manifest's scale, mean and std, and
the two float results differ by a rounding. An fp32 file keeps that (~1e-7 on its scores), so its top-1
must be the toolkit's on every image; an int8 file can move one quantisation step (~1e-2). So for an int8
file, on an image both sides got as the same pixels, a disagreement where the toolkit's top-1/top-2 margin
is within twice that image's score difference is counted as a tie, reported apart and not against the
gate; any other is a disagreement. ``--resize`` first resizes each
image as the manifest says, which is what an app should do for figures equal to the manifest's, and
without it MediaPipe's own resampling shows how far an app that skips that step drifts (reported, gated
the same way: pass ``--min-agreement 0`` to only report).

Files ImageClassifier cannot open are listed with the reason and not run: a file shared by several
variants (``--bundle shared``: MediaPipe opens single-subgraph files only) and a fully integer int8 file
(int8 input tensor; MediaPipe takes uint8 or float32). Torch-free; needs ``pip install mediapipe``.
Exit 1 when a file that should run fails or falls below the gate.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from toolkit import runtime
from toolkit.formats import AGREEMENT_FLOOR
from toolkit.preprocess import as_uint8_rgb, preprocess, resize_uint8

TFLITE = tuple(fmt for fmt, name in runtime.DEVICE_RUNTIMES.items() if name == "litert")  # what MediaPipe opens


def why_not(f: dict, input_dtype: np.dtype) -> str | None:
    """Why MediaPipe's ImageClassifier cannot run this file entry, or None when it should."""
    if f.get("method"):
        return "one signature of a file shared by several variants: ImageClassifier opens single-subgraph files"
    if np.dtype(input_dtype) not in (np.dtype(np.float32), np.dtype(np.uint8)):
        return f"{np.dtype(input_dtype).name} input tensor (fully integer int8): ImageClassifier takes uint8 or float32"
    return None


def mediapipe_classifier(path: Path):
    """ImageClassifier on ``path`` with every category returned, as an app would create it."""
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
    return vision.ImageClassifier.create_from_options(options)


def mediapipe_top1(classifier, image: np.ndarray) -> tuple[int, str, np.ndarray]:
    """(index, category name, scores by index) for one uint8 H x W x 3 image."""
    import mediapipe as mp

    result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
    cats = result.classifications[0].categories
    scores = np.full(len(cats), np.nan, np.float32)
    for c in cats:
        scores[c.index] = c.score
    best = max(cats, key=lambda c: c.score)
    return best.index, best.category_name, scores


def check_file(pkg, vid: str, f: dict, images: list[np.ndarray], resize: bool) -> dict:
    """One file on every image, in MediaPipe and in the toolkit."""
    from toolkit.package import safe_path

    path = safe_path(pkg.root, f["path"])
    spec = pkg.input_spec(vid)
    run, _ = runtime.load(path, f["format"], pkg.threads, method=f.get("method"))
    from ai_edge_litert.interpreter import Interpreter

    (inp,) = Interpreter(model_path=str(path)).get_signature_runner(f.get("method")).get_input_details().values()
    row = {"variant": vid, "path": f["path"], "dtype": f.get("dtype", "fp32"), "input_layout": f["input_layout"]}
    if (reason := why_not(f, inp["dtype"])) is not None:
        return {**row, "skipped": reason}
    h, w = spec["resize"]["size"]
    same = ties = names_ok = 0
    worst, seen = 0.0, set()
    with mediapipe_classifier(path) as classifier:
        for im in images:
            fed = resize_uint8(im, h, w, spec["resize"]["interpolation"]) if resize else im
            k, name, scores = mediapipe_top1(classifier, fed)
            logits = run(preprocess(im, spec, f["input_layout"]))[0]
            diff = float(np.nanmax(np.abs(scores - logits)))
            same += int(k == int(np.argmax(logits)))
            may_tie = row["dtype"] == "int8" and fed.shape[:2] == (h, w)
            ties += int(k != int(np.argmax(logits)) and may_tie and margin(logits) <= 2 * diff)
            seen.add(int(np.argmax(logits)))
            names_ok += int(name == pkg.labels[k])
            worst = max(worst, diff)
    n = len(images)
    return {**row, "n": n, "top1_agreement": same / n, "ties": ties, "labels_match": names_ok == n,
            "max_abs_score_diff": worst, "classes_predicted": len(seen)}


def margin(logits: np.ndarray) -> float:
    """The toolkit's top-1 logit minus its runner-up: how far a score may move before top-1 changes."""
    top = np.sort(np.asarray(logits, np.float64))[-2:]
    return float(top[1] - top[0])


def gated(r: dict) -> float:
    """The agreement the gate reads: ties within the runtimes' rounding count as agreeing (see the module)."""
    return r["top1_agreement"] + r["ties"] / r["n"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toolkit.app_check", description=__doc__.splitlines()[0])
    ap.add_argument("package")
    ap.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    ap.add_argument("--resize", action="store_true", help="resize each image as the manifest says before MediaPipe "
                                                          "gets it (the toolkit always does)")
    floor = f"{AGREEMENT_FLOOR:.1%}".replace("%", "%%")  # argparse expands help strings with %
    ap.add_argument("--min-agreement", type=float, default=AGREEMENT_FLOOR,
                    help=f"gate on each file's top-1 agreement (default {floor}; 0: report only)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    a = ap.parse_args(argv)

    from toolkit.package import PackageError
    from toolkit.switcher import Package

    try:
        pkg = Package(a.package)
        images = [as_uint8_rgb(p) for p in a.images]
    except (PackageError, ValueError) as err:
        print(f"FAIL: {err}")
        return getattr(err, "exit_code", 1)
    images = [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in images]
    rows, failed = [], False
    for v in pkg.variants:
        for f in (f for f in v["files"] if f["format"] in TFLITE):
            try:
                r = check_file(pkg, v["id"], f, images, a.resize)
            except Exception as err:  # noqa: BLE001 - MediaPipe raises RuntimeError/ValueError for a file it refuses
                r = {"variant": v["id"], "path": f["path"], "error": f"{type(err).__name__}: {err}"}
            rows.append(r)
            failed |= "error" in r or ("n" in r and (gated(r) < a.min_agreement or not r["labels_match"]))
            print(_line(r))
    if not rows:
        print(f"FAIL: {a.package} holds no .tflite file")
        return 1
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    print("RESULT:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


def _line(r: dict) -> str:
    name = f"{r['path']}" + (f" ({r['dtype']})" if "dtype" in r else "")
    if "error" in r:
        return f"{name}: ERROR {r['error']}"
    if "skipped" in r:
        return f"{name}: not run: {r['skipped']}"
    tied = f" (+{r['ties']} tied within the rounding)" if r["ties"] else ""
    return (f"{name}: top-1 agrees with the toolkit on {r['top1_agreement']:.2%} of {r['n']} images{tied}; labels "
            f"{'match' if r['labels_match'] else 'DIFFER'}; max |score - toolkit logit| {r['max_abs_score_diff']:.2e}; "
            f"{r['classes_predicted']} classes predicted")


if __name__ == "__main__":
    sys.exit(main())
