"""The package's import graph has no circles.

Every module's imports of bcosdiff modules, those inside functions included (they run later,
but a circle closed through one is still a circle of calls), are read with :mod:`ast`; only
those under ``if TYPE_CHECKING`` are left out. Importing
``a.b.c`` also imports the packages ``a`` and ``a.b`` (their ``__init__``), except the
packages the importing module already lives in, which Python has started importing first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bcosdiff

ROOT = Path(bcosdiff.__file__).resolve().parent


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(node: ast.AST):
    """Every import statement below ``node``, except under ``if TYPE_CHECKING``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        else:
            yield from _imports(child)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: modules its import runs}`` within the package at ``root``."""
    paths = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        named = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                named.update(a.name for a in node.names)
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                named.add(sub if sub in paths else target)
        edges = set()
        for target in named:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                module = ".".join(parts[:i])
                implicit_parent = module != target and name.startswith(module + ".")
                if module in paths and module != name and not implicit_parent:
                    edges.add(module)
        graph[name] = edges
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    order, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return circles


def test_the_package_has_no_import_circles():
    graph = import_graph()
    assert "bcosdiff.report.figures" in graph and len(graph) > 50
    assert "bcosdiff.explain.explanation" in graph["bcosdiff.report.figures"]
    assert import_circles(graph) == []


def test_the_circle_finder_finds_a_circle(tmp_path):
    """The check itself: a package whose ``a`` imports ``b`` and ``b`` imports ``a`` (through
    the package's ``__init__``) is reported, and so is ``c`` ↔ ``d`` through an import inside a
    function; TYPE_CHECKING imports are not."""
    package = tmp_path / "bcosdiff"
    package.mkdir()
    (package / "__init__.py").write_text("from .a import thing\n")
    (package / "a.py").write_text("from .b import other\nthing = 1\n")
    (package / "b.py").write_text("from . import a\nother = 2\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import x\n"
        "def f():\n    from .d import x\n"
    )
    (package / "d.py").write_text("from .c import f\n")
    (package / "e.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .f import y\n"
    )
    (package / "f.py").write_text("from .e import z\n")
    circles = import_circles(import_graph(package))
    assert circles == [["bcosdiff.a", "bcosdiff.b"], ["bcosdiff.c", "bcosdiff.d"]]


def test_calls_go_one_way_between_the_layers():
    """Attribution never imports its presentation; the report reads explanations and nothing
    upstream of them (no model loading, sampling, service or command line)."""
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("bcosdiff.explain"):
            assert not any(t.startswith("bcosdiff.report") for t in targets), module
        if module.startswith("bcosdiff.report"):
            upstream = ("pipeline", "service", "cli", "serve", "evaluation", "training")
            assert not any(t.split(".")[1] in upstream for t in targets), module
    # A request flows cli / serve → service → pipeline → networks, diffusion, text: nothing
    # below the service calls back up into it.
    below = ("pipeline", "networks", "diffusion", "text", "bcos", "request")
    for module, targets in graph.items():
        if module.split(".")[1:2] in [[layer] for layer in below]:
            assert not any(t.split(".")[1:2] in (["service"], ["cli"], ["serve"]) for t in targets)
