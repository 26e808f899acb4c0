"""Feature files, ground-truth files and JSON output (the public contract, docs/contract.md).

A feature file is one ``.npz`` per model (the model's name is the file stem) with
``features`` (N, d), ``labels`` (N,), optional ``source_logits`` (N, Cs) and optional
``layer:<name>`` (N, d_l) arrays. Files are opened read-only and never written here:
uncompressed archives (what ``nctk extract`` and :func:`save_feature_file` write) are
memory-mapped, compressed ones inflated after a size check (:mod:`nctk.npz`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from nctk.errors import InputError
from nctk.npz import read_npz
from nctk.paths import input_file, printable, replaceable
from nctk.validation import check_matrix, check_same_length, label_values

LAYER_PREFIX = "layer:"
SOURCE_ACCURACY = "source_accuracy"
#: 0-d bool array, True when the model's weights were a random initialisation.
RANDOM_INIT = "random_init"


@dataclass
class FeatureFile:
    """The arrays of one model's feature file.

    Attributes:
        name: model name (file stem).
        features: (N, d) float penultimate features.
        labels: (N,) raw labels as stored (ints or strings).
        source_logits: (N, Cs) float or None.
        layers: ordered mapping layer name -> (N, d_l) float, in file order.
        path: where it was read from (None when built in memory).
        source_accuracy: the model's accuracy on its source task (e.g. ImageNet-1K acc@1
            in %, from torchvision's weights metadata), or None when unknown.
        random_init: True when the model's weights were a random initialisation (a spec
            ending in ``:none``), not pre-trained: every output flags it.
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    source_logits: np.ndarray | None = None
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    path: str | None = None
    source_accuracy: float | None = None
    random_init: bool = False


def load_feature_file(path: str | os.PathLike, *, require_logits: bool = False) -> FeatureFile:
    """Read and validate one feature file; raise InputError naming the file and array."""
    path = input_file(path, f"pass the feature files in it ({Path(path) / '*.npz'})")
    where = str(path)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":
        kind = "a .npy array, not an .npz archive" if magic[:1] == b"\x93" else "not an .npz file"
        raise InputError(f"not a readable .npz file ({kind})", file=where)
    arrays = read_npz(path)
    try:
        return feature_file_from_arrays(model_name(path), arrays, path=where,
                                        require_logits=require_logits)
    except InputError as err:
        raise err.located(file=where) from None


def model_name(path: str | os.PathLike) -> str:
    """The model name of a feature file: its stem, as valid Unicode (:func:`printable`)."""
    return printable(Path(path).stem)


def feature_file_from_arrays(name: str, arrays: Mapping[str, Any], *, path: str | None = None,
                             require_logits: bool = False) -> FeatureFile:
    """Validate in-memory arrays with the feature-file layout."""
    for key in ("features", "labels"):
        if key not in arrays:
            raise InputError(f"missing (found: {', '.join(sorted(arrays)) or 'nothing'})",
                             array=key)
    features = check_matrix(arrays["features"], "features")
    labels = np.asarray(arrays["labels"])
    if labels.ndim != 1:
        raise InputError(f"expected a 1-D array, got shape {labels.shape}", array="labels")
    label_values(labels, "labels")  # NaN or fractional labels: say so, not "labels differ"
    check_same_length([("labels", labels)], features.shape[0])
    logits = None
    if "source_logits" in arrays:
        logits = check_matrix(arrays["source_logits"], "source_logits")
        check_same_length([("source_logits", logits)], features.shape[0])
    elif require_logits:
        raise InputError("missing; this method needs the source model's logits",
                         array="source_logits")
    layers = {}
    for key, value in arrays.items():
        if key.startswith(LAYER_PREFIX):
            layer = check_matrix(value, key)
            check_same_length([(key, layer)], features.shape[0])
            layers[key[len(LAYER_PREFIX):]] = layer
    accuracy = None
    if SOURCE_ACCURACY in arrays:
        value = np.asarray(arrays[SOURCE_ACCURACY])
        if value.shape != () or value.dtype.kind not in "fiu" or not np.isfinite(value):
            raise InputError(f"expected one finite number, got {value.dtype} array of shape "
                             f"{value.shape}", array=SOURCE_ACCURACY)
        accuracy = float(value)
    random_init = False
    if RANDOM_INIT in arrays:
        value = np.asarray(arrays[RANDOM_INIT])
        if value.shape != () or value.dtype.kind != "b":
            raise InputError(f"expected one boolean, got {value.dtype} array of shape "
                             f"{value.shape}", array=RANDOM_INIT)
        random_init = bool(value)
    return FeatureFile(name=name, features=features, labels=labels, source_logits=logits,
                       layers=layers, path=path, source_accuracy=accuracy,
                       random_init=random_init)


def save_feature_file(path: str | os.PathLike, features: np.ndarray, labels: np.ndarray, *,
                      source_logits: np.ndarray | None = None,
                      layers: Mapping[str, np.ndarray] | None = None,
                      source_accuracy: float | None = None, random_init: bool = False) -> Path:
    """Write a feature file atomically (temporary file, then rename); ``random_init`` is
    stored (as a 0-d bool) only when True."""
    arrays: dict[str, np.ndarray] = {"features": np.asarray(features),
                                     "labels": np.asarray(labels)}
    if source_logits is not None:
        arrays["source_logits"] = np.asarray(source_logits)
    if source_accuracy is not None:
        arrays[SOURCE_ACCURACY] = np.asarray(float(source_accuracy))
    if random_init:
        arrays[RANDOM_INIT] = np.asarray(True)
    for name, value in (layers or {}).items():
        arrays[LAYER_PREFIX + name] = np.asarray(value)
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return path


def load_pool(paths: Sequence[str | os.PathLike], *, require_logits: bool = False
              ) -> list[FeatureFile]:
    """Load the feature files of one pool; every model must carry the same labels."""
    if not paths:
        raise InputError("no feature files given")
    pool = [load_feature_file(p, require_logits=require_logits) for p in paths]
    names = [f.name for f in pool]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputError(f"model name(s) {sorted(dup)} appear twice (names are file stems)",
                         file=str(paths[0]))
    check_pool_labels(pool)
    return pool


def check_pool_labels(pool: Sequence[FeatureFile]) -> None:
    """Raise unless all models of a pool have identical label arrays (same samples, same order)."""
    ref = pool[0]
    for other in pool[1:]:
        same = (other.labels.shape == ref.labels.shape
                and other.labels.dtype.kind == ref.labels.dtype.kind
                and np.array_equal(other.labels, ref.labels))
        if not same:
            raise InputError(f"labels differ from those of '{ref.name}' ({ref.path}); all models "
                             "of a pool must be scored on the same samples in the same order",
                             file=other.path or other.name, array="labels")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file the user gave, strictly: UTF-8, every object without duplicate keys
    (``{"a": 0.5, "a": 0.7}`` would silently keep the last); InputError naming the file
    for a missing or unreadable file, bad JSON, nesting too deep for the parser, or an
    integer too long to convert."""
    where = str(path)
    input_file(path)  # a FIFO would block, a device never end
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle, object_pairs_hook=_unique_keys)
    except InputError as err:
        raise err.located(file=where) from None
    except RecursionError:
        raise InputError("not a readable JSON file (nested too deeply)", file=where) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"not a readable JSON file ({text})", file=where) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise InputError(f"key {key!r} appears twice in one JSON object")
        seen.add(key)
    return dict(pairs)


def load_ground_truth(path: str | os.PathLike, models: Sequence[str] | None = None, *,
                      what: str = "accuracy") -> dict[str, float]:
    """Read a ground-truth JSON ``{model: accuracy}``; check it covers ``models``.

    ``what`` names the values in the messages (the same format serves priors).
    """
    where = str(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object {{model: {what}}}", file=where)
    truth: dict[str, float] = {}
    for key, value in data.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise InputError(f"value for '{key}' is not a finite number: {value!r}", file=where)
        truth[str(key)] = float(value)
    if models is not None:
        missing = [m for m in models if m not in truth]
        if missing:
            raise InputError(f"no {what} for model(s) {missing}", file=where)
    return truth


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Only a regular file (or the target of a symbolic link to a regular file of the user's)
    is replaced; anything else is an :class:`InputError` before anything is written (see
    :func:`nctk.paths.replaceable`). The data is flushed to disk (``fsync``) before the
    rename, so a full disk or a crash leaves the old file whole; the new file keeps the
    old one's permission bits (a new file follows the umask). An exception (or a kill)
    leaves ``path`` as it was and the temporary file is removed; an ``OSError`` is raised
    again naming ``path``, never the temporary file.
    """
    target = replaceable(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                    dir=target.parent)
    except OSError as err:
        raise _named(err, path, None) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, _mode_for(target))
        replaceable(path)  # it may have been swapped for something else while we wrote
        os.replace(tmp, target)
    except OSError as err:
        raise _named(err, path, tmp) from None
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not every platform can sync a directory
        _fsync(target.parent, flags=os.O_RDONLY)


def _fsync(path: Path, flags: int = os.O_RDWR) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mode_for(target: Path) -> int:
    """Permission bits of the file being replaced, or 0666 less the umask for a new one."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _named(err: OSError, path: str | os.PathLike, tmp: Path | None) -> OSError:
    """``err`` as an OSError about the user's ``path`` (no trace of the temporary name)."""
    text = err.strerror or str(err)
    if tmp is not None:
        text = text.replace(str(tmp), os.fspath(path))
    return OSError(err.errno, text, os.fspath(path))


def write_json(target: str | os.PathLike | TextIO, data: Any) -> Path | TextIO:
    """Write JSON atomically to a path, or to an open text stream (``sys.stdout`` for
    ``--json -``); NaN/inf become null so the output is strict JSON."""
    text = json.dumps(_strict(data), indent=2) + "\n"
    if hasattr(target, "write"):
        target.write(text)
        target.flush()
        return target
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def _strict(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
