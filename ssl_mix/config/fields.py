"""Checks of config fields against their type hints, shared by every config section.

A section's ``__post_init__`` calls :func:`check_fields` once, then its own range checks (:func:`check_positive`).
Errors name the setting in config terms, ``section.field`` (``data.num_labels``), as a config file and
``cfg.data.num_labels`` spell it; the command line translates them to its flags
(:func:`ssl_mix.config.flags.flag_terms`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from ssl_mix.checks import check_bool, check_in, check_int, check_number

__all__ = ["check_fields", "check_positive", "literal_values", "allows_none", "base_type"]

_UNIONS = (Union, types.UnionType)


def literal_values(hint: Any) -> tuple | None:
    """The allowed values of a ``Literal[...]`` hint, also inside ``Literal[...] | None``; None for other hints."""
    if get_origin(hint) is Literal:
        return get_args(hint)
    if get_origin(hint) in _UNIONS:
        for arg in get_args(hint):
            if get_origin(arg) is Literal:
                return get_args(arg)
    return None


def allows_none(hint: Any) -> bool:
    """Whether a hint admits None (``int | None``)."""
    return type(None) in get_args(hint)


def base_type(hint: Any) -> Any:
    """``int`` for ``int`` and ``int | None``; the origin (e.g. ``tuple``) for generic hints."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in _UNIONS and len(args) == 1:
        hint = args[0]
    return get_origin(hint) or hint


def check_fields(obj: Any, section: str) -> None:
    """Check every field of a section against its type hint: ``Literal`` choices, bools, ints, numbers and strings.

    Float fields given an int are stored as floats, so a config reads the same from JSON, YAML and Python.

    Args:
        obj: a section dataclass instance (changed in place: ints of float fields become floats).
        section: the section's name in the config (``data``), which prefixes the field in error messages.

    Raises:
        ValueError: a value outside its ``Literal`` choices or a number that is not finite.
        TypeError: a value of the wrong type.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint, value = hints[f.name], getattr(obj, f.name)
        name = f"{section}.{f.name}"
        if value is None and allows_none(hint):
            continue
        kind = base_type(hint)
        allowed = literal_values(hint)
        if allowed is not None:
            check_in(name, value, allowed)
        elif kind is bool:
            check_bool(name, value)
        elif kind is int:
            check_int(name, value)
        elif kind is float:
            setattr(obj, f.name, check_number(name, value))
        elif kind is str and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__} ({value!r})")


def check_positive(obj: Any, section: str, *names: str, allow_zero: bool = False) -> None:
    """Check that the named int or float fields of a section (those that are not None) are > 0 (or >= 0).

    Args:
        obj: the section dataclass instance.
        section: the section's name in the config, for the error message.
        names: the fields to check.
        allow_zero: accept 0.

    Raises:
        ValueError: a value below the bound, naming ``section.field``.
    """
    for name in names:
        value, qualified = getattr(obj, name), f"{section}.{name}"
        if isinstance(value, int):
            check_int(qualified, value, 0 if allow_zero else 1)
        elif value is not None:
            check_number(qualified, value, low=0, low_open=not allow_zero)
