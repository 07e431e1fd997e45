import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hierarchy.fileio import sha256_file
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import simulate_predictions
from hierarchy.reports import build_report, figures
from hierarchy.reports.writer import unresolved_links

FIGURES = ("figures/roc", "figures/pr", "figures/confusion", "figures/reliability", "figures/coverage",
           "figures/plane_confusion", "gallery/missed_gallery", "figures/training_flat")
TABLES = ("headline", "per_class", "comparisons", "false_negatives", "false_negatives_per_class",
          "missed_tumours", "calibration", "coverage", "per_plane", "plane_classifier",
          "data_subsets", "software_run", "software_report")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    pred = simulate_predictions(60, classes=TUMOR_CLASSES, planes=PLANES, skill=1.5, refer_below=0.5, seed=2)
    image = root / "scan.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype("uint8")).save(image)
    pred["path"] = str(image)
    pred.loc[pred.index[::2], "path"] = str(root / "absent.png")  # half the images are missing
    log = root / "log.csv"
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.2, 0.8, 0.5], "train_accuracy": [0.5, 0.7, 0.8],
                  "val_loss": [1.3, 0.9, 0.7], "val_accuracy": [0.4, 0.6, 0.7]}).to_csv(log, index=False)
    record = {"created": "2026-01-01T00:00:00+00:00", "git_commit": "abc123", "seed": 7,
              "config": {"model": "resnet18", "epochs": 3},
              "versions": {"python": "3.11", "torch": "2.x"},
              "data": {"train": {"n_images": 100, "sha256": "f" * 64},
                       "test": {"n_images": 60, "sha256": "e" * 64}}}
    out = root / "out"
    path = build_report(pred, out, run_record=record, training_logs={"flat": log},
                        extra_sections=[("Limitations", "Synthetic predictions only.")],
                        n_bootstrap=20, seed=0)
    return out, path, pred


def test_every_figure_and_table_is_written_and_non_empty(report):
    out, path, _ = report
    assert path == out / "report.md"
    for stem in FIGURES:
        for ext in ("png", "pdf"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000, stem
    for stem in TABLES:
        for ext in ("csv", "tex", "md"):
            assert (out / "tables" / f"{stem}.{ext}").stat().st_size > 0, stem
    assert "\\toprule" in (out / "tables" / "headline.tex").read_text()
    assert len(pd.read_csv(out / "tables" / "headline.csv")) == 5


def test_report_links_every_file_and_states_methods(report):
    out, path, _ = report
    text = path.read_text()
    for file in [*(out / "figures").iterdir(), *(out / "tables").iterdir(), *(out / "gallery").iterdir()]:
        assert file.relative_to(out).as_posix() in text, file.name
    for needle in ("abc123", "f" * 64, "resnet18", "stratified by true class", "McNemar",
                   "## Limitations", "Synthetic predictions only.", "## Per-plane results"):
        assert needle in text


def test_metrics_json_and_comparisons(report):
    out, _, pred = report
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["routes"]) == ["flat", "hierarchical", "soft", "ensemble", "oracle"]
    compared = json.loads((out / "comparisons.json").read_text())
    assert [(c["route_a"], c["route_b"]) for c in compared] == [
        ("flat", "hierarchical"), ("flat", "soft"), ("flat", "ensemble"), ("hierarchical", "oracle")]
    table = pd.read_csv(out / "tables" / "comparisons.csv")
    assert table["mcnemar_p"].between(0, 1).all()


def test_only_present_routes_are_compared_and_no_images_is_fine(tmp_path):
    pred = simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES, routes=("flat", "soft"), seed=3)
    build_report(pred, tmp_path / "r", n_bootstrap=5)
    compared = json.loads((tmp_path / "r" / "comparisons.json").read_text())
    assert [(c["route_a"], c["route_b"]) for c in compared] == [("flat", "soft")]
    assert not (tmp_path / "r" / "gallery" / "missed_gallery.png").exists()
    assert "No run record was supplied" in (tmp_path / "r" / "report.md").read_text()


def test_refuses_to_overwrite_unless_asked(tmp_path):
    pred = simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES, routes=("flat",), seed=4)
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        build_report(pred, out, n_bootstrap=5)
    build_report(pred, out, n_bootstrap=5, overwrite=True)
    assert (out / "report.md").exists() and (out / "notes.txt").read_text() == "keep me"


def test_overwrite_removes_only_what_the_previous_report_wrote(tmp_path):
    out = tmp_path / "r"
    build_report(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                                      routes=("flat", "hierarchical"), seed=4), out, n_bootstrap=5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "figures/roc.png" in manifest["files"] and "report.md" in manifest["files"]
    (out / "figures" / "my_figure.png").write_bytes(b"mine")
    (out / "tables" / "my_table.csv").write_text("mine")
    (out / "notes.txt").write_text("mine")
    build_report(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                                      routes=("flat",), seed=5), out, n_bootstrap=5, overwrite=True)
    for user_file in ("figures/my_figure.png", "tables/my_table.csv", "notes.txt"):
        assert (out / user_file).exists(), user_file
    assert not (out / "tables" / "comparisons.csv").exists()  # only the earlier report wrote it
    assert (out / "figures" / "roc.png").exists()


def test_overwrite_never_replaces_a_file_it_did_not_write(tmp_path):
    out = tmp_path / "r"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "roc.png").write_bytes(b"the user's own roc.png")
    with pytest.raises(FileExistsError, match="roc.png"):
        build_report(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                                          routes=("flat",), seed=4), out, n_bootstrap=5, overwrite=True)
    assert (out / "figures" / "roc.png").read_bytes() == b"the user's own roc.png"
    (out / "report.md").write_text("user's")
    with pytest.raises(FileExistsError, match="report.md"):
        build_report(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                                          routes=("flat",), seed=4), out, n_bootstrap=5, overwrite=True)


def test_a_manifest_cannot_delete_outside_the_report_folder(tmp_path):
    out = tmp_path / "r"
    build_report(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                                      routes=("flat",), seed=4), out, n_bootstrap=5)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"] += ["../victim.txt", str(victim)]
    (out / "manifest.json").write_text(json.dumps(manifest))
    build_report(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                                      routes=("flat",), seed=4), out, n_bootstrap=5, overwrite=True)
    assert victim.read_text() == "keep"


def _confusions(node, where="metrics.json"):
    """Every ``{"labels", "counts"}`` matrix in a JSON tree, with where it sits."""
    if isinstance(node, dict):
        if "labels" in node and "counts" in node:
            yield where, node
        for key, value in node.items():
            yield from _confusions(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _confusions(value, f"{where}/{i}")


def test_every_confusion_matrix_has_each_label_once(report):
    out, _, _ = report
    metrics = json.loads((out / "metrics.json").read_text())
    found = list(_confusions(metrics))
    assert any(w.endswith("plane/confusion") for w, _ in found)
    for where, matrix in found:
        expected = metrics["planes"] if where.endswith("plane/confusion") else metrics["classes"]
        assert matrix["labels"] == expected, where
        assert np.array(matrix["counts"]).shape == (len(expected), len(expected)), where


def test_confusion_figures_label_each_class_and_plane_once(report):
    out, _, _ = report
    metrics = json.loads((out / "metrics.json").read_text())
    for draw, expected in ((figures.confusion_figure, metrics["classes"]),
                           (figures.plane_confusion_figure, metrics["planes"])):
        fig = draw(metrics)
        panels = [ax for ax in fig.axes if ax.get_visible()]
        for ax in panels:
            assert [t.get_text() for t in ax.get_xticklabels()] in (expected, [""] * len(expected))
            shown = [t.get_text() for t in ax.get_yticklabels()]
            assert shown in (expected, [""] * len(expected))  # later panels of a row leave them to the first
        assert any([t.get_text() for t in ax.get_xticklabels()] == expected for ax in panels)  # under the last row


def _files_under(out):
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def test_manifest_lists_every_file_with_its_sha256_and_every_link_resolves(report):
    out, path, _ = report
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and _files_under(out) == {*manifest["files"], "manifest.json"}
    assert {name: sha256_file(out / name) for name in manifest["files"]} == manifest["sha256"]
    assert manifest["local"] == ["gallery/missed_gallery.pdf", "gallery/missed_gallery.png"]
    assert unresolved_links(path) == []
    assert "gallery/missed_gallery.png" in path.read_text()  # named, not linked: published copies lack it


@pytest.mark.slow
def test_stale_outputs_go_and_an_interrupted_run_changes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "r"
    build_report(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                                      routes=("flat",), seed=4), out, n_bootstrap=5)
    assert not (out / "figures" / "plane_confusion.png").exists()
    before = {name: sha256_file(out / name) for name in _files_under(out)}
    both = simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES, routes=("flat", "hierarchical"), seed=4)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(figures, "plane_confusion_figure", killed)
        with pytest.raises(KeyboardInterrupt):
            build_report(both, out, n_bootstrap=5, overwrite=True)
    assert {name: sha256_file(out / name) for name in _files_under(out)} == before  # the earlier report, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no staged files left beside it
    build_report(both, out, n_bootstrap=5, overwrite=True)
    assert (out / "figures" / "plane_confusion.png").exists()
    build_report(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                                      routes=("flat",), seed=4), out, n_bootstrap=5, overwrite=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert _files_under(out) == {*manifest["files"], "manifest.json"}
    assert not (out / "figures" / "plane_confusion.png").exists() and not (out / "tables" / "plane_classifier.csv").exists()


def test_a_run_from_uncommitted_code_says_so_at_the_top(tmp_path):
    pred = simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES, routes=("flat",), seed=4)
    build_report(pred, tmp_path / "dirty", n_bootstrap=5, run_record={"git_commit": "abc123+dirty"})
    top = (tmp_path / "dirty" / "report.md").read_text().splitlines()[:4]
    assert any("uncommitted" in line and "`abc123`" in line for line in top)
    build_report(pred, tmp_path / "clean", n_bootstrap=5, run_record={"git_commit": "abc123"})
    assert "uncommitted" not in (tmp_path / "clean" / "report.md").read_text()
