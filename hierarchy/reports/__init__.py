"""Paper-ready figures (PNG 300 dpi + PDF), tables (CSV, LaTeX, Markdown) and ``report.md``."""

from hierarchy.reports.build import COMPARISONS, build_report
from hierarchy.reports.figures import (
    dataset_confusion_figure,
    generalisation_figure,
    ood_coverage_figure,
    roc_figure,
)
from hierarchy.reports.style import save_figure
from hierarchy.reports.tables import (
    conformal_per_class_table,
    conformal_table,
    dataset_comparison_table,
    error_table,
    generalisation_table,
    markdown_table,
    ood_coverage_table,
    ood_table,
    per_class_recall_table,
    to_markdown,
    write_table,
)
from hierarchy.reports.writer import ReportFiles, ReportWriter

__all__ = [
    "COMPARISONS", "ReportFiles", "ReportWriter", "build_report", "conformal_per_class_table", "conformal_table", "dataset_comparison_table",
    "dataset_confusion_figure", "error_table", "generalisation_figure", "generalisation_table",
    "markdown_table", "ood_coverage_figure", "ood_coverage_table", "ood_table",
    "per_class_recall_table", "roc_figure", "save_figure", "to_markdown", "write_table",
]
