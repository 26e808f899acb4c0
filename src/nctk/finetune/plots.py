"""PNG plots of a sweep (Table 3 as bars) and of the data-scarcity curves (Figure 11)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from nctk.finetune.methods import METHOD_LABELS
from nctk.finetune.train import FinetuneResult
from nctk.io import atomic_path


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_sweep(results: Sequence[FinetuneResult], path: str | Path,
               numbers: dict[str, int] | None = None) -> Path:
    """Accuracy (left) and penultimate NC1 (right) of every run, one bar per run."""
    numbers = numbers or {}
    labels = [METHOD_LABELS[r.method]
              + ("" if r.unit == "-" else f"\nunit {numbers.get(r.unit, r.unit)}")
              for r in results]
    accuracy = [100 * (r.test_accuracy if r.test_accuracy is not None else r.val_accuracy or 0)
                for r in results]
    colours = [f"C{list(METHOD_LABELS).index(r.method)}" for r in results]
    fig, (ax_acc, ax_nc1) = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(results)), 4))
    ax_acc.bar(range(len(results)), accuracy, color=colours)
    ax_acc.set_ylabel("accuracy (%)")
    ax_nc1.bar(range(len(results)), [r.train_nc1 for r in results], color=colours)
    ax_nc1.set_ylabel("penultimate NC1 (train)")
    ax_nc1.set_yscale("log")
    for ax in (ax_acc, ax_nc1):
        ax.set_xticks(range(len(results)), labels, rotation=60, fontsize=7)
    fig.suptitle("Fine-tuning methods (Li et al. 2023, Table 3 layout)")
    return _save(fig, path)


def plot_scarcity(curves: dict, path: str | Path) -> Path:
    """Accuracy against samples per class, one line per method (Figure 11)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, values in curves["accuracy"].items():
        ax.plot(curves["per_class"], [100 * v for v in values], marker="o",
                label=METHOD_LABELS[method])
    ax.set_xscale("log")
    ax.set_xlabel("training samples per class")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Data scarcity (Layer/SCL FT on unit {curves['unit']})")
    ax.legend()
    return _save(fig, path)
