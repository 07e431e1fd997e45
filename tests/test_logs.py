"""The log carries the project's messages, not third-party chatter such as PDF font subsetting."""

from __future__ import annotations

import logging

import pytest

from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.logs import THIRD_PARTY_LOGGERS, configure_logging, third_party_quiet
from hierarchy.metrics import simulate_predictions
from hierarchy.reports import build_report


def test_building_a_report_with_pdf_figures_logs_no_font_subsetting(tmp_path, caplog, monkeypatch):
    # Another test's configure_logging() may have set the level already; start from the library's default.
    monkeypatch.setattr(logging.getLogger("fontTools"), "level", logging.NOTSET)
    caplog.set_level(logging.INFO)
    build_report(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                                      seed=1), tmp_path / "out", n_bootstrap=5, seed=0)
    assert list((tmp_path / "out" / "figures").glob("*.pdf"))
    assert [r for r in caplog.records if r.name.split(".")[0] in THIRD_PARTY_LOGGERS] == []
    assert any(r.name.startswith("hierarchy.") for r in caplog.records)  # the project's own messages stay
    assert logging.getLogger("fontTools").level == logging.NOTSET  # restored after saving


def test_a_level_set_on_purpose_is_kept(caplog):
    fonts = logging.getLogger("fontTools")
    fonts.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.INFO), third_party_quiet():
            logging.getLogger("fontTools.subset").info("wanted")
        assert [r.getMessage() for r in caplog.records] == ["wanted"]
    finally:
        fonts.setLevel(logging.NOTSET)


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:], root.level = handlers, level
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_configure_logging_quiets_third_parties(restore_logging):
    logging.getLogger().handlers.clear()
    configure_logging(verbose=True)
    assert logging.getLogger().level == logging.DEBUG
    assert all(logging.getLogger(name).level == logging.WARNING for name in THIRD_PARTY_LOGGERS)
