"""The package's import graph: no cycles (module-level or deferred imports alike, through package ``__init__`` files
too), no private names borrowed."""

import ast
from pathlib import Path

import ssl_mix

PACKAGE = Path(ssl_mix.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """The import statements under ``if TYPE_CHECKING:``: read by type checkers, never run."""
    guarded = [node for node in ast.walk(tree) if isinstance(node, ast.If)
               and "TYPE_CHECKING" in (getattr(node.test, "id", None), getattr(node.test, "attr", None))]
    return {inner for node in guarded for stmt in node.body for inner in ast.walk(stmt)
            if isinstance(inner, (ast.Import, ast.ImportFrom))}


def _imports(name: str, *, runtime: bool = False) -> list[tuple[str, list[str], int]]:
    """``(imported module, imported names, line)`` for every ssl_mix import in module ``name``, at any depth;
    ``runtime``: only those that run (not those under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(MODULES[name].read_text())
    skipped = _type_checking_only(tree) if runtime else set()
    found = []
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("ssl_mix")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssl_mix"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                # `from ssl_mix import distributed` imports a module; `from ssl_mix import Config` a name.
                found.append((sub, [], node.lineno) if sub in MODULES else (node.module, [alias.name], node.lineno))
    return found


def _packages_above(name: str) -> set[str]:
    """``"a.b.c"`` -> ``{"a", "a.b"}``."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _executed(importer: str, target: str) -> set[str]:
    """The modules whose code ``importer`` runs (or needs run) by importing ``target``: ``target`` itself and the
    ``__init__`` of every package above it, except the packages above ``importer``, which Python has already
    started when ``importer`` runs (its normal loading order, not a cycle). An import of such a package by name
    (``from ssl_mix import __version__`` in a module that ``ssl_mix/__init__.py`` imports) is kept: it reads a
    name the package may not have defined yet."""
    return ({target} | (_packages_above(target) - _packages_above(importer))) - {importer}


def _graph() -> dict[str, set[str]]:
    graph = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _, _ in _imports(name, runtime=True):
            graph[name] |= {module for module in _executed(name, target) if module in MODULES}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_an_import_runs_the_packages_above_its_target_but_not_the_importers_own():
    assert _executed("p.m", "p.q.r") == {"p.q.r", "p.q"}
    assert _executed("p.q.m", "p.q.r") == {"p.q.r"}
    assert _executed("p.m", "p") == {"p"}  # a name read back from the package that imports p.m
    assert _executed("p", "p.m") == {"p.m"}


def test_imports_for_type_checkers_only_are_no_edges():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a import b\nfrom c import d\n")
    assert [node.module for node in _type_checking_only(tree)] == ["a"]


def test_no_private_name_is_imported_from_another_module():
    borrowed = [f"{name}:{line} imports {target}.{item}"
                for name in MODULES for target, items, line in _imports(name)
                for item in items if item.startswith("_") and not item.startswith("__") and target != name]
    assert not borrowed, "private names imported across modules:\n" + "\n".join(borrowed)
