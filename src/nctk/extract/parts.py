"""The classifier head and the units of a model, named by the user where discovery cannot
tell them (an architecture nctk knows nothing about).

:class:`ModelParts` holds module paths per model name (the key ``""`` applies to every
model); :func:`apply_parts` gives a loaded :class:`~nctk.extract.models.ModelAdapter` the
head and units named for it:

* ``head``: the module whose *input* is the feature (the penultimate representation) and
  whose *output* are the source logits; ``"none"`` means the model has no classifier: its
  pooled output is the feature and it has no logits;
* ``units``: the blocks offered for layer-wise analysis (``layers="all"``) and fine-tuned
  one at a time by Layer FT and SCL FT (Li et al. 2023), in forward order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nctk.errors import InputError
from nctk.extract.models import (
    HEAD_DECLARATION,
    NO_HEAD,
    UNITS_DECLARATION,
    ModelAdapter,
    model_identity,
)


@dataclass(frozen=True)
class ModelParts:
    """Head and unit module paths named by the user, per model name (``""``: every model).

    Attributes:
        heads: model name -> module path of its classifier head, or ``"none"``.
        units: model name -> module paths of its units, in forward order.
    """

    heads: Mapping[str, str] = field(default_factory=dict)
    units: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def head_for(self, name: str) -> str | None:
        """The head named for model ``name`` (or for every model), else None."""
        return self.heads.get(name, self.heads.get(""))

    def units_for(self, name: str) -> tuple[str, ...] | None:
        """The units named for model ``name`` (or for every model), else None."""
        return self.units.get(name, self.units.get(""))

    def model_names(self) -> set[str]:
        """The model names the parts are given for (``""`` excluded)."""
        return {n for n in (*self.heads, *self.units) if n}

    def apply(self, adapter: ModelAdapter) -> ModelAdapter:
        """:func:`apply_parts` (what :func:`nctk.extract.load_model` calls, so that the
        models module needs no import of this one)."""
        return apply_parts(adapter, self)


def apply_parts(adapter: ModelAdapter, parts: ModelParts | None) -> ModelAdapter:
    """``adapter`` with the head and units ``parts`` names for it (checked to exist); the
    cache identity of a model whose head was named records that head (it changes the
    features). InputError naming the model and listing candidates for a missing module."""
    if parts is None:
        return adapter
    head, units = parts.head_for(adapter.name), parts.units_for(adapter.name)
    if head is not None:
        _set_head(adapter, head)
    if units is not None:
        _check_modules(adapter, units, "unit")
        adapter.set_units(units)
    return adapter


def declare_parts(adapter: ModelAdapter, parts: ModelParts | None) -> None:
    """Write the head and units ``parts`` names for the adapter's model into its module, as
    the model's own declaration (``nctk_head``, ``nctk_units``; see
    :func:`nctk.extract.models.find_head`), so that code given the bare module (fine-tuning)
    finds the same parts. Only for modules nctk loaded itself: the module is changed."""
    if parts is None:
        return
    head, units = parts.head_for(adapter.name), parts.units_for(adapter.name)
    if head is not None:
        setattr(adapter.module, HEAD_DECLARATION, head)
    if units is not None:
        setattr(adapter.module, UNITS_DECLARATION, tuple(units))


def _set_head(adapter: ModelAdapter, head: str) -> None:

    if head.lower() == NO_HEAD:
        adapter.set_head(None)
    else:
        _check_modules(adapter, [head], "head")
        adapter.set_head(adapter.module.get_submodule(head))
    adapter.identity = f"{model_identity(adapter)}|head={head}"


def _check_modules(adapter: ModelAdapter, names: Sequence[str], what: str) -> None:
    if not adapter.hookable:
        raise InputError(f"model '{adapter.name}' is TorchScript: its {what} cannot be named "
                         "(its modules cannot take hooks)")
    modules = dict(adapter.module.named_modules())
    for name in names:
        if not name or name not in modules:
            raise InputError(f"model '{adapter.name}' has no module '{name}' to use as its "
                             f"{what}; {_candidates(adapter, what)}")


def _candidates(adapter: ModelAdapter, what: str) -> str:
    """A hint listing plausible modules: linear layers for a head, containers' children
    for units."""
    from torch import nn

    if what == "head":
        linears = [n for n, m in adapter.module.named_modules() if isinstance(m, nn.Linear)]
        return (f"its nn.Linear modules: {', '.join(linears[-6:])}" if linears
                else f"it has no nn.Linear (use {NO_HEAD} for the pooled output)")
    found = adapter.units()
    return (f"its units found: {', '.join(found[:8])}{', ...' if len(found) > 8 else ''}"
            if found else "any path from named_modules() is accepted")


def parse_parts(heads: Sequence[str] = (), units: Sequence[str] = ()) -> ModelParts:
    """``ModelParts`` from ``[NAME=]MODULE`` head entries and ``[NAME=]A,B,...`` unit
    entries (a bare entry applies to every model); InputError on an empty or repeated one."""
    return ModelParts(heads={k: v[0] for k, v in _entries(heads, "head").items()},
                      units=_entries(units, "units"))


def _entries(values: Sequence[str], what: str) -> dict[str, tuple[str, ...]]:
    from nctk.extract.models import split_name

    entries: dict[str, tuple[str, ...]] = {}
    for value in values:
        name, rest = split_name(value)
        modules = tuple(s.strip() for s in rest.split(",") if s.strip())
        if not modules or (what == "head" and len(modules) != 1):
            raise InputError(f"expected {'[NAME=]MODULE' if what == 'head' else '[NAME=]A,B,...'}"
                             f", got {value!r}", parameter=what)
        key = name or ""
        if key in entries:
            target = f"model {key!r}" if key else "all models"
            raise InputError(f"{what} given twice for {target}", parameter=what)
        entries[key] = modules
    return entries
