"""Using a trained model: raw images in, calibrated class probabilities out.

:class:`InferenceModel` wraps a trained network with everything between a raw image and a probability: scaling
uint8 pixels to [0, 1], the run's per-channel normalisation, and the temperature fitted on the validation split
(:mod:`ssl_mix.calibration`). It is the one definition of that pipeline: :class:`Predictor` runs it, and
:mod:`ssl_mix.export` writes it to ONNX, TorchScript or safetensors, so an exported model and ``ssl-mix predict``
give the same numbers.

:func:`load_predictor` opens a run (a run directory or a checkpoint) and returns a :class:`Predictor`, whose
:meth:`~Predictor.predict` takes PIL images, arrays or tensors of any size and brings them to the run's input
format (size, channels) the way training loaded its images.

:func:`evaluate_run` scores a trained run's models on a test set, before and after its calibration temperature, with
each class's accuracy and the confusion matrix; :func:`format_evaluation` is what ``ssl-mix eval`` prints of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ssl_mix.checks import check_in
from ssl_mix.choices import DEFAULT_INTERPOLATION
from ssl_mix.data import ZCA, preprocess_transform
from ssl_mix.teacher import MODEL_ROLES

__all__ = ["InferenceModel", "Predictor", "Prediction", "load_predictor", "image_settings", "inference_model",
           "run_temperature", "RunEvaluation", "evaluate_run", "format_evaluation"]

Which = Literal["student", "teacher"]


class InferenceModel(nn.Module):
    """A classifier that does its own preprocessing: raw images in, calibrated probabilities (or logits) out.

    Args:
        model: the trained network (takes normalised float images, returns logits).
        mean, std: per-channel normalisation of the run, in [0, 1] units.
        temperature: the calibration temperature T (1: uncalibrated); logits are divided by it.
        zca: the run's ZCA whitening (:func:`~ssl_mix.preprocess_transform`), applied after normalisation as in
            training; None for runs without one.
        output: ``"probabilities"`` (softmax of the scaled logits; the default) or ``"logits"`` (scaled logits).

    The input is ``(N, C, H, W)`` of the run's channels and size, either uint8 0..255 or float 0..1 (any float
    dtype). The constants are buffers, so ``state_dict()`` holds everything the forward pass needs.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], *, temperature: float = 1.0,
                 output: Literal["probabilities", "logits"] = "probabilities", zca: ZCA | None = None) -> None:
        super().__init__()
        check_in("output", output, ("probabilities", "logits"))
        if len(mean) != len(std) or not len(mean):
            raise ValueError(f"mean and std need one entry per channel, got {len(mean)} and {len(std)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("temperature", torch.tensor(float(temperature), dtype=torch.float32))
        self.probabilities = output == "probabilities"
        self.whiten = zca is not None
        # (x - m) W = x W - m W with W symmetric: one matrix product, exportable as a plain Gemm. Empty without a
        # ZCA, so that the buffers exist either way (TorchScript compiles both branches).
        matrix = zca.matrix.float() if zca is not None else torch.zeros(0, 0)
        self.register_buffer("zca_matrix", matrix)
        self.register_buffer("zca_shift", -(zca.mean.float() @ matrix) if zca is not None else torch.zeros(0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` uint8 0..255 or float 0..1 images -> ``(N, num_classes)`` probabilities or logits."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        x = (x - self.mean) / self.std
        if self.whiten:
            x = torch.addmm(self.zca_shift, x.reshape(x.shape[0], -1), self.zca_matrix).view(x.shape)
        logits = self.model(x).float() / self.temperature
        if self.probabilities:
            return torch.softmax(logits, dim=1)
        return logits

    def describe(self) -> dict[str, Any]:
        """What :meth:`forward` does to its input before and after the network, as JSON-ready data (the
        ``preprocessing.in_model`` field of an export's sidecar).

        Returns:
            ``{"order", "scale", "normalize", "zca", "temperature", "output"}``: each step's formula, with the
            constants (mean, std, T) and, for the ZCA whitening, the buffers that hold its matrix and shift.
        """
        dims = int(self.zca_matrix.shape[0])
        return {
            "order": ["scale", "normalize", "zca", "network", "temperature", "output"],
            "scale": "x = pixels / 255 for uint8 input (float32); float input is taken as already in [0, 1]",
            "normalize": {"formula": "x[:, c] = (x[:, c] - mean[c]) / std[c]",
                          "mean": [float(v) for v in self.mean.flatten()],
                          "std": [float(v) for v in self.std.flatten()]},
            "zca": {"applied": bool(self.whiten),
                    "formula": "x = (x.reshape(N, C*H*W) @ zca_matrix + zca_shift).reshape(N, C, H, W), i.e. "
                               "(x - zca_mean) @ W with W symmetric and zca_shift = -zca_mean @ W; flattened in C, "
                               "H, W order" if self.whiten else "none",
                    "where": "inside the exported model (buffers 'zca_matrix' (D, D) and 'zca_shift' (D,), "
                             f"D = {dims}; the safetensors export stores them under these names)"
                             if self.whiten else "none"},
            "temperature": {"formula": "logits / T", "T": float(self.temperature)},
            "output": "softmax(logits / T) over classes" if self.probabilities else "logits / T",
        }


@dataclass
class Prediction:
    """What :meth:`Predictor.predict` returns for N images.

    Attributes:
        indices: ``(N,)`` int64 predicted class indices.
        names: the predicted class names.
        probabilities: ``(N, num_classes)`` float32 calibrated probabilities (rows sum to 1).
    """

    indices: torch.Tensor
    names: list[str]
    probabilities: torch.Tensor

    @property
    def confidence(self) -> torch.Tensor:
        """``(N,)`` probability of the predicted class."""
        return self.probabilities.max(dim=1).values


def image_settings(run: Any) -> dict[str, Any]:
    """How a run's input images are brought to its format: ``{"image_size": (H, W), "channels": C,
    "resize": "crop" | "stretch", "interpolation": filter}``, from the run's input shape and its decode settings
    (:meth:`~ssl_mix.config.DataConfig.decode_settings`, which training and evaluation use too). A run trained
    without ``image_size`` took its images at their own size; other images are brought to that size the same way."""
    settings = run.config.data.decode_settings()
    channels, height, width = (int(v) for v in run.input_shape)
    return {"image_size": (height, width), "channels": settings["channels"] or channels, "resize": settings["resize"],
            "interpolation": settings["interpolation"]}


class Predictor:
    """Class predictions of a trained model for images of any size and mode.

    Args:
        model: the :class:`InferenceModel` (its output must be probabilities).
        classes: class names, index i naming class i.
        image_size: ``(H, W)`` the model takes.
        channels: 1 or 3.
        resize: how images of another size are brought to ``image_size`` (as the run's training did).
        interpolation: the resize filter (as the run's training used).

    Attributes:
        model: the :class:`InferenceModel`, on its device in eval mode; call it directly on batches already in
            the run's format.
    """

    def __init__(self, model: InferenceModel, classes: Sequence[str], *, image_size: tuple[int, int],
                 channels: int, resize: str = "crop", interpolation: str = DEFAULT_INTERPOLATION) -> None:
        if not model.probabilities:
            raise ValueError("Predictor needs an InferenceModel that outputs probabilities")
        self.model = model.eval()
        self.classes = list(classes)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.channels = int(channels)
        self.resize = resize
        self.interpolation = interpolation

    @property
    def decode_settings(self) -> dict[str, Any]:
        """How images are brought to the model's input, as keyword arguments of
        :func:`~ssl_mix.data.prepare_image` and :func:`~ssl_mix.data.decode_image`."""
        return {"image_size": self.image_size, "channels": self.channels, "resize": self.resize,
                "interpolation": self.interpolation}

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.model.mean.device

    def prepare(self, images: Any) -> torch.Tensor:
        """Bring images to the model's input: uint8 (or float 0..1) ``(N, C, H, W)`` of the run's size.

        Args:
            images: one image (PIL image, ``(H, W[, C])`` array, ``(C, H, W)`` tensor) or a sequence of them, or a
                batch ``(N, C, H, W)`` tensor / ``(N, H, W, C)`` array; uint8 0..255 or float 0..1.

        Returns:
            A batch tensor on the CPU.
        """
        from ssl_mix.data import arrays_from_tensors, prepare_image

        settings = self.decode_settings
        shape = (self.channels, *self.image_size)
        if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:  # a batch
            batch = images if isinstance(images, torch.Tensor) and tuple(images.shape[1:]) == shape \
                else arrays_from_tensors(images).images
            if tuple(batch.shape[1:]) == shape:
                return batch
            images = list(batch)
        elif isinstance(images, (torch.Tensor, np.ndarray)) or hasattr(images, "mode"):  # one image
            images = [images]
        if not isinstance(images, Sequence) or isinstance(images, str):
            raise TypeError(f"predict takes PIL images, arrays or tensors (one, a list, or a batch), got "
                            f"{type(images).__name__}; for files use ssl_mix.data.decode_image or ssl-mix predict")
        if not len(images):
            raise ValueError("predict got no images")
        return torch.stack([prepare_image(image, **settings) for image in images])

    @torch.inference_mode()
    def predict(self, images: Any, *, batch_size: int = 256) -> Prediction:
        """Predict the classes of ``images``.

        Args:
            images: see :meth:`prepare`.
            batch_size: images per forward pass.

        Returns:
            A :class:`Prediction` (on the CPU).
        """
        batch = self.prepare(images)
        probabilities = torch.cat([self.model(chunk.to(self.device)).float().cpu()
                                   for chunk in batch.split(batch_size)]) if len(batch) else \
            torch.zeros((0, len(self.classes)))
        indices = probabilities.argmax(dim=1)
        return Prediction(indices, [self.classes[i] for i in indices.tolist()], probabilities)


def inference_model(run: Any, which: Which = "teacher", *, calibrated: bool = True,
                    output: Literal["probabilities", "logits"] = "probabilities") -> InferenceModel:
    """The :class:`InferenceModel` of one model of a loaded run, with the run's temperature when ``calibrated``
    and the run has one (else T = 1)."""
    check_in("which", which, MODEL_ROLES)
    device = next(run.models[which].parameters()).device
    return InferenceModel(run.models[which], run.spec.mean, run.spec.std,
                          temperature=run_temperature(run, which) if calibrated else 1.0, output=output,
                          zca=preprocess_transform(run.preprocess, device)).eval()


def run_temperature(run: Any, which: Which) -> float:
    """The calibration temperature of ``which`` stored in the run, or 1.0 when it was never calibrated."""
    calibration = getattr(run, "calibration", None) or {}
    return float(calibration.get("temperature", {}).get(which, 1.0))


def load_predictor(run: str | Path | Any, *, which: Which = "teacher", device: str = "auto",
                   calibrated: bool = True) -> Predictor:
    """A :class:`Predictor` for a trained run.

    Args:
        run: a run directory (its ``last.pt``), a checkpoint file, or a run loaded with :func:`ssl_mix.load_run`.
        which: ``"teacher"`` (the EMA teacher, the default) or ``"student"``.
        device: ``auto``, ``cpu``, ``cuda``...
        calibrated: apply the run's fitted temperature (see :func:`ssl_mix.calibrate_run`); a run that was never
            calibrated predicts with T = 1.

    Returns:
        The predictor; its ``.model`` takes raw images of the run's size.
    """
    from ssl_mix.run import load_run

    loaded = load_run(run, device=device) if isinstance(run, (str, Path)) else run
    return Predictor(inference_model(loaded, which, calibrated=calibrated), loaded.classes,
                     **image_settings(loaded))


@dataclass
class RunEvaluation:
    """The test-set metrics of a trained run's models, as :func:`evaluate_run` measured them.

    Args:
        dataset: the dataset whose test set was used.
        step: the training step of the checkpoint.
        calibrated: whether the run holds a fitted temperature (otherwise ``after`` equals ``before``, T = 1).
        models: ``{"student" | "teacher": {"temperature": T, "before": metrics, "after": metrics, "confusion":
            matrix, "per_class_accuracy": accuracies}}``, the metrics as
            :meth:`ssl_mix.ClassificationMetrics.compute` gives them (accuracy and ECE in %, NLL in nats, ``count``
            images); ``after`` divides the logits by T. ``confusion`` is the ``(C, C)`` int64
            :func:`~ssl_mix.metrics.confusion_matrix` (rows the true classes, in the order of ``classes``) and
            ``per_class_accuracy`` the ``(C,)`` accuracies in % read from it (NaN for a class without test images);
            both hold before and after calibration, as a temperature does not change the arg-max.
        curves: the inputs of :func:`ssl_mix.analysis.plot_reliability`: ``{label: (probabilities (N, C),
            targets (N,))}``, the raw softmax of each model and, when calibrated, the scaled one.
        classes: the run's class names, index i naming class i.
    """

    dataset: str
    step: int
    calibrated: bool
    models: dict[str, dict[str, Any]]
    curves: dict[str, tuple[torch.Tensor, torch.Tensor]]
    classes: list[str] = field(default_factory=list)


def evaluate_run(run: str | Path, *, which: Which | Literal["both"] = "both", dataset: str | None = None,
                 data_root: str | None = None, device: str = "auto") -> RunEvaluation:
    """Evaluate a trained run's student and teacher on a test set, with and without the run's temperature.

    Args:
        run: a run directory (its latest checkpoint) or a checkpoint file.
        which: ``student``, ``teacher`` or ``both``.
        dataset: evaluate on this dataset's test set instead of the run's (same classes expected).
        data_root: where that dataset lives (default: the run's).
        device: ``auto``, ``cpu``, ``cuda``...

    Returns:
        The metrics of each model, its per-class accuracy and confusion matrix, and the reliability-diagram inputs
        (:class:`RunEvaluation`).

    Raises:
        ValueError: an unknown ``which``, or a test set that does not match the run (the message says how).
    """
    from ssl_mix.calibration import calibration_metrics, model_logits, scale_logits
    from ssl_mix.data import eval_batches
    from ssl_mix.evaluation import EVAL_BATCH_SIZE
    from ssl_mix.metrics import confusion_matrix, per_class_accuracy
    from ssl_mix.run import load_trained

    check_in("which", which, (*MODEL_ROLES, "both"))
    loaded = load_trained(run, dataset=dataset, data_root=data_root, device=device)
    calibrated = bool(loaded.calibration)
    models, curves = {}, {}
    for name in MODEL_ROLES if which == "both" else (which,):
        model = loaded.models[name]
        model_device = next(model.parameters()).device
        batches = eval_batches(loaded.test, loaded.spec, EVAL_BATCH_SIZE, model_device,
                               preprocess=preprocess_transform(loaded.preprocess, model_device))
        logits, targets = model_logits(model, batches, device=model_device)
        temperature = run_temperature(loaded, name)
        matrix = confusion_matrix(logits.argmax(dim=1), targets, len(loaded.classes))
        models[name] = {"temperature": temperature, **calibration_metrics(logits, targets, temperature),
                        "confusion": matrix, "per_class_accuracy": per_class_accuracy(matrix)}
        curves[f"{name}, raw"] = (logits.softmax(dim=1), targets)
        if calibrated:
            curves[f"{name}, T={temperature:.2f}"] = (scale_logits(logits, temperature).softmax(dim=1), targets)
    return RunEvaluation(loaded.dataset, loaded.step, calibrated, models, curves, list(loaded.classes))


def format_evaluation(evaluation: RunEvaluation, *, max_classes: int = 30, max_matrix: int = 12) -> str:
    """An evaluation as ``ssl-mix eval`` prints it: one line of metrics per model, then, for the teacher (the model
    predictions use by default; the student when only it was evaluated), a per-class table and the confusion matrix.

    Args:
        evaluation: from :func:`evaluate_run`.
        max_classes: the per-class table lists every class up to this many, else the ``max_classes`` least
            accurate ones.
        max_matrix: the confusion matrix is printed in full up to this many classes, else as its most frequent
            confusions (the ``--plot`` image shows it whole).

    Returns:
        The text, without a final newline.
    """
    lines = []
    for name, record in evaluation.models.items():
        before, after, temperature = record["before"], record["after"], record["temperature"]
        line = (f"{name:<8} {evaluation.dataset} test accuracy {before['accuracy']:.2f}%  nll {before['nll']:.4f}  "
                f"ece {before['ece']:.2f}%")
        if evaluation.calibrated:
            line += f"  calibrated (T={temperature:.3f}): nll {after['nll']:.4f}  ece {after['ece']:.2f}%"
        lines.append(line + f"  ({before['count']} images, step {evaluation.step})")
    if not evaluation.calibrated:
        lines.append("not calibrated: confidences are the raw softmax; with a validation split, ssl-mix calibrate RUN "
                     "fits a temperature")
    name = "teacher" if "teacher" in evaluation.models else next(iter(evaluation.models))
    record = evaluation.models[name]
    if "confusion" in record:
        lines += _class_table(name, record["confusion"], record["per_class_accuracy"], evaluation.classes,
                              max_classes)
        lines += _matrix_lines(name, record["confusion"], evaluation.classes, max_matrix)
    return "\n".join(lines)


def _class_name(classes: Sequence[str], index: int) -> str:
    return classes[index] if index < len(classes) else str(index)


def _class_table(model: str, matrix: torch.Tensor, accuracy: torch.Tensor, classes: Sequence[str],
                 max_classes: int) -> list[str]:
    num = matrix.shape[0]
    rows = list(range(num))
    title = f"{model} per class (accuracy on the class's test images; the class it is most often mistaken for):"
    if num > max_classes:  # the least accurate first; classes without test images last
        rows = sorted(rows, key=lambda i: (bool(torch.isnan(accuracy[i])), float(accuracy[i].nan_to_num(0)), i))
        rows = rows[:max_classes]
        title = (f"{model} per class, the {max_classes} least accurate of {num} (accuracy on the class's test images; "
                 "the class it is most often mistaken for):")
    width = max([5, *(len(_class_name(classes, i)) for i in rows)])
    lines = [title, f"  {'#':>3}  {'class':<{width}}  {'images':>6}  {'accuracy':>8}  most confused with"]
    for i in rows:
        count = int(matrix[i].sum())
        off = matrix[i].clone()
        off[i] = -1
        j = int(off.argmax()) if num > 1 else i
        confused = f"{_class_name(classes, j)} ({int(off[j])})" if num > 1 and int(off[j]) > 0 else "-"
        shown = f"{float(accuracy[i]):7.2f}%" if count else "       -"
        lines.append(f"  {i:>3}  {_class_name(classes, i):<{width}}  {count:>6}  {shown}  {confused}")
    return lines


def _matrix_lines(model: str, matrix: torch.Tensor, classes: Sequence[str], max_matrix: int) -> list[str]:
    num = matrix.shape[0]
    if num <= max_matrix:
        width = max(3, len(str(int(matrix.max()))) + 1)
        lines = [f"{model} confusion matrix (rows: true class, columns: predicted, numbered as above):",
                 "  " + " " * 3 + "".join(f"{j:>{width}}" for j in range(num))]
        lines += ["  " + f"{i:>3}" + "".join(f"{int(v):>{width}}" for v in matrix[i].tolist()) for i in range(num)]
        return lines
    off = matrix.clone()
    off.fill_diagonal_(0)
    order = torch.argsort(off.flatten(), descending=True, stable=True)[:max_matrix]
    pairs = [(int(k) // num, int(k) % num) for k in order if int(off.flatten()[k]) > 0]
    lines = [f"{model} most frequent confusions ({num} classes; ssl-mix eval --plot draws the whole matrix):"]
    lines += [f"  {_class_name(classes, i)} -> {_class_name(classes, j)}: {int(off[i, j])}" for i, j in pairs]
    return lines if pairs else lines[:1] + ["  none: every test image is classified correctly"]
