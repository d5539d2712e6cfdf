"""The import graph of ``syncd``: no cycle, and no import from a lower layer to a higher one.

Every ``import`` in every module counts, at any depth: module level, inside
functions, and inside ``if TYPE_CHECKING:`` blocks (an import needed only for
types still couples the two modules; a Protocol in the lower module is the way
out). ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg``; importing a submodule is not counted as importing its
package's ``__init__`` (Python runs it, but it is not a dependency the code
chose).

Layers, low to high: a module may import its own layer and the ones below.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import syncd

ROOT = Path(syncd.__file__).parent

# Low to high. A module belongs to the first layer naming it or a package above
# it; modules named nowhere (the daemon, the CLI, status, plan, retry, demo,
# supervise, server, present, progress, health, sampledata …) form the top layer.
LAYERS: list[tuple[str, ...]] = [
    # the package itself (its __version__), and helpers that import nothing of syncd above them
    (
        "syncd",
        "syncd.errors",
        "syncd.failpoints",
        "syncd.log",
        "syncd.streams",
        "syncd.quiet",
        "syncd.extras",
        "syncd.protect",
        "syncd.safeopen",
    ),
    ("syncd.config",),
    ("syncd.store",),
    ("syncd.formats",),  # platform input formats: converters over packaged files
    ("syncd.metrics",),  # counters the HTTP clients of the remotes feed
    ("syncd.remotes",),
    ("syncd.pipeline",),
]


def _module_name(path: Path) -> str:
    parts = ["syncd", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(path: Path, name: str, modules: dict[str, Path]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in modules else base


def import_graph() -> dict[str, set[str]]:
    """module → the syncd modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path, name, modules) if m in modules and m != name}
    return graph


def layer(module: str) -> int:
    for i, names in enumerate(LAYERS):
        for n in names:
            if module == n or (n != "syncd" and module.startswith(n + ".")):
                return i
    return len(LAYERS)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_the_imports() -> None:
    graph = import_graph()
    assert "syncd.pipeline.strategies" in graph["syncd.pipeline.upload"]
    assert "syncd.store.models" in graph["syncd.store.migrations"]  # from syncd.store import models
    assert "syncd.failpoints" in graph["syncd.store.store"]  # from syncd import failpoints
    assert "syncd.store.pg_coordinator" in graph["syncd.store.store"]  # inside a function
    assert layer("syncd.store.bulk") < layer("syncd.remotes.http") < layer("syncd.pipeline.pull")
    assert layer("syncd") == 0 and layer("syncd.daemon") == len(LAYERS)


def test_no_import_cycle() -> None:
    assert _cycles(import_graph()) == []


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    graph = import_graph()
    upward = sorted(
        f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
        for m, deps in graph.items()
        for d in deps
        if layer(d) > layer(m)
    )
    assert upward == []


def test_a_cycle_and_an_upward_import_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert layer("syncd.store.store") > layer("syncd.config")
