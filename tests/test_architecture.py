"""The shape of the code: imports point one way, the device side stays apart, functions stay short.

Read with ``ast`` (nothing is imported), every import counts, including the ones inside
functions: a lazy import hides a cycle from Python, not from a reader.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60  # about a screen

# Top to bottom; a module may import its own layer and the layers below it, never one above.
# The most specific prefix decides a module's layer.
LAYERS = [
    ("restnet.cli",),                           # the command line
    ("restnet.commands",),                      # one module per group of verbs
    ("restnet.package.build",),                 # restnet-pack: runs the stages in order
    ("restnet.pipeline",),                      # the method's cached stages for one experiment
    ("restnet.package",),                       # the packing stages (request, exports, manifest, ...)
    ("restnet",),                               # the method: anchors, data, CKA, cost, selection, training, export
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


def _layer(module: str) -> int:
    best = max((len(prefix), k) for k, group in enumerate(LAYERS) for prefix in group
               if module == prefix or module.startswith(prefix + "."))
    return best[1]


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
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


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
    upward = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps if _layer(d) < _layer(m))
    assert upward == []


def _long_functions() -> list[str]:
    out = []
    for m, path in MODULES.items():
        if not m.startswith("restnet"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_in_restnet_is_longer_than_a_screen():
    """A function that does not fit on a screen usually holds more than one step; name the steps."""
    assert _long_functions() == []
