"""nctk.report.nc_plots: the figures carry the data they are given, NaN left out."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.figure import Figure

from nctk.report.nc_plots import plot_cdnv, plot_layer_profile, plot_nc1, plot_nc1_vs_accuracy

LAYERS = {
    "resnet": {"block1": {"nc1": 10.0, "cdnv": 2.0}, "block2": {"nc1": 1.0, "cdnv": 0.5},
               "penultimate": {"nc1": 0.1, "cdnv": math.nan}},
    "vit": {"block1": {"nc1": 5.0, "cdnv": 1.0}, "penultimate": {"nc1": 0.5, "cdnv": 0.2}},
}


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_layer_metric_plots_draw_one_line_per_model_on_a_log_axis():
    for plot, metric in ((plot_nc1, "nc1"), (plot_cdnv, "cdnv")):
        fig = plot(LAYERS)
        ax = fig.axes[0]
        assert ax.get_yscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["block1", "block2",
                                                                "penultimate"]
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["resnet", "vit"]
        resnet = lines[0].get_ydata()
        want = [LAYERS["resnet"][n][metric] for n in ("block1", "block2", "penultimate")]
        np.testing.assert_array_equal(np.isnan(resnet), np.isnan(want))
        vit = lines[1].get_ydata()
        assert math.isnan(vit[1])  # vit has no block2: left out, not drawn as 0
        assert _png(fig).startswith(b"\x89PNG")


def test_layer_profile_has_two_panels_and_the_probe_axis():
    fig = plot_layer_profile({"resnet": LAYERS["resnet"]},
                             probe={"resnet": {"block1": 0.5, "block2": 0.7,
                                               "penultimate": 0.9}})
    assert len(fig.axes) == 3  # NC1, CDNV, probe twin axis
    probe_line = fig.axes[2].get_lines()[0]
    np.testing.assert_allclose(probe_line.get_ydata(), [0.5, 0.7, 0.9])
    assert _png(fig)


def test_nc1_vs_accuracy_scatter_and_title():
    nc1 = {"a": 0.5, "b": 1.0, "c": math.nan, "d": 2.0}
    acc = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    fig = plot_nc1_vs_accuracy(nc1, acc, correlation={"pearson": 0.97, "spearman": 1.0,
                                                      "weighted_tau": math.nan})
    ax = fig.axes[0]
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(points, [[0.5, 0.9], [1.0, 0.8], [2.0, 0.6]])
    title = ax.get_title()
    assert "Pearson 0.970" in title and "Spearman 1.000" in title and "w-τ" not in title
    assert _png(fig)
