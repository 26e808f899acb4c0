"""Spec kinds: the registry that maps a spec's prefix to the code that loads it.

A model spec is ``[NAME=]<kind>:<rest>`` (``torchvision:resnet50:IMAGENET1K_V2``) or a
checkpoint path; a dataset spec is ``<kind>:<rest>`` (``imagefolder:DIR``). Each kind is
registered once, by prefix, with one call::

    from nctk.extract.specs import ModelRequest, register_model_kind

    def load_mine(request: ModelRequest) -> ModelAdapter:   # request.rest: after "mine:"
        ...

    register_model_kind("mine", load_mine, form="mine:<name>",
                        summary="models of my zoo")

:func:`nctk.extract.load_model` and :func:`nctk.extract.load_dataset` then accept
``mine:...`` everywhere (``nctk rank --models``, ``nctk extract``, ``nctk finetune``).
``load`` may also be a ``"module:function"`` string, imported on first use, so that
registering a kind costs nothing until a spec of that kind is loaded.

Where kinds come from (nothing else is needed to make a spec work):

* nctk's own (``torchvision:``, ``timm:``, ``hf:``, ``file:``, ``imagefolder:``, ``npz:``):
  :mod:`nctk.extract.kinds`, imported on the first lookup;
* the shipped demo (``demo:<model>``, ``demo:target``): :mod:`nctk.demo.kinds`, imported by
  the package root ``nctk`` (``extract`` does not know the demo);
* other packages: an entry point in the group :data:`ENTRY_POINT_GROUP` naming a module
  whose import registers its kinds (or a function that does), loaded on the first
  lookup: ``[project.entry-points."nctk.spec_kinds"] mine = "my_package.nctk_kinds"``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nctk.errors import UnknownChoice

#: Roles of a spec: a model, or a labelled image dataset.
MODEL, DATASET = "model", "dataset"
#: The entry-point group through which other packages register spec kinds.
ENTRY_POINT_GROUP = "nctk.spec_kinds"
#: Modules of nctk's own kinds (imported on the first lookup; each registers on import).
BUILT_IN = ("nctk.extract.kinds",)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRequest:
    """What a model kind's loader is asked for.

    Attributes:
        spec: the whole spec without ``NAME=`` (``torchvision:resnet18:DEFAULT``).
        rest: the part after ``<kind>:`` (``resnet18:DEFAULT``).
        name: the model's name when given (``NAME=``, or the caller's); None: the
            loader derives one.
        image_size: crop size of the preprocessing, None for the model's own.
        trust_checkpoint: whether files that carry code may be loaded.
    """

    spec: str
    rest: str
    name: str | None = None
    image_size: int | None = None
    trust_checkpoint: bool = False


@dataclass(frozen=True)
class DataRequest:
    """What a dataset kind's loader is asked for.

    Attributes:
        spec: the whole spec (``imagefolder:/data/pets``).
        rest: the part after ``<kind>:``.
        split: the split asked for (``train``, ``test``, ...), or None.
        image_column, label_column: columns of a table-like source (Hugging Face), or None.
    """

    spec: str
    rest: str
    split: str | None = None
    image_column: str | None = None
    label_column: str | None = None


Loader = Callable[[Any], Any]
PathsOf = Callable[[str], list[Path]]


@dataclass(frozen=True)
class SpecKind:
    """One registered kind.

    Attributes:
        role: :data:`MODEL` or :data:`DATASET`.
        prefix: the text before the first ``:`` (``torchvision``).
        load: ``load(request) -> ModelAdapter | LabelledImages``, or ``"module:function"``.
        form: how a spec of this kind is written, for help texts and docs.
        summary: a few words on what it loads.
        paths: ``paths(rest) -> [Path]``, the local files and folders a spec reads (for the
            output checks of :func:`nctk.paths.check_outputs`); None: none.
    """

    role: str
    prefix: str
    load: Loader | str
    form: str
    summary: str = ""
    paths: PathsOf | None = None

    def loader(self) -> Loader:
        """The load function (a ``"module:function"`` target is imported now)."""
        if callable(self.load):
            return self.load
        module, _, attribute = self.load.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def local_paths(self, rest: str) -> list[Path]:
        return self.paths(rest) if self.paths is not None else []


_KINDS: dict[str, dict[str, SpecKind]] = {MODEL: {}, DATASET: {}}
_built_in_loaded = False
_plugins_loaded = False


def register_kind(role: str, prefix: str, load: Loader | str, *, form: str,
                  summary: str = "", paths: PathsOf | None = None) -> SpecKind:
    """Register (or replace) the kind ``prefix:`` of ``role`` (see the module docstring)."""
    if role not in _KINDS:
        raise ValueError(f"role must be {MODEL!r} or {DATASET!r}, got {role!r}")
    if not prefix or not prefix.isidentifier() or prefix != prefix.lower():
        raise ValueError(f"a kind prefix is a lower-case identifier, got {prefix!r}")
    _load_built_in()  # nctk's own kinds are listed first
    kind = SpecKind(role, prefix, load, form, summary, paths)
    _KINDS[role][prefix] = kind
    return kind


def register_model_kind(prefix: str, load: Loader | str, *, form: str, summary: str = "",
                        paths: PathsOf | None = None) -> SpecKind:
    """Register a model kind: ``load(ModelRequest) -> ModelAdapter``."""
    return register_kind(MODEL, prefix, load, form=form, summary=summary, paths=paths)


def register_data_kind(prefix: str, load: Loader | str, *, form: str, summary: str = "",
                       paths: PathsOf | None = None) -> SpecKind:
    """Register a dataset kind: ``load(DataRequest) -> LabelledImages``."""
    return register_kind(DATASET, prefix, load, form=form, summary=summary, paths=paths)


def kinds(role: str) -> list[SpecKind]:
    """Every registered kind of ``role``, in registration order."""
    _discover()
    return list(_KINDS[role].values())


def forms(role: str) -> str:
    """How the registered kinds of ``role`` are written, comma-separated (for help texts)."""
    return ", ".join(kind.form for kind in kinds(role))


def find_kind(role: str, spec: str) -> tuple[SpecKind, str] | None:
    """``(kind, rest)`` for a spec whose prefix is a registered kind of ``role``, else None."""
    prefix, colon, rest = spec.strip().partition(":")
    if not colon:
        return None
    _discover()
    kind = _KINDS[role].get(prefix)
    return (kind, rest) if kind is not None else None


def unknown_spec(role: str, spec: str, also: str = "") -> UnknownChoice:
    """The one-line error for a spec of no registered kind: the spec and the kinds
    (``also``: another accepted form, e.g. checkpoint paths)."""
    prefixes = ", ".join(f"{k.prefix}:" for k in kinds(role))
    return UnknownChoice(f"unknown {role} spec {spec!r}; accepted kinds: {prefixes}"
                         + (f", {also}" if also else ""))


def _load_built_in() -> None:
    """Import nctk's own kinds, once (their modules are light: loaders import lazily)."""
    global _built_in_loaded
    if not _built_in_loaded:
        _built_in_loaded = True
        for module in BUILT_IN:
            importlib.import_module(module)


def _discover() -> None:
    """nctk's own kinds, then the entry points' (once; see the module docstring)."""
    global _plugins_loaded
    _load_built_in()
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = point.load()
            if callable(target):
                target()
        except Exception as exc:  # a broken plug-in must not break nctk's own kinds
            log.warning("spec kinds of %s (entry point %s) not loaded: %s: %s",
                        point.value, point.name, type(exc).__name__, exc)
