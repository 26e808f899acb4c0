"""Executors: run one pure function over many items, reporting each outcome as it ends.

Both executors offer ``map_unordered(func, shared, items)``: ``func(shared, item)`` is
called once per item, and an :class:`Outcome` is yielded as each call finishes (its
``index`` says which item). A call that raises yields an outcome with a one-line
``error``; the other items go on.

* :class:`LoopExecutor` calls ``func`` in this process, in order, once each.
* :class:`RayExecutor` (``pip install 'nctk[ray]'``) runs every call as a Ray task:
  ``shared`` is put in the object store once (``ray.put``) and every task gets a
  reference to it; Ray schedules the tasks over the cluster's CPUs and GPUs (per-task
  ``num_cpus``/``num_gpus``, fractions allowed), retries a task whose worker died or that
  raised (``max_retries``, ``retry_exceptions``), and ``ray.wait`` streams the results
  back as tasks finish. nctk adds no scheduling of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from nctk.errors import InputError

#: Ray's default number of retries of a failed task.
DEFAULT_RETRIES = 3

RAY_MISSING = "the Ray executor needs Ray: pip install 'nctk[ray]'"


@dataclass
class Outcome:
    """The end of one call: its item's ``index`` and its ``value``, or a one-line ``error``."""

    index: int
    value: Any = None
    error: str | None = None


def one_line(exc: BaseException) -> str:
    """``"ExcType: first line of the message"``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class LoopExecutor:
    """Runs the calls one after another in this process (no retries)."""

    name = "loop"
    remote = False  # calls run here: the dataset is used as it is

    def __enter__(self) -> LoopExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def parallelism(self) -> int:
        """How many calls run at once."""
        return 1

    def map_unordered(self, func: Callable[[Any, Any], Any], shared: Any,
                      items: Sequence[Any]) -> Iterator[Outcome]:
        for index, item in enumerate(items):
            try:
                yield Outcome(index, func(shared, item))
            except Exception as exc:  # one item's failure must not stop the others
                yield Outcome(index, error=one_line(exc))


class RayExecutor:
    """Runs every call as a Ray task (see the module docstring).

    Args:
        address: an existing cluster (``ray://host:10001``, ``host:6379`` or ``auto``);
            None starts a local Ray instance (or uses the one this process already
            started, or the one ``RAY_ADDRESS`` names).
        cpus_per_task: CPUs Ray reserves for each task (threads torch may use).
        gpus_per_task: GPUs per task, a fraction to share a card (``0.25``: four models
            on one GPU); None means 1 when the cluster has GPUs, else 0.
        retries: how often Ray re-runs a task whose worker died or that raised.
        num_cpus: CPUs of a local instance started here (None: all of this machine's).

    Used as a context manager: a Ray instance started on entry is shut down on exit (of
    the outermost context, when entered again inside it).
    """

    name = "ray"
    remote = True  # calls may run on other machines: the dataset is packed first

    def __init__(self, address: str | None = None, *, cpus_per_task: float = 1,
                 gpus_per_task: float | None = None, retries: int = DEFAULT_RETRIES,
                 num_cpus: int | None = None):
        self.ray = import_ray()
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.retries = retries
        self.num_cpus = num_cpus
        self._started = False
        self._depth = 0  # entered again inside its own context (e.g. by a workflow)

    def __enter__(self) -> RayExecutor:
        self._depth += 1
        if self._depth > 1:  # nested: the outer context keeps the instance it holds
            return self
        if not self.ray.is_initialized():
            try:
                local = {"num_cpus": self.num_cpus} if self.address is None else {}
                self.ray.init(address=self.address, include_dashboard=False,
                              logging_level=logging.WARNING, **local)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = self.address or "a local Ray instance"
                raise InputError(f"cannot start or reach {where}: {one_line(exc)}",
                                 parameter="address") from None
            self._started = True
        if self.gpus_per_task is None:
            self.gpus_per_task = 1 if self.ray.cluster_resources().get("GPU", 0) >= 1 else 0
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._started:
            self.ray.shutdown()
            self._started = False

    def parallelism(self) -> int:
        """How many tasks of ``cpus_per_task`` CPUs the cluster runs at once."""
        cpus = self.ray.cluster_resources().get("CPU", 1)
        return max(1, int(cpus // self.cpus_per_task))

    def map_unordered(self, func: Callable[[Any, Any], Any], shared: Any,
                      items: Sequence[Any]) -> Iterator[Outcome]:
        ray = self.ray
        task = ray.remote(func).options(
            num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task or 0,
            max_retries=self.retries, retry_exceptions=True)
        shared_ref = ray.put(shared)
        pending = {task.remote(shared_ref, item): index for index, item in enumerate(items)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    index = pending.pop(ref)
                    try:
                        yield Outcome(index, ray.get(ref))
                    except ray.exceptions.RayError as exc:
                        yield Outcome(index, error=ray_error(exc))
        finally:  # stopped early (interrupt, error): leave nothing running on the cluster
            if pending and ray.is_initialized():
                for ref in pending:
                    ray.cancel(ref, force=True)


def ray_error(exc: BaseException) -> str:
    """One line for a task that failed for good: the task's own exception when it raised,
    else what Ray says (e.g. its worker died on every attempt)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return one_line(cause)
    return one_line(exc)


def import_ray() -> Any:
    """The ``ray`` module; InputError saying how to install it when absent."""
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray
