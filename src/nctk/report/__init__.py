"""The HTML report of a ranking: ``write_report(path, title=..., methods=...)``.

One self-contained HTML file (inline CSS, plots embedded as PNG) with the ranking table,
the evaluation against a ground truth, score-versus-truth scatters, the NCTI terms,
layer-wise neural-collapse curves and timings. Figures live in :mod:`.ranking_plots`.
"""

from nctk.report.html import write_report

__all__ = ["write_report"]
