"""Every number a paper reports, with confidence intervals and paired tests."""

from hierarchy.metrics.calibration import (
                                           brier_score,
                                           expected_calibration_error,
                                           reliability_curve,
)
from hierarchy.metrics.classification import (
                                           HEADLINE_METRICS,
                                           accuracy,
                                           balanced_accuracy,
                                           class_auc,
                                           confusion,
                                           macro_auc,
                                           macro_f1,
                                           micro_auc,
                                           per_class_table,
                                           pr_curves,
                                           roc_curves,
)
from hierarchy.metrics.conformal import ConformalSets, conformal_evaluation, set_summary
from hierarchy.metrics.delong import auc_interval, delong_covariance, delong_test
from hierarchy.metrics.evaluate import (
                                           aggregate_seeds,
                                           compare_routes,
                                           evaluate_predictions,
                                           labels_and_probabilities,
                                           present_routes,
                                           to_jsonable,
)
from hierarchy.metrics.false_negatives import (
                                           false_negative_analysis,
                                           missed_tumours,
                                           per_class_misses,
                                           routing_errors,
                                           tumour_detection,
)
from hierarchy.metrics.intervals import (
                                           bootstrap_ci,
                                           bootstrap_cis,
                                           cluster_bootstrap_indices,
                                           combined_interval,
                                           proportion,
                                           wilson_interval,
)
from hierarchy.metrics.multiplicity import adjust_family, adjust_p_values
from hierarchy.metrics.operating_points import (
                                           clinical_reading,
                                           decision_curve,
                                           operating_point,
                                           operating_points,
)
from hierarchy.metrics.paired import bootstrap_test, mcnemar_exact, paired_bootstrap_difference
from hierarchy.metrics.shift import accuracy_coverage_curve, ood_auroc
from hierarchy.metrics.simulate import simulate_predictions
from hierarchy.temperature import apply_temperature, fit_temperature

__all__ = [
    "ConformalSets", "HEADLINE_METRICS", "accuracy", "adjust_family", "adjust_p_values", "auc_interval",
    "bootstrap_test", "clinical_reading", "cluster_bootstrap_indices", "combined_interval", "decision_curve", "delong_covariance",
    "delong_test", "operating_point", "operating_points", "accuracy_coverage_curve", "aggregate_seeds",
    "apply_temperature", "balanced_accuracy", "bootstrap_ci", "bootstrap_cis", "brier_score",
    "class_auc", "compare_routes", "conformal_evaluation", "confusion", "evaluate_predictions",
    "expected_calibration_error", "false_negative_analysis", "labels_and_probabilities",
    "fit_temperature", "macro_auc", "macro_f1", "mcnemar_exact", "micro_auc", "missed_tumours",
    "ood_auroc", "paired_bootstrap_difference", "per_class_misses", "per_class_table", "pr_curves",
    "present_routes", "reliability_curve", "roc_curves", "routing_errors", "proportion", "set_summary",
    "simulate_predictions", "to_jsonable", "tumour_detection", "wilson_interval",
]
