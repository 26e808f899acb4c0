"""Transferability estimation: NCTI and the baselines, behind one registry.

Importing this package registers every method (one module per family).
"""

from __future__ import annotations

from nctk.transfer import (  # noqa: F401  (imported for their registrations)
    disco,
    etran,
    gbc,
    hscore,
    knn,
    leep,
    logme,
    ncti,
    parc,
    recommended,
    sfda,
    transrate,
)
from nctk.transfer.ranking import MethodResult, rank, rank_pool, score
from nctk.transfer.registry import Method, available_methods, get_method, register

__all__ = ["Method", "MethodResult", "available_methods", "get_method", "rank", "rank_pool",
           "register", "score"]
