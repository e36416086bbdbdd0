"""The weights a training run starts from, and the record of where they came from.

A run starts from one of four sources (``model`` config section, one at a time):

- ``random``: a fresh initialisation (the default);
- ``timm-hub``: timm's pretrained weights of a ``timm:`` model (``model.pretrained``), from the Hugging Face hub or
  its local cache, loaded by ``timm.create_model(..., pretrained=True)``;
- ``file``: a local weights file (``model.pretrained_file``): safetensors, a ``.pth``/``.bin`` state dict or a timm
  checkpoint (a dict with ``state_dict``, ``model`` or ``state_dict_ema``), read by timm's ``load_state_dict``;
- ``run``: the EMA teacher of an earlier ssl_mix run (``model.init_from``), e.g. the previous round of the
  label-next loop.

Loading a file or a run follows one rule: every key of the network must be in the weights with its shape, except
the classifier head when the class count differs (then the head keeps its fresh initialisation); anything else is
an error naming the keys. Only the start of training loads these weights; a resumed run and a loaded run take the
weights of their own checkpoint.

The record (:func:`weights_record`) is stored in the checkpoint's ``data`` entry under ``weights`` and in
``report.json``: the model name, the source, the file or run, and the sha256 of the file read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_mix.checkpoint import load_checkpoint
from ssl_mix.config import Config, ModelConfig
from ssl_mix.models import build_model, is_timm_name
from ssl_mix.run import RunDir, check_checkpoint_format

__all__ = ["WEIGHT_SOURCES", "build_starting_model", "check_starting_weights", "describe_weights", "file_sha256",
           "head_keys", "load_matching", "load_weights_file", "weights_record"]

WEIGHT_SOURCES = ("random", "timm-hub", "file", "run")
"""Where a run's starting weights come from, as :func:`weights_record` names it."""

_SHOWN_KEYS = 8  # keys an error lists by name; the rest are counted


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_record(model: str, source: str, path: str | Path | None = None) -> dict[str, Any]:
    """The record of a run's starting weights.

    Args:
        model: the model name (``model.name``).
        source: one of :data:`WEIGHT_SOURCES`.
        path: the weights file or the earlier run's checkpoint (``file``, ``run``); its sha256 is recorded.

    Returns:
        ``{"model", "source", "path", "sha256"}`` (``path`` and ``sha256`` None without a file), plain values.
    """
    if source not in WEIGHT_SOURCES:
        raise ValueError(f"source must be one of {', '.join(WEIGHT_SOURCES)}; got {source!r}")
    return {"model": model, "source": source, "path": None if path is None else str(path),
            "sha256": None if path is None else file_sha256(path)}


def describe_weights(record: Mapping[str, Any]) -> str:
    """One line saying which model a run trains and where its starting weights came from."""
    what = {"random": "random initialisation", "timm-hub": "timm's pretrained weights (hub or cache)",
            "file": f"the file {record.get('path')}", "run": f"the teacher of the run {record.get('path')}"}
    line = f"ssl-mix: model {record['model']}, starting from {what.get(record['source'], record['source'])}"
    return line + (f" (sha256 {record['sha256'][:16]}...)" if record.get("sha256") else "")


def _timm_model(model: nn.Module) -> tuple[nn.Module, str] | None:
    """``(timm model, its key prefix in model.state_dict())`` when ``model`` is a timm model or wraps one."""
    for prefix, inner in (("", model), ("model.", getattr(model, "model", None))):
        if isinstance(inner, nn.Module) and isinstance(getattr(inner, "pretrained_cfg", None), Mapping):
            return inner, prefix
    return None


def head_keys(model: nn.Module) -> list[str]:
    """The state-dict keys of a network's classifier head, the keys replaced when the class count differs.

    For a timm model (or :class:`~ssl_mix.models.TimmStaged`): the modules its ``pretrained_cfg["classifier"]``
    names; for other models: the last ``nn.Linear`` in module order (the classifier of ssl_mix's models).

    Raises:
        ValueError: the model has no such module.
    """
    timm_model = _timm_model(model)
    if timm_model is not None:
        inner, prefix = timm_model
        names = inner.pretrained_cfg.get("classifier") or ()
        modules = [f"{prefix}{n}" for n in ((names,) if isinstance(names, str) else names)]
    else:
        modules = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1:]
    keys = [k for k in model.state_dict() if any(k.startswith(m + ".") for m in modules)]
    if not keys:
        raise ValueError(f"cannot find the classifier head of {type(model).__name__} (no final nn.Linear or timm "
                         "classifier); its weights can only be loaded with the same class count")
    return keys


def _listed(keys: list[str], shapes: Mapping[str, str] | None = None) -> str:
    # Batch norm's step counters say nothing about a mismatch: the keys that do are named first.
    keys = sorted(keys, key=lambda k: k.endswith("num_batches_tracked"))
    shown = [f"{k} {shapes[k]}" if shapes else k for k in keys[:_SHOWN_KEYS]]
    more = len(keys) - _SHOWN_KEYS
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def load_matching(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> list[str]:
    """Copy ``state`` into ``model`` exactly, keeping the fresh head when the class count differs.

    Args:
        model: the freshly built network.
        state: a state dict for the same architecture (tensors copied bit for bit).
        source: what ``state`` is, for the error messages (e.g. ``"model.pretrained_file 'w.pth'"``).

    Returns:
        The keys kept at their fresh values (the head's, when its shape differs or the weights lack it); empty when
        everything was loaded.

    Raises:
        ValueError: keys missing from ``state``, keys ``model`` does not have, or shapes that differ outside the
            head; the message names them.
    """
    target = model.state_dict()
    head = set(head_keys(model))
    missing = [k for k in target if k not in state and k not in head]
    unexpected = [k for k in state if k not in target]
    shapes = {k: f"{tuple(state[k].shape)} in the weights, {tuple(target[k].shape)} in the model"
              for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)}
    wrong = [k for k in shapes if k not in head]
    problems = []
    if missing:
        problems.append(f"missing from the weights: {_listed(missing)}")
    if unexpected:
        problems.append(f"not in the model: {_listed(unexpected)}")
    if wrong:
        problems.append(f"of another shape: {_listed(wrong, shapes)}")
    if problems:
        raise ValueError(f"{source} does not fit the network ({'; '.join(problems)}). Use weights of the same "
                         "architecture and input channels (only the classifier head may differ, by its class count)")
    # The head is loaded whole or not at all, so that a half-replaced classifier cannot happen.
    kept = sorted(head) if any(k in shapes or k not in state for k in head) else []
    merged = {k: (target[k] if k in kept else state[k]) for k in target}
    model.load_state_dict(merged, strict=True)
    return kept


def load_weights_file(model: nn.Module, path: str | Path) -> list[str]:
    """Load a local weights file into a freshly built network (``model.pretrained_file``).

    Args:
        model: the network (a ``timm:`` model, a :class:`~ssl_mix.models.TimmStaged` or an ssl_mix model).
        path: safetensors, a ``.pth``/``.bin`` state dict, or a timm checkpoint (``state_dict``, ``model`` or
            ``state_dict_ema``; the EMA weights are preferred, as timm does). For a timm model the keys are those
            of the timm model itself (the file timm saves), and a first convolution with another input-channel
            count is adapted by timm's ``adapt_input_conv``, and shapes that differ otherwise go through the model
            family's own ``checkpoint_filter_fn`` (a vision transformer's position embeddings resampled to the
            training image size); for an ssl_mix model, its own state dict.

    Returns:
        The keys kept at their fresh values (the head, when the class count differs).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the weights do not fit (see :func:`load_matching`) or the file cannot be read.
    """
    from timm.models import adapt_input_conv, load_state_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(_NO_FILE.format(path=str(path)))
    source = f"model.pretrained_file {str(path)!r}"
    try:
        state = load_state_dict(str(path), use_ema=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same user-facing message
        raise ValueError(f"{source} cannot be read as weights ({type(error).__name__}: {error}); pass a "
                         "safetensors, .pth/.bin state dict or timm checkpoint file") from error
    timm_model = _timm_model(model)
    if timm_model is None:
        return load_matching(model, state, source=source)
    inner, prefix = timm_model
    first_conv = inner.pretrained_cfg.get("first_conv")
    key = f"{first_conv}.weight" if isinstance(first_conv, str) else None
    own = inner.state_dict()
    if key in state and key in own and state[key].ndim == 4 and state[key].shape[1] != own[key].shape[1]:
        state = {**state, key: adapt_input_conv(own[key].shape[1], state[key])}
    state = _fitted_by_timm(inner, state)
    kept = load_matching(inner, state, source=source)
    return [prefix + k for k in kept]


def _fitted_by_timm(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` passed through the model family's ``checkpoint_filter_fn`` when some shapes outside the head differ.

    timm gives each family whose weights may need fitting to a model a module-level ``checkpoint_filter_fn(state,
    model)``, the filter its own pretrained loading applies: a vision transformer's position embeddings are
    resampled to another image size, its patch embedding to another patch size. Weights whose shapes already fit are
    left as they are, so that they load bit for bit.
    """
    import sys

    own, head = model.state_dict(), set(head_keys(model))
    differ = [k for k in own if k in state and k not in head and tuple(state[k].shape) != tuple(own[k].shape)]
    fit = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if not differ or fit is None:
        return state
    try:
        return dict(fit(dict(state), model))
    except Exception:  # noqa: BLE001 - the filter could not fit them: load_matching names the keys that differ
        return state


def _init_from_run(model: nn.Module, cfg: ModelConfig, path: str | Path, classes: Sequence[str] | None) -> Path:
    """Load an earlier run's teacher into ``model``; returns the checkpoint file read."""
    _, checkpoint = RunDir.of_checkpoint(path)
    state = load_checkpoint(checkpoint)
    check_checkpoint_format(state, checkpoint)
    earlier = Config.from_dict(state["config"]).model.name
    if earlier != cfg.name:
        raise ValueError(f"model.init_from {str(path)!r} trained {earlier!r}, but this run's model.name is "
                         f"{cfg.name!r}; set model.name {earlier!r}, or start from another run")
    weights = dict(state["teacher"])
    earlier_classes = [str(c) for c in state["data"]["classes"]]
    if classes is not None and [str(c) for c in classes] != earlier_classes:
        head = head_keys(model)
        if sorted(map(str, classes)) == sorted(earlier_classes):  # the same classes in another order: rows follow
            order = torch.tensor([earlier_classes.index(str(c)) for c in classes])
            weights.update({k: weights[k][order] for k in head if k in weights})
        else:  # other classes, even as many: a head trained for them would mean other things
            for key in head:
                weights.pop(key, None)
    load_matching(model, weights, source=f"model.init_from {str(checkpoint)!r}")
    return checkpoint


def check_starting_weights(cfg: ModelConfig) -> None:
    """Check, before anything is loaded, that the starting weights ``cfg`` names can be found: ``pretrained`` with
    a ``timm:`` model, an existing ``pretrained_file``, an ``init_from`` run with a checkpoint. Whether they fit the
    network is checked when they are loaded (:func:`build_starting_model`).

    Raises:
        FileNotFoundError: no file or checkpoint where ``pretrained_file`` or ``init_from`` points.
        ValueError: ``pretrained`` for a model that is not a ``timm:`` model.
    """
    if cfg.pretrained and not is_timm_name(cfg.name):
        raise ValueError(_NOT_TIMM.format(name=cfg.name))
    if cfg.pretrained_file and not Path(cfg.pretrained_file).is_file():
        raise FileNotFoundError(_NO_FILE.format(path=str(cfg.pretrained_file)))
    if cfg.init_from:
        RunDir.of_checkpoint(cfg.init_from)


_NOT_TIMM = ("model.pretrained loads timm's pretrained weights, so it needs a timm model (model.name timm:NAME, e.g. "
             "timm:resnet18); {name!r} is an ssl_mix model. To start from earlier weights of it use model.init_from "
             "or model.pretrained_file")
_NO_FILE = ("model.pretrained_file {path!r} does not exist; pass a safetensors, .pth/.bin state dict or timm "
            "checkpoint file")


def build_starting_model(cfg: ModelConfig, num_classes: int, in_channels: int,
                         image_size: int | tuple[int, int] | None = None, *,
                         classes: Sequence[str] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The network a training run starts from, with its starting weights, and the record of them.

    Args:
        cfg: the ``model`` section; ``pretrained``, ``pretrained_file`` or ``init_from`` choose the weights.
        num_classes: the task's classes (a head of another size is replaced).
        in_channels: the images' channels.
        image_size: the images' ``H`` or ``(H, W)`` (see :func:`~ssl_mix.models.build_model`).
        classes: the task's class names, output i naming ``classes[i]``. With ``init_from``, a head trained on the
            same classes in another order has its rows reordered to match, and one trained on other classes is
            replaced even when the count is the same; None keeps the earlier run's head whenever the count matches.

    Returns:
        ``(model, record)``: the model in train mode; the :func:`weights_record`.

    Raises:
        FileNotFoundError: the weights file or run does not exist; ``model.pretrained`` offline with the weights not
            in timm's cache (the message names ``model.pretrained_file`` and the cache folder).
        ValueError: weights that do not fit, another architecture, or ``model.pretrained`` for a model that is not
            a ``timm:`` model or that timm has no pretrained weights for.
    """
    if cfg.pretrained:
        return _from_hub(cfg, num_classes, in_channels, image_size), weights_record(cfg.name, "timm-hub")
    model = build_model(cfg, num_classes, in_channels, image_size)
    if cfg.pretrained_file:
        load_weights_file(model, cfg.pretrained_file)
        return model, weights_record(cfg.name, "file", cfg.pretrained_file)
    if cfg.init_from:
        checkpoint = _init_from_run(model, cfg, cfg.init_from, classes)
        return model, weights_record(cfg.name, "run", checkpoint)
    return model, weights_record(cfg.name, "random")


def _from_hub(cfg: ModelConfig, num_classes: int, in_channels: int,
              image_size: int | tuple[int, int] | None) -> nn.Module:
    """``timm.create_model(..., pretrained=True)``, with the offline failure turned into one actionable error."""
    if not is_timm_name(cfg.name):
        raise ValueError(_NOT_TIMM.format(name=cfg.name))
    try:
        return build_model(cfg, num_classes, in_channels, image_size, hub_weights=True)
    except OSError as error:  # huggingface_hub's offline and not-cached errors are OSErrors
        from huggingface_hub import constants

        retries = "" if constants.HF_HUB_OFFLINE else "; set HF_HUB_OFFLINE=1 to skip the hub's retries next time"
        raise FileNotFoundError(
            f"model.pretrained: timm could not download the pretrained weights of {cfg.name!r} and they are not in "
            f"timm's cache folder {constants.HF_HUB_CACHE} ({type(error).__name__}). Without internet, put the "
            "weights file on this machine and pass it as model.pretrained_file, or fill that cache folder "
            f"(HF_HUB_CACHE) from a machine that has internet{retries}") from None
    except RuntimeError as error:
        if "pretrained" not in str(error).lower():
            raise
        raise ValueError(f"model.pretrained: timm has no pretrained weights for {cfg.name!r} ({error}); choose a "
                         "timm model with pretrained weights (timm.list_models(pretrained=True)) or pass "
                         "model.pretrained_file") from None
