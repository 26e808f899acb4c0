"""The fine-tuning units of a loaded model (a :class:`nctk.extract.ModelAdapter`)."""

from __future__ import annotations

from typing import Any

from nctk.errors import InputError
from nctk.finetune.units import find_units


def declared_units(adapter: Any) -> list[str] | None:
    """None when the model's blocks are discovered (ResNets, ViTs: Li et al.'s units);
    otherwise the blocks its adapter declares (the demo models' ``block1..K``, the largest
    sequential container of other models), so that Layer/SCL FT work on them."""
    try:
        find_units(adapter.module)
    except InputError:
        return adapter.units() or None
    return None
