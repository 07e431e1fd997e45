"""LaTeX escaping, tables and ``supplement.tex``: every table and figure of a report in one document that builds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import simulate_predictions
from hierarchy.reports import build_report
from hierarchy.reports.latex import LONG_TABLE_ROWS, latex_escape
from hierarchy.reports.tables import to_latex

NASTY = "95% CI of no_tumor & #1 for $5 {a} ~ ^ \\ ≥ ±"


def test_latex_escape_every_special_character():
    escaped = latex_escape(NASTY)
    for raw in ("%", "_", "&", "#", "$5", "{a}"):
        assert raw not in escaped.replace("\\" + raw[0], ""), raw
    assert r"95\% CI of no\_tumor \& \#1 for \$5 \{a\}" in escaped
    assert r"\textasciitilde{}" in escaped and r"\textbackslash{}" in escaped and r"$\geq$" in escaped


def test_tables_escape_caption_headers_and_cells():
    frame = pd.DataFrame({"class_name": ["no_tumor", "a&b"], "score [95% CI]": [0.5, 0.25]})
    tex = to_latex(frame, caption="Per-class score [95% CI] of no_tumor, #1", label="tab:x")
    assert r"\caption{Per-class score [95\% CI] of no\_tumor, \#1}" in tex
    assert r"class\_name" in tex and r"no\_tumor" in tex and r"a\&b" in tex and r"score [95\% CI]" in tex
    assert "\\toprule" in tex and "adjustbox" in tex
    long = to_latex(pd.DataFrame({"x": range(LONG_TABLE_ROWS + 1)}), caption="Long", label="tab:long")
    assert "\\begin{longtable}" in long and "\\caption{Long}" in long


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("latex")
    pred = simulate_predictions(60, classes=TUMOR_CLASSES, planes=PLANES, skill=1.5, refer_below=0.5, seed=2)
    image = root / "scan.png"  # missed tumours get a gallery: an image-derived, local figure
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype("uint8")).save(image)
    pred["path"] = str(image)
    log = root / "log.csv"
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.2, 0.8, 0.5], "train_accuracy": [0.5, 0.7, 0.8],
                  "val_loss": [1.3, 0.9, 0.7], "val_accuracy": [0.4, 0.6, 0.7]}).to_csv(log, index=False)
    record = {"git_commit": "abc123", "seed": 7, "config": {"a_b": "50%"}, "versions": {"numpy": np.__version__},
              "data": {"test_set": {"n_images": 60, "sha256": "e" * 64}}}
    out = root / "out"
    build_report(pred, out, run_record=record, training_logs={"flat_model": log}, n_bootstrap=20,
                 extra_sections=[("Limits & caveats", "Synthetic.")])
    return out


def test_every_tex_file_of_a_report_has_its_specials_escaped(report):
    for tex in (report / "tables").glob("*.tex"):
        text = tex.read_text()
        for line in text.splitlines():
            if line.startswith("\\caption") or "&" in line and "\\\\" in line:
                cells = line.removeprefix("\\caption{").rstrip("}\\ ").split(" & ")
                for cell in cells:
                    assert not re.search(r"(?<!\\)[%_#$]", cell), (tex.name, cell)


def test_supplement_inputs_every_table_and_figure_in_report_order(report):
    supplement = (report / "supplement.tex").read_text()
    manifest = json.loads((report / "manifest.json").read_text())
    assert "supplement.tex" in manifest["files"]
    assert supplement.startswith("%") and "\\documentclass" in supplement and supplement.rstrip().endswith(
        "\\end{document}")
    for package in ("booktabs", "graphicx", "longtable"):
        assert package in supplement
    tables = [n for n in manifest["files"] if n.startswith("tables/") and n.endswith(".tex")]
    figures = [n for n in manifest["files"] if n.endswith(".pdf")]
    for name in tables:
        assert f"\\input{{{name}}}" in supplement, name
    for name in figures:
        assert f"{{{name}}}" in supplement, name
    report_md = (report / "report.md").read_text()
    in_report = [m for m in re.findall(r"\((tables/[^)]+\.tex|figures/[^)]+\.pdf)\)", report_md)]
    in_supplement = re.findall(r"\{((?:tables|figures)/[^}]+\.(?:tex|pdf))\}", supplement)
    assert in_supplement == list(dict.fromkeys(in_report))


def test_supplement_compiles_with_pdflatex(report, tmp_path):
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        print("pdflatex not found: install texlive-latex-recommended and texlive-latex-extra (make test does so "
              "where it may run apt-get)")
        pytest.skip("pdflatex not found (Debian: texlive-latex-recommended texlive-latex-extra)")
    assert "gallery/missed_gallery.pdf" in (report / "supplement.tex").read_text()
    published = shutil.copytree(report, tmp_path / "published")
    shutil.rmtree(published / "gallery")  # a published copy lacks the image-derived figures
    supplement = (report / "supplement.tex").read_text()
    n_floats = supplement.count("\\input{") + supplement.count("\\begin{figure}")
    for copy in (shutil.copytree(report, tmp_path / "report"), published):
        run = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "supplement.tex"], cwd=copy,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:]
        log = (copy / "supplement.log").read_text(errors="replace")
        assert "LaTeX Error" not in log and "Undefined control sequence" not in log
        pages = int(re.search(r"Output written on supplement\.pdf \((\d+) pages?", run.stdout).group(1))
        assert 1 < pages <= n_floats + 5
        assert (copy / "supplement.pdf").read_bytes()[:4] == b"%PDF"
