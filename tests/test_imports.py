"""fakepop's modules import one another without a cycle, type-only imports included.

A cycle makes what a module holds depend on which module was imported first; a
type-only one (under ``if TYPE_CHECKING:``) is the same knot, only hidden from the
interpreter. Every module is parsed, not imported, so every import counts, even
one inside a function. A package's ``__init__`` is an edge only where it is
imported for what it holds: Python runs it before any of its modules anyway.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import fakepop

ROOT = Path(fakepop.__file__).parent


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The fakepop modules ``path`` imports anywhere in it, relative imports resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            bases = [alias.name for alias in node.names]
            found.update(base for base in bases if base in modules)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            # "from fakepop.mail import store" names a module; "from fakepop.mail import Mailbox"
            # names what fakepop.mail holds.
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            found |= submodules or ({base} & modules)
    found.discard(name)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(path, root) for path in paths}
    return {module_name(path, root): imports(path, root, modules) for path in paths}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan), as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_path(min(group), group, edges) for group in groups]


def _path(start: str, group: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest way from ``start`` back to itself within ``group``."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(edges[node] & group):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def test_no_module_of_fakepop_is_in_an_import_cycle() -> None:
    found = cycles(graph(ROOT))
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_graph_covers_the_package() -> None:
    edges = graph(ROOT)
    assert {"fakepop.server", "fakepop.protocol.session", "fakepop.mail.store"} <= set(edges)
    assert "fakepop.protocol.session" in edges["fakepop.server"]


def test_a_type_only_import_counts(tmp_path: Path) -> None:
    package = tmp_path / "fakepop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from fakepop.b import B\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fakepop import a\n"
    )
    (package / "c.py").write_text("from . import a\n")
    assert cycles(graph(package)) == [["fakepop.a", "fakepop.b", "fakepop.a"]]
