"""``nctk extract``: (being written)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("extract", help="(being written)")
    parser.set_defaults(func=lambda args: 0)
