"""Provenance: what a result was computed from, so that a JSON file or a report can be
traced back and reproduced.

:func:`provenance` builds the ``"provenance"`` object that ``nctk rank``, ``nctk demo``,
``nctk collapse`` and ``nctk analyze`` add at the top level of their JSON output (beside the
contract's keys, which are unchanged) and that the HTML report shows in its own section.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import numpy as np

#: Packages whose versions are recorded (those that change the numbers).
PACKAGES = ("nctk", "torch", "numpy", "scipy", "scikit-learn")


def versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES` and of Python (None when absent)."""
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    if found["nctk"] is None:  # running from a source tree that is not installed
        from nctk.version import __version__

        found["nctk"] = __version__
    found["python"] = platform.python_version()
    return found


def class_counts(labels: Any) -> dict[str, int]:
    """Samples per class, classes in sorted order, keyed by the label as a string."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {str(v): int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}


def provenance(*, labels: Any = None, data: str | None = None,
               feature_files: Sequence[str] | None = None,
               models: Mapping[str, str] | None = None, seed: int | None = None,
               method_options: Mapping[str, Mapping[str, Any]] | None = None,
               extra: Mapping[str, Any] | None = None,
               argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The provenance object (JSON-ready).

    Args:
        labels: (N,) target labels the scores were computed on: gives ``samples``,
            ``classes`` and ``per_class`` (samples of each class).
        data: the dataset spec the features were extracted from (``--data``), if any.
        feature_files: the feature files read, if any.
        models: model name -> the spec it was loaded from, if extracted.
        seed: the seed of seeded methods and draws.
        method_options: method -> the options it ran with (those the CLI passed).
        extra: further entries (per-class draw, layers, ...).
        argv: the command line (default: ``sys.argv``).
    """
    record: dict[str, Any] = {
        "command": " ".join(["nctk", *(sys.argv[1:] if argv is None else argv)]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "data": data,
    }
    if feature_files is not None:
        record["feature_files"] = [str(f) for f in feature_files]
    if models is not None:
        record["models"] = dict(models)
    if labels is not None:
        counts = class_counts(labels)
        record.update(samples=int(sum(counts.values())), classes=list(counts),
                      per_class=counts)
    record["seed"] = seed
    if method_options is not None:
        record["method_options"] = {m: _plain(o) for m, o in method_options.items()}
    record.update(extra or {})
    return record


def summary_lines(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs for a human reader (the report's provenance table)."""
    rows = [("command", record.get("command", ""))]
    if record.get("data"):
        rows.append(("data", str(record["data"])))
    if record.get("feature_files"):
        files = record["feature_files"]
        rows.append(("feature files", ", ".join(files[:8])
                     + (f" and {len(files) - 8} more" if len(files) > 8 else "")))
    if record.get("models"):
        rows.append(("models", ", ".join(f"{n} = {s}" if n != s else n
                                         for n, s in record["models"].items())))
    if "samples" in record:
        counts = record["per_class"]
        same = len(set(counts.values())) == 1
        per_class = (f"{next(iter(counts.values()))} per class" if same else
                     ", ".join(f"{c}: {n}" for c, n in counts.items()))
        rows.append(("samples", f"{record['samples']} in {len(counts)} classes ({per_class})"))
        rows.append(("classes", ", ".join(record["classes"])))
    if record.get("seed") is not None:
        rows.append(("seed", str(record["seed"])))
    options = {m: o for m, o in (record.get("method_options") or {}).items() if o}
    if options:
        rows.append(("method options", "; ".join(
            f"{m}: " + ", ".join(f"{k}={v}" for k, v in o.items()) for m, o in options.items())))
    versions_ = record.get("versions") or {}
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions_.items() if v)))
    rows.append(("created", str(record.get("created", ""))))
    return rows


def _plain(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options as JSON values (numbers, strings, lists; anything else as its repr)."""
    plain: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, bool | int | float | str) or value is None:
            plain[key] = value
        elif isinstance(value, Mapping):
            plain[key] = _plain(value)
        elif isinstance(value, list | tuple):
            plain[key] = list(value)
        else:
            plain[key] = repr(value)
    return plain
