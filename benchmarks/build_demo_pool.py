"""Build the assets of ``nctk demo``: pre-train the demo pool, ship it with target images
and a ground truth for ranking and selection.

The project has no internet and no pretrained weights, so it trains its own small pool
(the architectures of :mod:`nctk.demo.models`) on real images. Two stages (``--stage``):

1. ``pool``: the source task, CIFAR-10 classes airplane, automobile, bird, cat, deer
   (train split, 25,000 images). Each model is trained from scratch for its own number of
   epochs (``DemoModel.source_epochs``), AdamW, cosine learning rate, random horizontal
   flips; its accuracy on the source test split (5,000 images) is recorded. The weights
   are shipped as float16 state dicts, source head included (LEEP and NCE use it).
2. ``truth`` (no retraining: the shipped weights, as ``demo:<model>`` loads them):
   ``--per-class`` images per target class (dog, frog, horse, ship, truck) drawn (seeded)
   from the target train split are shipped (``target_subset.npz``: uint8 ``images``
   (N, 32, 32, 3) and string ``labels``); ``nctk demo`` ranks and selects on them. The
   ground truth of a model is its accuracy on the target test split (5,000 images) after
   fine-tuning on ALL the shipped images exactly as ``nctk select`` fine-tunes (the
   shared recipe of :mod:`selection_truth`: every layer, SGD, ``RECIPE.epochs`` epochs),
   the mean over seeds the selection never uses (1, 2, 3). The selection curves (seed 0,
   validation fraction 0.2), each seed's accuracy and the feature files are kept in
   ``--truth-dir``.

Everything is seeded; with one thread per worker process the run is repeatable on one
machine. Usage (from the repository root; both stages resume from their records)::

    python benchmarks/build_demo_pool.py --data ../shared/data/cifar10/cifar10_jpeg.npz \
        --workers 2 [--stage pool|truth|all] --truth-dir DIR
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import multiprocessing
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from nctk.demo.models import MEAN, STD, get_member, pool_names
from nctk.io import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection_truth import (
    RECIPE,
    kept_figures,
    run_jobs,
    save_images,
    settled,
    summarise,
    target_jobs,
    write_target_record,
)

SOURCE_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
TARGET_CLASSES = ("dog", "frog", "horse", "ship", "truck")
ASSETS = Path(__file__).resolve().parents[1] / "src" / "nctk" / "demo" / "assets"
BATCH_SIZE = 128
SOURCE_LR = 2e-3
FINETUNE_LR = 1e-3
WEIGHT_DECAY = 5e-4


def decoded_cifar10(npz_path: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    """All CIFAR-10 images decoded to uint8 (N, 32, 32, 3), cached next to a hash of the
    source file's size and name so later runs skip the JPEG decoding."""
    key = hashlib.sha1(f"{npz_path.resolve()}:{npz_path.stat().st_size}".encode()).hexdigest()
    cache = cache_dir / f"nctk_cifar10_decoded_{key[:12]}.npz"
    if not cache.exists():
        with np.load(npz_path, allow_pickle=False) as z:
            jpeg, offsets = z["jpeg"], z["offsets"]
            images = np.stack([
                np.asarray(Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes()))
                           .convert("RGB")) for i in range(len(offsets) - 1)])
            arrays = {"images": images, "labels": z["labels"], "split": z["split"],
                      "class_names": z["class_names"]}
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(cache)
    with np.load(cache, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def select(data: dict[str, np.ndarray], classes: tuple[str, ...],
           split: int) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``classes`` in ``split`` (0 train, 1 test), labels re-coded 0..len-1."""
    names = [str(c) for c in data["class_names"]]
    codes = np.array([names.index(c) for c in classes])
    keep = (data["split"] == split) & np.isin(data["labels"], codes)
    labels = np.searchsorted(codes, data["labels"][keep])  # codes are sorted ascending
    return data["images"][keep], labels


def to_batch(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, 32, 32, 3) -> normalised float (B, 3, 32, 32), as in nctk.demo.run."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def train(net: nn.Module, images: np.ndarray, labels: np.ndarray, *, epochs: int,
          lr: float, seed: int, optimizer: str = "adamw", weight_decay: float = WEIGHT_DECAY,
          crop: bool = False, label_smoothing: float = 0.0) -> None:
    """All layers, a per-step cosine schedule and random horizontal flips.

    The defaults are the demo pool's recipe (AdamW); ``optimizer="sgd"`` is SGD with
    Nesterov momentum 0.9, ``crop`` adds random 32x32 crops of the 4-pixel zero-padded
    image, ``label_smoothing`` is cross-entropy's. (The variations are used by
    ``benchmarks/build_zoo.py``.)
    """
    generator = torch.Generator().manual_seed(seed)
    targets = torch.from_numpy(labels)
    steps = epochs * math.ceil(len(images) / BATCH_SIZE)
    if optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True,
                              weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator).numpy()
        for start in range(0, len(images), BATCH_SIZE):
            index = order[start:start + BATCH_SIZE]
            x = to_batch(images[index])
            flip = torch.rand(len(index), generator=generator) < 0.5
            x[flip] = x[flip].flip(3)
            if crop:
                x = random_crop(x, generator)
            loss = nn.functional.cross_entropy(net(x), targets[index],
                                               label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()


def random_crop(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """A random (H, W) crop of each zero-padded image of the (B, C, H, W) batch."""
    height, width = x.shape[2:]
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + height, dx:dx + width]
                        for i, (dy, dx) in enumerate(offsets)])


@torch.no_grad()
def accuracy(net: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    net.eval()
    correct = 0
    for start in range(0, len(images), 500):
        logits = net(to_batch(images[start:start + 500]))
        correct += int((logits.argmax(1).numpy() == labels[start:start + 500]).sum())
    return correct / len(images)


def build_member(job: tuple[str, str, int, str, str]) -> dict:
    """Pre-train and save one pool member; returns its source figures.

    The figures are also kept in ``work_dir/<name>.json`` with the settings that produced
    them, so an interrupted build resumes without redoing finished members.
    """
    name, cache_dir, seed, out_dir, work_dir = job
    member = get_member(name)
    settings = settled({"seed": seed, "source_epochs": member.source_epochs,
                        "summary": member.summary, "source_lr": SOURCE_LR,
                        "batch_size": BATCH_SIZE})
    record, weights = Path(work_dir) / f"{name}.json", Path(out_dir) / f"{name}.pt"
    figures = kept_figures(record, settings) if weights.exists() else None
    if figures is not None:
        print(f"{name}: kept from {record}", flush=True)
        return figures
    torch.set_num_threads(1)
    data = decoded_cifar10(Path(_DATA_PATH), Path(cache_dir))
    started = time.perf_counter()
    torch.manual_seed(seed)
    net = member.build()
    source_x, source_y = select(data, SOURCE_CLASSES, split=0)
    train(net, source_x, source_y, epochs=member.source_epochs, lr=SOURCE_LR, seed=seed)
    shipped = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    torch.save(shipped, weights)
    figures = {
        "name": name, "summary": member.summary,
        "parameters": sum(p.numel() for p in net.parameters()),
        "source_epochs": member.source_epochs,
        "source_test_accuracy": accuracy(net, *select(data, SOURCE_CLASSES, split=1)),
        "source_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures), flush=True)
    write_json(record, {"settings": settings, "figures": figures})
    return figures


def target_subset(data: dict[str, np.ndarray], per_class: int, seed: int) -> dict:
    """``per_class`` target-train images per class, drawn without replacement, seeded."""
    images, labels = select(data, TARGET_CLASSES, split=0)
    rng = np.random.default_rng(seed)
    rows = np.concatenate([np.sort(rng.choice(np.flatnonzero(labels == c), per_class,
                                              replace=False))
                           for c in range(len(TARGET_CLASSES))])
    return {"images": images[rows], "labels": np.array(TARGET_CLASSES)[labels[rows]]}


_DATA_PATH = ""


def _init_worker(data_path: str) -> None:
    global _DATA_PATH
    _DATA_PATH = data_path


def pretrain_pool(args: argparse.Namespace, out: Path) -> None:
    """Stage ``pool``: train the source models, ship their weights, write ``pool.json``."""
    started = time.perf_counter()
    decoded_cifar10(Path(args.data), Path(args.cache_dir))  # decode once, before the workers
    names = pool_names() if args.models == "all" else args.models.split(",")
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(name, args.cache_dir, args.seed + 10 * pool_names().index(name), str(out),
             args.work_dir) for name in names]
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, initializer=_init_worker, initargs=(args.data,)) as pool:
        built = pool.map(build_member, jobs, chunksize=1)
    write_json(out / "pool.json", {
        "source_task": {"dataset": "CIFAR-10", "split": "train", "classes": SOURCE_CLASSES},
        "source_schedule": (f"AdamW lr {SOURCE_LR:g}, weight decay {WEIGHT_DECAY:g}, cosine, "
                            f"batch {BATCH_SIZE}, horizontal flips, per-model epochs"),
        "seed": args.seed, "build_seconds": round(time.perf_counter() - started, 1),
        "models": sorted(built, key=lambda f: pool_names().index(f["name"]))})
    print(f"built {len(built)} models in {time.perf_counter() - started:.1f} s", flush=True)


def write_target_images(args: argparse.Namespace, out: Path, truth_dir: Path) -> int:
    """Ship the target images the demo ranks and selects on; keep them and the target test
    split as ``npz:`` datasets in ``truth_dir``; the number of shipped images."""
    data = decoded_cifar10(Path(args.data), Path(args.cache_dir))
    subset = target_subset(data, args.per_class, args.seed)
    save_images(out / "target_subset.npz", subset["images"], subset["labels"])
    save_images(truth_dir / "train.npz", subset["images"], subset["labels"])
    test_x, test_y = select(data, TARGET_CLASSES, split=1)
    save_images(truth_dir / "test.npz", test_x, np.array(TARGET_CLASSES)[test_y])
    return len(subset["labels"])


def measure_truth(args: argparse.Namespace, out: Path) -> None:
    """Stage ``truth``: target images, then the ground truth of the shipped weights
    (``ground_truth.json``; each seed and the selection recipe in ``pool.json``)."""
    truth_dir = Path(args.truth_dir)
    shipped = write_target_images(args, out, truth_dir)
    info = json.loads((out / "pool.json").read_text())
    prior = {m["name"]: m["source_test_accuracy"] for m in info["models"]}
    pool = {m["name"]: f"demo:{m['name']}" for m in info["models"]}
    write_target_record(truth_dir, pool, prior, RECIPE, task={
        "name": "demo", "classes": TARGET_CLASSES, "train_per_class": args.per_class,
        "test": "the target test split (1,000 per class)"}, train_seed=args.seed)
    run_jobs(target_jobs(truth_dir, pool, RECIPE, prior), args.workers)
    spread = summarise(truth_dir, pool, RECIPE)
    truth = json.loads((truth_dir / "ground_truth.json").read_text())
    seeds = json.loads((truth_dir / "ground_truth_seeds.json").read_text())
    for model in info["models"]:
        model.update(finetuned_target_test_accuracy=truth[model["name"]],
                     finetuned_seeds=seeds[model["name"]])
    info["target_task"] = {"dataset": "CIFAR-10", "classes": TARGET_CLASSES,
                           "per_class": args.per_class, "seed": args.seed,
                           "subset": f"{args.per_class} per class from the train split"}
    seed_list = ", ".join(map(str, RECIPE.truth_seeds))
    info["ground_truth"] = (
        f"accuracy on the target test split (5,000 images) after fine-tuning all layers with "
        f"a new 5-way head on all {shipped} shipped target images as nctk select fine-tunes "
        f"(nctk finetune {RECIPE.options(seed='S', val_fraction=0)}), mean over S = "
        f"{seed_list}")
    info["recipe"] = {**asdict(RECIPE), "options": RECIPE.select_options()}
    info["truth_spread"] = spread
    write_json(out / "ground_truth.json", truth)
    write_json(out / "pool.json", info)
    print(json.dumps(spread), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/cifar10/cifar10_jpeg.npz",
                        help="CIFAR-10 JPEG archive (see shared/data/cifar10/README.md)")
    parser.add_argument("--out", default=str(ASSETS), help="assets folder to write")
    parser.add_argument("--stage", choices=("pool", "truth", "all"), default="all",
                        help="pool: train and ship the models; truth: target images and "
                             "ground truth of the shipped weights; all: both")
    parser.add_argument("--cache-dir", default=tempfile.gettempdir(),
                        help="where the decoded images are cached")
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "nctk_demo_build"),
                        help="per-model records of the pool stage, so it resumes")
    parser.add_argument("--truth-dir", default=str(Path(tempfile.gettempdir()) / "nctk_demo_truth"),
                        help="the truth stage's records, curves, data and feature files")
    parser.add_argument("--models", default="all",
                        help="comma-separated pool members, built in this order (default: all)")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2,
                        help="parallel worker processes, one thread each")
    args = parser.parse_args()
    out = Path(args.out)
    if args.stage != "pool" and out.resolve() != ASSETS:
        parser.error(f"the truth stage measures the demo: models, which nctk loads from its "
                     f"package assets: --out must be {ASSETS}")
    out.mkdir(parents=True, exist_ok=True)
    if args.stage in ("pool", "all"):
        pretrain_pool(args, out)
    if args.stage in ("truth", "all"):
        measure_truth(args, out)


if __name__ == "__main__":
    main()
