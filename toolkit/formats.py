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
# Minor versions add optional fields only (readers ignore what they do not know). 1: per-entry ``spread``,
# ``raw_spread``, ``round_p50_ms`` and the top-level ``minor`` and ``timing`` (rounds, reference, table spread).
LATENCY_TABLE_MINOR = 1
# A table whose time-weighted spread over its rounds exceeds this cannot support predictions within +-10 %:
# a pack that reads it says so (restnet.package.latency). On this 2-core host quiet tables came out at
# +-4.1 and +-5.5 %, one with another job starting during its first round at +-10.5 %, one under load at +-21 %.
SPREAD_LIMIT = 0.10
LATENCY_TABLE_NAME = "latency-table.json"  # beside the package, where the switcher looks for it


def member_key(f: dict) -> str:
    """A member file's key in latency tables and eager references: its sha256, and the method when the file
    holds several variants (``restnet-pack --bundle shared``: one sha256, one method per variant)."""
    return f"{f['sha256']}:{f['method']}" if f.get("method") else f["sha256"]


def is_latency_table(data: Any) -> bool:
    """Whether ``data`` (parsed JSON) is a latency table of the version this code reads."""
    return isinstance(data, dict) and data.get("format") == LATENCY_TABLE_FORMAT \
        and data.get("version") == LATENCY_TABLE_VERSION


def table_spread(entries: list[dict]) -> dict:
    """The table's spread: each entry's +- over the rounds (each round normalised by its speed), weighted by its
    p50, so that a tiny program's noise counts as much as it adds to a sum of parts; and the largest one."""
    total = sum(e["p50_ms"] for e in entries)
    spread = sum(e["spread"] * e["p50_ms"] for e in entries) / total if total > 0 else 0.0
    return {"spread": spread, "max_spread": max((e["spread"] for e in entries), default=0.0),
            "spread_limit": SPREAD_LIMIT, "trusted": spread <= SPREAD_LIMIT}


def part_name(role: str, part: str, index: int | None = None) -> str:
    """A per-block probe's name: ``front.stem``, ``front.block03``, ``back.head``.

    Names depend only on the pair's structure, so a table measured on the device maps back onto
    the workstation's cost model by name."""
    return f"{role}.block{index:02d}" if part == "block" else f"{role}.{part}"


def stitched_name(i: int, j: int) -> str:
    """A calibration probe's name: the whole stitched model at stitch point (i, j), ``stitched.i03.j12``."""
    return f"stitched.i{i:02d}.j{j:02d}"


def stitched_point(name: str) -> tuple[int, int] | None:
    """(i, j) of a calibration probe's name, None for any other probe."""
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "stitched" and parts[1][1:].isdigit() and parts[2][1:].isdigit():
        return int(parts[1][1:]), int(parts[2][1:])
    return None


class Feature(Protocol):
    """A block output per example, as restnet.stitching.FeatureSpec describes it."""

    layout: str
    shape: tuple[int, ...]


def stitch_name(src: Feature, dst: Feature) -> str:
    """A stitching-layer probe's name: one per distinct (source, target) feature shape."""
    shape = lambda s: "x".join(map(str, s.shape))  # noqa: E731
    return f"stitch.{src.layout}{shape(src)}-{dst.layout}{shape(dst)}"
