"""MkDocs hook: generate the API reference, one page per module of the ``ssl_mix`` package.

The modules are found on disk at build time, so a new module is documented without editing ``mkdocs.yml``;
every page is a mkdocstrings ``:::`` directive, so the text comes from the docstrings. The index page lists
the flat public names of ``ssl_mix/__init__.py`` (its ``__all__``), read statically with griffe, each linked
to the object it re-exports, so a re-export of a name that no longer exists fails the strict build.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

PACKAGE = "ssl_mix"
ROOT = Path(__file__).resolve().parents[2]
NAV_TITLE = "API reference"
INDEX = "reference/index.md"


def _modules() -> list[str]:
    """Dotted names of the package, its subpackages and their public modules (no ``_private`` or ``__main__``)."""
    names = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        elif parts[-1].startswith("_"):
            continue
        if any(p.startswith("_") for p in parts) or "__pycache__" in path.parts:
            continue
        names.append(".".join(parts))
    # Sorting the dotted parts puts the package first and each subpackage right before its own modules.
    return sorted(names, key=lambda n: n.split("."))


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split("."))).is_dir()


def _page(name: str) -> str:
    return f"reference/{name}.md"


def _exports() -> list[tuple[str, str]]:
    """``(public name, path of the object it refers to)`` for every name in ``ssl_mix.__all__``."""
    import griffe

    package = griffe.load(PACKAGE, search_paths=[str(ROOT)], resolve_aliases=True, resolve_external=False)
    out = []
    for name in package.exports or ():
        if name.startswith("__"):  # __version__ and friends
            continue
        member = package.members.get(name)
        if member is None:
            out.append((name, ""))
            continue
        if member.is_alias:
            try:
                target = member.final_target.path
            except griffe.AliasResolutionError:
                target = ""
        else:
            target = member.path
        out.append((name, target))
    return out


def _index_markdown(modules: list[str]) -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings of the package at build time: one page per module. The package re-exports "
        "its public names flat, so `from ssl_mix import ICT, Trainer` works; each name below links to the object "
        "it refers to.",
        "",
    ]
    exports = _exports()
    if exports:
        lines += ["## Public names (`from ssl_mix import ...`)", "", "| name | defined in |", "|---|---|"]
        for name, target in exports:
            if target:
                module = target.rsplit(".", 1)[0]
                lines.append(f"| [`{name}`][{target}] | `{module}` |")
            else:
                lines.append(f"| `{name}` | (not found by static analysis) |")
        lines.append("")
    lines += ["## Modules", ""]
    for name in modules:
        depth = name.count(".") - 1 if name != PACKAGE else 0
        lines.append(f"{'    ' * max(depth, 0)}- [`{name}`]({name}.md)")
    lines.append("")
    return "\n".join(lines)


def _own_members(name: str) -> list[str]:
    """The public names a subpackage's ``__init__`` defines itself (not the ones it re-exports from its modules)."""
    import griffe

    module = griffe.load(name, search_paths=[str(ROOT)], resolve_aliases=False)
    return [m for m, obj in module.members.items() if not obj.is_alias and not m.startswith("_")
            and not obj.is_module]


def _module_markdown(name: str) -> str:
    if _is_package(name) and name != PACKAGE:
        # A subpackage's __init__ mostly re-exports its modules' names, documented on the modules' pages; the names it
        # defines itself (e.g. a type built from a registry) are documented here.
        own = _own_members(name)
        members = f"[{', '.join(own)}]" if own else "false"
        return f"::: {name}\n    options:\n      members: {members}\n      show_root_heading: true\n"
    if name == PACKAGE:
        return f"::: {name}\n    options:\n      members: false\n"
    return f"::: {name}\n"


def on_config(config, **kwargs):
    modules = _modules()
    entries: list = [{"Overview": INDEX}]
    groups: dict[str, list] = {}
    for name in modules:
        if name == PACKAGE or name.count(".") == 1 and not _is_package(name):
            entries.append({name: _page(name)})
        else:
            top = ".".join(name.split(".")[:2])
            groups.setdefault(top, []).append({name: _page(name)})
    for top, pages in groups.items():
        entries.append({top: pages})
    nav = config["nav"]
    for i, item in enumerate(nav):
        if isinstance(item, dict) and NAV_TITLE in item:
            nav[i] = {NAV_TITLE: entries}
            break
    else:
        nav.append({NAV_TITLE: entries})
    return config


def on_files(files, config, **kwargs):
    modules = _modules()
    files.append(File.generated(config, INDEX, content=_index_markdown(modules)))
    for name in modules:
        files.append(File.generated(config, _page(name), content=_module_markdown(name)))
    return files
