"""What mixup does to each layer: per-layer non-linearity (Chaudhry et al. eq. 3) and class flattening.

- :mod:`ssl_mix.analysis.linearity`: distance between the representation of a mix and the mix of the
  representations, per layer, on pairs or K-point mixes; a fixed-sample probe for use during training.
- :mod:`ssl_mix.analysis.flattening`: singular values of each class's centred representations at a layer
  (manifold mixup's flattening, Verma et al. 2019) and a summary.
- :mod:`ssl_mix.analysis.plots`: PNG figures of both (and of an evaluation's calibration and confusion), and the
  logged non-linearity read back from TensorBoard.
- :mod:`ssl_mix.analysis.analyze`: both measurements on a trained run, written as JSON and plots
  (``ssl-mix analyze``).
"""

from ssl_mix.analysis.analyze import analyze_run, format_analysis
from ssl_mix.analysis.flattening import (
    DEFAULT_THRESHOLD,
    class_singular_values,
    flattening,
    flattening_summary,
    normalized_spectrum,
    num_significant,
)
from ssl_mix.analysis.linearity import (
    LinearityProbe,
    Normalization,
    layer_key,
    linearity_probe,
    measure_linearity,
    nonlinearity,
    nonlinearity_k,
)
from ssl_mix.analysis.plots import (
    plot_confusion_matrix,
    plot_linearity_comparison,
    plot_linearity_curves,
    plot_reliability,
    plot_spectra,
    read_linearity_history,
    sort_layer_keys,
)

__all__ = [
    "analyze_run",
    "format_analysis",
    "DEFAULT_THRESHOLD",
    "LinearityProbe",
    "Normalization",
    "class_singular_values",
    "flattening",
    "flattening_summary",
    "layer_key",
    "linearity_probe",
    "measure_linearity",
    "nonlinearity",
    "nonlinearity_k",
    "normalized_spectrum",
    "num_significant",
    "plot_linearity_comparison",
    "plot_linearity_curves",
    "plot_reliability",
    "plot_confusion_matrix",
    "plot_spectra",
    "read_linearity_history",
    "sort_layer_keys",
]
