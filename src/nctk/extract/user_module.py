"""A user's own architecture: the ``python:<module>:<callable>[@<state dict file>]`` spec kind.

``<module>`` is imported (a dotted module name, found on ``PYTHONPATH`` or in the current
directory: the user's own code, which runs as any import does), ``<callable>`` (a dotted
attribute path inside it, e.g. ``build`` or ``Net.small``) is called without arguments and
must return a ``torch.nn.Module``. With ``@<file>`` the module then receives the state dict
in that file, read with ``torch.load(weights_only=True)`` (nothing in the file runs) and
loaded strictly: every key and shape must fit.

Without a state dict the weights are whatever the callable made: a callable that loads its
own weights gives those, one that only builds the architecture gives a random
initialisation. The two are told apart by building the module a second time under another
seed: weights (outside the head) that follow the seed are random, and the model is flagged
as randomly initialised (``ModelAdapter.random_init``) in every output.

The classifier head and the units are found as for any module (:func:`~nctk.extract.models.
find_head`, :func:`~nctk.extract.models.default_units`); since nothing is known about the
class, the head found is checked on every forward pass to be the layer whose output is the
model's output (:attr:`ModelAdapter.verify_head`), or the user names it (``head=``).
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nctk.errors import InputError, describe_exception
from nctk.extract.models import (
    HEAD_DECLARATION,
    INIT_SEED,
    ModelAdapter,
    file_identity,
    find_head,
    imagenet_transform,
    load_state_dict_into,
)
from nctk.extract.specs import ModelRequest

FORM = "python:<module>:<callable>[@<state dict file>]"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def python_model(request: ModelRequest) -> ModelAdapter:
    """The ``python:`` kind, ``<module>:<callable>[@<file>]``, as a :class:`ModelAdapter`
    with the ImageNet default preprocessing (:func:`imagenet_transform`)."""
    spec, name, image_size = request.spec, request.name, request.image_size
    target, _, state_file = request.rest.partition("@")
    module_name, _, attribute = target.partition(":")
    for part, what in ((module_name, "module"), (attribute, "callable")):
        if not _DOTTED.fullmatch(part.strip()):
            raise InputError(f"{spec}: expected {FORM}; {what} name {part!r} is not a dotted "
                             "Python name")
    build = resolve_callable(spec, module_name.strip(), attribute.strip())
    module = call_builder(spec, build)
    identity = f"python:{target}:{_source_identity(build)}"
    random_init = False
    if state_file:
        if not Path(state_file).is_file():
            raise InputError(f"{spec}: no such state dict file '{state_file}' (save one with "
                             "torch.save(model.state_dict(), FILE))")
        load_state_dict_into(module, state_file, spec)
        identity += f"@{file_identity(state_file)}"
    else:
        random_init = _follows_seed(spec, build, module)
        identity = None if random_init else identity
    default_name = attribute.strip().rsplit(".", 1)[-1]
    if state_file:
        default_name += f".{Path(state_file).stem}"
    adapter = ModelAdapter(module, name=name or default_name,
                           transform=imagenet_transform(image_size), head=find_head(module),
                           identity=identity, random_init=random_init)
    adapter.verify_head = not hasattr(module, HEAD_DECLARATION)
    return adapter


@contextlib.contextmanager
def _current_directory_importable() -> Iterator[None]:
    """The current directory on ``sys.path`` (last) while the user's module is imported
    and called, as ``python -m`` would have it; the console script alone does not."""
    here = str(Path.cwd())
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.append(here)
    try:
        yield
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def resolve_callable(spec: str, module_name: str, attribute: str) -> Any:
    """``module_name`` imported and ``attribute`` looked up in it; InputError when either
    is missing or the import fails (naming the spec and what to fix)."""
    with _current_directory_importable():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                raise InputError(f"{spec}: no module named '{module_name}' on the Python path "
                                 "(PYTHONPATH or the current directory); run from the folder "
                                 "holding it or add that folder to PYTHONPATH") from None
            raise InputError(f"{spec}: importing '{module_name}' failed: {describe_exception(exc)}"
                             ) from None
        except Exception as exc:  # the user's module may raise anything while importing
            raise InputError(f"{spec}: importing '{module_name}' failed: {describe_exception(exc)}"
                             ) from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            public = sorted(n for n, v in vars(module).items()
                            if callable(v) and not n.startswith("_"))[:8]
            raise InputError(f"{spec}: module '{module_name}' has no '{attribute}'; its "
                             f"callables: {', '.join(public) or 'none'}")
        found = getattr(found, part)
    if not callable(found):
        raise InputError(f"{spec}: '{module_name}:{attribute}' is a {type(found).__name__}, "
                         "not a callable that returns an nn.Module")
    return found


def call_builder(spec: str, build: Any) -> nn.Module:
    """``build()``; InputError when it fails or returns anything but an ``nn.Module``."""
    with _current_directory_importable():
        try:
            module = build()
        except Exception as exc:  # the user's callable may raise anything
            raise InputError(f"{spec}: calling it failed ({describe_exception(exc)}); the callable "
                             "must take no arguments and return a torch.nn.Module") from None
    if not isinstance(module, nn.Module):
        raise InputError(f"{spec}: the callable returned an object of type "
                         f"{type(module).__name__}, not a torch.nn.Module")
    return module


def _follows_seed(spec: str, build: Any, module: nn.Module) -> bool:
    """True when a second build under another seed gives other weights outside the head:
    the callable initialises at random rather than loading weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED + 1)
        other = dict(call_builder(spec, build).named_parameters())
    head = find_head(module)
    skip = {id(p) for p in head.parameters()} if head is not None else set()
    return any(name not in other or not torch.equal(other[name], p)
               for name, p in module.named_parameters() if id(p) not in skip)


def _source_identity(build: Any) -> str:
    """The file defining ``build`` (path, size, modification time), so that editing the
    architecture changes the cache key; its qualified name when no file is known."""
    target = getattr(build, "__func__", build)
    source = getattr(sys.modules.get(getattr(target, "__module__", "") or ""), "__file__", None)
    return file_identity(source) if source and Path(source).is_file() else \
        getattr(target, "__qualname__", repr(target))
