"""The package's import graph: no cycles (module-level or deferred imports alike), no private names borrowed."""

import ast
from pathlib import Path

import ssl_mix

PACKAGE = Path(ssl_mix.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str) -> list[tuple[str, list[str], int]]:
    """``(imported module, imported names, line)`` for every ssl_mix import in module ``name``, at any depth."""
    tree = ast.parse(MODULES[name].read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("ssl_mix")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssl_mix"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                # `from ssl_mix import distributed` imports a module; `from ssl_mix import Config` a name.
                found.append((sub, [], node.lineno) if sub in MODULES else (node.module, [alias.name], node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _, _ in _imports(name):
            if target in MODULES and target != name:
                graph[name].add(target)
    # Importing a module runs its package's __init__ first.
    for name in MODULES:
        parent = name.rpartition(".")[0]
        if parent and parent in MODULES and parent != name:
            graph[name].add(parent)
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


def _without_package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` importing its own submodules and a submodule needing its package's ``__init__``
    to run first is Python's normal loading order, not a cycle; what counts is a submodule importing names back
    from a package whose ``__init__`` (directly or not) imports that submodule."""
    out = {}
    for name, targets in graph.items():
        out[name] = {t for t in targets if not name.startswith(t + ".")}
    return out


def test_the_import_graph_has_no_cycle():
    cycle = _find_cycle(_without_package_edges(_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_name_is_imported_from_another_module():
    borrowed = [f"{name}:{line} imports {target}.{item}"
                for name in MODULES for target, items, line in _imports(name)
                for item in items if item.startswith("_") and not item.startswith("__") and target != name]
    assert not borrowed, "private names imported across modules:\n" + "\n".join(borrowed)
