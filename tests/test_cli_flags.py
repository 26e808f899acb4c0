"""The library names parameters; the command line shows its own options for them."""

from __future__ import annotations

import pytest

from nctk.cli import build_parser, command_parser, error_line, in_flags, main, option_flags
from nctk.demo.run import select_models
from nctk.errors import InputError, UnknownChoice


def _flags(*argv: str) -> tuple[dict[str, str], str]:
    parser = build_parser(argv)
    command = command_parser(parser, parser.parse_args(argv))
    return option_flags(command), command.prog


def test_each_command_maps_its_parameters_to_its_options():
    flags, prog = _flags("rank", "a.npz")
    assert prog == "nctk rank"
    assert flags["trust_checkpoint"] == "--trust-checkpoint" and flags["prior"] == "--prior"
    assert flags["no_progress"] == "--no-progress"  # the long form of several
    flags, prog = _flags("analyze", "fewshot", "a.npz", "--ground-truth", "g.json")
    assert prog == "nctk analyze fewshot" and flags["shots"] == "--shots"


def test_remedies_written_as_python_become_options():
    flags = {"trust_checkpoint": "--trust-checkpoint", "image_size": "--image-size",
             "seed": "--seed", "prior": "--prior"}
    assert in_flags("pass trust_checkpoint=True only", flags) == "pass --trust-checkpoint only"
    assert in_flags("try another image size (image_size=...)", flags) == \
        "try another image size (--image-size)"
    assert in_flags("draws with seed=3, then", flags) == "draws with --seed 3, then"
    # words that are no remedy, and parameters the command has no option for, stay as they are
    assert in_flags("no prior value; my_prior=1; skip_bad_images=True", flags) == \
        "no prior value; my_prior=1; skip_bad_images=True"


def test_an_error_about_a_parameter_names_the_option():
    with pytest.raises(InputError) as caught:
        select_models(["cnn_small", "typo"])
    assert str(caught.value).startswith("parameter 'models': unknown demo model 'typo'")
    line = error_line(caught.value, {"models": "--models"}, "nctk demo")
    assert line.startswith("--models: unknown demo model 'typo'")
    unknown = UnknownChoice("unknown thing 'x'; accepted: a, b", parameter="thing")
    assert error_line(unknown, {}, "nctk rank") == \
        "parameter 'thing': unknown thing 'x'; accepted: a, b (see nctk rank --help)"


def test_copies_keep_the_class_and_the_location():
    err = UnknownChoice("bad", array="features").located(file="a.npz", parameter="p")
    assert type(err) is UnknownChoice and str(err) == "a.npz: parameter 'p': array 'features': bad"
    wrapped = err.within("model 1 of 2 (x)")
    assert type(wrapped) is UnknownChoice
    assert str(wrapped) == "model 1 of 2 (x): a.npz: parameter 'p': array 'features': bad"
    assert str(InputError("bad", parameter="p").as_option("--p")) == "--p: bad"


def test_demo_errors_name_its_options(capsys):
    assert main(["demo", "--models", "cnn_small", "--no-report", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        "nctk demo: error: --models: a ranking needs at least 2 distinct models")


def test_library_log_records_are_one_line_in_the_commands_terms(monkeypatch, capsys):
    import logging

    import nctk.cli.extract as extract_cli

    def logs_and_fails(args):
        logging.getLogger("nctk.extract.engine").warning("skipped 2 images;\n  pass "
                                                         "skip_bad_images=True")
        logging.getLogger("nctk.extract.engine").debug("not shown")
        return 0

    monkeypatch.setattr(extract_cli, "run", logs_and_fails)
    assert main(["extract", "--models", "m", "--data", "d", "--out", "o"]) == 0
    assert capsys.readouterr().err == "nctk: skipped 2 images; pass --skip-bad-images\n"
    assert logging.getLogger("nctk").handlers == []  # removed after the command


def test_the_advice_names_the_commands_own_option(tmp_path, capsys):
    import numpy as np

    from nctk.io import save_feature_file

    rng = np.random.default_rng(0)
    paths = []
    for name in ("a", "b"):
        paths.append(str(tmp_path / f"{name}.npz"))
        save_feature_file(paths[-1], rng.normal(size=(20, 3)), np.arange(20) % 2)
    assert main(["rank", *paths, "--method", "logme"]) == 0
    assert "(not run here; run it too: --method recommended)" in capsys.readouterr().out
    assert option_flags(command_parser(build_parser(["demo"]), build_parser(["demo"])
                                       .parse_args(["demo"])))["method"] == "--methods"


def test_output_folder_and_resume_name_the_library_parameter_or_the_option(tmp_path):
    from nctk.finetune.train import TrainConfig, _check_call

    with pytest.raises(InputError) as caught:
        _check_call(TrainConfig(epochs=2), None, True, None)
    assert str(caught.value) == ("parameter 'resume': needs an output directory "
                                 "(out_dir=...) holding a checkpoint")
    flags, prog = _flags("finetune", "--model", "m", "--data", "d", "--method", "lp")
    assert error_line(caught.value, flags, prog) == (
        "--resume: needs an output directory (--out) holding a checkpoint")
