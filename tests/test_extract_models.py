"""Model adapters: penultimate features, logits and layers checked against direct forwards."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn

pytest.importorskip("torchvision")  # the vision extra: nctk.extract needs it

from nctk.errors import InputError, UnknownChoice
from nctk.extract import ModelAdapter, load_model
from nctk.extract.models import pool_output

torch.manual_seed(0)


class TinyNet(nn.Module):
    """Two conv stages, global pooling, a linear head."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        return self.fc(self.stage2(self.stage1(x)).mean(dim=(2, 3)))


def test_torchvision_resnet_matches_a_manual_forward():
    adapter = load_model("torchvision:resnet18:none", image_size=32)
    m = adapter.module.eval()
    assert adapter.units() == ["layer1", "layer2", "layer3", "layer4"]
    assert adapter.name == "resnet18.none" and adapter.random_init
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        out = adapter.forward(x, ["layer1", "layer4"])
        h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        l1 = m.layer1(h)
        l4 = m.layer4(m.layer3(m.layer2(l1)))
        expected = l4.mean(dim=(2, 3))
        torch.testing.assert_close(out["features"], expected)
        torch.testing.assert_close(out["logits"], m.fc(expected))
        torch.testing.assert_close(out["layers"]["layer1"], l1.mean(dim=(2, 3)))
        torch.testing.assert_close(out["layers"]["layer4"], expected)
    assert adapter.transform(_pil(40)).shape == (3, 32, 32)


def _pil(size: int):
    from PIL import Image

    return Image.new("RGB", (size, size + 5), (10, 200, 30))


def test_torchvision_errors_name_the_accepted_forms(monkeypatch):
    with pytest.raises(InputError, match=r"unknown torchvision model 'nosuchnet'.*"
                                         r"torchvision\.models\.list_models\(\)"):
        load_model("torchvision:nosuchnet")
    with pytest.raises(InputError, match=r"unknown weights 'FOO'.*IMAGENET1K_V1.*none"):
        load_model("torchvision:resnet18:FOO")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(InputError, match="weights 'IMAGENET1K_V1' for torchvision:resnet18 are "
                                         "not cached locally and cannot be downloaded"):
        load_model("torchvision:resnet18:IMAGENET1K_V1")


def test_unknown_spec_lists_accepted_kinds():
    for spec in ("foo:bar", "resnet50"):
        with pytest.raises(UnknownChoice, match=r"accepted kinds: torchvision:, timm:, hf:, "
                                                r"lite:, python:, file:, demo:, or a \.pt/"):
            load_model(spec)
    with pytest.raises(InputError, match="non-empty string"):
        load_model("")


def test_timm_vit_uses_pre_logits_and_class_token():
    pytest.importorskip("timm")
    adapter = load_model("timm:test_vit:none", image_size=32)  # timm's tiny test ViT
    m = adapter.module.eval()
    assert adapter.units()[:2] == ["blocks.0", "blocks.1"]
    assert adapter.transform(_pil(50)).shape == (3, 32, 32)
    x = torch.randn(2, 3, 32, 32)
    captured = {}
    handle = m.blocks[0].register_forward_hook(lambda _m, _i, o: captured.update(b0=o))
    with torch.inference_mode():
        tokens = m.forward_features(x)
        pre = m.fc_norm(tokens[:, 0]) if m.global_pool == "token" else None
        logits = m(x)
        handle.remove()
        out = adapter.forward(x, ["blocks.0"])
    torch.testing.assert_close(out["features"], pre)
    torch.testing.assert_close(out["logits"], logits)
    torch.testing.assert_close(out["layers"]["blocks.0"], captured["b0"][:, 0])


def test_timm_errors(monkeypatch):
    timm = pytest.importorskip("timm")

    with pytest.raises(InputError, match="unknown timm model 'nosuchnet'"):
        load_model("timm:nosuchnet")
    with pytest.raises(InputError, match="unknown weights 'weird'"):
        load_model("timm:resnet18:weird")

    def offline(*args, **kwargs):
        raise OSError("cannot find the requested files in the local cache")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(InputError, match="timm:resnet18 are not cached locally"):
        load_model("timm:resnet18:pretrained")


def test_timm_cnn_uses_its_feature_info_stages():
    pytest.importorskip("timm")
    adapter = load_model("timm:test_resnet:none", image_size=32)
    m = adapter.module.eval()
    assert adapter.units()[-2:] == ["layer3", "layer4"]
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        out = adapter.forward(x, ["layer4"])
        trunk = m.forward_features(x)
        torch.testing.assert_close(out["features"], trunk.mean(dim=(2, 3)))
        torch.testing.assert_close(out["layers"]["layer4"], trunk.mean(dim=(2, 3)))
        torch.testing.assert_close(out["logits"], m.fc(trunk.mean(dim=(2, 3))))


def _tiny_hf_vit(directory):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=32, num_labels=3)
    model = ViTForImageClassification(config).eval()
    model.save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    return model


def test_hf_vit_classifier_from_a_saved_directory(tmp_path):
    pytest.importorskip("transformers")
    model = _tiny_hf_vit(tmp_path / "tiny-vit")
    adapter = load_model(f"hf:{tmp_path / 'tiny-vit'}")
    assert adapter.name == "tiny-vit"
    first = adapter.units()[0]  # transformers 5 names them vit.layers.N, 4.x vit.encoder.layer.N
    assert len(adapter.units()) == 2
    assert first.endswith("0")
    pixels = adapter.transform(_pil(48))
    assert pixels.shape == (3, 32, 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        hidden = model.vit(pixel_values=x, output_hidden_states=True)
        out = adapter.forward(x, [first])
        torch.testing.assert_close(out["features"], hidden.last_hidden_state[:, 0])
        torch.testing.assert_close(out["logits"], model(pixel_values=x).logits)
        # hidden_states[1] is the output of the first encoder layer; class token first
        torch.testing.assert_close(out["layers"][first],
                                   hidden.hidden_states[1][:, 0])


def test_hf_headless_cnn_uses_the_pooled_output(tmp_path):
    pytest.importorskip("transformers")
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                          layer_type="basic")
    model = ResNetModel(config).eval()
    model.save_pretrained(tmp_path / "tiny-resnet")
    ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(tmp_path / "tiny-resnet")
    adapter = load_model(f"hf:{tmp_path / 'tiny-resnet'}")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        out = adapter.forward(x, ["encoder.stages.1"])
        stages = model(pixel_values=x, output_hidden_states=True).hidden_states
    assert out["logits"] is None
    torch.testing.assert_close(out["features"], stages[-1].mean(dim=(2, 3)))
    torch.testing.assert_close(out["layers"]["encoder.stages.1"], stages[-1].mean(dim=(2, 3)))
    assert adapter.units() == ["encoder.stages.0", "encoder.stages.1"]


def test_hf_offline_is_a_clear_error(monkeypatch):
    transformers = pytest.importorskip("transformers")

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    with pytest.raises(InputError, match="hf:google/vit-base-patch16-224 are not cached "
                                         "locally and cannot be downloaded"):
        load_model("hf:google/vit-base-patch16-224")


def test_from_module_hooks_the_last_linear():
    net = TinyNet().eval()
    adapter = ModelAdapter.from_module(net, name="tiny net")
    assert adapter.name == "tiny_net"
    assert adapter.units() == ["stage2.0", "stage2.1"]  # the largest container's children
    x = torch.randn(3, 3, 8, 8)
    with torch.inference_mode():
        out = adapter.forward(x, ["stage1"])
        s1 = net.stage1(x)
        pooled = net.stage2(s1).mean(dim=(2, 3))
        torch.testing.assert_close(out["features"], pooled)
        torch.testing.assert_close(out["logits"], net.fc(pooled))
        torch.testing.assert_close(out["layers"]["stage1"], s1.mean(dim=(2, 3)))
    with pytest.raises(InputError, match="has no layer 'nope'"):
        adapter.resolve_layers(["nope"])
    assert adapter.resolve_layers("stage1,stage2") == ["stage1", "stage2"]


def test_module_without_linear_gives_pooled_output():
    net = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU())
    adapter = ModelAdapter.from_module(net, name="convs")
    x = torch.randn(2, 3, 9, 9)
    with torch.inference_mode():
        out = adapter.forward(x)
    assert out["logits"] is None
    torch.testing.assert_close(out["features"], net(x).mean(dim=(2, 3)))


def test_token_pooling_rule():
    tokens = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    torch.testing.assert_close(pool_output(tokens, class_token=True), tokens[:, 0])
    torch.testing.assert_close(pool_output(tokens, class_token=False), tokens.mean(dim=1))
    torch.testing.assert_close(pool_output((tokens, None), class_token=True), tokens[:, 0])


def test_pickled_module_and_torchscript_checkpoints(tmp_path):
    net = TinyNet().eval()
    x = torch.randn(2, 3, 8, 8)
    torch.save(net, tmp_path / "whole.pt")
    with pytest.warns(UserWarning, match="whole.pt: loading a trusted checkpoint runs code"):
        adapter = load_model(str(tmp_path / "whole.pt"), trust_checkpoint=True)
    assert adapter.name == "whole"
    with torch.inference_mode():
        out = adapter.forward(x)
        expected = net.stage2(net.stage1(x)).mean(dim=(2, 3))
    torch.testing.assert_close(out["features"], expected)

    trunk = nn.Sequential(net.stage1, net.stage2)
    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.script(trunk), str(tmp_path / "trunk.ts"))
    with pytest.warns(UserWarning, match="runs a TorchScript program"):
        scripted = load_model(str(tmp_path / "trunk.ts"), trust_checkpoint=True)
    with torch.inference_mode():
        out = scripted.forward(x)
    torch.testing.assert_close(out["features"], expected)
    assert out["logits"] is None
    assert scripted.units() == []
    with pytest.raises(InputError, match="TorchScript"):
        scripted.resolve_layers(["0"])


def test_bad_checkpoints(tmp_path):
    torch.save(TinyNet().state_dict(), tmp_path / "weights.pth")
    with pytest.raises(InputError, match=r"weights.pth: holds a state dict \(weights only\): "
                       r"name its architecture, torchvision:<name>@"):
        load_model(str(tmp_path / "weights.pth"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"junk.pt: unreadable checkpoint"):
        load_model(str(tmp_path / "junk.pt"))
    with pytest.raises(InputError, match="no such checkpoint file"):
        load_model(str(tmp_path / "missing.pt"))
