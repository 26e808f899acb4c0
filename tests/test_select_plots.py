"""The learning-curve figure of ``nctk select``: one line per model trained, ending where
it stopped, the pick drawn thickest in its own colour, a line at every rung, readable."""

from __future__ import annotations

from matplotlib.colors import to_hex

from nctk.report.ranking_plots import HIGHLIGHT
from nctk.select.plots import curves_figure
from plot_checks import assert_readable

CURVES = {"a": [0.4, 0.5, 0.55, 0.6, 0.62, 0.63, 0.64, 0.65, 0.66], "b": [0.45],
          "c": [0.42, 0.48, 0.5], "d": [0.3], "e": [0.5, 0.56, 0.6]}


def test_curves_figure_draws_every_model_to_where_it_stopped():
    fig = curves_figure(CURVES, [1, 3, 9], "a", val_samples=60)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()
             if not line.get_label().startswith("_")}
    assert set(lines) == {"a (pick)", "b", "c", "d", "e"}
    for model, curve in CURVES.items():
        line = lines["a (pick)" if model == "a" else model]
        assert list(line.get_xdata()) == list(range(1, len(curve) + 1))
        assert list(line.get_ydata()) == [100 * v for v in curve]
    assert to_hex(lines["a (pick)"].get_color()) == HIGHLIGHT.lower()
    others = {to_hex(lines[m].get_color()) for m in "bcde"}
    assert len(others) == 4 and HIGHLIGHT.lower() not in others
    assert lines["a (pick)"].get_linewidth() > lines["b"].get_linewidth()
    rungs = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert rungs == [1, 3, 9] and list(ax.get_xticks()) == [1, 3, 9]
    assert "60 images" in ax.get_ylabel()
    assert_readable(fig)
