"""Dataset audit: counts, exact and near duplicates (within and across splits), label conflicts
among duplicates, metadata confounders, unreadable files."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency
from scipy.stats.contingency import association
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import StratifiedGroupKFold, cross_validate
from sklearn.tree import DecisionTreeClassifier

from hierarchy.data.index import index_dataset
from hierarchy.data.splits import duplicate_groups, with_phash
from hierarchy.fileio import atomic_write_text, write_json

_TARGETS = ("label", "plane")
_LISTED_NEAR_GROUPS = 50  # near-duplicate groups listed in the Markdown (all are in the JSON)


@dataclass
class AuditReport:
    """Findings of :func:`audit`; ``to_dict()`` is the JSON form, ``to_markdown()`` the summary."""

    n_images: int
    root: str | None
    layout: str | None
    counts: list[dict[str, Any]]
    exact_duplicates: list[dict[str, Any]]
    near_duplicates: list[dict[str, Any]] | None  # None when near-duplicates were not searched
    confounders: list[dict[str, Any]]
    metadata_classifier: list[dict[str, Any]]
    rgb_fraction_by_class: dict[str, float]
    unreadable: list[dict[str, str]] = field(default_factory=list)
    max_hamming: int = 4

    def summary(self) -> dict[str, Any]:
        """The headline counts."""
        exact = self.exact_duplicates
        near = self.near_duplicates or []
        return {
            "n_images": self.n_images,
            "exact_duplicate_groups": len(exact),
            "exact_duplicate_files": sum(len(g["ids"]) for g in exact),
            "cross_split_duplicate_groups": sum(g["cross_split"] for g in exact),
            "plane_conflict_groups": sum(g["plane_conflict"] for g in exact),
            "label_conflict_groups": sum(g["label_conflict"] for g in exact),
            "near_duplicate_groups": None if self.near_duplicates is None else len(near),
            "near_duplicate_files": None if self.near_duplicates is None else sum(len(g["ids"]) for g in near),
            "near_cross_split_groups": None if self.near_duplicates is None else sum(g["cross_split"] for g in near),
            "near_plane_conflict_groups": None if self.near_duplicates is None
            else sum(g["plane_conflict"] for g in near),
            "near_label_conflict_groups": None if self.near_duplicates is None
            else sum(g["label_conflict"] for g in near),
            "n_unreadable": len(self.unreadable),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: headline counts plus every detail list."""
        return {**self.summary(), **asdict(self)}

    def to_markdown(self) -> str:
        """Human-readable findings, most important first."""
        return _markdown(self)

    def write(self, out_dir: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
        """Write ``audit.md`` and ``audit.json`` into ``out_dir``; refuses to replace them unless asked."""
        out_dir = Path(out_dir)
        md_path, json_path = out_dir / "audit.md", out_dir / "audit.json"
        existing = [str(p) for p in (md_path, json_path) if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"{', '.join(existing)} already exist; pass overwrite=True (--overwrite)")
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(md_path, self.to_markdown())
        write_json(json_path, self.to_dict())
        return md_path, json_path


def _distinct(values: pd.Series) -> list[str]:
    return sorted({str(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))})


def _describe_group(rows: pd.DataFrame) -> dict[str, Any]:
    planes, labels, splits = _distinct(rows["plane"]), _distinct(rows["label"]), _distinct(rows["split"])
    return {
        "ids": rows["id"].tolist(),
        "labels": rows["label"].tolist(),
        "planes": rows["plane"].tolist(),
        "splits": rows["split"].tolist(),
        "cross_split": len(splits) > 1,
        "plane_conflict": len(planes) > 1,
        "label_conflict": len(labels) > 1,
    }


def _exact_groups(frame: pd.DataFrame) -> list[dict[str, Any]]:
    dup = frame[frame.duplicated("sha256", keep=False)]
    return [{"sha256": sha, **_describe_group(rows)} for sha, rows in dup.groupby("sha256", sort=False)]


def _near_groups(frame: pd.DataFrame, max_hamming: int) -> list[dict[str, Any]]:
    """Perceptual-hash groups that hold more than one distinct file (pure byte copies are exact)."""
    groups = duplicate_groups(frame, near=True, max_hamming=max_hamming)
    found = []
    for _, rows in frame.groupby(groups.to_numpy(), sort=True):
        if rows["sha256"].nunique() > 1:
            found.append(_describe_group(rows))
    return found


def _metadata(frame: pd.DataFrame) -> pd.DataFrame:
    aspect = frame["width"] / frame["height"]
    return pd.DataFrame({
        "mode": frame["mode"].astype(str),
        "image_size": frame["width"].astype(str) + "x" + frame["height"].astype(str),
        "orientation": np.select([aspect > 1, aspect < 1], ["landscape", "portrait"], "square"),
        "file_size": pd.qcut(frame["file_size"], 4, duplicates="drop").astype(str),
    }, index=frame.index)


def _association(target: pd.Series, feature: pd.Series) -> dict[str, Any]:
    table = pd.crosstab(target, feature)
    if min(table.shape) < 2:
        return {"chi2_p": None, "cramers_v": 0.0, "levels": int(table.shape[1])}
    p_value = float(chi2_contingency(table.to_numpy())[1])
    return {"chi2_p": p_value, "cramers_v": float(association(table.to_numpy(), method="cramer")),
            "levels": int(table.shape[1])}


def _confounders(frame: pd.DataFrame) -> list[dict[str, Any]]:
    meta = _metadata(frame)
    found = []
    for target in _TARGETS:
        known = frame[target].notna()
        if frame.loc[known, target].nunique() < 2:
            continue
        for feature in meta.columns:
            found.append({"target": target, "feature": feature,
                          **_association(frame.loc[known, target], meta.loc[known, feature])})
    return found


def _metadata_classifier(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Cross-validated accuracy of a depth-5 decision tree that sees only file metadata, against
    the majority-class baseline; folds keep byte-identical files together."""
    features = pd.get_dummies(frame["mode"].astype(str), prefix="mode", dtype=float)
    features = features.assign(width=frame["width"], height=frame["height"],
                               aspect=frame["width"] / frame["height"], file_size=frame["file_size"])
    results = []
    for target in _TARGETS:
        known = frame[target].notna().to_numpy()
        y = frame.loc[known, target].astype(str).to_numpy()
        n_splits = min(5, int(pd.Series(y).value_counts().min()) if len(y) else 0)
        if len(set(y)) < 2 or n_splits < 2:
            continue
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=0)
        groups = pd.factorize(frame.loc[known, "sha256"])[0]
        scores = {}
        for name, model in (("tree", DecisionTreeClassifier(max_depth=5, random_state=0)),
                            ("majority", DummyClassifier(strategy="most_frequent"))):
            cv_result = cross_validate(model, features[known].to_numpy(), y, groups=groups, cv=cv,
                                       scoring=("accuracy", "balanced_accuracy"))
            scores[name] = {k: float(np.mean(cv_result[f"test_{k}"])) for k in ("accuracy", "balanced_accuracy")}
        results.append({"target": target, "features": list(features.columns), "folds": n_splits,
                        "accuracy": scores["tree"]["accuracy"],
                        "balanced_accuracy": scores["tree"]["balanced_accuracy"],
                        "majority_accuracy": scores["majority"]["accuracy"],
                        "majority_balanced_accuracy": scores["majority"]["balanced_accuracy"]})
    return results


def _counts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    keys = frame[["split", "label", "plane"]].astype(object).where(frame[["split", "label", "plane"]].notna(), None)
    table = keys.assign(n=1).groupby(["split", "label", "plane"], dropna=False)["n"].sum().reset_index()
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            | {"n": int(row["n"])} for row in table.to_dict("records")]


def audit(root_or_frame: str | Path | pd.DataFrame, *, layout: str = "auto", near: bool = True,
          max_hamming: int = 4, progress: bool | None = None) -> AuditReport:
    """Audit a dataset folder (indexed with ``skip_bad=True``) or an already-built index frame.

    Files that cannot be read, or whose pixel data cannot be decoded for the perceptual hash, are
    left out and listed in ``unreadable``; they never stop the audit.
    """
    if isinstance(root_or_frame, pd.DataFrame):
        frame, root = root_or_frame, root_or_frame.attrs.get("root")
    else:
        frame, root = index_dataset(root_or_frame, layout, skip_bad=True), str(root_or_frame)
    if near:
        frame = with_phash(frame, progress=progress, skip_bad=True)
    rgb = frame["mode"].eq("RGB").groupby(frame["label"]).mean()
    return AuditReport(
        n_images=int(len(frame)),
        root=None if root is None else str(root),
        layout=str(frame["layout"].iloc[0]) if len(frame) else None,
        counts=_counts(frame),
        exact_duplicates=_exact_groups(frame),
        near_duplicates=_near_groups(frame, max_hamming) if near else None,
        confounders=_confounders(frame),
        metadata_classifier=_metadata_classifier(frame),
        rgb_fraction_by_class={str(k): float(v) for k, v in rgb.items()},
        unreadable=list(frame.attrs.get("skipped", [])),
        max_hamming=max_hamming,
    )


def _group_line(group: dict[str, Any]) -> str:
    flags = [name for name in ("cross_split", "plane_conflict", "label_conflict") if group[name]]
    members = "; ".join(f"`{i}` ({lab}, {pl}, {sp})" for i, lab, pl, sp in
                        zip(group["ids"], group["labels"], group["planes"], group["splits"], strict=True))
    return f"- {' '.join(f'**{f}**' for f in flags)} {members}".replace("-  ", "- ")


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def _table_lines(pivot: pd.DataFrame) -> list[str]:
    header = [*pivot.index.names, *map(str, pivot.columns)]
    rows = [[*map(str, key), *map(str, values)] for key, values in zip(pivot.index, pivot.to_numpy(), strict=True)]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(row) + " |" for row in rows]


def _markdown(report: AuditReport) -> str:
    s = report.summary()
    lines = [f"# Dataset audit: {report.root or 'index'}", "",
             f"{report.n_images} images (layout {report.layout}); {s['n_unreadable']} unreadable.", "",
             "## Findings", "",
             f"- Exact duplicates (same bytes): {s['exact_duplicate_groups']} groups covering "
             f"{s['exact_duplicate_files']} files; {s['cross_split_duplicate_groups']} groups cross splits; "
             f"{s['plane_conflict_groups']} carry conflicting plane labels; "
             f"{s['label_conflict_groups']} carry conflicting class labels."]
    if report.near_duplicates is None:
        lines.append("- Near duplicates: not searched (--no-near).")
    else:
        lines.append(f"- Near duplicates (perceptual hash within {report.max_hamming} bits, more than one "
                     f"distinct file): {s['near_duplicate_groups']} groups covering {s['near_duplicate_files']} "
                     f"files; {s['near_cross_split_groups']} cross splits; {s['near_plane_conflict_groups']} "
                     f"conflicting planes; {s['near_label_conflict_groups']} conflicting classes.")
    for result in report.metadata_classifier:
        lines.append(f"- A metadata-only decision tree predicts **{result['target']}** with accuracy "
                     f"{result['accuracy']:.3f} (balanced {result['balanced_accuracy']:.3f}) vs majority "
                     f"baseline {result['majority_accuracy']:.3f} (balanced "
                     f"{result['majority_balanced_accuracy']:.3f}), {result['folds']}-fold CV.")
    rgb = ", ".join(f"{k} {v:.0%}" for k, v in report.rgb_fraction_by_class.items())
    lines += [f"- Share of files stored as RGB, by class: {rgb}.", "", "## Metadata confounders", "",
              "| target | feature | levels | chi-square p | Cramér's V |", "|---|---|---|---|---|"]
    lines += [f"| {c['target']} | {c['feature']} | {c['levels']} | {_p(c['chi2_p'])} | {c['cramers_v']:.3f} |"
              for c in report.confounders]
    counts = pd.DataFrame(report.counts).fillna("none")
    pivot = counts.pivot_table(index=["split", "label"], columns="plane", values="n", aggfunc="sum",
                               fill_value=0)
    lines += ["", "## Counts (split x class x plane)", "", *_table_lines(pivot)]
    lines += ["", "## Exact-duplicate groups", ""] + [_group_line(g) for g in report.exact_duplicates]
    if report.near_duplicates:
        flagged = sorted(report.near_duplicates, key=lambda g: -(g["cross_split"] + g["plane_conflict"]
                                                                 + g["label_conflict"]))
        lines += ["", f"## Near-duplicate groups (first {_LISTED_NEAR_GROUPS}, flagged first; all in audit.json)",
                  ""] + [_group_line(g) for g in flagged[:_LISTED_NEAR_GROUPS]]
    if report.unreadable:
        lines += ["", "## Unreadable files", ""] + [f"- `{u['path']}`: {u['reason']}" for u in report.unreadable]
    return "\n".join(lines) + "\n"
