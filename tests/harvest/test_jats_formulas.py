"""``tex_body``: the math of a verbatim ``tex-math`` value, for users who want it without PMC's preamble."""

from __future__ import annotations

from pmcurate.harvest.jats import tex_body

PMC_STYLE = (
    r"\documentclass[12pt]{minimal} \usepackage{amsmath} \usepackage{wasysym} "
    r"\setlength{\oddsidemargin}{-69pt} \begin{document}$$T_g = 63\,^{\circ}\mathrm{C}$$\end{document}"
)


def test_tex_body_drops_the_document_preamble_and_dollars() -> None:
    assert tex_body(PMC_STYLE) == r"T_g = 63\,^{\circ}\mathrm{C}"


def test_tex_body_keeps_bare_math_as_it_is() -> None:
    assert tex_body(r"  x^2 + y^2  ") == "x^2 + y^2"
