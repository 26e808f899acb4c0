"""``--executor`` and the Ray options shared by ``nctk extract``, ``nctk rank --models`` and
``nctk collapse --shards``, and the exit status of a run in which some models failed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from nctk.cli import _types as types
from nctk.errors import InputError

#: Exit status when some models failed and the others' results were written.
PARTIAL = 1

#: The options that only make sense with ``--executor ray``.
RAY_OPTIONS = ("ray_address", "gpus_per_model", "cpus_per_model", "retries")


def add_executor_arguments(parser: argparse.ArgumentParser, *, per_model: bool = True
                           ) -> argparse._ArgumentGroup:
    """``--executor loop|ray``, ``--ray-address``, ``--retries`` and, for commands with one
    task per model (``per_model``), ``--gpus-per-model`` and ``--cpus-per-model``."""
    unit = "model" if per_model else "shard of rows"
    group = parser.add_argument_group(
        "running the work (docs/scale.md)",
        f"one task per {unit}: in this process (loop, the default) or as Ray tasks on a "
        "local Ray instance or a cluster (pip install 'nctk[ray]')")
    group.add_argument("--executor", choices=("loop", "ray"), default="loop",
                       help="loop (default) or ray")
    group.add_argument("--ray-address", metavar="ADDRESS",
                       help="an existing Ray cluster (host:port, ray://host:port or auto); "
                            "default: start a local Ray instance")
    if per_model:
        group.add_argument("--gpus-per-model", type=types.non_negative_float, metavar="G",
                           help="GPUs Ray reserves per model, a fraction shares a card (0.25: "
                                "four at once); default 1 when the cluster has GPUs, else 0")
        group.add_argument("--cpus-per-model", type=types.positive_float, metavar="C",
                           help="CPUs Ray reserves per model (default 1)")
    group.add_argument("--retries", type=types.non_negative_int, metavar="N",
                       help="how often Ray re-runs a task that crashed or raised (default 3)")
    return group


def make_executor(args: argparse.Namespace) -> Any:
    """The executor the options ask for (a context manager); InputError for Ray options
    without ``--executor ray``, or Ray not installed (values are checked by argparse)."""
    from nctk.scale.executors import DEFAULT_RETRIES, LoopExecutor, RayExecutor

    given = [name for name in RAY_OPTIONS if getattr(args, name, None) is not None]
    if args.executor != "ray":
        if given:
            raise InputError("only with --executor ray", file=_flag(given[0]))
        return LoopExecutor()
    cpus = getattr(args, "cpus_per_model", None)
    gpus = args.gpus_per_model if hasattr(args, "gpus_per_model") else 0  # shards: no GPU
    try:
        return RayExecutor(args.ray_address, cpus_per_task=1 if cpus is None else cpus,
                           gpus_per_task=gpus,
                           retries=DEFAULT_RETRIES if args.retries is None else args.retries)
    except InputError as err:  # Ray is not installed
        raise err.located(parameter="executor") from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def report_failures(command: str, failures: Sequence[tuple[str, str]], total: int, *,
                    what: str = "models", flags: Mapping[str, str] | None = None) -> int:
    """One stderr line per failed model, ``failures`` as (spec, error) pairs (remedies in
    the command's ``flags``, see :func:`nctk.cli.in_flags`); the exit status: 0 none
    failed, 1 (``PARTIAL``) some did and the others' results were written, 2 all did."""
    from nctk.cli import in_flags

    for spec, error in failures:
        print(f"nctk {command}: error: model {spec}: {in_flags(str(error), flags or {})}",
              file=sys.stderr)
    if not failures:
        return 0
    if len(failures) == total:
        return 2
    print(f"nctk {command}: {len(failures)} of {total} {what} failed; the results cover the "
          f"other {total - len(failures)}", file=sys.stderr)
    return PARTIAL
