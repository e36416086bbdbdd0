"""Data for semi-supervised training: label-budget splits, datasets in memory, augmentation, ZCA whitening and dual
loaders."""

from ssl_mix.data.augment import PADDING_MODES, PaddingMode, crop_flip, normalize, random_crop_flip
from ssl_mix.data.datasets import (
    DATASET_NAMES,
    IMAGE_EXTENSIONS,
    ArrayDataset,
    DataSpec,
    DatasetName,
    ImageArrays,
    arrays_dataset,
    arrays_from_dataset,
    arrays_from_tensors,
    channel_stats,
    concat_arrays,
    data_spec,
    load_arrays,
    load_targets,
    spec_from_arrays,
    eval_transform,
    train_transform,
)
from ssl_mix.data.loaders import TensorDualLoader, TorchDualLoader, derive_seed, eval_batches
from ssl_mix.data.splits import SPLIT_FORMAT_VERSION, LabelSplit, make_split, split_summary
from ssl_mix.data.zca import ZCA, apply_zca, fit_zca, preprocess_entry, preprocess_transform

__all__ = [
    "DATASET_NAMES",
    "DatasetName",
    "PADDING_MODES",
    "PaddingMode",
    "LabelSplit",
    "make_split",
    "split_summary",
    "SPLIT_FORMAT_VERSION",
    "ImageArrays",
    "DataSpec",
    "IMAGE_EXTENSIONS",
    "load_arrays",
    "load_targets",
    "data_spec",
    "spec_from_arrays",
    "channel_stats",
    "concat_arrays",
    "arrays_from_tensors",
    "arrays_from_dataset",
    "arrays_dataset",
    "ArrayDataset",
    "train_transform",
    "eval_transform",
    "crop_flip",
    "random_crop_flip",
    "normalize",
    "TensorDualLoader",
    "TorchDualLoader",
    "eval_batches",
    "derive_seed",
    "ZCA",
    "fit_zca",
    "apply_zca",
    "preprocess_entry",
    "preprocess_transform",
]
