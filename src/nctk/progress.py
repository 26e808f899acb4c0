"""Progress bars for long runs: tqdm on standard error, shown only on a terminal.

Every long loop of nctk (extraction, probes, timings, the demo) reports through
:func:`progress_bar`, so that the same rule holds everywhere: nothing is drawn when
``enabled`` is False (``--quiet``) or when standard error is not a terminal (a pipe, a
log file, CI), and standard output stays free for results.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True,
                 **options: Any) -> tqdm:
    """``tqdm(iterable, **options)`` on stderr; disabled unless ``enabled`` and stderr is a
    terminal (tqdm's ``disable=None``)."""
    options.setdefault("dynamic_ncols", True)
    return tqdm(iterable, file=sys.stderr, disable=None if enabled else True, **options)
