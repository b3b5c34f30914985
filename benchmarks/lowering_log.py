"""Where the test suite's time goes: every XNNPACK lowering and every verified export, with the test that asked.

A pytest plugin (one JSON line per call, appended to $LOWERING_LOG) and, run as a script, its summary per test
module: calls and seconds of each kind, and the fp32 exports made more than once (same weights and format: work a
shared cache could have saved). A module-scoped fixture's calls are filed under the first test that used it.

    PYTHONPATH=benchmarks LOWERING_LOG=/tmp/lowering.jsonl bash scripts/test.sh -p lowering_log
    .venv/bin/python benchmarks/lowering_log.py /tmp/lowering.jsonl

Only in-process calls are seen (not those of packs a test starts as a process, e.g. tests/test_interrupt.py).
"""
from __future__ import annotations

import collections
import json
import os
import time

import pytest

LOG = os.environ.get("LOWERING_LOG", "lowering.jsonl")
_current = {"test": None}


@pytest.hookimpl(tryfirst=True)  # a first-result hook: called before the runner's own, which ends the chain
def pytest_runtest_protocol(item, nextitem):
    _current["test"] = item.nodeid


def _write(rec: dict) -> None:
    with open(LOG, "a") as f:
        f.write(json.dumps({"test": _current["test"], "pid": os.getpid(), **rec}) + "\n")


def _timed(mod, name: str, kind: str, describe=None) -> None:
    real = getattr(mod, name)

    def wrapper(*a, **k):
        t = time.perf_counter()
        out = real(*a, **k)
        _write({"kind": kind, "s": round(time.perf_counter() - t, 2), **(describe(*a) if describe else {})})
        return out

    setattr(mod, name, wrapper)


def _export_args(model, example, fmt, *_):
    from restnet import cache

    return {"digest": cache.state_digest(model)[:16], "fmt": fmt, "shape": list(example.shape)}


def pytest_configure(config):
    import restnet.export.pte as pte
    import restnet.package.exports as exports

    _timed(exports, "export_verified", "fp32", _export_args)  # called on a cache miss only
    _timed(exports, "int8_file", "int8_file")
    _timed(pte, "lower", "lower")  # every .pte: files, probes, int8, bundles, the anchors' timing files


def summary(path: str) -> None:
    recs = [json.loads(line) for line in open(path)]
    by = collections.defaultdict(collections.Counter)
    for r in recs:
        m = (r["test"] or "?").split("::")[0]
        by[m][f"{r['kind']} n"] += 1
        by[m][f"{r['kind']} s"] += r["s"]
    print(f"{'module':40s} " + "  ".join(f"{k:>12s}" for k in ("lower n", "lower s", "fp32 n", "fp32 s",
                                                                   "int8_file n", "int8_file s")))
    for m, c in sorted(by.items(), key=lambda kv: -kv[1]["lower s"]):
        print(f"{m:40s} " + "  ".join(f"{c[k]:12.0f}" for k in ("lower n", "lower s", "fp32 n", "fp32 s",
                                                                   "int8_file n", "int8_file s")))
    print(f"lowering in all: {sum(r['s'] for r in recs if r['kind'] == 'lower'):.0f} s")
    seen = collections.defaultdict(list)
    for r in recs:
        if r["kind"] == "fp32":
            seen[(r["digest"], r["fmt"])].append(f"{r['test'].split('::')[0]} {r['s']} s")
    for (digest, fmt), where in seen.items():
        if len(where) > 1:
            print(f"exported {len(where)}x: {digest} {fmt}: {'; '.join(where)}")


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Summarise a lowering log per test module (see the module).")
    ap.add_argument("log", nargs="?", default=LOG, help="the JSON-lines file the plugin wrote [default: $LOWERING_LOG "
                                                         "or lowering.jsonl]")
    summary(ap.parse_args().log)


if __name__ == "__main__":
    main()
