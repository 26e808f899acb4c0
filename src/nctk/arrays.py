"""Conversion between numpy arrays and torch tensors, without importing torch eagerly."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


def is_torch_tensor(x: Any) -> bool:
    """True when ``x`` is a ``torch.Tensor`` (checked without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array; torch tensors (CPU or CUDA) are detached and copied to host."""
    if is_torch_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)
