"""A verified package on the device, and a switcher that picks and changes variants by budget.

Loading is the expensive part (reading and preparing a program), switching is
not: the package keeps every program it has loaded, so going back to a variant
already held costs nothing. A member is (file, method): in a package made with
``--bundle shared`` every variant is a method of one file, which is loaded once;
switching to a member not held yet loads only its method. The latency a decision uses is, in order: this
device's measured table (``restnet-bench`` output beside the package), the
manifest's device figure (measured / predicted / estimated), the host figure.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit import runtime
from toolkit.formats import LATENCY_TABLE_NAME, member_key
from toolkit.package import PackageError, open_verified, safe_path
from toolkit.preprocess import preprocess, softmax


class Package:
    """Open (and verify: schema, paths, sha256) once; load each variant at most once."""

    def __init__(self, root: str | Path, threads: int | None = None, table: str | Path | None = None,
                 dtype: str = "fp32", pte_fallback: runtime.Loader | None = None, trusted_keys=None,
                 min_sequence: int | None = None):
        """``dtype="int8"`` runs each variant's int8 file (``restnet-pack --int8``) and ranks variants by
        that file's own accuracy. ``pte_fallback``: see toolkit.runtime (a workstation without the
        torch-free .pte runtime passes restnet's loader). ``trusted_keys`` (public key files) and
        ``min_sequence`` (the installed package's): see toolkit.package.open_verified."""
        self.root, self.manifest = open_verified(root, trusted_keys, min_sequence)
        self.threads, self.dtype, self.pte_fallback = threads, dtype, pte_fallback
        task = self.manifest["task"]
        self.labels = safe_path(self.root, task["labels_file"]).read_text().splitlines()
        if self.labels != task["classes"]:  # labels.txt is not signed, the manifest's classes are
            k = next((i for i, (a, b) in enumerate(zip(self.labels, task["classes"])) if a != b),
                     min(len(self.labels), len(task["classes"])))
            raise PackageError(f"{self.root}: {task['labels_file']} does not match the manifest's task.classes "
                               f"({len(self.labels)} lines for {len(task['classes'])} classes; first difference "
                               f"at line {k + 1}): refusing labels that could name the wrong class")
        self._programs: dict[str, tuple[runtime.Infer, dict, str]] = {}  # variant id -> its method, held
        self._files: dict[str, runtime.Program] = {}  # path -> the loaded file
        self.loads = 0  # how many files were actually loaded (switching, also inside a bundle, must not add to it)
        path = Path(table) if table else self.root / LATENCY_TABLE_NAME
        self.table = json.loads(path.read_text()) if path.is_file() else None
        if self.table and self.table.get("emulated"):  # an emulator's timings are no device's latency
            self.table = None

    @property
    def variants(self) -> list[dict]:
        return self.manifest["variants"]

    def variant(self, vid: str) -> dict:
        for v in self.variants:
            if v["id"] == vid:
                return v
        raise KeyError(f"no variant {vid!r} in {self.root}; have: {', '.join(v['id'] for v in self.variants)}")

    def file_for(self, v: dict, dtype: str | None = None) -> dict:
        """The first of the variant's files of this dtype that a device runtime can run."""
        dtype = dtype or self.dtype
        for f in v["files"]:
            if f["format"] in runtime.BACKENDS and f.get("dtype", "fp32") == dtype:
                return f
        have = ", ".join(f"{f['format']} {f.get('dtype', 'fp32')}" for f in v["files"])
        hint = " (pack with --int8 to ship int8 files)" if dtype == "int8" else ""
        raise runtime.RuntimeUnavailable(f"variant {v['id']} has no {dtype} file for a device runtime "
                                         f"(files: {have}){hint}")

    def accuracy(self, v: dict) -> float:
        """The top-1 of the file that runs: an int8 file carries its own."""
        f = self.file_for(v)
        return f["accuracy"] if f.get("accuracy") is not None else v["accuracy"]

    def program(self, vid: str) -> tuple[runtime.Infer, dict, str]:
        """(infer, file entry, runtime) of the variant's method in its file: the file is loaded on first use
        (once for all the variants it holds), the method too, then both are held."""
        if vid not in self._programs:
            f = self.file_for(self.variant(vid))
            prog = self._files.get(f["path"])
            if prog is None:
                prog = runtime.open_program(safe_path(self.root, f["path"]), f["format"], self.threads,
                                            self.pte_fallback)
                self._files[f["path"]] = prog
                self.loads += 1
            self._programs[vid] = (prog.method(f.get("method")), f, prog.runtime)
        return self._programs[vid]

    @property
    def held(self) -> list[str]:
        """The variants whose method is loaded."""
        return list(self._programs)

    @property
    def files_held(self) -> list[str]:
        return list(self._files)

    def input_spec(self, vid: str) -> dict:
        return self.variant(vid).get("input") or self.manifest["input"]

    def run(self, vid: str, x: np.ndarray) -> np.ndarray:
        infer, _, _ = self.program(vid)
        return infer(x)

    def classify(self, image, vid: str, top: int = 1) -> list[tuple[str, float]]:
        """[(label, probability)] best first, for one image (path, PIL image or uint8 array)."""
        _, f, _ = self.program(vid)
        x = preprocess(image, self.input_spec(vid), f["input_layout"])
        p = softmax(self.run(vid, x))[0]
        order = np.argsort(-p)[:top]
        return [(self.labels[k], float(p[k])) for k in order]

    def latency_ms(self, v: dict) -> tuple[float, str]:
        """(ms, where it comes from) for decisions: this device's table, else the manifest."""
        f = self.file_for(v)
        if self.table:
            entry = self.table.get("variants", {}).get(member_key(f))
            if entry:
                return entry["p50_ms"], f"measured here ({self.table.get('device', '?')})"
        lat = v["latency"][-1]
        if self.dtype != "fp32":  # the manifest's figures are the fp32 file's; restnet-bench times every file
            return lat["ms"], f"{lat['source']} ({lat['where']}) for the fp32 file; run restnet-bench for {self.dtype}"
        return lat["ms"], f"{lat['source']} ({lat['where']})"


PROFILE = "profile"  # a budget taken from the package's device profile


class Switcher:
    """Holds an active variant: the most accurate one that meets the latency and RAM budgets.

    By default the latency budget is the profile's ``latency_target_ms`` (the limit the package's ladder
    was planned on); pass a number to walk down the ladder (throttling, battery saver, a busy CPU), or
    None for no latency limit."""

    def __init__(self, package: Package, latency_ms: float | None | str = PROFILE, ram_mb: float | None = None):
        self.package = package
        self.active: str | None = None
        self.within_budget = True
        if latency_ms == PROFILE:
            latency_ms = package.manifest["profile"].get("latency_target_ms")
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
            best = max(ok, key=lambda v: (self.package.accuracy(v), -self.package.latency_ms(v)[0]))
        else:
            best = min(self.package.variants, key=lambda v: self.package.latency_ms(v)[0])
        self.package.program(best["id"])
        self.active = best["id"]
        return self.active

    def classify(self, image, top: int = 1) -> list[tuple[str, float]]:
        return self.package.classify(image, self.active, top)
