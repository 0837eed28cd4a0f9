"""Early exit (RAVIT.md, "Early exit"): entropy, routing, sweeps, calibration, plots.

Pure NumPy (matplotlib only inside the plotting functions), so a device
scheduler or a notebook can use it without TensorFlow.

    uncertainty.py  softmax, entropy u = −Σ p·ln p, threshold validation
    routing.py      route (batched) and route_one_at_a_time; evaluate_exits
    sweep.py        accuracy and cost over a grid of thresholds; CSV/JSON
    calibration.py  thresholds that meet an accuracy or MAC budget
    intervals.py    how far figures on few images can be trusted (Wilson, bootstrap, paired bound)
    per_class.py    per-class accuracy, exit shares, confusion matrix
    plots.py        accuracy vs FLOPs, exit histograms, per-class results, confusion matrix

Inputs are the logits of every exit for a set of images, ``exit_logits``: a
sequence of ``(N, C)`` arrays in exit order (the order of ``config.exit_names``).

The rule: after exit ``i`` compute ``u_i = −Σ_c p_c·ln p_c`` of ``p = softmax(logits_i)``;
stop and answer ``argmax p`` if ``u_i ≤ τ_i``, otherwise go on; the last exit always
answers. ``τ = 0`` means no early exit: only an image whose entropy is exactly 0
(a probability that saturates to exactly 1 in float64) would stop, which is the
correct reading of the rule and harmless. ``τ = ln C`` (the largest possible
entropy) stops every image at the first exit.
"""

from ravit_keras.exits.calibration import calibrate_thresholds
from ravit_keras.exits.per_class import (
    count_matrices,
    format_per_class,
    per_class_from_counts,
    per_class_report,
)
from ravit_keras.exits.plots import (
    plot_accuracy_vs_flops,
    plot_confusion_matrix,
    plot_exit_histogram,
    plot_per_class,
)
from ravit_keras.exits.routing import (
    Routing,
    apply_thresholds,
    evaluate_exits,
    route,
    route_one_at_a_time,
)
from ravit_keras.exits.sweep import default_threshold_grid, save_sweep, sweep
from ravit_keras.exits.uncertainty import (
    entropy,
    max_entropy,
    softmax,
    validate_thresholds,
)

__all__ = [
    "Routing", "apply_thresholds", "calibrate_thresholds", "count_matrices", "default_threshold_grid",
    "entropy", "format_per_class", "per_class_from_counts", "per_class_report", "plot_confusion_matrix",
    "plot_per_class",
    "evaluate_exits", "max_entropy", "plot_accuracy_vs_flops", "plot_exit_histogram", "route",
    "route_one_at_a_time", "save_sweep", "softmax", "sweep", "validate_thresholds",
]
