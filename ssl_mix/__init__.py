"""ssl_mix: semi-supervised learning with mixup.

Interpolation Consistency Training (ICT, Verma et al. 2019) and its K-point generalisation ICT[K]
(Chaudhry et al., "When does mixup promote local linearity in learned representations?"), supervised
mixup and manifold mixup baselines, label-budget splits, models with addressable layers, and per-layer
linearity analysis. Public names are re-exported here flat: ``from ssl_mix import ICT, Trainer``.

The re-exports are lazy (PEP 562): a name's module is imported when the name is first read, so that
``import ssl_mix`` (and ``ssl-mix --help``) does not wait for torch. To export a name, add it to ``_EXPORTS`` (one
line: name -> module), to the ``TYPE_CHECKING`` imports (what type checkers and editors read) and to ``__all__``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ssl_mix.version import __version__

if TYPE_CHECKING:
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

# name -> the module that defines it (one line per name).
_EXPORTS: dict[str, str] = {
    "SELECTION_COLUMNS": "ssl_mix.active",
    "Selection": "ssl_mix.active",
    "choose": "ssl_mix.active",
    "pool_probabilities": "ssl_mix.active",
    "select_for_labeling": "ssl_mix.active",
    "unlabeled_pool": "ssl_mix.active",
    "write_selection": "ssl_mix.active",
    "analyze_run": "ssl_mix.analysis",
    "class_singular_values": "ssl_mix.analysis",
    "flattening": "ssl_mix.analysis",
    "flattening_summary": "ssl_mix.analysis",
    "format_analysis": "ssl_mix.analysis",
    "linearity_probe": "ssl_mix.analysis",
    "measure_linearity": "ssl_mix.analysis",
    "nonlinearity": "ssl_mix.analysis",
    "nonlinearity_k": "ssl_mix.analysis",
    "plot_linearity_comparison": "ssl_mix.analysis",
    "plot_linearity_curves": "ssl_mix.analysis",
    "plot_reliability": "ssl_mix.analysis",
    "plot_spectra": "ssl_mix.analysis",
    "read_linearity_history": "ssl_mix.analysis",
    "MIN_RELIABLE_VALID": "ssl_mix.calibration",
    "NoValidationSplitError": "ssl_mix.calibration",
    "calibrate_checkpoints": "ssl_mix.calibration",
    "calibrate_models": "ssl_mix.calibration",
    "calibrate_run": "ssl_mix.calibration",
    "calibration_metrics": "ssl_mix.calibration",
    "fit_temperature": "ssl_mix.calibration",
    "model_logits": "ssl_mix.calibration",
    "safe_temperature": "ssl_mix.calibration",
    "scale_logits": "ssl_mix.calibration",
    "load_checkpoint": "ssl_mix.checkpoint",
    "save_checkpoint": "ssl_mix.checkpoint",
    "check_alpha": "ssl_mix.checks",
    "check_bool": "ssl_mix.checks",
    "check_in": "ssl_mix.checks",
    "check_int": "ssl_mix.checks",
    "check_k": "ssl_mix.checks",
    "check_number": "ssl_mix.checks",
    "check_positive_int": "ssl_mix.checks",
    "check_probability": "ssl_mix.checks",
    "PRECISIONS": "ssl_mix.config",
    "PRESET_DESCRIPTIONS": "ssl_mix.config",
    "PRESETS": "ssl_mix.config",
    "Config": "ssl_mix.config",
    "DataConfig": "ssl_mix.config",
    "MethodConfig": "ssl_mix.config",
    "ModelConfig": "ssl_mix.config",
    "OptimConfig": "ssl_mix.config",
    "Precision": "ssl_mix.config",
    "Preset": "ssl_mix.config",
    "TrainConfig": "ssl_mix.config",
    "config_flags": "ssl_mix.config",
    "field_docs": "ssl_mix.config",
    "flag_terms": "ssl_mix.config",
    "format_value": "ssl_mix.config",
    "preset": "ssl_mix.config",
    "DATASET_NAMES": "ssl_mix.data",
    "PADDING_MODES": "ssl_mix.data",
    "ZCA": "ssl_mix.data",
    "AddedLabels": "ssl_mix.data",
    "ArrayDataset": "ssl_mix.data",
    "BadImageError": "ssl_mix.data",
    "DatasetName": "ssl_mix.data",
    "DataSpec": "ssl_mix.data",
    "ImageArrays": "ssl_mix.data",
    "ImageFileDataset": "ssl_mix.data",
    "ImageFiles": "ssl_mix.data",
    "LabelRows": "ssl_mix.data",
    "LabelSplit": "ssl_mix.data",
    "PaddingMode": "ssl_mix.data",
    "TensorDualLoader": "ssl_mix.data",
    "TorchDualLoader": "ssl_mix.data",
    "added_labels": "ssl_mix.data",
    "apply_zca": "ssl_mix.data",
    "arrays_dataset": "ssl_mix.data",
    "arrays_from_dataset": "ssl_mix.data",
    "arrays_from_tensors": "ssl_mix.data",
    "concat_arrays": "ssl_mix.data",
    "data_spec": "ssl_mix.data",
    "decode_files": "ssl_mix.data",
    "decode_image": "ssl_mix.data",
    "eval_batches": "ssl_mix.data",
    "fit_zca": "ssl_mix.data",
    "folder_files": "ssl_mix.data",
    "load_arrays": "ssl_mix.data",
    "make_split": "ssl_mix.data",
    "normalize": "ssl_mix.data",
    "prepare_image": "ssl_mix.data",
    "preprocess_entry": "ssl_mix.data",
    "preprocess_transform": "ssl_mix.data",
    "random_crop_flip": "ssl_mix.data",
    "read_label_rows": "ssl_mix.data",
    "spec_from_arrays": "ssl_mix.data",
    "split_summary": "ssl_mix.data",
    "RunData": "ssl_mix.data.run_data",
    "folder_run_files": "ssl_mix.data.run_data",
    "run_demo": "ssl_mix.demo",
    "evaluate": "ssl_mix.evaluation",
    "build_loader": "ssl_mix.experiment",
    "build_method": "ssl_mix.experiment",
    "build_preprocess": "ssl_mix.experiment",
    "build_teacher": "ssl_mix.experiment",
    "build_trainer": "ssl_mix.experiment",
    "load_run_data": "ssl_mix.experiment",
    "run_experiment": "ssl_mix.experiment",
    "export_model": "ssl_mix.export",
    "load_export": "ssl_mix.export",
    "InferenceModel": "ssl_mix.inference",
    "Prediction": "ssl_mix.inference",
    "Predictor": "ssl_mix.inference",
    "RunEvaluation": "ssl_mix.inference",
    "evaluate_run": "ssl_mix.inference",
    "image_settings": "ssl_mix.inference",
    "load_predictor": "ssl_mix.inference",
    "ict_consistency": "ssl_mix.losses",
    "kl_consistency": "ssl_mix.losses",
    "mse_consistency": "ssl_mix.losses",
    "soft_target_cross_entropy": "ssl_mix.losses",
    "ERM": "ssl_mix.methods",
    "ICT": "ssl_mix.methods",
    "METHODS": "ssl_mix.methods",
    "Batch": "ssl_mix.methods",
    "ManifoldMixup": "ssl_mix.methods",
    "Method": "ssl_mix.methods",
    "MethodName": "ssl_mix.methods",
    "Mixup": "ssl_mix.methods",
    "StepContext": "ssl_mix.methods",
    "StepOutput": "ssl_mix.methods",
    "method_class": "ssl_mix.methods",
    "register_method": "ssl_mix.methods",
    "ClassificationMetrics": "ssl_mix.metrics",
    "expected_calibration_error": "ssl_mix.metrics",
    "reliability_bins": "ssl_mix.metrics",
    "MixPlan": "ssl_mix.mixing",
    "identity_plan": "ssl_mix.mixing",
    "mix": "ssl_mix.mixing",
    "sample_mix_plan": "ssl_mix.mixing",
    "sample_mix_weights": "ssl_mix.mixing",
    "CNN13": "ssl_mix.models",
    "LayerId": "ssl_mix.models",
    "MixableModule": "ssl_mix.models",
    "SmallCNN": "ssl_mix.models",
    "StagedModel": "ssl_mix.models",
    "TimmStaged": "ssl_mix.models",
    "WideResNet": "ssl_mix.models",
    "available_models": "ssl_mix.models",
    "create_model": "ssl_mix.models",
    "eval_mode": "ssl_mix.models",
    "forward_layers": "ssl_mix.models",
    "forward_mixed": "ssl_mix.models",
    "get_stages": "ssl_mix.models",
    "layer_names": "ssl_mix.models",
    "model_device": "ssl_mix.models",
    "run_stages": "ssl_mix.models",
    "unwrap_model": "ssl_mix.models",
    "build_optimizer": "ssl_mix.optim",
    "build_scheduler": "ssl_mix.optim",
    "lr_multiplier": "ssl_mix.optim",
    "find_images": "ssl_mix.predict",
    "iter_predictions": "ssl_mix.predict",
    "predict_files": "ssl_mix.predict",
    "ConsistencySchedule": "ssl_mix.ramps",
    "cosine_rampdown": "ssl_mix.ramps",
    "linear_rampup": "ssl_mix.ramps",
    "sigmoid_rampup": "ssl_mix.ramps",
    "CHECKPOINT_FORMAT": "ssl_mix.run",
    "RunDir": "ssl_mix.run",
    "TrainedRun": "ssl_mix.run",
    "data_info": "ssl_mix.run",
    "load_run": "ssl_mix.run",
    "load_test_set": "ssl_mix.run",
    "load_trained": "ssl_mix.run",
    "update_checkpoint": "ssl_mix.run",
    "STRATEGIES": "ssl_mix.selection",
    "Strategy": "ssl_mix.selection",
    "acquisition_scores": "ssl_mix.selection",
    "check_strategy": "ssl_mix.selection",
    "select_top": "ssl_mix.selection",
    "MODEL_ROLES": "ssl_mix.teacher",
    "EMATeacher": "ssl_mix.teacher",
    "TeacherBN": "ssl_mix.teacher",
    "NonFiniteLossError": "ssl_mix.trainer",
    "Trainer": "ssl_mix.trainer",
}

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


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and keep the name here (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        if name.startswith("_") or importlib.util.find_spec(f"ssl_mix.{name}") is None:
            raise AttributeError(f"module 'ssl_mix' has no attribute {name!r}")
        return importlib.import_module(f"ssl_mix.{name}")  # a submodule, as `import ssl_mix.name` would give
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily exported ones included."""
    return sorted(set(globals()) | set(_EXPORTS))
