"""``python:<module>:<callable>[@<state dict>]``: a user's own architecture in every command,
its head and units found or named (``--head``, ``--units``), and each bad input one line."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")  # model loading and preprocessing need it

from nctk.cli import main
from nctk.errors import InputError
from nctk.extract import load_model
from nctk.extract.parts import ModelParts, parse_parts

MODULE = "nctk_test_user_net"
SOURCE = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x):
        return x + torch.relu(self.norm(self.conv(x)))


class Net(nn.Module):
    """The head is registered first, the residual blocks in a Sequential after it."""

    def __init__(self, classes=4):
        super().__init__()
        self.classifier = nn.Linear(8, classes)
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.stages = nn.Sequential(Block(8), Block(8), Block(8))

    def forward(self, x):
        return self.classifier(self.stages(self.stem(x)).mean((2, 3)))


class Probabilities(Net):
    def forward(self, x):
        return super().forward(x).softmax(1)


class Declared(Probabilities):
    nctk_head = "classifier"
    nctk_units = ("stages.0", "stages.2")


class Loose(nn.Module):
    """Blocks as plain attributes: no container to find units in."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = Block(8)
        self.b2 = Block(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.b2(self.b1(self.stem(x))).mean((2, 3)))


def build():
    return Net()


def probabilities():
    return Probabilities()


def declared():
    return Declared()


def loose():
    return Loose()


def seeded():
    torch.manual_seed(1234)
    return Net()


def not_a_module():
    return [1, 2]


def failing():
    raise RuntimeError("needs a GPU")


CONSTANT = 3
'''


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    """The module above in a folder on the path, with a state dict of ``build()``."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(MODULE, None)
    module = __import__(MODULE)
    torch.manual_seed(7)
    weights = tmp_path / "trained.pt"
    torch.save(module.Net().state_dict(), weights)
    yield module, weights
    sys.modules.pop(MODULE, None)


@pytest.fixture()
def small_images(tmp_path) -> str:
    """``npz:`` spec of 30 random 16x16 images in 3 classes: fine-tuning stays quick."""
    rng = np.random.default_rng(0)
    path = tmp_path / "small.npz"
    np.savez(path, images=rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8),
             labels=np.repeat(["a", "b", "c"], 10))
    return f"npz:{path}"


def test_a_state_dict_loads_into_the_users_architecture(user_module):
    _, weights = user_module
    adapter = load_model(f"python:{MODULE}:build@{weights}")
    expected = torch.load(weights, weights_only=True)
    for name, tensor in adapter.module.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0)
    assert adapter.name == "build.trained" and not adapter.random_init
    assert adapter.identity.startswith(f"python:{MODULE}:build:")
    assert adapter.units() == ["stages.0", "stages.1", "stages.2"]
    net = adapter.module.eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.inference_mode():
        pooled = net.stages(net.stem(x)).mean((2, 3))
        out = adapter.forward(x, ["stages.1"])
        torch.testing.assert_close(out["features"], pooled)
        torch.testing.assert_close(out["logits"], net.classifier(pooled))
        torch.testing.assert_close(out["layers"]["stages.1"],
                                   net.stages[1](net.stages[0](net.stem(x))).mean((2, 3)))


def test_weights_that_follow_the_seed_are_flagged_random(user_module):
    first = load_model(f"python:{MODULE}:build")
    again = load_model(f"python:{MODULE}:build")
    assert first.random_init and first.identity is None
    for a, b in zip(first.module.parameters(), again.module.parameters(), strict=True):
        assert torch.equal(a, b)  # seeded: the same random weights at every load
    own = load_model(f"python:{MODULE}:seeded")  # the callable fixes its own weights
    assert not own.random_init and own.identity is not None


def test_a_module_in_the_current_directory_is_found(tmp_path, monkeypatch):
    name = "nctk_test_cwd_net"
    (tmp_path / f"{name}.py").write_text("from torch import nn\n\n"
                                         "def build():\n    return nn.Linear(3, 2)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = list(sys.path)
    try:
        adapter = load_model(f"python:{name}:build")
    finally:
        sys.modules.pop(name, None)
    assert isinstance(adapter.module, torch.nn.Linear)
    assert sys.path == before  # the current directory was on the path only while loading


@pytest.mark.parametrize(("spec", "problem"), [
    ("python:nctk_no_such_module:build", "no module named 'nctk_no_such_module' on the Python "
                                         "path"),
    (f"python:{MODULE}:nothing", f"module '{MODULE}' has no 'nothing'; its callables: .*build"),
    (f"python:{MODULE}:CONSTANT", "is a int, not a callable that returns an nn.Module"),
    (f"python:{MODULE}:not_a_module", "returned an object of type list, not a torch.nn.Module"),
    (f"python:{MODULE}:failing", r"calling it failed \(RuntimeError: needs a GPU\)"),
    (f"python:{MODULE}", "expected python:<module>:<callable>"),
    (f"python:{MODULE}:build@missing.pt", "no such state dict file 'missing.pt'"),
])
def test_bad_specs_are_one_line_naming_the_spec(user_module, spec, problem):
    with pytest.raises(InputError, match=problem) as caught:
        load_model(spec)
    assert spec in str(caught.value) and "\n" not in str(caught.value)


def test_a_state_dict_that_does_not_fit_names_the_architecture(user_module, tmp_path):
    module, _ = user_module
    other = tmp_path / "other.pt"
    torch.save(module.Net(classes=9).state_dict(), other)
    with pytest.raises(InputError, match=rf"does not fit python:{MODULE}:build \(give the "
                                         r"state dict of that architecture\).*classifier"):
        load_model(f"python:{MODULE}:build@{other}")
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": module.Net()}, pickled)
    with pytest.raises(InputError, match="holds pickled Python objects"):
        load_model(f"python:{MODULE}:build@{pickled}")


def test_a_head_that_is_not_the_output_layer_is_caught_and_can_be_named(user_module):
    spec = f"python:{MODULE}:probabilities"
    guessed = load_model(spec)
    with pytest.raises(InputError, match=r"classifier head could not be found: the nn.Linear "
                                         r"taken for it, 'classifier'.*head=MODULE"):
        guessed.forward(torch.randn(2, 3, 16, 16))
    named = load_model(spec, parts=ModelParts(heads={"": "classifier"}))
    net = named.module.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        out = named.forward(x)
        pooled = net.stages(net.stem(x)).mean((2, 3))
        torch.testing.assert_close(out["features"], pooled)
        torch.testing.assert_close(out["logits"], net.classifier(pooled))  # before softmax
    headless = load_model(spec, parts=ModelParts(heads={"": "none"}))
    out = headless.forward(x)
    assert out["logits"] is None
    torch.testing.assert_close(out["features"].sum(1), torch.ones(2))  # the probabilities
    assert named.identity != headless.identity  # the head chosen changes the features


def test_a_model_may_declare_its_head_and_units(user_module):
    adapter = load_model(f"python:{MODULE}:declared")
    assert adapter.units() == ["stages.0", "stages.2"]
    assert adapter.forward(torch.randn(2, 3, 16, 16))["logits"].shape == (2, 4)
    from nctk.finetune.units import find_units

    assert [u.name for u in find_units(adapter.module)] == ["stages.0", "stages.2"]


def test_named_parts_are_checked_and_parsed(user_module):
    spec = f"python:{MODULE}:build"
    with pytest.raises(InputError, match=r"has no module 'fc' to use as its head; its "
                                         r"nn\.Linear modules: classifier"):
        load_model(spec, parts=parse_parts(["fc"]))
    with pytest.raises(InputError, match=r"no module 'stages\.7' to use as its unit; its units "
                                         r"found: stages\.0, stages\.1, stages\.2"):
        load_model(spec, parts=parse_parts(units=["stages.0,stages.7"]))
    parts = parse_parts(["a=classifier", "none"], ["a=stages.0,stages.1"])
    assert parts.head_for("a") == "classifier" and parts.head_for("b") == "none"
    assert parts.units_for("a") == ("stages.0", "stages.1") and parts.units_for("b") is None
    with pytest.raises(InputError, match="head given twice for model 'a'"):
        parse_parts(["a=x", "a=y"])
    with pytest.raises(InputError, match=r"expected \[NAME=\]MODULE"):
        parse_parts(["a,b"])


# slow: four commands end to end, one of them a fine-tuning run (3.3 s of CPU on one
# thread; 19-27 s wall under load 8-11)
@pytest.mark.slow
def test_every_command_takes_a_users_architecture(user_module, tmp_path, capsys,
                                                  small_images):
    _, weights = user_module
    spec = f"python:{MODULE}:build@{weights}"
    other = f"seeded=python:{MODULE}:seeded"
    common = ["--data", small_images, "--image-size", "16", "--no-cache"]
    assert main(["extract", "--models", f"{spec},{other}", *common, "--layers", "all",
                 "--out", str(tmp_path / "f"), "--no-progress"]) == 0
    with np.load(tmp_path / "f" / "build.trained.npz") as archive:
        assert archive["features"].shape == (30, 8)
        assert sorted(k for k in archive.files if k.startswith("layer:")) == [
            "layer:stages.0", "layer:stages.1", "layer:stages.2"]
    assert main(["rank", "--models", f"{spec},{other}", *common, "--method", "ncti,logme",
                 "--no-progress"]) == 0
    assert main(["collapse", "--models", spec, *common, "--quiet"]) == 0
    assert main(["finetune", "--model", spec, "--data", small_images, "--image-size", "16",
                 "--method", "scl", "--unit", "2", "--epochs", "1", "--batch-size", "8",
                 "--no-progress", "--out", str(tmp_path / "ft")]) == 0
    assert "SCL FT  2 (stages.1)" in capsys.readouterr().out


def test_cli_names_what_was_not_found_and_how_to_name_it(user_module, tmp_path, capsys,
                                                         small_images):
    base = ["--data", small_images, "--image-size", "16", "--no-cache", "--no-progress"]
    code = main(["extract", "--models", f"python:{MODULE}:probabilities", *base,
                 "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"(python:{MODULE}:probabilities)" in err and "(--head MODULE)" in err
    assert main(["extract", "--models", f"python:{MODULE}:probabilities", "--head",
                 "classifier", *base, "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    finetune = ["finetune", "--model", f"python:{MODULE}:loose", "--data", small_images,
                "--image-size", "16", "--method", "layer", "--unit", "1", "--epochs", "1",
                "--batch-size", "8", "--no-progress"]
    assert main([*finetune, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no fine-tuning units found in Loose" in err and "(--units A,B,...)" in err
    assert main([*finetune, "--units", "b1,b2", "--out", str(tmp_path / "d")]) == 0
    assert "Layer FT  1 (b1)" in capsys.readouterr().out
