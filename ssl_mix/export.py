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

__all__ = ["EXPORT_FORMATS", "export_model", "load_export", "sidecar_path"]

"""The formats :func:`export_model` writes."""

_EXTRA_HINT = 'pip install "ssl-mix[export]" (or pip install onnx onnxruntime)'


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar written beside an exported model: ``PATH.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def export_model(run: str | Path | Any, out: str | Path, *, format: ExportFormat, which: str = "teacher",
                 calibrated: bool = True) -> dict[str, Any]:
    """Export one model of a run with its normalisation and temperature baked in.

    Args:
        run: a run directory, a checkpoint file, or a loaded run.
        out: the model file to write (parent folders are created); the sidecar goes to ``out + ".json"``.
        format: ``"onnx"``, ``"torchscript"`` or ``"safetensors"``.
        which: ``"teacher"`` (default) or ``"student"``.
        calibrated: bake in the run's temperature (T = 1 when the run was never calibrated).

    Returns:
        The sidecar dict.

    Raises:
        ImportError: ONNX export without the ``onnx`` package (the message names the extra to install).
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
    if loaded.spec.features:
        raise ValueError("this run trained on feature vectors (dataset 'features'); exporting feature runs is not "
                         "supported yet: predict from Python with ssl_mix.load_predictor(RUN).predict(x), x a float "
                         "(N, F, 1, 1) tensor (e.g. ssl_mix.read_features(FILE)[1].images)")
    model = inference_model(loaded, which, calibrated=calibrated).cpu()  # type: ignore[arg-type]
    settings = image_settings(loaded)
    channels, (height, width) = settings["channels"], settings["image_size"]
    sidecar = {
        "format": format, "ssl_mix": __version__, "classes": list(loaded.classes),
        "input": {"shape": ["N", channels, height, width], "channels": channels, "height": height, "width": width,
                  "dtype": "uint8" if format == "onnx" else "uint8 (0..255) or float (0..1)",
                  "resize": settings["resize"], "interpolation": settings["interpolation"], "layout": "NCHW",
                  "channel_order": "RGB" if channels == 3 else "L"},
        "output": "probabilities (softmax of the logits divided by the temperature)",
        "preprocessing": {
            "decode": describe_decoding(image_size=(height, width), resize=settings["resize"], channels=channels,
                                        interpolation=settings["interpolation"]),
            "in_model": model.describe()},
        "mean": list(loaded.spec.mean), "std": list(loaded.spec.std),
        "temperature": float(model.temperature), "model": loaded.config.model.name, "which": which,
        "zca": model.whiten,
        "num_classes": len(loaded.classes), "source": str(getattr(loaded, "checkpoint", "")),
        "step": int(getattr(loaded, "step", 0)),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros((2, channels, height, width), dtype=torch.uint8)
    with atomic_path(out) as tmp:
        if format == "onnx":
            _export_onnx(model, example, tmp)
            onnx.checker.check_model(str(tmp))
        elif format == "torchscript":
            with warnings.catch_warnings():
                # torch.jit is deprecated in favour of torch.export, but torch.jit.load still needs no Python source
                # of the model, which is what a consumer without ssl_mix wants.
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = torch.jit.script(model)
                scripted.save(str(tmp))
        else:
            from safetensors.torch import save

            # The bytes, not save_file: save_file renames its own temporary file over the target, mode 0600.
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            tmp.write_bytes(save(state, metadata={"ssl_mix": json.dumps(sidecar)}))
    write_json(sidecar_path(out), sidecar)
    return sidecar


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        # The TorchScript-based exporter (dynamo=False) is deprecated in favour of the torch.export-based one, which
        # needs onnxscript as well; this one needs only onnx and handles the models here.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["images"],
                          output_names=["probabilities"], dynamic_axes={"images": {0: "batch"},
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

    network = build_model(ModelConfig(name=meta["model"]), meta["num_classes"], meta["input"]["channels"],
                          (meta["input"]["height"], meta["input"]["width"]))
    state = load_file(str(path))
    zca = None
    if meta.get("zca"):  # a placeholder of the right shape; the state below holds the fitted whitening
        shape = (meta["input"]["channels"], meta["input"]["height"], meta["input"]["width"])
        dims = shape[0] * shape[1] * shape[2]
        zca = ZCA(mean=torch.zeros(dims), matrix=torch.eye(dims), eps=0.0, image_shape=shape)
    model = InferenceModel(network, meta["mean"], meta["std"], temperature=meta["temperature"], zca=zca)
    model.load_state_dict(state)
    return model.eval()

