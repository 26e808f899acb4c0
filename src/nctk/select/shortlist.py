"""The zero-training order of the pool: the hybrid of Renggli et al. (2020).

Renggli et al. ("Which Model to Transfer? Finding the Needle in the Growing Haystack",
2020) find that neither a task-agnostic pick (the best upstream accuracy) nor a
task-aware one (a cheap probe on the target) is reliable alone, and that the union of the
top models of both, followed by fine-tuning, has low regret. Here the task-aware ranking
is ``recommended`` and the task-agnostic one the data-free prior; the order takes their
top models in turn (recommended's first, the prior's first, recommended's second, ...),
skipping a model already taken, so that its first n models are the union of the top
~n/2 of each. Without a prior it is ``recommended``'s ranking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nctk.errors import InputError


def ranking(scores: Mapping[str, float]) -> list[str]:
    """Models by score, best first (ties: the order given)."""
    return sorted(scores, key=lambda m: -scores[m])


def hybrid_order(task_aware: Sequence[str], prior: Sequence[str] | None = None) -> list[str]:
    """Alternate the two rankings (best first), skipping models already taken.

    Args:
        task_aware: every model, best first (``recommended``'s ranking).
        prior: the same models by the data-free prior, best first; None: no prior.
    """
    if prior is None:
        return list(task_aware)
    if sorted(prior) != sorted(task_aware):
        raise InputError("the prior ranks other models than the zero-training scores",
                         parameter="prior")
    order: list[str] = []
    for pair in zip(task_aware, prior, strict=True):
        for model in pair:
            if model not in order:
                order.append(model)
    return order
