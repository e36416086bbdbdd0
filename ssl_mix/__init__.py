"""ssl_mix: semi-supervised learning with mixup.

Interpolation Consistency Training (ICT, Verma et al. 2019) and its K-point generalisation ICT[K]
(Chaudhry et al., "When does mixup promote local linearity in learned representations?"), supervised
mixup and manifold mixup baselines, label-budget splits, models with addressable layers, and per-layer
linearity analysis. Public names are re-exported here flat: ``from ssl_mix import ICT, Trainer``.
"""

__version__ = "0.1.0"

from ssl_mix.analysis import (
    class_singular_values,
    flattening,
    flattening_summary,
    linearity_probe,
    measure_linearity,
    nonlinearity,
    nonlinearity_k,
    plot_linearity_comparison,
    plot_linearity_curves,
    plot_spectra,
    read_linearity_history,
)
from ssl_mix.checkpoint import load_checkpoint, save_checkpoint
from ssl_mix.config import (
    PRESETS,
    Config,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    preset,
)
from ssl_mix.data import (
    ArrayDataset,
    DataSpec,
    DualLoader,
    ImageArrays,
    LabelSplit,
    TensorDualLoader,
    TorchDualLoader,
    ZCA,
    apply_zca,
    arrays_dataset,
    arrays_from_dataset,
    arrays_from_tensors,
    concat_arrays,
    data_spec,
    eval_batches,
    fit_zca,
    load_arrays,
    make_split,
    normalize,
    random_crop_flip,
    spec_from_arrays,
    split_summary,
)
from ssl_mix.demo import run_demo
from ssl_mix.experiment import (
    RunData,
    TrainedRun,
    build_loader,
    build_method,
    build_preprocess,
    build_trainer,
    load_run_data,
    load_trained,
    run_experiment,
    trained_models,
)
from ssl_mix.losses import ict_consistency, kl_consistency, mse_consistency, soft_target_cross_entropy
from ssl_mix.methods import ERM, ICT, Batch, ManifoldMixup, Method, Mixup, StepContext, StepOutput
from ssl_mix.metrics import ClassificationMetrics, expected_calibration_error
from ssl_mix.mixing import MixPlan, identity_plan, mix, sample_mix_plan, sample_mix_weights
from ssl_mix.models import (
    CNN13,
    LayerId,
    SmallCNN,
    StagedModel,
    TimmStaged,
    WideResNet,
    available_models,
    create_model,
    forward_layers,
    forward_mixed,
    get_stages,
    layer_names,
    run_stages,
)
from ssl_mix.ramps import ConsistencySchedule, cosine_rampdown, linear_rampup, sigmoid_rampup
from ssl_mix.teacher import EMATeacher
from ssl_mix.trainer import NonFiniteLossError, Trainer, evaluate

__all__ = [
    "__version__",
    # mixing math
    "MixPlan", "sample_mix_weights", "sample_mix_plan", "mix", "identity_plan",
    # losses and ramps
    "soft_target_cross_entropy", "mse_consistency", "kl_consistency", "ict_consistency",
    "sigmoid_rampup", "linear_rampup", "cosine_rampdown", "ConsistencySchedule",
    # teacher, methods, training
    "EMATeacher", "Method", "ERM", "Mixup", "ManifoldMixup", "ICT", "Batch", "StepContext", "StepOutput",
    "Trainer", "NonFiniteLossError", "evaluate", "ClassificationMetrics", "expected_calibration_error",
    "save_checkpoint", "load_checkpoint",
    "RunData", "load_run_data", "build_method", "build_preprocess", "build_loader", "build_trainer", "run_experiment",
    "run_demo",
    "TrainedRun", "load_trained", "trained_models",
    # data
    "LabelSplit", "make_split", "split_summary", "ImageArrays", "DataSpec", "load_arrays", "data_spec",
    "spec_from_arrays", "concat_arrays", "arrays_from_tensors", "arrays_from_dataset", "arrays_dataset",
    "ArrayDataset", "random_crop_flip", "normalize", "DualLoader", "TensorDualLoader", "TorchDualLoader",
    "eval_batches", "ZCA", "fit_zca", "apply_zca",
    # analysis
    "nonlinearity", "nonlinearity_k", "measure_linearity", "linearity_probe", "class_singular_values",
    "flattening", "flattening_summary", "plot_linearity_curves", "plot_linearity_comparison", "plot_spectra",
    "read_linearity_history",
    # configuration
    "Config", "DataConfig", "ModelConfig", "MethodConfig", "OptimConfig", "TrainConfig", "PRESETS", "preset",
    # models
    "create_model", "available_models", "WideResNet", "CNN13", "SmallCNN", "TimmStaged", "StagedModel",
    "LayerId", "get_stages", "layer_names", "forward_layers", "forward_mixed", "run_stages",
]
