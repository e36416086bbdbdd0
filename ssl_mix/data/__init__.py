"""Data for semi-supervised training: label-budget splits, datasets in memory, augmentation, ZCA whitening and dual
loaders.

A run's data from its :class:`~ssl_mix.config.DataConfig` is :mod:`ssl_mix.data.run_data`, imported from there (and
re-exported by the package ``ssl_mix``) rather than here: it reads the config, whose sections read this package."""

from ssl_mix.data.arrays import ImageArrays, channel_stats, concat_arrays
from ssl_mix.data.augment import (
    PADDING_MODES,
    PaddingMode,
    crop_flip,
    noise_dropout,
    normalize,
    normalize_input,
    random_crop_flip,
    standardize,
)
from ssl_mix.data.cache import default_cache_dir
from ssl_mix.data.custom import arrays_from_dataset, arrays_from_tensors
from ssl_mix.data.datasets import DATASET_NAMES, DatasetName, check_folder_only, data_spec, load_arrays, load_targets
from ssl_mix.data.decode import DecodedFiles, FileScan, decode_files, scan_files
from ssl_mix.data.features import FEATURE_EXTENSIONS, SPLIT_COLUMN, arrays_from_features, feature_spec, read_features
from ssl_mix.data.files import IMAGE_EXTENSIONS, ImageFiles, image_files
from ssl_mix.data.folder import folder_files, unlabeled_dir_files
from ssl_mix.data.images import (
    BadImageError,
    ResizeMode,
    decode_image,
    image_channels,
    image_size_pair,
    prepare_image,
)
from ssl_mix.data.labels import AddedLabels, LabelRows, added_labels, read_label_rows, read_labels
from ssl_mix.data.loaders import TensorDualLoader, TorchDualLoader, eval_batches
from ssl_mix.data.randaugment import RA_OPS, RandAugmentParams, apply_randaugment, rand_augment, sample_randaugment
from ssl_mix.data.spec import DataSpec, spec_from_arrays, spec_from_stats
from ssl_mix.data.splits import SPLIT_FORMAT_VERSION, LabelSplit, make_split, split_summary
from ssl_mix.data.streaming import ImageFileDataset
from ssl_mix.data.transforms import ArrayDataset, arrays_dataset, eval_transform, train_transform
from ssl_mix.data.zca import ZCA, apply_zca, fit_zca, preprocess_entry, preprocess_transform
from ssl_mix.seeding import derive_seed

__all__ = [
    "DATASET_NAMES",
    "check_folder_only",
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
    "spec_from_stats",
    "channel_stats",
    "concat_arrays",
    "arrays_from_tensors",
    "arrays_from_dataset",
    "arrays_from_features",
    "read_features",
    "feature_spec",
    "FEATURE_EXTENSIONS",
    "SPLIT_COLUMN",
    "arrays_dataset",
    "ArrayDataset",
    "train_transform",
    "eval_transform",
    "BadImageError",
    "ResizeMode",
    "decode_image",
    "prepare_image",
    "image_size_pair",
    "image_channels",
    "ImageFiles",
    "image_files",
    "folder_files",
    "unlabeled_dir_files",
    "read_labels",
    "read_label_rows",
    "LabelRows",
    "added_labels",
    "AddedLabels",
    "decode_files",
    "DecodedFiles",
    "scan_files",
    "FileScan",
    "ImageFileDataset",
    "default_cache_dir",
    "crop_flip",
    "random_crop_flip",
    "normalize",
    "standardize",
    "normalize_input",
    "noise_dropout",
    "RA_OPS", "RandAugmentParams", "sample_randaugment", "apply_randaugment", "rand_augment",
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
