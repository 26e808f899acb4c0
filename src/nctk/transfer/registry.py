"""Name -> transferability method (timm-style registry).

The CLI, the benchmarks and ``--method all`` read this registry; nothing else keeps a
list of methods. A method module registers itself at import with :func:`register`.

:data:`DEFAULT_METHOD` names the method ``nctk rank`` runs by default, lists first, sorts
its tables by and recommends (with the reason its ``recommendation`` gives). Names are
looked up case-insensitively, ``-`` standing for ``_`` (``LogME``, ``reg-hscore``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nctk.errors import InputError

Components = dict[str, float]
#: Pool combination: per-model raw components -> (per-model scores, per-model components
#: before and after normalisation).
Combiner = Callable[[Mapping[str, Components]], tuple[dict[str, float], dict[str, Components]]]


@dataclass(frozen=True)
class Method:
    """One transferability score.

    Attributes:
        name: registry key, as typed on the command line.
        score: ``(X, labels, **options) -> float``, higher = more transferable. ``X`` is the
            (N, d) features, or the (N, Cs) source logits when ``input == "source_logits"``.
            For pool-relative methods this is the documented pool-independent variant.
        input: which array of a feature file the method reads.
        summary: one line for ``--help`` and reports.
        components: for pool-relative methods, ``(X, labels, **options) -> {term: value}``.
        combine: for pool-relative methods, turns the components of every model of a pool
            into scores (e.g. NCTI's min-max normalisation over the pool).
        combine_options: names of the options consumed by ``combine`` rather than
            ``components`` (e.g. NCTI's term weights).
        recommendation: for the default method, one sentence saying why it is recommended
            (shown by ``nctk rank`` and the report).
        upper_bound: ``(num_classes, **options) -> float``: the largest score the method
            can give (H-score: C - 1, SFDA: 1); a model at it is flagged as saturated,
            since the method can no longer tell it from another model at the bound.
    """

    name: str
    score: Callable[..., float]
    input: Literal["features", "source_logits"] = "features"
    summary: str = ""
    components: Callable[..., Components] | None = None
    combine: Combiner | None = None
    combine_options: tuple[str, ...] = ()
    recommendation: str = ""
    upper_bound: Callable[..., float] | None = None

    @property
    def pool_relative(self) -> bool:
        return self.combine is not None


_REGISTRY: dict[str, Method] = {}

#: The method ``nctk rank`` runs when ``--method`` is not given (see the module docstring).
DEFAULT_METHOD = "recommended"


def register(method: Method) -> Method:
    """Add a method to the registry (its name must be new)."""
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    if (method.components is None) != (method.combine is None):
        raise ValueError(f"method {method.name!r}: components and combine go together")
    _REGISTRY[method.name] = method
    return method


def available_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)


def canonical_name(name: str) -> str:
    """The registry key a user's spelling means: lower case, ``-`` as ``_``."""
    return name.strip().lower().replace("-", "_")


def get_method(name: str) -> Method:
    """Look a method up by name (case-insensitive); unknown names raise InputError listing
    the choices."""
    try:
        return _REGISTRY[canonical_name(name)]
    except KeyError:
        raise InputError(f"unknown method '{name}'; choose from "
                         f"{', '.join(available_methods())} or all") from None


def default_method() -> Method:
    """The registered method named :data:`DEFAULT_METHOD`."""
    return get_method(DEFAULT_METHOD)


def resolve_methods(spec: str) -> list[Method]:
    """``"all"`` or a comma-separated list of names -> methods, in the order given (any
    case; a method named twice is kept once)."""
    names = available_methods() if canonical_name(spec) == "all" else [
        s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise InputError("no method given")
    return list({m.name: m for m in map(get_method, names)}.values())


def _method(method: str | Method) -> Method:
    return get_method(method) if isinstance(method, str) else method


def supported_options(method: str | Method, candidates: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``candidates`` that ``method`` takes.

    Options of the per-model function (``score``, or ``components`` for pool-relative
    methods) are judged from its signature; ``combine_options`` are always accepted.
    """
    meth = _method(method)
    func = meth.components if meth.pool_relative else meth.score
    params = inspect.signature(func).parameters
    return {k: v for k, v in candidates.items() if k in params or k in meth.combine_options}


def effective_options(method: str | Method, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option ``method`` runs with: the defaults of its per-model function and of its
    pool combination (keyword parameters with a default; ``device`` left out), overridden by
    ``given``. For the record of a run (provenance), not for calling the method."""
    meth = _method(method)
    funcs = [meth.components if meth.pool_relative else meth.score]
    funcs += [meth.combine] if meth.pool_relative else []
    options: dict[str, Any] = {}
    for func in funcs:
        for name, param in inspect.signature(func).parameters.items():
            if param.default is not inspect.Parameter.empty and name != "device":
                options[name] = param.default
    return options | dict(given)
