"""The reporting checklist: every CLAIM and TRIPOD+AI item once, each answered by a section the report has or
marked not applicable / not done with a reason; written as checklist.md and a table."""

from __future__ import annotations

import pandas as pd

from hierarchy.experiment.checklist import (
    BUILT_SECTIONS,
    CHECKLIST_FILE,
    ITEMS,
    TITLE,
    checklist_table,
    reporting_checklist,
)
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import simulate_predictions
from hierarchy.reports import build_report
from hierarchy.reports.writer import ReportFiles

SECTION_TITLES = sorted({title for *_, answer in ITEMS if not isinstance(answer, tuple)
                         for title in ([answer] if isinstance(answer, str) else answer)})


def test_every_item_once_in_order():
    table = checklist_table(SECTION_TITLES)
    assert not table.duplicated(["guideline", "item"]).any()
    assert table.loc[table["guideline"] == "CLAIM", "item"].tolist() == [str(i) for i in range(1, 43)]
    assert table.loc[table["guideline"] == "TRIPOD+AI", "item"].tolist() == [str(i) for i in range(1, 28)]
    assert set(table["status"]) == {"answered", "not applicable", "not done"}
    assert table["where"].str.len().gt(10).all()  # every item says where, or why not


def test_a_missing_section_turns_its_items_into_not_done():
    table = checklist_table([t for t in SECTION_TITLES if t != "Dataset audit"]).set_index(["guideline", "item"])
    assert table.loc[("CLAIM", "8"), "status"] == "not done"
    assert table.loc[("CLAIM", "8"), "where"] == "its section 'Dataset audit' is not in this report"
    assert checklist_table(SECTION_TITLES).set_index(["guideline", "item"]).loc[("CLAIM", "8"), "status"] == \
        "answered"


def test_an_item_with_alternative_sections_takes_the_first_the_report_has():
    with_endpoint = checklist_table(SECTION_TITLES).set_index(["guideline", "item"])
    assert with_endpoint.loc[("CLAIM", "4"), "where"] == "section 'Primary endpoint (declared)'"
    without = checklist_table([t for t in SECTION_TITLES if t != "Primary endpoint (declared)"])
    assert without.set_index(["guideline", "item"]).loc[("CLAIM", "4"), "where"] == "section 'Targets'"
    neither = checklist_table([t for t in SECTION_TITLES if t not in ("Seeds", "Cross-validation and variance "
                                                                               "across models")])
    assert neither.set_index(["guideline", "item"]).loc[("CLAIM", "27"), "status"] == "not done"


def test_checklist_file_table_summary_and_comparators(tmp_path):
    files = ReportFiles()
    text, counts = reporting_checklist(SECTION_TITLES, files)
    assert f"[{CHECKLIST_FILE}]({CHECKLIST_FILE})" in text and "arXiv:2506.14318" in text
    assert sum(counts["CLAIM"].values()) == 42 and sum(counts["TRIPOD+AI"].values()) == 27
    files.write(tmp_path)
    written = (tmp_path / CHECKLIST_FILE).read_text()
    assert written.count("\n| ") == 42 + 27 + 2  # two header rows, one row per item
    assert "## Published comparators" in written and "quotes no published accuracy" in written
    assert len(pd.read_csv(tmp_path / "tables/checklist.csv")) == 69


def test_built_sections_are_headings_of_every_report(tmp_path):
    report = build_report(simulate_predictions(24, classes=TUMOR_CLASSES, planes=PLANES,
                                               seed=0), tmp_path / "r", n_bootstrap=5)
    headings = {line[3:] for line in report.read_text().splitlines() if line.startswith("## ")}
    assert set(BUILT_SECTIONS) <= headings and TITLE not in BUILT_SECTIONS
