"""Readability checks on matplotlib figures, shared by the plot tests."""

from __future__ import annotations

from itertools import combinations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text


def _drawn_tick_labels(axis) -> list[Text]:
    """Tick labels the axis draws: non-empty, at a location inside the view interval."""
    low, high = sorted(axis.get_view_interval())
    ticks = axis.get_major_ticks() + axis.get_minor_ticks()
    return [tick.label1 for tick in ticks
            if low <= tick.get_loc() <= high and tick.label1.get_visible()
            and tick.label1.get_text()]


def assert_readable(fig: Figure) -> None:
    """After drawing: every drawn text lies inside the figure, and no two tick labels of
    one axis overlap."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ticks = {id(t): t for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for t in axis.get_ticklabels(which="both")}
    drawn = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for t in _drawn_tick_labels(axis)}
    box = fig.bbox
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        if id(text) in ticks and id(text) not in drawn:
            continue
        extent = text.get_window_extent(renderer)
        assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1, text.get_text()
        assert extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1, text.get_text()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            boxes = [t.get_window_extent(renderer) for t in _drawn_tick_labels(axis)]
            for a, b in combinations(boxes, 2):
                assert not a.overlaps(b), "overlapping tick labels"
