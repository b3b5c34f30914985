"""The anchor listing behind ``restnet anchors``, cached per restnet/timm version.

Counting FLOPs traces every model (VGG11 alone takes seconds), so the
numbers are kept in the cache; they depend only on the architecture, the
input size and the code that counts them.
"""
from __future__ import annotations

from restnet import __version__, cache
from restnet.anchors.registry import ANCHORS
from restnet.anchors.weights import offline_source
from restnet.paths import cache_dir


def _stats_row(name: str) -> dict:
    from restnet.anchors import create_anchor
    from restnet.anchors.stats import describe

    spec = ANCHORS[name]
    st = describe(create_anchor(name, pretrained=False), spec.preprocess.resolution)
    return {"name": name, "family": spec.family, "blocks": len(st.blocks), "input_size": st.input_size,
            "params": st.params, "flops": st.flops}


def anchor_rows(progress: bool = True) -> list[dict]:
    from restnet._compat import import_timm

    timm = import_timm()
    path = cache_dir("anchors") / f"stats-restnet{__version__}-timm{timm.__version__}.json"
    cached = cache.cached(path) or {}
    missing = [n for n in ANCHORS if n not in cached]
    if missing:
        from rich.progress import track

        it = track(missing, description="counting params/FLOPs") if progress else missing
        for name in it:
            cached[name] = _stats_row(name)
        cache.atomic_write_json(cached, path)
    return [dict(cached[n], offline_weights=offline_source(ANCHORS[n])) for n in ANCHORS]
