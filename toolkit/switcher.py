"""A verified package on the device, and a switcher that picks and changes variants by budget.

Loading is the expensive part (reading and preparing a program), switching is
not: the package keeps every runner it has loaded, so going back to a variant
already held costs nothing. The latency a decision uses is, in order: this
device's measured table (``restnet-bench`` output beside the package), the
manifest's device figure (measured / predicted / estimated), the host figure.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit import runtime
from toolkit.package import PackageError, open_verified, safe_path
from toolkit.preprocess import preprocess, softmax

TABLE_NAME = "latency-table.json"


class Package:
    """Open (and verify: schema, paths, sha256) once; load each variant at most once."""

    def __init__(self, root: str | Path, threads: int | None = None, table: str | Path | None = None):
        self.root, self.manifest = open_verified(root)
        self.threads = threads
        task = self.manifest["task"]
        self.labels = safe_path(self.root, task["labels_file"]).read_text().splitlines()
        if len(self.labels) != task["num_classes"]:
            raise PackageError(f"{self.root}: {task['labels_file']} has {len(self.labels)} lines, manifest says "
                               f"{task['num_classes']} classes")
        self._runners: dict[str, tuple[runtime.Runner, dict, str]] = {}
        self.loads = 0  # how many programs were actually loaded (switching must not add to it)
        path = Path(table) if table else self.root / TABLE_NAME
        self.table = json.loads(path.read_text()) if path.is_file() else None

    @property
    def variants(self) -> list[dict]:
        return self.manifest["variants"]

    def variant(self, vid: str) -> dict:
        for v in self.variants:
            if v["id"] == vid:
                return v
        raise KeyError(f"no variant {vid!r} in {self.root}; have: {', '.join(v['id'] for v in self.variants)}")

    def file_for(self, v: dict) -> dict:
        """The first of the variant's files that a device runtime can run."""
        for f in v["files"]:
            if f["format"] in runtime.BACKENDS:
                return f
        raise runtime.RuntimeUnavailable(f"variant {v['id']} has no file for a device runtime "
                                         f"(formats: {', '.join(f['format'] for f in v['files'])})")

    def runner(self, vid: str) -> tuple[runtime.Runner, dict, str]:
        if vid not in self._runners:
            f = self.file_for(self.variant(vid))
            run, version = runtime.load(safe_path(self.root, f["path"]), f["format"], self.threads)
            self._runners[vid] = (run, f, version)
            self.loads += 1
        return self._runners[vid]

    @property
    def held(self) -> list[str]:
        return list(self._runners)

    def input_spec(self, vid: str) -> dict:
        return self.variant(vid).get("input") or self.manifest["input"]

    def run(self, vid: str, x: np.ndarray) -> np.ndarray:
        run, _, _ = self.runner(vid)
        return run(x)

    def classify(self, image, vid: str, top: int = 1) -> list[tuple[str, float]]:
        """[(label, probability)] best first, for one image (path, PIL image or uint8 array)."""
        _, f, _ = self.runner(vid)
        x = preprocess(image, self.input_spec(vid), f["input_layout"])
        p = softmax(self.run(vid, x))[0]
        order = np.argsort(-p)[:top]
        return [(self.labels[k], float(p[k])) for k in order]

    def latency_ms(self, v: dict) -> tuple[float, str]:
        """(ms, where it comes from) for decisions: this device's table, else the manifest."""
        if self.table:
            entry = self.table.get("variants", {}).get(self.file_for(v)["sha256"])
            if entry:
                return entry["p50_ms"], f"measured here ({self.table.get('device', '?')})"
        lat = v["latency"][-1]
        return lat["ms"], f"{lat['source']} ({lat['where']})"


class Switcher:
    """Holds an active variant: the most accurate one that meets the latency and RAM budgets."""

    def __init__(self, package: Package, latency_ms: float | None = None, ram_mb: float | None = None):
        self.package = package
        self.active: str | None = None
        self.within_budget = True
        self.set_budget(latency_ms, ram_mb)

    def candidates(self, latency_ms: float | None, ram_mb: float | None) -> list[dict]:
        ok = []
        for v in self.package.variants:
            ms, _ = self.package.latency_ms(v)
            if (latency_ms is None or ms <= latency_ms) and (ram_mb is None or v["peak_ram_mb"] <= ram_mb):
                ok.append(v)
        return ok

    def set_budget(self, latency_ms: float | None = None, ram_mb: float | None = None) -> str:
        """Switch to the best variant for these budgets (loads it only if not held yet); returns its id.
        If nothing fits, the fastest variant is used and ``within_budget`` is False."""
        self.latency_budget, self.ram_budget = latency_ms, ram_mb
        ok = self.candidates(latency_ms, ram_mb)
        self.within_budget = bool(ok)
        if ok:
            best = max(ok, key=lambda v: (v["accuracy"], -self.package.latency_ms(v)[0]))
        else:
            best = min(self.package.variants, key=lambda v: self.package.latency_ms(v)[0])
        self.package.runner(best["id"])
        self.active = best["id"]
        return self.active

    def classify(self, image, top: int = 1) -> list[tuple[str, float]]:
        return self.package.classify(image, self.active, top)
