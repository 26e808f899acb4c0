"""Why ETran fails on small networks: each of its terms alone, on raw and on scale-free
features, per collection (weighted tau against the ground truth, mean over targets).

ETran's energy S_en is the mean of the lowest log-sum-exp of the raw features and its LDA
term S_lda the mean true-class posterior of a nearest-class-mean classifier with the
identity covariance (``nctk.transfer.etran``): both follow the scale of the features, which
differs between architectures. Each term is recomputed here on three scale-free forms of
the features (declared before the zoo was measured):

* ``std``: every dimension standardised over the target samples (z-scores);
* ``rms``: centred and divided by the root mean square coordinate (one scale per model);
* ``white``: centred and PCA-whitened (eigenvalues above 1e-10 of the largest).

``sum`` is the equal-weight pool score n(S_en) + n(S_lda) (``etran_equal``) of that form.
The SVD term is invariant to any invertible linear map of the features already. The feature
RMS itself is shown as a ranking too.

Usage (from the repository root; the feature folders of build_zoo.py, build_select_data.py
and the demo)::

    python benchmarks/bench_etran_terms.py --zoo ZOO_DIR [--select SELECT_DIR] [--demo]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nctk.evaluation import weighted_tau
from nctk.io import load_pool
from nctk.transfer._gaussian import class_means, gaussian_logits, prepare
from nctk.transfer._gaussian import true_class_probability as posterior
from nctk.transfer.etran import energy_term, svd_term
from nctk.transfer.ncti import min_max
from recommended_data import Scores
from rule_selection import target_pairs

FORMS = ("raw", "std", "rms", "white")


def scale_free(x: np.ndarray) -> dict[str, np.ndarray]:
    """The features in each form of the module docstring (float64)."""
    x = x.astype(np.float64)
    centred = x - x.mean(axis=0)
    std = x.std(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred / len(x))
    keep = values > values.max() * 1e-10
    return {"raw": x, "std": centred / np.where(std > 0, std, 1.0),
            "rms": centred / np.sqrt((centred ** 2).mean()),
            "white": centred @ vectors[:, keep] / np.sqrt(values[keep])}


def terms(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Energy and LDA term of every form, the SVD term and the feature RMS of one model."""
    out = {"feature rms": float(np.sqrt((x.astype(np.float64) ** 2).mean()))}
    for form, z in scale_free(x).items():
        data = prepare(z, labels)
        out[f"energy ({form})"] = energy_term(data.x)[0]
        means = class_means(data)
        out[f"lda ({form})"] = float(posterior(gaussian_logits(data.x, means, means.T,
                                                                data.priors),
                                               data.codes).mean())
        if form == "raw":
            out["svd"] = svd_term(data.x, data.codes, data.num_classes)
    return out


def pool_rows(files: list[Path]) -> dict[str, dict[str, float]]:
    """row -> model -> value for one pool (one target's features)."""
    per_model = {f.name: terms(f.features, f.labels) for f in load_pool([str(p) for p in files])}
    rows = {k: {m: v[k] for m, v in per_model.items()} for k in next(iter(per_model.values()))}
    for form in FORMS:
        energy, lda = min_max(rows[f"energy ({form})"]), min_max(rows[f"lda ({form})"])
        rows[f"sum ({form})"] = {m: energy[m] + lda[m] for m in per_model}
    return rows


def mean_taus(rows: Mapping[str, Scores], truth: Scores) -> dict[str, float]:
    """row -> mean weighted tau over the targets of ``truth`` (rows: row -> target -> model)."""
    return {r: float(np.mean([weighted_tau(x, y) for x, y in target_pairs(v, truth)]))
            for r, v in rows.items()}


def collection(folders: Mapping[str, Path], truth: Scores) -> dict[str, float]:
    """Targets -> feature folder (a zoo task serves its _lp and _ft targets)."""
    per_folder = {name: pool_rows(sorted(folder.glob("*.npz")))
                  for name, folder in folders.items()}
    task_of = {t: t if t in per_folder else t.rsplit("_", 1)[0] for t in truth}
    rows = {r: {t: per_folder[task_of[t]][r] for t in truth}
            for r in next(iter(per_folder.values()))}
    return mean_taus(rows, truth)


def demo_folder(tmp: str) -> tuple[dict[str, Path], Scores]:
    from nctk.demo.models import pool_names
    from nctk.demo.run import asset, extract_pool_features
    from nctk.extract import write_pool
    from nctk.io import load_ground_truth

    write_pool(extract_pool_features(pool_names()), tmp)
    return {"demo": Path(tmp)}, {"demo": load_ground_truth(asset("ground_truth.json"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, help="build_zoo.py's output")
    parser.add_argument("--select", type=Path, help="build_select_data.py's output")
    parser.add_argument("--demo", action="store_true", help="the demo pool too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    found: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.demo:
            found["demo"] = collection(*demo_folder(tmp))
    if args.zoo:
        truth = json.loads((args.zoo / "ground_truth.json").read_text())
        found["zoo"] = collection({p.name: p for p in (args.zoo / "features").iterdir()},
                                  truth)
    if args.select:
        targets = sorted(p.parent for p in args.select.glob("*/ground_truth.json"))
        found["select"] = collection({t.name: t / "features" for t in targets}, {
            t.name: json.loads((t / "ground_truth.json").read_text()) for t in targets})
    names = list(found)
    print("| term | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for row in next(iter(found.values())):
        print(f"| {row} | " + " | ".join(f"{found[c][row]:.3f}" for c in names) + " |")


if __name__ == "__main__":
    main()
