"""The suite's own rule: no tolerance at the floating-point noise floor.

A float64 result may move by a few units in the last place with another BLAS kernel, thread
count or summation order, and a loss of accuracy in a solver can multiply that; the suite
must pass on any machine. So no ``abs``, ``rel``, ``atol`` or ``rtol`` below 1e-7 in
tests/; a comparison that is exact by construction is written with ``==`` and a comment
saying why. A keyword that is not a comparison's tolerance (e.g. ``pinv``'s cutoff) carries
the comment ``# not a tolerance`` on its line."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FLOOR = 1e-7
TOLERANCE = re.compile(r"\b(abs|rel|atol|rtol)\s*=\s*([0-9]*\.?[0-9]+(?:[eE]-?[0-9]+)?)")


def tolerances_below_floor(text: str) -> list[str]:
    """``name=value`` of every positive tolerance below :data:`FLOOR` in ``text``."""
    return [f"{name}={value}" for line in text.splitlines() if "# not a tolerance" not in line
            for name, value in TOLERANCE.findall(line) if 0 < float(value) < FLOOR]


def test_the_pattern_sees_tight_tolerances_and_only_those():
    text = ("approx(x, abs=1e-09) allclose(a, b, rtol=0, atol=1e-7)\n"
            "approx(y, rel=5e-12)\npinv(m, rtol=1e-20)  # not a tolerance")
    assert tolerances_below_floor(text) == ["abs=1e-09", "rel=5e-12"]


def test_no_test_compares_at_the_noise_floor():
    others = sorted(p for p in TESTS.glob("*.py") if p.name != Path(__file__).name)
    found = {path.name: tight for path in others
             if (tight := tolerances_below_floor(path.read_text(encoding="utf-8")))}
    assert found == {}
