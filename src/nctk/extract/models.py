"""Model adapters: one interface over torchvision, timm, Hugging Face, checkpoints and modules.

A :class:`ModelAdapter` wraps a ``torch.nn.Module`` with its own preprocessing and yields,
for a batch of preprocessed images (B, 3, H, W):

* ``features`` (B, d): the penultimate, pooled, pre-classifier representation -- the
  input of the source classification head, captured with a forward pre-hook on the head
  (its last ``nn.Linear``); models without a head give their pooled output;
* ``logits`` (B, Cs) or ``None``: the source head's output (for LEEP and NCE);
* ``layers`` {name: (B, d_l)}: pooled outputs of named intermediate modules (forward
  hooks); see :func:`pool_output` for the pooling rule.

Specs accepted by :func:`load_model` (see docs/extraction.md): every model kind of the
registry :mod:`nctk.extract.specs`; nctk's own are loaded here::

    torchvision:<name>[:<weights>]     weights enum name (IMAGENET1K_V2, DEFAULT) or none
    timm:<name>[:pretrained|none]      timm.create_model(name, pretrained=...)
    hf:<repo id or local dir>          transformers Auto* classes + AutoImageProcessor
    torchvision:<name>@<file>          that architecture with a state dict from <file>
    timm:<name>@<file>                 (read with ``torch.load(weights_only=True)``)
    file:<path>, <path>.pt/.pth/.ckpt/.ts
                                       a checkpoint: a whole pickled nn.Module or a
                                       TorchScript archive, loaded only with
                                       ``trust_checkpoint=True`` (they carry code)
    NAME=<any spec>                    the same model, named NAME (the feature-file stem)

(``demo:<name>``, a model of the shipped demo pool, is registered by :mod:`nctk.demo`.)

Randomly initialised weights (no pretrained weights asked for) are drawn under
``torch.manual_seed(INIT_SEED)`` in a forked RNG, so loading a spec twice gives the same
model (and the feature cache hits) while the caller's random state is left alone.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import transforms as T

from nctk.errors import InputError, UnknownChoice
from nctk.extract import specs
from nctk.extract.cache import files_fingerprint
from nctk.extract.specs import ModelRequest

#: A spec ending in one of these is a checkpoint path; any other file needs ``file:``.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".ts")
FILE_PREFIX = "file:"
#: The form a checkpoint path takes without a kind, added to the kinds in errors.
CHECKPOINT_FORM = "or a .pt/.pth/.ckpt/.ts checkpoint path"

#: Keys under which training scripts commonly nest a state dict.
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")

TRUST_HINT = "pass trust_checkpoint=True only if you trust where the file comes from"

#: ImageNet channel statistics used by the default preprocessing.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 224
#: Seed of every random initialisation done while loading a model (see module docstring).
INIT_SEED = 0
#: ``NAME=SPEC``: a name made of file-safe characters, then ``=``, then the spec.
_NAMED_SPEC = re.compile(r"([A-Za-z0-9._+-]+)=(.+)", re.DOTALL)

#: Attribute names under which libraries keep the classification head, most specific first.
_HEAD_ATTRIBUTES = ("fc", "heads", "head", "classifier")
#: A model may declare its own parts (docs/extraction.md, "Heads and units"): the module
#: path of its classifier head (or "none") and the module paths of its units.
HEAD_DECLARATION = "nctk_head"
UNITS_DECLARATION = "nctk_units"
#: The head name that means "no classifier head: the pooled output is the feature".
NO_HEAD = "none"

Transform = Callable[[Any], torch.Tensor]
#: ``run(module, batch) -> (features (B, d), logits (B, Cs) | None)``
RunFn = Callable[[nn.Module, torch.Tensor], "tuple[torch.Tensor, torch.Tensor | None]"]


def imagenet_transform(image_size: int | None = None) -> T.Compose:
    """The documented default preprocessing for models without their own.

    Resize the shorter side to ``round(size * 256 / 224)`` (bilinear), centre-crop
    ``size`` (224 by default), convert to a float tensor in [0, 1] and normalise with the
    ImageNet mean and standard deviation: the classic torchvision evaluation recipe.
    """
    size = image_size or DEFAULT_IMAGE_SIZE
    return T.Compose([
        T.Resize(round(size * 256 / 224), interpolation=T.InterpolationMode.BILINEAR,
                 antialias=True),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def has_class_token(module: nn.Module) -> bool:
    """True when the model carries a class token (timm ``cls_token``, torchvision
    ``class_token``, Hugging Face ``embeddings.cls_token``) placed first in its sequences."""
    return any(name.endswith(("cls_token", "class_token")) for name, _ in
               module.named_parameters())


def pool_output(output: Any, *, class_token: bool) -> torch.Tensor:
    """Reduce one module output to (B, d).

    * tuples/lists (Hugging Face layers) and model outputs: the first tensor / hidden state;
    * (B, C, H, W): global average pooling over H and W (channels-first is assumed);
    * (B, T, D) tokens: the class token ``x[:, 0]`` when the model has one, else the mean
      over tokens;
    * (B, d): unchanged; anything else is flattened.
    """
    if hasattr(output, "last_hidden_state"):
        output = output.last_hidden_state
    while isinstance(output, tuple | list):
        output = output[0]
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    if output.ndim == 3:
        return output[:, 0] if class_token else output.mean(dim=1)
    if output.ndim == 2:
        return output
    return output.flatten(1)


def find_head(module: nn.Module) -> nn.Module | None:
    """The final classification layer of a model, or None.

    The head the model declares (a module path in its ``nctk_head`` attribute; ``"none"``:
    no head) when it does; otherwise the last ``nn.Linear`` under the usual head attributes
    (``fc``, ``heads``, ``head``, ``classifier``), else the last ``nn.Linear`` registered in
    the model.
    """
    declared = getattr(module, HEAD_DECLARATION, None)
    if isinstance(declared, str):
        if declared.lower() == NO_HEAD:
            return None
        return declared_modules(module, [declared], "head")[0]
    for attribute in _HEAD_ATTRIBUTES:
        candidate = getattr(module, attribute, None)
        if isinstance(candidate, nn.Module):
            linear = _last_linear(candidate)
            if linear is not None:
                return linear
    return _last_linear(module)


def declared_modules(module: nn.Module, names: Sequence[str], what: str) -> list[nn.Module]:
    """The sub-modules at ``names`` (module paths); InputError naming a missing one."""
    modules = dict(module.named_modules())
    missing = [name for name in names if not name or name not in modules]
    if missing:
        raise InputError(f"{type(module).__name__} has no module {missing[0]!r} to use as its "
                         f"{what}")
    return [modules[name] for name in names]


def _last_linear(module: nn.Module) -> nn.Linear | None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def default_units(module: nn.Module) -> list[str]:
    """Named intermediate blocks of a model, in forward order.

    The units the model declares (module paths in its ``nctk_units`` attribute) when it
    does; ResNet-style models (``layer1`` .. ``layer4``) give their residual stages; otherwise the
    ``nn.Sequential``/``nn.ModuleList`` holding the most parameters gives its children
    (transformer blocks for ViTs, stages for ConvNeXt/EfficientNet/MobileNet, Hugging Face
    ``encoder.layer``/``encoder.stages``). The head is never a unit.
    """
    declared = getattr(module, UNITS_DECLARATION, None)
    if declared is not None and not isinstance(declared, str):
        declared_modules(module, list(declared), "unit")
        return list(declared)
    stages = [f"layer{i}" for i in range(1, 9) if hasattr(module, f"layer{i}")]
    if len(stages) >= 2:
        return stages
    best, best_size = None, 0
    for name, child in module.named_modules():
        if not name or not isinstance(child, nn.Sequential | nn.ModuleList) or len(child) < 2:
            continue
        if name.split(".")[0] in _HEAD_ATTRIBUTES:
            continue
        size = sum(p.numel() for p in child.parameters())
        if size > best_size:
            best, best_size = name, size
    if best is None:
        return []
    container = module.get_submodule(best)
    return [f"{best}.{child}" for child, _ in container.named_children()]


class ModelAdapter:
    """A model with its preprocessing, penultimate features, head logits and layer hooks.

    Attributes:
        name: model name (used as the feature-file stem).
        module: the wrapped ``torch.nn.Module`` (put in eval mode by the engine).
        transform: the model's own preprocessing, PIL image -> (3, H, W) float tensor.
        head: the source classification ``nn.Linear`` or None.
        identity: a string identifying the weights for the cache (None: a hash of the
            parameters is used, e.g. for randomly initialised models).
        source_accuracy: the weights' accuracy on their source task when their metadata
            carries it (torchvision: ImageNet-1K acc@1 in %), else None; recorded in the
            feature files as a data-free prior for ``nctk rank``.
        trust_warning: for a checkpoint that carries code, loaded with
            ``trust_checkpoint=True``, the warning that says so; else None.
        random_init: True when the weights are a random initialisation (a spec ending in
            ``:none``, or a ``python:`` callable whose weights follow the random seed):
            every output flags such a model.
    """

    #: Set by the checkpoint loader; see the class docstring.
    trust_warning: str | None = None
    #: Set for models whose head was guessed from their structure alone (``python:``
    #: specs): every forward pass checks that the head's output is the model's output.
    verify_head: bool = False

    def __init__(self, module: nn.Module, *, name: str, transform: Transform,
                 head: nn.Module | None = None, identity: str | None = None,
                 run: RunFn | None = None, units: Sequence[str] | None = None,
                 hookable: bool = True, source_accuracy: float | None = None,
                 random_init: bool = False):
        self.module = module
        self.source_accuracy = source_accuracy
        self.random_init = random_init
        self.name = safe_name(name)
        self.transform = transform
        self.head = head
        self.identity = identity
        self._run = run
        self._units = list(units) if units is not None else None
        self._hookable = hookable
        self._class_token = has_class_token(module)

    @classmethod
    def from_module(cls, module: nn.Module, *, name: str, transform: Transform | None = None,
                    head: nn.Module | None = None) -> ModelAdapter:
        """Wrap any module. The penultimate is the input of ``head`` (default: the last
        ``nn.Linear``, see :func:`find_head`); without a Linear, the pooled output.
        ``transform`` defaults to :func:`imagenet_transform`."""
        if not isinstance(module, nn.Module):
            raise InputError(f"expected a torch.nn.Module, got {type(module).__name__}")
        return cls(module, name=name, transform=transform or imagenet_transform(),
                   head=head if head is not None else find_head(module))

    @property
    def hookable(self) -> bool:
        """False for TorchScript modules, which take no hooks (no layers, no named parts)."""
        return self._hookable

    def set_head(self, head: nn.Module | None) -> None:
        """Use ``head`` as the classifier (its input is the feature, its output the logits);
        None: no head, the pooled output is the feature. Replaces a library's own split."""
        self.head = head
        self._run = None
        self.verify_head = False

    def set_units(self, units: Sequence[str]) -> None:
        """Use ``units`` (module paths) as the model's units, in this order."""
        self._units = list(units)

    def units(self) -> list[str]:
        """Names of the intermediate blocks offered for layer-wise analysis, in order."""
        if not self._hookable:
            return []
        if self._units is None:
            self._units = default_units(self.module)
        return list(self._units)

    def layer_names(self) -> list[str]:
        """Same as :meth:`units`."""
        return self.units()

    def resolve_layers(self, layers: Sequence[str] | str) -> list[str]:
        """Validate layer names (``"all"`` means every unit; any module path is accepted)
        and put them in the order the model registers its modules (``named_modules()``)."""
        if isinstance(layers, str):
            layers = self.units() if layers == "all" else [s for s in layers.split(",") if s]
        layers = list(dict.fromkeys(layers))
        if layers and not self._hookable:
            raise InputError(f"model '{self.name}' is TorchScript: intermediate layers cannot "
                             "be hooked")
        known = {name: i for i, (name, _) in enumerate(self.module.named_modules())}
        for layer in layers:
            if layer not in known or not layer:
                raise InputError(f"model '{self.name}' has no layer '{layer}'; its units are: "
                                 f"{', '.join(self.units()) or 'none'} (any module path from "
                                 "named_modules() is also accepted)")
        # the model's module order, which is its forward order for sequential architectures
        return sorted(layers, key=known.__getitem__)

    def forward(self, batch: torch.Tensor, layers: Sequence[str] = ()) -> dict[str, Any]:
        """Run one preprocessed batch (B, 3, H, W).

        Returns ``{"features": (B, d), "logits": (B, Cs) | None, "layers": {name: (B, d_l)}}``
        (tensors on the batch's device, in the compute dtype).
        """
        captured: dict[str, torch.Tensor] = {}
        handles = []
        for layer in layers:
            def hook(_module, _inputs, output, layer=layer):
                captured[layer] = pool_output(output, class_token=self._class_token)
            handles.append(self.module.get_submodule(layer).register_forward_hook(hook))
        try:
            features, logits = self._features_and_logits(batch)
        finally:
            for handle in handles:
                handle.remove()
        return {"features": features, "logits": logits,
                "layers": {layer: captured[layer] for layer in layers}}

    def _features_and_logits(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The head's input (B, d) and output (B, Cs), captured with hooks on the head."""
        if self._run is not None:
            return self._run(self.module, batch)
        if self.head is None:
            return pool_output(self.module(batch), class_token=self._class_token), None
        inputs: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        handles = [self.head.register_forward_pre_hook(lambda _m, args: inputs.append(args[0])),
                   self.head.register_forward_hook(lambda _m, _a, out: outputs.append(out))]
        try:
            output = self.module(batch)
        finally:
            for handle in handles:
                handle.remove()
        if not inputs:
            raise InputError(f"model '{self.name}': its head was not called during forward")
        if self.verify_head:
            self._check_head_output(output, outputs[-1])
        return inputs[-1].flatten(1), outputs[-1].flatten(1)

    def _check_head_output(self, output: Any, logits: torch.Tensor) -> None:
        """InputError unless the model's output is the head's output (a head guessed from
        the structure alone may be some other linear layer)."""
        output = getattr(output, "logits", output)
        while isinstance(output, tuple | list) and output:
            output = output[0]
        if output is logits or (isinstance(output, torch.Tensor)
                                and output.shape == logits.shape and torch.equal(output, logits)):
            return
        where = next(n for n, m in self.module.named_modules() if m is self.head)
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InputError(f"model '{self.name}': its classifier head could not be found: the "
                         f"nn.Linear taken for it, '{where}' (output {tuple(logits.shape)}), "
                         f"does not give the model's output ({shape}); name the head module "
                         "(head=MODULE), or head=none to take the pooled output as the feature")

    def __repr__(self) -> str:
        return f"ModelAdapter(name={self.name!r}, identity={self.identity!r})"


def safe_name(name: str) -> str:
    """A name usable as a file stem: characters other than letters, digits and ``._+-``
    become ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(name)).strip("._")
    if not cleaned:
        raise InputError(f"model name {name!r} is empty once made file-safe")
    return cleaned


def split_name(spec: str) -> tuple[str | None, str]:
    """``"NAME=SPEC"`` -> ``(NAME, SPEC)``; any other spec -> ``(None, spec)``.

    NAME is made of letters, digits and ``._+-`` (no ``:`` or ``/``), so no spec form is
    mistaken for a name; a file whose own name contains ``=`` is loaded as ``NAME=PATH``.
    """
    match = _NAMED_SPEC.fullmatch(spec.strip())
    return (match.group(1), match.group(2).strip()) if match else (None, spec)


def _seeded_init(load: Callable[..., ModelAdapter]) -> Callable[..., ModelAdapter]:
    """Run ``load`` with the torch RNG forked and seeded with :data:`INIT_SEED`."""
    @functools.wraps(load)
    def seeded(*args: Any, **kwargs: Any) -> ModelAdapter:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            return load(*args, **kwargs)
    return seeded


def load_model(spec: str | nn.Module, *, name: str | None = None,
               image_size: int | None = None, trust_checkpoint: bool = False,
               parts: Any = None) -> ModelAdapter:
    """Build a :class:`ModelAdapter` from a spec string or a module.

    Args:
        spec: ``torchvision:<name>[:<weights>]``, ``timm:<name>[:pretrained|none]``,
            ``torchvision:<name>@<file>`` / ``timm:<name>@<file>`` (a state dict),
            ``hf:<repo id or dir>``, a checkpoint (``file:<path>`` or a path ending in
            .pt/.pth/.ckpt/.ts), any other registered kind (``demo:<name>``,
            :mod:`nctk.extract.specs`), any of them as ``NAME=SPEC``, or an ``nn.Module``.
        name: the model's name (default: NAME of ``NAME=SPEC``, else derived from the spec).
        image_size: crop size of the preprocessing (default: the model's own; 224 for the
            ImageNet default). For timm models that take ``img_size`` (ViTs) it also sets
            the model's input size.
        trust_checkpoint: allow a checkpoint that carries code (a whole pickled module, a
            TorchScript archive) to be loaded; a warning is issued. Without it such a file
            is an :class:`InputError` and nothing in it runs. State dicts never need it.
        parts: a :class:`nctk.extract.parts.ModelParts` naming the model's classifier head
            and units where discovery cannot tell them (an architecture nctk does not know).

    Raises:
        InputError: unknown spec, model or weights; weights not available offline; a
            checkpoint carrying code without ``trust_checkpoint``; a named head or unit
            that is not a module of the model.
    """
    adapter = _load_spec(spec, name, image_size, trust_checkpoint)
    return parts.apply(adapter) if parts is not None else adapter


def model_identity(adapter: ModelAdapter) -> str:
    """The adapter's identity, or a SHA-256 of its class and every parameter and buffer."""
    if adapter.identity:
        return adapter.identity
    digest = hashlib.sha256(type(adapter.module).__qualname__.encode())
    for name, tensor in adapter.module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return f"module:{digest.hexdigest()}"


@_seeded_init
def _load_spec(spec: str | nn.Module, name: str | None, image_size: int | None,
               trust_checkpoint: bool) -> ModelAdapter:
    """The adapter of one spec or module (see :func:`load_model`), before named parts."""
    if isinstance(spec, ModelAdapter):
        return spec
    if isinstance(spec, nn.Module):
        return ModelAdapter.from_module(spec, name=name or type(spec).__name__,
                                        transform=imagenet_transform(image_size))
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("model spec must be a non-empty string or an nn.Module")
    given_name, spec = split_name(spec)
    spec = spec.strip()
    kind, rest = model_kind(spec)
    request = ModelRequest(spec=spec, rest=rest, name=name or given_name,
                           image_size=image_size, trust_checkpoint=trust_checkpoint)
    return kind.loader()(request)


def model_kind(spec: str) -> tuple[specs.SpecKind, str]:
    """``(kind, rest)`` of a model spec without ``NAME=``: its registered kind, or the
    ``file:`` kind for a checkpoint path; :class:`~nctk.errors.UnknownChoice` otherwise."""
    found = specs.find_kind(specs.MODEL, spec)
    if found is not None:
        return found
    checkpoint = checkpoint_path(spec)
    file_kind = specs.find_kind(specs.MODEL, FILE_PREFIX + (checkpoint or ""))
    if checkpoint is not None and file_kind is not None:
        return file_kind
    error = specs.unknown_spec(specs.MODEL, spec, CHECKPOINT_FORM)
    if Path(spec).is_file():
        error = UnknownChoice(f"{error.problem} (to load the file {spec} as a checkpoint, "
                              f"write {FILE_PREFIX}{spec})")
    raise error


def checkpoint_path(spec: str) -> str | None:
    """The file a checkpoint spec names: ``file:<path>``, or a path ending in .pt, .pth,
    .ckpt or .ts; None for any other spec (a bare name that happens to be a file is not a
    checkpoint, and neither is a spec of another registered kind)."""
    spec = spec.strip()
    if spec.startswith(FILE_PREFIX):
        return spec[len(FILE_PREFIX):]
    if specs.find_kind(specs.MODEL, spec) is not None:
        return None
    return spec if Path(spec).suffix.lower() in CHECKPOINT_SUFFIXES else None


def model_paths(spec: str | nn.Module) -> list[Path]:
    """The local files and folders a model spec reads, without loading anything (for the
    output checks of :func:`nctk.paths.check_outputs`); [] for a spec of no known kind."""
    if not isinstance(spec, str):
        return []
    spec = split_name(spec)[1].strip()
    try:
        kind, rest = model_kind(spec)
    except InputError:
        return []
    return kind.local_paths(rest)


def _not_cached(what: str, spec: str, exc: BaseException) -> InputError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    detail = detail if len(detail) <= 160 else detail[:157] + "..."
    return InputError(f"{what} for {spec} are not cached locally and cannot be downloaded: "
                      f"{detail} (see docs/extraction.md, 'Pretrained weights'; {spec}:none "
                      "gives randomly initialised weights)")


def torchvision_model(request: ModelRequest) -> ModelAdapter:
    """The ``torchvision:`` kind: ``<name>[:<weights>|none]`` or ``<name>@<state dict>``."""
    import torchvision.models as tvm

    spec, name, image_size = request.spec, request.name, request.image_size
    rest, _, state_file = request.rest.partition("@")
    state_file = state_file or None
    arch, _, weights_name = rest.partition(":")
    if arch not in tvm.list_models():
        raise InputError(f"unknown torchvision model '{arch}' in {spec!r} (e.g. "
                            f"{', '.join(tvm.list_models()[:3])}; all: "
                            "torchvision.models.list_models())")
    if state_file is not None:
        if weights_name:
            raise InputError(f"give torchvision:{arch}:<weights> or torchvision:{arch}@<file>, "
                             f"not both, in {spec!r}")
        module = _with_state_dict(lambda **kw: tvm.get_model(arch, weights=None, **kw),
                                  state_file, spec)
        return ModelAdapter(module, name=name or f"{arch}.{Path(state_file).stem}",
                            transform=imagenet_transform(image_size), head=find_head(module),
                            identity=f"torchvision:{arch}@{file_identity(state_file)}")
    weights = None
    weights_name = weights_name or "DEFAULT"  # a bare name means the pre-trained default
    if weights_name.lower() != "none":
        enum = tvm.get_model_weights(arch)
        try:
            weights = enum[weights_name]
        except KeyError:
            accepted = ", ".join(dict.fromkeys([*enum.__members__, "DEFAULT", "none"]))
            raise InputError(f"unknown weights '{weights_name}' for torchvision:{arch}; "
                             f"accepted: {accepted}") from None
    try:
        module = tvm.get_model(arch, weights=weights)
    except OSError as exc:  # urllib's URLError is an OSError
        raise _not_cached(f"weights '{weights_name}'", f"torchvision:{arch}", exc) from None
    if weights is None:
        transform = imagenet_transform(image_size)
    elif image_size:
        transform = weights.transforms(crop_size=image_size,
                                       resize_size=round(image_size * 256 / 224))
    else:
        transform = weights.transforms()
    # random weights are identified by a parameter hash
    identity = f"torchvision:{arch}:{weights.name}" if weights is not None else None
    default_name = f"{arch}.none" if weights is None else f"{arch}.{weights.name}"
    return ModelAdapter(module, name=name or default_name, transform=transform,
                        head=find_head(module), identity=identity,
                        source_accuracy=imagenet_top1(weights), random_init=weights is None)


def imagenet_top1(weights: Any) -> float | None:
    """ImageNet-1K acc@1 (%) from a torchvision weights enum's metadata, offline; None for
    random weights or metadata without it."""
    if weights is None:
        return None
    value = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    return float(value) if isinstance(value, int | float) else None


def timm_model(request: ModelRequest) -> ModelAdapter:
    """The ``timm:`` kind: ``<name>[:pretrained|none]`` or ``<name>@<state dict>``."""
    import timm
    import timm.data

    spec, name, image_size = request.spec, request.name, request.image_size
    rest, _, state_file = request.rest.partition("@")
    state_file = state_file or None
    arch, _, flag = rest.partition(":")
    if flag.lower() not in ("", "none", "pretrained"):
        raise InputError(f"unknown weights '{flag}' for timm:{arch}; accepted: pretrained, "
                         "none (choose a pretrained tag in the name, e.g. "
                         "timm:vit_small_patch16_224.augreg_in21k:pretrained)")
    pretrained = flag.lower() != "none"  # a bare name means the pre-trained weights
    if not timm.is_model(arch):
        raise InputError(f"unknown timm model '{arch}' in {spec!r} (all: "
                            "timm.list_models())")
    if state_file is not None and flag:
        raise InputError(f"give timm:{arch}:{flag} or timm:{arch}@<file>, not both, in {spec!r}")
    try:
        if state_file is not None:
            module = _with_state_dict(lambda **kw: _create_timm(arch, False, image_size, **kw),
                                      state_file, spec)
        else:
            module = _create_timm(arch, pretrained, image_size)
    except OSError as exc:  # huggingface_hub and urllib errors derive from OSError
        raise _not_cached("pretrained weights", f"timm:{arch}", exc) from None
    config = timm.data.resolve_data_config({}, model=module)
    if image_size:
        config["input_size"] = (3, image_size, image_size)
    transform = timm.data.create_transform(**config, is_training=False)
    identity = f"timm:{arch}:pretrained" if pretrained else None
    default_name = arch if pretrained else f"{arch}.none"
    if state_file is not None:
        identity = f"timm:{arch}@{file_identity(state_file)}"
        default_name = f"{arch}.{Path(state_file).stem}"
    units = [info["module"] for info in getattr(module, "feature_info", [])
             if isinstance(info, dict) and info.get("module")] or None
    return ModelAdapter(module, name=name or default_name, transform=transform,
                        head=None, identity=identity, run=_timm_run, units=units,
                        random_init=not pretrained and state_file is None)


def _create_timm(arch: str, pretrained: bool, image_size: int | None, **kwargs: Any
                 ) -> nn.Module:
    """``timm.create_model``; ``img_size`` is passed to models that take it (ViTs)."""
    import timm

    if image_size:
        try:
            return timm.create_model(arch, pretrained=pretrained, img_size=image_size,
                                     **kwargs)
        except TypeError:  # convolutional models take any input size and no img_size
            pass
    return timm.create_model(arch, pretrained=pretrained, **kwargs)


def _timm_run(module: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """timm's own split: ``forward_features`` then ``forward_head(pre_logits=True)``."""
    tokens = module.forward_features(batch)
    features = module.forward_head(tokens, pre_logits=True)
    logits = module.forward_head(tokens) if getattr(module, "num_classes", 0) else None
    return features.flatten(1), logits


class HFProcessorTransform:
    """A Hugging Face image processor as a PIL -> (3, H, W) tensor transform."""

    def __init__(self, processor: Any):
        self.processor = processor

    def __call__(self, image: Any) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"HFProcessorTransform({self.processor.to_json_string()})"


def hf_model(request: ModelRequest) -> ModelAdapter:
    """The ``hf:`` kind: a Hugging Face repo id (from the local cache) or a saved folder."""
    import transformers

    spec, repo, name = request.spec, request.rest, request.name
    if not repo:
        raise InputError(f"empty Hugging Face repo id in {spec!r} (hf:<repo id or local dir>)")
    try:
        config = transformers.AutoConfig.from_pretrained(repo)
        classifier = any(a.endswith("ForImageClassification")
                         for a in (config.architectures or []))
        auto = (transformers.AutoModelForImageClassification if classifier
                else transformers.AutoModel)
        module = auto.from_pretrained(repo)
        processor = transformers.AutoImageProcessor.from_pretrained(repo)
    except OSError as exc:
        raise _not_cached("the files", spec, exc) from None
    except (ValueError, KeyError) as exc:
        raise InputError(f"{spec}: not a supported vision model ({str(exc).splitlines()[0]})"
                         ) from None
    head = find_head(module.classifier) if classifier and hasattr(module, "classifier") else None
    run = None if head is not None else _hf_pooled_run
    if Path(repo).is_dir():
        files = sorted(p for p in Path(repo).rglob("*") if p.is_file())
        default_name, version = Path(repo).name, files_fingerprint(files, Path(repo))
    else:
        default_name, version = repo.replace("/", "__"), getattr(config, "_commit_hash", None)
    return ModelAdapter(module, name=name or default_name,
                        transform=HFProcessorTransform(processor), head=head,
                        identity=f"hf:{repo}:{version}", run=run)


def _hf_pooled_run(module: nn.Module, batch: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Headless Hugging Face model: ``pooler_output`` when present, else the pooled last
    hidden state (class token or token mean, see :func:`pool_output`)."""
    output = module(pixel_values=batch)
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1), None
    return pool_output(output.last_hidden_state, class_token=has_class_token(module)), None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict read with ``torch.load(weights_only=True)``: nothing in the file runs.

    Accepts a mapping of parameter names to tensors, or one nested under ``state_dict``,
    ``model_state_dict`` or ``model`` (training scripts' checkpoints); a ``module.``
    prefix on every key (``DataParallel``) is removed.
    """
    obj = _load_weights_only(Path(path), what="state dict file",
                             hint="a state dict file holds tensors only: save it with "
                                  "torch.save(model.state_dict(), FILE)")
    if isinstance(obj, Mapping):
        obj = next((obj[k] for k in _STATE_DICT_KEYS if isinstance(obj.get(k), Mapping)), obj)
    if not _is_state_dict(obj):
        raise InputError(f"holds a {type(obj).__name__}, not a state dict (parameter names "
                         "mapped to tensors)", file=str(path))
    if all(key.startswith("module.") for key in obj):
        obj = {key[len("module."):]: value for key, value in obj.items()}
    return dict(obj)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _with_state_dict(build: Callable[..., nn.Module], path: str, spec: str) -> nn.Module:
    """``build()`` with the weights of the state dict at ``path``; when the head in the
    file has another number of classes, the model is built with that many
    (``build(num_classes=K)``)."""
    state = read_state_dict(path)
    module = build()
    head = find_head(module)
    if head is not None:
        key = next(n for n, m in module.named_modules() if m is head) + ".weight"
        classes = state[key].shape[0] if key in state and state[key].ndim == 2 else None
        if classes is not None and classes != head.out_features:
            module = build(num_classes=classes)
    load_state_dict_into(module, path, spec, state)
    return module


def load_state_dict_into(module: nn.Module, path: str | os.PathLike, spec: str,
                         state: Mapping[str, torch.Tensor] | None = None) -> None:
    """``module.load_state_dict`` (strict) of the state dict at ``path`` (read with
    :func:`read_state_dict` unless ``state`` is given); InputError naming the file and the
    architecture of ``spec`` when the keys or shapes do not fit."""
    state = read_state_dict(path) if state is None else state
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise InputError(f"does not fit {spec.partition('@')[0]} (give the state dict of "
                         f"that architecture): {detail[:300]}{'...' if len(detail) > 300 else ''}",
                         file=str(path)) from None


def file_identity(path: str | os.PathLike) -> str:
    """Resolved path, size and modification time: changes whenever the file does."""
    file = Path(path)
    info = file.stat()
    return f"{file.resolve()}:{info.st_size}:{info.st_mtime_ns}"


def _load_weights_only(file: Path, *, what: str, hint: str) -> Any:
    """``torch.load(file, weights_only=True)``; InputError when the file is missing,
    unreadable, or holds pickled objects beyond tensors (which would run code)."""
    if not file.is_file():
        raise InputError(f"no such {what}", file=str(file))
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch names the first global it refused ("GLOBAL posix.mkdir"): a pickled object
        # whose loading would call it; other refusals are files it cannot read safely
        refused = re.search(r"\bGLOBAL\s+([\w.]+)", str(exc))
        if refused:
            raise InputError(f"holds pickled Python objects ({refused.group(1)}), not only "
                             "tensors: unpickling them would run code stored in the file; "
                             f"{hint}", file=str(file)) from None
        detail = " ".join(str(exc).split("WeightsUnpickler error:")[-1].split())
        detail = re.sub(r"(Check the documentation|Please file an issue).*", "", detail)
        raise InputError(f"unreadable {what} (not a tensors-only pickle: "
                         f"{detail.strip()[:160] or 'unsupported content'})",
                         file=str(file)) from None
    except Exception as exc:  # torch raises RuntimeError, struct.error, EOFError, ...
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(f"unreadable {what} ({type(exc).__name__}: {detail})",
                         file=str(file)) from None


def file_model(request: ModelRequest) -> ModelAdapter:
    """The ``file:`` kind (and a bare checkpoint path): :func:`checkpoint_model`."""
    return checkpoint_model(request.rest, request.name, request.image_size,
                            request.trust_checkpoint)


def checkpoint_model(path: str, name: str | None, image_size: int | None,
                     trust: bool = False) -> ModelAdapter:
    """A whole ``nn.Module`` pickled with ``torch.save``, or a TorchScript archive.

    Both carry code: unpickling runs whatever the file says, and a TorchScript archive is
    a program (run by torch's TorchScript interpreter rather than Python, so it cannot
    import arbitrary Python, but it is still code from the file). Neither is loaded
    without ``trust`` (a warning is issued when it is); without it the file is read with
    ``weights_only=True`` only to say what it holds. TorchScript modules cannot take hooks,
    so their output (pooled) is the feature vector and they have neither logits nor
    intermediate layers.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError("no such checkpoint file", file=path)
    identity = f"checkpoint:{file_identity(file)}"
    transform = imagenet_transform(image_size)
    if _is_torchscript(file):
        if not trust:
            raise InputError("is a TorchScript archive, a program that runs when the model "
                             f"does; {TRUST_HINT}", file=path)
        warning = f"{path}: loading a trusted checkpoint runs a TorchScript program"
        warn_trusted(warning)
        try:
            with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(file), map_location="cpu")
        except RuntimeError as exc:
            raise InputError(f"unreadable TorchScript archive ({exc})", file=path) from None
        adapter = ModelAdapter(module, name=name or file.stem, transform=transform,
                               identity=identity, run=_scripted_run, hookable=False)
        adapter.trust_warning = warning
        return adapter
    if not trust:
        obj = _load_weights_only(file, what="checkpoint", hint=TRUST_HINT)
        if _is_state_dict(obj) or isinstance(obj, Mapping):
            raise InputError("holds a state dict (weights only): name its architecture, "
                             f"torchvision:<name>@{path} or timm:<name>@{path}", file=path)
        raise InputError(f"holds a {type(obj).__name__}, not a model", file=path)
    warning = f"{path}: loading a trusted checkpoint runs code pickled in it"
    warn_trusted(warning)
    try:
        obj = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling may raise anything the file's code raises
        raise InputError(f"unreadable checkpoint ({type(exc).__name__}: {exc})",
                         file=path) from None
    if not isinstance(obj, nn.Module):
        raise InputError(f"holds a {type(obj).__name__}, not a whole nn.Module; a state dict "
                         f"needs its architecture: torchvision:<name>@{path} or "
                         f"timm:<name>@{path}", file=path)
    adapter = ModelAdapter(obj, name=name or file.stem, transform=transform,
                           head=find_head(obj), identity=identity)
    adapter.trust_warning = warning
    return adapter


def _is_torchscript(file: Path) -> bool:
    if not zipfile.is_zipfile(file):
        return False
    with zipfile.ZipFile(file) as archive:
        return any(n.endswith("/constants.pkl") for n in archive.namelist())


class TrustedCheckpointWarning(UserWarning):
    """A checkpoint carrying code was loaded because ``trust_checkpoint`` allowed it."""


_warned_trusted: set[str] = set()


def warn_trusted(message: str) -> None:
    """Issue a :class:`TrustedCheckpointWarning` once per message and process (a run loads
    each model twice, to check it and to extract; remote checks hand theirs back here)."""
    if message not in _warned_trusted:
        _warned_trusted.add(message)
        warnings.warn(message, TrustedCheckpointWarning, stacklevel=2)


def _scripted_run(module: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, None]:
    return pool_output(module(batch), class_token=False), None
