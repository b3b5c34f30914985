"""Device latency on the workstation: a restnet-bench table read back, and each variant's figure.

Two uses of a table (written by `restnet-bench` on the device): (1) a variant
whose exact file (same sha256) was measured gets that measurement in the
manifest, marked ``measured``; (2) with per-block probes measured
(`restnet-bench --blocks`), the latency of any stitch point is predicted from
its parts:

    predicted(i, j) = sum of part p50s - (parts - 1) x o + beta x max(0, params(i, j) - knee)

o is the call overhead each separate program pays and one fused program does
not (input and output copies, waking the thread pool); the last term is the
weights a fused program cannot keep in cache: a part timed alone, back to back,
keeps its own weights in cache, a whole model larger than the cache streams them
from memory every run (measured on this host: small fronts ran 20-30 % faster
than their parts, deep ones 10 % slower). o, beta and knee are fitted, by least
squares on relative error, on every whole program the table timed: both anchors
and the calibration probes (whole stitched models at points spread over the
parameter range, restnet.package.probes). A table without calibration probes
gets o alone, fitted on the anchors.

Without a table, the device figure is the host measurement (a host profile),
an estimate (host x the profile's factor), or absent; ``DeviceLatency`` says
which, in that order of precedence. A host figure the workstation was too busy
to measure (toolkit.cleantime) is replaced by the variant's MACs x the anchors'
.pte ms per MAC, marked ``estimated``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from restnet import cache
from restnet.anchors.stats import count_params
from restnet.cost import CostModel, PartCosts
from restnet.export import pte, sha256_of
from restnet.package.exports import intact_record
from restnet.package.request import PackRequest
from restnet.package.variants import Built
from restnet.paths import cache_dir
from restnet.timing import clean_ms
from toolkit.cleantime import CLEAN_BURSTS, LOW_QUANTILE, Estimate, busy_note
from toolkit.errors import PackageInvalid
from restnet.stitching import StitchPoint
from toolkit.formats import SPREAD_LIMIT, is_latency_table, member_key, part_name, stitch_name, \
    stitched_point


class LatencyTableError(PackageInvalid, ValueError):
    """A table that cannot be used here; the message says why and what to do."""


class LatencyTable:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError, RecursionError) as err:
            raise LatencyTableError(f"{self.path}: cannot read a latency table: {err}") from None
        if not is_latency_table(self.data):
            raise LatencyTableError(f"{self.path}: not a restnet-bench latency table (format/version); "
                                    "pass the latency-table.json that restnet-bench wrote")
        _check_entries(self.path, self.data)
        if self.data.get("emulated"):
            raise LatencyTableError(f"{self.path}: measured under emulation ({self.data.get('machine', '?')}, e.g. "
                                    "scripts/aarch64-standin.sh); emulated timings are not device latency. "
                                    "Run restnet-bench on the device itself and pass that table")

    def check_fits(self, profile: str, resolution: int) -> None:
        """Refuse, before any work, a table measured on another profile's package or at another size."""
        pkg = self.data.get("package") if isinstance(self.data.get("package"), dict) else {}
        if pkg.get("profile") not in (None, profile):
            raise LatencyTableError(f"{self.path}: measured on a package of profile {pkg['profile']!r}, this pack is "
                                    f"for {profile!r}; run restnet-bench on this profile's package and pass that table")
        if pkg.get("resolution") not in (None, resolution):
            raise LatencyTableError(f"{self.path}: measured at {pkg['resolution']} px, this pack runs at {resolution} "
                                    "px; pass a table measured at this resolution (or --resolution to match)")

    @property
    def spread(self) -> float | None:
        """The table's time-weighted +- over its rounds (restnet-bench 1.1); None: a 1.0 table, timed once."""
        timing = self.data.get("timing")
        return timing.get("spread") if isinstance(timing, dict) else None

    def trust_note(self) -> str | None:
        """Why this table's latencies should not be trusted, or None: a spread over ``SPREAD_LIMIT`` (the
        predictions' own +-10 % target would drown in it), or no spread recorded at all."""
        spread = self.spread
        if spread is None:
            return (f"{self.path}: latency table without a recorded spread (each file timed once, in one process); "
                    "its figures may be ~1.5x off on a noisy device: measure again with this restnet-bench")
        if spread > SPREAD_LIMIT:
            rounds = self.data["timing"].get("rounds", "?")
            return (f"{self.path}: FLAGGED: latencies spread +-{spread:.1%} over {rounds} rounds (limit "
                    f"+-{SPREAD_LIMIT:.0%}), too noisy to trust; measure again on a quieter device or with more "
                    "restnet-bench --rounds")
        return None

    @property
    def device(self) -> str:
        return self.data.get("device", "?")

    @property
    def has_blocks(self) -> bool:
        """Whether per-block probes were measured (restnet-bench --blocks): enough to predict."""
        return bool(self.data.get("blocks"))

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


def _check_entries(path: Path, data: dict) -> None:
    """Every measurement the pack reads is a mapping with a finite, non-negative p50 (a damaged or
    hand-edited table fails here, with the entry's name, not later with a KeyError)."""
    for section in ("variants", "blocks"):  # each p50 in ms
        entries = data.get(section, {})
        if not isinstance(entries, dict):
            raise LatencyTableError(f"{path}: field '{section}' must be a mapping, got {type(entries).__name__}")
        for key, e in entries.items():
            ms = e.get("p50_ms") if isinstance(e, dict) else None
            if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 <= ms < float("inf"):
                raise LatencyTableError(f"{path}: field '{section}.{key}.p50_ms' must be a number >= 0, got {ms!r}; "
                                        "the table is damaged: measure again with restnet-bench")
            for name in ("kind", "anchor", "dtype", "format", "runtime"):
                if e.get(name) is not None and not isinstance(e[name], str):
                    raise LatencyTableError(f"{path}: field '{section}.{key}.{name}' must be text, got "
                                            f"{e[name]!r}; the table is damaged: measure again with restnet-bench")
    if "variants" not in data:
        raise LatencyTableError(f"{path}: field 'variants' is missing; measure again with restnet-bench")


@dataclass(frozen=True)
class MemoryTerm:
    """beta ms per million parameters beyond ``knee`` million: weights a fused program streams from memory."""

    beta: float
    knee: float
    params: CostModel  # the pair in parameters

    def point(self, p: StitchPoint) -> float:
        return self.beta * max(self.params(p) / 1e6 - self.knee, 0.0)

    def anchor(self, role: str) -> float:
        return self.beta * max(self.params.anchor_cost(role) / 1e6 - self.knee, 0.0)


def fit_corrections(obs: list[tuple[float, float, int, float]]) -> tuple[float, float, float]:
    """(o, beta, knee) from (measured, sum of parts, parts, params in M) of whole programs: least squares on
    relative error for each knee on a grid over the observed sizes, the best knee kept; beta >= 0."""
    y, s, n, size = (np.array(c, dtype=float) for c in zip(*obs))
    best = (np.inf, 0.0, 0.0, 0.0)
    for knee in np.linspace(0.0, size.max(), 61):
        mem = np.maximum(size - knee, 0.0)
        x = np.c_[-(n - 1), mem] / y[:, None]
        (o, beta), *_ = np.linalg.lstsq(x, (y - s) / y, rcond=None)
        if beta < 0:  # more weights never make a program faster: refit without the memory term
            (o,), *_ = np.linalg.lstsq(x[:, :1], (y - s) / y, rcond=None)
            beta = 0.0
        err = float(np.sum(((s - (n - 1) * o + beta * mem) - y) ** 2 / y ** 2))
        if err < best[0] - 1e-12:
            best = (err, float(o), float(beta), float(knee))
    return best[1:]


def _observations(table: LatencyTable, raw: dict[str, PartCosts], shapes: CostModel, names: tuple[str, str],
                  stitch_ms) -> list[tuple[float, float, int, float]]:
    """(measured, sum of parts, parts, params in M) for each whole program the table timed: the fp32 anchors
    and the calibration probes (``stitched.iII.jJJ``)."""
    obs = []
    for v in table.data["variants"].values():
        if v.get("kind") == "anchor" and v.get("anchor") in names and v.get("dtype", "fp32") == "fp32":
            role = "front" if v["anchor"] == names[0] else "back"
            obs.append((v["p50_ms"], raw[role].total, len(raw[role].blocks) + 2, shapes.anchor_cost(role) / 1e6))
    nb = len(raw["back"].blocks)
    for name, b in table.data.get("blocks", {}).items():
        if (ij := stitched_point(name)) is not None and ij[0] < len(raw["front"].blocks) and ij[1] < nb:
            p = StitchPoint(*ij)
            parts = raw["front"].front(p.i) + stitch_ms(p) + raw["back"].back(p.j)
            obs.append((b["p50_ms"], parts, p.i + nb - p.j + 3, shapes(p) / 1e6))
    return obs


def predicted_cost_model(table: LatencyTable, shapes: CostModel, names: tuple[str, str],
                         resolution: int) -> CostModel:
    """A latency CostModel from a device table: parts and stitch shapes by probe name, corrected (see the
    module). ``shapes``: the pair's params cost model (block counts, feature specs, kernel size and each
    point's size); ``names``: the (front, back) anchor names the table's whole-anchor measurements are filed
    under."""
    res = table.data.get("package", {}).get("resolution")
    if res is not None and res != resolution:
        raise LatencyTableError(f"{table.path}: measured at {res} px, this pack runs at {resolution} px")
    raw = {}
    for role in ("front", "back"):
        n_blocks = len(shapes.front.blocks if role == "front" else shapes.back.blocks)
        raw[role] = PartCosts(table.block_ms(part_name(role, "stem")),
                              [table.block_ms(part_name(role, "block", k)) for k in range(n_blocks)],
                              table.block_ms(part_name(role, "head")))
    stitches = {(s, d): table.block_ms(stitch_name(s, d)) for s in shapes.front_specs for d in shapes.back_specs}
    stitch_ms = lambda p: stitches[(shapes.front_specs[p.i], shapes.back_specs[p.j])]  # noqa: E731
    obs = _observations(table, raw, shapes, names, stitch_ms)
    memory, how = None, "no whole program measured"
    if len(obs) >= 4:  # three numbers fitted: at least one observation more
        o, beta, knee = fit_corrections(obs)
        memory = MemoryTerm(beta, knee, shapes)
        how = (f"{o:.3f} ms per extra program, +{beta:.3f} ms per M params over {knee:.2f} M; fitted on "
               f"{len(obs)} whole programs")
    else:
        o = table.overhead_ms({n: len(raw[r].blocks) + 2 for r, n in zip(("front", "back"), names)},
                              {n: raw[r].total for r, n in zip(("front", "back"), names)})
        how = f"{o:.3f} ms overhead per extra program, fitted on the anchors"
    shift = lambda pc: PartCosts(pc.stem - o, [b - o for b in pc.blocks], pc.head - o)  # noqa: E731
    spread = table.spread
    trust = "spread unknown" if spread is None else f"table spread +-{spread:.1%}" + (
        ", FLAGGED: too noisy" if spread > SPREAD_LIMIT else "")
    return CostModel("latency", shift(raw["front"]), shift(raw["back"]), shapes.front_specs, shapes.back_specs,
                     shapes.kernel_size, source=f"predicted (device table {table.device}, sum of parts - {how}; "
                                                f"{trust})",
                     offset=o, stitch_table={k: v - o for k, v in stitches.items()}, correction=memory)


HOST_METHOD = (f"{LOW_QUANTILE:.0%} quantile of the medians of {CLEAN_BURSTS} short bursts no other job starved "
               "(toolkit.cleantime), after 3 warm-up")


class DeviceLatency:
    """The device figure for a variant: measured (table has its file) > predicted (table has the
    blocks) > measured here (host profile) > estimated (profile factor) > none. ``per_mac``: the anchors'
    .pte ms per MAC on this host, for a file the host was too busy to time."""

    def __init__(self, req: PackRequest, table: LatencyTable | None, pred: CostModel | None,
                 per_mac: Callable[[], float] | None = None):
        self.req, self.table, self.pred, self.per_mac = req, table, pred, per_mac

    def __call__(self, b: Built) -> list[dict]:
        """[host figure] or [host figure, device figure] for the variant's main (first) file."""
        main = b.files[0]
        host = self.host(b)
        p, t = self.req.profile, self.table
        if t is not None and (m := t.measured(member_key(main))):
            return [host, {"ms": m["p50_ms"], "source": "measured", "where": t.device,
                           "threads": t.data.get("threads", p.threads), "runtime": m.get("runtime", "?"),
                           "method": f"restnet-bench p50 of {m.get('runs', '?')} runs ({t.path.name})"}]
        if self.pred is not None:
            ms = self.pred(b.selection.point) if b.kind == "stitched" else self.pred.anchor_cost(b.role)
            return [host, {"ms": ms, "source": "predicted", "where": t.device, "threads": t.data.get("threads", 1),
                           "runtime": t.data.get("runtime", "?"), "method": self.pred.source}]
        if p.is_host:
            return [host, {**host, "where": p.name}]
        if p.latency_estimate:
            k = p.latency_estimate.host_scale
            return [host, {"ms": host["ms"] * k, "source": "estimated", "where": p.name, "threads": p.threads,
                           "runtime": main["runtime"],
                           "method": f"host latency x {k:g} ({p.latency_estimate.source}); "
                                     "replace with restnet-bench measurements"}]
        return [host]

    def host(self, b: Built) -> dict:
        """The main file's host figure: measured, or, when the host was too busy to time it, MACs x the anchors'
        .pte ms per MAC (estimated; the method says why)."""
        main = b.files[0]
        fig = {"ms": main["host_ms"], "source": "measured", "where": "host", "threads": main["threads"],
               "runtime": main["runtime"], "method": f"{HOST_METHOD}, batch 1, {main['format']} file"}
        if main.get("host_spread") is not None:
            fig["spread"] = round(main["host_spread"], 4)
        if not main.get("host_busy") or self.per_mac is None:
            return fig
        k = self.per_mac()
        return {**fig, "ms": b.flops * k, "source": "estimated",
                "method": f"the host was too busy to time this file (another job held the CPU: "
                          f"{main['host_clean']} of {main['host_bursts']} bursts clean; {main['host_ms']:.4g} ms "
                          f"then, an upper bound): MACs x {k * 1e9:.4g} ms per GMAC, the anchors' fp32 .pte ratio"}


HOST_PTE_METHOD = "cleantime-1"  # in the cache key: a figure taken another way is taken again


def host_pte(model, resolution: int, threads: int) -> Estimate:
    """This host's latency of ``model`` as an XNNPACK .pte (batch 1, toolkit.cleantime); weights do not matter,
    so the architecture is timed before any training. Cached per architecture, resolution and threads, and
    only when clean: a figure from a contended moment, cached for good, once made lite0 slower than lite2 and
    broke every later host pack's budgets."""
    key = cache.key_of(model=model.name, res=resolution, threads=threads, runtime=pte.runtime_version(),
                       method=HOST_PTE_METHOD)
    path = cache_dir("anchor-pte-ms") / f"{model.name}-{key}.json"
    if (hit := cache.cached(path)) is not None:
        return Estimate(hit["ms"], hit["spread"], hit["clean"], hit["bursts"])
    x = torch.zeros(1, 3, resolution, resolution)
    e = clean_ms(pte.load(_timing_file(model, x), threads), x.numpy())
    if not e.busy:
        cache.atomic_write_json({"ms": e.ms, "spread": e.spread, "clean": e.clean, "bursts": e.bursts,
                                 "model": model.name, "resolution": resolution, "threads": threads,
                                 "method": HOST_METHOD}, path)
    return e


def _timing_file(model, x: torch.Tensor) -> Path:
    """``model``'s .pte for timing, lowered once per architecture (name and parameter count: a task's head is part
    of it), input and ExecuTorch version: a figure the host was too busy to take is taken again by the next pack,
    and lowering an anchor takes 15-30 s where timing it takes a few. Kept with its sha256, so a damaged file is
    lowered again."""
    slot = cache_dir("anchor-pte", cache.key_of(model=model.name, params=count_params(model), shape=list(x.shape),
                                                runtime=pte.runtime_version()))
    f = slot / "model.pte"
    if intact_record(f) is not None:
        return f
    tmp = slot / f"model.pte.{os.getpid()}.tmp"  # two packs sharing a cache may lower it at once
    pte.export(model.eval(), x, tmp)
    tmp.replace(f)
    cache.atomic_write_json({"sha256": sha256_of(f), "model": model.name, "shape": list(x.shape)},
                            f.with_name("record.json"))
    return f


def host_pte_ms(model, resolution: int, threads: int, log: Callable[[str], None] | None = None) -> float:
    """``host_pte``'s figure; one line to ``log`` when the host was too busy to time it (then an upper bound)."""
    e = host_pte(model, resolution, threads)
    if e.busy and log is not None:
        log(f"[yellow]{busy_note(f'host .pte latency of {model.name}', e)}; its figure is an upper bound, "
            "not cached[/]")
    return e.ms


def pte_ms_per_mac(anchors: list[tuple[object, int]], resolution: int, threads: int,
                   log: Callable[[str], None] | None = None) -> float:
    """The anchors' .pte ms per MAC on this host: (architecture, MACs) each; what a file the host was too busy to
    time is estimated from."""
    return sum(host_pte_ms(a, resolution, threads, log) for a, _ in anchors) / sum(macs for _, macs in anchors)
