"""Every registered method on features (or logits) scaled by 1e30 and 1e-30: a finite
score, no traceback, and the scale-1 ranking wherever docs/methods-core.md's "Feature
scale" table says the method is invariant (the table must name every method)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import nctk
from nctk.transfer import get_method
from scores_core_data import blobs

DOC = Path(__file__).resolve().parents[1] / "docs" / "methods-core.md"


def scale_table() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Feature scale"):]
    section = section[:section.index("\n## ", 4)]
    return dict(re.findall(r"^\| `(\w+)` \| (.+?) \|$", section, flags=re.M))


def is_invariant(behaviour: str) -> bool:
    return re.search(r"(^|; )invariant", behaviour) is not None


def test_table_names_every_method():
    table = scale_table()
    assert set(table) == set(nctk.available_methods())
    for behaviour in table.values():
        assert is_invariant(behaviour) or ":" in behaviour  # a reason where not invariant


@pytest.fixture(scope="module")
def pool():
    _, y = blobs(n=150, d=12, classes=3, seed=0)
    rng = np.random.default_rng(0)
    features = {f"m{i}": blobs(n=150, d=12, classes=3, spread=0.6 + i, seed=0)[0]
                + 0.3 * rng.standard_normal((150, 12)) for i in range(3)}
    logits = {f"m{i}": rng.standard_normal((150, 7)) + 2.0 * np.eye(7)[(y + i) % 7]
              for i in range(3)}
    return features, logits, y


@pytest.mark.parametrize("name", nctk.available_methods())
def test_extreme_scales(name, pool):
    features, logits, y = pool
    arrays = logits if get_method(name).input == "source_logits" else features
    invariant = is_invariant(scale_table()[name])
    base = nctk.rank(arrays, y, name)
    for scale in (1e30, 1e-30):
        for dtype in (np.float64, np.float32):
            scaled = {m: (x * scale).astype(dtype) for m, x in arrays.items()}
            result = nctk.rank(scaled, y, name)
            assert all(np.isfinite(v) for v in result.scores.values()), (scale, dtype)
            if invariant:
                assert result.ranking == base.ranking, (scale, dtype)
