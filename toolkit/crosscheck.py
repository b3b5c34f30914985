"""python -m toolkit.crosscheck PACKAGE REFERENCE.npz: this machine's outputs vs the workstation's eager ones.

Torch-free (numpy + the device runtimes), so it runs on a board or in the
aarch64 stand-in (``scripts/aarch64-standin.sh check``). In order: open the
package (schema, path safety, every sha256), let the switcher pick and switch
variants, run every member file on the reference's inputs (the exact float
tensors eager saw, from ``python -m restnet.package.reference`` on the
workstation) and compare with the eager logits, then (``--bench-runs`` > 0)
run restnet-bench. Gates, the export's own: an fp32 file must have
max |Δ| <= 1e-4 x max(1, max |eager logit|) and top-1 agreement >= 99.9 %;
an int8 file's agreement is reported (with the workstation's figure beside
it), not gated. Exit 1 when a gate fails.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from toolkit.formats import AGREEMENT_FLOOR, TOLERANCE, member_key  # the gates the export had to pass on x86


def load_reference(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The workstation's eager reference (.npz, no pickles); anything else is a PackageError that
    names the file and the command that makes a good one."""
    from toolkit.package import PackageError

    how = "make it with python -m restnet.package.reference PACKAGE OUT.npz on the workstation"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise PackageError(f"{path}: not a readable eager reference ({err}); {how}") from None
    if not isinstance(meta, dict) or meta.get("format") != "restnet-eager-reference":
        raise PackageError(f"{path}: not a restnet eager reference; {how}")
    return meta, arrays


def compare(got: np.ndarray, want: np.ndarray, dtype: str) -> dict:
    diff = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    agree = float((got.argmax(-1) == want.argmax(-1)).mean())
    scaled = diff / max(1.0, scale)
    ok = None if dtype != "fp32" else bool(scaled <= TOLERANCE and agree >= AGREEMENT_FLOOR)
    return {"max_abs_diff": diff, "max_abs_logit": scale, "scaled_diff": scaled, "top1_agreement": agree,
            "n": int(len(got)), "gate": ok}


def run_member(pkg, member: dict, inputs: np.ndarray) -> tuple[np.ndarray, str, float]:
    """The member file on every input, one at a time (files are exported for batch 1)."""
    from toolkit import runtime
    from toolkit.package import safe_path

    threads = pkg.manifest["profile"]["threads"]
    run, version = runtime.load(safe_path(pkg.root, member["path"]), member["format"], threads,
                                method=member.get("method"))
    x = inputs.transpose(0, 2, 3, 1) if member["input_layout"] == "NHWC" else inputs
    t = time.perf_counter()
    out = np.concatenate([run(np.ascontiguousarray(x[k:k + 1])) for k in range(len(x))])
    return out.astype(np.float32), version, time.perf_counter() - t


def preprocess_diff(meta: dict, arrays: dict) -> list[float]:
    """Per input spec: max |toolkit preprocessing (Pillow) - the workstation's inputs (torch)|."""
    from toolkit.preprocess import preprocess

    images = arrays["images"]
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)  # N,C,H,W (restnet's storage) -> N,H,W,C
    out = []
    for s, spec in enumerate(meta["specs"]):
        r = spec["resolution"]
        resize = {"size": [r, r], "interpolation": spec["interpolation"], "output": spec.get("output", "float32")}
        full = {"resize": resize, "scale": 1 / 255,
                "mean": spec["mean"], "std": spec["std"], "layout": "NCHW"}
        mine = np.concatenate([preprocess(im, full) for im in images])
        out.append(float(np.abs(mine - arrays[f"inputs_{s}"]).max()))
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m toolkit.crosscheck", description=__doc__.splitlines()[0])
    ap.add_argument("package")
    ap.add_argument("reference", help="the workstation's .npz (python -m restnet.package.reference PACKAGE OUT)")
    ap.add_argument("--bench-runs", type=int, default=0, help="also run restnet-bench, this many runs per file")
    ap.add_argument("--table-out", default=None, help="where restnet-bench writes its table (default: a temp dir)")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    return ap.parse_args(argv)


def _machine() -> str:
    """Print what runs the check; returns the machine the results are for (the emulated one, if any)."""
    emulated = os.environ.get("RESTNET_EMULATED", "")
    print(f"machine: {platform.machine()}{f' EMULATED: {emulated}' if emulated else ''}, "
          f"Python {platform.python_version()}")
    return emulated or platform.machine()


def _open(path: str):
    """The package, verified (schema, path safety, every file's size and sha256), or a PackageError."""
    from toolkit.switcher import Package

    t0 = time.perf_counter()
    pkg = Package(path)
    m = pkg.manifest
    n_files = sum(len(v["files"]) for v in m["variants"]) + len(m.get("probes") or [])
    print(f"package {m['profile']['name']} ({m['created']}): schema {m['schema_version']} ok, "
          f"{n_files} files, paths and sha256 verified ({time.perf_counter() - t0:.1f} s)")
    return pkg


def _not_for(m: dict, meta: dict) -> str | None:
    """Why the reference is not this package's (another pack, or a file the package lacks), or None."""
    shas = {member_key(f) for v in m["variants"] for f in v["files"]}
    stale = [mb["path"] for mb in meta["members"] if member_key(mb) not in shas]
    if stale or meta["package_created"] != m["created"]:
        return f"the reference was made for another package ({meta['package_created']}; files {stale})"
    return None


def _switch(pkg) -> bool:
    """The switcher: most accurate variant with no budget, then the fastest one's latency as the budget,
    then no budget again; ok when it is back on the first variant without loading any file twice."""
    from toolkit.switcher import Switcher

    sw = Switcher(pkg, latency_ms=None)
    first = sw.active
    fastest = min(pkg.variants, key=lambda v: pkg.latency_ms(v)[0])
    sw.set_budget(latency_ms=pkg.latency_ms(fastest)[0])
    sw.set_budget(latency_ms=None)
    switched = sw.active == first and pkg.loads == len(pkg.files_held)
    print(f"switcher: {first} -> {fastest['id']} (budget {pkg.latency_ms(fastest)[0]:.2f} ms) -> {sw.active}; "
          f"programs loaded {pkg.loads}, held {len(pkg.held)} ({'ok' if switched else 'RELOADED'})")
    return switched


def _check_members(pkg, meta: dict, arrays: dict) -> tuple[list[dict], bool]:
    """Every member file against the eager logits, a table line each; returns the rows of the members
    that ran, and whether any failed (its gate, or it cannot run here)."""
    from toolkit.runtime import RuntimeUnavailable

    rows, failed = [], False
    print(f"\nevery member vs the workstation's eager output on {meta['n']} images ({meta['members'][0]['split']}):")
    print(f"{'file':48} {'dtype':5} {'max |Δ|':>9} {'max|logit|':>10} {'Δ/max(1,|l|)':>12} "
          f"{'top-1 agree':>11} {'x86 agree':>9}  gate")
    for k, mb in enumerate(meta["members"]):
        name = mb["path"] + (f":{mb['method']}" if mb.get("method") else "")
        try:
            got, version, secs = run_member(pkg, mb, arrays[f"inputs_{mb['spec']}"])
        except RuntimeUnavailable as err:
            print(f"{name:48} {mb['dtype']:5} cannot run here: {err}")
            failed = True
            continue
        c = compare(got, arrays[f"logits_{k}"], mb["dtype"])
        gate = "report" if c["gate"] is None else "PASS" if c["gate"] else "FAIL"
        failed |= c["gate"] is False
        x86 = mb.get("x86_top1_agreement")
        print(f"{name:48} {mb['dtype']:5} {c['max_abs_diff']:9.2e} {c['max_abs_logit']:10.3f} "
              f"{c['scaled_diff']:12.2e} {c['top1_agreement']:11.2%} {'' if x86 is None else f'{x86:.2%}':>9}  {gate}")
        rows.append({**mb, **c, "runtime": version, "seconds": secs})
    print(f"gates: fp32 max |Δ| <= {TOLERANCE:g} x max(1, max |eager logit|) and top-1 agreement >= "
          f"{AGREEMENT_FLOOR:.1%}; int8 agreement with eager fp32 reported (x86 agree: the workstation's "
          "figure vs fp32 eager on its validation split)")
    if rows:
        print(f"runtimes: {'; '.join(sorted({r['runtime'] for r in rows}))}")
    return rows, failed


def _bench(pkg, runs: int, table_out: str | None) -> dict | None:
    """restnet-bench's table for the package (``runs`` per file), printed; None when ``runs`` is 0."""
    if runs <= 0:
        return None
    from toolkit.bench import _print_table, run_bench

    out = table_out or Path(os.environ.get("TMPDIR", "/tmp")) / "latency-table.json"
    _, bench = run_bench(pkg.root, runs=runs, warmup=1, out=out, progress=lambda s: print(s, file=sys.stderr))
    _print_table(bench)
    print(f"latency table: {out}")
    return bench


def main(argv: list[str] | None = None) -> int:
    from toolkit.package import PackageError

    a = _parse(argv)
    where = _machine()
    try:
        pkg = _open(a.package)
        meta, arrays = load_reference(a.reference)
    except PackageError as err:
        print(f"FAIL: {err}")
        return err.exit_code
    if (why := _not_for(pkg.manifest, meta)) is not None:
        print(f"FAIL: {why}")
        return 1
    switched = _switch(pkg)
    pre = preprocess_diff(meta, arrays)
    print("toolkit preprocessing vs the workstation's inputs: max |Δ| " + ", ".join(f"{d:.2g}" for d in pre)
          + " (informational; the check feeds the workstation's exact inputs)")
    rows, members_failed = _check_members(pkg, meta, arrays)
    bench = _bench(pkg, a.bench_runs, a.table_out)
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": where, "members": rows, "preprocess_max_abs_diff": pre,
                                            "switcher_ok": switched, "bench": bench}, indent=2))
    failed = not switched or members_failed
    print("RESULT:", "FAIL" if failed else "PASS")
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
