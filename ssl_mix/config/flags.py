"""The config on the command line: one flag per config field, its help text, and errors in flag terms.

Each field maps onto exactly one flag (``data.num_labels`` -> ``--num-labels``; ``--model``, ``--method``, ``--out`` and
``--unlabeled-dir`` for ``model.name``, ``method.name``, ``train.out_dir`` and ``data.unlabeled_dirs``), whose help is
the first sentence of the field's ``Args:`` entry (:func:`field_docs`) and whose type, choices and metavar come from
the field's type hint. Every command that takes config settings (``ssl-mix train``, ``ssl-mix split``) declares them
with :func:`add_config_flags`, so a setting has one spelling and one description everywhere.

Errors of the config and the library name settings in config terms (``data.num_labels must be >= 1``), which is
right in Python and in a config file; :func:`flag_terms` rewrites such a message for the command line
(``--num-labels must be >= 1``).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable, Collection, Iterable
from typing import Any

from ssl_mix.config.fields import allows_none, base_type, literal_values
from ssl_mix.config.sections import SECTIONS, section_type

__all__ = ["config_flags", "field_docs", "format_value", "flag_terms", "add_config_flags", "config_updates",
           "add_deprecated_flag", "add_renamed_flag"]

# Command-line flag names that differ from the field name (both ``model.name`` and ``method.name`` exist).
_FLAG_ALIASES = {("method", "name"): "method", ("model", "name"): "model", ("train", "out_dir"): "out",
                 ("data", "unlabeled_dirs"): "unlabeled_dir"}

_DEST = "cfg__"  # argparse destinations of config flags: cfg__<section>__<field>


def config_flags() -> dict[str, tuple[str, str]]:
    """Map each command-line flag (``--num-labels``) to its ``(section, field)``; one flag per config field.

    Returns:
        ``{flag: (section, field)}`` in section and field order.
    """
    out: dict[str, tuple[str, str]] = {}
    for section, section_cls in SECTIONS.items():
        for f in dataclasses.fields(section_cls):
            flag = "--" + _FLAG_ALIASES.get((section, f.name), f.name).replace("_", "-")
            if flag in out:  # pragma: no cover - guarded by a test
                raise RuntimeError(f"config flag {flag} maps to two fields")
            out[flag] = (section, f.name)
    return out


def _flag_of() -> dict[tuple[str, str], str]:
    return {key: flag for flag, key in config_flags().items()}


_ARG = re.compile(r"^    ([A-Za-z_]\w*): (.*)$")


def field_docs(section: str, *, as_flags: bool = False) -> dict[str, str]:
    """The documentation of every field of a config section: its ``Args:`` entry in the section's docstring.

    This is the one source of the flag descriptions of ``ssl-mix train --help`` and of the documentation's
    configuration tables.

    Args:
        section: ``data``, ``model``, ``method``, ``optim`` or ``train``.
        as_flags: write the field names quoted in the text as their command-line flags (````download```` ->
            ````--download````), for text shown next to the flags. A name becomes a flag when it is a field of this
            section or of exactly one section.

    Returns:
        ``{field: text}`` in field order; each text is one line (the docstring's wrapping joined), still with its
        reStructuredText markup (````code````, ``:class:`~ssl_mix.ICT```). The first sentence says what the field
        does; later ones say why the default.

    Raises:
        ValueError: an unknown section, or a field without an ``Args:`` entry (or an entry without a field).
    """
    cls = section_type(section)
    docs: dict[str, list[str]] = {}
    current: list[str] | None = None
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    for line in lines[lines.index("Args:") + 1:] if "Args:" in lines else []:
        if line and not line.startswith(" "):
            break  # the next docstring section
        entry = _ARG.match(line)
        if entry:
            current = docs.setdefault(entry.group(1), [])
            current.append(entry.group(2).strip())
        elif line.startswith("        ") and current is not None:
            current.append(line.strip())
    names = [f.name for f in dataclasses.fields(cls)]
    missing, extra = [n for n in names if n not in docs], [n for n in docs if n not in names]
    if missing or extra:
        raise ValueError(f"{cls.__name__}'s docstring must document each field once under 'Args:'; fields without "
                         f"an entry: {missing}, entries without a field: {extra}")
    texts = {name: " ".join(docs[name]) for name in names}
    if not as_flags:
        return texts
    owners: dict[str, list[tuple[str, str]]] = {}
    for flag, (owner, name) in config_flags().items():
        owners.setdefault(name, []).append((owner, flag))
    flags = {name: next((flag for owner, flag in found if owner == section), found[0][1])
             for name, found in owners.items() if len(found) == 1 or any(owner == section for owner, _ in found)}
    return {name: re.sub(r"``(\w+)``", lambda m: f"``{flags.get(m.group(1), m.group(1))}``", text)
            for name, text in texts.items()}


def format_value(value: Any) -> str:
    """A config value as written on the command line: ``true``/``false``, ``none``, ``a,b,c`` for a tuple.

    Args:
        value: a field's value.

    Returns:
        The text that the corresponding ``ssl-mix train`` flag accepts (booleans: the flag or its ``--no-`` form).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def flag_terms(message: str) -> str:
    """A message that names config settings (``data.num_labels``), rewritten with their command-line flags.

    ``section.field`` becomes the field's flag; ``section.field=value`` becomes ``--flag value`` (for a boolean
    field ``--flag`` or ``--no-flag``). Other text, and ``section.name`` pairs that are no config field, are
    unchanged. ``ssl-mix`` prints every error of the library through this, so one message reads right from Python,
    a config file and the command line.

    Args:
        message: the text of an error.

    Returns:
        The text with each setting spelled as its flag.
    """
    flags = _flag_of()
    bools = {key for key in flags if base_type(typing.get_type_hints(section_type(key[0]))[key[1]]) is bool}

    def flag(match: re.Match) -> str:
        key = (match.group(1), match.group(2))
        if key not in flags:
            return match.group(0)
        value = match.group(3)
        if value is None:
            return flags[key]
        value = value.strip("'\"")
        if key in bools and value.lower() in ("true", "false"):
            return flags[key] if value.lower() == "true" else "--no-" + flags[key][2:]
        return f"{flags[key]} {value}"

    return _SETTING.sub(flag, message)


# section.field, optionally =value (quoted, or up to a space or punctuation; a sentence's full stop is not part of it)
_SETTING = re.compile(r"(?<![\w./-])(" + "|".join(SECTIONS) + r")\.(\w+)"
                      r"(?:=('[^']*'|\"[^\"]*\"|[^\s,;)'\"]*[^\s,;)'\".]))?")


def add_config_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                     fields: Iterable[tuple[str, str]] | None = None, *,
                     required: Collection[tuple[str, str]] = ()) -> None:
    """Declare the command-line flags of config fields on an argument parser (or argument group).

    Each flag's help is the first sentence of the field's documentation and its default (the value without a
    preset); booleans get a ``--no-`` form; ``Literal`` fields take their choices. Flags that are not given leave
    no attribute on the parsed namespace, so :func:`config_updates` returns only what the command line set.

    Args:
        parser: where to add the flags.
        fields: the ``(section, field)`` pairs to declare, in this order (default: every field, in config order).
        required: pairs whose flag must be given (their help says so instead of naming a default).
    """
    flags = _flag_of()
    docs = {section: field_docs(section, as_flags=True) for section in SECTIONS}
    for section, name in config_flags().values() if fields is None else fields:
        cls = section_type(section)
        hint = typing.get_type_hints(cls)[name]
        default = "required" if (section, name) in required else f"default: {format_value(_default(cls, name))}"
        kwargs: dict[str, Any] = {"dest": f"{_DEST}{section}__{name}", "default": argparse.SUPPRESS,
                                  "help": f"{_summary(docs[section][name])} ({default})".replace("%", "%%")}
        if (section, name) in required:
            kwargs["required"] = True
        kind, choices, args = base_type(hint), literal_values(hint), typing.get_args(_without_none(hint))
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif choices is not None:
            kwargs["choices"] = list(choices)
            if not isinstance(choices[0], str):  # e.g. --channels 1|3: compare as numbers
                kwargs["type"] = type(choices[0])
        elif kind in (int, float):
            parse = kind if not allows_none(hint) else _optional(kind)
            kwargs.update(type=parse if kind is int else _optional(float), metavar="N" if kind is int else "FLOAT")
        elif kind is tuple and args == (float, Ellipsis):  # --mean 0.5 0.5 0.5
            kwargs.update(nargs="+", type=float, metavar="FLOAT")
        elif kind is tuple and args == (str, Ellipsis):  # one value per use: paths may hold commas
            kwargs.update(action="append", metavar=_metavar(name))
        elif name == "image_size":
            kwargs["metavar"] = "N|H,W"
        elif kind is tuple:
            pair = len(args) == 2 and all(a is int for a in args)
            kwargs.update(type=_comma_list, metavar="H,W" if pair else "A,B,...")
        else:
            kwargs["metavar"] = _metavar(name)
        parser.add_argument(flags[(section, name)], **kwargs)


def config_updates(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config settings given on the command line, as nested sections for :meth:`Config.replace
    <ssl_mix.config.Config.replace>`.

    Args:
        args: a namespace parsed with flags from :func:`add_config_flags`.

    Returns:
        ``{section: {field: value}}`` of the flags given (none for flags left out).
    """
    updates: dict[str, dict[str, Any]] = {}
    for key, value in vars(args).items():
        if key.startswith(_DEST):
            section, name = key[len(_DEST):].split("__")
            updates.setdefault(section, {})[name] = value
    return updates


_GIVEN = object()  # _DeprecatedFlag: store the value given on the command line


class _DeprecatedFlag(argparse.Action):
    """An old spelling of a flag: stores what the current spelling would (a fixed ``value`` for an old switch, else
    the value given) and says on stderr what to write instead."""

    def __init__(self, option_strings: list[str], dest: str, *, instead: str, value: Any = _GIVEN,
                 **kwargs: Any) -> None:
        if value is not _GIVEN:
            kwargs["nargs"] = 0
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kwargs)
        self.value, self.instead = value, instead

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated and will be removed in the next release; use "
              f"{self.instead}", file=sys.stderr)
        setattr(namespace, self.dest, values if self.value is _GIVEN else self.value)


def add_deprecated_flag(parser: argparse.ArgumentParser, old: str, section: str, name: str, value: Any) -> None:
    """Keep an old flag spelling working for one release: it sets ``section.name`` to ``value``, with a warning.

    Args:
        parser: the parser that also has the field's flag (:func:`add_config_flags`).
        old: the old flag (``--labeled-not-in-unlabeled``); it takes no value and is hidden from ``--help``.
        section, name: the config field it sets.
        value: the value it sets; the warning names the current spelling that sets the same.
    """
    instead = flag_terms(f"{section}.{name}={format_value(value)}")
    parser.add_argument(old, action=_DeprecatedFlag, dest=f"{_DEST}{section}__{name}", value=value,
                        instead=instead, help=argparse.SUPPRESS)


def add_renamed_flag(parser: argparse.ArgumentParser, old: str, new: str, *, dest: str, type: Callable[[str], Any],
                     metavar: str | None = None) -> None:
    """Keep the old name of a command flag that takes a value (``--workers`` for ``--num-workers``) working for one
    release, with a warning; hidden from ``--help``.

    Args:
        parser: the parser that has the new flag.
        old, new: the old and the current spelling.
        dest: the new flag's argparse destination.
        type, metavar: as the new flag's.
    """
    parser.add_argument(old, action=_DeprecatedFlag, dest=dest, instead=new, type=type, metavar=metavar,
                        help=argparse.SUPPRESS)


def _default(cls: type, name: str) -> Any:
    """A field's default as its section declares it, without constructing the section (the method section's
    checks import torch, which the command line's help and argument errors must not wait for)."""
    found = next(f for f in dataclasses.fields(cls) if f.name == name)
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


def _without_none(hint: Any) -> Any:
    """``tuple[float, ...]`` for ``tuple[float, ...] | None``; other hints unchanged."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint


def _metavar(field_name: str) -> str:
    """The metavar of a text field, from its name: a directory, a file, a model name or a device."""
    if field_name.endswith(("_root", "_dir", "_dirs")):
        return "DIR"
    if field_name in ("split", "labels") or field_name.endswith(("_file", "_path")):
        return "FILE"
    return {"name": "NAME", "device": "DEVICE"}.get(field_name, "TEXT")


def _summary(doc: str) -> str:
    """The first sentence of a field's documentation, as plain text."""
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], doc).replace("``", "")
    # A sentence ends at a full stop before a capital or a digit, except after "et al.", "eq." and "e.g.".
    return _SENTENCE_END.split(text, maxsplit=1)[0].rstrip(".")


_SENTENCE_END = re.compile(r"(?<!\bal\.)(?<!\beq\.)(?<!e\.g\.)(?<=\.)\s+(?=[A-Z0-9])")


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse
