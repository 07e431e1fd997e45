"""``build_report``: metrics, figures, tables and a ``report.md`` for a prediction table.

Layout under ``out_dir``: ``report.md``, ``metrics.json`` (the ``evaluate_predictions`` dict),
``comparisons.json`` (``compare_routes`` results), ``figures/*.png|pdf``, ``tables/*.csv|tex|md``,
``gallery/`` (image-derived figures, kept out of published copies), ``supplement.tex`` (a LaTeX document
of every table and figure) and ``manifest.json``, every file the report wrote with its sha256 (see
``hierarchy.reports.writer``). Overwriting a report replaces the files its manifest lists and removes
those the new report does not write; nothing else in the folder is deleted or written over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from hierarchy.fileio import json_text, tidy_folder
from hierarchy.labels import NO_TUMOR
from hierarchy.metrics.evaluate import compare_routes, evaluate_predictions
from hierarchy.provenance import software_versions
from hierarchy.reports import figures, tables
from hierarchy.reports.latex import supplement
from hierarchy.reports.style import line_groups
from hierarchy.reports.writer import (
    MANIFEST,
    ReportFiles,
    ReportWriter,
    report_writer,
    supplement_items,
)

COMPARISONS: tuple[tuple[str, str], ...] = (("flat", "hierarchical"), ("flat", "soft"),
                                            ("flat", "ensemble"), ("hierarchical", "oracle"))
logger = logging.getLogger(__name__)
SUPPLEMENT = "supplement.tex"
_FIXED_OUTPUTS = ("report.md", "metrics.json", "comparisons.json", SUPPLEMENT)
GALLERY_DIR = "gallery"  # image-derived figures: written beside the report, kept out of published copies


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty folder without ``overwrite``, once a report killed while moving in is
    finished and what killed reports left beside the folder is removed."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    tidy_folder(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"report folder {out_dir} is not empty; choose another folder or "
                              "pass overwrite=True (--overwrite)")


class _Writer:
    """Collects the Markdown of the report while its figures and tables go through one ``ReportWriter``."""

    def __init__(self, files: ReportWriter):
        self.files = files
        self.out_dir = files.out_dir
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def figure(self, fig: Figure | None, stem: str, caption: str, *, folder: str = "figures",
               local: bool = False) -> str:
        markdown = self.files.figure(fig, stem, caption, folder=folder, local=local)
        if markdown:
            self.add(markdown, "")
        return markdown

    def table(self, frame: pd.DataFrame, stem: str, caption: str, *, embed: bool = True) -> None:
        markdown = self.files.table(frame, stem, caption, embed=embed)
        if markdown:
            self.add(markdown, "")


def _data_and_methods(w: _Writer, pred: pd.DataFrame, metrics: dict,
                      run_record: Mapping | None) -> None:
    w.add("## Data and methods", "")
    if run_record is None:
        w.add("> **No run record was supplied.** The dataset hashes, splits, seeds, configuration "
              "and software of the run that produced these predictions are not documented here; "
              "pass `--run-record run.json` to include them.", "")
    else:
        w.add("### Run record", "",
              f"- created: {run_record.get('created', 'unknown')}",
              f"- code (git commit): `{run_record.get('git_commit') or 'unknown'}`",
              *resumed_stages(run_record),
              f"- seed: {run_record.get('seed', 'unknown')}", "")
        data = run_record.get("data") or {}
        if data:
            w.table(pd.DataFrame([{"subset": name, "n_images": d.get("n_images"),
                                   "sha256": d.get("sha256")} for name, d in data.items()]),
                    "data_subsets", "Data subsets (image count and fingerprint of each split)")
        w.add("### Configuration", "", "```json",
              json_text(run_record.get("config", {}), sort_keys=True).rstrip("\n"),
              "```", "")
        versions = run_record.get("versions") or {}
        if versions:
            w.table(pd.DataFrame(list(versions.items()), columns=["software", "version"]),
                    "software_run", "Software of the run that produced the predictions")
    w.add("### Evaluation set", "")
    first = pred[pred["route"] == next(iter(metrics["routes"]))]
    counts = first["true_label"].value_counts().reindex(metrics["classes"], fill_value=0)
    w.add(f"- routes evaluated: {', '.join(metrics['routes'])}",
          f"- images per route: {first.shape[0]}",
          "- true classes: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    if "true_plane" in first.columns and first["true_plane"].notna().any():
        planes = first["true_plane"].value_counts()
        w.add("- true planes: " + ", ".join(f"{p} {int(planes.get(p, 0))}" for p in metrics["planes"]))
    w.add("", "### Statistical methods", "",
          f"Predictions are the most probable class. 95% confidence intervals "
          f"(confidence {metrics['confidence']}) are percentile bootstrap intervals over "
          f"{metrics['n_bootstrap']} resamples stratified by true class (seed {metrics['seed']}) "
          "for accuracy, balanced accuracy, macro-F1 and AUCs, and Wilson score intervals for "
          "proportions (per-class precision, sensitivity, specificity, NPV; tumour sensitivity and "
          "false-negative rate; plane accuracy). AUCs are one-vs-rest; macro AUC averages the "
          "classes, micro AUC pools all (image, class) pairs. Routes are compared on the same "
          "images with the exact (binomial) McNemar test on correctness and a paired bootstrap of "
          "the difference (B - A) in accuracy, macro-F1 and macro AUC. Calibration: top-label "
          "expected calibration error with 15 equal-width bins, and the multiclass Brier score.", "")
    w.table(pd.DataFrame(list(software_versions().items()), columns=["software", "version"]),
            "software_report", "Software that computed this report")


def _results(w: _Writer, metrics: dict) -> None:
    w.add("## Results", "")
    w.table(tables.headline_table(metrics), "headline", "Headline metrics per route [95% CI]")
    w.table(tables.per_class_table(metrics), "per_class", "Per-class metrics per route [95% CI]")
    route_curves(w, figures.roc_figure, metrics, "roc", "One-vs-rest ROC curves, inset magnifying the top-left "
                 "corner; AUC [95% CI] under each panel")
    route_curves(w, figures.pr_figure, metrics, "pr", "Precision-recall curves, inset magnifying the top-right "
                 "corner; average precision under each panel")
    w.figure(figures.confusion_figure(metrics), "confusion",
             "Confusion matrices: counts and row-normalised percentages (rows: truth)")


def route_curves(w: _Writer | ReportFiles, draw: Callable[..., Figure], metrics: dict, stem: str,
                 caption: str) -> str:
    """Curves of every route, ``MAX_LINES_PER_PANEL`` routes a figure: ``stem`` shows the first ones,
    ``stem_2``, ``stem_3`` ... the rest (supplementary); returns the Markdown of them all."""
    groups = line_groups(list(metrics["routes"]))
    parts = []
    for k, group in enumerate(groups):
        suffix = "" if len(groups) == 1 else f" (routes {', '.join(group)})"
        parts.append(w.figure(draw(metrics, group), stem if k == 0 else f"{stem}_{k + 1}", caption + suffix))
    return "\n\n".join(p for p in parts if p)


def _comparisons(w: _Writer, comparisons: list[dict]) -> None:
    w.add("## Route comparisons", "")
    if not comparisons:
        w.add("No pair of compared routes is present in the prediction table.", "")
        return
    w.add("Differences are route B minus route A; McNemar b counts images only A classified "
          "correctly, c those only B did.", "")
    w.table(tables.comparison_table(comparisons), "comparisons",
            "Paired comparisons: McNemar exact test and bootstrap differences [95% CI]")


def _false_negatives(w: _Writer, metrics: dict, overlays: Mapping[str, str | Path] | None,
                     paths: Mapping[str, str]) -> None:
    w.add("## False-negative analysis", "")
    if any(result["false_negatives"] is None for result in metrics["routes"].values()):
        w.add(f"The classes ({', '.join(metrics['classes'])}) have no `{NO_TUMOR}`, so no image can be a "
              "missed tumour; no false-negative analysis.", "")
        return
    w.add("A false negative is a tumour image predicted `no_tumor`. Tumour-class errors are split "
          "by whether the plane classifier sent the image to the right expert.", "")
    w.table(tables.false_negative_table(metrics), "false_negatives",
            "Tumour detection per route [95% Wilson CI]")
    w.table(tables.per_class_misses_table(metrics), "false_negatives_per_class",
            "Missed tumours per class [95% Wilson CI]")
    missed = tables.missed_tumours_table(metrics)
    if missed.empty:
        w.add("No tumour was missed.", "")
        return
    w.add(f"{len(missed)} missed tumours across routes are listed in the table below.", "")
    w.table(missed, "missed_tumours", "Every missed tumour", embed=False)
    # Image paths stay out of metrics and tables (they name the machine); the gallery looks them up.
    gallery = figures.missed_gallery_figure(missed.assign(path=missed["id"].map(paths)), overlays=overlays)
    if gallery is None:
        w.add("No image files are available for a gallery of missed tumours.", "")
    w.figure(gallery, "missed_gallery", "Missed tumours (true -> predicted, route)", folder=GALLERY_DIR,
             local=True)


def _calibration(w: _Writer, metrics: dict) -> None:
    w.add("## Calibration", "")
    w.table(tables.calibration_table(metrics), "calibration", "Calibration per route")
    w.figure(figures.reliability_figure(metrics), "reliability", "Reliability diagrams (top label)")
    coverage = tables.coverage_table(metrics)
    if not coverage.empty:
        w.add("### Referral (abstention)", "")
        w.table(coverage, "coverage", "Coverage and accuracy with referral [95% Wilson CI]")
        w.figure(figures.coverage_figure(metrics), "coverage",
                 "Accuracy against coverage, keeping the most confident images; stars mark each route's operating point")


def _per_plane(w: _Writer, metrics: dict) -> None:
    w.add("## Per-plane results", "")
    per_plane = tables.per_plane_table(metrics)
    if per_plane.empty:
        w.add("The prediction table has no `true_plane`; no per-plane breakdown.", "")
        return
    w.table(per_plane, "per_plane", "Headline metrics by true scan plane [95% CI]")
    w.table(tables.plane_classifier_table(metrics), "plane_classifier",
            "Scan-plane classifier accuracy [95% Wilson CI]")
    w.figure(figures.plane_confusion_figure(metrics), "plane_confusion", "Scan-plane confusion")


def _training(w: _Writer, training_logs: Mapping[str, str | Path]) -> None:
    w.add("## Training curves", "")
    for name, log in training_logs.items():
        w.figure(figures.training_curves_figure(log, title=name), f"training_{name}",
                 f"Training and validation loss and accuracy: {name}")


def build_report(pred: pd.DataFrame, out_dir: str | Path, *, run_record: dict | None = None,
                 training_logs: Mapping[str, str | Path] | None = None,
                 extra_sections: Sequence[tuple[str, str]] | None = None,
                 lead_sections: Sequence[tuple[str, str]] = (),
                 overlays: Mapping[str, str | Path] | None = None, n_bootstrap: int = 1000,
                 seed: int = 0, comparisons: Sequence[tuple[str, str]] = COMPARISONS,
                 metrics: dict | None = None, compared: list[dict] | None = None,
                 files: ReportFiles | None = None, adopt: Sequence[str] = (), adopt_local: Sequence[str] = (),
                 overwrite: bool = False, classes: Sequence[str] | None = None,
                 planes: Sequence[str] | None = None) -> Path:
    """Evaluate ``pred`` and write the full report under ``out_dir``; returns ``report.md``'s path.

    ``training_logs`` maps a model name to its ``log.csv``; ``overlays`` maps an image id to an
    explanation image shown beside missed tumours; ``extra_sections`` are (title, Markdown) pairs
    appended at the end, ``lead_sections`` pairs the report opens with (a declared primary endpoint), and
    ``files`` the figures and tables they show (collected while their Markdown
    was composed). ``adopt`` / ``adopt_local`` name files (relative to ``out_dir``) that earlier stages of
    the same run wrote there, to be listed in the manifest too (``_local``: image-derived, kept out of
    published copies). Only ``comparisons`` whose two routes are present are run. ``classes`` and ``planes``
    are the label sets; the table's own (``hierarchy.predictions.table_classes`` / ``table_planes``)
    unless given.

    Every file goes through one :class:`~hierarchy.reports.writer.ReportWriter`: written into a hidden sibling
    of ``out_dir`` and moved in, under the folder's lock and journaled, once the report is complete (a report
    killed at any moment leaves the earlier one, finished or discarded by the next run), and listed with its
    sha256 in ``manifest.json``; ``supplement.tex`` inputs every table and figure in the
    order of ``report.md``. A non-empty ``out_dir`` raises ``FileExistsError`` unless ``overwrite``; with
    ``overwrite`` the files of an earlier report's manifest are replaced and those this report does not
    write are removed, and a file no manifest lists raises ``FileExistsError`` instead of being written
    over. ``metrics`` and ``compared`` take results already computed by ``evaluate_predictions`` /
    ``compare_routes`` on ``pred``, so a caller that needs them too does not bootstrap twice.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    logger.info("evaluating %d prediction rows with %d bootstrap resamples (minutes for large "
                "test sets; lower n_bootstrap for a quick look)", len(pred), n_bootstrap)
    if metrics is None:
        metrics = evaluate_predictions(pred, classes=classes, planes=planes, n_bootstrap=n_bootstrap, seed=seed)
    if compared is None:
        compared = [compare_routes(pred, a, b, classes=metrics["classes"], n_bootstrap=n_bootstrap, seed=seed)
                    for a, b in comparisons if a in metrics["routes"] and b in metrics["routes"]]
    with report_writer(out_dir) as writer:
        taken = [name for name in _FIXED_OUTPUTS if (out_dir / name).exists() and name not in writer.previous]
        if taken:  # refused before anything is written
            raise FileExistsError(f"{', '.join(str(out_dir / n) for n in taken)} already exist(s) and no earlier "
                                  f"report's {MANIFEST} lists them; move them away or choose another folder")
        _write_report(_Writer(writer), pred, metrics, compared, run_record, training_logs, extra_sections, overlays,
                      files, lead_sections)
        writer.adopt(adopt)
        writer.adopt(adopt_local, local=True)
    return out_dir / "report.md"


def uncommitted_note(run_record: Mapping | None) -> str:
    """The warning at the top of a report made with uncommitted changes, or resumed from stages that were
    ("" otherwise)."""
    record = run_record or {}
    commit = str(record.get("git_commit") or "")
    dirty = sorted({str(c) for c in (record.get("stage_commits") or {}).values() if str(c or "").endswith("+dirty")})
    if record.get("uncommitted_changes") or commit.endswith("+dirty"):
        dirty = [commit, *(c for c in dirty if c != commit)]
    if not dirty:
        return ""
    used = ", ".join(f"`{c.removesuffix('+dirty')}`" for c in dirty)
    return (f"> **Made from uncommitted code.** The run used commit {used} with local changes, so no commit "
            "reproduces it exactly; re-make the report from a clean commit before publishing it.")


def resumed_stages(run_record: Mapping | None) -> list[str]:
    """One line per other commit whose stages a resumed run reused, naming them (empty when every stage ran
    at the run's own commit)."""
    record = run_record or {}
    by_commit: dict[str, list[str]] = {}
    for stage, commit in (record.get("stage_commits") or {}).items():
        if commit != record.get("git_commit"):
            by_commit.setdefault(f"`{commit}`" if commit else "an unrecorded commit", []).append(stage)
    return [f"- stages reused from {commit}: {len(stages)} ({', '.join(stages)})"
            for commit, stages in by_commit.items()]


def _write_report(w: _Writer, pred: pd.DataFrame, metrics: dict, compared: list[dict],
                  run_record: Mapping | None, training_logs: Mapping[str, str | Path] | None,
                  extra_sections: Sequence[tuple[str, str]] | None,
                  overlays: Mapping[str, str | Path] | None, files: ReportFiles | None,
                  lead_sections: Sequence[tuple[str, str]] = ()) -> None:
    w.files.write_text("metrics.json", json_text(metrics))
    w.files.write_text("comparisons.json", json_text(compared))
    w.add("# Evaluation report", "")
    if note := uncommitted_note(run_record):
        w.add(note, "")
    w.add("Machine-readable numbers: [metrics.json](metrics.json), [comparisons.json](comparisons.json); "
          f"every table and figure in one LaTeX document: [{SUPPLEMENT}]({SUPPLEMENT}) "
          f"(`pdflatex {SUPPLEMENT}` in this folder); every file with its sha256: [{MANIFEST}]({MANIFEST}).", "")
    for title, body in lead_sections:
        w.add(f"## {title}", "", body, "")
    sections: list[Callable[[], None]] = [
        lambda: _data_and_methods(w, pred, metrics, run_record),
        lambda: _results(w, metrics),
        lambda: _comparisons(w, compared),
        lambda: _false_negatives(w, metrics, overlays,
                                 dict(zip(pred["id"], pred["path"], strict=True)) if "path" in pred else {}),
        lambda: _calibration(w, metrics),
        lambda: _per_plane(w, metrics),
    ]
    if training_logs:
        sections.append(lambda: _training(w, training_logs))
    for section in sections:
        section()
    for title, body in extra_sections or ():
        w.add(f"## {title}", "", body, "")
    if files is not None:
        files.write(w.files)
    markdown = "\n".join(w.lines)
    w.files.write_text("report.md", markdown)
    w.files.write_text(SUPPLEMENT, supplement(supplement_items(markdown, w.files.captions),
                                              title="Supplementary material: evaluation report"))
