"""The select step of ``nctk demo``: pick the model to fine-tune from the demo pool within a
small budget, to be shown beside the true best (the ground truth).

The demo has scored the pool already (:func:`nctk.demo.run.run_demo`), so the zero-training
phase is not run again: its ``recommended`` and NCTI results and the source-accuracy prior
give the hybrid order (:func:`nctk.select.zero.ordered`). Successive halving then
fine-tunes on the shipped target images (``demo:target``) with the recipe the ground truth
was built with (``pool.json``: its epochs, learning rate, batch size, validation split and
selection seed), so the pick is judged against fine-tuned accuracies of that very recipe.
"""

from __future__ import annotations

from typing import Any

#: The demo's budget: E-epoch fine-tuning runs of the average model (of the 9-model pool).
DEMO_BUDGET = 2.0
#: The fine-tuning recipe when ``pool.json`` records none (the zoo's, benchmarks/).
DEFAULT_RECIPE = {"epochs": 9, "lr": 0.02, "batch_size": 64, "val_fraction": 0.2,
                  "selection_seed": 0}


def recipe_config(info: dict[str, Any], *, progress: bool = False) -> Any:
    """The :class:`~nctk.finetune.train.TrainConfig` of the ground truth's recipe."""
    from nctk.finetune.train import TrainConfig

    recipe = DEFAULT_RECIPE | dict(info.get("recipe", {}))
    return TrainConfig(epochs=recipe["epochs"], lr=recipe["lr"],
                       batch_size=recipe["batch_size"], val_fraction=recipe["val_fraction"],
                       seed=recipe["selection_seed"], device="cpu", progress=progress)


def select_demo(result: Any, *, budget: float = DEMO_BUDGET, ties: str = "exact",
                progress: bool = False) -> Any:
    """Select from the demo pool of ``result`` (a :class:`~nctk.demo.run.DemoResult`);
    the :class:`~nctk.select.api.Selection`."""
    from nctk.select.api import prepare
    from nctk.select.zero import METHODS, ordered
    from nctk.transfer.ranking import rank_pool_methods
    from nctk.transfer.registry import get_method

    outcome = result.outcome
    results = {m: outcome.results[m] for m in METHODS if m in outcome.results}
    if len(results) < len(METHODS):  # the demo ran other methods: score these two now
        prior = {"prior": outcome.prior.values} if outcome.prior else {}
        results = rank_pool_methods(result.pool, [get_method(m) for m in METHODS],
                                    {"recommended": prior, "ncti": {}})
    specs = {f.name: f"demo:{f.name}" for f in result.pool}
    zero = ordered(results, specs, outcome.prior, labels=result.pool[0].labels)
    zero.seconds = result.seconds.get("extract", 0.0) + result.seconds.get("rank", 0.0)
    prepared = prepare(list(specs.values()), "demo:target", budget=budget,
                       config=recipe_config(result.info, progress=progress), zero=zero,
                       timed=False, ties=ties)
    return prepared.run()
