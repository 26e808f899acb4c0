"""Throughput and memory of streaming class statistics (nctk.stats.ClassStats).

CPU: streams N samples of dimension d (K classes) in batches generated on the fly
(seeded, float32 like saved features), for two values of N, each in a fresh process so
its peak RSS is its own; reports samples/s of ``update`` alone and end to end (with the
data generation), the time of the metrics (``nctk.collapse.from_stats``) and the peak
RSS, which must not grow with N. A second line per N keeps the per-class scatter
(``per_class_cov=True``, needed for the streaming numerical rank).
GPU (only when CUDA is available): ``update`` on d=2048, K=1000 batches on the GPU
against one plain GEMM X^T X of the same shape, in float64 and float32.

    python benchmarks/bench_collapse.py                 # N = 200,000 and 1,000,000
    python benchmarks/bench_collapse.py --n 50000 100000 --dim 256
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def stream_cpu(n: int, dim: int, classes: int, batch: int, per_class_cov: bool) -> dict:
    """One streaming run in this process; returns the figures."""
    from nctk.collapse import from_stats
    from nctk.stats import ClassStats

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, dim)).astype(np.float32) * 2
    stats = ClassStats(classes, dim, per_class_cov=per_class_cov)
    update_s = 0.0
    start = time.perf_counter()
    for first in range(0, n, batch):
        size = min(batch, n - first)
        labels = rng.integers(0, classes, size)
        features = centres[labels] + rng.standard_normal((size, dim), dtype=np.float32)
        tick = time.perf_counter()
        stats.update(features, labels)
        update_s += time.perf_counter() - tick
    total_s = time.perf_counter() - start
    tick = time.perf_counter()
    metrics = from_stats(stats)
    metrics_s = time.perf_counter() - tick
    return {"n": n, "dim": dim, "classes": classes, "batch": batch,
            "per_class_cov": per_class_cov, "update_samples_per_s": n / update_s,
            "end_to_end_samples_per_s": n / total_s, "update_s": update_s,
            "total_s": total_s, "metrics_s": metrics_s, "nc1": metrics["nc1"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_gpu(dim: int = 2048, classes: int = 1000, batch: int = 8192, steps: int = 20) -> None:
    import torch

    if not torch.cuda.is_available():
        print("GPU section skipped: CUDA is not available on this machine.")
        return
    from nctk.stats import ClassStats

    device = torch.device("cuda")
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn((batch, dim), generator=gen, device=device)
    y = torch.randint(0, classes, (batch,), generator=gen, device=device)
    print(f"GPU: {torch.cuda.get_device_name()}, d={dim}, K={classes}, batch={batch}")

    def timed(fn) -> float:
        fn()
        torch.cuda.synchronize()
        tick = time.perf_counter()
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - tick) / steps

    stats = ClassStats(classes, dim, device=device)
    update = timed(lambda: stats.update(x, y))
    x64 = x.double()
    gemm64 = timed(lambda: x64.T @ x64)
    gemm32 = timed(lambda: x.T @ x)
    print(f"  ClassStats.update (float64): {update * 1e3:8.2f} ms/batch "
          f"= {batch / update:,.0f} samples/s")
    print(f"  plain GEMM X^T X   float64: {gemm64 * 1e3:8.2f} ms "
          f"(update / GEMM = {update / gemm64:.2f}x)")
    print(f"  plain GEMM X^T X   float32: {gemm32 * 1e3:8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--per-class-n", type=int, default=200_000,
                        help="N of the per_class_cov=True run (0 to skip)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(stream_cpu(**json.loads(args.worker))))
        return

    runs = [(n, False) for n in args.n]
    if args.per_class_n:
        runs.append((args.per_class_n, True))
    print(f"CPU streaming, d={args.dim}, K={args.classes}, batch={args.batch}, float32 input "
          "accumulated in float64; each run in a fresh process")
    print(f"{'N':>10} {'per-class':>9} {'update/s':>12} {'end-to-end/s':>13} "
          f"{'metrics s':>9} {'peak RSS MiB':>12}")
    for n, per_class in runs:
        job = {"n": n, "dim": args.dim, "classes": args.classes, "batch": args.batch,
               "per_class_cov": per_class}
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        print(f"{n:>10,} {per_class!s:>9} {r['update_samples_per_s']:>12,.0f} "
              f"{r['end_to_end_samples_per_s']:>13,.0f} {r['metrics_s']:>9.2f} "
              f"{r['peak_rss_mib']:>12.0f}", flush=True)
    gemm = cpu_gemm_reference(args.dim, args.batch)
    print(f"reference: plain float64 GEMM X^T X of one ({args.batch}, {args.dim}) batch takes "
          f"{gemm * 1e3:.0f} ms = {args.batch / gemm:,.0f} samples/s on this machine")
    run_gpu()


def cpu_gemm_reference(dim: int, batch: int, repeats: int = 5) -> float:
    """Best-of time of the scatter GEMM alone: the floor for ``update`` on this CPU."""
    x = np.random.default_rng(0).standard_normal((batch, dim))
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        x.T @ x
        best = min(best, time.perf_counter() - tick)
    return best


if __name__ == "__main__":
    main()
