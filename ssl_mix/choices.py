"""The closed sets of names that settings and command-line flags choose from, importable without torch.

The config (:mod:`ssl_mix.config`) and the ``ssl-mix`` command line need these names to check a setting or list a
flag's choices; keeping them here, free of torch, lets ``ssl-mix --help`` and argument errors answer at once. The
modules that implement each set re-export its names (``ssl_mix.losses.ConsistencyTarget`` is this module's), so
code keeps importing them from where the concept lives.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["DatasetName", "DATASET_NAMES", "ResizeMode", "Interpolation", "INTERPOLATIONS", "DEFAULT_INTERPOLATION",
           "MethodName", "METHOD_NAMES", "SupervisedTerm", "TeacherMode", "ConsistencyTarget", "ConsistencyDistance",
           "TeacherBN", "MODEL_ROLES", "Strategy", "STRATEGIES", "ExportFormat", "EXPORT_FORMATS"]

DatasetName = Literal["cifar10", "cifar100", "svhn", "folder", "digits", "features"]
"""The built-in datasets: CIFAR-10/100 and SVHN through torchvision, an image folder, scikit-learn's digits, and a
file of feature vectors (``.npz``, ``.csv``, ``.parquet``)."""

DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
"""The values of :data:`DatasetName`, in order (for argument choices and messages)."""

ResizeMode = Literal["crop", "stretch"]
"""How an image reaches its target size: ``crop`` (cover it, cut the centre) or ``stretch`` (scale each axis)."""

Interpolation = Literal["bilinear", "bicubic", "lanczos"]
"""The filter of a resize (Pillow's ``Image.Resampling``, antialiased when shrinking): ``bilinear`` (ssl_mix's
default), ``bicubic`` (what most of timm's pretrained weights were trained with) or ``lanczos``."""

INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)

DEFAULT_INTERPOLATION: Interpolation = "bilinear"
"""The resize filter when none is asked for, as in every ssl_mix release before the filter could be chosen."""

MethodName = Literal["erm", "mixup", "manifold-mixup", "ict", "fixmatch", "mixmatch"]
"""The names of the training methods, as in configs and on the command line, in the order of the method registry
(:data:`ssl_mix.methods.METHODS`, whose keys a test holds equal to these)."""

METHOD_NAMES: tuple[str, ...] = get_args(MethodName)
"""The values of :data:`MethodName`, in order."""

SupervisedTerm = Literal["plain", "mixup"]
"""ICT's supervised term: plain cross-entropy or supervised mixup."""

TeacherMode = Literal["train", "eval"]
"""How ICT runs the EMA teacher: with batch statistics (``train``) or running statistics (``eval``)."""

ConsistencyTarget = Literal["probs", "logits"]
"""What ICT's consistency term compares: the teacher's probabilities or its logits."""

ConsistencyDistance = Literal["mse", "kl"]
"""How ICT's consistency term measures the difference: squared error or KL divergence."""

TeacherBN = Literal["own", "copy"]
"""The teacher's batch-norm statistics: its ``own`` (parameters averaged only) or a ``copy`` of the student's."""

MODEL_ROLES: tuple[str, str] = ("student", "teacher")
"""The two models of a run: the trained student and its EMA teacher (the keys of evaluations and checkpoints)."""

Strategy = Literal["margin", "entropy", "least-confidence", "random"]
"""How ``ssl-mix select`` ranks the unlabeled pool."""

STRATEGIES: tuple[str, ...] = get_args(Strategy)
"""The selection strategies, best-known first."""

ExportFormat = Literal["onnx", "torchscript", "safetensors"]
"""The file formats of :func:`ssl_mix.export_model`."""

EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
"""The values of :data:`ExportFormat`, in order."""
