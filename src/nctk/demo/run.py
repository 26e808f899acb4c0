"""The demo runner: rank the shipped pool on the shipped target subset, offline.

The assets in ``nctk/demo/assets/`` are built by ``benchmarks/build_demo_pool.py``:

* ``<model>.pt``: float16 state dicts of the :data:`nctk.demo.models.POOL` networks,
  trained by the project on the CIFAR-10 source classes (not ImageNet);
* ``target_subset.npz``: ``images`` uint8 (N, 32, 32, 3) and string ``labels``, a seeded
  per-class draw from the target classes' train split;
* ``ground_truth.json``: ``{model: accuracy}`` on the target test split after fine-tuning
  every layer on the shipped target subset as ``nctk select`` fine-tunes (mean over seeds);
* ``pool.json``: how the above was built, with the source accuracies.

:func:`run_demo` extracts penultimate, source-logit and block-wise features with
:mod:`nctk.extract`, scores them with the registered transferability methods, evaluates
each ranking against the ground truth (:func:`nctk.evaluation.evaluate`) and measures the
layer-wise collapse (:func:`nctk.collapse.layer_profile`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nctk.demo.assets import GROUND_TRUTH, asset, pool_info
from nctk.demo.models import MEAN, STD, get_member, pool_names
from nctk.errors import InputError
from nctk.io import FeatureFile, load_ground_truth
from nctk.workflow import RankingOutcome, rank_feature_files


@dataclass
class DemoResult:
    """Everything one demo run computed.

    Attributes:
        pool: one :class:`~nctk.io.FeatureFile` per model (penultimate features, source
            logits, ``layers`` = pooled block outputs), in pool order.
        outcome: the ranking (:class:`nctk.workflow.RankingOutcome`): every method's
            results, the ground truth (each model's fine-tuned target test accuracy) and
            the evaluations, the prior (the models' source test accuracies, recorded with
            their features), flags, notes, recommendation and provenance.
        layers: model -> ``layer_profile()`` (layer -> NC measures).
        info: the build record of the pool (``pool.json``).
        seconds: wall-clock seconds per stage (``load``, ``extract``, ``rank``,
            ``collapse``).
    """

    pool: list[FeatureFile]
    outcome: RankingOutcome
    layers: dict[str, dict[str, dict[str, float]]]
    info: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def load_demo_model(name: str) -> nn.Module:
    """The pool member ``name`` with its shipped weights (float32, eval mode)."""
    try:
        member = get_member(name)
    except KeyError:
        raise InputError(f"unknown demo model {name!r} (demo:<name>); the pool is "
                         f"{', '.join(pool_names())}") from None
    module = member.build()
    state = torch.load(asset(f"{name}.pt"), map_location="cpu", weights_only=True)
    module.load_state_dict({k: v.float() if v.is_floating_point() else v
                            for k, v in state.items()})
    return module.eval()


def image_transform(image_size: int | None = None) -> Any:
    """PIL image -> normalised (3, H, W) float tensor, as the pool was trained (on 32x32
    images); with ``image_size`` the image is first resized to ``image_size`` square."""
    from torchvision import transforms

    steps = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    if image_size is not None:
        steps.insert(0, transforms.Resize((image_size, image_size), antialias=True))
    return transforms.Compose(steps)


def select_models(models: Sequence[str] | None) -> list[str]:
    """``None`` -> the whole pool; otherwise the given names, checked, in pool order."""
    if models is None:
        return pool_names()
    unknown = [m for m in models if m not in pool_names()]
    if unknown:
        raise InputError(f"unknown demo model {unknown[0]!r}; the pool is "
                         f"{', '.join(pool_names())}", parameter="models")
    if len(set(models)) < 2:
        raise InputError("a ranking needs at least 2 distinct models", parameter="models")
    return [m for m in pool_names() if m in models]


def extract_pool_features(models: Sequence[str], *, batch_size: int = 100,
                          progress: bool = False) -> list[FeatureFile]:
    """Penultimate features, source logits and block-wise features of each model on the
    shipped target subset (``demo:target``), through :mod:`nctk.extract`; ``progress``
    shows a bar of the models done (on a terminal only)."""
    from nctk.extract import extract_features, load_dataset, load_model
    from nctk.progress import progress_bar

    data = load_dataset("demo:target")
    pool = []
    for name in progress_bar(models, enabled=progress, desc="extracting", unit="model",
                             leave=False):
        adapter = load_model(f"demo:{name}")
        # 1,000 tiny images: loader worker processes would cost more than they save.
        pool.append(extract_features(adapter, data, layers="all", batch_size=batch_size,
                                     device="cpu", progress=False, num_workers=0))
    return pool


def run_demo(*, models: Sequence[str] | None = None, methods: str = "all", seed: int = 0,
             progress: bool = False, argv: Sequence[str] | None = None) -> DemoResult:
    """Rank the shipped pool (or ``models`` of it) with ``methods`` and evaluate.

    Args:
        models: pool members to use (at least 2); all when None.
        methods: ``"all"`` or comma-separated registered method names.
        seed: passed to the methods that take one.
        progress: show a progress bar of the extraction (on a terminal
            only).
        argv: the command line, for the provenance record.
    """
    import nctk.transfer  # noqa: F401  (registers every method)
    from nctk.collapse import layer_profile
    from nctk.transfer.registry import resolve_methods

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    try:
        chosen = resolve_methods(methods)
    except InputError as err:
        raise err.located(parameter="methods") from None
    names = select_models(models)
    shipped_truth = load_ground_truth(asset(GROUND_TRUTH), names)
    info = pool_info()
    seconds["load"] = time.perf_counter() - started

    started = time.perf_counter()
    pool = extract_pool_features(names, progress=progress)
    seconds["extract"] = time.perf_counter() - started

    started = time.perf_counter()
    outcome = rank_feature_files(
        pool, chosen, seed=seed, ground_truth={name: shipped_truth[name] for name in names},
        argv=argv, source={"data": "demo:target",
                           "models": {name: f"demo:{name}" for name in names}})
    seconds["rank"] = time.perf_counter() - started

    started = time.perf_counter()
    layers = {f.name: layer_profile(f) for f in pool}
    seconds["collapse"] = time.perf_counter() - started
    return DemoResult(pool=pool, outcome=outcome, layers=layers, info=info, seconds=seconds)


def provenance(info: dict[str, Any], n_images: int) -> list[str]:
    """Plain-language lines saying what the pool, the data and the ground truth are."""
    source = info["source_task"]
    target = info["target_task"]
    return [
        f"The pool: {len(info['models'])} small models trained by nctk itself "
        f"(benchmarks/build_demo_pool.py) on the {source['dataset']} classes "
        f"{', '.join(source['classes'])} ({source['split']} split), NOT ImageNet models.",
        f"Target task: {target['dataset']} classes {', '.join(target['classes'])}; the "
        f"features come from {n_images} images ({target['subset']}).",
        f"Ground truth: {info['ground_truth']}.",
    ]
