"""Content-addressed feature cache with resumable, chunked partial results.

Layout under ``cache_dir`` (``KEY`` = SHA-256 of the key material, see :func:`cache_key`)::

    KEY.npz                 finished feature file (the contract format, docs/contract.md)
    KEY.json                what it holds: the key material, samples, skipped images
    KEY.partial/            an unfinished run: one file per completed chunk of batches
        chunk-000000000.npz   positions, kept mask, features, source_logits, layer:<name>

Every file is written atomically (temporary file + rename), so a run killed at any point
leaves only complete chunks; the next run with the same key skips their samples, and the
finished file replaces the partial directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nctk.io import LAYER_PREFIX, atomic_path, write_json


def files_fingerprint(files: Sequence[Path], root: Path) -> str:
    """SHA-256 of ``root`` and each file's relative path, size and modification time:
    changes whenever a file is added, removed, resized or rewritten."""
    digest = hashlib.sha256(str(root.resolve()).encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_key(material: dict[str, Any]) -> str:
    """SHA-256 hex digest of the key material (canonical JSON)."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Chunk:
    """The outputs for consecutive dataset positions.

    Attributes:
        positions: (n,) int64 dataset positions processed (kept or skipped).
        kept: (n,) bool, False where the image could not be read and was skipped.
        features: (k, d) float32 for the kept samples; logits (k, Cs) or None;
        layers: {name: (k, d_l)}.
        skipped: one "file: problem" line per skipped sample.
    """

    positions: np.ndarray
    kept: np.ndarray
    features: np.ndarray
    logits: np.ndarray | None
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


class FeatureCache:
    """One cache entry: the finished file, its description and its partial chunks."""

    def __init__(self, cache_dir: str | Path, key: str):
        self.directory = Path(cache_dir)
        self.key = key
        self.final_path = self.directory / f"{key}.npz"
        self.meta_path = self.directory / f"{key}.json"
        self.partial_dir = self.directory / f"{key}.partial"

    def finished(self) -> bool:
        return self.final_path.is_file() and self.meta_path.is_file()

    def meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text(encoding="utf-8"))

    def chunks(self) -> Iterator[Chunk]:
        """The completed chunks of an interrupted run (none when there is no partial dir)."""
        if not self.partial_dir.is_dir():
            return
        for path in sorted(self.partial_dir.glob("chunk-*.npz")):
            with np.load(path, allow_pickle=False) as npz:
                yield Chunk(
                    positions=npz["positions"], kept=npz["kept"], features=npz["features"],
                    logits=npz["source_logits"] if "source_logits" in npz.files else None,
                    layers={k[len(LAYER_PREFIX):]: npz[k] for k in npz.files
                            if k.startswith(LAYER_PREFIX)},
                    skipped=[str(s) for s in npz["skipped"]])

    def write_chunk(self, chunk: Chunk) -> Path:
        """Store one chunk atomically, named after its first position."""
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        path = self.partial_dir / f"chunk-{int(chunk.positions[0]):09d}.npz"
        arrays = {"positions": chunk.positions, "kept": chunk.kept, "features": chunk.features,
                  "skipped": np.asarray(chunk.skipped, dtype=str)}
        if chunk.logits is not None:
            arrays["source_logits"] = chunk.logits
        arrays.update({LAYER_PREFIX + k: v for k, v in chunk.layers.items()})
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        return path

    def finish(self, meta: dict[str, Any]) -> None:
        """Record the description (after the final file was written) and drop the chunks."""
        write_json(self.meta_path, meta)
        shutil.rmtree(self.partial_dir, ignore_errors=True)
