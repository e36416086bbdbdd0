"""The package's import graph: no cycles (module-level or deferred imports alike, through package ``__init__`` files
too), no private names borrowed."""

import ast
import re
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


def _type_checking_exports() -> dict[str, str]:
    """``{name: module}`` of the ``if TYPE_CHECKING:`` imports of ``ssl_mix/__init__.py``."""
    tree = ast.parse(MODULES["ssl_mix"].read_text())
    return {alias.name: node.module for node in _type_checking_only(tree) if isinstance(node, ast.ImportFrom)
            for alias in node.names}


def test_every_public_name_resolves_from_its_module():
    import importlib

    exports = ssl_mix._EXPORTS
    assert set(exports) | {"__version__"} == set(ssl_mix.__all__)
    assert _type_checking_exports() == exports  # what type checkers read is what runs
    for name in ssl_mix.__all__:
        value = getattr(ssl_mix, name)
        assert name == "__version__" or value is getattr(importlib.import_module(exports[name]), name)
    assert set(ssl_mix.__all__) <= set(dir(ssl_mix))
    namespace: dict = {}
    exec("from ssl_mix import *", namespace)
    assert set(ssl_mix.__all__) <= set(namespace)


def test_unknown_names_are_attribute_errors_and_submodules_load_on_access():
    import pytest

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        ssl_mix.nope  # noqa: B018
    assert ssl_mix.atomic.__name__ == "ssl_mix.atomic"


def test_importing_the_package_and_the_config_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, ssl_mix, ssl_mix.config, ssl_mix.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "'torch'" not in out.stdout and "'timm'" not in out.stdout, out.stdout


# Modules of the command-line layer, which name flags; and flags of other programs that library errors may name.
_CLI_MODULES = {"ssl_mix.cli", "ssl_mix.config.flags", "ssl_mix.__main__"}
_OTHER_PROGRAMS_FLAGS = {"--nproc_per_node", "--nnodes"}  # torchrun's


def _raised_flags(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, flag)`` for each ``--flag`` spelled in the text of a ``raise`` statement."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for inner in ast.walk(node.exc):
                if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    text = inner.value.split("ssl-mix ")[0]  # a whole command to run names its flags, rightly
                    found += [(node.lineno, flag) for flag in re.findall(r"--[a-z][\w-]*", text)
                              if flag not in _OTHER_PROGRAMS_FLAGS]
    return found


def test_library_errors_name_settings_not_flags():
    """Errors outside the command-line layer say ``data.image_size``, not ``--image-size``: the CLI translates
    (``flag_terms``), so the same message reads right from Python and from a config file."""
    offenders = {name: flags for name, path in MODULES.items() if name not in _CLI_MODULES
                 for flags in [_raised_flags(ast.parse(path.read_text()))] if flags}
    assert not offenders, f"library errors that spell command-line flags: {offenders}"


def test_public_names_listed_once():
    assert len(ssl_mix.__all__) == len(set(ssl_mix.__all__)), sorted(
        name for name in set(ssl_mix.__all__) if ssl_mix.__all__.count(name) > 1)
