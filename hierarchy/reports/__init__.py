"""Paper-ready figures (PNG 300 dpi + PDF), tables (CSV, LaTeX, Markdown) and ``report.md``."""

from hierarchy.reports.build import COMPARISONS, build_report
from hierarchy.reports.style import save_figure
from hierarchy.reports.tables import markdown_table, to_markdown, write_table

__all__ = ["COMPARISONS", "build_report", "markdown_table", "save_figure", "to_markdown", "write_table"]
