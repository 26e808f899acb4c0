"""The unit of work of a pool run: one model on one dataset, extracted and scored.

:func:`run_model` loads the model (on whichever process or machine runs it), extracts its
features through the feature cache of :mod:`nctk.extract` (same cache keys as
``nctk extract``, so a run of either executor resumes the other's), scores them with each
requested method (:func:`nctk.transfer.ranking.model_terms`: the score, or the raw
components of a pool-relative method such as NCTI) and returns a small
:class:`ModelRecord`. The scores are written beside the cached features
(``KEY.scores.json``), so a rerun reads them back instead of recomputing them.

A bad input (:class:`~nctk.errors.InputError`) ends in a record with ``error`` set rather
than an exception: it would fail the same way again, so executors must not retry it.
Any other exception propagates (the Ray executor retries it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nctk.errors import InputError
from nctk.extract.cache import FeatureCache
from nctk.extract.datasets import LabelledImages
from nctk.extract.engine import extract_features, feature_cache, resolve_device
from nctk.extract.models import ModelAdapter, TrustedCheckpointWarning, load_model
from nctk.io import FeatureFile, atomic_path
from nctk.transfer.registry import Components

#: What a method's model-level share is: a score, raw components, or None when the
#: method's input array is missing and the method was not named explicitly.
Terms = float | Components | None


@dataclass(frozen=True)
class ExtractSettings:
    """How features are extracted (the arguments of :func:`nctk.extract.extract_features`).

    ``cache_dir`` None computes in memory (no reuse, no resume, no stored scores).
    """

    layers: tuple[str, ...] | str = ()
    batch_size: int = 64
    device: str | None = None
    num_workers: int | None = None
    image_size: int | None = None
    skip_bad_images: bool = False
    cache_dir: str | None = None
    progress: bool = False
    #: load model files that carry code (see :func:`~nctk.extract.load_model`); the units
    #: do not warn, their driver does (the CLI's check of every model before any unit)
    trust_checkpoint: bool = False
    #: the heads and units named by the user (:class:`nctk.extract.parts.ModelParts`)
    parts: Any = None


@dataclass(frozen=True)
class ScoreSettings:
    """Which methods score each model, and with which options.

    Attributes:
        methods: registry names, in the order results are wanted.
        options: method name -> the options of :func:`~nctk.transfer.ranking.model_terms`
            (those ``combine`` consumes, such as NCTI's weights, are ignored here).
        optional_inputs: when a model lacks a method's input array (source logits), leave
            the method out for it (``--method all``) instead of failing the model.
    """

    methods: tuple[str, ...]
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    optional_inputs: bool = False


@dataclass
class ModelRecord:
    """What one unit of work reports back (small: no arrays unless ``features`` was asked).

    Attributes:
        spec: the model as given (its spec string, or the adapter's name).
        name: the model's name (the feature-file stem), once loaded.
        error: one line when the model failed; everything below is then unset.
        from_cache: the features were read from the cache (nothing extracted).
        scores_from_cache: every requested score was read from the cache.
        samples, dim: N and d of the features.
        has_source_logits: whether the model produced source-head logits.
        labels_digest: SHA-256 of the label values, to check that a pool shares them.
        terms: method -> :data:`Terms`.
        seconds: method -> seconds its scoring took (when it was computed).
        extract_seconds: seconds spent loading and extracting this time.
        cache_key: the feature-cache key (None without a cache).
        features: the :class:`~nctk.io.FeatureFile`, when the caller keeps features.
        source_accuracy: the weights' source-task accuracy when their metadata carries it
            (torchvision: ImageNet top-1), a data-free prior for ``recommended``.
        random_init: the weights are a random initialisation (flagged in every output).
    """

    spec: str
    name: str = ""
    error: str | None = None
    from_cache: bool = False
    scores_from_cache: bool = False
    samples: int = 0
    dim: int = 0
    has_source_logits: bool = False
    labels_digest: str = ""
    terms: dict[str, Terms] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    extract_seconds: float = 0.0
    cache_key: str | None = None
    features: FeatureFile | None = None
    source_accuracy: float | None = None
    random_init: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class PoolJob:
    """Everything the models of one run share: shipped once to every worker."""

    dataset: LabelledImages
    extract: ExtractSettings
    scoring: ScoreSettings | None = None
    keep_features: bool = False


def describe_model(model: str | ModelAdapter) -> str:
    """The spec string, or the name of an adapter given directly."""
    return model.name if isinstance(model, ModelAdapter) else str(model)


def run_model(job: PoolJob, model: str | ModelAdapter) -> ModelRecord:
    """Extract and score one model of ``job`` (see the module docstring)."""
    spec = describe_model(model)
    try:
        return _run(job, model, spec)
    except InputError as err:
        return ModelRecord(spec=spec, error=str(err))


def _run(job: PoolJob, model: str | ModelAdapter, spec: str) -> ModelRecord:
    settings = job.extract
    started = time.perf_counter()
    with warnings.catch_warnings():
        # the driver warns: its check of every model (preflight) loaded each trusted file
        # before any unit ran, and a unit may run in a Ray worker far from the user
        warnings.simplefilter("ignore", TrustedCheckpointWarning)
        adapter = model if isinstance(model, ModelAdapter) else load_model(
            model, image_size=settings.image_size, trust_checkpoint=settings.trust_checkpoint,
            parts=settings.parts)
    device = resolve_device(settings.device)
    cache = (feature_cache(adapter, job.dataset, settings.cache_dir, layers=settings.layers,
                           device=device, skip_bad_images=settings.skip_bad_images)
             if settings.cache_dir is not None else None)
    record = ModelRecord(spec=spec, name=adapter.name,
                         from_cache=cache is not None and cache.finished(),
                         cache_key=cache.key if cache is not None else None,
                         source_accuracy=adapter.source_accuracy,
                         random_init=adapter.random_init)
    store = ScoreStore(cache) if cache is not None and job.scoring is not None else None
    stored = store.read() if store is not None else {}
    keys = {m: score_key(m, job.scoring.options.get(m, {})) for m in job.scoring.methods
            } if job.scoring is not None else {}
    if (record.from_cache and not job.keep_features and "summary" in stored
            and all(k in stored["terms"] for k in keys.values())):
        _fill_summary(record, stored["summary"])
        for method, key in keys.items():
            record.terms[method] = stored["terms"][key]["terms"]
            record.seconds[method] = stored["terms"][key]["seconds"]
        record.scores_from_cache = True
        return record

    features = extract_features(
        adapter, job.dataset, layers=settings.layers, batch_size=settings.batch_size,
        device=device, cache_dir=settings.cache_dir, progress=settings.progress,
        skip_bad_images=settings.skip_bad_images, num_workers=settings.num_workers)
    record.extract_seconds = time.perf_counter() - started
    summary = {"samples": int(features.features.shape[0]),
               "dim": int(features.features.shape[1]),
               "has_source_logits": features.source_logits is not None,
               "labels_digest": labels_digest(features.labels)}
    _fill_summary(record, summary)
    if job.scoring is not None:
        computed = _score(job.scoring, features, keys, stored.get("terms", {}), record)
        if store is not None and computed:
            store.add(summary, computed)
    if job.keep_features:
        record.features = features
    return record


def _score(scoring: ScoreSettings, features: FeatureFile, keys: Mapping[str, str],
           stored: Mapping[str, Any], record: ModelRecord) -> dict[str, Any]:
    """Fill ``record.terms`` (from ``stored`` where present); returns the new entries."""
    from nctk.transfer.ranking import model_input, model_terms
    from nctk.transfer.registry import get_method

    computed = {}
    inputs = {"features": features.features, "source_logits": features.source_logits}
    shared: dict[str, Any] = {}  # the model's statistics, formed once for every method
    for name in scoring.methods:
        if keys[name] in stored:
            record.terms[name] = stored[keys[name]]["terms"]
            record.seconds[name] = stored[keys[name]]["seconds"]
            continue
        method = get_method(name)
        x = features.features if method.input == "features" else features.source_logits
        if x is None:
            if not scoring.optional_inputs:
                raise InputError(f"missing; method '{name}' needs the source model's logits",
                                 file=record.name, array=method.input)
            record.terms[name] = None
            continue
        start = time.perf_counter()
        try:
            x = model_input(record.name, method, inputs, features.labels, shared)
            terms = model_terms(method, x, features.labels, **scoring.options.get(name, {}))
        except InputError as err:
            raise err.located(file=record.name, array=method.input) from None
        record.seconds[name] = time.perf_counter() - start
        record.terms[name] = terms
        computed[keys[name]] = {"method": name, "terms": terms,
                                "seconds": record.seconds[name]}
    return computed


def _fill_summary(record: ModelRecord, summary: Mapping[str, Any]) -> None:
    record.samples = int(summary["samples"])
    record.dim = int(summary["dim"])
    record.has_source_logits = bool(summary["has_source_logits"])
    record.labels_digest = str(summary["labels_digest"])


def labels_digest(labels: np.ndarray) -> str:
    """SHA-256 of the label values and their kind (int or str), in order."""
    values = np.asarray(labels)
    text = json.dumps([values.dtype.kind, values.tolist()], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of nctk's own source files: stored scores are reused only by the same code
    (the feature cache keys on the version; scores change with any fix to a method)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def score_key(method: str, options: Mapping[str, Any]) -> str:
    """The stored-score key: method, the options its model-level share takes, the code."""
    from nctk.transfer.registry import get_method

    combine = set(get_method(method).combine_options)
    own = {k: v for k, v in options.items() if k not in combine}
    return json.dumps([method, own, code_fingerprint()], sort_keys=True, default=str)


class ScoreStore:
    """``KEY.scores.json`` beside a cached feature file: the features' summary and every
    score computed from them, keyed by :func:`score_key`.

    Written atomically (read, add, rename), with Python's JSON floats so that every score
    (NaN included) reads back bit for bit. Two runs adding scores to the same entry at
    once may drop one's addition, which is then recomputed the next time: never wrong.
    """

    def __init__(self, cache: FeatureCache):
        self.path = cache.directory / f"{cache.key}.scores.json"

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"terms": {}}
        return data if isinstance(data.get("terms"), dict) else {"terms": {}}

    def add(self, summary: Mapping[str, Any], entries: Mapping[str, Any]) -> None:
        data = self.read()
        data["summary"] = dict(summary)
        data["terms"].update(entries)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(data, allow_nan=True) + "\n", encoding="utf-8")
