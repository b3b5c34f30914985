"""Device latency tables (written by `restnet-bench`) back on the workstation.

Two uses: (1) a variant whose exact file (same sha256) was measured on the
device gets that measurement in the manifest, marked ``measured``; (2) with
per-block probes measured (`restnet-bench --blocks`), the latency of any
stitch point is predicted as the sum of its parts minus the per-program call
overhead that one fused program does not pay:

    predicted(i, j) = sum of part p50s - (parts - 1) x o

where o is fitted on the two anchors, whose whole programs were measured
too: o = mean over anchors of (sum of parts - whole) / (parts - 1).
"""
from __future__ import annotations

import json
from pathlib import Path

from restnet.cost import CostModel, PartCosts
from restnet.package.probes import stitch_name

TABLE_FORMAT = "restnet-latency-table"


class LatencyTableError(ValueError):
    """A table that cannot be used here; the message says why and what to do."""


class LatencyTable:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise LatencyTableError(f"{self.path}: cannot read a latency table: {err}") from None
        if self.data.get("format") != TABLE_FORMAT or self.data.get("version") != 1:
            raise LatencyTableError(f"{self.path}: not a restnet-bench latency table (format/version)")
        if self.data.get("emulated"):
            raise LatencyTableError(f"{self.path}: measured under emulation ({self.data.get('machine', '?')}, e.g. "
                                    "scripts/aarch64-standin.sh); emulated timings are not device latency. "
                                    "Run restnet-bench on the device itself and pass that table")

    @property
    def device(self) -> str:
        return self.data.get("device", "?")

    def measured(self, sha256: str) -> dict | None:
        return self.data["variants"].get(sha256)

    def block_ms(self, name: str) -> float:
        b = self.data.get("blocks", {}).get(name)
        if b is None:
            raise LatencyTableError(f"{self.path}: no measurement for probe {name!r}; run `restnet-bench --blocks` "
                                    "on a package packed with `--probes` for this pair and resolution")
        return b["p50_ms"]

    def overhead_ms(self, parts: dict[str, int], anchor_sums: dict[str, float]) -> float:
        """Per-program overhead o, fitted on whichever anchors the table measured whole."""
        fits = []
        for v in self.data["variants"].values():
            if v.get("kind") == "anchor" and v.get("anchor") in anchor_sums and v.get("dtype", "fp32") == "fp32":
                n = parts[v["anchor"]]
                fits.append((anchor_sums[v["anchor"]] - v["p50_ms"]) / max(n - 1, 1))
        return sum(fits) / len(fits) if fits else 0.0


def predicted_cost_model(table: LatencyTable, runner, resolution: int) -> CostModel:
    """A latency CostModel from a device table: parts and stitch shapes by probe name, overhead-corrected."""
    res = table.data.get("package", {}).get("resolution")
    if res is not None and res != resolution:
        raise LatencyTableError(f"{table.path}: measured at {res} px, this pack runs at {resolution} px")
    base = runner.cost_model("params")  # for the specs only
    parts, sums, raw = {}, {}, {}
    for role, name in (("front", runner.exp.front), ("back", runner.exp.back)):
        n_blocks = len(base.front.blocks if role == "front" else base.back.blocks)
        pc = PartCosts(table.block_ms(f"{role}.stem"), [table.block_ms(f"{role}.block{k:02d}")
                                                        for k in range(n_blocks)], table.block_ms(f"{role}.head"))
        raw[role] = pc
        parts[name] = n_blocks + 2
        sums[name] = pc.total
    o = table.overhead_ms(parts, sums)
    shift = lambda pc: PartCosts(pc.stem - o, [b - o for b in pc.blocks], pc.head - o)  # noqa: E731
    stitches = {}
    for s in base.front_specs:
        for d in base.back_specs:
            stitches[(s, d)] = table.block_ms(stitch_name(s, d)) - o
    return CostModel("latency", shift(raw["front"]), shift(raw["back"]), base.front_specs, base.back_specs,
                     runner.exp.kernel_size, source=f"predicted (device table {table.device}, sum of parts - "
                                                    f"{o:.3f} ms overhead per extra program)",
                     offset=o, stitch_table=stitches)
