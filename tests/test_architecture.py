"""The shape of the code: imports point one way, the device side stays apart, functions stay short,
comments and docstrings say why, not when.

Read with ``ast`` (nothing is imported), every import counts, including the ones inside
functions: a lazy import hides a cycle from Python, not from a reader.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60  # about a screen
# A note on history in a comment says when, and goes stale; the why is what a reader needs there.
COMMIT_LIKE = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")  # hex, letters and digits
DATE_LIKE = re.compile(r"\b20[0-9]{2}-(0[1-9]|1[0-2])(-[0-3][0-9])?\b")  # 2026-12, 2026-12-07
NOT_COMMITS = {"ed25519"}  # the signature scheme

# Top to bottom; a module may import its own layer and the layers below it, never one above. A name
# stands for that module and, if it is a package, everything in it; the most specific name decides a
# module's layer, and every module of restnet is named by itself or its subpackage (the bare name
# `restnet` is the root package alone: its version). Within a layer, no cycle between the names either.
# docs/architecture.md points here: this list is the one statement of the layers.
LAYERS = [
    ("restnet.cli",),                           # the command line
    ("restnet.commands",),                      # one module per group of verbs
    ("restnet.package.build",),                 # restnet-pack: runs the stages in order
    ("restnet.pipeline",),                      # the method's cached stages for one experiment
    ("restnet.package",),                       # the packing stages (request, exports, manifest, ...)
    ("restnet.profiles",),                      # device profiles, whose backends the export formats name
    ("restnet.export",                          # export formats, int8 routes and the export gate
     "restnet.firmware_parity"),                # the C++ runner against the toolkit (tests, benchmarks)
    ("restnet.training", "restnet.cka",         # the method's steps: adapt and stitch training, CKA,
     "restnet.cost", "restnet.part_timing",     # the cost model (and its host latency table),
     "restnet.selection", "restnet.constraints"),  # Algorithm 1 and the rules beyond it
    ("restnet.data", "restnet.stitching"),      # data sets and preprocessing; the stitched model
    ("restnet.anchors",),                       # the anchor models: registry, blocks, weights, stats
    ("restnet", "restnet._compat", "restnet.atomic", "restnet.cache", "restnet.distributed",
     "restnet.input_spec", "restnet.paths", "restnet.progress", "restnet.timing"),  # base modules
    ("toolkit",),                               # the device side, shared with the workstation (torch-free)
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for top in ("restnet", "toolkit") for p in sorted((ROOT / top).rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name inside one) stands for, if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    """Every module of ours that ``module`` imports, anywhere in the file."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module if is_pkg else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {m for m in map(_resolve, names) if m is not None and m != module}
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _entry(module: str, layers: list[tuple[str, ...]]) -> tuple[int, str]:
    """The layer and the name in it that place ``module``: its most specific name."""
    found = [(len(name), k, name) for k, group in enumerate(layers) for name in group
             if module == name or module.startswith(name + ".")]
    assert found, f"{module} is in no layer"
    return max(found)[1:]


def _upward(graph: dict[str, set[str]], layers: list[tuple[str, ...]]) -> list[str]:
    """Every import that points at a higher layer than its module's, as "module -> imported"."""
    def layer(m: str) -> int:
        return _entry(m, layers)[0]
    return sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if layer(d) < layer(m))


def _between(graph: dict[str, set[str]], layers: list[tuple[str, ...]]) -> dict[str, set[str]]:
    """The import graph of the names in ``layers`` (subpackages, base modules): an arrow where any
    module of one imports any module of the other."""
    def name(m: str) -> str:
        return _entry(m, layers)[1]
    out: dict[str, set[str]] = {name(m): set() for m in graph}
    for m, deps in graph.items():
        out[name(m)] |= {name(d) for d in deps} - {name(m)}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_imports_it_should():
    """Guard the walker itself: known arrows must be found, or every check below passes vacuously."""
    assert "restnet.package.build" in GRAPH["restnet.commands.pack"]
    assert "restnet.export.pte" in GRAPH["restnet.export"]
    assert "toolkit.package" in GRAPH["restnet.export"]
    assert "restnet.cache" in GRAPH["restnet.training.stitch"]


def test_the_checks_report_an_upward_import_and_cycles():
    """Guard the checks: on a small graph with one upward arrow and a cycle between two subpackages of
    one layer (no cycle between their modules), each check says so."""
    layers = [("app",), ("lib.a", "lib.b"), ("base",)]
    graph = {"app": {"lib.a.x"}, "lib.a.x": {"lib.b.y"}, "lib.b.y": {"base"}, "lib.b.z": {"lib.a"},
             "lib.a": set(), "base": {"app"}}
    assert _upward(graph, layers) == ["base -> app"]
    assert _cycles(graph) == [["app", "base", "lib.a.x", "lib.b.y"]]
    assert _cycles(_between(graph, layers)) == [["app", "base", "lib.a", "lib.b"]]
    graph["base"] = set()  # the upward arrow gone, the cycle between lib.a and lib.b stays
    assert _upward(graph, layers) == [] and _cycles(graph) == []
    assert _cycles(_between(graph, layers)) == [["lib.a", "lib.b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer():
    """A new module is placed on purpose: by its own name or its subpackage's, not by the bare root."""
    assert [m for m in MODULES if _entry(m, LAYERS)[1] == "restnet" and m != "restnet"] == []


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_no_import_cycles_between_subpackages():
    """Modules may form no cycle, and neither may the subpackages and base modules they live in."""
    assert _cycles(_between(GRAPH, LAYERS)) == []


def test_the_device_side_never_imports_restnet_or_torch():
    """toolkit/ runs where restnet and torch are not installed (a loader it needs is passed in)."""
    bad = {m: sorted(d for d in deps if d.startswith("restnet")) for m, deps in GRAPH.items()
           if m.startswith("toolkit")}
    assert {m: d for m, d in bad.items() if d} == {}
    for m, path in MODULES.items():
        if m.startswith("toolkit"):
            tree = ast.parse(path.read_text())
            names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert not {n for n in names if n.split(".")[0] in ("torch", "restnet")}, m


def test_imports_never_point_up_the_layers():
    assert _upward(GRAPH, LAYERS) == []


def _long_functions() -> list[str]:
    out = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_is_longer_than_a_screen():
    """In restnet/ and toolkit/: a function that does not fit on a screen usually holds more than one
    step; name the steps."""
    assert _long_functions() == []


def _prose(source: str) -> list[tuple[int, str]]:
    """Every comment and docstring in ``source``, with the line it starts on; the code is left out, so a
    hex constant or a digest in it is not taken for a note."""
    out = [(t.start[0], t.string) for t in tokenize.generate_tokens(io.StringIO(source).readline)
           if t.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if (doc := ast.get_docstring(node, clean=False)) is not None:
                out.append((node.body[0].lineno, doc))
    return out


def _history_notes(source: str) -> list[str]:
    """"line: text" for every commit hash or date in a comment or docstring of ``source``."""
    found = []
    for line, text in _prose(source):
        for m in [*COMMIT_LIKE.finditer(text), *DATE_LIKE.finditer(text)]:
            if m.group() not in NOT_COMMITS:
                found.append(f"{line + text.count(chr(10), 0, m.start())}: {m.group()}")
    return sorted(found)


def test_the_history_check_reads_comments_and_docstrings_only():
    source = ('"""A module.\n\nFixed on 2026-12-07."""\n'
              'KEY = "c911afb0"  # the bug c911afb fixed\n'
              'MASK, SIGNED = 0xdeadbeef12, "ed25519"\n'
              'def f():\n    """Since 9f3e2d1a, not ed25519; deadbeef is a word."""\n')
    assert _history_notes(source) == ["3: 2026-12-07", "4: c911afb", "7: 9f3e2d1a"]


def test_no_commit_hash_or_date_in_comments_and_docstrings():
    """Say why, not when: the history (git log, CHANGELOG.md) holds the when and the commit."""
    found = [f"{path.relative_to(ROOT)}:{note}" for path in MODULES.values()
             for note in _history_notes(path.read_text())]
    assert found == []
