import pandas as pd
import pytest

from hierarchy.reports.figures import missed_gallery_figure, read_training_log
from hierarchy.reports.style import grid, save_figure, styled
from hierarchy.reports.tables import display_frame, markdown_table, to_markdown, write_table


def test_display_frame_joins_confidence_intervals():
    frame = pd.DataFrame({"route": ["flat"], "acc": [0.91234], "acc_ci_low": [0.9],
                          "acc_ci_high": [0.93], "n": [10], "missing": [None]})
    shown = display_frame(frame)
    assert list(shown.columns) == ["route", "acc", "n", "missing"]
    assert shown.loc[0].tolist() == ["flat", "0.912 [0.900, 0.930]", "10", ""]


def test_markdown_escapes_pipes():
    text = to_markdown(pd.DataFrame({"a|b": ["x|y"], "c": [1.5]}))
    assert text.splitlines() == ["| a\\|b | c |", "| --- | --- |", "| x\\|y | 1.500 |"]


def test_markdown_table_from_rows():
    text = markdown_table(["route", "accuracy"], [["flat", 0.9], ["soft", None]])
    assert text == "| route | accuracy |\n| --- | --- |\n| flat | 0.900 |\n| soft |  |\n"
    with pytest.raises(ValueError, match="2 columns"):
        markdown_table(["a", "b"], [["only one"]])


def test_write_table_writes_three_formats(tmp_path):
    paths = write_table(pd.DataFrame({"class": ["no_tumor"], "f1": [0.5]}), tmp_path, "t",
                        caption="Caption")
    assert [p.suffix for p in paths] == [".csv", ".tex", ".md"]
    tex = paths[1].read_text()
    assert "no\\_tumor" in tex and "\\caption{Caption}" in tex and "\\bottomrule" in tex


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig, (ax,) = styled(grid)(1, width=3.5)
    ax.plot([0, 1], [0, 1])
    png, pdf = save_figure(fig, tmp_path / "figs", "line")
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"


def test_training_log_needs_its_columns(tmp_path):
    log = tmp_path / "log.csv"
    pd.DataFrame({"epoch": [1], "train_loss": [1.0]}).to_csv(log, index=False)
    with pytest.raises(ValueError, match="val_accuracy"):
        read_training_log(log)


def test_gallery_skips_absent_images():
    missed = pd.DataFrame({"id": ["a"], "true_label": ["glioma"], "pred_label": ["no_tumor"],
                           "path": ["/nonexistent/a.png"]})
    assert missed_gallery_figure(missed) is None
    assert missed_gallery_figure(missed.drop(columns="path")) is None
