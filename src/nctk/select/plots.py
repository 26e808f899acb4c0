"""The learning curves of a selection: one plot, every model trained, rungs marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from nctk.report.ranking_plots import HIGHLIGHT, model_colours, style_axes


def curves_figure(curves: Mapping[str, Sequence[float]], rungs: Sequence[int], pick: str,
                  *, val_samples: int = 0) -> Figure:
    """Validation accuracy (%) of every model against the epoch, a dashed vertical line at
    each rung, a dot where a model stopped, the pick drawn thick.

    Args:
        curves: model -> validation accuracy of epochs 1..k (in [0, 1]).
        rungs: the rung epochs.
        pick: the chosen model.
        val_samples: size of the validation data (in the axis label).
    """
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    style_axes(ax)
    for rung in rungs:
        ax.axvline(rung, color="#6b7280", linestyle="--", linewidth=1.0, zorder=1)
    colours = [c for c in model_colours(len(curves) + 1) if c != HIGHLIGHT][:len(curves)]
    for colour, (model, curve) in zip(colours, curves.items(), strict=True):
        epochs = list(range(1, len(curve) + 1))
        values = [100 * v for v in curve]
        chosen = model == pick
        ax.plot(epochs, values, color=HIGHLIGHT if chosen else colour,
                linewidth=2.6 if chosen else 1.2, marker="o", markersize=3,
                label=f"{model} (pick)" if chosen else model, zorder=3 if chosen else 2)
        ax.plot(epochs[-1:], values[-1:], "o", color=HIGHLIGHT if chosen else colour,
                markersize=7, zorder=4)
    ax.set_xlabel("epoch (dashed: rungs)", fontsize=9)
    size = f" ({val_samples} images)" if val_samples else ""
    ax.set_ylabel(f"validation accuracy %{size}", fontsize=9)
    ax.set_xticks(list(rungs))
    ax.legend(fontsize=7, frameon=False, loc="best", ncol=2 if len(curves) > 8 else 1)
    return fig
