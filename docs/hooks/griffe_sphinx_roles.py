"""Griffe extension: turn the Sphinx roles of the package's docstrings into Markdown cross-references.

The docstrings are written for both ``help()`` and the docs, with Sphinx-style roles such as
``:class:`MixPlan``` or ``:func:`~ssl_mix.methods.Method```. mkdocstrings renders Markdown, so each role becomes
an autorefs link ``[`MixPlan`][ssl_mix.mixing.MixPlan]`` when its target resolves to a public object of the
package that the reference documents, and plain code otherwise (e.g. a torch object), so a role can never
break the build. Names are looked up the way a reader would: as written, then relative to the enclosing
class, module and package; re-exports are followed to the object they name.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const|type):`(~?)([^`<>]+?)(?:\(\))?`")


def _lookup(collection: Any, path: str) -> Any:
    try:
        return collection[path]
    except (KeyError, ValueError, TypeError, AttributeError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _documented(obj: Any) -> Any:
    """The object a reference page renders for ``obj`` (following re-exports), or None if no page shows it."""
    if obj is None:
        return None
    if obj.is_alias:
        try:
            obj = obj.final_target
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    if any(part.startswith("_") for part in obj.path.split(".")):
        return None
    parent = obj.parent
    # Package pages (``__init__``) show only their docstring; objects defined there have no anchor.
    if not obj.is_module and parent is not None and parent.is_module and parent.is_init_module:
        return None
    if not obj.is_module and parent is not None and parent.is_module and not obj.is_public:
        return None
    return obj


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        collection = pkg.modules_collection
        for obj in _walk(pkg):
            if obj.docstring is not None and ":`" in obj.docstring.value:
                obj.docstring.value = _ROLE.sub(lambda m, o=obj: _replace(m, o, collection, pkg.path),
                                                obj.docstring.value)


def _walk(obj: Any):
    yield obj
    for member in obj.members.values():
        if member.is_alias:
            continue
        if member.is_module or member.is_class:
            yield from _walk(member)
        else:
            yield member


def _replace(match: re.Match, obj: Any, collection: Any, package: str) -> str:
    short, target = match.group(1) == "~", match.group(2).strip()
    text = target.rsplit(".", 1)[-1] if short else target
    scopes = [""]
    scope = obj if (obj.is_class or obj.is_module) else obj.parent
    while scope is not None:
        scopes.append(scope.path + ".")
        scope = scope.parent
    scopes.append(package + ".")
    for prefix in scopes:
        found = _documented(_lookup(collection, prefix + target))
        if found is not None:
            return f"[`{text}`][{found.path}]"
    return f"`{text}`"
