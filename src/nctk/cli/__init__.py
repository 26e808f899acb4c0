"""The ``nctk`` command: a thin layer that parses arguments, calls the library and prints.

Each sub-command lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``func(args) -> int``. Bad input (:class:`nctk.errors.InputError`)
ends with one line on stderr and exit status 2, never a traceback.

The library names its parameters, not flags: an error about a parameter
(``InputError(..., parameter="image_size")``) and a remedy written as Python
(``trust_checkpoint=True``, ``image_size=...``) are shown here with the command's own
option for that parameter (its argparse ``dest``: ``--image-size``, ``--trust-checkpoint``),
by :func:`in_flags` and :func:`error_line`; notes printed by the commands go through
:func:`in_flags` too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import NoReturn, TextIO

from nctk.errors import InputError, UnknownChoice
from nctk.paths import STDOUT

#: Sub-command -> one-line summary, in the order ``nctk --help`` lists them. Each lives in
#: ``nctk/cli/<name>.py``; only the module of the command being run is imported, so that
#: ``nctk --help`` does not pay for torch and scipy.
COMMANDS = {
    "rank": "rank pre-trained models for a labelled target dataset",
    "collapse": "neural-collapse metrics (NC1, CDNV, numerical rank, NC2-NC4) per layer",
    "analyze": "the NCTI paper's analyses (ablation, weights, few-shot, timing, source)",
    "extract": "extract frozen features of models on a dataset (one .npz per model)",
    "finetune": "LP / Layer FT / SCL FT / full FT guided by neural collapse",
    "select": "pick the model to fine-tune within a compute budget (successive halving)",
    "demo": "rank a shipped pool of small models, offline, and write a report",
}


#: Optional packages -> the extra of ``pyproject.toml`` that installs them.
EXTRAS = {"torchvision": "vision", "PIL": "vision", "timm": "timm", "transformers": "hf",
          "datasets": "hf", "ray": "ray"}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2), like
    every other bad input; sub-command parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser; the sub-command named in ``argv`` gets its full parser."""
    from nctk.version import __version__

    parser = OneLineParser(
        prog="nctk",
        description="Neural-collapse toolkit: rank pre-trained models for transfer, measure "
                    "collapse, fine-tune guided by it.")
    parser.add_argument("--version", action="version", version=f"nctk {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, summary in COMMANDS.items():
        if name == chosen:
            importlib.import_module(f"nctk.cli.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nctk`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    for stream in (sys.stdout, sys.stderr):
        # a file name that is not UTF-8, or any name on an ASCII or strict terminal
        # (PYTHONIOENCODING=utf-8:strict, LC_ALL=C): escaped, never a UnicodeEncodeError
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser(argv)
    try:
        args = _parse(parser, argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        return int(stop.code or 0)
    args.argv = argv  # the command line as given, for the provenance of results
    command = command_parser(parser, args)
    args.flags = option_flags(command)
    try:
        if getattr(args, "image_size", None):  # before any work: a size the memory holds
            from nctk.cli._types import check_input_size

            check_input_size(args.image_size, getattr(args, "batch_size", None))
        with _json_to_stdout(args), _log_to_stderr(args.flags), warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return int(args.func(args) or 0)
    except InputError as err:
        print(f"nctk {args.command}: error: {error_line(err, args.flags, command.prog)}",
              file=sys.stderr)
        return 2
    except OSError as err:  # unwritable output, disk full: name the path, no traceback
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"nctk {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:  # a core install asked for what an extra brings
        extra = EXTRAS.get((err.name or "").partition(".")[0])
        if extra is None:
            raise
        print(f"nctk {args.command}: error: this needs {err.name}, which the '{extra}' extra "
              f"installs: pip install 'nctk[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nctk {args.command}: interrupted", file=sys.stderr)
        return 130


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace
                   ) -> argparse.ArgumentParser:
    """The parser of the (sub-)command that ``args`` ran (``nctk analyze fewshot``'s own)."""
    while True:
        chosen = next((action.choices.get(getattr(args, action.dest, None))
                       for action in parser._actions
                       if isinstance(action, argparse._SubParsersAction)), None)
        if chosen is None:
            return parser
        parser = chosen


#: Library parameters whose option has another name (parameter -> the option's ``dest``).
PARAMETER_OPTIONS = {"address": "ray_address", "method": "methods", "out_dir": "out"}


def option_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Library parameter name (an option's ``dest``, or :data:`PARAMETER_OPTIONS`) -> the
    option (``--image-size``)."""
    flags = {action.dest: next((o for o in action.option_strings if o.startswith("--")),
                               action.option_strings[0])
             for action in parser._actions if action.option_strings and action.dest != "help"}
    return flags | {parameter: flags[dest] for parameter, dest in PARAMETER_OPTIONS.items()
                    if dest in flags}


def in_flags(text: str, flags: Mapping[str, str]) -> str:
    """``text`` with each remedy written as Python for a parameter that is an option here
    shown as that option: ``trust_checkpoint=True`` -> ``--trust-checkpoint``,
    ``image_size=...`` -> ``--image-size``, ``seed=3`` -> ``--seed 3``."""
    def option(match: re.Match[str]) -> str:
        value = match.group(2)
        flag = flags[match.group(1)]
        return flag if value in ("", "True", "...") else f"{flag} {value}"

    if not flags:
        return text
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))
    return re.sub(rf"\b({names})=([^\s,;)]*)", option, text)


def error_line(err: InputError, flags: Mapping[str, str], prog: str) -> str:
    """The error's line in the command's terms: its parameter and remedies as options, and
    for an unknown name, where the command's help lists the accepted ones."""
    if err.parameter in flags:
        err = err.as_option(flags[err.parameter])
    line = in_flags(str(err), flags)
    return line + (f" (see {prog} --help)" if isinstance(err, UnknownChoice) else "")


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """The parsed command line; arguments nothing took are a usage error naming them, and
    when they follow a comma-list option (``--models a b``) saying to join them with commas."""
    from nctk.cli._types import comma_list_options, spaced_list

    args, strays = parser.parse_known_args(argv)
    if strays:
        command = command_parser(parser, args)
        message = spaced_list(argv, strays, comma_list_options(command))
        command.error(message or f"unrecognized arguments: {' '.join(strays)}")
    return args


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    """Warnings as one line on stderr (``nctk: warning: ...``), without source lines."""
    text = " ".join(str(message).split())
    print(f"nctk: warning: {text}", file=file or sys.stderr)


class _OptionFormatter(logging.Formatter):
    """``nctk: <message>``, with the parameters it names shown as the command's options."""

    def __init__(self, flags: Mapping[str, str]):
        super().__init__("nctk: %(message)s")
        self.flags = flags

    def format(self, record: logging.LogRecord) -> str:
        return in_flags(" ".join(super().format(record).split()), self.flags)


@contextlib.contextmanager
def _log_to_stderr(flags: Mapping[str, str]) -> Iterator[None]:
    """The library's log records (logger ``nctk``, INFO and above) as one line each on
    standard error while a command runs."""
    logger = logging.getLogger("nctk")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OptionFormatter(flags))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@contextlib.contextmanager
def _json_to_stdout(args: argparse.Namespace) -> Iterator[None]:
    """``--json -``: the JSON is the only thing on standard output (``args.json`` becomes
    the stream); tables and notes printed meanwhile go to standard error."""
    if getattr(args, "json", None) != STDOUT:
        yield
        return
    args.json = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield


if __name__ == "__main__":
    sys.exit(main())
