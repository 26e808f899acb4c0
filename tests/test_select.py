"""``nctk.select`` end to end on the demo models and 40 images: it makes the decisions of
the pure schedule replayed on brute-force learning curves (exactly, on CPU), its cost is
the model-epochs it trained, a killed run resumes without redoing finished rungs and picks
the same, a model that fails is dropped while the others go on."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("torchvision")  # select fine-tunes demo: models (the vision extra)

import nctk
from nctk.errors import InputError
from nctk.finetune.adapters import declared_units
from nctk.finetune.train import TrainConfig, finetune
from nctk.select import trials
from nctk.select.api import prepare, select
from nctk.select.schedule import successive_halving
from select_data import MODELS, write_npz

CONFIG = TrainConfig(epochs=3, batch_size=16, lr=0.05, val_fraction=0.25, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "train.npz", 8)


def options(tmp_path, **kw):
    return dict(config=CONFIG, budget="2.5", out_dir=tmp_path / "out",
                cache_dir=str(tmp_path / "cache")) | kw


def brute_force_curves(specs, data):
    """Every model fine-tuned for E epochs with plain ``finetune``: validation curves."""
    from nctk.extract import load_dataset, load_model

    curves = {}
    for name, spec in specs.items():
        adapter = load_model(spec)
        train = load_dataset(data).with_transform(adapter.transform)
        result = finetune(adapter.module, train, method="full", config=CONFIG,
                          unit_names=declared_units(adapter), measure_collapse=False)
        curves[name] = [h["val_accuracy"] for h in result.history]
    return curves


@pytest.mark.slow
def test_select_makes_the_replayed_decisions_of_brute_force_curves(data, tmp_path):
    chosen = nctk.select(list(MODELS), data, **options(tmp_path))
    plan = chosen.plan
    assert plan.rungs == [1, 3] and plan.shortlist == 3 and plan.sizes == [3, 1]
    curves = brute_force_curves(chosen.zero.specs, data)
    replay = successive_halving(chosen.zero.order[:plan.shortlist], plan.rungs, plan.eta,
                                lambda e, ms: {m: max(curves[m][:e]) for m in ms})
    assert replay.to_json() == chosen.schedule.to_json()
    for model, curve in chosen.curves.items():  # the rungs are prefixes of one run
        assert curve == curves[model][:len(curve)]
    trained = sum(len(c) for c in chosen.curves.values())
    assert chosen.schedule.epochs_trained == trained == 3 * 1 + 1 * 2
    assert chosen.cost_fraction == pytest.approx((plan.zero_epochs + trained) / (4 * 3))
    assert chosen.val_samples == 10 and chosen.weights.is_file()
    document = chosen.to_json()
    assert document["pick"] == chosen.pick and document["cost"]["zero_training_counted"]


def test_the_pick_weights_are_its_best_validation_network(data, tmp_path):
    import torch

    chosen = select(list(MODELS), data, **options(tmp_path))
    saved = torch.load(chosen.weights, weights_only=True)
    assert saved["model"] == chosen.pick and saved["epochs"] == 3
    assert saved["classes"] == ["dog", "frog", "horse", "ship", "truck"]
    assert saved["val_accuracy"] == max(chosen.curves[chosen.pick])
    assert any(key.startswith("head.") for key in saved["state_dict"])


@pytest.mark.slow
def test_a_killed_selection_resumes_without_redoing_finished_rungs(data, tmp_path,
                                                                     monkeypatch):
    whole = select(list(MODELS), data, **options(tmp_path / "whole"))
    real, calls = trials.train_to, []

    def interrupted(job, spec, name, epoch, **kwargs):
        calls.append((name, epoch))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job, spec, name, epoch, **kwargs)

    monkeypatch.setattr(trials, "train_to", interrupted)
    with pytest.raises(KeyboardInterrupt):
        select(list(MODELS), data, **options(tmp_path))
    finished = calls[:2]
    calls.clear()
    monkeypatch.setattr(trials, "train_to", lambda *a, **k: calls.append(a[2:4]) or real(*a, **k))
    prepared = prepare(list(MODELS), data, **options(tmp_path))
    assert prepared.resumed == 2
    resumed = prepared.run()
    assert not set(finished) & {c for c in calls if c[1] is not None}
    assert resumed.schedule.to_json() == whole.schedule.to_json()
    assert resumed.curves == whole.curves and resumed.pick == whole.pick
    calls.clear()
    again = select(list(MODELS), data, **options(tmp_path))  # finished: trains nothing
    assert [c for c in calls if c[1] is not None] == [] and again.pick == whole.pick


def test_a_model_that_fails_is_dropped_and_the_others_go_on(data, tmp_path, monkeypatch):
    real = trials.train_to

    def failing(job, spec, name, epoch, **kwargs):
        if name == "cnn_wide":
            raise RuntimeError("CUDA out of memory\nsecond line")
        return real(job, spec, name, epoch, **kwargs)

    monkeypatch.setattr(trials, "train_to", failing)
    chosen = select(list(MODELS), data, **options(tmp_path, budget="4"))
    rows = {r.model: r for r in chosen.schedule.rows}
    assert rows["cnn_wide"].failure == "RuntimeError: CUDA out of memory"
    assert chosen.pick != "cnn_wide" and chosen.pick in rows
    assert any("cnn_wide failed at rung 1" in note for note in chosen.notes)


def test_another_selection_in_the_same_folder_is_an_input_error(data, tmp_path):
    select(list(MODELS), data, **options(tmp_path))
    with pytest.raises(InputError, match=r"holds another selection \(these differ: budget\)"):
        prepare(list(MODELS), data, **options(tmp_path, budget="3"))
    other = dataclasses.replace(CONFIG, lr=0.01)
    with pytest.raises(InputError, match="these differ: config"):
        prepare(list(MODELS), data, **options(tmp_path, config=other))
    with pytest.raises(InputError, match="these differ: ties"):
        prepare(list(MODELS), data, **options(tmp_path, ties="noise"))


def test_explicit_validation_data(data, tmp_path):
    val = write_npz(tmp_path / "val.npz", 3, offset=20)
    chosen = select(list(MODELS[:2]), data, **options(tmp_path, val_data=val, budget="5"))
    assert chosen.val_samples == 15 and chosen.plan.shortlist == 2
    with pytest.raises(InputError, match="validation data are the training data"):
        prepare(list(MODELS[:2]), data, **options(tmp_path / "b", val_data=data))


def test_settings_that_cannot_select_are_input_errors(data, tmp_path):
    for kwargs, match in (({"method": "xyz"}, "unknown method 'xyz'"),
                          ({"method": "layer"}, "needs a unit"),
                          ({"method": "full", "unit": 2}, "takes no unit"),
                          ({"method": "scl", "unit": "auto"}, "give its number or name"),
                          ({"eta": 1}, "eta must be an integer >= 2"),
                          ({"ties": "loose"}, "unknown tie rule 'loose'"),
                          ({"budget": "0"}, "must be > 0"),
                          ({"config": dataclasses.replace(CONFIG, val_fraction=0.0)},
                           "validation fraction > 0")):
        with pytest.raises(InputError, match=match):
            prepare(list(MODELS), data, **options(tmp_path, **kwargs))
    assert not (tmp_path / "out").exists()


def test_a_wall_time_budget_is_turned_into_model_epochs_with_measured_steps(data, tmp_path):
    prepared = prepare(list(MODELS), data, **options(tmp_path, budget="10m"))
    plan = prepared.plan
    assert plan.epoch_seconds > 0
    assert plan.budget_epochs == pytest.approx(600 / plan.epoch_seconds)
    assert plan.shortlist == 4  # ten minutes buy every model of this tiny pool
    with pytest.raises(InputError, match=r"0.001 s is too small.*a budget of at least \d+s"):
        prepare(list(MODELS), data, **options(tmp_path / "b", budget="0.001s"))


def test_noise_ties_replay_with_the_binomial_margin(data, tmp_path):
    from nctk.select.budget import binomial_margin

    chosen = select(list(MODELS), data, **options(tmp_path, ties="noise", budget="4"))
    curves = chosen.curves
    plan = chosen.plan
    replay = successive_halving(chosen.zero.order[:plan.shortlist], plan.rungs, plan.eta,
                                lambda e, ms: {m: max(curves[m][:e]) for m in ms},
                                margin=binomial_margin(chosen.val_samples))
    assert replay.to_json() == chosen.schedule.to_json()


def test_layer_fine_tuning_of_one_unit_of_every_model(data, tmp_path):
    import torch

    chosen = select(list(MODELS[:2]), data, **options(tmp_path, method="layer", unit=2,
                                                     budget="5"))
    assert chosen.pick in ("cnn_small", "mlp") and chosen.plan.shortlist == 2
    saved = torch.load(chosen.weights, weights_only=True)
    assert saved["method"] == "layer" and saved["unit"] != "-"
