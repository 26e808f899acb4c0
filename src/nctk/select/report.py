"""The HTML report of a selection: the zero-training ranking report of ``nctk rank``
(:func:`nctk.report.write_report`) with a first section for the selection: the pick, the
rung table and the learning curves of every model trained (one plot, rungs marked)."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Any


def _cell(value: Any) -> str:
    return f"<td>{escape(str(value))}</td>"


def rung_table_html(selection: Any) -> str:
    """Every model: zero-training rank, validation accuracy (%) per rung, outcome."""
    schedule = selection.schedule
    rows_by_model = {row.model: row for row in schedule.rows}
    head = "<tr><th>zero rank</th><th>model</th>" + "".join(
        f"<th>epoch {r}</th>" for r in schedule.rungs) + "<th>outcome</th></tr>"
    body = []
    for rank, model in enumerate(selection.zero.order, start=1):
        row = rows_by_model.get(model)
        scores = [f"{100 * v:.1f}" for v in row.scores] if row else []
        cells = scores + ["—"] * (len(schedule.rungs) - len(scores))
        body.append(_cell(rank) + _cell(model) + "".join(map(_cell, cells))
                    + _cell(outcome(row, selection.pick)))
    return ('<div class="table-scroll"><table><thead>' + head + "</thead><tbody>"
            + "".join(f"<tr>{r}</tr>" for r in body) + "</tbody></table></div>")


def outcome(row: Any, pick: str) -> str:
    """Where a model of the rung table stopped, in words."""
    if row is None:
        return "not shortlisted"
    if row.failure:
        return f"failed at rung {row.dropped_at + 1}: {row.failure}"
    if row.model == pick:
        return "PICK"
    if row.dropped_at is None:
        return "last rung"
    return f"dropped after rung {row.dropped_at + 1}"


def selection_section(selection: Any) -> str:
    """The HTML body of the selection section."""
    from nctk.report.html import figure_html
    from nctk.select.plots import curves_figure

    plan = selection.plan
    lead = (f"Pick: <strong>{escape(selection.pick)}</strong> ({escape(selection.spec)}), "
            f"the best validation accuracy at the last rung (epoch {plan.epochs}). Compute: "
            f"{selection.cost_fraction:.1%} of brute force ({plan.pool} models × "
            f"{plan.epochs} epochs), the zero-training phase counted.")
    figure = figure_html(
        curves_figure(selection.curves, plan.rungs, selection.pick,
                      val_samples=selection.val_samples),
        "validation accuracy against the epoch of every model trained",
        "Learning curves of the models trained; dashed lines: the rungs.")
    return f'<p class="lead">{lead}</p>' + rung_table_html(selection) + figure


def write_select_report(path: str | os.PathLike, selection: Any) -> Path:
    """The rank workflow's report of the zero-training phase with the selection section
    first (atomically); its path."""
    outcome = selection.zero.outcome
    outcome.add_section("selection", "Selection by successive halving",
                        selection_section(selection))
    return outcome.write_report(
        path, title=f"nctk select: {selection.plan.pool} models, pick {selection.pick}",
        notes=selection.notes)
