"""Random initialisation is explicit (``:none``) and travels with the features: the adapter,
the feature file (0-d bool ``random_init``) and every output of ``rank`` flag it."""

from __future__ import annotations

import numpy as np
import pytest

from nctk.errors import InputError
from nctk.io import RANDOM_INIT, feature_file_from_arrays, load_feature_file, save_feature_file


def test_the_flag_round_trips_through_a_feature_file(tmp_path):
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(6, 3)), np.array([0, 1] * 3)
    flagged = save_feature_file(tmp_path / "random.npz", features, labels, random_init=True)
    plain = save_feature_file(tmp_path / "trained.npz", features, labels)
    assert load_feature_file(flagged).random_init is True
    assert load_feature_file(plain).random_init is False
    with np.load(plain) as archive:  # written only when true: older readers see nothing new
        assert RANDOM_INIT not in archive.files


@pytest.mark.parametrize("value", [np.asarray(1.0), np.asarray([True, False]),
                                   np.asarray("yes")])
def test_a_malformed_flag_is_bad_input(value):
    arrays = {"features": np.zeros((2, 2)), "labels": np.array([0, 1]), RANDOM_INIT: value}
    with pytest.raises(InputError, match="array 'random_init': expected one boolean"):
        feature_file_from_arrays("m", arrays)


def test_a_bare_torchvision_name_means_the_pretrained_default(monkeypatch):
    pytest.importorskip("torchvision")
    import urllib.error

    import torch

    from nctk.extract import load_model

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(InputError) as caught:
        load_model("torchvision:resnet18")
    message = str(caught.value)
    assert "weights 'DEFAULT' for torchvision:resnet18 are not cached locally" in message
    assert message.endswith("torchvision:resnet18:none gives randomly initialised weights)")
    random = load_model("torchvision:resnet18:none", image_size=32)
    assert random.random_init and random.name == "resnet18.none"
    assert random.source_accuracy is None and random.identity is None


def test_a_bare_timm_name_means_pretrained(monkeypatch):
    pytest.importorskip("torchvision")
    timm = pytest.importorskip("timm")
    from nctk.extract import load_model

    real = timm.create_model
    asked = []

    def offline(name, pretrained=False, **kwargs):
        asked.append(pretrained)
        if pretrained:
            raise OSError("cannot find the requested files in the local cache")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(InputError, match=r"timm:test_resnet are not cached locally.*"
                                         r"timm:test_resnet:none gives randomly initialised"):
        load_model("timm:test_resnet")
    random = load_model("timm:test_resnet:none", image_size=32)
    assert asked[0] and not any(asked[1:])  # pre-trained asked for only without :none
    assert random.random_init and random.name == "test_resnet.none"


def test_extraction_records_the_random_initialisation(tmp_path):
    pytest.importorskip("torchvision")
    from nctk.cli import main

    out = tmp_path / "f"
    assert main(["extract", "--models", "torchvision:resnet18:none,demo:cnn_small", "--data",
                 "demo:target", "--per-class", "2", "--image-size", "32", "--no-cache",
                 "--no-progress", "--out", str(out)]) == 0
    assert load_feature_file(out / "resnet18.none.npz").random_init
    assert not load_feature_file(out / "cnn_small.npz").random_init


def test_rank_flags_a_random_model_in_the_terminal_the_json_and_the_report(tmp_path, capsys):
    pytest.importorskip("torchvision")
    import json

    from nctk.cli import main

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 10)
    trained = rng.normal(size=(30, 4)) + labels[:, None]
    save_feature_file(tmp_path / "trained.npz", trained, labels)
    save_feature_file(tmp_path / "resnet18.none.npz", rng.normal(size=(30, 4)), labels,
                      random_init=True)
    code = main(["rank", str(tmp_path / "trained.npz"), str(tmp_path / "resnet18.none.npz"),
                 "--method", "ncti", "--json", str(tmp_path / "out.json"),
                 "--report", str(tmp_path / "report.html")])
    assert code == 0
    err = capsys.readouterr().err
    assert "randomly initialised weights (a ':none' spec), not pre-trained: resnet18.none" in err
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["random_init"] == ["resnet18.none"]
    assert any("resnet18.none" in note for note in document["guidance"]["notes"])
    assert "not pre-trained: resnet18.none" in (tmp_path / "report.html").read_text()
    save_feature_file(tmp_path / "other.npz", trained[::-1].copy(), labels)
    assert main(["rank", str(tmp_path / "trained.npz"), str(tmp_path / "other.npz"),
                 "--method", "ncti", "--json", str(tmp_path / "plain.json")]) == 0
    assert "random_init" not in json.loads((tmp_path / "plain.json").read_text())
    assert "randomly initialised" not in capsys.readouterr().err


def test_collapse_flags_a_random_model_too(tmp_path, capsys):
    pytest.importorskip("torchvision")
    import json

    from nctk.cli import main

    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 10)
    save_feature_file(tmp_path / "trained.npz", rng.normal(size=(30, 4)) + labels[:, None],
                      labels)
    save_feature_file(tmp_path / "lite0.none.npz", rng.normal(size=(30, 4)), labels,
                      random_init=True)
    assert main(["collapse", str(tmp_path / "trained.npz"), str(tmp_path / "lite0.none.npz"),
                 "--json", str(tmp_path / "nc.json")]) == 0
    assert "not pre-trained: lite0.none" in capsys.readouterr().err
    assert json.loads((tmp_path / "nc.json").read_text())["random_init"] == ["lite0.none"]


@pytest.mark.parametrize("analysis", ["timing", "fewshot", "ablation"])
def test_analyze_flags_a_random_model_too(tmp_path, capsys, analysis):
    import json

    from nctk.cli import main

    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 10)
    files = {"trained": rng.normal(size=(30, 4)) + labels[:, None],
             "other": rng.normal(size=(30, 4)) + 0.5 * labels[:, None],
             "lite0.none": rng.normal(size=(30, 4))}
    for name, features in files.items():
        save_feature_file(tmp_path / f"{name}.npz", features, labels,
                          random_init=name.endswith(".none"))
    (tmp_path / "gt.json").write_text(json.dumps({"trained": 80, "other": 70,
                                                  "lite0.none": 40}))
    options = {"timing": ["--method", "ncti", "--repeat", "1", "--quiet"],
               "fewshot": ["--method", "ncti", "--shots", "5", "--repeats", "2"],
               "ablation": []}[analysis]
    command = ["analyze", analysis, *(str(tmp_path / f"{n}.npz") for n in files),
               "--ground-truth", str(tmp_path / "gt.json"), *options]
    assert main([*command, "--json", str(tmp_path / "out.json")]) == 0
    assert "not pre-trained: lite0.none" in capsys.readouterr().err
    assert json.loads((tmp_path / "out.json").read_text())["random_init"] == ["lite0.none"]
    trained_only = [c for c in command if "lite0.none" not in c]
    assert main([*trained_only, "--json", str(tmp_path / "plain.json")]) == 0
    assert "randomly initialised" not in capsys.readouterr().err
    assert "random_init" not in json.loads((tmp_path / "plain.json").read_text())
