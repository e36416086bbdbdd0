"""The inputs a pretrained network expects: image size, normalisation and resize filter from timm's pretrained
configuration of a ``timm:`` model, read from timm's registry (nothing is downloaded).

:func:`pretrained_inputs` is the one place that reads them; :func:`ssl_mix.data.run_data.resolve_inputs` decides
where a run uses them (the settings the user left unset).
"""

from __future__ import annotations

from typing import Any

from ssl_mix.models.factory import TIMM_PREFIX

__all__ = ["pretrained_inputs"]


def pretrained_inputs(model_name: str) -> dict[str, Any] | None:
    """The preprocessing timm's pretrained configuration of a model asks for, without touching the network.

    Args:
        model_name: a name of :func:`~ssl_mix.models.create_model`: ``timm:NAME`` or ``timm:NAME.TAG`` (the tag
            picks one of the architecture's pretrained weights; without it, timm's default tag).

    Returns:
        ``{"mean": (r, g, b), "std": (r, g, b), "image_size": (H, W), "interpolation": "bicubic" | "bilinear"}``
        (mean and std in [0, 1] units), as :func:`timm.data.resolve_data_config` resolves the pretrained
        configuration; None for a model that is not a ``timm:`` model or whose architecture has no pretrained
        configuration in timm's registry. timm's ``crop_pct`` (its evaluation transform resizes to
        ``size / crop_pct`` and cuts the centre) is not part of it: ssl_mix resizes every image once, to cover the
        size (``crop_pct`` 1), the same way for training and inference.

    Raises:
        ValueError: an unknown pretrained tag (``timm:resnet18.nope``), naming ``model.name``.
    """
    if not isinstance(model_name, str) or not model_name.startswith(TIMM_PREFIX):
        return None
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    timm_name = model_name[len(TIMM_PREFIX):]
    try:
        cfg = get_pretrained_cfg(timm_name)
    except RuntimeError as err:  # a tag the architecture does not have
        architecture = timm_name.split(".")[0]
        raise ValueError(f"model.name={model_name!r}: {str(err).rstrip('.')}; see "
                         f"timm.list_pretrained('{architecture}*')") from None
    if cfg is None:
        return None
    resolved = resolve_data_config({}, pretrained_cfg=cfg.to_dict(), verbose=False)
    _, height, width = resolved["input_size"]
    return {"mean": tuple(float(v) for v in resolved["mean"]), "std": tuple(float(v) for v in resolved["std"]),
            "image_size": (int(height), int(width)), "interpolation": str(resolved["interpolation"])}
