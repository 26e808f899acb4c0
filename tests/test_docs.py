"""The README and docs as a new user meets them: the Python snippet runs as written, every
link stays inside the repository, and the help texts state the defaults the commands use."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from nctk.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         ROOT / "benchmarks" / "README.md"]

#: Files that exist only on the machine where nctk was first written.
OUTSIDE = re.compile(r"spec/metrics\.md|\bdesign\.md|/work/|\.\./shared|spec §")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_snippet_runs_as_written(capsys):
    (snippet,) = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    result, stats = namespace["result"], namespace["stats"]
    assert result.ranking == ["pixels", "blurred"]  # noise makes the features worse
    from_stats = namespace["nctk"].collapse.from_stats(stats)
    direct = namespace["nctk"].collapse.measure(namespace["features"], namespace["labels"])
    assert from_stats["nc1"] == pytest.approx(direct["nc1"], rel=1e-7)
    assert "pixels" in capsys.readouterr().out


def test_source_docstrings_point_only_inside_the_repository():
    for path in sorted((ROOT / "src" / "nctk").rglob("*.py")):
        assert not OUTSIDE.findall(path.read_text(encoding="utf-8")), path


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_link_only_to_files_inside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    assert not OUTSIDE.findall(text), f"{page.name} refers to files outside the repository"
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name}: broken link {target}"
        assert ROOT in path.parents or path == ROOT, f"{page.name}: {target} leaves the repo"


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:  # argparse has no public walk over sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def _parsers():
    for command in COMMANDS:
        parser = build_parser([command])
        for name, sub in _subparsers(parser):
            if name.split()[0] == command:
                yield name, sub


@pytest.mark.parametrize("name, parser", list(_parsers()), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_help_texts_state_the_defaults_the_commands_use(name, parser):
    """Where a help text names a default, it is the option's actual default."""
    for action in parser._actions:
        if not action.help or action.default in (None, argparse.SUPPRESS, False):
            continue
        text = action.help % {**vars(action), "prog": parser.prog} if "%(" in action.help \
            else action.help
        stated = re.search(r"default:? ([^);]+)", text)
        if stated is None or not isinstance(action.default, str | int | float):
            continue
        value = stated.group(1).strip()
        default = str(action.default)
        assert value.startswith(default) or default.startswith(value.split(",")[0]) or \
            value in ("the paper's",), f"nctk {name} {action.option_strings}: help says " \
                                       f"'{value}', default is {default!r}"


def test_analyze_defaults_are_those_of_each_analysis():
    parsers = dict(_parsers())
    assert parsers["analyze timing"].get_default("method") == "all"
    assert parsers["analyze fewshot"].get_default("method") == "all"
    assert parsers["analyze ablation"].get_default("method") == "ncti"
    source_usage = parsers["analyze source"].format_usage()
    assert source_usage.index("FEATURES.npz") < source_usage.index("--source")
