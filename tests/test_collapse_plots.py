"""nctk.report.nc_plots: the figures carry the data they are given, in each model's forward
order with the penultimate last, one colour per model, readable ticks, nothing clipped."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from nctk.report.nc_plots import (
    MAX_LAYER_TICKS,
    plot_cdnv,
    plot_layer_profile,
    plot_nc1,
    plot_nc1_vs_accuracy,
)
from plot_checks import assert_readable

LAYERS = {
    "resnet": {"block1": {"nc1": 10.0, "cdnv": 2.0}, "block2": {"nc1": 1.0, "cdnv": 0.5},
               "penultimate": {"nc1": 0.1, "cdnv": math.nan}},
    "vit": {"block1": {"nc1": 5.0, "cdnv": 1.0}, "penultimate": {"nc1": 0.5, "cdnv": 0.2}},
}


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_one_model_layers_in_its_own_order_named_on_the_axis():
    fig = plot_nc1({"resnet": LAYERS["resnet"]})
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["block1", "block2", "penultimate"]
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2])
    np.testing.assert_array_equal(line.get_ydata(), [10.0, 1.0, 0.1])
    assert_readable(fig)
    assert _png(fig).startswith(b"\x89PNG")


def test_several_models_share_a_relative_depth_axis_with_the_penultimate_at_one():
    for plot, metric in ((plot_nc1, "nc1"), (plot_cdnv, "cdnv")):
        fig = plot(LAYERS)
        ax = fig.axes[0]
        resnet, vit = ax.get_lines()
        assert [resnet.get_label(), vit.get_label()] == ["resnet", "vit"]
        np.testing.assert_allclose(resnet.get_xdata(), [0.0, 0.5, 1.0])
        np.testing.assert_allclose(vit.get_xdata(), [0.0, 1.0])
        want = [LAYERS["resnet"][n][metric] for n in ("block1", "block2", "penultimate")]
        got = resnet.get_ydata()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # NaN left out, not 0
        np.testing.assert_allclose(got[~np.isnan(got)], np.asarray(want)[~np.isnan(want)])
        assert to_hex(resnet.get_color()) != to_hex(vit.get_color())
        assert "relative depth" in ax.get_xlabel()
        assert_readable(fig)


def test_penultimate_is_drawn_last_whatever_its_position_in_the_profile():
    profile = {"penultimate": {"nc1": 0.1}, "stem": {"nc1": 9.0}, "block": {"nc1": 3.0}}
    fig = plot_nc1({"m": profile})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["stem", "block", "penultimate"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), [9.0, 3.0, 0.1])


def test_forty_layers_and_twelve_models_stay_readable_with_distinct_colours():
    deep = {f"encoder.layers.encoder_layer_{i}": {"nc1": 50.0 / (i + 1), "cdnv": 1.0 + i}
            for i in range(40)}
    deep["penultimate"] = {"nc1": 0.9, "cdnv": 0.5}
    fig = plot_layer_profile({"vit_b_16": deep})
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(ticks) <= MAX_LAYER_TICKS and ticks[-1] == "penultimate"
    assert_readable(fig)

    pool = {f"model_{i}": {f"l{j}": {"nc1": 1.0 + i + j, "cdnv": 1.0} for j in range(3 + i)}
            | {"penultimate": {"nc1": 0.5, "cdnv": 1.0}} for i in range(12)}
    fig = plot_nc1(pool)
    lines = fig.axes[0].get_lines()
    assert len({to_hex(line.get_color()) for line in lines}) == 12
    for line, (model, profile) in zip(lines, pool.items(), strict=True):
        assert line.get_label() == model
        x = line.get_xdata()
        assert len(x) == len(profile) and x[0] == 0.0 and x[-1] == 1.0
        assert np.all(np.diff(x) > 0)  # forward order, increasing depth
    assert_readable(fig)


def test_log_axis_labels_are_plain_numbers():
    fig = plot_nc1({"m": {"a": {"nc1": 3.0}, "b": {"nc1": 6.0}, "penultimate": {"nc1": 4.0}}})
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
              if t.get_text()]
    assert labels and all("10^" not in s and "times" not in s for s in labels), labels
    assert all(float(s) > 0 for s in labels)


def test_layer_profile_has_two_panels_and_the_probe_axis_in_the_model_colour():
    fig = plot_layer_profile({"resnet": LAYERS["resnet"]},
                             probe={"resnet": {"block1": 0.5, "block2": 0.7,
                                               "penultimate": 0.9}})
    assert len(fig.axes) == 3  # NC1, CDNV, probe twin axis
    probe_line = fig.axes[2].get_lines()[0]
    np.testing.assert_allclose(probe_line.get_ydata(), [0.5, 0.7, 0.9])
    assert to_hex(probe_line.get_color()) == to_hex(fig.axes[0].get_lines()[0].get_color())
    assert_readable(fig)
    assert _png(fig)


def test_nc1_vs_accuracy_scatter_title_and_labels_inside_the_figure():
    nc1 = {"a": 0.5, "b": 1.0, "c": math.nan, "d": 2.0}
    acc = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    fig = plot_nc1_vs_accuracy(nc1, acc, correlation={"pearson": 0.97, "spearman": 1.0,
                                                      "weighted_tau": math.nan})
    ax = fig.axes[0]
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(points, [[0.5, 0.9], [1.0, 0.8], [2.0, 0.6]])
    title = fig.get_suptitle()
    assert "Pearson 0.970" in title and "Spearman 1.000" in title and "w-τ" not in title
    assert _png(fig)
    # long names at the extremes and negative correlations: nothing clipped
    long = {f"vit_large_patch16_224.augreg_in21k_{i}": float(i + 1) for i in range(5)}
    fig = plot_nc1_vs_accuracy(long, {m: 1.0 / v for m, v in long.items()},
                               correlation={"pearson": -0.912, "spearman": -1.0,
                                            "weighted_tau": -0.987})
    assert_readable(fig)
