"""int8 routes: one per device format that has one (see ``base.Int8Route``).

The written file runs in its fp32 format's runtime (``get_format(route.format).load``),
so it is checked the same way as an fp32 export; it is not held to the fp32 gate:
its top-1 agreement with the fp32 model on the validation split is reported, and
below ``base.AGREEMENT_FLAG`` the file is flagged.
"""
from __future__ import annotations

from restnet.export import pte_int8, tflite_int8
from restnet.export.base import Int8Route

ROUTES: dict[str, Int8Route] = {r.format: r for r in (pte_int8.ROUTE, tflite_int8.ROUTE)}


def routes() -> dict[str, Int8Route]:
    return dict(ROUTES)


def get_route(fmt: str) -> Int8Route:
    if fmt not in ROUTES:
        raise ValueError(f"no int8 export for format {fmt!r}; int8 is available for {', '.join(ROUTES)}")
    return ROUTES[fmt]
