"""PNG plots of a sweep (Table 3 as a chart) and of the data-scarcity curves (Figure 11).

Built on :class:`matplotlib.figure.Figure` without ``pyplot`` (no global state), in the
house style of :mod:`nctk.report`. :func:`sweep_figure` and :func:`scarcity_figure` return
the figure (for tests and embedding); :func:`plot_sweep` and :func:`plot_scarcity` save it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from nctk.finetune.methods import METHOD_LABELS
from nctk.finetune.train import FinetuneResult
from nctk.io import atomic_path
from nctk.report.nc_plots import log_axis
from nctk.report.ranking_plots import (
    PALETTE,
    is_finite,
    name_ticks,
    plot_label,
    style_axes,
)

#: One colour per fine-tuning method, the same in every plot.
METHOD_COLOURS = dict(zip(METHOD_LABELS, PALETTE, strict=False))
#: At most this many unit labels on the x axis (every k-th is shown, the last always).
MAX_UNIT_TICKS = 12


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, facecolor="white")
    return path


def _accuracy(result: FinetuneResult, tested: bool) -> float:
    value = result.test_accuracy if tested else result.val_accuracy
    return 100 * value if value is not None else math.nan


def sweep_figure(results: Sequence[FinetuneResult],
                 numbers: Mapping[str, int] | None = None) -> Figure:
    """Accuracy (left) and penultimate NC1 (right) against the unit tuned.

    Layer FT and SCL FT are lines over the units (x = unit number, named under the axis);
    the linear probe and full FT tune no single unit and are horizontal dashed lines.
    Accuracy is the test accuracy when every run measured one, else the validation accuracy
    (the axis says which).
    """
    numbers = dict(numbers or {})
    tested = all(r.test_accuracy is not None for r in results)
    units = sorted({r.unit for r in results if r.unit != "-"},
                   key=lambda u: (numbers.get(u, math.inf), u))
    position = {u: numbers.get(u, i + 1) for i, u in enumerate(units)}
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    panels = fig.subplots(1, 2)
    for ax, value, ylabel in (
            (panels[0], lambda r: _accuracy(r, tested),
             "test accuracy (%)" if tested else "validation accuracy (%)"),
            (panels[1], lambda r: r.train_nc1, "penultimate NC1 (train, log scale)")):
        style_axes(ax)
        for method, label in METHOD_LABELS.items():
            runs = [r for r in results if r.method == method]
            if not runs:
                continue
            colour = METHOD_COLOURS[method]
            if method in ("lp", "full"):
                ax.axhline(value(runs[0]), color=colour, linestyle="--", linewidth=1.3,
                           label=label)
            else:
                runs.sort(key=lambda r: position[r.unit])
                ax.plot([position[r.unit] for r in runs], [value(r) for r in runs],
                        marker="o", markersize=4, linewidth=1.5, color=colour, label=label)
        ax.set_ylabel(ylabel, fontsize=8)
        _unit_ticks(ax, units, position)
    nc1 = [r.train_nc1 for r in results if is_finite(r.train_nc1) and r.train_nc1 > 0]
    if nc1:
        log_axis(panels[1], nc1)
    panels[0].set_title("accuracy per tuned unit", fontsize=9)
    panels[1].set_title("penultimate NC1 after fine-tuning", fontsize=9)
    handles, labels = panels[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, frameon=False, loc="outside right upper")
    fig.suptitle("Fine-tuning methods (Li et al. 2023, Table 3 layout)", fontsize=10)
    return fig


def _unit_ticks(ax, units: Sequence[str], position: Mapping[str, int]) -> None:
    if not units:
        ax.set_xticks([])
        return
    name_ticks(ax, [position[u] for u in units],
               [f"{position[u]}\n{plot_label(u, 16, keep_end=True)}" for u in units],
               max_ticks=MAX_UNIT_TICKS)
    ax.set_xlabel("unit tuned (number, module)", fontsize=8)


def plot_sweep(results: Sequence[FinetuneResult], path: str | Path,
               numbers: Mapping[str, int] | None = None) -> Path:
    """Save :func:`sweep_figure` as a PNG at ``path``."""
    return _save(sweep_figure(results, numbers), path)


def scarcity_figure(curves: Mapping) -> Figure:
    """Accuracy against samples per class (log x), one line per method (Figure 11)."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    style_axes(ax)
    for method, values in curves["accuracy"].items():
        ax.plot(curves["per_class"], [100 * v if v is not None else math.nan for v in values],
                marker="o", color=METHOD_COLOURS.get(method), label=METHOD_LABELS[method])
    ax.set_xscale("log")
    ax.set_xticks(curves["per_class"], [str(k) for k in curves["per_class"]])
    ax.minorticks_off()
    ax.set_xlabel("training samples per class", fontsize=8)
    ax.set_ylabel("accuracy (%)", fontsize=8)
    ax.set_title(f"Data scarcity (Layer/SCL FT on unit {plot_label(str(curves['unit']), 30)})",
                 fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    return fig


def plot_scarcity(curves: Mapping, path: str | Path) -> Path:
    """Save :func:`scarcity_figure` as a PNG at ``path``."""
    return _save(scarcity_figure(curves), path)
