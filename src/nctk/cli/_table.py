"""Aligned plain-text tables for the terminal (no dependencies), shared by the commands."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def fmt_number(value: Any, digits: int = 4, *, scientific: bool = True) -> str:
    """A number for a table cell: ``digits`` decimals, "nan" for NaN/None, ints as ints.

    With ``scientific``, magnitudes >= 1e7 or below 10**-digits use exponent notation
    (so tiny scores stay readable); without it, every float gets ``digits`` decimals.
    """
    if value is None:
        return "nan"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if scientific and value != 0 and (abs(value) >= 1e7 or abs(value) < 10 ** -digits):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, digits: int = 4,
                 scientific: bool = True, indent: str = "") -> str:
    """Rows under a header, one column per header, separated by two spaces.

    Numbers are formatted with :func:`fmt_number` (``digits``, ``scientific``) and
    right-aligned; other cells are
    left-aligned. A dashed rule separates the header from the rows.
    """
    cells = [[fmt_number(v, digits, scientific=scientific) for v in row] for row in rows]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows)
               for i in range(len(headers))]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(list(headers)), indent + "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))
