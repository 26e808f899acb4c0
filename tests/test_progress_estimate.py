"""Honest long runs: progress bars on a terminal only (never in a pipe, never with
--quiet) for ``analyze timing``, ``collapse --probe`` and ``demo``; ``finetune`` on a CPU
estimates its total time from measured steps before it starts."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")  # the vision extra: nctk.extract needs it

from nctk.cli import main
from nctk.demo.assets import asset
from nctk.extract import load_dataset, load_model
from nctk.finetune.estimate import (
    Estimate,
    Run,
    Timings,
    estimate,
    format_duration,
    measure,
    plan_runs,
)
from nctk.finetune.train import TrainConfig
from nctk.progress import progress_bar


class Terminal(io.StringIO):
    """A standard error that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def pool(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    paths = []
    for i in range(3):
        x = rng.normal(size=(60, 6)) + labels[:, None] * (i + 1)
        path = tmp_path / f"m{i}.npz"
        np.savez(path, features=x, labels=labels, **{"layer:block1": x[:, :3] + 0.1})
        paths.append(str(path))
    return paths


def _stderr_of(monkeypatch, argv, terminal=True):
    stream = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert main(argv) == 0
    return stream.getvalue()


def test_progress_bar_draws_on_a_terminal_only(monkeypatch):
    for stream, enabled, drawn in ((Terminal(), True, True), (io.StringIO(), True, False),
                                   (Terminal(), False, False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert list(progress_bar(range(3), enabled=enabled, desc="work")) == [0, 1, 2]
        assert ("work" in stream.getvalue()) is drawn


@pytest.mark.parametrize("argv, label", [
    (["analyze", "timing", "--method", "logme,hscore", "--repeat", "2"], "timing"),
    (["collapse", "--probe"], "probing m0"),
])
def test_long_commands_show_progress_on_a_terminal_and_not_with_quiet(
        pool, monkeypatch, capsys, argv, label):
    argv = [*argv[:2], *pool, *argv[2:]] if argv[0] == "analyze" else [argv[0], *pool,
                                                                        *argv[1:]]
    assert label in _stderr_of(monkeypatch, argv)
    assert label not in _stderr_of(monkeypatch, [*argv, "--quiet"])
    assert label not in _stderr_of(monkeypatch, argv, terminal=False)  # a pipe
    capsys.readouterr()


def test_demo_shows_progress_of_the_extraction(monkeypatch, tmp_path, capsys):
    argv = ["demo", "--models", "cnn_small,mlp", "--methods", "logme,ncti", "--no-report",
            "--no-select", "--out", str(tmp_path / "d")]
    err = _stderr_of(monkeypatch, argv)
    assert "extracting" in err
    assert "extracting" not in _stderr_of(monkeypatch, [*argv, "--quiet"])
    capsys.readouterr()


def test_estimate_multiplies_measured_times_out():
    runs = [Run("lp", None, epochs=3, train=250, evaluated=30),
            Run("layer", "b2", epochs=3, train=250, evaluated=30)]
    timings = Timings(step={"lp": 0.5, "layer": 2.0}, setup={"lp": 1.0, "layer": 4.0},
                      read=0.01, evaluate=0.02)
    got = estimate(runs, timings, batch_size=100, test_samples=40)
    # 250 samples in batches of 100: 3 steps (the last has 50 samples)
    per_run = {m: timings.setup[m] + 3 * (3 * (timings.step[m] + 100 * 0.01) + 30 * 0.03)
               + (250 + 40) * 0.03 for m in ("lp", "layer")}
    assert got.seconds == pytest.approx(sum(per_run.values()))
    assert got.runs == 2 and got.step_seconds == {"lp": 0.5, "layer": 2.0}
    one_sample_left = estimate([Run("lp", None, 1, 201, 0)], timings, batch_size=100)
    assert one_sample_left.seconds == pytest.approx(1.0 + 2 * (0.5 + 1.0) + 201 * 0.03)


def test_plan_runs_split_validation_like_training():
    (run,) = plan_runs([("full", None)], epochs=5, samples=101, val_fraction=0.1)
    assert (run.train, run.evaluated, run.epochs) == (90, 11, 5)


def test_format_duration():
    assert [format_duration(s) for s in (0.2, 40, 95, 3000, 4 * 3600 + 5 * 60)] == [
        "1 s", "40 s", "2 min", "50 min", "4 h 05 min"]
    line = Estimate(6000.0, 18, {"lp": 0.1, "full": 1.5}, 128).line()
    assert line.startswith("estimated time on this CPU: about 1 h 40 min for 18 runs")
    assert "Linear probe 0.1 s, Full FT 1.5 s" in line


def test_measure_times_real_steps_and_leaves_model_and_rng_alone():
    adapter = load_model("demo:cnn_small")
    data = load_dataset("demo:target", split="train", transform=adapter.transform)
    before = {k: v.clone() for k, v in adapter.module.state_dict().items()}
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    runs = plan_runs([("lp", None), ("layer", "block1"), ("layer", "block3")], epochs=1,
                     samples=len(data), val_fraction=0.1)
    timings = measure(adapter.module, data, runs, TrainConfig(batch_size=16),
                      unit_names=["block1", "block2", "block3"])
    torch.testing.assert_close(torch.rand(2), expected)
    assert set(timings.step) == {"lp", "layer"} == set(timings.setup)
    assert all(t > 0 for t in [*timings.step.values(), timings.read, timings.evaluate])
    after = adapter.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def small_demo_target(folder, per_class: int = 60) -> str:
    """An ``npz:`` spec of the first ``per_class`` shipped demo target images of each class
    (a sweep's estimate needs real images, not many of them)."""
    with np.load(asset("target_subset.npz")) as shipped:
        images, labels = shipped["images"], shipped["labels"]
    rows = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    np.savez(folder / "target.npz", images=images[rows], labels=labels[rows])
    return f"npz:{folder / 'target.npz'}"


def test_finetune_on_cpu_prints_its_estimate_before_training(tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--model", "demo:cnn_small", "--data", small_demo_target(tmp_path),
                 "--sweep", "--sweep-units", "1,3", "--epochs", "1", "--batch-size", "64",
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "estimated time on this CPU: about" in captured.err
    assert "for 6 runs" in captured.err  # LP, Layer and SCL FT on 2 units, full FT
    # the library says epochs=..., sweep_units=...; the command shows its own options
    assert "fewer epochs (--epochs), fewer units (--sweep-units) or a GPU" in captured.err
    report = json.loads((out / "result.json").read_text())
    assert report["estimate"]["runs"] == 6 and report["estimate"]["seconds"] > 0
    assert set(report["estimate"]["step_seconds"]) == {"lp", "layer", "scl", "full"}
    assert report["seconds"] > 0


def test_a_sweep_with_a_unit_too_wide_for_scl_fails_before_training(tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--model", "demo:mlp", "--data", "demo:target", "--sweep",
                 "--epochs", "1", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "SCL FT on unit block1: unit output has 96 channels" in err
    assert not (out / "result.json").exists() and not (out / "lp").exists()
