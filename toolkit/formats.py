"""Names and formats that the workstation writes and the device reads, defined once.

restnet (packing, latency prediction) and the toolkit (restnet-bench, the
switcher) both import this module, so the two sides cannot drift apart. It
imports nothing but the standard library: the device side stays torch-free.
"""
from __future__ import annotations

from typing import Any, Protocol

# The fp32 gates every exported file must pass (restnet.export.export_verified) and a device's
# outputs are checked against (toolkit.crosscheck): max |logit Δ| <= TOLERANCE x max(1, max |logit|),
# and top-1 agreement with eager >= AGREEMENT_FLOOR.
TOLERANCE = 1e-4
AGREEMENT_FLOOR = 0.999
# int8 files are not gated: below this top-1 agreement with the fp32 model they are flagged.
AGREEMENT_FLAG = 0.98

# restnet-bench's output, read back by `restnet-pack --latency-table`.
LATENCY_TABLE_FORMAT = "restnet-latency-table"
LATENCY_TABLE_VERSION = 1
LATENCY_TABLE_NAME = "latency-table.json"  # beside the package, where the switcher looks for it


def member_key(f: dict) -> str:
    """A member file's key in latency tables and eager references: its sha256, and the method when the file
    holds several variants (``restnet-pack --bundle shared``: one sha256, one method per variant)."""
    return f"{f['sha256']}:{f['method']}" if f.get("method") else f["sha256"]


def is_latency_table(data: Any) -> bool:
    """Whether ``data`` (parsed JSON) is a latency table of the version this code reads."""
    return isinstance(data, dict) and data.get("format") == LATENCY_TABLE_FORMAT \
        and data.get("version") == LATENCY_TABLE_VERSION


def part_name(role: str, part: str, index: int | None = None) -> str:
    """A per-block probe's name: ``front.stem``, ``front.block03``, ``back.head``.

    Names depend only on the pair's structure, so a table measured on the device maps back onto
    the workstation's cost model by name."""
    return f"{role}.block{index:02d}" if part == "block" else f"{role}.{part}"


class Feature(Protocol):
    """A block output per example, as restnet.stitching.FeatureSpec describes it."""

    layout: str
    shape: tuple[int, ...]


def stitch_name(src: Feature, dst: Feature) -> str:
    """A stitching-layer probe's name: one per distinct (source, target) feature shape."""
    shape = lambda s: "x".join(map(str, s.shape))  # noqa: E731
    return f"stitch.{src.layout}{shape(src)}-{dst.layout}{shape(dst)}"
