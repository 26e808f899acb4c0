"""Rungs of one fine-tuning run (successive halving's prefixes), explicit validation data,
the validation size in the table, and the stability of ``--unit auto``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from nctk.collapse import measure
from nctk.errors import InputError
from nctk.finetune.auto_unit import UnitSelection, bootstrap_draws, penultimate_nc1
from nctk.finetune.sweep import format_table
from nctk.finetune.train import finetune
from test_finetune import _states_equal, fast, random_images, tiny_resnet


class CountingData(Dataset):
    """``base`` counting the items fetched (training batches, validation, NC1 passes)."""

    def __init__(self, base: TensorDataset):
        self.base, self.calls = base, 0
        self.labels = base.tensors[1].numpy()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        self.calls += 1
        return self.base[i]


def _curve(result) -> list[tuple]:
    return [(h["epoch"], h["train_loss"], h["train_accuracy"], h["val_accuracy"], h["lr"])
            for h in result.history]


def test_rungs_are_prefixes_of_one_run_and_cost_only_their_new_epochs(tmp_path):
    data = random_images()
    config = fast(epochs=3, batch_size=6)
    whole = finetune(tiny_resnet(), data, method="full", config=config)
    counting = CountingData(data)
    first = finetune(tiny_resnet(), counting, method="full", config=config, out_dir=tmp_path,
                     stop_after=1, measure_collapse=False)
    one_epoch = counting.calls  # 18 training + 6 validation fetches, no NC1 pass
    assert one_epoch == 24 and first.epochs_run == 1 and np.isnan(first.train_nc1)
    assert first.val_accuracy == whole.history[0]["val_accuracy"]
    second = finetune(tiny_resnet(), counting, method="full", config=config, out_dir=tmp_path,
                      resume=True, stop_after=2, measure_collapse=False)
    assert counting.calls == 2 * one_epoch and second.epochs_run == 2
    last = finetune(tiny_resnet(), counting, method="full", config=config, out_dir=tmp_path,
                    resume=True)
    assert counting.calls == 3 * one_epoch + 18  # the third epoch, then the NC1 pass
    assert _curve(last) == _curve(whole)  # exact: the same floats, not merely close
    _states_equal(whole.network, last.network)
    assert last.train_nc1 == whole.train_nc1 and last.val_accuracy == whole.val_accuracy
    assert max(h["val_accuracy"] for h in whole.history[:2]) == second.val_accuracy


def test_a_rung_outside_the_run_or_behind_its_checkpoint_is_an_input_error(tmp_path):
    data = random_images()
    for bad in (0, 3):
        with pytest.raises(InputError, match=rf"stop_after must be an epoch in 1\.\.2.*{bad}"):
            finetune(tiny_resnet(), data, method="lp", config=fast(epochs=2), stop_after=bad)
    finetune(tiny_resnet(), data, method="lp", config=fast(epochs=2), out_dir=tmp_path)
    with pytest.raises(InputError, match="checkpoint is at epoch 2, past stop_after=1"):
        finetune(tiny_resnet(), data, method="lp", config=fast(epochs=2), out_dir=tmp_path,
                 resume=True, stop_after=1)
    again = finetune(tiny_resnet(), data, method="lp", config=fast(epochs=2), out_dir=tmp_path,
                     resume=True, stop_after=2)
    assert again.epochs_run == 2


def test_explicit_validation_data_trains_on_every_training_sample():
    data, val = random_images(), random_images(n_per_class=3, seed=5)
    counting = CountingData(data)
    result = finetune(tiny_resnet(), counting, method="lp", val_data=val,
                      config=fast(batch_size=4), measure_collapse=False)
    assert counting.calls == len(data) and result.val_samples == len(val)
    net = result.network.eval()
    with torch.no_grad():
        predicted = net(val.tensors[0]).argmax(1).numpy()
    codes = (val.tensors[1].numpy() - 7) // 10
    assert result.val_accuracy == pytest.approx(float((predicted == codes).mean()), abs=1e-7)


def test_validation_data_with_other_classes_is_an_input_error():
    data = random_images()
    extra = TensorDataset(torch.randn(4, 3, 16, 16), torch.tensor([7, 17, 27, 99]))
    with pytest.raises(InputError, match=r"validation data.*not among the training classes: 99"):
        finetune(tiny_resnet(), data, method="lp", val_data=extra, config=fast())
    lacking = TensorDataset(torch.randn(4, 3, 16, 16), torch.tensor([7, 7, 17, 17]))
    with pytest.raises(InputError, match=r"no sample of the training class.*27"):
        finetune(tiny_resnet(), data, method="lp", val_data=lacking, config=fast())


def test_table_states_the_validation_size_behind_val_acc():
    data = random_images()
    one = finetune(tiny_resnet(), data, method="lp", config=fast(val_fraction=0.25))
    header = format_table([one]).splitlines()[0]
    assert "val acc % (n=6)" in header and one.val_samples == 6
    other = finetune(tiny_resnet(), data, method="lp", config=fast(val_fraction=0.5))
    table = format_table([one, other]).splitlines()
    assert "val acc % (n)" in table[0] and "(n=6)" in table[1] and "(n=12)" in table[2]


def test_penultimate_nc1_is_the_value_collapse_measure_reports():
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(3), 10)
    feats = rng.normal(size=(30, 5)) + codes[:, None]
    for dtype in (np.float64, np.float32):
        x = feats.astype(dtype)
        assert penultimate_nc1(x, codes) == pytest.approx(measure(x, codes)["nc1"], rel=1e-7)


def test_bootstrap_draws_resample_within_each_class_and_repeat_with_the_seed():
    codes = np.array([0] * 5 + [1] * 3 + [2] * 7)
    draws = bootstrap_draws(codes, 20, seed=4)
    for draw in draws:
        assert np.array_equal(np.bincount(codes[draw]), [5, 3, 7])
    assert any(len(set(d.tolist())) < len(codes) for d in draws)  # with replacement
    again = bootstrap_draws(codes, 20, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(draws, again, strict=True))


def test_unit_selection_is_unstable_below_the_stable_share():
    selection = UnitSelection("layer1.0", 1, {"layer1.0": 1.0}, 1, 0.1, stability=0.5)
    assert not selection.stable and selection.to_json()["stable"] is False
    assert UnitSelection("layer1.0", 1, {}, 1, 0.1, stability=0.9).stable
