"""Matplotlib figures of a ranking: scores against the ground truth, NCTI terms, timings.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no
global backend or figure registry is touched; saving uses the Agg canvas), so the caller
decides how to embed or save it. NaN values are left out of the drawings, never plotted as 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

#: One colour per series, colour-blind safe (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")
ACCENT = "#0072B2"
HIGHLIGHT = "#D55E00"


def model_colours(count: int) -> list:
    """``count`` distinct colours, one per model: the colour-blind-safe :data:`PALETTE`
    up to its length, then matplotlib's ``tab10``; up to 20 ``tab20`` with its ten strong
    shades before their light twins (so that neighbours differ in hue); beyond that evenly
    spaced on ``turbo``."""
    from matplotlib import colormaps

    if count <= len(PALETTE):
        return list(PALETTE[:count])
    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in [*range(0, 20, 2), *range(1, 20, 2)][:count]]
    return [colormaps["turbo"](x) for x in np.linspace(0.0, 1.0, count)]


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def style_axes(ax) -> None:
    """The house style of every nctk plot: light grid, no top/right spines, small ticks."""
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8)


def name_ticks(ax, positions: Sequence[float], labels: Sequence[str], *,
               max_ticks: int = 12) -> int:
    """Label x ticks at ``positions`` with ``labels``, never overlapping.

    At most ``max_ticks`` are labelled (every k-th, the last always); short labels stand
    side by side, longer ones upright. Returns k (1 when every label is shown).
    """
    step = max(1, math.ceil(len(labels) / max_ticks))
    shown = sorted({*range(len(labels) - 1, -1, -step)})
    texts = [labels[i] for i in shown]
    upright = sum(max(map(len, text.splitlines()), default=0) + 2 for text in texts) > 48
    ax.set_xticks([positions[i] for i in shown],
                  [" ".join(t.splitlines()) if upright else t for t in texts],
                  rotation=90 if upright else 0, fontsize=7)
    return step


def is_finite(value: float | None) -> bool:
    """True for a real, finite number (None and NaN/inf are missing values in plots)."""
    return value is not None and math.isfinite(value)


def scores_vs_truth(scores: Mapping[str, float], truth: Mapping[str, float], *, method: str,
                    weighted_tau: float | None) -> Figure:
    """Scatter of one method's scores (y) against the ground truth (x), one point per model.

    The model ranked first by the method is drawn in the highlight colour and named; the
    title carries the weighted Kendall tau (``scipy.stats.weightedtau(scores, truth)``).
    Models with a NaN score or without a ground-truth value are left out and counted in
    the x label.
    """
    models = [m for m in scores if is_finite(scores[m]) and is_finite(truth.get(m))]
    left_out = len(scores) - len(models)
    fig = _new_figure(3.3, 2.7)
    ax = fig.add_subplot()
    style_axes(ax)
    if models:
        x = np.array([truth[m] for m in models])
        y = np.array([scores[m] for m in models])
        best = int(np.argmax(y))
        ax.scatter(x, y, s=26, color=ACCENT, alpha=0.85, edgecolors="white", linewidths=0.6)
        ax.scatter(x[best], y[best], s=46, color=HIGHLIGHT, edgecolors="white", linewidths=0.6,
                   zorder=3)
        ax.annotate(plot_label(models[best], 18), (x[best], y[best]), xytext=(4, 4),
                    textcoords="offset points", fontsize=7, color=HIGHLIGHT)
    tau = f"{weighted_tau:.3f}" if is_finite(weighted_tau) else "n/a"
    ax.set_title(f"{plot_label(method, 22)}   weighted τ = {tau}", fontsize=9)
    xlabel = "ground truth"
    if left_out:
        xlabel += f"  ({left_out} model{'s' if left_out > 1 else ''} without a value left out)"
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("score", fontsize=8)
    return fig


def ncti_terms(normalised: Mapping[str, Mapping[str, float]], terms: Sequence[str]) -> Figure:
    """Grouped bars, one group per model: the normalised terms of a pool-relative score.

    Args:
        normalised: model -> {term: value in [0, 1]} (min-max over the pool), in the
            order the groups are drawn.
        terms: the term names in drawing order (e.g. ``seli``, ``ncc``, ``vc``).
    """
    models = list(normalised)
    fig = _new_figure(min(11.0, max(4.5, 0.5 * len(models) * max(1, len(terms)) / 2 + 1.5)),
                      3.0)
    ax = fig.add_subplot()
    style_axes(ax)
    ax.grid(False, axis="x")
    bar = 0.8 / max(1, len(terms))
    positions = np.arange(len(models))
    for i, term in enumerate(terms):
        values = [normalised[m].get(term, math.nan) for m in models]
        ax.bar(positions + (i - (len(terms) - 1) / 2) * bar, values, width=bar * 0.92,
               color=PALETTE[i % len(PALETTE)], label=plot_label(term))
    ax.set_xticks(positions, [plot_label(m, 18) for m in models], rotation=35, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("normalised (0 = pool min, 1 = max)", fontsize=8)
    ax.legend(fontsize=8, frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.0),
              ncols=len(terms))
    return fig


def timings(seconds: Mapping[str, float]) -> Figure:
    """Horizontal bars: wall-clock seconds each method took to score the whole pool."""
    methods = list(seconds)
    fig = _new_figure(6.4, max(1.2, 0.3 * len(methods) + 0.9))
    ax = fig.add_subplot()
    style_axes(ax)
    values = [seconds[m] if is_finite(seconds[m]) else math.nan for m in methods]
    ax.barh(np.arange(len(methods)), values, height=0.6, color=ACCENT)
    ax.set_yticks(np.arange(len(methods)), [plot_label(m, 28) for m in methods])
    ax.invert_yaxis()
    positive = [v for v in values if is_finite(v) and v > 0]
    if len(positive) > 1 and max(positive) / min(positive) > 100:
        ax.set_xscale("log")
    ax.set_xlabel("seconds to score the pool", fontsize=8)
    return fig


def plot_label(text: str, limit: int | None = None, *, keep_end: bool = False) -> str:
    """``text`` as a matplotlib label: shortened to ``limit`` characters with an ellipsis
    (at the start with ``keep_end``, for module paths whose end tells them apart), and
    ``$`` escaped so that a name like ``a$\\x$`` is drawn verbatim, never parsed as mathtext
    (which fails on unknown symbols).
    """
    if limit is not None and len(text) > limit:
        text = "…" + text[len(text) - limit + 1:] if keep_end else text[: limit - 1] + "…"
    return text.replace("$", r"\$")
