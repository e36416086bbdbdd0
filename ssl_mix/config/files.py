"""Config files: reading JSON and YAML into nested dicts of sections, and writing them back.

The schema is :class:`~ssl_mix.config.Config`'s (``{"method": {"k": 3}}`` or ``method: {k: 3}``); this module only
turns text into plain data and back, so :meth:`Config.from_file <ssl_mix.config.Config.from_file>` and
:meth:`Config.dumps <ssl_mix.config.Config.dumps>` read and write every format alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from ssl_mix.checks import check_in

__all__ = ["ConfigFormat", "CONFIG_FORMATS", "config_format", "read_config_file", "config_text"]

ConfigFormat = Literal["json", "yaml"]
CONFIG_FORMATS: tuple[str, ...] = get_args(ConfigFormat)
"""The formats of config files, by file suffix: ``.json``, or ``.yaml`` / ``.yml``."""


def config_format(path: str | Path) -> ConfigFormat:
    """The format of a config file, from its suffix.

    Args:
        path: the file's path.

    Returns:
        ``json`` for ``.json``, ``yaml`` for ``.yaml`` and ``.yml``.

    Raises:
        ValueError: any other suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise ValueError(f"config file {str(path)!r}: unknown format {suffix or '(no suffix)'!r}; name it .json, .yaml "
                     "or .yml")


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` as a float (YAML 1.1 floats need a dot, ``1.0e-4``), as JSON
    and Python do: a weight decay written the usual way must not arrive as a string."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+.0123456789"))


def read_config_file(path: str | Path) -> Any:
    """The data of a config file: what its JSON or YAML text holds (an empty YAML file holds ``{}``).

    Args:
        path: a ``.json``, ``.yaml`` or ``.yml`` file; YAML is read with a safe loader (plain data only) that
            reads ``1e-4`` as a number, as JSON does.

    Returns:
        The parsed data, unchecked (normally a dict of sections).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown suffix, or a syntax error (with its line and column); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    fmt = config_format(path)
    text = path.read_text()
    if fmt == "yaml":
        try:
            data = yaml.load(text, Loader=_YamlLoader)  # a SafeLoader: plain data only
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err)
            raise ValueError(f"config file {str(path)!r} is not valid YAML{where}: {problem}") from None
        return {} if data is None else data  # an empty file changes nothing
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"config file {str(path)!r} is not valid JSON (line {err.lineno}, column "
                         f"{err.colno}): {err.msg}") from None


def config_text(data: dict[str, Any], format: ConfigFormat = "json") -> str:
    """Nested plain data as the text of a config file that :func:`read_config_file` reads back equal.

    Args:
        data: JSON-compatible nested dicts.
        format: ``json`` (keys sorted, as ``ssl-mix train --print-config`` prints) or ``yaml`` (keys in their
            order in ``data``).

    Returns:
        The text, ending with a newline.
    """
    check_in("format", format, CONFIG_FORMATS)
    if format == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
