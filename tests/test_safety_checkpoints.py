"""No code runs from a model file unless the user says so (issue 8, point 3).

A malicious pickle whose ``__reduce__`` would create a marker folder is given to every
command that loads models: without ``--trust-checkpoint`` nothing runs (exit 2, one line
saying how to allow it); with the flag the marker appears, which shows the test would
see the code run.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

torchvision = pytest.importorskip("torchvision")  # the vision extra
timm = pytest.importorskip("timm")  # the timm extra

from nctk.cli import main
from nctk.errors import InputError
from nctk.extract.models import checkpoint_path, load_model, model_paths, read_state_dict


class Payload:
    """Unpickling it calls ``os.mkdir(marker)``: stands for any code a pickle can run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def files(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"model": Payload(marker)}, tmp_path / "evil.pt")
    with open(tmp_path / "evil_legacy.pth", "wb") as handle:  # plain pickle, no zip
        pickle.dump(Payload(marker), handle, protocol=2)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8),
             labels=np.repeat([0, 1], 3))
    return tmp_path, marker


def _one_line(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("evil", ["evil.pt", "evil_legacy.pth", "file:{dir}/evil.pt"])
@pytest.mark.parametrize("command", ["extract", "rank", "finetune"])
def test_malicious_pickle_never_runs_without_the_flag(files, capsys, command, evil):
    tmp, marker = files
    spec = evil.format(dir=tmp) if evil.startswith("file:") else str(tmp / evil)
    data = f"npz:{tmp / 'd.npz'}"
    argv = {"extract": ["extract", "--models", spec, "--data", data, "--out", tmp / "o",
                        "--no-cache"],
            "rank": ["rank", "--models", f"{spec},timm:test_resnet:none", "--data", data,
                     "--no-cache"],
            "finetune": ["finetune", "--model", spec, "--data", data, "--method", "lp",
                         "--out", tmp / "o"]}[command]
    err = _one_line(capsys, argv)
    assert "holds pickled Python objects (posix.mkdir)" in err and "would run code" in err
    assert "pass --trust-checkpoint" in err
    assert not marker.exists()


def test_the_flag_runs_it_with_a_warning(files, capsys):
    tmp, marker = files
    code = main(["extract", "--models", str(tmp / "evil.pt"), "--data", f"npz:{tmp / 'd.npz'}",
                 "--out", str(tmp / "o"), "--no-cache", "--trust-checkpoint"])
    err = capsys.readouterr().err.splitlines()
    assert marker.is_dir()  # the payload ran: the test above would have seen it
    assert code == 2 and err[0].startswith("nctk: warning:") and "trusted checkpoint" in err[0]
    assert "holds a dict, not a whole nn.Module" in err[1]


def test_state_dict_with_a_payload_never_runs(files, capsys):
    tmp, marker = files
    err = _one_line(capsys, ["extract", "--models", f"torchvision:resnet18@{tmp / 'evil.pt'}",
                             "--data", f"npz:{tmp / 'd.npz'}", "--out", tmp / "o",
                             "--no-cache"])
    assert "a state dict file holds tensors only" in err and not marker.exists()


def test_junk_is_unreadable_not_code(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"junk.pt: unreadable checkpoint \(not a "
                                         r"tensors-only pickle: Unsupported operand 110\)$"):
        load_model(str(tmp_path / "junk.pt"))


def test_torchscript_needs_the_flag_too(tmp_path, capsys):
    with pytest.warns(FutureWarning):
        scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))
        torch.jit.save(scripted, str(tmp_path / "net.ts"))
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 8, 8, 3), np.uint8),
             labels=np.array([0, 0, 1, 1]))
    err = _one_line(capsys, ["extract", "--models", tmp_path / "net.ts", "--data",
                             f"npz:{tmp_path / 'd.npz'}", "--out", tmp_path / "o", "--no-cache"])
    assert "is a TorchScript archive, a program" in err and "--trust-checkpoint" in err


def test_a_bare_file_name_is_not_a_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save(torch.nn.Linear(2, 2), "mymodel")
    with pytest.raises(InputError, match=r"unknown model spec 'mymodel'.*write file:mymodel"):
        load_model("mymodel", trust_checkpoint=True)
    with pytest.warns(UserWarning, match="trusted checkpoint"):
        adapter = load_model("file:mymodel", trust_checkpoint=True)
    assert adapter.name == "mymodel"
    assert checkpoint_path("mymodel") is None and checkpoint_path("a/b.CKPT") == "a/b.CKPT"
    assert checkpoint_path("timm:resnet18:none") is None
    assert model_paths("torchvision:resnet18@w/x.pt")[0].as_posix() == "w/x.pt"


def test_torchvision_state_dict_with_its_own_class_count(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=7)
    torch.save(net.state_dict(), tmp_path / "ft.pt")
    adapter = load_model(f"torchvision:resnet18@{tmp_path / 'ft.pt'}")
    assert adapter.name == "resnet18.ft" and adapter.head.out_features == 7
    for key, value in net.state_dict().items():
        torch.testing.assert_close(adapter.module.state_dict()[key], value)
    assert adapter.identity.startswith("torchvision:resnet18@")


def test_nested_and_dataparallel_state_dicts(tmp_path):
    torch.manual_seed(1)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
               "epoch": 5}
    torch.save(wrapped, tmp_path / "train.ckpt")
    state = read_state_dict(tmp_path / "train.ckpt")
    assert set(state) == set(net.state_dict())
    adapter = load_model(f"timm:test_resnet@{tmp_path / 'train.ckpt'}")
    x = torch.randn(2, 3, 32, 32)
    adapter.module.eval()
    with torch.inference_mode():
        torch.testing.assert_close(adapter.forward(x)["logits"], net.eval()(x))


def test_state_dict_of_another_architecture_is_one_line(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pt")
    with pytest.raises(InputError) as caught:
        load_model(f"torchvision:resnet34@{tmp_path / 'r18.pt'}")
    assert "does not fit torchvision:resnet34" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="not both"):
        load_model(f"torchvision:resnet18:DEFAULT@{tmp_path / 'r18.pt'}")
    with pytest.raises(InputError, match="no such state dict file"):
        load_model(f"timm:test_resnet@{tmp_path / 'missing.pt'}")


def test_state_dict_spec_extracts_from_the_cli(tmp_path, capsys):
    torch.save(timm.create_model("test_resnet", num_classes=4).state_dict(), tmp_path / "w.pt")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8),
             labels=np.repeat([0, 1], 3))
    assert main(["extract", "--models", f"timm:test_resnet@{tmp_path / 'w.pt'}", "--data",
                 f"npz:{tmp_path / 'd.npz'}", "--out", str(tmp_path / "o"), "--no-cache",
                 "--no-progress", "--image-size", "32", "--workers", "0"]) == 0
    assert "trusted" not in capsys.readouterr().err
    with np.load(tmp_path / "o" / "test_resnet.w.npz") as saved:
        assert saved["source_logits"].shape == (6, 4)
