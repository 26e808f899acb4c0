"""Time the baseline scores (LEEP, NCE, NLEEP, GBC, TransRate, PARC) and their peak memory.

Synthetic pool member: C overlapping classes whose means and within-class spread lie in a
32-dimensional subspace of d dimensions, plus weak isotropic noise (so PCA at 80 % energy
keeps a few dozen components, as on real penultimate features), and the logits of a random
1000-class head. Prints one Markdown
table row per (method, N).

    python benchmarks/bench_baselines.py [--sizes 1000,5000,20000] [--dim 512] [--classes 50]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

import nctk.transfer  # noqa: F401  (registers the methods)
from nctk.transfer.registry import resolve_methods


def synthetic(n: int, dim: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    basis = np.linalg.qr(rng.normal(size=(dim, 32)))[0].T
    means = rng.normal(size=(classes, 32)) @ basis
    within = rng.normal(size=(n, 32)) @ basis
    features = (means[labels] + within + 0.1 * rng.normal(size=(n, dim))).astype(np.float32)
    head = rng.normal(size=(dim, 1000)) / np.sqrt(dim)
    logits = (features @ head).astype(np.float32)
    return features, logits, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--methods", default="leep,nce,nleep,gbc,transrate,parc")
    args = parser.parse_args()
    print(f"d = {args.dim}, C = {args.classes}, Cs = 1000, float32 input")
    print("| method | N | seconds | score | peak traced MiB |")
    print("|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        features, logits, labels = synthetic(n, args.dim, args.classes)
        for method in resolve_methods(args.methods):
            x = logits if method.input == "source_logits" else features
            tracemalloc.start()
            start = time.perf_counter()
            value = method.score(x, labels)
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            print(f"| {method.name} | {n} | {seconds:.3f} | {value:.6g} | {peak:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
