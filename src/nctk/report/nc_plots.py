"""Matplotlib figures of neural collapse: NC1 and CDNV per layer, NC1 against accuracy.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no
global state; the caller saves or embeds it, e.g. ``fig.savefig(path)``). NaN and
infinite values are left out of the drawing, never plotted as 0.

``layers`` arguments are model -> layer name -> metrics, i.e. model -> the output of
:func:`nctk.collapse.layer_profile`; layers are drawn in the first model's order (later
models' extra layers appended), shallow to deep with the penultimate last.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from nctk.report.ranking_plots import ACCENT, HIGHLIGHT, PALETTE, is_finite, style_axes

Layers = Mapping[str, Mapping[str, Mapping[str, float]]]

_TITLES = {"nc1": "NC1 = tr(Σ_W Σ_B⁺)/K", "cdnv": "CDNV (class-distance normalised variance)"}


def plot_nc1(layers: Layers) -> Figure:
    """NC1 per layer on a log scale, one line per model (Li et al. 2023, Figs. 2 and 8)."""
    fig = Figure(figsize=(4.6 if len(layers) == 1 else 5.6, 3.0), layout="constrained")
    _draw_layer_metric(fig.add_subplot(), layers, "nc1")
    _legend(fig, layers)
    return fig


def plot_cdnv(layers: Layers) -> Figure:
    """CDNV per layer on a log scale, one line per model."""
    fig = Figure(figsize=(4.6 if len(layers) == 1 else 5.6, 3.0), layout="constrained")
    _draw_layer_metric(fig.add_subplot(), layers, "cdnv")
    _legend(fig, layers)
    return fig


def plot_layer_profile(layers: Layers, *, probe: Mapping[str, Mapping[str, float]] | None = None
                       ) -> Figure:
    """Two panels, NC1 and CDNV per layer (log scale), one line per model.

    ``probe`` (model -> layer -> linear-probe accuracy) adds the accuracy on a second axis
    of the NC1 panel, dashed, as in Li et al. Fig. 8 (left).
    """
    fig = Figure(figsize=(9.0 if len(layers) == 1 else 10.0, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    order = _draw_layer_metric(left, layers, "nc1")
    _draw_layer_metric(right, layers, "cdnv")
    if probe:
        twin = left.twinx()
        for i, (model, accuracy) in enumerate(probe.items()):
            y = [accuracy[name] if is_finite(accuracy.get(name)) else math.nan
                 for name in order]
            twin.plot(range(len(order)), y, linestyle="--", marker="s", markersize=3,
                      linewidth=1.1, alpha=0.8,
                      color=PALETTE[i % len(PALETTE)] if len(layers) > 1 else HIGHLIGHT,
                      label=f"{model} probe")
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
    fig = Figure(figsize=(4.4, 3.4), layout="constrained")
    ax = fig.add_subplot()
    style_axes(ax)
    if names:
        x = np.array([nc1[n] for n in names], dtype=float)
        y = np.array([accuracy[n] for n in names], dtype=float)
        ax.scatter(x, y, s=28, color=ACCENT, edgecolors="white", linewidths=0.6, zorder=3)
        for name, xi, yi in zip(names, x, y, strict=True):
            ax.annotate(name if len(name) <= 16 else name[:15] + "…", (xi, yi),
                        xytext=(4, 3), textcoords="offset points", fontsize=7)
        if len(names) >= 2 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            grid = np.linspace(x.min(), x.max(), 50)
            ax.plot(grid, slope * grid + intercept, color="#6b7280", linewidth=1,
                    linestyle=":")
    if correlation:
        parts = [f"{label} {correlation[key]:.3f}" for key, label in
                 (("pearson", "Pearson"), ("spearman", "Spearman"), ("weighted_tau", "w-τ"))
                 if is_finite(correlation.get(key))]
        ax.set_title("of −NC1 with accuracy: " + ", ".join(parts), fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    return fig


def _draw_layer_metric(ax, layers: Layers, metric: str) -> list[str]:
    style_axes(ax)
    order: list[str] = []
    for profile in layers.values():
        order += [name for name in profile if name not in order]
    for i, (model, profile) in enumerate(layers.items()):
        y = [_value(profile.get(name, {}).get(metric)) for name in order]
        ax.plot(range(len(order)), y, marker="o", markersize=3.5, linewidth=1.4,
                color=PALETTE[i % len(PALETTE)], label=model)
    if any(is_finite(v.get(metric)) and v.get(metric) > 0
           for p in layers.values() for v in p.values()):
        ax.set_yscale("log")
    ax.set_xticks(range(len(order)), [n if len(n) <= 14 else n[:13] + "…" for n in order],
                  rotation=45, ha="right")
    ax.set_ylabel(f"{metric} (log scale)", fontsize=8)
    ax.set_title(_TITLES.get(metric, metric) + " per layer", fontsize=9)
    return order


def _legend(fig: Figure, layers: Layers) -> None:
    if len(layers) > 1:
        handles, labels = fig.axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, frameon=False, loc="outside right upper")


def _value(value: float | None) -> float:
    """A value drawable on a log axis, else NaN (left out)."""
    return value if is_finite(value) and value > 0 else math.nan
