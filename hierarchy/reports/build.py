"""``build_report``: metrics, figures, tables and a ``report.md`` for a prediction table.

Layout under ``out_dir``: ``report.md``, ``metrics.json`` (the ``evaluate_predictions`` dict),
``comparisons.json`` (``compare_routes`` results), ``figures/*.png|pdf``, ``tables/*.csv|tex|md``, and
``manifest.json``, the list of every file the report wrote. Overwriting a report removes exactly the
files its manifest lists; nothing else in the folder is deleted or written over.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from hierarchy.labels import PLANES
from hierarchy.metrics.evaluate import compare_routes, evaluate_predictions
from hierarchy.provenance import software_versions
from hierarchy.reports import figures, tables
from hierarchy.reports.style import save_figure

COMPARISONS: tuple[tuple[str, str], ...] = (("flat", "hierarchical"), ("flat", "soft"),
                                            ("flat", "ensemble"), ("hierarchical", "oracle"))
logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"
_MANIFEST_FORMAT = "hierarchy-report-manifest"
_FIXED_OUTPUTS = ("report.md", "metrics.json", "comparisons.json", MANIFEST)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"report folder {out_dir} is not empty; choose another folder or "
                              "pass overwrite=True (--overwrite)")


def _previous_outputs(out_dir: Path) -> list[Path]:
    """The files an earlier report in ``out_dir`` listed in its manifest (only those inside ``out_dir``)."""
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        return []
    try:
        record = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FileExistsError(f"{manifest} is not valid JSON ({err}); move it away or choose another "
                              "folder") from err
    if not isinstance(record, dict) or record.get("format") != _MANIFEST_FORMAT \
            or not isinstance(record.get("files"), list):
        raise FileExistsError(f"{manifest} is not a {_MANIFEST_FORMAT}; move it away or choose another folder")
    root = out_dir.resolve()
    inside = []
    for name in record["files"]:
        path = out_dir / str(name)
        if path.resolve().parent.is_relative_to(root) and not path.is_symlink():
            inside.append(path)
        else:
            logger.warning("%s lists %r, which is not a file inside %s; leaving it alone", manifest, name, out_dir)
    return [manifest, *inside]


def _clear_previous_report(out_dir: Path) -> None:
    """Remove the files an earlier report listed in its manifest (and only those), so no stale figure
    survives; folders are removed only when that leaves them empty. A file of a fixed output name that
    the manifest does not list raises ``FileExistsError`` before anything is removed."""
    previous = _previous_outputs(out_dir)
    _refuse_foreign([out_dir / name for name in _FIXED_OUTPUTS if out_dir / name not in previous])
    for path in previous:
        if path.is_file():
            path.unlink()
    for folder in (out_dir / "figures", out_dir / "tables"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _refuse_foreign(paths: Sequence[Path]) -> None:
    """Refuse to write over files this report did not write (a user's own file of the same name)."""
    existing = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} already exist(s) and no earlier report's {MANIFEST} "
                              "lists them; move them away or choose another folder")


class _Writer:
    """Collects the Markdown of the report while writing its figures and tables, and every file written."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.lines: list[str] = []
        self.written: list[Path] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def write_text(self, name: str, text: str) -> Path:
        path = self.out_dir / name
        _refuse_foreign([path])
        self.written.append(path)
        path.write_text(text)
        return path

    def table_files(self, frame: pd.DataFrame, stem: str, caption: str) -> list[Path]:
        folder = self.out_dir / "tables"
        _refuse_foreign([folder / f"{stem}.{ext}" for ext in ("csv", "tex", "md")])
        paths = tables.write_table(frame, folder, stem, caption=caption)
        self.written += paths
        return paths

    def figure(self, fig: Figure | None, stem: str, caption: str) -> None:
        if fig is None:
            return
        folder = self.out_dir / "figures"
        _refuse_foreign([folder / f"{stem}.{ext}" for ext in ("png", "pdf")])
        png, pdf = save_figure(fig, folder, stem)
        self.written += [png, pdf]
        rel = [p.relative_to(self.out_dir).as_posix() for p in (png, pdf)]
        self.add(f"![{caption}]({rel[0]})", "", f"*{caption}* ([PDF]({rel[1]}))", "")

    def table(self, frame: pd.DataFrame, stem: str, caption: str) -> None:
        if frame.empty:
            return
        csv, tex, md = self.table_files(frame, stem, caption)
        rel = [p.relative_to(self.out_dir).as_posix() for p in (csv, tex, md)]
        self.add(f"**{caption}** ([CSV]({rel[0]}), [LaTeX]({rel[1]}), [Markdown]({rel[2]}))", "",
                 md.read_text(), "")


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
              f"- seed: {run_record.get('seed', 'unknown')}", "")
        data = run_record.get("data") or {}
        if data:
            w.table(pd.DataFrame([{"subset": name, "n_images": d.get("n_images"),
                                   "sha256": d.get("sha256")} for name, d in data.items()]),
                    "data_subsets", "Data subsets (image count and fingerprint of each split)")
        w.add("### Configuration", "", "```json",
              json.dumps(run_record.get("config", {}), indent=2, sort_keys=True, default=str),
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
        w.add("- true planes: " + ", ".join(f"{p} {int(planes.get(p, 0))}" for p in PLANES))
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
    w.figure(figures.roc_figure(metrics), "roc", "One-vs-rest ROC curves; AUC [95% CI] in legend")
    w.figure(figures.pr_figure(metrics), "pr", "Precision-recall curves; average precision")
    w.figure(figures.confusion_figure(metrics), "confusion",
             "Confusion matrices: counts and row-normalised percentages (rows: truth)")


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
    w.add("## False-negative analysis", "",
          "A false negative is a tumour image predicted `no_tumor`. Tumour-class errors are split "
          "by whether the plane classifier sent the image to the right expert.", "")
    w.table(tables.false_negative_table(metrics), "false_negatives",
            "Tumour detection per route [95% Wilson CI]")
    w.table(tables.per_class_misses_table(metrics), "false_negatives_per_class",
            "Missed tumours per class [95% Wilson CI]")
    missed = tables.missed_tumours_table(metrics)
    if missed.empty:
        w.add("No tumour was missed.", "")
        return
    csv, tex, md = w.table_files(missed, "missed_tumours", "Every missed tumour")
    w.add(f"{len(missed)} missed tumours across routes are listed in "
          f"[missed_tumours.csv]({csv.relative_to(w.out_dir).as_posix()}) "
          f"([LaTeX]({tex.relative_to(w.out_dir).as_posix()}), "
          f"[Markdown]({md.relative_to(w.out_dir).as_posix()})).", "")
    # Image paths stay out of metrics and tables (they name the machine); the gallery looks them up.
    gallery = figures.missed_gallery_figure(missed.assign(path=missed["id"].map(paths)), overlays=overlays)
    if gallery is None:
        w.add("No image files are available for a gallery of missed tumours.", "")
    w.figure(gallery, "missed_gallery", "Missed tumours (true -> predicted, route)")


def _calibration(w: _Writer, metrics: dict) -> None:
    w.add("## Calibration", "")
    w.table(tables.calibration_table(metrics), "calibration", "Calibration per route")
    w.figure(figures.reliability_figure(metrics), "reliability", "Reliability diagrams (top label)")
    coverage = tables.coverage_table(metrics)
    if not coverage.empty:
        w.add("### Referral (abstention)", "")
        w.table(coverage, "coverage", "Coverage and accuracy with referral [95% Wilson CI]")
        w.figure(figures.coverage_figure(metrics), "coverage",
                 "Accuracy against coverage; dots mark each route's operating point")


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
                 overlays: Mapping[str, str | Path] | None = None, n_bootstrap: int = 1000,
                 seed: int = 0, comparisons: Sequence[tuple[str, str]] = COMPARISONS,
                 metrics: dict | None = None, compared: list[dict] | None = None,
                 overwrite: bool = False) -> Path:
    """Evaluate ``pred`` and write the full report under ``out_dir``; returns ``report.md``'s path.

    ``training_logs`` maps a model name to its ``log.csv``; ``overlays`` maps an image id to an
    explanation image shown beside missed tumours; ``extra_sections`` are (title, Markdown) pairs
    appended at the end. Only ``comparisons`` whose two routes are present are run. A non-empty
    ``out_dir`` raises ``FileExistsError`` unless ``overwrite``; with ``overwrite`` the files listed in
    an earlier report's ``manifest.json`` are replaced, and any other file of the same name as an output
    raises ``FileExistsError`` instead of being written over. ``metrics`` and ``compared`` take
    results already computed by ``evaluate_predictions`` / ``compare_routes`` on ``pred``, so a caller
    that needs them too does not bootstrap twice.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    logger.info("evaluating %d prediction rows with %d bootstrap resamples (minutes for large "
                "test sets; lower n_bootstrap for a quick look)", len(pred), n_bootstrap)
    if metrics is None:
        metrics = evaluate_predictions(pred, n_bootstrap=n_bootstrap, seed=seed)
    if compared is None:
        compared = [compare_routes(pred, a, b, n_bootstrap=n_bootstrap, seed=seed)
                    for a, b in comparisons if a in metrics["routes"] and b in metrics["routes"]]
    _clear_previous_report(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    w = _Writer(out_dir)
    try:
        _write_report(w, pred, metrics, compared, run_record, training_logs, extra_sections, overlays)
    finally:  # also after a failure, so that a later overwrite removes what was written
        (out_dir / MANIFEST).write_text(json.dumps({
            "format": _MANIFEST_FORMAT,
            "files": [p.relative_to(out_dir).as_posix() for p in w.written]}, indent=1))
    return out_dir / "report.md"


def _write_report(w: _Writer, pred: pd.DataFrame, metrics: dict, compared: list[dict],
                  run_record: Mapping | None, training_logs: Mapping[str, str | Path] | None,
                  extra_sections: Sequence[tuple[str, str]] | None,
                  overlays: Mapping[str, str | Path] | None) -> None:
    w.write_text("metrics.json", json.dumps(metrics, indent=1, allow_nan=False))
    w.write_text("comparisons.json", json.dumps(compared, indent=1, allow_nan=False))
    w.add("# Evaluation report", "",
          "Machine-readable numbers: [metrics.json](metrics.json), "
          "[comparisons.json](comparisons.json).", "")
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
    w.write_text("report.md", "\n".join(w.lines))
