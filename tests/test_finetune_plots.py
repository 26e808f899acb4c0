"""nctk.finetune.plots: the sweep and scarcity figures carry the results, one colour per
method, units in order, nothing clipped; the PNG is written."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import to_hex

from nctk.finetune.plots import (
    METHOD_COLOURS,
    plot_scarcity,
    plot_sweep,
    scarcity_figure,
    sweep_figure,
)
from nctk.finetune.train import FinetuneResult
from plot_checks import assert_readable

UNITS = {f"encoder.layers.encoder_layer_{i}": i + 1 for i in range(12)}


def _result(method: str, unit: str, accuracy: float, nc1: float, *,
            tested: bool = True) -> FinetuneResult:
    return FinetuneResult(method=method, unit=unit, num_classes=5, param_share=0.1,
                          trained_params=10, train_nc1=nc1, val_accuracy=accuracy - 0.01,
                          test_accuracy=accuracy if tested else None, best_epoch=1,
                          epochs_run=1, stopped_early=False, seconds=1.0)


def _sweep(tested: bool = True) -> list[FinetuneResult]:
    results = [_result("lp", "-", 0.50, 2.0, tested=tested)]
    for name, number in UNITS.items():
        results.append(_result("layer", name, 0.5 + number / 100, 1.0 / number, tested=tested))
        results.append(_result("scl", name, 0.6 + number / 100, 0.5 / number, tested=tested))
    return [*results, _result("full", "-", 0.8, 0.05, tested=tested)]


def test_sweep_figure_draws_each_method_over_the_units_in_order():
    fig = sweep_figure(_sweep(), UNITS)
    accuracy, nc1 = fig.axes
    lines = {line.get_label(): line for line in accuracy.get_lines()}
    assert set(lines) == {"Linear probe", "Layer FT", "SCL FT", "Full FT"}
    np.testing.assert_array_equal(lines["Layer FT"].get_xdata(), np.arange(1, 13))
    np.testing.assert_allclose(lines["Layer FT"].get_ydata(), [50 + n for n in range(1, 13)])
    np.testing.assert_allclose(lines["SCL FT"].get_ydata(), [60 + n for n in range(1, 13)])
    np.testing.assert_allclose(lines["Linear probe"].get_ydata(), [50, 50])  # a level line
    np.testing.assert_allclose(lines["Full FT"].get_ydata(), [80, 80])
    for method, label in (("lp", "Linear probe"), ("layer", "Layer FT"), ("scl", "SCL FT"),
                          ("full", "Full FT")):
        assert to_hex(lines[label].get_color()) == to_hex(METHOD_COLOURS[method])
    assert accuracy.get_ylabel() == "test accuracy (%)"
    assert nc1.get_yscale() == "log"
    nc1_layer = {line.get_label(): line for line in nc1.get_lines()}["Layer FT"]
    np.testing.assert_allclose(nc1_layer.get_ydata(), [1.0 / n for n in range(1, 13)])
    assert_readable(fig)


def test_sweep_figure_says_validation_accuracy_without_test_data(tmp_path):
    fig = sweep_figure(_sweep(tested=False), UNITS)
    assert fig.axes[0].get_ylabel() == "validation accuracy (%)"
    path = plot_sweep(_sweep(tested=False), tmp_path / "sweep.png", UNITS)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scarcity_figure_one_line_per_method(tmp_path):
    curves = {"per_class": [10, 50, 100], "unit": "layer3.0",
              "accuracy": {"lp": [0.3, 0.5, 0.6], "layer": [0.4, 0.6, 0.7],
                           "scl": [0.45, 0.62, math.nan], "full": [0.2, 0.5, 0.75]}}
    fig = scarcity_figure(curves)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["Linear probe", "Layer FT", "SCL FT",
                                                    "Full FT"]
    np.testing.assert_allclose(lines[0].get_ydata(), [30, 50, 60])
    np.testing.assert_array_equal(lines[0].get_xdata(), [10, 50, 100])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "50", "100"]
    assert_readable(fig)
    assert plot_scarcity(curves, tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
