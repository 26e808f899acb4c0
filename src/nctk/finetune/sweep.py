"""The paper's comparisons: every method on every unit (Tables 3-5) and data scarcity (Fig. 11).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch.nn as nn
from torch.utils.data import Dataset

from nctk.finetune.data import per_class_subset
from nctk.finetune.methods import METHOD_LABELS
from nctk.finetune.train import FinetuneResult, TrainConfig, finetune
from nctk.finetune.units import find_units, resolve_unit


def run_dir_name(method: str, unit_index: int | str | None) -> str:
    """The sub-folder of one sweep run: ``lp``, ``layer_unit3``, ... (``"*"`` as the unit
    gives the glob pattern of every unit)."""
    return method if unit_index is None else f"{method}_unit{unit_index}"


def _run_dir(out_dir: str | Path | None, method: str, unit_index: int | None) -> Path | None:
    return None if out_dir is None else Path(out_dir) / run_dir_name(method, unit_index)


def sweep(model: nn.Module, train_data: Dataset, *, test_data: Dataset | None = None,
          units: Sequence[int | str] | None = None, unit_names: list[str] | None = None,
          config: TrainConfig | None = None, out_dir: str | Path | None = None,
          resume: bool = False, model_name: str | None = None) -> list[FinetuneResult]:
    """LP, then Layer FT and SCL FT on each unit, then full FT (the layout of Table 3).

    ``units`` defaults to every unit; each run checkpoints under ``out_dir/<method>[_unitN]``
    and, with ``resume``, a run whose checkpoint exists continues from it.
    """
    found = find_units(model, unit_names)
    chosen = [resolve_unit(found, u, type(model).__name__) for u in units] if units else found
    plan = [("lp", None)] + [(m, u) for u in chosen for m in ("layer", "scl")] + [("full", None)]
    results = []
    for method, unit in plan:
        run_dir = _run_dir(out_dir, method, unit.index if unit else None)
        results.append(finetune(
            model, train_data, method=method, unit=unit.name if unit else None,
            unit_names=unit_names, test_data=test_data, config=config, out_dir=run_dir,
            resume=resume and run_dir is not None and (run_dir / "checkpoint.pt").is_file(),
            model_name=model_name))
        results[-1].network = None  # free the copy of the model
    return results


def unit_numbers(model: nn.Module, unit_names: list[str] | None = None) -> dict[str, int]:
    """Unit name -> its 1-based number, for labelling tables."""
    return {u.name: u.index for u in find_units(model, unit_names)}


def format_table(results: Sequence[FinetuneResult], numbers: dict[str, int] | None = None
                 ) -> str:
    """Plain-text table: method, unit, accuracy (%), penultimate NC1, % parameters trained.

    Accuracy is the test accuracy when measured, otherwise the best validation accuracy,
    with the validation size behind it in the header (``val acc % (n=60)``), or in each
    cell when the runs validated on different sizes.
    """
    numbers = numbers or {}
    tested = all(r.test_accuracy is not None for r in results)
    sizes = {r.val_samples for r in results}
    shared = len(sizes) == 1
    title = ("test acc %" if tested else
             f"val acc % (n={next(iter(sizes))})" if shared else "val acc % (n)")
    header = ("method", "unit", title, "penult. NC1", "% params")
    rows = [header]
    for r in results:
        accuracy = r.test_accuracy if tested else r.val_accuracy
        cell = "n/a" if accuracy is None else f"{100 * accuracy:.2f}"
        if not tested and not shared:
            cell += f" (n={r.val_samples})"
        unit = "-" if r.unit == "-" else f"{numbers.get(r.unit, '?')} ({r.unit})"
        rows.append((METHOD_LABELS[r.method], unit, cell, f"{r.train_nc1:.4g}",
                     f"{100 * r.param_share:.2f}%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def scarcity(model: nn.Module, train_data: Dataset, *, per_class: Sequence[int],
             unit: int | str, test_data: Dataset | None = None,
             unit_names: list[str] | None = None, config: TrainConfig | None = None,
             methods: Sequence[str] = ("lp", "layer", "scl", "full")) -> dict:
    """Figure 11: accuracy of each method when training on ``k`` samples per class.

    The paper tunes Block 5 of ResNet-18 for Layer/SCL FT. Returns
    ``{"per_class": [...], "unit": name, "accuracy": {method: [...]}, "nc1": {method: [...]}}``
    (test accuracy when ``test_data`` is given, else best validation accuracy).
    """
    config = config or TrainConfig()
    name = resolve_unit(find_units(model, unit_names), unit, type(model).__name__).name
    curves = {"per_class": list(per_class), "unit": name,
              "accuracy": {m: [] for m in methods}, "nc1": {m: [] for m in methods}}
    for k in per_class:
        subset = per_class_subset(train_data, k, config.seed)
        for method in methods:
            r = finetune(model, subset, method=method,
                         unit=name if method in ("layer", "scl") else None,
                         unit_names=unit_names, test_data=test_data,
                         config=dataclasses.replace(config))
            curves["accuracy"][method].append(
                r.test_accuracy if r.test_accuracy is not None else r.val_accuracy)
            curves["nc1"][method].append(r.train_nc1)
    return curves
