"""Import-time fixes for the pinned environment, kept in one place.

PyPI's torchvision 0.28.0 is a CUDA build; beside the CPU torch 2.13.0 its
``import`` fails with "operator torchvision::nms does not exist" because the
compiled ops library does not load. timm imports torchvision, so restnet
defines the two op schemas torchvision registers fake kernels for, and only
when the plain import has failed. Nothing in restnet uses those ops.
"""
from __future__ import annotations

import os
import sys

_done = False


def ensure_torchvision_importable() -> None:
    """Make ``import torchvision`` (and so ``import timm``) work beside CPU torch."""
    global _done
    if _done:
        return
    _done = True
    try:
        import torchvision  # noqa: F401

        return
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
    # Drop the half-imported package before retrying.
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torch

    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 (kept alive below)
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_torchvision_lib"] = lib
    import torchvision  # noqa: F401,F811


def import_timm():
    """Import timm with torchvision fixed; fused attention is left at timm's default."""
    ensure_torchvision_importable()
    import timm

    return timm


# TensorFlow and friends are chatty; restnet prints its own progress.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def quiet_third_party() -> None:
    """Silence known-harmless noise so that real warnings stay visible in CLI output:
    torchao's CPU wheel tries to load its CUDA kernels and logs each failure; torch.export
    and executorch emit deprecation warnings about their own internals; litert-torch prints a
    START/DONE line per conversion pass (~20 per file; LITERT_TORCH_SHOW_PROGRESS=y brings them back)."""
    import logging
    import warnings

    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")

    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*is an Enum subclass and is now natively supported.*")
