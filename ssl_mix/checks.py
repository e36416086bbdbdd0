"""Argument checks shared by the whole package: one spelling of each rule and of its error message.

Each check returns the value in its canonical Python type (``int``, ``float``, ``bool``) or raises ``TypeError``
(wrong kind of value) or ``ValueError`` (right kind, wrong value) with a message that names the argument, says what
was expected and what was given. Public functions and constructors call them where an argument enters the package;
code further down the call chain trusts what it was given.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "check_bool",
    "check_int",
    "check_widths",
    "check_positive_int",
    "check_number",
    "check_probability",
    "check_in",
    "check_k",
    "check_alpha",
    "check_folder_only",
    "image_size_pair",
]

T = TypeVar("T")


def _kind(value: object) -> str:
    return f"{type(value).__name__} ({value!r:.80})"


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a ``bool`` (not merely truthy).

    Args:
        name: the argument's name, for the message.
        value: the value given.

    Returns:
        ``value``.

    Raises:
        TypeError: ``value`` is not a bool (``0``, ``"yes"`` and ``None`` are refused, not converted).
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {_kind(value)}.")
    return value


def check_int(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` as an ``int``, at least ``minimum``.

    Args:
        name: the argument's name, for the message.
        value: any integral number (Python or NumPy integer); ``bool`` is refused.
        minimum: the smallest value allowed, or None for no bound.

    Returns:
        ``int(value)``.

    Raises:
        TypeError: ``value`` is not an integer (a float such as ``2.0`` is refused too).
        ValueError: ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_kind(value)}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_widths(widths: object, example: Sequence[int]) -> tuple[int, ...]:
    """A network's layer widths as a non-empty tuple of positive ints.

    Args:
        widths: a sequence of ints (a string is refused).
        example: the network's default, shown in the message.

    Raises:
        TypeError: not a non-empty sequence of ints. ValueError: a width below 1.
    """
    if isinstance(widths, str) or not isinstance(widths, Sequence) or len(widths) == 0:
        raise TypeError(f"widths must be a non-empty sequence of ints such as {tuple(example)}, got {widths!r}.")
    return tuple(check_int(f"widths[{i}]", w, 1) for i, w in enumerate(widths))


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an ``int`` >= 1 (a count, a size). See :func:`check_int`."""
    return check_int(name, value, 1)


def check_number(name: str, value: object, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, hint: str = "") -> float:
    """``value`` as a finite ``float`` in the interval from ``low`` to ``high``.

    Args:
        name: the argument's name, for the message.
        value: any real number (Python, NumPy); ``bool`` is refused.
        low: the lower bound, or None for none.
        high: the upper bound, or None for none.
        low_open: exclude ``low`` itself (``> low`` instead of ``>= low``).
        high_open: exclude ``high`` itself.
        hint: appended to the ``ValueError`` message (what the value means, typical values).

    Returns:
        ``float(value)``.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN, infinite or outside the interval.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_kind(value)}.")
    number = float(value)
    above = low is None or (number > low if low_open else number >= low)
    below = high is None or (number < high if high_open else number <= high)
    if not (math.isfinite(number) and above and below):
        if low is not None and high is not None:
            bound = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            bound = f"a finite number {'>' if low_open else '>='} {low}"
        elif high is not None:
            bound = f"a finite number {'<' if high_open else '<='} {high}"
        else:
            bound = "a finite number"
        raise ValueError(f"{name} must be {bound}, got {number}" + (f"; {hint}" if hint else "."))
    return number


def check_probability(name: str, value: object, hint: str = "") -> float:
    """``value`` as a ``float`` in ``[0, 1]`` (a probability, a fraction, a decay). See :func:`check_number`."""
    return check_number(name, value, low=0, high=1, hint=hint)


def check_in(name: str, value: T, allowed: Iterable[object]) -> T:
    """``value`` if it is one of ``allowed`` (the choices of a ``Literal`` option).

    Args:
        name: the argument's name, for the message.
        value: the value given.
        allowed: the valid values, in the order the message lists them (e.g. ``typing.get_args(SomeLiteral)``).

    Returns:
        ``value``.

    Raises:
        ValueError: ``value`` is not among ``allowed``.
    """
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")
    return value


def check_k(k: object, name: str = "k") -> int:
    """The number of points in a mix, an int >= 2 (Chaudhry et al.'s K; K=2 is ordinary mixup).

    Args:
        k: the value given.
        name: the argument's name, for the message.

    Returns:
        ``int(k)``.

    Raises:
        TypeError: ``k`` is not an integer.
        ValueError: ``k < 2``.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} (number of points to mix) must be an int, got {_kind(k)}.")
    if k < 2:
        raise ValueError(f"{name} (number of points to mix) must be an int >= 2, got {k}; use k=2 for ordinary "
                         "mixup.")
    return int(k)


def check_alpha(alpha: object, name: str = "alpha") -> float:
    """A Dirichlet (for K=2: Beta) concentration of mixing weights, a finite number >= 0; 0 means no mixing.

    Args:
        alpha: the value given.
        name: the argument's name, for the message.

    Returns:
        ``float(alpha)``.

    Raises:
        TypeError: ``alpha`` is not a real number.
        ValueError: ``alpha`` is negative, NaN or infinite.
    """
    return check_number(f"{name} (Dirichlet concentration)", alpha, low=0,
                        hint="typical values are 0.1 to 2.0, and 0 disables mixing.")


def check_folder_only(dataset: str, settings: Mapping[str, object], *, advice: str, setting: str = "dataset"
                      ) -> None:
    """Refuse settings that apply to an image folder (dataset ``"folder"``) only when another dataset is named.

    Args:
        dataset: the dataset name.
        settings: ``{name, as the caller's user spells it: value}``; None means not given.
        advice: what to do instead, ending the message (e.g. ``"drop data.labels or set data.dataset='folder'"``).
        setting: how the caller's user spells the dataset setting (``data.dataset`` in a config).

    Raises:
        ValueError: naming the first setting given, the dataset, and the advice.
    """
    given = [name for name, value in settings.items() if value is not None]
    if given and dataset != "folder":
        raise ValueError(f"{given[0]} applies to {setting} 'folder' (your own images) only, not {dataset!r}; "
                         f"{advice}")


def image_size_pair(image_size: int | str | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """Normalise an image size to ``(H, W)``.

    Args:
        image_size: None, an int N (square N x N), a pair ``(H, W)``, or the text ``"N"`` or ``"H,W"``.

    Returns:
        ``(H, W)`` of positive ints, or None.
    """
    if image_size is None:
        return None
    value: Any = image_size
    if isinstance(value, str):
        try:
            value = tuple(int(part) for part in value.replace("x", ",").split(","))
        except ValueError:
            value = image_size
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = (value[0], value[0])
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in value)):
        raise ValueError(f"image size must be a positive int N or a pair H,W of them (e.g. data.image_size=32 or "
                         f"data.image_size='48,64'), got {image_size!r}")
    return int(value[0]), int(value[1])
