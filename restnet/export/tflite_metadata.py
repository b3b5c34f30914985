"""TFLite metadata in every .tflite the pack writes: labels, input normalisation and a description, so that
an app's classifier (MediaPipe Tasks' ImageClassifier on Android, iOS, web or Python) runs the file as it is.

Written with MediaPipe's ``metadata_writers`` (``mediapipe.tasks.python.metadata``), the maintained writer:
tflite-support's, the other one, is archived, pins protobuf < 4 and numpy < 2 and has no wheel for Python
3.12, so it cannot sit beside restnet's pins; mediapipe 1.2.2 does. Its wheel lacks one compiled helper,
which restnet.export.tflite_metadata_version stands in for. The metadata is what ImageClassifier reads:

  image input    RGB, NormalizationOptions mean/std in pixel units (0..255; MediaPipe feeds
                 (pixel - mean) / std), which is the manifest's scale, mean and std folded together
  output         the class scores with ``labels.txt`` attached as TENSOR_AXIS_LABELS (line k = score k)
  general        name (the variant id) and a description (task, input size, what the scores are)

The writer runs at export, before the file is verified, so the bytes checked against eager are the bytes
that ship. Its zip of associated files is stamped with the writing time; ``write`` re-stamps it with a
fixed date so that the same weights give the same file (sha256) on every pack.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


@dataclass(frozen=True)
class ClassifierInfo:
    """What the metadata says about one classifier file."""

    name: str
    description: str
    labels: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, in pixel units (0..255)
    std: tuple[float, ...]

    @classmethod
    def of(cls, name: str, description: str, labels: Sequence[str], scale: float, mean: Sequence[float],
           std: Sequence[float]) -> "ClassifierInfo":
        """From the manifest's preprocessing, x = (pixel x scale - mean) / std = (pixel - mean/scale) /
        (std/scale): MediaPipe takes the pixel-unit pair."""
        if not labels or any(not isinstance(s, str) or not s or "\n" in s for s in labels):
            raise ValueError(f"labels must be non-empty single-line names, got {list(labels)!r}")
        if len(mean) != len(std) or len(mean) not in (1, 3) or scale <= 0 or any(s <= 0 for s in std):
            raise ValueError(f"normalisation needs 1 or 3 means and as many positive stds and a positive scale, "
                             f"got mean {list(mean)}, std {list(std)}, scale {scale}")
        return cls(name, description, tuple(labels), tuple(float(m) / scale for m in mean),
                   tuple(float(s) / scale for s in std))

    def fingerprint(self) -> str:
        """Part of an export's cache key: the file's bytes depend on every field."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def write(path: Path, info: ClassifierInfo) -> None:
    """Put ``info`` into the .tflite at ``path`` as its metadata (replacing the file atomically)."""
    mw = _writer_module()
    path = Path(path)
    writer = mw.MetadataWriter.create(bytearray(path.read_bytes()))
    writer.add_general_info(info.name, info.description)
    writer.add_image_input(list(info.mean), list(info.std))
    writer.add_classification_output(mw.Labels().add(list(info.labels)))
    try:
        content, _ = writer.populate()
    except ValueError as err:  # e.g. a file with several inputs or outputs: not an image classifier
        raise ValueError(f"{path.name}: cannot write image classifier metadata: {err}") from None
    finally:
        # The writer removes its temporary folder in __del__; freed here, not at interpreter exit, where
        # that fails noisily (its module globals are gone by then).
        del writer
    tmp = path.with_name(path.name + ".meta.tmp")
    tmp.write_bytes(_fixed_dates(bytes(content)))
    os.replace(tmp, path)


def read(path: Path) -> dict:
    """The file's metadata as JSON (MediaPipe's displayer), with the associated files it packs."""
    _writer_module()
    from mediapipe.tasks.python.metadata import metadata

    try:
        shown = metadata.MetadataDisplayer.with_model_file(str(path))
    except ValueError as err:
        raise ValueError(f"{Path(path).name}: no TFLite metadata ({err})") from None
    return {**json.loads(shown.get_metadata_json()), "packed_files": shown.get_packed_associated_file_list()}


def _fixed_dates(content: bytes) -> bytes:
    """The model with its appended zip rewritten entry for entry, each stamped ``ZIP_DATE``."""
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        entries = [(i, z.read(i)) for i in z.infolist()]
    start = min(i.header_offset for i, _ in entries)
    out = io.BytesIO(content[:start])
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as z:
        for info, data in entries:
            z.writestr(zipfile.ZipInfo(info.filename, ZIP_DATE), data, compress_type=info.compress_type)
    return out.getvalue()


def _writer_module():
    """mediapipe's metadata_writer, imported without TensorFlow: mediapipe imports TensorFlow, when installed,
    only for its API docs and to open files through tf.io.gfile, which local paths do not need (about 10 s
    and hundreds of MB in a pack that has no other use for it)."""
    from restnet.export import tflite_metadata_version

    blocked = "tensorflow" not in sys.modules
    if blocked:
        sys.modules["tensorflow"] = None  # import tensorflow -> ModuleNotFoundError, for these imports only
    try:
        tflite_metadata_version.install()
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer
    finally:
        if blocked:
            del sys.modules["tensorflow"]
    return metadata_writer
