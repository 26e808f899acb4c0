"""``nctk demo``'s closing select step on a 3-model slice of the shipped pool: it prints the
plan, the rung table and the pick beside the true best, and demo.json and the report carry
the selection (fine-tuned with the ground truth's recipe)."""

from __future__ import annotations

import json

import pytest

from nctk.cli import main

pytestmark = pytest.mark.slow
pytest.importorskip("torchvision")  # the demo extracts features (the vision extra)


def test_demo_ends_with_a_selection_beside_the_true_best(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--models", "cnn_small,mlp,cnn_wide",
                 "--methods", "recommended,ncti", "--select-budget", "1.5", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "nctk select: which model to fine-tune" in text and "rung table" in text
    data = json.loads((out / "demo.json").read_text())
    selection = data["selection"]
    truth = data["ground_truth"]
    assert selection["pick"] in truth and 0 < selection["cost_fraction"] < 1
    assert selection["plan"]["epochs"] == data["pool"].get("recipe", {}).get("epochs", 9)
    best = max(truth, key=truth.get)
    regret = 100 * (truth[best] - truth[selection["pick"]])
    assert f"true best: {best}" in text and f"regret {regret:.2f} points" in text
    assert "Selection by successive halving" in (out / "report.html").read_text()
    assert f"the select step took {data['seconds']['select']:.1f} s" in text
