"""Time NCTI and every registered transferability score on one large synthetic model.

Usage::

    python benchmarks/bench_scores.py                 # N=50,000, d=2,048, C=100
    python benchmarks/bench_scores.py --n 5000 --d 512 --methods ncti,sfda

What it measures (each in a fresh worker process, so that peak memory is its own):

* every method of the registry, called through ``Method.score`` (NCTI also through
  ``Method.components``, the pool path), on float32 features with class structure
  (seeded); source-logit methods get synthetic (N, 1000) float32 logits. A method that
  does not finish within ``--timeout`` seconds is reported as such.
* the reference-style NCTI: scikit-learn ``PCA(64, svd_solver=...)`` + scikit-learn's
  ``LinearDiscriminantAnalysis`` (svd solver; its W / N covariance converted back to the
  W / (N - C) of the published code) + numpy nuclear norms, on a float64 copy; its three
  terms are compared with nctk's (relative difference printed).
* the small-pool case: 16 models x 1,200 samples (d in 512..2,048), all 16 NCTI
  component sets and the pool combination via ``nctk.rank``.

Peak memory is the growth of the worker's peak RSS (``resource.getrusage``) over its RSS
after the inputs were loaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SOURCE_CLASSES = 1000


def make_data(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 features: class means plus noise with a decaying spectrum."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    means = (rng.standard_normal((classes, d)) * 0.2).astype(np.float32)
    scales = (1.5 / np.sqrt(1.0 + np.arange(d) / 32.0)).astype(np.float32)
    x = np.empty((n, d), np.float32)
    for i in range(0, n, 4096):
        rows = slice(i, min(i + 4096, n))
        noise = rng.standard_normal((rows.stop - i, d), dtype=np.float32)
        x[rows] = means[y[rows]] + noise * scales
    return x, y


def make_logits(y: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    logits = rng.standard_normal((y.shape[0], SOURCE_CLASSES), dtype=np.float32)
    logits[np.arange(y.shape[0]), y * 7 % SOURCE_CLASSES] += 3.0
    return logits


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reference_ncti(x: np.ndarray, y: np.ndarray, solver: str) -> dict[str, float]:
    """The official code's NCTI terms with scikit-learn, on the svd path (W / (N - C))."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    n, c = y.shape[0], int(y.max()) + 1
    pca = PCA(n_components=64, svd_solver=solver).fit(x)
    z = pca.transform(x)
    if math.exp(-pca.explained_variance_[:32].sum()) > 1e-10:
        raise SystemExit("benchmark data should take the svd path")
    lda = LinearDiscriminantAnalysis(solver="svd").fit(z, y)
    proj = lda.transform(z)
    # scikit-learn 1.9.1 whitens with W / N; the published code used W / (N - C):
    # the projection scales by sqrt((N - C) / N) and the Mahalanobis part of the logits
    # by (N - C) / N.
    proj = (proj - proj.mean(0)) * math.sqrt((n - c) / n)
    log_prior = np.log(np.bincount(y) / n)
    logits = (lda.decision_function(z) - log_prior) * (n - c) / n + log_prior
    logits -= logits.max(1, keepdims=True)
    post = np.exp(logits)
    post /= post.sum(1, keepdims=True)
    vc = math.log(sum(np.linalg.norm(post[y == k], "nuc") for k in range(c)))
    return {"seli": float(np.linalg.norm(proj, "nuc")),
            "ncc": float(post[np.arange(n), y].mean()), "vc": vc}


def small_pool(seed: int) -> dict:
    import nctk

    dims = [512, 1024, 1280, 2048] * 4
    _, y = make_data(1200, 8, 40, seed)
    pool = {f"m{i:02d}_d{d}": make_data(1200, d, 40, seed + i)[0] for i, d in enumerate(dims)}
    nctk.rank(pool, y, "ncti")  # warm-up (thread pools, first-call overheads)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        nctk.rank(pool, y, "ncti")
        times.append(time.perf_counter() - start)
    return {"task": "small_pool", "seconds": min(times), "all_seconds": times}


def worker(task: str, data_dir: Path) -> dict:
    if task == "small_pool":
        return small_pool(int((data_dir / "seed").read_text()))
    x = np.load(data_dir / "x.npy")
    y = np.load(data_dir / "y.npy")
    logits = np.load(data_dir / "logits.npy")
    import nctk.transfer as transfer

    rss0 = _rss_mb()
    start = time.perf_counter()
    if task.startswith("reference_"):
        x64 = x.astype(np.float64)
        result = {"components": reference_ncti(x64, y, task.removeprefix("reference_"))}
    elif task == "ncti_components":
        result = {"components": transfer.get_method("ncti").components(x, y)}
    else:
        method = transfer.get_method(task)
        result = {"score": method.score(x if method.input == "features" else logits, y)}
    result["seconds"] = time.perf_counter() - start
    result["extra_peak_mb"] = _peak_mb() - rss0
    result["task"] = task
    return result


def run_worker(task: str, data_dir: Path, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", task, "--data", str(data_dir)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"task": task, "error": f"did not finish within {timeout:.0f} s"}
    if out.returncode != 0:
        return {"task": task, "error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="all", help="registry names, or all")
    parser.add_argument("--reference", default="full,covariance_eigh",
                        help="scikit-learn PCA solvers for the reference NCTI ('' = none)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per method")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data)))
        return

    import nctk.transfer as transfer

    names = (transfer.available_methods() if args.methods == "all"
             else args.methods.split(","))
    tasks = ["ncti_components", *names]
    tasks += [f"reference_{s}" for s in args.reference.split(",") if s]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        x, y = make_data(args.n, args.d, args.classes, args.seed)
        np.save(data_dir / "x.npy", x)
        np.save(data_dir / "y.npy", y)
        np.save(data_dir / "logits.npy", make_logits(y, args.seed))
        (data_dir / "seed").write_text(str(args.seed))
        del x
        print(f"features: N={args.n} d={args.d} C={args.classes} float32, seed {args.seed}; "
              f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
        for task in [*tasks, "small_pool"]:
            res = run_worker(task, data_dir, args.timeout)
            results.append(res)
            print(json.dumps(res), flush=True)
    by_task = {r["task"]: r for r in results}
    ours = by_task["ncti_components"]
    for task, ref in by_task.items():
        if task.startswith("reference_") and "components" in ref and "components" in ours:
            rel = {t: abs(ours["components"][t] - ref["components"][t])
                   / abs(ref["components"][t]) for t in ("seli", "ncc", "vc")}
            print(f"{task}: {ref['seconds']:.2f} s vs nctk {ours['seconds']:.2f} s "
                  f"(speed-up {ref['seconds'] / ours['seconds']:.1f}x); max relative "
                  f"difference of the terms {max(rel.values()):.1e}")
            ref["relative_difference"] = rel
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
