"""MkDocs hook: the configuration reference tables, drawn from the config dataclasses' own docstrings.

A page line ``<!-- config-table: SECTION -->`` becomes a Markdown table of that section's command-line flags: the
flag, its default (as ``ssl-mix train`` spells it) and the field's ``Args:`` entry, which is also what
``ssl-mix train --help`` shows. The text has one source, :func:`ssl_mix.config.field_docs`.
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"^<!--\s*config-table:\s*(\w+)\s*-->[ \t]*$", re.M)


def markdown(doc: str) -> str:
    """reStructuredText markup of a docstring entry as Markdown: ````x```` and ``:role:`~a.b.C``` become code."""
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", doc)
    return text.replace("``", "`").replace("|", "\\|")


def config_table(section: str) -> str:
    """The Markdown table of one config section: flag, default, description."""
    from ssl_mix.config import config_flags, field_docs, format_value, section_type

    docs, defaults = field_docs(section, as_flags=True), section_type(section)()
    rows = ["| flag | default | what it does, and why the default |", "|---|---|---|"]
    for flag, (owner, name) in config_flags().items():
        if owner == section:
            rows.append(f"| `{flag}` | `{format_value(getattr(defaults, name))}` | {markdown(docs[name])} |")
    return "\n".join(rows)


def on_page_markdown(markdown_text: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook signature
    return PLACEHOLDER.sub(lambda m: config_table(m.group(1)), markdown_text)
