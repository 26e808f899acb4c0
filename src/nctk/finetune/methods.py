"""The four fine-tuning methods of Li et al. (2023, §3.3, Appendix B.2) as one model wrapper.

- ``lp`` (linear probe): only a new linear head d->C is trained.
- ``layer`` (Layer FT): the head and one fine-tuning unit are trained.
- ``scl`` (SCL FT): Layer FT plus a parameter-free skip connection: the unit's output,
  reduced to a vector, is added to the penultimate feature before the head.
  CNN: (B, C_b, H, W) -> adaptive average pool -> (B, C_b) -> zeros appended after the C_b
  channels up to the penultimate width d (the paper does not say where the zeros go).
  Transformer: (B, T, D) -> the class token (index 0) when the model has one, otherwise
  the mean over tokens (the paper does not say which token), added directly (D = d).
- ``full``: every parameter.

Normalisation layers update their running statistics on the downstream data for every
method: the whole network is put in train mode during training, frozen BatchNorm layers
included (their affine parameters are trainable only inside the tuned unit).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nctk.errors import InputError
from nctk.finetune.units import Unit, count_parameters, find_units, resolve_unit

METHODS = ("lp", "layer", "scl", "full")
#: Human-readable names, as in the paper's tables.
METHOD_LABELS = {"lp": "Linear probe", "layer": "Layer FT", "scl": "SCL FT", "full": "Full FT"}


def split_head(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose classifier head is an identity.

    The head is the ``nn.Linear`` that :func:`nctk.extract.models.find_head` finds, as
    feature extraction does: the one the model declares (``nctk_head``), else the last
    linear layer under ``fc``, ``heads``, ``head`` or ``classifier``, else the model's last
    ``nn.Linear`` (a model that registers blocks after its head, such as an MLP-Mixer built
    on a ViT, would otherwise lose a block's Linear instead). Returns ``(backbone, d)``:
    ``backbone(x)`` is the (B, d) penultimate feature, i.e. the input of the removed head.
    The caller's model is not modified.
    """
    from nctk.extract.models import find_head

    head = find_head(model)
    if not isinstance(head, nn.Linear):
        found = "none" if head is None else f"a {type(head).__name__}"
        raise InputError(f"{type(model).__name__} has no nn.Linear classifier head to replace "
                         f"(found {found}); name its linear head (head=MODULE)",
                         parameter="head")
    path = next(name for name, m in model.named_modules() if m is head)
    backbone = copy.deepcopy(model)
    backbone.set_submodule(path, nn.Identity())
    return backbone, head.in_features


def _has_class_token(model: nn.Module) -> bool:
    """True for ViTs with a class token (torchvision ``class_token``, timm ``cls_token``)."""
    return any(getattr(model, attr, None) is not None for attr in ("class_token", "cls_token"))


def unit_vector(output: torch.Tensor, width: int, class_token: bool) -> torch.Tensor:
    """The SCL skip feature (B, width) from a unit's output.

    4-D (B, C, H, W): adaptive average pool to (B, C), then zeros appended to ``width``.
    3-D (B, T, D): token 0 if ``class_token`` else the mean over the T tokens, then zeros
    appended if D < width. 2-D (B, D): zeros appended. D > width cannot be padded: error.
    """
    if output.dim() == 4:
        vector = F.adaptive_avg_pool2d(output, 1).flatten(1)
    elif output.dim() == 3:
        vector = output[:, 0] if class_token else output.mean(dim=1)
    elif output.dim() == 2:
        vector = output
    else:
        raise InputError(f"unit output of shape {tuple(output.shape)} cannot be reduced to a "
                         "vector for the SCL skip connection", array="unit")
    if vector.shape[1] > width:
        raise InputError(f"unit output has {vector.shape[1]} channels, more than the "
                         f"penultimate width {width}; SCL cannot zero-pad it", array="unit")
    return F.pad(vector, (0, width - vector.shape[1]))


def check_scl_units(model: nn.Module, units: Sequence[str], batch: torch.Tensor) -> None:
    """Raise :class:`InputError` unless every unit in ``units`` gives an SCL skip vector
    (see :func:`unit_vector`), judged from one eval-mode forward pass of ``batch``
    (B, 3, H, W) with all the units hooked at once, before any training starts."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or not units:
        return
    width, class_token = linears[-1].in_features, _has_class_token(model)
    outputs: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda _m, _i, out, name=name: outputs.setdefault(name, out)) for name in units]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(batch)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    for name in units:
        try:
            unit_vector(outputs[name], width, class_token)
        except InputError as err:
            raise InputError(f"SCL FT on unit {name}: {err.problem}", array="unit") from None


class FineTuneNet(nn.Module):
    """A pre-trained model prepared for one fine-tuning method.

    ``forward(x)`` returns (B, C) logits of a new head; ``features(x)`` the (B, d) feature
    the head sees (penultimate, plus the skip vector for SCL). Only the parameters of the
    method are left with ``requires_grad``; the caller's model is copied, never changed.

    Args:
        model: the pre-trained network, with its classifier head as last ``nn.Linear``.
        num_classes: C, the number of downstream classes.
        method: ``"lp"``, ``"layer"``, ``"scl"`` or ``"full"``.
        unit: the unit to tune (number or name) for ``layer``/``scl``; ignored otherwise.
        unit_names: dotted sub-module names to use as units instead of discovery.
    """

    def __init__(self, model: nn.Module, num_classes: int, method: str,
                 unit: int | str | None = None, unit_names: list[str] | None = None):
        super().__init__()
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}",
                             array="method")
        self.method = method
        self.backbone, self.width = split_head(model)
        self.head = nn.Linear(self.width, num_classes)
        self.unit: Unit | None = None
        if method in ("layer", "scl"):
            if unit is None:
                raise InputError(f"method {method!r} needs a unit", array="unit")
            units = find_units(self.backbone, unit_names)
            self.unit = resolve_unit(units, unit, type(model).__name__)
        self._class_token = _has_class_token(self.backbone)
        self._unit_output: torch.Tensor | None = None
        if method == "scl":
            self.unit.module.register_forward_hook(self._keep_unit_output)
        self._freeze()

    def _keep_unit_output(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._unit_output = output

    def _freeze(self) -> None:
        for p in self.backbone.parameters():
            p.requires_grad_(self.method == "full")
        if self.unit is not None:
            for p in self.unit.module.parameters():
                p.requires_grad_(True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d) input of the head: the penultimate feature (+ the SCL skip vector)."""
        h = self.backbone(x)
        if self.method == "scl":
            h = h + unit_vector(self._unit_output, self.width, self._class_token).to(h.dtype)
            self._unit_output = None
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def unit_label(self) -> str:
        """``"Block 7"``-style label of the tuned unit, ``"-"`` for LP and full FT."""
        return f"{self.unit.index} ({self.unit.name})" if self.unit else "-"

    def parameter_share(self) -> float:
        """Share of parameters trained: (unit + head) / (backbone + head) (Tables 3-5)."""
        total = count_parameters(self.backbone) + count_parameters(self.head)
        trained = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trained / total
