"""Numerics and extreme shapes of issue 8 (points 4-6, the scores' part): one line per case.

Usage::

    python benchmarks/bench_robustness_scores.py [--cases logme,hscore,...] [--timeout 300]

Run it with another checkout first on ``PYTHONPATH`` to get the "before" column of the
robustness table in ``benchmarks/README.md``. Each case runs in its own process with a
time limit; a case that fails prints its last error line.

Cases: ``logme`` (rank-deficient features, float32 vs float64 vs the ICML iteration),
``hscore`` (dependent columns, float32 vs float64), ``sfda`` (features [a, -a]: the power
estimate against the true top eigenvalue), ``scale`` (every method at feature scales
1e30 and 1e-30: NaN, errors, changed rankings), ``vc`` (the pool-independent vc term of
uniform posteriors), ``tau`` (a NaN score: evaluate's weighted tau and the report's title),
``wide`` (N = C = 5, d = 20,000: the H-scores), ``tall`` (200,000 x 64 float32,
``nctk rank --method all`` on two models), ``single`` (a pool of one model), ``bomb`` (a
44 MB .npz whose member inflates to 10 GiB).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

CASES = ("logme", "hscore", "sfda", "scale", "vc", "tau", "wide", "tall", "single", "bomb")


def _blobs(n: int, d: int, classes: int, seed: int, spread: float = 1.5):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    means = rng.standard_normal((classes, d))
    return means[y] + spread * rng.standard_normal((n, d)), y


def case_logme() -> str:
    import nctk

    x, y = _blobs(1000, 448, 10, 1, 2.0)
    x = np.hstack([np.maximum(x @ np.random.default_rng(0).standard_normal((448, 448)) / 20,
                              0), np.zeros((1000, 64))])  # 1000 x 512, rank 448
    dep = np.hstack([x[:, :448], x[:, :64] + x[:, 64:128]])
    return (f"dead units: f64 {nctk.score('logme', x, y):.4f}, f32 "
            f"{nctk.score('logme', x.astype(np.float32), y):.4f}, icml "
            f"{nctk.score('logme', x, y, variant='icml'):.4f}; dependent columns: f64 "
            f"{nctk.score('logme', dep, y):.4f}, f32 "
            f"{nctk.score('logme', dep.astype(np.float32), y):.4f}")


def case_hscore() -> str:
    import nctk

    x, y = _blobs(200, 10, 4, 2)
    dup = np.hstack([x, x[:, :3] + x[:, 3:6], np.zeros((200, 2))])
    parts = []
    for name in ("hscore", "reg_hscore"):
        a, b = nctk.score(name, dup, y), nctk.score(name, dup.astype(np.float32), y)
        parts.append(f"{name} f64 {a:.6g} f32 {b:.6g} (rel diff {abs(a - b) / abs(a):.1e})")
    return "; ".join(parts)


def case_sfda() -> str:
    import torch

    import nctk
    from nctk.transfer.sfda import power_estimate

    a, y = _blobs(200, 5, 3, 2)
    x = np.hstack([a, -a]) * 0.3  # a scale where the shrinkage exp(-5 lambda) matters
    within = sum(np.cov(x[y == j].T, bias=True) * np.mean(y == j) for j in range(3))
    estimate = power_estimate(torch.from_numpy(within))
    return (f"power estimate {estimate:.4g} (top eigenvalue "
            f"{np.linalg.eigvalsh(within)[-1]:.4g}); score {nctk.score('sfda', x, y):.6f}")


def case_scale() -> str:
    import nctk
    from nctk.transfer import get_method

    _, y = _blobs(150, 12, 3, 0)
    rng = np.random.default_rng(0)
    features = {f"m{i}": _blobs(150, 12, 3, 0, 0.6 + i)[0] + 0.3 * rng.standard_normal(
        (150, 12)) for i in range(3)}
    logits = {f"m{i}": rng.standard_normal((150, 7)) + 2.0 * np.eye(7)[(y + i) % 7]
              for i in range(3)}
    bad, changed = [], []
    for name in nctk.available_methods():
        pool = logits if get_method(name).input == "source_logits" else features
        base = nctk.rank(pool, y, name).ranking
        for scale in (1e30, 1e-30):
            for dtype in (np.float64, np.float32):
                tag = f"{name}@{scale:g}/{np.dtype(dtype).name}"
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        result = nctk.rank({m: (v * scale).astype(dtype) for m, v in
                                            pool.items()}, y, name)
                except Exception as exc:
                    bad.append(f"{tag} {type(exc).__name__}")
                    continue
                if not all(math.isfinite(v) for v in result.scores.values()):
                    bad.append(f"{tag} non-finite")
                elif result.ranking != base:
                    changed.append(tag)
    return (f"errors/non-finite: {', '.join(bad) or 'none'}; rankings changed: "
            f"{', '.join(sorted({c.split('@')[0] for c in changed})) or 'none'}")


def case_vc() -> str:
    from nctk.transfer.ncti import NctiTerms, independent_terms

    counts = np.array([50] * 5)
    uniform = math.log(np.sqrt(counts / 5).sum())
    terms = NctiTerms(seli=1.0, ncc=0.2, vc=uniform, seli_within=1.0, alpha=1e-10,
                      svd_path=True, pca_dim=4, lda_dim=4, class_counts=counts)
    return f"uniform posteriors: vc term {independent_terms(terms)['vc']:.3f}"


def case_tau() -> str:
    from nctk.evaluation import evaluate
    from nctk.report import html

    scores = {"a": 1.0, "b": 2.0, "c": float("nan")}
    truth = {"a": 0.1, "b": 0.2, "c": 0.3}
    return (f"evaluate {evaluate(scores, truth)['weighted_tau']}, report title "
            f"{html._weighted_tau(scores, truth)}")


def case_wide() -> str:
    import nctk
    import nctk.transfer  # the imports (torch) are not what is timed

    x = np.random.default_rng(6).standard_normal((5, 20_000)).astype(np.float32)
    start = time.perf_counter()
    h = nctk.score("hscore", x, np.arange(5))
    r = nctk.score("reg_hscore", x, np.arange(5))
    return (f"hscore {h:.4f}, reg_hscore {r:.4f} in {time.perf_counter() - start:.2f} s, "
            f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


def _cli(*argv: str, timeout: float = 600) -> tuple[int, str, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "nctk", *argv], capture_output=True,
                         text=True, timeout=timeout, check=False)
    return out.returncode, out.stdout + out.stderr, time.perf_counter() - start


def case_tall() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        y = np.arange(200_000) % 10
        paths = []
        for i in range(2):
            x, _ = _blobs(200_000, 64, 10, i, 2.0 + i)
            path = Path(tmp) / f"tall{i}.npz"
            np.savez(path, features=x.astype(np.float32), labels=y)
            paths.append(str(path))
        code, text, seconds = _cli("rank", *paths, "--method", "all")
        notes = [line for line in text.splitlines() if "subsample" in line]
        return f"exit {code} in {seconds:.1f} s; " + " / ".join(notes)


def case_single() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        x, y = _blobs(100, 8, 4, 0)
        path = Path(tmp) / "only.npz"
        np.savez(path, features=x, labels=y)
        code, text, _ = _cli("rank", str(path), "--method", "ncti")
        return f"exit {code}: {text.strip().splitlines()[-1]}"


def case_bomb() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bomb.npz"
        header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
        header["shape"] = (2**28, 10)  # 10 GiB of float32 zeros
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            with archive.open("features.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                chunk = bytes(64 * 2**20)
                for _ in range(160):
                    member.write(chunk)
            with archive.open("labels.npy", "w") as member:
                np.lib.format.write_array(member, np.arange(10))
        good = Path(tmp) / "good.npz"
        x, y = _blobs(100, 8, 4, 0)
        np.savez(good, features=x, labels=y)
        size = path.stat().st_size / 2**20
        code, text, seconds = _cli("rank", str(good), str(path), timeout=300)
        lines = text.strip().splitlines()
        return (f"{size:.0f} MB file: exit {code} in {seconds:.1f} s, {len(lines)} line(s): "
                f"{lines[-1][:160] if lines else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(globals()[f"case_{args.case}"]()))
        return
    for case in args.cases.split(","):
        start = time.perf_counter()
        # its own process group: a case past the limit is killed with the nctk it started
        with subprocess.Popen([sys.executable, __file__, "--case", case], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=args.timeout)
                line = (json.loads(stdout.strip().splitlines()[-1]) if proc.returncode == 0
                        else f"failed: {(stderr.strip().splitlines() or ['?'])[-1][:200]}")
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                line = f"did not finish within {args.timeout:.0f} s"
        print(f"{case:7s} ({time.perf_counter() - start:6.1f} s)  {line}", flush=True)


if __name__ == "__main__":
    main()
