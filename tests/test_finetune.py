"""Tests of nctk.finetune: units, methods (freezing, SCL shapes, parameter shares), training
loop (determinism, resume, interrupt, early stopping) and the NC unit selection.

Models are randomly initialised and tiny; data are random tensors, so everything runs in
seconds on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

torchvision = pytest.importorskip("torchvision")  # the vision extra
from torch.utils.data import Dataset, TensorDataset
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.vision_transformer import VisionTransformer

from nctk.errors import InputError
from nctk.finetune.auto_unit import select_unit
from nctk.finetune.methods import FineTuneNet
from nctk.finetune.sweep import format_table, sweep
from nctk.finetune.train import TrainConfig, finetune
from nctk.finetune.units import find_units, resolve_unit


def tiny_resnet(num_classes: int = 4) -> ResNet:
    """torchvision ResNet with one BasicBlock per stage (units 1..4)."""
    torch.manual_seed(0)
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)


def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(image_size=16, patch_size=8, num_layers=3, num_heads=2,
                             hidden_dim=16, mlp_dim=32, num_classes=5)


def random_images(n_per_class: int = 8, classes: int = 3, size: int = 16, seed: int = 0
                  ) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    x = torch.randn(len(labels), 3, size, size, generator=g) + labels.view(-1, 1, 1, 1) * 0.5
    return TensorDataset(x, labels * 10 + 7)  # gapped labels: mapped to codes internally


def fast(**kw) -> TrainConfig:
    base = dict(epochs=1, batch_size=8, lr=0.05, val_fraction=0.25, progress=False, seed=0)
    return TrainConfig(**(base | kw))


# ---------------------------------------------------------------- units
def test_units_of_torchvision_resnets():
    r18 = find_units(torchvision.models.resnet18())
    assert [u.name for u in r18] == [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert [u.index for u in r18] == list(range(1, 9))
    r50 = find_units(torchvision.models.resnet50())
    assert len(r50) == 16
    # the paper's Blocks 1, 4, 8, 14 are the first blocks of the four stages
    assert [r50[i - 1].name for i in (1, 4, 8, 14)] == ["layer1.0", "layer2.0", "layer3.0",
                                                         "layer4.0"]


def test_units_of_timm_resnet_and_vits():
    timm = pytest.importorskip("timm")
    assert len(find_units(timm.create_model("resnet18"))) == 8
    assert [u.name for u in find_units(tiny_vit())] == [
        f"encoder.layers.encoder_layer_{i}" for i in range(3)]
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3)
    assert [u.name for u in find_units(vit)] == ["blocks.0", "blocks.1"]


def test_user_named_units_and_errors():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    with pytest.raises(InputError, match="no fine-tuning units found"):
        find_units(model)
    units = find_units(model, ["0"])
    assert units[0].module is model[0]
    with pytest.raises(InputError, match="no sub-module named 'nope'"):
        find_units(model, ["nope"])


def test_resolve_unit_by_number_and_name():
    units = find_units(torchvision.models.resnet18())
    assert resolve_unit(units, 7).name == "layer4.0"
    assert resolve_unit(units, "7").name == "layer4.0"
    assert resolve_unit(units, "layer2.1").index == 4
    with pytest.raises(InputError, match=r"unit 9 does not exist .* 8 units") as err:
        resolve_unit(units, 9, "resnet18")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"unknown unit 'layer9'.*1=layer1.0.*8=layer4.1"):
        resolve_unit(units, "layer9")


# ---------------------------------------------------------------- parameter shares
def test_resnet18_parameter_shares_match_table_3():
    """Table 3 of Li et al.: LP 0.23 %, Blocks 1/3/5/7 = 0.89/2.28/8.43/33.02 % (50 classes)."""
    model = torchvision.models.resnet18()
    lp = FineTuneNet(model, 50, "lp").parameter_share()
    blocks = [FineTuneNet(model, 50, "layer", k).parameter_share() for k in (1, 3, 5, 7)]
    scl7 = FineTuneNet(model, 50, "scl", 7).parameter_share()
    full = FineTuneNet(model, 50, "full").parameter_share()
    assert round(100 * lp, 2) == 0.23
    assert [round(100 * s, 2) for s in blocks] == [0.89, 2.28, 8.43, 33.02]
    assert scl7 == blocks[-1]
    assert full == 1.0
    # the denominator: backbone 11,176,512 + head 512*50+50 (spec §13); a ratio of two
    # integer parameter counts, one correctly rounded division: exact, hence ==
    assert lp == 25_650 / (11_176_512 + 25_650)


def test_resnet50_parameter_shares_match_table_4():
    model = torchvision.models.resnet50()
    shares = [FineTuneNet(model, 50, "layer", k).parameter_share() for k in (1, 4, 8, 14)]
    assert round(100 * FineTuneNet(model, 50, "lp").parameter_share(), 2) == 0.43
    assert [round(100 * s, 2) for s in shares] == [0.75, 2.04, 6.84, 26.01]


# ---------------------------------------------------------------- SCL connection
def _unit_output(net: FineTuneNet, unit_module: torch.nn.Module, x: torch.Tensor):
    captured = {}
    handle = unit_module.register_forward_hook(lambda m, i, o: captured.setdefault("o", o))
    with torch.no_grad():
        feats = net.features(x)
        plain = net.backbone(x)
    handle.remove()
    return feats, plain, captured["o"]


def test_scl_connection_cnn_pools_and_appends_zeros():
    net = FineTuneNet(torchvision.models.resnet18(), 3, "scl", 3).eval()
    x = torch.randn(2, 3, 32, 32)
    feats, plain, out = _unit_output(net, net.unit.module, x)
    assert out.shape == (2, 128, 4, 4) and feats.shape == (2, 512)
    pooled = out.mean(dim=(2, 3))
    expected = plain + torch.cat([pooled, torch.zeros(2, 512 - 128)], dim=1)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(feats[:, 128:], plain[:, 128:])  # zeros were appended


def test_scl_connection_torchvision_vit_adds_class_token():
    net = FineTuneNet(tiny_vit(), 3, "scl", 2).eval()
    x = torch.randn(2, 3, 16, 16)
    feats, plain, out = _unit_output(net, net.unit.module, x)
    assert out.shape == (2, 5, 16) and feats.shape == (2, 16)
    torch.testing.assert_close(feats, plain + out[:, 0], rtol=1e-5, atol=1e-6)


def test_scl_connection_timm_vit_without_class_token_adds_mean_token():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3,
        class_token=False, global_pool="avg")
    net = FineTuneNet(vit, 3, "scl", 1).eval()
    feats, plain, out = _unit_output(net, net.unit.module, torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 4, 16)
    torch.testing.assert_close(feats, plain + out.mean(dim=1), rtol=1e-5, atol=1e-6)


def test_scl_rejects_unit_wider_than_penultimate():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 4), torch.nn.ReLU(),
                                torch.nn.Linear(4, 2))
    # the head is the last Linear (4 -> 2), so the penultimate width is 4 < 8 channels
    net = FineTuneNet(model, 2, "scl", "0", unit_names=["0"])
    with pytest.raises(InputError, match="more than the penultimate width 4"):
        net(torch.randn(1, 3, 8, 8))


def test_method_and_unit_errors():
    model = tiny_resnet()
    with pytest.raises(InputError, match="unknown method 'lora'"):
        FineTuneNet(model, 3, "lora")
    with pytest.raises(InputError, match="needs a unit"):
        FineTuneNet(model, 3, "layer")
    with pytest.raises(InputError, match="unit 5 does not exist"):
        FineTuneNet(model, 3, "scl", 5)


class HeadBeforeBlock(torch.nn.Module):
    """A model that registers its ``head`` before a block holding a Linear (as the demo's
    MLP-Mixer does): the last Linear registered is not the head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 6))
        self.head = torch.nn.Linear(6, 4)
        self.block = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(6, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


def test_head_found_by_name_before_a_later_block():
    model = HeadBeforeBlock()
    net = FineTuneNet(model, 3, "full")
    x = torch.randn(2, 3, 16, 16)
    assert net.width == 6 and isinstance(net.backbone.head, torch.nn.Identity)
    assert isinstance(net.backbone.block[1], torch.nn.Linear)
    torch.testing.assert_close(net.features(x), model.block(model.stem(x)))
    result = finetune(model, random_images(), method="full", config=fast())
    assert result.network.head.out_features == 3


def test_caller_model_is_not_modified():
    model = tiny_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finetune(model, random_images(), method="full", config=fast())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.fc, torch.nn.Linear)


# ---------------------------------------------------------------- freezing
@pytest.mark.parametrize(("method", "unit", "trained_prefixes"), [
    ("lp", None, ()),
    ("layer", 3, ("layer3.0.",)),
    ("scl", 2, ("layer2.0.",)),
    ("full", None, ("",)),
])
def test_only_intended_parameters_change(method, unit, trained_prefixes):
    model = tiny_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune(model, random_images(), method=method, unit=unit, config=fast())
    after = result.network.backbone.state_dict()
    params = {name for name, _ in model.named_parameters()}
    for key, value in after.items():
        changed = not torch.equal(before[key], value)
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert changed, f"{key}: BN statistics must update for every method"
        elif key in params:
            assert changed == key.startswith(trained_prefixes), key
    assert set(after) == set(before) - {"fc.weight", "fc.bias"}
    assert result.network.head.out_features == 3


# ---------------------------------------------------------------- training loop
def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        torch.testing.assert_close(va, vb, rtol=0, atol=1e-6)


def test_same_seed_same_result_and_records():
    data, test = random_images(), random_images(seed=1)
    one = finetune(tiny_resnet(), data, method="layer", unit=4, test_data=test,
                   config=fast(epochs=2))
    two = finetune(tiny_resnet(), data, method="layer", unit=4, test_data=test,
                   config=fast(epochs=2))
    _states_equal(one.network, two.network)
    assert one.test_accuracy == two.test_accuracy and one.train_nc1 == two.train_nc1
    assert one.epochs_run == 2 and len(one.history) == 2
    assert 0 <= one.test_accuracy <= 1 and one.train_nc1 > 0
    assert one.to_json()["method_label"] == "Layer FT" and "network" not in one.to_json()


class InterruptingData(Dataset):
    """``base`` that raises KeyboardInterrupt at the ``stop_at``-th item fetched."""

    def __init__(self, base: TensorDataset, stop_at: int):
        self.base, self.stop_at, self.calls = base, stop_at, 0
        self.labels = base.tensors[1].numpy()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.base[i]


@pytest.mark.parametrize("stop_at", [5, 30])  # first epoch's 1st batch, second epoch's middle
def test_interrupt_leaves_checkpoint_that_resumes_to_the_same_result(tmp_path, stop_at):
    data, test = random_images(), random_images(seed=1)
    config = fast(epochs=2, batch_size=4)
    whole = finetune(tiny_resnet(), data, method="scl", unit=3, test_data=test, config=config)
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny_resnet(), InterruptingData(data, stop_at), method="scl", unit=3,
                 config=config, out_dir=tmp_path)
    assert (tmp_path / "checkpoint.pt").is_file()
    resumed = finetune(tiny_resnet(), data, method="scl", unit=3, test_data=test,
                       config=config, out_dir=tmp_path, resume=True)
    _states_equal(whole.network, resumed.network)
    assert resumed.test_accuracy == whole.test_accuracy
    assert resumed.train_nc1 == pytest.approx(whole.train_nc1, rel=1e-6)


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    data = random_images()
    first = finetune(tiny_resnet(), data, method="lp", config=fast(), out_dir=tmp_path)
    again = finetune(tiny_resnet(), data, method="lp", config=fast(), out_dir=tmp_path,
                     resume=True)
    _states_equal(first.network, again.network)


def test_resume_from_another_run_is_an_input_error(tmp_path):
    data = random_images()
    finetune(tiny_resnet(), data, method="layer", unit=2, config=fast(), out_dir=tmp_path)
    with pytest.raises(InputError, match=r"another run: unit='layer2.0' \(this run: "
                                         r"'layer3.0'\)") as err:
        finetune(tiny_resnet(), data, method="layer", unit=3, config=fast(), out_dir=tmp_path,
                 resume=True)
    assert "\n" not in str(err.value) and "checkpoint.pt" in str(err.value)
    with pytest.raises(InputError, match="method='layer'"):
        finetune(tiny_resnet(), data, method="full", config=fast(), out_dir=tmp_path,
                 resume=True)
    with pytest.raises(InputError, match="architecture"):
        finetune(torchvision.models.resnet18(), data, method="layer", unit=2, config=fast(),
                 out_dir=tmp_path, resume=True, model_name="ResNet")
    (tmp_path / "other").mkdir()
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        finetune(tiny_resnet(), data, method="lp", config=fast(), out_dir=tmp_path / "other",
                 resume=True)
    (tmp_path / "other" / "checkpoint.pt").write_text("not a checkpoint")
    with pytest.raises(InputError, match="not a readable nctk fine-tuning checkpoint"):
        finetune(tiny_resnet(), data, method="lp", config=fast(), out_dir=tmp_path / "other",
                 resume=True)


def test_early_stopping_on_validation_accuracy():
    # lr 0 -> validation accuracy never improves after the first epoch
    result = finetune(tiny_resnet(), random_images(), method="lp",
                      config=fast(epochs=10, lr=0.0, lr_min=0.0, patience=2))
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1


def test_bad_data_and_config_are_input_errors():
    tiny = random_images(n_per_class=2)
    with pytest.raises(InputError, match="dataset too small for the split"):
        finetune(tiny_resnet(), tiny, method="lp", config=fast(val_fraction=0.1))
    single = TensorDataset(torch.randn(4, 3, 16, 16), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(InputError, match="too small"):
        finetune(tiny_resnet(), single, method="lp", config=fast(val_fraction=0.25))
    with pytest.raises(InputError, match="epochs must be >= 1"):
        finetune(tiny_resnet(), random_images(), method="lp", config=fast(epochs=0))
    with pytest.raises(InputError, match="needs a validation split"):
        finetune(tiny_resnet(), random_images(), method="lp",
                 config=fast(val_fraction=0.0, patience=1))
    unknown_test = TensorDataset(torch.randn(2, 3, 16, 16), torch.tensor([7, 99]))
    with pytest.raises(InputError, match=r"test data.*not among the training classes: 99"):
        finetune(tiny_resnet(), random_images(), method="lp", test_data=unknown_test,
                 config=fast())


def test_string_labels_and_no_validation_split():
    data = random_images()
    names = np.array(["cat", "dog", "eel"])[(data.tensors[1].numpy() - 7) // 10]

    class Named(Dataset):
        labels = names

        def __len__(self):
            return len(names)

        def __getitem__(self, i):
            return data.tensors[0][i], names[i]

    result = finetune(tiny_resnet(), Named(), method="lp", config=fast(val_fraction=0.0))
    assert result.val_accuracy is None and result.num_classes == 3 and result.best_epoch == 1


def test_vit_layer_ft_trains_one_encoder_block():
    model = tiny_vit()
    result = finetune(model, random_images(), method="layer", unit=2, config=fast())
    before = dict(model.named_parameters())
    for name, p in result.network.backbone.named_parameters():
        assert torch.equal(p, before[name]) != name.startswith("encoder.layers.encoder_layer_1.")


# ---------------------------------------------------------------- unit auto, sweep
def test_select_unit_picks_lowest_probe_nc1():
    model, data = tiny_resnet(), random_images()
    selection = select_unit(model, data, candidates=[1, 4], config=fast())
    assert set(selection.nc1) == {"layer1.0", "layer4.0"}
    assert selection.unit == min(selection.nc1, key=selection.nc1.get)
    assert selection.index == {"layer1.0": 1, "layer4.0": 4}[selection.unit]
    direct = finetune(model, data, method="layer", unit=4, config=fast())
    assert selection.nc1["layer4.0"] == pytest.approx(direct.train_nc1, rel=1e-6)


def test_sweep_runs_table_3_layout(tmp_path):
    results = sweep(tiny_resnet(), random_images(), test_data=random_images(seed=1),
                    units=[2], config=fast(), out_dir=tmp_path)
    assert [(r.method, r.unit) for r in results] == [
        ("lp", "-"), ("layer", "layer2.0"), ("scl", "layer2.0"), ("full", "-")]
    table = format_table(results, {"layer2.0": 2}).splitlines()
    assert table[0].split()[:4] == ["method", "unit", "test", "acc"]
    assert table[2].startswith("Layer FT") and "2 (layer2.0)" in table[2]
    assert table[-1].endswith("100.00%")
    assert (tmp_path / "scl_unit2" / "checkpoint.pt").is_file()


def test_bf16_autocast_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    result = finetune(tiny_resnet(), random_images(), method="scl", unit=4,
                      config=fast(device="cuda"))
    assert result.network.head.weight.device.type == "cuda"


def test_largest_cli_seed_trains():
    # per-batch torch seeds are reduced into 64 bits: the largest --seed does not overflow
    result = finetune(tiny_resnet(), random_images(), method="lp",
                      config=fast(epochs=1, seed=2**32 - 1))
    assert result.epochs_run == 1


def test_config_refuses_nan_and_out_of_range_settings():
    for key, value in (("lr", float("nan")), ("lr", -0.1), ("lr_min", float("inf")),
                       ("weight_decay", -1.0), ("momentum", 1.0), ("val_fraction", 1.0),
                       ("seed", -1)):
        with pytest.raises(InputError, match=f"array '{key}': {key} must be"):
            fast(**{key: value}).check()
