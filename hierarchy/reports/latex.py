"""LaTeX for reports: escaping, booktabs tables and ``supplement.tex``, the document that inputs them all.

Every string that reaches a ``.tex`` file (caption, header, cell) passes through :func:`latex_escape`, so
a ``%`` in "[95% CI]" or an ``_`` in ``no_tumor`` never breaks a build. Tables with more than
``LONG_TABLE_ROWS`` rows become ``longtable`` (they break across pages); shorter ones are floats shrunk
to the text width. ``supplement.tex`` needs booktabs, longtable, graphicx and adjustbox (all in
Debian's ``texlive-latex-recommended`` / ``texlive-latex-extra``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

LONG_TABLE_ROWS = 30
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            # characters pdflatex's utf8 input does not know
            "≥": r"$\geq$", "≤": r"$\leq$", "±": r"$\pm$", "×": r"$\times$", "→": r"$\rightarrow$",
            "−": "-", "–": "--", "—": "---", "·": r"$\cdot$", "Σ": r"$\Sigma$"}
PACKAGES = ("booktabs", "longtable", "graphicx", "adjustbox")


def latex_escape(text: object) -> str:
    """``str(text)`` with LaTeX's special characters escaped (``%``, ``_``, ``&``, ``#``, ``$`` ...)."""
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def latex_table(shown: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs table of a frame of display strings, every header, cell and the caption escaped."""
    escaped = shown.apply(lambda column: column.map(latex_escape))
    escaped.columns = [latex_escape(c) for c in shown.columns]
    caption = None if caption is None else latex_escape(caption)
    if len(escaped) > LONG_TABLE_ROWS:
        body = escaped.to_latex(index=False, escape=False, longtable=True, caption=caption, label=label)
        return "{\\scriptsize\n" + body + "}\n"
    lines = ["\\begin{table}[htbp]", "\\centering"]
    lines += [f"\\caption{{{caption}}}"] if caption else []
    lines += [f"\\label{{{label}}}"] if label else []
    lines += ["\\begin{adjustbox}{max width=\\linewidth}", escaped.to_latex(index=False, escape=False).rstrip(),
              "\\end{adjustbox}", "\\end{table}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Item:
    """One entry of the supplement: a section heading, a table (``path`` of its ``.tex``) or a figure
    (``path`` of its PDF); ``local`` figures (image-derived, not published) may be absent from a copy."""

    kind: str  # "section", "table" or "figure"
    text: str  # heading or caption
    path: str = ""
    label: str = ""
    local: bool = False


def _figure(item: Item) -> list[str]:
    graphic = f"\\includegraphics[max width=\\linewidth,max height=0.85\\textheight]{{{item.path}}}"
    if item.local:
        graphic = (f"\\IfFileExists{{{item.path}}}{{{graphic}}}{{\\fbox{{\\parbox{{0.8\\linewidth}}{{"
                   f"\\centering Image-derived figure \\texttt{{{latex_escape(item.path)}}} is kept out of "
                   "published copies.}}}")
    return ["\\begin{figure}[htbp]", "\\centering", graphic, f"\\caption{{{latex_escape(item.text)}}}",
            *([f"\\label{{{item.label}}}"] if item.label else []), "\\end{figure}"]


def supplement(items: Sequence[Item], title: str = "Supplementary material") -> str:
    """A complete LaTeX document that inputs every table and includes every figure of ``items`` in
    their order, each under its section; build it with ``pdflatex supplement.tex`` in the report folder."""
    lines = ["% Built by hierarchy.reports from the report in this folder: pdflatex supplement.tex (twice,",
             "% for the list of tables and figures). Every table and figure, in the order of report.md.",
             "\\documentclass[10pt]{article}",
             "\\usepackage[T1]{fontenc}",
             "\\usepackage[utf8]{inputenc}",
             # 7.2-inch text width, so double-column figures are shown at their print size
             "\\usepackage[a4paper,hmargin=1.2cm,vmargin=2cm]{geometry}",
             "\\usepackage{booktabs,longtable,graphicx}",
             "\\usepackage[export]{adjustbox}",
             "\\usepackage[font=small,labelfont=bf]{caption}",
             "\\setcounter{topnumber}{4}\\setcounter{totalnumber}{6}",
             "\\renewcommand{\\topfraction}{0.95}\\renewcommand{\\textfraction}{0.05}",
             "\\renewcommand{\\floatpagefraction}{0.7}",
             f"\\title{{{latex_escape(title)}}}", "\\date{}",
             "\\begin{document}", "\\maketitle"]
    for item in items:
        if item.kind == "section":
            # floats stay in their section: no pile-up of unplaced floats at the end
            lines += ["\\clearpage", f"\\section*{{{latex_escape(item.text)}}}"]
        elif item.kind == "table":
            lines.append(f"\\input{{{item.path}}}")
        elif item.kind == "figure":
            lines += _figure(item)
        else:
            raise ValueError(f"unknown supplement item kind {item.kind!r}")
    lines.append("\\end{document}")
    return "\n".join(lines) + "\n"
