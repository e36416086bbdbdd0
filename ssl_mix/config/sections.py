"""The run configuration's sections: data, model, method, optimisation and training, and the whole :class:`Config`.

Every section is a dataclass validated once in ``__post_init__``; string options are ``Literal`` types checked at
construction, and unknown keys are errors (from a dict, a JSON or YAML file, or the command line alike). Errors name
the setting in config terms (``data.num_labels``). Each field's documentation is the ``Args:`` entry of its
section's docstring, the one source of ``ssl-mix train --help`` and of the documentation's tables
(:func:`~ssl_mix.config.field_docs`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from ssl_mix.checks import (
    check_alpha,
    check_folder_only,
    check_in,
    check_k,
    check_number,
    check_probability,
    image_size_pair,
)
from ssl_mix.choices import (
    DEFAULT_INTERPOLATION,
    ConsistencyDistance,
    ConsistencyTarget,
    DatasetName,
    Interpolation,
    MethodName,
    ResizeMode,
    SupervisedTerm,
    TeacherBN,
    TeacherMode,
)
from ssl_mix.config.fields import check_fields, check_positive
from ssl_mix.config.files import ConfigFormat, config_text, read_config_file
from ssl_mix.ramps import RampKind

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
]

DEFAULT_NUM_LABELS = 4000
"""The label budget when ``num_labels`` is None and no label file is given (the standard CIFAR-10 budget)."""

Precision = Literal["fp32", "bf16"]
"""Numeric precision of the forward passes: float32, or bfloat16 autocast."""

PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass
class DataConfig:
    """Which data, which labels, and how batches are drawn.

    Args:
        dataset: ``cifar10``, ``cifar100``, ``svhn`` (through torchvision), ``folder`` (your images:
            ``data_root/train/<class>/*``, ``test/``, optional ``unlabeled/``), ``digits`` (scikit-learn's
            bundled 8x8 digits, no download) or ``features`` (feature vectors from a ``.npz``, ``.csv`` or
            ``.parquet`` file, trained with the ``mlp`` model; see :mod:`ssl_mix.data.features`).
        data_root: where the dataset lives, or is downloaded to with ``download``; for ``features``, the feature
            file. Required except for ``digits``.
        download: let torchvision download CIFAR/SVHN into ``data_root`` when missing. Off so that nothing is
            fetched without asking.
        num_labels: the label budget: labeled examples in total, the same number per class (a multiple of the
            class count). ``none``: every row of ``labels`` (as imbalanced as it is), else 4000, the standard
            CIFAR-10 budget.
        split: a saved split JSON file (``ssl-mix split``); replaces drawing the split from ``num_labels`` and the
            seed.
        num_valid_per_class: labeled examples per class held out for model selection (never trained on). 0: no
            validation split, so no model selection; the presets of the ICT paper hold out 500 (CIFAR-10) and
            100 (SVHN).
        labeled_in_unlabeled: keep the labeled examples in the unlabeled pool too, as FixMatch and USB do (off:
            MixMatch's choice).
        use_extra: SVHN only: add the 531,131 ``extra`` images to the unlabeled pool.
        batch_size: labeled examples per step (ICT: 100).
        unlabeled_batch_size: unlabeled examples per step (ICT uses as many as labeled).
        loader: ``tensor`` keeps the uint8 images on the training device and crops, flips and normalises whole
            batches there; ``torch`` uses a ``DataLoader`` with worker processes: per-image transforms for
            in-memory datasets, and for a ``folder`` it streams the files (workers decode, batches are augmented on
            the device). The tensor loader is fast for data that fits in device memory.
        num_workers: worker processes of the ``torch`` loader.
        augment: random crop (reflect padding) and horizontal flip of training batches. The standard augmentation
            of the ICT and mean-teacher recipes; SVHN and the digits are not flipped.
        labels: ``folder`` only: a CSV file of ``path,label`` rows (paths relative to ``data_root``) instead of
            class folders. Images it does not name are unlabeled; ``test/<class>/`` stays the test set.
        add_labels: ``folder`` only: a CSV of newly labeled images (``ssl-mix select`` writes one to fill in) added
            to the labeled set of ``split`` or ``labels``; rows with an empty label are skipped.
        classes: ``folder`` only: the allowed classes of a label file, comma-separated (``cat,dog,ship``) or a
            text file with one class per line; every label must be one of them. ``none``: the file's labels, checked
            for likely typos (``check_labels``).
        check_labels: without ``classes``: reject a label file with a class of fewer than 3 rows, or a class whose
            name differs from another's only by case, spacing, underscores, hyphens or one character (a typo
            that would become a new class). Off: keep such classes on purpose.
        unlabeled_dirs: ``folder`` only: another folder of unlabeled images, anywhere on disk (repeatable:
            ``unlabeled_dirs`` is a list).
        image_size: ``folder`` only: resize every image to N x N or H,W pixels, the same way for training,
            evaluation and prediction. ``none``: the files must share one size, except for a ``timm:`` model that
            starts from trained weights, whose pretrained input size (e.g. 224) is used.
        resize: how ``image_size`` is reached: ``crop`` scales the image to cover it and cuts the centre (aspect
            ratio kept); ``stretch`` scales each axis (nothing cut).
        channels: ``folder`` only: force 1 (grayscale) or 3 (RGB) channels. ``none``: RGB if any training image is
            in colour, else grayscale.
        cache: keep the decoded images of a folder in the decoded-image cache, so the next run skips decoding.
            Off decodes every time.
        cache_dir: the decoded-image cache directory. ``none``: ``$XDG_CACHE_HOME/ssl_mix``, i.e.
            ``~/.cache/ssl_mix``.
        max_memory_gb: stream a folder from its files when its decoded training pool (images x C x H x W bytes)
            would exceed this many GB. Streaming uses the ``DataLoader`` path (``num_workers``).
        skip_bad_images: leave unreadable image files out instead of stopping with an error that names them. They
            are listed in the run's ``skipped_images.txt``.
        balance_labeled: draw the labeled stream class-balanced, for imbalanced labels (smaller classes
            over-sampled). Deterministic and resumable like the plain stream.
        zca: ZCA-whiten every batch after normalisation (labeled, unlabeled and evaluation alike), with the
            transform fitted on the run's training images; the official ICT code does this for CIFAR-10.
        zca_eps: the whitening's regulariser, added to the covariance eigenvalues (normalised pixel units):
            directions of much smaller variance are damped instead of amplified.
        mean: the per-channel mean that normalises the images, in [0, 1] units: one value for every channel, or one
            per channel. ``none``: the pretrained configuration's for a ``timm:`` model that starts from trained
            weights (e.g. ImageNet's), else the training images' statistics. Three values on images that turn out
            grayscale (``channels`` none) are averaged.
        std: the per-channel standard deviation that normalises the images, > 0, given like ``mean``; ``none``
            chooses as for ``mean``.
        interpolation: ``folder`` only: the resize filter of ``image_size``, ``bilinear``, ``bicubic`` or
            ``lanczos``. ``none``: the pretrained configuration's (bicubic for most timm weights) for a ``timm:``
            model that starts from trained weights, else bilinear.
        label_column: ``features`` only: the label column of a CSV or Parquet feature file (empty or -1: unlabeled).
        feature_noise: ``features`` only: std of Gaussian noise added to the standardised features of training
            batches (with ``augment``); 0 leaves it off.
        feature_dropout: ``features`` only: probability in [0, 1) that a standardised training feature is zeroed
            (with ``augment``; the rest are scaled by 1/(1-p)); 0 leaves it off.
    """

    SECTION: ClassVar[str] = "data"

    dataset: DatasetName = "cifar10"
    data_root: str | None = None
    download: bool = False
    num_labels: int | None = None
    split: str | None = None
    num_valid_per_class: int = 0
    labeled_in_unlabeled: bool = True
    use_extra: bool = False
    batch_size: int = 100
    unlabeled_batch_size: int = 100
    loader: Literal["tensor", "torch"] = "tensor"
    num_workers: int = 0
    augment: bool = True
    labels: str | None = None
    add_labels: str | None = None
    classes: str | None = None
    check_labels: bool = True
    unlabeled_dirs: tuple[str, ...] = ()
    image_size: tuple[int, int] | None = None
    resize: ResizeMode = "crop"
    channels: Literal[1, 3] | None = None
    cache: bool = True
    cache_dir: str | None = None
    max_memory_gb: float = 8.0
    skip_bad_images: bool = False
    balance_labeled: bool = False
    zca: bool = False
    zca_eps: float = 1e-2
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: Interpolation | None = None
    label_column: str = "label"
    feature_noise: float = 0.0
    feature_dropout: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        check_number("data.feature_noise", self.feature_noise, low=0)
        check_number("data.feature_dropout", self.feature_dropout, low=0, high=1, high_open=True)
        if not str(self.label_column).strip():
            raise ValueError("data.label_column must name a column, got an empty string")
        if self.dataset != "features":
            given = [n for n, v in (("label_column", self.label_column != "label"),
                                    ("feature_noise", self.feature_noise), ("feature_dropout", self.feature_dropout))
                     if v]
            if given:
                raise ValueError(f"data.{given[0]} applies to data.dataset='features' only, not "
                                 f"{self.dataset!r}; drop data.{given[0]}")
        else:
            for name, value, advice in (("zca", self.zca, "drop data.zca (features are standardised)"),
                                        ("loader", self.loader == "torch", "use data.loader='tensor'"),
                                        *((name, getattr(self, name) is not None,
                                           f"drop data.{name} (features are standardised per feature from the "
                                           "training pool)") for name in ("mean", "std", "interpolation"))):
                if value:
                    raise ValueError(f"data.{name}={getattr(self, name)!r} does not apply to feature vectors "
                                     f"(data.dataset='features'); {advice}")
        check_positive(self, self.SECTION, "num_labels", "batch_size", "unlabeled_batch_size", "max_memory_gb")
        check_positive(self, self.SECTION, "num_valid_per_class", "num_workers", "zca_eps", allow_zero=True)
        self.image_size = image_size_pair(self.image_size)
        if isinstance(self.unlabeled_dirs, str):
            self.unlabeled_dirs = (self.unlabeled_dirs,)
        self.unlabeled_dirs = tuple(str(d) for d in self.unlabeled_dirs)
        self.mean = self._channel_values("mean", self.mean)
        self.std = self._channel_values("std", self.std, positive=True)
        folder_only = {"labels": self.labels, "add_labels": self.add_labels, "classes": self.classes,
                       "unlabeled_dirs": self.unlabeled_dirs or None, "image_size": self.image_size,
                       "channels": self.channels, "interpolation": self.interpolation}
        given = [name for name, value in folder_only.items() if value is not None]
        if given:
            check_folder_only(self.dataset, {f"data.{given[0]}": folder_only[given[0]]}, setting="data.dataset",
                              advice=f"drop data.{given[0]} or set data.dataset='folder'")

    def _channel_values(self, name: str, values: Any, *, positive: bool = False) -> tuple[float, ...] | None:
        """``mean`` or ``std`` as a tuple of floats (a bare number is one value for every channel), checked."""
        if values is None:
            return None
        values = (values,) if isinstance(values, (int, float)) else values
        if isinstance(values, str) or not isinstance(values, (tuple, list)):
            raise TypeError(f"data.{name} must be a list of numbers (one per channel), got {values!r}")
        out = tuple(check_number(f"data.{name}", v, low=0 if positive else None, low_open=positive) for v in values)
        allowed = {1, 3} if self.channels is None else {1, self.channels}
        if len(out) not in allowed:
            per_channel = f"{self.channels} with data.channels={self.channels}" if self.channels else "3 for RGB"
            raise ValueError(f"data.{name} has {len(out)} values; give one value for every channel, or one per "
                             f"channel ({per_channel})")
        return out

    def class_list(self) -> list[str] | None:
        """The classes of ``classes``: its comma-separated names, or the lines of the text file it names."""
        if self.classes is None:
            return None
        path = Path(self.classes).expanduser()
        text = path.read_text(encoding="utf-8").splitlines() if path.is_file() else self.classes.split(",")
        names = [name.strip() for name in text if name.strip()]
        if not names:
            raise ValueError(f"data.classes={self.classes!r} lists no classes; give names like cat,dog or a text file "
                             "with one class per line")
        return names

    def label_checks(self) -> dict[str, Any]:
        """The label-file checks of these settings, as keyword arguments of
        :func:`~ssl_mix.data.folder.folder_files`."""
        return {"label_classes": self.class_list(), "check_labels": self.check_labels}

    def resolved_num_labels(self) -> int | None:
        """The label budget to draw: ``num_labels``, or when it is None, None (every labeled row) with a label
        file and :data:`DEFAULT_NUM_LABELS` otherwise."""
        if self.num_labels is not None:
            return self.num_labels
        return None if self.labels is not None else DEFAULT_NUM_LABELS

    def decode_settings(self) -> dict[str, Any]:
        """How a folder's image files are decoded and cached, the same for training, evaluation, prediction and
        selection: the keyword arguments ``image_size``, ``resize``, ``channels``, ``skip_bad_images``, ``cache`` and
        ``interpolation``
        of :func:`~ssl_mix.data.decode.decode_files`, :func:`~ssl_mix.data.decode.scan_files` and
        :func:`~ssl_mix.data.datasets.load_arrays`.

        Returns:
            A new dict; ``cache`` is ``cache_dir`` (or True: the default directory) when ``cache`` is on, else
            False. ``channels`` None means the images decide (a trained run's callers pass its own).
        """
        return {"image_size": self.image_size, "resize": self.resize, "channels": self.channels,
                "skip_bad_images": self.skip_bad_images, "cache": (self.cache_dir or True) if self.cache else False,
                "interpolation": self.interpolation or DEFAULT_INTERPOLATION}


@dataclass
class ModelConfig:
    """The student network (the teacher is its EMA copy).

    Args:
        name: the student network, a name of :func:`ssl_mix.create_model`: ``wrn28-2`` (CIFAR-10, SVHN),
            ``wrn28-8`` (CIFAR-100), ``wrn28-10``, ``cnn13`` (the network of the ICT and mean-teacher papers) or
            ``cnn-small`` (fast on a CPU), or ``timm:NAME`` for any timm classifier (``timm:resnet18``,
            ``timm:convnext_atto``, ``timm:vit_tiny_patch16_224``, ...). WRN-28-2 is the standard network of the SSL
            benchmarks (Oliver et al. 2018).
        bn_momentum: batch-norm momentum in PyTorch's convention. 0.001 as in the MixMatch/FixMatch WRN code, for
            long runs; short runs want a larger value (the demo uses 0.1) so that the running statistics catch up.
        dropout: dropout probability where the architecture has dropout; ``none`` keeps the published value (0.5
            in CNN-13, none in the WRNs).
        channels_last: store activations in NHWC memory format. Faster convolutions on recent GPUs, no gain on
            CPUs.
        pretrained: start a ``timm:`` model from timm's pretrained weights (downloaded from the hub into timm's
            cache, or read from that cache offline).
        pretrained_file: start from the weights in this local file (safetensors, a ``.pth``/``.bin`` state dict
            or a timm checkpoint); the classifier head is replaced when the class count differs.
        init_from: start from the teacher weights of an earlier ssl_mix run (its folder or checkpoint file), e.g.
            the previous round of the label-next loop.
        drop_path: stochastic-depth rate of a ``timm:`` model that supports it, passed as timm's
            ``drop_path_rate`` (``none``: the model's default).
        widths: ``mlp`` and ``cnn-small`` only: the hidden layers' units (``mlp``, default 256,256) or the stages'
            channels (``cnn-small``, default 32,64,128), comma-separated. ``none``: the model's default.
        norm: ``mlp`` only: the normalisation after each hidden layer: ``batch`` norm, ``layer`` norm, or ``none``.
    """

    SECTION: ClassVar[str] = "model"

    name: str = "wrn28-2"
    bn_momentum: float = 0.001
    dropout: float | None = None
    channels_last: bool = False
    pretrained: bool = False
    pretrained_file: str | None = None
    init_from: str | None = None
    drop_path: float | None = None
    widths: tuple[int, ...] | None = None
    norm: Literal["batch", "layer", "none"] = "batch"

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        if self.widths is not None:
            self.widths = _widths(self.widths)
            if self.name not in ("mlp", "cnn-small"):
                raise ValueError(f"model.widths applies to the mlp and cnn-small models, not {self.name!r}; drop "
                                 "model.widths")
        if self.norm != "batch" and self.name != "mlp":
            raise ValueError(f"model.norm applies to the mlp model, not {self.name!r}; drop model.norm")
        check_number("model.bn_momentum", self.bn_momentum, low=0, high=1, low_open=True)
        if self.dropout is not None:
            check_number("model.dropout", self.dropout, low=0, high=1, high_open=True)
        if self.drop_path is not None:
            check_number("model.drop_path", self.drop_path, low=0, high=1, high_open=True)
        given = [n for n in ("pretrained", "pretrained_file", "init_from") if getattr(self, n)]
        if len(given) > 1:
            raise ValueError(f"model.{given[0]} and model.{given[1]} both choose the starting weights; set one")

    def architecture_options(self) -> dict[str, Any]:
        """The model-specific options of these settings, as keyword arguments of :func:`ssl_mix.create_model`
        (``widths`` when set, and ``norm`` for the ``mlp``)."""
        options: dict[str, Any] = {} if self.widths is None else {"widths": self.widths}
        return {**options, "norm": self.norm} if self.name == "mlp" else options

    @property
    def starts_pretrained(self) -> bool:
        """Whether the network starts from trained weights (``pretrained``, ``pretrained_file`` or ``init_from``)."""
        return bool(self.pretrained or self.pretrained_file or self.init_from)


def _widths(value: Any) -> tuple[int, ...]:
    """``model.widths`` as a non-empty tuple of positive ints (the command line gives strings)."""
    items = (value,) if isinstance(value, (int, str)) else value
    try:
        widths = tuple(int(str(w).strip()) for w in items)
    except (TypeError, ValueError):
        widths = ()
    if not widths or any(w < 1 for w in widths) or any(isinstance(w, bool) for w in items):
        raise ValueError(f"model.widths must be positive integers such as 256,256, got {value!r}")
    return widths


@dataclass
class MethodConfig:
    """The training method and its hyper-parameters.

    Args:
        name: the method: ``erm`` (labeled data only, the supervised baseline), ``mixup`` (Zhang et al. 2018),
            ``manifold-mixup`` (Verma et al. 2019) or ``ict`` (ICT[K]; Verma et al. 2019, Chaudhry et al. eq. 2),
            ``fixmatch`` (Sohn et al. 2020) or ``mixmatch``
            (Berthelot et al. 2019).
        k: points per mix, K >= 2. K=2 is classic mixup and ICT; Chaudhry et al. use 3 to 5.
        alpha: Dirichlet concentration of the mixing weights; 0 disables mixing. 1.0 (λ uniform for K=2) is the
            ICT code's CIFAR-10 value.
        per_sample: one weight vector per example instead of one per batch (the mixup and ICT code draw one per
            batch).
        mix_layers: manifold mixup's set S of layers to mix at (``input`` is the raw input). The default is the
            input and the first three layers (for a WRN: the first convolution and the first two residual
            groups).
        cutmix_alpha: supervised ``mixup`` only: CutMix's Beta α (via timm); 0 leaves CutMix off.
        cutmix_switch_prob: with both mixup and CutMix on, the probability that a step uses CutMix.
        supervised: ICT's supervised term: ``plain`` cross-entropy or ``mixup`` (the official ICT code's choice,
            set by the ``ict-*`` presets).
        sup_alpha: α of ICT's supervised mixup; ``none`` uses ``alpha``.
        consistency_target: ``probs`` mixes teacher probabilities (the paper's equation); ``logits`` mixes teacher
            logits, then applies the softmax (the official ICT code, set by the ``ict-*`` presets).
        consistency_distance: ``mse`` between probabilities (ICT, mean teacher) or ``kl``.
        consistency_weight: w_max, the consistency weight after the ramp. 100 as in ICT with the ``mse`` distance.
        ramp: ramp-up shape of the consistency weight: ``sigmoid`` exp(-5(1-t)^2) (ICT, mean teacher), ``linear``
            (Chaudhry et al.) or ``none``.
        ramp_fraction: fraction of the training steps over which the weight ramps up (ICT: the first quarter;
            Chaudhry et al.: 0.4).
        ema_decay: the EMA teacher's decay d (ICT and mean teacher on CIFAR-10).
        ema_warmup: use min(1 - 1/(t+1), d) early on, so that the teacher starts as a true average of the student.
        teacher_mode: ``train`` runs the teacher with batch statistics (and dropout), as the official ICT code does,
            which also updates its running statistics; ``eval`` uses its running statistics.
        teacher_bn: the teacher's batch-norm statistics: ``own`` (the EMA averages parameters only and the
            teacher's train-mode passes update its own statistics: the official mean-teacher and ICT code, set by
            the paper presets) or ``copy`` (the student's, copied at every update; the default, so that earlier
            results do not change).
        joint_forward: ICT only: one student forward pass on the labeled and the mixed unlabeled batch together
            instead of two. Faster on a GPU, but in train mode batch norm then normalises both with shared
            statistics (see :class:`~ssl_mix.ICT`); off keeps the official code's separate passes.
        threshold: ``fixmatch`` only: the confidence threshold tau in (0, 1] above which a weak view's pseudo-label
            is trained on; ``none``: 0.95 (Sohn et al. 2020).
        temperature: ``mixmatch`` only: the sharpening temperature T > 0 of the guessed labels; ``none``: 0.5
            (Berthelot et al. 2019).
        num_views: ``mixmatch`` only: K >= 1 weak views per unlabeled image averaged by the label guess; ``none``: 2.
    """

    SECTION: ClassVar[str] = "method"

    name: MethodName = "ict"
    k: int = 2
    alpha: float = 1.0
    per_sample: bool = False
    mix_layers: tuple[Any, ...] = ("input", 0, 1, 2)
    cutmix_alpha: float = 0.0
    cutmix_switch_prob: float = 0.5
    supervised: SupervisedTerm = "plain"
    sup_alpha: float | None = None
    consistency_target: ConsistencyTarget = "probs"
    consistency_distance: ConsistencyDistance = "mse"
    consistency_weight: float = 100.0
    ramp: RampKind = "sigmoid"
    ramp_fraction: float = 0.25
    ema_decay: float = 0.999
    ema_warmup: bool = True
    teacher_mode: TeacherMode = "train"
    teacher_bn: TeacherBN = "copy"
    joint_forward: bool = False
    threshold: float | None = None
    temperature: float | None = None
    num_views: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        for key, owner in (("threshold", "fixmatch"), ("temperature", "mixmatch"), ("num_views", "mixmatch")):
            if getattr(self, key) is not None and self.name != owner:
                raise ValueError(f"method.{key} applies to the {owner!r} method only, got method {self.name!r}; "
                                 f"leave method.{key} unset")
        if self.threshold is not None:
            check_number("method.threshold", self.threshold, low=0, high=1, low_open=True,
                         hint=" (FixMatch's confidence threshold tau, 0.95 in the paper)")
        if self.temperature is not None:
            check_number("method.temperature", self.temperature, low=0, low_open=True,
                         hint=" (MixMatch's sharpening temperature T, 0.5 in the paper)")
        if self.num_views is not None and (isinstance(self.num_views, bool) or not isinstance(self.num_views, int)
                                           or self.num_views < 1):
            raise ValueError(f"method.num_views must be an integer >= 1 (MixMatch's K, 2 in the paper), got "
                             f"{self.num_views!r}")
        from ssl_mix.methods import method_class  # imports torch: not needed to declare the config's flags

        method_class(self.name).check_config(self)  # the settings only some methods take
        check_k(self.k, "method.k")
        check_alpha(self.alpha, "method.alpha")
        if self.sup_alpha is not None:
            check_alpha(self.sup_alpha, "method.sup_alpha")
        check_positive(self, self.SECTION, "cutmix_alpha", "consistency_weight", allow_zero=True)
        for name in ("ramp_fraction", "ema_decay", "cutmix_switch_prob"):
            check_probability(f"method.{name}", getattr(self, name))
        self.mix_layers = tuple(_parse_layer(v) for v in self.mix_layers)
        if not self.mix_layers:
            raise ValueError("method.mix_layers must name at least one layer, e.g. ('input', 0, 1, 2)")


def _parse_layer(value: Any) -> int | str:
    if value == "input":
        return "input"
    try:
        layer = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"method.mix_layers entries must be 'input' or a layer number, got {value!r}") from None
    if layer < 0:
        raise ValueError(f"method.mix_layers entries must be 'input' or a layer number >= 0, got {value!r}")
    return layer


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    Args:
        optimizer: ``sgd`` (momentum, optionally Nesterov; the ICT recipe), ``adam`` (Chaudhry et al.; weight decay
            added to the gradient) or ``adamw`` (decoupled weight decay, Loshchilov & Hutter 2019: each step
            multiplies the decayed weights by ``1 - lr * weight_decay``); all use PyTorch's fused or multi-tensor
            kernels.
        lr: peak learning rate (ICT: 0.1 with SGD; Chaudhry et al.: 0.002 with Adam).
        momentum: SGD momentum (0.9 in the ICT and mean-teacher recipes).
        nesterov: Nesterov momentum for SGD, as in the ICT code.
        weight_decay: L2 penalty added to the gradient (coupled) for ``sgd`` and ``adam``, 1e-4 as in the ICT code;
            the decoupled rate for ``adamw``.
        decay_norm_bias: also decay biases and normalisation weights (every parameter with fewer than two
            dimensions), as the ICT code does; false decays only weight matrices and convolution kernels, as the
            FixMatch and MixMatch code ("kernel" variables) and timm's fine-tuning recipes do.
        lr_schedule: ``cosine`` ramp-down (ICT, mean teacher), ``constant``, or ``fixmatch``: lr * cos(7 pi k / (16 K))
            at step k of K (official FixMatch ``fixmatch.py:92-93``; ``lr_rampdown_factor`` is not used).
        lr_rampdown_factor: the cosine reaches zero at this multiple of the training steps (ICT: 450/400 epochs =
            1.125), so the last steps keep a small non-zero rate.
        warmup_steps: linear learning-rate warm-up from 0 over this many steps.
        layer_decay: layer-wise learning-rate decay (BEiT, Bao et al. 2022): the layer group ``i`` of ``n`` below the
            head trains at ``lr * layer_decay ** i``, with the groups of the model's timm ``group_matcher`` (timm's
            ``param_groups_layer_decay``); ``none`` or 1: off.
        head_lr_mult: the classifier head's learning rate is this multiple of the rest's (timm ``get_classifier()``,
            or an ssl_mix model's last stage).
        freeze_backbone_steps: train only the head for this many steps (a linear probe), then everything; the
            backbone's warm-up restarts when it joins, and ``train.steps`` or more is a linear probe throughout.
            The frozen parameters get no gradient (no optimiser state, momentum or decay); batch-norm statistics
            keep adapting.
    """

    SECTION: ClassVar[str] = "optim"

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    decay_norm_bias: bool = True
    lr_schedule: Literal["cosine", "constant", "fixmatch"] = "cosine"
    lr_rampdown_factor: float = 1.125
    warmup_steps: int = 0
    layer_decay: float | None = None
    head_lr_mult: float = 1.0
    freeze_backbone_steps: int = 0

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        check_positive(self, self.SECTION, "lr", "head_lr_mult")
        check_positive(self, self.SECTION, "momentum", "weight_decay", "warmup_steps", "freeze_backbone_steps",
                       allow_zero=True)
        check_number("optim.lr_rampdown_factor", self.lr_rampdown_factor, low=1)
        if self.layer_decay is not None:
            check_number("optim.layer_decay", self.layer_decay, low=0, high=1, low_open=True)

    @property
    def needs_head(self) -> bool:
        """Whether the optimiser must tell the classifier head from the backbone (``head_lr_mult`` or
        ``freeze_backbone_steps`` set)."""
        return self.head_lr_mult != 1 or self.freeze_backbone_steps > 0

    @property
    def layer_decay_on(self) -> bool:
        """Whether layer-wise learning-rate decay is on (``layer_decay`` set and below 1)."""
        return self.layer_decay is not None and self.layer_decay < 1


@dataclass
class TrainConfig:
    """The training loop: length, seeds, evaluation, logging and checkpoints.

    Args:
        steps: optimiser steps; training is counted in steps, not epochs. The presets set the published lengths.
        seed: seeds the split (unless ``split`` is given), the initial weights, the loaders and all mixing: a run
            is a function of its config.
        eval_every: evaluate student and teacher on the test (and validation) set every this many steps, and at
            the end.
        log_every: read the logged values from the device every this many steps. The training step itself never
            waits for the host.
        checkpoint_every: write ``last.pt`` every this many steps, and at the end; 0: only at the end.
        out_dir: the run directory: checkpoints, TensorBoard logs, config, split and report.
        device: ``auto`` picks CUDA when available, else the CPU; or any torch device string (``cuda:1``).
        precision: ``bf16`` runs the forward passes under bfloat16 autocast (faster on recent GPUs; losses are
            computed in float32).
        compile: compile the model with ``torch.compile``. Falls back to eager execution with a warning where
            compilation is unavailable.
        progress: show a progress bar with the loss, accuracies and images/s.
        linearity_every: log the teacher's per-layer non-linearity (Chaudhry et al. eq. 3) every this many steps;
            0: off.
        linearity_pairs: held-out pairs used for that measurement (the same fixed sample every time, so values are
            comparable over training).
        sync_bn: under torchrun, compute batch-norm statistics over all processes (``SyncBatchNorm``, CUDA only)
            instead of per process; no effect in a one-process run.
        dist_timeout: under torchrun, seconds a process waits for the others in a collective operation before the
            run fails. A crashed or hung process then stops the run instead of blocking it forever.
        threads: CPU threads torch computes with; ``none``: ``OMP_NUM_THREADS`` when set, else the cores this
            process may run on. On a machine other jobs already keep busy, fewer threads (even 1) can be many times
            faster (``torch.set_num_threads``). The count used is in the run's report; a run may be resumed with
            another.
    """

    SECTION: ClassVar[str] = "train"

    steps: int = 1000
    seed: int = 0
    eval_every: int = 500
    log_every: int = 50
    checkpoint_every: int = 500
    out_dir: str = "runs/ssl_mix"
    device: str = "auto"
    precision: Precision = "fp32"
    compile: bool = False
    progress: bool = True
    linearity_every: int = 0
    linearity_pairs: int = 256
    sync_bn: bool = False
    dist_timeout: float = 300.0
    threads: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        check_positive(self, self.SECTION, "steps", "eval_every", "log_every", "linearity_pairs", "threads")
        check_number("train.dist_timeout", self.dist_timeout, low=0, low_open=True)
        check_positive(self, self.SECTION, "checkpoint_every", "linearity_every", "seed", allow_zero=True)


SECTIONS: dict[str, type] = {cls.SECTION: cls for cls in (DataConfig, ModelConfig, MethodConfig, OptimConfig,
                                                          TrainConfig)}
"""The sections of a :class:`Config`, in order: ``{"data": DataConfig, ...}``."""


def section_type(section: str) -> type:
    """The dataclass of a config section (``"data"`` -> :class:`DataConfig`).

    Args:
        section: ``data``, ``model``, ``method``, ``optim`` or ``train``.

    Returns:
        The section's dataclass.
    """
    return SECTIONS[check_in("section", section, SECTIONS)]


@dataclass
class Config:
    """A whole run: one instance of each section. Serialises to and from nested dicts, JSON and YAML files."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for name, section_cls in SECTIONS.items():
            if not isinstance(getattr(self, name), section_cls):
                raise TypeError(f"Config.{name} must be a {section_cls.__name__}, got "
                                f"{type(getattr(self, name)).__name__}")
        if self.data.use_extra and self.data.dataset != "svhn":
            raise ValueError(f"data.use_extra adds SVHN's 'extra' images to the unlabeled pool; it does not apply to "
                             f"data.dataset {self.data.dataset!r}")
        if self.method.cutmix_alpha > 0 and self.method.name != "mixup":
            raise ValueError(f"method.cutmix_alpha applies to the supervised 'mixup' method only, not "
                             f"{self.method.name!r}")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """A JSON-compatible nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Config | None = None) -> Config:
        """Build a config from a nested dict, starting from ``base`` (default: all defaults).

        Raises:
            ValueError: on an unknown section or key (with the valid ones listed), or an invalid value.
        """
        if not isinstance(data, dict):
            raise TypeError(f"a config must be a dict of sections, got {type(data).__name__}")
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; valid sections: {list(SECTIONS)}")
        base = base or cls()
        sections = {}
        for name, section_cls in SECTIONS.items():
            current = dataclasses.asdict(getattr(base, name))
            updates = data.get(name, {})
            if not isinstance(updates, dict):
                raise TypeError(f"config section {name!r} must be a dict, got {type(updates).__name__}")
            valid = {f.name for f in dataclasses.fields(section_cls)}
            bad = set(updates) - valid
            if bad:
                raise ValueError(f"unknown key(s) {sorted(bad)} in config section {name!r}; valid keys: "
                                 f"{sorted(valid)}")
            current.update(updates)
            sections[name] = section_cls(**current)
        return cls(**sections)

    @classmethod
    def from_file(cls, path: str | Path, base: Config | None = None) -> Config:
        """Read a config file on top of ``base``: nested sections, any subset of keys, as in :meth:`from_dict`.

        Args:
            path: a ``.json`` file, or a ``.yaml`` / ``.yml`` file (read with ``yaml.safe_load``; ``1e-4`` is read
                as a number, as in JSON). Both hold the same schema, e.g. ``{"method": {"k": 3}}`` or
                ``method: {k: 3}``.
            base: the config the file's values are applied to (default: all defaults).

        Returns:
            The resulting config.

        Raises:
            FileNotFoundError: no such file.
            ValueError: an unknown suffix, a syntax error (with its line and column), an unknown section or key,
                or an invalid value; the message names the file.
        """
        data = read_config_file(path)
        try:
            return cls.from_dict(data, base=base)
        except (TypeError, ValueError) as err:
            raise type(err)(f"config file {str(path)!r}: {err}") from None

    def dumps(self, format: ConfigFormat = "json") -> str:
        """The whole config as the text of a config file that :meth:`from_file` reads back to an equal config.

        Args:
            format: ``json`` (keys sorted, as ``ssl-mix train --print-config`` prints) or ``yaml`` (fields in their
                declared order).

        Returns:
            The text, ending with a newline.
        """
        return config_text(self.to_dict(), format)

    def replace(self, **section_updates: dict[str, Any]) -> Config:
        """A copy with some keys changed, e.g. ``cfg.replace(train={"steps": 10})``."""
        return Config.from_dict(section_updates, base=self)

