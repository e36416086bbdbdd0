"""Embeddings from a frozen encoder: image files in, a feature file (:mod:`ssl_mix.data.features`) out.

The cheapest strong recipe for a few labels is often a frozen pretrained network plus a small head trained on its
embeddings (``--dataset features --model mlp``): seconds per run on a CPU. :func:`load_encoder` builds the encoder,
:func:`embed_images` runs it over image files and writes the ``.npz`` that training reads.

Encoders (``ssl-mix embed --encoder ENC``):

* ``timm:NAME`` with weights from timm's hub (``pretrained=True``) or a local file (``pretrained_file``), loaded by
  :mod:`ssl_mix.weights` as training loads them. The embedding is timm's pre-logits vector
  (``forward_head(forward_features(x), pre_logits=True)``: the pooled penultimate layer). Inputs are prepared as
  the weights' pretrained configuration asks (:func:`~ssl_mix.models.pretrained_inputs`: size, mean, std, resize
  filter) unless ``image_size``, ``mean`` or ``std`` are given.
* an ssl_mix run directory or checkpoint: its EMA teacher, the output of its penultimate stage (the pooled
  features), with the run's own preprocessing (size, channels, resize, normalisation, ZCA whitening).

The network is in eval mode and runs under :func:`torch.inference_mode`; images are decoded by
:func:`~ssl_mix.data.decode_files` (the decoded-image cache) chunk by chunk, so memory is bounded by a chunk. The same
files, encoder and settings give the same arrays.

The ``.npz`` holds ``x_train``, ``y_train`` (and ``x_test``, ``y_test``, ``classes`` for an image folder with
``train/<class>/`` and ``test/<class>/``; files or a flat folder give unlabeled rows, ``y_train = -1``) and ``meta``:
a JSON string (:data:`~ssl_mix.data.features.META_KEY`) with the encoder record (name, weights source, path and
sha256 as :func:`ssl_mix.weights.weights_record` gives them), the preprocessing (``image_size``, ``mean``, ``std``,
``interpolation``, ``resize``, ``channels``) and the image paths of each row. A run trained on such a file keeps the
record (``data["encoder"]`` of its checkpoints), so that :func:`encoder_predictor` can predict images end to end:
image -> encoder -> head.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from torch import nn

from ssl_mix.choices import DEFAULT_INTERPOLATION, INTERPOLATIONS, ResizeMode
from ssl_mix.data.features import META_KEY

__all__ = ["ENCODER_FORMAT", "Embedder", "FeatureNetwork", "load_encoder", "encoder_from_record", "embed_images",
           "EndToEndModel", "encoder_predictor"]

ENCODER_FORMAT = 1
"""Version of the encoder record in a feature file's ``meta`` and a run's ``data["encoder"]``."""

_CHUNK = 1024  # files decoded at a time: memory holds one chunk of decoded images, not the whole set


class FeatureNetwork(nn.Module):
    """A classifier cut before its classifier: normalised images in, the pooled penultimate features out.

    Args:
        network: a timm model (or :class:`~ssl_mix.models.TimmStaged` around one): its pre-logits
            (``forward_head(forward_features(x), pre_logits=True)``); or a staged ssl_mix model: the output of
            its stage n-2 (the stage before the classifier), flattened.

    Raises:
        TypeError: a network that is neither.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        from ssl_mix.models import get_stages

        inner = network if hasattr(network, "forward_head") else getattr(network, "model", None)
        self.timm = isinstance(inner, nn.Module) and hasattr(inner, "forward_head")
        if self.timm:
            self.network = inner
            self.body = nn.Sequential()
        else:
            stages = get_stages(network)
            self.network = network
            self.body = nn.Sequential(*stages[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` normalised images -> ``(N, D)`` float32 features."""
        if self.timm:
            out = self.network.forward_head(self.network.forward_features(x), pre_logits=True)
        else:
            out = self.body(x)
        return out.flatten(1).float()


class Embedder(nn.Module):
    """A frozen encoder with its preprocessing: raw images in, embeddings out.

    Args:
        features: the :class:`FeatureNetwork`.
        record: the encoder record (``name``, ``kind``, ``weights``, ``preprocessing``), as :func:`load_encoder`
            makes it; ``preprocessing`` holds ``image_size`` (H, W), ``channels``, ``mean``, ``std``, ``resize``,
            ``interpolation``.
        zca: the whitening of an ssl_mix run encoder (applied after normalisation), else None.

    The input is ``(N, C, H, W)`` uint8 0..255 (or float 0..1) images of the record's size; the output ``(N, D)``
    float32. The scaling, normalisation and whitening are those of :class:`~ssl_mix.InferenceModel`.
    """

    def __init__(self, features: FeatureNetwork, record: Mapping[str, Any], zca: Any = None) -> None:
        super().__init__()
        from ssl_mix.inference import InferenceModel

        prep = record["preprocessing"]
        self.record = json.loads(json.dumps(dict(record)))
        # InferenceModel is the one definition of "raw pixels -> normalised input"; its "logits" are here the
        # features (temperature 1).
        self.inputs = InferenceModel(features, prep["mean"], prep["std"], output="logits", zca=zca)
        self.eval()

    @property
    def decode_settings(self) -> dict[str, Any]:
        """How files are decoded for this encoder, as keyword arguments of :func:`~ssl_mix.data.decode_image`."""
        prep = self.record["preprocessing"]
        return {"image_size": tuple(prep["image_size"]), "channels": int(prep["channels"]), "resize": prep["resize"],
                "interpolation": prep["interpolation"]}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` uint8 0..255 or float 0..1 images -> ``(N, D)`` float32 embeddings."""
        return self.inputs(images)


def _channel_values(name: str, values: Sequence[float] | float | None, channels: int) -> tuple[float, ...] | None:
    if values is None:
        return None
    values = (float(values),) if isinstance(values, (int, float)) else tuple(float(v) for v in values)
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{name} needs 1 or {channels} values (one per channel), got {len(values)}")
    if name == "std" and any(v <= 0 for v in values):
        raise ValueError(f"std values must be > 0, got {values}")
    return values


def load_encoder(encoder: str | Path, *, pretrained: bool = False, pretrained_file: str | Path | None = None,
                 image_size: int | tuple[int, int] | None = None, mean: Sequence[float] | float | None = None,
                 std: Sequence[float] | float | None = None, interpolation: str | None = None,
                 resize: str = "crop", channels: int = 3, device: str | torch.device = "cpu") -> Embedder:
    """A frozen encoder, with its preprocessing and its record.

    Args:
        encoder: ``timm:NAME`` (with ``pretrained`` or ``pretrained_file``), or an ssl_mix run directory or
            checkpoint (its EMA teacher).
        pretrained: timm's pretrained weights of ``timm:NAME`` (the hub, or its cache), as ``model.pretrained``.
        pretrained_file: a weights file for ``timm:NAME`` (safetensors, ``.pth``, a timm checkpoint), as
            ``model.pretrained_file``.
        image_size: ``H`` or ``(H, W)``; default the weights' pretrained configuration's.
        mean, std: per-channel normalisation in [0, 1] units (one value, or one per channel); default the
            pretrained configuration's.
        interpolation: the resize filter; default the pretrained configuration's (else bilinear).
        resize: ``crop`` (cover the size, cut the centre) or ``stretch``.
        channels: 3 (RGB) or 1 (grayscale) for a timm encoder.
        device: where the network runs.

    Returns:
        The :class:`Embedder`, in eval mode on ``device``.

    Raises:
        ValueError: no weights (or both) for a timm encoder, preprocessing settings for a run encoder (it uses
            the run's own), a timm model without a pretrained configuration and no ``image_size`` / ``mean`` /
            ``std``, or an encoder that is neither a ``timm:`` name nor a run.
        FileNotFoundError: the weights file or run does not exist.
    """
    from ssl_mix.models import is_timm_name

    name = str(encoder)
    if is_timm_name(name):
        return _timm_encoder(name, pretrained=pretrained, pretrained_file=pretrained_file, image_size=image_size,
                             mean=mean, std=std, interpolation=interpolation, resize=resize, channels=channels,
                             device=device)
    if pretrained or pretrained_file is not None:
        raise ValueError(f"pretrained and pretrained_file apply to timm:NAME encoders; {name!r} is taken as an "
                         "ssl_mix run, whose teacher's weights are used (ssl-mix embed: drop --pretrained and "
                         "--pretrained-file)")
    given = [setting for setting, value in (("image_size", image_size), ("mean", mean), ("std", std),
                                            ("interpolation", interpolation)) if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: an ssl_mix run encoder prepares images as the run was trained (its "
                         "recorded size, channels and normalisation); drop these settings")
    path = Path(name).expanduser().resolve()  # absolute in the record, so prediction finds it from anywhere
    if not path.exists():
        raise FileNotFoundError(f"encoder {name!r} is neither a timm model name (timm:NAME, e.g. timm:resnet18) nor "
                                "an existing ssl_mix run directory or checkpoint")
    return _run_encoder(path, device=device)


def _timm_encoder(name: str, *, pretrained: bool, pretrained_file: str | Path | None, image_size: Any, mean: Any,
                  std: Any, interpolation: str | None, resize: str, channels: int,
                  device: str | torch.device) -> Embedder:
    from ssl_mix.checks import check_in
    from ssl_mix.config import ModelConfig
    from ssl_mix.data.images import image_size_pair
    from ssl_mix.models import pretrained_inputs
    from ssl_mix.weights import build_starting_model

    if pretrained == (pretrained_file is not None):
        raise ValueError(f"encoder {name!r}: give its weights, either pretrained=True (timm's hub or cache) or "
                         f"pretrained_file=PATH, not {'both' if pretrained else 'neither'}; a randomly initialised "
                         "encoder makes no useful embeddings (ssl-mix embed --pretrained, or --pretrained-file PATH)")
    check_in("resize", resize, get_args(ResizeMode))
    check_in("channels", channels, (1, 3))
    if interpolation is not None:
        check_in("interpolation", interpolation, INTERPOLATIONS)
    defaults = pretrained_inputs(name) or {}
    size = image_size_pair(image_size) if image_size is not None else defaults.get("image_size")
    mean = _channel_values("mean", mean, channels) or _channel_values("mean", defaults.get("mean"), channels)
    std = _channel_values("std", std, channels) or _channel_values("std", defaults.get("std"), channels)
    missing = [setting for setting, value in (("image_size", size), ("mean", mean), ("std", std)) if value is None]
    if missing:
        raise ValueError(f"timm has no pretrained configuration for {name!r} to say how its inputs are prepared; "
                         f"give {', '.join(missing)} (ssl-mix embed --image-size, --mean, --std)")
    interpolation = interpolation or defaults.get("interpolation") or DEFAULT_INTERPOLATION
    if interpolation not in INTERPOLATIONS:  # e.g. timm's "bicubic" is ours; anything else falls back
        interpolation = DEFAULT_INTERPOLATION
    # The absolute path goes into the record, so that predicting from another folder finds the file again.
    cfg = ModelConfig(name=name, pretrained=pretrained,
                      pretrained_file=None if pretrained_file is None else str(Path(pretrained_file).expanduser()
                                                                               .resolve()))
    # One output: the classifier is not used (the embedding is the pre-logits vector), and a head of another
    # class count is simply kept fresh by the loader.
    network, weights = build_starting_model(cfg, 1, channels, tuple(size))
    record = {"format": ENCODER_FORMAT, "name": name, "kind": "timm", "weights": weights,
              "preprocessing": {"image_size": [int(s) for s in size], "channels": int(channels),
                                "mean": list(mean), "std": list(std), "resize": resize,
                                "interpolation": interpolation, "zca": False}}
    return _finish(Embedder(FeatureNetwork(network), record), device)


def _run_encoder(path: Path, *, device: str | torch.device) -> Embedder:
    from ssl_mix.data import preprocess_transform
    from ssl_mix.inference import image_settings
    from ssl_mix.run import load_run
    from ssl_mix.weights import weights_record

    run = load_run(path, device="cpu")
    if run.spec.features:
        raise ValueError(f"encoder {str(path)!r} is a run trained on feature vectors, not images; an encoder run "
                         "must take images (train one on an image folder or dataset)")
    settings = image_settings(run)
    zca = preprocess_transform(run.preprocess, torch.device("cpu"))
    record = {"format": ENCODER_FORMAT, "name": str(path), "kind": "run",
              "weights": weights_record(run.config.model.name, "run", run.checkpoint),
              "preprocessing": {"image_size": list(settings["image_size"]), "channels": int(settings["channels"]),
                                "mean": list(run.spec.mean), "std": list(run.spec.std), "resize": settings["resize"],
                                "interpolation": settings["interpolation"], "zca": zca is not None}}
    return _finish(Embedder(FeatureNetwork(run.models["teacher"]), record, zca=zca), device)


def _finish(embedder: Embedder, device: str | torch.device) -> Embedder:
    from ssl_mix.distributed import local_device

    target = local_device(str(device)) if not isinstance(device, torch.device) else device
    embedder = embedder.to(target).eval()
    for parameter in embedder.parameters():
        parameter.requires_grad_(False)
    return embedder


def encoder_from_record(record: Mapping[str, Any], *, device: str | torch.device = "cpu") -> Embedder:
    """Rebuild the encoder a feature file (or a run trained on one) records, checking its weights are the same.

    Args:
        record: the ``encoder`` record of :func:`embed_images`'s ``meta`` (a run's ``data["encoder"]``).
        device: where the network runs.

    Returns:
        The :class:`Embedder`, preprocessing as recorded.

    Raises:
        FileNotFoundError: the weights file or run is no longer where the record says.
        ValueError: that file's sha256 differs from the recorded one (the weights changed), or an unknown record.
    """
    from ssl_mix.weights import file_sha256

    if not isinstance(record, Mapping) or record.get("format") != ENCODER_FORMAT:
        raise ValueError(f"not an encoder record of format {ENCODER_FORMAT} (written by ssl-mix embed): {record!r}")
    weights, prep = record["weights"], record["preprocessing"]
    path = weights.get("path")
    if path is not None:
        if not Path(path).exists():
            raise FileNotFoundError(f"the encoder's weights {path!r} (recorded by ssl-mix embed) are gone; put the "
                                    "file back there, or embed the images again with the encoder you have")
        if weights.get("sha256") and file_sha256(path) != weights["sha256"]:
            raise ValueError(f"the encoder's weights {path!r} changed since the features were made (sha256 "
                             f"{weights['sha256'][:16]}... recorded); the head was trained on the old embeddings: "
                             "restore that file, or embed again and retrain")
    if record["kind"] == "run":
        return _run_encoder(Path(path), device=device)
    return _timm_encoder(record["name"], pretrained=weights["source"] == "timm-hub", pretrained_file=path,
                         image_size=tuple(prep["image_size"]), mean=prep["mean"], std=prep["std"],
                         interpolation=prep["interpolation"], resize=prep["resize"], channels=prep["channels"],
                         device=device)


def _input_files(inputs: Sequence[str | Path]) -> tuple[Any, Any]:
    """``(train files, test files or None)``: an image folder with ``train/`` (labeled by class folders), else the
    files, folders and patterns of ``inputs``, unlabeled."""
    from ssl_mix.data import ImageFiles, folder_files
    from ssl_mix.predict import find_images

    if len(inputs) == 1 and (Path(inputs[0]).expanduser() / "train").is_dir():
        root = Path(inputs[0]).expanduser()
        train = folder_files(root, "train")
        test = folder_files(root, "test") if (root / "test").is_dir() else None
        return train, test
    paths = find_images(inputs)
    return ImageFiles(paths, torch.full((len(paths),), -1, dtype=torch.int64), [], None), None


@torch.inference_mode()
def _embed_files(embedder: Embedder, files: Any, *, batch_size: int, cache: Any, skip_bad_images: bool,
                 bar: Any) -> tuple[np.ndarray, Any, list[Any]]:
    """``(features, the files embedded, the unreadable files skipped)``."""
    from ssl_mix.data import decode_files

    device = next(embedder.parameters()).device
    settings = embedder.decode_settings
    chunks, kept, skipped = [], [], []
    for start in range(0, len(files), _CHUNK):
        decoded = decode_files(files.subset(list(range(start, min(start + _CHUNK, len(files))))), cache=cache,
                               skip_bad_images=skip_bad_images, **settings)
        kept += [start + int(i) for i in decoded.kept]
        skipped += decoded.skipped
        bar.update(len(decoded.skipped))
        for batch in decoded.arrays.images.split(batch_size):
            chunks.append(embedder(batch.to(device)).cpu().numpy())
            bar.update(len(batch))
    features = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
    return features, files.subset(kept), skipped


def embed_images(encoder: Embedder, inputs: Sequence[str | Path], out: str | Path, *, batch_size: int = 64,
                 cache: bool | str | Path = True, skip_bad_images: bool = False, progress: bool = True
                 ) -> dict[str, Any]:
    """Embed image files with a frozen encoder and write the feature file that ``--dataset features`` reads.

    Args:
        encoder: from :func:`load_encoder`.
        inputs: one image folder with ``train/<class>/`` (and optionally ``test/<class>/``): labeled rows
            ``x_train``/``y_train`` (``x_test``/``y_test``) and ``classes``; or image files, folders (searched
            recursively) and glob patterns: unlabeled rows (``y_train = -1``).
        out: the ``.npz`` to write (atomically; parent folders are created).
        batch_size: images per forward pass.
        cache: the decoded-image cache: True (the default directory), a directory, or False.
        skip_bad_images: leave unreadable files out (listed in the meta's ``skipped``) instead of raising.
        progress: a progress bar on stderr.

    Returns:
        The ``meta`` record written into the file (``encoder``, ``preprocessing``, ``paths``, ``num_features``),
        plus ``out``.

    Raises:
        ValueError: ``out`` is not a ``.npz``, no images, unreadable files (named; a
            :class:`~ssl_mix.data.BadImageError`) without ``skip_bad_images``, or a bad ``batch_size``.
    """
    from tqdm.auto import tqdm

    from ssl_mix.atomic import atomic_path
    from ssl_mix.checks import check_positive_int
    from ssl_mix.version import __version__

    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise ValueError(f"the embeddings are written as a .npz feature file; got out={str(out)!r}")
    check_positive_int("batch_size", batch_size)
    train, test = _input_files(inputs)
    total = len(train) + (len(test) if test is not None else 0)
    if not total:
        raise ValueError(f"no images in {', '.join(map(str, inputs))}")
    with tqdm(total=total, unit="img", desc="embedding", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        options = {"batch_size": batch_size, "cache": cache, "skip_bad_images": skip_bad_images, "bar": bar}
        x_train, train, skipped = _embed_files(encoder, train, **options)
        if test is not None:
            x_test, test, skipped_test = _embed_files(encoder, test, **options)
            skipped += skipped_test
    if not len(train):
        raise ValueError(f"none of the training images in {', '.join(map(str, inputs))} could be read")
    record = dict(encoder.record)
    meta = {"ssl_mix": __version__, "encoder": record, "num_features": int(x_train.shape[1]),
            "paths": {"train": [str(p) for p in train.paths],
                      **({"test": [str(p) for p in test.paths]} if test is not None else {})},
            "skipped": [[str(err.path), err.reason] for err in skipped]}
    arrays: dict[str, np.ndarray] = {"x_train": x_train, "y_train": train.targets.numpy().astype(np.int64)}
    if test is not None:
        arrays.update(x_test=x_test, y_test=test.targets.numpy().astype(np.int64))
    if train.classes:
        arrays["classes"] = np.array([str(c) for c in train.classes])
    arrays[META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return {**meta, "out": str(out)}


class EndToEndModel(nn.Module):
    """Image -> encoder -> head: raw images in, the head's calibrated probabilities out.

    Args:
        encoder: the :class:`Embedder` the features were made with.
        head: the feature run's :class:`~ssl_mix.InferenceModel` (standardisation, network, temperature).
    """

    def __init__(self, encoder: Embedder, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.probabilities = bool(getattr(head, "probabilities", True))
        self.register_buffer("mean", torch.zeros(0))  # Predictor reads the device from it

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` uint8 0..255 or float 0..1 images -> ``(N, num_classes)``."""
        features = self.encoder(images)
        return self.head(features.reshape(features.shape[0], -1, 1, 1))


def encoder_predictor(run: Any, *, which: str = "teacher", calibrated: bool = True,
                      device: str | torch.device = "cpu") -> Any:
    """A :class:`~ssl_mix.Predictor` for images, of a run trained on features that ``ssl-mix embed`` made.

    Args:
        run: a loaded run (:func:`ssl_mix.load_run`) whose checkpoint records the encoder.
        which: ``teacher`` or ``student``.
        calibrated: apply the run's temperature.
        device: where the encoder runs (the head runs where the run was loaded).

    Returns:
        A predictor whose model is an :class:`EndToEndModel`; its decode settings are the encoder's.

    Raises:
        ValueError: the run did not train on an ``ssl-mix embed`` feature file.
    """
    from ssl_mix.inference import Predictor, inference_model

    record = getattr(run, "encoder", None)
    if not record:
        raise ValueError("this run trained on feature vectors that record no encoder (not made by ssl-mix embed), "
                         "so it cannot predict images; predict a feature file instead (ssl-mix predict RUN "
                         "FEATURES.npz|.csv --out FILE)")
    head = inference_model(run, which, calibrated=calibrated)  # type: ignore[arg-type]
    encoder = encoder_from_record(record, device=next(head.parameters()).device if device == "auto" else device)
    model = EndToEndModel(encoder, head).to(next(head.parameters()).device).eval()
    settings = encoder.decode_settings
    return Predictor(model, run.classes, image_size=settings["image_size"],  # type: ignore[arg-type]
                     channels=settings["channels"], resize=settings["resize"],
                     interpolation=settings["interpolation"])
