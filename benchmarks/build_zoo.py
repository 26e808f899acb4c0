"""Build nctk's own model zoo: 24 small models pre-trained here on real CIFAR-10 images,
with linear-probe and full fine-tuning ground truths on four target tasks.

It is the larger of the two pools that ``benchmarks/bench_recommended.py`` evaluates
model rankings on (the other is the demo pool). It reuses the demo pool's architectures
(:mod:`nctk.demo.models`) and its training code (``build_demo_pool.py``); what varies
between members is the architecture and width, the recipe (AdamW or SGD, random crops,
label smoothing, a half or a fifth of the source data) and the training length (1 to 8
epochs).

1. Source task: CIFAR-10 airplane, automobile, bird, cat, deer (train split, 25,000
   images, or a seeded half of it), from scratch. The source test accuracy (5,000 images)
   is recorded: it is the zoo's analogue of a model's ImageNet top-1, a data-free prior.
2. Targets (:data:`TASKS`), each a seeded per-class draw from the train split, tested on
   a seeded per-class draw from the test split:
   ``dfhst`` (dog, frog, horse, ship, truck; 2,000 per class), ``dfhst_fewshot`` (the same
   classes, 30 per class), ``cifar10`` (all ten classes, 1,000 per class; it overlaps the
   source classes) and ``dfhst_gray`` (dog, frog, horse, ship, truck in grayscale, 1,000
   per class: a shift of the input domain). For each target and model two ground truths:
   ``lp`` = test accuracy of a logistic regression (scikit-learn, standardised frozen
   penultimate features, C=1) trained on the draw; ``ft`` = test accuracy after training
   every layer with a new head on the draw (AdamW lr 1e-3, cosine, flips).
3. Features for the estimators: for each target, the first ``score_per_class`` images per
   class of the draw, as nctk feature files (penultimate ``features``, string ``labels``,
   ``source_logits`` from the source head).

Output (``--out``, outside the repository; weights and features are not committed)::

    OUT/weights/<model>.pt         float32 state dict after source training
    OUT/records/<model>.json       settings and source figures of one model (resume point)
    OUT/records/<model>/<task>.json  settings and ground truths of one model on one task
    OUT/features/<task>/<model>.npz
    OUT/ground_truth.json          {"<task>_<lp|ft>": {model: accuracy}}
    OUT/zoo.json                   the build record: tasks, recipes, per-model figures

Usage (from the repository root; one thread per worker; resumable)::

    nice -n 19 python benchmarks/build_zoo.py --out ZOO_DIR --workers 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_demo_pool import (
    FINETUNE_LR,
    SOURCE_CLASSES,
    SOURCE_LR,
    accuracy,
    decoded_cifar10,
    select,
    to_batch,
    train,
)
from nctk.demo.models import PatchMixer, PlainCNN, PlainMLP, TinyMobileNet, TinyResNet, TinyViT
from nctk.io import save_feature_file, write_json
from selection_truth import kept_figures, settled

DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
                   / "cifar10_jpeg.npz")
#: SGD needs a larger step than AdamW.
SGD_LR = 0.05


@dataclass(frozen=True)
class Member:
    """One zoo model: architecture, recipe and training length."""

    name: str
    build: Callable[[], nn.Module]
    summary: str
    epochs: int
    optimizer: str = "adamw"
    crop: bool = False
    label_smoothing: float = 0.0
    source_fraction: float = 1.0

    def recipe(self) -> dict:
        return {"epochs": self.epochs, "optimizer": self.optimizer, "crop": self.crop,
                "label_smoothing": self.label_smoothing,
                "source_fraction": self.source_fraction,
                "lr": SGD_LR if self.optimizer == "sgd" else SOURCE_LR}


ZOO: tuple[Member, ...] = (
    Member("cnn16_adamw_2ep", lambda: PlainCNN((16, 32, 64)), "plain CNN 16/32/64", 2),
    Member("cnn16_adamw_8ep", lambda: PlainCNN((16, 32, 64)), "plain CNN 16/32/64", 8),
    Member("cnn16_sgd_5ep", lambda: PlainCNN((16, 32, 64)), "plain CNN 16/32/64", 5,
           optimizer="sgd"),
    Member("cnn32_crop_6ep", lambda: PlainCNN((32, 64, 128)), "plain CNN 32/64/128", 6,
           crop=True),
    Member("cnn32_ls_2ep", lambda: PlainCNN((32, 64, 128)), "plain CNN 32/64/128", 2,
           label_smoothing=0.1),
    Member("cnn16x2_adamw_4ep", lambda: PlainCNN((16, 32, 64), depth=2),
           "plain CNN, 2 convs per stage, 16/32/64", 4),
    Member("resnet16_adamw_5ep", lambda: TinyResNet((16, 32, 64)), "tiny ResNet 16/32/64", 5),
    Member("resnet12_sgd_crop_8ep", lambda: TinyResNet((12, 24, 48)), "tiny ResNet 12/24/48",
           8, optimizer="sgd", crop=True),
    Member("resnet12_half_4ep", lambda: TinyResNet((12, 24, 48)), "tiny ResNet 12/24/48", 4,
           source_fraction=0.5),
    Member("mobilenet_adamw_3ep", lambda: TinyMobileNet((16, 32, 64, 128)),
           "depthwise-separable 16/32/64/128", 3),
    Member("mobilenet_ls_8ep", lambda: TinyMobileNet((16, 32, 64, 128)),
           "depthwise-separable 16/32/64/128", 8, label_smoothing=0.1),
    Member("vit8_adamw_6ep", lambda: TinyViT(patch=8, dim=64, depth=2),
           "ViT, 8x8 patches, 2 layers of width 64", 6),
    Member("vit8_crop_4ep", lambda: TinyViT(patch=8, dim=48, depth=2),
           "ViT, 8x8 patches, 2 layers of width 48", 4, crop=True),
    Member("mixer_adamw_5ep", lambda: PatchMixer(patch=4, dim=48, depth=2),
           "MLP-Mixer, 4x4 patches, 2 layers of width 48", 5),
    Member("mlp256_adamw_3ep", lambda: PlainMLP((256, 128)), "MLP on pixels, 256/128", 3),
    Member("mlp96_sgd_8ep", lambda: PlainMLP((96, 64)), "MLP on pixels, 96/64", 8,
           optimizer="sgd"),
    Member("resnet24_adamw_3ep", lambda: TinyResNet((24, 48, 96)), "tiny ResNet 24/48/96", 3),
    Member("cnn16x3_sgd_4ep", lambda: PlainCNN((16, 32, 64), depth=3),
           "plain CNN, 3 convs per stage, 16/32/64", 4, optimizer="sgd"),
    Member("vit4_adamw_3ep", lambda: TinyViT(patch=4, dim=48, depth=2),
           "ViT, 4x4 patches, 2 layers of width 48", 3),
    Member("mixer8_ls_4ep", lambda: PatchMixer(patch=8, dim=64, depth=3),
           "MLP-Mixer, 8x8 patches, 3 layers of width 64", 4, label_smoothing=0.1),
    Member("mobilenet_sgd_crop_5ep", lambda: TinyMobileNet((16, 32, 64, 128)),
           "depthwise-separable 16/32/64/128", 5, optimizer="sgd", crop=True),
    Member("cnn48_adamw_1ep", lambda: PlainCNN((48, 96, 192)), "plain CNN 48/96/192", 1),
    Member("cnn16_fifth_3ep", lambda: PlainCNN((16, 32, 64)), "plain CNN 16/32/64", 3,
           source_fraction=0.2),
    Member("mlp512_ls_6ep", lambda: PlainMLP((512, 256)), "MLP on pixels, 512/256", 6,
           label_smoothing=0.1),
)


@dataclass(frozen=True)
class Task:
    """One target task: classes (in CIFAR-10 order, as ``select`` needs), draw sizes and
    the fine-tuning length."""

    name: str
    classes: tuple[str, ...]
    train_per_class: int
    test_per_class: int
    score_per_class: int
    finetune_epochs: int
    grayscale: bool = False


TASKS: tuple[Task, ...] = (
    Task("dfhst", ("dog", "frog", "horse", "ship", "truck"), 2000, 1000, 100, 4),
    Task("dfhst_fewshot", ("dog", "frog", "horse", "ship", "truck"), 30, 1000, 30, 30),
    Task("cifar10", ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                     "ship", "truck"), 1000, 500, 50, 4),
    Task("dfhst_gray", ("dog", "frog", "horse", "ship", "truck"), 1000, 1000, 100, 3,
         grayscale=True),
)


def draw(data: dict[str, np.ndarray], task: Task, split: int, per_class: int, seed: int
         ) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images per class of ``task`` from ``split`` (0 train, 1 test), seeded,
    class-blocked; labels 0..C-1 in the order of ``task.classes``."""
    images, labels = select(data, task.classes, split)
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                           for c in range(len(task.classes))])
    return images[rows], labels[rows]


@torch.no_grad()
def penultimate_and_logits(net: nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, d) penultimate features and (N, C) head logits, in eval mode, float32."""
    net.eval()
    feats, logits = [], []
    for start in range(0, len(images), 500):
        f = net.penultimate(to_batch(images[start:start + 500]))
        feats.append(f.numpy())
        logits.append(net.head(f).numpy())
    return np.concatenate(feats), np.concatenate(logits)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray) -> float:
    """Test accuracy of a logistic regression on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    probe.fit(train_x, train_y)
    return float(probe.score(test_x, test_y))


def pretrain(member: Member, data: dict[str, np.ndarray], seed: int, out: Path
             ) -> tuple[nn.Module, dict]:
    """Train ``member`` on the source task (or load its kept weights); its figures."""
    settings = settled({"seed": seed, "recipe": member.recipe(), "summary": member.summary})
    record, weights = out / "records" / f"{member.name}.json", out / "weights" / f"{member.name}.pt"
    net = member.build()
    figures = kept_figures(record, settings)
    if figures is not None and weights.exists():
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return net, figures
    started = time.perf_counter()
    torch.manual_seed(seed)
    net = member.build()
    source_x, source_y = select(data, SOURCE_CLASSES, split=0)
    if member.source_fraction < 1:
        keep = np.sort(np.random.default_rng(seed).permutation(len(source_x))[
            :int(member.source_fraction * len(source_x))])
        source_x, source_y = source_x[keep], source_y[keep]
    train(net, source_x, source_y, epochs=member.epochs, lr=settings["recipe"]["lr"],
          seed=seed, optimizer=member.optimizer, crop=member.crop,
          label_smoothing=member.label_smoothing)
    figures = {"name": member.name, "summary": member.summary, "recipe": settings["recipe"],
               "parameters": sum(p.numel() for p in net.parameters()),
               "source_test_accuracy": accuracy(net, *select(data, SOURCE_CLASSES, split=1)),
               "source_seconds": round(time.perf_counter() - started, 1)}
    torch.save(net.state_dict(), weights)
    write_json(record, {"settings": settings, "figures": figures})
    return net, figures


def transfer(member: Member, net: nn.Module, task: Task, t_index: int,
             data: dict[str, np.ndarray], seed: int, base_seed: int, out: Path) -> dict:
    """The feature file and the linear-probe and fine-tuning ground truths of one task."""
    settings = settled({"task": asdict(task), "seed": seed, "draw_seed": base_seed + t_index,
                         "finetune_lr": FINETUNE_LR})
    record = out / "records" / member.name / f"{task.name}.json"
    features = out / "features" / task.name / f"{member.name}.npz"
    figures = kept_figures(record, settings)
    if figures is not None and features.exists():
        return figures
    started = time.perf_counter()
    train_x, train_y = draw(data, task, 0, task.train_per_class, base_seed + t_index)
    test_x, test_y = draw(data, task, 1, task.test_per_class, base_seed + 100 + t_index)
    if task.grayscale:
        train_x, test_x = grayscale(train_x), grayscale(test_x)
    train_f, train_logits = penultimate_and_logits(net, train_x)
    test_f, _ = penultimate_and_logits(net, test_x)
    scored = np.concatenate([np.flatnonzero(train_y == c)[:task.score_per_class]
                             for c in range(len(task.classes))])
    features.parent.mkdir(parents=True, exist_ok=True)
    save_feature_file(features, train_f[scored], np.array(task.classes)[train_y[scored]],
                      source_logits=train_logits[scored])
    lp = linear_probe(train_f, train_y, test_f, test_y)

    torch.manual_seed(seed + 1000 + t_index)
    tuned = member.build()
    tuned.load_state_dict(net.state_dict())
    tuned.head = nn.Linear(tuned.head.in_features, len(task.classes))
    train(tuned, train_x, train_y, epochs=task.finetune_epochs, lr=FINETUNE_LR,
          seed=seed + 1000 + t_index)
    figures = {"lp": lp, "ft": accuracy(tuned, test_x, test_y),
               "seconds": round(time.perf_counter() - started, 1)}
    write_json(record, {"settings": settings, "figures": figures})
    return figures


def grayscale(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> the ITU-R 601 luma replicated to 3 channels, uint8."""
    luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.repeat(np.rint(luma).astype(np.uint8)[..., None], 3, axis=-1)


def build_member(job: tuple[int, str, str, str, int]) -> dict:
    """Pre-train one member and measure its ground truths; finished parts are kept
    (``OUT/records``), so an interrupted build, a new member or a new task computes only
    what is missing."""
    index, data_path, cache_dir, out_dir, base_seed = job
    member, out = ZOO[index], Path(out_dir)
    seed = base_seed + 10 * index
    torch.set_num_threads(1)
    data = decoded_cifar10(Path(data_path), Path(cache_dir))
    net, figures = pretrain(member, data, seed, out)
    figures = {**figures, "targets": {
        task.name: transfer(member, net, task, t_index, data, seed, base_seed, out)
        for t_index, task in enumerate(TASKS)}}
    print(json.dumps(figures), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (outside the repository)")
    parser.add_argument("--data", default=DEFAULT_DATA,
                        help="CIFAR-10 JPEG archive (default: ../shared/data/cifar10 beside "
                             "the repository)")
    parser.add_argument("--cache-dir", default=tempfile.gettempdir(),
                        help="where the decoded images are cached")
    parser.add_argument("--models", default="all",
                        help="comma-separated zoo members, built in this order (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2,
                        help="parallel worker processes, one thread each")
    args = parser.parse_args()

    started = time.perf_counter()
    out = Path(args.out)
    for sub in ("weights", "records", "features"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    decoded_cifar10(Path(args.data), Path(args.cache_dir))  # decode once, before the workers
    names = [m.name for m in ZOO]
    wanted = names if args.models == "all" else args.models.split(",")
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"unknown zoo members: {', '.join(unknown)}")
    jobs = [(names.index(n), args.data, args.cache_dir, str(out), args.seed) for n in wanted]
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers) as pool:
        built = pool.map(build_member, jobs, chunksize=1)
    if args.models != "all":
        print(f"built {len(built)} members in {time.perf_counter() - started:.1f} s")
        return
    figures = sorted(built, key=lambda f: names.index(f["name"]))
    truth = {f"{task.name}_{protocol}": {f["name"]: f["targets"][task.name][protocol]
                                         for f in figures}
             for task in TASKS for protocol in ("lp", "ft")}
    write_json(out / "ground_truth.json", truth)
    write_json(out / "zoo.json", {
        "source_task": {"dataset": "CIFAR-10", "split": "train", "classes": SOURCE_CLASSES},
        "tasks": [asdict(t) for t in TASKS],
        "ground_truth": {
            "lp": "test accuracy of scikit-learn LogisticRegression(C=1) on standardised "
                  "frozen penultimate features of the task's train draw",
            "ft": f"test accuracy after training all layers with a new head on the task's "
                  f"train draw, AdamW lr {FINETUNE_LR:g}, cosine, batch 128, flips"},
        "seed": args.seed, "build_seconds": round(time.perf_counter() - started, 1),
        "models": figures})
    print(f"built {len(figures)} models in {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
