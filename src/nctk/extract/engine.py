"""The extraction engine: batched frozen-feature inference, cached and resumable.

``extract_features(model, data)`` runs a model over a labelled image dataset in eval mode
under ``torch.inference_mode`` and returns a :class:`nctk.io.FeatureFile` (penultimate
features, source-head logits when the model has a head, pooled intermediate layers on
request). On a GPU it uses bf16 autocast, channels-last memory and a pinned-memory
``DataLoader`` with workers; on the CPU fp32 and a few workers.

With a ``cache_dir`` the result is stored under a content-addressed key (model weights,
dataset content, preprocessing, samples, layers, precision, nctk version): a second run
reads it back without computing anything, and an interrupted run resumes from its last
completed chunk of batches (see :mod:`nctk.extract.cache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nctk.errors import InputError
from nctk.extract.cache import Chunk, FeatureCache, cache_key
from nctk.extract.datasets import LabelledImages, load_dataset, subsample_per_class
from nctk.extract.models import ModelAdapter, load_model, model_identity
from nctk.io import LAYER_PREFIX, FeatureFile, feature_file_from_arrays, save_feature_file
from nctk.progress import progress_bar
from nctk.validation import encode_labels

#: Batches per resumable chunk written to the cache.
CHUNK_BATCHES = 8


#: Where the engine reports what the caller should know (a fallback, skipped images).
log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; CUDA asked but absent -> CPU with a logged
    warning."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        log.warning("no GPU: falls back to CPU")
        return torch.device("cpu")
    return resolved


def extract_features(model: ModelAdapter | str | torch.nn.Module,
                     data: LabelledImages | str, *, layers: Sequence[str] | str = (),
                     batch_size: int = 64, device: str | torch.device | None = None,
                     cache_dir: str | os.PathLike | None = None, progress: bool = True,
                     skip_bad_images: bool = False, num_workers: int | None = None,
                     chunk_batches: int = CHUNK_BATCHES) -> FeatureFile:
    """Frozen features of one model on one dataset.

    Args:
        model: a :class:`ModelAdapter`, a model spec or an ``nn.Module`` (see
            :func:`nctk.extract.load_model`).
        data: a :class:`LabelledImages` or a dataset spec (see
            :func:`nctk.extract.load_dataset`). Its own transform, when set, replaces the
            model's preprocessing.
        layers: intermediate layers to pool (names from ``adapter.units()`` or any module
            path), or ``"all"`` for every unit.
        batch_size: images per forward pass.
        device: ``cpu``, ``cuda``, ``cuda:N`` or None (CUDA when available).
        cache_dir: where finished and partial results are kept; None computes in memory
            (no reuse, no resume).
        progress: show a tqdm progress bar.
        skip_bad_images: skip unreadable images (counted in a logged warning) instead of
            failing.
        num_workers: DataLoader workers (default: up to 8 on GPU, up to 3 on CPU).
        chunk_batches: batches per resumable chunk.

    Returns:
        FeatureFile named after the model: ``features`` (N, d) float32, ``labels`` (N,) the
        dataset's label values, ``source_logits`` (N, Cs) when the model has a head,
        ``layers`` {name: (N, d_l)}.

    Raises:
        InputError: bad spec, unknown layer, unreadable image (without skipping), fewer
            than two classes left.
    """
    adapter = model if isinstance(model, ModelAdapter) else load_model(model)
    dataset = data if isinstance(data, LabelledImages) else load_dataset(data)
    for value, what in ((batch_size, "batch size"), (chunk_batches, "chunk_batches")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{what} must be a positive integer, got {value!r}")
    layer_names, device, dataset, material = _prepare(adapter, dataset, layers, device,
                                                      skip_bad_images)
    cache = FeatureCache(cache_dir, cache_key(material)) if cache_dir is not None else None
    if cache is not None and cache.finished():
        result = _from_cache(cache, adapter.name)
    else:
        chunks = _chunks(adapter, dataset, layer_names, cache, device=device,
                         batch_size=batch_size, num_workers=num_workers, progress=progress,
                         skip_bad_images=skip_bad_images, chunk_batches=chunk_batches)
        result, skipped = _assemble(adapter.name, dataset, chunks, layer_names)
        _warn_skipped(adapter.name, skipped)
        if cache is not None:
            _store(cache, result, {**material, "name": adapter.name, "data_spec": dataset.spec,
                                   "samples_total": len(dataset),
                                   "samples_kept": len(result.labels), "skipped": skipped})
    result.source_accuracy = adapter.source_accuracy
    result.random_init = adapter.random_init
    return result


def _chunks(adapter: ModelAdapter, dataset: LabelledImages, layer_names: list[str],
            cache: FeatureCache | None, **run: Any) -> list[Chunk]:
    """Every chunk of the extraction: those the cache holds from an interrupted run, then
    the samples still missing, computed now (``run``: the options of :func:`_run`)."""
    chunks = list(cache.chunks()) if cache is not None else []
    done = np.zeros(len(dataset), dtype=bool)
    for chunk in chunks:
        done[chunk.positions] = True
    remaining = np.flatnonzero(~done)
    if remaining.size:
        chunks += _run(adapter, dataset, remaining, layer_names, cache=cache,
                       already=int(done.sum()), **run)
    return chunks


def _store(cache: FeatureCache, result: FeatureFile, record: dict[str, Any]) -> None:
    """Keep the finished result in the cache (``record``: its key material and counts);
    the result then points at the cached file."""
    save_feature_file(cache.final_path, result.features, result.labels,
                      source_logits=result.source_logits, layers=result.layers)
    cache.finish(record)
    result.path = str(cache.final_path)


def _warn_skipped(name: str, skipped: Sequence[str]) -> None:
    if skipped:
        log.warning("%s: skipped %d unreadable image(s); first: %s", name, len(skipped),
                    skipped[0])


def feature_cache(model: ModelAdapter, data: LabelledImages, cache_dir: str | os.PathLike, *,
                  layers: Sequence[str] | str = (), device: str | torch.device | None = None,
                  skip_bad_images: bool = False) -> FeatureCache:
    """The cache entry :func:`extract_features` reads and writes for these arguments
    (``finished()`` tells whether a call would compute anything)."""
    material = _prepare(model, data, layers, device, skip_bad_images)[3]
    return FeatureCache(cache_dir, cache_key(material))


def _prepare(adapter: ModelAdapter, dataset: LabelledImages, layers: Sequence[str] | str,
             device: str | torch.device | None, skip_bad_images: bool
             ) -> tuple[list[str], torch.device, LabelledImages, dict[str, Any]]:
    """Resolved layers, device, the dataset with its transform, and the cache-key material
    (model weights, dataset content, preprocessing, samples, layers, precision, version)."""
    layer_names = adapter.resolve_layers(layers)
    device = resolve_device(device)
    dataset = dataset.with_transform(
        adapter.transform if dataset.transform is None else dataset.transform)
    material = {
        "model": model_identity(adapter), "dataset": dataset.identity,
        "samples": hashlib.sha256(dataset.indices.tobytes()).hexdigest(),
        "transform": repr(dataset.transform), "layers": layer_names,
        "precision": "bf16" if device.type == "cuda" else "fp32",
        "skip_bad_images": bool(skip_bad_images), "nctk": _version(),
    }
    return layer_names, device, dataset, material


def _version() -> str:
    from nctk.version import __version__

    return __version__


def _from_cache(cache: FeatureCache, name: str) -> FeatureFile:
    from nctk.io import load_feature_file

    result = load_feature_file(cache.final_path)
    result.name = name
    _warn_skipped(name, cache.meta().get("skipped", []))
    return result


class _SafeItems(torch.utils.data.Dataset):
    """Positions -> (position, tensor | None, problem | None); unreadable images do not
    raise inside DataLoader workers, so the main process can name the file or skip it."""

    def __init__(self, dataset: LabelledImages, positions: np.ndarray):
        self.dataset = dataset
        self.positions = positions

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        position = int(self.positions[i])
        try:
            image = self.dataset.read_image(position)
        except InputError as err:
            return position, None, str(err)
        return position, self.dataset.transform(image), None


def _collate(items: list[tuple[int, torch.Tensor | None, str | None]]
             ) -> tuple[list[int], torch.Tensor | None, list[str | None]]:
    positions = [p for p, _, _ in items]
    tensors = [t for _, t, _ in items if t is not None]
    batch = torch.stack(tensors) if tensors else None
    return positions, batch, [problem for _, _, problem in items]


def _run(adapter: ModelAdapter, dataset: LabelledImages, positions: np.ndarray,
         layer_names: list[str], *, device: torch.device, batch_size: int,
         num_workers: int | None, progress: bool, skip_bad_images: bool,
         chunk_batches: int, cache: FeatureCache | None, already: int) -> list[Chunk]:
    """Forward every position in order; flush a chunk every ``chunk_batches`` batches."""
    cuda = device.type == "cuda"
    if num_workers is None:
        num_workers = min(8 if cuda else 3, max((os.cpu_count() or 1) - 1, 0))
    loader = torch.utils.data.DataLoader(
        _SafeItems(dataset, positions), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, pin_memory=cuda, collate_fn=_collate,
        persistent_workers=False, prefetch_factor=4 if num_workers else None)
    module = adapter.module
    was_training = module.training
    module.to(device).eval()
    if cuda:
        module.to(memory_format=torch.channels_last)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda
                else contextlib.nullcontext())
    chunks: list[Chunk] = []
    pending: list[Chunk] = []
    bar = progress_bar(total=len(dataset), initial=already, unit="img", desc=adapter.name,
                       enabled=progress)
    try:
        with torch.inference_mode(), autocast:
            for batch_positions, batch, problems in loader:
                pending.append(_forward_batch(adapter, batch_positions, batch, problems,
                                              layer_names, device, skip_bad_images))
                bar.update(len(batch_positions))
                if len(pending) >= chunk_batches:
                    chunks.append(_flush(pending, cache))
                    pending = []
        if pending:
            chunks.append(_flush(pending, cache))
    finally:
        bar.close()
        module.train(was_training)
    return chunks


def _forward_batch(adapter: ModelAdapter, positions: list[int], batch: torch.Tensor | None,
                   problems: list[str | None], layer_names: list[str], device: torch.device,
                   skip_bad_images: bool) -> Chunk:
    skipped = [p for p in problems if p is not None]
    if skipped and not skip_bad_images:
        raise InputError(skipped[0] + " (skip_bad_images=True skips unreadable images)")
    kept = np.asarray([p is None for p in problems], dtype=bool)
    if batch is None:
        return Chunk(np.asarray(positions, dtype=np.int64), kept, features=None, logits=None,
                     skipped=skipped)
    batch = batch.to(device, non_blocking=True)
    if device.type == "cuda":
        batch = batch.contiguous(memory_format=torch.channels_last)
    out = adapter.forward(batch, layer_names)
    return Chunk(np.asarray(positions, dtype=np.int64), kept, features=_host(out["features"]),
                 logits=None if out["logits"] is None else _host(out["logits"]),
                 layers={k: _host(v) for k, v in out["layers"].items()}, skipped=skipped)


def _host(tensor: torch.Tensor) -> np.ndarray:
    return tensor.float().cpu().numpy()


def _concat(parts: list[np.ndarray | None]) -> np.ndarray | None:
    present = [p for p in parts if p is not None]
    return np.concatenate(present) if present else None


def _merge(chunks: list[Chunk]) -> Chunk:
    """Concatenate chunks in order (chunks with only skipped images carry no arrays)."""
    with_data = [c for c in chunks if c.features is not None]
    layers = {k: np.concatenate([c.layers[k] for c in with_data])
              for k in (with_data[0].layers if with_data else {})}
    return Chunk(positions=np.concatenate([c.positions for c in chunks]),
                 kept=np.concatenate([c.kept for c in chunks]),
                 features=_concat([c.features for c in chunks]),
                 logits=_concat([c.logits for c in chunks]), layers=layers,
                 skipped=[s for c in chunks for s in c.skipped])


def _flush(pending: list[Chunk], cache: FeatureCache | None) -> Chunk:
    chunk = _merge(pending)
    if chunk.features is None:  # a chunk of unreadable images only: store empty arrays
        chunk.features = np.zeros((0, 0), dtype=np.float32)
    if cache is not None:
        cache.write_chunk(chunk)
    return chunk


def _assemble(name: str, dataset: LabelledImages, chunks: list[Chunk],
              layer_names: list[str]) -> tuple[FeatureFile, list[str]]:
    """Order all chunks by position, check complete coverage, build the FeatureFile."""
    chunks = sorted(chunks, key=lambda c: int(c.positions[0]))
    for chunk in chunks:
        if chunk.features is not None and chunk.features.size == 0:
            chunk.features = None
    merged = _merge(chunks)
    if not np.array_equal(merged.positions, np.arange(len(dataset))):
        raise RuntimeError("internal error: extracted positions do not cover the dataset once")
    kept_positions = merged.positions[merged.kept]
    labels = dataset.label_values()[kept_positions]
    where = f"{dataset.spec} ({len(merged.skipped)} unreadable image(s) skipped)"
    if merged.features is None:
        raise InputError("no readable image", file=where)
    try:
        encode_labels(labels, name="labels", min_classes=2)
    except InputError as err:
        raise err.located(file=where) from None
    arrays: dict[str, Any] = {"features": merged.features, "labels": labels}
    if merged.logits is not None:
        arrays["source_logits"] = merged.logits
    arrays.update({LAYER_PREFIX + k: merged.layers[k] for k in layer_names})
    return feature_file_from_arrays(name, arrays), merged.skipped


def extract_pool(model_specs: Sequence[str | ModelAdapter | torch.nn.Module] | str,
                 data_spec: str | LabelledImages, *, per_class: int | None = None,
                 seed: int = 0, layers: Sequence[str] | str = (),
                 cache_dir: str | os.PathLike | None = None,
                 device: str | torch.device | None = None, progress: bool = True,
                 skip_bad_images: bool = False, batch_size: int = 64,
                 image_size: int | None = None, num_workers: int | None = None,
                 trust_checkpoint: bool = False, parts: Any = None) -> list[FeatureFile]:
    """Features of several models on the same samples (one FeatureFile per model, in order).

    ``model_specs`` is a list or a comma-separated string of specs. With ``per_class``,
    at most that many samples per class are drawn once (with ``seed``) and shared by every
    model. Models are loaded one at a time, so memory holds a single model. Every model is
    checked first (:func:`nctk.extract.preflight.check_models`: loadable, its layers,
    one image through it, distinct names), so a bad fifth model fails before any
    extraction. ``trust_checkpoint`` lets checkpoints that carry code load and ``parts``
    names heads and units (see :func:`load_model`).
    """
    if isinstance(model_specs, str):
        model_specs = [s.strip() for s in model_specs.split(",") if s.strip()]
    if not model_specs:
        raise InputError("no models given")
    dataset = data_spec if isinstance(data_spec, LabelledImages) else load_dataset(data_spec)
    if per_class is not None:
        dataset = subsample_per_class(dataset, per_class, seed)
    from nctk.extract.preflight import check_models

    check_models(model_specs, dataset, image_size=image_size, layers=layers,
                 trust_checkpoint=trust_checkpoint, parts=parts)
    pool: list[FeatureFile] = []
    for spec in model_specs:
        adapter = spec if isinstance(spec, ModelAdapter) else load_model(
            spec, image_size=image_size, trust_checkpoint=trust_checkpoint, parts=parts)
        pool.append(extract_features(adapter, dataset, layers=layers, batch_size=batch_size,
                                     device=device, cache_dir=cache_dir, progress=progress,
                                     skip_bad_images=skip_bad_images,
                                     num_workers=num_workers))
        del adapter
    return pool


def write_pool(pool: Sequence[FeatureFile], out_dir: str | os.PathLike) -> list[Path]:
    """Write each FeatureFile to ``out_dir/<name>.npz`` (atomically); returns the paths."""
    paths = []
    for result in pool:
        paths.append(save_feature_file(Path(out_dir) / f"{result.name}.npz", result.features,
                                       result.labels, source_logits=result.source_logits,
                                       layers=result.layers,
                                       source_accuracy=result.source_accuracy,
                                       random_init=result.random_init))
    return paths
