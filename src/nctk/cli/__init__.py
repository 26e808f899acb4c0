"""The ``nctk`` command: a thin layer that parses arguments, calls the library and prints.

Each sub-command lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``func(args) -> int``. Bad input (:class:`nctk.errors.InputError`)
ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nctk.errors import InputError

#: Sub-command modules, in the order ``nctk --help`` lists them.
COMMANDS = ("rank", "collapse", "analyze", "extract", "finetune", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command registered."""
    from nctk import __version__

    parser = argparse.ArgumentParser(
        prog="nctk",
        description="Neural-collapse toolkit: rank pre-trained models for transfer, measure "
                    "collapse, fine-tune guided by it.")
    parser.add_argument("--version", action="version", version=f"nctk {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"nctk.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nctk`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"nctk {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unwritable output, disk full: name the path, no traceback
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"nctk {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nctk {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
