"""ssl_mix: semi-supervised learning with mixup.

Interpolation Consistency Training (ICT, Verma et al. 2019) and its K-point generalisation ICT[K]
(Chaudhry et al., "When does mixup promote local linearity in learned representations?"), supervised
mixup and manifold mixup baselines, label-budget splits, models with addressable layers, and per-layer
linearity analysis. Public names are re-exported here flat: ``from ssl_mix import ICT, Trainer``.
"""

from ssl_mix.active import (
    SELECTION_COLUMNS,
    Selection,
    choose,
    pool_probabilities,
    select_for_labeling,
    unlabeled_pool,
    write_selection,
)
from ssl_mix.analysis import (
    analyze_run,
    class_singular_values,
    flattening,
    flattening_summary,
    format_analysis,
    linearity_probe,
    measure_linearity,
    nonlinearity,
    nonlinearity_k,
    plot_linearity_comparison,
    plot_linearity_curves,
    plot_reliability,
    plot_spectra,
    read_linearity_history,
)
from ssl_mix.calibration import (
    MIN_RELIABLE_VALID,
    NoValidationSplitError,
    calibrate_checkpoints,
    calibrate_models,
    calibrate_run,
    calibration_metrics,
    fit_temperature,
    model_logits,
    safe_temperature,
    scale_logits,
)
from ssl_mix.checkpoint import load_checkpoint, save_checkpoint
from ssl_mix.checks import (
    check_alpha,
    check_bool,
    check_in,
    check_int,
    check_k,
    check_number,
    check_positive_int,
    check_probability,
)
from ssl_mix.config import (
    PRECISIONS,
    PRESET_DESCRIPTIONS,
    PRESETS,
    Config,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    Precision,
    Preset,
    TrainConfig,
    config_flags,
    field_docs,
    flag_terms,
    format_value,
    preset,
)
from ssl_mix.data import (
    DATASET_NAMES,
    PADDING_MODES,
    ZCA,
    AddedLabels,
    ArrayDataset,
    BadImageError,
    DatasetName,
    DataSpec,
    ImageArrays,
    ImageFileDataset,
    ImageFiles,
    LabelRows,
    LabelSplit,
    PaddingMode,
    TensorDualLoader,
    TorchDualLoader,
    added_labels,
    apply_zca,
    arrays_dataset,
    arrays_from_dataset,
    arrays_from_tensors,
    concat_arrays,
    data_spec,
    decode_files,
    decode_image,
    eval_batches,
    fit_zca,
    folder_files,
    load_arrays,
    make_split,
    normalize,
    prepare_image,
    preprocess_entry,
    preprocess_transform,
    random_crop_flip,
    read_label_rows,
    spec_from_arrays,
    split_summary,
)
from ssl_mix.data.randaugment import RA_OPS, RandAugmentParams, apply_randaugment, rand_augment, sample_randaugment
from ssl_mix.data.run_data import RunData, folder_run_files
from ssl_mix.demo import run_demo
from ssl_mix.evaluation import evaluate
from ssl_mix.experiment import (
    build_loader,
    build_method,
    build_preprocess,
    build_teacher,
    build_trainer,
    load_run_data,
    run_experiment,
)
from ssl_mix.export import export_model, load_export
from ssl_mix.inference import (
    InferenceModel,
    Prediction,
    Predictor,
    RunEvaluation,
    evaluate_run,
    image_settings,
    load_predictor,
)
from ssl_mix.losses import ict_consistency, kl_consistency, mse_consistency, soft_target_cross_entropy
from ssl_mix.methods import (
    ERM,
    ICT,
    METHODS,
    Batch,
    ManifoldMixup,
    Method,
    MethodName,
    Mixup,
    StepContext,
    StepOutput,
    method_class,
    register_method,
)
from ssl_mix.metrics import ClassificationMetrics, expected_calibration_error, reliability_bins
from ssl_mix.mixing import MixPlan, identity_plan, mix, sample_mix_plan, sample_mix_weights
from ssl_mix.models import (
    CNN13,
    LayerId,
    MixableModule,
    SmallCNN,
    StagedModel,
    TimmStaged,
    WideResNet,
    available_models,
    create_model,
    eval_mode,
    forward_layers,
    forward_mixed,
    get_stages,
    layer_names,
    model_device,
    run_stages,
    unwrap_model,
)
from ssl_mix.optim import build_optimizer, build_scheduler, lr_multiplier
from ssl_mix.predict import find_images, iter_predictions, predict_files
from ssl_mix.ramps import ConsistencySchedule, cosine_rampdown, linear_rampup, sigmoid_rampup
from ssl_mix.run import (
    CHECKPOINT_FORMAT,
    RunDir,
    TrainedRun,
    data_info,
    load_run,
    load_test_set,
    load_trained,
    update_checkpoint,
)
from ssl_mix.selection import STRATEGIES, Strategy, acquisition_scores, check_strategy, select_top
from ssl_mix.teacher import MODEL_ROLES, EMATeacher, TeacherBN
from ssl_mix.trainer import NonFiniteLossError, Trainer
from ssl_mix.version import __version__

__all__ = [
    "__version__",
    # mixing math
    "MixPlan", "sample_mix_weights", "sample_mix_plan", "mix", "identity_plan",
    # losses and ramps
    "soft_target_cross_entropy", "mse_consistency", "kl_consistency", "ict_consistency",
    "sigmoid_rampup", "linear_rampup", "cosine_rampdown", "ConsistencySchedule",
    # teacher, methods, training
    "EMATeacher", "MODEL_ROLES", "TeacherBN", "Method", "ERM", "Mixup", "ManifoldMixup", "ICT", "Batch",
    "StepContext", "StepOutput",
    "METHODS", "MethodName", "method_class", "register_method",
    "Trainer", "NonFiniteLossError", "evaluate", "ClassificationMetrics", "expected_calibration_error",
    "save_checkpoint", "load_checkpoint",
    "RunData", "load_run_data", "build_method", "build_teacher", "build_preprocess", "build_loader", "build_trainer",
    "run_experiment",
    "run_demo",
    # using a trained model: calibration, prediction
    "fit_temperature", "safe_temperature", "MIN_RELIABLE_VALID",
    "scale_logits", "calibration_metrics", "model_logits", "calibrate_models", "calibrate_run",
    "calibrate_checkpoints", "NoValidationSplitError", "InferenceModel", "Predictor", "Prediction", "load_predictor",
    "evaluate_run", "RunEvaluation",
    "image_settings",
    "find_images", "predict_files", "iter_predictions", "export_model", "load_export", "reliability_bins",
    "plot_reliability",
    "build_optimizer", "build_scheduler", "lr_multiplier",
    # which images to label next
    "STRATEGIES", "Strategy", "check_strategy", "acquisition_scores", "select_top", "Selection", "SELECTION_COLUMNS",
    "unlabeled_pool",
    "pool_probabilities", "choose", "select_for_labeling", "write_selection",
    # runs: directory, checkpoints, loading a trained model
    "RunDir", "CHECKPOINT_FORMAT", "data_info", "TrainedRun", "load_run", "load_trained", "load_test_set",
    "update_checkpoint",
    # data
    "LabelSplit", "make_split", "split_summary", "ImageArrays", "DataSpec", "load_arrays", "data_spec",
    "spec_from_arrays", "concat_arrays", "arrays_from_tensors", "arrays_from_dataset", "arrays_dataset",
    "ArrayDataset", "random_crop_flip", "normalize", "TensorDualLoader", "TorchDualLoader",
    "RA_OPS", "RandAugmentParams", "sample_randaugment", "apply_randaugment", "rand_augment",
    "eval_batches", "DATASET_NAMES", "DatasetName", "PADDING_MODES", "PaddingMode",
    "decode_image", "prepare_image", "BadImageError", "ImageFiles", "folder_files", "decode_files", "ImageFileDataset",
    "ZCA", "fit_zca", "apply_zca", "preprocess_entry", "preprocess_transform",
    "read_label_rows", "LabelRows", "added_labels", "AddedLabels", "folder_run_files",
    # analysis
    "nonlinearity", "nonlinearity_k", "measure_linearity", "linearity_probe", "class_singular_values",
    "flattening", "flattening_summary", "plot_linearity_curves", "plot_linearity_comparison", "plot_spectra",
    "read_linearity_history", "analyze_run", "format_analysis",
    # configuration
    "Config", "DataConfig", "ModelConfig", "MethodConfig", "OptimConfig", "TrainConfig", "PRESETS", "preset",
    "PRESET_DESCRIPTIONS", "Preset", "config_flags", "field_docs", "flag_terms", "format_value", "PRECISIONS",
    "Precision",
    # argument checks
    "check_bool", "check_int", "check_positive_int", "check_number", "check_probability", "check_in", "check_k",
    "check_alpha",
    # models
    "create_model", "available_models", "WideResNet", "CNN13", "SmallCNN", "TimmStaged", "StagedModel",
    "LayerId", "get_stages", "layer_names", "forward_layers", "forward_mixed", "run_stages", "MixableModule",
    "unwrap_model", "eval_mode", "model_device",
]
