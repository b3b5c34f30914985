"""Fixes for the pinned environment, kept in one place: torchvision's import beside CPU torch (below), and
torch.export's redundant walk over every op namespace (``collect_cia_ops_once``).

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


_cia_patched = False


def collect_cia_ops_once() -> None:
    """Make torch.export's list of preservable CompositeImplicitAutograd ops cost one pass, not hundreds.

    torch 2.13's ``_collect_all_valid_cia_ops`` re-materialises every CIA op of the C++ dispatcher once per
    op namespace (~600 namespaces here), and every ``run_decompositions`` asks for the list two or three
    times: a fifth of each small program's lowering time (probes: 2.2 -> 1.7 s median, docs/reliability.md).
    Materialising is idempotent and registers nothing, so doing it once before walking the namespaces
    gives the same set (tests/test_compat.py compares it with torch's own, and the exported bytes). Applied
    only to the torch it was read against; any other leaves torch as it is."""
    global _cia_patched
    import torch

    if _cia_patched or not torch.__version__.startswith("2.13."):
        return
    import torch._export.utils as utils
    import torch.export.decomp_utils as decomp_utils
    import torch.export.exported_program as exported_program

    users = (utils, exported_program, decomp_utils)
    if not hasattr(utils, "_materialize_cpp_cia_ops") or not all(hasattr(m, "_collect_all_valid_cia_ops")
                                                                  for m in users):
        return
    torch_own = utils._collect_all_valid_cia_ops

    def collect() -> set:
        utils._materialize_cpp_cia_ops()
        ops = set()
        for name in torch.ops._dir:
            if name == "aten":
                ops |= utils._collect_all_valid_cia_ops_for_aten_namespace()  # torch caches this one itself
                continue
            namespace = getattr(torch.ops, name)
            if isinstance(namespace, torch._ops._OpNamespace):
                ops.update(overload for op in namespace for overload in getattr(namespace, op).op_overloads()
                           if utils._is_preservable_cia_op(overload))
        return ops

    collect.torch_own = torch_own
    for m in users:
        m._collect_all_valid_cia_ops = collect
    _cia_patched = True
