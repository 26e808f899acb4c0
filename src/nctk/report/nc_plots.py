"""Matplotlib figures of neural collapse: NC1 and CDNV per layer, NC1 against accuracy.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no
global state; the caller saves or embeds it, e.g. ``fig.savefig(path)``). NaN and
infinite values are left out of the drawing, never plotted as 0.

``layers`` arguments are model -> layer name -> metrics, i.e. model -> the output of
:func:`nctk.collapse.layer_profile`. Each model's layers are drawn in its own order (the
forward order in which extraction writes them), with ``penultimate`` last. One model: its
layer names are the x ticks. Several models: the x axis is the relative depth (0 = first
layer, 1 = penultimate), so models of different depths share one axis; each model has
its own colour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from nctk.collapse.profile import PENULTIMATE
from nctk.report.ranking_plots import (
    ACCENT,
    is_finite,
    model_colours,
    name_ticks,
    plot_label,
    style_axes,
)

Layers = Mapping[str, Mapping[str, Mapping[str, float]]]

_TITLES = {"nc1": "NC1 = tr(Σ_W Σ_B⁺)/K", "cdnv": "CDNV (class-distance normalised variance)"}

#: At most this many layer names label the x axis of a one-model plot (every k-th is shown,
#: the penultimate always), so that names never overlap.
MAX_LAYER_TICKS = 12
#: Tick positions of the relative-depth axis of a several-model plot.
DEPTH_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)


def forward_order(profile: Mapping[str, object]) -> list[str]:
    """A model's layer names as given (forward order), with the penultimate moved last."""
    names = [name for name in profile if name != PENULTIMATE]
    return [*names, PENULTIMATE] if PENULTIMATE in profile else names


def relative_depth(count: int) -> np.ndarray:
    """Positions of ``count`` layers on [0, 1]: ``i / (count - 1)``; a single layer at 1."""
    if count == 1:
        return np.ones(1)
    return np.linspace(0.0, 1.0, count)


def plot_nc1(layers: Layers) -> Figure:
    """NC1 per layer on a log scale, one line per model (Li et al. 2023, Figs. 2 and 8)."""
    fig = Figure(figsize=_layer_figsize(layers, 1), layout="constrained")
    _draw_layer_metric(fig.add_subplot(), layers, "nc1")
    _legend(fig, layers)
    return fig


def plot_cdnv(layers: Layers) -> Figure:
    """CDNV per layer on a log scale, one line per model."""
    fig = Figure(figsize=_layer_figsize(layers, 1), layout="constrained")
    _draw_layer_metric(fig.add_subplot(), layers, "cdnv")
    _legend(fig, layers)
    return fig


def plot_layer_profile(layers: Layers, *, probe: Mapping[str, Mapping[str, float]] | None = None
                       ) -> Figure:
    """Two panels, NC1 and CDNV per layer (log scale), one line per model.

    ``probe`` (model -> layer -> linear-probe accuracy) adds the accuracy on a second axis
    of the NC1 panel, dashed, in the model's colour, as in Li et al. Fig. 8 (left).
    """
    fig = Figure(figsize=_layer_figsize(layers, 2), layout="constrained")
    left, right = fig.subplots(1, 2)
    _draw_layer_metric(left, layers, "nc1")
    _draw_layer_metric(right, layers, "cdnv")
    if probe:
        twin = left.twinx()
        colours = dict(zip(layers, model_colours(len(layers)), strict=True))
        for model, accuracy in probe.items():
            order = forward_order(layers.get(model, accuracy))
            y = [accuracy[name] if is_finite(accuracy.get(name)) else math.nan
                 for name in order]
            twin.plot(_x_positions(len(order), len(layers)), y, linestyle="--", marker="s",
                      markersize=3, linewidth=1.1, alpha=0.8,
                      color=colours.get(model, ACCENT), label=f"{model} probe")
        twin.set_ylabel("linear-probe accuracy (dashed)", fontsize=8)
        twin.tick_params(labelsize=8)
    _legend(fig, layers)
    return fig


def plot_nc1_vs_accuracy(nc1: Mapping[str, float], accuracy: Mapping[str, float], *,
                         correlation: Mapping[str, float] | None = None,
                         xlabel: str = "NC1 (penultimate, target data)",
                         ylabel: str = "transfer accuracy") -> Figure:
    """Scatter of accuracy (y) against NC1 (x), one named point per model or layer, with a
    least-squares line (Li et al. 2023, Figs. 5, 6 and 8 right).

    ``correlation`` (the output of :func:`nctk.collapse.correlate`) puts Pearson,
    Spearman and weighted tau of -NC1 with accuracy in the title.
    """
    names = [n for n in nc1 if is_finite(nc1[n]) and is_finite(accuracy.get(n))]
    fig = Figure(figsize=(4.8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    style_axes(ax)
    if names:
        x = np.array([nc1[n] for n in names], dtype=float)
        y = np.array([accuracy[n] for n in names], dtype=float)
        ax.scatter(x, y, s=28, color=ACCENT, edgecolors="white", linewidths=0.6, zorder=3)
        middle = (x.min() + x.max()) / 2
        for name, xi, yi in zip(names, x, y, strict=True):
            # labels point towards the middle of the axes, so they stay inside the figure
            right_half = xi > middle
            ax.annotate(plot_label(name, 16), (xi, yi), xytext=(-4 if right_half else 4, 3),
                        textcoords="offset points", fontsize=7,
                        ha="right" if right_half else "left")
        if len(names) >= 2 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            grid = np.linspace(x.min(), x.max(), 50)
            ax.plot(grid, slope * grid + intercept, color="#6b7280", linewidth=1,
                    linestyle=":")
        ax.margins(x=0.08, y=0.1)
    title = "transfer accuracy against NC1, one point per model"
    if correlation:
        parts = [f"{label} {correlation[key]:.3f}" for key, label in
                 (("pearson", "Pearson"), ("spearman", "Spearman"), ("weighted_tau", "w-τ"))
                 if is_finite(correlation.get(key))]
        if parts:
            title += "\n−NC1 vs accuracy: " + ", ".join(parts)
    # a figure title (not an axes title): constrained layout keeps it inside the figure
    fig.suptitle(title, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    return fig


def _layer_figsize(layers: Layers, panels: int) -> tuple[float, float]:
    """Wide enough for the panels, plus room for the legend of several models."""
    legend = 0.0 if len(layers) <= 1 else 1.4 + 0.05 * max(map(len, layers), default=0)
    return (4.6 * panels + min(legend, 3.0), 3.4)


def _x_positions(count: int, models: int) -> np.ndarray:
    return np.arange(count, dtype=float) if models == 1 else relative_depth(count)


def _draw_layer_metric(ax, layers: Layers, metric: str) -> None:
    """One line per model over its layers in forward order; log y axis when positive."""
    style_axes(ax)
    values: list[float] = []
    for colour, (model, profile) in zip(model_colours(len(layers)), layers.items(),
                                        strict=True):
        order = forward_order(profile)
        y = [_value(profile[name].get(metric)) for name in order]
        values += [v for v in y if not math.isnan(v)]
        ax.plot(_x_positions(len(order), len(layers)), y, marker="o", markersize=3.5,
                linewidth=1.4, color=colour, label=model)
    if values:
        log_axis(ax, values)
        ax.set_ylabel(f"{metric} (log scale)", fontsize=8)
    else:
        ax.set_ylabel(metric, fontsize=8)
    if len(layers) == 1:
        _layer_name_ticks(ax, forward_order(next(iter(layers.values()))))
    else:
        ax.set_xticks(DEPTH_TICKS, [f"{t:g}" for t in DEPTH_TICKS])
        ax.set_xlim(-0.04, 1.04)
        ax.set_xlabel("relative depth (0 = first layer, 1 = penultimate)", fontsize=8)
    ax.set_title(_TITLES.get(metric, metric) + " per layer", fontsize=9)


def _layer_name_ticks(ax, names: Sequence[str]) -> None:
    """Layer names under the points (every k-th of them, the last always, when many)."""
    step = name_ticks(ax, range(len(names)), [plot_label(n, 16, keep_end=True) for n in names],
                      max_ticks=MAX_LAYER_TICKS)
    if step > 1:
        ax.set_xlabel(f"layer (every {step}th named)", fontsize=8)


def log_axis(ax, values: Sequence[float]) -> None:
    """A log y axis with plain-number labels (0.5, 2, 10, not 5×10⁻¹).

    Between the powers of ten, ticks at 2, 3, 4, 5 and 7 times them are labelled when the
    data span less than one decade, at 2 and 5 times them below two decades, and not at all
    beyond: a narrow range still shows a few labels and a wide one is not crowded.
    """
    ax.set_yscale("log")
    plain = ticker.FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    decades = math.log10(max(values) / min(values)) if min(values) > 0 else math.inf
    subs = (2.0, 3.0, 4.0, 5.0, 7.0) if decades < 1 else (2.0, 5.0)
    ax.yaxis.set_minor_locator(ticker.LogLocator(base=10, subs=subs))
    ax.yaxis.set_minor_formatter(plain if decades < 2 else ticker.NullFormatter())
    ax.tick_params(axis="y", which="both", labelsize=8)


def _legend(fig: Figure, layers: Layers) -> None:
    if len(layers) > 1:
        handles, labels = fig.axes[0].get_legend_handles_labels()
        fig.legend(handles, [plot_label(label, 24) for label in labels], fontsize=7,
                   frameon=False, loc="outside right upper",
                   ncols=1 if len(labels) <= 16 else 2)


def _value(value: float | None) -> float:
    """A value drawable on a log axis, else NaN (left out)."""
    return value if is_finite(value) and value > 0 else math.nan
