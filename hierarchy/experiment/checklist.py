"""The reporting checklist a run writes beside its report: every CLAIM and TRIPOD+AI item with the section of
``report.md`` that answers it, or "not applicable" / "not done" with the reason.

Items are paraphrased topics, not the guidelines' wording. CLAIM numbers follow the 42-item list of Mongan et
al. 2020 (Radiol Artif Intell 2:e200029); the 2024 update (Tejani et al. 2024, Radiol Artif Intell 6:e240300)
rewords and extends it, so check the numbers against the official 2024 form before submitting. TRIPOD+AI
numbers follow Collins et al. 2024 (BMJ 385:e078378), main items only (sub-items a, b ... are folded in).

An item answered by a section is checked against the report's section titles: if that section is missing
from the report, the item is "not done" and says so, so the checklist never points at nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from hierarchy.experiment.clinical import CLINICAL_TITLE
from hierarchy.experiment.endpoint_report import FAMILY_TITLE, MODELS_TITLE, PRIMARY_TITLE
from hierarchy.experiment.explanations import SECTION_TITLE as EXPLANATIONS_TITLE
from hierarchy.experiment.generalisation_report import (
    CONFUSION_TITLE,
    REFERRAL_TITLE,
    SECONDARY_TITLE,
)
from hierarchy.experiment.label_quality import TITLE as DATA_TITLE
from hierarchy.reports.writer import ReportFiles

TITLE = "Reporting checklist"
CHECKLIST_FILE = "checklist.md"
GUIDELINES = {
    "CLAIM": "Checklist for Artificial Intelligence in Medical Imaging (Mongan et al. 2020; 2024 update: Tejani et "
             "al. 2024, Radiol Artif Intell 6:e240300)",
    "TRIPOD+AI": "TRIPOD+AI (Collins et al. 2024, BMJ 385:e078378)",
}
# Sections build_report writes into every report (the experiment adds its own after them).
BUILT_SECTIONS = ("Data and methods", "Results", "Route comparisons", "False-negative analysis", "Calibration",
                  "Per-plane results")
PUBLISHED_COMPARATORS = (
    ("BRISC 2025", "Fateh et al. 2025, BRISC: Annotated Dataset for Brain Tumor Segmentation and Classification, "
                   "arXiv:2506.14318", "the dataset, its official train/test split and its reference standard"),
)
MANUSCRIPT = "manuscript item: the authors write it; a run cannot"

# (guideline, item, topic, answer): the answer is the section answering the item, or a list of sections (the
# first one the report has answers it), or ("not applicable" | "not done", why), or ("here", the answer itself)
Answer = str | list[str] | tuple[str, str]
ITEMS: tuple[tuple[str, str, str, Answer], ...] = (
    ("CLAIM", "1", "title names the AI method", ("not done", MANUSCRIPT)),
    ("CLAIM", "2", "structured abstract", ("not done", MANUSCRIPT + "; its numbers are in summary.json")),
    ("CLAIM", "3", "background, intended use and clinical role", ("not done", MANUSCRIPT)),
    ("CLAIM", "4", "objectives and hypotheses", [PRIMARY_TITLE, "Targets"]),
    ("CLAIM", "5", "prospective or retrospective", ("here", "retrospective: public images acquired before the "
                                                     "study")),
    ("CLAIM", "6", "study goal", ("here", "model development and comparison (flat vs hierarchical), "
                                  "exploratory; no clinical trial")),
    ("CLAIM", "7", "data sources", DATA_TITLE),
    ("CLAIM", "8", "eligibility criteria", "Dataset audit"),
    ("CLAIM", "9", "data pre-processing", "Data and methods"),
    ("CLAIM", "10", "selection of data subsets", "Test images unseen in training"),
    ("CLAIM", "11", "definitions of data elements", ("not applicable", "the only data elements are the datasets' "
                                                     "four classes and three planes; no common data element "
                                                     "defines them")),
    ("CLAIM", "12", "de-identification", ("not applicable", "public releases, de-identified by their publishers; "
                                          "the report keeps no image paths")),
    ("CLAIM", "13", "missing data", "Dataset audit"),
    ("CLAIM", "14", "reference standard defined", DATA_TITLE),
    ("CLAIM", "15", "rationale for the reference standard", DATA_TITLE),
    ("CLAIM", "16", "source and qualifications of annotators", DATA_TITLE),
    ("CLAIM", "17", "annotation tools", ("not done", "the datasets do not describe their annotation tools")),
    ("CLAIM", "18", "inter- and intra-rater variability", DATA_TITLE),
    ("CLAIM", "19", "intended sample size", ("not done", "no sample-size calculation: the datasets' fixed sizes "
                                             "were used; interval widths show the precision reached")),
    ("CLAIM", "20", "assignment to partitions", "Data and methods"),
    ("CLAIM", "21", "level at which partitions are disjoint", "Test images unseen in training"),
    ("CLAIM", "22", "model description", "Starting weights"),
    ("CLAIM", "23", "software", "Data and methods"),
    ("CLAIM", "24", "initialisation of parameters", "Starting weights"),
    ("CLAIM", "25", "training details", "Data and methods"),
    ("CLAIM", "26", "selection of the final model", "Data and methods"),
    ("CLAIM", "27", "ensembling", ["Seeds", MODELS_TITLE]),
    ("CLAIM", "28", "performance metrics", "Results"),
    ("CLAIM", "29", "statistical significance and uncertainty", [FAMILY_TITLE, "Route comparisons"]),
    ("CLAIM", "30", "robustness or sensitivity analysis", "Robustness to re-encoding"),
    ("CLAIM", "31", "explainability and its validation", EXPLANATIONS_TITLE),
    ("CLAIM", "32", "testing on external data", SECONDARY_TITLE),
    ("CLAIM", "33", "flow of cases (inclusion, exclusion)", "Test images unseen in training"),
    ("CLAIM", "34", "demographic and clinical characteristics", ("not done", "the datasets carry no demographic or "
                                                                 "clinical data; class, plane and archive make-up "
                                                                 f"are in {DATA_TITLE}")),
    ("CLAIM", "35", "performance on all partitions", "Generalisation at a glance"),
    ("CLAIM", "36", "diagnostic accuracy with its precision", CLINICAL_TITLE),
    ("CLAIM", "37", "failure analysis", "False-negative analysis"),
    ("CLAIM", "38", "limitations, bias, generalisability", ("not done", MANUSCRIPT + f"; see {DATA_TITLE} and "
                                                            "Shortcut check: metadata alone")),
    ("CLAIM", "39", "implications for practice", ("not done", MANUSCRIPT)),
    ("CLAIM", "40", "registration", ("not done", "no registration is recorded for this run")),
    ("CLAIM", "41", "protocol, code and data access", "How to reproduce"),
    ("CLAIM", "42", "funding", ("not done", MANUSCRIPT)),
    ("TRIPOD+AI", "1", "title", ("not done", MANUSCRIPT)),
    ("TRIPOD+AI", "2", "abstract", ("not done", MANUSCRIPT)),
    ("TRIPOD+AI", "3", "background, healthcare context, existing models", ("not done", MANUSCRIPT + "; published "
                                                                           "comparators are cited below")),
    ("TRIPOD+AI", "4", "objectives", [PRIMARY_TITLE, "Targets"]),
    ("TRIPOD+AI", "5", "source of data", DATA_TITLE),
    ("TRIPOD+AI", "6", "participants and setting", DATA_TITLE),
    ("TRIPOD+AI", "7", "data preparation", "Data and methods"),
    ("TRIPOD+AI", "8", "outcome and how it was assessed", DATA_TITLE),
    ("TRIPOD+AI", "9", "predictors (the image input)", "Data and methods"),
    ("TRIPOD+AI", "10", "sample size", ("not done", "no sample-size calculation: the datasets' fixed sizes were "
                                        "used")),
    ("TRIPOD+AI", "11", "missing data", "Dataset audit"),
    ("TRIPOD+AI", "12", "analytical methods", "Data and methods"),
    ("TRIPOD+AI", "13", "class imbalance", "Results"),
    ("TRIPOD+AI", "14", "fairness", ("not done", "no demographic, site or scanner attribute is recorded to compare "
                                     "groups")),
    ("TRIPOD+AI", "15", "model output and decision thresholds", CLINICAL_TITLE),
    ("TRIPOD+AI", "16", "differences between development and evaluation data", SECONDARY_TITLE),
    ("TRIPOD+AI", "17", "ethical approval", ("not done", MANUSCRIPT + "; the data are public and de-identified")),
    ("TRIPOD+AI", "18", "open science: code, data, protocol, funding", "How to reproduce"),
    ("TRIPOD+AI", "19", "patient and public involvement", ("not done", "none in this study")),
    ("TRIPOD+AI", "20", "participants: flow and characteristics", DATA_TITLE),
    ("TRIPOD+AI", "21", "model development: numbers in each analysis", "Data and methods"),
    ("TRIPOD+AI", "22", "model specification", "Starting weights"),
    ("TRIPOD+AI", "23", "model performance with intervals, and per subgroup", "Per-plane results"),
    ("TRIPOD+AI", "24", "model updating", ("not applicable", "no model was updated after its evaluation")),
    ("TRIPOD+AI", "25", "interpretation", ("not done", MANUSCRIPT)),
    ("TRIPOD+AI", "26", "limitations", ("not done", MANUSCRIPT + f"; see {DATA_TITLE}")),
    ("TRIPOD+AI", "27", "usability and implications", ("not done", MANUSCRIPT + f"; see {CONFUSION_TITLE} and "
                                                       f"{REFERRAL_TITLE}")),
)


def checklist_table(titles: Sequence[str]) -> pd.DataFrame:
    """One row per item of ``ITEMS``: guideline, item, topic, status (answered / not applicable / not done) and
    where it is answered or why not; ``titles`` are the report's section titles."""
    present = set(titles)
    rows = []
    for guideline, item, topic, answer in ITEMS:
        if isinstance(answer, (str, list)):
            sections = [answer] if isinstance(answer, str) else answer
            found = next((title for title in sections if title in present), None)
            status, where = (("answered", f"section '{found}'") if found else
                             ("not done", f"its section '{sections[0]}' is not in this report"))
        else:
            kind, why = answer
            status, where = ("answered", f"here: {why}") if kind == "here" else (kind, why)
        rows.append({"guideline": guideline, "item": item, "topic": topic, "status": status, "where": where})
    return pd.DataFrame(rows)


def _comparators() -> str:
    return "\n".join(f"- {name}: {citation} ({what})." for name, citation, what in PUBLISHED_COMPARATORS) + (
        "\n\nThis report quotes no published accuracy. A published number set beside these results must be "
        "copied from the cited paper with its table or page, and compared only on the same split.")


def checklist_markdown(table: pd.DataFrame) -> str:
    """``checklist.md``: the guidelines named, every item's status and place, and the published comparators."""
    parts = ["# Reporting checklist", "",
             *(f"- {name}: {full}" for name, full in GUIDELINES.items()), "",
             "Topics are paraphrased; CLAIM numbers follow the 42-item 2020 list, so check them against the official "
             "2024 form before submitting. Sections are those of [report.md](report.md).", ""]
    for guideline, rows in table.groupby("guideline", sort=False):
        parts += [f"## {guideline}", "", "| item | topic | status | where / why |", "|---|---|---|---|"]
        parts += [f"| {r.item} | {r.topic} | {r.status} | {r.where} |" for r in rows.itertuples()]
        parts.append("")
    return "\n".join([*parts, "## Published comparators", "", _comparators(), ""])


def reporting_checklist(titles: Sequence[str], files: ReportFiles) -> tuple[str, dict[str, dict[str, int]]]:
    """The report's checklist section and the ``summary.json`` block ``checklist`` (item counts per guideline and
    status); ``checklist.md`` and ``tables/checklist.*`` go to ``files``. ``titles`` are the experiment's section
    titles (those of build_report and this section's own are added)."""
    table = checklist_table([*BUILT_SECTIONS, *titles, TITLE])
    files.text(CHECKLIST_FILE, checklist_markdown(table))
    counts = {g: rows["status"].value_counts().to_dict() for g, rows in table.groupby("guideline", sort=False)}
    tally = "; ".join(f"{g}: " + ", ".join(f"{n} {s}" for s, n in by_status.items()) for g, by_status in counts.items())
    return "\n\n".join([
        f"Every CLAIM and TRIPOD+AI item, with the section answering it or why it is not applicable or not done: "
        f"[{CHECKLIST_FILE}]({CHECKLIST_FILE}) ({tally}).",
        files.table(table, "checklist", "CLAIM and TRIPOD+AI reporting checklist", embed=False),
        "Published comparators:\n\n" + _comparators(),
    ]), counts
