"""``--head`` and ``--units``: naming the classifier head and the units of a model whose
architecture nctk does not know (shared by rank, extract, collapse and finetune)."""

from __future__ import annotations

import argparse
from typing import Any

HEAD_HELP = ("[NAME=]MODULE: the model's classifier head (its input is the feature, its "
             "output the source logits), a module path from named_modules(), or 'none' for "
             "a model without one (its pooled output is the feature); for architectures whose "
             "head is not found. NAME= applies it to one model of --models (repeat the "
             "option per model), a bare MODULE to every model")
UNITS_HELP = ("[NAME=]A,B,...: the model's units (blocks for layer-wise collapse with "
              "--layers all, and for Layer/SCL fine-tuning), module paths in forward order; "
              "for architectures whose blocks are not found. NAME= and repetition as --head")


def add_parts_arguments(parser: argparse.ArgumentParser | Any, *,
                        unit_aliases: tuple[str, ...] = ()) -> None:
    """Add ``--head`` and ``--units`` (plus ``unit_aliases``, older names of ``--units``)."""
    parser.add_argument("--head", action="append", default=[], metavar="[NAME=]MODULE",
                        help=HEAD_HELP)
    parser.add_argument("--units", *unit_aliases, dest="units", action="append", default=[],
                        metavar="[NAME=]A,B,...", help=UNITS_HELP)


def parts_from_args(args: argparse.Namespace):
    """The :class:`~nctk.extract.parts.ModelParts` of ``--head``/``--units``, or None."""
    if not args.head and not args.units:
        return None
    from nctk.extract.parts import parse_parts

    return parse_parts(args.head, args.units)
