"""Typed run configuration: data, model, method, optimisation and training, with named paper presets.

The package holds one concept per module; every public name is re-exported here, so
``from ssl_mix.config import Config, preset`` works:

- :mod:`~ssl_mix.config.fields`: the checks of fields against their type hints, shared by the sections;
- :mod:`~ssl_mix.config.sections`: the section dataclasses and the whole :class:`Config`;
- :mod:`~ssl_mix.config.files`: reading and writing config files (JSON, YAML);
- :mod:`~ssl_mix.config.flags`: the command-line flag of each field, its help text, and errors in flag terms;
- :mod:`~ssl_mix.config.presets`: the published recipes as code, each with a one-line description.

Errors name settings in config terms (``data.num_labels``); ``ssl-mix`` prints them with flag names
(``--num-labels``) through :func:`flag_terms`.
"""

from ssl_mix.config.files import CONFIG_FORMATS, ConfigFormat, read_config_file
from ssl_mix.config.flags import (
    add_config_flags,
    add_deprecated_flag,
    add_renamed_flag,
    config_flags,
    config_updates,
    field_docs,
    flag_terms,
    format_value,
)
from ssl_mix.config.presets import PRESET_DESCRIPTIONS, PRESETS, Preset, preset
from ssl_mix.config.sections import (
    DEFAULT_NUM_LABELS,
    PRECISIONS,
    SECTIONS,
    Config,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    Precision,
    TrainConfig,
    section_type,
)

__all__ = [
    "DataConfig",
    "ModelConfig",
    "MethodConfig",
    "OptimConfig",
    "TrainConfig",
    "Config",
    "SECTIONS",
    "section_type",
    "DEFAULT_NUM_LABELS",
    "Precision",
    "PRECISIONS",
    "Preset",
    "PRESETS",
    "PRESET_DESCRIPTIONS",
    "preset",
    "ConfigFormat",
    "CONFIG_FORMATS",
    "read_config_file",
    "config_flags",
    "field_docs",
    "format_value",
    "flag_terms",
    "add_config_flags",
    "config_updates",
    "add_deprecated_flag",
    "add_renamed_flag",
]
