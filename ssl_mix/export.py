"""Shipping a trained model: ONNX, TorchScript or safetensors, with its preprocessing and temperature baked in.

What is exported is the run's :class:`~ssl_mix.InferenceModel`: raw images of the run's size in, calibrated class
probabilities out, so the consumer needs no normalisation constants and no ssl_mix code (ONNX, TorchScript).
Beside the model file a JSON sidecar (``PATH.json``) records what a consumer must know: class names, input shape
and dtype, channels, resize policy and filter, mean and std (already applied inside), the temperature (already applied),
the architecture and the run it came from. Its ``preprocessing`` field states every step from a file to the
model's input exactly (``decode``: :func:`ssl_mix.data.images.describe_decoding`, the Pillow calls of
:func:`~ssl_mix.data.decode_image`, JPEG draft decoding included) and what the model does inside (``in_model``:
:meth:`ssl_mix.InferenceModel.describe`), so that a Pillow + NumPy script written from it feeds the model the
pixels ``ssl-mix predict`` feeds it.

- ``onnx``: input ``images`` uint8 ``(N, C, H, W)`` (batch size free), output ``probabilities`` float32. Written with
  PyTorch's TorchScript-based exporter (no extra dependency beyond ``onnx``); run it with onnxruntime. Needs the
  ``export`` extra: ``pip install "ssl-mix[export]"``.
- ``torchscript``: ``torch.jit.load(PATH)``; takes uint8 0..255 or float 0..1 images.
- ``safetensors``: the InferenceModel's ``state_dict`` (weights plus mean, std and temperature buffers), with the
  sidecar also stored in the file's metadata; :func:`load_export` rebuilds the module (it needs ssl_mix for the
  architecture).

A run trained on feature vectors (``--dataset features``) exports its head: input ``features``, raw float32 ``(N, F)``
rows, their per-feature standardisation baked in as an image run's normalisation is (:class:`FeatureHead`). For a
run trained on a file ``ssl-mix embed`` made, ``with_encoder`` exports image -> encoder -> head instead (raw uint8
images of the encoder's size in, ONNX or TorchScript), and the sidecar records the encoder either way.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_mix.atomic import atomic_path
from ssl_mix.checks import check_in
from ssl_mix.choices import EXPORT_FORMATS, ExportFormat
from ssl_mix.version import __version__

__all__ = ["EXPORT_FORMATS", "FeatureHead", "export_model", "load_export", "sidecar_path"]

"""The formats :func:`export_model` writes."""

_EXTRA_HINT = 'pip install "ssl-mix[export]" (or pip install onnx onnxruntime)'


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar written beside an exported model: ``PATH.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def export_model(run: str | Path | Any, out: str | Path, *, format: ExportFormat, which: str = "teacher",
                 calibrated: bool = True, with_encoder: bool = False) -> dict[str, Any]:
    """Export one model of a run with its normalisation and temperature baked in.

    Args:
        run: a run directory, a checkpoint file, or a loaded run.
        out: the model file to write (parent folders are created); the sidecar goes to ``out + ".json"``.
        format: ``"onnx"``, ``"torchscript"`` or ``"safetensors"``.
        which: ``"teacher"`` (default) or ``"student"``.
        calibrated: bake in the run's temperature (T = 1 when the run was never calibrated).
        with_encoder: for a run trained on ``ssl-mix embed`` features: export image -> encoder -> head (raw uint8
            images of the encoder's size in; ONNX or TorchScript). Without it a feature run's export is the head:
            raw float ``(N, F)`` features in (input ``features``), their standardisation baked in.

    Returns:
        The sidecar dict.

    Raises:
        ImportError: ONNX export without the ``onnx`` package (the message names the extra to install).
        ValueError: ``with_encoder`` for a run that is not an ``ssl-mix embed`` feature run, or as safetensors.
    """
    from ssl_mix.data.images import describe_decoding
    from ssl_mix.inference import image_settings, inference_model
    from ssl_mix.run import load_run, write_json

    check_in("format", format, EXPORT_FORMATS)
    if format == "onnx":
        try:
            import onnx
        except ImportError:
            raise ImportError(f"ONNX export needs the onnx package, which is not installed: {_EXTRA_HINT}") from None
    loaded = load_run(run, device="cpu") if isinstance(run, (str, Path)) else run
    model = inference_model(loaded, which, calibrated=calibrated).cpu()  # type: ignore[arg-type]
    common = {"format": format, "ssl_mix": __version__, "classes": list(loaded.classes),
              "output": "probabilities (softmax of the logits divided by the temperature)",
              "mean": list(loaded.spec.mean), "std": list(loaded.spec.std),
              "temperature": float(model.temperature), "model": loaded.config.model.name,
              "model_options": {k: list(v) if isinstance(v, tuple) else v
                                for k, v in loaded.config.model.architecture_options().items()}, "which": which,
              "zca": model.whiten, "num_classes": len(loaded.classes), "source": str(getattr(loaded, "checkpoint", "")),
              "step": int(getattr(loaded, "step", 0))}
    if with_encoder and not loaded.spec.features:
        raise ValueError("with_encoder exports a head trained on embeddings (ssl-mix embed) together with its "
                         "encoder; this run takes images already, so drop it")
    input_name = "images"
    if loaded.spec.features and not with_encoder:
        num_features = int(loaded.input_shape[0])
        sidecar = {**common, "features": num_features,
                   "input": {"shape": ["N", num_features], "features": num_features, "channels": num_features,
                             "height": 1, "width": 1, "dtype": "float32", "layout": "NF"},
                   "preprocessing": {"in_model": {**model.describe(), "scale": "none: the raw features, float"}}}
        if getattr(loaded, "encoder", None):
            sidecar["encoder"] = loaded.encoder
        example: torch.Tensor = torch.zeros((2, num_features))
        input_name = "features"
        model = FeatureHead(model)
    else:
        if loaded.spec.features:
            from ssl_mix.embed import EndToEndModel, encoder_from_record

            if not getattr(loaded, "encoder", None):
                raise ValueError("this run trained on feature vectors that record no encoder (not made by ssl-mix "
                                 "embed), so there is no encoder to export; export the head alone (without "
                                 "with_encoder)")
            if format == "safetensors":
                raise ValueError("an export with the encoder is written as onnx or torchscript (the encoder is "
                                 "another network than the run's); use format onnx or torchscript, or export the "
                                 "head alone as safetensors")
            encoder = encoder_from_record(loaded.encoder, device="cpu")
            model = EndToEndModel(encoder, model).eval()
            settings = encoder.decode_settings
            common["encoder"] = loaded.encoder
            in_model = {"encoder": {"name": loaded.encoder["name"],
                                    "normalize": encoder.inputs.describe()["normalize"]},
                        "head": model.head.describe()}
        else:
            settings = image_settings(loaded)
            in_model = model.describe()
        channels, (height, width) = settings["channels"], settings["image_size"]
        sidecar = {
            **common,
            "input": {"shape": ["N", channels, height, width], "channels": channels, "height": height,
                      "width": width,
                      # a traced model (the encoder's) keeps the uint8 branch it was traced with
                      "dtype": "uint8" if format == "onnx" or with_encoder else "uint8 (0..255) or float (0..1)",
                      "resize": settings["resize"], "interpolation": settings["interpolation"], "layout": "NCHW",
                      "channel_order": "RGB" if channels == 3 else "L"},
            "preprocessing": {
                "decode": describe_decoding(image_size=(height, width), resize=settings["resize"], channels=channels,
                                            interpolation=settings["interpolation"]),
                "in_model": in_model},
        }
        example = torch.zeros((2, channels, height, width), dtype=torch.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        if format == "onnx":
            _export_onnx(model, example, tmp, input_name)
            onnx.checker.check_model(str(tmp))
        elif format == "torchscript":
            with warnings.catch_warnings():
                # torch.jit is deprecated in favour of torch.export, but torch.jit.load still needs no Python source
                # of the model, which is what a consumer without ssl_mix wants.
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                # An encoder's timm network is traced (its forward_head takes keyword flags TorchScript cannot
                # compile); ssl_mix's own modules are scripted.
                scripted = torch.jit.trace(model, example) if with_encoder else torch.jit.script(model)
                scripted.save(str(tmp))
        else:
            from safetensors.torch import save

            # The bytes, not save_file: save_file renames its own temporary file over the target, mode 0600.
            inner = model.model if isinstance(model, FeatureHead) else model
            state = {k: v.detach().contiguous() for k, v in inner.state_dict().items()}
            tmp.write_bytes(save(state, metadata={"ssl_mix": json.dumps(sidecar)}))
    write_json(sidecar_path(out), sidecar)
    return sidecar


class FeatureHead(nn.Module):
    """A feature run's :class:`~ssl_mix.InferenceModel` taking flat ``(N, F)`` feature rows, as its exports do.

    Args:
        model: the InferenceModel (standardisation, network, temperature), which takes ``(N, F, 1, 1)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, F)`` (or ``(N, F, 1, 1)``) raw float features -> ``(N, num_classes)`` probabilities."""
        return self.model(features.reshape(features.shape[0], -1, 1, 1).float())


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, input_name: str = "images") -> None:
    with warnings.catch_warnings():
        # The TorchScript-based exporter (dynamo=False) is deprecated in favour of the torch.export-based one, which
        # needs onnxscript as well; this one needs only onnx and handles the models here.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[input_name],
                          output_names=["probabilities"], dynamic_axes={input_name: {0: "batch"},
                                                                         "probabilities": {0: "batch"}},
                          opset_version=17)


def load_export(path: str | Path) -> nn.Module:
    """Load a TorchScript or safetensors export back as a module (in eval mode, on the CPU).

    Args:
        path: the exported file; its sidecar (``PATH.json``) names the architecture.

    Returns:
        The module: raw images in, probabilities out. (For ONNX, use ``onnxruntime.InferenceSession(path)``.)
    """
    from ssl_mix.config import ModelConfig
    from ssl_mix.data import ZCA
    from ssl_mix.inference import InferenceModel
    from ssl_mix.models import build_model

    path = Path(path)
    meta_path = sidecar_path(path)
    if not path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"load_export needs {str(path)!r} and its sidecar {str(meta_path)!r}, as written by "
                                "ssl-mix export")
    meta = json.loads(meta_path.read_text())
    if meta["format"] == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; see the module docstring
            return torch.jit.load(str(path), map_location="cpu").eval()
    if meta["format"] != "safetensors":
        raise ValueError(f"load_export reads torchscript and safetensors exports; {str(path)!r} is "
                         f"{meta['format']!r} (run it with onnxruntime.InferenceSession)")
    from safetensors.torch import load_file

    network = build_model(ModelConfig(name=meta["model"], **meta.get("model_options", {})), meta["num_classes"],
                          meta["input"]["channels"],
                          (meta["input"]["height"], meta["input"]["width"]))
    state = load_file(str(path))
    zca = None
    if meta.get("zca"):  # a placeholder of the right shape; the state below holds the fitted whitening
        shape = (meta["input"]["channels"], meta["input"]["height"], meta["input"]["width"])
        dims = shape[0] * shape[1] * shape[2]
        zca = ZCA(mean=torch.zeros(dims), matrix=torch.eye(dims), eps=0.0, image_shape=shape)
    model = InferenceModel(network, meta["mean"], meta["std"], temperature=meta["temperature"], zca=zca)
    model.load_state_dict(state)
    return FeatureHead(model).eval() if meta.get("features") else model.eval()

