"""``--executor`` and the Ray options shared by ``nctk extract``, ``nctk rank --models`` and
``nctk collapse``, and the exit status of a run in which some models failed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from nctk.cli import _types as types
from nctk.errors import InputError

#: Exit status when some models failed and the others' results were written.
PARTIAL = 1

RAY_OPTIONS = ("ray_address", "gpus_per_model", "cpus_per_model", "retries")


def add_executor_arguments(parser: argparse.ArgumentParser, *, unit: str = "model") -> None:
    """``--executor loop|ray``, ``--ray-address``, ``--gpus-per-model``,
    ``--cpus-per-model``, ``--retries`` (``unit`` names what one task handles)."""
    group = parser.add_argument_group(
        "running the work (docs/scale.md)",
        f"one task per {unit}: in this process (loop, the default) or as Ray tasks on a "
        "local Ray instance or a cluster (pip install 'nctk[ray]')")
    group.add_argument("--executor", choices=("loop", "ray"), default="loop",
                       help="loop (default) or ray")
    group.add_argument("--ray-address", metavar="ADDRESS",
                       help="an existing Ray cluster (host:port, ray://host:port or auto); "
                            "default: start a local Ray instance")
    group.add_argument("--gpus-per-model", type=types.non_negative_float, metavar="G",
                       help=f"GPUs Ray reserves per {unit}, a fraction shares a card (0.25: "
                            "four at once); default 1 when the cluster has GPUs, else 0")
    group.add_argument("--cpus-per-model", type=types.positive_float, metavar="C",
                       help=f"CPUs Ray reserves per {unit} (default 1)")
    group.add_argument("--retries", type=types.non_negative_int, metavar="N",
                       help="how often Ray re-runs a task that crashed or raised (default 3)")


def make_executor(args: argparse.Namespace) -> Any:
    """The executor the options ask for (a context manager); InputError for Ray options
    without ``--executor ray``, or Ray not installed (values are checked by argparse)."""
    from nctk.scale.executors import DEFAULT_RETRIES, LoopExecutor, RayExecutor

    given = [name for name in RAY_OPTIONS if getattr(args, name, None) is not None]
    if args.executor != "ray":
        if given:
            raise InputError("only with --executor ray", file=_flag(given[0]))
        return LoopExecutor()
    cpus, retries = args.cpus_per_model, args.retries
    return RayExecutor(args.ray_address, cpus_per_task=1 if cpus is None else cpus,
                       gpus_per_task=args.gpus_per_model,
                       retries=DEFAULT_RETRIES if retries is None else retries)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def report_failures(command: str, failures: Sequence[Any], total: int, *,
                    what: str = "models") -> int:
    """One stderr line per failed model; the exit status: 0 none failed, 1 (``PARTIAL``)
    some did and the others' results were written, 2 all did."""
    for record in failures:
        print(f"nctk {command}: error: model {record.spec}: {record.error}", file=sys.stderr)
    if not failures:
        return 0
    if len(failures) == total:
        return 2
    print(f"nctk {command}: {len(failures)} of {total} {what} failed; the results cover the "
          f"other {total - len(failures)}", file=sys.stderr)
    return PARTIAL
