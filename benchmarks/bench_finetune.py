"""Table-3 analogue of Li et al. (2023) on CIFAR-10, small enough for a CPU.

1. Pre-train a randomly initialised torchvision ResNet-18 on the five classes airplane,
   automobile, bird, cat, deer (torchvision's 7x7/2 stem and max-pool are kept, so a
   32x32 image reaches stage 4 at 1x1: cheap, at the price of accuracy).
2. On the other five classes (dog, frog, horse, ship, truck): linear probe, Layer FT and SCL
   FT on the chosen blocks, and full FT, each with test accuracy, penultimate NC1 on the
   training split and the share of parameters trained.
3. ``--unit auto``: the NC criterion (short Layer-FT probes, lowest penultimate NC1) against
   the best unit found by training every candidate fully (step 2).

Prints the table and the checks of the paper's claims; ``--json`` writes everything.

    python benchmarks/bench_finetune.py --out /tmp/bench_ft --json results.json
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset

from nctk.finetune.auto_unit import select_unit
from nctk.finetune.sweep import format_table, sweep, unit_numbers
from nctk.finetune.train import TrainConfig, finetune
from nctk.io import write_json

DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
                   / "cifar10_jpeg.npz")
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)


class Cifar(Dataset):
    """Normalised CIFAR images (N, 3, 32, 32) with labels; random flips when ``augment``."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, augment: bool):
        self.images, self.labels, self.augment = images, labels, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.augment and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, int(self.labels[i])


def load_split(path: str, classes: range, split: int, per_class: int, seed: int,
               augment: bool) -> Cifar:
    """``per_class`` seeded images of each class in ``classes`` from one split (0 train)."""
    z = np.load(path, allow_pickle=False)
    rng = np.random.default_rng(seed)
    rows = np.sort(np.concatenate([
        rng.choice(np.flatnonzero((z["labels"] == c) & (z["split"] == split)), per_class,
                   replace=False) for c in classes]))
    jpeg, offsets = z["jpeg"], z["offsets"]
    images = np.stack([np.asarray(Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]]
                                                        .tobytes())).convert("RGB"))
                       for i in rows])
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD
    return Cifar(x, z["labels"][rows], augment)


def pretrain(args: argparse.Namespace) -> torch.nn.Module:
    """ResNet-18 trained from scratch on classes 0-4 (cached in ``out/pretrained.pt``)."""
    cache = Path(args.out) / "pretrained.pt"
    model = torchvision.models.resnet18(num_classes=5)
    if cache.is_file():
        model.load_state_dict(torch.load(cache, weights_only=True))
        print(f"pre-trained model loaded from {cache}")
        return model
    source = load_split(args.data, range(5), 0, args.pretrain_per_class, 1, augment=True)
    source_test = load_split(args.data, range(5), 1, args.test_per_class, 1, augment=False)
    config = TrainConfig(epochs=args.pretrain_epochs, batch_size=args.batch_size, lr=0.1,
                         val_fraction=0.1, seed=1, progress=args.progress)
    t0 = time.perf_counter()
    result = finetune(model, source, method="full", test_data=source_test, config=config)
    net = result.network
    model.load_state_dict({**{k: v for k, v in net.backbone.state_dict().items()},
                           "fc.weight": net.head.weight, "fc.bias": net.head.bias})
    print(f"pre-training: source test accuracy {100 * result.test_accuracy:.2f}%, "
          f"NC1 {result.train_nc1:.3f}, {time.perf_counter() - t0:.0f} s")
    torch.save(model.state_dict(), cache)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--out", default="/tmp/bench_finetune")
    parser.add_argument("--pretrain-per-class", type=int, default=1000)
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--per-class", type=int, default=300, help="target training images")
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--units", default="1,3,5,7")
    parser.add_argument("--probe-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    model = pretrain(args)
    target = load_split(args.data, range(5, 10), 0, args.per_class, 2, augment=True)
    target_test = load_split(args.data, range(5, 10), 1, args.test_per_class, 2, augment=False)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         val_fraction=0.1, seed=0, progress=args.progress)
    units = [int(u) for u in args.units.split(",")]

    t0 = time.perf_counter()
    results = sweep(model, target, test_data=target_test, units=units, config=config)
    sweep_seconds = time.perf_counter() - t0
    numbers = unit_numbers(model)
    print(format_table(results, numbers))
    for r in results:
        print(f"  {r.label:12s} unit {r.unit:10s} {r.seconds:7.1f} s, best epoch {r.best_epoch}")

    by = {(r.method, r.unit): r for r in results}
    names = [u for u, k in numbers.items() if k in units]
    acc = {key: r.test_accuracy for key, r in by.items()}
    checks = {
        "scl_ge_layer_per_unit": {f"block {numbers[u]}": acc[("scl", u)] >= acc[("layer", u)]
                                  for u in names},
        "layer_gt_lp_per_unit": {f"block {numbers[u]}": acc[("layer", u)] > acc[("lp", "-")]
                                 for u in names},
        "best_layer_unit": numbers[max(names, key=lambda u: acc[("layer", u)])],
        "best_scl_unit": numbers[max(names, key=lambda u: acc[("scl", u)])],
    }
    print("paper's claims:", checks)

    t0 = time.perf_counter()
    selection = select_unit(model, target, candidates=units, config=config,
                            probe_epochs=args.probe_epochs)
    layer_seconds = sum(by[("layer", u)].seconds for u in names)
    best_full = max(names, key=lambda u: acc[("layer", u)])
    auto = {"selection": selection.to_json(), "chosen_block": selection.index,
            "best_block_by_full_layer_ft": numbers[best_full],
            "chosen_accuracy": acc[("layer", selection.unit)],
            "best_accuracy": acc[("layer", best_full)],
            "probe_seconds": time.perf_counter() - t0,
            "full_layer_ft_seconds_all_units": layer_seconds}
    print("unit auto:", auto)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        write_json(args.json, {"args": vars(args), "results": [r.to_json() for r in results],
                               "checks": checks, "auto": auto, "sweep_seconds": sweep_seconds})


if __name__ == "__main__":
    main()
